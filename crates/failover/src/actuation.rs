//! The actuator's answers: an activation finished (verified, or failed and rolled back), a
//! deactivation finished (the stop confirmed, or not). What each means depends on why it was
//! ordered; what the arbiter adds (answering the old holder, giving the lock up) goes
//! through its hooks.

use std::time::Duration;

use crate::arbiter::Arbiter;
use crate::core::Core;
use crate::event::ActuatorResult;
use crate::gate::promotion_tags;
use crate::phase::{DemoteCause, Phase};
use crate::record::{RecordKind, RecordTag};
use crate::types::HandedState;

impl<A: Arbiter + serde::Serialize> Core<A> {
    pub(crate) fn on_actuator(&mut self, r: ActuatorResult, now: Duration) {
        match r {
            ActuatorResult::Activated {
                epoch,
                result,
                signed_at,
            } => self.on_activated(epoch, result, signed_at, now),
            ActuatorResult::Deactivated { result } => self.on_deactivated(result, now),
        }
    }

    fn on_activated(
        &mut self,
        epoch: u64,
        result: Result<(), String>,
        signed_at: Option<u64>,
        now: Duration,
    ) {
        let Phase::Promoting {
            epoch: e,
            abort,
            reply_to,
            cause,
            label,
        } = &self.c.phase
        else {
            self.unexpected_activation(epoch, result.is_ok(), now);
            return;
        };
        if *e != epoch {
            return;
        }
        let (abort, reply_to, label) = (abort.clone(), reply_to.clone(), *label);
        let (done, aborted) = promotion_tags(cause);
        let c = &mut self.c;
        match (result, abort) {
            (Ok(()), Some(why)) => {
                c.phase = Phase::Demoting {
                    cause: DemoteCause::Superseded,
                    retry_at: None,
                };
                let why = format!("activation finished, but {why}: stopping at once");
                let tag = (aborted, "superseded_while_starting");
                c.record_as(now, RecordKind::RoleChange, tag, why.clone(), Vec::new());
                c.deactivate(why);
            }
            (Ok(()), None) => {
                let tag = (done, label);
                self.activation_verified(epoch, signed_at, tag, reply_to.is_some(), now);
            }
            (Err(reason), _) => {
                c.phase = Phase::Demoting {
                    cause: DemoteCause::ActivationFailed {
                        reply_to: reply_to.map(|n| (n, epoch)),
                    },
                    retry_at: None,
                };
                let why = format!(
                    "ACTIVATION FAILED at epoch {epoch}: {reason}. The key may or may not have \
                     gone live, so this node stops the validator again and stays passive"
                );
                let tag = (aborted, "activation_failed");
                c.record_as(now, RecordKind::Alert, tag, why.clone(), Vec::new());
                c.deactivate(why);
                self.a.after_activation(&mut self.c, epoch, false, now);
            }
        }
    }

    /// An activation report for no promotion under way: a duplicate of the one that made this
    /// node active is nothing; a key gone live although this machine did not ask for it (now)
    /// is stopped at once.
    fn unexpected_activation(&mut self, epoch: u64, ok: bool, now: Duration) {
        let c = &mut self.c;
        if matches!(c.phase, Phase::Active { epoch: e, .. } if e == epoch) && ok {
            return;
        }
        if ok && !matches!(c.phase, Phase::Demoting { .. }) {
            let why = format!(
                "the actuator reports an activation at epoch {epoch} this node is not \
                 performing — stopping the validator here to be safe"
            );
            c.phase = Phase::Demoting {
                cause: DemoteCause::Superseded,
                retry_at: None,
            };
            let tag = (RecordTag::DoubleSignPrevented, "unexpected_activation");
            c.record_as(now, RecordKind::Alert, tag, why.clone(), Vec::new());
            c.deactivate(why);
        }
    }

    /// Verified by the actuator: its signature is in a commit at `signed_at`. Active.
    fn activation_verified(
        &mut self,
        epoch: u64,
        signed_at: Option<u64>,
        tag: (RecordTag, &'static str),
        answer: bool,
        now: Duration,
    ) {
        let c = &mut self.c;
        let signed_floor = signed_at.or(c.chain.last_signed).unwrap_or(c.chain.latest);
        c.chain.last_signed = c.chain.last_signed.max(Some(signed_floor));
        c.phase = Phase::Active {
            epoch,
            since: now,
            signed_floor,
        };
        c.last_hold = None;
        c.last_alert = None;
        self.a.after_activation(c, epoch, true, now);
        let why = format!(
            "active at epoch {epoch}: the validator key is live on this node and its signature \
             is on chain{}",
            signed_at
                .map(|h| format!(" (height {h})"))
                .unwrap_or_default()
        );
        // The first height it signed: where the role moved, on the signing strip.
        let heights = signed_at.into_iter().collect();
        self.c
            .record_as(now, RecordKind::RoleChange, tag, why, heights);
        if answer {
            self.a.answer_started(&mut self.c, epoch, now);
        }
    }

    fn on_deactivated(&mut self, result: Result<Option<HandedState>, String>, now: Duration) {
        let c = &mut self.c;
        let Phase::Demoting { cause, .. } = &c.phase else {
            return;
        };
        let cause = cause.clone();
        let final_state = match result {
            Ok(fs) => fs,
            Err(reason) => {
                c.phase = Phase::Demoting {
                    cause,
                    retry_at: Some(now + c.round()),
                };
                let why = format!(
                    "COULD NOT STOP THE VALIDATOR on this node: {reason}. The key may still be \
                     live; retrying every round, and no other node promotes on it until the \
                     stop is confirmed"
                );
                c.alert_once(now, format!("stop_failed:{why}"), why);
                return;
            }
        };
        c.last_alert = None;
        c.fence.see(final_state.as_ref().map(|f| f.hrs));
        let final_words = final_state.as_ref().map_or_else(
            || "final state unknown".to_string(),
            |f| format!("final state {}", f.hrs),
        );
        match cause {
            DemoteCause::Boot => {
                c.enter_passive(now);
                let why =
                    format!("passive: the validator key is not live on this node ({final_words})");
                c.record(now, RecordKind::RoleChange, why);
                self.a.after_fenced(&mut self.c, now);
            }
            DemoteCause::Handover { to, epoch } => {
                self.a.hand_over(&mut self.c, to, epoch, final_state, now);
            }
            DemoteCause::Superseded | DemoteCause::NotPersisted => {
                c.enter_passive(now);
                let why = format!("passive: stopped signing on this node ({final_words})");
                let tag = (RecordTag::Demoted, "superseded");
                c.record_as(now, RecordKind::RoleChange, tag, why, Vec::new());
                self.a.after_fenced(&mut self.c, now);
            }
            DemoteCause::SelfFence => {
                c.phase = Phase::Fenced { since: now };
                let why = format!(
                    "fenced: stopped signing on this node ({final_words}); it stays stopped \
                     until {} (or an operator unfences it)",
                    self.a.unfence_words(c)
                );
                c.record(now, RecordKind::RoleChange, why);
                self.a.after_fenced(&mut self.c, now);
            }
            DemoteCause::ActivationFailed { reply_to } => {
                c.enter_passive(now);
                self.a.after_failed_activation(&mut self.c, reply_to, now);
                let why = format!(
                    "passive after the failed activation: the validator is confirmed stopped \
                     here ({final_words})"
                );
                self.c.record(now, RecordKind::RoleChange, why);
                self.a.after_fenced(&mut self.c, now);
            }
        }
    }
}
