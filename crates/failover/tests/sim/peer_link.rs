//! The pair's link between the two SyncGuards: protocol messages (lost, delayed,
//! duplicated; none while the link is cut), each round's look at the peer's status API, and
//! the replica the passive pulls from the active.

use syncguard_failover::{Event, PeerMessage, PeerObservation};

use super::chain::hrs_done;
use super::{Ev, World};

impl World {
    pub(super) fn link_up(&self) -> bool {
        self.now >= self.link_cut_until
    }

    fn delay(&mut self) -> u64 {
        self.rng.range(10, self.cfg.max_delay_ms.max(10))
    }

    /// Node `n` sends `message` to its peer.
    pub(super) fn send(&mut self, n: usize, message: PeerMessage) {
        let to = 1 - n;
        let copies = if !self.quiet && self.rng.chance(self.cfg.dup) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let lost = !self.quiet && self.rng.chance(self.cfg.loss);
            if !self.link_up() || lost {
                continue;
            }
            let at = self.now + self.delay();
            let inc = self.nodes[to].inc;
            let event = Box::new(Event::Message(message.clone()));
            self.at(at, Ev::Deliver { to, inc, event });
        }
    }

    /// The pair's part of node `n`'s round: pull the peer's state (the replica) when it can
    /// reach it, then look at the peer.
    pub(super) fn pair_round(&mut self, n: usize) {
        if !self.nodes[n].up {
            return;
        }
        let inc = self.nodes[n].inc;
        let peer = 1 - n;
        if self.link_up() && self.nodes[peer].up {
            let replica = self.nodes[peer].last_signed;
            self.nodes[n].replica = self.nodes[n].replica.max(replica);
            if replica > 0 {
                let hrs = hrs_done(replica);
                self.deliver(n, inc, Event::StateSeen { hrs });
            }
        }
        self.at(self.now + 1, Ev::Poll { from: n, inc });
    }

    /// One look at the peer's status API: its status after a delay, or a timeout.
    pub(super) fn poll(&mut self, from: usize, inc: u64) {
        let peer = 1 - from;
        let lost = !self.quiet && self.rng.chance(self.cfg.loss);
        let reachable = self.link_up() && self.nodes[peer].up && !lost;
        let (ev, delay) = match (reachable, self.nodes[peer].machine.as_ref()) {
            (true, Some(m)) => (
                Event::Peer(PeerObservation::Reachable(m.peer_status())),
                self.delay(),
            ),
            _ => (
                Event::Peer(PeerObservation::Unreachable {
                    reason: "timeout".into(),
                }),
                300,
            ),
        };
        let event = Box::new(ev);
        self.at(
            self.now + delay,
            Ev::Deliver {
                to: from,
                inc,
                event,
            },
        );
    }
}
