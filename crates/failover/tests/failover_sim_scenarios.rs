//! Scripted worlds through the same simulator as the property tests, over both backends:
//! readable stories, and a check that random worlds really exercise every path (so the
//! properties are not vacuous).

mod sim;

use sim::{Fault, Rng, SimConfig, World};
use syncguard_failover::{Role, Wish};

#[test]
fn failover_sim_crash_failover_return_and_fallback() {
    let mut cfg = SimConfig::calm(1, [Wish::Active, Wish::Passive]);
    cfg.faults = vec![(
        30_000,
        Fault::Crash {
            node: 0,
            down_ms: 30_000,
        },
    )];
    let mut w = World::new(cfg);
    w.run();
    assert!(
        w.violations.is_empty(),
        "{:?}\n{}",
        w.violations,
        w.trace_text()
    );
    // a takes the role at start, b after a's crash, a again after its grace period.
    let holders: Vec<usize> = w.activations.iter().map(|&(_, n, _)| n).collect();
    assert_eq!(holders, vec![0, 1, 0], "{}", w.trace_text());
    let epochs: Vec<u64> = w.activations.iter().map(|&(_, _, e)| e).collect();
    assert!(epochs.windows(2).all(|p| p[0] < p[1]));
    // b promoted within the timing model's crash decision (window, or the witness's clean
    // run in block time) + one round of the crash.
    let b_at = w.activations[1].0;
    let bound = sim::sim_timing().crash_decision().as_millis() as u64 + sim::ROUND_MS;
    assert!(
        b_at - 30_000 < bound,
        "b took {} ms (bound {bound} ms)",
        b_at - 30_000
    );
    assert_eq!(w.roles(), [Some(Role::Active), Some(Role::Passive)]);
    assert!(w.recently_signed(5));
}

#[test]
fn failover_sim_partition_of_the_active_fences_it_and_the_standby_takes_over() {
    // a is cut from b and from the chain at once (a whole-site partition) for 30 s.
    let mut cfg = SimConfig::calm(2, [Wish::Active, Wish::Passive]);
    cfg.faults = vec![
        (
            30_000,
            Fault::Cut {
                node: 0,
                ms: 30_000,
            },
        ),
        (
            30_000,
            Fault::Stall {
                node: 0,
                ms: 30_000,
            },
        ),
    ];
    let mut w = World::new(cfg);
    w.run();
    assert!(
        w.violations.is_empty(),
        "{:?}\n{}",
        w.violations,
        w.trace_text()
    );
    assert!(
        w.trace.iter().any(|l| l.contains("self-fencing")),
        "{}",
        w.trace_text()
    );
    assert!(
        w.activations
            .iter()
            .any(|&(t, n, _)| n == 1 && t > 30_000 && t < 45_000),
        "{}",
        w.trace_text()
    );
}

#[test]
fn failover_sim_chain_halt_moves_nothing() {
    let mut cfg = SimConfig::calm(3, [Wish::Active, Wish::Passive]);
    cfg.faults = vec![(30_000, Fault::Halt { ms: 30_000 })];
    let mut w = World::new(cfg);
    w.run();
    assert!(w.violations.is_empty());
    assert_eq!(w.activations.len(), 1, "{}", w.trace_text());
    assert!(!w
        .trace
        .iter()
        .any(|l| l.contains("DEACTIVATE") && !l.contains("starting")));
}

/// How many lines of the traces of `worlds` random worlds (from `next`) name each key.
fn reached<const N: usize>(
    mut next: impl FnMut() -> SimConfig,
    worlds: usize,
    keys: [&str; N],
) -> [usize; N] {
    let mut seen = [0usize; N];
    for _ in 0..worlds {
        let mut w = World::new(next());
        w.run();
        for l in &w.trace {
            for (i, k) in keys.iter().enumerate() {
                if l.contains(k) {
                    seen[i] += 1;
                }
            }
        }
    }
    seen
}

#[test]
fn failover_sim_random_worlds_exercise_every_path() {
    let mut r = Rng::new(7);
    let keys = [
        "ACTIVATE epoch",
        "Failover",
        "Claim",
        "Handover",
        "Resume",
        "self-fencing",
        "leaving fenced",
        "ACTIVATION FAILED",
        "COULD NOT STOP",
        "handover complete",
        "got no final answer",
        "DOUBLE SIGN",
    ];
    let seen = reached(|| SimConfig::random(&mut r), 400, keys);
    for (k, n) in keys.iter().zip(seen).take(11) {
        assert!(
            n > 0,
            "no random world reached `{k}`: {:?}",
            keys.iter().zip(seen).collect::<Vec<_>>()
        );
    }
    assert_eq!(seen[11], 0, "a double sign in the coverage worlds");
}

/// Metrics and alerts count records by tag: a crash failover, the fallback and a cut-off
/// active's self-fence each carry theirs, on the node where they happen.
#[test]
fn failover_sim_records_are_tagged_for_metrics_and_alerts() {
    use syncguard_failover::RecordTag as T;
    let mut cfg = SimConfig::calm(1, [Wish::Active, Wish::Passive]);
    cfg.faults = vec![(
        30_000,
        Fault::Crash {
            node: 0,
            down_ms: 30_000,
        },
    )];
    let mut w = World::new(cfg);
    w.run();
    let of = |n: usize| -> Vec<T> {
        w.tags
            .iter()
            .filter(|(m, t, _)| *m == n && *t != T::PromotionRefused)
            .map(|(_, t, _)| *t)
            .collect()
    };
    let b = of(1);
    let started = b.iter().position(|t| *t == T::FailoverStarted);
    let completed = b.iter().position(|t| *t == T::FailoverCompleted);
    assert!(
        matches!((started, completed), (Some(s), Some(c)) if s < c),
        "b: {b:?}\n{}",
        w.trace_text()
    );
    // The fallback to a is a planned handover: b hands over (demoted), a completes it.
    assert!(b.contains(&T::Demoted), "b: {b:?}");
    let a = of(0);
    assert!(a.contains(&T::SwitchoverStarted), "a: {a:?}");
    assert!(a.contains(&T::SwitchoverCompleted), "a: {a:?}");
    assert!(w
        .tags
        .iter()
        .any(|(_, t, r)| *t == T::FailoverStarted && r == "peer_lost"));

    // A whole-site partition of the active: it fences itself, reason `cut_off`.
    let mut cfg = SimConfig::calm(2, [Wish::Active, Wish::Passive]);
    cfg.faults = vec![
        (
            30_000,
            Fault::Cut {
                node: 0,
                ms: 30_000,
            },
        ),
        (
            30_000,
            Fault::Stall {
                node: 0,
                ms: 30_000,
            },
        ),
    ];
    let mut w = World::new(cfg);
    w.run();
    assert!(
        w.tags
            .iter()
            .any(|(n, t, r)| *n == 0 && *t == T::SelfFenced && r == "cut_off"),
        "{:?}",
        w.tags
    );
}

/// Under a lease, a switchover asked on the active or on the target goes through the lock;
/// a pause asked on any node pauses the cluster (nobody takes a free lock), and the resume
/// lets the order work again.
#[test]
fn failover_sim_lease_switchover_from_either_end_and_a_cluster_pause() {
    let mut w = World::new(SimConfig::lease_calm(4, 3));
    let safe = |w: &World| {
        assert!(
            w.violations.is_empty(),
            "{:?}\n{}",
            w.violations,
            w.trace_text()
        )
    };
    w.run_until(15_000);
    assert_eq!(w.node(0).held_role(), Role::Active, "{}", w.trace_text());
    // On the active: hand the role to n2.
    w.inject(Fault::Switchover { at: 0, to: 2 });
    w.run_until(25_000);
    assert_eq!(
        w.roles(),
        [Some(Role::Passive), Some(Role::Passive), Some(Role::Active)]
    );
    // On the target: n1 asks the holder for the role.
    w.inject(Fault::Switchover { at: 1, to: 1 });
    w.run_until(35_000);
    assert_eq!(w.node(1).held_role(), Role::Active, "{}", w.trace_text());
    let holders: Vec<usize> = w.activations.iter().map(|&(_, n, _)| n).collect();
    assert_eq!(holders, vec![0, 2, 1]);
    for from in ["n0", "n2"] {
        let handed = format!("Handover {{ from: NodeId(\"{from}\") }}");
        assert!(w.trace.iter().any(|l| l.contains(&handed)), "{handed}");
    }
    // Paused on n0 for 10 s: the cluster pauses; the holder dies; nobody takes the lock.
    w.inject(Fault::Pause {
        node: 0,
        ms: 10_000,
    });
    w.run_until(37_000);
    assert!((0..3).all(|i| w.node(i).is_paused()), "{:?}", w.roles());
    w.inject(Fault::Crash {
        node: 1,
        down_ms: sim::FOREVER,
    });
    w.run_until(45_000);
    assert_eq!(w.actives(), 0, "nobody takes the role while paused");
    w.run_until(60_000);
    assert_eq!(w.actives(), 1, "{}", w.trace_text());
    assert!(w.recently_signed(3));
    safe(&w);
}

#[test]
fn failover_sim_lease_random_worlds_exercise_every_path() {
    let mut r = Rng::new(7);
    let keys = [
        "ACTIVATE epoch",
        "Failover",
        "Handover",
        "ACQUIRED",
        "lease keeper stops",
        "fencing myself",
        "hands the lock",
        "the lock is handed",
        "passive again",
        "ACTIVATION FAILED",
        "COULD NOT STOP",
        "self-fencing",
        "declined",
        "did not confirm",
        "got no answer",
        "DOUBLE SIGN",
    ];
    let seen = reached(|| SimConfig::random_lease(&mut r, 3), 250, keys);
    for (k, n) in keys.iter().zip(seen).take(15) {
        assert!(
            n > 0,
            "no random lease world reached `{k}`: {:?}",
            keys.iter().zip(seen).collect::<Vec<_>>()
        );
    }
    assert_eq!(seen[15], 0, "a double sign in the coverage worlds");
}
