//! The checks the world makes as it runs (each failure is a line in `World::violations`;
//! double signs are found by the ledger, `chain.rs`):
//!
//! - at every `Activate`: epochs strictly increase across the cluster; the fence is never
//!   below a state the machine was told of; a promotion that rests on the witness acted on a
//!   clean one; no other node's key may be live (live, or an activation queued); under a
//!   lease, the node holds the lock at that epoch;
//! - `Drive::Timers`: a wake-up between two timers changes nothing (the timers are
//!   complete: every time-driven decision has a timer armed for it).

use std::time::Duration;

use syncguard_failover::{Action, ActivationCause, WitnessReport};
use syncguard_validator::Hrs;

use super::{Backend, Drive, World};

impl World {
    /// Node `n` orders `a` (an `Activate`): every check of an activation.
    pub(super) fn check_activation(&mut self, n: usize, a: &Action) {
        let Action::Activate {
            epoch,
            cause,
            fence,
            ..
        } = a
        else {
            return;
        };
        let (epoch, fence) = (*epoch, *fence);
        self.promotions += 1;
        self.log(format!(
            "node {n} ACTIVATE epoch {epoch} {cause:?} fence {fence}"
        ));
        self.check_epoch(n, epoch);
        self.activations.push((self.now, n, epoch));
        self.check_fence(n, fence);
        self.check_witness(n, cause);
        self.check_alone(n, epoch);
        if let Backend::Lease { .. } = self.cfg.backend {
            self.check_lock(n, epoch);
        }
    }

    fn check_epoch(&mut self, n: usize, epoch: u64) {
        if let Some(&(t, who, e)) = self.activations.iter().max_by_key(|x| x.2) {
            if epoch <= e {
                let msg = format!(
                    "epoch not increasing: node {n} activates at {epoch} at t={}, node {who} \
                     activated at {e} at t={t}",
                    self.now
                );
                self.violations.push(msg);
            }
        }
    }

    fn check_fence(&mut self, n: usize, fence: Hrs) {
        if let Some(seen) = self.nodes[n].seen_max.filter(|s| fence < *s) {
            self.violations.push(format!(
                "node {n} fences at {fence}, below the state {seen} it has seen"
            ));
        }
    }

    /// The newest commits of the witness it acted on must be clean.
    fn check_witness(&mut self, n: usize, cause: &ActivationCause) {
        if !cause.needs_witness() {
            return;
        }
        let k = u64::from(self.timing.witness_blocks);
        let newest_clean = |w: &WitnessReport| {
            let lo = w.latest_height.saturating_sub(k - 1);
            (lo..=w.latest_height).all(|h| {
                w.checked.contains(&h) && !w.signed.contains(&h) && !w.unknown.contains(&h)
            })
        };
        match &self.nodes[n].last_witness {
            Some(w) if newest_clean(w) => {}
            other => self.violations.push(format!(
                "node {n} promoted ({cause:?}) without a clean witness: {other:?}"
            )),
        }
    }

    /// No other node's key may be live: S1 before any height is signed twice.
    fn check_alone(&mut self, n: usize, epoch: u64) {
        for j in (0..self.nodes.len()).filter(|&j| j != n) {
            if self.nodes[j].may_sign() {
                let msg = format!(
                    "node {n} activates epoch {epoch} at t={} while node {j}'s key may be live",
                    self.now
                );
                self.log(msg.clone());
                self.violations.push(msg);
            }
        }
    }

    /// Under a lease, an activation only while holding the lock at its epoch.
    fn check_lock(&mut self, n: usize, epoch: u64) {
        self.etcd.expire(self.now);
        let holder = self.etcd.holder().map(|h| (h.node_id.clone(), h.epoch));
        if holder != Some((self.nodes[n].id.clone(), epoch)) {
            self.violations.push(format!(
                "node {n} activates epoch {epoch} at t={} without holding the lock \
                 (holder {holder:?})",
                self.now
            ));
        }
    }

    /// `Drive::Timers`: a wake-up of node `n` now, between two of its timers, must change
    /// nothing — or a time-driven decision had no timer and would wait for the next input.
    pub(super) fn probe_timers(&mut self, n: usize) {
        if self.cfg.drive != Drive::Timers || !self.nodes[n].up {
            return;
        }
        let Some(m) = self.nodes[n].machine.as_ref() else {
            return;
        };
        let now = Duration::from_millis(self.now);
        if m.poll_timeout()
            .is_some_and(|t| t <= now + Duration::from_millis(1))
        {
            return; // a timer is due: its own wake handles it
        }
        self.probes += 1;
        let mut probe = m.clone();
        let role = probe.held_role();
        let acts: Vec<Action> = probe
            .handle_timeout(now)
            .into_iter()
            .filter(|a| !matches!(a, Action::Record(_)))
            .collect();
        if !acts.is_empty() || probe.held_role() != role {
            let msg = format!(
                "timers incomplete: node {n} woken at t={} with no timer due ordered {acts:?} \
                 (role {role:?} -> {:?}; timers {:?}): {}",
                self.now,
                probe.held_role(),
                m.timers(),
                probe.last_why()
            );
            self.log(msg.clone());
            self.timer_gaps.push(msg);
        }
    }
}
