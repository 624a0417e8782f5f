//! A simulated world for two failover machines: a chain that advances unless halted (at the
//! configured block interval, or faster), each node's health and its view of the chain, the
//! link between the nodes (cut, loss, delay, duplicates), crashes and restarts, actuators that
//! verify every activation (or roll it back) and may start `story` late, votes that never
//! reach a commit (an asymmetric cut: "mute"), and a ledger of every signature.
//!
//! "Signing" is modelled at the node: `story` runs with the key from the moment an activation
//! started it (up to `start_timeout` after the start command) until a deactivation's stop.
//! Such a node signs every new height its own chain view reaches at or above its merged
//! fence; a muted node's signatures go to the ledger but not into the commits. A double sign
//! is one height signed by both nodes. Randomness comes from a seeded generator in the test
//! only; the machines see nothing but events and times.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use syncguard_failover::{
    Action, ActuatorResult, ChainReport, Event, HandedState, LocalHealth, Machine, NodeId,
    OperatorCommand, Params, PeerObservation, RecordKind, RecordTag, Role, Wish, WitnessReport,
};
use syncguard_timing::{Inputs, Timing};
use syncguard_validator::{Hrs, Step};

/// The configured block interval (`story.block_interval`).
pub const BLOCK_MS: u64 = 1_000;
pub const ROUND_MS: u64 = 1_000;
pub const TICK_MS: u64 = 250;
/// The health verdict's stall flag (its own bound, slower than the self-fence's block age).
pub const STALL_MS: u64 = 1_500;
/// `story.stop_timeout` and `story.kill_timeout` of the simulated actuator.
pub const STOP_MS: u64 = 1_000;
pub const KILL_MS: u64 = 500;
/// `story.start_timeout`: a started `story` signs at most this long after its start command.
pub const START_MS: u64 = 2_500;

/// The sim's timing: 1 s rounds × 4, 1 s blocks, a 1 s stop + 0.5 s kill, `story` signing up
/// to 2.5 s after its start, 3 verify blocks; everything else derived by the timing model.
pub fn sim_timing() -> Timing {
    let mut i = Inputs::new(
        Duration::from_millis(ROUND_MS),
        4,
        Duration::from_millis(BLOCK_MS),
    );
    i.stop_timeout = Some(Duration::from_millis(STOP_MS));
    i.kill_timeout = Some(Duration::from_millis(KILL_MS));
    i.start_timeout = Some(Duration::from_millis(START_MS));
    i.verify_blocks = 3;
    match syncguard_timing::derive(&i) {
        Ok(t) => t,
        Err(e) => panic!("sim timing invalid: {e:?}"),
    }
}

/// The two nodes' parameters: `a` is the primary site.
pub fn sim_params(me: usize) -> Params {
    let ids = ["a", "b"];
    let mut p = Params::with_defaults(NodeId::new(ids[me]), NodeId::new(ids[1 - me]), me == 0);
    p.fallback_grace_period = Duration::from_secs(10);
    p.timing = sim_timing();
    p
}

/// xorshift64*: deterministic, seeded by proptest.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The whole host dies (story with it) and comes back after `down_ms`.
    Crash { node: usize, down_ms: u64 },
    /// The link between the two SyncGuards is cut.
    CutLink { ms: u64 },
    /// One node's view of the chain freezes (its node is cut from the chain's network).
    Stall { node: usize, ms: u64 },
    /// The whole chain halts (upgrade height).
    Halt { ms: u64 },
    /// A node's health verdict fails without a stall (EVM broken, disk full, ...).
    Sick { node: usize, ms: u64 },
    /// An operator asks the given node for a switchover to `to`.
    Switchover { at: usize, to: usize },
    /// An operator pauses a node for a while.
    Pause { node: usize, ms: u64 },
    /// `story` dies on a node and its service manager restarts it `ms` later, with
    /// whatever key is installed (so an active's story signs again when it is back).
    StoryCrash { node: usize, ms: u64 },
    /// Only the SyncGuard daemon restarts: `story` keeps running as it was (key and all); an
    /// actuator operation under way is cut where it stands.
    DaemonRestart { node: usize },
    /// An asymmetric cut: the node keeps following the chain and keeps voting, but its votes
    /// never reach a commit (they still count as signatures: the ledger sees them).
    Mute { node: usize, ms: u64 },
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub wishes: [Wish; 2],
    pub link_up_at_start: bool,
    pub loss: f64,
    pub dup: f64,
    pub act_fail: f64,
    pub deact_fail: f64,
    pub faults: Vec<(u64, Fault)>,
    /// Faults stop at this time; everything heals; the run goes on until `end_ms`.
    pub quiet_at_ms: u64,
    pub end_ms: u64,
    /// Longest message delay (ms).
    pub max_delay_ms: u64,
    /// Blocks come every `BLOCK_MS / 2` (± jitter) although the config says `BLOCK_MS`.
    pub fast_chain: bool,
    /// A started `story` begins signing after a random delay up to this (≤ `START_MS`).
    pub max_start_delay_ms: u64,
}

impl SimConfig {
    /// A calm world: no faults, no loss, the given wishes.
    pub fn calm(seed: u64, wishes: [Wish; 2]) -> Self {
        SimConfig {
            seed,
            wishes,
            link_up_at_start: true,
            loss: 0.0,
            dup: 0.0,
            act_fail: 0.0,
            deact_fail: 0.0,
            faults: Vec::new(),
            quiet_at_ms: 80_000,
            end_ms: 150_000,
            max_delay_ms: 300,
            fast_chain: false,
            max_start_delay_ms: 500,
        }
    }

    /// A random world from a generator (for the coverage check; the property tests use
    /// proptest strategies of the same shape).
    pub fn random(r: &mut Rng) -> Self {
        let mut faults = Vec::new();
        for _ in 0..r.range(0, 8) {
            let t = r.range(0, 60_000);
            let node = r.range(0, 1) as usize;
            let f = match r.range(0, 16) {
                0..=2 => Fault::Crash {
                    node,
                    down_ms: r.range(500, 20_000),
                },
                3..=5 => Fault::CutLink {
                    ms: r.range(500, 20_000),
                },
                6..=7 => Fault::Stall {
                    node,
                    ms: r.range(500, 15_000),
                },
                8 => Fault::Halt {
                    ms: r.range(500, 10_000),
                },
                9..=10 => Fault::Sick {
                    node,
                    ms: r.range(1_000, 15_000),
                },
                11 => Fault::Switchover {
                    at: node,
                    to: r.range(0, 1) as usize,
                },
                12 => Fault::StoryCrash {
                    node,
                    ms: r.range(500, 10_000),
                },
                13 => Fault::DaemonRestart { node },
                14..=15 => Fault::Mute {
                    node,
                    ms: r.range(1_000, 20_000),
                },
                _ => Fault::Pause {
                    node,
                    ms: r.range(1_000, 15_000),
                },
            };
            faults.push((t, f));
        }
        let wish = |x: u64| if x == 0 { Wish::Active } else { Wish::Passive };
        SimConfig {
            seed: r.next(),
            wishes: [wish(r.range(0, 1)), wish(r.range(0, 1))],
            link_up_at_start: r.range(0, 4) > 0,
            loss: r.range(0, 20) as f64 / 100.0,
            dup: r.range(0, 5) as f64 / 100.0,
            act_fail: r.range(0, 20) as f64 / 100.0,
            deact_fail: r.range(0, 10) as f64 / 100.0,
            faults,
            quiet_at_ms: 80_000,
            end_ms: 150_000,
            max_delay_ms: if r.range(0, 1) == 0 { 300 } else { 1_500 },
            fast_chain: r.range(0, 3) == 0,
            max_start_delay_ms: r.range(100, START_MS),
        }
    }
}

#[derive(Debug)]
enum Ev {
    Block,
    Round(usize),
    Tick(usize),
    Deliver {
        to: usize,
        inc: u64,
        event: Box<Event>,
    },
    Poll {
        from: usize,
        inc: u64,
    },
    WitnessFetch {
        node: usize,
        inc: u64,
        id: u64,
        blocks: u64,
    },
    /// One step of the actuator's current operation.
    Act {
        node: usize,
        inc: u64,
        op: u64,
    },
    Fault(Fault),
    Restart(usize),
    LinkUp,
    StallEnd(usize),
    HaltEnd,
    SickEnd(usize),
    MuteEnd(usize),
    Resume(usize),
    Quiet,
}

/// Where an actuator operation stands.
#[derive(Debug, Clone, PartialEq)]
enum Stage {
    /// Activation: waiting for the height CometBFT's double-sign check needs.
    WaitHeight { until: u64, deadline: u64 },
    /// Activation: stopping the full node, then write, install, start.
    StopFullNode,
    /// Activation: story started at `started`; it signs from `signs_at` (never when it
    /// failed to start); verified once its signature is in a commit.
    Verifying { started: u64, signs_at: Option<u64> },
    /// Activation failed: stopping story again (roll-back), then report.
    RollingBack { reason: String },
    /// Deactivation: the stop (or its failure) happens at `stop_at`.
    Stopping { stop_at: u64, fail: bool },
}

#[derive(Debug)]
struct ActOp {
    id: u64,
    action: Action,
    stage: Stage,
}

pub struct SimNode {
    pub up: bool,
    pub inc: u64,
    pub machine: Option<Machine>,
    pub disk_epoch: u64,
    pub disk_right: Option<bool>,
    /// The state file: the highest height this host signed (survives crashes).
    pub last_signed: u64,
    /// The replica: the highest state pulled from the peer.
    pub replica: u64,
    /// story runs with the validator key from this time on (None: not with the key).
    pub key_live: bool,
    pub signing_from_time: u64,
    pub sign_from: u64,
    pub view: u64,
    pub last_view_change: u64,
    pub stalled_until: u64,
    pub catching_up_until: u64,
    pub sick_until: u64,
    pub muted_until: u64,
    /// `story` is down (crashed) until then; no signing, no new blocks seen, no `/status`.
    pub story_down_until: u64,
    pub bad_rounds: u32,
    pub good_rounds: u32,
    pub verdict: bool,
    act_queue: VecDeque<ActOp>,
    act_busy: bool,
    next_op: u64,
    /// Highest state fed to the current machine incarnation.
    pub seen_max: Option<Hrs>,
    pub last_witness: Option<WitnessReport>,
    pub wish: Wish,
}

impl SimNode {
    fn new(wish: Wish) -> Self {
        SimNode {
            up: true,
            inc: 0,
            machine: None,
            disk_epoch: 0,
            disk_right: None,
            last_signed: 0,
            replica: 0,
            key_live: false,
            signing_from_time: 0,
            sign_from: u64::MAX,
            view: 0,
            last_view_change: 0,
            stalled_until: 0,
            catching_up_until: 0,
            sick_until: 0,
            muted_until: 0,
            story_down_until: 0,
            bad_rounds: 0,
            good_rounds: 0,
            verdict: false,
            act_queue: VecDeque::new(),
            act_busy: false,
            next_op: 1,
            seen_max: None,
            last_witness: None,
            wish,
        }
    }

    /// Whether story runs with the key and has begun signing at `now`.
    fn signing(&self, now: u64) -> bool {
        self.key_live && now >= self.signing_from_time
    }
}

pub struct World {
    pub now: u64,
    pub cfg: SimConfig,
    pub timing: Timing,
    pub rng: Rng,
    pub height: u64,
    pub halted_until: u64,
    /// Every signature ever made, in-flight and muted ones included: height -> nodes.
    pub ledger: BTreeMap<u64, Vec<usize>>,
    /// What the chain's commits show: height -> nodes whose signature made it in.
    pub commits: BTreeMap<u64, Vec<usize>>,
    /// The block time (ms) of each height.
    pub block_times: BTreeMap<u64, u64>,
    pub nodes: [SimNode; 2],
    pub link_up: bool,
    pub quiet: bool,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    pub violations: Vec<String>,
    /// (time, node, epoch) of every Activate.
    pub activations: Vec<(u64, usize, u64)>,
    pub trace: VecDeque<String>,
    pub promotions: usize,
    /// (node, tag, reason) of every tagged record, in order.
    pub tags: Vec<(usize, RecordTag, String)>,
    /// Milliseconds during which the key was live on both nodes.
    pub both_live_ms: u64,
}

fn hrs_done(h: u64) -> Hrs {
    Hrs::new(i64::try_from(h).unwrap_or(i64::MAX), 0, Step::Precommit)
}

/// The first height a node may sign with state `h` on disk.
fn first_signable(h: Hrs) -> u64 {
    let base = u64::try_from(h.height).unwrap_or(0);
    if h.step == Step::None && h.round == 0 {
        base
    } else {
        base + 1
    }
}

impl World {
    pub fn new(cfg: SimConfig) -> Self {
        let rng = Rng::new(cfg.seed);
        let mut w = World {
            now: 0,
            rng,
            timing: sim_timing(),
            height: 10,
            halted_until: 0,
            ledger: BTreeMap::new(),
            commits: BTreeMap::new(),
            block_times: (0..=10).map(|h| (h, 0)).collect(),
            nodes: [SimNode::new(cfg.wishes[0]), SimNode::new(cfg.wishes[1])],
            link_up: cfg.link_up_at_start,
            quiet: false,
            queue: BTreeMap::new(),
            seq: 0,
            violations: Vec::new(),
            activations: Vec::new(),
            trace: VecDeque::new(),
            promotions: 0,
            tags: Vec::new(),
            both_live_ms: 0,
            cfg,
        };
        for n in 0..2 {
            w.nodes[n].view = w.height;
            w.nodes[n].verdict = true;
            w.nodes[n].good_rounds = 5;
        }
        w.at(BLOCK_MS, Ev::Block);
        for n in 0..2 {
            w.boot(n);
            let phase = if n == 0 { 0 } else { ROUND_MS / 2 };
            w.at(phase + 100, Ev::Round(n));
            w.at(phase + 50, Ev::Tick(n));
        }
        if !w.link_up {
            w.at(40_000, Ev::LinkUp);
        }
        let faults = w.cfg.faults.clone();
        for (t, f) in faults {
            w.at(t, Ev::Fault(f));
        }
        w.at(w.cfg.quiet_at_ms, Ev::Quiet);
        w
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((t, self.seq), ev);
    }

    fn log(&mut self, s: String) {
        if self.trace.len() >= 400 {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("{:>7} {s}", self.now));
    }

    pub fn trace_text(&self) -> String {
        self.trace.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn boot(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.inc += 1;
        let mut m = match Machine::new(sim_params(n)) {
            Ok(m) => m,
            Err(e) => panic!("sim params invalid: {e}"),
        };
        let start = Event::Start {
            wish: node.wish,
            epoch_on_disk: node.disk_epoch,
            standby_right: node.disk_right,
        };
        node.seen_max = None;
        node.last_witness = None;
        let acts = m.handle(start, Duration::from_millis(self.now));
        node.machine = Some(m);
        self.apply(n, acts);
    }

    /// Runs until `end_ms`.
    pub fn run(&mut self) {
        while let Some((&(t, s), _)) = self.queue.iter().next() {
            if t > self.cfg.end_ms {
                break;
            }
            let Some(ev) = self.queue.remove(&(t, s)) else {
                break;
            };
            if self.nodes[0].signing(self.now) && self.nodes[1].signing(self.now) {
                self.both_live_ms += t - self.now;
            }
            self.now = t;
            self.step(ev);
        }
    }

    fn stalled(&self, n: usize) -> bool {
        self.now < self.nodes[n].stalled_until
            || self.now < self.halted_until
            || self.now < self.nodes[n].story_down_until
    }

    fn story_down(&self, n: usize) -> bool {
        self.now < self.nodes[n].story_down_until
    }

    fn muted(&self, n: usize) -> bool {
        self.now < self.nodes[n].muted_until
    }

    fn block_interval_ms(&mut self) -> u64 {
        if self.cfg.fast_chain {
            // Faster than configured, with jitter: margins must hold in block time.
            self.rng.range(BLOCK_MS * 2 / 5, BLOCK_MS * 3 / 5)
        } else {
            BLOCK_MS
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Block => {
                let next = self.block_interval_ms();
                self.at(self.now + next, Ev::Block);
                if self.now < self.halted_until {
                    return;
                }
                self.produce_block();
            }
            Ev::Round(n) => {
                self.at(self.now + ROUND_MS, Ev::Round(n));
                self.health_round(n);
            }
            Ev::Tick(n) => {
                self.at(self.now + TICK_MS, Ev::Tick(n));
                let inc = self.nodes[n].inc;
                self.deliver(n, inc, Event::Tick);
            }
            Ev::Deliver { to, inc, event } => self.deliver(to, inc, *event),
            Ev::Poll { from, inc } => self.poll(from, inc),
            Ev::WitnessFetch {
                node,
                inc,
                id,
                blocks,
            } => self.witness_fetch(node, inc, id, blocks),
            Ev::Act { node, inc, op } => self.act(node, inc, op),
            Ev::Fault(f) => self.fault(f),
            Ev::Restart(n) => {
                if !self.nodes[n].up {
                    self.log(format!("host {n} restarts"));
                    let node = &mut self.nodes[n];
                    node.up = true;
                    node.catching_up_until = self.now + 2_000;
                    node.bad_rounds = 0;
                    node.good_rounds = 0;
                    node.verdict = false;
                    self.boot(n);
                }
            }
            Ev::LinkUp => {
                if !self.link_up {
                    self.log("link up".into());
                }
                self.link_up = true;
            }
            Ev::StallEnd(n) => {
                if !self.stalled(n) {
                    self.sync_view(n);
                }
            }
            Ev::HaltEnd | Ev::SickEnd(_) | Ev::MuteEnd(_) => {}
            Ev::Resume(n) => {
                let inc = self.nodes[n].inc;
                self.deliver(n, inc, Event::Operator(OperatorCommand::Resume));
            }
            Ev::Quiet => {
                self.quiet = true;
                self.log("quiet: every fault heals".into());
                self.link_up = true;
                self.halted_until = self.halted_until.min(self.now);
                for n in 0..2 {
                    self.nodes[n].stalled_until = self.nodes[n].stalled_until.min(self.now);
                    self.nodes[n].sick_until = self.nodes[n].sick_until.min(self.now);
                    self.nodes[n].muted_until = self.nodes[n].muted_until.min(self.now);
                    self.sync_view(n);
                    if !self.nodes[n].up {
                        self.at(self.now + 1, Ev::Restart(n));
                    } else if self.nodes[n]
                        .machine
                        .as_ref()
                        .is_some_and(Machine::is_paused)
                    {
                        self.at(self.now + 1, Ev::Resume(n));
                    }
                }
            }
        }
    }

    fn sync_view(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if node.up && node.view != self.height {
            node.view = self.height;
            node.last_view_change = self.now;
        }
    }

    fn produce_block(&mut self) {
        let h = self.height + 1;
        let mut signers = Vec::new();
        let mut visible = Vec::new();
        for n in 0..2 {
            let stalled = self.stalled(n);
            let muted = self.muted(n);
            let now = self.now;
            let node = &mut self.nodes[n];
            let caught_up = now >= node.catching_up_until && node.view == self.height;
            if node.up
                && node.signing(now)
                && !stalled
                && caught_up
                && h >= node.sign_from
                && h > node.last_signed
            {
                node.last_signed = h;
                signers.push(n);
                if !muted {
                    visible.push(n);
                }
            }
        }
        self.height = h;
        self.block_times.insert(h, self.now);
        for &s in &signers {
            self.ledger.entry(h).or_default().push(s);
        }
        self.commits.insert(h, visible);
        if let Some(who) = self.ledger.get(&h) {
            let mut who = who.clone();
            who.sort_unstable();
            who.dedup();
            if who.len() > 1 {
                let msg = format!(
                    "DOUBLE SIGN at height {h} by nodes {who:?} (t={})",
                    self.now
                );
                self.log(msg.clone());
                self.violations.push(msg);
            }
        }
        for n in 0..2 {
            let stalled = self.stalled(n);
            let node = &mut self.nodes[n];
            if node.up && !stalled && self.now >= node.catching_up_until {
                node.view = h;
                node.last_view_change = self.now;
            }
        }
    }

    fn health_round(&mut self, n: usize) {
        if !self.nodes[n].up {
            return;
        }
        let stalled_flag;
        {
            let now = self.now;
            let stalled_fault = self.stalled(n);
            let node = &mut self.nodes[n];
            if now >= node.catching_up_until && !stalled_fault && node.view != self.height {
                node.view = self.height;
                node.last_view_change = now;
            }
            stalled_flag = now.saturating_sub(node.last_view_change) > STALL_MS;
            let raw = !stalled_flag
                && now >= node.catching_up_until
                && now >= node.sick_until
                && now >= node.story_down_until;
            if raw {
                node.good_rounds += 1;
                node.bad_rounds = 0;
                if node.good_rounds >= 2 {
                    node.verdict = true;
                }
            } else {
                node.bad_rounds += 1;
                node.good_rounds = 0;
                if node.bad_rounds >= 4 {
                    node.verdict = false;
                }
            }
        }
        let story_down = self.story_down(n);
        let node = &self.nodes[n];
        let view = node.view;
        let block_age = (!story_down).then(|| {
            let t = self.block_times.get(&view).copied().unwrap_or(0);
            Duration::from_millis(self.now.saturating_sub(t))
        });
        let ev = Event::LocalHealth(LocalHealth {
            healthy: node.verdict,
            latest_height: (!story_down).then_some(view),
            stalled: stalled_flag || story_down,
            why: (!node.verdict).then(|| "simulated failure".to_string()),
            block_age,
        });
        let inc = node.inc;
        self.deliver(n, inc, ev);
        // The chain reader: the validator's signatures in the canonical commits this node
        // serves (its newest commit becomes canonical with the next block).
        let view = view.saturating_sub(1);
        if !story_down {
            let last_signed = self
                .commits
                .range(..=view)
                .rev()
                .take(500)
                .find(|(_, who)| !who.is_empty())
                .map(|(h, _)| *h);
            let fastest = self
                .block_times
                .range(view.saturating_sub(20)..=view)
                .map(|(_, t)| *t)
                .collect::<Vec<_>>()
                .windows(2)
                .map(|w| w[1].saturating_sub(w[0]))
                .filter(|d| *d > 0)
                .min()
                .map(Duration::from_millis);
            self.deliver(
                n,
                inc,
                Event::Chain(ChainReport {
                    latest_height: view,
                    last_signed,
                    fastest_block: fastest,
                }),
            );
        }
        // The passive pulls the peer's state (the replica) when it can reach it.
        let peer = 1 - n;
        if self.link_up && self.nodes[peer].up {
            let replica = self.nodes[peer].last_signed;
            self.nodes[n].replica = self.nodes[n].replica.max(replica);
            if replica > 0 {
                self.deliver(
                    n,
                    inc,
                    Event::StateSeen {
                        hrs: hrs_done(replica),
                    },
                );
            }
        }
        self.at(self.now + 1, Ev::Poll { from: n, inc });
    }

    fn poll(&mut self, from: usize, inc: u64) {
        let peer = 1 - from;
        let lost = !self.quiet && self.rng.chance(self.cfg.loss);
        let reachable = self.link_up && self.nodes[peer].up && !lost;
        let (ev, delay) = match (reachable, self.nodes[peer].machine.as_ref()) {
            (true, Some(m)) => (
                Event::Peer(PeerObservation::Reachable(m.peer_status())),
                self.rng.range(10, self.cfg.max_delay_ms.max(10)),
            ),
            _ => (
                Event::Peer(PeerObservation::Unreachable {
                    reason: "timeout".into(),
                }),
                300,
            ),
        };
        self.at(
            self.now + delay,
            Ev::Deliver {
                to: from,
                inc,
                event: Box::new(ev),
            },
        );
    }

    fn witness_fetch(&mut self, n: usize, inc: u64, id: u64, blocks: u64) {
        if !self.nodes[n].up || self.nodes[n].inc != inc {
            return;
        }
        // Canonical commits only, as the daemon reads them.
        let latest = self.nodes[n].view.saturating_sub(1);
        let lo = latest.saturating_sub(blocks.saturating_sub(1)).max(1);
        let mut checked = Vec::new();
        let mut signed = Vec::new();
        let mut unknown = Vec::new();
        let mut block_times_ms = Vec::new();
        for h in lo..=latest {
            if self.story_down(n) || (!self.quiet && self.rng.chance(0.03)) {
                unknown.push(h);
                continue;
            }
            if self.commits.get(&h).is_some_and(|w| !w.is_empty()) {
                signed.push(h);
            }
            checked.push(h);
            if let Some(&t) = self.block_times.get(&h) {
                block_times_ms.push((h, t));
            }
        }
        let report = WitnessReport {
            id,
            latest_height: latest,
            checked,
            signed,
            unknown,
            block_times_ms,
        };
        self.nodes[n].last_witness = Some(report.clone());
        self.deliver(n, inc, Event::Witness(report));
    }

    fn deliver(&mut self, n: usize, inc: u64, event: Event) {
        let node = &mut self.nodes[n];
        if !node.up || node.inc != inc {
            return;
        }
        // The highest state fed to this incarnation, for the fence property.
        let fed: Option<Hrs> = match &event {
            Event::StateSeen { hrs } => Some(*hrs),
            Event::Peer(PeerObservation::Reachable(st)) => st.last_state,
            Event::Message(m) => match &m.body {
                syncguard_failover::MessageBody::HandoverOffer { final_state } => {
                    final_state.as_ref().map(|f| f.hrs)
                }
                _ => None,
            },
            Event::Actuator(ActuatorResult::Deactivated {
                result: Ok(Some(f)),
            }) => Some(f.hrs),
            _ => None,
        };
        if let Some(h) = fed {
            node.seen_max = Some(node.seen_max.map_or(h, |s| s.max(h)));
        }
        let Some(m) = node.machine.as_mut() else {
            return;
        };
        let acts = m.handle(event, Duration::from_millis(self.now));
        self.apply(n, acts);
    }

    fn apply(&mut self, n: usize, acts: Vec<Action>) {
        for a in acts {
            match a {
                Action::PersistEpoch {
                    epoch,
                    standby_right,
                } => {
                    self.nodes[n].disk_epoch = epoch;
                    self.nodes[n].disk_right = Some(standby_right);
                }
                Action::Activate {
                    epoch,
                    ref cause,
                    fence,
                    ..
                } => {
                    self.promotions += 1;
                    self.log(format!(
                        "node {n} ACTIVATE epoch {epoch} {cause:?} fence {fence}"
                    ));
                    if let Some(&(t, who, e)) = self.activations.iter().max_by_key(|x| x.2) {
                        if epoch <= e {
                            let msg = format!(
                                "epoch not increasing: node {n} activates at {epoch} at t={}, \
                                 node {who} activated at {e} at t={t}",
                                self.now
                            );
                            self.violations.push(msg);
                        }
                    }
                    self.activations.push((self.now, n, epoch));
                    if let Some(seen) = self.nodes[n].seen_max {
                        if fence < seen {
                            self.violations.push(format!(
                                "node {n} fences at {fence}, below the state {seen} it has seen"
                            ));
                        }
                    }
                    if cause.needs_witness() {
                        // The newest commits of the witness it acted on must be clean.
                        let k = self.timing.witness_blocks as usize;
                        let newest_clean = |w: &WitnessReport| {
                            let lo = w.latest_height.saturating_sub(k as u64 - 1);
                            (lo..=w.latest_height).all(|h| {
                                w.checked.contains(&h)
                                    && !w.signed.contains(&h)
                                    && !w.unknown.contains(&h)
                            })
                        };
                        match &self.nodes[n].last_witness {
                            Some(w) if newest_clean(w) => {}
                            other => self.violations.push(format!(
                                "node {n} promoted ({cause:?}) without a clean witness: {other:?}"
                            )),
                        }
                    }
                    self.enqueue_act(n, a);
                }
                Action::Deactivate { ref reason } => {
                    self.log(format!("node {n} DEACTIVATE: {reason}"));
                    self.enqueue_act(n, a);
                }
                Action::Send { message, .. } => {
                    let to = 1 - n;
                    let copies = if !self.quiet && self.rng.chance(self.cfg.dup) {
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        let lost = !self.quiet && self.rng.chance(self.cfg.loss);
                        if !self.link_up || lost {
                            continue;
                        }
                        let d = self.rng.range(10, self.cfg.max_delay_ms.max(10));
                        let inc = self.nodes[to].inc;
                        self.at(
                            self.now + d,
                            Ev::Deliver {
                                to,
                                inc,
                                event: Box::new(Event::Message(message.clone())),
                            },
                        );
                    }
                }
                Action::RequestWitness { id, blocks } => {
                    let d = self.rng.range(20, 300);
                    let inc = self.nodes[n].inc;
                    self.at(
                        self.now + d,
                        Ev::WitnessFetch {
                            node: n,
                            inc,
                            id,
                            blocks: u64::from(blocks),
                        },
                    );
                }
                // The peer machine verifies through the actuator; nothing else asks.
                Action::Verify { .. } => {}
                // etcd mode only.
                Action::TryAcquire { .. }
                | Action::PutWatermark { .. }
                | Action::Release
                | Action::HandOver { .. }
                | Action::PutRequest { .. }
                | Action::ClearRequest { .. }
                | Action::SetPaused { .. } => {}
                Action::Record(r) => {
                    if r.tag != RecordTag::Other {
                        self.tags.push((n, r.tag, r.reason.clone()));
                    }
                    if r.kind != RecordKind::Info {
                        self.log(format!(
                            "node {n} [{:?} {} e{}] {}",
                            r.kind, r.role, r.epoch, r.why
                        ));
                    }
                }
            }
        }
    }

    fn enqueue_act(&mut self, n: usize, action: Action) {
        let id = self.nodes[n].next_op;
        self.nodes[n].next_op += 1;
        let stage = match &action {
            Action::Activate {
                start_after_height: Some(h),
                ..
            } => Stage::WaitHeight {
                until: *h,
                deadline: self.now + self.timing.dsc_wait.as_millis() as u64,
            },
            Action::Activate { .. } => Stage::StopFullNode,
            _ => Stage::Stopping {
                stop_at: 0,
                fail: false,
            },
        };
        self.nodes[n]
            .act_queue
            .push_back(ActOp { id, action, stage });
        self.next_act(n);
    }

    /// Starts the front operation if the actuator is idle.
    fn next_act(&mut self, n: usize) {
        if self.nodes[n].act_busy {
            return;
        }
        let Some(op) = self.nodes[n].act_queue.front() else {
            return;
        };
        let id = op.id;
        let is_stop = matches!(op.stage, Stage::Stopping { .. });
        self.nodes[n].act_busy = true;
        if is_stop {
            // The stop is confirmed somewhere within stop + kill; it fails outright only when
            // the node is not cut off (the S4 assumption: a stop with its kill step succeeds).
            let stop_at = self.now + self.rng.range(100, STOP_MS + KILL_MS);
            let fail = !self.quiet
                && !self.stalled(n)
                && !self.muted(n)
                && self.rng.chance(self.cfg.deact_fail);
            if let Some(op) = self.nodes[n].act_queue.front_mut() {
                op.stage = Stage::Stopping { stop_at, fail };
            }
            self.at(
                stop_at,
                Ev::Act {
                    node: n,
                    inc: self.nodes[n].inc,
                    op: id,
                },
            );
        } else {
            let inc = self.nodes[n].inc;
            self.at(
                self.now + 1,
                Ev::Act {
                    node: n,
                    inc,
                    op: id,
                },
            );
        }
    }

    fn finish_act(&mut self, n: usize, inc: u64, ev: Event) {
        self.nodes[n].act_queue.pop_front();
        self.nodes[n].act_busy = false;
        self.deliver(n, inc, ev);
        self.next_act(n);
    }

    fn stop_story(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.story_down_until = node.story_down_until.min(self.now);
        if node.key_live {
            node.key_live = false;
            self.log(format!("node {n} story STOPS signing"));
        }
    }

    /// One step of node `n`'s current actuator operation `op`.
    fn act(&mut self, n: usize, inc: u64, op: u64) {
        if !self.nodes[n].up || self.nodes[n].inc != inc {
            return;
        }
        let Some(front) = self.nodes[n].act_queue.front() else {
            return;
        };
        if front.id != op {
            return;
        }
        let stage = front.stage.clone();
        let (epoch, fence) = match &front.action {
            Action::Activate { epoch, fence, .. } => (*epoch, Some(*fence)),
            _ => (0, None),
        };
        let set = |w: &mut World, s: Stage| {
            if let Some(f) = w.nodes[n].act_queue.front_mut() {
                f.stage = s;
            }
        };
        match stage {
            Stage::WaitHeight { until, deadline } => {
                if self.nodes[n].view >= until {
                    set(self, Stage::StopFullNode);
                    self.at(self.now + 1, Ev::Act { node: n, inc, op });
                } else if self.now >= deadline {
                    let ev = Event::Actuator(ActuatorResult::Activated {
                        epoch,
                        result: Err(format!("height {until} not reached")),
                        signed_at: None,
                    });
                    self.finish_act(n, inc, ev);
                } else {
                    self.at(self.now + 100, Ev::Act { node: n, inc, op });
                }
            }
            Stage::StopFullNode => {
                // Stop the full node, write max(local, replica, fence), install, start.
                let Some(fence) = fence else { return };
                let fail = !self.quiet && self.rng.chance(self.cfg.act_fail);
                let delay = self
                    .rng
                    .range(100, self.cfg.max_start_delay_ms.clamp(100, START_MS));
                let node = &mut self.nodes[n];
                node.story_down_until = node.story_down_until.min(self.now);
                let from = first_signable(fence)
                    .max(node.last_signed + 1)
                    .max(node.replica + 1);
                node.sign_from = from;
                // A failed start: story never comes up with the key (half the time it does
                // come up but its signatures cannot be verified: same end, a roll-back).
                let starts = !fail || self.rng.chance(0.5);
                let node = &mut self.nodes[n];
                if starts {
                    node.key_live = true;
                    node.signing_from_time = self.now + delay;
                }
                let msg = format!(
                    "node {n} story STARTS with the key{}, signing from {from} at t+{delay}",
                    if starts { "" } else { " (fails)" }
                );
                self.log(msg);
                set(
                    self,
                    Stage::Verifying {
                        started: self.now,
                        signs_at: (starts && !fail).then_some(self.now + delay),
                    },
                );
                self.at(self.now + 100, Ev::Act { node: n, inc, op });
            }
            Stage::Verifying { started, signs_at } => {
                let from = self.nodes[n].sign_from;
                let view = self.nodes[n].view;
                let seen = signs_at.filter(|_| from <= view).and_then(|_| {
                    self.commits
                        .range(from..=view)
                        .find(|(_, who)| who.contains(&n))
                        .map(|(h, _)| *h)
                });
                let deadline = started + self.timing.verify_deadline.as_millis() as u64;
                if let Some(h) = seen {
                    let ev = Event::Actuator(ActuatorResult::Activated {
                        epoch,
                        result: Ok(()),
                        signed_at: Some(h),
                    });
                    self.finish_act(n, inc, ev);
                } else if self.now >= deadline {
                    set(
                        self,
                        Stage::RollingBack {
                            reason: "not verified".into(),
                        },
                    );
                    let d = self.rng.range(100, STOP_MS + KILL_MS);
                    self.at(self.now + d, Ev::Act { node: n, inc, op });
                } else {
                    self.at(self.now + 100, Ev::Act { node: n, inc, op });
                }
            }
            Stage::RollingBack { reason } => {
                self.stop_story(n);
                let ev = Event::Actuator(ActuatorResult::Activated {
                    epoch,
                    result: Err(format!("simulated activation failure: {reason}")),
                    signed_at: None,
                });
                self.finish_act(n, inc, ev);
            }
            Stage::Stopping { fail, .. } => {
                let ev = if fail {
                    Event::Actuator(ActuatorResult::Deactivated {
                        result: Err("simulated stop failure".into()),
                    })
                } else {
                    self.stop_story(n);
                    let last = self.nodes[n].last_signed;
                    Event::Actuator(ActuatorResult::Deactivated {
                        result: Ok((last > 0).then(|| HandedState {
                            hrs: hrs_done(last),
                            raw: String::new(),
                        })),
                    })
                };
                self.finish_act(n, inc, ev);
            }
        }
    }

    fn fault(&mut self, f: Fault) {
        if self.quiet {
            return;
        }
        self.log(format!("FAULT {f:?}"));
        match f {
            Fault::Crash { node, down_ms } => {
                if !self.nodes[node].up {
                    return;
                }
                let in_flight = self.rng.chance(0.5);
                let halted = self.now < self.halted_until;
                let stalled = self.stalled(node);
                let h = self.height + 1;
                let now = self.now;
                let n = &mut self.nodes[node];
                if n.signing(now)
                    && in_flight
                    && !halted
                    && !stalled
                    && h >= n.sign_from
                    && h > n.last_signed
                {
                    // It voted for the next height before dying; the commit may never show it.
                    n.last_signed = h;
                    self.ledger.entry(h).or_default().push(node);
                }
                let n = &mut self.nodes[node];
                n.up = false;
                n.key_live = false;
                n.machine = None;
                n.act_queue.clear();
                n.act_busy = false;
                n.inc += 1;
                self.at(self.now + down_ms, Ev::Restart(node));
            }
            Fault::CutLink { ms } => {
                self.link_up = false;
                self.at(self.now + ms, Ev::LinkUp);
            }
            Fault::Stall { node, ms } => {
                self.nodes[node].stalled_until = self.nodes[node].stalled_until.max(self.now + ms);
                self.at(self.now + ms, Ev::StallEnd(node));
            }
            Fault::Halt { ms } => {
                self.halted_until = self.halted_until.max(self.now + ms);
                self.at(self.now + ms, Ev::HaltEnd);
            }
            Fault::Sick { node, ms } => {
                self.nodes[node].sick_until = self.nodes[node].sick_until.max(self.now + ms);
                self.at(self.now + ms, Ev::SickEnd(node));
            }
            Fault::Mute { node, ms } => {
                self.nodes[node].muted_until = self.nodes[node].muted_until.max(self.now + ms);
                self.at(self.now + ms, Ev::MuteEnd(node));
            }
            Fault::Switchover { at, to } => {
                let inc = self.nodes[at].inc;
                let to = NodeId::new(["a", "b"][to]);
                self.deliver(at, inc, Event::Operator(OperatorCommand::Switchover { to }));
            }
            Fault::Pause { node, ms } => {
                let inc = self.nodes[node].inc;
                self.deliver(node, inc, Event::Operator(OperatorCommand::Pause));
                self.at(self.now + ms, Ev::Resume(node));
            }
            Fault::StoryCrash { node, ms } => {
                if !self.nodes[node].up {
                    return;
                }
                let n = &mut self.nodes[node];
                n.story_down_until = n.story_down_until.max(self.now + ms);
                self.at(self.now + ms, Ev::StallEnd(node));
            }
            Fault::DaemonRestart { node } => {
                if !self.nodes[node].up {
                    return;
                }
                let n = &mut self.nodes[node];
                n.machine = None;
                n.act_queue.clear();
                n.act_busy = false;
                self.boot(node);
            }
        }
    }

    /// Roles held at the end.
    pub fn roles(&self) -> [Option<Role>; 2] {
        [0, 1].map(|n| self.nodes[n].machine.as_ref().map(Machine::held_role))
    }

    /// Whether the validator signed each of the last `k` committed heights.
    pub fn recently_signed(&self, k: u64) -> bool {
        (self.height.saturating_sub(k - 1)..=self.height)
            .all(|h| self.commits.get(&h).is_some_and(|w| !w.is_empty()))
    }
}
