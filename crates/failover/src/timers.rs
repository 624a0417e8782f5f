//! Named timers: every instant at which the core must look again although nothing
//! happened — a deadline, a wait that ends, news that ages out. The driver sleeps until
//! [`Timers::next`] (`Core::poll_timeout`) and calls `Core::handle_timeout`; no fixed-rate
//! tick.
//!
//! The table is derived from the core's state after every input (`Core::timers`), so a timer
//! can never be left armed for a state that is gone, nor forgotten when a state begins. Safety
//! never rests on a timer: health rounds and looks at the peer or the lock arrive every round
//! anyway; the timers make time-driven decisions happen on time instead of a round late.
//!
//! A timer fires at the **first instant** its decision may differ: for a wait that ends at
//! `t` (`now >= t`), `t` itself; for news that is news while at most `max` old
//! (`now − at <= max`), [`just_after`]`(at + max)` — at `at + max` it is still news, and a
//! wake-up there would change nothing and arm nothing after it.

use std::time::Duration;

/// The core's timers, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Timer {
    /// A handover offered, a claim, a request or an acquisition waits for its answer.
    AnswerDeadline,
    /// A failed stop is retried.
    RetryStop,
    /// A witness asked for, or the last answer, ages out (asked again).
    WitnessExpires,
    /// The operator's takeover stops being valid.
    TakeoverExpires,
    /// A wait of an unplanned promotion ends (window, late start, turn in the promotion order).
    WaitEnds,
    /// The last look at the peer or the lock stops being news.
    ContactAgesOut,
    /// The last health round stops being news.
    HealthAgesOut,
    /// The last chain report stops being news.
    ChainAgesOut,
    /// A peer seen promoting has taken longer than any activation can.
    PromotionOverdue,
    /// The primary site's grace period ends, or its request for the role may be repeated
    /// (fallback).
    GraceEnds,
    /// After a refused handover, the holder may offer the role again (its node unhealthy).
    BackoffEnds,
}

impl Timer {
    /// Every timer.
    pub const ALL: [Timer; 11] = [
        Timer::AnswerDeadline,
        Timer::RetryStop,
        Timer::WitnessExpires,
        Timer::TakeoverExpires,
        Timer::WaitEnds,
        Timer::ContactAgesOut,
        Timer::HealthAgesOut,
        Timer::ChainAgesOut,
        Timer::PromotionOverdue,
        Timer::GraceEnds,
        Timer::BackoffEnds,
    ];
}

/// The first instant after `t` (a condition `now > t` holds from there on).
pub(crate) fn just_after(t: Duration) -> Duration {
    t + Duration::from_nanos(1)
}

/// When each timer fires (`None`: not armed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timers {
    at: [Option<Duration>; Timer::ALL.len()],
    /// Instants at or before this are not armed (see [`Timers::after`]).
    after: Option<Duration>,
}

impl Timers {
    /// A table derived at `now`: an instant not after `now` was handled by the input that
    /// derived it and is not armed — so it can never mask a later instant of the same timer
    /// (two waits that end at different instants both arm `WaitEnds`).
    pub fn after(now: Duration) -> Timers {
        Timers {
            after: Some(now),
            ..Timers::default()
        }
    }

    /// Arms `timer` at `at` (the earliest wins when armed twice; an instant passed already
    /// is ignored in a table made by [`Timers::after`]).
    pub fn set(&mut self, timer: Timer, at: Duration) {
        if self.after.is_some_and(|now| at <= now) {
            return;
        }
        let slot = &mut self.at[timer as usize];
        *slot = Some(slot.map_or(at, |t| t.min(at)));
    }

    /// Arms `timer` at `at` when `at` is `Some`.
    pub fn set_opt(&mut self, timer: Timer, at: Option<Duration>) {
        if let Some(at) = at {
            self.set(timer, at);
        }
    }

    /// When `timer` fires, if armed.
    pub fn get(&self, timer: Timer) -> Option<Duration> {
        self.at[timer as usize]
    }

    /// The earliest armed timer strictly after `now` (an instant already passed has been
    /// handled by the input that derived the table), and its name.
    pub fn next_after(&self, now: Duration) -> Option<(Timer, Duration)> {
        Timer::ALL
            .iter()
            .filter_map(|&t| self.get(t).filter(|&at| at > now).map(|at| (t, at)))
            .min_by_key(|&(_, at)| at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn failover_timers_next_is_the_earliest_future_instant() {
        let mut t = Timers::default();
        assert_eq!(t.next_after(s(0)), None);
        t.set(Timer::WaitEnds, s(10));
        t.set(Timer::HealthAgesOut, s(4));
        t.set(Timer::AnswerDeadline, s(2));
        assert_eq!(t.next_after(s(0)), Some((Timer::AnswerDeadline, s(2))));
        // An instant already reached is not "next": the input that saw it handled it.
        assert_eq!(t.next_after(s(2)), Some((Timer::HealthAgesOut, s(4))));
        assert_eq!(t.next_after(s(10)), None);
    }

    #[test]
    fn failover_timers_a_passed_instant_never_masks_a_later_one() {
        // Two waits arm `WaitEnds`: one ended long ago (handled then), one ends at 10 s.
        let mut t = Timers::after(s(5));
        t.set(Timer::WaitEnds, s(4));
        t.set(Timer::WaitEnds, s(10));
        t.set(Timer::HealthAgesOut, s(5));
        assert_eq!(t.get(Timer::WaitEnds), Some(s(10)));
        assert_eq!(t.get(Timer::HealthAgesOut), None);
        assert_eq!(t.next_after(s(5)), Some((Timer::WaitEnds, s(10))));
    }

    #[test]
    fn failover_timers_armed_twice_keep_the_earliest() {
        let mut t = Timers::default();
        t.set(Timer::WaitEnds, s(10));
        t.set(Timer::WaitEnds, s(7));
        t.set(Timer::WaitEnds, s(9));
        assert_eq!(t.get(Timer::WaitEnds), Some(s(7)));
        t.set_opt(Timer::GraceEnds, None);
        assert_eq!(t.get(Timer::GraceEnds), None);
    }
}
