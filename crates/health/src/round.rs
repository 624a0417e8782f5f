//! The async shell around the pure verdict: one health round against the local node.
//!
//! A round sends at most one request per check endpoint, all at once (`tokio::join!`), each
//! bounded by the per-call timeout, with no retries inside the round (retrying is the
//! hysteresis' job, across rounds). So a round never takes much longer than one timeout,
//! whichever endpoint hangs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::comet::CometClient;
use crate::evm::EvmClient;
use crate::rpc::{self, SetupError};
use crate::verdict::{DiskSeen, EvmSeen, RoundObservation, StateFileSeen, StateSyncSeen};

/// Probes of one node: its CometBFT RPC, its EVM RPC (a Story node; none on a plain CometBFT
/// chain) and the disk of its state directory.
#[derive(Debug, Clone)]
pub struct NodeProbe {
    comet: CometClient,
    evm: Option<EvmClient>,
    state_dir: Option<PathBuf>,
    state_file: Option<PathBuf>,
    timeout: Duration,
}

impl NodeProbe {
    /// Clients for `comet_url` (e.g. `http://localhost:26657`) and `evm_url`
    /// (e.g. `http://localhost:8545`); `timeout` bounds every call of a round.
    pub fn new(comet_url: &str, evm_url: &str, timeout: Duration) -> Result<Self, SetupError> {
        let http = rpc::build_http(comet_url, timeout)?;
        Ok(NodeProbe {
            comet: CometClient::with_http(http.clone(), comet_url, timeout)?,
            evm: Some(EvmClient::with_http(http, evm_url, timeout)?),
            state_dir: None,
            state_file: None,
            timeout,
        })
    }

    /// A node of a chain without an EVM (the `cometbft` chain profile): only `comet_url`.
    pub fn comet_only(comet_url: &str, timeout: Duration) -> Result<Self, SetupError> {
        let http = rpc::build_http(comet_url, timeout)?;
        Ok(NodeProbe {
            comet: CometClient::with_http(http, comet_url, timeout)?,
            evm: None,
            state_dir: None,
            state_file: None,
            timeout,
        })
    }

    /// Measure free disk under this directory (the state file's) in every round.
    pub fn with_state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Read and parse this state file in every round (`system.state_file`).
    pub fn with_state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    pub fn comet(&self) -> &CometClient {
        &self.comet
    }

    /// The EVM client (`None` on a chain without an EVM).
    pub fn evm(&self) -> Option<&EvmClient> {
        self.evm.as_ref()
    }

    /// One round. `state_sync` is the daemon's own knowledge of its last state pull.
    pub async fn observe(&self, state_sync: StateSyncSeen) -> RoundObservation {
        let started = std::time::Instant::now();
        let (status, net_info, evm, disk, state_file) = tokio::join!(
            self.comet.status(),
            self.comet.net_info(),
            self.evm_round(),
            self.disk(),
            self.state_file(),
        );
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            comet = %self.comet.base_url(),
            evm = %self.evm.as_ref().map_or("none", EvmClient::url),
            "health round observed"
        );
        RoundObservation {
            status,
            net_info,
            evm,
            state_sync,
            disk,
            state_file,
        }
    }

    /// The EVM node's four answers, all at once (none without an EVM).
    async fn evm_round(&self) -> Option<EvmSeen> {
        let evm = self.evm.as_ref()?;
        let (block_number, syncing, peer_count, latest_block) = tokio::join!(
            evm.block_number(),
            evm.syncing(),
            evm.peer_count(),
            evm.latest_block(),
        );
        Some(EvmSeen {
            block_number,
            syncing,
            peer_count,
            latest_block,
        })
    }

    /// The state file, read on a blocking thread under the round's timeout (like `disk`).
    async fn state_file(&self) -> StateFileSeen {
        let Some(path) = self.state_file.clone() else {
            return StateFileSeen::NotMeasured;
        };
        let task = tokio::task::spawn_blocking(move || syncguard_validator::SignState::load(&path));
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(Ok(s))) => {
                let hrs = s.hrs();
                StateFileSeen::Valid {
                    height: hrs.height,
                    round: hrs.round,
                    step: hrs.step as u8,
                }
            }
            Ok(Ok(Err(e))) => StateFileSeen::Invalid(e.to_string()),
            Ok(Err(join)) => StateFileSeen::Invalid(format!("reading it failed: {join}")),
            Err(_) => StateFileSeen::Invalid(format!("no answer within {:?}", self.timeout)),
        }
    }

    /// statvfs on a blocking thread, under the same timeout: a hung file system (NFS, a
    /// dying disk) must not hold the round either.
    async fn disk(&self) -> DiskSeen {
        let Some(dir) = self.state_dir.clone() else {
            return DiskSeen::NotMeasured;
        };
        let shown = dir.display().to_string();
        let task = tokio::task::spawn_blocking(move || free_bytes(&dir));
        match tokio::time::timeout(self.timeout, task).await {
            Ok(Ok(Ok(bytes))) => DiskSeen::Free(bytes),
            Ok(Ok(Err(e))) => DiskSeen::Error(format!("statvfs {shown}: {e}")),
            Ok(Err(join)) => DiskSeen::Error(format!("statvfs {shown}: task failed: {join}")),
            Err(_) => DiskSeen::Error(format!(
                "statvfs {shown}: no answer within {:?}",
                self.timeout
            )),
        }
    }
}

/// Bytes available to an unprivileged writer (`f_bavail × f_frsize`).
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn story_free_bytes_of_a_real_directory() {
        let free = free_bytes(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(free > 0);
        let err = free_bytes(Path::new("/nonexistent/syncguard/state")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
