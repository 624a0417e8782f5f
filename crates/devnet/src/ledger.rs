//! The double-sign ledger (PURE): every vote signed with the validator key, who released it,
//! and the offences they add up to. No I/O, no clock: the caller passes times in.
//!
//! Rules (the devnet's definition of failure, stricter than the chain's slashing):
//! - two valid votes at one (height, round, type) with different block ids → double sign
//!   (an equivocation: what CometBFT punishes by tombstoning);
//! - the same vote at one (height, round, type) released by two different nodes → double
//!   sign too (the key was live on two hosts: S1 failed, luck avoided the slash);
//! - a second node signing at a height at all, any round or type → S1 violation;
//! - a signature that does not verify → bad signature (recorded, never a double sign: it is
//!   not a signature by the key).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::api::{LedgerReport, NodeCounts, Offense, OffenseKind};
use crate::vote::{hex_upper, VoteType};

/// A valid validator vote as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerVote {
    /// Releasing node.
    pub node: String,
    /// Height.
    pub height: u64,
    /// Round.
    pub round: u32,
    /// Type.
    pub vote_type: VoteType,
    /// `None` = nil.
    pub block_hash: Option<Vec<u8>>,
    /// What was signed (to tell a retry from a new vote).
    pub sign_bytes: Vec<u8>,
    /// Arrival, RFC 3339.
    pub received_at: String,
    /// Released by a muted node: recorded and judged like any vote, never in a commit.
    pub muted: bool,
}

/// What recording a vote found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// New, no offence.
    Clean,
    /// Same node, same bytes: already there.
    Duplicate,
    /// New, and a double sign.
    DoubleSign,
    /// New, an S1 violation but no double sign.
    S1Violation,
}

#[derive(Debug, Default)]
struct NodeState {
    counts: NodeCounts,
    heights: BTreeSet<u64>,
}

/// The ledger.
#[derive(Debug)]
pub struct Ledger {
    validator_address: String,
    votes: Vec<LedgerVote>,
    by_hrs: HashMap<(u64, u32, VoteType), Vec<usize>>,
    nodes_at_height: HashMap<u64, BTreeSet<String>>,
    nodes: BTreeMap<String, NodeState>,
    offenses: Vec<Offense>,
    double_signs: u64,
    equivocations: u64,
    s1_violations: u64,
    bad_signatures: u64,
    malformed: u64,
    foreign: u64,
    committed: u64,
    signed: u64,
    last_signed_height: Option<u64>,
}

fn block_str(b: &Option<Vec<u8>>) -> Option<String> {
    b.as_deref().map(hex_upper)
}

impl Ledger {
    /// An empty ledger watching `validator_address`.
    pub fn new(validator_address: &str) -> Self {
        Ledger {
            validator_address: validator_address.to_string(),
            votes: Vec::new(),
            by_hrs: HashMap::new(),
            nodes_at_height: HashMap::new(),
            nodes: BTreeMap::new(),
            offenses: Vec::new(),
            double_signs: 0,
            equivocations: 0,
            s1_violations: 0,
            bad_signatures: 0,
            malformed: 0,
            foreign: 0,
            committed: 0,
            signed: 0,
            last_signed_height: None,
        }
    }

    /// Record a vote whose signature verified against the validator key.
    pub fn record(&mut self, vote: LedgerVote) -> Recorded {
        let key = (vote.height, vote.round, vote.vote_type);
        let same_hrs = self.by_hrs.get(&key).cloned().unwrap_or_default();
        if same_hrs.iter().any(|&i| {
            self.votes[i].node == vote.node && self.votes[i].sign_bytes == vote.sign_bytes
        }) {
            return Recorded::Duplicate;
        }

        // Prefer reporting an equivocation over a duplicate signer: it is the worse one.
        let conflicting = same_hrs
            .iter()
            .find(|&&i| self.votes[i].block_hash != vote.block_hash)
            .or_else(|| same_hrs.iter().find(|&&i| self.votes[i].node != vote.node))
            .map(|&i| self.votes[i].clone());

        let mut result = Recorded::Clean;
        if let Some(other) = conflicting {
            let equivocation = other.block_hash != vote.block_hash;
            self.double_signs += 1;
            if equivocation {
                self.equivocations += 1;
            }
            let kind = if equivocation {
                OffenseKind::Equivocation
            } else {
                OffenseKind::DuplicateSigner
            };
            self.offenses.push(Offense {
                kind,
                height: vote.height,
                round: vote.round,
                vote_type: vote.vote_type,
                nodes: vec![other.node.clone(), vote.node.clone()],
                block_hashes: vec![block_str(&other.block_hash), block_str(&vote.block_hash)],
                received_at: vote.received_at.clone(),
                detail: format!(
                    "DOUBLE SIGN at height {} round {} {}: {} signed {}, {} signed {}",
                    vote.height,
                    vote.round,
                    vote.vote_type.name(),
                    other.node,
                    block_str(&other.block_hash).unwrap_or_else(|| "nil".into()),
                    vote.node,
                    block_str(&vote.block_hash).unwrap_or_else(|| "nil".into()),
                ),
            });
            result = Recorded::DoubleSign;
        }

        let signers = self.nodes_at_height.entry(vote.height).or_default();
        if !signers.contains(&vote.node) {
            if !signers.is_empty() {
                self.s1_violations += 1;
                let mut nodes: Vec<String> = signers.iter().cloned().collect();
                nodes.push(vote.node.clone());
                self.offenses.push(Offense {
                    kind: OffenseKind::S1Violation,
                    height: vote.height,
                    round: vote.round,
                    vote_type: vote.vote_type,
                    block_hashes: Vec::new(),
                    received_at: vote.received_at.clone(),
                    detail: format!(
                        "S1 VIOLATION at height {}: signed by {} nodes ({})",
                        vote.height,
                        nodes.len(),
                        nodes.join(", ")
                    ),
                    nodes,
                });
                if result == Recorded::Clean {
                    result = Recorded::S1Violation;
                }
            }
            signers.insert(vote.node.clone());
        }

        let node = self.nodes.entry(vote.node.clone()).or_default();
        node.counts.votes += 1;
        if vote.muted {
            node.counts.muted_votes += 1;
        }
        match vote.vote_type {
            VoteType::Prevote => node.counts.prevotes += 1,
            VoteType::Precommit => node.counts.precommits += 1,
        }
        node.heights.insert(vote.height);
        node.counts.heights = node.heights.len() as u64;
        node.counts.first_height = node.heights.first().copied();
        node.counts.last_height = node.heights.last().copied();

        self.by_hrs.entry(key).or_default().push(self.votes.len());
        self.votes.push(vote);
        result
    }

    /// A vote claiming the validator whose signature does not verify.
    pub fn record_bad_signature(
        &mut self,
        node: &str,
        height: u64,
        round: u32,
        vote_type: VoteType,
        received_at: &str,
    ) {
        self.bad_signatures += 1;
        self.nodes
            .entry(node.to_string())
            .or_default()
            .counts
            .bad_signatures += 1;
        self.offenses.push(Offense {
            kind: OffenseKind::BadSignature,
            height,
            round,
            vote_type,
            nodes: vec![node.to_string()],
            block_hashes: Vec::new(),
            received_at: received_at.to_string(),
            detail: format!(
                "bad signature from {node} at height {height} round {round} {}",
                vote_type.name()
            ),
        });
    }

    /// A vote that could not be read.
    pub fn record_malformed(&mut self) {
        self.malformed += 1;
    }

    /// A vote by another key.
    pub fn record_foreign(&mut self) {
        self.foreign += 1;
    }

    /// A height was committed; `signer` is the node whose precommit made it in, if any.
    pub fn record_commit(&mut self, height: u64, signer: Option<&str>) {
        self.committed += 1;
        if let Some(node) = signer {
            self.signed += 1;
            self.last_signed_height = Some(height);
            self.nodes
                .entry(node.to_string())
                .or_default()
                .counts
                .in_commits += 1;
        }
    }

    /// All valid votes, in arrival order.
    pub fn votes(&self) -> &[LedgerVote] {
        &self.votes
    }

    /// The report served at `GET /ledger`.
    pub fn report(&self) -> LedgerReport {
        LedgerReport {
            validator_address: self.validator_address.clone(),
            double_signs: self.double_signs,
            equivocations: self.equivocations,
            s1_violations: self.s1_violations,
            bad_signatures: self.bad_signatures,
            malformed_votes: self.malformed,
            foreign_votes: self.foreign,
            total_votes: self.votes.len() as u64,
            committed_heights: self.committed,
            signed_heights: self.signed,
            missed_heights: self.committed - self.signed,
            last_signed_height: self.last_signed_height,
            per_node: self
                .nodes
                .iter()
                .map(|(k, v)| (k.clone(), v.counts.clone()))
                .collect(),
            offenses: self.offenses.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(node: &str, h: u64, r: u32, t: VoteType, block: Option<u8>, ts: u8) -> LedgerVote {
        LedgerVote {
            node: node.into(),
            height: h,
            round: r,
            vote_type: t,
            block_hash: block.map(|b| vec![b; 32]),
            sign_bytes: vec![h as u8, r as u8, t as u8, block.unwrap_or(0), ts],
            received_at: "2026-01-01T00:00:00Z".into(),
            muted: false,
        }
    }

    #[test]
    fn double_sign_devnet_ledger_flags_conflicting_block_ids() {
        let mut l = Ledger::new("AA");
        // One node twice; then a muted node's prevote (never in a commit, still a
        // signature) against another node's nil.
        let muted = LedgerVote {
            muted: true,
            ..vote("m", 11, 0, VoteType::Prevote, Some(1), 0)
        };
        for (first, second) in [
            (
                vote("a", 10, 0, VoteType::Prevote, Some(1), 0),
                vote("a", 10, 0, VoteType::Prevote, None, 1),
            ),
            (muted, vote("b", 11, 0, VoteType::Prevote, None, 0)),
        ] {
            assert_eq!(l.record(first), Recorded::Clean);
            assert_eq!(l.record(second), Recorded::DoubleSign);
        }
        let r = l.report();
        assert_eq!(
            (r.double_signs, r.equivocations, r.s1_violations),
            (2, 2, 1)
        );
        assert_eq!(r.offenses[0].kind, OffenseKind::Equivocation);
        assert_eq!(r.offenses[1].kind, OffenseKind::Equivocation);
        assert_eq!(
            (r.per_node["m"].muted_votes, r.per_node["b"].muted_votes),
            (1, 0)
        );
        assert!(!r.is_clean());
    }

    #[test]
    fn double_sign_devnet_ledger_flags_same_vote_from_two_nodes_and_s1() {
        let mut l = Ledger::new("AA");
        l.record(vote("a", 10, 0, VoteType::Precommit, Some(1), 0));
        assert_eq!(
            l.record(vote("b", 10, 0, VoteType::Precommit, Some(1), 0)),
            Recorded::DoubleSign
        );
        let r = l.report();
        assert_eq!(
            (r.double_signs, r.equivocations, r.s1_violations),
            (1, 0, 1)
        );
        let kinds: Vec<_> = r.offenses.iter().map(|o| o.kind).collect();
        assert_eq!(
            kinds,
            [OffenseKind::DuplicateSigner, OffenseKind::S1Violation]
        );
        assert_eq!(r.per_node["b"].votes, 1);
    }

    #[test]
    fn devnet_ledger_s1_without_double_sign_at_other_rounds() {
        let mut l = Ledger::new("AA");
        l.record(vote("a", 10, 0, VoteType::Prevote, Some(1), 0));
        assert_eq!(
            l.record(vote("b", 10, 1, VoteType::Prevote, Some(2), 0)),
            Recorded::S1Violation
        );
        // The same extra node again at that height is not a new violation.
        assert_eq!(
            l.record(vote("b", 10, 1, VoteType::Precommit, Some(2), 0)),
            Recorded::Clean
        );
        let r = l.report();
        assert_eq!((r.double_signs, r.s1_violations), (0, 1));
    }

    #[test]
    fn devnet_ledger_retry_is_not_an_offense_and_bad_signature_is_recorded() {
        let mut l = Ledger::new("AA");
        let v = vote("a", 10, 0, VoteType::Prevote, Some(1), 0);
        l.record(v.clone());
        assert_eq!(l.record(v), Recorded::Duplicate);
        l.record_bad_signature("a", 11, 0, VoteType::Prevote, "t");
        l.record_commit(10, Some("a"));
        l.record_commit(11, None);
        let r = l.report();
        assert_eq!(r.total_votes, 1);
        assert_eq!(r.double_signs, 0);
        assert_eq!(r.bad_signatures, 1);
        assert_eq!(
            (r.committed_heights, r.signed_heights, r.missed_heights),
            (2, 1, 1)
        );
        assert_eq!(r.last_signed_height, Some(10));
        assert_eq!(r.per_node["a"].in_commits, 1);
        assert!(!r.is_clean());
    }
}
