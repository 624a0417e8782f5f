//! The chain's commits, each read once: which carry the validator's signature, and when
//! each block was made. One [`CommitLog`] per daemon feeds the failover core's chain report
//! (its own signatures, every round), the witness (only the commits not read yet are
//! fetched), the signing view on `/status` and `/metrics`, and the signing strip of the
//! status page ([`Strip`]).
//!
//! Only **canonical** commits are kept: the node's newest commit (`/commit` of its latest
//! height) is its own "seen" commit, which a late precommit may still join, so it is read
//! again once the next block has made it canonical. Heights below the node's
//! `earliest_block_height` (a pruned or state-synced node) are never asked for: the node
//! does not have them, and asking again every round would cost up to `per_round` failed
//! calls each time; they stay unread (Unknown, never Absent). The log is pure;
//! [`ChainReader`] fetches, one reader at a time (the health loop's catch-up, a witness), so
//! the two never ask for the same commit. A steady health round thus costs the node its
//! probes, the commits of the blocks made since the round before, and — on a passive asking
//! the chain as witness — one more `/status` (`crates/syncguard/tests/rpc_economy.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

use crate::comet::{CometClient, Commit};
use crate::rpc::{ProbeError, ProbeErrorKind};
use crate::witness::{HeightWitness, SignatureSeen, WitnessReport};

/// Commits fetched at once (CometBFT limits open connections).
const MAX_IN_FLIGHT: usize = 8;

/// What one canonical commit says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    signed: bool,
    time: Option<SystemTime>,
}

/// The commits read so far (pure).
#[derive(Debug, Clone)]
pub struct CommitLog {
    address: String,
    seen: BTreeMap<u64, Entry>,
    keep: u64,
    /// The lowest height the node still has (its `earliest_block_height`; 1 until told).
    floor: u64,
}

/// What the log says about the validator's signing up to a height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SigningView {
    /// The highest canonical commit height considered.
    pub upto: u64,
    /// The highest height read with the validator's signature.
    pub last_signed: Option<u64>,
    /// Commits read without the signature, from `upto` down to the first signed or unread
    /// one (`None` when `upto` itself was not read).
    pub missed_in_row: Option<u64>,
    /// The shortest interval between consecutive blocks among the last ones read.
    pub fastest_block: Option<Duration>,
}

impl CommitLog {
    /// A log for `address` (hex, any case) keeping the newest `keep` heights.
    pub fn new(address: &str, keep: u64) -> Self {
        CommitLog {
            address: address.trim().to_string(),
            seen: BTreeMap::new(),
            keep: keep.max(1),
            floor: 1,
        }
    }

    /// The node's `earliest_block_height` as its `/status` last said (0: not said).
    pub fn set_floor(&mut self, earliest: u64) {
        self.floor = earliest.max(1);
    }

    /// Heights of `[lo, hi]` not read yet that the node still has, newest first.
    pub fn missing(&self, lo: u64, hi: u64) -> Vec<u64> {
        let lo = lo.max(self.floor);
        if lo > hi {
            return Vec::new();
        }
        (lo..=hi)
            .rev()
            .filter(|h| !self.seen.contains_key(h))
            .collect()
    }

    /// Keeps a commit if it is canonical and answers for `height`; returns whether it did.
    pub fn record(&mut self, height: u64, commit: &Commit) -> bool {
        if !commit.canonical || commit.height != height || self.address.is_empty() {
            return false;
        }
        self.seen.insert(
            height,
            Entry {
                signed: commit.signed_by(&self.address),
                time: commit.time,
            },
        );
        if let Some(&newest) = self.seen.keys().next_back() {
            let floor = newest.saturating_sub(self.keep);
            while self.seen.first_key_value().is_some_and(|(h, _)| *h < floor) {
                self.seen.pop_first();
            }
        }
        true
    }

    /// The witness over the `n` heights ending at `hi` (newest first); a height not read is
    /// Unknown, never Absent.
    pub fn window(&self, hi: u64, n: u64) -> WitnessReport {
        let lo = hi.saturating_sub(n.saturating_sub(1)).max(1);
        let heights = (lo..=hi)
            .rev()
            .filter(|_| n > 0 && hi > 0)
            .map(|height| match self.seen.get(&height) {
                Some(e) => HeightWitness {
                    height,
                    seen: if e.signed {
                        SignatureSeen::Signed
                    } else {
                        SignatureSeen::Absent
                    },
                    time: e.time,
                },
                None => HeightWitness {
                    height,
                    seen: SignatureSeen::Unknown("commit not read".into()),
                    time: None,
                },
            })
            .collect();
        WitnessReport {
            address: self.address.clone(),
            latest_height: hi,
            heights,
        }
    }

    /// The signing view up to `upto`.
    pub fn signing(&self, upto: u64) -> SigningView {
        let last_signed = self
            .seen
            .range(..=upto)
            .rev()
            .find(|(_, e)| e.signed)
            .map(|(h, _)| *h);
        let missed_in_row = self.seen.get(&upto).map(|_| {
            let mut run = 0;
            for h in (1..=upto).rev() {
                match self.seen.get(&h) {
                    Some(e) if !e.signed => run += 1,
                    _ => break,
                }
            }
            run
        });
        let times: Vec<SystemTime> = self
            .seen
            .range(upto.saturating_sub(20)..=upto)
            .filter_map(|(_, e)| e.time)
            .collect();
        let fastest_block = times
            .windows(2)
            .filter_map(|w| w[1].duration_since(w[0]).ok())
            .filter(|d| !d.is_zero())
            .min();
        SigningView {
            upto,
            last_signed,
            missed_in_row,
            fastest_block,
        }
    }

    /// The strip of the `n` heights ending at `latest` (the node's newest, whose commit is not
    /// canonical yet, so its cell is always Unknown).
    pub fn strip(&self, latest: u64, n: u64) -> Strip {
        if latest == 0 || n == 0 {
            return Strip::default();
        }
        let first = latest.saturating_sub(n - 1).max(1);
        let (cells, times) = (first..=latest)
            .map(|h| match self.seen.get(&h) {
                Some(e) if e.signed => (Cell::Signed, e.time),
                Some(e) => (Cell::Missed, e.time),
                None => (Cell::Unknown, None),
            })
            .unzip();
        Strip {
            first,
            cells,
            times,
        }
    }
}

/// What the commit log knows of one height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// The canonical commit carries the validator's signature.
    Signed,
    /// The canonical commit was read and does not carry it.
    Missed,
    /// Not known yet: the newest height (its commit is not canonical yet), or a commit not
    /// read (a failed read, a height the node no longer has).
    Unknown,
}

impl Cell {
    /// One letter: `S` signed, `M` missed, `?` not known yet.
    pub fn letter(self) -> char {
        match self {
            Cell::Signed => 'S',
            Cell::Missed => 'M',
            Cell::Unknown => '?',
        }
    }
}

/// The validator's signing over the last heights, oldest first: one [`Cell`] per height, and
/// each block's time where its commit was read (to place a moment on the strip).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Strip {
    /// The oldest height shown (0 when the strip is empty).
    pub first: u64,
    /// One cell per height from `first`.
    pub cells: Vec<Cell>,
    /// The block time of each height, where its commit was read.
    pub times: Vec<Option<SystemTime>>,
}

impl Strip {
    /// The newest height shown.
    pub fn last(&self) -> Option<u64> {
        let n = u64::try_from(self.cells.len()).ok()?;
        (n > 0).then(|| self.first + n - 1)
    }

    /// Whether `height` is on the strip.
    pub fn shows(&self, height: u64) -> bool {
        self.last()
            .is_some_and(|last| (self.first..=last).contains(&height))
    }

    /// The cells as letters ([`Cell::letter`]), oldest first.
    pub fn letters(&self) -> String {
        self.cells.iter().map(|c| c.letter()).collect()
    }

    /// The chain's newest height at the instant `t`, as far as the strip knows: the highest
    /// height whose block time is at or before `t`, or — when `t` is later than every block
    /// time read — the strip's last height. `None` when `t` precedes every block time read
    /// (the moment lies before the strip).
    pub fn height_at(&self, t: SystemTime) -> Option<u64> {
        let timed: Vec<(u64, SystemTime)> = (self.first..)
            .zip(&self.times)
            .filter_map(|(h, time)| time.map(|time| (h, time)))
            .collect();
        let (_, newest) = timed.last()?;
        if t > *newest {
            return self.last();
        }
        timed
            .iter()
            .rev()
            .find(|(_, time)| *time <= t)
            .map(|(h, _)| *h)
    }
}

/// Reads commits into a shared [`CommitLog`]. One read at a time (the health loop's
/// catch-up, a witness): the second waits for the first, then asks only what the first did
/// not read — two readers never ask the node for the same commit.
#[derive(Debug, Clone)]
pub struct ChainReader {
    client: CometClient,
    log: Arc<Mutex<CommitLog>>,
    per_round: u64,
    /// Held while a reader decides what to ask and asks it.
    turn: Arc<Mutex<()>>,
}

impl ChainReader {
    /// A reader for `address`; it keeps `keep` heights and reads at most `per_round` new
    /// commits after a round (a node far ahead is caught up over several rounds, newest
    /// first).
    pub fn new(client: CometClient, address: &str, keep: u64, per_round: u64) -> Self {
        ChainReader {
            client,
            log: Arc::new(Mutex::new(CommitLog::new(address, keep))),
            per_round: per_round.max(1),
            turn: Arc::new(Mutex::new(())),
        }
    }

    /// After a health round whose `/status` said `latest` and `earliest` (its
    /// `earliest_block_height`): reads the canonical commits not read yet (up to
    /// `latest − 1`, the newest `per_round` of them, none below `earliest`) and returns the
    /// signing view. No call of its own but the new commits.
    pub async fn catch_up(&self, latest: u64, earliest: u64) -> SigningView {
        let hi = latest.saturating_sub(1);
        let lo = hi.saturating_sub(self.per_round.saturating_sub(1));
        let _turn = self.turn.lock().await;
        let wanted = {
            let mut log = self.log.lock().await;
            log.set_floor(earliest);
            log.missing(lo, hi)
        };
        self.fetch(wanted).await;
        self.log.lock().await.signing(hi)
    }

    /// The witness of the last `n` canonical commits: `/status` for the latest height, then
    /// only the commits not read yet. Fails only when `/status` fails. The head is asked once
    /// it is this reader's turn, so a wait for a catch-up under way never makes it older.
    pub async fn witness(&self, n: u64) -> Result<WitnessReport, ProbeError> {
        let _turn = self.turn.lock().await;
        let status = self.client.status().await?;
        let hi = status.latest_block_height.saturating_sub(1);
        let lo = hi.saturating_sub(n.saturating_sub(1));
        let wanted = {
            let mut log = self.log.lock().await;
            log.set_floor(status.earliest_block_height);
            log.missing(lo, hi)
        };
        self.fetch(wanted).await;
        Ok(self.log.lock().await.window(hi, n))
    }

    /// The signing strip of the `n` heights ending at `latest`, from what was read, without
    /// reading.
    pub async fn strip(&self, latest: u64, n: u64) -> Strip {
        self.log.lock().await.strip(latest, n)
    }

    /// The signing view from what was read, without reading.
    pub async fn signing(&self, upto: u64) -> SigningView {
        self.log.lock().await.signing(upto)
    }

    /// Fetches `heights` (a few at a time) into the log. Once the node looks unreachable the
    /// rest is not tried: a dead node costs about one timeout.
    async fn fetch(&self, heights: Vec<u64>) {
        if heights.is_empty() {
            return;
        }
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut tasks = JoinSet::new();
        for height in heights {
            let client = self.client.clone();
            let permits = Arc::clone(&permits);
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.ok()?;
                Some((height, client.commit(height).await))
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let Ok(Some((height, answer))) = joined else {
                continue;
            };
            match answer {
                Ok(commit) => {
                    self.log.lock().await.record(height, &commit);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ProbeErrorKind::Timeout
                            | ProbeErrorKind::ConnectionRefused
                            | ProbeErrorKind::Connect
                    ) =>
                {
                    tasks.abort_all();
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comet::{BlockIdFlag, CommitSig};

    const ME: &str = "2DD9F44FD9067555C322243C3C913BA7B51D2BE0";

    fn commit(height: u64, signed: bool, canonical: bool) -> Commit {
        Commit {
            height,
            canonical,
            signatures: vec![CommitSig {
                flag: if signed {
                    BlockIdFlag::Commit
                } else {
                    BlockIdFlag::Absent
                },
                validator_address: signed.then(|| ME.to_string()),
            }],
            time: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(height * 500)),
        }
    }

    #[test]
    fn story_commit_log_keeps_canonical_commits_once() {
        let mut log = CommitLog::new(ME, 100);
        assert_eq!(log.missing(8, 10), vec![10, 9, 8]);
        assert!(log.record(9, &commit(9, true, true)));
        assert!(
            !log.record(10, &commit(10, true, false)),
            "a seen commit is read again later"
        );
        assert!(
            !log.record(8, &commit(7, true, true)),
            "an answer for another height"
        );
        assert_eq!(log.missing(8, 10), vec![10, 8]);
        let w = log.window(10, 3);
        assert_eq!(
            w.heights[0].seen,
            SignatureSeen::Unknown("commit not read".into())
        );
        assert_eq!(w.heights[1].seen, SignatureSeen::Signed);
        assert_eq!(
            w.heights[1].time,
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(4_500))
        );
    }

    #[test]
    fn story_commit_log_signing_view_counts_the_missed_run_and_block_rate() {
        let mut log = CommitLog::new(ME, 100);
        for h in 1..=10 {
            log.record(h, &commit(h, h <= 6, true));
        }
        let v = log.signing(10);
        assert_eq!(v.last_signed, Some(6));
        assert_eq!(v.missed_in_row, Some(4));
        assert_eq!(v.fastest_block, Some(Duration::from_millis(500)));
        // Unread at the top: the run is not known.
        assert_eq!(log.signing(11).missed_in_row, None);
        assert_eq!(log.signing(11).last_signed, Some(6));
    }

    #[test]
    fn story_commit_log_forgets_the_oldest() {
        let mut log = CommitLog::new(ME, 5);
        for h in 1..=20 {
            log.record(h, &commit(h, true, true));
        }
        assert_eq!(log.missing(1, 20).len(), 14);
        assert!(log.missing(15, 20).is_empty());
    }

    #[test]
    fn story_commit_log_never_asks_for_heights_the_node_has_pruned() {
        let mut log = CommitLog::new(ME, 100);
        log.set_floor(50);
        assert_eq!(log.missing(45, 52), vec![52, 51, 50]);
        assert!(log.missing(10, 49).is_empty());
        // Not said (0): every height from 1.
        log.set_floor(0);
        assert_eq!(log.missing(0, 2), vec![2, 1]);
        // What was read below a later floor stays known.
        log.record(40, &commit(40, true, true));
        log.set_floor(60);
        assert_eq!(log.window(40, 1).heights[0].seen, SignatureSeen::Signed);
    }

    #[test]
    fn story_commit_log_strip_shows_signed_missed_and_unknown_with_block_times() {
        let mut log = CommitLog::new(ME, 100);
        for h in 1..=8 {
            if h != 5 {
                log.record(h, &commit(h, h <= 3 || h >= 7, true));
            }
        }
        let strip = log.strip(9, 6);
        assert_eq!((strip.first, strip.last()), (4, Some(9)));
        // 4 missed, 5 not read, 6 missed, 7–8 signed, 9 (the newest) not canonical yet.
        assert_eq!(strip.letters(), "M?MSS?");
        assert!(strip.shows(4) && strip.shows(9) && !strip.shows(3) && !strip.shows(10));
        let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        // Block h was made at h × 500 ms: 4 at 2.0 s, 6 at 3.0 s, 7 at 3.5 s, 8 at 4.0 s.
        assert_eq!(strip.height_at(at(1_999)), None, "before the strip");
        assert_eq!(strip.height_at(at(2_000)), Some(4));
        assert_eq!(strip.height_at(at(2_999)), Some(4), "5 was not read");
        assert_eq!(strip.height_at(at(3_000)), Some(6));
        assert_eq!(strip.height_at(at(3_700)), Some(7));
        assert_eq!(strip.height_at(at(4_000)), Some(8));
        assert_eq!(
            strip.height_at(at(4_001)),
            Some(9),
            "after every block read: the newest"
        );
        // Heights start at 1; an empty chain has no strip.
        assert_eq!(log.strip(3, 100).first, 1);
        assert_eq!(log.strip(0, 100), Strip::default());
        assert_eq!(Strip::default().last(), None);
    }
}
