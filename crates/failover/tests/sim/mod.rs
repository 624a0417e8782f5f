//! One simulated world for failover machines over either backend: two nodes and the link
//! between them (`Backend::Pair`), or N nodes and one etcd lock (`Backend::Lease`). A chain
//! advances unless halted (at the configured block interval, or faster); each node has its
//! health and its view of the chain; actuators verify every activation (or roll it back) and
//! may start `story` late; hosts crash and restart, daemons restart, `story` crashes; votes
//! may never reach a commit (an asymmetric cut: "mute"); a ledger records every signature.
//! The machines are woken at their own timers (`Drive::Timers`), or by a fixed tick.
//!
//! "Signing" is modelled at the node: `story` runs with the key from the moment an activation
//! started it (up to `start_timeout` after the start command) until a deactivation's stop.
//! Such a node signs every new height its own chain view reaches at or above its merged
//! fence; a muted node's signatures go to the ledger but not into the commits. A double sign
//! is one height signed by two nodes. Randomness comes from a seeded generator in the test
//! only; the machines see nothing but events and times.
//!
//! - `config.rs` — backends, drives, timing profiles, faults, the generator, the configs;
//! - `node.rs` — a node: its machine, incarnation, disk, actuator queue; feeding it events,
//!   waking it at its timers, and performing what it orders;
//! - `chain.rs` — blocks, the ledger and the commits, health rounds, chain reports, witnesses;
//! - `actuator.rs` — the actuator: activations (verified or rolled back) and stops;
//! - `peer_link.rs` — the pair's link: messages, looks at the peer, the replica;
//! - `lock.rs` — the simulated etcd; `lease_link.rs` — each node's link to it: the looks,
//!   the actions of the lease arbiter, the real `LeaseKeeper` of each holder;
//! - `faults.rs` — the faults and the quiet after them; `scripts.rs` — scripted situations;
//! - `checks.rs` — the checks made at every activation and every timer.

#![allow(dead_code)]

mod actuator;
mod chain;
mod checks;
mod config;
mod faults;
mod lease_link;
mod lock;
mod node;
mod peer_link;
mod scripts;

use std::collections::{BTreeMap, VecDeque};

use syncguard_failover::{Event, RecordTag, Role};
use syncguard_timing::Timing;

pub use config::*;
pub use lock::Etcd;
pub use node::{SimNode, Sm};

use lease_link::{EtcdOp, Reply};

/// Rounds an instant of a machine's or a keeper's clock up to the world's millisecond.
fn ceil_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

#[derive(Debug)]
enum Ev {
    Block,
    Round(usize),
    Tick(usize),
    /// `Drive::Timers`: the machine's next timer is due.
    Wake {
        node: usize,
        inc: u64,
    },
    Deliver {
        to: usize,
        inc: u64,
        event: Box<Event>,
    },
    /// Pair: a look at the peer.
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
    /// Lease: a request reaches etcd.
    Etcd {
        node: usize,
        inc: u64,
        op: EtcdOp,
    },
    /// Lease: the holder's keeper is due.
    Keep {
        node: usize,
        gen: u64,
    },
    /// Lease: etcd's answer reaches the node (`sure`: a failure it already knows of).
    EtcdReply {
        node: usize,
        inc: u64,
        reply: Reply,
        sure: bool,
    },
    Fault(Fault),
    Restart(usize),
    StallEnd(usize),
    Resume(usize),
    Quiet,
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
    pub nodes: Vec<SimNode>,
    /// Pair: the link is cut until then.
    pub link_cut_until: u64,
    /// Lease: the lock.
    pub etcd: Etcd,
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
    /// Milliseconds during which the key was live on two nodes or more.
    pub both_live_ms: u64,
    /// `Drive::Timers`: wake-ups between timers checked to change nothing.
    pub probes: u64,
    /// `Drive::Timers`: wake-ups between timers that changed something (a missing timer).
    pub timer_gaps: Vec<String>,
    /// The most events any one simulated second held.
    pub busiest_second: u32,
    /// Events run so far.
    pub events: u64,
    started: std::time::Instant,
}

impl World {
    pub fn new(cfg: SimConfig) -> Self {
        let n = cfg.backend.nodes();
        let mut w = World {
            now: 0,
            rng: Rng::new(cfg.seed),
            timing: cfg.profile.timing(),
            height: 10,
            halted_until: 0,
            ledger: BTreeMap::new(),
            commits: BTreeMap::new(),
            block_times: (0..=10).map(|h| (h, 0)).collect(),
            nodes: (0..n).map(|i| SimNode::new(&cfg, i)).collect(),
            link_cut_until: 0,
            etcd: Etcd::new(),
            quiet: false,
            queue: BTreeMap::new(),
            seq: 0,
            violations: Vec::new(),
            activations: Vec::new(),
            trace: VecDeque::new(),
            promotions: 0,
            tags: Vec::new(),
            both_live_ms: 0,
            probes: 0,
            timer_gaps: Vec::new(),
            busiest_second: 0,
            events: 0,
            started: std::time::Instant::now(),
            cfg,
        };
        w.start();
        w
    }

    fn start(&mut self) {
        let p = self.cfg.profile;
        let n = self.nodes.len() as u64;
        self.at(p.block_ms, Ev::Block);
        for i in 0..self.nodes.len() {
            self.nodes[i].view = self.height;
            self.boot(i);
            let phase = i as u64 * p.round_ms / n;
            self.at(phase + 100, Ev::Round(i));
            if self.cfg.drive == Drive::Ticks {
                self.at(phase + 50, Ev::Tick(i));
            }
        }
        if !self.cfg.link_up_at_start {
            self.link_cut_until = 40_000;
            for node in &mut self.nodes {
                node.etcd_cut_until = 40_000;
            }
        }
        for (t, f) in self.cfg.faults.clone() {
            self.at(t, Ev::Fault(f));
        }
        self.at(self.cfg.quiet_at_ms, Ev::Quiet);
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

    /// Runs until `end_ms`.
    pub fn run(&mut self) {
        self.run_until(self.cfg.end_ms);
    }

    /// Runs every event up to `t` (inclusive); the clock then reads `t`.
    pub fn run_until(&mut self, t: u64) {
        // Events per simulated second, counted: a world whose time stops advancing (a timer
        // asked for again at the instant it fires) or crawls (a wake-up every millisecond)
        // fails with its trace instead of hanging. In 200,000 lease worlds no second held 1,500.
        let mut second = (u64::MAX, 0u32);
        while let Some((&(at, s), _)) = self.queue.iter().next() {
            if at > t {
                break;
            }
            let Some(ev) = self.queue.remove(&(at, s)) else {
                break;
            };
            second = if second.0 == at / 1000 {
                (second.0, second.1 + 1)
            } else {
                (at / 1000, 1)
            };
            self.busiest_second = self.busiest_second.max(second.1);
            self.events += 1;
            if self.events.is_multiple_of(1_000) {
                self.check_wall_time(at);
            }
            assert!(
                self.events < 3_000_000,
                "CRAWL: 3,000,000 events by t={at} ms ({:?})\n{}",
                self.cfg,
                self.trace_text()
            );
            assert!(
                second.1 < 20_000,
                "LIVELOCK: 20,000 events within one simulated second at t={at} ms ({:?})\n{}",
                self.cfg,
                self.trace_text()
            );
            if second.1 > 19_950 {
                self.log(format!("EVENT {ev:?}")); // the last ones, for the failure's trace
            }
            self.advance(at);
            self.step(ev);
        }
        self.advance(t.max(self.now));
    }

    /// A hunting aid: `SYNCGUARD_SIM_WORLD_SECS=N` fails a world that has taken more than N
    /// seconds of real time, with its config and trace (a world normally takes milliseconds).
    fn check_wall_time(&self, at: u64) {
        let limit = std::env::var("SYNCGUARD_SIM_WORLD_SECS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(limit) = limit {
            let took = self.started.elapsed();
            assert!(
                took.as_secs() < limit,
                "SLOW: {took:?} of real time, {} events, t={at} ms ({:?})\n{}",
                self.events,
                self.cfg,
                self.trace_text()
            );
        }
    }

    fn advance(&mut self, t: u64) {
        let live = self.nodes.iter().filter(|n| n.signing(self.now)).count();
        if live > 1 {
            self.both_live_ms += t - self.now;
        }
        self.now = t;
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Block => {
                let next = self.block_interval_ms();
                self.at(self.now + next, Ev::Block);
                if self.now >= self.halted_until {
                    self.produce_block();
                }
            }
            Ev::Round(n) => {
                self.at(self.now + self.cfg.profile.round_ms, Ev::Round(n));
                self.probe_timers(n);
                self.health_round(n);
                match self.cfg.backend {
                    Backend::Pair => self.pair_round(n),
                    Backend::Lease { .. } => self.lease_round(n),
                }
            }
            Ev::Tick(n) => {
                self.at(self.now + self.cfg.profile.tick_ms, Ev::Tick(n));
                let inc = self.nodes[n].inc;
                self.deliver(n, inc, Event::Tick);
            }
            Ev::Wake { node, inc } => self.wake(node, inc),
            Ev::Deliver { to, inc, event } => self.deliver(to, inc, *event),
            Ev::Poll { from, inc } => self.poll(from, inc),
            Ev::WitnessFetch {
                node,
                inc,
                id,
                blocks,
            } => self.witness_fetch(node, inc, id, blocks),
            Ev::Act { node, inc, op } => self.act(node, inc, op),
            Ev::Etcd { node, inc, op } => self.at_etcd(node, inc, op),
            Ev::Keep { node, gen } => self.keep(node, gen),
            Ev::EtcdReply {
                node,
                inc,
                reply,
                sure,
            } => self.etcd_reply(node, inc, reply, sure),
            Ev::Fault(f) => self.fault(f),
            Ev::Restart(n) => self.restart(n),
            Ev::StallEnd(n) => {
                if !self.stalled(n) {
                    self.sync_view(n);
                }
            }
            Ev::Resume(n) => self.resume(n),
            Ev::Quiet => self.quiet_now(),
        }
    }

    /// Node `i`'s machine (it must be up).
    pub fn node(&self, i: usize) -> &Sm {
        match &self.nodes[i].machine {
            Some(m) => m,
            None => panic!("node {i} is down"),
        }
    }

    /// Roles held (`None`: down).
    pub fn roles(&self) -> Vec<Option<Role>> {
        self.nodes
            .iter()
            .map(|n| n.machine.as_ref().map(Sm::held_role))
            .collect()
    }

    /// How many nodes that are up hold the role.
    pub fn actives(&self) -> usize {
        self.roles()
            .iter()
            .filter(|r| **r == Some(Role::Active))
            .count()
    }

    /// Whether the validator signed each of the last `k` committed heights.
    pub fn recently_signed(&self, k: u64) -> bool {
        (self.height.saturating_sub(k - 1)..=self.height)
            .all(|h| self.commits.get(&h).is_some_and(|w| !w.is_empty()))
    }

    /// The heights signed by two nodes or more.
    pub fn double_signs(&self) -> usize {
        self.violations
            .iter()
            .filter(|v| v.starts_with("DOUBLE SIGN"))
            .count()
    }
}
