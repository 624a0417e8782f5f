//! `syncguard demo`: a newcomer's first run. Starts a devnet and two real SyncGuard daemons
//! ([`Cluster`]), plays a scenario of faults, shows what happens live (heights, roles,
//! epochs, who signs; every role change and alert the daemons record), and ends with a
//! summary read from the devnet's ledger: blocks signed and missed, double signs and S1
//! violations (both must be 0), and per event the time from the fault to the first
//! signature of the new holder.
//!
//! Scenarios ([`Scenario`]):
//! - `crash-and-fallback` (default): host-a (the primary, active) dies — its SyncGuard and its
//!   node are SIGKILLed; node-b takes over; host-a comes back (its SyncGuard restarts
//!   `--role passive` and starts its node as a full node) and, after
//!   `fallback_grace_period` of good health, takes the role back.
//! - `switchover`: the operator's planned handover to node-b and back (`POST /switchover`).
//! - `both-active`: both daemons started `--role active`, no node holding the key: exactly one
//!   ends active.
//!
//! Measuring: the demo polls the daemons and the chain every [`TICK`]. "First signature" is
//! the first poll at which the ledger shows a new precommit of the new holder in a commit, so
//! times are accurate to about one tick. Missed blocks of an event are the committed heights
//! without the validator's signature between the fault and that first signature.
//!
//! A failed behaviour (a timeout, a refused command) does not make [`run`] fail: it stops the
//! scenario and comes back as `ok: false` with the reason in `problems`, with the ledger's
//! verdict — a demo that broke should still say whether it double-signed. [`run`] errs only
//! when the devnet or the daemons cannot be started at all, or on Ctrl-C.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::{json, Value};

use crate::api::LedgerReport;
use crate::cluster::{Cluster, ClusterError, ClusterOptions, DaemonStatus, StartRole, NODE_IDS};
use crate::harness::Launcher;

/// How often the demo looks at the daemons and the chain.
pub const TICK: Duration = Duration::from_millis(150);

/// Longest wait for one step (daemons settling, a failover, a handover). Generous: on a
/// loaded machine the daemons' health rounds and the node restarts take longer.
const STEP_BOUND: Duration = Duration::from_secs(45);

/// How long the demo lingers after each event to show the new steady state.
const LINGER: Duration = Duration::from_secs(2);

/// What to play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// The active host dies; the passive takes over; the primary comes back and takes the
    /// role back after its grace period.
    #[default]
    CrashAndFallback,
    /// Planned handover to node-b and back, as the operator's `POST /switchover`.
    Switchover,
    /// Both daemons started `--role active`: exactly one ends active.
    BothActive,
}

impl Scenario {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::CrashAndFallback => "crash-and-fallback",
            Scenario::Switchover => "switchover",
            Scenario::BothActive => "both-active",
        }
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where progress lines go (one call per line, without the newline).
pub type Progress = Box<dyn FnMut(&str) + Send>;

/// Progress lines to stdout, flushed at once (the demo is watched live).
pub fn stdout_progress() -> Progress {
    Box::new(|line: &str| {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        // A closed stdout (e.g. `| head`) must not stop the demo: its summary still counts.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    })
}

/// Options of [`run`].
pub struct DemoOptions {
    /// The `syncguard` binary that runs the daemons (the demo's own executable, for
    /// `syncguard demo`).
    pub syncguard_bin: PathBuf,
    /// How to run the devnet CLI (`Launcher::with_prefix(<syncguard>, ["devnet"])` inside
    /// `syncguard`).
    pub launcher: Launcher,
    /// What to play.
    pub scenario: Scenario,
    /// Block interval of the devnet. Default 300 ms.
    pub block_time: Duration,
    /// `failover.fallback_grace_period` of the crash-and-fallback scenario. Default 5 s.
    pub fallback_grace: Duration,
    /// Progress as JSON lines (`{"type": "status"|"step"|"record"|"summary", …}`) instead of
    /// text.
    pub json: bool,
    /// Where progress lines go.
    pub out: Progress,
    /// Keep the devnet's files (configs, logs, ledger) here (created; must not hold a previous
    /// run: keys are never overwritten); None: a temporary directory, removed at the end.
    pub dir: Option<PathBuf>,
}

impl std::fmt::Debug for DemoOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoOptions")
            .field("syncguard_bin", &self.syncguard_bin)
            .field("launcher", &self.launcher)
            .field("scenario", &self.scenario)
            .field("block_time", &self.block_time)
            .field("fallback_grace", &self.fallback_grace)
            .field("json", &self.json)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl DemoOptions {
    /// The default scenario, 300 ms blocks, 5 s grace, text to stdout.
    pub fn new(syncguard_bin: impl Into<PathBuf>, launcher: Launcher) -> Self {
        DemoOptions {
            syncguard_bin: syncguard_bin.into(),
            launcher,
            scenario: Scenario::default(),
            block_time: Duration::from_millis(300),
            fallback_grace: Duration::from_secs(5),
            json: false,
            out: stdout_progress(),
            dir: None,
        }
    }
}

/// `syncguard demo` arguments, for a binary to embed (`Demo(DemoArgs)` in its subcommands).
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// What to play.
    #[arg(long, value_enum, default_value_t = Scenario::CrashAndFallback)]
    pub scenario: Scenario,
    /// Block interval of the devnet, ms (100–2000).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(100..=2000))]
    pub block_time_ms: u64,
    /// fallback_grace_period of the crash-and-fallback scenario, seconds (1–60).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub fallback_grace: u64,
    /// Progress and summary as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Keep the devnet's files (configs, logs, ledger) in this new directory.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// Entry point for a binary that embeds both the demo and the devnet CLI (behind
/// `devnet_prefix`, e.g. `&["devnet"]`): this very executable runs the daemons
/// (`<exe> story …`) and the devnet (`<exe> devnet …`). Progress and summary go to stdout;
/// exit 0 iff the summary is ok, 1 otherwise.
pub fn main_embedded(args: DemoArgs, devnet_prefix: &[&str]) -> Result<ExitCode, DemoError> {
    let exe = std::env::current_exe().map_err(DemoError::SelfExe)?;
    let mut opts = DemoOptions::new(
        &exe,
        Launcher::with_prefix(&exe, devnet_prefix.iter().copied()),
    );
    opts.scenario = args.scenario;
    opts.block_time = Duration::from_millis(args.block_time_ms);
    opts.fallback_grace = Duration::from_secs(args.fallback_grace);
    opts.json = args.json;
    opts.dir = args.keep;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(DemoError::Runtime)?;
    let summary = rt.block_on(run(opts))?;
    if !args.json {
        println!("Try it yourself: `syncguard devnet up` leaves a cluster running to play with.");
    }
    Ok(if summary.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The devnet or the daemons could not be started.
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    /// The program's own path is unknown ([`main_embedded`] runs itself).
    #[error("cannot find this program's path: {0}")]
    SelfExe(std::io::Error),
    /// No async runtime.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// Ctrl-C: everything the demo started has been stopped.
    #[error("interrupted: the devnet and both daemons were stopped")]
    Interrupted,
}

/// One fault (or planned change) and how the cluster came through it.
#[derive(Debug, Clone, Serialize)]
pub struct DemoEvent {
    /// `failover`, `fallback`, `switchover`, `both-active`.
    pub name: String,
    /// What was done, in words.
    pub what: String,
    /// When, RFC 3339.
    pub fault_at: String,
    /// Chain height at that moment.
    pub fault_height: u64,
    /// The node expected to sign next (None: either, for `both-active`).
    pub expected_signer: Option<String>,
    /// The node seen signing first after the fault.
    pub new_signer: Option<String>,
    /// From the fault to the first commit carrying the new holder's signature (None: never).
    pub first_signature_after_ms: Option<u64>,
    /// From the old holder's last signature seen to the new holder's first: the real outage.
    pub signing_gap_ms: Option<u64>,
    /// Part of the wait that is by design (`fallback_grace_period` for a fallback).
    pub designed_wait_ms: Option<u64>,
    /// For a crash: the timing model's bound (`docs/TIMING.md`: the decision + the node's
    /// restart + 2 blocks), ms.
    pub bound_ms: Option<u64>,
    /// Committed heights without the validator's signature from the fault to the first new
    /// signature.
    pub missed_blocks: u64,
    /// The epochs of node-a and node-b once settled.
    pub epochs_after: [Option<u64>; 2],
}

/// The end of a demo.
#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    /// The scenario played.
    pub scenario: Scenario,
    /// Every invariant held and every event completed.
    pub ok: bool,
    /// What went wrong, if anything.
    pub problems: Vec<String>,
    /// Double signs in the ledger (must be 0).
    pub double_signs: u64,
    /// S1 violations: heights signed by two nodes (must be 0).
    pub s1_violations: u64,
    /// Signatures that did not verify (must be 0).
    pub bad_signatures: u64,
    /// Heights committed since the chain started.
    pub committed_blocks: u64,
    /// Of those, signed by the validator.
    pub signed_blocks: u64,
    /// Of those, not signed (including the daemons' start, when node-a's node restarts).
    pub missed_blocks: u64,
    /// Signatures in commits per node (`host-a`, `host-b`).
    pub signed_by_node: std::collections::BTreeMap<String, u64>,
    /// The faults and how long each took to heal.
    pub events: Vec<DemoEvent>,
    /// Wall time of the whole demo, ms.
    pub duration_ms: u64,
    /// Where the files were kept (with [`DemoOptions::dir`]).
    pub dir: Option<String>,
}

impl DemoSummary {
    /// The summary as text (what the demo prints last).
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let verdict = if self.ok { "OK" } else { "FAILED" };
        let _ = writeln!(s, "=== summary: {} — {verdict} ===", self.scenario);
        let _ = writeln!(
            s,
            "blocks: {} committed, {} signed, {} missed",
            self.committed_blocks, self.signed_blocks, self.missed_blocks
        );
        let by: Vec<String> = self
            .signed_by_node
            .iter()
            .map(|(n, c)| format!("{n} {c}"))
            .collect();
        let _ = writeln!(s, "signatures in commits by node: {}", by.join(", "));
        let _ = writeln!(
            s,
            "double signs: {}   S1 violations: {}   bad signatures: {}   (all must be 0)",
            self.double_signs, self.s1_violations, self.bad_signatures
        );
        for e in &self.events {
            let first = e
                .first_signature_after_ms
                .map_or("never".to_string(), |ms| {
                    format!("{:.1} s", ms as f64 / 1e3)
                });
            let gap = e.signing_gap_ms.map_or(String::new(), |ms| {
                format!(", signing gap {:.1} s", ms as f64 / 1e3)
            });
            let designed = e.designed_wait_ms.map_or(String::new(), |ms| {
                format!(
                    " (of which {:.1} s grace period, by design)",
                    ms as f64 / 1e3
                )
            });
            let designed = match (e.bound_ms, e.first_signature_after_ms) {
                (Some(b), Some(t)) => format!(
                    "{designed} (bound {:.1} s: {:.2} × the bound)",
                    b as f64 / 1e3,
                    t as f64 / b.max(1) as f64
                ),
                _ => designed,
            };
            let _ = writeln!(
                s,
                "event {:<11} first signature by {} after {first}{designed}{gap}, {} block(s) missed",
                e.name,
                e.new_signer.as_deref().unwrap_or("nobody"),
                e.missed_blocks
            );
        }
        for p in &self.problems {
            let _ = writeln!(s, "problem: {p}");
        }
        if let Some(d) = &self.dir {
            let _ = writeln!(s, "files (configs, logs, ledger): {d}");
        }
        let _ = write!(s, "took {:.1} s", self.duration_ms as f64 / 1e3);
        s
    }
}

/// Run a demo. Progress goes to `opts.out`; the summary is returned (and also written to
/// `opts.out` last). Ctrl-C stops everything the demo started and returns
/// [`DemoError::Interrupted`].
pub async fn run(opts: DemoOptions) -> Result<DemoSummary, DemoError> {
    let mut demo = Demo::new(opts);
    let scenario = demo.scenario;
    let played = tokio::select! {
        r = demo.play(scenario) => r,
        // Dropping the scenario's future drops the cluster, which kills the daemons and the
        // devnet: nothing outlives an interrupted demo.
        _ = tokio::signal::ctrl_c() => return Err(DemoError::Interrupted),
    };
    let summary = played?;
    if demo.json {
        let line = json!({"type": "summary", "summary": summary}).to_string();
        (demo.out)(&line);
    } else {
        for line in summary.render_text().lines() {
            (demo.out)(line);
        }
    }
    Ok(summary)
}

/// One look at the cluster.
#[derive(Debug, Clone, Default)]
struct Obs {
    height: u64,
    status: [Option<DaemonStatus>; 2],
    ledger: Option<LedgerReport>,
}

impl Obs {
    fn role(&self, i: usize) -> Option<&str> {
        self.status[i].as_ref().map(|s| s.role.as_str())
    }

    /// Precommits of host `i` in commits.
    fn signed(&self, i: usize) -> u64 {
        self.ledger
            .as_ref()
            .and_then(|l| l.per_node.get(host_name(i)))
            .map_or(0, |c| c.in_commits)
    }

    fn missed(&self) -> u64 {
        self.ledger.as_ref().map_or(0, |l| l.missed_heights)
    }

    /// The node whose signature is newest, if it signed one of the last few heights.
    fn signer(&self) -> Option<usize> {
        let l = self.ledger.as_ref()?;
        let last = |i: usize| l.per_node.get(host_name(i)).and_then(|c| c.last_height);
        let (i, h) = (0..2)
            .filter_map(|i| last(i).map(|h| (i, h)))
            .max_by_key(|&(_, h)| h)?;
        (h + 3 >= self.height).then_some(i)
    }
}

fn host_name(i: usize) -> &'static str {
    // The devnet names hosts host-a, host-b: the node id in the ledger.
    if i == 0 {
        "host-a"
    } else {
        "host-b"
    }
}

/// A fault in progress.
struct Pending {
    event: DemoEvent,
    started: Instant,
    /// Expected new signer (None: whichever signs first).
    new: Option<usize>,
    /// Signatures of each node at the fault.
    base: [u64; 2],
    missed_base: u64,
}

struct Demo {
    scenario: Scenario,
    syncguard_bin: PathBuf,
    launcher: Launcher,
    block_time: Duration,
    fallback_grace: Duration,
    json: bool,
    out: Progress,
    dir: Option<PathBuf>,
    t0: Instant,
    /// The timing model's crash bound for the cluster being played.
    crash_bound: Duration,
    last: Obs,
    last_line: Option<(Instant, String)>,
    /// Records of each daemon already shown (reset when a daemon restarts).
    records_seen: [usize; 2],
    /// When each node's signature count last grew.
    last_signed_at: [Option<Instant>; 2],
    ticks: u64,
    events: Vec<DemoEvent>,
    problems: Vec<String>,
}

impl Demo {
    fn new(opts: DemoOptions) -> Demo {
        Demo {
            scenario: opts.scenario,
            syncguard_bin: opts.syncguard_bin,
            launcher: opts.launcher,
            block_time: opts.block_time,
            fallback_grace: opts.fallback_grace,
            json: opts.json,
            out: opts.out,
            dir: opts.dir,
            t0: Instant::now(),
            crash_bound: Duration::ZERO,
            last: Obs::default(),
            last_line: None,
            records_seen: [0, 0],
            last_signed_at: [None, None],
            ticks: 0,
            events: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn secs(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn step(&mut self, msg: &str) {
        let line = if self.json {
            json!({"type": "step", "t": round1(self.secs()), "msg": msg}).to_string()
        } else {
            format!("[{:6.1}s] >>> {msg}", self.secs())
        };
        (self.out)(&line);
    }

    async fn play(&mut self, scenario: Scenario) -> Result<DemoSummary, DemoError> {
        let mut copts = ClusterOptions::new(self.syncguard_bin.clone(), self.launcher.clone());
        copts.devnet.block_time = self.block_time;
        copts.devnet.dir = self.dir.clone();
        // The demo's window onto the daemons is their API and events; their logs go to files.
        copts.log_filter = "info".into();
        copts.log_level = "info".into();
        match scenario {
            Scenario::CrashAndFallback => {
                copts.timings.fallback_grace_period = self.fallback_grace.as_secs_f64();
            }
            Scenario::Switchover => {}
            Scenario::BothActive => {
                // Nobody holds the key at start: the daemons must agree who takes it.
                copts.devnet.validator_hosts = Vec::new();
                copts.roles = [StartRole::Active, StartRole::Active];
            }
        }
        self.step(&format!(
            "scenario {scenario}: starting a devnet (chain + host-a, host-b; {} ms blocks) and two SyncGuard daemons over mutual TLS (node-a {}, node-b {})",
            self.block_time.as_millis(),
            copts.roles[0].as_str(),
            copts.roles[1].as_str(),
        ));
        self.crash_bound = copts
            .timings
            .model(self.block_time, copts.devnet.double_sign_check_height)
            .crash_bound(copts.devnet.node_restart);
        let mut cluster = Cluster::start(copts).await?;
        let dir = self
            .dir
            .as_ref()
            .map(|_| cluster.devnet.dir().display().to_string());
        if let Some(d) = &dir {
            self.step(&format!("files: {d}"));
        }
        let played = match scenario {
            Scenario::CrashAndFallback => self.crash_and_fallback(&mut cluster).await,
            Scenario::Switchover => self.switchover(&cluster).await,
            Scenario::BothActive => self.both_active(&cluster).await,
        };
        if let Err(problem) = played {
            self.step(&format!("stopped: {problem}"));
            // What each daemon saw, so a failed demo can be understood without the files.
            let details = cluster.describe().await;
            if self.json {
                let line = json!({"type": "diagnostics", "text": details}).to_string();
                (self.out)(&line);
            } else {
                for line in details.lines() {
                    (self.out)(line);
                }
            }
            self.problems.push(problem);
        }
        // The verdict: the ledger saw every vote signed with the validator key.
        let ledger = cluster.ledger().await?;
        Ok(self.summary(&ledger, dir))
    }

    fn summary(&mut self, l: &LedgerReport, dir: Option<String>) -> DemoSummary {
        let mut problems = std::mem::take(&mut self.problems);
        if l.double_signs > 0 || l.s1_violations > 0 || l.bad_signatures > 0 {
            problems.push(format!(
                "the ledger shows {} double sign(s), {} S1 violation(s), {} bad signature(s): {}",
                l.double_signs,
                l.s1_violations,
                l.bad_signatures,
                serde_json::to_string(&l.offenses).unwrap_or_default()
            ));
        }
        DemoSummary {
            scenario: self.scenario,
            ok: problems.is_empty(),
            problems,
            double_signs: l.double_signs,
            s1_violations: l.s1_violations,
            bad_signatures: l.bad_signatures,
            committed_blocks: l.committed_heights,
            signed_blocks: l.signed_heights,
            missed_blocks: l.missed_heights,
            signed_by_node: l
                .per_node
                .iter()
                .map(|(n, c)| (n.clone(), c.in_commits))
                .collect(),
            events: std::mem::take(&mut self.events),
            duration_ms: ms(self.t0.elapsed()),
            dir,
        }
    }

    // ---- scenarios: Err(problem) stops the scenario; the summary says why ----

    async fn crash_and_fallback(&mut self, c: &mut Cluster) -> Result<(), String> {
        self.steady(c).await?;

        self.step("CRASH: host-a dies — SIGKILL its SyncGuard and its Story node");
        let mut ev = self.begin(
            "failover",
            "host-a (active) crashed: its SyncGuard and node SIGKILLed",
            Some(1),
        );
        ev.event.bound_ms = Some(ms(self.crash_bound));
        c.crash_host(0)
            .await
            .map_err(|e| format!("crash host-a: {e}"))?;
        self.records_seen[0] = 0;
        self.finish_event(c, &mut ev).await?;
        self.wait(c, "node-b active", |o| o.role(1) == Some("active"))
            .await?;
        self.linger(c, LINGER).await?;

        self.step(&format!(
            "host-a is back: its SyncGuard restarts (--role passive) and starts its node as a full node; it takes the role back after {:.0} s of good health (fallback_grace_period)",
            self.fallback_grace.as_secs_f64()
        ));
        let mut ev = self.begin("fallback",
            "host-a's SyncGuard restarted --role passive; the primary takes the role back after its grace period",
            Some(0),
        );
        ev.event.designed_wait_ms = Some(ms(self.fallback_grace));
        c.restart_daemon(0, StartRole::Passive)
            .map_err(|e| format!("restart node-a: {e}"))?;
        self.records_seen[0] = 0;
        self.finish_event_within(c, &mut ev, self.fallback_grace + STEP_BOUND)
            .await?;
        self.wait(c, "node-a active, node-b passive", |o| {
            o.role(0) == Some("active") && o.role(1) == Some("passive")
        })
        .await?;
        self.linger(c, LINGER).await
    }

    async fn switchover(&mut self, c: &Cluster) -> Result<(), String> {
        self.steady(c).await?;
        let token = c.admin_token().map(str::to_string);
        for (from, to) in [(0usize, 1usize), (1, 0)] {
            self.step(&format!(
                "SWITCHOVER: the operator asks {} to hand the role to {} (POST /switchover)",
                NODE_IDS[from], NODE_IDS[to]
            ));
            let mut ev = self.begin(
                "switchover",
                &format!("planned switchover {} -> {}", NODE_IDS[from], NODE_IDS[to]),
                Some(to),
            );
            let (code, body) = c
                .post(
                    from,
                    "/switchover",
                    token.as_deref(),
                    &json!({"to": NODE_IDS[to]}),
                )
                .await
                .map_err(|e| format!("POST /switchover: {e}"))?;
            if code != 200 {
                return Err(format!("POST /switchover answered {code}: {body}"));
            }
            self.finish_event(c, &mut ev).await?;
            self.wait(c, "roles swapped", |o| {
                o.role(to) == Some("active") && o.role(from) == Some("passive")
            })
            .await?;
            self.linger(c, LINGER).await?;
        }
        Ok(())
    }

    async fn both_active(&mut self, c: &Cluster) -> Result<(), String> {
        self.step("both daemons were started --role active and nobody holds the key: they must agree on one");
        let mut ev = self.begin("both-active", "both daemons started --role active", None);
        self.finish_event(c, &mut ev).await?;
        self.wait(c, "exactly one active", |o| {
            matches!(
                (o.role(0), o.role(1)),
                (Some("active"), Some("passive")) | (Some("passive"), Some("active"))
            )
        })
        .await?;
        self.step("watching: exactly one must stay active");
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            let o = self.tick(c).await;
            if o.role(0) == Some("active") && o.role(1) == Some("active") {
                return Err("both daemons show active".into());
            }
            tokio::time::sleep(TICK).await;
        }
        Ok(())
    }

    /// Waits for node-a active and signing, node-b passive.
    async fn steady(&mut self, c: &Cluster) -> Result<(), String> {
        self.step("waiting for node-a active and signing, node-b passive");
        let base = self.tick(c).await.signed(0);
        self.wait(c, "node-a active and signing, node-b passive", |o| {
            o.role(0) == Some("active") && o.role(1) == Some("passive") && o.signed(0) > base + 2
        })
        .await?;
        self.linger(c, LINGER).await
    }

    // ---- events ----

    fn begin(&mut self, name: &str, what: &str, new: Option<usize>) -> Pending {
        Pending {
            event: DemoEvent {
                name: name.into(),
                what: what.into(),
                fault_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                fault_height: self.last.height,
                expected_signer: new.map(|i| NODE_IDS[i].to_string()),
                new_signer: None,
                first_signature_after_ms: None,
                signing_gap_ms: None,
                designed_wait_ms: None,
                bound_ms: None,
                missed_blocks: 0,
                epochs_after: [None, None],
            },
            started: Instant::now(),
            new,
            base: [self.last.signed(0), self.last.signed(1)],
            missed_base: self.last.missed(),
        }
    }

    async fn finish_event(&mut self, c: &Cluster, ev: &mut Pending) -> Result<(), String> {
        self.finish_event_within(c, ev, STEP_BOUND).await
    }

    /// Waits for the new holder's first signature in a commit and records the event (also
    /// when it never comes: the summary shows that).
    async fn finish_event_within(
        &mut self,
        c: &Cluster,
        ev: &mut Pending,
        bound: Duration,
    ) -> Result<(), String> {
        let deadline = ev.started + bound;
        let outcome = loop {
            let o = self.tick(c).await;
            let who = match ev.new {
                Some(i) => (o.signed(i) > ev.base[i]).then_some(i),
                None => (0..2).find(|&i| o.signed(i) > ev.base[i]),
            };
            if let Some(i) = who {
                break Some((i, o));
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(TICK).await;
        };
        let mut event = ev.event.clone();
        let result = match outcome {
            Some((i, o)) => {
                let now = Instant::now();
                event.new_signer = Some(NODE_IDS[i].to_string());
                event.first_signature_after_ms = Some(ms(now - ev.started));
                // The old holder is the other node; its last signature seen (updated by this
                // very tick) ends the outage's first side. Resolution: one tick.
                event.signing_gap_ms =
                    self.last_signed_at[1 - i].map(|t| ms(now.saturating_duration_since(t)));
                event.missed_blocks = o.missed().saturating_sub(ev.missed_base);
                event.epochs_after = [
                    o.status[0].as_ref().and_then(|s| s.epoch),
                    o.status[1].as_ref().and_then(|s| s.epoch),
                ];
                self.step(&format!(
                    "{}: first signature by {} {:.1} s after the fault, {} block(s) missed",
                    event.name,
                    NODE_IDS[i],
                    (now - ev.started).as_secs_f64(),
                    event.missed_blocks
                ));
                Ok(())
            }
            None => Err(format!(
                "{}: no new signature{} within {:?}",
                event.name,
                ev.new
                    .map(|i| format!(" by {}", NODE_IDS[i]))
                    .unwrap_or_default(),
                bound
            )),
        };
        self.events.push(event);
        result
    }

    // ---- watching ----

    /// Polls until `cond` holds (or [`STEP_BOUND`]), showing progress.
    async fn wait<F>(&mut self, c: &Cluster, what: &str, cond: F) -> Result<(), String>
    where
        F: Fn(&Obs) -> bool,
    {
        let deadline = Instant::now() + STEP_BOUND;
        loop {
            let o = self.tick(c).await;
            if cond(&o) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("{what}: not reached within {STEP_BOUND:?}"));
            }
            tokio::time::sleep(TICK).await;
        }
    }

    /// Keeps showing progress for `d`.
    async fn linger(&mut self, c: &Cluster, d: Duration) -> Result<(), String> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.tick(c).await;
            tokio::time::sleep(TICK).await;
        }
        Ok(())
    }

    /// One look: statuses, head, ledger; prints a status line when something changed or a
    /// second has passed, and the daemons' new role changes and alerts.
    async fn tick(&mut self, c: &Cluster) -> Obs {
        self.ticks += 1;
        let (s0, s1, head, ledger) =
            tokio::join!(c.status(0), c.status(1), c.devnet.head(), c.devnet.ledger());
        let o = Obs {
            // A failed look keeps the last known value: the chain is up for the whole demo.
            height: head.map_or(self.last.height, |h| h.height),
            status: [s0, s1],
            ledger: ledger.ok().or_else(|| self.last.ledger.clone()),
        };
        let now = Instant::now();
        for i in 0..2 {
            if o.signed(i) > self.last.signed(i) {
                self.last_signed_at[i] = Some(now);
            }
        }
        let roles_changed = (0..2).any(|i| {
            o.status[i].as_ref().map(|s| (&s.role, s.epoch))
                != self.last.status[i].as_ref().map(|s| (&s.role, s.epoch))
        });
        if roles_changed || self.ticks.is_multiple_of(4) {
            self.show_records(c).await;
        }
        self.show_status(&o, roles_changed || o.signer() != self.last.signer());
        self.last = o.clone();
        o
    }

    fn show_status(&mut self, o: &Obs, changed: bool) {
        let due = self
            .last_line
            .as_ref()
            .is_none_or(|(t, _)| t.elapsed() >= Duration::from_secs(1));
        if !(changed || due) {
            return;
        }
        let node = |i: usize| -> String {
            match &o.status[i] {
                Some(s) => format!(
                    "{} {:<9} epoch {:<2} node at {:<5} {}",
                    NODE_IDS[i],
                    s.role,
                    s.epoch.map_or("-".into(), |e| e.to_string()),
                    s.comet_height.map_or("-".into(), |h| h.to_string()),
                    if s.healthy { "healthy  " } else { "unhealthy" },
                ),
                None => format!("{} {:<45}", NODE_IDS[i], "(not answering)"),
            }
        };
        let signer = o.signer().map_or("nobody", host_name);
        let (signed, missed) = o
            .ledger
            .as_ref()
            .map_or((0, 0), |l| (l.signed_heights, l.missed_heights));
        let line = if self.json {
            let st = |i: usize| {
                o.status[i].as_ref().map_or(Value::Null, |s| {
                    json!({"role": s.role, "epoch": s.epoch, "healthy": s.healthy, "comet_height": s.comet_height})
                })
            };
            json!({
                "type": "status",
                "t": round1(self.secs()),
                "height": o.height,
                "node-a": st(0),
                "node-b": st(1),
                "signing": o.signer().map(host_name),
                "signed": signed,
                "missed": missed,
            })
            .to_string()
        } else {
            format!(
                "[{:6.1}s] chain at {:<5} | {} | {} | signing: {:<6} | signed {signed} missed {missed}",
                self.secs(),
                o.height,
                node(0),
                node(1),
                signer
            )
        };
        let dup = self.last_line.as_ref().is_some_and(|(_, l)| *l == line);
        if !dup || due {
            (self.out)(&line);
            self.last_line = Some((Instant::now(), line));
        }
    }

    /// Prints the daemons' new role changes and alerts (their `/events`).
    async fn show_records(&mut self, c: &Cluster) {
        for i in 0..2 {
            let records = c.events(i).await;
            if records.is_empty() {
                continue;
            }
            // Fewer records than seen: the daemon restarted with a fresh history.
            if records.len() < self.records_seen[i] {
                self.records_seen[i] = 0;
            }
            let new: Vec<Value> = records[self.records_seen[i]..].to_vec();
            self.records_seen[i] = records.len();
            for r in new {
                let kind = r["kind"].as_str().unwrap_or("");
                if kind != "role_change" && kind != "alert" {
                    continue;
                }
                let line = if self.json {
                    json!({"type": "record", "t": round1(self.secs()), "node": NODE_IDS[i], "record": r})
                        .to_string()
                } else {
                    format!(
                        "[{:6.1}s]     {} {}: {} (epoch {}): {}",
                        self.secs(),
                        NODE_IDS[i],
                        kind.replace('_', " "),
                        r["role"].as_str().unwrap_or("?"),
                        r["epoch"],
                        shorten(r["why"].as_str().unwrap_or(""), 200)
                    )
                };
                (self.out)(&line);
            }
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn devnet_demo_scenarios_parse_by_their_names() {
        for s in [
            Scenario::CrashAndFallback,
            Scenario::Switchover,
            Scenario::BothActive,
        ] {
            assert_eq!(Scenario::from_str(s.name(), false), Ok(s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(Value::String(s.name().into()))
            );
        }
        assert_eq!(Scenario::default(), Scenario::CrashAndFallback);
    }

    #[test]
    fn devnet_demo_run_can_be_spawned() {
        // A caller may run the demo on a spawned task: its future must be Send.
        fn assert_send<T: Send>(_: &T) {}
        let opts = DemoOptions::new("/nonexistent/syncguard", Launcher::new("/nonexistent"));
        let fut = run(opts);
        assert_send(&fut);
    }

    #[test]
    fn devnet_demo_args_parse_with_defaults() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct T {
            #[command(flatten)]
            demo: DemoArgs,
        }
        let t = T::parse_from(["syncguard-demo"]);
        assert_eq!(t.demo.scenario, Scenario::CrashAndFallback);
        assert_eq!((t.demo.block_time_ms, t.demo.fallback_grace), (300, 5));
        let t = T::parse_from([
            "x",
            "--scenario",
            "both-active",
            "--json",
            "--block-time-ms",
            "500",
        ]);
        assert_eq!(t.demo.scenario, Scenario::BothActive);
        assert!(t.demo.json);
        assert!(T::try_parse_from(["x", "--block-time-ms", "5"]).is_err());
    }

    #[test]
    fn devnet_demo_signer_is_the_newest_recent_signature() {
        let mut l = LedgerReport::default();
        l.per_node.insert(
            "host-a".into(),
            crate::api::NodeCounts {
                first_height: Some(10),
                last_height: Some(50),
                ..Default::default()
            },
        );
        l.per_node.insert(
            "host-b".into(),
            crate::api::NodeCounts {
                first_height: Some(51),
                last_height: Some(60),
                ..Default::default()
            },
        );
        let mut o = Obs {
            height: 60,
            ledger: Some(l),
            ..Default::default()
        };
        assert_eq!(o.signer(), Some(1));
        o.height = 80;
        assert_eq!(o.signer(), None, "nobody signed lately");
        assert_eq!(shorten("abcdef", 3), "abc…");
    }
}
