//! [`Core`]: the one failover machine, for every coordination backend. Pure:
//! `(state, event, now) → (state, actions)`; it reads no clock and performs no I/O.
//!
//! `now` is the time since an arbitrary origin of a **monotonic** clock (the driver's
//! `Instant` at start). A `now` earlier than one already seen is treated as the latest seen.
//! The driver feeds every [`Event`], performs the returned [`Action`]s in order, and sleeps
//! until [`Core::poll_timeout`] to call [`Core::handle_timeout`] — no fixed-rate tick.
//!
//! What differs between the backends — how the right to promote is obtained and kept — is
//! the [`Arbiter`] (`arbiter/`). The sub-states live in their own files: the own node
//! (`local.rs`), the chain and S4's quiet (`chain.rs`), the witness (`witness.rs`), the fence
//! (`fence.rs`), the gate (`gate.rs`), the actuator's answers (`actuation.rs`), the operator
//! (`operator.rs`), the timers (`timers.rs`).

use std::time::Duration;

use serde::Serialize;

use crate::action::Action;
use crate::arbiter::{Arbiter, Path};
use crate::common::{ms, Common};
use crate::event::{Event, PeerStatus};
use crate::hold::{words_duration, Hold};
use crate::params::{Params, ParamsError};
use crate::phase::{DemoteCause, Pending, Phase};
use crate::record::{RecordKind, RecordTag};
use crate::timers::{just_after, Timer, Timers};
use crate::types::{Role, Wish};
use crate::witness::WitnessState;

/// The failover machine of one node, over an [`Arbiter`].
#[derive(Debug, Clone, Serialize)]
pub struct Core<A: Arbiter + Serialize> {
    #[serde(flatten)]
    pub(crate) c: Common,
    pub(crate) a: A,
}

/// A one-shot functional form of [`Core::handle`].
pub fn step<A: Arbiter + Serialize>(
    mut machine: Core<A>,
    event: Event,
    now: Duration,
) -> (Core<A>, Vec<Action>) {
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
    /// etcd mode: every node's own status as etcd last showed it (empty in peer mode).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<PeerStatus>,
}

impl<A: Arbiter + Serialize> Core<A> {
    /// A machine that has not started: it orders nothing until `Event::Start`.
    pub fn with_arbiter(params: Params, arbiter: A) -> Result<Self, ParamsError> {
        arbiter.validate(&params)?;
        Ok(Core {
            c: Common::new(params),
            a: arbiter,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.c.params
    }

    /// The arbiter.
    pub fn arbiter(&self) -> &A {
        &self.a
    }

    /// The role shown to operators: `Paused` while paused, else the held role.
    pub fn role(&self) -> Role {
        self.c.role()
    }

    /// The role held (what matters for safety). Before its boot deactivation is confirmed a
    /// node reports `Demoting`: the key may still be live from before a daemon crash.
    pub fn held_role(&self) -> Role {
        self.c.phase.role()
    }

    /// The current epoch (the highest known; persisted through `PersistEpoch`).
    pub fn epoch(&self) -> u64 {
        self.c.epoch
    }

    /// Whether an operator paused the automation.
    pub fn is_paused(&self) -> bool {
        self.c.paused
    }

    /// The epoch this node signs under, when it is promoting or active.
    pub fn holding_epoch(&self) -> Option<u64> {
        self.c.holding()
    }

    /// The latest decision or refusal, in words.
    pub fn last_why(&self) -> &str {
        &self.c.last_why
    }

    /// Whether this node holds the standby right for its current epoch (two-node mode).
    pub fn has_standby_right(&self) -> bool {
        self.c.has_standby_right()
    }

    /// The own node's latest height, when known.
    pub fn latest_height(&self) -> Option<u64> {
        self.c.local.latest_height
    }

    /// The highest sign state seen.
    pub fn highest_seen(&self) -> Option<syncguard_validator::Hrs> {
        self.c.fence.highest_seen
    }

    /// What this node tells others (the peer status API).
    pub fn peer_status(&self) -> PeerStatus {
        PeerStatus {
            node_id: self.c.params.node_id.clone(),
            role: self.held_role(),
            paused: self.c.paused,
            epoch: self.c.epoch,
            healthy: self.c.local.healthy,
            latest_height: self.c.local.latest_height,
            is_primary_site: self.c.params.is_primary_site,
            last_state: self.c.fence.highest_seen,
            standby_right: self.c.has_standby_right(),
            wants_role: self.c.boot_claim_pending,
            peer_lost: self.a.reports_peer_lost(&self.c, self.c.last_now),
        }
    }

    /// The compact `/status` view.
    pub fn status(&self) -> Status {
        let (peer, lost_for) = self.a.peer_view(&self.c, self.c.last_now);
        Status {
            role: self.role(),
            held_role: self.held_role(),
            paused: self.c.paused,
            epoch: self.c.epoch,
            wish: self.c.wish,
            last_why: self.c.last_why.clone(),
            peer,
            peer_unreachable_for_ms: lost_for.map(ms),
            standby_right: self.c.has_standby_right(),
            members: self.a.members(),
        }
    }

    /// Feeds one event at time `now`; returns the actions to perform, in order.
    pub fn handle(&mut self, event: Event, now: Duration) -> Vec<Action> {
        let now = now.max(self.c.last_now);
        self.c.last_now = now;
        let booting = matches!(self.c.phase, Phase::Booting);
        if booting && !matches!(event, Event::Start { .. } | Event::Operator(_)) {
            // Nothing is known (not even the persisted epoch) before Start: learn nothing,
            // persist nothing.
            return Vec::new();
        }
        if !booting {
            // Deadlines first: an answer that arrives after its deadline finds the question
            // withdrawn.
            self.timeouts(now);
        }
        self.dispatch(event, now);
        if !matches!(self.c.phase, Phase::Booting) {
            self.evaluate(now);
        }
        std::mem::take(&mut self.c.out)
    }

    /// The next instant the machine must look again although nothing happened (a deadline, a
    /// wait that ends, news that ages out), if any. The driver sleeps until then.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.timers().next_after(self.c.last_now).map(|(_, at)| at)
    }

    /// Time passed: the timers due at `now` fire.
    pub fn handle_timeout(&mut self, now: Duration) -> Vec<Action> {
        self.handle(Event::Tick, now)
    }

    /// Every timer armed after the latest input (derived from the state: see `timers.rs`).
    pub fn timers(&self) -> Timers {
        let c = &self.c;
        let t = &c.params.timing;
        let mut timers = Timers::after(c.last_now);
        match &c.phase {
            Phase::HandingOver { deadline, .. } => timers.set(Timer::AnswerDeadline, *deadline),
            Phase::Passive {
                pending:
                    Pending::Claim { deadline, .. }
                    | Pending::Request { deadline, .. }
                    | Pending::Acquire { deadline },
            } => timers.set(Timer::AnswerDeadline, *deadline),
            Phase::Demoting {
                retry_at: Some(at), ..
            } => timers.set(Timer::RetryStop, *at),
            _ => {}
        }
        let aged = |at: Option<Duration>| at.map(|at| just_after(at + t.news_max_age));
        timers.set_opt(Timer::WitnessExpires, c.witness.expires_at(t.round));
        timers.set_opt(
            Timer::TakeoverExpires,
            c.takeover.map(|(_, until)| just_after(until)),
        );
        timers.set_opt(Timer::HealthAgesOut, aged(c.local.at));
        timers.set_opt(Timer::ChainAgesOut, aged(c.chain.at));
        timers.set_opt(Timer::WaitEnds, c.chain.late_start_until(t));
        timers.set_opt(
            Timer::GraceEnds,
            c.local
                .healthy_since
                .map(|s| s + c.params.fallback_grace_period),
        );
        timers.set_opt(
            Timer::GraceEnds,
            c.last_fallback_request.map(|at| at + t.handover_timeout),
        );
        // Found by the timers-alone property: an unhealthy holder whose offer was refused
        // offers again when this ends — a decision made by time alone.
        timers.set_opt(Timer::BackoffEnds, c.handover_backoff_until);
        self.a.timers(c, &mut timers);
        timers
    }

    // ----- inputs --------------------------------------------------------------------------

    fn dispatch(&mut self, event: Event, now: Duration) {
        match event {
            Event::Start {
                wish,
                epoch_on_disk,
                standby_right,
            } => self.on_start(wish, epoch_on_disk, standby_right, now),
            Event::Tick | Event::Verify(_) => {}
            Event::LocalHealth(h) => {
                self.c.local.observe(h.clone(), now);
                self.a.on_event(&mut self.c, Event::LocalHealth(h), now);
            }
            Event::Chain(report) => {
                if let Some(evidence) = self.c.chain.observe(report, now) {
                    self.late_start_excluded(now, evidence);
                }
            }
            Event::Witness(r) => {
                if let Some(f) = self.c.witness.observe(r) {
                    self.c.chain.note_block_interval(f);
                }
            }
            Event::Actuator(r) => self.on_actuator(r, now),
            Event::Operator(cmd) => self.on_operator(cmd, now),
            Event::StateSeen { hrs } => {
                self.c.fence.see(Some(hrs));
                self.a.on_event(&mut self.c, Event::StateSeen { hrs }, now);
            }
            Event::EpochPersistFailed { epoch, reason } => {
                self.on_persist_failed(epoch, &reason, now)
            }
            other => self.a.on_event(&mut self.c, other, now),
        }
    }

    fn on_start(
        &mut self,
        wish: Wish,
        epoch_on_disk: u64,
        standby_right: Option<bool>,
        now: Duration,
    ) {
        let c = &mut self.c;
        if !matches!(c.phase, Phase::Booting) {
            c.record(now, RecordKind::Info, "ignored a second start event".into());
            return;
        }
        c.epoch = c.epoch.max(epoch_on_disk);
        self.a.on_start(c, standby_right, now);
        // Whatever another node did just before this start is unknown: let it show on chain.
        let known = c.local.latest_height;
        c.chain.may_start(now, c.epoch, known);
        c.wish = wish;
        c.boot_at = now;
        c.boot_claim_pending = wish == Wish::Active;
        c.phase = Phase::Demoting {
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
            c.epoch,
            if c.has_standby_right() {
                " as the designated standby"
            } else {
                ""
            }
        );
        c.record(now, RecordKind::RoleChange, why.clone());
        c.deactivate(why);
    }

    /// The new holder was seen signing: no late start is pending. Say so once, with the
    /// evidence and what still bounds the wait.
    pub(crate) fn late_start_excluded(&mut self, now: Duration, evidence: String) {
        let t = &self.c.params.timing;
        let why = format!(
            "{evidence}: the new holder is running, no late start is pending; until its \
             activation is verified it cannot fence itself, so an unplanned failover also \
             waits until it is seen active or an unverified activation has rolled back (at \
             most {})",
            crate::hold::words_duration(t.verify_deadline + t.stop_bound)
        );
        self.c.record(now, RecordKind::Info, why);
    }

    fn on_persist_failed(&mut self, epoch: u64, reason: &str, now: Duration) {
        let c = &mut self.c;
        let why = format!(
            "COULD NOT PERSIST EPOCH {epoch}: {reason}. Nothing is done under an epoch that \
             would not survive a restart"
        );
        let tag = (RecordTag::Other, "epoch_not_persisted");
        c.record_as(now, RecordKind::Alert, tag, why, Vec::new());
        match &c.phase {
            Phase::Promoting { epoch: e, .. } if *e == epoch => {
                // The driver dropped the Activate; stop anyway in case part of it ran.
                c.phase = Phase::Demoting {
                    cause: DemoteCause::NotPersisted,
                    retry_at: None,
                };
                c.deactivate(format!("epoch {epoch} could not be persisted"));
            }
            Phase::HandingOver { epoch: e, .. } if *e == epoch => {
                // The offer was not sent; the key is already off here.
                c.enter_passive(now);
            }
            _ => {}
        }
    }

    // ----- decisions -----------------------------------------------------------------------

    fn evaluate(&mut self, now: Duration) {
        self.timeouts(now);
        self.safety(now);
        if matches!(self.c.phase, Phase::Fenced { .. }) && !self.c.paused {
            if let Some(words) = self.a.may_unfence(&self.c, now) {
                self.c.enter_passive(now);
                self.c.record(now, RecordKind::RoleChange, words);
                // Passive now: what a passive decides is decided at once, not at the next
                // input (nothing else would wake the machine for it).
            }
        }
        match self.c.phase {
            Phase::Passive {
                pending: Pending::None,
            } => {
                if !self.c.paused && self.consider_fallback(now) {
                    return;
                }
                self.consider_promotion(now);
            }
            Phase::Active { .. } if !self.c.paused => self.consider_handover(now),
            _ => {}
        }
    }

    fn timeouts(&mut self, now: Duration) {
        let c = &mut self.c;
        let t = c.params.timing.clone();
        c.witness.expire(t.round, now);
        if c.takeover.is_some_and(|(_, until)| now > until) {
            c.takeover = None;
        }
        match &c.phase {
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
                    words_duration(t.handover_timeout),
                    if *accepted { " after it accepted" } else { "" }
                );
                c.enter_passive(now);
                let tag = (RecordTag::SwitchoverAborted, "handover_timeout");
                c.record_as(now, RecordKind::RoleChange, tag, why, Vec::new());
            }
            Phase::Passive {
                pending: Pending::Claim { deadline, epoch },
            } if now >= *deadline => {
                let why = format!(
                    "my claim for epoch {epoch} got no answer within {}; not promoting",
                    words_duration(t.handover_timeout)
                );
                c.phase = Phase::passive();
                c.record(now, RecordKind::Info, why);
            }
            Phase::Passive {
                pending: Pending::Request { deadline, .. } | Pending::Acquire { deadline },
            } if now >= *deadline => {
                c.phase = Phase::passive();
            }
            Phase::Demoting {
                cause,
                retry_at: Some(at),
            } if now >= *at => {
                let cause = cause.clone();
                c.phase = Phase::Demoting {
                    cause,
                    retry_at: None,
                };
                c.deactivate("retrying the stop of the validator".into());
            }
            _ => {}
        }
    }

    /// The stops that act even while paused: standing down for a newer epoch, the arbiter's
    /// own (split brain, the lock moved, the lease lost), and self-fencing (S4).
    fn safety(&mut self, now: Duration) {
        let Some(holding) = self.c.holding() else {
            return;
        };
        if self.c.epoch > holding {
            let why = format!(
                "the role moved on to epoch {} while this node held epoch {holding}: standing \
                 down at once",
                self.c.epoch
            );
            self.stand_down(why, now);
            return;
        }
        self.a.holder_safety(&mut self.c, holding, now);
        let Phase::Active {
            since,
            signed_floor,
            ..
        } = self.c.phase
        else {
            return;
        };
        let Some(lost) = self.a.contact_lost_since(&self.c, now) else {
            return;
        };
        let c = &self.c;
        let local_fresh = c.local_fresh(now);
        let quiet = crate::chain::quiet(
            &c.params.timing,
            &c.local,
            &c.chain,
            local_fresh,
            |at| c.is_fresh(Some(at), now),
            since,
            signed_floor,
        );
        if let Some((reason, words)) = quiet {
            let lost_for = now.saturating_sub(lost);
            let why = format!(
                "self-fencing: {words}, and {} has been unreachable for {} — stopping the \
                 validator here before it may take over (S4)",
                self.a.replacement_words(c),
                words_duration(lost_for),
            );
            let c = &mut self.c;
            c.phase = Phase::Demoting {
                cause: DemoteCause::SelfFence,
                retry_at: None,
            };
            let tag = (RecordTag::SelfFenced, reason);
            c.record_as(now, RecordKind::RoleChange, tag, why.clone(), Vec::new());
            c.deactivate(why);
        }
    }

    /// Stops holding the role at once (a newer epoch, a split brain lost, the lock moved).
    pub(crate) fn stand_down(&mut self, why: String, now: Duration) {
        stand_down(&mut self.c, why, now);
    }

    fn consider_promotion(&mut self, now: Duration) {
        let cand = match self.a.candidacy(&mut self.c, now) {
            Ok(c) => c,
            Err(None) => {
                let words = self.a.standing_by(&self.c, now);
                self.c.clear_hold(|| words);
                return;
            }
            Err(Some(hold)) => {
                let lost = self.a.lost_peer(&self.c, now);
                self.c.hold(now, hold, lost);
                return;
            }
        };
        if self.c.paused && cand.path != Path::Takeover {
            self.c.hold(now, Hold::Paused, false);
            return;
        }
        let fresh = self.c.local_fresh(now);
        let fit = match self.c.local.fit(fresh, cand.advance) {
            Ok(fit) => fit,
            Err(hold) => {
                self.c.hold(now, hold, false);
                return;
            }
        };
        let c = &mut self.c;
        match c
            .witness
            .state(&c.params.timing, now, cand.not_before, c.chain.last_signed)
        {
            WitnessState::Missing => {
                let t = c.params.timing.clone();
                if let Some(ask) =
                    c.witness
                        .request(&t, c.chain.fastest_block, c.local.latest_height, now)
                {
                    c.push(ask);
                }
            }
            WitnessState::Blocked(hold) => {
                if cand.path == Path::Takeover {
                    c.takeover = None;
                    let why = format!("takeover refused: {}", hold.why(now));
                    c.record_as(
                        now,
                        RecordKind::Refusal,
                        (RecordTag::Other, ""),
                        why,
                        hold.heights(),
                    );
                    return;
                }
                let lost = self.a.lost_peer(&self.c, now);
                self.c.hold(now, hold, lost);
            }
            WitnessState::Clean(clean) => self.a.claim(&mut self.c, cand, fit, clean, now),
        }
    }

    fn consider_handover(&mut self, now: Duration) {
        let c = &self.c;
        // A node whose verdict is recovering is back within a few rounds: handing over
        // then moves the role for nothing (after a chain-wide halt both nodes recover, one a
        // round before the other).
        if !c.local_fresh(now) || c.local.healthy || c.local.recovering {
            return;
        }
        if c.handover_backoff_until.is_some_and(|t| now < t) {
            return;
        }
        let mine = c
            .local
            .why
            .clone()
            .unwrap_or_else(|| "failed health rounds".into());
        match self.a.handover_target(c, now) {
            Ok(to) => {
                let why =
                    format!("my node is unhealthy ({mine}) while {to} is healthy and caught up");
                crate::operator::start_handover(&mut self.c, to, why, now);
            }
            Err(Some(reason)) => {
                let why = format!("my node is unhealthy ({mine}), but {reason}; keeping the role");
                self.c.alert_once(now, "unhealthy_keep".into(), why);
            }
            Err(None) => {}
        }
    }

    fn consider_fallback(&mut self, now: Duration) -> bool {
        let c = &self.c;
        if !c.params.sole_primary() {
            return false;
        }
        if self.a.holder_seen(c, now).is_none() || self.a.holder_is_primary(c, now) {
            return false;
        }
        let grace = c.params.fallback_grace_period;
        let healthy_long = c.local_fresh(now)
            && c.local.healthy
            && !c.local.stalled
            && c.local
                .healthy_since
                .is_some_and(|t| now.saturating_sub(t) >= grace);
        if !healthy_long {
            return false;
        }
        let t = c.params.timing.handover_timeout;
        if c.last_fallback_request
            .is_some_and(|at| now.saturating_sub(at) < t)
        {
            return false;
        }
        self.c.last_fallback_request = Some(now);
        if !self
            .a
            .ask_for_role(&mut self.c, crate::message::RequestKind::Fallback, now)
        {
            return false;
        }
        let holder = self
            .a
            .holder_seen(&self.c, now)
            .map_or_else(|| "the holder".to_string(), |(id, _)| id.to_string());
        let why = format!(
            "fallback: this primary node has been healthy for {}; asking {holder} to hand the \
             role back",
            words_duration(grace)
        );
        self.c.record(now, RecordKind::Info, why);
        true
    }
}

/// Stops holding the role at once; a promoting node stops as soon as its activation reports
/// (one actuator operation at a time).
pub(crate) fn stand_down(c: &mut Common, why: String, now: Duration) {
    match &mut c.phase {
        Phase::Active { .. } => {
            c.phase = Phase::Demoting {
                cause: DemoteCause::Superseded,
                retry_at: None,
            };
            let tag = (RecordTag::DoubleSignPrevented, "second_active");
            c.record_as(now, RecordKind::Alert, tag, why.clone(), Vec::new());
            c.deactivate(why);
        }
        Phase::Promoting { abort, .. } if abort.is_none() => {
            *abort = Some(why.clone());
            let tag = (RecordTag::DoubleSignPrevented, "second_active");
            c.record_as(now, RecordKind::Alert, tag, why, Vec::new());
        }
        _ => {}
    }
}
