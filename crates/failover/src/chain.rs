//! The chain as the own node's commits show it, every round: [`ChainView`] — the
//! validator's last signature, the fastest block interval seen — and the two judgements
//! that rest on it:
//!
//! - **S4, quiet** ([`quiet`]): an active whose node follows no chain, or whose signatures
//!   no longer reach the commits (an asymmetric cut), must stop when it also lost contact;
//! - **the late start** ([`LateStart`]): after a change of holder the new holder may start
//!   signing late; its first signature on chain ends that danger, but until its activation
//!   is verified it cannot fence itself (S4 acts on an active), so the wait then ends at the
//!   latest when an unverified activation must have rolled back — at once when the peer
//!   reports itself active (verified).

use std::time::Duration;

use serde::Serialize;
use syncguard_timing::Timing;

use crate::event::ChainReport;
use crate::hold::words_duration;
use crate::local::LocalView;

/// The last [`ChainReport`], and when it came.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ChainView {
    pub(crate) at: Option<Duration>,
    pub(crate) latest: u64,
    pub(crate) last_signed: Option<u64>,
    pub(crate) fastest_block: Option<Duration>,
    /// A start of a holder this node has not yet seen signing (the post-handover wait).
    pub(crate) late_start: Option<LateStart>,
}

/// A holder may have started signing at `at` without this node seeing it; a signature of
/// the validator above height `above` on chain proves it did (and then no late start is
/// pending any more).
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct LateStart {
    pub(crate) at: Duration,
    /// `None` until a height is known (at boot): the next chain report sets it to the
    /// chain's height then, so only a signature made after it counts.
    pub(crate) above: Option<u64>,
    /// The epoch a holder may start under; the peer reporting itself active at this epoch
    /// or later has finished (and verified) its activation.
    pub(crate) epoch: u64,
    /// When this node first saw the validator signing above `above`: the holder started by
    /// then, so an activation that is never verified has rolled back within
    /// `verify_deadline + stop_bound` of it (found by the random worlds, seed
    /// 14115127191125930243: a holder muted right after its first signature, its activation
    /// unverified until the deadline, signed unseen while it could not fence itself).
    pub(crate) signing_seen: Option<Duration>,
}

impl ChainView {
    /// Folds a report in; returns the evidence, in words, when it ends a late-start wait.
    pub(crate) fn observe(&mut self, c: ChainReport, now: Duration) -> Option<String> {
        self.at = Some(now);
        self.latest = self.latest.max(c.latest_height);
        self.last_signed = self.last_signed.max(c.last_signed);
        if let Some(f) = c.fastest_block.filter(|f| !f.is_zero()) {
            self.note_block_interval(f);
        }
        match (self.late_start, self.last_signed) {
            (Some(mut m), _) if m.above.is_none() => {
                // The first look at the chain since a start known nothing: draw the line here.
                m.above = Some(self.latest.max(self.last_signed.unwrap_or(0)));
                self.late_start = Some(m);
                None
            }
            (
                Some(
                    m @ LateStart {
                        above: Some(above),
                        signing_seen: None,
                        ..
                    },
                ),
                Some(signed),
            ) if signed > above => {
                self.late_start = Some(LateStart {
                    signing_seen: Some(now),
                    ..m
                });
                Some(format!(
                    "the chain shows the validator signing at height {signed}, above every \
                     height known when the role moved ({above})"
                ))
            }
            _ => None,
        }
    }

    /// The shortest block interval seen (a chain faster than `block_interval` says).
    pub(crate) fn note_block_interval(&mut self, f: Duration) {
        self.fastest_block = Some(self.fastest_block.map_or(f, |x| x.min(f)));
    }

    /// A holder may start signing from `now` on under `epoch` without this node seeing it
    /// start (see [`LateStart`]); `known`: the highest height known now, if any.
    pub(crate) fn may_start(&mut self, now: Duration, epoch: u64, known: Option<u64>) {
        let above = match (self.late_start.and_then(|m| m.above), known) {
            (Some(a), Some(k)) => Some(a.max(k)),
            (_, k) => k,
        };
        self.late_start = Some(LateStart {
            at: now,
            above,
            epoch,
            signing_seen: None,
        });
    }

    /// Until when an unplanned promotion must wait for a possible late start, if at all:
    /// `settle` from the change of holder (its whole activation, roll-back included), or —
    /// once it was seen signing — until an unverified activation has rolled back, whichever
    /// comes first.
    pub(crate) fn late_start_until(&self, t: &Timing) -> Option<Duration> {
        self.late_start.map(|m| {
            let settled = m.at + t.settle;
            match m.signing_seen {
                Some(seen) => settled.min(seen + t.verify_deadline + t.stop_bound),
                None => settled,
            }
        })
    }

    /// Whether the holder was seen signing (its late start excluded, its verification not
    /// yet known).
    pub(crate) fn holder_seen_signing(&self) -> bool {
        self.late_start.is_some_and(|m| m.signing_seen.is_some())
    }

    /// Why the wait of [`ChainView::late_start_until`] holds, in words.
    pub(crate) fn late_start_words(&self, t: &Timing) -> String {
        if self.holder_seen_signing() {
            format!(
                "the role moved recently and the new holder, seen signing, has not been seen \
                 active yet: until its activation is verified it cannot stop itself on a cut, \
                 so an unverified activation must have rolled back first (at most {} after its \
                 first signature)",
                words_duration(t.verify_deadline + t.stop_bound)
            )
        } else {
            format!(
                "the role moved recently and the new holder has not been seen signing yet, so \
                 a late start must be excluded: its activation takes at most {}",
                words_duration(t.settle)
            )
        }
    }
}

/// S4: whether an active's signing has gone quiet, as seen after its activation (`since`;
/// its verified signature at `signed_floor`): `Some((reason label, words))`.
///
/// - `cut_off`: its node follows no chain — the newest block is older than
///   `Timing::stall_age`, or `/status` did not answer — or no health round reported recently
///   (nothing is known of its own node);
/// - `silent`: its node follows the chain but more than `Timing::quiet_blocks` of the newest
///   commits lack the validator's signature (an asymmetric cut: its votes miss the commits),
///   or those commits cannot be read while the node answers.
///
/// Either, with contact lost, is the case where another node may take over: the timing model
/// makes the stop confirmed before its window and witness clear (`docs/TIMING.md`).
pub(crate) fn quiet(
    t: &Timing,
    local: &LocalView,
    chain: &ChainView,
    local_fresh: bool,
    chain_fresh_since: impl Fn(Duration) -> bool,
    since: Duration,
    signed_floor: u64,
) -> Option<(&'static str, String)> {
    if !local_fresh {
        return Some((
            "cut_off",
            "no health round has reported on my own node for a while".to_string(),
        ));
    }
    let after = |at: Option<Duration>| at.is_some_and(|a| a > since);
    if after(local.at) {
        let height = local
            .latest_height
            .map_or_else(|| "unknown".to_string(), |h| h.to_string());
        if local.stalled && local.block_age.is_none() {
            return Some((
                "cut_off",
                format!("my node does not answer or sees no new block (height {height})"),
            ));
        }
        if let Some(age) = local.block_age.filter(|a| *a >= t.stall_age) {
            return Some((
                "cut_off",
                format!(
                    "my node's newest block (height {height}) is {} old: it follows no chain",
                    words_duration(age)
                ),
            ));
        }
    }
    // Right after the activation no report may have come yet: count from the activation.
    let chain_seen = chain.at.map_or(since, |at| at.max(since));
    if !chain_fresh_since(chain_seen) {
        return Some((
            "silent",
            "the commits of my own node have not been read for a while: nothing shows my \
             signatures reach the chain"
                .to_string(),
        ));
    }
    if after(chain.at) {
        let signed = chain.last_signed.unwrap_or(0).max(signed_floor);
        let missed = chain.latest.saturating_sub(signed);
        if missed > u64::from(t.quiet_blocks) {
            return Some((
                "silent",
                format!(
                    "my node follows the chain (height {}) but the validator's signature is \
                     missing from the last {missed} commits (last at height {signed}): my votes \
                     do not reach the chain",
                    chain.latest
                ),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::LocalHealth;

    fn t() -> Timing {
        syncguard_timing::derive_lenient(&syncguard_timing::Inputs::new(
            Duration::from_secs(1),
            3,
            Duration::from_secs(1),
        ))
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn report(latest: u64, last_signed: Option<u64>) -> ChainReport {
        ChainReport {
            latest_height: latest,
            last_signed,
            fastest_block: None,
        }
    }

    fn local_at(now: Duration, age: Option<Duration>, stalled: bool) -> LocalView {
        let mut l = LocalView::default();
        l.observe(
            LocalHealth {
                healthy: true,
                latest_height: Some(50),
                stalled,
                why: None,
                block_age: age,
                recovering: false,
            },
            now,
        );
        l
    }

    #[test]
    fn failover_quiet_silent_after_more_than_quiet_blocks_missed() {
        let timing = t();
        let local = local_at(s(10), Some(Duration::from_millis(300)), false);
        let mut chain = ChainView::default();
        chain.observe(report(53, Some(50)), s(10));
        let fresh = |_| true;
        assert_eq!(quiet(&timing, &local, &chain, true, fresh, s(1), 40), None);
        chain.observe(report(54, Some(50)), s(11));
        let q = quiet(&timing, &local, &chain, true, fresh, s(1), 40);
        assert_eq!(q.map(|q| q.0), Some("silent"));
        // Signatures older than the activation's own do not count as silence.
        assert_eq!(quiet(&timing, &local, &chain, true, fresh, s(1), 52), None);
    }

    #[test]
    fn failover_quiet_cut_off_by_block_age_or_an_unanswering_node() {
        let timing = t();
        let chain = ChainView::default();
        let fresh = |_| true;
        let old = local_at(s(10), Some(timing.stall_age), false);
        assert_eq!(
            quiet(&timing, &old, &chain, true, fresh, s(1), 0).map(|q| q.0),
            Some("cut_off")
        );
        let down = local_at(s(10), None, true);
        assert_eq!(
            quiet(&timing, &down, &chain, true, fresh, s(1), 0).map(|q| q.0),
            Some("cut_off")
        );
        // A round from before the activation (the node restarting during it) says nothing.
        assert_eq!(quiet(&timing, &down, &chain, true, fresh, s(20), 0), None);
        assert_eq!(
            quiet(&timing, &down, &chain, false, fresh, s(20), 0).map(|q| q.0),
            Some("cut_off")
        );
    }

    #[test]
    fn failover_late_start_ends_at_a_signature_above_the_line() {
        let mut chain = ChainView::default();
        chain.may_start(s(1), 3, None);
        // Nothing known at the start: the first report draws the line.
        assert_eq!(chain.observe(report(100, Some(99)), s(2)), None);
        assert_eq!(chain.late_start.and_then(|m| m.above), Some(100));
        assert_eq!(chain.observe(report(101, Some(100)), s(3)), None);
        let t = t();
        assert_eq!(chain.late_start_until(&t), Some(s(1) + t.settle));
        assert!(chain.observe(report(102, Some(101)), s(4)).is_some());
        // Seen signing: not over before an unverified activation has rolled back.
        assert!(chain.holder_seen_signing());
        let rolled_back = s(4) + t.verify_deadline + t.stop_bound;
        assert_eq!(
            chain.late_start_until(&t),
            Some(rolled_back.min(s(1) + t.settle))
        );
        // Said once.
        assert!(chain.observe(report(103, Some(102)), s(5)).is_none());
    }
}
