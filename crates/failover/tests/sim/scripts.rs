//! Scripted situations several tests share, built from the faults of the world.

use syncguard_failover::Role;

use super::{Fault, SimConfig, World, FOREVER};

impl World {
    /// Steps until node `n` holds `role` (true), or `within` ms passed (false).
    pub fn run_until_role(&mut self, n: usize, role: Role, within: u64) -> bool {
        let end = self.now + within;
        while self.now < end {
            if self.nodes[n].machine.as_ref().map(|m| m.held_role()) == Some(role) {
                return true;
            }
            let next = self.now + 1;
            self.run_until(next);
        }
        false
    }

    /// A lease world where a holder loses its lease unseen, its activation still running:
    /// the role is switched over to `n2`, which is then cut from etcd for good, and so is
    /// `n0`, the first in the promotion order; `n1` acquires while its votes never reach
    /// the chain, and is cut from etcd right away — its lease ends during an activation that
    /// reports only at the verify deadline. `n0` comes back `back_after` ms after `n1`'s
    /// acquisition, never having seen `n1` hold the lock. `None` when the world took another
    /// turn before that.
    pub fn unseen_holder(cfg: SimConfig, back_after: u64) -> Option<World> {
        let (a, b, c) = (2, 1, 0);
        let mut w = World::new(cfg);
        w.run_until(15_000);
        w.inject(Fault::Switchover { at: 0, to: a });
        if !w.run_until_role(a, Role::Active, 15_000) {
            return None;
        }
        w.inject(Fault::Cut {
            node: a,
            ms: FOREVER,
        });
        w.inject(Fault::Cut {
            node: c,
            ms: FOREVER,
        });
        w.inject(Fault::Mute {
            node: b,
            ms: 30_000,
        });
        if !w.run_until_role(b, Role::Promoting, 20_000) {
            return None;
        }
        w.inject(Fault::Cut {
            node: b,
            ms: 30_000,
        });
        let back = w.now + back_after;
        w.run_until(back);
        w.reconnect(c);
        let end = w.now + 20_000;
        w.run_until(end);
        Some(w)
    }
}
