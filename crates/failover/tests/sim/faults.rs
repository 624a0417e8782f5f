//! The faults ([`Fault`]) as they strike the world, a host's restart, and the quiet: at
//! `quiet_at_ms` every fault heals (the link and etcd reachable, the chain and every node's
//! view moving, health back, nobody muted or paused, every host that may come back up).

use syncguard_failover::{Event, OperatorCommand};

use super::{Backend, Ev, Fault, World, FOREVER};

impl World {
    /// Strikes `f` now (scripted worlds; ignored after the quiet, like every fault).
    pub fn inject(&mut self, f: Fault) {
        self.fault(f);
    }

    pub(super) fn fault(&mut self, f: Fault) {
        if self.quiet {
            return;
        }
        self.log(format!("FAULT {f:?}"));
        let now = self.now;
        let until = |ms: u64| now.saturating_add(ms);
        match f {
            Fault::Crash { node, down_ms } => self.crash(node, down_ms),
            Fault::Cut { node, ms } => match self.cfg.backend {
                Backend::Pair => self.link_cut_until = self.link_cut_until.max(until(ms)),
                Backend::Lease { .. } => {
                    let n = &mut self.nodes[node];
                    n.etcd_cut_until = n.etcd_cut_until.max(until(ms));
                }
            },
            Fault::Stall { node, ms } => {
                let n = &mut self.nodes[node];
                n.stalled_until = n.stalled_until.max(until(ms));
                self.at(until(ms), Ev::StallEnd(node));
            }
            Fault::Halt { ms } => self.halted_until = self.halted_until.max(until(ms)),
            Fault::Sick { node, ms } => {
                let n = &mut self.nodes[node];
                n.sick_until = n.sick_until.max(until(ms));
            }
            Fault::Mute { node, ms } => {
                let n = &mut self.nodes[node];
                n.muted_until = n.muted_until.max(until(ms));
            }
            Fault::Switchover { at, to } => {
                let inc = self.nodes[at].inc;
                let to = self.nodes[to].id.clone();
                self.deliver(at, inc, Event::Operator(OperatorCommand::Switchover { to }));
            }
            Fault::Pause { node, ms } => {
                let inc = self.nodes[node].inc;
                self.deliver(node, inc, Event::Operator(OperatorCommand::Pause));
                self.at(until(ms), Ev::Resume(node));
            }
            Fault::StoryCrash { node, ms } => {
                if !self.nodes[node].up {
                    return;
                }
                let n = &mut self.nodes[node];
                n.story_down_until = n.story_down_until.max(until(ms));
                self.at(until(ms), Ev::StallEnd(node));
            }
            Fault::DaemonRestart { node } => {
                if !self.nodes[node].up {
                    return;
                }
                // `story` keeps running as it was; the lease is no longer renewed.
                self.take_held(node);
                let n = &mut self.nodes[node];
                n.machine = None;
                n.act_queue.clear();
                n.act_busy = false;
                self.boot(node);
            }
        }
    }

    /// The whole host dies (story and daemon with it) for `down_ms` (`FOREVER`: for good).
    fn crash(&mut self, node: usize, down_ms: u64) {
        if !self.nodes[node].up {
            return;
        }
        let in_flight = self.rng.chance(0.5);
        let halted = self.now < self.halted_until;
        let stalled = self.stalled(node);
        let h = self.height + 1;
        let n = &self.nodes[node];
        if n.signing(self.now)
            && in_flight
            && !halted
            && !stalled
            && h >= n.sign_from
            && h > n.last_signed
        {
            // It voted for the next height before dying; the commit may never show it.
            self.nodes[node].last_signed = h;
            self.sign(h, node);
        }
        self.take_held(node);
        let n = &mut self.nodes[node];
        n.up = false;
        n.key_live = false;
        n.machine = None;
        n.act_queue.clear();
        n.act_busy = false;
        n.wake_at = None;
        n.inc += 1;
        if down_ms >= FOREVER {
            n.gone = true;
        } else {
            self.at(self.now + down_ms, Ev::Restart(node));
        }
    }

    pub(super) fn restart(&mut self, n: usize) {
        if self.nodes[n].up || self.nodes[n].gone {
            return;
        }
        self.log(format!("host {n} restarts"));
        let node = &mut self.nodes[n];
        node.up = true;
        node.catching_up_until = self.now + 2_000;
        node.bad_rounds = 0;
        node.good_rounds = 0;
        node.verdict = false;
        self.boot(n);
    }

    /// Node `node` reaches etcd (or, in a pair, the link works) again now.
    pub fn reconnect(&mut self, node: usize) {
        let now = self.now;
        self.nodes[node].etcd_cut_until = self.nodes[node].etcd_cut_until.min(now);
        self.link_cut_until = self.link_cut_until.min(now);
    }

    /// Node `node`'s health checks pass again from now on.
    pub fn recover(&mut self, node: usize) {
        let now = self.now;
        self.nodes[node].sick_until = self.nodes[node].sick_until.min(now);
    }

    /// Every fault heals now; faults scheduled later are ignored.
    pub fn quiet_now(&mut self) {
        self.quiet = true;
        self.log("quiet: every fault heals".into());
        let now = self.now;
        self.link_cut_until = self.link_cut_until.min(now);
        self.halted_until = self.halted_until.min(now);
        for n in 0..self.nodes.len() {
            let node = &mut self.nodes[n];
            node.stalled_until = node.stalled_until.min(now);
            node.sick_until = node.sick_until.min(now);
            node.muted_until = node.muted_until.min(now);
            node.etcd_cut_until = node.etcd_cut_until.min(now);
            self.sync_view(n);
            let node = &self.nodes[n];
            if !node.up {
                self.at(now + 1, Ev::Restart(n));
            } else if node.machine.as_ref().is_some_and(|m| m.is_paused()) {
                self.at(now + 1, Ev::Resume(n));
            }
        }
    }
}
