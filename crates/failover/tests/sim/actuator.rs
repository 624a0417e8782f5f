//! The actuator of each node, one operation at a time: an activation waits for CometBFT's
//! double-sign-check height, stops the full node, writes `max(local, replica, fence)`,
//! installs the key and starts `story` (which may fail, or start signing late), then is
//! verified by its signature in a commit — or rolled back; a deactivation is confirmed
//! within the longest stop (or fails, only on a node that is not cut off).

use syncguard_failover::{Action, ActuatorResult, Event, HandedState};
use syncguard_validator::{Hrs, Step};

use super::chain::hrs_done;
use super::{Ev, World};

/// Where an actuator operation stands.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Stage {
    /// Activation: waiting for the height CometBFT's double-sign check needs.
    WaitHeight { until: u64, deadline: u64 },
    /// Activation: stopping the full node, then write, install, start.
    StopFullNode,
    /// Activation: story started at `started`; it signs from `signs_at` (never when it
    /// failed to start); verified once its signature is in a commit.
    Verifying { started: u64, signs_at: Option<u64> },
    /// Activation failed: stopping story again (roll-back), then report.
    RollingBack { reason: String },
    /// Deactivation: the stop (or its failure) happens at `stop_at`.
    Stopping { stop_at: u64, fail: bool },
}

#[derive(Debug)]
pub(super) struct ActOp {
    pub(super) id: u64,
    pub(super) action: Action,
    stage: Stage,
}

/// The first height a node may sign with state `h` on disk.
fn first_signable(h: Hrs) -> u64 {
    let base = u64::try_from(h.height).unwrap_or(0);
    if h.step == Step::None && h.round == 0 {
        base
    } else {
        base + 1
    }
}

fn activated(epoch: u64, result: Result<(), String>, signed_at: Option<u64>) -> Event {
    Event::Actuator(ActuatorResult::Activated {
        epoch,
        result,
        signed_at,
    })
}

impl World {
    pub(super) fn enqueue_act(&mut self, n: usize, action: Action) {
        let id = self.nodes[n].next_op;
        self.nodes[n].next_op += 1;
        let stage = match &action {
            Action::Activate {
                start_after_height: Some(h),
                ..
            } => Stage::WaitHeight {
                until: *h,
                deadline: self.now + self.timing.dsc_wait.as_millis() as u64,
            },
            Action::Activate { .. } => Stage::StopFullNode,
            _ => Stage::Stopping {
                stop_at: 0,
                fail: false,
            },
        };
        let op = ActOp { id, action, stage };
        self.nodes[n].act_queue.push_back(op);
        self.next_act(n);
    }

    fn max_stop_ms(&self) -> u64 {
        self.cfg.max_stop_ms.max(100)
    }

    /// Starts the front operation if the actuator is idle.
    fn next_act(&mut self, n: usize) {
        if self.nodes[n].act_busy {
            return;
        }
        let Some(op) = self.nodes[n].act_queue.front() else {
            return;
        };
        let id = op.id;
        let is_stop = matches!(op.stage, Stage::Stopping { .. });
        self.nodes[n].act_busy = true;
        let inc = self.nodes[n].inc;
        let mut at = self.now + 1;
        if is_stop {
            // The stop is confirmed somewhere within the longest stop; it fails outright only
            // when the node is not cut off (the S4 assumption: a stop with its kill step
            // succeeds).
            at = self.now + self.rng.range(100, self.max_stop_ms());
            let fail = !self.quiet
                && !self.stalled(n)
                && !self.muted(n)
                && self.rng.chance(self.cfg.deact_fail);
            self.set_stage(n, Stage::Stopping { stop_at: at, fail });
        }
        self.at(
            at,
            Ev::Act {
                node: n,
                inc,
                op: id,
            },
        );
    }

    fn set_stage(&mut self, n: usize, s: Stage) {
        if let Some(f) = self.nodes[n].act_queue.front_mut() {
            f.stage = s;
        }
    }

    fn finish_act(&mut self, n: usize, inc: u64, ev: Event) {
        self.nodes[n].act_queue.pop_front();
        self.nodes[n].act_busy = false;
        self.deliver(n, inc, ev);
        self.next_act(n);
    }

    fn stop_story(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.story_down_until = node.story_down_until.min(self.now);
        if node.key_live {
            node.key_live = false;
            self.log(format!("node {n} story STOPS signing"));
        }
    }

    /// One step of node `n`'s current actuator operation `op`.
    pub(super) fn act(&mut self, n: usize, inc: u64, op: u64) {
        if !self.nodes[n].up || self.nodes[n].inc != inc {
            return;
        }
        let Some(front) = self.nodes[n].act_queue.front() else {
            return;
        };
        if front.id != op {
            return;
        }
        let stage = front.stage.clone();
        let (epoch, fence) = match &front.action {
            Action::Activate { epoch, fence, .. } => (*epoch, Some(*fence)),
            _ => (0, None),
        };
        let again = |w: &mut World, after: u64| w.at(w.now + after, Ev::Act { node: n, inc, op });
        match stage {
            Stage::WaitHeight { until, deadline } => {
                if self.nodes[n].view >= until {
                    self.set_stage(n, Stage::StopFullNode);
                    again(self, 1);
                } else if self.now >= deadline {
                    let ev = activated(epoch, Err(format!("height {until} not reached")), None);
                    self.finish_act(n, inc, ev);
                } else {
                    again(self, 100);
                }
            }
            Stage::StopFullNode => {
                let Some(fence) = fence else { return };
                self.start_story(n, fence);
                again(self, 100);
            }
            Stage::Verifying { started, signs_at } => {
                self.verify(n, inc, op, epoch, started, signs_at)
            }
            Stage::RollingBack { reason } => {
                self.stop_story(n);
                let why = format!("simulated activation failure: {reason}");
                self.finish_act(n, inc, activated(epoch, Err(why), None));
            }
            Stage::Stopping { fail, .. } => {
                let result = if fail {
                    Err("simulated stop failure".into())
                } else {
                    self.stop_story(n);
                    let last = self.nodes[n].last_signed;
                    Ok((last > 0).then(|| HandedState {
                        hrs: hrs_done(last),
                        raw: String::new(),
                    }))
                };
                let ev = Event::Actuator(ActuatorResult::Deactivated { result });
                self.finish_act(n, inc, ev);
            }
        }
    }

    /// Stops the full node, writes max(local, replica, fence), installs the key, starts
    /// `story` (which may fail).
    fn start_story(&mut self, n: usize, fence: Hrs) {
        let fail = !self.quiet && self.rng.chance(self.cfg.act_fail);
        let longest = self
            .cfg
            .max_start_delay_ms
            .clamp(100, self.cfg.profile.start_ms);
        let delay = self.rng.range(100, longest);
        // A failed start: story never comes up with the key (half the time it does come up
        // but its signatures cannot be verified: same end, a roll-back).
        let starts = !fail || self.rng.chance(0.5);
        let now = self.now;
        let node = &mut self.nodes[n];
        node.story_down_until = node.story_down_until.min(now);
        let from = first_signable(fence)
            .max(node.last_signed + 1)
            .max(node.replica + 1);
        node.sign_from = from;
        if starts {
            node.key_live = true;
            node.signing_from_time = now + delay;
        }
        let msg = format!(
            "node {n} story STARTS with the key{}, signing from {from} at t+{delay}",
            if starts { "" } else { " (fails)" }
        );
        self.log(msg);
        let signs_at = (starts && !fail).then_some(now + delay);
        self.set_stage(
            n,
            Stage::Verifying {
                started: now,
                signs_at,
            },
        );
    }

    /// Verified once the signature is in a commit; rolled back at the verify deadline.
    fn verify(
        &mut self,
        n: usize,
        inc: u64,
        op: u64,
        epoch: u64,
        started: u64,
        signs_at: Option<u64>,
    ) {
        let from = self.nodes[n].sign_from;
        let view = self.nodes[n].view;
        let seen = signs_at.filter(|_| from <= view).and_then(|_| {
            self.commits
                .range(from..=view)
                .find(|(_, who)| who.contains(&n))
                .map(|(h, _)| *h)
        });
        let deadline = started + self.timing.verify_deadline.as_millis() as u64;
        if let Some(h) = seen {
            self.finish_act(n, inc, activated(epoch, Ok(()), Some(h)));
        } else if self.now >= deadline {
            let reason = "not verified".to_string();
            self.set_stage(n, Stage::RollingBack { reason });
            let d = self.rng.range(100, self.max_stop_ms());
            self.at(self.now + d, Ev::Act { node: n, inc, op });
        } else {
            self.at(self.now + 100, Ev::Act { node: n, inc, op });
        }
    }
}
