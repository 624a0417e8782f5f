//! SyncGuard's timing model (DESIGN §5a; the table is `docs/TIMING.md`).
//!
//! An operator sets a few keys — `failover.health_check_interval` and `retry_attempts`,
//! `story.block_interval`, the actuator's stop and start timeouts — and everything else is
//! derived here, so that the safety inequalities hold **by construction**:
//!
//! - **cut off** (the link to the peer lost while the active's node already sees no new block
//!   or misses its own signatures): the active has confirmed its stop before its peer's failover
//!   window ends — `contact_lag + stop_bound + slack ≤ window`;
//! - **stalled or silenced later** (the link lost first; then the node stops following the chain,
//!   or its votes stop reaching the commits): the active has confirmed its stop before the chain
//!   can show the passive a clean run long enough — the witness must span `witness_span_stall`
//!   of block time after its second clean block and `witness_span_silent` after the
//!   `quiet_blocks + 1`-th, which exceed the active's detection and stop;
//! - **a new holder that may still start late** (after a grant, an offer, a refused offer): the
//!   passive waits for the chain to show the validator signing above the handover height, or
//!   for `settle` — the holder's whole activation, verification and roll-back included;
//! - **a hung SyncGuard** on the active is killed by systemd (`watchdog`) and `BindsTo=` stops
//!   `story` with it, within the same window.
//!
//! A derived value never produces an error or a warning. An explicit value of a derived key
//! that breaks an inequality is a [`TimingError`] naming both keys and a value that works.
//! Blocks are counted in **seconds of block time** where it matters: the failover core checks
//! the spans against the block times the chain shows, so a chain faster than
//! `block_interval` says cannot shorten them.
//!
//! Pure: no I/O, no clock. Used by the config validation, the failover core, the actuator, the
//! devnet's bounds and `syncguard config check`.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

/// Commits in a row without the active's own signature (while its node sees new blocks) that
/// make it *silent*. One or two missed blocks happen to healthy validators; three in a row,
/// together with a lost peer, do not.
pub const QUIET_BLOCKS: u32 = 3;

/// Writing the state file and installing the key (both small, fsynced files).
pub const WRITE_BOUND: Duration = Duration::from_secs(1);

/// How far one phase of a stop (the stop, or the kill) may run past its timeout: the reap of
/// a command cut at its deadline and one last, short confirmation probe.
pub const ACTUATOR_OVERRUN: Duration = Duration::from_millis(150);

/// The default time `story` may take from its start command to its first signature.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

/// The most `story.stop_timeout` defaults to (a longer graceful stop only delays failover).
const MAX_DEFAULT_STOP: Duration = Duration::from_secs(30);
const MIN_STOP: Duration = Duration::from_millis(200);
const MIN_KILL: Duration = Duration::from_millis(200);
const MAX_KILL: Duration = Duration::from_secs(3);

/// What the operator set (or its defaults), plus explicit values of keys that are otherwise
/// derived. `None` = derive it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    /// `failover.health_check_interval` (I).
    pub health_check_interval: Duration,
    /// `failover.retry_attempts` (R).
    pub retry_attempts: u32,
    /// `story.block_interval` (B).
    pub block_interval: Duration,
    /// `story.stop_timeout`: the stop command and its confirmation.
    pub stop_timeout: Option<Duration>,
    /// `story.kill_timeout`: the kill step and its confirmation, after an unconfirmed stop.
    pub kill_timeout: Option<Duration>,
    /// `story.start_timeout`: from the start command to `story`'s first signature.
    pub start_timeout: Option<Duration>,
    /// `story.verify_blocks`: blocks (after the start allowance) within which a new active's
    /// signature must appear.
    pub verify_blocks: u32,
    /// `story.witness_blocks`: the fewest commits a witness reads.
    pub witness_blocks: Option<u32>,
    /// CometBFT's `double_sign_check_height` read from the node's `config.toml` (0 = off).
    pub double_sign_check_height: u64,
    /// `health.rpc_timeout`.
    pub rpc_timeout: Option<Duration>,
    /// `communication.request_timeout`.
    pub request_timeout: Option<Duration>,
    /// `failover.self_fence_timeout`: the age of the node's newest block that counts as "not
    /// following the chain" for the self-fence.
    pub self_fence_timeout: Option<Duration>,
    /// `failover.handover_timeout`.
    pub handover_timeout: Option<Duration>,
    /// `failover.priority_margin`: the longest post-handover wait.
    pub priority_margin: Option<Duration>,
}

impl Inputs {
    /// The seed's defaults: 5 s rounds, 3 attempts, `block_interval` as given, everything else
    /// derived.
    pub fn new(health_check_interval: Duration, retry_attempts: u32, block: Duration) -> Self {
        Inputs {
            health_check_interval,
            retry_attempts,
            block_interval: block,
            stop_timeout: None,
            kill_timeout: None,
            start_timeout: None,
            verify_blocks: 5,
            witness_blocks: None,
            double_sign_check_height: 0,
            rpc_timeout: None,
            request_timeout: None,
            self_fence_timeout: None,
            handover_timeout: None,
            priority_margin: None,
        }
    }
}

/// Every timing SyncGuard uses. See the module docs and `docs/TIMING.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timing {
    /// I: one health round.
    pub round: Duration,
    /// R: failed rounds that make a node unhealthy.
    pub retry_attempts: u32,
    /// B: the configured block interval.
    pub block: Duration,
    /// Allowance for scheduling, clock skew between hosts and the chain's time: I/5 within
    /// [100 ms, 1 s].
    pub slack: Duration,
    /// Per-call timeout of the node's RPC: min(2 s, 0.4 I) — shorter than a round, so rounds
    /// never overlap.
    pub rpc_timeout: Duration,
    /// Per-request timeout between SyncGuards: min(2 s, 0.4 I).
    pub request_timeout: Duration,
    /// An observation (health round, look at the peer) older than this is no news:
    /// 2 I + request_timeout (a look may take a whole timeout).
    pub news_max_age: Duration,
    /// From a cut of the link to the active's first failed look at its peer: I + request_timeout.
    pub contact_lag: Duration,
    /// From a commit reaching the node to the active having read it: I + rpc_timeout.
    pub observe_lag: Duration,
    /// The stop command and its confirmation.
    pub stop_timeout: Duration,
    /// The kill step and its confirmation, when the stop did not confirm: I/2 within
    /// [200 ms, 3 s].
    pub kill_timeout: Duration,
    /// stop + kill + 2 × [`ACTUATOR_OVERRUN`]: the longest a confirmed stop takes.
    pub stop_bound: Duration,
    /// I × R: the seed's failover window.
    pub detection_window: Duration,
    /// How long a passive waits after losing its peer: max(I × R, contact_lag + stop_bound +
    /// slack, watchdog + stop_timeout + slack), so a cut-off active has stopped by then, and a
    /// hung one has been killed by systemd with story stopped after it.
    pub window: Duration,
    /// The age of the node's newest block at which it counts as not following the chain for
    /// the self-fence: 3 B + slack (explicit: `failover.self_fence_timeout`, at least 2 B).
    pub stall_age: Duration,
    /// Commits in a row without the active's signature that make it silent.
    pub quiet_blocks: u32,
    /// The fewest commits a witness reads: max(quiet_blocks + 3, witness_blocks,
    /// double_sign_check_height).
    pub witness_blocks: u32,
    /// A clean witness run must span this much block time from its second block: a node that
    /// stopped following the chain is fenced by then (observe_lag + stall_age + stop_bound +
    /// slack).
    pub witness_span_stall: Duration,
    /// ... and this much from its `quiet_blocks + 2`-th block (a commit is read once the next
    /// block made it canonical): a node whose votes stopped reaching the commits is fenced by
    /// then (observe_lag + stop_bound + slack).
    pub witness_span_silent: Duration,
    /// From `story`'s start command to its first signature, at most.
    pub start_timeout: Duration,
    /// `story.verify_blocks`.
    pub verify_blocks: u32,
    /// A new active must show its signature within this after its start command, or it rolls
    /// back: start_timeout + (verify_blocks + 2) × 2 B.
    pub verify_deadline: Duration,
    /// CometBFT's `double_sign_check_height` (0 = off).
    pub double_sign_check_height: u64,
    /// The longest wait for N clean blocks before a target starts (0 when N = 0):
    /// (N + 2) × 2 B + slack.
    pub dsc_wait: Duration,
    /// The longest activation, its roll-back included: dsc_wait + stop_bound (the full node)
    /// + write + verify_deadline + stop_bound (roll-back).
    pub activation_bound: Duration,
    /// How long an old holder waits for the target's answer: request_timeout +
    /// activation_bound + slack.
    pub handover_timeout: Duration,
    /// The longest post-handover wait, when the chain never shows the new holder signing:
    /// request_timeout + activation_bound + observe_lag + slack. By then the holder is signing
    /// (visibly) or has rolled back.
    pub settle: Duration,
    /// Recommended systemd `WatchdogSec` of syncguard.service: the daemon pings once a round,
    /// a round is its probes then the new commits (each under the RPC timeout), so
    /// I + 2 × rpc_timeout + slack.
    pub watchdog: Duration,
    /// Recommended systemd `TimeoutStopSec` of story.service (what `BindsTo=` waits before
    /// systemd kills story): the stop timeout.
    pub story_timeout_stop: Duration,
}

/// An explicit value that breaks an inequality of the model.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimingError {
    #[error(
        "{key} = {value} must be shorter than failover.health_check_interval ({interval}), or \
         one round would not finish before the next; use at most {suggest} (or leave it unset: \
         it is derived)"
    )]
    TimeoutNotShorterThanRound {
        key: &'static str,
        value: Secs,
        interval: Secs,
        suggest: Secs,
    },
    #[error(
        "failover.self_fence_timeout = {value} is less than two blocks (story.block_interval = \
         {block}): a healthy node's newest block is often that old, so an active that merely \
         lost its peer would stop signing; use at least {suggest} (or leave it unset: it is \
         derived)"
    )]
    SelfFenceTooShort {
        value: Secs,
        block: Secs,
        suggest: Secs,
    },
    #[error(
        "failover.handover_timeout = {value} is shorter than a target's whole activation \
         ({needed}: story.stop_timeout, story.start_timeout and the verification of \
         story.verify_blocks blocks, plus a roll-back): an old holder would give up while the \
         target may still start; use at least {needed} (or leave it unset: it is derived)"
    )]
    HandoverTimeoutTooShort { value: Secs, needed: Secs },
    #[error(
        "failover.priority_margin = {value} is shorter than a new holder's whole activation \
         ({needed}, from story.start_timeout and story.stop_timeout): a passive could promote \
         while the holder may still start signing; use at least {needed} (or leave it unset: \
         it is derived)"
    )]
    MarginTooShort { value: Secs, needed: Secs },
    #[error("{key} must be longer than zero")]
    Zero { key: &'static str },
}

impl TimingError {
    /// The message without its leading key, for a report that already names the key
    /// ("failover.priority_margin: 5 s is shorter than ...").
    pub fn problem(&self) -> String {
        let text = self.to_string();
        text.strip_prefix(self.key())
            .map(|rest| rest.trim_start().trim_start_matches("= ").to_string())
            .unwrap_or(text)
    }

    /// The config key this error is about.
    pub fn key(&self) -> &'static str {
        match self {
            TimingError::TimeoutNotShorterThanRound { key, .. } | TimingError::Zero { key } => key,
            TimingError::SelfFenceTooShort { .. } => "failover.self_fence_timeout",
            TimingError::HandoverTimeoutTooShort { .. } => "failover.handover_timeout",
            TimingError::MarginTooShort { .. } => "failover.priority_margin",
        }
    }
}

/// A duration printed the way operators write it in the config: "2.5 s".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secs(pub Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", words(self.0))
    }
}

/// "12 s", "2.5 s", "300 ms", "2 min 5 s".
pub fn words(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms} ms");
    }
    if ms < 60_000 {
        let tenths = (ms + 50) / 100;
        return if tenths.is_multiple_of(10) {
            format!("{} s", tenths / 10)
        } else {
            format!("{}.{} s", tenths / 10, tenths % 10)
        };
    }
    let s = d.as_secs();
    if s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{} min {} s", s / 60, s % 60)
    }
}

fn clamp(d: Duration, lo: Duration, hi: Duration) -> Duration {
    d.max(lo).min(hi)
}

/// Rounds up to whole milliseconds (derived values print cleanly).
fn ms_up(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
}

fn mul(d: Duration, by: u64) -> Duration {
    d.saturating_mul(u32::try_from(by).unwrap_or(u32::MAX))
}

/// Derives every timing; `Err` lists every explicit value that breaks an inequality.
pub fn derive(i: &Inputs) -> Result<Timing, Vec<TimingError>> {
    let (timing, errors) = derive_reporting(i);
    if errors.is_empty() {
        Ok(timing)
    } else {
        Err(errors)
    }
}

/// Derives every timing, using the derived value wherever an explicit one breaks an
/// inequality (for a config whose errors were already reported).
pub fn derive_lenient(i: &Inputs) -> Timing {
    derive_reporting(i).0
}

fn derive_reporting(i: &Inputs) -> (Timing, Vec<TimingError>) {
    let mut errors = Vec::new();
    let round = i.health_check_interval.max(Duration::from_millis(1));
    let block = i.block_interval.max(Duration::from_millis(1));
    let retries = i.retry_attempts.max(1);
    let slack = clamp(
        round / 5,
        Duration::from_millis(100),
        Duration::from_secs(1),
    );
    let derived_timeout = (round * 2 / 5).min(Duration::from_secs(2));
    let mut timeout = |key: &'static str, explicit: Option<Duration>| match explicit {
        Some(v) if v.is_zero() => {
            errors.push(TimingError::Zero { key });
            derived_timeout
        }
        Some(v) if v >= round => {
            errors.push(TimingError::TimeoutNotShorterThanRound {
                key,
                value: Secs(v),
                interval: Secs(round),
                suggest: Secs(derived_timeout),
            });
            derived_timeout
        }
        Some(v) => v,
        None => derived_timeout,
    };
    let rpc_timeout = timeout("health.rpc_timeout", i.rpc_timeout);
    let request_timeout = timeout("communication.request_timeout", i.request_timeout);
    let news_max_age = round * 2 + request_timeout;
    let contact_lag = round + request_timeout;
    let observe_lag = round + rpc_timeout;
    let kill_timeout = i
        .kill_timeout
        .unwrap_or_else(|| ms_up(clamp(round / 2, MIN_KILL, MAX_KILL)));
    let detection_window = round.saturating_mul(retries);
    // The daemon pings systemd once a round; a round is its probes and then the new commits,
    // each under the RPC timeout.
    let watchdog = ms_up(round + rpc_timeout * 2 + slack);
    let stop_timeout = i.stop_timeout.unwrap_or_else(|| {
        let cut_off = detection_window
            .saturating_sub(contact_lag + kill_timeout + ACTUATOR_OVERRUN * 2 + slack);
        let hung = detection_window.saturating_sub(watchdog + slack);
        ms_up(cut_off.min(hung).max(MIN_STOP).min(MAX_DEFAULT_STOP))
    });
    for (key, v) in [
        ("story.stop_timeout", i.stop_timeout),
        ("story.kill_timeout", i.kill_timeout),
        ("story.start_timeout", i.start_timeout),
    ] {
        if v.is_some_and(|v| v.is_zero()) {
            errors.push(TimingError::Zero { key });
        }
    }
    let stop_bound = stop_timeout + kill_timeout + ACTUATOR_OVERRUN * 2;
    // A cut-off active has confirmed its stop, and a hung one has been killed by systemd with
    // story stopped after it (BindsTo=, TimeoutStopSec = stop_timeout, then SIGKILL), before
    // its peer may start.
    let window = detection_window
        .max(contact_lag + stop_bound + slack)
        .max(watchdog + stop_timeout + slack);
    let min_stall = block * 2;
    let stall_age = match i.self_fence_timeout {
        Some(v) if v < min_stall => {
            let suggest = block * 3 + slack;
            errors.push(TimingError::SelfFenceTooShort {
                value: Secs(v),
                block: Secs(block),
                suggest: Secs(suggest),
            });
            suggest
        }
        Some(v) => v,
        None => block * 3 + slack,
    };
    let quiet_blocks = QUIET_BLOCKS;
    let n = i.double_sign_check_height;
    let witness_blocks = [
        u64::from(quiet_blocks + 3),
        u64::from(i.witness_blocks.unwrap_or(0)),
        n,
    ]
    .into_iter()
    .max()
    .map_or(u32::MAX, |k| u32::try_from(k).unwrap_or(u32::MAX));
    let witness_span_silent = observe_lag + stop_bound + slack;
    let witness_span_stall = observe_lag + stall_age + stop_bound + slack;
    let start_timeout = i.start_timeout.unwrap_or(DEFAULT_START_TIMEOUT);
    let verify_blocks = i.verify_blocks.max(1);
    let verify_deadline = start_timeout + mul(block * 2, u64::from(verify_blocks) + 2);
    let dsc_wait = if n == 0 {
        Duration::ZERO
    } else {
        mul(block * 2, n.saturating_add(2)) + slack
    };
    let activation_bound = dsc_wait + stop_bound + WRITE_BOUND + verify_deadline + stop_bound;
    let handover_needed = request_timeout + activation_bound + slack;
    let handover_timeout = match i.handover_timeout {
        Some(v) if v < handover_needed => {
            errors.push(TimingError::HandoverTimeoutTooShort {
                value: Secs(v),
                needed: Secs(ms_up(handover_needed)),
            });
            handover_needed
        }
        Some(v) => v,
        None => handover_needed,
    };
    let settle_needed = request_timeout + activation_bound + observe_lag + slack;
    let settle = match i.priority_margin {
        Some(v) if v < settle_needed => {
            errors.push(TimingError::MarginTooShort {
                value: Secs(v),
                needed: Secs(ms_up(settle_needed)),
            });
            settle_needed
        }
        Some(v) => v,
        None => settle_needed,
    };
    let timing = Timing {
        round,
        retry_attempts: retries,
        block,
        slack,
        rpc_timeout,
        request_timeout,
        news_max_age,
        contact_lag,
        observe_lag,
        stop_timeout,
        kill_timeout,
        stop_bound,
        detection_window,
        window,
        stall_age,
        quiet_blocks,
        witness_blocks,
        witness_span_stall,
        witness_span_silent,
        start_timeout,
        verify_blocks,
        verify_deadline,
        double_sign_check_height: n,
        dsc_wait,
        activation_bound,
        handover_timeout,
        settle,
        watchdog,
        story_timeout_stop: stop_timeout,
    };
    (timing, errors)
}

/// One row of the timing table (`docs/TIMING.md`, `syncguard config check --verbose`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The timing's name.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// What it is derived from.
    pub from: &'static str,
    /// Which inequality it serves, and why.
    pub serves: &'static str,
}

impl Timing {
    /// How many commits a witness should read so that a clean run can cover both spans even
    /// when blocks come as fast as `fastest` (the shortest block interval seen on chain;
    /// `None`: the configured one). At least `witness_blocks`, at most 2,000.
    pub fn witness_request_blocks(&self, fastest: Option<Duration>) -> u32 {
        let b = fastest
            .map_or(self.block, |f| f.min(self.block))
            .max(Duration::from_millis(10));
        let span = self.witness_span_stall.max(self.witness_span_silent);
        let for_span = u64::try_from(span.as_nanos().div_ceil(b.as_nanos())).unwrap_or(u64::MAX);
        let need = for_span
            .saturating_add(u64::from(self.quiet_blocks))
            .saturating_add(3)
            .max(u64::from(self.witness_blocks))
            .min(2_000);
        u32::try_from(need).unwrap_or(2_000)
    }

    /// Whether a clean run of commits (no signature of the validator, every one read) with
    /// these block times, oldest first, is evidence enough that no node signs: at least
    /// `witness_blocks` long, spanning `witness_span_stall` of block time from its second
    /// block and `witness_span_silent` from its `quiet_blocks + 2`-th. `Err` says what is
    /// missing, for the operator.
    pub fn clean_run_suffices(&self, times: &[Duration]) -> Result<(), RunShort> {
        let n = times.len();
        let k = usize::try_from(self.witness_blocks).unwrap_or(usize::MAX);
        let q = usize::try_from(self.quiet_blocks).unwrap_or(usize::MAX);
        if n < k.max(q + 3) {
            return Err(RunShort::Blocks {
                have: n,
                want: k.max(q + 3),
            });
        }
        let last = times[n - 1];
        let stall = last.saturating_sub(times[1]);
        if stall < self.witness_span_stall {
            return Err(RunShort::Span {
                have: stall,
                want: self.witness_span_stall,
            });
        }
        let silent = last.saturating_sub(times[q + 2]);
        if silent < self.witness_span_silent {
            return Err(RunShort::Span {
                have: silent,
                want: self.witness_span_silent,
            });
        }
        Ok(())
    }

    /// Worst case from a crash of the active (host gone) to the passive's decision: the
    /// window, or the clean run the witness needs at the configured block interval, whichever
    /// is later.
    pub fn crash_decision(&self) -> Duration {
        // The first clean block comes up to a block after the crash and a commit is readable
        // a block after its own time: two blocks besides the spans.
        let stall = self.block + self.witness_span_stall;
        let silent = self.block * (self.quiet_blocks + 2) + self.witness_span_silent;
        let run = stall.max(silent) + self.block * 2;
        self.window.max(run) + self.rpc_timeout
    }

    /// The crash bound the liveness goal is stated in: decision + the passive's `story`
    /// restart (`restart`) + 2 blocks.
    pub fn crash_bound(&self, restart: Duration) -> Duration {
        self.crash_decision() + restart + self.block * 2
    }

    /// From losing its peer to a confirmed stop, for an active already stalled or silent.
    pub fn cut_off_fenced_within(&self) -> Duration {
        self.contact_lag + self.stop_bound
    }

    /// From its node going quiet (no new block seen, or its votes no longer in the commits)
    /// to a confirmed stop, for an active that already lost its peer (`quiet_blocks` blocks
    /// at the configured interval for the silent case).
    pub fn quiet_fenced_within(&self) -> Duration {
        let stall = self.observe_lag + self.stall_age + self.stop_bound;
        let silent = self.block * (self.quiet_blocks + 2) + self.observe_lag + self.stop_bound;
        stall.max(silent)
    }

    /// Blocks a planned switchover misses at most, and how long that is: the target's
    /// restart (up to `start_timeout`), one block, and N clean blocks when CometBFT's
    /// double-sign check is on.
    pub fn switchover_cost(&self) -> (u64, Duration) {
        let restart_blocks = u64::try_from(
            self.start_timeout
                .as_nanos()
                .div_ceil(self.block.as_nanos().max(1)),
        )
        .unwrap_or(u64::MAX);
        let blocks = restart_blocks
            .saturating_add(1)
            .saturating_add(self.double_sign_check_height);
        (blocks, mul(self.block, blocks))
    }

    /// The guarantees of these settings, in words (`syncguard config check`).
    pub fn guarantees(&self) -> Vec<String> {
        let mut out = vec![
            format!(
                "a crashed active is replaced within {} plus the passive's story restart (at \
                 most story.start_timeout = {}) and 2 blocks",
                Secs(self.crash_decision()),
                Secs(self.start_timeout)
            ),
            format!(
                "a cut-off or silenced active stops signing within {} of losing its peer (when \
                 its node already sees no new block or misses its own signatures), or within {} \
                 of its node going quiet — always before its peer may start: the peer waits {} \
                 after losing it and for the chain to show no signature over {} of block time",
                Secs(self.cut_off_fenced_within()),
                Secs(self.quiet_fenced_within()),
                Secs(self.window),
                Secs(self.witness_span_stall)
            ),
        ];
        let (blocks, secs) = self.switchover_cost();
        let dsc = if self.double_sign_check_height > 0 {
            format!(
                ", including {} blocks without the validator's signature that CometBFT's \
                 double_sign_check_height requires before the target starts",
                self.double_sign_check_height
            )
        } else {
            String::new()
        };
        out.push(format!(
            "a planned switchover misses the blocks of the target's restart and one more{dsc}: \
             at most {blocks} blocks ({}) with story.start_timeout = {}",
            Secs(secs),
            Secs(self.start_timeout)
        ));
        out.push(format!(
            "after a change of holder, a crash is recovered as fast as above once the new \
             holder is seen active (its activation verified); seen signing but not active, the \
             passive waits until an unverified activation has rolled back ({} after its first \
             signature); if nothing shows, at most {} (the holder's activation, verification \
             and roll-back)",
            Secs(self.verify_deadline + self.stop_bound),
            Secs(self.settle)
        ));
        out.push(format!(
            "a hung SyncGuard on the active is killed by systemd after WatchdogSec = {} and \
             takes story down with it (BindsTo=, story's TimeoutStopSec = {})",
            Secs(self.watchdog),
            Secs(self.story_timeout_stop)
        ));
        out
    }

    /// [`Timing::rows`] as a Markdown table (`docs/TIMING.md` embeds the seed's and the
    /// deploy kit's; a test keeps them true).
    pub fn markdown_table(&self) -> String {
        let mut out =
            String::from("| timing | value | derived from | serves |\n|---|---|---|---|\n");
        for r in self.rows() {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r.name, r.value, r.from, r.serves
            ));
        }
        out
    }

    /// The timing table: every value, what it comes from, what it serves.
    pub fn rows(&self) -> Vec<Row> {
        let r = |name, value: Duration, from, serves| Row {
            name,
            value: words(value),
            from,
            serves,
        };
        vec![
            r("round (I)", self.round, "failover.health_check_interval", "set by the operator"),
            r("block (B)", self.block, "story.block_interval", "set by the operator"),
            r("slack", self.slack, "I/5 within [100 ms, 1 s]", "scheduling, clock skew, the chain's time vs. the hosts'"),
            r("rpc_timeout", self.rpc_timeout, "min(2 s, 0.4 I)", "a round ends before the next starts"),
            r("request_timeout", self.request_timeout, "min(2 s, 0.4 I)", "a look at the peer ends within a round"),
            r("news_max_age", self.news_max_age, "2 I + request_timeout", "an observation older than this is no news (a slow but answered look is still news)"),
            r("contact_lag", self.contact_lag, "I + request_timeout", "a cut of the link reaches the active's rules within this"),
            r("observe_lag", self.observe_lag, "I + rpc_timeout", "a new commit reaches the rules within this"),
            r("stop_timeout", self.stop_timeout, "story.stop_timeout, or min(I × R − contact_lag − kill − 2 × 150 ms, I × R − watchdog) − slack within [200 ms, 30 s]", "the graceful stop fits in the window"),
            r("kill_timeout", self.kill_timeout, "I/2 within [200 ms, 3 s]", "a stop that does not confirm is escalated (SIGKILL)"),
            r("stop_bound", self.stop_bound, "stop + kill + 2 × 150 ms (a cut command is reaped, one last probe)", "the longest a confirmed stop takes"),
            r("window", self.window, "max(I × R, contact_lag + stop_bound + slack, watchdog + stop + slack)", "a cut-off active has confirmed its stop (a hung one was killed by systemd, story with it) before its peer may start"),
            r("stall_age", self.stall_age, "3 B + slack (failover.self_fence_timeout, ≥ 2 B)", "a node this far behind the chain's time follows no chain (self-fence)"),
            r("witness_span_stall", self.witness_span_stall, "observe_lag + stall_age + stop + kill + slack", "a node that stopped following the chain has stopped before the witness may clear"),
            r("witness_span_silent", self.witness_span_silent, "observe_lag + stop + kill + slack (after 3 + 2 clean blocks)", "a node whose votes miss the commits has stopped before the witness may clear"),
            r("start_timeout", self.start_timeout, "story.start_timeout (default 30 s)", "story signs at most this long after its start command"),
            r("verify_deadline", self.verify_deadline, "start_timeout + (verify_blocks + 2) × 2 B", "an activation not verified by then rolls back: every promotion ends"),
            r("dsc_wait", self.dsc_wait, "(N + 2) × 2 B + slack, N = double_sign_check_height", "a target waits for N clean blocks, or CometBFT refuses to start"),
            r("activation_bound", self.activation_bound, "dsc_wait + stop + kill + write + verify_deadline + stop + kill", "the longest promotion, roll-back included"),
            r("handover_timeout", self.handover_timeout, "request_timeout + activation_bound + slack", "an old holder waits for the target's whole activation"),
            r("settle", self.settle, "request_timeout + activation_bound + observe_lag + slack", "the longest post-handover wait (ends when the new holder is seen active, or verify_deadline + stop_bound after its first signature)"),
            r("watchdog", self.watchdog, "I + 2 × rpc_timeout + slack", "systemd kills a hung SyncGuard (WatchdogSec), BindsTo stops story (TimeoutStopSec = stop_timeout)"),
        ]
    }
}

/// Why a clean run is not yet evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunShort {
    /// Too few blocks.
    Blocks { have: usize, want: usize },
    /// Too little block time.
    Span { have: Duration, want: Duration },
}

impl fmt::Display for RunShort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunShort::Blocks { have, want } => {
                write!(f, "{have} clean commits, {want} needed")
            }
            RunShort::Span { have, want } => write!(
                f,
                "the clean commits span {} of block time, {} needed",
                Secs(*have),
                Secs(*want)
            ),
        }
    }
}

#[cfg(test)]
mod tests;
