//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use syncguard_validator::{Hrs, SignState, Step};

/// A recorded fixture under `shared/fixtures/privval/` (see SOURCES.txt there).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/privval")
        .join(name)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn len_field(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Length-prefixed CanonicalVote, encoded like CometBFT's `VoteSignBytes`
/// (zero height/round omitted, proto3 style). `msg_type`: 1 prevote, 2 precommit.
pub fn vote_sign_bytes(
    msg_type: u8,
    height: i64,
    round: i64,
    block_hash: &[u8],
    chain_id: &str,
) -> Vec<u8> {
    let mut body = vec![0x08, msg_type];
    if height != 0 {
        body.push(0x11);
        body.extend_from_slice(&height.to_le_bytes());
    }
    if round != 0 {
        body.push(0x19);
        body.extend_from_slice(&round.to_le_bytes());
    }
    if !block_hash.is_empty() {
        let mut block_id = Vec::new();
        len_field(0x0a, block_hash, &mut block_id);
        len_field(0x22, &block_id, &mut body);
    }
    let mut ts = vec![0x08];
    varint(1_700_000_000, &mut ts);
    len_field(0x2a, &ts, &mut body);
    len_field(0x32, chain_id.as_bytes(), &mut body);
    let mut out = Vec::new();
    varint(body.len() as u64, &mut out);
    out.extend_from_slice(&body);
    out
}

/// Sign bytes for a step (prevote/precommit as votes; propose as a vote-shaped
/// stand-in is not needed by these tests, so it panics).
pub fn sign_bytes_for(hrs: Hrs, block_hash: &[u8]) -> Vec<u8> {
    let msg_type = match hrs.step {
        Step::Prevote => 1,
        Step::Precommit => 2,
        other => panic!("no vote type for step {other}"),
    };
    vote_sign_bytes(
        msg_type,
        hrs.height,
        i64::from(hrs.round),
        block_hash,
        "test-chain",
    )
}

/// A deterministic "signature" derived from the sign bytes, so a reader can
/// tell whether signature and sign bytes belong together (a torn write would not).
pub fn fake_signature(sign_bytes: &[u8]) -> Vec<u8> {
    let mut sig = Sha256::digest(sign_bytes).to_vec();
    sig.extend_from_slice(&Sha256::digest(&sig));
    sig
}

/// A signed state whose signature is derived from its sign bytes.
pub fn signed_state(hrs: Hrs, block_hash: &[u8]) -> SignState {
    let bytes = sign_bytes_for(hrs, block_hash);
    SignState::signed(hrs, fake_signature(&bytes), bytes).unwrap()
}
