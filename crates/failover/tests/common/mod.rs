//! A hand-driven node for unit tests: simulated time, explicit events, helpers to find
//! actions. No sleeps: time is whatever the test says.

#![allow(dead_code)]

use std::time::Duration;

use syncguard_failover::{
    Action, ActivationCause, ActuatorResult, ChainReport, Event, HandedState, LocalHealth, Machine,
    MessageBody, NodeId, OperatorCommand, Params, PeerMessage, PeerObservation, PeerStatus, Record,
    RecordKind, Role, Wish, WitnessReport,
};
use syncguard_validator::{Hrs, Step};

/// Failover window 3 s (1 s × 3, 2.4 s blocks, every other timing derived), 5 witness
/// blocks; for these hand-driven stories a short activation (5 s), handover timeout 6 s, a
/// 20 s post-handover wait, fallback grace 10 s.
pub fn params(me: &str, peer: &str, primary: bool) -> Params {
    let mut p = Params::with_defaults(NodeId::new(me), NodeId::new(peer), primary);
    let inputs =
        syncguard_timing::Inputs::new(Duration::from_secs(1), 3, Duration::from_millis(2_400));
    p.timing = syncguard_timing::derive(&inputs).expect("test timing derives");
    p.timing.activation_bound = Duration::from_secs(5);
    p.timing.handover_timeout = Duration::from_secs(6);
    p.timing.settle = Duration::from_secs(MARGIN_S);
    p.fallback_grace_period = Duration::from_secs(10);
    p
}

/// Block times of the test chain in the witness reports: far apart, so any five blocks span
/// more block time than the model asks (the spans have their own tests).
pub const BLOCK_TIME_MS: u64 = 10_000;

pub const MARGIN_S: u64 = 20;

pub struct Node {
    pub m: Machine,
    pub now: Duration,
    pub height: u64,
    /// The validator's last signature on this node's chain view.
    pub last_signed: Option<u64>,
    /// Everything the machine asked for, in order.
    pub all: Vec<Action>,
}

impl Node {
    pub fn new(me: &str, peer: &str, primary: bool) -> Node {
        Node::with_params(params(me, peer, primary))
    }

    pub fn with_params(p: Params) -> Node {
        Node {
            m: Machine::new(p).expect("valid test params"),
            now: Duration::ZERO,
            height: 100,
            last_signed: None,
            all: Vec::new(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.m.params().node_id.clone()
    }

    pub fn peer_id(&self) -> NodeId {
        self.m.params().peer_id.clone()
    }

    pub fn feed(&mut self, ev: Event) -> Vec<Action> {
        let acts = self.m.handle(ev, self.now);
        self.all.extend(acts.iter().cloned());
        acts
    }

    pub fn advance_ms(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
    }

    /// Start and confirm the boot deactivation.
    pub fn boot(&mut self, wish: Wish, epoch: u64, right: Option<bool>) -> Vec<Action> {
        let mut acts = self.feed(Event::Start {
            wish,
            epoch_on_disk: epoch,
            standby_right: right,
        });
        acts.extend(self.feed(deactivated_ok(None)));
        acts
    }

    /// One healthy round at the current height.
    pub fn healthy(&mut self) -> Vec<Action> {
        let h = self.height;
        self.feed(Event::LocalHealth(LocalHealth {
            healthy: true,
            latest_height: Some(h),
            stalled: false,
            why: None,
            block_age: Some(Duration::from_millis(200)),
            recovering: false,
        }))
    }

    pub fn health(&mut self, healthy: bool, stalled: bool) -> Vec<Action> {
        let h = self.height;
        self.feed(Event::LocalHealth(LocalHealth {
            healthy,
            latest_height: Some(h),
            stalled,
            why: (!healthy).then(|| "CometBFT catching up".to_string()),
            block_age: (!stalled).then(|| Duration::from_millis(200)),
            recovering: false,
        }))
    }

    /// One chain report at the current height.
    pub fn chain(&mut self) -> Vec<Action> {
        let report = ChainReport {
            latest_height: self.height,
            last_signed: self.last_signed,
            fastest_block: None,
        };
        self.feed(Event::Chain(report))
    }

    pub fn sees(&mut self, st: PeerStatus) -> Vec<Action> {
        self.feed(Event::Peer(PeerObservation::Reachable(st)))
    }

    pub fn lost(&mut self) -> Vec<Action> {
        self.feed(Event::Peer(PeerObservation::Unreachable {
            reason: "connection refused".into(),
        }))
    }

    /// `secs` rounds: the chain advances one block per round, the node is healthy, the peer
    /// is `peer` (None = unreachable). Returns everything asked for.
    pub fn rounds(&mut self, secs: u64, peer: Option<PeerStatus>) -> Vec<Action> {
        let mut acts = Vec::new();
        for _ in 0..secs {
            self.advance_ms(1_000);
            self.height += 1;
            acts.extend(self.healthy());
            // The validator signs this block when this node or the peer in sight holds the
            // role (a lost peer's signatures are not assumed).
            let holds = |r: Role| matches!(r, Role::Active);
            if holds(self.m.held_role()) || peer.as_ref().is_some_and(|st| holds(st.role)) {
                self.last_signed = Some(self.height);
            }
            acts.extend(self.chain());
            match &peer {
                Some(st) => {
                    // The peer's node follows the same chain.
                    let mut st = st.clone();
                    st.latest_height = Some(self.height);
                    acts.extend(self.sees(st))
                }
                None => acts.extend(self.lost()),
            }
        }
        acts
    }

    /// Answers the latest `RequestWitness` (in `acts`, else the latest ever asked) with a
    /// window ending at the current height, signed at `signed` and at the last signature
    /// this node's chain reports showed.
    pub fn answer_witness(
        &mut self,
        acts: &[Action],
        signed: &[u64],
        unknown: &[u64],
    ) -> Vec<Action> {
        let (id, blocks) = witness_request_sized(acts)
            .or_else(|| witness_request_sized(&self.all))
            .expect("a witness request");
        let latest = self.height;
        // The chain this node's reports showed: its last signature is in the window too.
        let mut signed = signed.to_vec();
        signed.extend(self.last_signed);
        self.feed(Event::Witness(report_window(
            id, latest, blocks, &signed, unknown,
        )))
    }

    /// Loses the peer and runs rounds until the machine asks the chain at a height where the
    /// commits since the old holder's last signature are a clean run long enough (or `max`
    /// rounds pass). Returns everything asked for.
    pub fn lose_until_witness(&mut self, max: u64) -> Vec<Action> {
        let need = clean_run(self);
        let mut all = Vec::new();
        for _ in 0..max {
            let acts = self.rounds(1, None);
            let asked = witness_request(&acts).is_some();
            all.extend(acts);
            if asked && self.height.saturating_sub(self.last_signed.unwrap_or(0)) >= need {
                return all;
            }
        }
        all
    }

    /// Rounds with the peer lost, every witness question answered clean (the chain as this
    /// node's reports showed it), until it promotes (when) or `max` rounds pass.
    pub fn lost_until_promoted(&mut self, max: u64) -> Option<Duration> {
        for _ in 0..max {
            let acts = self.rounds(1, None);
            let acts = if witness_request(&acts).is_some() {
                self.answer_witness(&acts, &[], &[])
            } else {
                acts
            };
            if has_activate(&acts) {
                return Some(self.now);
            }
        }
        None
    }

    pub fn records(&self) -> Vec<Record> {
        records(&self.all)
    }
}

/// A witness over the `WINDOW` commits ending at `latest`.
pub fn report(id: u64, latest: u64, signed: &[u64], unknown: &[u64]) -> WitnessReport {
    report_window(id, latest, WINDOW, signed, unknown)
}

/// The commits a witness of the test timing reads (`Timing::witness_request_blocks`).
pub const WINDOW: u64 = 11;

/// The fewest clean commits, `BLOCK_TIME_MS` apart, a witness of `n`'s timing accepts
/// (`Timing::clean_run_suffices`).
pub fn clean_run(n: &Node) -> u64 {
    let t = &n.m.params().timing;
    let times = |k: u64| -> Vec<Duration> {
        (0..k)
            .map(|i| Duration::from_millis(i * BLOCK_TIME_MS))
            .collect()
    };
    (1..1_000)
        .find(|&k| t.clean_run_suffices(&times(k)).is_ok())
        .expect("a clean run long enough exists")
}

pub fn report_window(
    id: u64,
    latest: u64,
    blocks: u64,
    signed: &[u64],
    unknown: &[u64],
) -> WitnessReport {
    let lo = latest.saturating_sub(blocks.saturating_sub(1)).max(1);
    WitnessReport {
        id,
        latest_height: latest,
        checked: (lo..=latest)
            .filter(|h| !signed.contains(h) && !unknown.contains(h))
            .collect(),
        signed: signed.to_vec(),
        unknown: unknown.to_vec(),
        block_times_ms: (lo..=latest)
            .filter(|h| !unknown.contains(h))
            .map(|h| (h, h * BLOCK_TIME_MS))
            .collect(),
    }
}

pub fn status(id: &str, role: Role, epoch: u64) -> PeerStatus {
    PeerStatus {
        node_id: NodeId::new(id),
        role,
        paused: false,
        epoch,
        healthy: true,
        latest_height: Some(100),
        is_primary_site: id == "a",
        last_state: None,
        standby_right: false,
        wants_role: false,
        peer_lost: false,
    }
}

pub fn deactivated_ok(final_state: Option<Hrs>) -> Event {
    Event::Actuator(ActuatorResult::Deactivated {
        result: Ok(final_state.map(|hrs| HandedState {
            hrs,
            raw: format!("{{\"height\":\"{}\"}}", hrs.height),
        })),
    })
}

pub fn activated(epoch: u64) -> Event {
    Event::Actuator(ActuatorResult::Activated {
        epoch,
        result: Ok(()),
        signed_at: None,
    })
}

pub fn msg(from: &str, epoch: u64, body: MessageBody) -> Event {
    Event::Message(PeerMessage {
        from: NodeId::new(from),
        epoch,
        body,
    })
}

pub fn op(c: OperatorCommand) -> Event {
    Event::Operator(c)
}

pub fn hrs(h: i64, r: i32, s: Step) -> Hrs {
    Hrs::new(h, r, s)
}

// ----- finding actions -------------------------------------------------------------------------

pub fn activation(acts: &[Action]) -> Option<(u64, ActivationCause, Hrs, Option<HandedState>)> {
    acts.iter().find_map(|a| match a {
        Action::Activate {
            epoch,
            cause,
            fence,
            handed_state,
            ..
        } => Some((*epoch, cause.clone(), *fence, handed_state.clone())),
        _ => None,
    })
}

pub fn has_activate(acts: &[Action]) -> bool {
    activation(acts).is_some()
}

pub fn has_deactivate(acts: &[Action]) -> bool {
    acts.iter().any(|a| matches!(a, Action::Deactivate { .. }))
}

pub fn witness_request(acts: &[Action]) -> Option<u64> {
    witness_request_sized(acts).map(|(id, _)| id)
}

/// The latest witness request: its id and how many commits it asks for.
pub fn witness_request_sized(acts: &[Action]) -> Option<(u64, u64)> {
    acts.iter().rev().find_map(|a| match a {
        Action::RequestWitness { id, blocks } => Some((*id, u64::from(*blocks))),
        _ => None,
    })
}

pub fn sent(acts: &[Action]) -> Vec<PeerMessage> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Send { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

pub fn persisted(acts: &[Action]) -> Vec<(u64, bool)> {
    acts.iter()
        .filter_map(|a| match a {
            Action::PersistEpoch {
                epoch,
                standby_right,
            } => Some((*epoch, *standby_right)),
            _ => None,
        })
        .collect()
}

pub fn records(acts: &[Action]) -> Vec<Record> {
    acts.iter()
        .filter_map(|a| match a {
            Action::Record(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

pub fn said(acts: &[Action], kind: RecordKind, text: &str) -> bool {
    records(acts)
        .iter()
        .any(|r| r.kind == kind && r.why.contains(text))
}

pub fn any_said(acts: &[Action], text: &str) -> bool {
    records(acts).iter().any(|r| r.why.contains(text))
}

/// Position of the first action matching `f`.
pub fn pos(acts: &[Action], f: impl Fn(&Action) -> bool) -> Option<usize> {
    acts.iter().position(f)
}

/// A standby `b` (not preferred) that has seen `a` active at `epoch` for longer than the
/// margin, at height ~`100 + MARGIN_S + 2`: it holds the standby right for `epoch`.
pub fn standby_of_active(epoch: u64) -> Node {
    let mut b = Node::new("b", "a", false);
    b.boot(Wish::Passive, epoch, Some(false));
    b.healthy();
    b.sees(status("a", Role::Active, epoch));
    b.rounds(MARGIN_S + 2, Some(status("a", Role::Active, epoch)));
    assert!(b.m.has_standby_right(), "b must be a's standby");
    b
}

/// An active `a` (preferred) at `epoch`, healthy, seeing `b` passive and healthy.
pub fn active_node(epoch: u64) -> Node {
    let mut a = Node::new("a", "b", true);
    a.boot(Wish::Active, epoch - 1, Some(true));
    a.healthy();
    a.sees(status("b", Role::Passive, epoch - 1));
    let acts = a.rounds(1, Some(status("b", Role::Passive, epoch - 1)));
    // Boot wish: a claims at once (peer passive) after a clean witness.
    let acts = a.answer_witness(&acts, &[], &[]);
    let claim = sent(&acts);
    assert!(
        matches!(
            claim.first().map(|m| &m.body),
            Some(MessageBody::RoleRequest { .. })
        ),
        "a should claim: {acts:?}"
    );
    let acts = a.feed(msg(
        "b",
        epoch,
        MessageBody::RoleReply {
            granted: true,
            reason: "granted".into(),
        },
    ));
    assert!(has_activate(&acts), "claim granted must activate: {acts:?}");
    a.feed(activated(epoch));
    // A verified activation: the validator's signature is on chain at the current height.
    a.last_signed = Some(a.height);
    assert_eq!(a.m.held_role(), Role::Active);
    a
}

/// The active `a` at epoch 2, fenced after its node stalled while its peer was out of sight.
pub fn fenced_node() -> Node {
    let mut a = active_node(2);
    for _ in 0..4 {
        a.advance_ms(1_000);
        a.health(false, true);
        a.lost();
    }
    a.feed(deactivated_ok(None));
    assert_eq!(a.m.held_role(), Role::Fenced);
    a
}
