//! The simulated node's file signer, following CometBFT v0.38's FilePV rules: check the
//! request against the CURRENT last-sign state (in memory — loaded once at start, then only
//! updated by this signer, exactly as `story` does), sign, WRITE the state file atomically,
//! and only then hand the vote out.
//!
//! Same HRS, same vote except the timestamp: FilePV re-sends the stored signature (and the
//! stored sign bytes) instead of signing anew — reproduced here, so a node restarted in the
//! middle of a round behaves like `story`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use syncguard_validator::{check_hrs, Hrs, HrsError, SignDecision, SignState, ValidatorKey};

use crate::api::VoteMsg;
use crate::fsutil::write_atomic;
use crate::vote::{
    decode_vote, hex_upper, parts_hash, rfc3339, timestamp_of, CanonicalVote, VoteType,
};

/// Why a vote was not signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// FilePV refuses: the request is not above the last signed state.
    #[error("refused by FilePV rules: {0}")]
    Refused(#[from] HrsError),
    /// Signing itself failed.
    #[error("signing failed: {0}")]
    Key(#[from] syncguard_validator::KeyErrorKind),
    /// The new state could not be built.
    #[error("invalid state: {0}")]
    State(#[from] syncguard_validator::StateErrorKind),
    /// The state file could not be written: the vote is NOT released. (`story` panics here;
    /// the node exits.)
    #[error("cannot write the state file {}: {source}", path.display())]
    Write {
        /// The state file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl SignError {
    /// A refusal is business as usual (a stale request); anything else is fatal for the node.
    pub fn is_refusal(&self) -> bool {
        matches!(self, SignError::Refused(_))
    }
}

/// A node's signer.
#[derive(Debug)]
pub struct Signer {
    key: ValidatorKey,
    state: SignState,
    state_path: PathBuf,
    chain_id: String,
    node: String,
}

impl Signer {
    /// A signer with the state as loaded at start.
    pub fn new(
        key: ValidatorKey,
        state: SignState,
        state_path: &Path,
        chain_id: &str,
        node: &str,
    ) -> Self {
        Signer {
            key,
            state,
            state_path: state_path.to_path_buf(),
            chain_id: chain_id.to_string(),
            node: node.to_string(),
        }
    }

    /// The last-sign state in memory (equal to the file after every successful sign).
    pub fn state(&self) -> &SignState {
        &self.state
    }

    /// The key's address.
    pub fn address(&self) -> String {
        self.key.address_hex()
    }

    /// Sign a vote for `block_hash` (None = nil) at (height, round), persisting the state
    /// before returning the vote to release.
    pub fn sign_vote(
        &mut self,
        vote_type: VoteType,
        height: u64,
        round: u32,
        block_hash: Option<[u8; 32]>,
        now: SystemTime,
    ) -> Result<VoteMsg, SignError> {
        let hrs = Hrs::new(
            i64::try_from(height).unwrap_or(i64::MAX),
            i32::try_from(round).unwrap_or(i32::MAX),
            vote_type.step(),
        );
        let mut sign_bytes = CanonicalVote {
            vote_type,
            height,
            round,
            block_hash,
            parts: (1, block_hash.map(|b| parts_hash(&b)).unwrap_or_default()),
            timestamp: timestamp_of(now),
            chain_id: self.chain_id.clone(),
        }
        .sign_bytes();
        // FilePV: at the same HRS, a vote that differs only in its timestamp is the same
        // vote — use the stored bytes, so check_hrs answers Reuse.
        if self.state.hrs() == hrs {
            if let Some(stored) = self.state.sign_bytes() {
                if let (Ok(a), Ok(b)) = (decode_vote(stored), decode_vote(&sign_bytes)) {
                    if (a.vote_type, a.height, a.round, &a.block_hash, &a.chain_id)
                        == (b.vote_type, b.height, b.round, &b.block_hash, &b.chain_id)
                    {
                        sign_bytes = stored.to_vec();
                    }
                }
            }
        }
        let signature = match check_hrs(&self.state, hrs, &sign_bytes)? {
            SignDecision::Reuse { signature } => signature,
            SignDecision::Sign => {
                let signature = self.key.sign(&sign_bytes)?;
                let new_state = SignState::signed(hrs, signature.clone(), sign_bytes.clone())?;
                write_atomic(&self.state_path, new_state.to_json().as_bytes()).map_err(
                    |source| SignError::Write {
                        path: self.state_path.clone(),
                        source,
                    },
                )?;
                self.state = new_state;
                signature
            }
        };
        let decoded_time = decode_vote(&sign_bytes)
            .ok()
            .and_then(|d| d.timestamp)
            .and_then(|(s, n)| {
                let d = std::time::Duration::new(u64::try_from(s).ok()?, u32::try_from(n).ok()?);
                SystemTime::UNIX_EPOCH.checked_add(d)
            })
            .unwrap_or(now);
        Ok(VoteMsg {
            node: self.node.clone(),
            validator_address: self.key.address_hex(),
            height,
            round,
            vote_type,
            block_hash: block_hash.map(|b| hex_upper(&b)),
            timestamp: rfc3339(decoded_time),
            signature: BASE64.encode(&signature),
            sign_bytes: hex_upper(&sign_bytes),
            muted: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vote::proposal_hash;
    use std::time::Duration;
    use syncguard_validator::Step;

    fn setup(state: SignState) -> (tempfile::TempDir, PathBuf, Signer, ValidatorKey) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("priv_validator_state.json");
        std::fs::write(&path, state.to_json()).unwrap();
        let key = ValidatorKey::generate_secp256k1();
        let copy = ValidatorKey::from_json(key.to_json().as_bytes()).unwrap();
        let signer = Signer::new(key, state, &path, "c", "a");
        (dir, path, signer, copy)
    }

    #[test]
    fn devnet_signer_writes_state_before_release_and_refuses_regression() {
        let (_d, path, mut s, key) = setup(SignState::initial());
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let block = Some(proposal_hash("c", 5, 0));
        for (vt, step) in [
            (VoteType::Prevote, Step::Prevote),
            (VoteType::Precommit, Step::Precommit),
        ] {
            let vote = s.sign_vote(vt, 5, 0, block, t).unwrap();
            // The file already holds this vote when the vote is handed out.
            let on_disk = SignState::load(&path).unwrap();
            assert_eq!(on_disk.hrs(), Hrs::new(5, 0, step));
            assert_eq!(hex_upper(on_disk.sign_bytes().unwrap()), vote.sign_bytes);
            syncguard_validator::verify_state(&on_disk).unwrap();
            let bytes = hex::decode(&vote.sign_bytes).unwrap();
            let sig = BASE64.decode(&vote.signature).unwrap();
            assert!(key.verify(&bytes, &sig));
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains("\"height\": \"5\""), "{text}");
        }
        let e = s.sign_vote(VoteType::Prevote, 5, 0, block, t).unwrap_err();
        assert!(e.is_refusal(), "{e}");
        let e = s.sign_vote(VoteType::Prevote, 4, 3, block, t).unwrap_err();
        assert!(e.is_refusal(), "{e}");
        // A different block at the same HRS is a conflict, never signed.
        let e = s
            .sign_vote(VoteType::Precommit, 5, 0, None, t + Duration::from_secs(1))
            .unwrap_err();
        assert!(
            matches!(e, SignError::Refused(HrsError::Conflict { .. })),
            "{e}"
        );
        assert_eq!(
            SignState::load(&path).unwrap().hrs(),
            Hrs::new(5, 0, Step::Precommit)
        );
    }

    #[test]
    fn devnet_signer_reuses_same_vote_after_restart() {
        let (_d, path, mut s, key) = setup(SignState::initial());
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let block = Some(proposal_hash("c", 7, 1));
        let first = s.sign_vote(VoteType::Precommit, 7, 1, block, t).unwrap();
        // "Restart": a new signer from the file, asked again later for the same vote.
        let state = SignState::load(&path).unwrap();
        let mut s2 = Signer::new(key, state, &path, "c", "a");
        let again = s2
            .sign_vote(VoteType::Precommit, 7, 1, block, t + Duration::from_secs(3))
            .unwrap();
        assert_eq!(again.signature, first.signature);
        assert_eq!(again.sign_bytes, first.sign_bytes);
    }

    #[test]
    fn devnet_signer_respects_a_fence_state() {
        let fence = SignState::unsigned(Hrs::new(12, 0, Step::None)).unwrap();
        let (_d, _path, mut s, _key) = setup(fence);
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert!(s
            .sign_vote(VoteType::Prevote, 11, 0, None, t)
            .unwrap_err()
            .is_refusal());
        s.sign_vote(VoteType::Prevote, 12, 0, None, t).unwrap();
    }
}
