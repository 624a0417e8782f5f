use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The seed's `failover:` (5 s × 3) and `story.block_interval: 500`.
fn seed() -> Inputs {
    Inputs::new(ms(5_000), 3, ms(500))
}

#[test]
fn timing_seed_config_derives_without_errors_and_keeps_the_seed_window() {
    let t = derive(&seed()).expect("the seed's config derives");
    assert_eq!(t.window, ms(15_000), "the seed's window is I × R");
    assert_eq!(t.rpc_timeout, ms(2_000));
    assert_eq!(t.request_timeout, ms(2_000));
    assert_eq!(t.kill_timeout, ms(2_500));
    // min(15 − (5 + 2) − 2.5 − 2 × 0.15, 15 − watchdog (5 + 2 × 2 + 1)) − 1
    assert_eq!(t.watchdog, ms(10_000));
    assert_eq!(t.stop_timeout, ms(4_000));
    assert!(t.contact_lag + t.stop_bound + t.slack <= t.window);
}

#[test]
fn timing_a_short_interval_alone_gives_no_error_about_keys_never_written() {
    // The report: `failover.health_check_interval: 1` alone used to fail on health.rpc_timeout.
    let mut i = seed();
    i.health_check_interval = ms(1_000);
    let t = derive(&i).expect("derived values never produce an error");
    assert!(t.rpc_timeout < t.round);
    assert!(t.request_timeout < t.round);
}

#[test]
fn timing_an_explicit_rpc_timeout_not_shorter_than_the_round_names_both_keys_and_a_value() {
    let mut i = seed();
    i.health_check_interval = ms(1_000);
    i.rpc_timeout = Some(ms(2_000));
    let errors = derive(&i).expect_err("explicit and too long");
    assert_eq!(errors.len(), 1);
    let text = errors[0].to_string();
    assert_eq!(errors[0].key(), "health.rpc_timeout");
    assert!(text.contains("failover.health_check_interval"), "{text}");
    assert!(text.contains("at most 400 ms"), "{text}");
}

#[test]
fn timing_a_long_explicit_stop_stretches_the_window_instead_of_failing() {
    let mut i = seed();
    i.stop_timeout = Some(ms(30_000));
    let t = derive(&i).expect("a stop timeout is the operator's to set");
    assert_eq!(t.window, t.watchdog + t.stop_timeout + t.slack);
    assert!(t.window > ms(15_000));
}

#[test]
fn timing_explicit_margins_below_the_activation_are_errors_with_the_value_that_works() {
    let mut i = seed();
    i.handover_timeout = Some(ms(10_000));
    i.priority_margin = Some(ms(10_000));
    i.self_fence_timeout = Some(ms(600));
    let errors = derive(&i).expect_err("three explicit values too short");
    let keys: Vec<_> = errors.iter().map(TimingError::key).collect();
    assert_eq!(
        keys,
        [
            "failover.self_fence_timeout",
            "failover.handover_timeout",
            "failover.priority_margin"
        ]
    );
    let t = derive(&seed()).unwrap_or_else(|e| panic!("{e:?}"));
    let text = errors[1].to_string();
    assert!(
        text.contains(&Secs(ms_up(t.handover_timeout)).to_string()),
        "{text}"
    );
}

#[test]
fn timing_double_sign_check_height_lengthens_the_witness_and_the_activation() {
    let mut i = seed();
    let base = derive(&i).unwrap_or_else(|e| panic!("{e:?}"));
    i.double_sign_check_height = 40;
    let t = derive(&i).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(t.witness_blocks, 40);
    assert!(t.activation_bound > base.activation_bound);
    assert!(t.switchover_cost().0 >= base.switchover_cost().0 + 40);
}

#[test]
fn timing_clean_run_needs_both_spans_in_block_time() {
    let t = derive(&seed()).unwrap_or_else(|e| panic!("{e:?}"));
    // Blocks every 500 ms: enough of them to cover the stall span from the second block.
    let n = t.witness_request_blocks(None) as u64;
    let run: Vec<_> = (0..n).map(|k| ms(k * 500)).collect();
    assert_eq!(t.clean_run_suffices(&run), Ok(()));
    // The same number of blocks on a chain four times faster is not enough time.
    let fast: Vec<_> = (0..n).map(|k| ms(k * 125)).collect();
    assert!(matches!(
        t.clean_run_suffices(&fast),
        Err(RunShort::Span { .. })
    ));
    // Asking for blocks at the fastest rate seen covers it.
    let m = t.witness_request_blocks(Some(ms(125))) as u64;
    let fast: Vec<_> = (0..m).map(|k| ms(k * 125)).collect();
    assert_eq!(t.clean_run_suffices(&fast), Ok(()));
    assert!(matches!(
        t.clean_run_suffices(&run[..3]),
        Err(RunShort::Blocks { .. })
    ));
}

#[test]
fn timing_guarantees_are_sentences_with_numbers() {
    let t = derive(&seed()).unwrap_or_else(|e| panic!("{e:?}"));
    let g = t.guarantees();
    assert_eq!(g.len(), 5);
    assert!(
        g[0].starts_with("a crashed active is replaced within "),
        "{}",
        g[0]
    );
    assert!(
        g[1].contains("always before its peer may start"),
        "{}",
        g[1]
    );
    assert!(
        g[2].starts_with("a planned switchover misses the blocks of the target's restart"),
        "{}",
        g[2]
    );
    assert_eq!(t.rows().len(), 22);
}

#[test]
fn timing_words() {
    assert_eq!(words(ms(300)), "300 ms");
    assert_eq!(words(ms(2_500)), "2.5 s");
    assert_eq!(words(ms(15_000)), "15 s");
    assert_eq!(words(ms(125_000)), "2 min 5 s");
    assert_eq!(words(ms(120_000)), "2 min");
}

fn inputs() -> impl Strategy<Value = Inputs> {
    (
        100u64..20_000,
        1u32..10,
        50u64..10_000,
        prop::option::of(100u64..60_000),
        prop::option::of(100u64..10_000),
        prop::option::of(100u64..120_000),
        1u32..20,
        0u64..50,
    )
        .prop_map(|(i, r, b, stop, kill, start, v, n)| {
            let mut x = Inputs::new(ms(i), r, ms(b));
            x.stop_timeout = stop.map(ms);
            x.kill_timeout = kill.map(ms);
            x.start_timeout = start.map(ms);
            x.verify_blocks = v;
            x.double_sign_check_height = n;
            x
        })
}

proptest! {
    /// Whatever the operator sets, the derived values satisfy every inequality of the model.
    #[test]
    fn timing_inequalities_hold_by_construction(i in inputs()) {
        let t = derive(&i).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        // Cut off: the active's stop is confirmed before the window ends.
        prop_assert!(t.contact_lag + t.stop_bound + t.slack <= t.window);
        prop_assert!(t.window >= t.detection_window);
        // Rounds never overlap.
        prop_assert!(t.rpc_timeout < t.round);
        prop_assert!(t.request_timeout < t.round);
        // Stalled later: detection + stop inside the span the witness needs.
        prop_assert!(t.observe_lag + t.stall_age + t.stop_bound < t.witness_span_stall);
        // Silent later: detection + stop inside the span after the quiet blocks.
        prop_assert!(t.observe_lag + t.stop_bound < t.witness_span_silent);
        // A new holder either signs or has rolled back by the end of the settle wait.
        prop_assert!(t.request_timeout + t.activation_bound < t.settle);
        prop_assert!(t.activation_bound < t.handover_timeout);
        // A hung daemon is killed and story stopped before a peer may start.
        prop_assert!(t.watchdog + t.story_timeout_stop + t.slack <= t.window);
        prop_assert!(t.watchdog > t.round + t.rpc_timeout * 2);
        prop_assert!(t.witness_blocks as u64 >= i.double_sign_check_height);
    }
}
