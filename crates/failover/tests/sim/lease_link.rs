//! Each node's link to the simulated etcd (lease worlds), as the daemon's `LeaseLink` does
//! it: a look at the lock every round (after publishing the node's own status), the state
//! file fed to the machine (the watermark's source), the lease arbiter's actions (acquire,
//! watermark, release, hand over, request, pause), and the holder's lease kept by the real
//! `LeaseKeeper` from the moment an acquisition's answer arrives until the machine releases
//! or hands the lock over (its end comes back as `LeaseEnded`). A node cut from etcd gets
//! failures after the client's timeout; before the quiet a request or its answer may be lost
//! (an acquisition then may have happened without the node knowing: its lease just expires).

use std::time::Duration;

use syncguard_coordination::{FenceReason, KeeperAction, LeaseKeeper, LeaseTiming, RenewalTicket};
use syncguard_failover::{
    AcquireReport, Action, Event, LeaseEnd, LockHandover, LockView, NodeId, PeerStatus, RequestKind,
};
use syncguard_validator::Hrs;

use super::chain::hrs_done;
use super::lock::{Acquired, Lease};
use super::{ceil_ms, Ev, World, LEASE_MARGIN_MS, LEASE_TTL_MS};

/// The lease a daemon keeps, with its keeper.
#[derive(Debug)]
pub(super) struct Held {
    lease: Lease,
    keeper: LeaseKeeper,
    fenced: bool,
    /// The instant a keeper poll is scheduled for.
    next_keep: Option<u64>,
}

/// A request on its way to etcd.
#[derive(Debug)]
pub(super) enum EtcdOp {
    Look {
        asked_at: u64,
        status: Box<PeerStatus>,
    },
    Acquire {
        force: Option<u64>,
        sent_at: u64,
    },
    Watermark {
        lease: Lease,
        hrs: Hrs,
    },
    Release {
        lease: Lease,
    },
    HandOver {
        lease: Lease,
        to: NodeId,
        final_state: Option<Hrs>,
    },
    PutRequest {
        kind: RequestKind,
        /// The node the role would go to, when not the asking one (a relayed switchover).
        for_node: Option<NodeId>,
    },
    ClearRequest {
        from: NodeId,
    },
    SetPaused {
        paused: bool,
    },
    Renew {
        lease: Lease,
        ticket: RenewalTicket,
        gen: u64,
    },
}

/// etcd's answer on its way back.
#[derive(Debug)]
pub(super) enum Reply {
    Event(Box<Event>),
    Acquired {
        lease: Lease,
        sent_at: u64,
        handover: Option<LockHandover>,
    },
    Keep {
        gen: u64,
        outcome: KeepOutcome,
    },
}

#[derive(Debug)]
pub(super) enum KeepOutcome {
    Renewed(RenewalTicket),
    Failed(RenewalTicket),
    Lost(RenewalTicket),
}

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

/// The client's timeout per try (`lease_ttl / 10`, between 0.2 and 2 s).
const TRY_MS: u64 = if LEASE_TTL_MS / 10 < 200 {
    200
} else {
    LEASE_TTL_MS / 10
};

fn event(e: Event) -> Option<Reply> {
    Some(Reply::Event(Box::new(e)))
}

/// What the daemon sees when a request or its answer did not get through.
fn failed(reply: Reply) -> Option<Reply> {
    let reason = "etcd unreachable (simulated)".to_string();
    match reply {
        Reply::Event(e) => match *e {
            Event::Lock { asked_at, .. } => event(Event::Lock {
                asked_at,
                view: LockView::Unreachable { reason },
            }),
            Event::Acquire(_) => event(Event::Acquire(AcquireReport::Failed { reason })),
            Event::HandedOver { to, .. } => event(Event::HandedOver {
                to,
                result: Err(reason),
            }),
            _ => None,
        },
        Reply::Acquired { .. } => event(Event::Acquire(AcquireReport::Failed { reason })),
        Reply::Keep { gen, outcome } => {
            let (KeepOutcome::Renewed(t) | KeepOutcome::Failed(t) | KeepOutcome::Lost(t)) = outcome;
            let outcome = KeepOutcome::Failed(t);
            Some(Reply::Keep { gen, outcome })
        }
    }
}

/// The answer a request would get if it failed, if it gets one.
fn answer_if_failed(op: &EtcdOp) -> Option<Reply> {
    let placeholder = match op {
        EtcdOp::Look { asked_at, .. } => event(Event::Lock {
            asked_at: ms(*asked_at),
            view: LockView::Unreachable {
                reason: String::new(),
            },
        }),
        EtcdOp::Acquire { .. } => event(Event::Acquire(AcquireReport::Failed {
            reason: String::new(),
        })),
        EtcdOp::HandOver { to, .. } => event(Event::HandedOver {
            to: to.clone(),
            result: Ok(false),
        }),
        EtcdOp::Renew { ticket, gen, .. } => Some(Reply::Keep {
            gen: *gen,
            outcome: KeepOutcome::Failed(*ticket),
        }),
        _ => None,
    };
    placeholder.and_then(failed)
}

impl World {
    fn etcd_cut(&self, n: usize) -> bool {
        self.now < self.nodes[n].etcd_cut_until
    }

    fn lost_on_the_way(&mut self) -> bool {
        !self.quiet && self.rng.chance(self.cfg.loss)
    }

    fn etcd_delay(&mut self) -> u64 {
        let longest = (self.cfg.max_delay_ms / 4).clamp(20, 150);
        self.rng.range(5, longest)
    }

    /// Node `n`'s daemon sends `op` to etcd.
    fn request(&mut self, n: usize, op: EtcdOp) {
        let inc = self.nodes[n].inc;
        if self.etcd_cut(n) || self.lost_on_the_way() {
            return self.answer_later(n, inc, answer_if_failed(&op), TRY_MS, true);
        }
        let at = self.now + self.etcd_delay();
        self.at(at, Ev::Etcd { node: n, inc, op });
    }

    fn answer_later(&mut self, n: usize, inc: u64, reply: Option<Reply>, after: u64, sure: bool) {
        if let Some(reply) = reply {
            let ev = Ev::EtcdReply {
                node: n,
                inc,
                reply,
                sure,
            };
            self.at(self.now + after, ev);
        }
    }

    /// The lease arbiter's actions (the pair's never come here).
    pub(super) fn lease_action(&mut self, n: usize, a: Action) {
        let now = self.now;
        match a {
            Action::TryAcquire { force_release } => self.request(
                n,
                EtcdOp::Acquire {
                    force: force_release,
                    sent_at: now,
                },
            ),
            Action::PutWatermark { hrs } => {
                if let Some(lease) = self.nodes[n].held.as_ref().map(|h| h.lease) {
                    self.request(n, EtcdOp::Watermark { lease, hrs });
                }
            }
            Action::Release => {
                if let Some(h) = self.take_held(n) {
                    self.log(format!(
                        "node {n} releases the lock of epoch {}",
                        h.lease.epoch
                    ));
                    self.request(n, EtcdOp::Release { lease: h.lease });
                }
            }
            Action::HandOver { to, final_state } => match self.take_held(n) {
                Some(h) => {
                    self.log(format!("node {n} hands the lock to {to}"));
                    let op = EtcdOp::HandOver {
                        lease: h.lease,
                        to,
                        final_state,
                    };
                    self.request(n, op);
                }
                None => {
                    let result = Err("this node holds no lease any more".to_string());
                    let inc = self.nodes[n].inc;
                    let reply = event(Event::HandedOver { to, result });
                    self.answer_later(n, inc, reply, 1, true);
                }
            },
            Action::PutRequest { kind, for_node } if kind != RequestKind::Claim => {
                self.request(n, EtcdOp::PutRequest { kind, for_node });
            }
            Action::ClearRequest { from } => self.request(n, EtcdOp::ClearRequest { from }),
            Action::SetPaused { paused } => self.request(n, EtcdOp::SetPaused { paused }),
            _ => {}
        }
    }

    /// The daemon stops keeping its lease (released, handed over, or the daemon is gone).
    pub(super) fn take_held(&mut self, n: usize) -> Option<Held> {
        let node = &mut self.nodes[n];
        node.keep_gen += 1;
        node.held.take()
    }

    /// The lease's part of node `n`'s round: the state file, then a look at the lock.
    pub(super) fn lease_round(&mut self, n: usize) {
        let node = &self.nodes[n];
        let Some(m) = node.machine.as_ref().filter(|_| node.up) else {
            return;
        };
        let status = Box::new(m.peer_status());
        let (inc, last) = (node.inc, node.last_signed);
        if last > 0 {
            self.deliver(
                n,
                inc,
                Event::StateSeen {
                    hrs: hrs_done(last),
                },
            );
        }
        let asked_at = self.now;
        self.request(n, EtcdOp::Look { asked_at, status });
    }

    /// A request of node `n` reaches etcd (unless the node got cut off meanwhile).
    pub(super) fn at_etcd(&mut self, n: usize, inc: u64, op: EtcdOp) {
        if self.etcd_cut(n) {
            return self.answer_later(n, inc, answer_if_failed(&op), TRY_MS, true);
        }
        let now = self.now;
        let me = self.nodes[n].id.clone();
        let handover_ttl = self.timing.handover_timeout.as_millis() as u64;
        let e = &mut self.etcd;
        let reply = match op {
            EtcdOp::Look { asked_at, status } => {
                let member_ttl = (self.cfg.profile.round_ms * 3).max(2_000);
                e.put_member(*status, member_ttl, now);
                let view = LockView::Seen(e.view(now));
                let asked_at = ms(asked_at);
                event(Event::Lock { asked_at, view })
            }
            EtcdOp::Acquire { force, sent_at } => match e.acquire(&me, force, LEASE_TTL_MS, now) {
                Acquired::Yes(lease, handover) => Some(Reply::Acquired {
                    lease,
                    sent_at,
                    handover,
                }),
                Acquired::Held(h) => event(Event::Acquire(AcquireReport::Held(h))),
                Acquired::HandoverPending(h) => {
                    event(Event::Acquire(AcquireReport::HandoverPending(h)))
                }
            },
            EtcdOp::Watermark { lease, hrs } => {
                e.put_watermark(&lease, hrs, now);
                None
            }
            EtcdOp::Release { lease } => {
                e.release(&lease, now);
                None
            }
            EtcdOp::HandOver {
                lease,
                to,
                final_state,
            } => {
                let ok = e.hand_over(&lease, &me, &to, final_state, handover_ttl, now);
                event(Event::HandedOver { to, result: Ok(ok) })
            }
            EtcdOp::PutRequest { kind, for_node } => {
                e.put_request(for_node.as_ref().unwrap_or(&me), kind, handover_ttl, now);
                None
            }
            EtcdOp::ClearRequest { from } => {
                e.clear_request(&from, now);
                None
            }
            EtcdOp::SetPaused { paused } => {
                e.set_paused(&me, paused, now);
                None
            }
            EtcdOp::Renew { lease, ticket, gen } => {
                let outcome = if e.renew(&lease, now) {
                    KeepOutcome::Renewed(ticket)
                } else {
                    KeepOutcome::Lost(ticket)
                };
                Some(Reply::Keep { gen, outcome })
            }
        };
        let d = self.etcd_delay();
        self.answer_later(n, inc, reply, d, false);
    }

    /// etcd's answer reaches node `n` (unless it got cut off or the answer was lost: then
    /// the daemon sees a failure).
    pub(super) fn etcd_reply(&mut self, n: usize, inc: u64, reply: Reply, sure: bool) {
        let reply = if sure || !(self.etcd_cut(n) || self.lost_on_the_way()) {
            Some(reply)
        } else {
            failed(reply)
        };
        match reply {
            Some(Reply::Event(e)) => self.deliver(n, inc, *e),
            Some(Reply::Acquired {
                lease,
                sent_at,
                handover,
            }) => self.acquired(n, inc, lease, sent_at, handover),
            Some(Reply::Keep { gen, outcome }) => self.keep_reply(n, gen, outcome),
            None => {}
        }
    }

    /// The acquisition succeeded: keep the lease from now on (its proof counts from the
    /// request's send), then tell the machine.
    fn acquired(
        &mut self,
        n: usize,
        inc: u64,
        lease: Lease,
        sent_at: u64,
        handover: Option<LockHandover>,
    ) {
        if !self.nodes[n].up || self.nodes[n].inc != inc {
            return; // the daemon that asked is gone: nobody keeps this lease
        }
        let timing = match LeaseTiming::new(ms(LEASE_TTL_MS), ms(LEASE_MARGIN_MS)) {
            Ok(t) => t,
            Err(e) => panic!("lease timing invalid: {e}"),
        };
        let keeper = LeaseKeeper::acquired(timing, ms(sent_at), ms(lease.ttl));
        self.take_held(n);
        let held = Held {
            lease,
            keeper,
            fenced: false,
            next_keep: None,
        };
        self.nodes[n].held = Some(held);
        let gen = self.nodes[n].keep_gen;
        self.log(format!(
            "node {n} ACQUIRED the lock at epoch {}",
            lease.epoch
        ));
        let report = AcquireReport::Acquired {
            epoch: lease.epoch,
            watermark: self.etcd.watermark,
            handover,
        };
        self.deliver(n, inc, Event::Acquire(report));
        self.keep(n, gen);
    }

    /// The keeper of node `n`'s lease is due (or just heard back).
    pub(super) fn keep(&mut self, n: usize, gen: u64) {
        let now = self.now;
        let node = &mut self.nodes[n];
        let Some(h) = node
            .held
            .as_mut()
            .filter(|h| !h.fenced && node.keep_gen == gen)
        else {
            return;
        };
        if h.next_keep == Some(now) {
            h.next_keep = None;
        }
        match h.keeper.poll(ms(now)) {
            KeeperAction::Wait { until } => {
                let t = ceil_ms(until).max(now + 1);
                if h.next_keep != Some(t) {
                    h.next_keep = Some(t);
                    self.at(t, Ev::Keep { node: n, gen });
                }
            }
            KeeperAction::Renew(ticket) => {
                let lease = h.lease;
                self.request(n, EtcdOp::Renew { lease, ticket, gen });
            }
            KeeperAction::Fence(reason) => {
                h.fenced = true;
                let why = match reason {
                    FenceReason::LeaseLost => LeaseEnd::Lost,
                    _ => LeaseEnd::NotRenewed,
                };
                let inc = node.inc;
                self.log(format!("node {n} lease keeper stops: {why:?}"));
                self.deliver(n, inc, Event::LeaseEnded { why });
            }
        }
    }

    fn keep_reply(&mut self, n: usize, gen: u64, outcome: KeepOutcome) {
        let now = ms(self.now);
        let node = &mut self.nodes[n];
        let Some(h) = node.held.as_mut().filter(|_| node.keep_gen == gen) else {
            return;
        };
        match outcome {
            KeepOutcome::Renewed(t) => h.keeper.renewal_succeeded(t, now, ms(h.lease.ttl)),
            KeepOutcome::Failed(t) => h.keeper.renewal_failed(t, now),
            KeepOutcome::Lost(_) => h.keeper.lease_lost(now),
        }
        self.keep(n, gen);
    }
}
