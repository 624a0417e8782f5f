//! CometBFT FilePV files for SyncGuard: the validator's last-sign state and
//! its consensus key, handled so that a failover can never make the validator
//! sign twice (DESIGN.md §3 S2/S3/S5, §7).
//!
//! What lives where:
//! - [`hrs`] — [`Hrs`]/[`Step`], their total order, and [`check_hrs`]
//!   (CometBFT's `CheckHRS` + same-HRS sign-bytes comparison).
//! - [`state`] — [`SignState`]: strict parser and CometBFT-identical writer of
//!   `priv_validator_state.json`.
//! - [`signbytes`] — decoder of the canonical vote/proposal inside the stored
//!   sign bytes, and [`verify_state`] (sign bytes agree with the state's HRS).
//! - [`store`] — [`StateStore`]: exclusive lock, monotonic (never lower) and
//!   atomic (temp + fsync + rename + dir fsync) writes of the state file and
//!   its backup, and the promotion merge `max(local, replica, fence)`.
//! - [`key`] — [`ValidatorKey`]: `priv_validator_key.json` (secp256k1 and
//!   ed25519) checked against its address and public key, signing, and
//!   refusal of Story's encrypted `priv_validator_key.enc`. Private bytes are
//!   zeroized and never printed.
//! - [`fsutil`] — crash-safe atomic file writes ([`fsutil::write_atomic`]:
//!   temp + fsync + rename + dir fsync), shared by the store, key files, the
//!   actuator's key swap and the devnet.
//!
//! Unix only (permission modes, directory fsync).

pub mod fsutil;
pub mod hrs;
pub mod key;
pub mod signbytes;
pub mod state;
pub mod store;

pub use hrs::{check_hrs, Hrs, HrsError, SignDecision, Step};
pub use key::{KeyError, KeyErrorKind, KeyType, PublicKey, ValidatorKey};
pub use signbytes::{verify_state, CanonicalSignBytes, SignBytesError, SignedMsgType};
pub use state::{SignState, StateError, StateErrorKind};
pub use store::{StateStore, StoreError, WriteOutcome};
