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

// ---------------------------------------------------------------------------------------
// The operator's paths in etcd mode, on the core itself (the new vocabulary): what the
// three-daemon tests (`crates/syncguard/tests/etcd_operator.rs`) found.

mod operator_paths {
    use super::{lease_support, ms};
    use std::time::Duration;
    use syncguard_failover::{
        AcquireReport, Action, ActuatorResult, ChainReport, EtcdMachine, Event, LeaseParams,
        LocalHealth, LockHandover, LockHolder, LockRequest, LockState, LockView, NodeId,
        OperatorCommand, Params, PeerStatus, PromotionOrder, RequestKind, Role, Wish,
    };
    use syncguard_validator::{Hrs, Step};

    fn machine(id: &str, rank: usize) -> EtcdMachine {
        let params = Params {
            node_id: NodeId::new(id),
            peer_id: NodeId::new(""),
            is_primary_site: false,
            peer_is_primary_site: false,
            fallback_grace_period: Duration::from_secs(60),
            timing: lease_support::timing(ms(500)),
        };
        let lease = LeaseParams {
            priority: u32::try_from(rank).expect("rank"),
            rank,
            order: PromotionOrder::new(ms(1000), ms(500)).expect("order"),
        };
        EtcdMachine::etcd(params, lease).expect("params")
    }

    fn health(height: u64) -> Event {
        Event::LocalHealth(LocalHealth {
            healthy: true,
            latest_height: Some(height),
            stalled: false,
            why: None,
            block_age: None,
        })
    }

    fn chain(latest: u64, last_signed: Option<u64>) -> Event {
        Event::Chain(ChainReport {
            latest_height: latest,
            last_signed,
            fastest_block: None,
        })
    }

    /// Started and passive at `ms(20)`; `signing_seen`: the chain then shows the last
    /// holder signing (no late start pending).
    fn booted(id: &str, rank: usize, signing_seen: bool) -> EtcdMachine {
        let mut m = machine(id, rank);
        m.handle(
            Event::Start {
                wish: Wish::Passive,
                epoch_on_disk: 0,
                standby_right: Some(false),
            },
            ms(0),
        );
        m.handle(
            Event::Actuator(ActuatorResult::Deactivated { result: Ok(None) }),
            ms(10),
        );
        m.handle(health(90), ms(15));
        m.handle(chain(90, Some(80)), ms(20));
        if signing_seen {
            m.handle(chain(91, Some(91)), ms(30));
        }
        assert_eq!(m.held_role(), Role::Passive);
        m
    }

    fn member(id: &str, role: Role, height: u64) -> PeerStatus {
        PeerStatus {
            node_id: NodeId::new(id),
            role,
            paused: false,
            epoch: 7,
            healthy: true,
            latest_height: Some(height),
            is_primary_site: false,
            last_state: None,
            standby_right: false,
            wants_role: false,
        }
    }

    fn seen(st: LockState, at: Duration) -> Event {
        Event::Lock {
            asked_at: at,
            view: LockView::Seen(st),
        }
    }

    fn held_by(id: &str, epoch: u64, members: Vec<PeerStatus>) -> LockState {
        LockState {
            holder: Some(LockHolder {
                node_id: NodeId::new(id),
                epoch,
            }),
            members,
            ..LockState::default()
        }
    }

    fn asks_witness(a: &[Action]) -> bool {
        a.iter().any(|x| matches!(x, Action::RequestWitness { .. }))
    }

    /// When `m` first asks for a witness with the lock free, rounds of 500 ms from `from`.
    fn first_witness(m: &mut EtcdMachine, from: Duration) -> Duration {
        let mut now = from;
        for h in 100..140 {
            let mut a = m.handle(health(h), now);
            a.extend(m.handle(seen(LockState::default(), now), now));
            if asks_witness(&a) {
                return now;
            }
            now += ms(500);
        }
        panic!("no witness asked for: {}", m.last_why());
    }

    /// Found with three daemons starting together: every node waits for a late start after
    /// its boot (`Timing::settle`, longer than the promotion order's ranks), and the order
    /// was counted from the first sight of the free lock — so every rank's wait ended at the
    /// same instant, the end of the late-start wait, and whoever was fastest took the lock
    /// (node-2 as often as node-0). The order now counts from the end of that wait.
    #[test]
    fn coordination_machine_promotion_order_holds_after_the_late_start_wait() {
        let t0 = first_witness(&mut booted("n0", 0, false), ms(100));
        let t2 = first_witness(&mut booted("n2", 2, false), ms(100));
        let settle = lease_support::timing(ms(500)).settle;
        assert!(t0 >= settle, "rank 0 still waits for a late start: {t0:?}");
        assert!(
            t2 >= t0 + ms(1500),
            "rank 2 tries two steps after rank 0, not at the same time: {t0:?} vs {t2:?}"
        );
    }

    /// Found with three daemons: a node whose request for the role was answered (it holds
    /// the lock now) left the request in etcd until it expired; a later holder within that
    /// time would answer it again and hand the role straight back.
    #[test]
    fn coordination_machine_new_holder_withdraws_its_request() {
        let mut m = booted("n1", 1, true);
        let members = vec![
            member("n0", Role::Active, 100),
            member("n1", Role::Passive, 100),
        ];
        m.handle(health(100), ms(100));
        m.handle(seen(held_by("n0", 7, members), ms(100)), ms(100));
        let a = m.handle(
            Event::Operator(OperatorCommand::Switchover {
                to: NodeId::new("n1"),
            }),
            ms(200),
        );
        assert!(
            a.iter().any(|x| matches!(
                x,
                Action::PutRequest {
                    kind: RequestKind::Switchover,
                    for_node: None
                }
            )),
            "{a:?}"
        );
        // n0 stopped and handed the lock to n1.
        let ho = LockHandover {
            from: NodeId::new("n0"),
            to: NodeId::new("n1"),
            from_epoch: 7,
            final_state: Some(Hrs::new(100, 0, Step::Precommit)),
        };
        let st = LockState {
            handover: Some(ho.clone()),
            request: Some(LockRequest {
                from: NodeId::new("n1"),
                kind: RequestKind::Switchover,
            }),
            ..LockState::default()
        };
        m.handle(health(101), ms(600));
        let a = m.handle(seen(st, ms(600)), ms(600));
        assert!(
            a.iter().any(|x| matches!(x, Action::TryAcquire { .. })),
            "{a:?}"
        );
        let a = m.handle(
            Event::Acquire(AcquireReport::Acquired {
                epoch: 9,
                watermark: None,
                handover: Some(ho),
            }),
            ms(650),
        );
        assert!(
            a.iter().any(|x| matches!(x, Action::Activate { .. })),
            "{a:?}"
        );
        assert!(
            a.iter()
                .any(|x| matches!(x, Action::ClearRequest { from } if from.as_str() == "n1")),
            "the answered request is withdrawn: {a:?}"
        );
    }

    /// A switchover run on a third node (neither the holder nor the target) is passed on to
    /// the holder as a request for the target; the holder hands over to the target.
    #[test]
    fn coordination_machine_switchover_run_on_a_third_node_asks_the_holder_for_the_target() {
        let members = || {
            vec![
                member("n0", Role::Active, 100),
                member("n1", Role::Passive, 100),
                member("n2", Role::Passive, 100),
            ]
        };
        let mut m = booted("n2", 2, true);
        m.handle(health(100), ms(100));
        m.handle(seen(held_by("n0", 7, members()), ms(100)), ms(100));
        let to = NodeId::new("n1");
        assert_eq!(m.switchover_check(&to, ms(150)), Ok(()));
        let a = m.handle(
            Event::Operator(OperatorCommand::Switchover { to: to.clone() }),
            ms(200),
        );
        assert!(
            a.iter().any(|x| matches!(
                x,
                Action::PutRequest { kind: RequestKind::Switchover, for_node: Some(n) } if *n == to
            )),
            "{a:?}"
        );
        assert_eq!(m.held_role(), Role::Passive);
        // Not to the holder itself, nor to a node that cannot sign at once.
        let e = m.switchover_check(&NodeId::new("n0"), ms(250)).unwrap_err();
        assert!(e.contains("already holds the lock"), "{e}");
        let mut behind = members();
        behind[1].latest_height = Some(50);
        m.handle(seen(held_by("n0", 7, behind), ms(300)), ms(300));
        let e = m.switchover_check(&to, ms(350)).unwrap_err();
        assert!(e.contains("behind"), "{e}");
    }

    /// The watermark a passive sees in etcd is a state signed with the key: it is the state
    /// this node has seen (its `last_state`: the state lag `syncguard status` shows), and no
    /// fence of this node goes below it.
    #[test]
    fn coordination_machine_passive_keeps_the_watermark_it_sees() {
        let mut m = booted("n1", 1, true);
        let st = LockState {
            watermark: Some(Hrs::new(140, 0, Step::Precommit)),
            ..held_by("n0", 7, Vec::new())
        };
        m.handle(seen(st, ms(100)), ms(100));
        assert_eq!(
            m.peer_status().last_state,
            Some(Hrs::new(140, 0, Step::Precommit))
        );
    }

    /// Found reading the code after the three-daemon pause test: the look at the lock runs
    /// beside the write of the pause key, so a look read just before the write landed showed
    /// no pause and undid the operator's pause on the very node it was given on (a round
    /// later the next look paused it again). The pause stands until etcd shows it, or — a
    /// write that never landed — for as long as a write may take.
    #[test]
    fn coordination_machine_pause_is_not_undone_by_a_look_older_than_its_write() {
        let mut m = booted("n1", 1, true);
        let a = m.handle(Event::Operator(OperatorCommand::Pause), ms(100));
        assert!(
            a.iter()
                .any(|x| matches!(x, Action::SetPaused { paused: true })),
            "{a:?}"
        );
        // Asked after the command, read before the write landed: no pause in etcd yet.
        m.handle(seen(held_by("n0", 7, Vec::new()), ms(110)), ms(120));
        assert!(m.is_paused(), "{}", m.last_why());
        // etcd shows it: paused, and from then on etcd decides (another node's resume).
        let paused = LockState {
            paused_by: Some(NodeId::new("n1")),
            ..held_by("n0", 7, Vec::new())
        };
        m.handle(seen(paused, ms(600)), ms(600));
        assert!(m.is_paused());
        m.handle(seen(held_by("n0", 7, Vec::new()), ms(1100)), ms(1100));
        assert!(!m.is_paused(), "resumed by etcd: {}", m.last_why());
        // A pause whose write never lands: etcd decides once a write would have.
        m.handle(Event::Operator(OperatorCommand::Pause), ms(1200));
        let late = ms(1200) + lease_support::timing(ms(500)).handover_timeout + ms(100);
        let a = m.handle(seen(held_by("n0", 7, Vec::new()), late), late);
        assert!(!m.is_paused());
        assert!(
            a.iter().any(|x| matches!(
                x,
                Action::Record(r) if r.why.contains("was not stored in etcd")
            )),
            "{a:?}"
        );
    }
}
