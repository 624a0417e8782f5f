//! [`PromotionOrder`]: when several passives stand by, who tries to acquire first. Pure.
//!
//! A passive that has seen the holder's lease go waits `rank × step + jitter` before it tries
//! to acquire, where `rank` is the number of candidates ahead of it (lower
//! `failover_priority` first, the node id breaking ties) and the jitter is drawn from a seed
//! in `[0, jitter)`, with `jitter < step` so ranks never overlap. The lock stays the only
//! safety: the order only keeps the preferred node first and spares etcd a thundering herd.

use std::time::Duration;

use serde::Serialize;

use thiserror::Error;

/// The jitter of a promotion order would let ranks overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("promotion jitter {jitter:?} must be shorter than the step {step:?} between ranks")]
pub struct JitterNotBelowStep {
    /// The jitter.
    pub jitter: Duration,
    /// The step.
    pub step: Duration,
}

/// The spacing of the promotion order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PromotionOrder {
    step: Duration,
    jitter: Duration,
}

impl PromotionOrder {
    /// `jitter` must be shorter than `step`.
    pub fn new(step: Duration, jitter: Duration) -> Result<Self, JitterNotBelowStep> {
        if jitter >= step {
            return Err(JitterNotBelowStep { jitter, step });
        }
        Ok(PromotionOrder { step, jitter })
    }

    /// How many candidates come before `me` (`(failover_priority, node id)`). `me` itself in
    /// `candidates` is not counted.
    pub fn rank(me: (u32, &str), candidates: &[(u32, &str)]) -> usize {
        candidates.iter().filter(|&&c| c < me).count()
    }

    /// The wait before trying to acquire: `rank × step + jitter(seed)`.
    pub fn wait(&self, rank: usize, seed: u64) -> Duration {
        let rank = u32::try_from(rank).unwrap_or(u32::MAX);
        self.step.saturating_mul(rank) + self.jitter_for(seed)
    }

    /// The seeded jitter, uniform in `[0, jitter)`.
    pub fn jitter_for(&self, seed: u64) -> Duration {
        // 53 random bits as a fraction in [0, 1): never reaches 1, so never reaches `jitter`.
        let fraction = (splitmix64(seed) >> 11) as f64 / (1u64 << 53) as f64;
        let nanos = (self.jitter.as_nanos() as f64 * fraction) as u64;
        Duration::from_nanos(nanos).min(self.jitter.saturating_sub(Duration::from_nanos(1)))
    }
}

/// SplitMix64: a tiny, well-mixed generator (the seed is the node id's hash mixed with the
/// lost epoch, or anything the caller likes); no dependency for one number.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn failover_lease_order_ranks_by_priority_then_id() {
        let c = [(1, "b"), (0, "z"), (1, "a"), (2, "c")];
        assert_eq!(PromotionOrder::rank((0, "z"), &c), 0);
        assert_eq!(PromotionOrder::rank((1, "a"), &c), 1);
        assert_eq!(PromotionOrder::rank((1, "b"), &c), 2);
        assert_eq!(PromotionOrder::rank((2, "c"), &c), 3);
    }

    #[test]
    fn failover_lease_order_jitter_must_stay_below_the_step() {
        let s = Duration::from_secs(1);
        assert!(PromotionOrder::new(s, s).is_err());
        assert!(PromotionOrder::new(s, s / 2).is_ok());
    }

    proptest! {
        #[test]
        fn failover_lease_order_lower_rank_always_tries_first(
            step_ms in 1u64..10_000, jitter_frac in 0.0f64..1.0,
            r in 0usize..50, extra in 1usize..50, seed_a: u64, seed_b: u64,
        ) {
            let step = Duration::from_millis(step_ms);
            let o = PromotionOrder::new(step, step.mul_f64(jitter_frac)).unwrap();
            prop_assert!(o.wait(r, seed_a) < o.wait(r + extra, seed_b));
            prop_assert!(o.jitter_for(seed_a) < step);
        }

        #[test]
        fn failover_lease_order_jitter_is_a_function_of_the_seed(seed: u64) {
            let o = PromotionOrder::new(Duration::from_secs(2), Duration::from_secs(1)).unwrap();
            prop_assert_eq!(o.wait(3, seed), o.wait(3, seed));
        }
    }
}
