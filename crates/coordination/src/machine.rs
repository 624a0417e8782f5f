//! [`EtcdMachine`]: the failover rules of the etcd backend, pure:
//! `(state, event, now) → actions`. No I/O, no clock of its own (explicit `now`, a monotonic
//! offset like [`syncguard_failover::Machine`]'s).
//!
//! The lock is the authority: a node holds the validator role only under a lease it acquired
//! (a transaction that succeeds only when the leader key is absent), and the lease's create
//! revision is its epoch. On top of that the chain witness (S1) still has to be clean, and the
//! node's own Story node healthy and advancing, before it even tries to acquire.
//!
//! Roles (shown with [`syncguard_failover::Role`]):
//! - boot: `Demoting` until the ordered Deactivate is confirmed (the key may be live from
//!   before a crash of the daemon) — the key is never live before the lock is held;
//! - `Passive`: the lock is watched every round; when it is free, the node waits its turn
//!   ([`PromotionOrder`]: rank by `failover_priority`, seeded jitter), checks its own node,
//!   fetches the witness, and only then sends the acquire transaction;
//! - `Promoting` → `Active`: acquired; the epoch is persisted, the fence is
//!   `max((H + 2, 0, 0), watermark, every state seen)` (S3), then Activate;
//! - `Fenced`: the lease could not be proven (keeper fence, lease lost), or the lock shows
//!   another holder or nobody: Deactivate at once (S4); left for `Passive` only once the stop
//!   is confirmed **and** a look at the lock made after it shows somebody else (or nobody).
//!
//! Lease renewals are not the machine's business: the shell runs [`crate::keep_lease`] from
//! the moment the acquisition succeeded and reports its end as [`EtcdEvent::LeaseEnded`].
//! Planned switchover and fallback do not exist in this mode; a pause withholds every
//! automatic promotion (safety stops still act).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use syncguard_failover::{
    Action, ActivationCause, ActuatorResult, LocalHealth, Record, RecordKind, RecordTag, Role,
    VerifyReport, WitnessReport,
};
use syncguard_validator::{Hrs, Step};

use crate::backend::Holder;
use crate::order::PromotionOrder;

/// The machine's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdParams {
    /// This node's id (`server.id`).
    pub node_id: String,
    /// This node's `coordination.failover_priority`.
    pub priority: u32,
    /// How many candidates try before this one ([`PromotionOrder::rank`] when every node's
    /// priority is known; the daemon uses `failover_priority` itself, since a node's config
    /// does not carry the others').
    pub rank: usize,
    /// `failover.health_check_interval`: observations older than two rounds are stale, a
    /// witness answered more than one round after it was asked is stale.
    pub health_check_interval: Duration,
    /// Recent commits that must show no signature before acquiring.
    pub witness_blocks: u32,
    /// Blocks within which the new active's signatures must appear.
    pub verify_blocks: u32,
    /// The promotion order of several passives.
    pub order: PromotionOrder,
}

/// What the lock looked like, from one `current_holder` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "lock", rename_all = "snake_case")]
pub enum LockView {
    /// Nobody holds it.
    Free,
    /// Somebody holds it.
    Held(Holder),
    /// No etcd member answered.
    Unreachable {
        /// Why, for records.
        reason: String,
    },
}

/// The answer to [`EtcdAction::TryAcquire`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcquireReport {
    /// The lock is this node's at `epoch`; the shell keeps the lease from now on.
    Acquired {
        /// The lease's epoch (the leader key's create revision).
        epoch: u64,
        /// The watermark stored in etcd, if any.
        watermark: Option<Hrs>,
    },
    /// Somebody was faster.
    Held(Holder),
    /// etcd did not answer (nothing known; the lease, if any was granted, is not ours to use).
    Failed {
        /// Why.
        reason: String,
    },
}

/// Why the lease ended under an active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseEnd {
    /// No renewal succeeded in time: the keeper's fence instant came.
    NotRenewed,
    /// etcd said the lease is gone.
    Lost,
}

/// An input of [`EtcdMachine::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdEvent {
    /// The daemon started; `epoch_on_disk` from the epoch file (0 on a fresh host).
    Start {
        /// The persisted epoch.
        epoch_on_disk: u64,
    },
    /// Time passed (feed a few times per round).
    Tick,
    /// One local health round.
    LocalHealth(LocalHealth),
    /// One look at the lock, asked at `asked_at` (the machine's clock).
    Lock {
        /// When the call was sent: a look asked before the acquisition says nothing about it.
        asked_at: Duration,
        /// What it showed.
        view: LockView,
    },
    /// Answer to [`syncguard_failover::Action::RequestWitness`].
    Witness(WitnessReport),
    /// Answer to [`EtcdAction::TryAcquire`].
    Acquire(AcquireReport),
    /// The shell's lease keeper stopped (the holder must fence).
    LeaseEnded {
        /// Why.
        why: LeaseEnd,
    },
    /// An actuator operation finished.
    Actuator(ActuatorResult),
    /// A sign state seen on this host (the local state file).
    StateSeen {
        /// Its height/round/step.
        hrs: Hrs,
    },
    /// Answer to a Verify.
    Verify(VerifyReport),
    /// A PersistEpoch failed; the shell skipped the rest of that batch (records excepted).
    EpochPersistFailed {
        /// The epoch.
        epoch: u64,
        /// Why.
        reason: String,
    },
    /// Operator: withhold every automatic promotion.
    Pause,
    /// Operator: back to automatic operation.
    Resume,
}

/// An output of [`EtcdMachine::handle`]: the failover vocabulary plus the lock's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdAction {
    /// One of the failover machine's actions, with the same contract (PersistEpoch before
    /// anything after it; Activate/Deactivate reported back; records kept).
    Failover(Action),
    /// Send the acquire transaction; answer with [`EtcdEvent::Acquire`]. On success the
    /// shell starts keeping the lease at once.
    TryAcquire,
    /// Raise the watermark to `hrs` (only while holding the lock).
    PutWatermark {
        /// The state.
        hrs: Hrs,
    },
    /// Stop keeping the lease and give the lock up (the key is confirmed off, or was never
    /// put on).
    Release,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Before `Start`.
    Idle,
    /// Boot deactivation ordered, not yet confirmed.
    Booting,
    Passive,
    Witnessing {
        id: u64,
        asked_at: Duration,
    },
    Acquiring,
    Promoting {
        epoch: u64,
    },
    Active {
        epoch: u64,
    },
    /// Deactivation ordered because the lease could not be proven or the lock moved.
    Fenced {
        /// The epoch it held.
        epoch: u64,
        /// The stop is confirmed (from this instant).
        off_since: Option<Duration>,
    },
}

/// The etcd-mode failover machine. See the module docs.
#[derive(Debug, Clone)]
pub struct EtcdMachine {
    params: EtcdParams,
    phase: Phase,
    /// The highest epoch known (disk, acquisitions).
    epoch: u64,
    paused: bool,
    highest_seen: Option<Hrs>,
    last_put: Option<Hrs>,
    health: Option<(LocalHealth, Duration)>,
    lock: Option<(LockView, Duration)>,
    /// When the lock was first seen free in this stretch, and the own height then.
    free_since: Option<(Duration, u64)>,
    /// When the current acquisition was sent: looks asked earlier are ignored.
    acquired_at: Duration,
    next_witness_id: u64,
    /// Retry a failed deactivation at this instant.
    retry_deactivate_at: Option<Duration>,
    last_hold: Option<&'static str>,
    last_why: String,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Seed of the promotion jitter: the node id mixed with the epoch lost, so ties between
/// nodes differ and a node's draw differs from one failover to the next.
fn seed(node_id: &str, epoch: u64) -> u64 {
    // FNV-1a: stable across builds and platforms (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ epoch.rotate_left(17)
}

impl EtcdMachine {
    /// A machine that orders nothing until [`EtcdEvent::Start`].
    pub fn new(params: EtcdParams) -> Self {
        EtcdMachine {
            params,
            phase: Phase::Idle,
            epoch: 0,
            paused: false,
            highest_seen: None,
            last_put: None,
            health: None,
            lock: None,
            free_since: None,
            acquired_at: Duration::ZERO,
            next_witness_id: 1,
            retry_deactivate_at: None,
            last_hold: None,
            last_why: "starting".into(),
        }
    }

    /// The role held (never `Paused`).
    pub fn held_role(&self) -> Role {
        match self.phase {
            Phase::Idle | Phase::Booting => Role::Demoting,
            Phase::Passive | Phase::Witnessing { .. } | Phase::Acquiring => Role::Passive,
            Phase::Promoting { .. } => Role::Promoting,
            Phase::Active { .. } => Role::Active,
            Phase::Fenced { off_since, .. } => {
                if off_since.is_some() {
                    Role::Fenced
                } else {
                    // The key may still be live until the stop is confirmed.
                    Role::Demoting
                }
            }
        }
    }

    /// The role shown: `Paused` when paused, else the held role.
    pub fn role(&self) -> Role {
        if self.paused {
            Role::Paused
        } else {
            self.held_role()
        }
    }

    /// Whether an operator paused the automation.
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// The highest epoch known.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The epoch under which this node holds the lock, while it does.
    pub fn holding(&self) -> Option<u64> {
        match self.phase {
            Phase::Promoting { epoch } | Phase::Active { epoch } => Some(epoch),
            _ => None,
        }
    }

    /// The latest decision or refusal, in words.
    pub fn last_why(&self) -> &str {
        &self.last_why
    }

    /// The highest sign state seen.
    pub fn highest_seen(&self) -> Option<Hrs> {
        self.highest_seen
    }

    /// The own node's latest height, when known.
    pub fn latest_height(&self) -> Option<u64> {
        self.health.as_ref().and_then(|(h, _)| h.latest_height)
    }

    /// The last look at the lock.
    pub fn lock_view(&self) -> Option<&LockView> {
        self.lock.as_ref().map(|(v, _)| v)
    }

    fn fresh(&self, at: Duration, now: Duration) -> bool {
        now.saturating_sub(at) <= self.params.health_check_interval * 2
    }

    fn record(
        &mut self,
        now: Duration,
        kind: RecordKind,
        tag: RecordTag,
        reason: &str,
        why: String,
        heights: Vec<u64>,
    ) -> EtcdAction {
        self.last_why = why.clone();
        EtcdAction::Failover(Action::Record(Record {
            at_ms: ms(now),
            kind,
            role: self.role(),
            epoch: self.epoch,
            why,
            heights,
            tag,
            reason: reason.to_string(),
        }))
    }

    /// A reason not to promote, recorded once per change of reason.
    fn hold(&mut self, now: Duration, key: &'static str, why: String, out: &mut Vec<EtcdAction>) {
        if self.last_hold == Some(key) {
            return;
        }
        self.last_hold = Some(key);
        let tag = match key {
            "waiting" | "held" => RecordTag::Other,
            _ => RecordTag::PromotionRefused,
        };
        let kind = if tag == RecordTag::Other {
            RecordKind::Info
        } else {
            RecordKind::Refusal
        };
        let r = self.record(now, kind, tag, key, why, Vec::new());
        out.push(r);
    }

    fn deactivate(reason: impl Into<String>) -> EtcdAction {
        EtcdAction::Failover(Action::Deactivate {
            reason: reason.into(),
        })
    }

    /// Feeds one event at `now`; returns the actions to perform in order.
    pub fn handle(&mut self, event: EtcdEvent, now: Duration) -> Vec<EtcdAction> {
        let mut out = Vec::new();
        if matches!(self.phase, Phase::Idle) {
            if let EtcdEvent::Start { epoch_on_disk } = event {
                self.epoch = epoch_on_disk;
                self.phase = Phase::Booting;
                let r = self.record(
                    now,
                    RecordKind::Info,
                    RecordTag::Other,
                    "boot",
                    format!(
                        "starting with the etcd backend at epoch {epoch_on_disk}: making sure \
                         the validator key is off before anything else"
                    ),
                    Vec::new(),
                );
                out.push(r);
                out.push(Self::deactivate(
                    "boot: the key is never live before the lock is held",
                ));
            }
            return out;
        }
        match event {
            EtcdEvent::Start { .. } | EtcdEvent::Tick => {}
            EtcdEvent::LocalHealth(h) => self.health = Some((h, now)),
            EtcdEvent::Lock { asked_at, view } => self.on_lock(asked_at, view, now, &mut out),
            EtcdEvent::Witness(w) => self.on_witness(w, now, &mut out),
            EtcdEvent::Acquire(a) => self.on_acquire(a, now, &mut out),
            EtcdEvent::LeaseEnded { why } => self.on_lease_end(why, now, &mut out),
            EtcdEvent::Actuator(r) => self.on_actuator(r, now, &mut out),
            EtcdEvent::StateSeen { hrs } => {
                self.highest_seen = Some(self.highest_seen.map_or(hrs, |s| s.max(hrs)));
                if matches!(self.phase, Phase::Active { .. } | Phase::Promoting { .. })
                    && self.last_put.is_none_or(|p| hrs > p)
                {
                    self.last_put = Some(hrs);
                    out.push(EtcdAction::PutWatermark { hrs });
                }
            }
            EtcdEvent::Verify(v) => {
                if matches!(self.phase, Phase::Active { epoch } if epoch == v.epoch) {
                    let r = if v.signed {
                        self.record(
                            now,
                            RecordKind::Info,
                            RecordTag::Other,
                            "verified",
                            format!("verified: the validator signs again ({})", v.detail),
                            Vec::new(),
                        )
                    } else {
                        self.record(
                            now,
                            RecordKind::Alert,
                            RecordTag::Other,
                            "verify_failed",
                            format!(
                                "this node is active at epoch {} but its signatures do not show \
                                 on chain: {}",
                                v.epoch, v.detail
                            ),
                            Vec::new(),
                        )
                    };
                    out.push(r);
                }
            }
            EtcdEvent::EpochPersistFailed { epoch, reason } => {
                if matches!(self.phase, Phase::Promoting { epoch: e } if e == epoch) {
                    // The shell skipped the Activate: nothing is live; give the lock back.
                    self.phase = Phase::Passive;
                    self.free_since = None;
                    let r = self.record(
                        now,
                        RecordKind::Alert,
                        RecordTag::FailoverAborted,
                        "epoch_not_persisted",
                        format!(
                            "not promoting: epoch {epoch} could not be written to disk \
                             ({reason}); releasing the lock"
                        ),
                        Vec::new(),
                    );
                    out.push(r);
                    out.push(EtcdAction::Release);
                }
            }
            EtcdEvent::Pause => {
                self.paused = true;
                let r = self.record(
                    now,
                    RecordKind::Info,
                    RecordTag::Other,
                    "paused",
                    "paused by the operator: no automatic promotion (an active still fences \
                     itself when its lease cannot be proven)"
                        .into(),
                    Vec::new(),
                );
                out.push(r);
            }
            EtcdEvent::Resume => {
                self.paused = false;
                self.last_hold = None;
                let r = self.record(
                    now,
                    RecordKind::Info,
                    RecordTag::Other,
                    "resumed",
                    "resumed by the operator".into(),
                    Vec::new(),
                );
                out.push(r);
            }
        }
        self.timers(now, &mut out);
        self.consider(now, &mut out);
        out
    }

    fn timers(&mut self, now: Duration, out: &mut Vec<EtcdAction>) {
        if let Some(at) = self.retry_deactivate_at {
            if now >= at && matches!(self.phase, Phase::Booting | Phase::Fenced { .. }) {
                self.retry_deactivate_at = None;
                out.push(Self::deactivate("retrying the stop that failed"));
            }
        }
        if let Phase::Witnessing { asked_at, .. } = self.phase {
            // An answer that never came: ask again later, from the start.
            if now.saturating_sub(asked_at) > self.params.health_check_interval * 4 {
                self.phase = Phase::Passive;
            }
        }
    }

    fn on_lock(
        &mut self,
        asked_at: Duration,
        view: LockView,
        now: Duration,
        out: &mut Vec<EtcdAction>,
    ) {
        match self.phase {
            Phase::Active { epoch } | Phase::Promoting { epoch }
                if asked_at >= self.acquired_at =>
            {
                let moved = match &view {
                    LockView::Free => Some(format!(
                        "the leader key of epoch {epoch} is gone (lease expired)"
                    )),
                    LockView::Held(h) if h.epoch != epoch => Some(format!(
                        "the lock is held by {} at epoch {}, not by this node at epoch {epoch}",
                        h.node_id, h.epoch
                    )),
                    _ => None,
                };
                if let Some(moved) = moved {
                    self.phase = Phase::Fenced {
                        epoch,
                        off_since: None,
                    };
                    let r = self.record(
                        now,
                        RecordKind::Alert,
                        RecordTag::SelfFenced,
                        "lock_lost",
                        format!("stopping at once: {moved}; somebody else may take the role"),
                        Vec::new(),
                    );
                    out.push(r);
                    out.push(Self::deactivate(moved));
                }
            }
            Phase::Fenced {
                epoch,
                off_since: Some(off),
            } if asked_at >= off => {
                let elsewhere = match &view {
                    LockView::Free => Some("nobody holds the lock".to_string()),
                    LockView::Held(h) if h.epoch != epoch => {
                        Some(format!("{} holds the lock at epoch {}", h.node_id, h.epoch))
                    }
                    _ => None,
                };
                if let Some(elsewhere) = elsewhere {
                    self.phase = Phase::Passive;
                    self.free_since = None;
                    self.last_hold = None;
                    let r = self.record(
                        now,
                        RecordKind::RoleChange,
                        RecordTag::Other,
                        "unfenced",
                        format!("passive again: the key is off and {elsewhere}"),
                        Vec::new(),
                    );
                    out.push(r);
                }
            }
            _ => {}
        }
        if let LockView::Held(h) = &view {
            self.epoch = self.epoch.max(h.epoch);
        }
        self.lock = Some((view, now));
    }

    fn on_witness(&mut self, w: WitnessReport, now: Duration, out: &mut Vec<EtcdAction>) {
        let Phase::Witnessing { id, asked_at } = self.phase else {
            return;
        };
        if w.id != id {
            return;
        }
        self.phase = Phase::Passive;
        if now.saturating_sub(asked_at) > self.params.health_check_interval {
            return; // stale: ask again on the next look
        }
        if !w.unknown.is_empty() || w.checked.is_empty() || w.latest_height == 0 {
            self.hold(
                now,
                "witness_incomplete",
                format!(
                    "not promoting: the chain witness could read only {} of the last {} \
                     commits — no evidence that the validator stopped signing",
                    w.checked.len(),
                    self.params.witness_blocks
                ),
                out,
            );
            return;
        }
        if let Some(last) = w.signed.iter().max().copied() {
            self.hold(
                now,
                "witness_signed",
                format!(
                    "not promoting: the validator signed block {last} (latest {}) — it is \
                     still active somewhere",
                    w.latest_height
                ),
                out,
            );
            return;
        }
        // Everything holds: try the lock. The transaction is the only arbiter between
        // passives; the witness made sure nobody signs right now.
        if let Some((h, _)) = &mut self.health {
            h.latest_height = Some(h.latest_height.unwrap_or(0).max(w.latest_height));
        }
        self.phase = Phase::Acquiring;
        self.acquired_at = now;
        out.push(EtcdAction::TryAcquire);
    }

    fn on_acquire(&mut self, a: AcquireReport, now: Duration, out: &mut Vec<EtcdAction>) {
        if self.phase != Phase::Acquiring {
            if let AcquireReport::Acquired { .. } = a {
                // Not expected; never keep a lock we did not decide to take.
                out.push(EtcdAction::Release);
            }
            return;
        }
        self.phase = Phase::Passive;
        match a {
            AcquireReport::Held(h) => {
                self.epoch = self.epoch.max(h.epoch);
                self.free_since = None;
                let why = format!(
                    "staying passive: {} took the lock first (epoch {})",
                    h.node_id, h.epoch
                );
                self.hold(now, "held", why, out);
            }
            AcquireReport::Failed { reason } => {
                self.free_since = None;
                self.hold(
                    now,
                    "etcd_unreachable",
                    format!("not promoting: etcd did not answer the acquisition ({reason})"),
                    out,
                );
            }
            AcquireReport::Acquired { epoch, watermark } => {
                if epoch <= self.epoch {
                    self.free_since = None;
                    self.last_hold = Some("epoch_behind");
                    let r = self.record(
                        now,
                        RecordKind::Alert,
                        RecordTag::PromotionRefused,
                        "epoch_behind",
                        format!(
                            "not promoting: etcd's revision {epoch} is not above the epoch {} \
                             this node already used — a fresh etcd or a new \
                             coordination.etcd.prefix? Epochs must only grow; releasing the lock",
                            self.epoch
                        ),
                        vec![epoch, self.epoch],
                    );
                    out.push(r);
                    out.push(EtcdAction::Release);
                    return;
                }
                let h = self.latest_height().unwrap_or(0);
                let base = Hrs::new(
                    i64::try_from(h.saturating_add(2)).unwrap_or(i64::MAX),
                    0,
                    Step::None,
                );
                let fence = [Some(base), watermark, self.highest_seen]
                    .into_iter()
                    .flatten()
                    .max()
                    .unwrap_or(base);
                self.epoch = epoch;
                self.phase = Phase::Promoting { epoch };
                self.last_hold = None;
                self.last_put = None;
                let r = self.record(
                    now,
                    RecordKind::RoleChange,
                    RecordTag::FailoverStarted,
                    "lock_acquired",
                    format!(
                        "taking the validator role: the lock was free, the witness showed no \
                         signature in the last {} blocks, and this node acquired it at epoch \
                         {epoch}; fence {}/{}/{}",
                        self.params.witness_blocks,
                        fence.height,
                        fence.round,
                        fence.step.as_u8()
                    ),
                    vec![h, u64::try_from(fence.height).unwrap_or(0)],
                );
                out.push(r);
                out.push(EtcdAction::Failover(Action::PersistEpoch {
                    epoch,
                    standby_right: false,
                }));
                out.push(EtcdAction::Failover(Action::Activate {
                    epoch,
                    cause: ActivationCause::Failover,
                    fence,
                    handed_state: None,
                    start_after_height: None,
                }));
            }
        }
    }

    fn on_lease_end(&mut self, why: LeaseEnd, now: Duration, out: &mut Vec<EtcdAction>) {
        let (Phase::Active { epoch } | Phase::Promoting { epoch }) = self.phase else {
            return;
        };
        self.phase = Phase::Fenced {
            epoch,
            off_since: None,
        };
        let (reason, words) = match why {
            LeaseEnd::NotRenewed => (
                "lease_unrenewable",
                "the lease could not be renewed in time (etcd unreachable or too slow)",
            ),
            LeaseEnd::Lost => ("lease_lost", "etcd says the lease is gone"),
        };
        let r = self.record(
            now,
            RecordKind::Alert,
            RecordTag::SelfFenced,
            reason,
            format!(
                "fencing myself at epoch {epoch}: {words}; stopping before anybody else can \
                 take the lock"
            ),
            Vec::new(),
        );
        out.push(r);
        out.push(Self::deactivate(format!("self-fence: {words}")));
    }

    fn on_actuator(&mut self, r: ActuatorResult, now: Duration, out: &mut Vec<EtcdAction>) {
        match (r, self.phase.clone()) {
            (ActuatorResult::Deactivated { result: Ok(_) }, Phase::Booting) => {
                self.phase = Phase::Passive;
                let r = self.record(
                    now,
                    RecordKind::RoleChange,
                    RecordTag::Other,
                    "boot",
                    "passive: the key is off; watching the lock".into(),
                    Vec::new(),
                );
                out.push(r);
            }
            (ActuatorResult::Deactivated { result: Ok(_) }, Phase::Fenced { epoch, off_since })
                if off_since.is_none() =>
            {
                self.phase = Phase::Fenced {
                    epoch,
                    off_since: Some(now),
                };
                let r = self.record(
                    now,
                    RecordKind::RoleChange,
                    RecordTag::Other,
                    "fenced",
                    format!(
                        "fenced: the key is off (epoch {epoch}); passive again once the lock \
                         shows another holder or nobody"
                    ),
                    Vec::new(),
                );
                out.push(r);
                out.push(EtcdAction::Release);
            }
            (
                ActuatorResult::Deactivated { result: Err(e) },
                Phase::Booting | Phase::Fenced { .. },
            ) => {
                self.retry_deactivate_at = Some(now + self.params.health_check_interval);
                let r = self.record(
                    now,
                    RecordKind::Alert,
                    RecordTag::Other,
                    "stop_failed",
                    format!("the stop failed ({e}); the key may still be live: retrying"),
                    Vec::new(),
                );
                out.push(r);
            }
            (ActuatorResult::Activated { epoch, result, .. }, Phase::Promoting { epoch: e })
                if epoch == e =>
            {
                match result {
                    Ok(()) => {
                        self.phase = Phase::Active { epoch };
                        let r = self.record(
                            now,
                            RecordKind::RoleChange,
                            RecordTag::FailoverCompleted,
                            "lock_acquired",
                            format!("active at epoch {epoch}: signing under the etcd lock"),
                            Vec::new(),
                        );
                        out.push(r);
                        // The actuator reports an activation only once verified on chain.
                        if let Some(hrs) = self.highest_seen {
                            self.last_put = Some(hrs);
                            out.push(EtcdAction::PutWatermark { hrs });
                        }
                    }
                    Err(e) => {
                        self.phase = Phase::Fenced {
                            epoch,
                            off_since: None,
                        };
                        let r = self.record(
                            now,
                            RecordKind::Alert,
                            RecordTag::FailoverAborted,
                            "activation_failed",
                            format!("the activation failed ({e}); stopping and giving the lock up"),
                            Vec::new(),
                        );
                        out.push(r);
                        out.push(Self::deactivate("the activation failed"));
                    }
                }
            }
            _ => {}
        }
    }

    /// The passive's decision, on every event.
    fn consider(&mut self, now: Duration, out: &mut Vec<EtcdAction>) {
        if self.phase != Phase::Passive {
            return;
        }
        if self.paused {
            self.hold(
                now,
                "paused",
                "not promoting: automation is paused by the operator (`syncguard resume`)".into(),
                out,
            );
            return;
        }
        let Some((view, at)) = self.lock.clone() else {
            return;
        };
        if !self.fresh(at, now) {
            self.free_since = None;
            self.hold(
                now,
                "etcd_no_news",
                "not promoting: no recent look at the etcd lock".into(),
                out,
            );
            return;
        }
        match view {
            LockView::Unreachable { reason } => {
                self.free_since = None;
                self.hold(
                    now,
                    "etcd_unreachable",
                    format!("not promoting: etcd is unreachable ({reason})"),
                    out,
                );
                return;
            }
            LockView::Held(h) => {
                self.free_since = None;
                self.hold(
                    now,
                    "held",
                    format!(
                        "staying passive: {} holds the lock at epoch {}",
                        h.node_id, h.epoch
                    ),
                    out,
                );
                return;
            }
            LockView::Free => {}
        }
        let own_height = self.latest_height().unwrap_or(0);
        let (since, height_then) = *self.free_since.get_or_insert((now, own_height));
        let rank = self.params.rank;
        let wait = self
            .params
            .order
            .wait(rank, seed(&self.params.node_id, self.epoch));
        if now < since + wait {
            self.hold(
                now,
                "waiting",
                format!(
                    "the lock is free: waiting my turn ({} ahead of me) before trying it",
                    rank
                ),
                out,
            );
            return;
        }
        let Some((h, hat)) = self.health.clone() else {
            self.hold(
                now,
                "own_no_health",
                "not promoting: no health verdict for my own node yet".into(),
                out,
            );
            return;
        };
        if !self.fresh(hat, now) {
            self.hold(
                now,
                "own_no_health",
                "not promoting: no recent health verdict for my own node".into(),
                out,
            );
            return;
        }
        if !h.healthy || h.stalled {
            let why = h.why.clone().unwrap_or_else(|| "stalled".into());
            self.hold(
                now,
                "own_unhealthy",
                format!("not promoting: my own node is unhealthy ({why})"),
                out,
            );
            return;
        }
        let height = h.latest_height.unwrap_or(0);
        if height <= height_then {
            self.hold(
                now,
                "own_not_advancing",
                format!(
                    "not promoting: my node has seen no new block since the lock was seen free \
                     (height {height_then} then, {height} now)"
                ),
                out,
            );
            return;
        }
        let id = self.next_witness_id;
        self.next_witness_id += 1;
        self.phase = Phase::Witnessing { id, asked_at: now };
        out.push(EtcdAction::Failover(Action::RequestWitness {
            id,
            blocks: self.params.witness_blocks,
        }));
    }
}

#[cfg(test)]
mod tests;
