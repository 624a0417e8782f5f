//! The holder's lease under simulated time: for any pattern of delays, losses and a faster
//! etcd clock, the instant the holder's `LeaseKeeper` says fence is at least (almost) a safety
//! margin before the lease expires on etcd's side — the earliest instant any other node can
//! acquire. And with a healthy link the holder never fences.

use std::time::Duration;

use proptest::prelude::*;
use syncguard_coordination::{KeeperAction, LeaseKeeper, LeaseTiming};

/// One renewal attempt's fate.
#[derive(Debug, Clone, Copy)]
struct Fate {
    /// The request never reaches etcd.
    lost_up: bool,
    up: Duration,
    /// The answer never reaches the holder.
    lost_down: bool,
    down: Duration,
}

fn fate() -> impl Strategy<Value = Fate> {
    (
        prop::bool::weighted(0.3),
        0u64..6_000,
        prop::bool::weighted(0.3),
        0u64..6_000,
    )
        .prop_map(|(lost_up, up, lost_down, down)| Fate {
            lost_up,
            up: Duration::from_millis(up),
            lost_down,
            down: Duration::from_millis(down),
        })
}

struct Outcome {
    /// When the keeper said fence (None: it never did within the run).
    fenced_at: Option<Duration>,
    /// The lease's expiry on etcd's side at that instant (real time).
    expiry_then: Duration,
    renewals_ok: u32,
}

/// Runs the holder's loop as the daemon would: poll; on Renew send, bound the attempt by
/// `min(now + attempt_timeout, fence_at)`; report; poll again at every `Wait { until }`.
/// etcd handles a request at arrival: alive lease → expiry = arrival + ttl on its clock,
/// which runs `1 + drift` times faster than the holder's.
fn run(
    timing: LeaseTiming,
    drift: f64,
    attempt_timeout: Duration,
    fates: &[Fate],
    horizon: Duration,
) -> Outcome {
    let server_ttl = timing.ttl.div_f64(1.0 + drift);
    let acquired_at = Duration::from_secs(1);
    // The grant was handled some time after it was sent; take the worst case, at once.
    let mut expiry = acquired_at + server_ttl;
    let mut k = LeaseKeeper::acquired(timing, acquired_at, timing.ttl);
    let mut now = acquired_at;
    let mut next_fate = 0;
    let mut renewals_ok = 0;
    while now < horizon {
        match k.poll(now) {
            KeeperAction::Fence(_) => {
                return Outcome {
                    fenced_at: Some(now),
                    expiry_then: expiry,
                    renewals_ok,
                }
            }
            KeeperAction::Wait { until } => now = until.max(now),
            KeeperAction::Renew(ticket) => {
                let f = fates.get(next_fate).copied().unwrap_or(Fate {
                    lost_up: true,
                    up: Duration::ZERO,
                    lost_down: true,
                    down: Duration::ZERO,
                });
                next_fate += 1;
                let deadline = (now + attempt_timeout).min(k.fence_at());
                let mut answer = None;
                if !f.lost_up {
                    let arrival = now + f.up;
                    // Requests are handled in order; an arrival after expiry finds no lease.
                    let alive = arrival < expiry;
                    if alive {
                        expiry = expiry.max(arrival + server_ttl);
                    }
                    if !f.lost_down {
                        answer = Some((arrival + f.down, alive));
                    }
                }
                match answer {
                    Some((at, true)) if at <= deadline => {
                        now = at;
                        k.renewal_succeeded(ticket, now, timing.ttl);
                        renewals_ok += 1;
                    }
                    Some((at, false)) if at <= deadline => {
                        now = at;
                        k.lease_lost(now);
                    }
                    _ => {
                        now = deadline.max(now);
                        k.renewal_failed(ticket, now);
                    }
                }
            }
        }
    }
    Outcome {
        fenced_at: None,
        expiry_then: expiry,
        renewals_ok,
    }
}

fn timing_strategy() -> impl Strategy<Value = LeaseTiming> {
    (2_000u64..60_000, 0.05f64..0.66).prop_filter_map("valid timing", |(ttl, frac)| {
        let ttl = Duration::from_millis(ttl);
        LeaseTiming::new(ttl, ttl.mul_f64(frac)).ok()
    })
}

proptest! {
    // `coordination_holder_survives_losses_shorter_than_the_slack` rejects the timings whose
    // slack fits no burst (about a third of them): proptest's default of 1,024 rejects made it
    // fail on unlucky seeds (seen in CI), so the budget is raised.
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        max_global_rejects: 100_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn coordination_holder_fences_before_anybody_else_can_acquire(
        timing in timing_strategy(),
        drift in 0.0f64..0.01,
        attempt_ms in 50u64..5_000,
        fates in prop::collection::vec(fate(), 0..60),
    ) {
        let horizon = Duration::from_secs(3_600);
        let o = run(timing, drift, Duration::from_millis(attempt_ms), &fates, horizon);
        // Fates run out → every later attempt is lost → the keeper must fence.
        let fenced_at = o.fenced_at.expect("with every renewal lost, the holder fences");
        prop_assert!(fenced_at < o.expiry_then, "fenced at {fenced_at:?}, lease expired at {:?}", o.expiry_then);
        // And a real margin is left to stop `story` (less only the clock drift's share).
        let left = o.expiry_then - fenced_at;
        let drift_share = timing.ttl.mul_f64(drift);
        prop_assert!(left + drift_share >= timing.safety_margin,
            "only {left:?} left before expiry (margin {:?}, drift share {drift_share:?}, {} renewals)",
            timing.safety_margin, o.renewals_ok);
    }

    #[test]
    fn coordination_holder_never_fences_on_a_healthy_link(
        timing in timing_strategy(),
        drift in 0.0f64..0.01,
        delays in prop::collection::vec((0.0f64..1.0, 0.0f64..1.0), 200),
    ) {
        // Round trip below what the timing can absorb: renew at ttl/3 and be answered before
        // ttl − margin, and (one renewal in flight at a time) two round trips within ttl − margin.
        let slack = (timing.ttl - timing.renew_every - timing.safety_margin)
            .min((timing.ttl - timing.safety_margin) / 2);
        let fates: Vec<Fate> = delays.iter().map(|&(a, b)| Fate {
            lost_up: false,
            up: slack.mul_f64(a * 0.45),
            lost_down: false,
            down: slack.mul_f64(b * 0.45),
        }).collect();
        // 150 renewal periods: fewer than the fates, so none runs out.
        let horizon = Duration::from_secs(1) + timing.renew_every * 150;
        let o = run(timing, drift, slack, &fates, horizon);
        prop_assert!(o.fenced_at.is_none(), "fenced at {:?} after {} renewals", o.fenced_at, o.renewals_ok);
        // A cycle lasts max(ttl/3, round trip) < ttl/2: at least 100 renewals in 150 thirds.
        prop_assert!(o.renewals_ok >= 99, "{} renewals", o.renewals_ok);
    }

    #[test]
    fn coordination_holder_survives_losses_shorter_than_the_slack(
        timing in timing_strategy(),
        burst in 1usize..4,
    ) {
        // A burst of lost renewals right after a success: the retries every ttl/20 make it up
        // as long as the burst ends before the fence.
        let retries_fit = (timing.ttl - timing.renew_every - timing.safety_margin).as_nanos()
            / timing.retry_every.as_nanos();
        prop_assume!(burst as u128 + 1 < retries_fit);
        let lost = Fate { lost_up: true, up: Duration::ZERO, lost_down: true, down: Duration::ZERO };
        let ok = Fate { lost_up: false, up: Duration::ZERO, lost_down: false, down: Duration::ZERO };
        let mut fates = vec![ok];
        fates.extend(std::iter::repeat_n(lost, burst));
        fates.extend(std::iter::repeat_n(ok, 20));
        let horizon = Duration::from_secs(1) + timing.renew_every * 15;
        let o = run(timing, 0.0, Duration::from_millis(1), &fates, horizon);
        prop_assert!(o.fenced_at.is_none(), "fenced at {:?}", o.fenced_at);
    }
}
