//! The sinks and what each one is sent: pure payload builders, one per service.
//!
//! Secrets: the Telegram bot token is part of the Bot API URL, and Slack and Discord webhook
//! URLs are bearer secrets too, so no URL is ever logged or shown in `Debug`; the PagerDuty
//! routing key travels in the body, which `Debug` does not show either.

use std::fmt;

use serde_json::{json, Map, Value};
use syncguard_config::AlertsConfig;

use crate::alert::{Alert, Severity};

/// Discord refuses `content` over 2000 characters; Telegram `text` over 4096; PagerDuty
/// truncates `summary` at 1024.
const DISCORD_MAX: usize = 2000;
const TELEGRAM_MAX: usize = 4096;
const PAGERDUTY_SUMMARY_MAX: usize = 1024;

/// Where alerts go. Built from `alerts:` by [`sinks_from_config`].
#[derive(Clone, PartialEq, Eq)]
pub enum Sink {
    /// Our own JSON (see [`webhook_body`]).
    Webhook {
        url: String,
    },
    Slack {
        url: String,
    },
    Discord {
        url: String,
    },
    Telegram {
        api_url: String,
        bot_token: String,
        chat_id: String,
    },
    PagerDuty {
        events_url: String,
        routing_key: String,
    },
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sink::Telegram { chat_id, .. } => f
                .debug_struct("Telegram")
                .field("bot_token", &"<redacted>")
                .field("chat_id", chat_id)
                .finish(),
            other => write!(f, "{}(<url redacted>)", other.name()),
        }
    }
}

impl Sink {
    /// `webhook`, `slack`, `discord`, `telegram` or `pagerduty`: the `sink` label.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Webhook { .. } => "webhook",
            Sink::Slack { .. } => "slack",
            Sink::Discord { .. } => "discord",
            Sink::Telegram { .. } => "telegram",
            Sink::PagerDuty { .. } => "pagerduty",
        }
    }

    /// The HTTP request announcing `alert` here.
    pub fn request(&self, alert: &Alert) -> Request {
        let (url, body) = match self {
            Sink::Webhook { url } => (url.clone(), webhook_body(alert)),
            Sink::Slack { url } => (url.clone(), slack_body(alert)),
            Sink::Discord { url } => (url.clone(), discord_body(alert)),
            Sink::Telegram {
                api_url,
                bot_token,
                chat_id,
            } => (
                telegram_url(api_url, bot_token),
                telegram_body(chat_id, alert),
            ),
            Sink::PagerDuty {
                events_url,
                routing_key,
            } => (events_url.clone(), pagerduty_body(routing_key, alert)),
        };
        Request { url, body }
    }

    /// The URL setting this sink came from, for error messages (never the URL itself).
    pub fn config_key(&self) -> &'static str {
        match self {
            Sink::Webhook { .. } => "alerts.webhook_url",
            Sink::Slack { .. } => "alerts.slack_webhook_url",
            Sink::Discord { .. } => "alerts.discord_webhook_url",
            Sink::Telegram { .. } => "alerts.telegram.api_url",
            Sink::PagerDuty { .. } => "alerts.pagerduty.events_url",
        }
    }

    /// The base URL to check at start-up (for Telegram without the token).
    pub(crate) fn base_url(&self) -> &str {
        match self {
            Sink::Webhook { url } | Sink::Slack { url } | Sink::Discord { url } => url,
            Sink::Telegram { api_url, .. } => api_url,
            Sink::PagerDuty { events_url, .. } => events_url,
        }
    }
}

/// The configured sinks, in a fixed order.
pub fn sinks_from_config(c: &AlertsConfig) -> Vec<Sink> {
    let mut sinks = Vec::new();
    if let Some(url) = &c.webhook_url {
        sinks.push(Sink::Webhook { url: url.clone() });
    }
    if let Some(url) = &c.slack_webhook_url {
        sinks.push(Sink::Slack { url: url.clone() });
    }
    if let Some(url) = &c.discord_webhook_url {
        sinks.push(Sink::Discord { url: url.clone() });
    }
    if let Some(t) = &c.telegram {
        sinks.push(Sink::Telegram {
            api_url: t.api_url.clone(),
            bot_token: t.bot_token.clone(),
            chat_id: t.chat_id.clone(),
        });
    }
    if let Some(p) = &c.pagerduty {
        sinks.push(Sink::PagerDuty {
            events_url: p.events_url.clone(),
            routing_key: p.routing_key.clone(),
        });
    }
    sinks
}

/// A POST with a JSON body. `Debug` shows neither the URL nor the body (both may hold a
/// secret).
#[derive(Clone, PartialEq)]
pub struct Request {
    pub url: String,
    pub body: Value,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Request { url: <redacted>, body: <redacted> }")
    }
}

/// The generic webhook's JSON: `{kind, severity, node_id, subject, summary, details, epoch,
/// at, dedup_key}`, `at` in RFC 3339 UTC, `epoch` null when unknown.
pub fn webhook_body(alert: &Alert) -> Value {
    json!({
        "kind": alert.kind.as_str(),
        "severity": alert.severity.as_str(),
        "node_id": alert.node_id,
        "subject": alert.subject,
        "summary": alert.summary,
        "details": alert.details,
        "epoch": alert.epoch,
        "at": alert.at_rfc3339(),
        "dedup_key": alert.dedup_key,
    })
}

/// Plain text for chat sinks: a headline, the summary, then one line per detail.
pub fn text(alert: &Alert) -> String {
    let mut s = format!(
        "[{}] {} on {}",
        alert.severity.as_str().to_uppercase(),
        alert.kind,
        alert.node_id
    );
    if let Some(e) = alert.epoch {
        s.push_str(&format!(" (epoch {e})"));
    }
    s.push('\n');
    s.push_str(&alert.summary);
    for (k, v) in &alert.details {
        s.push_str(&format!("\n{k}: {v}"));
    }
    s
}

/// Slack incoming webhook: `text` (the notification line and fallback) plus a section
/// block in mrkdwn. `&`, `<`, `>` are escaped as Slack requires.
pub fn slack_body(alert: &Alert) -> Value {
    let icon = match alert.severity {
        Severity::Critical => ":red_circle:",
        Severity::Warning => ":warning:",
        Severity::Info => ":information_source:",
    };
    let plain = text(alert);
    let mut context = format!("node `{}`", slack_escape(&alert.node_id));
    if let Some(e) = alert.epoch {
        context.push_str(&format!(" · epoch {e}"));
    }
    context.push_str(&format!(" · {}", alert.at_rfc3339()));
    json!({
        "text": plain,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                "{icon} *{}* `{}`\n{}",
                alert.severity.as_str().to_uppercase(),
                alert.kind,
                slack_escape(&alert.summary),
            )}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    })
}

fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Discord webhook: `content` (at most 2000 characters), with mentions disabled so a
/// summary can never ping `@everyone`.
pub fn discord_body(alert: &Alert) -> Value {
    json!({
        "content": truncate(&text(alert), DISCORD_MAX),
        "allowed_mentions": {"parse": []},
    })
}

/// `{api_url}/bot{token}/sendMessage`. The result is a secret.
pub fn telegram_url(api_url: &str, bot_token: &str) -> String {
    format!(
        "{}/bot{bot_token}/sendMessage",
        api_url.trim_end_matches('/')
    )
}

/// Telegram `sendMessage`: plain text (no parse mode, so nothing needs escaping).
pub fn telegram_body(chat_id: &str, alert: &Alert) -> Value {
    json!({
        "chat_id": chat_id,
        "text": truncate(&text(alert), TELEGRAM_MAX),
        "disable_web_page_preview": true,
    })
}

/// PagerDuty Events v2. `node_recovered` / `peer_back` resolve the incident of the
/// `node_unhealthy` / `peer_lost` they end (same `dedup_key`, no payload, as the API
/// expects); everything else triggers, keyed by [`Alert::incident_key`].
pub fn pagerduty_body(routing_key: &str, alert: &Alert) -> Value {
    let dedup_key = alert.incident_key();
    if alert.kind.resolves().is_some() {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
    }
    let mut custom = Map::new();
    custom.insert("kind".into(), alert.kind.as_str().into());
    custom.insert("summary".into(), alert.summary.clone().into());
    if !alert.subject.is_empty() {
        custom.insert("subject".into(), alert.subject.clone().into());
    }
    if let Some(e) = alert.epoch {
        custom.insert("epoch".into(), e.into());
    }
    for (k, v) in &alert.details {
        custom.entry(k.clone()).or_insert_with(|| v.clone().into());
    }
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": truncate(
                &format!("{} on {}: {}", alert.kind, alert.node_id, alert.summary),
                PAGERDUTY_SUMMARY_MAX,
            ),
            "source": alert.node_id,
            "severity": alert.severity.as_str(),
            "timestamp": alert.at_rfc3339(),
            "component": "syncguard",
            "class": alert.kind.as_str(),
            "custom_details": custom,
        },
    })
}

/// At most `max` characters, cut on a character boundary, marked with `…` when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertKind;
    use std::time::{Duration, UNIX_EPOCH};

    fn sample() -> Alert {
        Alert::new(
            AlertKind::FailoverStarted,
            "node-b",
            "peer node-a silent for 30 s; promoting",
        )
        .with_epoch(8)
        .with_detail("reason", "peer_unreachable")
        .with_detail("height", 1234)
        .at(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }

    #[test]
    fn alerts_webhook_body_has_every_field() {
        let b = webhook_body(&sample());
        assert_eq!(b["kind"], "failover_started");
        assert_eq!(b["severity"], "critical");
        assert_eq!(b["node_id"], "node-b");
        assert_eq!(b["summary"], "peer node-a silent for 30 s; promoting");
        assert_eq!(b["details"]["reason"], "peer_unreachable");
        assert_eq!(b["details"]["height"], "1234");
        assert_eq!(b["epoch"], 8);
        assert_eq!(b["at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(b["dedup_key"], "node-b/failover_started@8");
        let no_epoch = webhook_body(&Alert::new(AlertKind::PeerLost, "n", "s"));
        assert!(no_epoch["epoch"].is_null());
    }

    #[test]
    fn alerts_chat_bodies_carry_the_text() {
        let a = sample();
        let s = slack_body(&a);
        assert!(s["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("[CRITICAL] failover_started on node-b (epoch 8)")));
        assert_eq!(s["blocks"][0]["type"], "section");
        let d = discord_body(&a);
        assert_eq!(d["content"], s["text"]);
        assert_eq!(d["allowed_mentions"]["parse"], json!([]));
        let t = telegram_body("-100123", &a);
        assert_eq!(t["chat_id"], "-100123");
        assert_eq!(t["text"], s["text"]);
    }

    #[test]
    fn alerts_slack_escapes_and_discord_truncates() {
        let a = Alert::new(AlertKind::PeerLost, "n", "a <b> & c");
        let s = slack_body(&a);
        let section = s["blocks"][0]["text"]["text"].as_str().unwrap_or_default();
        assert!(section.contains("a &lt;b&gt; &amp; c"), "{section}");
        let long = Alert::new(AlertKind::PeerLost, "n", "é".repeat(5000));
        let d = discord_body(&long);
        let content = d["content"].as_str().unwrap_or_default();
        assert_eq!(content.chars().count(), DISCORD_MAX);
        assert!(content.ends_with('…'));
        let t = telegram_body("1", &long);
        assert_eq!(
            t["text"].as_str().map(|s| s.chars().count()),
            Some(TELEGRAM_MAX)
        );
    }

    #[test]
    fn alerts_telegram_url_puts_the_token_in_the_path() {
        assert_eq!(
            telegram_url("http://127.0.0.1:9/", "123:abc"),
            "http://127.0.0.1:9/bot123:abc/sendMessage"
        );
    }

    #[test]
    fn alerts_pagerduty_triggers_and_resolves_the_same_incident() {
        let down = Alert::new(AlertKind::NodeUnhealthy, "node-a", "cometbft stalled")
            .with_detail("check", "cometbft_height");
        let t = pagerduty_body("rk", &down);
        assert_eq!(t["routing_key"], "rk");
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["dedup_key"], "node-a/node_unhealthy");
        assert_eq!(t["payload"]["source"], "node-a");
        assert_eq!(t["payload"]["severity"], "warning");
        assert_eq!(t["payload"]["custom_details"]["check"], "cometbft_height");
        assert_eq!(t["payload"]["custom_details"]["kind"], "node_unhealthy");
        let up = Alert::new(AlertKind::NodeRecovered, "node-a", "healthy again");
        let r = pagerduty_body("rk", &up);
        assert_eq!(r["event_action"], "resolve");
        assert_eq!(r["dedup_key"], t["dedup_key"]);
        assert!(r.get("payload").is_none());
    }

    #[test]
    fn alerts_secrets_stay_out_of_debug() {
        let tg = Sink::Telegram {
            api_url: "https://api.telegram.org".into(),
            bot_token: "123456:SECRET-TOKEN".into(),
            chat_id: "42".into(),
        };
        let pd = Sink::PagerDuty {
            events_url: "https://events.pagerduty.com/v2/enqueue".into(),
            routing_key: "SECRET-ROUTING".into(),
        };
        let slack = Sink::Slack {
            url: "https://hooks.slack.com/services/T/B/SECRET-HOOK".into(),
        };
        let a = sample();
        for s in [&tg, &pd, &slack] {
            let shown = format!("{s:?} {:?}", s.request(&a));
            assert!(!shown.contains("SECRET"), "{shown}");
        }
        let cfg = syncguard_config::TelegramConfig {
            bot_token: "123456:SECRET-TOKEN".into(),
            ..Default::default()
        };
        assert!(!format!("{cfg:?}").contains("SECRET"));
        let cfg = syncguard_config::PagerDutyConfig {
            routing_key: "SECRET-ROUTING".into(),
            ..Default::default()
        };
        assert!(!format!("{cfg:?}").contains("SECRET"));
    }
}
