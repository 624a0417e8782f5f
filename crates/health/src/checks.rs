//! The report types served as JSON by `GET /health` (and read back from a peer's).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Outcome of one check in one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Ok,
    /// Worth a look, does not fail the round.
    Warn,
    /// Fails the round.
    Fail,
    /// Not measurable this round (no data, or not applicable); does not fail the round.
    Unknown,
}

/// One check: what was seen against what is required, and why that is the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Dotted name, one of [`names`].
    pub name: String,
    pub status: CheckStatus,
    pub observed: String,
    pub threshold: String,
    pub reason: String,
}

impl Check {
    pub(crate) fn new(
        name: &str,
        status: CheckStatus,
        observed: impl Into<String>,
        threshold: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Check {
            name: name.to_string(),
            status,
            observed: observed.into(),
            threshold: threshold.into(),
            reason: reason.into(),
        }
    }
}

/// Where the node stands after the hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Since start, not yet `recovery_rounds` good rounds in a row and not yet
    /// `retry_attempts` failed ones: no verdict. Not healthy (nobody promotes on it), but
    /// also not a failure that should trigger a handover.
    Starting,
    Healthy,
    /// Still healthy, but the last rounds failed (fewer than `retry_attempts`).
    Suspect,
    Unhealthy,
    /// Still unhealthy, but the last rounds were good (fewer than `recovery_rounds`).
    Recovering,
}

/// The health of the local node after one round, as served by `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    /// Verdict Healthy or Suspect.
    pub healthy: bool,
    pub verdict: Verdict,
    /// One line for logs and alerts: the verdict and the failing checks.
    pub summary: String,
    /// Whether this round had a failing check.
    pub round_failed: bool,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub checks: Vec<Check>,
    #[serde(with = "rfc3339")]
    pub evaluated_at: SystemTime,
}

impl HealthReport {
    /// The check of that name (see [`names`]).
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Checks that failed this round.
    pub fn failing(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == CheckStatus::Fail)
    }
}

/// Names of the checks, stable for dashboards and for the daemon's own rules (e.g. S4
/// "the node sees no new block" reads [`names::COMET_HEIGHT`]).
pub mod names {
    pub const COMET_REACHABLE: &str = "comet.reachable";
    pub const COMET_CATCHING_UP: &str = "comet.catching_up";
    pub const COMET_HEIGHT: &str = "comet.height_growth";
    pub const COMET_BLOCK_TIME: &str = "comet.block_time";
    pub const COMET_PEERS: &str = "comet.peers";
    pub const EVM_REACHABLE: &str = "evm.reachable";
    pub const EVM_SYNCING: &str = "evm.syncing";
    pub const EVM_HEIGHT: &str = "evm.height_growth";
    pub const EVM_BLOCK_TIME: &str = "evm.block_time";
    pub const EVM_PEERS: &str = "evm.peers";
    pub const STATE_SYNC_LAG: &str = "system.state_sync_lag";
    pub const DISK_FREE: &str = "system.disk_free";
    pub const STATE_FILE: &str = "system.state_file";
}

/// RFC3339 with milliseconds, e.g. `2026-05-01T12:00:00.123Z`: what a human and `jq` expect.
mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}
