//! What the daemon knows, shared between the tasks that learn it and the API that shows it.
//! Writers replace fields whole; the lock is never held across an await.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use syncguard_config::{NodeRole, SiteRole};
use syncguard_failover::{PeerStatus, Record, Status};
use syncguard_health::{HealthReport, Strip};
use syncguard_validator::Hrs;

use crate::metrics::Metrics;

/// Records kept for `/events` (oldest dropped first).
pub const MAX_RECORDS: usize = 1000;

#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub node_id: String,
    pub site_role: SiteRole,
    /// `--role` (a wish, not an order).
    pub wish: NodeRole,
    #[serde(serialize_with = "rfc3339")]
    pub started_at: SystemTime,
    pub health: Option<HealthReport>,
    /// Times the health task died and was restarted.
    pub probe_restarts: u32,
    /// The failover machine's view (absent when no peer is configured).
    pub failover: Option<Status>,
    /// What this node tells its peer about itself.
    #[serde(skip)]
    pub own_peer_status: Option<PeerStatus>,
    #[serde(skip)]
    pub records: VecDeque<Record>,
    /// Last answer of the peer's status API.
    #[serde(serialize_with = "rfc3339_opt")]
    pub peer_last_contact: Option<SystemTime>,
    /// The HRS of the local state file at the last look.
    #[serde(skip)]
    pub local_state: Option<Hrs>,
    /// The active's state last pulled into the backup (on a passive).
    #[serde(skip)]
    pub replica: Option<Hrs>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub replica_synced_at: Option<SystemTime>,
    /// The step table of the last activation on this node (served by `GET /switchover`, so
    /// `syncguard switchover` can print per-step timings at the end).
    #[serde(skip)]
    pub last_activation: Option<StepTable>,
    /// The step table of the last deactivation on this node.
    #[serde(skip)]
    pub last_deactivation: Option<StepTable>,
    /// What the chain says about the validator's signing (from the commit log, each round).
    pub signing: SigningSeen,
    /// The last heights, signed / missed / not yet known, from the commit log each round
    /// (served as `signing.strip` by `/status`, see [`crate::signing_strip`]).
    #[serde(skip)]
    pub strip: Option<Strip>,
    /// `story.chain_profile`: `story` (an EVM is checked) or `cometbft`.
    pub chain_profile: &'static str,
    /// etcd mode: the lock and what etcd keeps beside it, at the last look.
    #[serde(skip)]
    pub etcd: Option<EtcdSeen>,
}

/// etcd mode: the last look at the lock (`coordination/lease.rs`), for `/status` and the
/// CLI — what etcd itself says, beside the members' own statuses the machine keeps.
#[derive(Debug, Clone, Default)]
pub struct EtcdSeen {
    /// When the look was made.
    pub at: Option<SystemTime>,
    /// Why the last look failed (the others are from the last one that answered).
    pub error: Option<String>,
    /// The lock's holder and its epoch.
    pub holder: Option<(String, u64)>,
    /// A planned handover waiting for its target: (from, to).
    pub handover: Option<(String, String)>,
    /// A request to the holder: (from, kind).
    pub request: Option<(String, String)>,
    /// The cluster-wide pause, and who set it.
    pub paused_by: Option<String>,
    /// The watermark: the highest state the holders wrote.
    pub watermark: Option<Hrs>,
    /// Every member's advertised public API (`host:port`), by node id.
    pub apis: std::collections::BTreeMap<String, String>,
}

/// The validator's signing as the recent commits show it (from the chain, not from the
/// local node): filled by the health loop from the commit log; all `None` until its first look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SigningSeen {
    /// The newest committed height whose commit carries the validator's signature.
    pub validator_last_signed: Option<u64>,
    /// Consecutive newest commits without the validator's signature (0 when it signed the
    /// latest readable one).
    pub validator_missed_in_row: Option<u64>,
    /// The latest height the monitor read (the end of its window).
    pub checked_height: Option<u64>,
}

/// One actuator operation's timed steps, as the actuator formatted them.
#[derive(Debug, Clone, Serialize)]
pub struct StepTable {
    /// When it finished.
    #[serde(serialize_with = "rfc3339")]
    pub finished_at: SystemTime,
    /// The epoch of an activation (none for a deactivation).
    pub epoch: Option<u64>,
    /// Whether it succeeded.
    pub ok: bool,
    /// Wall time of the whole operation, in seconds.
    pub total_seconds: f64,
    /// One line per step: name, seconds, outcome, detail.
    pub table: String,
}

impl NodeView {
    pub fn new(node_id: String, site_role: SiteRole, wish: NodeRole) -> Self {
        NodeView {
            node_id,
            site_role,
            wish,
            started_at: SystemTime::now(),
            health: None,
            probe_restarts: 0,
            failover: None,
            own_peer_status: None,
            records: VecDeque::new(),
            peer_last_contact: None,
            local_state: None,
            replica: None,
            replica_synced_at: None,
            last_activation: None,
            last_deactivation: None,
            signing: SigningSeen::default(),
            strip: None,
            chain_profile: "story",
            etcd: None,
        }
    }

    /// Wall time of a machine record (`at_ms` counts from the daemon's start).
    pub fn record_time(&self, record: &Record) -> SystemTime {
        self.started_at + Duration::from_millis(record.at_ms)
    }
}

/// The view behind a lock, and the metrics that count what passes through it (every
/// record is counted once, when it is pushed).
#[derive(Debug, Clone)]
pub struct Shared {
    view: Arc<RwLock<NodeView>>,
    metrics: Arc<Metrics>,
}

impl Shared {
    pub fn new(view: NodeView) -> Self {
        Shared {
            view: Arc::new(RwLock::new(view)),
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// The counters and the `/metrics` encoder of this daemon.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A copy of the current view. A poisoned lock still holds the last complete write.
    pub fn snapshot(&self) -> NodeView {
        match self.view.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads one part without copying the rest.
    pub fn read<T>(&self, f: impl FnOnce(&NodeView) -> T) -> T {
        match self.view.read() {
            Ok(v) => f(&v),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut NodeView)) {
        match self.view.write() {
            Ok(mut v) => f(&mut v),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn push_record(&self, record: Record) {
        self.metrics.count_record(&record);
        self.update(|v| {
            if v.records.len() >= MAX_RECORDS {
                v.records.pop_front();
            }
            v.records.push_back(record);
        });
    }

    pub fn set_failover(&self, status: Status, own: PeerStatus) {
        self.update(|v| {
            v.failover = Some(status);
            v.own_peer_status = Some(own);
        });
    }
}

pub(crate) fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_time(*t))
}

fn rfc3339_opt<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.collect_str(&format_time(*t)),
        None => s.serialize_none(),
    }
}
