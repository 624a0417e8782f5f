//! Votes as CometBFT signs them: the length-prefixed protobuf `CanonicalVote`.
//!
//! The encoder writes exactly what CometBFT v0.38's `VoteSignBytes` writes (proto3: zero
//! fields omitted, nil block id omitted), so the state files the devnet's nodes leave behind
//! are decodable by `syncguard_validator::signbytes::decode` — the same bytes a real `story`
//! would leave — and a vote's content can be read back from what was actually signed.
//!
//! Block hashes are synthetic but deterministic: the proposal at (height, round) of a chain
//! always has the same hash, so two honest nodes that saw the same proposal sign the same
//! block id, and a node that did not see it (cut off) signs nil — a different block id.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use syncguard_validator::signbytes::{self, SignedMsgType};
use syncguard_validator::Step;

/// Prevote or precommit (the two votes a validator signs per round).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteType {
    /// `SignedMsgType` 1, state step 2.
    Prevote,
    /// `SignedMsgType` 2, state step 3.
    Precommit,
}

impl VoteType {
    /// The protobuf enum value.
    pub fn code(self) -> u64 {
        match self {
            VoteType::Prevote => 1,
            VoteType::Precommit => 2,
        }
    }

    /// The state-file step recorded after signing this vote.
    pub fn step(self) -> Step {
        match self {
            VoteType::Prevote => Step::Prevote,
            VoteType::Precommit => Step::Precommit,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            VoteType::Prevote => "prevote",
            VoteType::Precommit => "precommit",
        }
    }

    fn from_msg_type(t: SignedMsgType) -> Option<VoteType> {
        match t {
            SignedMsgType::Prevote => Some(VoteType::Prevote),
            SignedMsgType::Precommit => Some(VoteType::Precommit),
            SignedMsgType::Proposal => None,
        }
    }
}

/// The content of one vote, before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalVote {
    /// Prevote or precommit.
    pub vote_type: VoteType,
    /// Height voted on.
    pub height: u64,
    /// Round voted in.
    pub round: u32,
    /// The block voted for; `None` is a nil vote.
    pub block_hash: Option<[u8; 32]>,
    /// Part-set header (total, hash) of the block; ignored for nil votes.
    pub parts: (u32, [u8; 32]),
    /// Vote time as (seconds, nanos) since the Unix epoch.
    pub timestamp: (i64, i32),
    /// Chain the vote is for.
    pub chain_id: String,
}

/// Why sign bytes are not a devnet vote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoteDecodeError {
    /// Not a canonical vote at all.
    #[error("sign bytes do not decode: {0}")]
    Decode(#[from] signbytes::SignBytesError),
    /// A proposal, or a height/round out of range.
    #[error("sign bytes are not a vote: {0}")]
    NotAVote(&'static str),
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn len_field(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    varint(out, body.len() as u64);
    out.extend_from_slice(body);
}

impl CanonicalVote {
    /// Length-prefixed protobuf, as CometBFT's `VoteSignBytes`.
    pub fn sign_bytes(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(128);
        // field 1 type (varint)
        body.push(0x08);
        varint(&mut body, self.vote_type.code());
        // field 2 height, field 3 round: sfixed64, omitted when zero (proto3).
        if self.height != 0 {
            body.push(0x11);
            body.extend_from_slice(&(self.height as i64).to_le_bytes());
        }
        if self.round != 0 {
            body.push(0x19);
            body.extend_from_slice(&i64::from(self.round).to_le_bytes());
        }
        // field 4 CanonicalBlockID; CometBFT omits it for a nil vote.
        if let Some(hash) = &self.block_hash {
            let mut parts = Vec::with_capacity(40);
            if self.parts.0 != 0 {
                parts.push(0x08);
                varint(&mut parts, u64::from(self.parts.0));
            }
            len_field(&mut parts, 0x12, &self.parts.1);
            let mut block_id = Vec::with_capacity(80);
            len_field(&mut block_id, 0x0a, hash);
            len_field(&mut block_id, 0x12, &parts);
            len_field(&mut body, 0x22, &block_id);
        }
        // field 5 timestamp (google.protobuf.Timestamp), always present in a vote.
        let mut ts = Vec::with_capacity(16);
        if self.timestamp.0 != 0 {
            ts.push(0x08);
            varint(&mut ts, self.timestamp.0 as u64);
        }
        if self.timestamp.1 != 0 {
            ts.push(0x10);
            varint(&mut ts, i64::from(self.timestamp.1) as u64);
        }
        len_field(&mut body, 0x2a, &ts);
        // field 6 chain_id
        if !self.chain_id.is_empty() {
            len_field(&mut body, 0x32, self.chain_id.as_bytes());
        }
        let mut out = Vec::with_capacity(body.len() + 2);
        varint(&mut out, body.len() as u64);
        out.extend_from_slice(&body);
        out
    }
}

/// What a chain needs to know about signed bytes: decoded by the product's own decoder, so
/// the devnet and SyncGuard agree on what was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedVote {
    /// Prevote or precommit.
    pub vote_type: VoteType,
    /// Height.
    pub height: u64,
    /// Round.
    pub round: u32,
    /// `None` for nil.
    pub block_hash: Option<Vec<u8>>,
    /// Chain id in the bytes.
    pub chain_id: String,
    /// Vote time, when present.
    pub timestamp: Option<(i64, i32)>,
}

/// Decode sign bytes into a vote (proposals and negative heights are refused).
pub fn decode_vote(sign_bytes: &[u8]) -> Result<DecodedVote, VoteDecodeError> {
    let d = signbytes::decode(sign_bytes)?;
    let vote_type =
        VoteType::from_msg_type(d.msg_type).ok_or(VoteDecodeError::NotAVote("a proposal"))?;
    let height = u64::try_from(d.height).map_err(|_| VoteDecodeError::NotAVote("height < 0"))?;
    let round =
        u32::try_from(d.round).map_err(|_| VoteDecodeError::NotAVote("round out of range"))?;
    Ok(DecodedVote {
        vote_type,
        height,
        round,
        block_hash: d.block_hash,
        chain_id: d.chain_id,
        timestamp: d.timestamp,
    })
}

/// The proposal's block hash at (height, round) of `chain_id`: deterministic, so every node
/// that saw that proposal votes for the same block id.
pub fn proposal_hash(chain_id: &str, height: u64, round: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"syncguard-devnet/block/");
    h.update(chain_id.as_bytes());
    h.update(height.to_be_bytes());
    h.update(round.to_be_bytes());
    h.finalize().into()
}

/// The part-set hash of a block (one part per block in the devnet).
pub fn parts_hash(block_hash: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"syncguard-devnet/parts/");
    h.update(block_hash);
    h.finalize().into()
}

/// (seconds, nanos) since the epoch; times before 1970 become 0.
pub fn timestamp_of(t: SystemTime) -> (i64, i32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos() as i32)
}

/// RFC 3339 with nanoseconds, as CometBFT prints times.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Upper-case hex, as CometBFT prints hashes.
pub fn hex_upper(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sign bytes of the CometBFT docs' h36 state fixture (precommit at height 36).
    const H36: &str = "76080211240000000000000022480A20D1823B950D1A0FD7335B4E63D2B65CF9D0CEAC13DF4E9E2DFB4765D2C69C74D0122408011220DB69B3B750BBCEAB4BC86BB1847D3E0DDB342EFAFE5731605C61A828265E09802A0C08CDF288AF0610A88CA8FE023211746573742D636861696E2D4866644B6E44";

    fn arr(hex_str: &str) -> [u8; 32] {
        hex::decode(hex_str).unwrap().try_into().unwrap()
    }

    #[test]
    fn devnet_sign_bytes_reproduce_cometbft_fixture_exactly() {
        let fixture = hex::decode(H36).unwrap();
        let d = signbytes::decode(&fixture).unwrap();
        let vote = CanonicalVote {
            vote_type: VoteType::Precommit,
            height: 36,
            round: 0,
            block_hash: Some(arr(
                "D1823B950D1A0FD7335B4E63D2B65CF9D0CEAC13DF4E9E2DFB4765D2C69C74D0",
            )),
            parts: (
                1,
                arr("DB69B3B750BBCEAB4BC86BB1847D3E0DDB342EFAFE5731605C61A828265E0980"),
            ),
            timestamp: d.timestamp.unwrap(),
            chain_id: "test-chain-HfdKnD".into(),
        };
        assert_eq!(hex_upper(&vote.sign_bytes()), H36);
    }

    #[test]
    fn devnet_sign_bytes_round_trip_through_the_product_decoder() {
        for (vote_type, round, block) in [
            (VoteType::Prevote, 0, true),
            (VoteType::Precommit, 3, true),
            (VoteType::Prevote, 7, false),
            (VoteType::Precommit, 0, false),
        ] {
            let hash = proposal_hash("c", 123_456, round);
            let vote = CanonicalVote {
                vote_type,
                height: 123_456,
                round,
                block_hash: block.then_some(hash),
                parts: (1, parts_hash(&hash)),
                timestamp: (1_700_000_000, 5),
                chain_id: "c".into(),
            };
            let d = decode_vote(&vote.sign_bytes()).unwrap();
            assert_eq!(d.vote_type, vote_type);
            assert_eq!((d.height, d.round), (123_456, round));
            assert_eq!(d.block_hash, block.then(|| hash.to_vec()));
            assert_eq!(d.timestamp, Some((1_700_000_000, 5)));
            assert_eq!(d.chain_id, "c");
        }
    }

    #[test]
    fn devnet_proposal_hashes_differ_by_round() {
        assert_ne!(proposal_hash("c", 5, 0), proposal_hash("c", 5, 1));
        assert_eq!(proposal_hash("c", 5, 0), proposal_hash("c", 5, 0));
    }
}
