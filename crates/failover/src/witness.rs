//! S1's witness: the chain itself, asked before any promotion that does not rest on the old
//! holder's confirmed stop. [`WitnessView`] keeps the question in flight and the last answer;
//! [`WitnessView::state`] judges it. Only a report that read the whole span it asked for,
//! counted in **block time** (`Timing::clean_run_suffices`), fresh, and not from a chain that
//! went back since the question, makes a [`CleanWitness`] — and only this module can make one.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use syncguard_timing::Timing;

use crate::action::Action;
use crate::event::WitnessReport;
use crate::hold::Hold;

/// The evidence of absence a clean witness gives: no signature of the validator in
/// `lo..=hi`, a run long enough in blocks and in block time. Only [`WitnessView::state`]
/// makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanWitness {
    lo: u64,
    hi: u64,
}

impl CleanWitness {
    pub(crate) fn lo(self) -> u64 {
        self.lo
    }
    pub(crate) fn hi(self) -> u64 {
        self.hi
    }
}

#[derive(Debug)]
pub(crate) enum WitnessState {
    /// No fresh answer: ask.
    Missing,
    Clean(CleanWitness),
    Blocked(Hold),
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct WitnessView {
    pub(crate) pending: Option<PendingWitness>,
    pub(crate) last: Option<WitnessSeen>,
    next_id: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PendingWitness {
    pub(crate) id: u64,
    pub(crate) requested_at: Duration,
    height_at_request: Option<u64>,
    blocks: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct WitnessSeen {
    requested_at: Duration,
    latest_height: u64,
    /// The heights read without a signature, from the newest down to the first that is
    /// signed, unreadable or without a block time, with their block times; oldest first.
    clean: Vec<(u64, Duration)>,
    /// What ends the clean run below.
    stop: RunStop,
    signed: Vec<u64>,
    unknown: Vec<u64>,
    /// Heights of the window asked for, and how many of them were read.
    wanted: u64,
    read: usize,
}

/// Why a witness's clean run ends where it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum RunStop {
    /// A commit signed by the validator.
    Signed(u64),
    /// A commit that could not be read (or has no block time).
    Unknown(u64),
    /// The window asked for ends there (ask for more).
    WindowStart,
    /// The node's latest height went below what it was at the request.
    Regressed,
}

impl WitnessView {
    /// Asks the chain (one question at a time), reading as many commits as the block-time
    /// spans need at the fastest block interval seen — more when the last window was short.
    pub(crate) fn request(
        &mut self,
        t: &Timing,
        fastest: Option<Duration>,
        local_height: Option<u64>,
        now: Duration,
    ) -> Option<Action> {
        if self.pending.is_some() {
            return None;
        }
        self.next_id += 1;
        let id = self.next_id;
        let base = u64::from(t.witness_request_blocks(fastest));
        let blocks = match &self.last {
            Some(w) if w.stop == RunStop::WindowStart => {
                base.max(w.wanted.saturating_mul(2)).min(2_000)
            }
            _ => base,
        };
        self.pending = Some(PendingWitness {
            id,
            requested_at: now,
            height_at_request: local_height,
            blocks,
        });
        Some(Action::RequestWitness {
            id,
            blocks: u32::try_from(blocks).unwrap_or(u32::MAX),
        })
    }

    /// A question unanswered for more than a round is dropped (asked again).
    pub(crate) fn expire(&mut self, round: Duration, now: Duration) {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| now.saturating_sub(p.requested_at) > round)
        {
            self.pending = None;
        }
    }

    /// When the question in flight is dropped — or, with none in flight, when the last
    /// answer stops being fresh ([`WitnessView::state`] then asks again): the first instant
    /// more than a round after the question.
    pub(crate) fn expires_at(&self, round: Duration) -> Option<Duration> {
        let asked = match (&self.pending, &self.last) {
            (Some(p), _) => p.requested_at,
            (None, Some(w)) => w.requested_at,
            (None, None) => return None,
        };
        Some(crate::timers::just_after(asked + round))
    }

    /// Takes an answer to the question in flight (others are ignored). Returns the fastest
    /// block interval the clean run showed, for the next question's size.
    pub(crate) fn observe(&mut self, r: WitnessReport) -> Option<Duration> {
        let p = self.pending.take()?;
        if p.id != r.id {
            // An answer to an older request: not what was asked now.
            self.pending = Some(p);
            return None;
        }
        let times: HashMap<u64, u64> = r.block_times_ms.iter().copied().collect();
        let mut signed = r.signed.clone();
        signed.sort_unstable();
        signed.dedup();
        let wanted = p.blocks.min(r.latest_height);
        let lo = r
            .latest_height
            .saturating_sub(wanted.saturating_sub(1))
            .max(1);
        let mut clean = Vec::new();
        let mut stop = RunStop::WindowStart;
        // The report ends at the newest canonical commit, one below the node's latest height.
        if r.latest_height.saturating_add(1) < p.height_at_request.unwrap_or(0) {
            stop = RunStop::Regressed;
        } else {
            for h in (lo..=r.latest_height).rev() {
                if signed.binary_search(&h).is_ok() {
                    stop = RunStop::Signed(h);
                    break;
                }
                match times.get(&h) {
                    Some(&ms) if r.checked.contains(&h) && !r.unknown.contains(&h) => {
                        clean.push((h, Duration::from_millis(ms)));
                    }
                    _ => {
                        stop = RunStop::Unknown(h);
                        break;
                    }
                }
            }
        }
        clean.reverse();
        let fastest = clean
            .windows(2)
            .filter_map(|w| w[1].1.checked_sub(w[0].1))
            .filter(|d| !d.is_zero())
            .min();
        let read = (lo..=r.latest_height)
            .filter(|h| {
                (r.checked.contains(h) || r.signed.contains(h))
                    && !r.unknown.contains(h)
                    && times.contains_key(h)
            })
            .count();
        self.last = Some(WitnessSeen {
            requested_at: p.requested_at,
            latest_height: r.latest_height,
            clean,
            stop,
            signed,
            unknown: r.unknown,
            wanted,
            read,
        });
        fastest
    }

    /// The witness for a promotion whose wait ended at `not_before`: a fresh report (asked
    /// after `not_before`, at most one round old) whose newest commits form a clean run long
    /// enough in blocks and in block time that any node that may have signed before it has
    /// stopped. A signature below a long enough run does not block: that is the old holder's
    /// last one. `last_signed`, the validator's newest signature the own node's commits have
    /// shown since (the chain view): a report is only as new as its question, and a holder
    /// that started after it was asked is seen there first — at or above the run's first
    /// height, the run is not clean.
    pub(crate) fn state(
        &self,
        t: &Timing,
        now: Duration,
        not_before: Duration,
        last_signed: Option<u64>,
    ) -> WitnessState {
        let Some(w) = &self.last else {
            return WitnessState::Missing;
        };
        if w.requested_at < not_before || now.saturating_sub(w.requested_at) > t.round {
            return WitnessState::Missing;
        }
        let run_from = w
            .clean
            .first()
            .map_or(w.latest_height.saturating_add(1), |&(h, _)| h);
        if let Some(signed) = last_signed.filter(|&s| s >= run_from) {
            return WitnessState::Blocked(Hold::WitnessSigned {
                last: signed,
                latest: w.latest_height.max(signed),
                heights: vec![signed],
            });
        }
        let times: Vec<Duration> = w.clean.iter().map(|&(_, t)| t).collect();
        let short = match t.clean_run_suffices(&times) {
            Ok(()) => {
                let lo = w.clean.first().map_or(w.latest_height, |&(h, _)| h);
                return WitnessState::Clean(CleanWitness {
                    lo,
                    hi: w.latest_height,
                });
            }
            Err(short) => short,
        };
        WitnessState::Blocked(match w.stop {
            RunStop::Signed(last) => Hold::WitnessSigned {
                last,
                latest: w.latest_height,
                heights: w.signed.iter().copied().filter(|&h| h >= last).collect(),
            },
            RunStop::Unknown(_) | RunStop::Regressed => Hold::WitnessIncomplete {
                unknown: if w.unknown.is_empty() {
                    vec![w.latest_height]
                } else {
                    w.unknown.clone()
                },
                read: w.read,
                wanted: w.wanted,
            },
            RunStop::WindowStart => Hold::WitnessShort {
                clean: w.clean.len(),
                short: short.to_string(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        syncguard_timing::derive_lenient(&syncguard_timing::Inputs::new(
            Duration::from_secs(1),
            3,
            Duration::from_secs(1),
        ))
    }

    fn report(
        id: u64,
        latest: u64,
        n: u64,
        signed: &[u64],
        unknown: &[u64],
        ms_per: u64,
    ) -> WitnessReport {
        let lo = latest + 1 - n;
        WitnessReport {
            id,
            latest_height: latest,
            checked: (lo..=latest).filter(|h| !unknown.contains(h)).collect(),
            signed: signed.to_vec(),
            unknown: unknown.to_vec(),
            block_times_ms: (lo..=latest)
                .filter(|h| !unknown.contains(h))
                .map(|h| (h, h * ms_per))
                .collect(),
        }
    }

    fn asked(w: &mut WitnessView, t: &Timing) -> (u64, u64) {
        match w.request(t, None, Some(100), Duration::from_secs(1)) {
            Some(Action::RequestWitness { id, blocks }) => (id, u64::from(blocks)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failover_witness_clean_only_over_enough_block_time() {
        let t = timing();
        let mut w = WitnessView::default();
        let (id, n) = asked(&mut w, &t);
        assert!(
            w.request(&t, None, None, Duration::from_secs(1)).is_none(),
            "one at a time"
        );
        w.observe(report(id, 100, n, &[], &[], 1_000));
        assert!(matches!(
            w.state(&t, Duration::from_secs(1), Duration::ZERO, None),
            WitnessState::Clean(c) if c.hi() == 100
        ));
        // Stale a round later, and never for a wait that ended after the question.
        assert!(matches!(
            w.state(&t, Duration::from_secs(3), Duration::ZERO, None),
            WitnessState::Missing
        ));
        assert!(matches!(
            w.state(&t, Duration::from_secs(1), Duration::from_secs(2), None),
            WitnessState::Missing
        ));
        // The same count of clean blocks made fast is short: ask for more next time.
        let (id, n2) = asked(&mut w, &t);
        w.observe(report(id, 100, n2, &[], &[], 50));
        assert!(matches!(
            w.state(&t, Duration::from_secs(1), Duration::ZERO, None),
            WitnessState::Blocked(Hold::WitnessShort { .. })
        ));
        let (_, more) = asked(&mut w, &t);
        assert!(more > n2);
    }

    #[test]
    fn failover_witness_signed_or_unreadable_blocks() {
        let t = timing();
        let mut w = WitnessView::default();
        let (id, n) = asked(&mut w, &t);
        w.observe(report(id, 100, n, &[98], &[], 1_000));
        assert!(matches!(
            w.state(&t, Duration::from_secs(1), Duration::ZERO, None),
            WitnessState::Blocked(Hold::WitnessSigned { last: 98, .. })
        ));
        let (id, n) = asked(&mut w, &t);
        w.observe(report(id, 100, n, &[], &[99], 1_000));
        assert!(matches!(
            w.state(&t, Duration::from_secs(1), Duration::ZERO, None),
            WitnessState::Blocked(Hold::WitnessIncomplete { .. })
        ));
        // Clean as read, but the own node's commits have since shown a signature at or
        // above the run (a holder that started after the question): not clean.
        let (id, n) = asked(&mut w, &t);
        w.observe(report(id, 100, n, &[], &[], 1_000));
        let at = Duration::from_secs(1);
        assert!(matches!(
            w.state(&t, at, Duration::ZERO, Some(101)),
            WitnessState::Blocked(Hold::WitnessSigned { last: 101, .. })
        ));
        assert!(matches!(
            w.state(&t, at, Duration::ZERO, Some(100 - n + 1)),
            WitnessState::Blocked(Hold::WitnessSigned { .. })
        ));
        assert!(matches!(
            w.state(&t, at, Duration::ZERO, Some(100 - n)),
            WitnessState::Clean(_)
        ));
        // An answer to another question is ignored.
        let (id, n) = asked(&mut w, &t);
        w.observe(report(id + 9, 100, n, &[], &[], 1_000));
        assert!(w.pending.is_some());
    }
}
