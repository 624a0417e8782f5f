//! Health of the local Story node: SyncGuard's eyes.
//!
//! - `rpc` — [`ProbeError`]: what went wrong with one call (timeout, refused, HTTP status,
//!   JSON-RPC error, method not found, malformed body), naming the URL and the method.
//! - `comet` — [`CometClient`]: CometBFT `/status`, `/net_info`, `/commit?height=h` (GET).
//! - `evm` — [`EvmClient`]: story-geth `eth_blockNumber`, `eth_syncing`, `net_peerCount`,
//!   `eth_getBlockByNumber("latest", false)` (POST JSON-RPC).
//! - `checks` — [`Check`] and [`HealthReport`], serialisable for `GET /health`.
//! - `verdict` — PURE: [`HealthParams`], [`RoundObservation`], [`HealthState`] and
//!   [`evaluate`] `(state, observation, now) -> (state, report)` with hysteresis.
//! - `round` — [`NodeProbe`]: one health round, every call at once, each under the timeout.
//! - `commits` — [`CommitLog`] / [`ChainReader`]: every canonical commit read once (none
//!   the node has pruned); the validator's signatures and block times for the failover
//!   core's chain report, the witness, the signing view and the signing [`Strip`].
//! - `witness` — the chain as witness: did the validator sign any of the last N commits?
//!   [`fetch_witness`] fetches, [`summarize_commits`] / [`WitnessReport`] judge (pure).
//!
//! Time is always a parameter of the pure parts (`now: SystemTime`), so the daemon's state
//! machine and the tests drive them with simulated time.

mod checks;
mod comet;
mod commits;
mod evm;
mod round;
mod rpc;
mod verdict;
mod witness;

pub use checks::{names, Check, CheckStatus, HealthReport, Verdict};
pub use comet::{BlockIdFlag, CometClient, CometStatus, Commit, CommitSig, NetInfo};
pub use commits::{Cell, ChainReader, CommitLog, SigningView, Strip};
pub use evm::{EvmBlock, EvmClient, EvmSyncing};
pub use round::NodeProbe;
pub use rpc::{decode_answer, AnswerKind, ProbeError, ProbeErrorKind, SetupError};
pub use verdict::{
    evaluate, stall_bound_from_block_interval, DiskSeen, EvmSeen, HealthParams, HealthState,
    RoundObservation, StateFileSeen, StateSyncSeen,
};
pub use witness::{fetch_witness, summarize_commits, HeightWitness, SignatureSeen, WitnessReport};
