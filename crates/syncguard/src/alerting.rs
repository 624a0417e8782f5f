//! What the daemon alerts on, decided by pure functions: the failover machine's records (one
//! alert per meaningful record, sent by the driver) and the conditions in the shared view
//! (edge-triggered by a watcher task: node unhealthy/recovered, peer lost/back, state sync
//! stale, validator missing blocks). Delivery, retries and de-duplication are the
//! `syncguard-alerts` crate's; `Alerter::notify` never blocks, so nothing here can hold up a
//! failover.

use std::time::{Duration, SystemTime};

use syncguard_alerts::{alert_for_record_tag, Alert, AlertKind, Alerter, Severity};
use syncguard_failover::{Record, RecordKind, RecordTag};
use syncguard_health::{names, CheckStatus, Verdict};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::readings;
use crate::view::{NodeView, Shared};

/// Consecutive commits without the validator's signature before alerting.
pub const MISSED_BLOCKS_ALERT: u64 = 3;

/// Refusals worth waking someone for: the node itself cannot take the role, or the evidence
/// is missing. Routine ones (the peer holds the role, waiting out the window, paused) are
/// only recorded.
const ALERTING_REFUSALS: &[&str] = &[
    "own_unhealthy",
    "own_stalled",
    "own_not_advancing",
    "own_no_health",
    "witness_incomplete",
    "no_right",
    "peer_mismatch",
];

/// The alert for one machine record, if it deserves one.
pub fn record_alert(node_id: &str, r: &Record) -> Option<Alert> {
    let (kind, severity) = match (r.kind, r.tag) {
        (_, RecordTag::PromotionRefused) if !ALERTING_REFUSALS.contains(&r.reason.as_str()) => {
            return None
        }
        // Alerts the machine raises outside a tagged transition: a verify failure means the
        // validator is missing blocks; the rest (a failed activation or stop, an epoch that
        // could not be persisted) leave the cluster without a confirmed signer.
        (RecordKind::Alert, RecordTag::Other) if r.reason == "verify_failed" => {
            (AlertKind::ValidatorMissingBlocks, Severity::Critical)
        }
        (RecordKind::Alert, RecordTag::Other) => (AlertKind::FailoverAborted, Severity::Critical),
        (_, tag) => alert_for_record_tag(tag.as_str())?,
    };
    let mut alert = Alert::new(kind, node_id, r.why.clone())
        .with_severity(severity)
        .with_epoch(r.epoch)
        .with_detail("role", r.role)
        .with_detail("record", r.tag.as_str());
    if !r.reason.is_empty() {
        alert = alert.about(&r.reason).with_detail("reason", &r.reason);
    }
    if !r.heights.is_empty() {
        let heights: Vec<String> = r.heights.iter().map(u64::to_string).collect();
        alert = alert.with_detail("heights", heights.join(","));
    }
    Some(alert)
}

/// The conditions the watcher alerts on, read from the view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    /// `None` while the verdict is still `Starting`.
    pub healthy: Option<bool>,
    /// The health summary (why it is unhealthy).
    pub health_summary: String,
    /// `(peer id, reachable)`.
    pub peer: Option<(String, bool)>,
    /// The state-sync lag check warns.
    pub state_sync_stale: bool,
    /// What the lag check says.
    pub state_sync_detail: String,
    /// Consecutive recent commits without the validator's signature.
    pub missed_in_row: u64,
    /// The last height the validator signed, if seen.
    pub last_signed: Option<u64>,
}

/// Reads the conditions out of a view (pure).
pub fn conditions(v: &NodeView, peer_id: Option<&str>, now: SystemTime) -> Conditions {
    let r = readings(v, peer_id, now);
    let (healthy, summary) = match &v.health {
        Some(h) if h.verdict == Verdict::Starting => (None, h.summary.clone()),
        Some(h) => (Some(h.healthy), h.summary.clone()),
        None => (None, String::new()),
    };
    let lag = v
        .health
        .as_ref()
        .and_then(|h| h.check(names::STATE_SYNC_LAG).cloned());
    Conditions {
        healthy,
        health_summary: summary,
        peer: r.peer,
        state_sync_stale: lag.as_ref().is_some_and(|c| c.status == CheckStatus::Warn),
        state_sync_detail: lag
            .map(|c| format!("{} ({})", c.observed, c.threshold))
            .unwrap_or_default(),
        missed_in_row: r.validator_missed_blocks.unwrap_or(0),
        last_signed: r.validator_last_signed_height,
    }
}

/// The alerts for a change of conditions (pure, edge-triggered: a lasting condition alerts
/// once, when it starts; its end alerts when it has a matching "back" kind).
pub fn condition_alerts(node_id: &str, prev: &Conditions, next: &Conditions) -> Vec<Alert> {
    let mut out = Vec::new();
    match (prev.healthy, next.healthy) {
        (Some(true) | None, Some(false)) => out.push(Alert::new(
            AlertKind::NodeUnhealthy,
            node_id,
            format!("{node_id}'s Story node is {}", next.health_summary),
        )),
        (Some(false), Some(true)) => out.push(Alert::new(
            AlertKind::NodeRecovered,
            node_id,
            format!("{node_id}'s Story node is healthy again"),
        )),
        _ => {}
    }
    if let (Some((_, was)), Some((peer, is))) = (&prev.peer, &next.peer) {
        match (was, is) {
            (true, false) => out.push(
                Alert::new(
                    AlertKind::PeerLost,
                    node_id,
                    format!("{node_id} cannot reach its peer {peer}"),
                )
                .about(peer),
            ),
            (false, true) => out.push(
                Alert::new(
                    AlertKind::PeerBack,
                    node_id,
                    format!("{node_id} reaches its peer {peer} again"),
                )
                .about(peer),
            ),
            _ => {}
        }
    }
    if next.state_sync_stale && !prev.state_sync_stale {
        out.push(Alert::new(
            AlertKind::StateSyncStale,
            node_id,
            format!(
                "{node_id}'s copy of the active's signing state is stale: {}",
                next.state_sync_detail
            ),
        ));
    }
    if next.missed_in_row >= MISSED_BLOCKS_ALERT && prev.missed_in_row < MISSED_BLOCKS_ALERT {
        let last = next
            .last_signed
            .map_or("not in the recent commits".to_string(), |h| {
                format!("at height {h}")
            });
        out.push(
            Alert::new(
                AlertKind::ValidatorMissingBlocks,
                node_id,
                format!(
                    "the validator's signature is missing from the last {} commits (last signed \
                     {last})",
                    next.missed_in_row
                ),
            )
            .with_detail("missed_in_row", next.missed_in_row),
        );
    }
    out
}

/// Watches the view every `interval` and sends the alerts for each change of conditions.
pub fn spawn_watcher(
    shared: Shared,
    alerter: Alerter,
    peer_id: Option<String>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut prev: Option<Conditions> = None;
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            let (node_id, next) = shared.read(|v| {
                (
                    v.node_id.clone(),
                    conditions(v, peer_id.as_deref(), SystemTime::now()),
                )
            });
            let before = prev.take().unwrap_or_default();
            for alert in condition_alerts(&node_id, &before, &next) {
                alerter.notify(alert);
            }
            prev = Some(next);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncguard_failover::Role;

    fn record(kind: RecordKind, tag: RecordTag, reason: &str) -> Record {
        Record {
            at_ms: 1,
            kind,
            role: Role::Passive,
            epoch: 3,
            why: "words for the operator".into(),
            heights: vec![40, 42],
            tag,
            reason: reason.into(),
        }
    }

    #[test]
    fn story_alerts_from_records_follow_their_tags() {
        let a = record_alert(
            "node-b",
            &record(
                RecordKind::RoleChange,
                RecordTag::FailoverStarted,
                "peer_lost",
            ),
        )
        .unwrap();
        assert_eq!(a.kind, AlertKind::FailoverStarted);
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.epoch, Some(3));
        assert_eq!(a.details.get("heights").map(String::as_str), Some("40,42"));
        assert_eq!(
            a.details.get("reason").map(String::as_str),
            Some("peer_lost")
        );
        let a = record_alert(
            "node-b",
            &record(
                RecordKind::Refusal,
                RecordTag::DoubleSignPrevented,
                "witness_signed",
            ),
        )
        .unwrap();
        assert_eq!(a.kind, AlertKind::DoubleSignPrevented);
        // Routine refusals and progress notes send nothing.
        for (kind, tag, reason) in [
            (
                RecordKind::Refusal,
                RecordTag::PromotionRefused,
                "peer_holds",
            ),
            (RecordKind::Refusal, RecordTag::PromotionRefused, "waiting"),
            (RecordKind::Refusal, RecordTag::PromotionRefused, "paused"),
            (RecordKind::Info, RecordTag::Other, ""),
            (RecordKind::RoleChange, RecordTag::Demoted, "handover"),
            (
                RecordKind::RoleChange,
                RecordTag::SwitchoverStarted,
                "handover",
            ),
        ] {
            assert!(
                record_alert("n", &record(kind, tag, reason)).is_none(),
                "{tag:?} {reason}"
            );
        }
        let a = record_alert(
            "n",
            &record(
                RecordKind::Refusal,
                RecordTag::PromotionRefused,
                "own_unhealthy",
            ),
        )
        .unwrap();
        assert_eq!(a.kind, AlertKind::PromotionRefused);
        let a = record_alert(
            "n",
            &record(RecordKind::Alert, RecordTag::Other, "verify_failed"),
        )
        .unwrap();
        assert_eq!(a.kind, AlertKind::ValidatorMissingBlocks);
        let a = record_alert("n", &record(RecordKind::Alert, RecordTag::Other, "")).unwrap();
        assert_eq!(
            (a.kind, a.severity),
            (AlertKind::FailoverAborted, Severity::Critical)
        );
    }

    #[test]
    fn story_condition_alerts_fire_on_edges_only() {
        let calm = Conditions {
            healthy: Some(true),
            peer: Some(("node-a".into(), true)),
            ..Conditions::default()
        };
        assert!(condition_alerts("node-b", &calm, &calm).is_empty());
        let bad = Conditions {
            healthy: Some(false),
            health_summary: "unhealthy after 3 consecutive failed rounds: x".into(),
            peer: Some(("node-a".into(), false)),
            state_sync_stale: true,
            missed_in_row: 4,
            ..Conditions::default()
        };
        let kinds: Vec<AlertKind> = condition_alerts("node-b", &calm, &bad)
            .iter()
            .map(|a| a.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                AlertKind::NodeUnhealthy,
                AlertKind::PeerLost,
                AlertKind::StateSyncStale,
                AlertKind::ValidatorMissingBlocks
            ]
        );
        // The same bad conditions again: nothing new.
        assert!(condition_alerts("node-b", &bad, &bad).is_empty());
        let kinds: Vec<AlertKind> = condition_alerts("node-b", &bad, &calm)
            .iter()
            .map(|a| a.kind)
            .collect();
        assert_eq!(kinds, [AlertKind::NodeRecovered, AlertKind::PeerBack]);
        // A node that starts unhealthy alerts; one that starts healthy does not.
        let start = Conditions::default();
        assert_eq!(condition_alerts("n", &start, &bad).len(), 3);
        assert!(condition_alerts("n", &start, &calm).is_empty());
    }
}
