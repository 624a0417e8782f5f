//! The sim's settings: the backend ([`Backend`]: two nodes and their link, or N nodes and
//! an etcd lock), how the machines are woken ([`Drive`]: their own timers, or a fixed tick),
//! each backend's timing profile ([`Profile`]), the faults ([`Fault`]), the seeded
//! generator ([`Rng`]), and [`SimConfig`] with its calm and random worlds.

use std::time::Duration;

use syncguard_failover::{LeaseParams, NodeId, Params, PromotionOrder, Wish};
use syncguard_timing::{Inputs, Timing};

/// The pair profile's block interval (`story.block_interval`).
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

/// A fault's length that outlasts any world: it ends with the quiet (a crash: never).
pub const FOREVER: u64 = 1 << 50;

/// etcd's lease in the lease worlds (`coordination.etcd.lease_ttl`).
pub const LEASE_TTL_MS: u64 = 3_000;
/// `coordination.etcd.safety_margin`: above the longest confirmed stop of the lease profile
/// (`Timing::stop_bound`, 950 ms), as COORDINATION.md asks.
pub const LEASE_MARGIN_MS: u64 = 1_200;

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

/// What decides who may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Two nodes, the pair arbiter, and the link between them.
    Pair,
    /// `nodes` nodes, the lease arbiter, and one simulated etcd.
    Lease { nodes: usize },
}

impl Backend {
    pub fn nodes(self) -> usize {
        match self {
            Backend::Pair => 2,
            Backend::Lease { nodes } => nodes,
        }
    }

    /// Node `i`'s id: `a`, `b` in a pair; `n0`, `n1`, … under a lease.
    pub fn id(self, i: usize) -> NodeId {
        match self {
            Backend::Pair => NodeId::new(["a", "b"][i]),
            Backend::Lease { .. } => NodeId::new(format!("n{i}")),
        }
    }
}

/// How the world wakes the machines besides their inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    /// At `Core::poll_timeout`, through `Core::handle_timeout`: no tick at all.
    Timers,
    /// `Event::Tick` every `Profile::tick_ms` (the old driver contract).
    Ticks,
}

/// The timings of a world: the operator's keys the timing model derives the rest from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub round_ms: u64,
    pub retry_attempts: u32,
    pub block_ms: u64,
    /// The health verdict's stall flag.
    pub stall_ms: u64,
    pub stop_ms: u64,
    pub kill_ms: u64,
    pub start_ms: u64,
    pub verify_blocks: u32,
    pub tick_ms: u64,
}

impl Profile {
    /// 1 s rounds × 4, 1 s blocks, a 1 s stop + 0.5 s kill, `story` signing up to 2.5 s
    /// after its start, 3 verify blocks.
    pub const PAIR: Profile = Profile {
        round_ms: ROUND_MS,
        retry_attempts: 4,
        block_ms: BLOCK_MS,
        stall_ms: STALL_MS,
        stop_ms: STOP_MS,
        kill_ms: KILL_MS,
        start_ms: START_MS,
        verify_blocks: 3,
        tick_ms: TICK_MS,
    };

    /// The etcd cluster of the old lease world: 0.5 s rounds × 3, 0.3 s blocks, a 0.4 s stop
    /// + 0.25 s kill, `story` signing up to 1 s after its start, 2 verify blocks.
    pub const LEASE: Profile = Profile {
        round_ms: 500,
        retry_attempts: 3,
        block_ms: 300,
        stall_ms: 750,
        stop_ms: 400,
        kill_ms: 250,
        start_ms: 1_000,
        verify_blocks: 2,
        tick_ms: 125,
    };

    /// Everything else, derived by the timing model.
    pub fn timing(&self) -> Timing {
        let mut i = Inputs::new(ms(self.round_ms), self.retry_attempts, ms(self.block_ms));
        i.stop_timeout = Some(ms(self.stop_ms));
        i.kill_timeout = Some(ms(self.kill_ms));
        i.start_timeout = Some(ms(self.start_ms));
        i.verify_blocks = self.verify_blocks;
        match syncguard_timing::derive(&i) {
            Ok(t) => t,
            Err(e) => panic!("sim timing invalid: {e:?}"),
        }
    }
}

/// The pair profile's derived timing.
pub fn sim_timing() -> Timing {
    Profile::PAIR.timing()
}

/// The two nodes' parameters: `a` is the primary site.
pub fn sim_params(me: usize) -> Params {
    let ids = ["a", "b"];
    let mut p = Params::with_defaults(NodeId::new(ids[me]), NodeId::new(ids[1 - me]), me == 0);
    p.fallback_grace_period = Duration::from_secs(10);
    p.timing = sim_timing();
    p
}

/// Node `me` of a lease world of `nodes`: priority = index, the promotion step two rounds
/// (as the daemon sets it), `primary` the primary site if any.
pub fn lease_params(
    me: usize,
    nodes: usize,
    primary: Option<usize>,
    p: &Profile,
) -> (Params, LeaseParams) {
    let id = Backend::Lease { nodes }.id(me);
    let params = Params {
        node_id: id.clone(),
        peer_id: NodeId::new(""),
        is_primary_site: primary == Some(me),
        peer_is_primary_site: false,
        fallback_grace_period: Duration::from_secs(10),
        timing: p.timing(),
    };
    let ids: Vec<(u32, String)> = (0..nodes)
        .map(|i| (i as u32, Backend::Lease { nodes }.id(i).0))
        .collect();
    let all: Vec<(u32, &str)> = ids.iter().map(|(p, s)| (*p, s.as_str())).collect();
    let step = ms(p.round_ms * 2);
    let lease = LeaseParams {
        priority: me as u32,
        rank: PromotionOrder::rank((me as u32, id.as_str()), &all),
        order: PromotionOrder::new(step, step / 2).expect("order"),
        lease_ttl: ms(LEASE_TTL_MS),
    };
    (params, lease)
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
    /// The whole host dies (story with it) and comes back after `down_ms` (`FOREVER`: never,
    /// not even at the quiet).
    Crash { node: usize, down_ms: u64 },
    /// Pair: the link between the two SyncGuards is cut (`node` is either end). Lease:
    /// `node` is cut from etcd (every request fails, its lease cannot be renewed).
    Cut { node: usize, ms: u64 },
    /// One node's view of the chain freezes (its node is cut from the chain's network).
    Stall { node: usize, ms: u64 },
    /// The whole chain halts (upgrade height).
    Halt { ms: u64 },
    /// A node's health verdict fails without a stall (EVM broken, disk full, ...).
    Sick { node: usize, ms: u64 },
    /// An operator asks the given node for a switchover to `to` (on the active: hand over;
    /// on the target: ask the holder).
    Switchover { at: usize, to: usize },
    /// An operator pauses a node for a while (under a lease: the whole cluster).
    Pause { node: usize, ms: u64 },
    /// `story` dies on a node and its service manager restarts it `ms` later, with
    /// whatever key is installed (so an active's story signs again when it is back).
    StoryCrash { node: usize, ms: u64 },
    /// Only the SyncGuard daemon restarts: `story` keeps running as it was (key and all); an
    /// actuator operation under way is cut where it stands; a lease is no longer renewed.
    DaemonRestart { node: usize },
    /// An asymmetric cut: the node keeps following the chain and keeps voting, but its votes
    /// never reach a commit (they still count as signatures: the ledger sees them).
    Mute { node: usize, ms: u64 },
}

impl Fault {
    /// A random fault over `nodes` nodes (the weights of the pair property's strategy).
    pub fn random(r: &mut Rng, nodes: usize) -> Fault {
        let last = nodes as u64 - 1;
        let node = r.range(0, last) as usize;
        match r.range(0, 16) {
            0..=2 => Fault::Crash {
                node,
                down_ms: r.range(500, 20_000),
            },
            3..=5 => Fault::Cut {
                node,
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
                to: r.range(0, last) as usize,
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
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub backend: Backend,
    pub drive: Drive,
    pub profile: Profile,
    /// `--role` of each node.
    pub wishes: Vec<Wish>,
    /// Lease worlds: the primary site, if any (pair worlds: always `a`).
    pub primary: Option<usize>,
    /// False: the link (pair) or etcd (lease, for every node) is cut until 40 s.
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
    /// Blocks come every `block_ms / 2` (± jitter) although the config says `block_ms`.
    pub fast_chain: bool,
    /// A started `story` begins signing after a random delay up to this (≤ `start_ms`).
    pub max_start_delay_ms: u64,
    /// The longest confirmed stop of the actuator (≤ `Timing::stop_bound`).
    pub max_stop_ms: u64,
    /// Before the quiet, the chance that a witness cannot read a commit.
    pub unreadable: f64,
}

impl SimConfig {
    /// A calm pair world: no faults, no loss, the given wishes.
    pub fn calm(seed: u64, wishes: [Wish; 2]) -> Self {
        let p = Profile::PAIR;
        SimConfig {
            seed,
            backend: Backend::Pair,
            drive: Drive::Timers,
            profile: p,
            wishes: wishes.to_vec(),
            primary: Some(0),
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
            max_stop_ms: p.stop_ms + p.kill_ms,
            unreadable: 0.03,
        }
    }

    /// A calm lease world of `nodes` passive nodes, no primary site, every commit readable.
    pub fn lease_calm(seed: u64, nodes: usize) -> Self {
        let p = Profile::LEASE;
        SimConfig {
            backend: Backend::Lease { nodes },
            profile: p,
            wishes: vec![Wish::Passive; nodes],
            primary: None,
            max_start_delay_ms: 300,
            max_stop_ms: p.stop_ms + p.kill_ms,
            unreadable: 0.0,
            quiet_at_ms: 80_000,
            end_ms: 120_000,
            ..SimConfig::calm(seed, [Wish::Passive; 2])
        }
    }

    /// A random pair world from a generator (for the coverage check; the property tests
    /// use proptest strategies of the same shape).
    pub fn random(r: &mut Rng) -> Self {
        let faults = (0..r.range(0, 8))
            .map(|_| (r.range(0, 60_000), Fault::random(r, 2)))
            .collect();
        let wish = |x: u64| if x == 0 { Wish::Active } else { Wish::Passive };
        SimConfig {
            seed: r.next(),
            wishes: vec![wish(r.range(0, 1)), wish(r.range(0, 1))],
            link_up_at_start: r.range(0, 4) > 0,
            loss: r.range(0, 20) as f64 / 100.0,
            dup: r.range(0, 5) as f64 / 100.0,
            act_fail: r.range(0, 20) as f64 / 100.0,
            deact_fail: r.range(0, 10) as f64 / 100.0,
            faults,
            max_delay_ms: if r.range(0, 1) == 0 { 300 } else { 1_500 },
            fast_chain: r.range(0, 3) == 0,
            max_start_delay_ms: r.range(100, START_MS),
            ..SimConfig::calm(0, [Wish::Passive; 2])
        }
    }

    /// A random lease world of `nodes` nodes: the draws of [`SimConfig::random`] (link,
    /// loss, actuator failures, delays, chain speed), faults over `nodes`, a random primary
    /// site or none, on the lease profile.
    pub fn random_lease(r: &mut Rng, nodes: usize) -> Self {
        let pair = SimConfig::random(r);
        let faults = (0..r.range(0, 8))
            .map(|_| (r.range(0, 60_000), Fault::random(r, nodes)))
            .collect();
        let primary = r.range(0, nodes as u64) as usize;
        let lease = SimConfig::lease_calm(0, nodes);
        SimConfig {
            backend: lease.backend,
            profile: lease.profile,
            wishes: lease.wishes,
            primary: (primary < nodes).then_some(primary),
            faults,
            quiet_at_ms: lease.quiet_at_ms,
            end_ms: lease.end_ms,
            max_start_delay_ms: r.range(100, lease.profile.start_ms),
            max_stop_ms: lease.max_stop_ms,
            ..pair
        }
    }
}
