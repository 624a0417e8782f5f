//! [`Machine`]: the failover state machine. Every rule of DESIGN §3 and §5 that decides a
//! role lives in this file; see the crate docs for the invariants and where each is kept.

use std::time::Duration;

use serde::Serialize;
use syncguard_validator::{Hrs, Step};

use crate::action::{Action, ActivationCause};
use crate::event::{
    ActuatorResult, ChainReport, Event, LocalHealth, OperatorCommand, PeerObservation, PeerStatus,
    WitnessReport,
};
use crate::message::{HandoverOutcome, MessageBody, PeerMessage, RequestKind};
use crate::params::{Params, ParamsError};
use crate::record::{words_duration, Hold, Record, RecordKind, RecordTag};
use crate::types::{opt_hrs_serde, HandedState, NodeId, Role, Wish};

/// The failover state machine of one node. Pure: [`Machine::handle`] maps
/// `(state, event, now)` to `(state', actions)`; it reads no clock and performs no I/O.
///
/// `now` is the time since an arbitrary origin of a **monotonic** clock (the driver's
/// `Instant` at start). A `now` earlier than one already seen is treated as the latest seen.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    params: Params,
    phase: Phase,
    paused: bool,
    epoch: u64,
    wish: Wish,
    boot_at: Duration,
    /// `--role active` not yet answered (by a claim, or by finding the peer active).
    boot_claim_pending: bool,
    last_now: Duration,
    passive_since: Option<Duration>,
    local: LocalView,
    peer: PeerView,
    witness: WitnessView,
    /// The highest sign state this machine has seen (own final states, handed states,
    /// replica, peer reports, its own fences): no fence goes below it.
    #[serde(with = "opt_hrs_serde")]
    highest_seen: Option<Hrs>,
    /// The validator's signatures in the local node's commits.
    chain: ChainView,
    /// The standby right: `Some(e)` with `e == epoch` means this node is the designated
    /// standby for epoch `e` and the only node that may fail over alone (see crate docs).
    right: Option<u64>,
    /// The latest epoch under which this node itself acted (promoted, offered, granted,
    /// answered an offer). An epoch merely learned from the peer's status is not one: the
    /// first offer under it may still be taken.
    acted_at: Option<u64>,
    last_grant: Option<(NodeId, u64)>,
    last_offer: Option<OfferSeen>,
    handover_backoff_until: Option<Duration>,
    takeover: Option<(Duration, Duration)>,
    last_fallback_request: Option<Duration>,
    stale_peer_since: Option<Duration>,
    last_hold: Option<&'static str>,
    last_alert: Option<String>,
    last_why: String,
    next_witness_id: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    /// Before `Event::Start`.
    Booting,
    Passive {
        pending: Pending,
    },
    /// Activate ordered, not yet reported.
    Promoting {
        epoch: u64,
        cause: ActivationCause,
        /// Set when, meanwhile, this node learned it must not hold the role: deactivate as
        /// soon as the activation reports (the actuator runs one operation at a time).
        abort: Option<String>,
        /// The old holder to answer once started (planned handover).
        reply_to: Option<NodeId>,
    },
    Active {
        epoch: u64,
        since: Duration,
        /// The height of the signature that verified the activation: the silence rule
        /// counts missed commits above it (older signatures may be the previous holder's).
        signed_floor: u64,
    },
    /// Deactivate ordered, not yet confirmed: the key may still be live.
    Demoting {
        cause: DemoteCause,
        retry_at: Option<Duration>,
    },
    /// Key confirmed off, role offered to `to` at `epoch`, waiting for the answer.
    HandingOver {
        to: NodeId,
        epoch: u64,
        deadline: Duration,
        accepted: bool,
    },
    Fenced {
        since: Duration,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "pending", rename_all = "snake_case")]
enum Pending {
    None,
    Claim {
        epoch: u64,
        deadline: Duration,
    },
    Request {
        kind: RequestKind,
        deadline: Duration,
    },
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
enum DemoteCause {
    Boot,
    Handover { to: NodeId, epoch: u64 },
    Superseded,
    SelfFence,
    ActivationFailed { reply_to: Option<(NodeId, u64)> },
    NotPersisted,
}

#[derive(Debug, Clone, Default, Serialize)]
struct LocalView {
    at: Option<Duration>,
    healthy: bool,
    latest_height: Option<u64>,
    stalled: bool,
    why: Option<String>,
    healthy_since: Option<Duration>,
    stalled_since: Option<Duration>,
    /// When the reported height last grew (or `/status` first answered): how long the node
    /// has seen no new block, for the handover on local failure.
    height_grew_at: Option<Duration>,
    /// The age of the node's newest block at the last round (S4's "follows no chain").
    block_age: Option<Duration>,
}

/// The last [`ChainReport`], and when it came.
#[derive(Debug, Clone, Default, Serialize)]
struct ChainView {
    at: Option<Duration>,
    latest: u64,
    last_signed: Option<u64>,
    fastest_block: Option<Duration>,
}

/// A holder may have started signing at `at` without this node seeing it; a signature of
/// the validator above height `above` on chain proves it did (and then no late start is
/// pending any more).
#[derive(Debug, Clone, Copy, Serialize)]
struct MayStart {
    at: Duration,
    /// `None` until a height is known (at boot): the next chain report sets it to the
    /// chain's height then, so only a signature made after it counts.
    above: Option<u64>,
    /// The epoch a holder may start under; the peer reporting itself active at this epoch
    /// or later has finished (and verified) its activation.
    epoch: u64,
}

#[derive(Debug, Clone, Serialize)]
struct PeerView {
    last_at: Option<Duration>,
    /// The last answer when it was reachable and the right node; `None` otherwise.
    status: Option<PeerStatus>,
    unreachable_reason: Option<String>,
    lost_since: Option<Duration>,
    height_at_loss: Option<u64>,
    /// Role and epoch at the last good look, for words.
    last_seen: Option<(Role, u64)>,
    /// The epoch at which the peer was last seen promoting or active.
    seen_holding: Option<u64>,
    passive_since: Option<Duration>,
    /// A start of a holder this node has not yet seen signing (the post-handover wait).
    may_start: Option<MayStart>,
    /// The epoch the peer was first seen promoting under, when, and this node's height then:
    /// a promotion that lasts longer than an activation can (`Timing::activation_bound`) is
    /// a lost peer.
    promoting_since: Option<(u64, Duration, Option<u64>)>,
    mismatch: Option<NodeId>,
}

#[derive(Debug, Clone, Serialize)]
struct OfferSeen {
    from: NodeId,
    epoch: u64,
    accepted: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
struct WitnessView {
    pending: Option<PendingWitness>,
    last: Option<WitnessSeen>,
}

#[derive(Debug, Clone, Serialize)]
struct PendingWitness {
    id: u64,
    requested_at: Duration,
    height_at_request: Option<u64>,
    blocks: u64,
}

#[derive(Debug, Clone, Serialize)]
struct WitnessSeen {
    requested_at: Duration,
    latest_height: u64,
    /// The heights read without a signature, from the newest down to the first that is
    /// signed, unreadable or without a block time, with their block times; oldest first.
    clean: Vec<(u64, Duration)>,
    /// What ends the clean run below.
    stop: RunStop,
    signed: Vec<u64>,
    unknown: Vec<u64>,
    /// Heights of the window asked for, and how many of them were read.
    wanted: u64,
    read: usize,
}

/// Why a witness's clean run ends where it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum RunStop {
    /// A commit signed by the validator.
    Signed(u64),
    /// A commit that could not be read (or has no block time).
    Unknown(u64),
    /// The window asked for ends there (ask for more).
    WindowStart,
    /// The node's latest height went below what it was at the request.
    Regressed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Failover,
    Claim,
    Takeover,
}

struct Candidate {
    path: Path,
    /// A witness requested before this proves nothing for this candidacy.
    not_before: Duration,
    story: String,
}

enum WitnessState {
    Missing,
    Clean { lo: u64, hi: u64 },
    Blocked(Hold),
}

/// A one-shot functional form of [`Machine::handle`].
pub fn step(mut machine: Machine, event: Event, now: Duration) -> (Machine, Vec<Action>) {
    let actions = machine.handle(event, now);
    (machine, actions)
}

/// Compact view for `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Role shown (`paused` when paused).
    pub role: Role,
    /// Role held underneath.
    pub held_role: Role,
    /// Paused by the operator.
    pub paused: bool,
    /// Current epoch.
    pub epoch: u64,
    /// The boot wish.
    pub wish: Wish,
    /// The latest decision or refusal, in words.
    pub last_why: String,
    /// The peer's last status, if it is reachable.
    pub peer: Option<PeerStatus>,
    /// Milliseconds the peer has been unreachable, if it is.
    pub peer_unreachable_for_ms: Option<u64>,
    /// Whether this node may fail over alone (it is the designated standby).
    pub standby_right: bool,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn height_i64(h: u64) -> i64 {
    i64::try_from(h).unwrap_or(i64::MAX)
}

fn max_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl Machine {
    /// A machine that has not started: it orders nothing until `Event::Start`.
    pub fn new(params: Params) -> Result<Machine, ParamsError> {
        params.validate()?;
        Ok(Machine {
            params,
            phase: Phase::Booting,
            paused: false,
            epoch: 0,
            wish: Wish::Passive,
            boot_at: Duration::ZERO,
            boot_claim_pending: false,
            last_now: Duration::ZERO,
            passive_since: None,
            local: LocalView::default(),
            peer: PeerView {
                last_at: None,
                status: None,
                unreachable_reason: None,
                lost_since: None,
                height_at_loss: None,
                last_seen: None,
                seen_holding: None,
                passive_since: None,
                may_start: None,
                promoting_since: None,
                mismatch: None,
            },
            witness: WitnessView::default(),
            highest_seen: None,
            chain: ChainView::default(),
            right: None,
            acted_at: None,
            last_grant: None,
            last_offer: None,
            handover_backoff_until: None,
            takeover: None,
            last_fallback_request: None,
            stale_peer_since: None,
            last_hold: None,
            last_alert: None,
            last_why: "not started".into(),
            next_witness_id: 1,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The role shown to operators: `Paused` while paused, else the held role.
    pub fn role(&self) -> Role {
        if self.paused {
            Role::Paused
        } else {
            self.held_role()
        }
    }

    /// The role held (what matters for safety). Before its boot deactivation is confirmed a
    /// node reports `Demoting`: the key may still be live from before a daemon crash.
    pub fn held_role(&self) -> Role {
        match self.phase {
            Phase::Booting => Role::Demoting,
            Phase::Passive { .. } => Role::Passive,
            Phase::Promoting { .. } => Role::Promoting,
            Phase::Active { .. } => Role::Active,
            Phase::Demoting { .. } | Phase::HandingOver { .. } => Role::Demoting,
            Phase::Fenced { .. } => Role::Fenced,
        }
    }

    /// The current epoch (the highest known; persisted through `PersistEpoch`).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether an operator paused the automation.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The epoch this node signs under, when it is promoting or active.
    pub fn holding_epoch(&self) -> Option<u64> {
        match self.phase {
            Phase::Promoting { epoch, .. } | Phase::Active { epoch, .. } => Some(epoch),
            _ => None,
        }
    }

    /// The latest decision or refusal, in words.
    pub fn last_why(&self) -> &str {
        &self.last_why
    }

    /// What this node tells its peer (the peer status API).
    pub fn peer_status(&self) -> PeerStatus {
        PeerStatus {
            node_id: self.params.node_id.clone(),
            role: self.held_role(),
            paused: self.paused,
            epoch: self.epoch,
            healthy: self.local.healthy,
            latest_height: self.local.latest_height,
            is_primary_site: self.params.is_primary_site,
            last_state: self.highest_seen,
            standby_right: self.has_standby_right(),
            wants_role: self.boot_claim_pending,
        }
    }

    /// The compact `/status` view.
    pub fn status(&self) -> Status {
        Status {
            role: self.role(),
            held_role: self.held_role(),
            paused: self.paused,
            epoch: self.epoch,
            wish: self.wish,
            last_why: self.last_why.clone(),
            peer: self.peer.status.clone(),
            peer_unreachable_for_ms: self
                .peer
                .lost_since
                .map(|t| ms(self.last_now.saturating_sub(t))),
            standby_right: self.has_standby_right(),
        }
    }

    /// Feeds one event at time `now`; returns the actions to perform, in order.
    pub fn handle(&mut self, event: Event, now: Duration) -> Vec<Action> {
        let now = now.max(self.last_now);
        self.last_now = now;
        let mut out = Vec::new();
        if matches!(self.phase, Phase::Booting)
            && !matches!(event, Event::Start { .. } | Event::Operator(_))
        {
            // Nothing is known (not even the persisted epoch) before Start: learn nothing,
            // persist nothing.
            return out;
        }
        if !matches!(self.phase, Phase::Booting) {
            // Deadlines first: an answer that arrives after its deadline finds the question
            // withdrawn.
            self.timeouts(now, &mut out);
        }
        match event {
            Event::Start {
                wish,
                epoch_on_disk,
                standby_right,
            } => self.on_start(wish, epoch_on_disk, standby_right, now, &mut out),
            Event::Tick => {}
            Event::LocalHealth(h) => self.on_local_health(h, now),
            Event::Chain(c) => self.on_chain(c, now, &mut out),
            Event::Peer(obs) => self.on_peer(obs, now, &mut out),
            Event::Witness(r) => self.on_witness(r),
            Event::Actuator(r) => self.on_actuator(r, now, &mut out),
            Event::Message(m) => self.on_message(m, now, &mut out),
            Event::Operator(c) => self.on_operator(c, now, &mut out),
            Event::StateSeen { hrs } => self.see_state(Some(hrs)),
            // The actuator verifies every activation before it reports it (and rolls back
            // what it cannot verify): nothing is left to decide on a separate report.
            Event::Verify(_) => {}
            Event::EpochPersistFailed { epoch, reason } => {
                self.on_persist_failed(epoch, &reason, now, &mut out)
            }
        }
        if !matches!(self.phase, Phase::Booting) {
            self.evaluate(now, &mut out);
        }
        out
    }

    // ----- small helpers -------------------------------------------------------------------

    fn round(&self) -> Duration {
        self.params.timing.round
    }

    fn window(&self) -> Duration {
        self.params.timing.window
    }

    /// The longest post-handover wait (`Timing::settle`).
    fn margin(&self) -> Duration {
        self.params.timing.settle
    }

    /// An observation is news for `Timing::news_max_age` (two rounds and a request: a look
    /// that takes its whole timeout is still a look).
    fn is_fresh(&self, at: Option<Duration>, now: Duration) -> bool {
        at.is_some_and(|t| now.saturating_sub(t) <= self.params.timing.news_max_age)
    }

    fn local_fresh(&self, now: Duration) -> bool {
        self.is_fresh(self.local.at, now)
    }

    /// The peer's status, if the last look is recent, reachable and from the right node.
    fn fresh_peer(&self, now: Duration) -> Option<&PeerStatus> {
        if self.is_fresh(self.peer.last_at, now) {
            self.peer.status.as_ref()
        } else {
            None
        }
    }

    /// Since when this node has had no contact with its peer, for self-fencing: an
    /// unreachable peer, and also silence of the peer check itself (it may be broken).
    fn contact_lost_since(&self, now: Duration) -> Option<Duration> {
        match self.peer.last_at {
            None => Some(self.boot_at),
            Some(at) if !self.is_fresh(Some(at), now) => Some(self.peer.lost_since.unwrap_or(at)),
            Some(_) if self.peer.status.is_none() && self.peer.mismatch.is_none() => {
                self.peer.lost_since
            }
            Some(_) => None,
        }
    }

    fn peer_name(&self) -> NodeId {
        self.params.peer_id.clone()
    }

    fn record(
        &mut self,
        out: &mut Vec<Action>,
        now: Duration,
        kind: RecordKind,
        why: String,
        heights: Vec<u64>,
    ) {
        self.record_as(out, now, kind, (RecordTag::Other, ""), why, heights);
    }

    /// A record with its meaning for metrics and alerts: `(tag, reason label)`.
    fn record_as(
        &mut self,
        out: &mut Vec<Action>,
        now: Duration,
        kind: RecordKind,
        (tag, reason): (RecordTag, &str),
        why: String,
        heights: Vec<u64>,
    ) {
        self.last_why.clone_from(&why);
        out.push(Action::Record(Record {
            at_ms: ms(now),
            kind,
            role: self.role(),
            epoch: self.epoch,
            why,
            heights,
            tag,
            reason: reason.to_string(),
        }));
    }

    /// An alert recorded once per `key` (split brain is re-detected every round).
    fn alert_once(&mut self, out: &mut Vec<Action>, now: Duration, key: String, why: String) {
        if self.last_alert.as_deref() != Some(key.as_str()) {
            self.last_alert = Some(key);
            self.record(out, now, RecordKind::Alert, why, Vec::new());
        }
    }

    /// A refusal, recorded only when its reason changes.
    fn hold(&mut self, out: &mut Vec<Action>, now: Duration, hold: Hold) {
        if self.last_hold != Some(hold.key()) {
            self.last_hold = Some(hold.key());
            let why = hold.why(now);
            let heights = hold.heights();
            // The chain showing the validator still signing while the peer, once reached, is
            // lost: promoting would have made a second signer. (At boot, or with the peer in
            // sight, the same refusal is routine: the old holder's last blocks age out.)
            let lost_peer = self.peer.last_at.is_some() && self.contact_lost_since(now).is_some();
            let tag = if matches!(hold, Hold::WitnessSigned { .. }) && lost_peer {
                RecordTag::DoubleSignPrevented
            } else {
                RecordTag::PromotionRefused
            };
            self.record_as(
                out,
                now,
                RecordKind::Refusal,
                (tag, hold.key()),
                why,
                heights,
            );
        }
    }

    /// Learns a newer epoch. Any standby right held for the older epoch lapses with it.
    fn adopt_epoch(&mut self, epoch: u64, out: &mut Vec<Action>) -> bool {
        if epoch > self.epoch {
            self.epoch = epoch;
            self.persist(out);
            true
        } else {
            false
        }
    }

    fn see_state(&mut self, hrs: Option<Hrs>) {
        if let Some(h) = hrs {
            self.highest_seen = Some(self.highest_seen.map_or(h, |s| s.max(h)));
        }
    }

    fn send(&self, out: &mut Vec<Action>, epoch: u64, body: MessageBody) {
        out.push(Action::Send {
            to: self.peer_name(),
            message: PeerMessage {
                from: self.params.node_id.clone(),
                epoch,
                body,
            },
        });
    }

    fn enter_passive(&mut self, now: Duration) {
        self.phase = Phase::Passive {
            pending: Pending::None,
        };
        self.passive_since = Some(now);
        self.last_hold = None;
    }

    /// A holder may start signing from `now` on without this node seeing it start. The
    /// wait this opens ends when the chain shows the validator signing above every height
    /// known now (the holder runs: no late start is pending), when the peer reports itself
    /// active (its activation is over and verified), or after `Timing::settle`.
    fn peer_may_start(&mut self, now: Duration) {
        // Nothing known yet (a fresh start): no height can serve as the line.
        let chain_known = self.local.latest_height.is_some() || self.chain.at.is_some();
        let known = [
            self.local.latest_height,
            self.chain.last_signed,
            Some(self.chain.latest),
            self.highest_seen
                .map(|h| u64::try_from(h.height).unwrap_or(0)),
        ]
        .into_iter()
        .flatten()
        .max()
        .filter(|_| chain_known);
        let above = match (self.peer.may_start.and_then(|m| m.above), known) {
            (Some(a), Some(k)) => Some(a.max(k)),
            (_, k) => k,
        };
        self.peer.may_start = Some(MayStart {
            at: now,
            above,
            epoch: self.epoch,
        });
    }

    /// The wait for a late start is over: say so once, with the evidence.
    fn late_start_excluded(&mut self, now: Duration, evidence: String, out: &mut Vec<Action>) {
        if self.peer.may_start.take().is_some() {
            let why = format!(
                "{evidence}: the new holder is running, no late start is pending — from now on \
                 an unplanned failover needs only the window and the witness"
            );
            self.record(out, now, RecordKind::Info, why, Vec::new());
        }
    }

    /// Until when an unplanned promotion must wait for a possible late start, if at all.
    fn late_start_until(&self) -> Option<Duration> {
        self.peer.may_start.map(|m| m.at + self.margin())
    }

    /// Whether this node holds the standby right for its current epoch.
    pub fn has_standby_right(&self) -> bool {
        self.right == Some(self.epoch)
    }

    fn persist(&self, out: &mut Vec<Action>) {
        out.push(Action::PersistEpoch {
            epoch: self.epoch,
            standby_right: self.has_standby_right(),
        });
    }

    /// Becomes the designated standby for `epoch` (the peer holds it, or may start under
    /// it). Only ever for the current epoch, so a right can never outlive a holder change.
    fn grab_right(&mut self, epoch: u64, out: &mut Vec<Action>) {
        if epoch == self.epoch && !self.has_standby_right() {
            self.right = Some(epoch);
            self.persist(out);
        }
    }

    fn drop_right(&mut self, out: &mut Vec<Action>) {
        if self.has_standby_right() {
            self.right = None;
            self.persist(out);
        }
    }

    // ----- inputs --------------------------------------------------------------------------

    fn on_start(
        &mut self,
        wish: Wish,
        epoch_on_disk: u64,
        standby_right: Option<bool>,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        if !matches!(self.phase, Phase::Booting) {
            self.record(
                out,
                now,
                RecordKind::Info,
                "ignored a second start event".into(),
                Vec::new(),
            );
            return;
        }
        self.epoch = self.epoch.max(epoch_on_disk);
        self.right = match standby_right {
            Some(true) => Some(self.epoch),
            Some(false) => None,
            // A fresh host: on a fresh cluster the preferred node is the standby of epoch 0,
            // so exactly one of two nodes started blind may take the role.
            None if self.epoch == 0 && self.params.outranks_peer() => Some(0),
            None => None,
        };
        if standby_right.is_none() {
            self.persist(out);
        }
        // Whatever the peer did just before this start is unknown: let it show on chain.
        self.peer_may_start(now);
        self.wish = wish;
        self.boot_at = now;
        self.boot_claim_pending = wish == Wish::Active;
        self.phase = Phase::Demoting {
            cause: DemoteCause::Boot,
            retry_at: None,
        };
        let wish_words = match wish {
            Wish::Active => {
                "started with --role active: that is a wish — this node takes the role only \
                 once the peer and the chain show that nobody else signs"
            }
            Wish::Passive => "started with --role passive: standing by",
        };
        let why = format!(
            "starting at epoch {}{}: every node starts passive, so first making sure the \
             validator key is not live here; {wish_words}",
            self.epoch,
            if self.has_standby_right() {
                " as the designated standby"
            } else {
                ""
            }
        );
        self.record(out, now, RecordKind::RoleChange, why.clone(), Vec::new());
        out.push(Action::Deactivate { reason: why });
    }

    fn on_local_health(&mut self, h: LocalHealth, now: Duration) {
        let l = &mut self.local;
        l.at = Some(now);
        l.healthy = h.healthy;
        if let Some(new) = h.latest_height {
            if l.latest_height.is_none_or(|old| new > old) {
                l.height_grew_at = Some(now);
            }
            l.latest_height = Some(new);
        }
        l.stalled = h.stalled;
        l.why = h.why;
        l.block_age = h.block_age;
        l.healthy_since = if h.healthy {
            Some(l.healthy_since.unwrap_or(now))
        } else {
            None
        };
        l.stalled_since = if h.stalled {
            Some(l.stalled_since.unwrap_or(now))
        } else {
            None
        };
        if self.peer.lost_since.is_some() && self.peer.height_at_loss.is_none() {
            self.peer.height_at_loss = self.local.latest_height;
        }
    }

    fn on_chain(&mut self, c: ChainReport, now: Duration, out: &mut Vec<Action>) {
        let ch = &mut self.chain;
        ch.at = Some(now);
        ch.latest = ch.latest.max(c.latest_height);
        ch.last_signed = ch.last_signed.max(c.last_signed);
        if let Some(f) = c.fastest_block.filter(|f| !f.is_zero()) {
            ch.fastest_block = Some(ch.fastest_block.map_or(f, |x| x.min(f)));
        }
        match (self.peer.may_start, self.chain.last_signed) {
            (Some(mut m), _) if m.above.is_none() => {
                // The first look at the chain since a start known nothing: draw the line here.
                m.above = Some(self.chain.latest.max(self.chain.last_signed.unwrap_or(0)));
                self.peer.may_start = Some(m);
            }
            (
                Some(MayStart {
                    above: Some(above), ..
                }),
                Some(signed),
            ) if signed > above => {
                let evidence = format!(
                    "the chain shows the validator signing at height {signed}, above every \
                     height known when the role moved ({above})"
                );
                self.late_start_excluded(now, evidence, out);
            }
            _ => {}
        }
    }

    fn on_peer(&mut self, obs: PeerObservation, now: Duration, out: &mut Vec<Action>) {
        self.peer.last_at = Some(now);
        match obs {
            PeerObservation::Reachable(st) => {
                if st.node_id != self.params.peer_id {
                    // Something answers at the peer's address, but not our peer: no evidence
                    // about the peer at all, and nothing may be promoted on it.
                    self.peer.status = None;
                    let got = st.node_id.clone();
                    self.peer.mismatch = Some(got.clone());
                    let why = format!(
                        "the peer address answers as node `{got}`, expected `{}`: check \
                         communication.peers",
                        self.params.peer_id
                    );
                    self.alert_once(out, now, format!("mismatch:{got}"), why);
                    return;
                }
                self.peer.mismatch = None;
                if st.is_primary_site != self.params.peer_is_primary_site {
                    let why = format!(
                        "peer {} reports is_primary_site = {}, but this node's configuration \
                         says {}: the two nodes may disagree on who is preferred (fallback and \
                         tie-breaks); fix story.is_primary_site",
                        st.node_id, st.is_primary_site, self.params.peer_is_primary_site
                    );
                    self.alert_once(out, now, "primary_mismatch".into(), why);
                }
                self.peer.lost_since = None;
                self.peer.height_at_loss = None;
                self.peer.unreachable_reason = None;
                self.peer.last_seen = Some((st.role, st.epoch));
                self.adopt_epoch(st.epoch, out);
                if st.role.may_sign() {
                    self.peer.passive_since = None;
                } else {
                    self.peer.passive_since = Some(self.peer.passive_since.unwrap_or(now));
                }
                if st.role == Role::Promoting {
                    if self
                        .peer
                        .promoting_since
                        .is_none_or(|(e, _, _)| e != st.epoch)
                    {
                        self.peer.promoting_since = Some((st.epoch, now, self.local.latest_height));
                    }
                } else {
                    self.peer.promoting_since = None;
                }
                if st.role == Role::Active
                    && self.peer.may_start.is_some_and(|m| st.epoch >= m.epoch)
                {
                    // An activation ends only once verified on chain.
                    let evidence = format!(
                        "peer {} reports itself active at epoch {}, its activation verified",
                        st.node_id, st.epoch
                    );
                    self.late_start_excluded(now, evidence, out);
                }
                if matches!(st.role, Role::Promoting | Role::Active) {
                    if self.peer.seen_holding != Some(st.epoch) {
                        // First sight of the peer holding this epoch: if it is still
                        // promoting, it may start signing any moment without this node
                        // seeing it.
                        self.peer.seen_holding = Some(st.epoch);
                        if st.role == Role::Promoting {
                            self.peer_may_start(now);
                        }
                    }
                    // The peer holds the current epoch: this node is its standby.
                    if !st.standby_right && self.holding_epoch() != Some(st.epoch) {
                        self.grab_right(st.epoch, out);
                    }
                }
                if st.standby_right
                    && st.epoch == self.epoch
                    && self.has_standby_right()
                    && !self.params.outranks_peer()
                {
                    // Two standbys for one epoch (a wiped state directory, or a bug): the
                    // tie-break keeps one, so never both may fail over alone.
                    self.drop_right(out);
                    let why = format!(
                        "peer {} also holds the standby right for epoch {}; the tie-break \
                         leaves it to {}, this node gives it up",
                        st.node_id, self.epoch, st.node_id
                    );
                    self.alert_once(out, now, format!("two_rights:{}", self.epoch), why);
                }
                self.see_state(st.last_state);
                self.peer.status = Some(st);
            }
            PeerObservation::Unreachable { reason } => {
                self.peer.status = None;
                self.peer.promoting_since = None;
                self.peer.unreachable_reason = Some(reason);
                self.peer.passive_since = None;
                if self.peer.lost_since.is_none() {
                    self.peer.lost_since = Some(now);
                    self.peer.height_at_loss = self.local.latest_height;
                }
            }
        }
    }

    fn on_witness(&mut self, r: WitnessReport) {
        let Some(p) = self.witness.pending.take() else {
            return;
        };
        if p.id != r.id {
            // An answer to an older request: not what was asked now.
            self.witness.pending = Some(p);
            return;
        }
        let times: std::collections::HashMap<u64, u64> = r.block_times_ms.iter().copied().collect();
        let mut signed = r.signed.clone();
        signed.sort_unstable();
        signed.dedup();
        let wanted = p.blocks.min(r.latest_height);
        let lo = r
            .latest_height
            .saturating_sub(wanted.saturating_sub(1))
            .max(1);
        let mut clean = Vec::new();
        let mut stop = RunStop::WindowStart;
        // The report ends at the newest canonical commit, one below the node's latest height.
        if r.latest_height.saturating_add(1) < p.height_at_request.unwrap_or(0) {
            stop = RunStop::Regressed;
        } else {
            for h in (lo..=r.latest_height).rev() {
                if signed.binary_search(&h).is_ok() {
                    stop = RunStop::Signed(h);
                    break;
                }
                match times.get(&h) {
                    Some(&ms) if r.checked.contains(&h) && !r.unknown.contains(&h) => {
                        clean.push((h, Duration::from_millis(ms)));
                    }
                    _ => {
                        stop = RunStop::Unknown(h);
                        break;
                    }
                }
            }
        }
        clean.reverse();
        // Blocks faster than configured need a longer window next time.
        let fastest = clean
            .windows(2)
            .filter_map(|w| w[1].1.checked_sub(w[0].1))
            .filter(|d| !d.is_zero())
            .min();
        if let Some(f) = fastest {
            self.chain.fastest_block = Some(self.chain.fastest_block.map_or(f, |c| c.min(f)));
        }
        let read = (lo..=r.latest_height)
            .filter(|h| {
                (r.checked.contains(h) || r.signed.contains(h))
                    && !r.unknown.contains(h)
                    && times.contains_key(h)
            })
            .count();
        self.witness.last = Some(WitnessSeen {
            requested_at: p.requested_at,
            latest_height: r.latest_height,
            clean,
            stop,
            signed,
            unknown: r.unknown,
            wanted,
            read,
        });
    }

    fn on_actuator(&mut self, r: ActuatorResult, now: Duration, out: &mut Vec<Action>) {
        match r {
            ActuatorResult::Activated {
                epoch,
                result,
                signed_at,
            } => self.on_activated(epoch, result, signed_at, now, out),
            ActuatorResult::Deactivated { result } => self.on_deactivated(result, now, out),
        }
    }

    fn on_activated(
        &mut self,
        epoch: u64,
        result: Result<(), String>,
        signed_at: Option<u64>,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        let Phase::Promoting {
            epoch: e,
            abort,
            reply_to,
            cause,
        } = &self.phase
        else {
            if let (Phase::Active { epoch: e, .. }, Ok(())) = (&self.phase, &result) {
                if *e == epoch {
                    return; // a duplicate report
                }
            }
            if result.is_ok() && !matches!(self.phase, Phase::Demoting { .. }) {
                // The key went live although this machine did not ask for it (now): stop it.
                let why = format!(
                    "the actuator reports an activation at epoch {epoch} this node is not \
                     performing — stopping the validator here to be safe"
                );
                self.phase = Phase::Demoting {
                    cause: DemoteCause::Superseded,
                    retry_at: None,
                };
                let tag = (RecordTag::DoubleSignPrevented, "unexpected_activation");
                self.record_as(out, now, RecordKind::Alert, tag, why.clone(), Vec::new());
                out.push(Action::Deactivate { reason: why });
            }
            return;
        };
        if *e != epoch {
            return;
        }
        let e = *e;
        let abort = abort.clone();
        let reply_to = reply_to.clone();
        let (done, aborted) = promotion_tags(cause);
        match result {
            Ok(()) => {
                if let Some(why) = abort {
                    self.phase = Phase::Demoting {
                        cause: DemoteCause::Superseded,
                        retry_at: None,
                    };
                    let why = format!("activation finished, but {why}: stopping at once");
                    let tag = (aborted, "superseded_while_starting");
                    self.record_as(
                        out,
                        now,
                        RecordKind::RoleChange,
                        tag,
                        why.clone(),
                        Vec::new(),
                    );
                    out.push(Action::Deactivate { reason: why });
                    return;
                }
                // Verified by the actuator: its signature is in a commit at `signed_at`.
                let signed_floor = signed_at
                    .or(self.chain.last_signed)
                    .unwrap_or(self.chain.latest);
                self.chain.last_signed = self.chain.last_signed.max(Some(signed_floor));
                self.phase = Phase::Active {
                    epoch: e,
                    since: now,
                    signed_floor,
                };
                self.last_hold = None;
                self.last_alert = None;
                let why = format!(
                    "active at epoch {e}: the validator key is live on this node and its \
                     signature is on chain{}",
                    signed_at
                        .map(|h| format!(" (height {h})"))
                        .unwrap_or_default()
                );
                self.record_as(
                    out,
                    now,
                    RecordKind::RoleChange,
                    (done, ""),
                    why,
                    Vec::new(),
                );
                if reply_to.is_some() {
                    self.send(
                        out,
                        e,
                        MessageBody::HandoverReply {
                            outcome: HandoverOutcome::Started,
                            reason: format!("started: active at epoch {e}"),
                        },
                    );
                }
            }
            Err(reason) => {
                self.phase = Phase::Demoting {
                    cause: DemoteCause::ActivationFailed {
                        reply_to: reply_to.map(|n| (n, e)),
                    },
                    retry_at: None,
                };
                let why = format!(
                    "ACTIVATION FAILED at epoch {e}: {reason}. The key may or may not have gone \
                     live, so this node stops the validator again and stays passive"
                );
                let tag = (aborted, "activation_failed");
                self.record_as(out, now, RecordKind::Alert, tag, why.clone(), Vec::new());
                out.push(Action::Deactivate { reason: why });
            }
        }
    }

    fn on_deactivated(
        &mut self,
        result: Result<Option<HandedState>, String>,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        let Phase::Demoting { cause, .. } = &self.phase else {
            return;
        };
        let cause = cause.clone();
        let final_state = match result {
            Ok(fs) => fs,
            Err(reason) => {
                self.phase = Phase::Demoting {
                    cause,
                    retry_at: Some(now + self.round()),
                };
                let why = format!(
                    "COULD NOT STOP THE VALIDATOR on this node: {reason}. The key may still be \
                     live; retrying every round, and the peer treats this node as possibly \
                     signing (it will not promote) until the stop is confirmed"
                );
                self.alert_once(out, now, format!("stop_failed:{why}"), why);
                return;
            }
        };
        self.last_alert = None;
        self.see_state(final_state.as_ref().map(|f| f.hrs));
        let final_words = final_state.as_ref().map_or_else(
            || "final state unknown".to_string(),
            |f| format!("final state {}", f.hrs),
        );
        match cause {
            DemoteCause::Boot => {
                self.enter_passive(now);
                let why =
                    format!("passive: the validator key is not live on this node ({final_words})");
                self.record(out, now, RecordKind::RoleChange, why, Vec::new());
            }
            DemoteCause::Handover { to, epoch } => {
                if self.epoch >= epoch {
                    self.enter_passive(now);
                    let why = format!(
                        "handover to {to} abandoned after stopping: epoch {} already exists, so \
                         offering epoch {epoch} would be refused; staying passive",
                        self.epoch
                    );
                    self.record(out, now, RecordKind::RoleChange, why, Vec::new());
                    return;
                }
                self.adopt_epoch(epoch, out);
                self.acted_at = Some(epoch);
                self.send(
                    out,
                    epoch,
                    MessageBody::HandoverOffer {
                        final_state: final_state.clone(),
                    },
                );
                self.peer_may_start(now);
                self.phase = Phase::HandingOver {
                    to: to.clone(),
                    epoch,
                    deadline: now + self.params.timing.handover_timeout,
                    accepted: false,
                };
                let why = format!(
                    "handover: stopped signing here and swapped in the placeholder key \
                     ({final_words}); offering the role to {to} at epoch {epoch}"
                );
                self.record(out, now, RecordKind::RoleChange, why, Vec::new());
            }
            DemoteCause::Superseded | DemoteCause::NotPersisted => {
                self.enter_passive(now);
                let why = format!("passive: stopped signing on this node ({final_words})");
                let tag = (RecordTag::Demoted, "superseded");
                self.record_as(out, now, RecordKind::RoleChange, tag, why, Vec::new());
            }
            DemoteCause::SelfFence => {
                self.phase = Phase::Fenced { since: now };
                let why = format!(
                    "fenced: stopped signing on this node ({final_words}); it stays stopped \
                     until it can reach peer {} again (or an operator unfences it)",
                    self.params.peer_id
                );
                self.record(out, now, RecordKind::RoleChange, why, Vec::new());
            }
            DemoteCause::ActivationFailed { reply_to } => {
                self.enter_passive(now);
                if let Some((to, e)) = reply_to {
                    self.last_offer = Some(OfferSeen {
                        from: to.clone(),
                        epoch: e,
                        accepted: false,
                    });
                    // This node activated (and failed) under `e`; the old holder resumes
                    // under `e + 1`, which this node reserves for it by adopting it now, so
                    // no epoch ever names two activations.
                    let resume = e + 1;
                    self.adopt_epoch(resume, out);
                    self.acted_at = Some(resume);
                    self.send(
                        out,
                        resume,
                        MessageBody::HandoverReply {
                            outcome: HandoverOutcome::Refused,
                            reason: "activation failed here; the validator is confirmed \
                                     stopped and this node will not start under this epoch"
                                .into(),
                        },
                    );
                    // The old holder may resume now. No standby right is taken here: this node
                    // was promoting under `e`, so the old holder may hold that right already.
                    self.peer_may_start(now);
                }
                let why = format!(
                    "passive after the failed activation: the validator is confirmed stopped \
                     here ({final_words})"
                );
                self.record(out, now, RecordKind::RoleChange, why, Vec::new());
            }
        }
    }

    fn on_message(&mut self, m: PeerMessage, now: Duration, out: &mut Vec<Action>) {
        if matches!(self.phase, Phase::Booting) {
            return; // not started: the sender's timeout covers it
        }
        if m.from != self.params.peer_id {
            let why = format!(
                "ignored a message from node `{}`: the only peer is `{}`",
                m.from, self.params.peer_id
            );
            self.record(out, now, RecordKind::Refusal, why, Vec::new());
            return;
        }
        match m.body {
            MessageBody::HandoverOffer { final_state } => {
                self.on_offer(m.epoch, final_state, now, out)
            }
            MessageBody::HandoverReply { outcome, reason } => {
                self.on_handover_reply(m.epoch, outcome, &reason, now, out)
            }
            MessageBody::RoleRequest { kind } => self.on_role_request(m.epoch, kind, now, out),
            MessageBody::RoleReply { granted, reason } => {
                self.on_role_reply(m.epoch, granted, &reason, now, out)
            }
        }
    }

    fn on_offer(
        &mut self,
        epoch: u64,
        final_state: Option<HandedState>,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        let from = self.peer_name();
        self.see_state(final_state.as_ref().map(|f| f.hrs));
        let known = self
            .last_offer
            .as_ref()
            .filter(|o| o.from == from && o.epoch == epoch)
            .cloned();
        let acted_here = self.acted_at.is_some_and(|e| e >= epoch);
        if epoch < self.epoch || (known.is_none() && acted_here) {
            let why = format!(
                "refused a handover offer from {from} for epoch {epoch}: this node already knows \
                 epoch {} (a message from an older epoch is refused)",
                self.epoch
            );
            self.send(
                out,
                self.epoch,
                MessageBody::HandoverReply {
                    outcome: HandoverOutcome::Ignored,
                    reason: why.clone(),
                },
            );
            self.record(out, now, RecordKind::Refusal, why, Vec::new());
            return;
        }
        if let Some(o) = known {
            // A retried or duplicated offer: repeat the answer, never act twice.
            let outcome = match (&self.phase, o.accepted) {
                (Phase::Active { epoch: e, .. }, true) if *e == epoch => HandoverOutcome::Started,
                (Phase::Promoting { epoch: e, .. }, true) if *e == epoch => {
                    HandoverOutcome::Accepted
                }
                (_, true) => return, // failed and stopping: the refusal follows when confirmed
                (_, false) => HandoverOutcome::Refused,
            };
            self.send(
                out,
                epoch,
                MessageBody::HandoverReply {
                    outcome,
                    reason: "repeated answer to a repeated offer".into(),
                },
            );
            return;
        }
        // A new offer: whatever the answer, the epoch is adopted and marked as acted upon,
        // so a late duplicate of this offer can never be accepted after a refusal.
        self.adopt_epoch(epoch, out);
        self.acted_at = Some(epoch);
        let refusal = if !matches!(self.phase, Phase::Passive { .. } | Phase::Fenced { .. }) {
            Some((
                HandoverOutcome::Ignored,
                format!(
                    "this node is {} and cannot prove it is not signing",
                    self.held_role()
                ),
            ))
        } else if self.paused {
            Some((
                HandoverOutcome::Refused,
                "automation is paused on this node".to_string(),
            ))
        } else if matches!(self.phase, Phase::Fenced { .. }) {
            Some((
                HandoverOutcome::Refused,
                "this node is fenced (its node stalled recently)".to_string(),
            ))
        } else if !self.local_fresh(now) || !self.local.healthy || self.local.stalled {
            Some((
                HandoverOutcome::Refused,
                format!(
                    "my own node is not healthy{}",
                    self.local
                        .why
                        .as_ref()
                        .map(|w| format!(" ({w})"))
                        .unwrap_or_default()
                ),
            ))
        } else if final_state.is_none() && self.local.latest_height.is_none() {
            Some((
                HandoverOutcome::Refused,
                "no final state handed and no chain height known here to fence at".to_string(),
            ))
        } else {
            None
        };
        if let Some((outcome, reason)) = refusal {
            self.last_offer = Some(OfferSeen {
                from: from.clone(),
                epoch,
                accepted: false,
            });
            if outcome == HandoverOutcome::Refused {
                // The old holder may now resume under `epoch`: this node is its standby.
                self.peer_may_start(now);
                self.grab_right(epoch, out);
            }
            let why = format!(
                "refused the handover from {from} (epoch {epoch}): {reason}; {from} keeps \
                 the role"
            );
            self.send(
                out,
                epoch,
                MessageBody::HandoverReply {
                    outcome,
                    reason: reason.clone(),
                },
            );
            self.record(out, now, RecordKind::Refusal, why, Vec::new());
            return;
        }
        self.last_offer = Some(OfferSeen {
            from: from.clone(),
            epoch,
            accepted: true,
        });
        let (base, words) = match &final_state {
            Some(fs) => {
                let fence = handover_fence(fs.hrs);
                (
                    fence,
                    format!(
                        "its final state is {}, so fencing at height {} round 0 step 0 (the \
                         rest of its last height stays its own)",
                        fs.hrs, fence.height
                    ),
                )
            }
            None => {
                let h = self.local.latest_height.unwrap_or(0);
                (
                    self.unplanned_fence(h),
                    format!(
                        "its final state could not be read, so fencing at height {} as after \
                         an unplanned failover",
                        height_i64(h).saturating_add(2)
                    ),
                )
            }
        };
        let story = format!(
            "promoting to active at epoch {epoch}: {from} handed the role over after stopping \
             its validator; {words}"
        );
        self.send(
            out,
            epoch,
            MessageBody::HandoverReply {
                outcome: HandoverOutcome::Accepted,
                reason: "accepted; starting".into(),
            },
        );
        self.promote(
            epoch,
            ActivationCause::Handover { from: from.clone() },
            base,
            final_state,
            Some(from),
            story,
            now,
            out,
        );
    }

    fn on_handover_reply(
        &mut self,
        epoch: u64,
        outcome: HandoverOutcome,
        reason: &str,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        let Phase::HandingOver {
            to,
            epoch: offered,
            deadline,
            ..
        } = &self.phase
        else {
            self.adopt_epoch(epoch, out);
            return;
        };
        let (to, offered, deadline) = (to.clone(), *offered, *deadline);
        // A refusal names the epoch to resume under: the offered one when the target never
        // tried, the next one when it tried, failed and confirmed its stop.
        let refused_resume =
            outcome == HandoverOutcome::Refused && (epoch == offered || epoch == offered + 1);
        if epoch > offered && !refused_resume {
            self.adopt_epoch(epoch, out);
            self.enter_passive(now);
            let why = format!(
                "handover to {to}: it knows a newer epoch ({epoch}); not resuming, staying \
                 passive ({reason})"
            );
            self.record(out, now, RecordKind::RoleChange, why, Vec::new());
            return;
        }
        if epoch < offered {
            return;
        }
        match outcome {
            HandoverOutcome::Accepted => {
                self.phase = Phase::HandingOver {
                    to: to.clone(),
                    epoch,
                    deadline,
                    accepted: true,
                };
                let why = format!("handover: {to} accepted epoch {epoch} and is starting");
                self.record(out, now, RecordKind::Info, why, Vec::new());
            }
            HandoverOutcome::Started => {
                self.enter_passive(now);
                self.grab_right(epoch, out);
                let why = format!("handover complete: {to} is active at epoch {epoch}");
                self.record(out, now, RecordKind::RoleChange, why, Vec::new());
            }
            HandoverOutcome::Refused => {
                self.handover_backoff_until =
                    Some(now + self.params.timing.handover_timeout.saturating_mul(2));
                let resume = epoch;
                let story = format!(
                    "{to} refused the handover ({reason}) and provably never started, so this \
                     node takes its role back, at epoch {resume}"
                );
                let base = self.highest_seen.unwrap_or(Hrs::new(0, 0, Step::None));
                self.promote(
                    resume,
                    ActivationCause::Resume,
                    base,
                    None,
                    None,
                    story,
                    now,
                    out,
                );
            }
            HandoverOutcome::Ignored => {
                self.enter_passive(now);
                let why = format!(
                    "handover: {to} did not act on the offer and cannot prove it is not \
                     signing ({reason}); staying passive — the normal rules decide from here"
                );
                let tag = (RecordTag::SwitchoverAborted, "target_ignored");
                self.record_as(out, now, RecordKind::RoleChange, tag, why, Vec::new());
            }
        }
    }

    fn on_role_request(
        &mut self,
        epoch: u64,
        kind: RequestKind,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        let from = self.peer_name();
        match kind {
            RequestKind::Claim => {
                // A repeated claim gets the same grant, but only while nothing has happened
                // since (same epoch, still passive or fenced).
                let duplicate = self.last_grant.as_ref() == Some(&(from.clone(), epoch))
                    && epoch == self.epoch
                    && matches!(self.phase, Phase::Passive { .. } | Phase::Fenced { .. });
                let deny = if duplicate {
                    None
                } else if epoch <= self.epoch {
                    Some(format!(
                        "epoch {epoch} is not newer than this node's epoch {}",
                        self.epoch
                    ))
                } else if !matches!(self.phase, Phase::Passive { .. } | Phase::Fenced { .. }) {
                    Some(format!("this node is {}", self.held_role()))
                } else if let Phase::Passive {
                    pending: Pending::Claim { .. },
                } = self.phase
                {
                    if self.params.outranks_peer() {
                        Some(
                            "this node is asking for the role itself and is preferred \
                             (primary site / lower id)"
                                .to_string(),
                        )
                    } else {
                        None
                    }
                } else {
                    None
                };
                match deny {
                    Some(reason) => {
                        let why = format!("declined {from}'s claim for epoch {epoch}: {reason}");
                        // A denial carries this node's own epoch, so the claimer learns it
                        // when it is newer and never adopts an epoch nobody holds.
                        self.send(
                            out,
                            self.epoch,
                            MessageBody::RoleReply {
                                granted: false,
                                reason,
                            },
                        );
                        self.record(out, now, RecordKind::Refusal, why, Vec::new());
                    }
                    None => {
                        if let Phase::Passive { pending } = &mut self.phase {
                            *pending = Pending::None;
                        }
                        self.adopt_epoch(epoch, out);
                        self.acted_at = self.acted_at.max(Some(epoch));
                        self.last_grant = Some((from.clone(), epoch));
                        // The claimer may start under `epoch`: this node is its standby.
                        self.peer_may_start(now);
                        self.grab_right(epoch, out);
                        self.send(
                            out,
                            epoch,
                            MessageBody::RoleReply {
                                granted: true,
                                reason: "granted: this node stays passive".into(),
                            },
                        );
                        if !duplicate {
                            let why = format!(
                                "granted {from}'s claim for epoch {epoch}: {from} takes the role, \
                                 this node stays passive"
                            );
                            self.record(out, now, RecordKind::Info, why, Vec::new());
                        }
                    }
                }
            }
            RequestKind::Fallback | RequestKind::Switchover => {
                self.adopt_epoch(epoch, out);
                let deny = match self.phase {
                    Phase::Active { epoch: e, .. } if e == self.epoch => {
                        if epoch < self.epoch {
                            Some(format!(
                                "the request carries epoch {epoch}, older than this node's {}",
                                self.epoch
                            ))
                        } else if self.paused {
                            Some("automation is paused on this node".to_string())
                        } else if kind == RequestKind::Fallback && !self.params.peer_sole_primary()
                        {
                            Some(format!(
                                "{from} is not the primary site in my configuration"
                            ))
                        } else {
                            self.peer_ready(now).err()
                        }
                    }
                    _ => Some(format!("this node is {}, not active", self.held_role())),
                };
                match deny {
                    Some(reason) => {
                        let why = format!("declined {from}'s {} request: {reason}", kind.name());
                        self.send(
                            out,
                            self.epoch,
                            MessageBody::RoleReply {
                                granted: false,
                                reason,
                            },
                        );
                        self.record(out, now, RecordKind::Refusal, why, Vec::new());
                    }
                    None => {
                        let why = match kind {
                            RequestKind::Fallback => format!(
                                "{from}, the primary site, has been healthy for the grace \
                                 period and asks for its role back"
                            ),
                            _ => format!("an operator asked on {from} for a switchover to it"),
                        };
                        self.start_handover(why, now, out);
                    }
                }
            }
        }
    }

    fn on_role_reply(
        &mut self,
        epoch: u64,
        granted: bool,
        reason: &str,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        let from = self.peer_name();
        let pending = match &self.phase {
            Phase::Passive { pending } => pending.clone(),
            _ => Pending::None,
        };
        match pending {
            Pending::Claim { epoch: asked, .. } if asked == epoch && granted => {
                self.phase = Phase::Passive {
                    pending: Pending::None,
                };
                if let Err(why) = self.claim_still_ok(now, epoch) {
                    let why = format!(
                        "{from} granted my claim for epoch {epoch}, but I no longer take it: \
                         {why}"
                    );
                    self.record(out, now, RecordKind::Refusal, why, Vec::new());
                    return;
                }
                let h = self.local.latest_height.unwrap_or(0);
                let base = self.unplanned_fence(h);
                let story = format!(
                    "promoting to active at epoch {epoch}: both nodes were passive and {from} \
                     granted my claim (it stays passive); the chain showed no signature from \
                     the validator; fence at height {} round 0 step 0",
                    height_i64(h).saturating_add(2)
                );
                self.promote(
                    epoch,
                    ActivationCause::Claim,
                    base,
                    None,
                    None,
                    story,
                    now,
                    out,
                );
            }
            Pending::Claim { .. } | Pending::Request { .. } if !granted => {
                self.phase = Phase::Passive {
                    pending: Pending::None,
                };
                self.adopt_epoch(epoch, out);
                let why = format!("{from} declined my request: {reason}");
                self.record(out, now, RecordKind::Refusal, why, Vec::new());
            }
            _ => {
                if !granted {
                    self.adopt_epoch(epoch, out);
                }
            }
        }
    }

    fn on_operator(&mut self, c: OperatorCommand, now: Duration, out: &mut Vec<Action>) {
        if matches!(self.phase, Phase::Booting) {
            self.record(
                out,
                now,
                RecordKind::Refusal,
                "operator command ignored: the machine has not started".into(),
                Vec::new(),
            );
            return;
        }
        let peer = self.peer_name();
        match c {
            OperatorCommand::Pause => {
                self.paused = true;
                self.record(
                    out,
                    now,
                    RecordKind::Info,
                    format!(
                        "paused by the operator while {}: no automatic transition until \
                         `syncguard resume` (safety stops — self-fencing, standing down for a \
                         newer epoch — still act)",
                        self.held_role()
                    ),
                    Vec::new(),
                );
            }
            OperatorCommand::Resume => {
                self.paused = false;
                self.last_hold = None;
                self.record(
                    out,
                    now,
                    RecordKind::Info,
                    format!(
                        "resumed by the operator: automatic operation as {}",
                        self.held_role()
                    ),
                    Vec::new(),
                );
            }
            OperatorCommand::Switchover { to } => {
                // Every check runs before anything stops: a refused switchover leaves the
                // active signing, untouched.
                if let Err(why) = self.switchover_check(&to, now) {
                    self.record(out, now, RecordKind::Refusal, why, Vec::new());
                } else if to == self.params.node_id {
                    self.phase = Phase::Passive {
                        pending: Pending::Request {
                            kind: RequestKind::Switchover,
                            deadline: now + self.params.timing.handover_timeout,
                        },
                    };
                    self.send(
                        out,
                        self.epoch,
                        MessageBody::RoleRequest {
                            kind: RequestKind::Switchover,
                        },
                    );
                    self.record(
                        out,
                        now,
                        RecordKind::Info,
                        format!("switchover: asked {peer} to hand the role to this node"),
                        Vec::new(),
                    );
                } else {
                    self.start_handover("an operator asked for a switchover".into(), now, out);
                }
            }
            OperatorCommand::Unfence => {
                if matches!(self.phase, Phase::Fenced { .. }) {
                    self.enter_passive(now);
                    self.record(
                        out,
                        now,
                        RecordKind::RoleChange,
                        "unfenced by the operator: passive, the normal rules apply".into(),
                        Vec::new(),
                    );
                } else {
                    let why = format!("unfence ignored: this node is {}", self.held_role());
                    self.record(out, now, RecordKind::Refusal, why, Vec::new());
                }
            }
            OperatorCommand::Takeover => {
                if matches!(self.phase, Phase::Passive { .. }) {
                    let until = now + self.window() + self.round();
                    self.takeover = Some((now, until));
                    self.last_hold = None;
                    self.record(
                        out,
                        now,
                        RecordKind::Info,
                        format!(
                            "takeover requested by the operator: this node takes the role if \
                             its own node is healthy and the chain shows no signature from the \
                             validator (valid for {})",
                            words_duration(until - now)
                        ),
                        Vec::new(),
                    );
                } else {
                    let why = format!("takeover refused: this node is {}", self.held_role());
                    self.record(out, now, RecordKind::Refusal, why, Vec::new());
                }
            }
        }
    }

    fn on_persist_failed(
        &mut self,
        epoch: u64,
        reason: &str,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        let why = format!(
            "COULD NOT PERSIST EPOCH {epoch}: {reason}. Nothing is done under an epoch that \
             would not survive a restart"
        );
        let tag = (RecordTag::Other, "epoch_not_persisted");
        self.record_as(out, now, RecordKind::Alert, tag, why, Vec::new());
        match &self.phase {
            Phase::Promoting { epoch: e, .. } if *e == epoch => {
                // The driver dropped the Activate; stop anyway in case part of it ran.
                self.phase = Phase::Demoting {
                    cause: DemoteCause::NotPersisted,
                    retry_at: None,
                };
                out.push(Action::Deactivate {
                    reason: format!("epoch {epoch} could not be persisted"),
                });
            }
            Phase::HandingOver { epoch: e, .. } if *e == epoch => {
                // The offer was not sent; the key is already off here.
                self.enter_passive(now);
            }
            _ => {}
        }
    }

    // ----- decisions -----------------------------------------------------------------------

    fn evaluate(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.timeouts(now, out);
        self.safety(now, out);
        match self.phase {
            Phase::Passive {
                pending: Pending::None,
            } => {
                if !self.paused && self.consider_fallback(now, out) {
                    return;
                }
                self.consider_promotion(now, out);
            }
            Phase::Active { .. } if !self.paused => self.consider_handover(now, out),
            Phase::Fenced { .. } if !self.paused => self.consider_unfence(now, out),
            _ => {}
        }
    }

    fn timeouts(&mut self, now: Duration, out: &mut Vec<Action>) {
        if let Some(p) = &self.witness.pending {
            if now.saturating_sub(p.requested_at) > self.round() {
                self.witness.pending = None;
            }
        }
        if self.takeover.is_some_and(|(_, until)| now > until) {
            self.takeover = None;
        }
        match &self.phase {
            Phase::HandingOver {
                to,
                epoch,
                deadline,
                accepted,
            } if now >= *deadline => {
                let why = format!(
                    "handover to {to} (epoch {epoch}) got no final answer within {}{}: {to} may \
                     or may not have started, so this node stays passive and treats {to} as \
                     possibly active; the normal failover rules decide from here",
                    words_duration(self.params.timing.handover_timeout),
                    if *accepted { " after it accepted" } else { "" }
                );
                self.enter_passive(now);
                let tag = (RecordTag::SwitchoverAborted, "handover_timeout");
                self.record_as(out, now, RecordKind::RoleChange, tag, why, Vec::new());
            }
            Phase::Passive {
                pending: Pending::Claim { deadline, epoch },
            } if now >= *deadline => {
                let why = format!(
                    "my claim for epoch {epoch} got no answer within {}; not promoting",
                    words_duration(self.params.timing.handover_timeout)
                );
                self.phase = Phase::Passive {
                    pending: Pending::None,
                };
                self.record(out, now, RecordKind::Info, why, Vec::new());
            }
            Phase::Passive {
                pending: Pending::Request { deadline, .. },
            } if now >= *deadline => {
                self.phase = Phase::Passive {
                    pending: Pending::None,
                };
            }
            Phase::Demoting {
                cause,
                retry_at: Some(t),
            } if now >= *t => {
                let cause = cause.clone();
                self.phase = Phase::Demoting {
                    cause,
                    retry_at: None,
                };
                out.push(Action::Deactivate {
                    reason: "retrying the stop of the validator".into(),
                });
            }
            _ => {}
        }
    }

    /// The stops that act even while paused: standing down for a newer epoch or an
    /// equal-epoch tie lost (split brain), and self-fencing (S4).
    fn safety(&mut self, now: Duration, out: &mut Vec<Action>) {
        let Some(holding) = self.holding_epoch() else {
            return;
        };
        let peer = self.peer_name();
        if self.epoch > holding {
            let why = format!(
                "the role moved on to epoch {} while this node held epoch {holding}: standing \
                 down at once",
                self.epoch
            );
            self.stand_down(why, now, out);
            return;
        }
        let stale_peer = self.fresh_peer(now).is_some_and(|st| {
            matches!(st.role, Role::Promoting | Role::Active | Role::Paused) && st.epoch < holding
        });
        // A stale look during a normal handover is expected; only a lasting one is news.
        self.stale_peer_since = if stale_peer {
            Some(self.stale_peer_since.unwrap_or(now))
        } else {
            None
        };
        if let Some(st) = self.fresh_peer(now).cloned() {
            if matches!(st.role, Role::Promoting | Role::Active | Role::Paused) {
                if st.epoch == holding {
                    if self.params.outranks_peer() {
                        let why = format!(
                            "SPLIT BRAIN: peer {peer} is also {} at epoch {holding} — this must \
                             never happen; the tie-break (primary site first, then lowest id) \
                             keeps this node, {peer} must stop now",
                            st.role
                        );
                        self.alert_once(out, now, format!("split:{holding}"), why);
                    } else {
                        let why = format!(
                            "SPLIT BRAIN: peer {peer} is also {} at epoch {holding} — this must \
                             never happen; the tie-break (primary site first, then lowest id) \
                             gives the role to {peer}, so this node stops now",
                            st.role
                        );
                        self.stand_down(why, now, out);
                        return;
                    }
                } else if st.epoch < holding
                    && self
                        .stale_peer_since
                        .is_some_and(|t| now.saturating_sub(t) >= self.round().saturating_mul(2))
                {
                    let why = format!(
                        "peer {peer} still acts as {} at older epoch {}; it must stand down when \
                         it sees epoch {holding}",
                        st.role, st.epoch
                    );
                    self.alert_once(out, now, format!("stale_peer:{}", st.epoch), why);
                }
            }
        }
        if let Phase::Active {
            since,
            signed_floor,
            ..
        } = self.phase
        {
            let Some(lost) = self.contact_lost_since(now) else {
                return;
            };
            if let Some((reason, words)) = self.quiet(now, since, signed_floor) {
                let lost_for = now.saturating_sub(lost);
                let why = format!(
                    "self-fencing: {words}, and peer {peer} has been unreachable for {} — \
                     stopping the validator here before {peer} may take over (S4)",
                    words_duration(lost_for),
                );
                self.phase = Phase::Demoting {
                    cause: DemoteCause::SelfFence,
                    retry_at: None,
                };
                let tag = (RecordTag::SelfFenced, reason);
                self.record_as(
                    out,
                    now,
                    RecordKind::RoleChange,
                    tag,
                    why.clone(),
                    Vec::new(),
                );
                out.push(Action::Deactivate { reason: why });
            }
        }
    }

    /// S4: whether this active's signing has gone quiet, as seen after its activation
    /// (`since`; its verified signature at `signed_floor`): `Some((reason label, words))`.
    ///
    /// - `cut_off`: its node follows no chain — the newest block is older than
    ///   `Timing::stall_age`, or `/status` did not answer — or no health round reported
    ///   recently (nothing is known of its own node);
    /// - `silent`: its node follows the chain but more than `Timing::quiet_blocks` of the
    ///   newest commits lack the validator's signature (an asymmetric cut: its votes miss
    ///   the commits), or those commits cannot be read while the node answers.
    ///
    /// Either, with the peer unreachable, is the case where the peer may take over: the
    /// timing model makes the stop confirmed before the peer's window and witness clear.
    fn quiet(
        &self,
        now: Duration,
        since: Duration,
        signed_floor: u64,
    ) -> Option<(&'static str, String)> {
        let t = &self.params.timing;
        let l = &self.local;
        if !self.local_fresh(now) {
            return Some((
                "cut_off",
                "no health round has reported on my own node for a while".to_string(),
            ));
        }
        let after = |at: Option<Duration>| at.is_some_and(|a| a > since);
        if after(l.at) {
            let height = l
                .latest_height
                .map_or_else(|| "unknown".to_string(), |h| h.to_string());
            if l.stalled && l.block_age.is_none() {
                return Some((
                    "cut_off",
                    format!("my node does not answer or sees no new block (height {height})"),
                ));
            }
            if let Some(age) = l.block_age.filter(|a| *a >= t.stall_age) {
                return Some((
                    "cut_off",
                    format!(
                        "my node's newest block (height {height}) is {} old: it follows no \
                         chain",
                        words_duration(age)
                    ),
                ));
            }
        }
        // Right after the activation no report may have come yet: count from the activation.
        let chain_seen = self.chain.at.map_or(since, |at| at.max(since));
        if !self.is_fresh(Some(chain_seen), now) {
            return Some((
                "silent",
                "the commits of my own node have not been read for a while: nothing shows \
                 my signatures reach the chain"
                    .to_string(),
            ));
        }
        if after(self.chain.at) {
            let signed = self.chain.last_signed.unwrap_or(0).max(signed_floor);
            let missed = self.chain.latest.saturating_sub(signed);
            if missed > u64::from(t.quiet_blocks) {
                return Some((
                    "silent",
                    format!(
                        "my node follows the chain (height {}) but the validator's signature \
                         is missing from the last {missed} commits (last at height {signed}): \
                         my votes do not reach the chain",
                        self.chain.latest
                    ),
                ));
            }
        }
        None
    }

    /// How long this node has seen no new block: by the health verdict's stall flag, or by
    /// its own clock on the reported heights, whichever says so first.
    fn no_new_block_for(&self, now: Duration) -> Option<Duration> {
        let by_flag = self
            .local
            .stalled
            .then_some(self.local.stalled_since)
            .flatten();
        let by_height = self.local.height_grew_at;
        [by_flag, by_height]
            .into_iter()
            .flatten()
            .min()
            .map(|t| now.saturating_sub(t))
    }

    fn stand_down(&mut self, why: String, now: Duration, out: &mut Vec<Action>) {
        match &mut self.phase {
            Phase::Active { .. } => {
                self.phase = Phase::Demoting {
                    cause: DemoteCause::Superseded,
                    retry_at: None,
                };
                let tag = (RecordTag::DoubleSignPrevented, "second_active");
                self.record_as(out, now, RecordKind::Alert, tag, why.clone(), Vec::new());
                out.push(Action::Deactivate { reason: why });
            }
            Phase::Promoting { abort, .. } if abort.is_none() => {
                *abort = Some(why.clone());
                let tag = (RecordTag::DoubleSignPrevented, "second_active");
                self.record_as(out, now, RecordKind::Alert, tag, why, Vec::new());
            }
            _ => {}
        }
    }

    /// Whether the peer can take the role in a planned handover right now.
    fn peer_ready(&self, now: Duration) -> Result<(), String> {
        let peer = self.peer_name();
        let Some(st) = self.fresh_peer(now) else {
            return Err(format!("{peer} is not reachable"));
        };
        if st.role != Role::Passive {
            return Err(format!("{peer} is {}, not passive", st.role));
        }
        if st.paused {
            return Err(format!("{peer} is paused"));
        }
        if !st.healthy {
            return Err(format!("{peer}'s node is unhealthy"));
        }
        if let (Some(mine), Some(theirs)) = (self.local.latest_height, st.latest_height) {
            if theirs.saturating_add(self.params.catch_up_tolerance()) < mine {
                return Err(format!(
                    "{peer} is behind (height {theirs}, this node {mine}; at most {} blocks \
                     behind counts as caught up)",
                    self.params.catch_up_tolerance()
                ));
            }
        }
        if st.latest_height.is_none() {
            return Err(format!("{peer} reports no chain height"));
        }
        Ok(())
    }

    /// Whether an operator's switchover to `to` may start now, checked before anything
    /// stops: `Err` is the refusal, in words. Run on the active (`to` = the peer) or on the
    /// passive target (`to` = this node); the active checks the target again when asked.
    /// The target must be passive, healthy, not paused and caught up with the active's
    /// chain height (within one block): a switchover is planned, so there is never a reason
    /// to hand the role to a node that could not sign at once.
    pub fn switchover_check(&self, to: &NodeId, now: Duration) -> Result<(), String> {
        let peer = self.peer_name();
        if self.paused {
            return Err(
                "switchover refused: automation is paused on this node (`syncguard resume` \
                 first)"
                    .into(),
            );
        }
        if *to == self.params.node_id {
            if matches!(self.phase, Phase::Active { .. }) {
                return Err("switchover refused: this node is already active".into());
            }
            let peer_active = self
                .fresh_peer(now)
                .is_some_and(|st| st.role == Role::Active);
            if !peer_active || !matches!(self.phase, Phase::Passive { .. }) {
                return Err(format!(
                    "switchover to this node refused: {peer} is not reachable and active, and \
                     this node is {} — there is no holder to hand over (use `syncguard \
                     takeover` if {peer} is down for good)",
                    self.held_role()
                ));
            }
            if !self.local_fresh(now) || !self.local.healthy || self.local.stalled {
                return Err(format!(
                    "switchover to this node refused: my own node is not healthy{}",
                    self.local
                        .why
                        .as_ref()
                        .map(|w| format!(" ({w})"))
                        .unwrap_or_default()
                ));
            }
            let theirs = self.fresh_peer(now).and_then(|st| st.latest_height);
            match (self.local.latest_height, theirs) {
                (None, _) => {
                    Err("switchover to this node refused: my node reports no chain height".into())
                }
                (Some(mine), Some(theirs))
                    if mine.saturating_add(self.params.catch_up_tolerance()) < theirs =>
                {
                    Err(format!(
                        "switchover to this node refused: my node is behind (height {mine}, \
                         {peer} {theirs})"
                    ))
                }
                _ => Ok(()),
            }
        } else if *to == peer {
            if !matches!(self.phase, Phase::Active { .. }) {
                return Err(format!(
                    "switchover to {peer} refused: this node is {}, not active — run it on the \
                     active node",
                    self.held_role()
                ));
            }
            self.peer_ready(now)
                .map_err(|why| format!("switchover to {peer} refused: {why}"))
        } else {
            Err(format!(
                "switchover refused: `{to}` is neither this node nor its peer `{peer}`"
            ))
        }
    }

    fn start_handover(&mut self, why: String, now: Duration, out: &mut Vec<Action>) {
        let Phase::Active { .. } = self.phase else {
            return;
        };
        let to = self.peer_name();
        let epoch = self.epoch + 1;
        self.phase = Phase::Demoting {
            cause: DemoteCause::Handover {
                to: to.clone(),
                epoch,
            },
            retry_at: None,
        };
        let why = format!(
            "handing the role over to {to}: {why}. Step 1: stopping the validator here \
             (the role goes to {to} at epoch {epoch} only after the stop is confirmed)"
        );
        let tag = (RecordTag::Demoted, "handover");
        self.record_as(
            out,
            now,
            RecordKind::RoleChange,
            tag,
            why.clone(),
            Vec::new(),
        );
        out.push(Action::Deactivate { reason: why });
    }

    fn consider_handover(&mut self, now: Duration, out: &mut Vec<Action>) {
        if !self.local_fresh(now) || self.local.healthy {
            return;
        }
        if self.handover_backoff_until.is_some_and(|t| now < t) {
            return;
        }
        let peer = self.peer_name();
        let mine = self
            .local
            .why
            .clone()
            .unwrap_or_else(|| "failed health rounds".into());
        // A stalled node hands over only to a peer that sees blocks it does not: when both
        // are stuck at the same height it is a chain-wide halt, and nothing should move.
        let ahead = match (
            self.fresh_peer(now).and_then(|st| st.latest_height),
            self.local.latest_height,
        ) {
            (Some(theirs), Some(mine)) => theirs > mine,
            // My node does not answer at all while the peer's follows the chain: not a
            // chain-wide halt — hand over (stopping first) rather than hold the role with a
            // dead node (the peer would wait for this node forever).
            (Some(_), None) => true,
            _ => false,
        };
        let stuck = self.local.stalled
            || self
                .no_new_block_for(now)
                .is_some_and(|d| d >= self.params.timing.stall_age);
        if stuck && !ahead {
            return;
        }
        match self.peer_ready(now) {
            Ok(()) => {
                let why =
                    format!("my node is unhealthy ({mine}) while {peer} is healthy and caught up");
                self.start_handover(why, now, out);
            }
            Err(reason) => {
                let why = format!(
                    "my node is unhealthy ({mine}), but {peer} cannot take over ({reason}); \
                     keeping the role"
                );
                self.alert_once(out, now, "unhealthy_keep".into(), why);
            }
        }
    }

    fn consider_fallback(&mut self, now: Duration, out: &mut Vec<Action>) -> bool {
        if !self.params.sole_primary() {
            return false;
        }
        let Some(st) = self.fresh_peer(now) else {
            return false;
        };
        if st.role != Role::Active || st.paused {
            return false;
        }
        let grace = self.params.fallback_grace_period;
        let healthy_long = self.local_fresh(now)
            && self.local.healthy
            && !self.local.stalled
            && self
                .local
                .healthy_since
                .is_some_and(|t| now.saturating_sub(t) >= grace);
        if !healthy_long {
            return false;
        }
        if self
            .last_fallback_request
            .is_some_and(|t| now.saturating_sub(t) < self.params.timing.handover_timeout)
        {
            return false;
        }
        let peer = self.peer_name();
        self.last_fallback_request = Some(now);
        self.phase = Phase::Passive {
            pending: Pending::Request {
                kind: RequestKind::Fallback,
                deadline: now + self.params.timing.handover_timeout,
            },
        };
        self.send(
            out,
            self.epoch,
            MessageBody::RoleRequest {
                kind: RequestKind::Fallback,
            },
        );
        let why = format!(
            "fallback: this primary node has been healthy for {}; asking {peer} to hand the \
             role back",
            words_duration(grace)
        );
        self.record(out, now, RecordKind::Info, why, Vec::new());
        true
    }

    fn consider_unfence(&mut self, now: Duration, out: &mut Vec<Action>) {
        let Some(st) = self.fresh_peer(now).cloned() else {
            return;
        };
        self.enter_passive(now);
        let why = format!(
            "leaving fenced: peer {} is reachable again and reports itself {} at epoch {}; \
             passive now, the normal rules apply",
            st.node_id, st.role, st.epoch
        );
        self.record(out, now, RecordKind::RoleChange, why, Vec::new());
    }

    /// Which promotion path is open, if any. `Err(None)`: nothing to consider (the normal
    /// steady state); `Err(Some(hold))`: a candidate situation, held back for this reason.
    fn candidacy(&mut self, now: Duration) -> Result<Candidate, Option<Hold>> {
        let peer = self.peer_name();
        let w = self.window();
        let m = self.margin();
        if let Some((asked, _)) = self.takeover {
            if let Some(st) = self.fresh_peer(now) {
                if st.role.may_sign() {
                    return Err(Some(Hold::PeerHolds {
                        peer,
                        role: st.role,
                        epoch: st.epoch,
                    }));
                }
            }
            return Ok(Candidate {
                path: Path::Takeover,
                not_before: asked,
                story: "the operator asked for a takeover".into(),
            });
        }
        if let Some(got) = self.peer.mismatch.clone() {
            return Err(Some(Hold::PeerMismatch {
                expected: peer,
                got,
            }));
        }
        if self.peer.last_at.is_none() {
            return Err(None); // no look at the peer yet since start
        }
        if !self.is_fresh(self.peer.last_at, now) {
            return Err(Some(Hold::PeerNoNews { peer }));
        }
        // Every promotion ends (the actuator rolls back what it cannot verify): a peer seen
        // promoting for longer than any activation takes is hung, and is a lost peer for
        // the normal rules — window, witness, standby right — counted from where its
        // activation had to be over.
        let stuck = self.stuck_promoting_since(now);
        if let (None, Some(st)) = (stuck, self.peer.status.clone()) {
            if st.role.may_sign() {
                if self.boot_claim_pending {
                    // A peer that is only stopping (its own start, a handover) may still
                    // become passive: the wish waits. One that holds the role answers it.
                    if st.role != Role::Demoting {
                        self.boot_claim_pending = false;
                    }
                    return Err(Some(Hold::PeerHolds {
                        peer,
                        role: st.role,
                        epoch: st.epoch,
                    }));
                }
                return Err(None);
            }
            // The peer is passive or fenced: only a claim (granted by the peer) may follow.
            if self.boot_claim_pending {
                return Ok(Candidate {
                    path: Path::Claim,
                    not_before: self.boot_at,
                    story: format!(
                        "started with --role active and peer {peer} is {} at epoch {}",
                        st.role, st.epoch
                    ),
                });
            }
            let both_since = max_opt(self.peer.passive_since, self.passive_since).unwrap_or(now);
            let not_before = both_since + w;
            // A peer started with `--role active` asks for the role itself (its wish counts
            // before the tie-break); otherwise the preferred node asks.
            let winner =
                (self.params.outranks_peer() && !st.wants_role) || !st.healthy || st.paused;
            if !winner {
                return Err(Some(Hold::PeerWillClaim { peer }));
            }
            if now < not_before {
                return Err(Some(Hold::Waiting {
                    peer,
                    until: not_before,
                    wait_why: format!(
                        "both nodes are passive; waiting the failover window ({}) before \
                         asking for the role",
                        words_duration(w)
                    ),
                }));
            }
            return Ok(Candidate {
                path: Path::Claim,
                not_before,
                story: format!(
                    "both nodes have been passive for the failover window and peer {peer} {}",
                    if !st.healthy {
                        "is unhealthy"
                    } else if st.paused {
                        "is paused"
                    } else {
                        "defers to this node (primary site / lower id)"
                    }
                ),
            });
        }
        // Fresh, and unreachable (or hung promoting).
        let lost = stuck.or(self.peer.lost_since).unwrap_or(now);
        let lost_for = now.saturating_sub(lost);
        if stuck.is_none() && lost_for < self.round() {
            return Err(None); // one missed look is not news yet
        }
        let last_seen = match self.peer.last_seen {
            Some((role, epoch)) => format!("was last seen {role} at epoch {epoch}"),
            None => "has not been seen since this node started".to_string(),
        };
        if !self.has_standby_right() {
            return Err(Some(Hold::NoRight { peer, last_seen }));
        }
        let how = match stuck {
            Some(_) => format!(
                "peer {peer} has been promoting for {}, longer than any activation takes ({}), \
                 so its activation is hung",
                words_duration(now.saturating_sub(self.peer.promoting_since.map_or(now, |p| p.1))),
                words_duration(self.params.timing.activation_bound)
            ),
            None => format!(
                "peer {peer} has been unreachable for {} (failover window {})",
                words_duration(lost_for),
                words_duration(w)
            ),
        };
        // A holder that may still start late (after a grant, an offer, a refused offer, this
        // node's start) must have had time to show on chain — unless the chain already shows
        // it signing (see `peer_may_start`).
        let late = self.late_start_until();
        let not_before = (lost + w).max(late.unwrap_or(Duration::ZERO));
        if now < not_before {
            let wait_why = match late {
                Some(t) if t > lost + w => format!(
                    "{how}; the role moved recently and the new holder has not been seen \
                     signing yet, so a late start must be excluded: its activation takes at \
                     most {}",
                    words_duration(m)
                ),
                _ => how,
            };
            return Err(Some(Hold::Waiting {
                peer: peer.clone(),
                until: not_before,
                wait_why,
            }));
        }
        Ok(Candidate {
            path: Path::Failover,
            not_before,
            story: format!(
                "{how} and {last_seen}; this node is the designated standby for epoch {}",
                self.epoch
            ),
        })
    }

    /// The present state of a passive with nothing to decide, in words (for `/status`).
    fn standing_by(&self, now: Duration) -> String {
        match self.fresh_peer(now) {
            Some(st) => format!(
                "standing by: peer {} is {} at epoch {}{}",
                st.node_id,
                st.role,
                st.epoch,
                if st.healthy {
                    ""
                } else {
                    " (its node is unhealthy)"
                }
            ),
            None => "standing by".to_string(),
        }
    }

    /// When a peer seen promoting under one epoch for longer than an activation can take
    /// must be taken as lost: `Some(the moment its activation had to be over)`.
    fn stuck_promoting_since(&self, now: Duration) -> Option<Duration> {
        let st = self.peer.status.as_ref()?;
        if st.role != Role::Promoting {
            return None;
        }
        let (epoch, since, _) = self.peer.promoting_since?;
        let over = since + self.params.timing.activation_bound + self.params.timing.news_max_age;
        (epoch == st.epoch && now >= over).then_some(over)
    }

    /// Whether this node's own node may carry the role now.
    fn own_fit(&self, now: Duration, path: Path) -> Result<u64, Hold> {
        if !self.local_fresh(now) {
            return Err(Hold::OwnNoHealth);
        }
        if !self.local.healthy {
            return Err(Hold::OwnUnhealthy {
                why: self.local.why.clone(),
            });
        }
        let Some(h) = self.local.latest_height else {
            return Err(Hold::OwnStalled { height: None });
        };
        if self.local.stalled {
            return Err(Hold::OwnStalled { height: Some(h) });
        }
        if path == Path::Failover {
            // Seeing new blocks since the peer was lost (or seen hung promoting): a halted
            // chain is not a failover.
            let at_loss = self
                .peer
                .height_at_loss
                .or(self.peer.promoting_since.and_then(|p| p.2))
                .unwrap_or(h);
            if h <= at_loss {
                return Err(Hold::OwnNotAdvancing { height: h, at_loss });
            }
        }
        Ok(h)
    }

    /// S1's witness: a fresh report (asked after `not_before`, at most one round old) whose
    /// newest commits form a clean run — every one read, with its block time, none signed by
    /// the validator — long enough in blocks and in **block time** that any node that may
    /// have signed before it has stopped (`Timing::clean_run_suffices`). A signature below a
    /// long enough run does not block: that is the old holder's last one.
    fn witness_state(&self, now: Duration, not_before: Duration) -> WitnessState {
        let Some(w) = &self.witness.last else {
            return WitnessState::Missing;
        };
        if w.requested_at < not_before || now.saturating_sub(w.requested_at) > self.round() {
            return WitnessState::Missing;
        }
        let times: Vec<Duration> = w.clean.iter().map(|&(_, t)| t).collect();
        let short = match self.params.timing.clean_run_suffices(&times) {
            Ok(()) => {
                let lo = w.clean.first().map_or(w.latest_height, |&(h, _)| h);
                return WitnessState::Clean {
                    lo,
                    hi: w.latest_height,
                };
            }
            Err(short) => short,
        };
        WitnessState::Blocked(match w.stop {
            RunStop::Signed(last) => Hold::WitnessSigned {
                last,
                latest: w.latest_height,
                heights: w.signed.iter().copied().filter(|&h| h >= last).collect(),
            },
            RunStop::Unknown(_) | RunStop::Regressed => Hold::WitnessIncomplete {
                unknown: if w.unknown.is_empty() {
                    vec![w.latest_height]
                } else {
                    w.unknown.clone()
                },
                read: w.read,
                wanted: w.wanted,
            },
            RunStop::WindowStart => Hold::WitnessShort {
                clean: w.clean.len(),
                short: short.to_string(),
            },
        })
    }

    /// How many commits the next witness reads: enough for the spans at the fastest block
    /// rate seen, and more when the last clean window was too short.
    fn witness_blocks_to_ask(&self) -> u64 {
        let base = u64::from(
            self.params
                .timing
                .witness_request_blocks(self.chain.fastest_block),
        );
        match &self.witness.last {
            Some(w) if w.stop == RunStop::WindowStart => {
                base.max(w.wanted.saturating_mul(2)).min(2_000)
            }
            _ => base,
        }
    }

    fn request_witness(&mut self, now: Duration, out: &mut Vec<Action>) {
        if self.witness.pending.is_some() {
            return;
        }
        let id = self.next_witness_id;
        self.next_witness_id += 1;
        let blocks = self.witness_blocks_to_ask();
        self.witness.pending = Some(PendingWitness {
            id,
            requested_at: now,
            height_at_request: self.local.latest_height,
            blocks,
        });
        out.push(Action::RequestWitness {
            id,
            blocks: u32::try_from(blocks).unwrap_or(u32::MAX),
        });
    }

    fn consider_promotion(&mut self, now: Duration, out: &mut Vec<Action>) {
        let cand = match self.candidacy(now) {
            Ok(c) => c,
            Err(None) => {
                // A refusal that no longer holds must not stay on `/status` as the reason.
                if self.last_hold.take().is_some() {
                    self.last_why = self.standing_by(now);
                }
                return;
            }
            Err(Some(hold)) => {
                self.hold(out, now, hold);
                return;
            }
        };
        if self.paused && cand.path != Path::Takeover {
            self.hold(out, now, Hold::Paused);
            return;
        }
        let h = match self.own_fit(now, cand.path) {
            Ok(h) => h,
            Err(hold) => {
                self.hold(out, now, hold);
                return;
            }
        };
        let (lo, hi) = match self.witness_state(now, cand.not_before) {
            WitnessState::Missing => {
                self.request_witness(now, out);
                return;
            }
            WitnessState::Blocked(hold) => {
                if cand.path == Path::Takeover {
                    self.takeover = None;
                    let why = format!("takeover refused: {}", hold.why(now));
                    self.record(out, now, RecordKind::Refusal, why, hold.heights());
                    return;
                }
                self.hold(out, now, hold);
                return;
            }
            WitnessState::Clean { lo, hi } => (lo, hi),
        };
        let peer = self.peer_name();
        let fence_h = height_i64(h).saturating_add(2);
        let chain_words =
            format!("the chain shows no signature from the validator in blocks {lo}–{hi}");
        match cand.path {
            Path::Claim => {
                let epoch = self.epoch + 1;
                self.boot_claim_pending = false;
                // The peer becomes the standby if it grants; never two standbys.
                self.drop_right(out);
                self.phase = Phase::Passive {
                    pending: Pending::Claim {
                        epoch,
                        deadline: now + self.params.timing.handover_timeout,
                    },
                };
                self.send(
                    out,
                    epoch,
                    MessageBody::RoleRequest {
                        kind: RequestKind::Claim,
                    },
                );
                let why = format!(
                    "{}; my node is healthy at height {h}; {chain_words} — asking {peer} for \
                     the role at epoch {epoch}",
                    cand.story
                );
                self.record(out, now, RecordKind::Info, why, vec![lo, hi]);
            }
            Path::Failover => {
                let epoch = self.epoch + 1;
                let at_loss = self.peer.height_at_loss.unwrap_or(h);
                let story = format!(
                    "promoting to active at epoch {epoch}: {}; my node is healthy at height {h} \
                     and advancing ({at_loss} when the peer was lost); {chain_words}; fence at \
                     height {fence_h} round 0 step 0 — nothing at or below height {} will be \
                     signed here",
                    cand.story,
                    fence_h - 1
                );
                let cause = ActivationCause::Failover;
                let base = self.unplanned_fence(h);
                self.promote(epoch, cause, base, None, None, story, now, out);
            }
            Path::Takeover => {
                let epoch = self.epoch + 1;
                let story = format!(
                    "promoting to active at epoch {epoch} on the operator's takeover: my node is \
                     healthy at height {h}; {chain_words}; fence at height {fence_h} round 0 \
                     step 0"
                );
                let base = self.unplanned_fence(h);
                self.promote(
                    epoch,
                    ActivationCause::Takeover,
                    base,
                    None,
                    None,
                    story,
                    now,
                    out,
                );
            }
        }
    }

    fn claim_still_ok(&self, now: Duration, epoch: u64) -> Result<(), String> {
        if self.paused {
            return Err("automation is paused".into());
        }
        if self.epoch > epoch {
            return Err(format!("epoch {} exists meanwhile", self.epoch));
        }
        if let Some(st) = self.fresh_peer(now) {
            if st.role.may_sign() {
                return Err(format!("{} is {} now", st.node_id, st.role));
            }
        }
        self.own_fit(now, Path::Claim)
            .map(|_| ())
            .map_err(|hold| hold.why(now))
    }

    /// S3: after an unplanned failover the old holder's last votes are unknown, so the fence
    /// skips the height in flight: `(H + 2, 0, 0)`.
    fn unplanned_fence(&self, h: u64) -> Hrs {
        Hrs::new(height_i64(h).saturating_add(2), 0, Step::None)
    }

    /// Takes the role at `epoch`: persist the epoch, then activate with a fence never below
    /// any state seen.
    #[allow(clippy::too_many_arguments)]
    fn promote(
        &mut self,
        epoch: u64,
        cause: ActivationCause,
        base: Hrs,
        handed_state: Option<HandedState>,
        reply_to: Option<NodeId>,
        story: String,
        now: Duration,
        out: &mut Vec<Action>,
    ) {
        // The holder is never the standby: drop the right (a resume keeps the epoch, so the
        // lapse by epoch alone would not cover it), then persist before activating.
        let had_right = self.has_standby_right();
        self.right = None;
        if !self.adopt_epoch(epoch, out) && had_right {
            self.persist(out);
        }
        self.acted_at = Some(epoch);
        // CometBFT's double_sign_check_height (N): story refuses to start while the key's
        // signature is in its last N commits. Wait for N blocks past the highest height the
        // validator may have signed (the chain's last signature, any state seen — a handed
        // final state, the replica), before this promotion's own fence joins them.
        let n = self.params.timing.double_sign_check_height;
        let start_after_height = (n > 0).then(|| {
            let seen = self
                .highest_seen
                .map_or(0, |h| u64::try_from(h.height).unwrap_or(0));
            seen.max(self.chain.last_signed.unwrap_or(0))
                .saturating_add(n)
        });
        let fence = self.highest_seen.map_or(base, |s| s.max(base));
        self.see_state(Some(fence));
        self.phase = Phase::Promoting {
            epoch,
            cause: cause.clone(),
            abort: None,
            reply_to,
        };
        self.boot_claim_pending = false;
        self.takeover = None;
        self.last_hold = None;
        let heights = vec![u64::try_from(fence.height).unwrap_or(0)];
        let tag = promotion_started_tag(&cause);
        self.record_as(out, now, RecordKind::RoleChange, tag, story, heights);
        out.push(Action::Activate {
            epoch,
            cause,
            fence,
            handed_state,
            start_after_height,
        });
    }
}

/// The tags of a promotion's completion and abort, by its cause.
fn promotion_tags(cause: &ActivationCause) -> (RecordTag, RecordTag) {
    match cause {
        ActivationCause::Handover { .. } => {
            (RecordTag::SwitchoverCompleted, RecordTag::SwitchoverAborted)
        }
        // Taking the role back after a refused handover: the abort was counted at its start.
        ActivationCause::Resume => (RecordTag::Other, RecordTag::SwitchoverAborted),
        ActivationCause::Failover | ActivationCause::Takeover => {
            (RecordTag::FailoverCompleted, RecordTag::FailoverAborted)
        }
        // Both nodes passive (a cluster starting): taking the role by agreement is routine.
        ActivationCause::Claim => (RecordTag::Other, RecordTag::Other),
    }
}

/// The tag and reason of a promotion's start.
fn promotion_started_tag(cause: &ActivationCause) -> (RecordTag, &'static str) {
    match cause {
        ActivationCause::Handover { .. } => (RecordTag::SwitchoverStarted, "handover"),
        ActivationCause::Resume => (RecordTag::SwitchoverAborted, "resume_after_refusal"),
        ActivationCause::Failover => (RecordTag::FailoverStarted, "peer_lost"),
        ActivationCause::Claim => (RecordTag::Other, "claim"),
        ActivationCause::Takeover => (RecordTag::FailoverStarted, "operator_takeover"),
    }
}

/// S3 after a planned handover: the height after the old holder's final state. Its last
/// height may still be in flight (the chain stalled, rounds went on); a second signer in a
/// later round of it would not know the lock the old holder's consensus took there (CometBFT
/// keeps it in memory and its WAL, not in the state file) and could prevote against it. So
/// one height has one signer: the new holder starts at the next.
pub(crate) fn handover_fence(final_state: Hrs) -> Hrs {
    Hrs::new(final_state.height.saturating_add(1), 0, Step::None)
}
