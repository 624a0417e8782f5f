//! Is the validator signing? Read from the chain (the recent commits of the local CometBFT
//! node), not from the local process: the last height carrying the validator's signature and
//! how many newest commits in a row lack it. Shown by `/metrics`
//! (`syncguard_validator_last_signed_height`, `syncguard_validator_missed_blocks`), `/status`
//! and the status page. Observation only: no decision reads it (the failover machine has its
//! own witness, fetched when it needs one).
//!
//! [`advance`] is pure (the previous [`SigningSeen`] and one [`WitnessReport`] → the next);
//! [`spawn`] only fetches the window every interval and stores the result in the view.

use std::time::Duration;

use syncguard_health::{fetch_witness, CometClient, SignatureSeen, WitnessReport};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::view::{Shared, SigningSeen};

/// Commits read at each look. Enough to see a validator that signs only sometimes, few
/// enough to cost the node little (a look is one `/status` and this many `/commit`s).
pub const WINDOW: u64 = 20;

/// The next signing view from the previous one and a new window of commits (newest first).
///
/// - last signed: the newest signed height of the window, never below the one known before
///   (a window that no longer reaches back to it does not forget it);
/// - missed in a row: the Absent commits from the newest readable one down to the first
///   signed or unreadable one. Unreadable commits at the top (the node's newest commit
///   not served yet) are skipped; an unreadable one further down ends the run, since it
///   may hide a signature. A run covering the whole window continues the previous run
///   when the windows touch (nothing unseen between them); otherwise it is a lower bound.
/// - `None` for missed when no commit of the window could be read.
pub fn advance(previous: SigningSeen, report: &WitnessReport) -> SigningSeen {
    let last_signed = match (previous.validator_last_signed, report.last_signed_height()) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let readable = report
        .heights
        .iter()
        .skip_while(|h| matches!(h.seen, SignatureSeen::Unknown(_)));
    let mut run = 0u64;
    let mut any_read = false;
    let mut ended = false;
    for h in readable {
        match h.seen {
            SignatureSeen::Absent => {
                any_read = true;
                run += 1;
            }
            SignatureSeen::Signed => {
                any_read = true;
                ended = true;
                break;
            }
            SignatureSeen::Unknown(_) => {
                ended = true;
                break;
            }
        }
    }
    let oldest = report.heights.last().map(|h| h.height);
    let top_skipped = report
        .heights
        .iter()
        .take_while(|h| matches!(h.seen, SignatureSeen::Unknown(_)))
        .count();
    let missed = if !any_read {
        None
    } else if !ended && top_skipped == 0 {
        // The whole window is Absent: carry on the previous run if nothing lies between.
        match (
            previous.checked_height,
            previous.validator_missed_in_row,
            oldest,
        ) {
            (Some(prev_latest), Some(prev_missed), Some(oldest))
                if oldest <= prev_latest.saturating_add(1)
                    && report.latest_height >= prev_latest =>
            {
                Some((prev_missed + (report.latest_height - prev_latest)).max(run))
            }
            _ => Some(run),
        }
    } else {
        Some(run)
    };
    SigningSeen {
        validator_last_signed: last_signed,
        validator_missed_in_row: missed,
        checked_height: Some(report.latest_height),
    }
}

/// Every `interval`, reads the last [`WINDOW`] commits from `client` and stores what they say
/// about `address` (uppercase hex, as CometBFT writes it) in the view. Ends when `stop`
/// turns true (or its sender is dropped). A failed look changes nothing but the log: the
/// values shown stay the last known ones.
pub fn spawn(
    shared: Shared,
    client: CometClient,
    address: String,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                    continue;
                }
                _ = ticker.tick() => {}
            }
            match fetch_witness(&client, &address, WINDOW).await {
                Ok(report) => shared.update(|v| v.signing = advance(v.signing, &report)),
                Err(e) => tracing::debug!("signing monitor: no look at the chain this time: {e}"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use syncguard_health::HeightWitness;

    use super::*;

    /// A window ending at `latest`, newest first: 's' signed, 'a' absent, 'u' unknown.
    fn report(latest: u64, seen: &str) -> WitnessReport {
        WitnessReport {
            address: "ME".into(),
            latest_height: latest,
            heights: seen
                .chars()
                .enumerate()
                .map(|(i, c)| HeightWitness {
                    height: latest - i as u64,
                    seen: match c {
                        's' => SignatureSeen::Signed,
                        'a' => SignatureSeen::Absent,
                        _ => SignatureSeen::Unknown("not fetched".into()),
                    },
                })
                .collect(),
        }
    }

    fn seen(last: Option<u64>, missed: Option<u64>, checked: Option<u64>) -> SigningSeen {
        SigningSeen {
            validator_last_signed: last,
            validator_missed_in_row: missed,
            checked_height: checked,
        }
    }

    #[test]
    fn validator_signing_latest_signed_means_no_miss() {
        let s = advance(SigningSeen::default(), &report(100, "ssas"));
        assert_eq!(s, seen(Some(100), Some(0), Some(100)));
    }

    #[test]
    fn validator_signing_counts_the_newest_absent_run() {
        let s = advance(SigningSeen::default(), &report(100, "aaasaa"));
        assert_eq!(s, seen(Some(97), Some(3), Some(100)));
    }

    #[test]
    fn validator_signing_unreadable_newest_commits_are_skipped_but_a_gap_ends_the_run() {
        assert_eq!(
            advance(SigningSeen::default(), &report(100, "uaas")).validator_missed_in_row,
            Some(2)
        );
        assert_eq!(
            advance(SigningSeen::default(), &report(100, "aauaas")).validator_missed_in_row,
            Some(2)
        );
        assert_eq!(
            advance(SigningSeen::default(), &report(100, "uuuu")),
            seen(None, None, Some(100))
        );
    }

    #[test]
    fn validator_signing_all_absent_windows_that_touch_continue_the_run() {
        let first = advance(seen(Some(90), Some(0), Some(90)), &report(95, "aaaaa"));
        assert_eq!(first, seen(Some(90), Some(5), Some(95)));
        // The next window (96..=100) touches the last one (ended at 95): 5 more.
        let second = advance(first, &report(100, "aaaaa"));
        assert_eq!(second, seen(Some(90), Some(10), Some(100)));
        // Overlapping windows do not count a height twice.
        let third = advance(second, &report(102, "aaaaa"));
        assert_eq!(third.validator_missed_in_row, Some(12));
        // A gap (nothing read for 103..=110) leaves only what was seen: a lower bound.
        let fourth = advance(third, &report(115, "aaaaa"));
        assert_eq!(fourth.validator_missed_in_row, Some(5));
        // The last signed height is not forgotten when the window moves past it.
        assert_eq!(fourth.validator_last_signed, Some(90));
    }

    #[test]
    fn validator_signing_a_signature_resets_the_run() {
        let s = advance(seen(Some(80), Some(20), Some(100)), &report(105, "saaaa"));
        assert_eq!(s, seen(Some(105), Some(0), Some(105)));
    }

    proptest! {
        /// The run never exceeds the unseen span, and a signature in the window bounds it
        /// by the distance to the newest signed height.
        #[test]
        fn validator_signing_missed_is_bounded_by_the_last_signature(
            window in proptest::collection::vec(0u8..3, 1..30),
            extra in 0u64..50,
        ) {
            let latest = 1000 + extra;
            let text: String = window.iter().map(|c| ['s', 'a', 'u'][usize::from(*c)]).collect();
            let r = report(latest, &text);
            let s = advance(SigningSeen::default(), &r);
            if let Some(m) = s.validator_missed_in_row {
                prop_assert!(m <= window.len() as u64);
                if let Some(last) = r.last_signed_height() {
                    prop_assert!(m <= latest - last);
                }
            }
            prop_assert_eq!(s.validator_last_signed, r.last_signed_height());
        }
    }
}
