//! `GET /metrics`: the daemon's state in the Prometheus text format (0.0.4), with
//! prometheus-client.
//!
//! Two kinds of numbers:
//! - **counters** (failovers, switchovers, self-fences, refused promotions, double signs
//!   prevented, each by `reason`) are bumped by [`Metrics::count_record`], which
//!   [`crate::view::Shared::push_record`] calls for every failover record — so each is
//!   counted exactly once, whoever pushed it;
//! - **gauges** are read from a [`NodeView`] snapshot at scrape time by the pure
//!   [`readings`], so a value is never staler than the view itself.
//!
//! Alert counters belong to the alerts crate; the daemon hands a closure that reads them
//! ([`Metrics::set_alert_source`]), called at scrape time.
//!
//! A gauge whose value is unknown (no health round yet, no peer, no replica) has no sample:
//! an absent series reads as "no data" in Prometheus, where a made-up 0 would read as a fact.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use prometheus_client::encoding::{prometheus_text, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use syncguard_config::SiteRole;
use syncguard_failover::{Record, RecordTag, Role};
use syncguard_health::{names, CheckStatus};
use syncguard_validator::Hrs;

use crate::view::NodeView;

/// `Content-Type` of the body [`Metrics::render`] writes.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Every role `syncguard_role` reports, in this order (`monitor` = no failover machine: no
/// peer configured, this node only watches its own health).
pub const ROLES: [&str; 7] = [
    "passive",
    "promoting",
    "active",
    "demoting",
    "fenced",
    "paused",
    "monitor",
];

/// Every check status `syncguard_health_check_status` reports.
/// Every metric family `/metrics` exports (counters with their `_total`): the names the
/// Prometheus rules and the Grafana dashboard in `deploy/` may use.
pub const FAMILIES: [&str; 25] = [
    "syncguard_info",
    "syncguard_role",
    "syncguard_epoch",
    "syncguard_node_healthy",
    "syncguard_health_check_status",
    "syncguard_cometbft_height",
    "syncguard_evm_height",
    "syncguard_cometbft_peers",
    "syncguard_evm_peers",
    "syncguard_state_height",
    "syncguard_state_round",
    "syncguard_state_step",
    "syncguard_state_sync_lag_seconds",
    "syncguard_peer_reachable",
    "syncguard_validator_last_signed_height",
    "syncguard_validator_missed_blocks",
    "syncguard_failovers_total",
    "syncguard_switchovers_total",
    "syncguard_self_fences_total",
    "syncguard_promotions_refused_total",
    "syncguard_double_signs_prevented_total",
    "syncguard_alerts_sent_total",
    "syncguard_alerts_failed_total",
    "syncguard_alerts_dropped_total",
    "syncguard_uptime_seconds",
];

pub const CHECK_STATUSES: [&str; 4] = ["ok", "warn", "fail", "unknown"];

/// The health checks always present in `syncguard_health_check_status` (as `unknown` before
/// the first round), so a dashboard's series exist from the start.
pub const CHECKS: [&str; 12] = [
    names::COMET_REACHABLE,
    names::COMET_CATCHING_UP,
    names::COMET_HEIGHT,
    names::COMET_BLOCK_TIME,
    names::COMET_PEERS,
    names::EVM_REACHABLE,
    names::EVM_SYNCING,
    names::EVM_HEIGHT,
    names::EVM_BLOCK_TIME,
    names::EVM_PEERS,
    names::STATE_SYNC_LAG,
    names::DISK_FREE,
];

/// The `reason` of a record with none.
pub const NO_REASON: &str = "unspecified";

/// Alert delivery totals, as the alerts crate counts them (per sink name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertCounts {
    pub sent: BTreeMap<String, u64>,
    pub failed: BTreeMap<String, u64>,
    pub dropped: u64,
}

type AlertSource = Arc<dyn Fn() -> AlertCounts + Send + Sync>;
type Labels = Vec<(&'static str, String)>;

/// A family whose HELP and TYPE are written even without a sample (prometheus-client leaves
/// empty families out), so every name is documented from the first scrape and a counter
/// that never fired is visibly "none yet" rather than unknown.
#[derive(Debug)]
struct Described<M>(M);

impl<M: EncodeMetric> EncodeMetric for Described<M> {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

/// The daemon's counters, and the encoder of `/metrics`.
pub struct Metrics {
    failovers: Family<Labels, Counter>,
    switchovers: Family<Labels, Counter>,
    self_fences: Family<Labels, Counter>,
    promotions_refused: Family<Labels, Counter>,
    double_signs_prevented: Family<Labels, Counter>,
    /// The reasons of the failover and the switchover in progress, for their completion
    /// records when those carry none.
    started: Mutex<Started>,
    alert_source: RwLock<Option<AlertSource>>,
}

#[derive(Debug, Default)]
struct Started {
    failover: String,
    switchover: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Which counter a record bumps, if any. A failover or a switchover is counted when it
/// completes (an aborted one did not move the role); refusals, self-fences and prevented
/// double signs when they happen.
pub fn counter_for(tag: RecordTag) -> Option<&'static str> {
    match tag {
        RecordTag::FailoverCompleted => Some("syncguard_failovers_total"),
        RecordTag::SwitchoverCompleted => Some("syncguard_switchovers_total"),
        RecordTag::SelfFenced => Some("syncguard_self_fences_total"),
        RecordTag::PromotionRefused => Some("syncguard_promotions_refused_total"),
        RecordTag::DoubleSignPrevented => Some("syncguard_double_signs_prevented_total"),
        _ => None,
    }
}

fn reason_label(reason: &str) -> Labels {
    let reason = reason.trim();
    let reason = if reason.is_empty() { NO_REASON } else { reason };
    vec![("reason", reason.to_string())]
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            failovers: Family::default(),
            switchovers: Family::default(),
            self_fences: Family::default(),
            promotions_refused: Family::default(),
            double_signs_prevented: Family::default(),
            started: Mutex::new(Started::default()),
            alert_source: RwLock::new(None),
        }
    }

    /// Counts one failover record (see [`counter_for`]); records of other tags count nothing.
    /// A completion without a reason takes the reason of the start it completes.
    pub fn count_record(&self, record: &Record) {
        let mut reason = record.reason.trim().to_string();
        {
            let mut started = match self.started.lock() {
                Ok(s) => s,
                Err(poisoned) => poisoned.into_inner(),
            };
            match record.tag {
                RecordTag::FailoverStarted => started.failover = reason.clone(),
                RecordTag::SwitchoverStarted => started.switchover = reason.clone(),
                RecordTag::FailoverCompleted if reason.is_empty() => {
                    reason = std::mem::take(&mut started.failover);
                }
                RecordTag::SwitchoverCompleted if reason.is_empty() => {
                    reason = std::mem::take(&mut started.switchover);
                }
                _ => {}
            }
        }
        let family = match counter_for(record.tag) {
            Some("syncguard_failovers_total") => &self.failovers,
            Some("syncguard_switchovers_total") => &self.switchovers,
            Some("syncguard_self_fences_total") => &self.self_fences,
            Some("syncguard_promotions_refused_total") => &self.promotions_refused,
            Some("syncguard_double_signs_prevented_total") => &self.double_signs_prevented,
            _ => return,
        };
        family.get_or_create(&reason_label(&reason)).inc();
    }

    /// Where the alert counters come from: called at every scrape.
    pub fn set_alert_source(&self, source: impl Fn() -> AlertCounts + Send + Sync + 'static) {
        let source: AlertSource = Arc::new(source);
        match self.alert_source.write() {
            Ok(mut s) => *s = Some(source),
            Err(poisoned) => *poisoned.into_inner() = Some(source),
        }
    }

    fn alert_counts(&self) -> Option<AlertCounts> {
        let source = match self.alert_source.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        source.map(|f| f())
    }

    /// The `/metrics` body for this view, `peer_id` being the configured peer (the view
    /// only knows its id while it answers).
    pub fn render(&self, view: &NodeView, peer_id: Option<&str>, now: SystemTime) -> String {
        let r = readings(view, peer_id, now);
        let mut reg = Registry::default();
        register_readings(&mut reg, &r);
        self.register_counters(&mut reg);
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would only cut the body short.
        if let Err(e) = prometheus_text::encode(&mut out, &reg) {
            tracing::error!("encoding /metrics failed: {e}");
        }
        out
    }

    fn register_counters(&self, reg: &mut Registry) {
        // Registered under the name without `_total`: the encoder appends it to counters.
        reg.register(
            "syncguard_failovers",
            "Completed unplanned failovers that made this node active, by reason",
            Described(self.failovers.clone()),
        );
        reg.register(
            "syncguard_switchovers",
            "Completed planned switchovers (operator or fallback) seen by this node, by reason",
            Described(self.switchovers.clone()),
        );
        reg.register(
            "syncguard_self_fences",
            "Times this node stopped its own signing (S4 self-fence), by reason",
            Described(self.self_fences.clone()),
        );
        reg.register(
            "syncguard_promotions_refused",
            "Times this node declined to promote, by reason (recorded when the reason changes)",
            Described(self.promotions_refused.clone()),
        );
        reg.register(
            "syncguard_double_signs_prevented",
            "Times a step that could have signed twice was refused or undone, by reason",
            Described(self.double_signs_prevented.clone()),
        );
        let alerts = self.alert_counts().unwrap_or_default();
        let sent: Family<Labels, Counter> = Family::default();
        for (sink, n) in &alerts.sent {
            sent.get_or_create(&vec![("sink", sink.clone())]).inc_by(*n);
        }
        let failed: Family<Labels, Counter> = Family::default();
        for (sink, n) in &alerts.failed {
            failed
                .get_or_create(&vec![("sink", sink.clone())])
                .inc_by(*n);
        }
        let dropped: Counter = Counter::default();
        dropped.inc_by(alerts.dropped);
        reg.register(
            "syncguard_alerts_sent",
            "Alerts delivered, by sink",
            Described(sent),
        );
        reg.register(
            "syncguard_alerts_failed",
            "Alert deliveries that failed after their retries, by sink",
            Described(failed),
        );
        reg.register(
            "syncguard_alerts_dropped",
            "Alerts dropped because the alert queue was full",
            dropped,
        );
    }
}

/// What the gauges show, read from a view. Pure: the unit of the mapping's tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Readings {
    pub node_id: String,
    pub version: &'static str,
    pub site_role: String,
    /// One of [`ROLES`].
    pub role: &'static str,
    pub epoch: Option<u64>,
    pub healthy: bool,
    /// `(check, status)` with status one of [`CHECK_STATUSES`]; every name of [`CHECKS`].
    pub checks: Vec<(String, &'static str)>,
    pub cometbft_height: Option<u64>,
    pub evm_height: Option<u64>,
    pub cometbft_peers: Option<u64>,
    pub evm_peers: Option<u64>,
    pub local_state: Option<Hrs>,
    pub replica_state: Option<Hrs>,
    pub state_sync_lag_seconds: Option<f64>,
    /// `(peer id, reachable)`.
    pub peer: Option<(String, bool)>,
    pub validator_last_signed_height: Option<u64>,
    pub validator_missed_blocks: Option<u64>,
    pub uptime_seconds: f64,
}

pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::Passive => "passive",
        Role::Promoting => "promoting",
        Role::Active => "active",
        Role::Demoting => "demoting",
        Role::Fenced => "fenced",
        Role::Paused => "paused",
    }
}

pub fn status_label(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Ok => "ok",
        CheckStatus::Warn => "warn",
        CheckStatus::Fail => "fail",
        CheckStatus::Unknown => "unknown",
    }
}

/// The number in an observation of the form `{prefix}N…` (e.g. `height 42, network …`).
fn number_after(observed: &str, prefix: &str) -> Option<u64> {
    let rest = observed.trim().strip_prefix(prefix)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The number in an observation of the form `N{suffix}` (e.g. `7 peers`).
fn number_before(observed: &str, suffix: &str) -> Option<u64> {
    observed.trim().strip_suffix(suffix)?.trim().parse().ok()
}

/// Gauge values from a view at `now`.
pub fn readings(view: &NodeView, peer_id: Option<&str>, now: SystemTime) -> Readings {
    let health = view.health.as_ref();
    let observed = |name: &str| {
        health
            .and_then(|h| h.check(name))
            .map(|c| c.observed.as_str())
    };
    let mut checks: Vec<(String, &'static str)> = CHECKS
        .iter()
        .map(|name| {
            let status = health
                .and_then(|h| h.check(name))
                .map_or("unknown", |c| status_label(c.status));
            ((*name).to_string(), status)
        })
        .collect();
    // Checks a newer health crate adds are shown too.
    for c in health.map(|h| h.checks.as_slice()).unwrap_or_default() {
        if !CHECKS.contains(&c.name.as_str()) {
            checks.push((c.name.clone(), status_label(c.status)));
        }
    }
    // The number the daemon tells its peer first; else the reachability probe's `height N`.
    let cometbft_height = view
        .own_peer_status
        .as_ref()
        .and_then(|p| p.latest_height)
        .or_else(|| number_after(observed(names::COMET_REACHABLE)?, "height "));
    let evm_height = observed(names::EVM_REACHABLE).and_then(|o| number_after(o, "block "));
    let peer = match (&view.failover, peer_id) {
        (Some(f), configured) => {
            let id = f
                .peer
                .as_ref()
                .map(|p| p.node_id.to_string())
                .or_else(|| configured.map(str::to_string));
            id.map(|id| (id, f.peer_unreachable_for_ms.is_none() && f.peer.is_some()))
        }
        // No failover machine: nothing polls the peer, so reachability is unknown.
        (None, _) => None,
    };
    Readings {
        node_id: view.node_id.clone(),
        version: env!("CARGO_PKG_VERSION"),
        site_role: match view.site_role {
            SiteRole::Primary => "primary",
            SiteRole::Secondary => "secondary",
        }
        .to_string(),
        role: view
            .failover
            .as_ref()
            .map_or("monitor", |f| role_label(f.role)),
        epoch: view.failover.as_ref().map(|f| f.epoch),
        healthy: health.is_some_and(|h| h.healthy),
        checks,
        cometbft_height,
        evm_height,
        cometbft_peers: observed(names::COMET_PEERS).and_then(|o| number_before(o, "peers")),
        evm_peers: observed(names::EVM_PEERS).and_then(|o| number_before(o, "peers")),
        local_state: view.local_state,
        replica_state: view.replica,
        state_sync_lag_seconds: view
            .replica_synced_at
            .map(|t| now.duration_since(t).unwrap_or_default().as_secs_f64()),
        peer,
        validator_last_signed_height: view.signing.validator_last_signed,
        validator_missed_blocks: view.signing.validator_missed_in_row,
        uptime_seconds: now
            .duration_since(view.started_at)
            .unwrap_or_default()
            .as_secs_f64(),
    }
}

fn gauge_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One gauge family's samples, written in the order given (prometheus-client's `Family`
/// writes in hash order, which makes a scrape hard to read by eye). Written with its HELP
/// and TYPE even when it has no sample.
#[derive(Debug, Default)]
struct Gauges(Vec<(Labels, GaugeValue)>);

#[derive(Debug, Clone, Copy)]
enum GaugeValue {
    Int(i64),
    Float(f64),
}

impl Gauges {
    fn one(v: Option<u64>) -> Gauges {
        Gauges(
            v.map(|v| (Vec::new(), GaugeValue::Int(gauge_i64(v))))
                .into_iter()
                .collect(),
        )
    }

    fn push(&mut self, labels: Labels, v: i64) {
        self.0.push((labels, GaugeValue::Int(v)));
    }
}

impl EncodeMetric for Gauges {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, v) in &self.0 {
            let mut e = encoder.encode_family(labels)?;
            match v {
                GaugeValue::Int(i) => e.encode_gauge(i)?,
                GaugeValue::Float(f) => e.encode_gauge(f)?,
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }

    fn is_empty(&self) -> bool {
        false
    }
}

fn register_readings(reg: &mut Registry, r: &Readings) {
    let mut info = Gauges::default();
    info.push(
        vec![
            ("node_id", r.node_id.clone()),
            ("version", r.version.to_string()),
            ("site_role", r.site_role.clone()),
        ],
        1,
    );
    reg.register(
        "syncguard_info",
        "Constant 1, labelled with this node's id, SyncGuard's version and the site role",
        info,
    );

    let mut role = Gauges::default();
    for name in ROLES {
        role.push(vec![("role", name.to_string())], i64::from(name == r.role));
    }
    reg.register(
        "syncguard_role",
        "1 for the role this node shows now, 0 for the others (monitor: no peer configured)",
        role,
    );
    reg.register(
        "syncguard_epoch",
        "The failover epoch this node knows (grows at every change of the signing node)",
        Gauges::one(r.epoch),
    );
    reg.register(
        "syncguard_node_healthy",
        "1 when the local Story node's health verdict is healthy, else 0",
        Gauges::one(Some(u64::from(r.healthy))),
    );
    let mut checks = Gauges::default();
    for (check, status) in &r.checks {
        for s in CHECK_STATUSES {
            checks.push(
                vec![("check", check.clone()), ("status", s.to_string())],
                i64::from(s == *status),
            );
        }
    }
    reg.register(
        "syncguard_health_check_status",
        "1 for each health check's current status (ok, warn, fail, unknown), 0 for the others",
        checks,
    );
    reg.register(
        "syncguard_cometbft_height",
        "Latest block height of the local CometBFT node",
        Gauges::one(r.cometbft_height),
    );
    reg.register(
        "syncguard_evm_height",
        "Latest block number of the local story-geth",
        Gauges::one(r.evm_height),
    );
    reg.register(
        "syncguard_cometbft_peers",
        "Peers of the local CometBFT node",
        Gauges::one(r.cometbft_peers),
    );
    reg.register(
        "syncguard_evm_peers",
        "Peers of the local story-geth",
        Gauges::one(r.evm_peers),
    );

    type Part = (&'static str, &'static str, fn(&Hrs) -> i64);
    let parts: [Part; 3] = [
        (
            "syncguard_state_height",
            "Height of the validator sign state (local file, or replica pulled from the active)",
            |h| h.height,
        ),
        (
            "syncguard_state_round",
            "Round of the validator sign state (local file, or replica pulled from the active)",
            |h| i64::from(h.round),
        ),
        (
            "syncguard_state_step",
            "Step of the validator sign state (local file, or replica pulled from the active)",
            |h| i64::from(h.step.as_u8()),
        ),
    ];
    for (name, help, part) in parts {
        let mut g = Gauges::default();
        for (source, hrs) in [("local", r.local_state), ("replica", r.replica_state)] {
            if let Some(h) = hrs {
                g.push(vec![("source", source.to_string())], part(&h));
            }
        }
        reg.register(name, help, g);
    }

    reg.register(
        "syncguard_state_sync_lag_seconds",
        "Seconds since the active's sign state was last pulled into the local backup",
        Gauges(
            r.state_sync_lag_seconds
                .map(|s| (Vec::new(), GaugeValue::Float(s)))
                .into_iter()
                .collect(),
        ),
    );
    let mut peer = Gauges::default();
    if let Some((id, reachable)) = &r.peer {
        peer.push(vec![("peer", id.clone())], i64::from(*reachable));
    }
    reg.register(
        "syncguard_peer_reachable",
        "1 when the peer SyncGuard answers over mutual TLS, else 0",
        peer,
    );
    reg.register(
        "syncguard_validator_last_signed_height",
        "Newest committed height carrying the validator's signature (read from the chain)",
        Gauges::one(r.validator_last_signed_height),
    );
    reg.register(
        "syncguard_validator_missed_blocks",
        "Consecutive newest commits without the validator's signature (read from the chain)",
        Gauges::one(r.validator_missed_blocks),
    );
    reg.register(
        "syncguard_uptime_seconds",
        "Seconds since this SyncGuard daemon started",
        Gauges(vec![(Vec::new(), GaugeValue::Float(r.uptime_seconds))]),
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use syncguard_config::NodeRole;
    use syncguard_failover::{NodeId, PeerStatus, RecordKind, Status, Wish};
    use syncguard_health::{Check, HealthReport, Verdict};
    use syncguard_validator::Step;

    use super::*;

    fn check(name: &str, status: CheckStatus, observed: &str) -> Check {
        Check {
            name: name.into(),
            status,
            observed: observed.into(),
            threshold: String::new(),
            reason: String::new(),
        }
    }

    fn view() -> NodeView {
        NodeView::new("node-a".into(), SiteRole::Primary, NodeRole::Active)
    }

    fn status(role: Role, peer: Option<&str>, unreachable: Option<u64>) -> Status {
        Status {
            role,
            held_role: role,
            paused: false,
            epoch: 7,
            wish: Wish::Active,
            last_why: String::new(),
            peer: peer.map(|id| PeerStatus {
                node_id: NodeId::new(id.to_string()),
                role: Role::Passive,
                paused: false,
                epoch: 7,
                healthy: true,
                latest_height: Some(100),
                is_primary_site: false,
                last_state: None,
                standby_right: true,
                wants_role: false,
                peer_lost: false,
            }),
            peer_unreachable_for_ms: unreachable,
            standby_right: false,
            members: Vec::new(),
        }
    }

    fn record(tag: RecordTag, reason: &str) -> Record {
        Record {
            at_ms: 0,
            kind: RecordKind::Info,
            role: Role::Active,
            epoch: 1,
            why: "because".into(),
            heights: Vec::new(),
            tag,
            reason: reason.into(),
        }
    }

    #[test]
    fn story_metrics_monitor_without_failover_and_unknown_checks_before_the_first_round() {
        let v = view();
        let r = readings(&v, None, v.started_at + Duration::from_secs(90));
        assert_eq!(r.role, "monitor");
        assert_eq!(r.epoch, None);
        assert!(!r.healthy);
        assert_eq!(r.checks.len(), CHECKS.len());
        assert!(r.checks.iter().all(|(_, s)| *s == "unknown"));
        assert_eq!(r.peer, None);
        assert_eq!(r.cometbft_height, None);
        assert!((r.uptime_seconds - 90.0).abs() < 1e-9);
    }

    #[test]
    fn story_metrics_reads_heights_peers_and_check_statuses_from_the_report() {
        let mut v = view();
        let now = v.started_at + Duration::from_secs(10);
        v.health = Some(HealthReport {
            healthy: true,
            verdict: Verdict::Healthy,
            summary: String::new(),
            round_failed: false,
            consecutive_failures: 0,
            consecutive_successes: 3,
            checks: vec![
                check(
                    names::COMET_REACHABLE,
                    CheckStatus::Ok,
                    "height 1234, network \"story\", moniker \"a\"",
                ),
                check(names::EVM_REACHABLE, CheckStatus::Ok, "block 99"),
                check(names::COMET_PEERS, CheckStatus::Fail, "1 peers"),
                check(names::EVM_PEERS, CheckStatus::Warn, "12 peers"),
                check("system.new_check", CheckStatus::Ok, "fine"),
            ],
            evaluated_at: now,
        });
        v.failover = Some(status(Role::Active, Some("node-b"), None));
        v.replica_synced_at = Some(now - Duration::from_millis(1500));
        let r = readings(&v, Some("node-b"), now);
        assert_eq!(r.role, "active");
        assert_eq!(r.epoch, Some(7));
        assert!(r.healthy);
        assert_eq!(r.cometbft_height, Some(1234));
        assert_eq!(r.evm_height, Some(99));
        assert_eq!(r.cometbft_peers, Some(1));
        assert_eq!(r.evm_peers, Some(12));
        assert_eq!(r.peer, Some(("node-b".into(), true)));
        assert_eq!(r.state_sync_lag_seconds, Some(1.5));
        let status_of = |name: &str| r.checks.iter().find(|(n, _)| n == name).map(|(_, s)| *s);
        assert_eq!(status_of(names::COMET_PEERS), Some("fail"));
        assert_eq!(status_of(names::EVM_PEERS), Some("warn"));
        assert_eq!(status_of(names::DISK_FREE), Some("unknown"));
        assert_eq!(status_of("system.new_check"), Some("ok"));
    }

    #[test]
    fn story_metrics_failed_probe_observations_give_no_height() {
        let mut v = view();
        v.health = Some(HealthReport {
            healthy: false,
            verdict: Verdict::Suspect,
            summary: String::new(),
            round_failed: true,
            consecutive_failures: 1,
            consecutive_successes: 0,
            checks: vec![
                check(names::COMET_REACHABLE, CheckStatus::Fail, "timeout"),
                check(names::EVM_REACHABLE, CheckStatus::Fail, "http_503"),
                check(names::COMET_PEERS, CheckStatus::Unknown, "no answer"),
            ],
            evaluated_at: v.started_at,
        });
        let r = readings(&v, None, v.started_at);
        assert_eq!(
            (r.cometbft_height, r.evm_height, r.cometbft_peers),
            (None, None, None)
        );
    }

    #[test]
    fn story_metrics_unreachable_peer_is_named_from_the_config() {
        let mut v = view();
        v.failover = Some(status(Role::Passive, None, Some(4000)));
        let r = readings(&v, Some("node-b"), v.started_at);
        assert_eq!(r.peer, Some(("node-b".into(), false)));
        assert_eq!(r.role, "passive");
    }

    #[test]
    fn story_metrics_render_has_every_name_with_help_and_one_role_set() {
        let mut v = view();
        v.failover = Some(status(Role::Paused, Some("node-b"), None));
        v.local_state = Some(Hrs {
            height: 50,
            round: 1,
            step: Step::Precommit,
        });
        v.signing.validator_last_signed = Some(49);
        v.signing.validator_missed_in_row = Some(0);
        let m = Metrics::new();
        let body = m.render(&v, Some("node-b"), v.started_at);
        for name in FAMILIES {
            assert!(body.contains(&format!("# HELP {name} ")), "{name}:\n{body}");
            assert!(body.contains(&format!("# TYPE {name} ")), "{name}:\n{body}");
        }
        assert!(body.contains("syncguard_role{role=\"paused\"} 1"), "{body}");
        assert!(body.contains("syncguard_role{role=\"active\"} 0"), "{body}");
        assert!(body.contains("syncguard_epoch 7\n"), "{body}");
        assert!(
            body.contains("syncguard_state_height{source=\"local\"} 50"),
            "{body}"
        );
        assert!(
            body.contains("syncguard_state_step{source=\"local\"} 3"),
            "{body}"
        );
        assert!(
            body.contains("syncguard_peer_reachable{peer=\"node-b\"} 1"),
            "{body}"
        );
        assert!(
            body.contains("syncguard_validator_last_signed_height 49"),
            "{body}"
        );
        assert!(
            body.contains("syncguard_info{node_id=\"node-a\",version=\""),
            "{body}"
        );
        // Unknown values have no sample (never a made-up 0).
        assert!(!body.contains("\nsyncguard_cometbft_height "), "{body}");
        assert!(!body.contains("source=\"replica\""), "{body}");
    }

    #[test]
    fn story_metrics_each_record_tag_bumps_its_counter_with_its_reason() {
        let m = Metrics::new();
        m.count_record(&record(RecordTag::FailoverCompleted, "peer_unreachable"));
        m.count_record(&record(RecordTag::FailoverCompleted, "peer_unreachable"));
        m.count_record(&record(RecordTag::FailoverStarted, "peer_unreachable"));
        m.count_record(&record(RecordTag::PromotionRefused, "witness_signed"));
        m.count_record(&record(RecordTag::SelfFenced, ""));
        m.count_record(&record(RecordTag::DoubleSignPrevented, "stale_epoch"));
        m.count_record(&record(RecordTag::SwitchoverCompleted, "operator"));
        m.count_record(&record(RecordTag::Other, "x"));
        // A completion without a reason takes its start's.
        m.count_record(&record(RecordTag::FailoverStarted, "claim"));
        m.count_record(&record(RecordTag::FailoverCompleted, ""));
        let v = view();
        let body = m.render(&v, None, v.started_at);
        for line in [
            "syncguard_failovers_total{reason=\"peer_unreachable\"} 2",
            "syncguard_promotions_refused_total{reason=\"witness_signed\"} 1",
            "syncguard_self_fences_total{reason=\"unspecified\"} 1",
            "syncguard_double_signs_prevented_total{reason=\"stale_epoch\"} 1",
            "syncguard_switchovers_total{reason=\"operator\"} 1",
            "syncguard_failovers_total{reason=\"claim\"} 1",
        ] {
            assert!(body.contains(line), "{line}:\n{body}");
        }
        assert!(!body.contains("reason=\"x\""), "{body}");
    }

    #[test]
    fn story_metrics_alert_counters_come_from_the_source_at_scrape_time() {
        let m = Metrics::new();
        let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = calls.clone();
        m.set_alert_source(move || {
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            AlertCounts {
                sent: BTreeMap::from([("slack".to_string(), 3 * n)]),
                failed: BTreeMap::from([("pagerduty".to_string(), 1)]),
                dropped: 2,
            }
        });
        let v = view();
        let _ = m.render(&v, None, v.started_at);
        let body = m.render(&v, None, v.started_at);
        assert!(
            body.contains("syncguard_alerts_sent_total{sink=\"slack\"} 6"),
            "{body}"
        );
        assert!(
            body.contains("syncguard_alerts_failed_total{sink=\"pagerduty\"} 1"),
            "{body}"
        );
        assert!(body.contains("syncguard_alerts_dropped_total 2"), "{body}");
    }
}
