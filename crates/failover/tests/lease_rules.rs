//! The etcd-mode rules (the core over the lease arbiter) with simulated time: single-node
//! rules, and a simulated three-node world with one shared lock under proptest (random cuts
//! from etcd, crashes, heals). These were the tests of the etcd machine of its own; they run
//! unchanged through `lease_support`, which speaks that machine's old vocabulary.

mod lease_support;

use std::time::Duration;

use lease_support::*;
use proptest::prelude::*;
use syncguard_coordination::{KeeperAction, LeaseKeeper, LeaseTiming};
use syncguard_failover::{
    Action, ActuatorResult, ChainReport, LocalHealth, PromotionOrder, RecordTag, Role,
    WitnessReport,
};
use syncguard_validator::{Hrs, Step};

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

fn params(id: &str, priority: u32) -> EtcdParams {
    EtcdParams {
        node_id: id.into(),
        priority,
        rank: PromotionOrder::rank((priority, id), &[(0, "n0"), (1, "n1"), (2, "n2")]),
        health_check_interval: ms(500),
        witness_blocks: 4,
        verify_blocks: 4,
        order: PromotionOrder::new(ms(1000), ms(500)).expect("order"),
    }
}

fn health(height: u64) -> EtcdEvent {
    EtcdEvent::LocalHealth(LocalHealth {
        healthy: true,
        latest_height: Some(height),
        stalled: false,
        why: None,
        block_age: None,
    })
}

fn lock(at: Duration, view: LockView) -> EtcdEvent {
    EtcdEvent::Lock { asked_at: at, view }
}

fn holder(id: &str, epoch: u64) -> LockView {
    LockView::Held(Holder {
        node_id: id.into(),
        priority: 0,
        epoch,
    })
}

fn deactivated() -> EtcdEvent {
    EtcdEvent::Actuator(ActuatorResult::Deactivated { result: Ok(None) })
}

fn has(actions: &[EtcdAction], f: impl Fn(&EtcdAction) -> bool) -> bool {
    actions.iter().any(f)
}

fn is_activate(a: &EtcdAction) -> bool {
    matches!(a, EtcdAction::Failover(Action::Activate { .. }))
}

fn is_deactivate(a: &EtcdAction) -> bool {
    matches!(a, EtcdAction::Failover(Action::Deactivate { .. }))
}

fn tags(actions: &[EtcdAction]) -> Vec<(RecordTag, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            EtcdAction::Failover(Action::Record(r)) => Some((r.tag, r.reason.clone())),
            _ => None,
        })
        .collect()
}

fn booted(id: &str, prio: u32, epoch: u64) -> EtcdMachine {
    let mut m = EtcdMachine::new(params(id, prio));
    let a = m.handle(
        EtcdEvent::Start {
            epoch_on_disk: epoch,
        },
        ms(0),
    );
    assert!(has(&a, is_deactivate), "boot deactivates first: {a:?}");
    assert_eq!(m.held_role(), Role::Demoting);
    m.handle(deactivated(), ms(10));
    assert_eq!(m.held_role(), Role::Passive);
    // The chain shows the last holder signing after this start, then (the witness) no more:
    // no late start is pending.
    m.handle(chain(90, Some(80)), ms(20));
    m.handle(chain(91, Some(91)), ms(30));
    m
}

fn chain(latest: u64, last_signed: Option<u64>) -> EtcdEvent {
    EtcdEvent::Chain(ChainReport {
        latest_height: latest,
        last_signed,
        fastest_block: None,
    })
}

/// Block times 300 ms apart, ending at `latest`.
fn times(heights: impl IntoIterator<Item = u64>, latest: u64) -> Vec<(u64, u64)> {
    heights
        .into_iter()
        .map(|h| (h, 1_000_000 - (latest - h) * 300))
        .collect()
}

/// Drives a passive through a free lock to its witness request; returns the witness id.
fn to_witness(m: &mut EtcdMachine, mut now: Duration) -> (u64, Duration) {
    for h in 100..120 {
        let mut a = m.handle(health(h), now);
        a.extend(m.handle(lock(now, LockView::Free), now));
        for x in &a {
            if let EtcdAction::Failover(Action::RequestWitness { id, .. }) = x {
                return (*id, now);
            }
        }
        now += ms(500);
    }
    panic!("no witness requested; {}", m.last_why());
}

fn clean_witness(id: u64, latest: u64) -> EtcdEvent {
    // Every commit the witness may ask for, each with its block time.
    let checked: Vec<u64> = (latest.saturating_sub(199).max(1)..=latest).collect();
    EtcdEvent::Witness(WitnessReport {
        id,
        latest_height: latest,
        block_times_ms: times(checked.iter().copied(), latest),
        checked,
        signed: vec![],
        unknown: vec![],
    })
}

#[test]
fn coordination_machine_free_lock_clean_witness_acquires_then_activates_with_the_fence() {
    let mut m = booted("n0", 0, 5);
    let (id, now) = to_witness(&mut m, ms(100));
    let a = m.handle(clean_witness(id, 120), now + ms(50));
    assert!(has(&a, |x| matches!(x, EtcdAction::TryAcquire)), "{a:?}");
    assert!(!has(&a, is_activate), "never Activate before Acquired");
    m.handle(
        EtcdEvent::StateSeen {
            hrs: Hrs::new(200, 0, Step::Precommit),
        },
        now + ms(60),
    );
    let a = m.handle(
        EtcdEvent::Acquire(AcquireReport::Acquired {
            epoch: 42,
            watermark: Some(Hrs::new(150, 1, Step::Prevote)),
        }),
        now + ms(100),
    );
    let persist = a
        .iter()
        .position(|x| {
            matches!(
                x,
                EtcdAction::Failover(Action::PersistEpoch { epoch: 42, .. })
            )
        })
        .expect("persist");
    let act = a.iter().position(is_activate).expect("activate");
    assert!(persist < act, "epoch persisted before activating");
    let EtcdAction::Failover(Action::Activate { fence, epoch, .. }) = &a[act] else {
        unreachable!()
    };
    assert_eq!(*epoch, 42);
    assert_eq!(
        *fence,
        Hrs::new(200, 0, Step::Precommit),
        "max of seen, watermark, H+2"
    );
    assert_eq!(m.held_role(), Role::Promoting);
    let a = m.handle(
        EtcdEvent::Actuator(ActuatorResult::Activated {
            epoch: 42,
            result: Ok(()),
            signed_at: None,
        }),
        now + ms(900),
    );
    assert_eq!(m.held_role(), Role::Active);
    assert!(tags(&a).contains(&(RecordTag::FailoverCompleted, "lock_acquired".into())));
    // The actuator reports only verified activations: no separate verification is asked.
    assert!(!has(&a, |x| matches!(
        x,
        EtcdAction::Failover(Action::Verify { .. })
    )));
    // A state change while active raises the watermark.
    let a = m.handle(
        EtcdEvent::StateSeen {
            hrs: Hrs::new(300, 0, Step::Prevote),
        },
        now + ms(1000),
    );
    assert!(has(&a, |x| matches!(x, EtcdAction::PutWatermark { .. })));
}

#[test]
fn coordination_machine_witness_with_a_signature_or_a_gap_never_acquires() {
    let mut m = booted("n0", 0, 0);
    let (id, now) = to_witness(&mut m, ms(100));
    let a = m.handle(
        EtcdEvent::Witness(WitnessReport {
            id,
            latest_height: 120,
            checked: vec![117, 118, 119, 120],
            signed: vec![119],
            unknown: vec![],
            block_times_ms: times(117..=120, 120),
        }),
        now + ms(10),
    );
    assert!(!has(&a, |x| matches!(x, EtcdAction::TryAcquire)));
    assert!(tags(&a).contains(&(RecordTag::PromotionRefused, "witness_signed".into())));
    let (id, now) = to_witness(&mut m, now + ms(500));
    let a = m.handle(
        EtcdEvent::Witness(WitnessReport {
            id,
            latest_height: 130,
            checked: vec![127, 128, 130],
            signed: vec![],
            unknown: vec![129],
            block_times_ms: times([127, 128, 130], 130),
        }),
        now + ms(10),
    );
    assert!(!has(&a, |x| matches!(x, EtcdAction::TryAcquire)));
    assert!(tags(&a).contains(&(RecordTag::PromotionRefused, "witness_incomplete".into())));
    // A stale answer (more than a round after asking) is not used either.
    let (id, now) = to_witness(&mut m, now + ms(500));
    let a = m.handle(clean_witness(id, 140), now + ms(600));
    assert!(!has(&a, |x| matches!(x, EtcdAction::TryAcquire)));
}

#[test]
fn coordination_machine_held_lock_keeps_passive_and_says_why_once() {
    let mut m = booted("n1", 1, 0);
    m.handle(health(10), ms(100));
    let a = m.handle(lock(ms(100), holder("n0", 7)), ms(100));
    assert_eq!(
        tags(&a),
        vec![(RecordTag::Other, "held".into())],
        "{}",
        m.last_why()
    );
    assert!(m.last_why().contains("n0 holds the lock at epoch 7"));
    let a = m.handle(lock(ms(600), holder("n0", 7)), ms(600));
    assert!(tags(&a).is_empty(), "recorded once per change of reason");
    assert_eq!(m.epoch(), 7);
}

#[test]
fn coordination_machine_lower_revision_than_disk_refuses_and_releases() {
    let mut m = booted("n0", 0, 1000);
    let (id, now) = to_witness(&mut m, ms(100));
    m.handle(clean_witness(id, 120), now);
    let a = m.handle(
        EtcdEvent::Acquire(AcquireReport::Acquired {
            epoch: 3,
            watermark: None,
        }),
        now + ms(10),
    );
    assert!(!has(&a, is_activate));
    assert!(has(&a, |x| matches!(x, EtcdAction::Release)));
    assert!(tags(&a).contains(&(RecordTag::PromotionRefused, "epoch_behind".into())));
    assert_eq!(m.held_role(), Role::Passive);
}

fn active(id: &str, epoch: u64) -> (EtcdMachine, Duration) {
    let mut m = booted(id, 0, 0);
    let (wid, now) = to_witness(&mut m, ms(100));
    m.handle(clean_witness(wid, 120), now);
    m.handle(
        EtcdEvent::Acquire(AcquireReport::Acquired {
            epoch,
            watermark: None,
        }),
        now,
    );
    m.handle(
        EtcdEvent::Actuator(ActuatorResult::Activated {
            epoch,
            result: Ok(()),
            signed_at: None,
        }),
        now + ms(500),
    );
    assert_eq!(m.held_role(), Role::Active);
    (m, now + ms(500))
}

#[test]
fn coordination_machine_lease_unrenewable_fences_at_once_and_waits_for_the_lock_to_move() {
    let (mut m, now) = active("n0", 9);
    let a = m.handle(
        EtcdEvent::LeaseEnded {
            why: LeaseEnd::NotRenewed,
        },
        now,
    );
    assert!(has(&a, is_deactivate));
    assert!(tags(&a).contains(&(RecordTag::SelfFenced, "lease_unrenewable".into())));
    assert_eq!(m.held_role(), Role::Demoting, "until the stop is confirmed");
    // etcd unreachable: stays fenced.
    let a = m.handle(deactivated(), now + ms(300));
    assert!(has(&a, |x| matches!(x, EtcdAction::Release)));
    assert_eq!(m.role(), Role::Fenced);
    m.handle(
        lock(
            now + ms(400),
            LockView::Unreachable {
                reason: "cut".into(),
            },
        ),
        now + ms(400),
    );
    assert_eq!(m.role(), Role::Fenced);
    // A look asked before the stop was confirmed says nothing.
    m.handle(lock(now + ms(200), holder("n1", 15)), now + ms(500));
    assert_eq!(m.role(), Role::Fenced);
    m.handle(lock(now + ms(600), holder("n1", 15)), now + ms(700));
    assert_eq!(m.role(), Role::Passive);
}

#[test]
fn coordination_machine_active_that_sees_another_holder_stops_at_once() {
    let (mut m, now) = active("n0", 9);
    // A look sent before the acquisition is ignored.
    let a = m.handle(lock(ms(0), LockView::Free), now);
    assert!(!has(&a, is_deactivate));
    let a = m.handle(lock(now, holder("n2", 20)), now + ms(10));
    assert!(has(&a, is_deactivate));
    assert!(tags(&a).contains(&(RecordTag::SelfFenced, "lock_lost".into())));
}

#[test]
fn coordination_machine_paused_never_promotes_but_still_fences() {
    let mut m = booted("n0", 0, 0);
    m.handle(EtcdEvent::Pause, ms(50));
    for i in 0..10u64 {
        let now = ms(100 + i * 500);
        m.handle(health(100 + i), now);
        let a = m.handle(lock(now, LockView::Free), now);
        assert!(!has(&a, |x| matches!(
            x,
            EtcdAction::Failover(Action::RequestWitness { .. })
        )));
    }
    assert_eq!(m.role(), Role::Paused);
}

#[test]
fn coordination_machine_unadvancing_or_unhealthy_node_does_not_try() {
    let mut m = booted("n0", 0, 0);
    for i in 0..10u64 {
        let now = ms(100 + i * 500);
        m.handle(health(100), now);
        let a = m.handle(lock(now, LockView::Free), now);
        assert!(!has(&a, |x| matches!(
            x,
            EtcdAction::Failover(Action::RequestWitness { .. })
        )));
    }
    assert!(m.last_why().contains("no new block"), "{}", m.last_why());
}

#[test]
fn coordination_machine_passives_wait_in_priority_order() {
    // n0 (rank 0) asks for the witness within its jitter; n2 (rank 2) not before 2 s.
    let (_, t0) = to_witness(&mut booted("n0", 0, 0), ms(0));
    let (_, t2) = to_witness(&mut booted("n2", 2, 0), ms(0));
    assert!(t0 < ms(1000), "{t0:?}");
    assert!(t2 >= ms(2000), "{t2:?}");
}

// ---------------------------------------------------------------------------------------
// A simulated world: three nodes, one lock with etcd's semantics, the real LeaseKeeper.

const TTL: u64 = 3000;
const MARGIN: u64 = 1000;
const STEP: u64 = 50;
const ROUND: u64 = 500;
const BLOCK: u64 = 300;

#[derive(Debug, Clone, Copy)]
enum Fault {
    Cut(usize),
    Heal(usize),
    Crash(usize),
    Unhealthy(usize),
    Healthy(usize),
    /// Its signatures stop reaching the chain (the witness cannot see it): only the lease
    /// keeps the others out.
    Dark(usize),
    Nothing,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        (0..3usize).prop_map(Fault::Cut),
        (0..3usize).prop_map(Fault::Heal),
        (0..3usize).prop_map(Fault::Crash),
        (0..3usize).prop_map(Fault::Unhealthy),
        (0..3usize).prop_map(Fault::Healthy),
        (0..3usize).prop_map(Fault::Dark),
        Just(Fault::Nothing),
    ]
}

struct Node {
    m: EtcdMachine,
    alive: bool,
    cut: bool,
    healthy: bool,
    dark: bool,
    keeper: Option<(LeaseKeeper, u64)>,
    /// Actuator queue: (completes at, is activate, epoch).
    ops: Vec<(u64, bool, u64)>,
    /// The key may be live: from the Activate order until a Deactivate completes.
    live: Option<u64>,
    pending: Vec<EtcdEvent>,
}

struct World {
    now: u64,
    nodes: Vec<Node>,
    /// (holder index, epoch, expires at)
    lock: Option<(usize, u64, u64)>,
    revision: u64,
    watermark: Option<Hrs>,
    /// Heights with a signature.
    signed: Vec<u64>,
    height: u64,
    activations: Vec<u64>,
    stop_ms: u64,
}

impl World {
    fn new(stop_ms: u64) -> World {
        let nodes = (0..3)
            .map(|i| {
                let mut m = EtcdMachine::new(params(&format!("n{i}"), i as u32));
                let mut n = Node {
                    m: m.clone(),
                    alive: true,
                    cut: false,
                    healthy: true,
                    dark: false,
                    keeper: None,
                    ops: Vec::new(),
                    live: None,
                    pending: Vec::new(),
                };
                let a = m.handle(EtcdEvent::Start { epoch_on_disk: 0 }, ms(0));
                n.m = m;
                n.pending.clear();
                (n, a)
            })
            .collect::<Vec<_>>();
        let mut w = World {
            now: 0,
            nodes: Vec::new(),
            lock: None,
            revision: 1,
            watermark: None,
            signed: Vec::new(),
            height: 100,
            activations: Vec::new(),
            stop_ms,
        };
        let mut firsts = Vec::new();
        for (n, a) in nodes {
            w.nodes.push(n);
            firsts.push(a);
        }
        for (i, a) in firsts.into_iter().enumerate() {
            w.perform(i, a);
        }
        w
    }

    fn expire(&mut self) {
        if let Some((_, _, until)) = self.lock {
            if self.now >= until {
                self.lock = None;
            }
        }
    }

    fn view(&self, i: usize) -> LockView {
        if self.nodes[i].cut {
            return LockView::Unreachable {
                reason: "cut".into(),
            };
        }
        match self.lock {
            None => LockView::Free,
            Some((h, e, _)) => holder(&format!("n{h}"), e),
        }
    }

    fn perform(&mut self, i: usize, actions: Vec<EtcdAction>) {
        let now = self.now;
        for a in actions {
            let n = &mut self.nodes[i];
            match a {
                EtcdAction::Failover(Action::Activate { epoch, .. }) => {
                    // Never two keys possibly live at once.
                    for (j, other) in self.nodes.iter().enumerate() {
                        if j != i {
                            assert!(
                                other.live.is_none(),
                                "n{i} activates epoch {epoch} at {now} ms while n{j} may still \
                                 sign (epoch {:?})",
                                other.live
                            );
                        }
                    }
                    if let Some(last) = self.activations.last() {
                        assert!(epoch > *last, "epochs strictly increase");
                    }
                    self.activations.push(epoch);
                    let n = &mut self.nodes[i];
                    assert!(
                        matches!(self.lock, Some((h, e, _)) if h == i && e == epoch),
                        "activate only while holding the lock"
                    );
                    n.live = Some(epoch);
                    let start = n.ops.last().map_or(now, |o| o.0.max(now));
                    n.ops.push((start + 300, true, epoch));
                }
                EtcdAction::Failover(Action::Deactivate { .. }) => {
                    let start = n.ops.last().map_or(now, |o| o.0.max(now));
                    n.ops.push((start + self.stop_ms, false, 0));
                }
                EtcdAction::Failover(Action::RequestWitness { id, blocks }) => {
                    let latest = self.height;
                    let from = latest.saturating_sub(u64::from(blocks) - 1);
                    let signed: Vec<u64> =
                        self.signed.iter().copied().filter(|h| *h >= from).collect();
                    n.pending.push(EtcdEvent::Witness(WitnessReport {
                        id,
                        latest_height: latest,
                        checked: (from..=latest).collect(),
                        signed,
                        unknown: vec![],
                        block_times_ms: (from..=latest)
                            .map(|h| (h, 1_000_000 + h * BLOCK))
                            .collect(),
                    }));
                }
                EtcdAction::TryAcquire => {
                    let report = if n.cut {
                        AcquireReport::Failed {
                            reason: "cut".into(),
                        }
                    } else if let Some((h, e, _)) = self.lock {
                        AcquireReport::Held(Holder {
                            node_id: format!("n{h}"),
                            priority: h as u32,
                            epoch: e,
                        })
                    } else {
                        self.revision += 1;
                        let epoch = self.revision;
                        self.lock = Some((i, epoch, now + TTL));
                        let timing = LeaseTiming::new(ms(TTL), ms(MARGIN)).expect("timing");
                        n.keeper = Some((LeaseKeeper::acquired(timing, ms(now), ms(TTL)), epoch));
                        AcquireReport::Acquired {
                            epoch,
                            watermark: self.watermark,
                        }
                    };
                    n.pending.push(EtcdEvent::Acquire(report));
                }
                EtcdAction::PutWatermark { hrs } => {
                    if !n.cut && matches!(self.lock, Some((h, _, _)) if h == i) {
                        self.watermark = Some(self.watermark.map_or(hrs, |w| w.max(hrs)));
                    }
                }
                EtcdAction::Release => {
                    if let Some((_, e)) = n.keeper.take() {
                        if !n.cut && matches!(self.lock, Some((h, le, _)) if h == i && le == e) {
                            self.lock = None;
                        }
                    }
                }
                EtcdAction::Failover(_) => {}
            }
        }
    }

    fn feed(&mut self, i: usize, e: EtcdEvent) {
        if !self.nodes[i].alive {
            return;
        }
        let a = self.nodes[i].m.handle(e, ms(self.now));
        self.perform(i, a);
    }

    fn step(&mut self) {
        self.now += STEP;
        self.expire();
        if self.now % BLOCK == 0 {
            self.height += 1;
            if self
                .nodes
                .iter()
                .any(|n| n.alive && !n.dark && n.live.is_some())
            {
                self.signed.push(self.height);
            }
        }
        for i in 0..3 {
            if !self.nodes[i].alive {
                continue;
            }
            // Actuator completions.
            let done: Vec<(u64, bool, u64)> = {
                let n = &mut self.nodes[i];
                let (done, rest) = n.ops.iter().partition(|o| o.0 <= self.now);
                n.ops = rest;
                done
            };
            for (_, activate, epoch) in done {
                if activate {
                    self.feed(
                        i,
                        EtcdEvent::Actuator(ActuatorResult::Activated {
                            epoch,
                            result: Ok(()),
                            signed_at: None,
                        }),
                    );
                } else {
                    self.nodes[i].live = None;
                    self.feed(i, deactivated());
                }
            }
            // The keeper.
            if let Some((mut k, e)) = self.nodes[i].keeper.take() {
                let mut ended = None;
                loop {
                    match k.poll(ms(self.now)) {
                        KeeperAction::Wait { .. } => break,
                        KeeperAction::Fence(_) => {
                            ended = Some(LeaseEnd::NotRenewed);
                            break;
                        }
                        KeeperAction::Renew(t) => {
                            if self.nodes[i].cut {
                                k.renewal_failed(t, ms(self.now));
                            } else if matches!(self.lock, Some((h, le, _)) if h == i && le == e) {
                                self.lock = Some((i, e, self.now + TTL));
                                k.renewal_succeeded(t, ms(self.now), ms(TTL));
                            } else {
                                k.lease_lost(ms(self.now));
                            }
                        }
                    }
                }
                match ended {
                    Some(why) => {
                        // Keep the lease object: a later Release still deletes the key.
                        self.nodes[i].keeper = Some((k, e));
                        self.feed(i, EtcdEvent::LeaseEnded { why });
                    }
                    None => self.nodes[i].keeper = Some((k, e)),
                }
            }
            if self.now % ROUND == (i as u64 * 100) % ROUND {
                let h = self.height;
                let healthy = self.nodes[i].healthy;
                self.feed(
                    i,
                    EtcdEvent::LocalHealth(LocalHealth {
                        healthy,
                        latest_height: Some(h),
                        stalled: false,
                        why: None,
                        block_age: None,
                    }),
                );
                let last_signed = self.signed.last().copied();
                self.feed(
                    i,
                    EtcdEvent::Chain(ChainReport {
                        latest_height: h,
                        last_signed,
                        fastest_block: None,
                    }),
                );
                let view = self.view(i);
                self.feed(
                    i,
                    EtcdEvent::Lock {
                        asked_at: ms(self.now),
                        view,
                    },
                );
                if self.nodes[i].live.is_some() {
                    self.feed(
                        i,
                        EtcdEvent::StateSeen {
                            hrs: Hrs::new(h as i64, 0, Step::Precommit),
                        },
                    );
                }
            }
            let pending = std::mem::take(&mut self.nodes[i].pending);
            for e in pending {
                self.feed(i, e);
            }
            self.feed(i, EtcdEvent::Tick);
        }
    }

    fn apply(&mut self, f: Fault) {
        match f {
            Fault::Cut(i) => self.nodes[i].cut = true,
            Fault::Heal(i) => self.nodes[i].cut = false,
            Fault::Crash(i) => {
                // The host dies: its node (and key) with it. It stays down.
                let n = &mut self.nodes[i];
                n.alive = false;
                n.live = None;
                n.ops.clear();
                n.keeper = None;
            }
            Fault::Unhealthy(i) => self.nodes[i].healthy = false,
            Fault::Healthy(i) => self.nodes[i].healthy = true,
            Fault::Dark(i) => self.nodes[i].dark = true,
            Fault::Nothing => {}
        }
    }

    fn actives(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.alive && n.m.held_role() == Role::Active)
            .count()
    }
}

#[test]
fn coordination_machine_world_elects_one_and_fails_over_after_a_crash() {
    let mut w = World::new(400);
    for _ in 0..(10_000 / STEP) {
        w.step();
    }
    assert_eq!(w.actives(), 1);
    assert_eq!(w.nodes[0].m.held_role(), Role::Active, "priority 0 first");
    w.apply(Fault::Crash(0));
    for _ in 0..(15_000 / STEP) {
        w.step();
    }
    assert_eq!(w.nodes[1].m.held_role(), Role::Active, "then priority 1");
    assert!(w.activations.len() == 2 && w.activations[1] > w.activations[0]);
}

#[test]
fn coordination_machine_world_cut_active_fences_before_another_activates() {
    let mut w = World::new(900);
    for _ in 0..(10_000 / STEP) {
        w.step();
    }
    w.apply(Fault::Cut(0));
    for _ in 0..(15_000 / STEP) {
        w.step();
    }
    assert_eq!(w.nodes[0].m.role(), Role::Fenced);
    assert_eq!(w.nodes[1].m.held_role(), Role::Active);
    w.apply(Fault::Heal(0));
    for _ in 0..(5_000 / STEP) {
        w.step();
    }
    assert_eq!(w.nodes[0].m.role(), Role::Passive);
    assert_eq!(w.actives(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the order of cuts, heals, crashes and health changes: never two keys
    /// possibly live, never an Activate without the lock, epochs strictly increasing (all
    /// asserted inside the world), and with a node left uncut and healthy, an active at the
    /// end.
    #[test]
    fn coordination_machine_world_never_two_signers(
        faults in proptest::collection::vec((fault(), 1u64..80), 0..12),
        stop_ms in 50u64..900,
    ) {
        let mut w = World::new(stop_ms);
        for (f, steps) in faults {
            w.apply(f);
            for _ in 0..steps {
                w.step();
            }
        }
        for i in 0..3 {
            w.apply(Fault::Heal(i));
            w.apply(Fault::Healthy(i));
            w.nodes[i].dark = false;
        }
        for _ in 0..(20_000 / STEP) {
            w.step();
        }
        let alive = w.nodes.iter().filter(|n| n.alive).count();
        if alive > 0 {
            prop_assert_eq!(w.actives(), 1, "one active once the faults are over");
        }
    }
}
