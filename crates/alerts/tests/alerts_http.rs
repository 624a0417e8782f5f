//! The alert shell against a local HTTP receiver (axum) per sink: payload shapes, retry on
//! 500, give-up, de-dup, secrets kept out of logs, and a hung receiver that does not delay
//! the failover path (simulated time). No test sleeps on the wall clock: they wait for the
//! receiver's requests and for the alerter's counters, under a generous safety timeout.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use serde_json::Value;
use syncguard_alerts::{spawn, spawn_with, Alert, AlertKind, AlertStats, Alerter, Sink, Tuning};
use syncguard_config::{AlertsConfig, PagerDutyConfig, TelegramConfig};
use tokio::sync::mpsc;
use tokio::time::Instant;

const SAFETY: Duration = Duration::from_secs(20);
const TOKEN: &str = "123456:TOKEN-SECRET-abc";
const ROUTING: &str = "ROUTING-SECRET-xyz";

#[derive(Debug, Clone, Copy)]
enum Answer {
    Ok,
    Status(u16),
    /// Never answer.
    Hang,
}

#[derive(Debug)]
struct Got {
    path: String,
    content_type: String,
    body: Value,
}

#[derive(Clone)]
struct Script {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    tx: mpsc::UnboundedSender<Got>,
}

/// Answers requests in the order scripted; the last answer repeats.
async fn receiver(answers: &[Answer]) -> (String, mpsc::UnboundedReceiver<Got>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Script {
        answers: Arc::new(Mutex::new(answers.iter().copied().collect())),
        tx,
    };
    let app = Router::new().fallback(record).with_state(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), rx)
}

async fn record(State(s): State<Script>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let answer = {
        let mut q = s.answers.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() > 1 {
            q.pop_front()
        } else {
            q.front().copied()
        }
    };
    let _ = s.tx.send(Got {
        path: uri.path().to_string(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    match answer.unwrap_or(Answer::Ok) {
        Answer::Ok => StatusCode::OK,
        Answer::Status(c) => StatusCode::from_u16(c).unwrap_or(StatusCode::IM_A_TEAPOT),
        Answer::Hang => std::future::pending().await,
    }
}

fn fast(attempts: u32) -> Tuning {
    Tuning {
        attempts,
        timeout: Duration::from_secs(5),
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        ..Tuning::default()
    }
}

async fn wait_stats(alerter: &Alerter, what: &str, f: impl Fn(&AlertStats) -> bool) -> AlertStats {
    let mut rx = alerter.watch_stats();
    let seen = match tokio::time::timeout(SAFETY, rx.wait_for(|s| f(s))).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    seen.unwrap_or_else(|| panic!("timed out waiting for {what}; stats {:?}", alerter.stats()))
}

async fn next(got: &mut mpsc::UnboundedReceiver<Got>) -> Got {
    match tokio::time::timeout(SAFETY, got.recv()).await {
        Ok(Some(g)) => g,
        _ => panic!("the receiver got no request"),
    }
}

fn drain(got: &mut mpsc::UnboundedReceiver<Got>) -> Vec<Got> {
    let mut v = Vec::new();
    while let Ok(g) = got.try_recv() {
        v.push(g);
    }
    v
}

fn count(m: &std::collections::BTreeMap<String, u64>, k: &str) -> u64 {
    m.get(k).copied().unwrap_or(0)
}

#[tokio::test]
async fn alerts_http_every_sink_gets_its_payload_shape() {
    let (base, mut got) = receiver(&[Answer::Ok]).await;
    let config = AlertsConfig {
        webhook_url: Some(format!("{base}/hook")),
        slack_webhook_url: Some(format!("{base}/slack")),
        discord_webhook_url: Some(format!("{base}/discord")),
        telegram: Some(TelegramConfig {
            bot_token: TOKEN.into(),
            chat_id: "-1001".into(),
            api_url: format!("{base}/tg/"),
        }),
        pagerduty: Some(PagerDutyConfig {
            routing_key: ROUTING.into(),
            events_url: format!("{base}/pd"),
        }),
        ..AlertsConfig::default()
    };
    let alerter = spawn(&config, "node-b").expect("alerts start");
    alerter.notify(
        Alert::new(
            AlertKind::NodeUnhealthy,
            "node-b",
            "cometbft height stuck at 1200",
        )
        .with_detail("check", "cometbft_height")
        .with_epoch(4),
    );
    let mut seen: Vec<Got> = Vec::new();
    for _ in 0..5 {
        seen.push(next(&mut got).await);
    }
    seen.sort_by(|a, b| a.path.cmp(&b.path));
    let paths: Vec<&str> = seen.iter().map(|g| g.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "/discord",
            "/hook",
            "/pd",
            "/slack",
            &format!("/tg/bot{TOKEN}/sendMessage")
        ]
    );
    for g in &seen {
        assert_eq!(g.content_type, "application/json", "{}", g.path);
    }
    let [discord, hook, pd, slack, tg] = &seen[..] else {
        unreachable!()
    };
    assert!(discord.body["content"]
        .as_str()
        .is_some_and(|c| c.contains("cometbft height stuck at 1200")));
    assert_eq!(
        discord.body["allowed_mentions"]["parse"],
        serde_json::json!([])
    );
    assert_eq!(hook.body["kind"], "node_unhealthy");
    assert_eq!(hook.body["severity"], "warning");
    assert_eq!(hook.body["node_id"], "node-b");
    assert_eq!(hook.body["epoch"], 4);
    assert_eq!(hook.body["details"]["check"], "cometbft_height");
    assert!(hook.body["at"].as_str().is_some_and(|a| a.ends_with('Z')));
    assert_eq!(pd.body["routing_key"], ROUTING);
    assert_eq!(pd.body["event_action"], "trigger");
    assert_eq!(pd.body["dedup_key"], "node-b/node_unhealthy");
    assert_eq!(pd.body["payload"]["source"], "node-b");
    assert_eq!(pd.body["payload"]["severity"], "warning");
    assert!(slack.body["text"]
        .as_str()
        .is_some_and(|t| t.starts_with("[WARNING] node_unhealthy on node-b (epoch 4)")));
    assert_eq!(slack.body["blocks"][0]["type"], "section");
    assert_eq!(tg.body["chat_id"], "-1001");
    assert_eq!(tg.body["text"], slack.body["text"]);
    let s = wait_stats(&alerter, "five deliveries", |s| {
        s.sent.values().sum::<u64>() == 5
    })
    .await;
    for sink in ["webhook", "slack", "discord", "telegram", "pagerduty"] {
        assert_eq!(count(&s.sent, sink), 1, "{sink}");
    }

    // The recovery resolves the same PagerDuty incident.
    alerter.notify(Alert::new(
        AlertKind::NodeRecovered,
        "node-b",
        "healthy again",
    ));
    let mut resolve = None;
    for _ in 0..5 {
        let g = next(&mut got).await;
        if g.path == "/pd" {
            resolve = Some(g);
        }
    }
    let resolve = resolve.expect("pagerduty got the recovery");
    assert_eq!(resolve.body["event_action"], "resolve");
    assert_eq!(resolve.body["dedup_key"], "node-b/node_unhealthy");
}

#[tokio::test]
async fn alerts_http_retry_on_500_then_success() {
    let (base, mut got) = receiver(&[Answer::Status(500), Answer::Status(503), Answer::Ok]).await;
    let sinks = vec![Sink::Webhook {
        url: format!("{base}/hook"),
    }];
    let alerter = spawn_with(sinks, fast(3), "node-a").expect("alerts start");
    alerter.notify(Alert::new(
        AlertKind::SelfFence,
        "node-a",
        "cut off; stopped signing",
    ));
    let s = wait_stats(&alerter, "delivery", |s| count(&s.sent, "webhook") == 1).await;
    assert_eq!(count(&s.failed, "webhook"), 0);
    let tries = drain(&mut got);
    assert_eq!(tries.len(), 3);
    assert!(tries
        .iter()
        .all(|g| g.body == tries[0].body && g.body["kind"] == "self_fence"));
}

#[tokio::test]
async fn alerts_http_gives_up_after_the_configured_tries() {
    let (base, mut got) = receiver(&[Answer::Status(500)]).await;
    let sinks = vec![Sink::Slack {
        url: format!("{base}/slack"),
    }];
    let alerter = spawn_with(sinks, fast(4), "node-a").expect("alerts start");
    alerter.notify(Alert::new(
        AlertKind::FailoverAborted,
        "node-a",
        "witness unknown",
    ));
    let s = wait_stats(&alerter, "give-up", |s| count(&s.failed, "slack") == 1).await;
    assert_eq!(count(&s.sent, "slack"), 0);
    assert_eq!(drain(&mut got).len(), 4, "exactly alerts.retries tries");
    // The sink is free again: the next alert goes out (and fails) on its own.
    alerter.notify(Alert::new(AlertKind::PeerLost, "node-a", "peer gone").about("b"));
    wait_stats(&alerter, "second give-up", |s| {
        count(&s.failed, "slack") == 2
    })
    .await;
    assert_eq!(drain(&mut got).len(), 4);
}

#[tokio::test]
async fn alerts_http_client_error_is_not_retried() {
    let (base, mut got) = receiver(&[Answer::Status(400)]).await;
    let sinks = vec![Sink::Discord {
        url: format!("{base}/discord"),
    }];
    let alerter = spawn_with(sinks, fast(3), "node-a").expect("alerts start");
    alerter.notify(Alert::new(AlertKind::PeerLost, "node-a", "peer gone"));
    wait_stats(&alerter, "give-up", |s| count(&s.failed, "discord") == 1).await;
    assert_eq!(drain(&mut got).len(), 1);
}

#[tokio::test]
async fn alerts_http_repeats_within_the_window_are_sent_once() {
    let (base, mut got) = receiver(&[Answer::Ok]).await;
    let sinks = vec![Sink::Webhook {
        url: format!("{base}/hook"),
    }];
    let alerter = spawn_with(sinks, fast(3), "node-a").expect("alerts start");
    let stale = || Alert::new(AlertKind::StateSyncStale, "node-a", "replica 40 s old");
    for _ in 0..3 {
        alerter.notify(stale());
    }
    alerter.notify(Alert::new(
        AlertKind::ValidatorMissingBlocks,
        "node-a",
        "missed 5",
    ));
    alerter.notify(stale());
    let s = wait_stats(&alerter, "two deliveries", |s| {
        count(&s.sent, "webhook") == 2
    })
    .await;
    // The channel is FIFO: by the second delivery every repeat has been looked at.
    let s = if s.deduplicated < 3 {
        wait_stats(&alerter, "dedup count", |s| s.deduplicated == 3).await
    } else {
        s
    };
    assert_eq!(s.deduplicated, 3);
    let kinds: Vec<Value> = drain(&mut got)
        .into_iter()
        .map(|g| g.body["kind"].clone())
        .collect();
    assert_eq!(kinds, vec!["state_sync_stale", "validator_missing_blocks"]);
}

/// The failover path announces, works for 2 s (simulated), announces again; the receiver
/// never answers. notify() takes no time, the failover ends exactly at its deadline, and the
/// alert task alone waits out its timeouts and gives up.
#[tokio::test(start_paused = true)]
async fn alerts_http_a_hung_receiver_does_not_delay_a_failover() {
    let (base, mut got) = receiver(&[Answer::Hang]).await;
    let sinks = vec![Sink::Webhook {
        url: format!("{base}/hook"),
    }];
    let tuning = Tuning {
        attempts: 3,
        timeout: Duration::from_secs(5),
        backoff_base: Duration::from_secs(1),
        ..Tuning::default()
    };
    let alerter = spawn_with(sinks, tuning, "node-b").expect("alerts start");
    let start = Instant::now();
    let path = {
        let alerter = alerter.clone();
        tokio::spawn(async move {
            alerter.notify(
                Alert::new(AlertKind::FailoverStarted, "node-b", "promoting").with_epoch(5),
            );
            let after_notify = Instant::now();
            tokio::time::sleep(Duration::from_secs(2)).await; // the activation's work
            alerter.notify(
                Alert::new(AlertKind::FailoverCompleted, "node-b", "signing").with_epoch(5),
            );
            (after_notify, Instant::now())
        })
    };
    let (after_notify, done) = path.await.expect("failover path task");
    assert_eq!(after_notify - start, Duration::ZERO);
    assert_eq!(done - start, Duration::from_secs(2));
    assert_eq!(alerter.stats().failed.get("webhook"), Some(&0));

    let first = next(&mut got).await;
    assert_eq!(first.body["kind"], "failover_started");
    // Tries at 0, 6 and 13 s (5 s timeout, then 1 s and 2 s of backoff); given up at 18 s.
    let s = wait_stats(&alerter, "give-up", |s| count(&s.failed, "webhook") >= 1).await;
    assert_eq!(count(&s.sent, "webhook"), 0);
    assert_eq!(Instant::now() - start, Duration::from_secs(18));
}

/// With the sink hung and the channel full, notify() still returns at once and counts drops.
#[tokio::test(start_paused = true)]
async fn alerts_http_a_full_queue_drops_instead_of_blocking() {
    let (base, _got) = receiver(&[Answer::Hang]).await;
    let sinks = vec![Sink::Webhook {
        url: format!("{base}/hook"),
    }];
    let tuning = Tuning {
        channel_bound: 4,
        queue_bound: 4,
        dedup_window: Duration::ZERO,
        ..Tuning::default()
    };
    let alerter = spawn_with(sinks, tuning, "node-b").expect("alerts start");
    let start = Instant::now();
    // Nothing yields between these calls, so the task cannot drain the channel meanwhile.
    for e in 0..10 {
        alerter.notify(Alert::new(AlertKind::DoubleSignPrevented, "node-b", "x").with_epoch(e));
    }
    assert_eq!(Instant::now(), start);
    assert_eq!(alerter.stats().dropped, 6);
}

#[test]
fn alerts_http_disabled_does_nothing_and_start_needs_a_runtime() {
    let off = Alerter::disabled();
    off.notify(Alert::new(AlertKind::PeerLost, "a", "x"));
    assert!(!off.is_enabled());
    assert_eq!(off.stats(), AlertStats::default());
    let err = spawn(&AlertsConfig::default(), "a").expect_err("no runtime here");
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

#[tokio::test]
async fn alerts_http_bad_url_names_the_key_not_the_secret() {
    let config = AlertsConfig {
        telegram: Some(TelegramConfig {
            bot_token: TOKEN.into(),
            chat_id: "1".into(),
            api_url: "ftp://example.invalid".into(),
        }),
        ..AlertsConfig::default()
    };
    let err = spawn(&config, "a").expect_err("ftp is refused");
    let msg = err.to_string();
    assert!(msg.contains("alerts.telegram.api_url"), "{msg}");
    assert!(!msg.contains("TOKEN-SECRET"), "{msg}");
}

#[tokio::test]
async fn alerts_http_no_sink_still_runs_and_dedups() {
    let alerter = spawn(&AlertsConfig::default(), "a").expect("alerts start");
    assert!(alerter.is_enabled());
    for _ in 0..2 {
        alerter.notify(Alert::new(AlertKind::PeerLost, "a", "x"));
    }
    let s = wait_stats(&alerter, "dedup", |s| s.deduplicated == 1).await;
    assert!(s.sent.is_empty());
}

#[test]
fn alerts_config_overrides_parse_and_are_checked() {
    let ok = syncguard_config::from_yaml_str(
        "server:\n  id: a\nalerts:\n  telegram:\n    bot_token: t\n    chat_id: c\n  pagerduty:\n    routing_key: r\n",
        "t",
    )
    .expect("valid");
    let tg = ok.config.alerts.telegram.expect("telegram");
    assert_eq!(tg.api_url, "https://api.telegram.org");
    let pd = ok.config.alerts.pagerduty.expect("pagerduty");
    assert_eq!(pd.events_url, "https://events.pagerduty.com/v2/enqueue");
    let bad = syncguard_config::from_yaml_str(
        "server:\n  id: a\nalerts:\n  telegram:\n    bot_token: t\n    chat_id: c\n    api_url: file:///x\n  pagerduty:\n    routing_key: r\n    events_url: nope\n",
        "t",
    )
    .expect_err("bad URLs");
    let msg = bad.to_string();
    assert!(msg.contains("alerts.telegram.api_url"), "{msg}");
    assert!(msg.contains("alerts.pagerduty.events_url"), "{msg}");
}
