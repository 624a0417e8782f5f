//! A node of the world ([`SimNode`]): its machine ([`Sm`], over either arbiter), its
//! incarnation, disk, state file, chain view, health, actuator queue and lease; and how the
//! world feeds it — booting, delivering an event to the current incarnation, waking it at
//! its timers (`Drive::Timers`), and performing the actions it returns.

use std::collections::VecDeque;
use std::time::Duration;

use syncguard_failover::{
    AcquireReport, Action, ActuatorResult, EtcdMachine, Event, Machine, MessageBody, NodeId,
    OperatorCommand, PeerObservation, PeerStatus, Record, RecordKind, RecordTag, Role, Wish,
    WitnessReport,
};
use syncguard_validator::Hrs;

use super::actuator::ActOp;
use super::lease_link::Held;
use super::{ceil_ms, lease_params, Backend, Drive, Ev, Profile, SimConfig, World};

/// Either backend's machine.
#[derive(Debug, Clone)]
pub enum Sm {
    Pair(Machine),
    Lease(EtcdMachine),
}

macro_rules! each {
    ($sm:expr, $m:ident => $e:expr) => {
        match $sm {
            Sm::Pair($m) => $e,
            Sm::Lease($m) => $e,
        }
    };
}

impl Sm {
    pub fn handle(&mut self, e: Event, now: Duration) -> Vec<Action> {
        each!(self, m => m.handle(e, now))
    }
    pub fn handle_timeout(&mut self, now: Duration) -> Vec<Action> {
        each!(self, m => m.handle_timeout(now))
    }
    pub fn poll_timeout(&self) -> Option<Duration> {
        each!(self, m => m.poll_timeout())
    }
    pub fn held_role(&self) -> Role {
        each!(self, m => m.held_role())
    }
    pub fn role(&self) -> Role {
        each!(self, m => m.role())
    }
    pub fn is_paused(&self) -> bool {
        each!(self, m => m.is_paused())
    }
    pub fn epoch(&self) -> u64 {
        each!(self, m => m.epoch())
    }
    pub fn peer_status(&self) -> PeerStatus {
        each!(self, m => m.peer_status())
    }
    pub fn last_why(&self) -> &str {
        each!(self, m => m.last_why())
    }
    pub fn timers(&self) -> syncguard_failover::Timers {
        each!(self, m => m.timers())
    }
}

pub struct SimNode {
    pub id: NodeId,
    pub up: bool,
    /// Crashed for good (`FOREVER`): not even the quiet brings it back.
    pub gone: bool,
    pub inc: u64,
    pub machine: Option<Sm>,
    pub disk_epoch: u64,
    pub disk_right: Option<bool>,
    /// The state file: the highest height this host signed (survives crashes).
    pub last_signed: u64,
    /// Pair: the replica, the highest state pulled from the peer.
    pub replica: u64,
    /// `story` runs with the validator key (from `signing_from_time` on).
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
    /// Lease: cut from etcd until then.
    pub etcd_cut_until: u64,
    pub bad_rounds: u32,
    pub good_rounds: u32,
    pub verdict: bool,
    pub(super) act_queue: VecDeque<ActOp>,
    pub(super) act_busy: bool,
    pub(super) next_op: u64,
    /// Highest state fed to the current machine incarnation.
    pub seen_max: Option<Hrs>,
    pub last_witness: Option<WitnessReport>,
    pub wish: Wish,
    /// `Drive::Timers`: the instant the next wake is scheduled for.
    pub(super) wake_at: Option<u64>,
    /// Lease: the lease this daemon keeps, if any.
    pub(super) held: Option<Held>,
    /// Lease: bumped whenever the kept lease changes (older keeper events are dropped).
    pub(super) keep_gen: u64,
}

impl SimNode {
    pub(super) fn new(cfg: &SimConfig, i: usize) -> Self {
        SimNode {
            id: cfg.backend.id(i),
            up: true,
            gone: false,
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
            etcd_cut_until: 0,
            bad_rounds: 0,
            good_rounds: 5,
            verdict: true,
            act_queue: VecDeque::new(),
            act_busy: false,
            next_op: 1,
            seen_max: None,
            last_witness: None,
            wish: cfg.wishes[i],
            wake_at: None,
            held: None,
            keep_gen: 0,
        }
    }

    /// Whether story runs with the key and has begun signing at `now`.
    pub fn signing(&self, now: u64) -> bool {
        self.up && self.key_live && now >= self.signing_from_time
    }

    /// Whether the key is live here or an activation is on its way to make it live.
    pub fn may_sign(&self) -> bool {
        self.up
            && (self.key_live
                || self
                    .act_queue
                    .iter()
                    .any(|op| matches!(op.action, Action::Activate { .. })))
    }
}

/// The pair node `me`'s parameters on profile `p`: `a` is the primary site.
pub fn pair_params(me: usize, p: &Profile) -> syncguard_failover::Params {
    let mut params = super::sim_params(me);
    params.timing = p.timing();
    params
}

/// The sign state an event tells a machine of, if any (the fence must not go below it).
fn fed_state(event: &Event) -> Option<Hrs> {
    match event {
        Event::StateSeen { hrs } => Some(*hrs),
        Event::Peer(PeerObservation::Reachable(st)) => st.last_state,
        Event::Message(m) => match &m.body {
            MessageBody::HandoverOffer { final_state } => final_state.as_ref().map(|f| f.hrs),
            _ => None,
        },
        Event::Actuator(ActuatorResult::Deactivated {
            result: Ok(Some(f)),
        }) => Some(f.hrs),
        Event::Acquire(AcquireReport::Acquired {
            watermark,
            handover,
            ..
        }) => (*watermark).max(handover.as_ref().and_then(|h| h.final_state)),
        _ => None,
    }
}

impl World {
    fn new_machine(&self, n: usize) -> Sm {
        let p = &self.cfg.profile;
        let made = match self.cfg.backend {
            Backend::Pair => Machine::new(pair_params(n, p)).map(Sm::Pair),
            Backend::Lease { nodes } => {
                let (params, lease) = lease_params(n, nodes, self.cfg.primary, p);
                EtcdMachine::etcd(params, lease).map(Sm::Lease)
            }
        };
        match made {
            Ok(m) => m,
            Err(e) => panic!("sim params invalid: {e}"),
        }
    }

    /// A new daemon on node `n`: a fresh machine, started from what is on disk.
    pub(super) fn boot(&mut self, n: usize) {
        let machine = self.new_machine(n);
        let node = &mut self.nodes[n];
        node.inc += 1;
        node.seen_max = None;
        node.last_witness = None;
        node.wake_at = None;
        node.machine = Some(machine);
        let start = Event::Start {
            wish: node.wish,
            epoch_on_disk: node.disk_epoch,
            standby_right: node.disk_right,
        };
        let inc = node.inc;
        self.deliver(n, inc, start);
    }

    /// Feeds `event` to node `n`'s machine if incarnation `inc` still runs.
    pub(super) fn deliver(&mut self, n: usize, inc: u64, event: Event) {
        let node = &mut self.nodes[n];
        if !node.up || node.inc != inc {
            return;
        }
        if let Some(h) = fed_state(&event) {
            node.seen_max = Some(node.seen_max.map_or(h, |s| s.max(h)));
        }
        let Some(m) = node.machine.as_mut() else {
            return;
        };
        let acts = m.handle(event, Duration::from_millis(self.now));
        self.apply(n, acts);
        self.rearm(n);
    }

    /// `Drive::Timers`: the machine's timer is due.
    pub(super) fn wake(&mut self, n: usize, inc: u64) {
        let node = &mut self.nodes[n];
        if !node.up || node.inc != inc || node.wake_at != Some(self.now) {
            return;
        }
        node.wake_at = None;
        let Some(m) = node.machine.as_mut() else {
            return;
        };
        let acts = m.handle_timeout(Duration::from_millis(self.now));
        self.apply(n, acts);
        self.rearm(n);
    }

    /// `Drive::Timers`: schedules a wake at the machine's next timer.
    fn rearm(&mut self, n: usize) {
        if self.cfg.drive != Drive::Timers {
            return;
        }
        let node = &mut self.nodes[n];
        let at = node
            .machine
            .as_ref()
            .and_then(Sm::poll_timeout)
            .map(ceil_ms);
        if at == node.wake_at {
            return;
        }
        node.wake_at = at;
        if let Some(t) = at {
            let inc = node.inc;
            self.at(t.max(self.now), Ev::Wake { node: n, inc });
        }
    }

    pub(super) fn resume(&mut self, n: usize) {
        let inc = self.nodes[n].inc;
        self.deliver(n, inc, Event::Operator(OperatorCommand::Resume));
    }

    /// Performs node `n`'s actions, in order.
    pub(super) fn apply(&mut self, n: usize, acts: Vec<Action>) {
        for a in acts {
            match a {
                Action::PersistEpoch {
                    epoch,
                    standby_right,
                } => {
                    self.nodes[n].disk_epoch = epoch;
                    self.nodes[n].disk_right = Some(standby_right);
                }
                Action::Activate { .. } => {
                    self.check_activation(n, &a);
                    self.enqueue_act(n, a);
                }
                Action::Deactivate { ref reason } => {
                    self.log(format!("node {n} DEACTIVATE: {reason}"));
                    self.enqueue_act(n, a);
                }
                Action::Send { message, .. } => self.send(n, message),
                Action::RequestWitness { id, blocks } => self.ask_witness(n, id, blocks),
                // The actuator verifies every activation; nothing else asks.
                Action::Verify { .. } => {}
                Action::Record(r) => self.record(n, r),
                lease => self.lease_action(n, lease),
            }
        }
    }

    fn record(&mut self, n: usize, r: Record) {
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
