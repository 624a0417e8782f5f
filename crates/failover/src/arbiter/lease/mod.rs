//! [`Lease`]: the etcd arbiter (`coordination.backend: etcd`), for clusters of two or more
//! nodes. The lock is the authority: a node holds the validator role only under a lease it
//! acquired (a transaction that succeeds only when the leader key is absent and no handover
//! names another node), and the lease's create revision is its epoch. The core's rules still
//! apply on top: a free lock is tried only after the promotion order's wait, any late start
//! excluded, the own node fit and advancing, and a clean witness (`Evidence::leased`).
//!
//! What etcd keeps beside the lock carries the rest (`lock.rs`): a planned handover (the old
//! holder stops, then hands the lock to the target, with its final state), a request to the
//! holder (a switchover to the asking node, a fallback to the primary site), the cluster-wide
//! pause, and every node's own status (`members/`: the targets' health for a switchover).
//!
//! A holder stops at once when its lease ends (the keeper could not renew it in time, or
//! etcd lost it) or when a look at the lock made after its acquisition shows another holder
//! or nobody; once the stop is confirmed it gives the lock up and stays fenced until a look
//! made after the stop shows somebody else (or nobody) holding it.
//!
//! - `mod.rs` — the state, the [`Arbiter`] implementation, the holder's side;
//! - `candidacy.rs` — a passive's side: which path is open, the handover to it, the pause;
//! - `requests.rs` — the holder's answers: to a request for the role, to its handover;
//! - `order.rs` — the promotion order of several passives.

mod candidacy;
pub mod order;
mod requests;

use std::time::Duration;

use serde::Serialize;
use syncguard_validator::Hrs;

use super::{Arbiter, Candidate, Path};
use crate::action::Action;
use crate::common::Common;
use crate::event::{Event, PeerStatus};
use crate::gate::{Evidence, LeaseProof};
use crate::hold::Hold;
use crate::local::OwnFit;
use crate::lock::{AcquireReport, LeaseEnd, LockState, LockView};
use crate::message::RequestKind;
use crate::params::{Params, ParamsError};
use crate::phase::{DemoteCause, Pending, Phase};
use crate::record::{RecordKind, RecordTag};
use crate::timers::{Timer, Timers};
use crate::types::{HandedState, NodeId, Role};
use crate::witness::CleanWitness;

pub use order::{JitterNotBelowStep, PromotionOrder};

/// The etcd arbiter's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseParams {
    /// This node's `coordination.failover_priority` (lower tries first).
    pub priority: u32,
    /// How many candidates try before this one (`PromotionOrder::rank`; a node's config does
    /// not carry the others' priorities, so the daemon uses its own priority).
    pub rank: usize,
    /// The spacing of the promotion order.
    pub order: PromotionOrder,
    /// `coordination.etcd.lease_ttl`: a holder keeps the lock at least this long after it
    /// took it, so looks answered closer together than this see every holder.
    pub lease_ttl: Duration,
}

/// The etcd arbiter's state.
#[derive(Debug, Clone, Serialize)]
pub struct Lease {
    params: LeaseParams,
    lock: Option<LockSeen>,
    /// Since when every look at the lock failed.
    unreachable_since: Option<Duration>,
    /// When the lock was first seen free in this stretch, and the own height then.
    free_since: Option<(Duration, Option<u64>)>,
    /// When the acquisition's answer came: looks asked before say nothing about this lease.
    acquired_at: Option<Duration>,
    /// What the acquisition in flight rests on.
    #[serde(skip)]
    claim: Option<Claim>,
    last_put: Option<(i64, i32, u8)>,
    /// When the stop of a fenced or superseded holder was confirmed: looks asked after it
    /// show whether the lock moved on.
    off_since: Option<Duration>,
    /// The last holder epoch seen (a new one may start late).
    seen_holder: Option<u64>,
    /// When the last look etcd answered was asked: a longer gap may hide a holder.
    last_answered: Option<Duration>,
    /// When this node last set (`true`) or lifted the cluster-wide pause, until a look at
    /// etcd shows it stored: looks asked before it, or before the write landed, do not undo
    /// it.
    pause_sent: Option<(Duration, bool)>,
    /// The request last answered (by the holder) and when, so it is answered once — until
    /// the requester's repeat comes (`handover_timeout` later): a declined request whose
    /// clearing got lost, then re-put, is asked again and must be answered again.
    answered_request: Option<((NodeId, RequestKind), Duration)>,
    /// The takeover's target: the epoch of the gone holder's lock to remove first.
    takeover_release: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
struct LockSeen {
    at: Duration,
    asked_at: Duration,
    view: LockView,
}

#[derive(Debug, Clone)]
struct Claim {
    fit: OwnFit,
    proof: LeaseProof,
    story: String,
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

fn hrs_key(h: Hrs) -> (i64, i32, u8) {
    (h.height, h.round, h.step.as_u8())
}

impl Lease {
    /// An arbiter that has seen nothing yet.
    pub fn new(params: LeaseParams) -> Lease {
        Lease {
            params,
            lock: None,
            unreachable_since: None,
            free_since: None,
            acquired_at: None,
            claim: None,
            last_put: None,
            off_since: None,
            seen_holder: None,
            last_answered: None,
            pause_sent: None,
            answered_request: None,
            takeover_release: None,
        }
    }

    /// The last look at the lock, if any.
    pub fn lock_view(&self) -> Option<&LockView> {
        self.lock.as_ref().map(|l| &l.view)
    }

    /// The last look, when it is news and etcd answered.
    fn fresh_state<'a>(&'a self, c: &Common, now: Duration) -> Option<&'a LockState> {
        let l = self.lock.as_ref().filter(|l| c.is_fresh(Some(l.at), now))?;
        match &l.view {
            LockView::Seen(st) => Some(st),
            LockView::Unreachable { .. } => None,
        }
    }

    /// A member's own status, from a fresh look.
    fn member<'a>(&'a self, c: &Common, id: &NodeId, now: Duration) -> Option<&'a PeerStatus> {
        self.fresh_state(c, now)?
            .members
            .iter()
            .find(|m| m.node_id == *id)
    }

    fn wait_turn(&self, c: &Common) -> Duration {
        let s = seed(c.params.node_id.as_str(), c.epoch);
        self.params.order.wait(self.params.rank, s)
    }

    fn on_lock(&mut self, c: &mut Common, asked_at: Duration, view: LockView, now: Duration) {
        self.unreachable_since = match view {
            LockView::Unreachable { .. } => Some(self.unreachable_since.unwrap_or(now)),
            LockView::Seen(_) => None,
        };
        if let (Some(holding), LockView::Seen(st)) = (c.holding(), &view) {
            if self.acquired_at.is_some_and(|t| asked_at >= t) {
                let me = &c.params.node_id;
                let moved = match &st.holder {
                    None => Some(format!(
                        "the leader key of epoch {holding} is gone (lease expired)"
                    )),
                    Some(h) if h.epoch != holding || h.node_id != *me => Some(format!(
                        "the lock is held by {} at epoch {}, not by this node at epoch {holding}",
                        h.node_id, h.epoch
                    )),
                    Some(_) => None,
                };
                if let Some(moved) = moved {
                    let why = format!("stopping at once: {moved}; somebody else may take the role");
                    stop_holding(c, (RecordTag::SelfFenced, "lock_lost"), why, moved, now);
                }
            }
        }
        self.lock = Some(LockSeen {
            at: now,
            asked_at,
            view: view.clone(),
        });
        let LockView::Seen(st) = view else {
            return;
        };
        self.after_blindness(c, asked_at, now);
        // The watermark is a state signed with the key: no fence of this node goes below it
        // (the acquisition reads it again; this keeps it known when that read fails).
        c.fence.see(st.watermark);
        self.follow_pause(c, &st, asked_at, now);
        // Another holder's epoch is learned; this node's own lock is its own to learn from
        // the acquisition's answer (a look may show it first: adopting it here would make
        // that answer look behind).
        if let Some(h) = st.holder.as_ref().filter(|h| h.node_id != c.params.node_id) {
            if self.seen_holder != Some(h.epoch) {
                // A holder this node has not seen signing yet may start any moment.
                self.seen_holder = Some(h.epoch);
                c.holder_may_start(now);
            }
            c.adopt_epoch(h.epoch);
            // Its own status says active at its epoch: its activation is verified.
            let verified = st
                .members
                .iter()
                .find(|m| m.node_id == h.node_id && m.role == Role::Active && m.epoch >= h.epoch);
            if let Some(m) = verified {
                let who = format!(
                    "the lock holder {} reports itself active at epoch {}",
                    m.node_id, m.epoch
                );
                c.holder_verified(m.epoch, &who, now);
            }
        }
        if matches!(c.phase, Phase::Active { .. }) {
            self.answer_request(c, &st, now);
        }
        if let Some(ho) = &st.handover {
            if ho.to == c.params.node_id {
                self.take_handover(c, ho.clone(), now);
            }
        }
    }

    /// A holder keeps the lock for at least a lease, or gives it up only after its confirmed
    /// stop — but a holder whose lease ends while its activation runs stops only when the
    /// activation reports. A look answered (`now`) less than a lease after the previous
    /// answered one was asked sees every holder that took the lock in between; after a
    /// longer gap (etcd unreachable, looks lost) — or one longer than the news last — a holder
    /// may have acquired, started and lost its lease unseen, its activation still running: it
    /// may start late, as at a boot.
    fn after_blindness(&mut self, c: &mut Common, asked_at: Duration, now: Duration) {
        let since = self.last_answered.unwrap_or(c.boot_at);
        self.last_answered = Some(asked_at);
        let seen_all = c.params.timing.news_max_age.min(self.params.lease_ttl);
        if now.saturating_sub(since) >= seen_all {
            c.holder_may_start(now);
        }
    }

    fn on_acquire(&mut self, c: &mut Common, report: AcquireReport, now: Duration) {
        let asked = matches!(
            c.phase,
            Phase::Passive {
                pending: Pending::Acquire { .. }
            }
        );
        if !asked {
            if let AcquireReport::Acquired { .. } = report {
                // Not expected (a late answer): never keep a lock not decided on now.
                c.push(Action::Release);
            }
            return;
        }
        c.phase = Phase::passive();
        let claim = self.claim.take();
        match report {
            AcquireReport::Held(h) => {
                c.adopt_epoch(h.epoch);
                self.free_since = None;
                let hold = Hold::LockHeld {
                    holder: h.node_id.to_string(),
                    epoch: h.epoch,
                };
                c.hold(now, hold, false);
            }
            AcquireReport::HandoverPending(ho) => {
                let hold = Hold::HandoverPending {
                    to: ho.to.to_string(),
                };
                c.hold(now, hold, false);
            }
            AcquireReport::Failed { reason } => {
                self.free_since = None;
                let reason = format!("the acquisition got no answer: {reason}");
                c.hold(now, Hold::LockUnreachable { reason }, false);
            }
            AcquireReport::Acquired {
                epoch,
                watermark,
                handover,
            } => self.on_acquired(c, claim, epoch, watermark, handover, now),
        }
    }

    fn on_acquired(
        &mut self,
        c: &mut Common,
        claim: Option<Claim>,
        epoch: u64,
        watermark: Option<Hrs>,
        handover: Option<crate::lock::LockHandover>,
        now: Duration,
    ) {
        if epoch <= c.epoch {
            self.free_since = None;
            c.last_hold = Some("epoch_behind");
            let why = format!(
                "not promoting: etcd's revision {epoch} is not above the epoch {} this node \
                 already used — a fresh etcd or a new coordination.etcd.prefix? Epochs must \
                 only grow; releasing the lock",
                c.epoch
            );
            let tag = (RecordTag::PromotionRefused, "epoch_behind");
            c.record_as(now, RecordKind::Alert, tag, why, vec![epoch, c.epoch]);
            c.push(Action::Release);
            return;
        }
        let Some(claim) = claim else {
            c.push(Action::Release);
            return;
        };
        let proof = match (handover, claim.proof) {
            // The acquisition consumed a handover naming this node: the old holder's
            // confirmed stop is the proof, whatever the claim was made on.
            (Some(ho), _) => LeaseProof::HandedOver {
                from: ho.from,
                final_state: ho.final_state,
            },
            (None, LeaseProof::HandedOver { from, .. }) => {
                // The handover expired before this node took the lock: a free lock without a
                // witness is no evidence.
                let why = format!(
                    "the handover from {from} expired before this node took the lock; \
                     releasing it — the normal failover rules decide from here"
                );
                c.record(now, RecordKind::Refusal, why);
                c.push(Action::Release);
                return;
            }
            (None, proof) => proof,
        };
        self.acquired_at = Some(now);
        self.last_put = None;
        self.free_since = None;
        // A request answered under an earlier holding is a new question to this one.
        self.answered_request = None;
        let story = format!(
            "{}; this node acquired the lock at epoch {epoch}",
            claim.story
        );
        c.promote(
            epoch,
            Evidence::leased(claim.fit, proof, watermark),
            story,
            now,
        );
        // A request for the role this node made (or one made for it) is answered now: left
        // in etcd until it expires, a later holder would answer it again and hand the role
        // back here.
        c.push(Action::ClearRequest {
            from: c.params.node_id.clone(),
        });
    }

    fn on_lease_end(&mut self, c: &mut Common, why: LeaseEnd, now: Duration) {
        let Some(holding) = c.holding() else {
            return;
        };
        let (reason, words) = match why {
            LeaseEnd::NotRenewed => (
                "lease_unrenewable",
                "the lease could not be renewed in time (etcd unreachable or too slow)",
            ),
            LeaseEnd::Lost => ("lease_lost", "etcd says the lease is gone"),
        };
        let why = format!(
            "fencing myself at epoch {holding}: {words}; stopping before anybody else can take \
             the lock"
        );
        let stop = format!("self-fence: {words}");
        stop_holding(c, (RecordTag::SelfFenced, reason), why, stop, now);
    }
}

/// Stops holding the role at once: an active stops now, a promoting node as soon as its
/// activation reports. `(tag, reason)` and `why` for the record, `stop` for the actuator.
fn stop_holding(c: &mut Common, tag: (RecordTag, &str), why: String, stop: String, now: Duration) {
    match &mut c.phase {
        Phase::Active { .. } => {
            c.phase = Phase::Demoting {
                cause: DemoteCause::SelfFence,
                retry_at: None,
            };
            c.record_as(now, RecordKind::Alert, tag, why, Vec::new());
            c.deactivate(stop);
        }
        Phase::Promoting { abort, .. } if abort.is_none() => {
            *abort = Some(stop);
            c.record_as(now, RecordKind::Alert, tag, why, Vec::new());
        }
        _ => {}
    }
}

impl Arbiter for Lease {
    fn validate(&self, params: &Params) -> Result<(), ParamsError> {
        params.validate_own()
    }

    fn on_start(&mut self, _c: &mut Common, _standby_right: Option<bool>, _now: Duration) {}

    fn on_event(&mut self, c: &mut Common, event: Event, now: Duration) {
        match event {
            Event::Lock { asked_at, view } => self.on_lock(c, asked_at, view, now),
            Event::Acquire(report) => self.on_acquire(c, report, now),
            Event::LeaseEnded { why } => self.on_lease_end(c, why, now),
            Event::HandedOver { to, result } => self.on_handed_over(c, to, result, now),
            // Only a holder writes the watermark, and only upwards.
            Event::StateSeen { hrs }
                if c.holding().is_some() && self.last_put.is_none_or(|p| hrs_key(hrs) > p) =>
            {
                self.last_put = Some(hrs_key(hrs));
                c.push(Action::PutWatermark { hrs });
            }
            _ => {}
        }
    }

    fn holder_safety(&mut self, _c: &mut Common, _holding: u64, _now: Duration) {}

    fn contact_lost_since(&self, c: &Common, now: Duration) -> Option<Duration> {
        match &self.lock {
            None => Some(c.boot_at),
            Some(l) if !c.is_fresh(Some(l.at), now) => Some(self.unreachable_since.unwrap_or(l.at)),
            Some(_) => self.unreachable_since,
        }
    }

    fn candidacy(&mut self, c: &mut Common, now: Duration) -> Result<Candidate, Option<Hold>> {
        self.open_path(c, now)
    }

    fn claim(
        &mut self,
        c: &mut Common,
        cand: Candidate,
        fit: OwnFit,
        clean: CleanWitness,
        now: Duration,
    ) {
        let (proof, force_release) = match cand.path {
            Path::Takeover => (LeaseProof::Takeover(clean), self.takeover_release),
            _ => (LeaseProof::Free(clean), None),
        };
        let story = format!(
            "taking the validator role: {}; my node is healthy at height {}; the chain shows no \
             signature from the validator in blocks {}–{}",
            cand.story,
            fit.height(),
            clean.lo(),
            clean.hi()
        );
        c.phase = Phase::Passive {
            pending: Pending::Acquire {
                deadline: now + c.params.timing.handover_timeout,
            },
        };
        self.claim = Some(Claim { fit, proof, story });
        c.push(Action::TryAcquire { force_release });
    }

    fn hand_over(
        &mut self,
        c: &mut Common,
        to: NodeId,
        _epoch: u64,
        final_state: Option<HandedState>,
        now: Duration,
    ) {
        let final_words = final_state.as_ref().map_or_else(
            || "final state unknown".to_string(),
            |f| format!("final state {}", f.hrs),
        );
        c.phase = Phase::HandingOver {
            to: to.clone(),
            epoch: c.epoch,
            deadline: now + c.params.timing.handover_timeout,
            accepted: false,
        };
        c.push(Action::HandOver {
            to: to.clone(),
            final_state: final_state.map(|f| f.hrs),
        });
        let why = format!(
            "handover: stopped signing here and swapped in the placeholder key ({final_words}); \
             handing the lock to {to}"
        );
        c.record(now, RecordKind::RoleChange, why);
    }

    fn ask_for_role(&mut self, c: &mut Common, kind: RequestKind, now: Duration) -> bool {
        if self.holder_seen(c, now).is_none() {
            return false;
        }
        if kind == RequestKind::Fallback {
            c.phase = Phase::Passive {
                pending: Pending::Request {
                    kind,
                    deadline: now + c.params.timing.handover_timeout,
                },
            };
        }
        c.push(Action::PutRequest {
            kind,
            for_node: None,
        });
        true
    }

    fn handover_target(&self, c: &Common, now: Duration) -> Result<NodeId, Option<String>> {
        let me = &c.params.node_id;
        let Some(st) = self.fresh_state(c, now) else {
            return Err(Some("etcd gives no recent view of the other nodes".into()));
        };
        let others: Vec<&PeerStatus> = st.members.iter().filter(|m| m.node_id != *me).collect();
        // A stalled node hands over only to a node that sees blocks it does not: when all
        // are stuck at the same height it is a chain-wide halt, and nothing should move.
        let best_height = others.iter().filter_map(|m| m.latest_height).max();
        let ahead = match (best_height, c.local.latest_height) {
            (Some(theirs), Some(mine)) => theirs > mine,
            (Some(_), None) => true,
            _ => false,
        };
        let stuck = c.local.stalled
            || c.local
                .no_new_block_for(now)
                .is_some_and(|d| d >= c.params.timing.stall_age);
        if stuck && !ahead {
            return Err(None);
        }
        let mut ready: Vec<&PeerStatus> = others
            .iter()
            .copied()
            .filter(|m| super::ready_as_target(c, &m.node_id, Some(m)).is_ok())
            .collect();
        ready.sort_by(|a, b| {
            b.latest_height
                .cmp(&a.latest_height)
                .then(a.node_id.cmp(&b.node_id))
        });
        match ready.first() {
            Some(m) => Ok(m.node_id.clone()),
            None if others.is_empty() => {
                Err(Some("no other node publishes its status in etcd".into()))
            }
            None => Err(Some(format!(
                "no other node can take over ({})",
                others
                    .iter()
                    .filter_map(|m| super::ready_as_target(c, &m.node_id, Some(m)).err())
                    .collect::<Vec<_>>()
                    .join("; ")
            ))),
        }
    }

    fn target_ready(&self, c: &Common, to: &NodeId, now: Duration) -> Result<(), String> {
        match self.member(c, to, now) {
            Some(st) => super::ready_as_target(c, to, Some(st)),
            None => Err(format!(
                "{to} publishes no status in etcd (not running, or not a node of this cluster)"
            )),
        }
    }

    fn holder_seen(&self, c: &Common, now: Duration) -> Option<(NodeId, Option<u64>)> {
        let h = self.fresh_state(c, now)?.holder.as_ref()?;
        if h.node_id == c.params.node_id {
            return None;
        }
        let height = self
            .member(c, &h.node_id, now)
            .and_then(|m| m.latest_height);
        Some((h.node_id.clone(), height))
    }

    fn members(&self) -> Vec<PeerStatus> {
        match self.lock.as_ref().map(|l| &l.view) {
            Some(LockView::Seen(st)) => st.members.clone(),
            _ => Vec::new(),
        }
    }

    fn holder_is_primary(&self, c: &Common, now: Duration) -> bool {
        self.holder_seen(c, now)
            .and_then(|(id, _)| self.member(c, &id, now))
            .is_some_and(|m| m.is_primary_site)
    }

    fn may_unfence(&self, c: &Common, now: Duration) -> Option<String> {
        let off = self.off_since?;
        let l = self.lock.as_ref().filter(|l| c.is_fresh(Some(l.at), now))?;
        if l.asked_at < off {
            return None; // asked before the stop was confirmed: says nothing
        }
        let LockView::Seen(st) = &l.view else {
            return None;
        };
        let elsewhere = match &st.holder {
            None => "nobody holds the lock".to_string(),
            Some(h) if h.node_id != c.params.node_id => {
                format!("{} holds the lock at epoch {}", h.node_id, h.epoch)
            }
            Some(_) => return None,
        };
        Some(format!("passive again: the key is off and {elsewhere}"))
    }

    fn after_activation(&mut self, c: &mut Common, _epoch: u64, ok: bool, _now: Duration) {
        if let (true, Some(hrs)) = (ok, c.fence.highest_seen) {
            self.last_put = Some(hrs_key(hrs));
            c.push(Action::PutWatermark { hrs });
        }
    }

    fn after_fenced(&mut self, c: &mut Common, now: Duration) {
        self.off_since = Some(now);
        self.acquired_at = None;
        c.push(Action::Release);
    }

    fn after_failed_activation(
        &mut self,
        _c: &mut Common,
        _reply_to: Option<(NodeId, u64)>,
        _now: Duration,
    ) {
    }

    fn on_pause(&mut self, c: &mut Common, paused: bool, now: Duration) {
        self.pause_sent = Some((now, paused));
        c.push(Action::SetPaused { paused });
    }

    fn timers(&self, c: &Common, t: &mut Timers) {
        let timing = &c.params.timing;
        t.set_opt(
            Timer::ContactAgesOut,
            self.lock
                .as_ref()
                .map(|l| crate::timers::just_after(l.at + timing.news_max_age)),
        );
        t.set_opt(
            Timer::WaitEnds,
            self.free_since.map(|(since, _)| self.turn_after(c, since)),
        );
    }

    fn peer_view(&self, _c: &Common, now: Duration) -> (Option<PeerStatus>, Option<Duration>) {
        (None, self.unreachable_since.map(|t| now.saturating_sub(t)))
    }

    fn standing_by(&self, c: &Common, now: Duration) -> String {
        match self.fresh_state(c, now).and_then(|st| st.holder.as_ref()) {
            Some(h) => format!(
                "standing by: {} holds the lock at epoch {}",
                h.node_id, h.epoch
            ),
            None => "standing by".to_string(),
        }
    }

    fn lost_peer(&self, c: &Common, now: Duration) -> bool {
        self.seen_holder.is_some()
            && self
                .fresh_state(c, now)
                .is_some_and(|st| st.holder.is_none())
    }

    fn answer_started(&mut self, _c: &mut Common, _epoch: u64, _now: Duration) {}

    fn replacement_words(&self, _c: &Common) -> String {
        "etcd".to_string()
    }

    fn unfence_words(&self, _c: &Common) -> String {
        "a look at the lock made after the stop shows another holder or nobody".to_string()
    }

    fn holder_words(&self, _c: &Common) -> String {
        "the lock's holder".to_string()
    }

    fn relay_check(&self, c: &Common, to: &NodeId, now: Duration) -> Option<Result<(), String>> {
        if !matches!(c.phase, Phase::Passive { .. }) {
            return None;
        }
        let Some((holder, _)) = self.holder_seen(c, now) else {
            return Some(Err(
                "no other node holds the lock now: there is no holder to hand \
                             the role over (`syncguard takeover` on the target if the holder \
                             is gone for good)"
                    .into(),
            ));
        };
        if holder == *to {
            return Some(Err(format!("{to} already holds the lock")));
        }
        Some(self.target_ready(c, to, now))
    }

    fn relay(&mut self, c: &mut Common, to: NodeId, _now: Duration) {
        c.push(Action::PutRequest {
            kind: RequestKind::Switchover,
            for_node: Some(to),
        });
    }

    fn knows(&self, _c: &Common, to: &NodeId) -> Result<(), String> {
        let members = self
            .lock
            .as_ref()
            .and_then(|l| match &l.view {
                LockView::Seen(st) => Some(&st.members),
                LockView::Unreachable { .. } => None,
            })
            .filter(|m| !m.is_empty());
        match members {
            Some(m) if !m.iter().any(|s| s.node_id == *to) => Err(format!(
                "`{to}` publishes no status in etcd: not a running node of this cluster"
            )),
            _ => Ok(()),
        }
    }
}
