//! The pure verdict with synthetic observations and a simulated clock, including the
//! hysteresis property.

mod common;

use std::time::SystemTime;

use common::*;
use proptest::prelude::*;
use syncguard_health::{
    evaluate, names, CheckStatus, DiskSeen, EvmSyncing, HealthParams, HealthState, NetInfo,
    ProbeError, RoundObservation, StateFileSeen, StateSyncSeen, Verdict,
};

/// Ways to fail a round; each makes at least one check Fail.
fn bad_observation(kind: u8, height: u64, now: SystemTime) -> RoundObservation {
    let mut o = good_observation(height, now);
    match kind % 7 {
        0 => o.status = Err(timeout_error("status")),
        1 => {
            if let Ok(s) = &mut o.status {
                s.catching_up = true;
            }
        }
        2 => o.net_info = Ok(NetInfo { n_peers: 0 }),
        3 => {
            o.evm.as_mut().expect("evm probed").syncing = Ok(EvmSyncing::Syncing {
                current_block: Some(1),
                highest_block: Some(2),
            })
        }
        4 => o.disk = DiskSeen::Free(10),
        5 => {
            o.evm.as_mut().expect("evm probed").block_number = Err(timeout_error("eth_blockNumber"))
        }
        _ => {
            // Everything unreachable at once.
            o.status = Err(timeout_error("status"));
            o.net_info = Err(timeout_error("net_info"));
            o.evm.as_mut().expect("evm probed").block_number =
                Err(timeout_error("eth_blockNumber"));
            o.evm.as_mut().expect("evm probed").syncing = Err(timeout_error("eth_syncing"));
            o.evm.as_mut().expect("evm probed").peer_count = Err(timeout_error("net_peerCount"));
            o.evm.as_mut().expect("evm probed").latest_block =
                Err(timeout_error("eth_getBlockByNumber"));
        }
    }
    o
}

/// The expected health after each round, stated without the tracker's counters: look at the
/// run of identical rounds ending here. A bad run of ≥ retry rounds means unhealthy, a good
/// run of ≥ recovery rounds means healthy, anything shorter keeps the health from before the
/// run began (not healthy at start).
fn expected_health(rounds: &[bool], retry: usize, recovery: usize) -> Vec<bool> {
    let mut out: Vec<bool> = Vec::with_capacity(rounds.len());
    for i in 0..rounds.len() {
        let good = rounds[i];
        let run = rounds[..=i]
            .iter()
            .rev()
            .take_while(|&&r| r == good)
            .count();
        let before = if i + 1 > run { out[i - run] } else { false };
        out.push(match good {
            true if run >= recovery => true,
            false if run >= retry => false,
            _ => before,
        });
    }
    out
}

fn run(params: &HealthParams, rounds: &[(bool, u8)]) -> Vec<syncguard_health::HealthReport> {
    let mut state = HealthState::new();
    let mut reports = Vec::new();
    for (i, (good, kind)) in rounds.iter().enumerate() {
        let now = t0() + secs(5 * (i as u64 + 1));
        // Heights grow every round, so a good round always shows growth.
        let height = 100 + i as u64;
        let obs = if *good {
            good_observation(height, now)
        } else {
            bad_observation(*kind, height, now)
        };
        let (next, report) = evaluate(params, state, &obs, now);
        state = next;
        assert_eq!(report.healthy, state.is_healthy());
        assert_eq!(report.verdict, state.verdict());
        reports.push(report);
    }
    reports
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn story_hysteresis_turns_exactly_at_retry_and_recovery_runs(
        retry in 1u32..6,
        recovery in 1u32..6,
        rounds in prop::collection::vec((any::<bool>(), any::<u8>()), 1..60),
    ) {
        let mut params = params();
        params.retry_attempts = retry;
        params.recovery_rounds = recovery;
        let reports = run(&params, &rounds);
        let goods: Vec<bool> = rounds.iter().map(|r| r.0).collect();
        let expected = expected_health(&goods, retry as usize, recovery as usize);
        let mut bad_run = 0u32;
        let mut good_run = 0u32;
        let mut healthy_before = false;
        let mut decided = false;
        for (i, r) in reports.iter().enumerate() {
            // A round fails exactly when it was built bad.
            prop_assert_eq!(r.round_failed, !goods[i], "round {}: {}", i, r.summary);
            if goods[i] { good_run += 1; bad_run = 0 } else { bad_run += 1; good_run = 0 }
            prop_assert_eq!(r.consecutive_failures, bad_run);
            prop_assert_eq!(r.consecutive_successes, good_run);
            prop_assert_eq!(r.healthy, expected[i], "round {}", i);
            // Transitions happen exactly when the run reaches the threshold.
            if healthy_before && !r.healthy {
                prop_assert_eq!(bad_run, retry);
            }
            if !healthy_before && r.healthy {
                prop_assert_eq!(good_run, recovery);
            }
            if healthy_before && bad_run == retry {
                prop_assert!(!r.healthy);
            }
            if !healthy_before && good_run == recovery {
                prop_assert!(r.healthy);
            }
            decided |= bad_run >= retry || good_run >= recovery;
            let verdict = match (r.healthy, decided) {
                (true, _) if bad_run == 0 => Verdict::Healthy,
                (true, _) => Verdict::Suspect,
                (false, false) => Verdict::Starting,
                (false, true) if good_run == 0 => Verdict::Unhealthy,
                (false, true) => Verdict::Recovering,
            };
            prop_assert_eq!(r.verdict, verdict);
            healthy_before = r.healthy;
        }
    }
}

#[test]
fn story_starts_unproven_and_a_failed_probe_never_keeps_a_good_verdict() {
    let p = params();
    let (s, r) = evaluate(&p, HealthState::new(), &good_observation(100, t0()), t0());
    assert_eq!(r.verdict, Verdict::Starting);
    assert!(!r.healthy, "healthy has to be earned");
    assert!(r.summary.contains("1 of 2 good rounds"), "{}", r.summary);
    let (s, r) = evaluate(
        &p,
        s,
        &good_observation(101, t0() + secs(5)),
        t0() + secs(5),
    );
    assert_eq!(r.verdict, Verdict::Healthy);

    // Every probe errs: the checks fail on this round's answers, whatever came before.
    let now = t0() + secs(10);
    let (s, r) = evaluate(&p, s, &bad_observation(6, 102, now), now);
    assert!(r.round_failed);
    assert_eq!(r.verdict, Verdict::Suspect);
    for c in r.checks.iter().filter(|c| !c.name.starts_with("system.")) {
        assert_ne!(c.status, CheckStatus::Ok, "{c:?} kept a stale Ok");
    }
    assert_eq!(r.check(names::EVM_PEERS).unwrap().status, CheckStatus::Fail);
    // Heights are remembered across the outage: growth resumes from 101.
    assert_eq!(s.last_comet_height(), Some(101));
    let now = now + secs(5);
    let (_, r) = evaluate(&p, s, &good_observation(103, now), now);
    assert_eq!(
        r.check(names::COMET_HEIGHT).unwrap().observed,
        "height 103 (+2)"
    );
    assert_eq!(r.verdict, Verdict::Healthy);
}

#[test]
fn story_starting_turns_unhealthy_after_retry_failures() {
    let p = params();
    let mut s = HealthState::new();
    let mut verdicts = Vec::new();
    for i in 0..3u64 {
        let now = t0() + secs(5 * i);
        let (next, r) = evaluate(&p, s, &bad_observation(0, 100, now), now);
        s = next;
        verdicts.push(r.verdict);
    }
    assert_eq!(
        verdicts,
        vec![Verdict::Starting, Verdict::Starting, Verdict::Unhealthy]
    );
    let now = t0() + secs(20);
    let (_, r) = evaluate(&p, s, &good_observation(101, now), now);
    assert_eq!(r.verdict, Verdict::Recovering);
    assert!(r.summary.contains("1 of 2"), "{}", r.summary);
}

#[test]
fn story_height_and_time_checks_with_simulated_now() {
    let p = params(); // stall bound 15 s
    assert_eq!(p.stall_bound, secs(15));
    let (s, _) = evaluate(&p, HealthState::new(), &good_observation(100, t0()), t0());
    // The node answers the same height and the same old block for a long time.
    let mut obs = good_observation(100, t0());
    let now = t0() + secs(16);
    let (s2, r) = evaluate(&p, s.clone(), &obs, now);
    assert_eq!(
        r.check(names::COMET_HEIGHT).unwrap().status,
        CheckStatus::Fail
    );
    assert_eq!(
        r.check(names::EVM_HEIGHT).unwrap().status,
        CheckStatus::Fail
    );
    let bt = r.check(names::COMET_BLOCK_TIME).unwrap();
    assert_eq!(bt.status, CheckStatus::Fail);
    assert_eq!(bt.threshold, "not older than 15s");
    assert!(bt.observed.starts_with("block 100 17s old"), "{bt:?}");
    // A height that goes back fails too, and becomes the new reference.
    obs = good_observation(90, now);
    let (s3, r) = evaluate(&p, s2, &obs, now);
    let c = r.check(names::COMET_HEIGHT).unwrap();
    assert_eq!(c.status, CheckStatus::Fail);
    assert!(c.reason.contains("went back from 100 to 90"), "{c:?}");
    assert_eq!(s3.last_comet_height(), Some(90));
    // A block time far in the future (bad clock) is a warning, not a failure.
    let mut obs = good_observation(91, now);
    if let Ok(st) = &mut obs.status {
        st.latest_block_time = Some(now + secs(60));
    }
    let (_, r) = evaluate(&p, s3, &obs, now);
    assert_eq!(
        r.check(names::COMET_BLOCK_TIME).unwrap().status,
        CheckStatus::Warn
    );
    // No block yet.
    let mut obs = good_observation(0, now);
    if let Ok(st) = &mut obs.status {
        st.latest_block_time = None;
    }
    let (_, r) = evaluate(&p, HealthState::new(), &obs, now);
    assert_eq!(
        r.check(names::COMET_BLOCK_TIME).unwrap().status,
        CheckStatus::Fail
    );
}

#[test]
fn story_system_checks_state_sync_and_disk() {
    let p = params(); // state sync every 5 s, lag reported beyond 3 × 5 s
    let now = t0() + secs(100);
    let check = |sync: StateSyncSeen, disk: DiskSeen| {
        let mut o = good_observation(100, now);
        o.state_sync = sync;
        o.disk = disk;
        let (_, r) = evaluate(&p, HealthState::new(), &o, now);
        (
            r.check(names::STATE_SYNC_LAG).unwrap().clone(),
            r.check(names::DISK_FREE).unwrap().clone(),
        )
    };
    let (lag, disk) = check(StateSyncSeen::NotExpected, DiskSeen::NotMeasured);
    assert_eq!(lag.status, CheckStatus::Unknown);
    assert_eq!(disk.status, CheckStatus::Unknown);
    let (lag, _) = check(StateSyncSeen::Last(now - secs(15)), DiskSeen::Free(1 << 30));
    assert_eq!(lag.status, CheckStatus::Ok, "{lag:?}");
    let (lag, _) = check(StateSyncSeen::Last(now - secs(16)), DiskSeen::Free(1 << 30));
    assert_eq!(lag.status, CheckStatus::Warn, "{lag:?}");
    assert_eq!(lag.observed, "last sync 16s ago");
    assert_eq!(lag.threshold, "last sync within 15s (3 × 5s)");
    let (lag, _) = check(
        StateSyncSeen::Never {
            expected_since: now - secs(3),
        },
        DiskSeen::Free(1 << 30),
    );
    assert_eq!(lag.status, CheckStatus::Ok);
    let (_, disk) = check(StateSyncSeen::NotExpected, DiskSeen::Free(1023));
    assert_eq!(disk.status, CheckStatus::Fail);
    let (_, disk) = check(
        StateSyncSeen::NotExpected,
        DiskSeen::Error("statvfs /x: permission denied".into()),
    );
    assert_eq!(disk.status, CheckStatus::Fail);
}

#[test]
fn story_unusable_state_file_fails_the_round_and_says_why() {
    let p = params();
    let now = t0() + secs(100);
    let mut o = good_observation(100, now);
    let (_, r) = evaluate(&p, HealthState::new(), &o, now);
    let ok = r.check(names::STATE_FILE).unwrap();
    assert_eq!(ok.status, CheckStatus::Ok);
    assert_eq!(ok.observed, "height 100 round 0 step 3");
    o.state_file = StateFileSeen::Invalid("not valid JSON at line 1 column 2".into());
    // retry_attempts bad rounds make the node unhealthy: a passive with a broken state file
    // never promotes, and says why.
    let mut st = HealthState::new();
    let mut report = None;
    for _ in 0..p.retry_attempts {
        let (next, r) = evaluate(&p, st, &o, now);
        st = next;
        report = Some(r);
    }
    let r = report.unwrap();
    assert!(!st.is_healthy());
    let bad = r.check(names::STATE_FILE).unwrap();
    assert_eq!(bad.status, CheckStatus::Fail);
    assert!(bad.reason.contains("not valid JSON"), "{}", bad.reason);
    assert!(
        bad.reason.contains("must not take the validator role"),
        "{}",
        bad.reason
    );
    o.state_file = StateFileSeen::NotMeasured;
    let (_, r) = evaluate(&p, HealthState::new(), &o, now);
    assert_eq!(
        r.check(names::STATE_FILE).unwrap().status,
        CheckStatus::Unknown
    );
}

#[test]
fn story_evm_peer_count_unknown_only_for_method_not_found() {
    let p = params();
    let mut o = good_observation(100, t0());
    o.evm.as_mut().expect("evm probed").peer_count = Err(ProbeError::MethodNotFound {
        url: "http://127.0.0.1:8545".into(),
        method: "net_peerCount".into(),
        code: -32601,
        message: "Method not found".into(),
    });
    let (_, r) = evaluate(&p, HealthState::new(), &o, t0());
    assert_eq!(
        r.check(names::EVM_PEERS).unwrap().status,
        CheckStatus::Unknown
    );
    assert!(!r.round_failed);
    o.evm.as_mut().expect("evm probed").peer_count = Err(timeout_error("net_peerCount"));
    let (_, r) = evaluate(&p, HealthState::new(), &o, t0());
    assert_eq!(r.check(names::EVM_PEERS).unwrap().status, CheckStatus::Fail);
}
