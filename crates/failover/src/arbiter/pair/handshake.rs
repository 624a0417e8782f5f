//! The two-node protocol (DESIGN §4): a planned handover's offer and its replies, a claim
//! when both nodes are passive and its grant, a request for the role (switchover to the
//! asking node, fallback to the primary site). Every promotion it leads to goes through the
//! gate with its evidence: handed over after a confirmed stop, resumed after a refusal,
//! granted with a clean witness.

use std::time::Duration;

use super::{OfferSeen, Pair};
use crate::common::Common;
use crate::fence::{height_i64, FenceState};
use crate::gate::Evidence;
use crate::local::OwnFit;
use crate::message::{HandoverOutcome, MessageBody, PeerMessage, RequestKind};
use crate::phase::{Pending, Phase};
use crate::record::{RecordKind, RecordTag};
use crate::types::HandedState;

impl Pair {
    pub(super) fn on_message(&mut self, c: &mut Common, m: PeerMessage, now: Duration) {
        if matches!(c.phase, Phase::Booting) {
            return; // not started: the sender's timeout covers it
        }
        if m.from != c.params.peer_id {
            let why = format!(
                "ignored a message from node `{}`: the only peer is `{}`",
                m.from, c.params.peer_id
            );
            c.record(now, RecordKind::Refusal, why);
            return;
        }
        self.heard_from(c, &m, now);
        match m.body {
            MessageBody::HandoverOffer { final_state } => {
                self.on_offer(c, m.epoch, final_state, now)
            }
            MessageBody::HandoverReply { outcome, reason } => {
                self.on_handover_reply(c, m.epoch, outcome, &reason, now)
            }
            MessageBody::RoleRequest { kind } => self.on_role_request(c, m.epoch, kind, now),
            MessageBody::RoleReply { granted, reason } => {
                self.on_role_reply(c, m.epoch, granted, &reason, now)
            }
        }
    }

    fn reply(&self, c: &mut Common, epoch: u64, outcome: HandoverOutcome, reason: String) {
        self.send(c, epoch, MessageBody::HandoverReply { outcome, reason });
    }

    /// Why this node cannot take an offered role now, if it cannot.
    fn offer_refusal(
        c: &Common,
        final_state: Option<&HandedState>,
        now: Duration,
    ) -> Option<(HandoverOutcome, String)> {
        if !matches!(c.phase, Phase::Passive { .. } | Phase::Fenced { .. }) {
            return Some((
                HandoverOutcome::Ignored,
                format!(
                    "this node is {} and cannot prove it is not signing",
                    c.phase.role()
                ),
            ));
        }
        let refused = if c.paused {
            "automation is paused on this node".to_string()
        } else if matches!(c.phase, Phase::Fenced { .. }) {
            "this node is fenced (its node stalled recently)".to_string()
        } else if !c.local_fresh(now) || !c.local.healthy || c.local.stalled {
            format!("my own node is not healthy{}", c.local.unhealthy_words())
        } else if final_state.is_none() && c.local.latest_height.is_none() {
            "no final state handed and no chain height known here to fence at".to_string()
        } else {
            return None;
        };
        Some((HandoverOutcome::Refused, refused))
    }

    fn on_offer(
        &mut self,
        c: &mut Common,
        epoch: u64,
        final_state: Option<HandedState>,
        now: Duration,
    ) {
        let from = self.peer_name(c);
        c.fence.see(final_state.as_ref().map(|f| f.hrs));
        let known = self
            .last_offer
            .as_ref()
            .filter(|o| o.from == from && o.epoch == epoch)
            .cloned();
        let acted_here = self.acted_at.is_some_and(|e| e >= epoch);
        if epoch < c.epoch || (known.is_none() && acted_here) {
            let why = format!(
                "refused a handover offer from {from} for epoch {epoch}: this node already knows \
                 epoch {} (a message from an older epoch is refused)",
                c.epoch
            );
            self.reply(c, c.epoch, HandoverOutcome::Ignored, why.clone());
            c.record(now, RecordKind::Refusal, why);
            return;
        }
        if let Some(o) = known {
            self.repeat_answer(c, epoch, o.accepted);
            return;
        }
        // A new offer: whatever the answer, the epoch is adopted and marked as acted upon,
        // so a late duplicate of this offer can never be accepted after a refusal.
        c.adopt_epoch(epoch);
        self.acted_at = Some(epoch);
        if let Some((outcome, reason)) = Self::offer_refusal(c, final_state.as_ref(), now) {
            self.last_offer = Some(OfferSeen {
                from: from.clone(),
                epoch,
                accepted: false,
            });
            if outcome == HandoverOutcome::Refused {
                // The old holder may now resume under `epoch`: this node is its standby.
                c.holder_may_start(now);
                c.grab_right(epoch);
            }
            let why = format!(
                "refused the handover from {from} (epoch {epoch}): {reason}; {from} keeps \
                 the role"
            );
            self.reply(c, epoch, outcome, reason);
            c.record(now, RecordKind::Refusal, why);
            return;
        }
        self.last_offer = Some(OfferSeen {
            from: from.clone(),
            epoch,
            accepted: true,
        });
        let words = match &final_state {
            Some(fs) => format!(
                "its final state is {}, so fencing at height {} round 0 step 0 (the rest of its \
                 last height stays its own)",
                fs.hrs,
                FenceState::after_handover(fs.hrs).height
            ),
            None => format!(
                "its final state could not be read, so fencing at height {} as after an \
                 unplanned failover",
                height_i64(c.local.latest_height.unwrap_or(0)).saturating_add(2)
            ),
        };
        let story = format!(
            "promoting to active at epoch {epoch}: {from} handed the role over after stopping \
             its validator; {words}"
        );
        self.reply(
            c,
            epoch,
            HandoverOutcome::Accepted,
            "accepted; starting".into(),
        );
        let evidence = Evidence::handed_over(from, final_state, c.local.latest_height);
        c.promote(epoch, evidence, story, now);
    }

    /// A retried or duplicated offer: repeat the answer, never act twice.
    fn repeat_answer(&self, c: &mut Common, epoch: u64, accepted: bool) {
        let outcome = match (&c.phase, accepted) {
            (Phase::Active { epoch: e, .. }, true) if *e == epoch => HandoverOutcome::Started,
            (Phase::Promoting { epoch: e, .. }, true) if *e == epoch => HandoverOutcome::Accepted,
            (_, true) => return, // failed and stopping: the refusal follows when confirmed
            (_, false) => HandoverOutcome::Refused,
        };
        let reason = "repeated answer to a repeated offer".to_string();
        self.reply(c, epoch, outcome, reason);
    }

    fn on_handover_reply(
        &mut self,
        c: &mut Common,
        epoch: u64,
        outcome: HandoverOutcome,
        reason: &str,
        now: Duration,
    ) {
        let Phase::HandingOver {
            to,
            epoch: offered,
            deadline,
            ..
        } = &c.phase
        else {
            c.adopt_epoch(epoch);
            return;
        };
        let (to, offered, deadline) = (to.clone(), *offered, *deadline);
        // A refusal names the epoch to resume under: the offered one when the target never
        // tried, the next one when it tried, failed and confirmed its stop.
        let refused_resume =
            outcome == HandoverOutcome::Refused && (epoch == offered || epoch == offered + 1);
        if epoch > offered && !refused_resume {
            c.adopt_epoch(epoch);
            c.enter_passive(now);
            let why = format!(
                "handover to {to}: it knows a newer epoch ({epoch}); not resuming, staying \
                 passive ({reason})"
            );
            c.record(now, RecordKind::RoleChange, why);
            return;
        }
        if epoch < offered {
            return;
        }
        match outcome {
            HandoverOutcome::Accepted => {
                c.phase = Phase::HandingOver {
                    to: to.clone(),
                    epoch,
                    deadline,
                    accepted: true,
                };
                let why = format!("handover: {to} accepted epoch {epoch} and is starting");
                c.record(now, RecordKind::Info, why);
            }
            HandoverOutcome::Started => {
                c.enter_passive(now);
                c.grab_right(epoch);
                let why = format!("handover complete: {to} is active at epoch {epoch}");
                c.record(now, RecordKind::RoleChange, why);
                // "Started" is sent once the target's activation is verified.
                let who = format!("{to} answered that it is active at epoch {epoch}");
                c.holder_verified(epoch, &who, now);
            }
            HandoverOutcome::Refused => {
                c.handover_backoff_until =
                    Some(now + c.params.timing.handover_timeout.saturating_mul(2));
                let story = format!(
                    "{to} refused the handover ({reason}) and provably never started, so this \
                     node takes its role back, at epoch {epoch}"
                );
                let own = self.offered_state.take();
                c.promote(epoch, Evidence::resumed(own), story, now);
            }
            HandoverOutcome::Ignored => {
                c.enter_passive(now);
                let why = format!(
                    "handover: {to} did not act on the offer and cannot prove it is not \
                     signing ({reason}); staying passive — the normal rules decide from here"
                );
                let tag = (RecordTag::SwitchoverAborted, "target_ignored");
                c.record_as(now, RecordKind::RoleChange, tag, why, Vec::new());
            }
        }
    }

    fn on_role_request(&mut self, c: &mut Common, epoch: u64, kind: RequestKind, now: Duration) {
        match kind {
            RequestKind::Claim => self.on_claim(c, epoch, now),
            RequestKind::Fallback | RequestKind::Switchover => self.on_request(c, epoch, kind, now),
        }
    }

    /// Why a claim for `epoch` is declined, if it is (`duplicate`: the same claim granted
    /// already, nothing happened since).
    fn claim_denial(c: &Common, epoch: u64, duplicate: bool) -> Option<String> {
        if duplicate {
            return None;
        }
        if epoch <= c.epoch {
            return Some(format!(
                "epoch {epoch} is not newer than this node's epoch {}",
                c.epoch
            ));
        }
        match c.phase {
            Phase::Passive {
                pending: Pending::Claim { .. },
            } if c.params.outranks_peer() => Some(
                "this node is asking for the role itself and is preferred (primary site / \
                 lower id)"
                    .to_string(),
            ),
            Phase::Passive { .. } | Phase::Fenced { .. } => None,
            _ => Some(format!("this node is {}", c.phase.role())),
        }
    }

    fn on_claim(&mut self, c: &mut Common, epoch: u64, now: Duration) {
        let from = self.peer_name(c);
        // A repeated claim gets the same grant, but only while nothing has happened since
        // (same epoch, still passive or fenced).
        let duplicate = self.last_grant.as_ref() == Some(&(from.clone(), epoch))
            && epoch == c.epoch
            && matches!(c.phase, Phase::Passive { .. } | Phase::Fenced { .. });
        if let Some(reason) = Self::claim_denial(c, epoch, duplicate) {
            let why = format!("declined {from}'s claim for epoch {epoch}: {reason}");
            // A denial carries this node's own epoch, so the claimer learns it when it is
            // newer and never adopts an epoch nobody holds.
            let granted = false;
            self.send(c, c.epoch, MessageBody::RoleReply { granted, reason });
            c.record(now, RecordKind::Refusal, why);
            return;
        }
        if let Phase::Passive { pending } = &mut c.phase {
            *pending = Pending::None;
        }
        c.adopt_epoch(epoch);
        self.acted_at = self.acted_at.max(Some(epoch));
        self.last_grant = Some((from.clone(), epoch));
        // The claimer may start under `epoch`: this node is its standby.
        c.holder_may_start(now);
        c.grab_right(epoch);
        let reply = MessageBody::RoleReply {
            granted: true,
            reason: "granted: this node stays passive".into(),
        };
        self.send(c, epoch, reply);
        if !duplicate {
            let why = format!(
                "granted {from}'s claim for epoch {epoch}: {from} takes the role, this node \
                 stays passive"
            );
            c.record(now, RecordKind::Info, why);
        }
    }

    fn on_request(&mut self, c: &mut Common, epoch: u64, kind: RequestKind, now: Duration) {
        let from = self.peer_name(c);
        c.adopt_epoch(epoch);
        let deny = match c.phase {
            Phase::Active { epoch: e, .. } if e == c.epoch => {
                if epoch < c.epoch {
                    Some(format!(
                        "the request carries epoch {epoch}, older than this node's {}",
                        c.epoch
                    ))
                } else if c.paused {
                    Some("automation is paused on this node".to_string())
                } else if kind == RequestKind::Fallback && !c.params.peer_sole_primary() {
                    Some(format!(
                        "{from} is not the primary site in my configuration"
                    ))
                } else {
                    self.peer_ready(c, now).err()
                }
            }
            _ => Some(format!("this node is {}, not active", c.phase.role())),
        };
        if let Some(reason) = deny {
            let why = format!("declined {from}'s {} request: {reason}", kind.name());
            let granted = false;
            self.send(c, c.epoch, MessageBody::RoleReply { granted, reason });
            c.record(now, RecordKind::Refusal, why);
            return;
        }
        let why = match kind {
            RequestKind::Fallback => format!(
                "{from}, the primary site, has been healthy for the grace period and asks for \
                 its role back"
            ),
            _ => format!("an operator asked on {from} for a switchover to it"),
        };
        crate::operator::start_handover(c, from, why, now);
    }

    fn on_role_reply(
        &mut self,
        c: &mut Common,
        epoch: u64,
        granted: bool,
        reason: &str,
        now: Duration,
    ) {
        let from = self.peer_name(c);
        let pending = match &c.phase {
            Phase::Passive { pending } => pending.clone(),
            _ => Pending::None,
        };
        match pending {
            Pending::Claim { epoch: asked, .. } if asked == epoch && granted => {
                c.phase = Phase::passive();
                let clean = self.claim_witness.take();
                let fit = match (self.claim_still_ok(c, now, epoch), clean) {
                    (Ok(fit), Some(clean)) => (fit, clean),
                    (Err(why), _) => {
                        let why = format!(
                            "{from} granted my claim for epoch {epoch}, but I no longer take \
                             it: {why}"
                        );
                        c.record(now, RecordKind::Refusal, why);
                        return;
                    }
                    (Ok(_), None) => {
                        let why = format!(
                            "{from} granted my claim for epoch {epoch}, but I no longer take \
                             it: the chain witness it was made on is gone"
                        );
                        c.record(now, RecordKind::Refusal, why);
                        return;
                    }
                };
                let (fit, clean) = fit;
                let story = format!(
                    "promoting to active at epoch {epoch}: both nodes were passive and {from} \
                     granted my claim (it stays passive); the chain showed no signature from \
                     the validator; fence at height {} round 0 step 0",
                    height_i64(fit.height()).saturating_add(2)
                );
                c.promote(epoch, Evidence::granted(fit, clean), story, now);
            }
            Pending::Claim { .. } | Pending::Request { .. } if !granted => {
                c.phase = Phase::passive();
                c.adopt_epoch(epoch);
                let why = format!("{from} declined my request: {reason}");
                c.record(now, RecordKind::Refusal, why);
            }
            _ => {
                if !granted {
                    c.adopt_epoch(epoch);
                }
            }
        }
    }

    /// A granted claim is taken only if nothing changed since it was made.
    fn claim_still_ok(&self, c: &Common, now: Duration, epoch: u64) -> Result<OwnFit, String> {
        if c.paused {
            return Err("automation is paused".into());
        }
        if c.epoch > epoch {
            return Err(format!("epoch {} exists meanwhile", c.epoch));
        }
        if let Some(st) = self.fresh_peer(c, now) {
            if st.role.may_sign() {
                return Err(format!("{} is {} now", st.node_id, st.role));
            }
        }
        c.local
            .fit(c.local_fresh(now), None)
            .map_err(|hold| hold.why(now))
    }
}
