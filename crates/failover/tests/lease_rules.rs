//! The etcd-mode rules (the core over the lease arbiter) with simulated time: single-node
//! rules, and three nodes with one shared lock in the simulated world of `sim/` under
//! proptest (random cuts from etcd, crashes, heals). The single-node tests were the tests of
//! the etcd machine of its own; they run unchanged through `lease_support`, which speaks
//! that machine's old vocabulary.

mod lease_support;
mod sim;

use std::time::Duration;

use lease_support::*;
use proptest::prelude::*;
use sim::{Fault, SimConfig, World, FOREVER};
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
        recovering: false,
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

/// `booted`, and the last holder (n9) was seen reporting itself active at epoch 0: its
/// activation was verified, so nothing is pending from it — the promotion order alone counts.
fn booted_after_a_verified_holder(id: &str, prio: u32) -> EtcdMachine {
    use syncguard_failover::{Event, LockHolder, LockState, LockView as Core, NodeId, PeerStatus};
    let mut m = booted(id, prio, 0);
    let n9 = PeerStatus {
        node_id: NodeId::new("n9"),
        role: Role::Active,
        paused: false,
        epoch: 0,
        healthy: true,
        latest_height: Some(91),
        is_primary_site: false,
        last_state: None,
        standby_right: false,
        wants_role: false,
        peer_lost: false,
    };
    let st = LockState {
        holder: Some(LockHolder {
            node_id: NodeId::new("n9"),
            epoch: 0,
        }),
        members: vec![n9],
        ..LockState::default()
    };
    let view = Core::Seen(st);
    m.feed(
        Event::Lock {
            asked_at: ms(40),
            view,
        },
        ms(40),
    );
    m
}

#[test]
fn coordination_machine_passives_wait_in_priority_order() {
    // n0 (rank 0) asks for the witness within its jitter; n2 (rank 2) not before 2 s.
    let (_, t0) = to_witness(&mut booted_after_a_verified_holder("n0", 0), ms(0));
    let (_, t2) = to_witness(&mut booted_after_a_verified_holder("n2", 2), ms(0));
    assert!(t0 < ms(1000), "{t0:?}");
    assert!(t2 >= ms(2000), "{t2:?}");
}

/// A node booted with nothing on chain since: any holder may start late (settle).
fn booted_blind(id: &str, prio: u32) -> EtcdMachine {
    let mut m = EtcdMachine::new(params(id, prio));
    m.handle(EtcdEvent::Start { epoch_on_disk: 0 }, ms(0));
    m.handle(deactivated(), ms(10));
    m
}

#[test]
fn coordination_machine_passives_keep_their_order_after_a_late_start() {
    // Both wait for the same late start (from their boots); then still one step apart.
    let (_, t0) = to_witness(&mut booted_blind("n0", 0), ms(0));
    let (_, t2) = to_witness(&mut booted_blind("n2", 2), ms(0));
    assert!(t2 >= t0 + ms(1000), "n0 at {t0:?}, n2 at {t2:?}");
}

#[test]
fn coordination_machine_waits_for_a_late_start_after_being_blind_to_etcd() {
    // etcd unreachable for 5 s: a holder may have acquired, started and lost its lease
    // meanwhile, its activation still running (its votes may never reach the chain).
    let mut m = booted("n1", 1, 0);
    let mut now = ms(100);
    for h in 100..110 {
        m.handle(health(h), now);
        let cut = LockView::Unreachable {
            reason: "cut".into(),
        };
        m.handle(lock(now, cut), now);
        now += ms(500);
    }
    let back = now;
    let settle = m.core().params().timing.settle;
    let mut asked = None;
    for h in 110..140 {
        let mut a = m.handle(health(h), now);
        a.extend(m.handle(lock(now, LockView::Free), now));
        if has(&a, |x| {
            matches!(x, EtcdAction::Failover(Action::RequestWitness { .. }))
        }) {
            asked = Some(now);
            break;
        }
        now += ms(500);
    }
    let asked = asked.expect("a witness once the late start is excluded");
    assert!(
        asked >= back + settle,
        "asked at {asked:?}, back at {back:?}"
    );
}

#[test]
fn coordination_machine_answers_a_request_again_under_a_new_holding() {
    use syncguard_failover::{Event, LockHolder, LockRequest, LockState, NodeId, RequestKind};
    let seen = |epoch: u64, at: Duration| Event::Lock {
        asked_at: at,
        view: syncguard_failover::LockView::Seen(LockState {
            holder: Some(LockHolder {
                node_id: NodeId::new("n0"),
                epoch,
            }),
            request: Some(LockRequest {
                from: NodeId::new("n2"),
                kind: RequestKind::Fallback,
            }),
            ..LockState::default()
        }),
    };
    let declined = |a: &[Action]| {
        a.iter()
            .any(|x| matches!(x, Action::ClearRequest { from } if from.as_str() == "n2"))
    };
    let (mut m, now) = active("n0", 9);
    // n2 publishes no status: declined (its request stays if the withdrawal is lost).
    assert!(declined(&m.feed(seen(9, now), now)));
    // The lease ends; once stopped and the lock seen free, passive; then the lock again.
    let end = EtcdEvent::LeaseEnded {
        why: LeaseEnd::NotRenewed,
    };
    m.handle(end, now + ms(10));
    m.handle(deactivated(), now + ms(300));
    m.handle(lock(now + ms(400), LockView::Free), now + ms(400));
    assert_eq!(m.held_role(), Role::Passive);
    let (wid, t) = to_witness(&mut m, now + ms(500));
    m.handle(clean_witness(wid, 140), t);
    let got = AcquireReport::Acquired {
        epoch: 20,
        watermark: None,
    };
    m.handle(EtcdEvent::Acquire(got), t);
    m.handle(
        EtcdEvent::Actuator(ActuatorResult::Activated {
            epoch: 20,
            result: Ok(()),
            signed_at: None,
        }),
        t + ms(500),
    );
    assert_eq!(m.held_role(), Role::Active);
    // The same request, still there: a question to this holding too.
    let a = m.feed(seen(20, t + ms(600)), t + ms(600));
    assert!(declined(&a), "{a:?}");
}

// ---------------------------------------------------------------------------------------
// Three nodes, one etcd lock: the simulated world of `sim/` over the lease backend (the
// real LeaseKeeper per holder). Its checks — never an activation while another node's key
// may be live, only while holding the lock, epochs strictly increasing — end up in
// `World::violations`.

/// One step of the old world's clock.
const STEP: u64 = 50;

/// The old world's faults, each lasting until its opposite (or the end).
#[derive(Debug, Clone, Copy)]
enum LeaseFault {
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

impl LeaseFault {
    fn strike(self, w: &mut World) {
        match self {
            LeaseFault::Cut(node) => w.inject(Fault::Cut { node, ms: FOREVER }),
            LeaseFault::Heal(node) => w.reconnect(node),
            LeaseFault::Crash(node) => w.inject(Fault::Crash {
                node,
                down_ms: FOREVER,
            }),
            LeaseFault::Unhealthy(node) => w.inject(Fault::Sick { node, ms: FOREVER }),
            LeaseFault::Healthy(node) => w.recover(node),
            LeaseFault::Dark(node) => w.inject(Fault::Mute { node, ms: FOREVER }),
            LeaseFault::Nothing => {}
        }
    }
}

fn fault() -> impl Strategy<Value = LeaseFault> {
    prop_oneof![
        (0..3usize).prop_map(LeaseFault::Cut),
        (0..3usize).prop_map(LeaseFault::Heal),
        (0..3usize).prop_map(LeaseFault::Crash),
        (0..3usize).prop_map(LeaseFault::Unhealthy),
        (0..3usize).prop_map(LeaseFault::Healthy),
        (0..3usize).prop_map(LeaseFault::Dark),
        Just(LeaseFault::Nothing),
    ]
}

/// A calm three-node lease world whose actuator confirms a stop within `stop_ms`.
fn world(seed: u64, stop_ms: u64) -> World {
    World::new(SimConfig {
        max_stop_ms: stop_ms,
        ..SimConfig::lease_calm(seed, 3)
    })
}

fn assert_safe(w: &World) {
    assert!(
        w.violations.is_empty(),
        "{}\n{}",
        w.violations.join("\n"),
        w.trace_text()
    );
}

#[test]
fn coordination_machine_world_elects_one_and_fails_over_after_a_crash() {
    let mut w = world(1, 400);
    w.run_until(10_000);
    assert_eq!(w.actives(), 1);
    assert_eq!(w.node(0).held_role(), Role::Active, "priority 0 first");
    LeaseFault::Crash(0).strike(&mut w);
    w.run_until(25_000);
    assert_eq!(w.node(1).held_role(), Role::Active, "then priority 1");
    let activations: Vec<u64> = w.activations.iter().map(|&(_, _, e)| e).collect();
    assert!(activations.len() == 2 && activations[1] > activations[0]);
    assert_safe(&w);
}

#[test]
fn coordination_machine_world_cut_active_fences_before_another_activates() {
    // Which of n1 and n2 takes over here is a race in half the seeds: both wait for the
    // chain to show the cut active's signatures gone long enough, past both their turns.
    let mut w = world(0, 900);
    w.run_until(10_000);
    LeaseFault::Cut(0).strike(&mut w);
    w.run_until(25_000);
    assert_eq!(w.node(0).role(), Role::Fenced);
    let took = [1, 2].map(|i| w.node(i).held_role() == Role::Active);
    assert!(took[0] ^ took[1], "one of n1 and n2 took over: {took:?}");
    LeaseFault::Heal(0).strike(&mut w);
    w.run_until(30_000);
    assert_eq!(w.node(0).role(), Role::Passive);
    assert_eq!(w.actives(), 1);
    assert_safe(&w);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the order of cuts, heals, crashes and health changes: never two keys
    /// possibly live, never an Activate without the lock, epochs strictly increasing (all
    /// checked by the world), and with a node left uncut and healthy, an active at the
    /// end.
    #[test]
    fn coordination_machine_world_never_two_signers(
        seed in any::<u64>(),
        faults in proptest::collection::vec((fault(), 1u64..80), 0..12),
        stop_ms in 50u64..900,
    ) {
        let mut w = world(seed, stop_ms);
        for (f, steps) in faults {
            f.strike(&mut w);
            let until = w.now + steps * STEP;
            w.run_until(until);
        }
        w.quiet_now();
        let until = w.now + 20_000;
        w.run_until(until);
        prop_assert!(w.violations.is_empty(), "{}\n{}", w.violations.join("\n"), w.trace_text());
        let alive = w.nodes.iter().filter(|n| n.up).count();
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
            lease_ttl: Duration::from_secs(3),
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
            recovering: false,
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
            peer_lost: false,
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
