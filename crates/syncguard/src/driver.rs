//! The failover driver: the one async shell around the pure core
//! (`syncguard_failover::Core`), for every coordination backend.
//!
//! One task owns the machine. Everything the world says arrives as an `Event` on a channel
//! (health rounds, chain reports, looks at the peer or the lock, witness answers, actuator
//! completions, peer messages, lease ends); the machine answers with `Action`s, which this
//! module performs in order. Between inputs the task sleeps until the machine's next timer
//! (`Core::poll_timeout`) — no ticks. Long actions (activate, deactivate, witness, the
//! backend's calls) run in their own tasks and report back as events, so the machine never
//! waits on I/O and every decision stays in the pure core. What only one backend does is
//! handed to its [`Coordination`] (`coordination/`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use syncguard_actuator::{ActivationPlan, Actuator};
use syncguard_failover::{
    Action, ActuatorResult, Arbiter, Core, Event, HandedState, NodeId, OperatorCommand, Record,
    RecordKind,
};
use syncguard_health::ChainReader;
use syncguard_validator::SignState;
use tokio::sync::{mpsc, oneshot, watch};

use crate::coordination::Coordination;
use crate::epoch_file::{EpochFile, Persisted};
use crate::view::{Shared, StepTable};

/// An operator's request to the driver (from the authenticated admin routes), answered on
/// `reply` once the machine has taken it: the daemon only relays, the machine decides.
pub struct OperatorRequest {
    pub kind: OperatorRequestKind,
    pub reply: oneshot::Sender<OperatorAnswer>,
}

pub enum OperatorRequestKind {
    /// Feed the command to the machine.
    Command(OperatorCommand),
    /// Ask the machine whether a switchover to this node could start now (the dry run).
    CheckSwitchover(NodeId),
}

/// What came of an [`OperatorRequest`].
#[derive(Debug, Clone)]
pub struct OperatorAnswer {
    /// For a check: the machine's refusal, if any.
    pub refusal: Option<String>,
    /// The records the machine made while taking a command (decisions and refusals).
    pub records: Vec<Record>,
}

/// What the driver acts with, whatever the backend.
pub struct Deps {
    pub actuator: Arc<Actuator>,
    /// The commits of the local node, read once (the witness is served from them).
    pub chain: Arc<ChainReader>,
    /// The longest wait for CometBFT's double-sign check before a start (`Timing::dsc_wait`).
    pub dsc_wait: Duration,
    pub epoch_file: EpochFile,
    pub shared: Shared,
    /// Where the machine's meaningful records go as alerts (never blocks).
    pub alerts: syncguard_alerts::Alerter,
}

/// What wakes the machine. One at a time, moved straight into the machine: boxing the
/// event would only add an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Input {
    Event(Event),
    Timeout,
}

pub struct Driver<A: Arbiter + Serialize> {
    machine: Core<A>,
    origin: Instant,
    deps: Deps,
    link: Arc<dyn Coordination>,
    events: mpsc::Sender<Event>,
}

impl<A: Arbiter + Serialize> Driver<A> {
    /// `origin` is the monotonic zero of the machine's clock (records count from it).
    pub fn new(
        machine: Core<A>,
        origin: Instant,
        deps: Deps,
        link: Arc<dyn Coordination>,
        events: mpsc::Sender<Event>,
    ) -> Self {
        Driver {
            machine,
            origin,
            deps,
            link,
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
            let wake = self.machine.poll_timeout().map(|t| self.origin + t);
            let timer = async move {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = inbox.recv() => match event {
                    Some(event) => { self.step(Input::Event(event)); }
                    None => break,
                },
                Some(request) = operator.recv() => self.answer(request),
                _ = timer => { self.step(Input::Timeout); }
                _ = stop.changed() => break,
            }
        }
        self.link.shutdown();
    }

    fn answer(&mut self, request: OperatorRequest) {
        let answer = match request.kind {
            OperatorRequestKind::Command(command) => OperatorAnswer {
                refusal: None,
                records: self.step(Input::Event(Event::Operator(command))),
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

    /// Feeds one input, performs the actions, and feeds back at once the events that
    /// performing them produced synchronously (a failed epoch write). Returns the records
    /// made meanwhile, for an operator waiting on the outcome of a command.
    fn step(&mut self, input: Input) -> Vec<Record> {
        let now = self.origin.elapsed();
        let actions = match input {
            Input::Event(event) => self.machine.handle(event, now),
            Input::Timeout => self.machine.handle_timeout(now),
        };
        let mut queue = VecDeque::new();
        let mut records = Vec::new();
        let mut batch = Some(actions);
        while let Some(actions) = batch.take() {
            records.extend(actions.iter().filter_map(|a| match a {
                Action::Record(r) => Some(r.clone()),
                _ => None,
            }));
            self.perform(actions, &mut queue);
            if let Some(event) = queue.pop_front() {
                batch = Some(self.machine.handle(event, self.origin.elapsed()));
            }
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
                    let persisted = Persisted {
                        epoch,
                        standby_right,
                    };
                    if let Err(e) = self.deps.epoch_file.store(persisted) {
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
                    self.activate(epoch, plan);
                }
                Action::Deactivate { reason } => {
                    tracing::warn!(%reason, "deactivating: stopping story and installing the placeholder key");
                    self.deactivate();
                }
                Action::RequestWitness { id, blocks } => {
                    let chain = self.deps.chain.clone();
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        let report = crate::chain_check::witness(&chain, id, blocks).await;
                        let _ = events.send(Event::Witness(report)).await;
                    });
                }
                // The actuator verifies every activation (or rolls it back): the core never
                // asks for a separate verification.
                Action::Verify { .. } => {}
                other => self.link.perform(other, self.machine.epoch(), &self.events),
            }
        }
    }

    fn activate(&self, epoch: u64, plan: Result<ActivationPlan, String>) {
        let actuator = self.deps.actuator.clone();
        let events = self.events.clone();
        let shared = self.deps.shared.clone();
        tokio::spawn(async move {
            let mut signed_at = None;
            let result = match plan {
                Ok(plan) => match actuator.activate(plan).await {
                    Ok(report) => {
                        signed_at = Some(report.signed_at_height);
                        let steps = report.format_steps();
                        let t = table(steps.clone(), report.total, true, Some(epoch));
                        shared.update(|v| v.last_activation = Some(t));
                        let signed = report.signed_at_height;
                        tracing::info!(epoch, signed_at = signed, "activation finished\n{steps}");
                        Ok(())
                    }
                    Err(e) => {
                        let steps = e.format_steps().unwrap_or_default();
                        tracing::error!(epoch, "activation failed: {e}\n{steps}");
                        let t = table(format!("{e}\n{steps}"), Duration::ZERO, false, Some(epoch));
                        shared.update(|v| v.last_activation = Some(t));
                        Err(e.to_string())
                    }
                },
                Err(e) => Err(e),
            };
            let done = ActuatorResult::Activated {
                epoch,
                result,
                signed_at,
            };
            let _ = events.send(Event::Actuator(done)).await;
        });
    }

    fn deactivate(&self) {
        let actuator = self.deps.actuator.clone();
        let events = self.events.clone();
        let shared = self.deps.shared.clone();
        tokio::spawn(async move {
            let result = match actuator.deactivate().await {
                Ok(report) => {
                    let steps = report.format_steps();
                    let t = table(steps.clone(), report.total, true, None);
                    shared.update(|v| v.last_deactivation = Some(t));
                    if let Some(problem) = &report.start_problem {
                        tracing::error!("the node is safe but not following the chain: {problem}");
                    }
                    tracing::info!("deactivation finished\n{steps}");
                    Ok(Some(handed(&report.final_state)))
                }
                Err(e) => {
                    let steps = e.format_steps().unwrap_or_default();
                    tracing::error!("deactivation failed: {e}\n{steps}");
                    let t = table(format!("{e}\n{steps}"), Duration::ZERO, false, None);
                    shared.update(|v| v.last_deactivation = Some(t));
                    Err(e.to_string())
                }
            };
            let done = ActuatorResult::Deactivated { result };
            let _ = events.send(Event::Actuator(done)).await;
        });
    }

    fn record(&self, record: Record) {
        let (epoch, role, reason, heights) =
            (record.epoch, record.role, &record.reason, &record.heights);
        match record.kind {
            RecordKind::Alert => {
                tracing::error!(epoch, ?role, %reason, ?heights, "ALERT: {}", record.why)
            }
            // One line per role change: the new role, why, the epoch and the heights.
            RecordKind::RoleChange => {
                tracing::warn!(epoch, ?role, %reason, ?heights, "role change: {}", record.why)
            }
            RecordKind::Refusal | RecordKind::Info => {
                tracing::info!(epoch, ?role, "{}", record.why)
            }
        }
        let node_id = self.deps.shared.read(|v| v.node_id.clone());
        if let Some(alert) = crate::alerting::record_alert(&node_id, &record) {
            self.deps.alerts.notify(alert);
        }
        self.deps.shared.push_record(record);
    }

    fn publish(&self) {
        let status = self.machine.status();
        let own = self.machine.peer_status();
        self.deps.shared.set_failover(status, own);
    }
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
