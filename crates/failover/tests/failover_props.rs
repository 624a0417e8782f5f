//! Property tests: two machines driven in lockstep through a simulated world (see
//! `sim/mod.rs`). Safety (no double sign, epochs increasing, no promotion on a dirty
//! witness, fences never below a seen state) is checked on every run; liveness (one active,
//! signing) once the faults stop.

mod sim;

use proptest::prelude::*;
use sim::{Fault, SimConfig, World};
use syncguard_failover::{Role, Wish};

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        3 => (0usize..2, 500u64..20_000).prop_map(|(node, down_ms)| Fault::Crash { node, down_ms }),
        3 => (500u64..20_000).prop_map(|ms| Fault::CutLink { ms }),
        2 => (0usize..2, 500u64..15_000).prop_map(|(node, ms)| Fault::Stall { node, ms }),
        1 => (500u64..10_000).prop_map(|ms| Fault::Halt { ms }),
        2 => (0usize..2, 1_000u64..15_000).prop_map(|(node, ms)| Fault::Sick { node, ms }),
        1 => (0usize..2, 0usize..2).prop_map(|(at, to)| Fault::Switchover { at, to }),
        1 => (0usize..2, 1_000u64..15_000).prop_map(|(node, ms)| Fault::Pause { node, ms }),
        2 => (0usize..2, 500u64..10_000).prop_map(|(node, ms)| Fault::StoryCrash { node, ms }),
        1 => (0usize..2).prop_map(|node| Fault::DaemonRestart { node }),
        2 => (0usize..2, 1_000u64..20_000).prop_map(|(node, ms)| Fault::Mute { node, ms }),
    ]
}

fn wish() -> impl Strategy<Value = Wish> {
    prop_oneof![Just(Wish::Active), Just(Wish::Passive)]
}

fn config() -> impl Strategy<Value = SimConfig> {
    (
        any::<u64>(),
        [wish(), wish()],
        prop::bool::weighted(0.8),
        (0.0f64..0.2, 0.0f64..0.05),
        (0.0f64..0.2, 0.0f64..0.1),
        prop::collection::vec((0u64..60_000, fault()), 0..8),
        prop_oneof![Just(300u64), Just(1_500u64)],
        (prop::bool::weighted(0.3), 100u64..=sim::START_MS),
    )
        .prop_map(
            |(
                seed,
                wishes,
                link_up_at_start,
                (loss, dup),
                (act_fail, deact_fail),
                faults,
                max_delay_ms,
                (fast_chain, max_start_delay_ms),
            )| {
                SimConfig {
                    seed,
                    wishes,
                    link_up_at_start,
                    loss,
                    dup,
                    act_fail,
                    deact_fail,
                    faults,
                    quiet_at_ms: 80_000,
                    end_ms: 150_000,
                    max_delay_ms,
                    fast_chain,
                    max_start_delay_ms,
                }
            },
        )
}

/// Cases per property. The properties together run ~3,100 simulated worlds of 150 s each in
/// a few seconds (a few ms per world in a debug build).
const CASES: u32 = 1_500;
const FOCUSED_CASES: u32 = 400;

fn check_safety(w: &World) -> Result<(), TestCaseError> {
    prop_assert!(
        w.violations.is_empty(),
        "violations:\n{}\n--- trace ---\n{}",
        w.violations.join("\n"),
        w.trace_text()
    );
    Ok(())
}

fn check_recovery(w: &World) -> Result<(), TestCaseError> {
    let roles = w.roles();
    let actives = roles.iter().filter(|r| **r == Some(Role::Active)).count();
    prop_assert_eq!(
        actives,
        1,
        "after the faults stopped: roles {:?}\n--- trace ---\n{}",
        roles,
        w.trace_text()
    );
    prop_assert!(
        w.recently_signed(3),
        "the validator is not signing at the end; roles {:?}\n--- trace ---\n{}",
        roles,
        w.trace_text()
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// S1/S3 over random worlds: crashes, cut links, stalls, halts, sickness, pauses,
    /// switchovers, message loss and duplicates, actuator failures — never a double sign,
    /// and one active again once the faults stop.
    #[test]
    fn double_sign_never_in_random_worlds(cfg in config()) {
        let mut w = World::new(cfg);
        w.run();
        check_safety(&w)?;
        check_recovery(&w)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: FOCUSED_CASES, ..ProptestConfig::default() })]

    /// Both nodes started with `--role active` while they cannot see each other: exactly
    /// one takes the role, and no height is signed twice.
    #[test]
    fn double_sign_never_when_both_start_active_blind(seed in any::<u64>(), faults in prop::collection::vec((0u64..60_000, fault()), 0..3)) {
        let cfg = SimConfig {
            seed,
            wishes: [Wish::Active, Wish::Active],
            link_up_at_start: false,
            loss: 0.05,
            dup: 0.01,
            act_fail: 0.0,
            deact_fail: 0.0,
            faults,
            quiet_at_ms: 80_000,
            end_ms: 150_000,
            max_delay_ms: 300,
            fast_chain: false,
            max_start_delay_ms: sim::START_MS,
        };
        let mut w = World::new(cfg);
        w.run();
        check_safety(&w)?;
        check_recovery(&w)?;
    }

    /// The main path: the active's host dies (at a random time, for a random while, with or
    /// without a cut link); the standby takes over and nothing is signed twice.
    #[test]
    fn failover_crash_of_active_recovers(seed in any::<u64>(), at in 20_000u64..40_000, down in 1_000u64..60_000, cut in prop::option::of(1_000u64..30_000)) {
        let mut faults = vec![(at, Fault::Crash { node: 0, down_ms: down })];
        if let Some(ms) = cut {
            faults.push((at.saturating_sub(500), Fault::CutLink { ms }));
        }
        let cfg = SimConfig {
            seed,
            wishes: [Wish::Active, Wish::Passive],
            link_up_at_start: true,
            loss: 0.0,
            dup: 0.0,
            act_fail: 0.0,
            deact_fail: 0.0,
            faults,
            quiet_at_ms: 100_000,
            end_ms: 150_000,
            max_delay_ms: 300,
            fast_chain: false,
            max_start_delay_ms: sim::START_MS,
        };
        let mut w = World::new(cfg);
        w.run();
        check_safety(&w)?;
        check_recovery(&w)?;
        // The standby took over while the primary was down (when it was down long enough).
        if down > 20_000 {
            let by_b = w.activations.iter().any(|&(t, n, _)| n == 1 && t > at && t < at + down);
            prop_assert!(by_b, "b never took over while a was down\n{}", w.trace_text());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: FOCUSED_CASES * 2, ..ProptestConfig::default() })]

    /// The asymmetric cut: the active's node follows the chain and keeps voting, but its votes
    /// never reach a commit — before or after the link between the two SyncGuards is lost, in
    /// either order, on a chain running at the configured rate or faster, with `story`
    /// starting up to its start timeout late. The silent active must stop itself before its
    /// peer may start: never a double sign, and the standby takes over.
    #[test]
    fn double_sign_never_when_the_active_is_silenced(
        seed in any::<u64>(),
        mute_at in 20_000u64..40_000,
        link_after in -15_000i64..15_000,
        mute_ms in 5_000u64..40_000,
        cut_ms in 5_000u64..40_000,
        fast_chain in any::<bool>(),
        max_start_delay_ms in 100u64..=sim::START_MS,
        extra in prop::collection::vec((0u64..60_000, fault()), 0..3),
    ) {
        let cut_at = u64::try_from(i64::try_from(mute_at).unwrap_or(0) + link_after).unwrap_or(0);
        let mut faults = vec![
            (mute_at, Fault::Mute { node: 0, ms: mute_ms }),
            (cut_at, Fault::CutLink { ms: cut_ms }),
        ];
        faults.extend(extra);
        let cfg = SimConfig {
            seed,
            wishes: [Wish::Active, Wish::Passive],
            link_up_at_start: true,
            loss: 0.0,
            dup: 0.0,
            act_fail: 0.0,
            deact_fail: 0.0,
            faults,
            quiet_at_ms: 100_000,
            end_ms: 170_000,
            max_delay_ms: 300,
            fast_chain,
            max_start_delay_ms,
        };
        let mut w = World::new(cfg);
        w.run();
        check_safety(&w)?;
        check_recovery(&w)?;
    }

    /// A crash soon after any change of holder (a switchover, with `story` starting up to its
    /// start timeout late, the link possibly lost in the middle of the activation): never a
    /// double sign, and the crash is recovered.
    #[test]
    fn double_sign_never_after_a_change_of_holder(
        seed in any::<u64>(),
        switch_at in 20_000u64..30_000,
        crash_after in 0u64..15_000,
        cut in prop::option::of((0u64..8_000, 1_000u64..20_000)),
        max_start_delay_ms in 100u64..=sim::START_MS,
        fast_chain in any::<bool>(),
    ) {
        let mut faults = vec![
            (switch_at, Fault::Switchover { at: 0, to: 1 }),
            (switch_at + crash_after, Fault::Crash { node: 1, down_ms: 60_000 }),
        ];
        if let Some((after, ms)) = cut {
            faults.push((switch_at + after, Fault::CutLink { ms }));
        }
        let cfg = SimConfig {
            seed,
            wishes: [Wish::Active, Wish::Passive],
            link_up_at_start: true,
            loss: 0.0,
            dup: 0.0,
            act_fail: 0.0,
            deact_fail: 0.0,
            faults,
            quiet_at_ms: 100_000,
            end_ms: 170_000,
            max_delay_ms: 300,
            fast_chain,
            max_start_delay_ms,
        };
        let mut w = World::new(cfg);
        w.run();
        check_safety(&w)?;
        check_recovery(&w)?;
    }
}
