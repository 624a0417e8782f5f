//! `syncguard devnet bench`: failover and switchover timings over many runs on one
//! two-daemon [`Cluster`] (issue 7, item 7), with p50/p95/max and the bound physics sets.
//!
//! Cases ([`Case`], `--case`, all by default):
//! - `crash`: the steady state — the active's host dies (SyncGuard and node, SIGKILL) long
//!   after the last change of holder;
//! - `crash-after-handover`: the role moves by a planned switchover, the chain shows the new
//!   holder's first signature, and 1 s later the new holder's host dies — the failover a
//!   fresh holder gets;
//! - `switchover`: a planned switchover.
//!
//! Per run:
//! - **first signature**: seconds from the fault (the crash, or the `POST /switchover`) to
//!   the first poll at which the chain's ledger shows a commit carrying the new holder's
//!   signature (polled every [`POLL`], so ±50 ms).
//! - **blocks missed**: committed heights without the validator's signature between those two
//!   instants.
//! - **decision latency**: from the moment the last promotion condition became true to the
//!   start command on the new holder. The start command's instant is read from the new
//!   holder's `GET /switchover` step table: activation start (`finished_at − total_seconds`)
//!   plus the steps before `start`. The condition's instant, from the daemons' `/events`:
//!   - crash: the failover deadline the passive announced in its `not promoting yet: … —
//!     earliest check in X s` record (record time + X; peer lost for the whole window and
//!     anything it may have started given time to show on chain); the promotion itself then
//!     waits only for the chain witness. Without such a record: the promotion record.
//!   - switchover: the old holder's `… offering the role to X at epoch N` record (its stop
//!     confirmed, placeholder in place: nothing else is needed for the target to start).
//!
//! Crashes are played after `priority_margin` has passed since the last change of holder, so
//! they measure the steady state (right after a handover the passive also waits out the
//! margin, by design).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::{json, Value};

use crate::cluster::{Cluster, ClusterOptions, StartRole, Timings, NODE_IDS};
use crate::demo::{stdout_progress, Progress};
use crate::harness::Launcher;
use crate::soak::{binaries, SoakError};

/// How often the ledger is polled for the new holder's first signature.
pub const POLL: Duration = Duration::from_millis(50);

/// How long after the new holder's first signature `crash-after-handover` kills its host.
pub const AFTER_FIRST_SIGNATURE: Duration = Duration::from_secs(1);

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Case {
    /// The active's host crashes in the steady state (the last handover long past).
    Crash,
    /// The new holder's host crashes 1 s after its first signature on chain.
    CrashAfterHandover,
    /// A planned switchover.
    Switchover,
}

impl Case {
    /// Every case, in the order of the report.
    pub const ALL: [Case; 3] = [Case::Crash, Case::CrashAfterHandover, Case::Switchover];

    /// Its kebab-case name (the `kind` of its samples).
    pub fn name(self) -> &'static str {
        match self {
            Case::Crash => "crash",
            Case::CrashAfterHandover => "crash-after-handover",
            Case::Switchover => "switchover",
        }
    }

    fn crashes(self) -> bool {
        matches!(self, Case::Crash | Case::CrashAfterHandover)
    }
}

/// p50, p95 and max of a series (nearest rank).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    /// Samples.
    pub n: usize,
    /// Median (nearest rank).
    pub p50: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// Largest.
    pub max: f64,
}

/// Nearest-rank percentiles; None for an empty series. NaNs are ignored. Pure.
pub fn stats(values: &[f64]) -> Option<Stats> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let r = (p / 100.0 * v.len() as f64).ceil() as usize;
        v[r.clamp(1, v.len()) - 1]
    };
    Some(Stats {
        n: v.len(),
        p50: rank(50.0),
        p95: rank(95.0),
        max: v[v.len() - 1],
    })
}

/// The seconds of the steps before `start` in an actuator step table (one line per step:
/// `name seconds outcome detail`); None when there is no `start` line. Pure.
pub fn seconds_before_start(table: &str) -> Option<f64> {
    let mut sum = 0.0;
    for line in table.lines() {
        let mut words = line.split_whitespace();
        let name = words.next()?;
        if name == "start" {
            return Some(sum);
        }
        let secs: f64 = words.next()?.trim_end_matches('s').parse().ok()?;
        sum += secs;
    }
    None
}

/// `X` of `… earliest check in X s` / `X ms` / `X min`, in seconds. Pure.
pub fn earliest_check_in(why: &str) -> Option<f64> {
    let rest = why.split("earliest check in ").nth(1)?;
    let mut words = rest.split_whitespace();
    let n: f64 = words.next()?.parse().ok()?;
    match words
        .next()?
        .trim_end_matches(|c: char| !c.is_alphanumeric())
    {
        "s" => Some(n),
        "ms" => Some(n / 1e3),
        "min" => Some(n * 60.0),
        _ => None,
    }
}

fn record_at(r: &Value) -> Option<SystemTime> {
    humantime::parse_rfc3339(r["at"].as_str()?).ok()
}

fn why(r: &Value) -> &str {
    r["why"].as_str().unwrap_or("")
}

/// The instant the new holder ran its start command, from its `GET /switchover` body.
pub fn start_command_at(switchover: &Value) -> Option<SystemTime> {
    let a = &switchover["last_activation"];
    let finished = humantime::parse_rfc3339(a["finished_at"].as_str()?).ok()?;
    let total = a["total_seconds"].as_f64()?;
    let before = seconds_before_start(a["table"].as_str()?)?;
    let begun = finished.checked_sub(Duration::from_secs_f64(total.max(0.0)))?;
    begun.checked_add(Duration::from_secs_f64(before.max(0.0)))
}

/// When the last condition of an unplanned promotion became true, from the new holder's
/// records since `since`: the announced deadline of its last wait before the promotion,
/// else the promotion record. Pure.
pub fn crash_condition_at(
    records: &[Value],
    since: SystemTime,
) -> Option<(SystemTime, &'static str)> {
    let recent: Vec<&Value> = records
        .iter()
        .filter(|r| record_at(r).is_some_and(|t| t >= since))
        .collect();
    let promo = recent
        .iter()
        .position(|r| why(r).starts_with("promoting to active at epoch"))?;
    let deadline = recent[..promo]
        .iter()
        .rev()
        .find_map(|r| Some(record_at(r)? + Duration::from_secs_f64(earliest_check_in(why(r))?)));
    match deadline {
        Some(t) => Some((t, "announced failover deadline")),
        None => record_at(recent[promo]).map(|t| (t, "promotion record")),
    }
}

/// When the old holder offered the role (its stop confirmed), from its records since
/// `since`. Pure.
pub fn offer_at(records: &[Value], since: SystemTime) -> Option<SystemTime> {
    records
        .iter()
        .filter(|r| record_at(r).is_some_and(|t| t >= since))
        .find(|r| why(r).contains("offering the role to"))
        .and_then(record_at)
}

fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// One measured event.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// `crash`, `crash-after-handover` or `switchover` ([`Case::name`]).
    pub kind: &'static str,
    /// 1-based run number within its kind.
    pub run: u32,
    /// From node to node.
    pub from: String,
    /// To.
    pub to: String,
    /// Seconds from the fault to the first commit with the new holder's signature.
    pub first_signature_s: Option<f64>,
    /// Committed heights without the validator's signature in between.
    pub blocks_missed: u64,
    /// Seconds from the last promotion condition to the start command.
    pub decision_latency_s: Option<f64>,
    /// Which record gave the condition's instant.
    pub condition: Option<&'static str>,
    /// What went wrong, if anything.
    pub problem: Option<String>,
}

impl Sample {
    /// One line for the progress output.
    pub fn line(&self) -> String {
        let secs = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.3} s"));
        format!(
            "{} {} ({} -> {}): first signature after {}, {} block(s) missed, decision latency {} (from the {}){}",
            self.kind,
            self.run,
            self.from,
            self.to,
            secs(self.first_signature_s),
            self.blocks_missed,
            secs(self.decision_latency_s),
            self.condition.unwrap_or("-"),
            self.problem.as_deref().map(|p| format!("; problem: {p}")).unwrap_or_default()
        )
    }
}

/// The bench's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Runs per kind.
    pub runs: u32,
    /// Block interval, s.
    pub block_time_s: f64,
    /// Node restart time, s.
    pub node_restart_s: f64,
    /// `health_check_interval × retry_attempts`, s.
    pub failover_window_s: f64,
    /// `priority_margin` as the daemons compute it (waited out before each crash), s.
    pub priority_margin_s: f64,
    /// Physics bound of a crash failover: window + node restart + 2 blocks, s.
    pub crash_bound_s: f64,
    /// Bound of a crash 1 s after a handover: for now the crash bound (DESIGN §3: a crashed
    /// active is replaced as fast soon after a change of holder), s.
    pub crash_after_handover_bound_s: f64,
    /// Physics bound of a switchover: node restart + 1 block, s.
    pub switchover_bound_s: f64,
    /// The cases measured, in report order.
    pub cases: Vec<Case>,
    /// Every sample.
    pub samples: Vec<Sample>,
    /// `(kind, metric) → stats`.
    pub table: Vec<(String, String, Option<Stats>)>,
    /// Ledger at the end: double signs, S1 violations, bad signatures (all must be 0).
    pub ledger: Option<[u64; 3]>,
    /// Every run measured and the ledger clean.
    pub ok: bool,
    /// Problems.
    pub problems: Vec<String>,
    /// Wall time, s.
    pub seconds: f64,
}

impl BenchReport {
    fn fill_table(&mut self) {
        self.table.clear();
        for kind in self.cases.iter().map(|c| c.name()) {
            let of = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<f64> {
                self.samples
                    .iter()
                    .filter(|s| s.kind == kind)
                    .filter_map(f)
                    .collect()
            };
            let first = of(&|s| s.first_signature_s);
            let missed = of(&|s| s.first_signature_s.map(|_| s.blocks_missed as f64));
            let decision = of(&|s| s.decision_latency_s);
            for (m, v) in [
                ("first_signature_s", first),
                ("blocks_missed", missed),
                ("decision_latency_s", decision),
            ] {
                self.table.push((kind.into(), m.into(), stats(&v)));
            }
        }
    }

    /// The table as Markdown-ish text, with the bounds.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| event | metric | n | p50 | p95 | max | physics bound |\n|---|---|---|---|---|---|---|"
        );
        for (kind, metric, st) in &self.table {
            let bound = match (kind.as_str(), metric.as_str()) {
                ("crash", "first_signature_s") => format!("{:.2} s", self.crash_bound_s),
                ("crash-after-handover", "first_signature_s") => {
                    format!("{:.2} s", self.crash_after_handover_bound_s)
                }
                ("switchover", "first_signature_s") => {
                    format!("{:.2} s", self.switchover_bound_s)
                }
                _ => String::new(),
            };
            match st {
                Some(st) => {
                    let _ = writeln!(
                        s,
                        "| {kind} | {metric} | {} | {:.3} | {:.3} | {:.3} | {bound} |",
                        st.n, st.p50, st.p95, st.max
                    );
                }
                None => {
                    let _ = writeln!(s, "| {kind} | {metric} | 0 | - | - | - | {bound} |");
                }
            }
        }
        let _ = writeln!(
            s,
            "bounds (timing model, docs/TIMING.md): crash = the decision (failover window {:.2} s, or the witness's clean run in block time, whichever is later) + node restart {:.2} s + 2 blocks ({:.2} s each) = {:.2} s; crash-after-handover (host of the new holder killed {:.0} s after its first signature) = the same {:.2} s; switchover = node restart + 1 block = {:.2} s; longest post-handover wait, waited out before each steady-state crash: {:.2} s",
            self.failover_window_s,
            self.node_restart_s,
            self.block_time_s,
            self.crash_bound_s,
            AFTER_FIRST_SIGNATURE.as_secs_f64(),
            self.crash_after_handover_bound_s,
            self.switchover_bound_s,
            self.priority_margin_s
        );
        if let Some([ds, s1, bad]) = self.ledger {
            let _ = writeln!(
                s,
                "ledger: {ds} double signs, {s1} S1 violations, {bad} bad signatures"
            );
        }
        for p in &self.problems {
            let _ = writeln!(s, "problem: {p}");
        }
        let _ = write!(
            s,
            "{} in {:.0} s",
            if self.ok { "OK" } else { "FAILED" },
            self.seconds
        );
        s
    }
}

/// `syncguard devnet bench` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Runs of each case.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    /// Only these cases (repeatable; default all).
    #[arg(long = "case", value_enum)]
    pub cases: Vec<Case>,
    /// `[consensus] double_sign_check_height` in both nodes' config.toml (0: off).
    #[arg(long, default_value_t = 0)]
    pub double_sign_check_height: u64,
    /// Block interval, ms.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(100..=2000))]
    pub block_time_ms: u64,
    /// The report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep the devnet's files under this new directory.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// The syncguard binary running the daemons (default: this program).
    #[arg(long)]
    pub syncguard_bin: Option<PathBuf>,
}

/// Options of [`run`].
pub struct BenchOptions {
    /// The `syncguard` binary.
    pub syncguard_bin: PathBuf,
    /// The devnet launcher.
    pub launcher: Launcher,
    /// Runs per case.
    pub runs: u32,
    /// Cases to measure (all when empty).
    pub cases: Vec<Case>,
    /// `double_sign_check_height` of the nodes.
    pub double_sign_check_height: u64,
    /// Block interval.
    pub block_time: Duration,
    /// JSON output.
    pub json: bool,
    /// Progress.
    pub out: Progress,
    /// Keep files here.
    pub keep: Option<PathBuf>,
}

impl BenchOptions {
    /// 10 runs of every case, 300 ms blocks.
    pub fn new(syncguard_bin: impl Into<PathBuf>, launcher: Launcher) -> Self {
        BenchOptions {
            syncguard_bin: syncguard_bin.into(),
            launcher,
            runs: 10,
            cases: Vec::new(),
            double_sign_check_height: 0,
            block_time: Duration::from_millis(300),
            json: false,
            out: stdout_progress(),
            keep: None,
        }
    }
}

/// The longest post-handover wait as the daemons derive it (`Timing::settle`): waited out
/// before a steady-state crash, so that case measures the steady state.
pub fn priority_margin(t: &Timings, block: Duration) -> Duration {
    t.model(block, 0).settle
}

/// `syncguard devnet bench`: exit 0 iff every run was measured and the ledger is clean.
pub async fn run_args(args: BenchArgs, devnet_prefix: &[&str]) -> Result<ExitCode, SoakError> {
    let (bin, launcher) = binaries(args.syncguard_bin.clone(), devnet_prefix)?;
    let mut opts = BenchOptions::new(bin, launcher);
    opts.runs = args.runs;
    opts.cases = args.cases;
    opts.double_sign_check_height = args.double_sign_check_height;
    opts.block_time = Duration::from_millis(args.block_time_ms);
    opts.json = args.json;
    opts.keep = args.keep;
    let report = tokio::select! {
        r = run(opts) => r?,
        _ = tokio::signal::ctrl_c() => return Err(SoakError::Interrupted),
    };
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs the bench; progress to `opts.out`, the report last.
pub async fn run(mut opts: BenchOptions) -> Result<BenchReport, SoakError> {
    let started = Instant::now();
    let mut copts = ClusterOptions::new(opts.syncguard_bin.clone(), opts.launcher.clone());
    copts.devnet.block_time = opts.block_time;
    copts.devnet.dir = opts.keep.clone();
    copts.devnet.double_sign_check_height = opts.double_sign_check_height;
    let mut cases: Vec<Case> = if opts.cases.is_empty() {
        Case::ALL.to_vec()
    } else {
        opts.cases.clone()
    };
    cases.sort();
    cases.dedup();
    copts.log_filter = "info".into();
    copts.log_level = "info".into();
    let t = copts.timings.clone();
    let model = t.model(opts.block_time, opts.double_sign_check_height);
    let window = model.window.as_secs_f64();
    let restart = copts.devnet.node_restart.as_secs_f64();
    let block = opts.block_time.as_secs_f64();
    let margin = priority_margin(&t, opts.block_time);
    // The timing model's bounds: a crash is replaced within its decision (the window, or
    // the witness's clean run in block time) + the node's restart + 2 blocks — after a
    // change of holder too, once the new holder is seen active (its activation verified).
    let crash_bound = model.crash_bound(copts.devnet.node_restart).as_secs_f64();
    let mut report = BenchReport {
        runs: opts.runs,
        block_time_s: block,
        node_restart_s: restart,
        failover_window_s: window,
        priority_margin_s: margin.as_secs_f64(),
        crash_bound_s: crash_bound,
        crash_after_handover_bound_s: crash_bound,
        switchover_bound_s: restart + block,
        cases: cases.clone(),
        samples: Vec::new(),
        table: Vec::new(),
        ledger: None,
        ok: false,
        problems: Vec::new(),
        seconds: 0.0,
    };
    let mut c = Cluster::start(copts).await?;
    let mut bench = Bench {
        out: &mut opts.out,
        json: opts.json,
        t0: Instant::now(),
        runs: opts.runs,
        margin,
    };
    let played = bench.play(&mut c, &cases, &mut report).await;
    if let Err(p) = played {
        report.problems.push(p);
        report.problems.push(c.describe().await);
    }
    match c.ledger().await {
        Ok(l) => {
            report.ledger = Some([l.double_signs, l.s1_violations, l.bad_signatures]);
            if l.double_signs + l.s1_violations + l.bad_signatures > 0 {
                report.problems.push(format!(
                    "the ledger is not clean: {}",
                    serde_json::to_string(&l.offenses).unwrap_or_default()
                ));
            }
        }
        Err(e) => report.problems.push(format!("cannot read the ledger: {e}")),
    }
    report.fill_table();
    report.seconds = started.elapsed().as_secs_f64();
    report.ok = report.problems.is_empty()
        && report.samples.iter().all(|s| s.problem.is_none())
        && report.samples.len() == cases.len() * opts.runs as usize;
    let text = if opts.json {
        json!({"type": "report", "report": report}).to_string()
    } else {
        report.render_text()
    };
    for line in text.lines() {
        (opts.out)(line);
    }
    Ok(report)
}

struct Bench<'a> {
    out: &'a mut Progress,
    json: bool,
    t0: Instant,
    /// Runs per case.
    runs: u32,
    /// `priority_margin`, waited out before a steady-state crash.
    margin: Duration,
}

/// A case played to its end, or why the bench stopped.
type Played = Result<(), String>;

/// Longest wait for one step.
const STEP: Duration = Duration::from_secs(60);

/// Longest wait for the survivor's first signature after a crash right after a handover:
/// today's failover core makes the survivor wait out a post-handover margin first.
const STEP_AFTER_HANDOVER: Duration = Duration::from_secs(180);

impl Bench<'_> {
    fn say(&mut self, msg: &str) {
        let t = self.t0.elapsed().as_secs_f64();
        let line = if self.json {
            json!({"type": "step", "t": (t * 10.0).round() / 10.0, "msg": msg}).to_string()
        } else {
            format!("[{t:6.1}s] {msg}")
        };
        (self.out)(&line);
    }

    async fn play(&mut self, c: &mut Cluster, cases: &[Case], report: &mut BenchReport) -> Played {
        let e = |e: crate::cluster::ClusterError| e.to_string();
        self.say("waiting for node-a active and signing, node-b passive");
        c.wait_roles(["active", "passive"], STEP).await.map_err(e)?;
        c.wait_signing_by(0, STEP).await.map_err(e)?;
        for &case in cases {
            match case {
                Case::Crash => self.crashes(c, report).await?,
                Case::CrashAfterHandover => self.after_handover(c, report).await?,
                Case::Switchover => self.switchovers(c, report).await?,
            }
        }
        Ok(())
    }

    /// Keeps a sample; a run that never saw the new holder sign ends the bench.
    fn keep(&mut self, mut s: Sample, report: &mut BenchReport) -> Played {
        self.say(&s.line());
        let fatal = s.first_signature_s.is_none();
        if fatal {
            s.problem.get_or_insert("no new signature".into());
        }
        let why = format!("{} {}: {} never signed", s.kind, s.run, s.to);
        report.samples.push(s);
        if fatal {
            Err(why)
        } else {
            Ok(())
        }
    }

    /// Steady-state crashes of host-a (the role goes back to it after each).
    async fn crashes(&mut self, c: &mut Cluster, report: &mut BenchReport) -> Played {
        let e = |e: crate::cluster::ClusterError| e.to_string();
        let (runs, margin) = (self.runs, self.margin);
        // The role may have moved in an earlier case: start from node-a active.
        if c.wait_one_active(STEP).await.map_err(e)? == 1 {
            self.switch(c, 1, 0).await?;
        }
        let mut last_change = Instant::now();
        for r in 1..=runs {
            // Steady state: the passive no longer waits out the margin of the last handover.
            let ready_at = last_change + margin + Duration::from_secs(1);
            tokio::time::sleep(ready_at.saturating_duration_since(Instant::now())).await;
            self.say(&format!(
                "crash {r}/{runs}: SIGKILL host-a's SyncGuard and node"
            ));
            let s = self.measure(c, Case::Crash, r, 0, 1).await;
            self.keep(s, report)?;
            // host-a back as passive, then the role back to it.
            c.restart_daemon(0, StartRole::Passive).map_err(e)?;
            c.wait_roles(["passive", "active"], STEP).await.map_err(e)?;
            self.switch(c, 1, 0).await?;
            c.wait_roles(["active", "passive"], STEP).await.map_err(e)?;
            c.wait_signing_by(0, STEP).await.map_err(e)?;
            last_change = Instant::now();
        }
        Ok(())
    }

    /// A switchover to the passive, its first signature on chain, 1 s, then a crash of its
    /// host: the old holder must take the role back.
    async fn after_handover(&mut self, c: &mut Cluster, report: &mut BenchReport) -> Played {
        let e = |e: crate::cluster::ClusterError| e.to_string();
        let runs = self.runs;
        for r in 1..=runs {
            let old = c.wait_one_active(STEP).await.map_err(e)?;
            let new = 1 - old;
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.say(&format!(
                "crash-after-handover {r}/{runs}: switchover {} -> {}, then SIGKILL {}'s host {:.0} s after its first signature",
                NODE_IDS[old],
                NODE_IDS[new],
                NODE_IDS[new],
                AFTER_FIRST_SIGNATURE.as_secs_f64()
            ));
            let before = c.signed_by(new).await;
            let asked = Instant::now();
            self.offer(c, old, new).await?;
            c.wait_until(
                &format!("{}'s first signature", NODE_IDS[new]),
                STEP,
                || async { c.signed_by(new).await > before },
            )
            .await
            .map_err(e)?;
            self.say(&format!(
                "{} signed {:.2} s after the switchover was asked",
                NODE_IDS[new],
                asked.elapsed().as_secs_f64()
            ));
            tokio::time::sleep(AFTER_FIRST_SIGNATURE).await;
            let s = self.measure(c, Case::CrashAfterHandover, r, new, old).await;
            self.keep(s, report)?;
            c.restart_daemon(new, StartRole::Passive).map_err(e)?;
            let mut want = ["passive", "passive"];
            want[old] = "active";
            c.wait_roles(want, STEP).await.map_err(e)?;
            c.wait_signing_by(old, STEP).await.map_err(e)?;
        }
        Ok(())
    }

    /// Planned switchovers back and forth.
    async fn switchovers(&mut self, c: &mut Cluster, report: &mut BenchReport) -> Played {
        let e = |e: crate::cluster::ClusterError| e.to_string();
        let runs = self.runs;
        let mut from = c.wait_one_active(STEP).await.map_err(e)?;
        for r in 1..=runs {
            let to = 1 - from;
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.say(&format!(
                "switchover {r}/{runs}: {} -> {}",
                NODE_IDS[from], NODE_IDS[to]
            ));
            let s = self.measure(c, Case::Switchover, r, from, to).await;
            self.keep(s, report)?;
            let mut want = ["passive", "passive"];
            want[to] = "active";
            c.wait_roles(want, STEP).await.map_err(e)?;
            from = to;
        }
        Ok(())
    }

    /// An unmeasured switchover (the way back after a crash), retried while the target is
    /// not ready yet (it just restarted and must be healthy and caught up).
    async fn switch(&mut self, c: &Cluster, from: usize, to: usize) -> Result<(), String> {
        self.offer(c, from, to).await?;
        c.wait_signing_by(to, STEP).await.map_err(|e| e.to_string())
    }

    /// Asks `from` to hand the role to `to` until it accepts (the target may not be ready).
    async fn offer(&mut self, c: &Cluster, from: usize, to: usize) -> Result<(), String> {
        let deadline = Instant::now() + STEP;
        loop {
            match post_switchover(c, from, to).await {
                Ok(()) => return Ok(()),
                Err(why) if Instant::now() >= deadline => return Err(why),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Crashes host `from` or asks it to hand over (per `case`), then polls the ledger until
    /// `to` signs; reads the decision latency.
    async fn measure(
        &mut self,
        c: &mut Cluster,
        case: Case,
        run: u32,
        from: usize,
        to: usize,
    ) -> Sample {
        let mut s = Sample {
            kind: case.name(),
            run,
            from: NODE_IDS[from].into(),
            to: NODE_IDS[to].into(),
            first_signature_s: None,
            blocks_missed: 0,
            decision_latency_s: None,
            condition: None,
            problem: None,
        };
        let base = match c.ledger().await {
            Ok(l) => l,
            Err(e) => {
                s.problem = Some(format!("ledger: {e}"));
                return s;
            }
        };
        let host = |i: usize| c.devnet.host(i).map(|h| h.name.clone()).unwrap_or_default();
        let to_name = host(to);
        let signed =
            |l: &crate::api::LedgerReport| l.per_node.get(&to_name).map_or(0, |n| n.in_commits);
        let base_signed = signed(&base);
        // A little before the fault: records are stamped to the millisecond.
        let since = SystemTime::now() - Duration::from_millis(5);
        let t = Instant::now();
        let done = if case.crashes() {
            c.crash_host(from).await.map_err(|e| e.to_string())
        } else {
            post_switchover(c, from, to).await
        };
        if let Err(why) = done {
            s.problem = Some(why);
            return s;
        }
        let bound = if case == Case::CrashAfterHandover {
            STEP_AFTER_HANDOVER
        } else {
            STEP
        };
        loop {
            if let Ok(l) = c.ledger().await {
                if signed(&l) > base_signed {
                    s.first_signature_s = Some(t.elapsed().as_secs_f64());
                    s.blocks_missed = l.missed_heights.saturating_sub(base.missed_heights);
                    break;
                }
            }
            if t.elapsed() >= bound {
                s.problem = Some(format!("no signature by {to_name} within {bound:?}"));
                return s;
            }
            tokio::time::sleep(POLL).await;
        }
        // The step table is written when the activation finishes (verify included).
        let bound = Instant::now() + Duration::from_secs(15);
        let start_at = loop {
            let sw = c.get(to, "/switchover").await.unwrap_or(Value::Null);
            let fresh = sw["last_activation"]["finished_at"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .is_some_and(|t| t >= since);
            if fresh {
                break start_command_at(&sw);
            }
            if Instant::now() >= bound {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Record times are the daemon's start time plus a monotonic offset: allow them a
        // little skew (the previous event's records are seconds older).
        let records_since = since - Duration::from_millis(500);
        let condition = if case.crashes() {
            crash_condition_at(&c.events(to).await, records_since)
        } else {
            offer_at(&c.events(from).await, records_since).map(|t| (t, "offer record"))
        };
        match (condition, start_at) {
            (Some((cond, source)), Some(start)) => {
                s.decision_latency_s = Some(secs_between(cond, start));
                s.condition = Some(source);
            }
            _ => {
                s.problem = Some(format!(
                    "decision latency unknown (condition {condition:?}, start {start_at:?})"
                ))
            }
        }
        s
    }
}

async fn post_switchover(c: &Cluster, from: usize, to: usize) -> Result<(), String> {
    let (code, body) = c
        .post(
            from,
            "/switchover",
            c.admin_token(),
            &json!({"to": NODE_IDS[to]}),
        )
        .await
        .map_err(|e| e.to_string())?;
    if code == 200 && body["ok"].as_bool() != Some(false) {
        Ok(())
    } else {
        Err(format!("POST /switchover answered {code}: {body}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_bench_stats_are_nearest_rank() {
        assert_eq!(stats(&[]), None);
        let s = stats(&[3.0]).expect("one");
        assert_eq!((s.n, s.p50, s.p95, s.max), (1, 3.0, 3.0, 3.0));
        let v: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        let s = stats(&v).expect("twenty");
        assert_eq!((s.n, s.p50, s.p95, s.max), (20, 10.0, 19.0, 20.0));
        let s = stats(&[1.0, f64::NAN, 2.0]).expect("nan ignored");
        assert_eq!((s.n, s.p50, s.max), (2, 1.0, 2.0));
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        let s = stats(&v).expect("ten");
        assert_eq!((s.p50, s.p95, s.max), (5.0, 10.0, 10.0));
    }

    #[test]
    fn devnet_bench_reads_the_step_table() {
        let table = "check-keys                       0.000s  ok       validator key X\n\
                     stop                             0.016s  ok       exit status 0\n\
                     confirm-stopped                  0.009s  ok       exits 3\n\
                     write-state                      0.020s  ok       h 49\n\
                     install-validator-key            0.005s  ok       0600\n\
                     start                            0.010s  ok       started\n\
                     verify-signing                   0.700s  ok       seen\n\
                     total                            0.760s";
        let s = seconds_before_start(table).expect("has start");
        assert!((s - 0.050).abs() < 1e-9, "{s}");
        assert_eq!(seconds_before_start("stop 0.1s ok\n"), None);
        let sw = json!({"last_activation": {
            "finished_at": "2026-11-24T16:00:52.760Z", "total_seconds": 0.76, "table": table}});
        let at = start_command_at(&sw).expect("start");
        let want = humantime::parse_rfc3339("2026-11-24T16:00:52.050Z").expect("t");
        assert!(secs_between(at, want).abs() < 1e-6);
    }

    #[test]
    fn devnet_bench_finds_the_conditions_in_the_records() {
        assert_eq!(
            earliest_check_in("not promoting yet: x — earliest check in 7.3 s"),
            Some(7.3)
        );
        assert_eq!(earliest_check_in("earliest check in 2 min"), Some(120.0));
        assert_eq!(earliest_check_in("earliest check in 300 ms."), Some(0.3));
        assert_eq!(earliest_check_in("promoting to active"), None);
        let t = |s: &str| humantime::parse_rfc3339(s).expect("t");
        let records = vec![
            json!({"at": "2026-11-24T16:00:40.000Z", "why": "not promoting yet: old — earliest check in 1.0 s"}),
            json!({"at": "2026-11-24T16:00:44.520Z", "why": "not promoting yet: lost — earliest check in 1.0 s"}),
            json!({"at": "2026-11-24T16:00:45.600Z", "why": "promoting to active at epoch 2: the chain shows no signature"}),
        ];
        let since = t("2026-11-24T16:00:43.000Z");
        assert_eq!(
            crash_condition_at(&records, since),
            Some((t("2026-11-24T16:00:45.520Z"), "announced failover deadline"))
        );
        // No wait announced: the promotion record itself.
        assert_eq!(
            crash_condition_at(&records[2..], since),
            Some((t("2026-11-24T16:00:45.600Z"), "promotion record"))
        );
        assert_eq!(crash_condition_at(&records[..2], since), None);
        let holder = vec![
            json!({"at": "2026-11-24T16:00:56.249Z", "why": "handing the role over to node-a"}),
            json!({"at": "2026-11-24T16:00:56.287Z", "why": "handover: stopped signing here; offering the role to node-a at epoch 3"}),
        ];
        assert_eq!(
            offer_at(&holder, t("2026-11-24T16:00:56.000Z")),
            Some(t("2026-11-24T16:00:56.287Z"))
        );
        assert_eq!(offer_at(&holder, t("2026-11-24T16:00:57.000Z")), None);
    }

    #[test]
    fn devnet_bench_reports_crash_after_handover_beside_the_steady_crash() {
        let sample = |kind: &'static str, first: f64| Sample {
            kind,
            run: 1,
            from: "node-b".into(),
            to: "node-a".into(),
            first_signature_s: Some(first),
            blocks_missed: 3,
            decision_latency_s: Some(0.1),
            condition: Some("promotion record"),
            problem: None,
        };
        let mut r = BenchReport {
            runs: 1,
            block_time_s: 0.3,
            node_restart_s: 0.3,
            failover_window_s: 1.5,
            priority_margin_s: 9.3,
            crash_bound_s: 2.4,
            crash_after_handover_bound_s: 2.4,
            switchover_bound_s: 0.6,
            cases: Case::ALL.to_vec(),
            samples: vec![
                sample("switchover", 0.5),
                sample("crash-after-handover", 61.0),
                sample("crash", 2.1),
            ],
            table: Vec::new(),
            ledger: Some([0, 0, 0]),
            ok: true,
            problems: Vec::new(),
            seconds: 1.0,
        };
        r.fill_table();
        let kinds: Vec<&str> = r.table.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(
            kinds[..4],
            ["crash", "crash", "crash", "crash-after-handover"]
        );
        let text = r.render_text();
        assert!(
            text.contains("| crash-after-handover | first_signature_s | 1 | 61.000 | 61.000 | 61.000 | 2.40 s |"),
            "{text}"
        );
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["crash_after_handover_bound_s"], 2.4);
        assert_eq!(v["cases"][1], "crash-after-handover");
        // Only the cases asked for are reported.
        r.cases = vec![Case::CrashAfterHandover];
        r.fill_table();
        assert!(r.table.iter().all(|(k, _, _)| k == "crash-after-handover"));
    }

    #[test]
    fn devnet_bench_margin_matches_the_config_default() {
        let t = Timings::default();
        // The daemons' own derivation: request 0.4 s + the activation (stop 0.3 + kill 0.2 +
        // 0.3 overruns, write 1 s, start 1.5 s + (3 + 2) × 2 × 0.3 s, then the roll-back's
        // stop 0.8 s) 7.1 s + a round and an RPC 0.8 s + slack 0.1 s = 8.4 s.
        assert_eq!(
            priority_margin(&t, Duration::from_millis(300)),
            Duration::from_millis(8400)
        );
    }
}
