//! The chain as witness (S1): did the validator's address sign any of the last N commits?
//!
//! [`summarize_commits`] is pure: it judges whatever commits were fetched. [`fetch_witness`]
//! only fetches. The one question that matters for promotion is
//! [`WitnessReport::proves_absence`]: "no signature" is only evidence when every height of
//! the window was actually seen — a height that could not be fetched is Unknown, never Absent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::comet::{CometClient, Commit};
use crate::rpc::{ProbeError, ProbeErrorKind};

/// Commits fetched at once: enough to cover a window quickly, few enough not to load the
/// node's RPC (CometBFT limits open connections).
const MAX_IN_FLIGHT: usize = 8;

/// What one height says about the validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "seen", content = "reason")]
pub enum SignatureSeen {
    /// The address has a commit or nil precommit (flag 2 or 3) in this commit.
    Signed,
    /// The commit was seen and the address did not sign it.
    Absent,
    /// The commit could not be read (fetch failed, skipped, or answered for another height).
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeightWitness {
    pub height: u64,
    #[serde(flatten)]
    pub seen: SignatureSeen,
    /// The block's time, when its commit was read with one.
    #[serde(skip)]
    pub time: Option<std::time::SystemTime>,
}

/// The witness over a window of heights ending at the latest height.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WitnessReport {
    /// The validator's address as given.
    pub address: String,
    /// The last committed height the window ends at (from `/status`).
    pub latest_height: u64,
    /// Newest first; `min(n, latest_height)` entries.
    pub heights: Vec<HeightWitness>,
}

impl WitnessReport {
    /// Whether any height of the window shows a signature by the address.
    pub fn signed_recently(&self) -> bool {
        self.heights.iter().any(|h| h.seen == SignatureSeen::Signed)
    }

    /// The newest height of the window signed by the address.
    pub fn last_signed_height(&self) -> Option<u64> {
        self.heights
            .iter()
            .filter(|h| h.seen == SignatureSeen::Signed)
            .map(|h| h.height)
            .max()
    }

    /// Positive evidence of silence: the window is not empty and EVERY height in it was read
    /// and shows no signature. `!signed_recently()` alone is not that when heights are Unknown.
    pub fn proves_absence(&self) -> bool {
        !self.heights.is_empty() && self.heights.iter().all(|h| h.seen == SignatureSeen::Absent)
    }

    /// Heights that could not be judged.
    pub fn unknown_heights(&self) -> Vec<u64> {
        self.heights
            .iter()
            .filter(|h| matches!(h.seen, SignatureSeen::Unknown(_)))
            .map(|h| h.height)
            .collect()
    }
}

/// The window `[max(1, latest - n + 1), latest]`, newest first.
fn window(latest_height: u64, n: u64) -> impl Iterator<Item = u64> {
    let oldest = latest_height.saturating_sub(n.saturating_sub(1)).max(1);
    (oldest..=latest_height).rev().filter(move |_| n > 0)
}

/// Judges the window of `n` heights ending at `latest_height` from the fetched commits.
/// Heights without an entry in `commits` are Unknown ("not fetched"). Pure.
pub fn summarize_commits(
    address: &str,
    latest_height: u64,
    n: u64,
    commits: impl IntoIterator<Item = (u64, Result<Commit, ProbeError>)>,
) -> WitnessReport {
    let mut by_height: HashMap<u64, Result<Commit, ProbeError>> = commits.into_iter().collect();
    let address_given = !address.trim().is_empty();
    let heights = window(latest_height, n)
        .map(|height| {
            let mut time = None;
            let seen = match by_height.remove(&height) {
                // An empty address would make every height "Absent": never evidence.
                _ if !address_given => SignatureSeen::Unknown("no validator address given".into()),
                None => SignatureSeen::Unknown("not fetched".into()),
                Some(Err(e)) => SignatureSeen::Unknown(e.to_string()),
                Some(Ok(c)) if c.height != height => SignatureSeen::Unknown(format!(
                    "asked for height {height}, the node answered height {}",
                    c.height
                )),
                Some(Ok(c)) if c.signed_by(address) => {
                    time = c.time;
                    SignatureSeen::Signed
                }
                Some(Ok(c)) => {
                    time = c.time;
                    SignatureSeen::Absent
                }
            };
            HeightWitness { height, seen, time }
        })
        .collect();
    WitnessReport {
        address: address.to_string(),
        latest_height,
        heights,
    }
}

/// Fetches `/commit?height=h` for the last `n` committed heights (ending at `/status`'s
/// latest height, whose commit is the node's own seen commit) and summarizes them.
/// Fails only when `/status` fails: without the latest height there is no window. Once a
/// fetch finds the node unreachable, the remaining heights are not tried (they stay Unknown),
/// so a dead node costs about one timeout, not `n`.
pub async fn fetch_witness(
    client: &CometClient,
    address: &str,
    n: u64,
) -> Result<WitnessReport, ProbeError> {
    let latest = client.status().await?.latest_block_height;
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let unreachable = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for height in window(latest, n) {
        let client = client.clone();
        let permits = Arc::clone(&permits);
        let unreachable = Arc::clone(&unreachable);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.ok()?;
            if unreachable.load(Ordering::Relaxed) {
                return None;
            }
            let answer = client.commit(height).await;
            if let Err(e) = &answer {
                if matches!(
                    e.kind(),
                    ProbeErrorKind::Timeout
                        | ProbeErrorKind::ConnectionRefused
                        | ProbeErrorKind::Connect
                ) {
                    unreachable.store(true, Ordering::Relaxed);
                }
            }
            Some((height, answer))
        });
    }
    let mut fetched = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        // A task that panicked or was skipped leaves its height Unknown.
        if let Ok(Some(entry)) = joined {
            fetched.push(entry);
        }
    }
    Ok(summarize_commits(address, latest, n, fetched))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comet::{BlockIdFlag, CommitSig};

    const ME: &str = "2DD9F44FD9067555C322243C3C913BA7B51D2BE0";

    fn commit(height: u64, sigs: &[(u8, Option<&str>)]) -> Commit {
        Commit {
            height,
            canonical: true,
            time: None,
            signatures: sigs
                .iter()
                .map(|(flag, addr)| CommitSig {
                    flag: match flag {
                        1 => BlockIdFlag::Absent,
                        2 => BlockIdFlag::Commit,
                        3 => BlockIdFlag::Nil,
                        n => BlockIdFlag::Other(*n),
                    },
                    validator_address: addr.map(str::to_string),
                })
                .collect(),
        }
    }

    fn timeout() -> ProbeError {
        ProbeError::Timeout {
            url: "http://n/commit?height=9".into(),
            method: "commit".into(),
            timeout: std::time::Duration::from_millis(100),
        }
    }

    #[test]
    fn story_window_bounds() {
        assert_eq!(window(10, 3).collect::<Vec<_>>(), vec![10, 9, 8]);
        assert_eq!(window(2, 5).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(window(0, 5).count(), 0);
        assert_eq!(window(10, 0).count(), 0);
        assert_eq!(window(u64::MAX, 2).count(), 2);
    }

    #[test]
    fn story_summarizer_signed_absent_unknown() {
        let other = "DD8A65495B6240145764A74E78CF203D51510371";
        let commits = vec![
            (10, Ok(commit(10, &[(2, Some(other)), (1, None)]))),
            (9, Ok(commit(9, &[(3, Some(&ME.to_lowercase()))]))),
            (8, Ok(commit(8, &[(2, Some(ME))]))),
        ];
        let r = summarize_commits(ME, 10, 3, commits);
        assert_eq!(r.heights.len(), 3);
        assert_eq!(r.heights[0].seen, SignatureSeen::Absent);
        assert_eq!(r.heights[1].seen, SignatureSeen::Signed, "nil vote counts");
        assert!(r.signed_recently());
        assert_eq!(r.last_signed_height(), Some(9));
        assert!(!r.proves_absence());

        // Absent flag with our address, and unknown flags, are not signatures.
        let commits = vec![
            (10, Ok(commit(10, &[(1, Some(ME))]))),
            (9, Ok(commit(9, &[(0, Some(ME))]))),
        ];
        let r = summarize_commits(ME, 10, 2, commits);
        assert!(!r.signed_recently());
        assert!(r.proves_absence());
        assert_eq!(r.last_signed_height(), None);
    }

    #[test]
    fn story_unknown_heights_are_never_absence() {
        let commits = vec![
            (10, Ok(commit(10, &[]))),
            (9, Err(timeout())),
            (7, Ok(commit(6, &[(2, Some(ME))]))),
        ];
        let r = summarize_commits(ME, 10, 4, commits);
        assert!(!r.signed_recently());
        assert!(!r.proves_absence());
        assert_eq!(r.unknown_heights(), vec![9, 8, 7]);
        match &r.heights[1].seen {
            SignatureSeen::Unknown(why) => assert!(why.contains("no complete answer")),
            other => panic!("{other:?}"),
        }
        match &r.heights[3].seen {
            SignatureSeen::Unknown(why) => assert!(why.contains("answered height 6")),
            other => panic!("{other:?}"),
        }
        // Empty window and empty address prove nothing.
        assert!(!summarize_commits(ME, 0, 5, Vec::new()).proves_absence());
        let r = summarize_commits(" ", 1, 1, vec![(1, Ok(commit(1, &[])))]);
        assert!(!r.proves_absence());
    }

    #[test]
    fn story_witness_report_serializes() {
        let r = summarize_commits(ME, 2, 2, vec![(2, Ok(commit(2, &[(2, Some(ME))])))]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["heights"][0],
            serde_json::json!({"height": 2, "seen": "signed"})
        );
        assert_eq!(
            v["heights"][1],
            serde_json::json!({"height": 1, "seen": "unknown", "reason": "not fetched"})
        );
    }
}
