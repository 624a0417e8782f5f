//! The failover driver: the async shell around the pure `syncguard_failover::Machine`.
//!
//! One task owns the machine. Everything the world says arrives as an `Event` on a channel
//! (health rounds, peer looks, witness answers, actuator completions, peer messages, ticks);
//! the machine answers with `Action`s, which this module performs in order. Long actions
//! (activate, deactivate, witness, verify, sends) run in their own tasks and report back as
//! events, so the machine never waits on I/O and every decision stays in the pure core.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use syncguard_actuator::{ActivationPlan, Actuator};
use syncguard_failover::{
    Action, ActuatorResult, Event, HandedState, Machine, PeerMessage, Record, RecordKind,
};
use syncguard_health::ChainReader;
use syncguard_validator::SignState;
use tokio::sync::{mpsc, watch};

use crate::epoch_file::{EpochFile, Persisted};
use crate::view::{Shared, StepTable};

/// An operator's request to the driver (from the authenticated admin routes), answered on
/// `reply` once the machine has taken it: the daemon only relays, the machine decides.
pub struct OperatorRequest {
    pub kind: OperatorRequestKind,
    pub reply: tokio::sync::oneshot::Sender<OperatorAnswer>,
}

pub enum OperatorRequestKind {
    /// Feed the command to the machine.
    Command(syncguard_failover::OperatorCommand),
    /// Ask the machine whether a switchover to this node could start now (the dry run).
    CheckSwitchover(syncguard_failover::NodeId),
}

/// What came of an [`OperatorRequest`].
#[derive(Debug, Clone)]
pub struct OperatorAnswer {
    /// For a check: the machine's refusal, if any.
    pub refusal: Option<String>,
    /// The records the machine made while taking a command (decisions and refusals).
    pub records: Vec<Record>,
}

fn table(steps: String, total: Duration, ok: bool, epoch: Option<u64>) -> StepTable {
    StepTable {
        finished_at: std::time::SystemTime::now(),
        epoch,
        ok,
        total_seconds: total.as_secs_f64(),
        table: steps,
    }
}

/// Sends a protocol message to the peer; loss is tolerated by the machine.
pub trait PeerSender: Send + Sync + 'static {
    fn send(
        &self,
        epoch: u64,
        message: PeerMessage,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>>;
}

/// What the driver acts with.
pub struct Deps {
    pub actuator: Arc<Actuator>,
    /// The commits of the local node, read once (the witness is served from them).
    pub chain: Arc<ChainReader>,
    /// The longest wait for CometBFT's double-sign check before a start (`Timing::dsc_wait`).
    pub dsc_wait: Duration,
    pub epoch_file: EpochFile,
    pub peer: Arc<dyn PeerSender>,
    pub shared: Shared,
    /// Where the machine's meaningful records go as alerts (never blocks).
    pub alerts: syncguard_alerts::Alerter,
}

pub struct Driver {
    machine: Machine,
    origin: Instant,
    deps: Deps,
    events: mpsc::Sender<Event>,
}

impl Driver {
    /// `origin` is the monotonic zero of the machine's clock (records count from it).
    pub fn new(machine: Machine, origin: Instant, deps: Deps, events: mpsc::Sender<Event>) -> Self {
        Driver {
            machine,
            origin,
            deps,
            events,
        }
    }

    /// Runs until `stop` flips or every sender is gone.
    pub async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Event>,
        mut operator: mpsc::Receiver<OperatorRequest>,
        mut stop: watch::Receiver<bool>,
    ) {
        self.publish();
        loop {
            tokio::select! {
                event = inbox.recv() => match event {
                    Some(event) => { self.step(event); }
                    None => return,
                },
                Some(request) = operator.recv() => {
                    let answer = match request.kind {
                        OperatorRequestKind::Command(command) => OperatorAnswer {
                            refusal: None,
                            records: self.step(Event::Operator(command)),
                        },
                        OperatorRequestKind::CheckSwitchover(to) => OperatorAnswer {
                            refusal: self
                                .machine
                                .switchover_check(&to, self.origin.elapsed())
                                .err(),
                            records: Vec::new(),
                        },
                    };
                    // The asker may have hung up; the machine has acted either way.
                    let _ = request.reply.send(answer);
                }
                _ = stop.changed() => return,
            }
        }
    }

    /// Feeds one event, performs the actions, and feeds back at once the events that
    /// performing them produced synchronously (a failed epoch write). Returns the records
    /// made meanwhile, for an operator waiting on the outcome of a command.
    fn step(&mut self, event: Event) -> Vec<Record> {
        let mut queue = VecDeque::from([event]);
        let mut records = Vec::new();
        while let Some(event) = queue.pop_front() {
            let now = self.origin.elapsed();
            let actions = self.machine.handle(event, now);
            records.extend(actions.iter().filter_map(|a| match a {
                Action::Record(r) => Some(r.clone()),
                _ => None,
            }));
            self.perform(actions, &mut queue);
        }
        self.publish();
        records
    }

    fn perform(&mut self, actions: Vec<Action>, queue: &mut VecDeque<Event>) {
        // After a failed epoch write the rest of the batch must not happen (records aside):
        // acting under an epoch that would not survive a restart could reuse it.
        let mut halted = false;
        for action in actions {
            match action {
                Action::Record(record) => self.record(record),
                _ if halted => {}
                Action::PersistEpoch {
                    epoch,
                    standby_right,
                } => {
                    if let Err(e) = self.deps.epoch_file.store(Persisted {
                        epoch,
                        standby_right,
                    }) {
                        tracing::error!(epoch, error = %e, "cannot persist the epoch; not acting on it");
                        queue.push_back(Event::EpochPersistFailed {
                            epoch,
                            reason: e.to_string(),
                        });
                        halted = true;
                    }
                }
                Action::Activate {
                    epoch,
                    fence,
                    handed_state,
                    cause,
                    start_after_height,
                } => {
                    tracing::warn!(epoch, ?cause, fence = %fence, ?start_after_height, "activating: this node takes the validator role");
                    let plan = activation_plan(fence, handed_state.as_ref()).map(|plan| {
                        match start_after_height {
                            Some(h) => plan.after_height(h, self.deps.dsc_wait),
                            None => plan,
                        }
                    });
                    let actuator = self.deps.actuator.clone();
                    let events = self.events.clone();
                    let shared = self.deps.shared.clone();
                    tokio::spawn(async move {
                        let mut signed_at = None;
                        let result = match plan {
                            Ok(plan) => match actuator.activate(plan).await {
                                Ok(report) => {
                                    signed_at = Some(report.signed_at_height);
                                    let t = table(
                                        report.format_steps(),
                                        report.total,
                                        true,
                                        Some(epoch),
                                    );
                                    shared.update(|v| v.last_activation = Some(t));
                                    tracing::info!(
                                        epoch,
                                        signed_at = report.signed_at_height,
                                        "activation finished\n{}",
                                        report.format_steps()
                                    );
                                    Ok(())
                                }
                                Err(e) => {
                                    tracing::error!(
                                        epoch,
                                        "activation failed: {e}\n{}",
                                        e.format_steps().unwrap_or_default()
                                    );
                                    let t = table(
                                        format!("{e}\n{}", e.format_steps().unwrap_or_default()),
                                        Duration::ZERO,
                                        false,
                                        Some(epoch),
                                    );
                                    shared.update(|v| v.last_activation = Some(t));
                                    Err(e.to_string())
                                }
                            },
                            Err(e) => Err(e),
                        };
                        let _ = events
                            .send(Event::Actuator(ActuatorResult::Activated {
                                epoch,
                                result,
                                signed_at,
                            }))
                            .await;
                    });
                }
                Action::Deactivate { reason } => {
                    tracing::warn!(%reason, "deactivating: stopping story and installing the placeholder key");
                    let actuator = self.deps.actuator.clone();
                    let events = self.events.clone();
                    let shared = self.deps.shared.clone();
                    tokio::spawn(async move {
                        let result = match actuator.deactivate().await {
                            Ok(report) => {
                                let t = table(report.format_steps(), report.total, true, None);
                                shared.update(|v| v.last_deactivation = Some(t));
                                if let Some(problem) = &report.start_problem {
                                    tracing::error!(
                                        "the node is safe but not following the chain: {problem}"
                                    );
                                }
                                tracing::info!("deactivation finished\n{}", report.format_steps());
                                Ok(Some(handed(&report.final_state)))
                            }
                            Err(e) => {
                                tracing::error!(
                                    "deactivation failed: {e}\n{}",
                                    e.format_steps().unwrap_or_default()
                                );
                                let t = table(
                                    format!("{e}\n{}", e.format_steps().unwrap_or_default()),
                                    Duration::ZERO,
                                    false,
                                    None,
                                );
                                shared.update(|v| v.last_deactivation = Some(t));
                                Err(e.to_string())
                            }
                        };
                        let _ = events
                            .send(Event::Actuator(ActuatorResult::Deactivated { result }))
                            .await;
                    });
                }
                Action::Send { to, message } => {
                    let peer = self.deps.peer.clone();
                    let epoch = self.machine.epoch();
                    tokio::spawn(async move {
                        if let Err(e) = peer.send(epoch, message).await {
                            tracing::warn!(peer = %to, "message not delivered: {e}");
                        }
                    });
                }
                Action::RequestWitness { id, blocks } => {
                    let chain = self.deps.chain.clone();
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        let report = crate::chain_check::witness(&chain, id, blocks).await;
                        let _ = events.send(Event::Witness(report)).await;
                    });
                }
                // The actuator verifies every activation (or rolls it back): the peer core
                // never asks for a separate verification.
                Action::Verify { .. } => {}
            }
        }
    }

    fn record(&self, record: Record) {
        match record.kind {
            RecordKind::Alert => {
                tracing::error!(epoch = record.epoch, role = ?record.role, reason = %record.reason, heights = ?record.heights, "ALERT: {}", record.why)
            }
            // One line per role change: the new role, why, the epoch and the heights.
            RecordKind::RoleChange => {
                tracing::warn!(epoch = record.epoch, role = ?record.role, reason = %record.reason, heights = ?record.heights, "role change: {}", record.why)
            }
            RecordKind::Refusal => {
                tracing::info!(epoch = record.epoch, role = ?record.role, "{}", record.why)
            }
            RecordKind::Info => {
                tracing::info!(epoch = record.epoch, role = ?record.role, "{}", record.why)
            }
        }
        if let Some(alert) =
            crate::alerting::record_alert(&self.deps.shared.read(|v| v.node_id.clone()), &record)
        {
            self.deps.alerts.notify(alert);
        }
        self.deps.shared.push_record(record);
    }

    fn publish(&self) {
        let status = self.machine.status();
        let peer_status = self.machine.peer_status();
        self.deps.shared.set_failover(status, peer_status);
    }
}

fn activation_plan(
    fence: syncguard_validator::Hrs,
    handed: Option<&HandedState>,
) -> Result<ActivationPlan, String> {
    let handed_state = match handed {
        Some(h) => Some(
            SignState::from_json(h.raw.as_bytes())
                .map_err(|e| format!("the handed-over state is not valid: {e}"))?,
        ),
        None => None,
    };
    // An unsigned fence at the handed state's own HRS would read as a conflicting second
    // message at that HRS; the handed state already is the floor there.
    let fence = match &handed_state {
        Some(h) if h.hrs() >= fence => None,
        _ => Some(SignState::unsigned(fence).map_err(|e| format!("invalid fence height: {e}"))?),
    };
    Ok(ActivationPlan {
        fence,
        handed_state,
        ..ActivationPlan::default()
    })
}

fn handed(state: &SignState) -> HandedState {
    HandedState {
        hrs: state.hrs(),
        raw: state.to_json(),
    }
}
