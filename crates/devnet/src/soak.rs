//! `syncguard devnet soak`: seeded, randomized fault schedules on a two-daemon [`Cluster`]
//! (issue 7, item 5). Each run starts a fresh cluster, plays a schedule of overlapping faults
//! drawn from its seed, and then judges:
//!
//! - safety — the ledger shows 0 double signs, 0 S1 violations and 0 bad signatures, and no
//!   host's `priv_validator_state.json` was ever seen going back (S2; sampled every
//!   [`SAMPLE`]; a missing or unreadable file is skipped, never a regression);
//! - liveness — once the last fault is off, exactly one daemon is active and the validator
//!   signs again within the recovery bound.
//!
//! The schedule ([`schedule`]) is a pure function of the seed, so a failing run is replayed
//! with `--runs 1 --seed S`. Run `k` of `--runs N --seed S` uses seed `S + k`. A failed run's
//! report ends with the daemons' views and log tails, and says where its files are kept
//! (`--keep DIR`: configs, full logs, ledger) or how to replay it keeping them;
//! `--log-filter info,syncguard=debug` puts the daemons' debug lines in those logs.
//!
//! Faults ([`FaultKind`]): kill a node; kill a SyncGuard (SIGKILL); pause a node or a
//! SyncGuard (SIGSTOP/SIGCONT); cut a host off (its node off the network and the peer link);
//! cut only the SyncGuard-to-SyncGuard link; slow or failing CometBFT RPC; EVM down; fewer
//! peers than `min_peers`; chain-wide halt; disk full and a corrupt state file on the passive;
//! mute the active's node (an asymmetric cut: it follows the chain and signs, its votes reach
//! the ledger but never a commit — the fault a passive must not take for a dead active).
//! Whatever a fault killed is brought back when it ends: a daemon restarts `--role passive`;
//! a node restarts (like systemd would) only while its live key is the placeholder — with the
//! validator key live its own daemon restarts it, after installing the placeholder, so the
//! harness never starts a second signer by itself.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use syncguard_validator::{Hrs, SignState};

use crate::cluster::{Cluster, ClusterError, ClusterOptions, StartRole, NODE_IDS};
use crate::demo::{stdout_progress, Progress};
use crate::harness::Launcher;
use crate::node::{RpcFault, RpcFaultMode};

/// How often the state files are read (S2) and the roles looked at.
pub const SAMPLE: Duration = Duration::from_millis(200);

/// Bytes written over the passive's state file by [`FaultKind::CorruptState`].
const GARBAGE: &[u8] = b"\x00\xffsyncguard soak: not json {{{";

/// Every fault the soak mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL a host's Story node.
    KillNode,
    /// SIGKILL a host's SyncGuard.
    KillDaemon,
    /// SIGSTOP a host's Story node (SIGCONT at the end).
    PauseNode,
    /// SIGSTOP a host's SyncGuard (SIGCONT at the end).
    PauseDaemon,
    /// A host cut off: its node sees no blocks and its SyncGuard loses the peer link.
    CutHost,
    /// Only the SyncGuard-to-SyncGuard link is cut.
    CutLink,
    /// A host's CometBFT RPC answers slowly.
    SlowRpc,
    /// A host's CometBFT RPC answers with errors or garbage.
    FailingRpc,
    /// A host's story-geth is down.
    EvmDown,
    /// A host's node has 0 peers (below `min_peers`).
    FewPeers,
    /// The whole chain halts.
    ChainHalt,
    /// The passive's state directory is full.
    DiskFull,
    /// The passive's state file is garbage (restored at its height at the end).
    CorruptState,
    /// The active's node is muted: it sees every block and signs, but its votes never make
    /// a commit (they still reach the ledger). A node restarted meanwhile starts unmuted.
    Mute,
}

impl FaultKind {
    /// Every kind, in a fixed order (the generator draws from a subset of this). New kinds
    /// go last: `ALL[..13]` draws the schedules seeds gave before `mute` existed.
    pub const ALL: [FaultKind; 14] = [
        FaultKind::KillNode,
        FaultKind::KillDaemon,
        FaultKind::PauseNode,
        FaultKind::PauseDaemon,
        FaultKind::CutHost,
        FaultKind::CutLink,
        FaultKind::SlowRpc,
        FaultKind::FailingRpc,
        FaultKind::EvmDown,
        FaultKind::FewPeers,
        FaultKind::ChainHalt,
        FaultKind::DiskFull,
        FaultKind::CorruptState,
        FaultKind::Mute,
    ];

    /// Its kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillNode => "kill-node",
            FaultKind::KillDaemon => "kill-daemon",
            FaultKind::PauseNode => "pause-node",
            FaultKind::PauseDaemon => "pause-daemon",
            FaultKind::CutHost => "cut-host",
            FaultKind::CutLink => "cut-link",
            FaultKind::SlowRpc => "slow-rpc",
            FaultKind::FailingRpc => "failing-rpc",
            FaultKind::EvmDown => "evm-down",
            FaultKind::FewPeers => "few-peers",
            FaultKind::ChainHalt => "chain-halt",
            FaultKind::DiskFull => "disk-full",
            FaultKind::CorruptState => "corrupt-state",
            FaultKind::Mute => "mute",
        }
    }

    fn target(self, rng: &mut StdRng) -> Target {
        match self {
            FaultKind::CutLink | FaultKind::ChainHalt => Target::Cluster,
            FaultKind::DiskFull | FaultKind::CorruptState => Target::Passive,
            FaultKind::Mute => Target::Active,
            _ => Target::Host(rng.gen_range(0..2)),
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a fault lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Host 0 (host-a, node-a) or 1.
    Host(usize),
    /// Whichever host is passive when the fault starts (skipped if none is).
    Passive,
    /// Whichever host alone is active when the fault starts (skipped if none is).
    Active,
    /// The chain or the link between the daemons.
    Cluster,
}

/// One fault of a schedule: on at `at` (from the start of the schedule), off after `hold`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultStep {
    /// When it starts, from the start of the schedule.
    #[serde(serialize_with = "ser_secs")]
    pub at: Duration,
    /// What.
    pub kind: FaultKind,
    /// Where.
    pub target: Target,
    /// How long it lasts.
    #[serde(serialize_with = "ser_secs")]
    pub hold: Duration,
    /// A knob drawn with the step: the RPC delay in ms for `slow-rpc`; the failure mode for
    /// `failing-rpc` (even: errors, odd: garbage).
    pub param: u64,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round3(d.as_secs_f64()))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Shortest and longest hold of a fault.
pub const HOLD_MS: (u64, u64) = (500, 6000);

/// The fault schedule of `seed`: faults drawn from `kinds` (all of them when empty), each held
/// for 0.5–6 s, starting one after another from 0.5 s until `len`; the next fault may start up
/// to a second before the previous one ends (a little overlap) or up to 2.5 s after it. Pure:
/// the same seed always gives the same schedule.
pub fn schedule(seed: u64, len: Duration, kinds: &[FaultKind]) -> Vec<FaultStep> {
    let kinds: &[FaultKind] = if kinds.is_empty() {
        &FaultKind::ALL
    } else {
        kinds
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut steps = Vec::new();
    let mut at_ms: u64 = 500;
    let len_ms = u64::try_from(len.as_millis()).unwrap_or(u64::MAX);
    while at_ms < len_ms {
        let kind = kinds[rng.gen_range(0..kinds.len())];
        let target = kind.target(&mut rng);
        let hold_ms = rng.gen_range(HOLD_MS.0..=HOLD_MS.1);
        let param = match kind {
            FaultKind::SlowRpc => rng.gen_range(200..=1500),
            _ => rng.gen_range(0..1000),
        };
        steps.push(FaultStep {
            at: Duration::from_millis(at_ms),
            kind,
            target,
            hold: Duration::from_millis(hold_ms),
            param,
        });
        let gap: i64 = rng.gen_range(-1000..=2500);
        let next = i64::try_from(hold_ms)
            .unwrap_or(i64::MAX)
            .saturating_add(gap);
        at_ms = at_ms.saturating_add(u64::try_from(next.max(300)).unwrap_or(300));
    }
    steps
}

/// A fault switched on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Edge {
    /// Off sorts first: at equal times a fault ends before the next begins.
    Off,
    /// On.
    On,
}

/// The schedule as a time line of edges `(when, edge, index of the step)`, in order. Pure.
pub fn edges(steps: &[FaultStep]) -> Vec<(Duration, Edge, usize)> {
    let mut v: Vec<(Duration, Edge, usize)> = steps
        .iter()
        .enumerate()
        .flat_map(|(i, s)| [(s.at, Edge::On, i), (s.at + s.hold, Edge::Off, i)])
        .collect();
    v.sort();
    v
}

/// A state file seen going back (S2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Regression {
    /// The host.
    pub host: usize,
    /// The highest state seen before.
    pub before: String,
    /// The lower state seen now.
    pub now: String,
}

/// The highest HRS seen per host; anything lower is a regression. Pure.
#[derive(Debug, Clone, Default)]
pub struct HrsWatch {
    max: [Option<Hrs>; 2],
}

impl HrsWatch {
    /// A new look at host `host`'s state file (None: missing or unreadable, skipped).
    pub fn observe(&mut self, host: usize, seen: Option<Hrs>) -> Option<Regression> {
        let seen = seen?;
        let slot = self.max.get_mut(host)?;
        match *slot {
            Some(max) if seen < max => Some(Regression {
                host,
                before: max.to_string(),
                now: seen.to_string(),
            }),
            Some(max) if seen <= max => None,
            _ => {
                *slot = Some(seen);
                None
            }
        }
    }
}

/// The HRS in a state file; None when it is missing, being replaced, or not a valid state.
pub fn read_hrs(path: &Path) -> Option<Hrs> {
    let bytes = std::fs::read(path).ok()?;
    SignState::from_json(&bytes).ok().map(|s| s.hrs())
}

/// How a fault went.
#[derive(Debug, Clone, Serialize)]
pub struct AppliedFault {
    /// The step.
    pub step: FaultStep,
    /// The host it landed on (resolved for `passive`).
    pub host: Option<usize>,
    /// Applied, or why not (`skipped: …`), and how it ended.
    pub notes: Vec<String>,
}

/// The verdict of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every invariant held and the cluster recovered.
    Pass,
    /// A double sign, S1 violation, bad signature or state regression.
    SafetyViolation,
    /// Safe, but no recovery within the bound once the faults stopped.
    LivenessFailure,
    /// The cluster could not be started or judged (not a verdict on SyncGuard).
    Error,
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Its seed.
    pub seed: u64,
    /// What was played.
    pub faults: Vec<AppliedFault>,
    /// Role changes: `(seconds from the start of the schedule, node-a's role, node-b's)`;
    /// `-` when a daemon did not answer.
    pub roles: Vec<(f64, String, String)>,
    /// Safety problems (empty when safe).
    pub safety: Vec<String>,
    /// Liveness problems (empty when it recovered).
    pub liveness: Vec<String>,
    /// Other problems (the cluster could not be started or read).
    pub errors: Vec<String>,
    /// Seconds from the last fault's end to one active and signing again.
    pub recovery_seconds: Option<f64>,
    /// State file samples taken (both hosts).
    pub samples: u64,
    /// Ledger: double signs, S1 violations, bad signatures, committed, signed heights.
    pub ledger: Option<[u64; 5]>,
    /// The verdict.
    pub verdict: Verdict,
    /// Wall time, seconds.
    pub seconds: f64,
    /// The daemons' views and log tails, when the run failed.
    pub details: Option<String>,
}

impl RunReport {
    /// The roles as a short line (`0.0 active/passive → 3.1 -/passive → …`).
    pub fn roles_line(&self) -> String {
        let parts: Vec<String> = self
            .roles
            .iter()
            .map(|(t, a, b)| format!("{t:.1}s {a}/{b}"))
            .collect();
        parts.join(" → ")
    }

    /// The report as text.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "run seed {}: {:?} in {:.1} s",
            self.seed, self.verdict, self.seconds
        );
        for f in &self.faults {
            let _ = writeln!(
                s,
                "  {:6.1}s +{:.1}s {:<13} {:<8} {}",
                f.step.at.as_secs_f64(),
                f.step.hold.as_secs_f64(),
                f.step.kind.name(),
                f.host.map_or("-".to_string(), |h| NODE_IDS[h].to_string()),
                f.notes.join("; ")
            );
        }
        let _ = writeln!(s, "  roles: {}", self.roles_line());
        if let Some([ds, s1, bad, committed, signed]) = self.ledger {
            let _ = writeln!(
                s,
                "  ledger: {ds} double signs, {s1} S1 violations, {bad} bad signatures; {signed}/{committed} heights signed; {} state samples, no regression unless listed",
                self.samples
            );
        }
        if let Some(r) = self.recovery_seconds {
            let _ = writeln!(s, "  recovered {r:.1} s after the last fault");
        }
        for p in &self.safety {
            let _ = writeln!(s, "  SAFETY: {p}");
        }
        for p in &self.liveness {
            let _ = writeln!(s, "  LIVENESS: {p}");
        }
        for p in &self.errors {
            let _ = writeln!(s, "  ERROR: {p}");
        }
        if let Some(d) = &self.details {
            for line in d.lines() {
                let _ = writeln!(s, "  | {line}");
            }
        }
        s
    }
}

/// Options of [`run`].
pub struct SoakOptions {
    /// The `syncguard` binary.
    pub syncguard_bin: PathBuf,
    /// How to run the devnet CLI (also used to restart a story-geth after `evm-down`).
    pub launcher: Launcher,
    /// Prefix selecting the devnet in `launcher`'s program (`["devnet"]` inside syncguard).
    pub devnet_prefix: Vec<String>,
    /// Number of runs.
    pub runs: u32,
    /// Seed of the first run; run k uses `seed + k`.
    pub seed: u64,
    /// Length of each run's fault schedule.
    pub fault_time: Duration,
    /// How long the cluster may take to recover once the faults stop.
    pub recovery_bound: Duration,
    /// Faults to draw from (all when empty).
    pub kinds: Vec<FaultKind>,
    /// Block interval.
    pub block_time: Duration,
    /// JSON lines instead of text.
    pub json: bool,
    /// Where progress goes.
    pub out: Progress,
    /// Keep each run's files in `<dir>/seed-<seed>`.
    pub keep: Option<PathBuf>,
    /// `RUST_LOG` of the daemons' stderr log (`<host>/syncguard.stderr.log`).
    pub log_filter: String,
}

impl std::fmt::Debug for SoakOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoakOptions")
            .field("runs", &self.runs)
            .field("seed", &self.seed)
            .field("fault_time", &self.fault_time)
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

impl SoakOptions {
    /// One run of 60 s of faults, 60 s to recover, every fault kind, 300 ms blocks.
    pub fn new(syncguard_bin: impl Into<PathBuf>, launcher: Launcher) -> Self {
        SoakOptions {
            syncguard_bin: syncguard_bin.into(),
            launcher,
            devnet_prefix: Vec::new(),
            runs: 1,
            seed: 1,
            fault_time: Duration::from_secs(60),
            recovery_bound: Duration::from_secs(60),
            kinds: Vec::new(),
            block_time: Duration::from_millis(300),
            json: false,
            out: stdout_progress(),
            keep: None,
            log_filter: "info".into(),
        }
    }
}

/// `syncguard devnet soak` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Number of runs (run k uses seed S + k).
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
    /// Seed of the first run (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Seconds of faults per run.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub fault_seconds: u64,
    /// Seconds the cluster may take to recover after the last fault.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub recovery_seconds: u64,
    /// Only these faults (repeatable; default all).
    #[arg(long = "fault", value_enum)]
    pub faults: Vec<FaultKind>,
    /// Block interval, ms.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(100..=2000))]
    pub block_time_ms: u64,
    /// Reports as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Keep each run's files (configs, logs, ledger) under this directory.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// `RUST_LOG` of the daemons' stderr logs (`<host>/syncguard.stderr.log`, kept with
    /// `--keep`), e.g. `info,syncguard=debug` to see every peer look that outlasts a round.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log_filter: String,
    /// The syncguard binary running the daemons (default: this program).
    #[arg(long)]
    pub syncguard_bin: Option<PathBuf>,
}

/// The end of a soak.
#[derive(Debug, Clone, Serialize)]
pub struct SoakSummary {
    /// Seeds of the runs, in order.
    pub seeds: Vec<u64>,
    /// Runs that broke safety.
    pub safety_failures: Vec<u64>,
    /// Runs that did not recover.
    pub liveness_failures: Vec<u64>,
    /// Runs that could not be played.
    pub errors: Vec<u64>,
    /// Every run passed.
    pub ok: bool,
}

/// Why a soak could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    /// The program's own path is unknown.
    #[error("cannot find this program's path: {0}")]
    SelfExe(std::io::Error),
    /// No async runtime.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// No syncguard binary.
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    /// Ctrl-C.
    #[error("interrupted: the devnet and both daemons were stopped")]
    Interrupted,
}

/// Plays `opts.runs` runs; progress and one report per run go to `opts.out`.
pub async fn run(mut opts: SoakOptions) -> Result<(SoakSummary, Vec<RunReport>), SoakError> {
    let mut reports = Vec::new();
    let mut summary = SoakSummary {
        seeds: Vec::new(),
        safety_failures: Vec::new(),
        liveness_failures: Vec::new(),
        errors: Vec::new(),
        ok: true,
    };
    for k in 0..opts.runs {
        let seed = opts.seed.wrapping_add(u64::from(k));
        summary.seeds.push(seed);
        let line = if opts.json {
            json!({"type": "run", "seed": seed, "run": k + 1, "of": opts.runs}).to_string()
        } else {
            format!("=== soak run {}/{} seed {seed} ===", k + 1, opts.runs)
        };
        (opts.out)(&line);
        let report = tokio::select! {
            r = run_one(&mut opts, seed) => r,
            _ = tokio::signal::ctrl_c() => return Err(SoakError::Interrupted),
        };
        match report.verdict {
            Verdict::Pass => {}
            Verdict::SafetyViolation => summary.safety_failures.push(seed),
            Verdict::LivenessFailure => summary.liveness_failures.push(seed),
            Verdict::Error => summary.errors.push(seed),
        }
        if opts.json {
            (opts.out)(&json!({"type": "report", "report": report}).to_string());
        } else {
            for line in report.render_text().lines() {
                (opts.out)(line);
            }
        }
        reports.push(report);
    }
    summary.ok = summary.safety_failures.is_empty()
        && summary.liveness_failures.is_empty()
        && summary.errors.is_empty();
    let line = if opts.json {
        json!({"type": "summary", "summary": summary}).to_string()
    } else {
        format!(
            "=== soak: {} run(s), seeds {:?}: {} safety failure(s) {:?}, {} liveness failure(s) {:?}, {} error(s) {:?} — {} ===",
            summary.seeds.len(),
            summary.seeds,
            summary.safety_failures.len(),
            summary.safety_failures,
            summary.liveness_failures.len(),
            summary.liveness_failures,
            summary.errors.len(),
            summary.errors,
            if summary.ok { "OK" } else { "FAILED" }
        )
    };
    (opts.out)(&line);
    Ok((summary, reports))
}

/// `syncguard devnet soak`: exit 0 iff every run passed.
/// `devnet_prefix` selects the devnet in this program (`["devnet"]` inside syncguard).
pub async fn run_args(args: SoakArgs, devnet_prefix: &[&str]) -> Result<ExitCode, SoakError> {
    let (bin, launcher) = binaries(args.syncguard_bin.clone(), devnet_prefix)?;
    let mut opts = SoakOptions::new(bin, launcher);
    opts.devnet_prefix = devnet_prefix.iter().map(|s| s.to_string()).collect();
    opts.runs = args.runs;
    opts.seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    opts.fault_time = Duration::from_secs(args.fault_seconds);
    opts.recovery_bound = Duration::from_secs(args.recovery_seconds);
    opts.kinds = args.faults;
    opts.block_time = Duration::from_millis(args.block_time_ms);
    opts.json = args.json;
    opts.keep = args.keep;
    opts.log_filter = args.log_filter;
    let (summary, _) = run(opts).await?;
    Ok(if summary.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The syncguard binary and the devnet launcher: this very program is both (`syncguard`,
/// the devnet behind `devnet_prefix`), unless `--syncguard-bin` names other daemons; with no
/// prefix (a program that is only the devnet) the daemons are `$SYNCGUARD_BIN` or
/// `target/<profile>/syncguard`.
pub(crate) fn binaries(
    syncguard_bin: Option<PathBuf>,
    devnet_prefix: &[&str],
) -> Result<(PathBuf, Launcher), SoakError> {
    let exe = std::env::current_exe().map_err(SoakError::SelfExe)?;
    let launcher = Launcher::with_prefix(&exe, devnet_prefix.iter().copied());
    let bin = match syncguard_bin {
        Some(b) => b,
        None if !devnet_prefix.is_empty() => exe,
        None => crate::cluster::locate_syncguard()?,
    };
    Ok((bin, launcher))
}

/// A story-geth the soak started again after `evm-down` (the harness's own is gone).
struct Geth(Child);

impl Drop for Geth {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Mutable state of a run being played.
struct Play {
    t0: Instant,
    watch: HrsWatch,
    samples: u64,
    safety: Vec<String>,
    roles: Vec<(f64, String, String)>,
    http: reqwest::Client,
    /// Faults on now: index into the applied list.
    on: Vec<usize>,
    applied: Vec<AppliedFault>,
    /// Per applied fault: what to undo (pid paused, bytes to restore).
    undo: Vec<Undo>,
    geths: [Option<Geth>; 2],
}

#[derive(Debug, Clone, Default)]
enum Undo {
    #[default]
    Nothing,
    Pid(u32),
    State(PathBuf, Vec<u8>),
}

async fn run_one(opts: &mut SoakOptions, seed: u64) -> RunReport {
    let started = Instant::now();
    let steps = schedule(seed, opts.fault_time, &opts.kinds);
    let mut report = RunReport {
        seed,
        faults: Vec::new(),
        roles: Vec::new(),
        safety: Vec::new(),
        liveness: Vec::new(),
        errors: Vec::new(),
        recovery_seconds: None,
        samples: 0,
        ledger: None,
        verdict: Verdict::Error,
        seconds: 0.0,
        details: None,
    };
    let mut copts = ClusterOptions::new(opts.syncguard_bin.clone(), opts.launcher.clone());
    copts.devnet.block_time = opts.block_time;
    copts.devnet.dir = opts.keep.as_ref().map(|d| d.join(format!("seed-{seed}")));
    let copts_dir = copts.devnet.dir.clone();
    copts.log_filter.clone_from(&opts.log_filter);
    copts.log_level = "info".into();
    let mut cluster = match Cluster::start(copts).await {
        Ok(c) => c,
        Err(e) => {
            report.errors.push(format!("cannot start the cluster: {e}"));
            report.seconds = started.elapsed().as_secs_f64();
            return report;
        }
    };
    let settle = Duration::from_secs(45);
    let ready = async {
        cluster.wait_roles(["active", "passive"], settle).await?;
        cluster.wait_signing_by(0, settle).await
    };
    if let Err(e) = ready.await {
        report
            .errors
            .push(format!("the cluster did not settle: {e}"));
        report.seconds = started.elapsed().as_secs_f64();
        return report;
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(400))
        .build()
        .unwrap_or_default();
    let mut play = Play {
        t0: Instant::now(),
        watch: HrsWatch::default(),
        samples: 0,
        safety: Vec::new(),
        roles: Vec::new(),
        http,
        on: Vec::new(),
        applied: Vec::new(),
        undo: Vec::new(),
        geths: [None, None],
    };
    for edge in edges(&steps) {
        let (when, e, idx) = edge;
        // Sample until the edge is due.
        loop {
            play.sample(&cluster).await;
            let now = play.t0.elapsed();
            if now >= when {
                break;
            }
            tokio::time::sleep((when - now).min(SAMPLE)).await;
        }
        let step = &steps[idx];
        let line = match e {
            Edge::On => play.fault_on(&mut cluster, step).await,
            Edge::Off => play.fault_off(&mut cluster, opts, idx).await,
        };
        if let Some(line) = line {
            let t = play.t0.elapsed().as_secs_f64();
            let text = if opts.json {
                json!({"type": "fault", "seed": seed, "t": round3(t), "msg": line}).to_string()
            } else {
                format!("[{t:6.1}s] {line}")
            };
            (opts.out)(&text);
        }
    }
    // Recovery: everything is off; bring back what is still down and wait for one active
    // signing.
    let faults_off = Instant::now();
    let recovered = play.recover(&mut cluster, opts.recovery_bound).await;
    match recovered {
        Ok(()) => report.recovery_seconds = Some(faults_off.elapsed().as_secs_f64()),
        Err(why) => report.liveness.push(why),
    }
    match cluster.ledger().await {
        Ok(l) => {
            if l.double_signs > 0 || l.s1_violations > 0 || l.bad_signatures > 0 {
                play.safety.push(format!(
                    "the ledger shows {} double sign(s), {} S1 violation(s), {} bad signature(s): {}",
                    l.double_signs,
                    l.s1_violations,
                    l.bad_signatures,
                    serde_json::to_string(&l.offenses).unwrap_or_default()
                ));
            }
            report.ledger = Some([
                l.double_signs,
                l.s1_violations,
                l.bad_signatures,
                l.committed_heights,
                l.signed_heights,
            ]);
        }
        Err(e) => report.errors.push(format!("cannot read the ledger: {e}")),
    }
    report.verdict = if !play.safety.is_empty() {
        Verdict::SafetyViolation
    } else if !report.errors.is_empty() {
        Verdict::Error
    } else if !report.liveness.is_empty() {
        Verdict::LivenessFailure
    } else {
        Verdict::Pass
    };
    if report.verdict != Verdict::Pass {
        let mut details = cluster.describe().await;
        match &copts_dir {
            Some(dir) => {
                let _ = writeln!(
                    details,
                    "--- every file of this run (configs, full logs, ledger) is kept in {}",
                    dir.display()
                );
            }
            None => {
                let _ = writeln!(
                    details,
                    "--- the full logs are gone with the run's temp dir: replay it with \
                     `--runs 1 --seed {seed} --keep DIR` to keep them"
                );
            }
        }
        report.details = Some(details);
    }
    report.safety = std::mem::take(&mut play.safety);
    report.samples = play.samples;
    report.roles = std::mem::take(&mut play.roles);
    report.faults = std::mem::take(&mut play.applied);
    report.seconds = started.elapsed().as_secs_f64();
    report
}

impl Play {
    /// Reads both state files (S2) and both roles (the time line).
    async fn sample(&mut self, c: &Cluster) {
        for (i, host) in c.devnet.hosts().iter().enumerate().take(2) {
            let seen = read_hrs(&host.state_file);
            self.samples += 1;
            if let Some(r) = self.watch.observe(i, seen) {
                self.safety.push(format!(
                    "{}'s state file went back from {} to {} (S2)",
                    host.name, r.before, r.now
                ));
            }
        }
        let (a, b) = tokio::join!(self.role(c, 0), self.role(c, 1));
        let changed = self
            .roles
            .last()
            .is_none_or(|(_, la, lb)| *la != a || *lb != b);
        if changed {
            self.roles
                .push((round3(self.t0.elapsed().as_secs_f64()), a, b));
        }
    }

    /// The role daemon `i` shows, "-" when it does not answer quickly (a paused daemon
    /// must not stall the sampling).
    async fn role(&self, c: &Cluster, i: usize) -> String {
        let Ok(d) = c.daemon(i) else {
            return "-".into();
        };
        let url = format!("http://127.0.0.1:{}/status", d.port);
        let v: Option<serde_json::Value> = match self.http.get(url).send().await {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        v.and_then(|v| {
            v.pointer("/node/role")
                .and_then(|r| r.as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| "-".into())
    }

    fn passive(&self) -> Option<usize> {
        let (_, a, b) = self.roles.last()?;
        match (a.as_str(), b.as_str()) {
            (_, "passive") if a != "passive" => Some(1),
            ("passive", _) if b != "passive" => Some(0),
            ("passive", "passive") => Some(1),
            _ => None,
        }
    }

    fn active(&self) -> Option<usize> {
        let (_, a, b) = self.roles.last()?;
        match (a == "active", b == "active") {
            (true, false) => Some(0),
            (false, true) => Some(1),
            _ => None,
        }
    }

    fn link_wanted(&self) -> bool {
        self.on.iter().any(|&k| {
            matches!(
                self.applied[k].step.kind,
                FaultKind::CutLink | FaultKind::CutHost
            )
        })
    }

    /// Switches a fault on; returns the progress line.
    async fn fault_on(&mut self, c: &mut Cluster, step: &FaultStep) -> Option<String> {
        let host = match step.target {
            Target::Host(i) => Some(i),
            Target::Passive => self.passive(),
            Target::Active => self.active(),
            Target::Cluster => None,
        };
        let mut fault = AppliedFault {
            step: step.clone(),
            host,
            notes: Vec::new(),
        };
        let k = self.applied.len();
        let busy = self
            .on
            .iter()
            .any(|&j| self.applied[j].step.kind == step.kind && self.applied[j].host == host);
        let result: Result<Undo, String> = if busy {
            Err("skipped: the same fault is on already".into())
        } else if step.target == Target::Passive && host.is_none() {
            Err("skipped: no daemon is passive now".into())
        } else if step.target == Target::Active && host.is_none() {
            Err("skipped: no single daemon is active now".into())
        } else {
            self.apply(c, step, host).await
        };
        let who = host.map_or("cluster".to_string(), |h| NODE_IDS[h].to_string());
        let line = match result {
            Ok(undo) => {
                fault.notes.push("on".into());
                self.on.push(k);
                self.undo.push(undo);
                if matches!(step.kind, FaultKind::CutLink | FaultKind::CutHost) {
                    c.set_link_cut(true);
                }
                format!(
                    "fault on: {} on {who} for {:.1} s",
                    step.kind,
                    step.hold.as_secs_f64()
                )
            }
            Err(why) => {
                fault.notes.push(why.clone());
                self.undo.push(Undo::Nothing);
                format!("fault {} on {who}: {why}", step.kind)
            }
        };
        self.applied.push(fault);
        Some(line)
    }

    async fn apply(
        &mut self,
        c: &mut Cluster,
        step: &FaultStep,
        host: Option<usize>,
    ) -> Result<Undo, String> {
        let i = host.unwrap_or(0);
        let e = |e: &dyn std::fmt::Display| format!("skipped: {e}");
        match step.kind {
            FaultKind::KillNode => c.devnet.kill_node(i).await.map_err(|x| e(&x))?,
            FaultKind::KillDaemon => c.kill_daemon(i).map_err(|x| e(&x))?,
            FaultKind::PauseNode => c.devnet.pause_node(i).await.map_err(|x| e(&x))?,
            FaultKind::PauseDaemon => {
                let pid = c.daemon(i).ok().and_then(|d| d.pid());
                let Some(pid) = pid else {
                    return Err("skipped: the daemon does not run".into());
                };
                signal(pid, rustix::process::Signal::STOP).map_err(|x| e(&x))?;
                return Ok(Undo::Pid(pid));
            }
            FaultKind::CutHost => {
                c.devnet.set_cut(i, true).await.map_err(|x| e(&x))?;
            }
            FaultKind::CutLink => {}
            FaultKind::SlowRpc => {
                let fault = RpcFault {
                    delay_ms: step.param,
                    mode: RpcFaultMode::Ok,
                };
                c.devnet.set_rpc_fault(i, fault).await.map_err(|x| e(&x))?;
            }
            FaultKind::FailingRpc => {
                let mode = if step.param.is_multiple_of(2) {
                    RpcFaultMode::Error
                } else {
                    RpcFaultMode::Garbage
                };
                let fault = RpcFault { delay_ms: 0, mode };
                c.devnet.set_rpc_fault(i, fault).await.map_err(|x| e(&x))?;
            }
            FaultKind::EvmDown => match self.geths[i].take() {
                Some(g) => drop(g),
                None => c.devnet.kill_geth(i).map_err(|x| e(&x))?,
            },
            FaultKind::FewPeers => {
                c.devnet.set_peers(i, 0).await.map_err(|x| e(&x))?;
            }
            FaultKind::ChainHalt => {
                c.devnet.halt().await.map_err(|x| e(&x))?;
            }
            FaultKind::DiskFull => c.devnet.set_disk_full(i, true).map_err(|x| e(&x))?,
            FaultKind::CorruptState => {
                let path = c.devnet.host(i).map_err(|x| e(&x))?.state_file.clone();
                let good = std::fs::read(&path).map_err(|x| e(&x))?;
                if SignState::from_json(&good).is_err() {
                    return Err("skipped: the state file is not valid now".into());
                }
                std::fs::write(&path, GARBAGE).map_err(|x| e(&x))?;
                return Ok(Undo::State(path, good));
            }
            FaultKind::Mute => {
                c.set_muted(i, true).await.map_err(|x| e(&x))?;
            }
        }
        Ok(Undo::Nothing)
    }

    /// Switches fault `idx` (its index in the schedule) off; returns the progress line.
    async fn fault_off(
        &mut self,
        c: &mut Cluster,
        opts: &SoakOptions,
        idx: usize,
    ) -> Option<String> {
        // The applied fault of schedule step idx: steps are applied in order, one each.
        let k = idx;
        let pos = self.on.iter().position(|&j| j == k)?;
        self.on.remove(pos);
        let step = self.applied[k].step.clone();
        let i = self.applied[k].host.unwrap_or(0);
        let undo = std::mem::take(&mut self.undo[k]);
        let note = match self.clear(c, opts, &step, i, undo).await {
            Ok(n) => n,
            Err(why) => format!("off failed: {why}"),
        };
        if matches!(step.kind, FaultKind::CutLink | FaultKind::CutHost) {
            c.set_link_cut(self.link_wanted());
        }
        self.applied[k].notes.push(note.clone());
        let who = self.applied[k]
            .host
            .map_or("cluster".to_string(), |h| NODE_IDS[h].to_string());
        Some(format!("fault off: {} on {who}: {note}", step.kind))
    }

    async fn clear(
        &mut self,
        c: &mut Cluster,
        opts: &SoakOptions,
        step: &FaultStep,
        i: usize,
        undo: Undo,
    ) -> Result<String, String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        Ok(match step.kind {
            FaultKind::KillNode => restart_node(c, i).await?,
            FaultKind::KillDaemon => {
                c.restart_daemon(i, StartRole::Passive).map_err(|x| e(&x))?;
                "restarted --role passive".into()
            }
            FaultKind::PauseNode => {
                // The node may have been killed and restarted meanwhile: a SIGCONT to a
                // running node is harmless, to none an error worth no more than a note.
                match c.devnet.resume_node(i).await {
                    Ok(()) => "resumed".into(),
                    Err(x) => format!("not resumed ({x})"),
                }
            }
            FaultKind::PauseDaemon => match undo {
                // Only the very process paused: a restarted daemon has another pid.
                Undo::Pid(pid) if c.daemon(i).ok().and_then(|d| d.pid()) == Some(pid) => {
                    signal(pid, rustix::process::Signal::CONT).map_err(|x| e(&x))?;
                    "resumed".into()
                }
                _ => "gone meanwhile (restarted)".into(),
            },
            FaultKind::CutHost => match c.devnet.set_cut(i, false).await {
                Ok(_) => "healed".into(),
                // A node restarted meanwhile starts connected.
                Err(x) => format!("node not answering ({x})"),
            },
            FaultKind::CutLink => "healed".into(),
            FaultKind::SlowRpc | FaultKind::FailingRpc => {
                match c.devnet.set_rpc_fault(i, RpcFault::default()).await {
                    Ok(_) => "repaired".into(),
                    Err(x) => format!("node not answering ({x})"),
                }
            }
            FaultKind::EvmDown => {
                let g = start_geth(c, opts, i)?;
                self.geths[i] = Some(g);
                "story-geth started again".into()
            }
            FaultKind::FewPeers => match c.devnet.set_peers(i, 5).await {
                Ok(_) => "5 peers again".into(),
                Err(x) => format!("node not answering ({x})"),
            },
            FaultKind::ChainHalt => {
                c.devnet.resume().await.map_err(|x| e(&x))?;
                "chain resumed".into()
            }
            FaultKind::DiskFull => {
                c.devnet.set_disk_full(i, false).map_err(|x| e(&x))?;
                "space freed".into()
            }
            FaultKind::CorruptState => match undo {
                Undo::State(path, good) => {
                    let now = std::fs::read(&path).unwrap_or_default();
                    if now == GARBAGE {
                        write_replace(&path, &good).map_err(|x| e(&x))?;
                        "valid state restored".into()
                    } else {
                        "rewritten meanwhile by someone else; left alone".into()
                    }
                }
                _ => "nothing to restore".into(),
            },
            FaultKind::Mute => match c.set_muted(i, false).await {
                Ok(_) => "unmuted".into(),
                // A node restarted meanwhile starts unmuted.
                Err(x) => format!("node not answering ({x})"),
            },
        })
    }

    /// Everything off: restart what is down, then wait for exactly one active and new
    /// signatures in commits.
    async fn recover(&mut self, c: &mut Cluster, bound: Duration) -> Result<(), String> {
        c.set_link_cut(false);
        let start = Instant::now();
        let base = c.ledger().await.map(|l| l.signed_heights).unwrap_or(0);
        let mut one_active_since: Option<u64> = None;
        loop {
            self.sample(c).await;
            for i in 0..2 {
                // A daemon that died by itself comes back like one a fault killed.
                let alive = c
                    .daemon(i)
                    .ok()
                    .and_then(|d| d.pid())
                    .and_then(|p| i32::try_from(p).ok())
                    .is_some_and(crate::procs::alive);
                if !alive {
                    let _ = c.restart_daemon(i, StartRole::Passive);
                }
                if let Ok(false) = c.devnet.node_running(i).await {
                    let _ = restart_node(c, i).await;
                }
            }
            let (_, a, b) = self.roles.last().cloned().unwrap_or_default();
            let one = matches!(
                (a.as_str(), b.as_str()),
                ("active", "passive") | ("passive", "active")
            );
            if let Ok(l) = c.ledger().await {
                if one {
                    let since = *one_active_since.get_or_insert(l.signed_heights);
                    if l.signed_heights > since.max(base) + 2 {
                        return Ok(());
                    }
                } else {
                    one_active_since = None;
                }
            }
            if start.elapsed() >= bound {
                return Err(format!(
                    "no recovery within {:.0} s after the last fault: roles {a}/{b}",
                    bound.as_secs_f64()
                ));
            }
            tokio::time::sleep(SAMPLE).await;
        }
    }
}

/// Like systemd restarting a crashed `story`, but only while the live key is the placeholder:
/// with the validator key live, the host's daemon restarts it after installing the
/// placeholder (its deactivation), so the soak never makes a second signer by itself.
async fn restart_node(c: &Cluster, i: usize) -> Result<String, String> {
    if c.devnet.node_running(i).await.unwrap_or(false) {
        return Ok("node runs (restarted by its daemon)".into());
    }
    let host = c.devnet.host(i).map_err(|e| e.to_string())?;
    let live = std::fs::read(&host.live_key).unwrap_or_default();
    let placeholder = std::fs::read(&host.placeholder_key).unwrap_or_default();
    if live.is_empty() || live != placeholder {
        return Ok("not restarted: the validator key is live there; left to its daemon".into());
    }
    c.devnet
        .start_node(i)
        .await
        .map_err(|e| format!("restart the node: {e}"))?;
    Ok("node restarted (placeholder key)".into())
}

/// A story-geth on host `i`'s old address (the daemon's config names it).
fn start_geth(c: &Cluster, opts: &SoakOptions, i: usize) -> Result<Geth, String> {
    let host = c.devnet.host(i).map_err(|e| e.to_string())?;
    let listen = host
        .evm_rpc_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let log = host.dir.join("geth.log");
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| format!("open {}: {e}", log.display()))?;
    let poll = (opts.block_time.as_millis() / 4).clamp(10, 250).to_string();
    let child = Command::new(opts.launcher.program())
        .args(&opts.devnet_prefix)
        .args([
            "geth",
            "--node-rpc",
            &host.comet_rpc_url,
            "--listen",
            &listen,
        ])
        .args(["--peers", "5", "--poll-ms", &poll, "--watch-pid"])
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("start story-geth: {e}"))?;
    Ok(Geth(child))
}

fn signal(pid: u32, sig: rustix::process::Signal) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| std::io::Error::other(format!("bad pid {pid}")))?;
    rustix::process::kill_process(pid, sig).map_err(std::io::Error::from)
}

/// Replaces a file atomically (temp in the same directory, then rename): the sampler must
/// never read a half-written state.
fn write_replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("soak-restore.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use syncguard_validator::Step;

    #[test]
    fn devnet_soak_same_seed_same_schedule() {
        let len = Duration::from_secs(30);
        assert_eq!(schedule(7, len, &[]), schedule(7, len, &[]));
        assert_ne!(schedule(7, len, &[]), schedule(8, len, &[]));
    }

    #[test]
    fn devnet_soak_every_fault_kind_appears_across_seeds() {
        let kinds: BTreeSet<FaultKind> = (0..40)
            .flat_map(|s| schedule(s, Duration::from_secs(20), &[]))
            .map(|s| s.kind)
            .collect();
        assert_eq!(kinds, FaultKind::ALL.into_iter().collect());
    }

    #[test]
    fn devnet_soak_schedule_respects_bounds_and_kinds() {
        let len = Duration::from_secs(20);
        for seed in 0..50 {
            let steps = schedule(seed, len, &[FaultKind::CutLink, FaultKind::KillNode]);
            assert!(!steps.is_empty());
            let mut prev: Option<&FaultStep> = None;
            for s in &steps {
                assert!(s.at < len, "starts within the schedule");
                assert!((500..=6000).contains(&(s.hold.as_millis() as u64)));
                assert!(matches!(s.kind, FaultKind::CutLink | FaultKind::KillNode));
                match s.kind {
                    FaultKind::CutLink => assert_eq!(s.target, Target::Cluster),
                    _ => assert!(matches!(s.target, Target::Host(0 | 1))),
                }
                if let Some(p) = prev {
                    // At most a second of overlap, never out of order.
                    assert!(s.at >= p.at + Duration::from_millis(300));
                    assert!(s.at + Duration::from_millis(1000) >= p.at + p.hold);
                }
                prev = Some(s);
            }
        }
    }

    #[test]
    fn devnet_soak_mute_lands_on_the_active() {
        let len = Duration::from_secs(20);
        for seed in 0..20 {
            let steps = schedule(seed, len, &[FaultKind::Mute]);
            assert!(!steps.is_empty());
            for s in &steps {
                assert_eq!((s.kind, s.target), (FaultKind::Mute, Target::Active));
                assert!((500..=6000).contains(&(s.hold.as_millis() as u64)));
            }
        }
        // Listing the kinds before it replays the schedules seeds drew before mute existed.
        assert!(!FaultKind::ALL[..13].contains(&FaultKind::Mute));
        assert_eq!(FaultKind::Mute.name(), "mute");
        let json = serde_json::to_value(Target::Active).expect("serialises");
        assert_eq!(json, "active");
    }

    #[test]
    fn devnet_soak_edges_end_before_the_next_begins_at_equal_times() {
        let step = |at: u64, hold: u64| FaultStep {
            at: Duration::from_millis(at),
            kind: FaultKind::ChainHalt,
            target: Target::Cluster,
            hold: Duration::from_millis(hold),
            param: 0,
        };
        let e = edges(&[step(0, 1000), step(1000, 500), step(500, 2000)]);
        let order: Vec<(u64, Edge, usize)> = e
            .iter()
            .map(|(t, e, i)| (t.as_millis() as u64, *e, *i))
            .collect();
        assert_eq!(
            order,
            [
                (0, Edge::On, 0),
                (500, Edge::On, 2),
                (1000, Edge::Off, 0),
                (1000, Edge::On, 1),
                (1500, Edge::Off, 1),
                (2500, Edge::Off, 2),
            ]
        );
    }

    #[test]
    fn devnet_soak_hrs_watch_flags_only_a_lower_state() {
        let h = |height, round, step| Hrs {
            height,
            round,
            step,
        };
        let mut w = HrsWatch::default();
        assert_eq!(w.observe(0, Some(h(10, 0, Step::Precommit))), None);
        assert_eq!(w.observe(0, None), None, "unreadable is skipped");
        assert_eq!(w.observe(0, Some(h(10, 0, Step::Precommit))), None);
        assert_eq!(w.observe(0, Some(h(11, 0, Step::Propose))), None);
        assert_eq!(w.observe(1, Some(h(3, 0, Step::Propose))), None, "per host");
        let r = w.observe(0, Some(h(10, 5, Step::Precommit)));
        assert_eq!(r.map(|r| r.host), Some(0));
        assert_eq!(w.observe(2, Some(h(1, 0, Step::Propose))), None);
    }

    #[test]
    fn devnet_soak_read_hrs_skips_missing_and_garbage() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("s.json");
        assert_eq!(read_hrs(&p), None);
        std::fs::write(&p, GARBAGE).expect("write");
        assert_eq!(read_hrs(&p), None);
        write_replace(&p, SignState::initial().to_json().as_bytes()).expect("write");
        assert_eq!(read_hrs(&p), Some(SignState::initial().hrs()));
    }

    #[test]
    fn devnet_soak_and_bench_parse_from_the_devnet_cli() {
        use crate::cli::{Cli, DevnetCommand};
        use clap::Parser;
        let c = Cli::parse_from([
            "x", "soak", "--runs", "3", "--seed", "9", "--fault", "cut-link", "--fault", "mute",
        ]);
        let DevnetCommand::Soak(a) = c.command else {
            panic!("not soak");
        };
        assert_eq!(
            (a.runs, a.seed, a.faults),
            (3, Some(9), vec![FaultKind::CutLink, FaultKind::Mute])
        );
        assert_eq!((a.fault_seconds, a.recovery_seconds), (60, 60));
        assert_eq!((a.keep, a.log_filter.as_str()), (None, "info"));
        let c = Cli::parse_from([
            "x",
            "soak",
            "--keep",
            "/tmp/k",
            "--log-filter",
            "info,syncguard=debug",
        ]);
        let DevnetCommand::Soak(a) = c.command else {
            panic!("not soak");
        };
        assert_eq!(
            (a.keep, a.log_filter.as_str()),
            (Some(PathBuf::from("/tmp/k")), "info,syncguard=debug")
        );
        let c = Cli::parse_from(["x", "bench", "--json"]);
        let DevnetCommand::Bench(b) = c.command else {
            panic!("not bench");
        };
        assert_eq!((b.runs, b.json), (10, true));
        assert!(b.cases.is_empty(), "every case by default");
        let c = Cli::parse_from(["x", "bench", "--case", "crash-after-handover"]);
        let DevnetCommand::Bench(b) = c.command else {
            panic!("not bench");
        };
        assert_eq!(
            (b.cases, b.double_sign_check_height),
            (vec![crate::bench::Case::CrashAfterHandover], 0)
        );
        assert!(Cli::try_parse_from(["x", "bench", "--runs", "0"]).is_err());
    }
}
