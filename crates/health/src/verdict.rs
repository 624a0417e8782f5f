//! The verdict: PURE. No I/O and no clock — `now` is a parameter — so every rule here is
//! tested with simulated time, and the daemon's state machine can replay rounds.
//!
//! [`evaluate`] turns one [`RoundObservation`] into [`Check`]s, decides whether the round
//! failed (any check Fail), and applies the hysteresis:
//! - `retry_attempts` consecutive failed rounds turn the node unhealthy;
//! - `recovery_rounds` consecutive good rounds turn it healthy again;
//! - a fresh [`HealthState`] is NOT healthy (verdict [`Verdict::Starting`]): for a failover
//!   daemon, "healthy" is a claim that lets a passive promote, so it has to be earned by
//!   `recovery_rounds` good rounds, exactly like a recovery. Starting is distinct from
//!   Unhealthy so that a restarted daemon on the active does not read its own start as a
//!   failure and hand the role over.
//!
//! A probe that errs never leaves an old good answer standing: every check is computed from
//! this round's answers only (the state keeps just the last heights, to measure growth).

use std::time::{Duration, SystemTime};

use crate::checks::{names, Check, CheckStatus, HealthReport, Verdict};
use crate::comet::{CometStatus, NetInfo};
use crate::evm::{EvmBlock, EvmSyncing};
use crate::rpc::ProbeError;

/// Thresholds of the checks and the hysteresis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthParams {
    /// Longest acceptable time without a new block (height unchanged, or latest block time
    /// older than this). See [`stall_bound_from_block_interval`].
    pub stall_bound: Duration,
    /// Minimum CometBFT peers (`/net_info` `n_peers`).
    pub min_peers: u64,
    /// Minimum EVM peers (`net_peerCount`). 0 by default: story-geth gets its blocks from
    /// `story` over the engine API, so its own p2p peers are informative only.
    pub min_evm_peers: u64,
    /// Consecutive failed rounds that turn a node unhealthy (0 is treated as 1).
    pub retry_attempts: u32,
    /// Consecutive good rounds that make a node healthy again (0 is treated as 1).
    pub recovery_rounds: u32,
    /// How often the passive pulls the active's state file.
    pub state_sync_interval: Duration,
    /// State-sync lag above `state_sync_lag_factor × state_sync_interval` is reported.
    pub state_sync_lag_factor: u32,
    /// Free bytes required on the file system of the state file's directory.
    pub min_free_disk_bytes: u64,
}

/// Never judge a stall on less than this: the latest block time is the chain's BFT time
/// (a weighted median of validators' clocks), compared with the local clock; NTP-level skew
/// plus one slow round must not fail a node on a fast devnet chain.
const MIN_STALL_BOUND: Duration = Duration::from_secs(10);

/// The stall bound: `max(20 × block_interval, 3 × health_check_interval, 10 s)`.
///
/// - 20 blocks: a block is late when its proposer is offline — the round times out
///   (`timeout_propose`, a few seconds) and the next proposer tries. 20 block intervals
///   (48 s at Story's ~2.4 s) absorbs a run of several offline proposers, which a live chain
///   sees; a chain without a block for that long is stalled, not slow.
/// - 3 health rounds: growth is sampled once per round, so "unchanged" needs at least three
///   samples, and one answer may be late.
/// - 10 s floor: see `MIN_STALL_BOUND` (clock skew against BFT time on fast chains).
///
/// Detection of a hang then takes `stall_bound + retry_attempts × health_check_interval`;
/// a crash (node unreachable) fails rounds at once and takes only the latter.
pub fn stall_bound_from_block_interval(
    block_interval_ms: u64,
    health_check_interval: Duration,
) -> Duration {
    let blocks = Duration::from_millis(block_interval_ms.saturating_mul(20));
    let rounds = health_check_interval.saturating_mul(3);
    blocks.max(rounds).max(MIN_STALL_BOUND)
}

impl HealthParams {
    /// Parameters for a chain with `block_interval_ms` blocks probed every
    /// `health_check_interval`, with the seed's defaults for the rest (3 failed rounds,
    /// 3 good rounds, 3 peers, 5 s state sync, lag reported beyond 3 syncs, 512 MiB free).
    /// The daemon overwrites the fields it has configuration for.
    pub fn from_block_interval(block_interval_ms: u64, health_check_interval: Duration) -> Self {
        HealthParams {
            stall_bound: stall_bound_from_block_interval(block_interval_ms, health_check_interval),
            min_peers: 3,
            min_evm_peers: 0,
            retry_attempts: 3,
            recovery_rounds: 3,
            state_sync_interval: Duration::from_secs(5),
            state_sync_lag_factor: 3,
            min_free_disk_bytes: 512 * 1024 * 1024,
        }
    }
}

/// Whether and when the state file was last pulled from the active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateSyncSeen {
    /// This node does not sync (it is the active, or sync is off): the check is Unknown.
    NotExpected,
    /// Sync expected since then, none succeeded yet.
    Never { expected_since: SystemTime },
    /// Last successful sync.
    Last(SystemTime),
}

/// Free space under the state file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSeen {
    /// No state directory configured: the check is Unknown.
    NotMeasured,
    /// Bytes available to an unprivileged writer.
    Free(u64),
    /// statvfs failed (directory missing, I/O error, hung): the state file cannot be trusted
    /// to be writable.
    Error(String),
}

/// The node's own state file, read this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateFileSeen {
    /// No state file configured: the check is Unknown.
    NotMeasured,
    /// It parses; its height, round and step.
    Valid { height: i64, round: i32, step: u8 },
    /// Missing, unreadable or not a valid state: `story` would not start with it, and this
    /// node must not take the role (the file is where its start state would be written).
    Invalid(String),
}

/// What one round saw. Every answer is this round's: an error is kept as the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundObservation {
    pub status: Result<CometStatus, ProbeError>,
    pub net_info: Result<NetInfo, ProbeError>,
    /// The EVM node's answers; `None` on a chain without one (the `cometbft` chain
    /// profile): its checks are then absent, not failing.
    pub evm: Option<EvmSeen>,
    pub state_sync: StateSyncSeen,
    pub disk: DiskSeen,
    pub state_file: StateFileSeen,
}

/// What one round saw of the EVM node (story-geth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvmSeen {
    pub block_number: Result<u64, ProbeError>,
    pub syncing: Result<EvmSyncing, ProbeError>,
    pub peer_count: Result<u64, ProbeError>,
    pub latest_block: Result<EvmBlock, ProbeError>,
}

/// A height and when it was first seen (the last time it changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeightMark {
    height: u64,
    changed_at: SystemTime,
}

/// What the tracker carries from round to round. Starts not healthy (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthState {
    healthy: bool,
    /// A verdict was reached at least once (leaves [`Verdict::Starting`] for good).
    decided: bool,
    consecutive_failures: u32,
    consecutive_successes: u32,
    comet_height: Option<HeightMark>,
    evm_height: Option<HeightMark>,
}

impl HealthState {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy
    }

    pub fn verdict(&self) -> Verdict {
        match (self.healthy, self.decided) {
            (true, _) if self.consecutive_failures == 0 => Verdict::Healthy,
            (true, _) => Verdict::Suspect,
            (false, false) => Verdict::Starting,
            (false, true) if self.consecutive_successes == 0 => Verdict::Unhealthy,
            (false, true) => Verdict::Recovering,
        }
    }

    /// The last CometBFT height seen by a round, if any.
    pub fn last_comet_height(&self) -> Option<u64> {
        self.comet_height.map(|m| m.height)
    }
}

/// One round: checks from `obs`, then the hysteresis. Pure.
pub fn evaluate(
    params: &HealthParams,
    state: HealthState,
    obs: &RoundObservation,
    now: SystemTime,
) -> (HealthState, HealthReport) {
    let mut next = state;
    let mut checks = Vec::with_capacity(12);

    // CometBFT.
    let status = obs.status.as_ref();
    checks.push(comet_reachable(status));
    checks.push(comet_catching_up(status));
    let (height_check, mark) = height_growth(
        names::COMET_HEIGHT,
        next.comet_height,
        status.ok().map(|s| s.latest_block_height),
        now,
        params.stall_bound,
    );
    next.comet_height = mark;
    checks.push(height_check);
    checks.push(comet_block_time(status, now, params.stall_bound));
    checks.push(comet_peers(obs.net_info.as_ref(), params.min_peers));

    // EVM (a chain without one has no such checks).
    if let Some(evm) = &obs.evm {
        checks.push(evm_reachable(evm.block_number.as_ref()));
        checks.push(evm_syncing(evm.syncing.as_ref()));
        let (height_check, mark) = height_growth(
            names::EVM_HEIGHT,
            next.evm_height,
            evm.block_number.as_ref().ok().copied(),
            now,
            params.stall_bound,
        );
        next.evm_height = mark;
        checks.push(height_check);
        checks.push(evm_block_time(
            evm.latest_block.as_ref(),
            now,
            params.stall_bound,
        ));
        checks.push(evm_peers(evm.peer_count.as_ref(), params.min_evm_peers));
    }

    // System.
    checks.push(state_sync_lag(params, obs.state_sync, now));
    checks.push(disk_free(&obs.disk, params.min_free_disk_bytes));
    checks.push(state_file(&obs.state_file));

    let round_failed = checks.iter().any(|c| c.status == CheckStatus::Fail);
    let retry = params.retry_attempts.max(1);
    let recovery = params.recovery_rounds.max(1);
    if round_failed {
        next.consecutive_failures = next.consecutive_failures.saturating_add(1);
        next.consecutive_successes = 0;
        if next.consecutive_failures >= retry {
            next.healthy = false;
            next.decided = true;
        }
    } else {
        next.consecutive_successes = next.consecutive_successes.saturating_add(1);
        next.consecutive_failures = 0;
        if next.consecutive_successes >= recovery {
            next.healthy = true;
            next.decided = true;
        }
    }

    let verdict = next.verdict();
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .map(|c| format!("{}: {}", c.name, c.reason))
        .collect();
    let failing = failing.join("; ");
    let summary = match verdict {
        Verdict::Healthy => "healthy".to_string(),
        Verdict::Suspect => format!(
            "healthy, but {} of {retry} failed rounds before unhealthy: {failing}",
            next.consecutive_failures
        ),
        Verdict::Starting if round_failed => format!(
            "starting, no verdict yet ({} of {retry} failed rounds before unhealthy): {failing}",
            next.consecutive_failures
        ),
        Verdict::Starting => format!(
            "starting, no verdict yet ({} of {recovery} good rounds before healthy)",
            next.consecutive_successes
        ),
        Verdict::Unhealthy => format!(
            "unhealthy after {} consecutive failed rounds: {failing}",
            next.consecutive_failures
        ),
        Verdict::Recovering => format!(
            "unhealthy, recovering ({} of {recovery} good rounds before healthy)",
            next.consecutive_successes
        ),
    };
    let report = HealthReport {
        healthy: next.healthy,
        verdict,
        summary,
        round_failed,
        consecutive_failures: next.consecutive_failures,
        consecutive_successes: next.consecutive_successes,
        checks,
        evaluated_at: now,
    };
    (next, report)
}

fn comet_reachable(status: Result<&CometStatus, &ProbeError>) -> Check {
    let threshold = "/status answers within the probe timeout";
    match status {
        Ok(s) => Check::new(
            names::COMET_REACHABLE,
            CheckStatus::Ok,
            format!(
                "height {}, network {:?}, moniker {:?}",
                s.latest_block_height, s.network, s.moniker
            ),
            threshold,
            "CometBFT RPC answered",
        ),
        Err(e) => failed_call(names::COMET_REACHABLE, threshold, e),
    }
}

fn failed_call(name: &str, threshold: &str, e: &ProbeError) -> Check {
    Check::new(
        name,
        CheckStatus::Fail,
        e.kind().as_str(),
        threshold,
        e.to_string(),
    )
}

/// A check that reads the same answer as a reachability check: Unknown without it (the
/// reachability check already fails the round).
fn no_answer(name: &str, threshold: &str, what: &str) -> Check {
    Check::new(
        name,
        CheckStatus::Unknown,
        "no answer",
        threshold,
        format!("no {what} answer this round"),
    )
}

fn comet_catching_up(status: Result<&CometStatus, &ProbeError>) -> Check {
    let threshold = "catching_up == false";
    match status {
        Ok(s) if s.catching_up => Check::new(
            names::COMET_CATCHING_UP,
            CheckStatus::Fail,
            "catching_up: true",
            threshold,
            "the node is still syncing blocks; it cannot sign at the tip",
        ),
        Ok(_) => Check::new(
            names::COMET_CATCHING_UP,
            CheckStatus::Ok,
            "catching_up: false",
            threshold,
            "caught up",
        ),
        Err(_) => no_answer(names::COMET_CATCHING_UP, threshold, "/status"),
    }
}

fn height_growth(
    name: &str,
    previous: Option<HeightMark>,
    current: Option<u64>,
    now: SystemTime,
    stall: Duration,
) -> (Check, Option<HeightMark>) {
    let threshold = format!("grows; unchanged for at most {}", fmt_duration(stall));
    let Some(height) = current else {
        // Keep the mark: when answers return, the stall is measured from the last change.
        return (no_answer(name, &threshold, "height"), previous);
    };
    let fresh = Some(HeightMark {
        height,
        changed_at: now,
    });
    let Some(prev) = previous else {
        let check = Check::new(
            name,
            CheckStatus::Unknown,
            format!("height {height}"),
            threshold,
            "first observation; growth is measured from the next round",
        );
        return (check, fresh);
    };
    if height > prev.height {
        let check = Check::new(
            name,
            CheckStatus::Ok,
            format!("height {height} (+{})", height - prev.height),
            threshold,
            "new blocks since the last change",
        );
        return (check, fresh);
    }
    if height < prev.height {
        let check = Check::new(
            name,
            CheckStatus::Fail,
            format!("height {height}, was {}", prev.height),
            threshold,
            format!(
                "height went back from {} to {height} (rollback, restore, or another node behind this URL)",
                prev.height
            ),
        );
        return (check, fresh);
    }
    let unchanged_for = now.duration_since(prev.changed_at).unwrap_or_default();
    let observed = format!(
        "height {height}, unchanged for {}",
        fmt_duration(unchanged_for)
    );
    let (status, reason) = if unchanged_for > stall {
        (
            CheckStatus::Fail,
            format!(
                "no new block for {}, more than the stall bound {}",
                fmt_duration(unchanged_for),
                fmt_duration(stall)
            ),
        )
    } else if unchanged_for > stall / 2 {
        (
            CheckStatus::Warn,
            "no new block for more than half the stall bound".to_string(),
        )
    } else {
        (
            CheckStatus::Ok,
            "no new block since the last round yet, within the stall bound".to_string(),
        )
    };
    (
        Check::new(name, status, observed, threshold, reason),
        previous,
    )
}

/// Freshness of a block time against `now`, shared by CometBFT and EVM.
fn block_age(
    name: &str,
    what: &str,
    block_time: SystemTime,
    now: SystemTime,
    stall: Duration,
) -> Check {
    let threshold = format!("not older than {}", fmt_duration(stall));
    let at = humantime::format_rfc3339_millis(block_time);
    match now.duration_since(block_time) {
        Ok(age) if age > stall => Check::new(
            name,
            CheckStatus::Fail,
            format!("{what} {} old (at {at})", fmt_duration(age)),
            threshold,
            format!(
                "the latest block is {} old, more than the stall bound",
                fmt_duration(age)
            ),
        ),
        Ok(age) => Check::new(
            name,
            CheckStatus::Ok,
            format!("{what} {} old (at {at})", fmt_duration(age)),
            threshold,
            "recent block",
        ),
        Err(ahead) => {
            let ahead = ahead.duration();
            let status = if ahead > stall {
                CheckStatus::Warn
            } else {
                CheckStatus::Ok
            };
            Check::new(
                name,
                status,
                format!(
                    "{what} {} ahead of the local clock (at {at})",
                    fmt_duration(ahead)
                ),
                threshold,
                if status == CheckStatus::Warn {
                    "block time is far ahead of the local clock: check NTP on this host"
                } else {
                    "recent block (slightly ahead of the local clock)"
                },
            )
        }
    }
}

fn comet_block_time(
    status: Result<&CometStatus, &ProbeError>,
    now: SystemTime,
    stall: Duration,
) -> Check {
    match status {
        Ok(s) => match s.latest_block_time {
            Some(t) => block_age(
                names::COMET_BLOCK_TIME,
                &format!("block {}", s.latest_block_height),
                t,
                now,
                stall,
            ),
            None => Check::new(
                names::COMET_BLOCK_TIME,
                CheckStatus::Fail,
                "no block time",
                format!("not older than {}", fmt_duration(stall)),
                "the node reports no block yet",
            ),
        },
        Err(_) => no_answer(
            names::COMET_BLOCK_TIME,
            &format!("not older than {}", fmt_duration(stall)),
            "/status",
        ),
    }
}

fn comet_peers(net_info: Result<&NetInfo, &ProbeError>, min_peers: u64) -> Check {
    let threshold = format!("n_peers >= {min_peers}");
    match net_info {
        Ok(n) if n.n_peers >= min_peers => Check::new(
            names::COMET_PEERS,
            CheckStatus::Ok,
            format!("{} peers", n.n_peers),
            threshold,
            "enough peers",
        ),
        Ok(n) => Check::new(
            names::COMET_PEERS,
            CheckStatus::Fail,
            format!("{} peers", n.n_peers),
            threshold,
            "too few CometBFT peers: the node may not receive blocks or votes",
        ),
        Err(e) => failed_call(names::COMET_PEERS, &threshold, e),
    }
}

fn evm_reachable(block_number: Result<&u64, &ProbeError>) -> Check {
    let threshold = "eth_blockNumber answers within the probe timeout";
    match block_number {
        Ok(n) => Check::new(
            names::EVM_REACHABLE,
            CheckStatus::Ok,
            format!("block {n}"),
            threshold,
            "EVM JSON-RPC answered",
        ),
        Err(e) => failed_call(names::EVM_REACHABLE, threshold, e),
    }
}

/// An optional method the node does not serve: Unknown, not a failure.
fn not_served(name: &str, threshold: &str, e: &ProbeError) -> Check {
    Check::new(
        name,
        CheckStatus::Unknown,
        "method not served",
        threshold,
        e.to_string(),
    )
}

fn evm_syncing(syncing: Result<&EvmSyncing, &ProbeError>) -> Check {
    let threshold = "eth_syncing == false";
    match syncing {
        Ok(EvmSyncing::NotSyncing) => Check::new(
            names::EVM_SYNCING,
            CheckStatus::Ok,
            "false",
            threshold,
            "not syncing",
        ),
        Ok(EvmSyncing::Syncing {
            current_block,
            highest_block,
        }) => {
            let show = |v: &Option<u64>| v.map_or("?".to_string(), |n| n.to_string());
            Check::new(
                names::EVM_SYNCING,
                CheckStatus::Fail,
                format!(
                    "syncing: block {} of {}",
                    show(current_block),
                    show(highest_block)
                ),
                threshold,
                "the execution client is still syncing",
            )
        }
        Err(e) if e.is_method_not_found() => not_served(names::EVM_SYNCING, threshold, e),
        Err(e) => failed_call(names::EVM_SYNCING, threshold, e),
    }
}

fn evm_block_time(
    block: Result<&EvmBlock, &ProbeError>,
    now: SystemTime,
    stall: Duration,
) -> Check {
    match block {
        Ok(b) => block_age(
            names::EVM_BLOCK_TIME,
            &format!("block {}", b.number),
            b.timestamp,
            now,
            stall,
        ),
        Err(e) => failed_call(
            names::EVM_BLOCK_TIME,
            &format!("not older than {}", fmt_duration(stall)),
            e,
        ),
    }
}

fn evm_peers(peers: Result<&u64, &ProbeError>, min: u64) -> Check {
    let threshold = format!("net_peerCount >= {min} (unknown allowed)");
    match peers {
        Ok(n) if *n >= min => Check::new(
            names::EVM_PEERS,
            CheckStatus::Ok,
            format!("{n} peers"),
            threshold,
            "enough peers",
        ),
        Ok(n) => Check::new(
            names::EVM_PEERS,
            CheckStatus::Fail,
            format!("{n} peers"),
            threshold,
            "too few execution-layer peers",
        ),
        Err(e) if e.is_method_not_found() => not_served(names::EVM_PEERS, &threshold, e),
        Err(e) => failed_call(names::EVM_PEERS, &threshold, e),
    }
}

/// Lag is a Warn, never a Fail: promotion writes `max(local, replica, fence)` with the fence
/// past the height in flight (S3), so a stale replica cannot cause a double sign, while
/// failing health over it would block a failover that is otherwise safe.
fn state_sync_lag(params: &HealthParams, seen: StateSyncSeen, now: SystemTime) -> Check {
    let allowed = params
        .state_sync_interval
        .saturating_mul(params.state_sync_lag_factor.max(1));
    let threshold = format!(
        "last sync within {} ({} × {})",
        fmt_duration(allowed),
        params.state_sync_lag_factor.max(1),
        fmt_duration(params.state_sync_interval)
    );
    let (since, never) = match seen {
        StateSyncSeen::NotExpected => {
            return Check::new(
                names::STATE_SYNC_LAG,
                CheckStatus::Unknown,
                "not applicable",
                threshold,
                "no state sync expected on this node (e.g. it is the active)",
            )
        }
        StateSyncSeen::Never { expected_since } => (expected_since, true),
        StateSyncSeen::Last(at) => (at, false),
    };
    let lag = now.duration_since(since).unwrap_or_default();
    let observed = if never {
        format!("no sync yet, expected for {}", fmt_duration(lag))
    } else {
        format!("last sync {} ago", fmt_duration(lag))
    };
    if lag > allowed {
        Check::new(
            names::STATE_SYNC_LAG,
            CheckStatus::Warn,
            observed,
            threshold,
            "the replica of the active's state is stale (the fence height still protects a promotion)",
        )
    } else {
        Check::new(
            names::STATE_SYNC_LAG,
            CheckStatus::Ok,
            observed,
            threshold,
            "replica is recent",
        )
    }
}

fn disk_free(seen: &DiskSeen, min: u64) -> Check {
    let threshold = format!(">= {} free", fmt_bytes(min));
    match seen {
        DiskSeen::NotMeasured => Check::new(
            names::DISK_FREE,
            CheckStatus::Unknown,
            "not measured",
            threshold,
            "no state directory configured",
        ),
        DiskSeen::Free(b) if *b >= min => Check::new(
            names::DISK_FREE,
            CheckStatus::Ok,
            format!("{} free", fmt_bytes(*b)),
            threshold,
            "enough space for the state file",
        ),
        DiskSeen::Free(b) => Check::new(
            names::DISK_FREE,
            CheckStatus::Fail,
            format!("{} free", fmt_bytes(*b)),
            threshold,
            "the disk of the state directory is (nearly) full: CometBFT cannot persist its signing state",
        ),
        DiskSeen::Error(e) => Check::new(
            names::DISK_FREE,
            CheckStatus::Fail,
            "error",
            threshold,
            format!("cannot measure the state directory: {e}"),
        ),
    }
}

fn state_file(seen: &StateFileSeen) -> Check {
    let threshold = "readable, valid JSON state";
    match seen {
        StateFileSeen::NotMeasured => Check::new(
            names::STATE_FILE,
            CheckStatus::Unknown,
            "not measured",
            threshold,
            "no state file configured",
        ),
        StateFileSeen::Valid {
            height,
            round,
            step,
        } => Check::new(
            names::STATE_FILE,
            CheckStatus::Ok,
            format!("height {height} round {round} step {step}"),
            threshold,
            "the state file is readable",
        ),
        StateFileSeen::Invalid(e) => Check::new(
            names::STATE_FILE,
            CheckStatus::Fail,
            "unusable",
            threshold,
            format!(
                "the state file is unusable ({e}): story would not start with it and this \
                 node must not take the validator role; restore it (check with \
                 `syncguard state verify`)"
            ),
        ),
    }
}

/// Whole seconds from 10 s up, milliseconds below: readable, and stable in tests.
fn fmt_duration(d: Duration) -> String {
    let rounded = if d >= Duration::from_secs(10) {
        Duration::from_secs(d.as_secs())
    } else {
        Duration::from_millis(d.as_millis().min(u128::from(u64::MAX)) as u64)
    };
    humantime::format_duration(rounded).to_string()
}

fn fmt_bytes(b: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if b >= MIB {
        format!("{} MiB", b / MIB)
    } else {
        format!("{b} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn story_stall_bound_derivation() {
        let s = Duration::from_secs;
        // Story mainnet: 20 × 2.4 s dominates.
        assert_eq!(stall_bound_from_block_interval(2400, s(5)), s(48));
        // Seed config: 500 ms blocks, 5 s rounds: 3 rounds dominate.
        assert_eq!(stall_bound_from_block_interval(500, s(5)), s(15));
        // Fast devnet: floor.
        assert_eq!(stall_bound_from_block_interval(100, s(1)), s(10));
        assert_eq!(
            stall_bound_from_block_interval(u64::MAX, s(1)),
            Duration::from_millis(u64::MAX)
        );
    }

    #[test]
    fn story_formatting() {
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1s 500ms");
        assert_eq!(fmt_duration(Duration::from_millis(15_500)), "15s");
        assert_eq!(fmt_bytes(3 * 1024 * 1024 + 5), "3 MiB");
        assert_eq!(fmt_bytes(12), "12 bytes");
    }
}
