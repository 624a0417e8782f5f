//! JSON bodies of the chain's HTTP API (devnet-internal: plain JSON numbers, not CometBFT's
//! int64-as-string; the nodes translate to CometBFT shapes on their own RPC).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::vote::VoteType;

/// `GET /head`: the last committed block and the proposal in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Chain id (the `network` in `/status`).
    pub chain_id: String,
    /// The validator's address (upper-case hex) — the key the ledger watches.
    pub validator_address: String,
    /// The validator's secp256k1 public key, base64 of the 33 compressed bytes.
    pub validator_pub_key: String,
    /// Nominal block interval.
    pub block_time_ms: u64,
    /// Last committed height.
    pub height: u64,
    /// Its time, RFC 3339.
    pub time: String,
    /// Its block hash, upper-case hex.
    pub block_hash: String,
    /// Whether block production is halted (chain-wide halt: rounds still advance).
    pub halted: bool,
    /// The height and round being decided now, and the block proposed in that round.
    pub proposal: Proposal,
}

/// The block proposed at (height, round).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Height in flight (= head height + 1).
    pub height: u64,
    /// Current round at that height.
    pub round: u32,
    /// Proposed block, upper-case hex.
    pub block_hash: String,
}

/// `POST /vote`: a vote signed with some key, as a node releases it.
///
/// The chain trusts only `sign_bytes` + `signature`: the other fields are what the node
/// claims, checked against the decoded bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteMsg {
    /// The node that released the vote (its `--node-id`).
    pub node: String,
    /// Address of the signing key, upper-case hex.
    pub validator_address: String,
    /// Claimed height.
    pub height: u64,
    /// Claimed round.
    pub round: u32,
    /// Claimed vote type.
    #[serde(rename = "type")]
    pub vote_type: VoteType,
    /// Claimed block, upper-case hex; `None` for nil.
    pub block_hash: Option<String>,
    /// Signing time, RFC 3339.
    pub timestamp: String,
    /// Base64 of the 64-byte signature.
    pub signature: String,
    /// Hex of the length-prefixed canonical vote that was signed.
    pub sign_bytes: String,
    /// Released by a muted node (an asymmetric cut, `POST /devnet/mute`): the vote may still
    /// reach some validators, so the ledger records it, but it never makes it into a commit.
    /// Not part of what was signed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub muted: bool,
}

/// What the chain did with a vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteOutcome {
    /// A valid vote by the validator, recorded.
    Recorded,
    /// The very same vote from the same node again (a retry): nothing new.
    Duplicate,
    /// Recorded, and it makes a double sign (see the ledger).
    DoubleSign,
    /// Recorded, and a second node signed at this height (S1), without a double sign.
    S1Violation,
    /// The signature does not verify against the validator's public key (recorded as such).
    BadSignature,
    /// Not decodable, another chain, or claimed fields that differ from the signed bytes.
    Malformed,
    /// Signed by a key that is not the validator's: ignored.
    Foreign,
}

/// `POST /vote` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteReceipt {
    /// The outcome.
    pub outcome: VoteOutcome,
    /// Human detail for anything but `recorded`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// `GET /commit?height=h`: a committed block and who signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCommit {
    /// Height.
    pub height: u64,
    /// Round it was committed in.
    pub round: u32,
    /// Block hash, upper-case hex.
    pub block_hash: String,
    /// Parts hash, upper-case hex.
    pub parts_hash: String,
    /// Block time, RFC 3339.
    pub time: String,
    /// Previous block's hash (empty at height 1).
    pub last_block_hash: String,
    /// Proposer's address.
    pub proposer_address: String,
    /// One entry per validator of the set, in set order.
    pub signatures: Vec<CommitSigEntry>,
}

/// One validator's entry in a commit (CometBFT `CommitSig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSigEntry {
    /// 1 absent, 2 commit, 3 nil.
    pub block_id_flag: u8,
    /// Empty when absent (as CometBFT sends it).
    pub validator_address: String,
    /// RFC 3339; Go's zero time when absent.
    pub timestamp: String,
    /// Base64; `None` when absent.
    pub signature: Option<String>,
}

/// `GET /ledger`: every vote signed with the validator key, judged. Nothing is hidden: an
/// offence stays listed for the life of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LedgerReport {
    /// The validator watched.
    pub validator_address: String,
    /// Votes at an already-voted (height, round, type) that differ in block id or come from
    /// another node. Includes `equivocations`.
    pub double_signs: u64,
    /// The slashable kind of double sign: two different block ids at one (h, r, type).
    pub equivocations: u64,
    /// Heights at which more than one node signed (counted once per extra node).
    pub s1_violations: u64,
    /// Votes claiming the validator whose signature does not verify.
    pub bad_signatures: u64,
    /// Votes that could not be read (bad hex/base64, not a vote, other chain, lying fields).
    pub malformed_votes: u64,
    /// Votes by other keys (ignored).
    pub foreign_votes: u64,
    /// Valid validator votes recorded (duplicates not counted).
    pub total_votes: u64,
    /// Heights committed since the chain started.
    pub committed_heights: u64,
    /// Of those, heights whose commit carries the validator's signature (flag 2 or 3).
    pub signed_heights: u64,
    /// Of those, heights whose commit does not.
    pub missed_heights: u64,
    /// Newest committed height the validator signed.
    pub last_signed_height: Option<u64>,
    /// Counts per node id.
    pub per_node: BTreeMap<String, NodeCounts>,
    /// Every offence, oldest first.
    pub offenses: Vec<Offense>,
}

impl LedgerReport {
    /// No double sign, no S1 violation, no bad signature.
    pub fn is_clean(&self) -> bool {
        self.double_signs == 0 && self.s1_violations == 0 && self.bad_signatures == 0
    }
}

/// Per-node vote counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeCounts {
    /// Valid votes.
    pub votes: u64,
    /// Prevotes among them.
    pub prevotes: u64,
    /// Precommits among them.
    pub precommits: u64,
    /// Distinct heights voted at.
    pub heights: u64,
    /// Lowest height voted at.
    pub first_height: Option<u64>,
    /// Highest height voted at.
    pub last_height: Option<u64>,
    /// Votes whose signature failed.
    pub bad_signatures: u64,
    /// Its precommits that made it into a commit.
    pub in_commits: u64,
    /// Valid votes it released while muted (in the ledger, never in a commit).
    #[serde(default)]
    pub muted_votes: u64,
}

/// What kind of offence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffenseKind {
    /// Two different block ids at one (h, r, type): slashable.
    Equivocation,
    /// The same vote at one (h, r, type) released by two nodes: the key was live twice.
    DuplicateSigner,
    /// A second node signed at a height (any round, any type).
    S1Violation,
    /// A signature that does not verify.
    BadSignature,
}

/// One offence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offense {
    /// What happened.
    pub kind: OffenseKind,
    /// Where.
    pub height: u64,
    /// Round of the offending vote.
    pub round: u32,
    /// Type of the offending vote.
    #[serde(rename = "type")]
    pub vote_type: VoteType,
    /// The nodes involved (the offending vote's node last).
    pub nodes: Vec<String>,
    /// Block ids involved (`null` = nil), in the order of `nodes`.
    pub block_hashes: Vec<Option<String>>,
    /// When the chain received the offending vote, RFC 3339.
    pub received_at: String,
    /// Human summary.
    pub detail: String,
}
