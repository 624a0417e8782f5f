//! The operator's commands: pause and resume (maintenance: no automatic transition; safety
//! stops still act), a planned switchover (every check before anything stops), the last
//! resorts `takeover` and `unfence`. How the role is asked for or handed over is the
//! arbiter's; what is checked is the same for every backend.

use std::time::Duration;

use crate::arbiter::Arbiter;
use crate::common::Common;
use crate::core::Core;
use crate::event::OperatorCommand;
use crate::hold::words_duration;
use crate::message::RequestKind;
use crate::phase::{DemoteCause, Pending, Phase};
use crate::record::{RecordKind, RecordTag};
use crate::types::NodeId;

impl<A: Arbiter + serde::Serialize> Core<A> {
    pub(crate) fn on_operator(&mut self, cmd: OperatorCommand, now: Duration) {
        if matches!(self.c.phase, Phase::Booting) {
            self.c.record(
                now,
                RecordKind::Refusal,
                "operator command ignored: the machine has not started".into(),
            );
            return;
        }
        match cmd {
            OperatorCommand::Pause => self.pause(true, now),
            OperatorCommand::Resume => self.pause(false, now),
            OperatorCommand::Switchover { to } => self.switchover(to, now),
            OperatorCommand::Unfence => self.unfence(now),
            OperatorCommand::Takeover => self.takeover(now),
        }
    }

    fn pause(&mut self, paused: bool, now: Duration) {
        self.c.paused = paused;
        let why = if paused {
            format!(
                "paused by the operator while {}: no automatic transition until `syncguard \
                 resume` (safety stops — self-fencing, standing down for a newer epoch — \
                 still act)",
                self.c.phase.role()
            )
        } else {
            self.c.last_hold = None;
            format!(
                "resumed by the operator: automatic operation as {}",
                self.c.phase.role()
            )
        };
        self.c.record(now, RecordKind::Info, why);
        self.a.on_pause(&mut self.c, paused, now);
    }

    /// The holder as this node knows it, for the records.
    fn holder_name(&self, now: Duration) -> String {
        self.a
            .holder_seen(&self.c, now)
            .map_or_else(|| "the holder".to_string(), |(id, _)| id.to_string())
    }

    fn switchover(&mut self, to: NodeId, now: Duration) {
        // Every check runs before anything stops: a refused switchover leaves the active
        // signing, untouched.
        if let Err(why) = self.switchover_check(&to, now) {
            self.c.record(now, RecordKind::Refusal, why);
        } else if to == self.c.params.node_id {
            let holder = self.holder_name(now);
            self.c.phase = Phase::Passive {
                pending: Pending::Request {
                    kind: RequestKind::Switchover,
                    deadline: now + self.c.params.timing.handover_timeout,
                },
            };
            if self
                .a
                .ask_for_role(&mut self.c, RequestKind::Switchover, now)
            {
                let why = format!("switchover: asked {holder} to hand the role to this node");
                self.c.record(now, RecordKind::Info, why);
            }
        } else if matches!(self.c.phase, Phase::Active { .. }) {
            let why = "an operator asked for a switchover".into();
            start_handover(&mut self.c, to, why, now);
        } else {
            // Neither the holder nor the target: passed on to the holder.
            let holder = self.holder_name(now);
            self.a.relay(&mut self.c, to.clone(), now);
            let why = format!("switchover: asked {holder} to hand the role to {to}");
            self.c.record(now, RecordKind::Info, why);
        }
    }

    fn unfence(&mut self, now: Duration) {
        if matches!(self.c.phase, Phase::Fenced { .. }) {
            self.c.enter_passive(now);
            self.c.record(
                now,
                RecordKind::RoleChange,
                "unfenced by the operator: passive, the normal rules apply".into(),
            );
        } else {
            let why = format!("unfence ignored: this node is {}", self.c.phase.role());
            self.c.record(now, RecordKind::Refusal, why);
        }
    }

    fn takeover(&mut self, now: Duration) {
        if matches!(self.c.phase, Phase::Passive { .. }) {
            let until = now + self.c.window() + self.c.round();
            self.c.takeover = Some((now, until));
            self.c.last_hold = None;
            let why = format!(
                "takeover requested by the operator: this node takes the role if its own node \
                 is healthy and the chain shows no signature from the validator (valid for {})",
                words_duration(until - now)
            );
            self.c.record(now, RecordKind::Info, why);
        } else {
            let why = format!("takeover refused: this node is {}", self.c.phase.role());
            self.c.record(now, RecordKind::Refusal, why);
        }
    }

    /// Whether an operator's switchover to `to` may start now, checked before anything
    /// stops: `Err` is the refusal, in words. Run on the active (`to` another node) or on
    /// the target (`to` = this node); the active checks the target again when asked.
    /// The target must be passive, healthy, not paused and caught up with the active's
    /// chain height: a switchover is planned, so there is never a reason to hand the role
    /// to a node that could not sign at once.
    pub fn switchover_check(&self, to: &NodeId, now: Duration) -> Result<(), String> {
        let c = &self.c;
        if c.paused {
            return Err(
                "switchover refused: automation is paused on this node (`syncguard resume` \
                 first)"
                    .into(),
            );
        }
        if *to != c.params.node_id {
            self.a
                .knows(c, to)
                .map_err(|why| format!("switchover refused: {why}"))?;
            if !matches!(c.phase, Phase::Active { .. }) {
                return match self.a.relay_check(c, to, now) {
                    Some(Ok(())) => Ok(()),
                    Some(Err(why)) => Err(format!("switchover to {to} refused: {why}")),
                    None => Err(format!(
                        "switchover to {to} refused: this node is {}, not active — run it on \
                         the active node",
                        c.phase.role()
                    )),
                };
            }
            return self
                .a
                .target_ready(c, to, now)
                .map_err(|why| format!("switchover to {to} refused: {why}"));
        }
        if matches!(c.phase, Phase::Active { .. }) {
            return Err("switchover refused: this node is already active".into());
        }
        let holder = self.a.holder_seen(c, now);
        let Some((holder, theirs)) = holder.filter(|_| matches!(c.phase, Phase::Passive { .. }))
        else {
            return Err(format!(
                "switchover to this node refused: {} is not reachable and active, and this \
                 node is {} — there is no holder to hand over (use `syncguard takeover` if it is \
                 down for good)",
                self.a.holder_words(c),
                c.phase.role()
            ));
        };
        if !c.local_fresh(now) || !c.local.healthy || c.local.stalled {
            return Err(format!(
                "switchover to this node refused: my own node is not healthy{}",
                c.local.unhealthy_words()
            ));
        }
        match (c.local.latest_height, theirs) {
            (None, _) => {
                Err("switchover to this node refused: my node reports no chain height".into())
            }
            (Some(mine), Some(theirs)) if mine.saturating_add(c.catch_up_tolerance()) < theirs => {
                Err(format!(
                    "switchover to this node refused: my node is behind (height {mine}, {holder} \
                     {theirs})"
                ))
            }
            _ => Ok(()),
        }
    }
}

/// A planned handover from this active node to `to`: step 1, stop signing here. The role
/// goes to `to` only once the stop is confirmed (the arbiter's `hand_over`).
pub(crate) fn start_handover(c: &mut Common, to: NodeId, why: String, now: Duration) {
    let Phase::Active { .. } = c.phase else {
        return;
    };
    let epoch = c.epoch + 1;
    c.phase = Phase::Demoting {
        cause: DemoteCause::Handover {
            to: to.clone(),
            epoch,
        },
        retry_at: None,
    };
    let why = format!(
        "handing the role over to {to}: {why}. Step 1: stopping the validator here (the role \
         goes to {to} at epoch {epoch} only after the stop is confirmed)"
    );
    let tag = (RecordTag::Demoted, "handover");
    c.record_as(now, RecordKind::RoleChange, tag, why.clone(), Vec::new());
    c.deactivate(why);
}
