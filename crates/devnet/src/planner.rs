//! What a validator node votes on, and when (PURE).
//!
//! Connected, the node votes once per (height, round) it sees in flight, for the proposal
//! of that round. Cut off, it sees nothing new: it still votes at the height it is stuck on
//! — for the proposal it saw before the cut if it had not voted for it yet, then, at every
//! round timeout (one block time), in the next round for nil, because no proposal reaches
//! it. Those votes are what turn a split brain into a double sign once the cut heals and
//! they reach the chain: another holder of the key signing the same (height, round) for the
//! chain's proposal conflicts with the cut node's nil.

use std::time::{Duration, SystemTime};

use crate::api::Proposal;

/// At most this many rounds are caught up in one call (after the process was paused).
const MAX_ROUNDS_PER_CALL: u32 = 50;

/// One (height, round) to sign a prevote and a precommit for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRound {
    /// Height.
    pub height: u64,
    /// Round.
    pub round: u32,
    /// Block to vote for; `None` = nil.
    pub block_hash: Option<[u8; 32]>,
}

#[derive(Debug, Clone)]
struct Cut {
    height: u64,
    next_round_at: SystemTime,
}

/// The planner of one node.
#[derive(Debug, Clone)]
pub struct VotePlanner {
    round_timeout: Duration,
    last: Option<(u64, u32)>,
    cut: Option<Cut>,
}

fn parse_hash(hex_str: &str) -> Option<[u8; 32]> {
    hex::decode(hex_str).ok()?.try_into().ok()
}

impl VotePlanner {
    /// A planner whose cut-off rounds last `round_timeout`.
    pub fn new(round_timeout: Duration) -> Self {
        VotePlanner {
            round_timeout: round_timeout.max(Duration::from_millis(1)),
            last: None,
            cut: None,
        }
    }

    /// The rounds to vote in now, given the proposal the node last saw and whether it is cut off.
    pub fn plan(&mut self, seen: &Proposal, cut: bool, now: SystemTime) -> Vec<PlannedRound> {
        let mut out = Vec::new();
        let seen_at = (seen.height, seen.round);
        if self.last.is_none_or(|last| seen_at > last) {
            self.last = Some(seen_at);
            out.push(PlannedRound {
                height: seen.height,
                round: seen.round,
                block_hash: parse_hash(&seen.block_hash),
            });
        }
        if !cut {
            self.cut = None;
            return out;
        }
        let round_timeout = self.round_timeout;
        let state = self.cut.get_or_insert_with(|| Cut {
            height: seen.height,
            next_round_at: now + round_timeout,
        });
        let mut rounds = 0;
        while now >= state.next_round_at && rounds < MAX_ROUNDS_PER_CALL {
            state.next_round_at += round_timeout;
            rounds += 1;
            let round = match self.last {
                Some((h, r)) if h == state.height => r.saturating_add(1),
                // Voted above the stuck height already (cannot happen from this planner's
                // own plans): nothing lower is worth proposing.
                Some(_) => continue,
                None => 0,
            };
            self.last = Some((state.height, round));
            out.push(PlannedRound {
                height: state.height,
                round,
                block_hash: None,
            });
        }
        if now >= state.next_round_at {
            state.next_round_at = now + round_timeout;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vote::{hex_upper, proposal_hash};

    const BT: Duration = Duration::from_millis(200);

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn p(h: u64, r: u32) -> Proposal {
        Proposal {
            height: h,
            round: r,
            block_hash: hex_upper(&proposal_hash("c", h, r)),
        }
    }

    #[test]
    fn devnet_planner_votes_once_per_round_seen() {
        let mut pl = VotePlanner::new(BT);
        let first = pl.plan(&p(11, 0), false, t0());
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].block_hash, Some(proposal_hash("c", 11, 0)));
        assert!(pl.plan(&p(11, 0), false, t0() + BT).is_empty());
        assert_eq!(pl.plan(&p(11, 1), false, t0() + BT)[0].round, 1);
        assert_eq!(pl.plan(&p(12, 0), false, t0() + BT)[0].height, 12);
        assert!(pl.plan(&p(11, 5), false, t0() + BT).is_empty());
    }

    #[test]
    fn devnet_planner_cut_node_votes_nil_in_advancing_rounds_at_stuck_height() {
        let mut pl = VotePlanner::new(BT);
        pl.plan(&p(11, 0), false, t0());
        // Cut: nothing at once, then one nil round per round timeout at height 11.
        assert!(pl.plan(&p(11, 0), true, t0()).is_empty());
        assert!(pl.plan(&p(11, 0), true, t0() + BT / 2).is_empty());
        let r = pl.plan(&p(11, 0), true, t0() + BT);
        assert_eq!(
            r,
            [PlannedRound {
                height: 11,
                round: 1,
                block_hash: None
            }]
        );
        let r = pl.plan(&p(11, 0), true, t0() + BT * 3);
        assert_eq!(r.iter().map(|x| x.round).collect::<Vec<_>>(), [2, 3]);
        // Healed: the chain moved on to 15; the node votes there for the proposal.
        let r = pl.plan(&p(15, 0), false, t0() + BT * 4);
        assert_eq!(r[0].block_hash, Some(proposal_hash("c", 15, 0)));
    }

    #[test]
    fn devnet_planner_cut_before_voting_still_votes_the_seen_proposal() {
        let mut pl = VotePlanner::new(BT);
        let r = pl.plan(&p(20, 2), true, t0());
        assert_eq!((r[0].height, r[0].round), (20, 2));
        assert!(r[0].block_hash.is_some());
        let r = pl.plan(&p(20, 2), true, t0() + BT);
        assert_eq!((r[0].round, r[0].block_hash), (3, None));
    }
}
