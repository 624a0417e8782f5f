//! The simulated chain (PURE): block production, commits, halts and the ledger, driven by
//! calls that each carry `now`. No I/O and no clock of its own, so every rule is unit-tested
//! with simulated time; `chain_server` is the thin HTTP shell around it.
//!
//! Model: a validator set of three simulated validators that always sign plus the watched
//! validator (small voting power, so the chain never waits for it). A block is committed every
//! `block_time` at the round in flight; the watched validator's signature is in the commit of
//! height h when its precommit for h's committed block (or nil) at the commit round arrived
//! before the commit. While halted, no block is committed but rounds advance every
//! `block_time` (a chain that lost its quorum keeps timing out rounds), each round with its
//! own proposal.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use syncguard_validator::PublicKey;

use crate::api::{BlockCommit, CommitSigEntry, Head, LedgerReport, Proposal, VoteMsg};
use crate::api::{VoteOutcome, VoteReceipt};
use crate::ledger::{Ledger, LedgerVote, Recorded};
use crate::vote::{decode_vote, hex_upper, parts_hash, proposal_hash, rfc3339, VoteType};

/// Go's zero time, which CometBFT prints for an absent signature.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// How many simulated validators sign every block besides the watched one.
const OTHER_VALIDATORS: usize = 3;

/// Fixed parameters of a chain.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    /// Chain id (the network name in `/status`).
    pub chain_id: String,
    /// Nominal block interval (also the round timeout while halted).
    pub block_time: Duration,
    /// The watched validator's public key (secp256k1).
    pub validator: PublicKey,
    /// Heights that already exist at start (history, none signed by the validator), ≥ 1.
    pub initial_height: u64,
}

#[derive(Debug, Clone)]
struct Block {
    height: u64,
    round: u32,
    hash: [u8; 32],
    time: SystemTime,
    ours: Option<CommitSigEntry>,
}

#[derive(Debug, Clone)]
struct Precommit {
    node: String,
    block_hash: Option<Vec<u8>>,
    signature: Vec<u8>,
    timestamp: String,
}

/// The chain.
#[derive(Debug)]
pub struct ChainCore {
    cfg: ChainConfig,
    validator_address: String,
    others: Vec<String>,
    blocks: Vec<Block>,
    round: u32,
    round_deadline: SystemTime,
    next_block_at: SystemTime,
    halted: bool,
    /// Valid precommits for heights not yet committed, by (height, round).
    precommits: BTreeMap<(u64, u32), Vec<Precommit>>,
    ledger: Ledger,
}

fn other_address(i: usize) -> String {
    let digest = Sha256::digest(format!("syncguard-devnet/other-validator/{i}"));
    hex_upper(&digest[..20])
}

fn fake_signature(address: &str, height: u64) -> String {
    let mut h = Sha256::new();
    h.update(address.as_bytes());
    h.update(height.to_be_bytes());
    let a: [u8; 32] = h.finalize().into();
    let b: [u8; 32] = Sha256::digest(a).into();
    BASE64.encode([a, b].concat())
}

impl ChainCore {
    /// A chain whose history `1..=initial_height` ends at `now`; the next block is due at
    /// `now + block_time`.
    pub fn new(cfg: ChainConfig, now: SystemTime) -> Self {
        let bt = cfg.block_time.max(Duration::from_millis(1));
        let cfg = ChainConfig {
            block_time: bt,
            initial_height: cfg.initial_height.max(1),
            ..cfg
        };
        let validator_address = cfg.validator.address_hex();
        let mut chain = ChainCore {
            others: (0..OTHER_VALIDATORS).map(other_address).collect(),
            ledger: Ledger::new(&validator_address),
            validator_address,
            blocks: Vec::new(),
            round: 0,
            round_deadline: now + bt,
            next_block_at: now + bt,
            halted: false,
            precommits: BTreeMap::new(),
            cfg,
        };
        for h in 1..=chain.cfg.initial_height {
            let back = bt * u32::try_from(chain.cfg.initial_height - h).unwrap_or(u32::MAX);
            let time = now.checked_sub(back).unwrap_or(now);
            chain.blocks.push(Block {
                height: h,
                round: 0,
                hash: proposal_hash(&chain.cfg.chain_id, h, 0),
                time,
                ours: None,
            });
        }
        chain
    }

    /// The watched validator's address.
    pub fn validator_address(&self) -> &str {
        &self.validator_address
    }

    /// The configuration.
    pub fn config(&self) -> &ChainConfig {
        &self.cfg
    }

    /// Last committed height.
    pub fn height(&self) -> u64 {
        self.blocks.last().map_or(0, |b| b.height)
    }

    /// Whether production is halted.
    pub fn is_halted(&self) -> bool {
        self.halted
    }

    fn last(&self) -> Option<&Block> {
        self.blocks.last()
    }

    /// The head as served at `GET /head`.
    pub fn head(&self) -> Head {
        let (height, time, hash) = match self.last() {
            Some(b) => (b.height, rfc3339(b.time), hex_upper(&b.hash)),
            None => (0, ZERO_TIME.to_string(), String::new()),
        };
        let next = height + 1;
        Head {
            chain_id: self.cfg.chain_id.clone(),
            validator_address: self.validator_address.clone(),
            validator_pub_key: self.cfg.validator.to_base64(),
            block_time_ms: self.cfg.block_time.as_millis() as u64,
            height,
            time,
            block_hash: hash,
            halted: self.halted,
            proposal: Proposal {
                height: next,
                round: self.round,
                block_hash: hex_upper(&proposal_hash(&self.cfg.chain_id, next, self.round)),
            },
        }
    }

    /// Advance time: commit a block when one is due (at most one per call), or — halted —
    /// advance the round. Returns the height committed, if any.
    pub fn tick(&mut self, now: SystemTime) -> Option<u64> {
        let bt = self.cfg.block_time;
        if self.halted {
            // Bounded catch-up: after a long stall of the process, skip ahead instead of
            // looping once per missed round.
            if now >= self.round_deadline + bt * 1000 {
                self.round_deadline = now;
            }
            while now >= self.round_deadline {
                self.round = self.round.saturating_add(1);
                self.round_deadline += bt;
            }
            return None;
        }
        if now < self.next_block_at {
            return None;
        }
        let height = self.commit_in_flight(now);
        self.next_block_at += bt;
        if self.next_block_at <= now {
            self.next_block_at = now + bt;
        }
        Some(height)
    }

    fn commit_in_flight(&mut self, now: SystemTime) -> u64 {
        let height = self.height() + 1;
        let round = self.round;
        let hash = proposal_hash(&self.cfg.chain_id, height, round);
        let candidates = self.precommits.remove(&(height, round)).unwrap_or_default();
        // A precommit for the committed block counts as a commit signature (flag 2); failing
        // that, a nil precommit at the commit round is still a signature (flag 3). A precommit
        // for another block is not included (absent).
        let chosen = candidates
            .iter()
            .find(|p| p.block_hash.as_deref() == Some(&hash[..]))
            .map(|p| (p, 2u8))
            .or_else(|| {
                candidates
                    .iter()
                    .find(|p| p.block_hash.is_none())
                    .map(|p| (p, 3u8))
            });
        let ours = chosen.map(|(p, flag)| CommitSigEntry {
            block_id_flag: flag,
            validator_address: self.validator_address.clone(),
            timestamp: p.timestamp.clone(),
            signature: Some(BASE64.encode(&p.signature)),
        });
        self.ledger
            .record_commit(height, chosen.map(|(p, _)| p.node.as_str()));
        self.blocks.push(Block {
            height,
            round,
            hash,
            time: now,
            ours,
        });
        self.round = 0;
        // Votes for heights now decided can no longer make it into a commit.
        self.precommits = self.precommits.split_off(&(height + 1, 0));
        height
    }

    /// Stop producing blocks (rounds keep advancing).
    pub fn halt(&mut self, now: SystemTime) {
        if !self.halted {
            self.halted = true;
            self.round_deadline = now + self.cfg.block_time;
        }
    }

    /// Produce blocks again; the first one is due one block time from now.
    pub fn resume(&mut self, now: SystemTime) {
        if self.halted {
            self.halted = false;
            self.next_block_at = now + self.cfg.block_time;
        }
    }

    /// The commit of a committed height (None above the head or at 0).
    pub fn commit(&self, height: u64) -> Option<BlockCommit> {
        let idx = usize::try_from(height.checked_sub(1)?).ok()?;
        let b = self.blocks.get(idx)?;
        let time = rfc3339(b.time);
        let mut signatures: Vec<CommitSigEntry> = self
            .others
            .iter()
            .map(|a| CommitSigEntry {
                block_id_flag: 2,
                validator_address: a.clone(),
                timestamp: time.clone(),
                signature: Some(fake_signature(a, b.height)),
            })
            .collect();
        signatures.push(b.ours.clone().unwrap_or_else(|| CommitSigEntry {
            block_id_flag: 1,
            validator_address: String::new(),
            timestamp: ZERO_TIME.to_string(),
            signature: None,
        }));
        let last_block_hash = idx
            .checked_sub(1)
            .and_then(|i| self.blocks.get(i))
            .map(|p| hex_upper(&p.hash))
            .unwrap_or_default();
        Some(BlockCommit {
            height: b.height,
            round: b.round,
            block_hash: hex_upper(&b.hash),
            parts_hash: hex_upper(&parts_hash(&b.hash)),
            time,
            last_block_hash,
            proposer_address: self.others[(b.height as usize) % self.others.len()].clone(),
            signatures,
        })
    }

    /// A vote arrives.
    pub fn vote(&mut self, msg: &VoteMsg, now: SystemTime) -> VoteReceipt {
        let receipt = |outcome: VoteOutcome, detail: String| VoteReceipt { outcome, detail };
        if !msg
            .validator_address
            .trim()
            .eq_ignore_ascii_case(&self.validator_address)
        {
            self.ledger.record_foreign();
            return receipt(VoteOutcome::Foreign, "not the validator's key".into());
        }
        let Ok(bytes) = hex::decode(msg.sign_bytes.trim()) else {
            self.ledger.record_malformed();
            return receipt(VoteOutcome::Malformed, "sign_bytes is not hex".into());
        };
        let decoded = match decode_vote(&bytes) {
            Ok(d) => d,
            Err(e) => {
                self.ledger.record_malformed();
                return receipt(VoteOutcome::Malformed, e.to_string());
            }
        };
        if decoded.chain_id != self.cfg.chain_id {
            self.ledger.record_malformed();
            return receipt(
                VoteOutcome::Malformed,
                format!("vote for chain {:?}", decoded.chain_id),
            );
        }
        let received_at = rfc3339(now);
        let signature = BASE64.decode(msg.signature.trim()).unwrap_or_default();
        if !self.cfg.validator.verify(&bytes, &signature) {
            self.ledger.record_bad_signature(
                &msg.node,
                decoded.height,
                decoded.round,
                decoded.vote_type,
                &received_at,
            );
            return receipt(
                VoteOutcome::BadSignature,
                "signature does not verify against the validator key".into(),
            );
        }
        // A real signature by the key: it goes in the ledger whatever the claims say.
        let recorded = self.ledger.record(LedgerVote {
            node: msg.node.clone(),
            height: decoded.height,
            round: decoded.round,
            vote_type: decoded.vote_type,
            block_hash: decoded.block_hash.clone(),
            sign_bytes: bytes,
            received_at,
            muted: msg.muted,
        });
        // A muted node's precommit never reaches the proposer: it is in the ledger only.
        if recorded != Recorded::Duplicate
            && !msg.muted
            && decoded.vote_type == VoteType::Precommit
            && decoded.height > self.height()
        {
            self.precommits
                .entry((decoded.height, decoded.round))
                .or_default()
                .push(Precommit {
                    node: msg.node.clone(),
                    block_hash: decoded.block_hash.clone(),
                    signature,
                    timestamp: decoded
                        .timestamp
                        .and_then(|(s, n)| {
                            let d = Duration::new(u64::try_from(s).ok()?, u32::try_from(n).ok()?);
                            SystemTime::UNIX_EPOCH.checked_add(d)
                        })
                        .map(rfc3339)
                        .unwrap_or_else(|| msg.timestamp.clone()),
                });
        }
        let claimed_block = msg.block_hash.as_deref().map(str::to_ascii_uppercase);
        let claims_match = msg.height == decoded.height
            && msg.round == decoded.round
            && msg.vote_type == decoded.vote_type
            && claimed_block == decoded.block_hash.as_deref().map(hex_upper);
        match recorded {
            Recorded::DoubleSign => receipt(VoteOutcome::DoubleSign, String::new()),
            Recorded::S1Violation => receipt(VoteOutcome::S1Violation, String::new()),
            Recorded::Duplicate => receipt(VoteOutcome::Duplicate, String::new()),
            Recorded::Clean if !claims_match => {
                self.ledger.record_malformed();
                receipt(
                    VoteOutcome::Malformed,
                    "claimed height/round/type/block differ from the signed bytes".into(),
                )
            }
            Recorded::Clean => receipt(VoteOutcome::Recorded, String::new()),
        }
    }

    /// The ledger's report.
    pub fn ledger(&self) -> LedgerReport {
        self.ledger.report()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vote::{timestamp_of, CanonicalVote};
    use syncguard_validator::ValidatorKey;

    const BT: Duration = Duration::from_millis(500);

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn chain(key: &ValidatorKey) -> ChainCore {
        ChainCore::new(
            ChainConfig {
                chain_id: "devnet-test".into(),
                block_time: BT,
                validator: key.public_key().clone(),
                initial_height: 10,
            },
            t0(),
        )
    }

    fn signed(
        key: &ValidatorKey,
        node: &str,
        h: u64,
        r: u32,
        t: VoteType,
        block: Option<[u8; 32]>,
        at: SystemTime,
    ) -> VoteMsg {
        let v = CanonicalVote {
            vote_type: t,
            height: h,
            round: r,
            block_hash: block,
            parts: (1, block.map(|b| parts_hash(&b)).unwrap_or_default()),
            timestamp: timestamp_of(at),
            chain_id: "devnet-test".into(),
        };
        let bytes = v.sign_bytes();
        VoteMsg {
            node: node.into(),
            validator_address: key.address_hex(),
            height: h,
            round: r,
            vote_type: t,
            block_hash: block.map(|b| hex_upper(&b)),
            timestamp: rfc3339(at),
            signature: BASE64.encode(key.sign(&bytes).unwrap()),
            sign_bytes: hex_upper(&bytes),
            muted: false,
        }
    }

    fn proposal(h: u64, r: u32) -> Option<[u8; 32]> {
        Some(proposal_hash("devnet-test", h, r))
    }

    #[test]
    fn devnet_chain_produces_one_block_per_block_time() {
        let key = ValidatorKey::generate_secp256k1();
        let mut c = chain(&key);
        assert_eq!(c.height(), 10);
        assert_eq!(c.tick(t0() + BT / 2), None);
        assert_eq!(c.tick(t0() + BT), Some(11));
        assert_eq!(c.tick(t0() + BT + BT / 2), None);
        assert_eq!(c.tick(t0() + BT * 2), Some(12));
        let head = c.head();
        assert_eq!(
            (head.height, head.proposal.height, head.proposal.round),
            (12, 13, 0)
        );
        assert_eq!(head.time, rfc3339(t0() + BT * 2));
        // History exists and is unsigned by the validator.
        let first = c.commit(1).unwrap();
        assert_eq!(first.signatures.last().unwrap().block_id_flag, 1);
        assert_eq!(c.commit(13), None);
        assert_eq!(c.commit(0), None);
        assert_eq!(
            c.commit(12).unwrap().last_block_hash,
            c.commit(11).unwrap().block_hash
        );
    }

    #[test]
    fn devnet_chain_commit_includes_precommit_that_arrived_in_time() {
        let key = ValidatorKey::generate_secp256k1();
        let mut c = chain(&key);
        let at = t0() + BT / 4;
        let pv = signed(&key, "a", 11, 0, VoteType::Prevote, proposal(11, 0), at);
        let pc = signed(&key, "a", 11, 0, VoteType::Precommit, proposal(11, 0), at);
        assert_eq!(c.vote(&pv, at).outcome, VoteOutcome::Recorded);
        assert_eq!(c.vote(&pc, at).outcome, VoteOutcome::Recorded);
        c.tick(t0() + BT);
        let commit = c.commit(11).unwrap();
        let ours = commit.signatures.last().unwrap();
        assert_eq!(ours.block_id_flag, 2);
        assert_eq!(ours.validator_address, key.address_hex());
        assert_eq!(ours.signature.as_deref(), Some(pc.signature.as_str()));

        // A precommit for 12 arriving after 12 was committed is recorded but not included.
        c.tick(t0() + BT * 2);
        let late = t0() + BT * 2 + BT / 4;
        let pc12 = signed(&key, "a", 12, 0, VoteType::Precommit, proposal(12, 0), late);
        assert_eq!(c.vote(&pc12, late).outcome, VoteOutcome::Recorded);
        assert_eq!(
            c.commit(12)
                .unwrap()
                .signatures
                .last()
                .unwrap()
                .block_id_flag,
            1
        );
        let l = c.ledger();
        assert_eq!(
            (l.committed_heights, l.signed_heights, l.missed_heights),
            (2, 1, 1)
        );
        assert_eq!(l.per_node["a"].in_commits, 1);
        assert!(l.is_clean());
    }

    #[test]
    fn double_sign_devnet_chain_muted_votes_are_in_the_ledger_not_in_commits() {
        let key = ValidatorKey::generate_secp256k1();
        let mut c = chain(&key);
        let at = t0() + BT / 4;
        let mute = |mut v: VoteMsg| {
            v.muted = true;
            v
        };
        let pv = mute(signed(
            &key,
            "a",
            11,
            0,
            VoteType::Prevote,
            proposal(11, 0),
            at,
        ));
        let pc = mute(signed(
            &key,
            "a",
            11,
            0,
            VoteType::Precommit,
            proposal(11, 0),
            at,
        ));
        assert_eq!(c.vote(&pv, at).outcome, VoteOutcome::Recorded);
        assert_eq!(c.vote(&pc, at).outcome, VoteOutcome::Recorded);
        c.tick(t0() + BT);
        let ours = |c: &ChainCore, h| c.commit(h).unwrap().signatures.last().unwrap().clone();
        assert_eq!(ours(&c, 11).block_id_flag, 1, "a muted precommit is absent");
        let l = c.ledger();
        assert_eq!(
            (l.total_votes, l.signed_heights, l.missed_heights),
            (2, 0, 1)
        );
        assert_eq!(l.per_node["a"].muted_votes, 2);
        assert_eq!(l.per_node["a"].in_commits, 0);

        // Unmuted again: the next height's precommit is in its commit.
        let at = t0() + BT + BT / 4;
        let pc12 = signed(&key, "a", 12, 0, VoteType::Precommit, proposal(12, 0), at);
        assert_eq!(c.vote(&pc12, at).outcome, VoteOutcome::Recorded);
        c.tick(t0() + BT * 2);
        assert_eq!(ours(&c, 12).block_id_flag, 2);

        // A muted prevote for the block and another node's nil prevote: an equivocation.
        let at = t0() + BT * 2 + BT / 4;
        let muted = mute(signed(
            &key,
            "a",
            13,
            0,
            VoteType::Prevote,
            proposal(13, 0),
            at,
        ));
        let nil = signed(&key, "b", 13, 0, VoteType::Prevote, None, at);
        assert_eq!(c.vote(&muted, at).outcome, VoteOutcome::Recorded);
        assert_eq!(c.vote(&nil, at).outcome, VoteOutcome::DoubleSign);
        let l = c.ledger();
        assert_eq!((l.double_signs, l.equivocations), (1, 1));
        assert!(l.offenses[0].block_hashes.contains(&None));
    }

    #[test]
    fn devnet_chain_halt_stops_blocks_and_advances_rounds() {
        let key = ValidatorKey::generate_secp256k1();
        let mut c = chain(&key);
        c.halt(t0());
        for i in 1..=5 {
            assert_eq!(c.tick(t0() + BT * i), None);
        }
        let head = c.head();
        assert!(head.halted);
        assert_eq!(
            (head.height, head.proposal.height, head.proposal.round),
            (10, 11, 5)
        );
        assert_eq!(
            head.proposal.block_hash,
            hex_upper(&proposal_hash("devnet-test", 11, 5))
        );
        // A nil precommit at the commit round counts as a signature (flag 3).
        let at = t0() + BT * 5;
        let nil = signed(&key, "a", 11, 5, VoteType::Precommit, None, at);
        c.vote(&nil, at);
        c.resume(at);
        assert_eq!(c.tick(at + BT / 2), None);
        assert_eq!(c.tick(at + BT), Some(11));
        let commit = c.commit(11).unwrap();
        assert_eq!(commit.round, 5);
        assert_eq!(commit.signatures.last().unwrap().block_id_flag, 3);
        assert_eq!(c.head().proposal.round, 0);
    }

    #[test]
    fn double_sign_devnet_chain_ledger_flags_two_nodes_and_equivocation() {
        let key = ValidatorKey::generate_secp256k1();
        let mut c = chain(&key);
        let at = t0() + BT / 4;
        let a = signed(&key, "a", 11, 0, VoteType::Prevote, proposal(11, 0), at);
        let b = signed(&key, "b", 11, 0, VoteType::Prevote, proposal(11, 0), at);
        let b_nil = signed(&key, "b", 11, 0, VoteType::Precommit, None, at);
        let a_pc = signed(&key, "a", 11, 0, VoteType::Precommit, proposal(11, 0), at);
        assert_eq!(c.vote(&a, at).outcome, VoteOutcome::Recorded);
        assert_eq!(c.vote(&a, at).outcome, VoteOutcome::Duplicate);
        assert_eq!(c.vote(&b, at).outcome, VoteOutcome::DoubleSign);
        assert_eq!(c.vote(&b_nil, at).outcome, VoteOutcome::Recorded);
        assert_eq!(c.vote(&a_pc, at).outcome, VoteOutcome::DoubleSign);
        let l = c.ledger();
        assert_eq!(l.double_signs, 2);
        assert_eq!(l.equivocations, 1);
        assert_eq!(l.s1_violations, 1);
        assert!(!l.is_clean());
        // The commit still picks the precommit for the committed block.
        c.tick(t0() + BT);
        assert_eq!(
            c.commit(11)
                .unwrap()
                .signatures
                .last()
                .unwrap()
                .block_id_flag,
            2
        );
    }

    #[test]
    fn devnet_chain_records_bad_signatures_and_ignores_foreign_keys() {
        let key = ValidatorKey::generate_secp256k1();
        let other = ValidatorKey::generate_secp256k1();
        let mut c = chain(&key);
        let at = t0();
        let mut forged = signed(&other, "x", 11, 0, VoteType::Prevote, proposal(11, 0), at);
        forged.validator_address = key.address_hex();
        assert_eq!(c.vote(&forged, at).outcome, VoteOutcome::BadSignature);
        let foreign = signed(&other, "x", 11, 0, VoteType::Prevote, proposal(11, 0), at);
        assert_eq!(c.vote(&foreign, at).outcome, VoteOutcome::Foreign);
        let mut lying = signed(&key, "a", 11, 0, VoteType::Prevote, proposal(11, 0), at);
        lying.height = 99;
        assert_eq!(c.vote(&lying, at).outcome, VoteOutcome::Malformed);
        let mut garbage = lying.clone();
        garbage.sign_bytes = "zz".into();
        assert_eq!(c.vote(&garbage, at).outcome, VoteOutcome::Malformed);
        let l = c.ledger();
        assert_eq!(
            (
                l.bad_signatures,
                l.foreign_votes,
                l.malformed_votes,
                l.total_votes
            ),
            (1, 1, 2, 1)
        );
        assert_eq!(l.double_signs, 0);
    }
}
