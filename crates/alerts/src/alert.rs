//! [`Alert`]: one thing an operator should hear about, and its [`AlertKind`] and [`Severity`].
//! Alerts carry no secrets: only node ids, epochs, heights and words.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What happened. Serialized in snake_case (`failover_started`), the names of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    FailoverStarted,
    FailoverCompleted,
    FailoverAborted,
    Switchover,
    SelfFence,
    PromotionRefused,
    DoubleSignPrevented,
    NodeUnhealthy,
    NodeRecovered,
    PeerLost,
    PeerBack,
    StateSyncStale,
    ValidatorMissingBlocks,
}

impl AlertKind {
    pub const ALL: [AlertKind; 13] = [
        AlertKind::FailoverStarted,
        AlertKind::FailoverCompleted,
        AlertKind::FailoverAborted,
        AlertKind::Switchover,
        AlertKind::SelfFence,
        AlertKind::PromotionRefused,
        AlertKind::DoubleSignPrevented,
        AlertKind::NodeUnhealthy,
        AlertKind::NodeRecovered,
        AlertKind::PeerLost,
        AlertKind::PeerBack,
        AlertKind::StateSyncStale,
        AlertKind::ValidatorMissingBlocks,
    ];

    /// The snake_case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::FailoverStarted => "failover_started",
            AlertKind::FailoverCompleted => "failover_completed",
            AlertKind::FailoverAborted => "failover_aborted",
            AlertKind::Switchover => "switchover",
            AlertKind::SelfFence => "self_fence",
            AlertKind::PromotionRefused => "promotion_refused",
            AlertKind::DoubleSignPrevented => "double_sign_prevented",
            AlertKind::NodeUnhealthy => "node_unhealthy",
            AlertKind::NodeRecovered => "node_recovered",
            AlertKind::PeerLost => "peer_lost",
            AlertKind::PeerBack => "peer_back",
            AlertKind::StateSyncStale => "state_sync_stale",
            AlertKind::ValidatorMissingBlocks => "validator_missing_blocks",
        }
    }

    /// The severity an alert of this kind gets unless the caller says otherwise.
    pub fn default_severity(self) -> Severity {
        match self {
            AlertKind::FailoverStarted
            | AlertKind::FailoverAborted
            | AlertKind::SelfFence
            | AlertKind::DoubleSignPrevented
            | AlertKind::ValidatorMissingBlocks => Severity::Critical,
            AlertKind::FailoverCompleted
            | AlertKind::PromotionRefused
            | AlertKind::NodeUnhealthy
            | AlertKind::PeerLost
            | AlertKind::StateSyncStale => Severity::Warning,
            AlertKind::Switchover | AlertKind::NodeRecovered | AlertKind::PeerBack => {
                Severity::Info
            }
        }
    }

    /// The condition this kind ends: `node_recovered` ends `node_unhealthy`, `peer_back`
    /// ends `peer_lost`. PagerDuty resolves the incident the ended kind opened.
    pub fn resolves(self) -> Option<AlertKind> {
        match self {
            AlertKind::NodeRecovered => Some(AlertKind::NodeUnhealthy),
            AlertKind::PeerBack => Some(AlertKind::PeerLost),
            _ => None,
        }
    }

    /// The kind that ends this one (the reverse of [`AlertKind::resolves`]).
    pub fn resolved_by(self) -> Option<AlertKind> {
        match self {
            AlertKind::NodeUnhealthy => Some(AlertKind::NodeRecovered),
            AlertKind::PeerLost => Some(AlertKind::PeerBack),
            _ => None,
        }
    }

    /// Lasting conditions (repeated every health round while they hold) rather than one-off
    /// transitions. A transition's default dedup key includes the epoch, so two failovers
    /// in one window are both sent; a condition's does not, so a flapping epoch cannot
    /// split a `node_unhealthy` from its `node_recovered`.
    pub fn is_condition(self) -> bool {
        matches!(
            self,
            AlertKind::PromotionRefused
                | AlertKind::NodeUnhealthy
                | AlertKind::NodeRecovered
                | AlertKind::PeerLost
                | AlertKind::PeerBack
                | AlertKind::StateSyncStale
                | AlertKind::ValidatorMissingBlocks
        )
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How loud. PagerDuty gets the same words (`info`, `warning`, `critical`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert. Build it with [`Alert::new`] and the `with_*` methods; the fields are public
/// so a caller may also set the dedup key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub kind: AlertKind,
    pub severity: Severity,
    /// The node raising the alert (`server.id`).
    pub node_id: String,
    /// What the alert is about besides the node itself: the peer id for `peer_lost`, the
    /// reason label for `promotion_refused`, ... Empty when the node itself is the subject.
    pub subject: String,
    /// Operator words: what happened and what to look at.
    pub summary: String,
    /// Facts for machines and for the curious (heights, reason, peer, ...).
    pub details: BTreeMap<String, String>,
    pub epoch: Option<u64>,
    /// Wall-clock time, shown in payloads only (de-duplication uses the monotonic clock).
    pub at: SystemTime,
    /// Alerts with the same key inside `alerts.dedup_window` are sent once.
    /// Default: see [`Alert::default_key`].
    pub dedup_key: String,
}

impl Alert {
    /// An alert with the kind's default severity, stamped now, about the node itself.
    pub fn new(kind: AlertKind, node_id: impl Into<String>, summary: impl Into<String>) -> Self {
        let node_id = node_id.into();
        let dedup_key = Self::default_key(&node_id, kind, "", None);
        Self {
            kind,
            severity: kind.default_severity(),
            node_id,
            subject: String::new(),
            summary: summary.into(),
            details: BTreeMap::new(),
            epoch: None,
            at: SystemTime::now(),
            dedup_key,
        }
    }

    /// `node/kind[/subject][@epoch]`; the epoch only for transitions (see
    /// [`AlertKind::is_condition`]).
    pub fn default_key(
        node_id: &str,
        kind: AlertKind,
        subject: &str,
        epoch: Option<u64>,
    ) -> String {
        let mut key = format!("{node_id}/{kind}");
        if !subject.is_empty() {
            key.push('/');
            key.push_str(subject);
        }
        if let (false, Some(e)) = (kind.is_condition(), epoch) {
            key.push_str(&format!("@{e}"));
        }
        key
    }

    fn rekey(mut self) -> Self {
        self.dedup_key = Self::default_key(&self.node_id, self.kind, &self.subject, self.epoch);
        self
    }

    /// Sets what the alert is about (peer id, reason label) and recomputes the dedup key.
    pub fn about(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self.rekey()
    }

    /// Sets the epoch and recomputes the dedup key.
    pub fn with_epoch(mut self, epoch: u64) -> Self {
        self.epoch = Some(epoch);
        self.rekey()
    }

    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    pub fn with_detail(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.details.insert(key.into(), value.to_string());
        self
    }

    pub fn at(mut self, at: SystemTime) -> Self {
        self.at = at;
        self
    }

    /// The PagerDuty incident this alert belongs to: its own dedup key, except that a
    /// `node_recovered` / `peer_back` names the `node_unhealthy` / `peer_lost` it ends.
    pub fn incident_key(&self) -> String {
        match self.kind.resolves() {
            Some(opened) => Self::default_key(&self.node_id, opened, &self.subject, None),
            None => self.dedup_key.clone(),
        }
    }

    /// The dedup key of the opposite condition (recovered ↔ unhealthy, back ↔ lost): when
    /// this alert is sent, that one may be sent again at once (a relapse is news).
    pub fn counterpart_key(&self) -> Option<String> {
        let other = self.kind.resolves().or(self.kind.resolved_by())?;
        Some(Self::default_key(&self.node_id, other, &self.subject, None))
    }

    /// `at` in RFC 3339 with milliseconds, UTC; clamped to 1970..9999 so it never fails.
    pub fn at_rfc3339(&self) -> String {
        // humantime refuses times before 1970 and after 9999; a clock that wrong should
        // not cost us the alert.
        const MAX: Duration = Duration::from_secs(253_402_300_799);
        let since = self.at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let clamped = UNIX_EPOCH + since.min(MAX);
        humantime::format_rfc3339_millis(clamped).to_string()
    }
}

/// Which alert a failover record raises, by `RecordTag::as_str()` (the alerts crate does
/// not depend on the failover crate). `None`: no alert (progress notes, and demotions,
/// which the node taking the role reports).
pub fn alert_for_record_tag(tag: &str) -> Option<(AlertKind, Severity)> {
    Some(match tag {
        "failover_started" => (AlertKind::FailoverStarted, Severity::Critical),
        "failover_completed" => (AlertKind::FailoverCompleted, Severity::Warning),
        "failover_aborted" => (AlertKind::FailoverAborted, Severity::Critical),
        "switchover_completed" => (AlertKind::Switchover, Severity::Info),
        "switchover_aborted" => (AlertKind::Switchover, Severity::Warning),
        "self_fenced" => (AlertKind::SelfFence, Severity::Critical),
        "promotion_refused" => (AlertKind::PromotionRefused, Severity::Warning),
        "double_sign_prevented" => (AlertKind::DoubleSignPrevented, Severity::Critical),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_kind_names_match_serde_and_the_contract() {
        let contract = "failover_started, failover_completed, failover_aborted, switchover, \
            self_fence, promotion_refused, double_sign_prevented, node_unhealthy, \
            node_recovered, peer_lost, peer_back, state_sync_stale, validator_missing_blocks";
        let names: Vec<&str> = AlertKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.join(", "), contract);
        for k in AlertKind::ALL {
            assert_eq!(
                serde_json::to_value(k).ok(),
                Some(serde_json::Value::String(k.as_str().into()))
            );
        }
    }

    #[test]
    fn alerts_recovery_pairs_share_the_incident_key() {
        let down = Alert::new(AlertKind::PeerLost, "a", "peer b lost").about("b");
        let up = Alert::new(AlertKind::PeerBack, "a", "peer b back").about("b");
        assert_eq!(up.incident_key(), down.incident_key());
        assert_ne!(up.dedup_key, down.dedup_key);
        assert_eq!(up.counterpart_key(), Some(down.dedup_key.clone()));
        assert_eq!(down.counterpart_key(), Some(up.dedup_key.clone()));
        let other_peer = Alert::new(AlertKind::PeerBack, "a", "peer c back").about("c");
        assert_ne!(other_peer.incident_key(), down.incident_key());
    }

    #[test]
    fn alerts_transitions_are_keyed_by_epoch_conditions_are_not() {
        let f7 = Alert::new(AlertKind::FailoverStarted, "a", "x").with_epoch(7);
        let f8 = Alert::new(AlertKind::FailoverStarted, "a", "x").with_epoch(8);
        assert_ne!(f7.dedup_key, f8.dedup_key);
        let u7 = Alert::new(AlertKind::NodeUnhealthy, "a", "x").with_epoch(7);
        let u8 = Alert::new(AlertKind::NodeUnhealthy, "a", "x").with_epoch(8);
        assert_eq!(u7.dedup_key, u8.dedup_key);
    }

    #[test]
    fn alerts_timestamps_never_fail() {
        let a = Alert::new(AlertKind::Switchover, "a", "x").at(UNIX_EPOCH);
        assert_eq!(a.at_rfc3339(), "1970-01-01T00:00:00.000Z");
        let early = a.clone().at(UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(early.at_rfc3339(), "1970-01-01T00:00:00.000Z");
        let late = a.at(UNIX_EPOCH + Duration::from_secs(400_000_000_000));
        assert!(late.at_rfc3339().starts_with("9999-12-31T23:59:59"));
    }

    #[test]
    fn alerts_record_tags_map_to_kinds() {
        assert_eq!(
            alert_for_record_tag("self_fenced"),
            Some((AlertKind::SelfFence, Severity::Critical))
        );
        assert_eq!(alert_for_record_tag("other"), None);
        assert_eq!(alert_for_record_tag("demoted"), None);
        assert_eq!(alert_for_record_tag("switchover_started"), None);
    }
}
