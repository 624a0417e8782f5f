//! [`LeaseKeeper`]: the holder's side of the lease, as pure logic with an explicit `now`.
//!
//! What the holder can **prove** about its lease: a keep-alive (or the grant) that succeeded
//! was handled by etcd no earlier than the instant the request was *sent*, and etcd then keeps
//! the lease for `ttl` from the moment it handled it. So the lease is alive on etcd's side at
//! least until `sent + ttl` — whatever happened to the answer (late, lost, duplicated). Nobody
//! else can create the leader key before the lease expires there. The holder fences itself at
//! `proven_until − safety_margin`; the margin covers the time to stop `story` and the rate
//! difference between the holder's clock and the etcd leader's.
//!
//! Defaults (`lease_ttl` 10 s, `safety_margin` 3 s): renew every 3.33 s (ttl/3); after a
//! failed renewal retry every 0.5 s (ttl/20); fence 7 s after the send instant of the last
//! renewal that succeeded; the earliest another node can acquire is 10 s after it.
//!
//! The time is any monotonic clock's offset from an origin the caller picks (a `Duration`),
//! like the failover machine's `now`.

use std::time::Duration;

use serde::Serialize;
use syncguard_config::EtcdConfig;

/// The lease timings, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LeaseTiming {
    /// `coordination.etcd.lease_ttl`.
    pub ttl: Duration,
    /// `coordination.etcd.safety_margin`: fence this long before the proven expiry.
    pub safety_margin: Duration,
    /// Renew this long after the send instant of the last successful renewal (ttl/3).
    pub renew_every: Duration,
    /// After a failed renewal, try again this long after the failure (ttl/20, at least 10 ms).
    pub retry_every: Duration,
}

/// Lease timings that cannot keep a holder safe and alive.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TimingError {
    /// A duration that must be positive and finite is not.
    #[error("{key}: {value} s must be a positive, finite number of seconds")]
    NotPositive {
        /// The config key.
        key: &'static str,
        /// The value given.
        value: f64,
    },
    /// The holder would fence before its first renewal could prove anything.
    #[error(
        "coordination.etcd.safety_margin: {margin:?} leaves no time to renew: it must be \
         shorter than lease_ttl − lease_ttl/3 ({limit:?}) so that the renewal at a third of \
         the lease comes before the fence"
    )]
    NoTimeToRenew {
        /// The margin given.
        margin: Duration,
        /// `ttl − ttl/3`.
        limit: Duration,
    },
    /// The jitter of the promotion order would let ranks overlap.
    #[error("promotion jitter {jitter:?} must be shorter than the step {step:?} between ranks")]
    JitterNotBelowStep {
        /// The jitter.
        jitter: Duration,
        /// The step.
        step: Duration,
    },
}

fn secs(key: &'static str, value: f64) -> Result<Duration, TimingError> {
    if value.is_finite() && value > 0.0 {
        Duration::try_from_secs_f64(value).map_err(|_| TimingError::NotPositive { key, value })
    } else {
        Err(TimingError::NotPositive { key, value })
    }
}

impl LeaseTiming {
    /// Checks `safety_margin` against `ttl` and derives the renewal cadence.
    pub fn new(ttl: Duration, safety_margin: Duration) -> Result<Self, TimingError> {
        if ttl.is_zero() {
            return Err(TimingError::NotPositive {
                key: "coordination.etcd.lease_ttl",
                value: 0.0,
            });
        }
        if safety_margin.is_zero() {
            return Err(TimingError::NotPositive {
                key: "coordination.etcd.safety_margin",
                value: 0.0,
            });
        }
        let renew_every = ttl / 3;
        let limit = ttl - renew_every;
        if safety_margin >= limit {
            return Err(TimingError::NoTimeToRenew {
                margin: safety_margin,
                limit,
            });
        }
        let retry_every = (ttl / 20).max(Duration::from_millis(10)).min(renew_every);
        Ok(LeaseTiming {
            ttl,
            safety_margin,
            renew_every,
            retry_every,
        })
    }

    /// From `coordination.etcd`.
    pub fn from_config(cfg: &EtcdConfig) -> Result<Self, TimingError> {
        LeaseTiming::new(
            secs("coordination.etcd.lease_ttl", cfg.lease_ttl)?,
            secs("coordination.etcd.safety_margin", cfg.safety_margin)?,
        )
    }
}

/// One renewal attempt, handed out by [`LeaseKeeper::poll`] when it answers
/// [`KeeperAction::Renew`]; give it back with the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RenewalTicket {
    /// The instant the request is (about to be) sent: the proof counts from here.
    pub sent_at: Duration,
    seq: u64,
}

/// Why the holder must fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum FenceReason {
    /// No renewal proved the lease beyond `fence_at` (etcd unreachable or too slow).
    NotRenewed {
        /// The instant the holder had to fence at.
        fence_at: Duration,
        /// Renewals that failed in a row.
        failures: u32,
    },
    /// etcd said the lease is gone.
    LeaseLost,
    /// The holder gave the lock up itself.
    Released,
}

/// What the holder's lease loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum KeeperAction {
    /// Send one keep-alive now and report the ticket back (bound the attempt by
    /// [`LeaseKeeper::fence_at`]: an answer after it is of no use).
    Renew(RenewalTicket),
    /// Nothing to do before `until` (unless an answer comes in).
    Wait {
        /// Poll again at the latest then.
        until: Duration,
    },
    /// Stop signing now (deactivate). Sticky: the keeper never leaves it; acquire anew.
    Fence(FenceReason),
}

/// The holder's lease, as far as the holder can prove it. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseKeeper {
    timing: LeaseTiming,
    /// min(configured ttl, ttl the backend granted): the proof never uses more than either.
    ttl: Duration,
    proven_until: Duration,
    next_attempt: Duration,
    in_flight: Option<RenewalTicket>,
    next_seq: u64,
    failures: u32,
    fenced: Option<FenceReason>,
    last_now: Duration,
}

impl LeaseKeeper {
    /// The lock was acquired by a request sent at `sent_at` (noted before calling
    /// [`crate::LockBackend::acquire`]) with a lease of `granted_ttl`.
    pub fn acquired(timing: LeaseTiming, sent_at: Duration, granted_ttl: Duration) -> Self {
        let ttl = timing.ttl.min(granted_ttl);
        LeaseKeeper {
            timing,
            ttl,
            proven_until: sent_at + ttl,
            next_attempt: sent_at + timing.renew_every,
            in_flight: None,
            next_seq: 0,
            failures: 0,
            fenced: None,
            last_now: sent_at,
        }
    }

    /// The instant the holder must be fenced by: `proven_until − safety_margin`.
    pub fn fence_at(&self) -> Duration {
        self.proven_until.saturating_sub(self.timing.safety_margin)
    }

    /// Until when the lease is proven alive on the backend's side (on this clock).
    pub fn proven_until(&self) -> Duration {
        self.proven_until
    }

    /// Whether the keeper has said fence (it never takes it back).
    pub fn fenced(&self) -> Option<FenceReason> {
        self.fenced
    }

    /// Renewals that failed in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The timings in force.
    pub fn timing(&self) -> &LeaseTiming {
        &self.timing
    }

    /// A `now` earlier than one already seen counts as the latest seen (monotonic clock).
    fn clock(&mut self, now: Duration) -> Duration {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    /// Latches the fence when `now` reached `fence_at`. Returns whether fenced.
    fn check_fence(&mut self, now: Duration) -> bool {
        if self.fenced.is_none() && now >= self.fence_at() {
            self.fenced = Some(FenceReason::NotRenewed {
                fence_at: self.fence_at(),
                failures: self.failures,
            });
        }
        self.fenced.is_some()
    }

    /// What to do at `now`. Call when a `Wait` runs out and after every report.
    pub fn poll(&mut self, now: Duration) -> KeeperAction {
        let now = self.clock(now);
        if self.check_fence(now) {
            return KeeperAction::Fence(self.fenced.unwrap_or(FenceReason::LeaseLost));
        }
        if self.in_flight.is_none() && now >= self.next_attempt {
            let ticket = RenewalTicket {
                sent_at: now,
                seq: self.next_seq,
            };
            self.next_seq += 1;
            self.in_flight = Some(ticket);
            return KeeperAction::Renew(ticket);
        }
        let until = if self.in_flight.is_some() {
            self.fence_at()
        } else {
            self.next_attempt.min(self.fence_at())
        };
        KeeperAction::Wait { until }
    }

    fn land(&mut self, ticket: RenewalTicket) {
        if self.in_flight.map(|t| t.seq) == Some(ticket.seq) {
            self.in_flight = None;
        }
    }

    /// The renewal of `ticket` succeeded at `now` and the lease has `granted_ttl` again.
    /// Ignored once fenced: an answer that comes after the fence instant proves nothing the
    /// holder can still use.
    pub fn renewal_succeeded(
        &mut self,
        ticket: RenewalTicket,
        now: Duration,
        granted_ttl: Duration,
    ) {
        let now = self.clock(now);
        self.land(ticket);
        if self.check_fence(now) {
            return;
        }
        self.ttl = self.ttl.min(granted_ttl);
        self.proven_until = self.proven_until.max(ticket.sent_at + self.ttl);
        self.next_attempt = self
            .next_attempt
            .max(ticket.sent_at + self.timing.renew_every);
        self.failures = 0;
    }

    /// The renewal of `ticket` failed or timed out at `now` (nothing known about whether it
    /// reached the backend). Retries after `retry_every`.
    pub fn renewal_failed(&mut self, ticket: RenewalTicket, now: Duration) {
        let now = self.clock(now);
        self.land(ticket);
        self.failures = self.failures.saturating_add(1);
        self.next_attempt = now + self.timing.retry_every;
        self.check_fence(now);
    }

    /// The backend said the lease is gone: fence now.
    pub fn lease_lost(&mut self, now: Duration) {
        self.clock(now);
        if self.fenced.is_none() {
            self.fenced = Some(FenceReason::LeaseLost);
        }
    }

    /// The holder released the lock itself (after deactivating).
    pub fn released(&mut self, now: Duration) {
        self.clock(now);
        if self.fenced.is_none() {
            self.fenced = Some(FenceReason::Released);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    fn defaults() -> LeaseTiming {
        LeaseTiming::from_config(&EtcdConfig::default()).expect("defaults are valid")
    }

    #[test]
    fn coordination_keeper_default_numbers() {
        let t = defaults();
        assert_eq!(t.ttl, s(10.0));
        assert_eq!(t.safety_margin, s(3.0));
        assert_eq!(t.renew_every, Duration::from_nanos(3_333_333_333));
        assert_eq!(t.retry_every, s(0.5));
        let k = LeaseKeeper::acquired(t, s(100.0), s(10.0));
        assert_eq!(k.fence_at(), s(107.0));
        assert_eq!(k.proven_until(), s(110.0));
    }

    #[test]
    fn coordination_keeper_refuses_margins_that_leave_no_time_to_renew() {
        let e = LeaseTiming::new(s(9.0), s(6.0)).unwrap_err();
        assert!(e.to_string().contains("safety_margin"), "{e}");
        assert!(LeaseTiming::new(s(9.0), s(5.9)).is_ok());
        assert!(LeaseTiming::new(s(9.0), Duration::ZERO).is_err());
        let cfg = EtcdConfig {
            lease_ttl: f64::NAN,
            ..EtcdConfig::default()
        };
        let e = LeaseTiming::from_config(&cfg).unwrap_err();
        assert!(e.to_string().contains("lease_ttl"), "{e}");
    }

    #[test]
    fn coordination_keeper_renews_at_a_third_and_proof_counts_from_the_send() {
        let mut k = LeaseKeeper::acquired(defaults(), s(0.0), s(10.0));
        assert_eq!(
            k.poll(s(1.0)),
            KeeperAction::Wait {
                until: Duration::from_nanos(3_333_333_333)
            }
        );
        let KeeperAction::Renew(t) = k.poll(s(3.4)) else {
            panic!("renewal due at ttl/3")
        };
        assert_eq!(t.sent_at, s(3.4));
        // Answer arrives 2 s later: the proof still counts from 3.4.
        k.renewal_succeeded(t, s(5.4), s(10.0));
        assert_eq!(k.proven_until(), s(13.4));
        assert_eq!(k.fence_at(), s(10.4));
    }

    #[test]
    fn coordination_keeper_fences_at_expiry_minus_margin_when_renewals_fail() {
        let mut k = LeaseKeeper::acquired(defaults(), s(0.0), s(10.0));
        let mut now = s(3.4);
        loop {
            match k.poll(now) {
                KeeperAction::Renew(t) => k.renewal_failed(t, now + s(0.1)),
                KeeperAction::Wait { until } => now = until,
                KeeperAction::Fence(FenceReason::NotRenewed { fence_at, failures }) => {
                    assert_eq!(fence_at, s(7.0));
                    assert!(now >= s(7.0) && now < s(7.0) + s(0.01), "{now:?}");
                    assert!(failures >= 5, "{failures}");
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        // Sticky: a late success changes nothing.
        let KeeperAction::Fence(_) = k.poll(s(7.5)) else {
            panic!("fence is sticky")
        };
    }

    #[test]
    fn coordination_keeper_late_answer_after_fence_instant_is_ignored() {
        let mut k = LeaseKeeper::acquired(defaults(), s(0.0), s(10.0));
        let KeeperAction::Renew(t) = k.poll(s(3.5)) else {
            panic!()
        };
        // The answer comes back after the fence instant (7 s): proves nothing usable.
        k.renewal_succeeded(t, s(7.2), s(10.0));
        assert!(matches!(k.poll(s(7.2)), KeeperAction::Fence(_)));
    }

    #[test]
    fn coordination_keeper_lease_lost_fences_at_once_and_a_smaller_grant_shortens_the_proof() {
        let mut k = LeaseKeeper::acquired(defaults(), s(0.0), s(6.0));
        assert_eq!(k.proven_until(), s(6.0));
        k.lease_lost(s(1.0));
        assert_eq!(k.poll(s(1.0)), KeeperAction::Fence(FenceReason::LeaseLost));
    }

    #[test]
    fn coordination_keeper_one_renewal_in_flight_at_a_time() {
        let mut k = LeaseKeeper::acquired(defaults(), s(0.0), s(10.0));
        let KeeperAction::Renew(_) = k.poll(s(4.0)) else {
            panic!()
        };
        assert_eq!(k.poll(s(4.5)), KeeperAction::Wait { until: s(7.0) });
    }
}
