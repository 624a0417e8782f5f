//! The etcd-mode driver: the async shell around the pure
//! `syncguard_coordination::EtcdMachine` (`coordination.backend: etcd`).
//!
//! One task owns the machine and performs its actions; small tasks feed it: a look at the
//! lock every health round, the local state file (for the watermark), ticks, and the health
//! loop's rounds (forwarded from the daemon's ordinary health task). The lease is kept by
//! `syncguard_coordination::keep_lease` from the moment an acquisition succeeds until the
//! machine releases it; its end (keeper fence or lease lost) comes back as an event.
//! Activation, deactivation, witness and verify are the same as in peer mode.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use syncguard_actuator::{ActivationPlan, Actuator};
use syncguard_config::{Config, NodeRole};
use syncguard_coordination::{
    AcquireOutcome, AcquireReport, EtcdAction, EtcdEvent, EtcdMachine, EtcdParams, FenceReason,
    Lease, LeaseEnd, LeaseKeeper, LeaseTiming, LockBackend, LockView, PromotionOrder,
};
use syncguard_failover::{
    Action, ActuatorResult, Event, OperatorCommand, PeerStatus, Record, RecordKind, Status, Wish,
};
use syncguard_health::ChainReader;
use syncguard_validator::{SignState, StateStore, ValidatorKey};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::daemon::{next_tick, ticker};
use crate::driver::{OperatorAnswer, OperatorRequest, OperatorRequestKind};
use crate::epoch_file::{EpochFile, Persisted};
use crate::view::Shared;

/// Why the etcd mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum EtcdSetupError {
    #[error("coordination.etcd: {0}")]
    Timing(#[from] syncguard_coordination::TimingError),
    #[error("{0}")]
    Backend(#[from] syncguard_coordination::CoordError),
    #[error("the state file cannot be used: {0}")]
    Store(#[from] syncguard_validator::StoreError),
    #[error("the actuator cannot be set up: {0}")]
    Actuator(#[from] syncguard_actuator::ActuatorError),
    #[error("the validator key store cannot be read: {0}")]
    Key(#[from] syncguard_validator::KeyError),
    #[error(transparent)]
    Epoch(#[from] crate::epoch_file::EpochFileError),
    #[error("cannot set up the RPC client of the local node: {0}")]
    Setup(#[from] syncguard_health::SetupError),
    #[error("the chain reader could not be set up (the validator key store is unreadable)")]
    NoChainReader,
}

/// What [`start`] hands the daemon.
pub struct Started {
    /// Where the daemon's health loop (and the peer API, if any) sends its events; only
    /// `LocalHealth` is used here.
    pub events: mpsc::Sender<Event>,
    /// The local state store.
    pub store: Arc<StateStore>,
    /// The operator inbox (pause / resume; other commands are refused in etcd mode).
    pub operator: mpsc::Sender<OperatorRequest>,
    /// The tasks started.
    pub tasks: Vec<JoinHandle<()>>,
}

/// Connects to etcd and starts the machine and its feeders.
pub async fn start(
    config: &Config,
    wish: NodeRole,
    shared: Shared,
    alerts: syncguard_alerts::Alerter,
    chain: Option<Arc<ChainReader>>,
    stop: watch::Receiver<bool>,
) -> Result<Started, EtcdSetupError> {
    let etcd = &config.coordination.etcd;
    let timing = LeaseTiming::from_config(etcd)?;
    let backend = syncguard_coordination::connect(etcd).await?;
    let store = Arc::new(StateStore::open(
        config.story.state_path(),
        Some(config.story.validator_state_backup.clone()),
    )?);
    let actuator = Arc::new(Actuator::new(config, store.clone())?);
    // The witness needs the validator's address: without a readable key store nothing can
    // be decided (the daemon built no chain reader then).
    let chain = match chain {
        Some(chain) => chain,
        None => {
            ValidatorKey::load_public(&config.story.validator_key_store)?;
            return Err(EtcdSetupError::NoChainReader);
        }
    };
    let epoch_file = EpochFile::beside(&config.story.validator_state_backup);
    let persisted = epoch_file.load()?;
    let interval = config.failover.health_check_interval();
    let step = interval * 2;
    let priority = config.coordination.failover_priority;
    let params = EtcdParams {
        node_id: config.server.id.clone(),
        priority,
        rank: usize::try_from(priority).unwrap_or(usize::MAX),
        health_check_interval: interval,
        witness_blocks: config.story.witness_blocks,
        verify_blocks: config.story.verify_blocks,
        order: PromotionOrder::new(step, step / 2)?,
    };
    let origin = Instant::now();
    shared.update(|v| v.started_at = SystemTime::now());

    let (tx, inbox) = mpsc::channel::<EtcdEvent>(256);
    let (health_tx, health_rx) = mpsc::channel::<Event>(64);
    let (op_tx, op_rx) = mpsc::channel::<OperatorRequest>(16);
    let mut first = vec![EtcdEvent::Start {
        epoch_on_disk: persisted.map_or(0, |p| p.epoch),
    }];
    for state in [store.read_if_exists()?, store.read_backup()?]
        .into_iter()
        .flatten()
    {
        first.push(EtcdEvent::StateSeen { hrs: state.hrs() });
    }
    for e in first {
        // The channel is fresh and larger than this batch.
        let _ = tx.try_send(e);
    }
    let driver = EtcdDriver {
        machine: EtcdMachine::new(params),
        origin,
        actuator,
        chain,
        epoch_file,
        shared: shared.clone(),
        alerts,
        backend: backend.clone(),
        timing,
        node_id: config.server.id.clone(),
        priority,
        is_primary_site: config.is_primary_site(),
        wish: match wish {
            NodeRole::Active => Wish::Active,
            NodeRole::Passive => Wish::Passive,
        },
        lease: Arc::new(Mutex::new(None)),
        events: tx.clone(),
    };
    let tasks = vec![
        tokio::spawn(driver.run(inbox, op_rx, stop.clone())),
        tokio::spawn(forward_health(health_rx, tx.clone())),
        tokio::spawn(poll_lock(
            backend,
            origin,
            interval,
            tx.clone(),
            stop.clone(),
        )),
        tokio::spawn(watch_state(
            store.clone(),
            config.story.state_sync_interval().min(interval),
            shared,
            tx.clone(),
            stop.clone(),
        )),
        tokio::spawn(tick(interval / 4, tx, stop)),
    ];
    Ok(Started {
        events: health_tx,
        store,
        operator: op_tx,
        tasks,
    })
}

/// The lease this node holds, with the task keeping it.
struct Held {
    lease: Lease,
    keeper: tokio::task::AbortHandle,
}

struct EtcdDriver {
    machine: EtcdMachine,
    origin: Instant,
    actuator: Arc<Actuator>,
    chain: Arc<ChainReader>,
    epoch_file: EpochFile,
    shared: Shared,
    alerts: syncguard_alerts::Alerter,
    backend: Arc<dyn LockBackend>,
    timing: LeaseTiming,
    node_id: String,
    priority: u32,
    is_primary_site: bool,
    wish: Wish,
    lease: Arc<Mutex<Option<Held>>>,
    events: mpsc::Sender<EtcdEvent>,
}

fn lock_held(m: &Mutex<Option<Held>>) -> std::sync::MutexGuard<'_, Option<Held>> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl EtcdDriver {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<EtcdEvent>,
        mut operator: mpsc::Receiver<OperatorRequest>,
        mut stop: watch::Receiver<bool>,
    ) {
        self.publish();
        loop {
            tokio::select! {
                event = inbox.recv() => match event {
                    Some(event) => { self.step(event); }
                    None => break,
                },
                Some(request) = operator.recv() => {
                    let answer = match request.kind {
                        OperatorRequestKind::Command(OperatorCommand::Pause) => OperatorAnswer {
                            refusal: None,
                            records: self.step(EtcdEvent::Pause),
                        },
                        OperatorRequestKind::Command(OperatorCommand::Resume) => OperatorAnswer {
                            refusal: None,
                            records: self.step(EtcdEvent::Resume),
                        },
                        _ => OperatorAnswer {
                            refusal: Some(
                                "not available with coordination.backend: etcd (only pause and \
                                 resume are; the lock decides who is active)"
                                    .into(),
                            ),
                            records: Vec::new(),
                        },
                    };
                    let _ = request.reply.send(answer);
                }
                _ = stop.changed() => break,
            }
        }
        // Stop renewing on shutdown: the lease then expires and another node may take the
        // lock, so the key must not stay live (the service manager's stop of story, or the
        // next start's boot deactivation, sees to that).
        if let Some(held) = lock_held(&self.lease).take() {
            held.keeper.abort();
        }
    }

    fn step(&mut self, event: EtcdEvent) -> Vec<Record> {
        let mut queue = std::collections::VecDeque::from([event]);
        let mut records = Vec::new();
        while let Some(event) = queue.pop_front() {
            let now = self.origin.elapsed();
            let actions = self.machine.handle(event, now);
            records.extend(actions.iter().filter_map(|a| match a {
                EtcdAction::Failover(Action::Record(r)) => Some(r.clone()),
                _ => None,
            }));
            self.perform(actions, &mut queue);
        }
        self.publish();
        records
    }

    fn perform(
        &mut self,
        actions: Vec<EtcdAction>,
        queue: &mut std::collections::VecDeque<EtcdEvent>,
    ) {
        let mut halted = false;
        for action in actions {
            match action {
                EtcdAction::Failover(Action::Record(r)) => self.record(r),
                _ if halted => {}
                EtcdAction::Failover(Action::PersistEpoch {
                    epoch,
                    standby_right,
                }) => {
                    if let Err(e) = self.epoch_file.store(Persisted {
                        epoch,
                        standby_right,
                    }) {
                        tracing::error!(epoch, error = %e, "cannot persist the epoch; not acting on it");
                        queue.push_back(EtcdEvent::EpochPersistFailed {
                            epoch,
                            reason: e.to_string(),
                        });
                        halted = true;
                    }
                }
                EtcdAction::Failover(Action::Activate { epoch, fence, .. }) => {
                    tracing::warn!(epoch, fence = %fence, "activating: this node takes the validator role under the etcd lock");
                    let actuator = self.actuator.clone();
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        let mut signed_at = None;
                        let result = match SignState::unsigned(fence) {
                            Ok(f) => actuator
                                .activate(ActivationPlan::unplanned(f))
                                .await
                                .map(|report| {
                                    signed_at = Some(report.signed_at_height);
                                    tracing::info!(
                                        epoch,
                                        "activation finished\n{}",
                                        report.format_steps()
                                    );
                                })
                                .map_err(|e| {
                                    tracing::error!(epoch, "activation failed: {e}");
                                    e.to_string()
                                }),
                            Err(e) => Err(format!("invalid fence height: {e}")),
                        };
                        let _ = events
                            .send(EtcdEvent::Actuator(ActuatorResult::Activated {
                                epoch,
                                result,
                                signed_at,
                            }))
                            .await;
                    });
                }
                EtcdAction::Failover(Action::Deactivate { reason }) => {
                    tracing::warn!(%reason, "deactivating: stopping story and installing the placeholder key");
                    let actuator = self.actuator.clone();
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        let result = match actuator.deactivate().await {
                            Ok(report) => {
                                tracing::info!("deactivation finished\n{}", report.format_steps());
                                Ok(None)
                            }
                            Err(e) => {
                                tracing::error!("deactivation failed: {e}");
                                Err(e.to_string())
                            }
                        };
                        let _ = events
                            .send(EtcdEvent::Actuator(ActuatorResult::Deactivated { result }))
                            .await;
                    });
                }
                EtcdAction::Failover(Action::RequestWitness { id, blocks }) => {
                    let chain = self.chain.clone();
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        let report = crate::chain_check::witness(&chain, id, blocks).await;
                        let _ = events.send(EtcdEvent::Witness(report)).await;
                    });
                }
                // The actuator verifies every activation (or rolls it back).
                EtcdAction::Failover(Action::Verify { .. }) => {}
                // Peer messages do not exist in etcd mode.
                EtcdAction::Failover(Action::Send { .. }) => {}
                EtcdAction::TryAcquire => self.try_acquire(),
                EtcdAction::PutWatermark { hrs } => {
                    let Some(lease) = lock_held(&self.lease).as_ref().map(|h| h.lease.clone())
                    else {
                        continue;
                    };
                    let backend = self.backend.clone();
                    tokio::spawn(async move {
                        if let Err(e) = backend.put_watermark(&lease, hrs).await {
                            tracing::warn!(epoch = lease.epoch, "watermark not written: {e}");
                        }
                    });
                }
                EtcdAction::Release => {
                    let Some(held) = lock_held(&self.lease).take() else {
                        continue;
                    };
                    held.keeper.abort();
                    let backend = self.backend.clone();
                    tokio::spawn(async move {
                        match backend.release(&held.lease).await {
                            Ok(()) => tracing::info!(epoch = held.lease.epoch, "lock released"),
                            // It expires on its own; nobody signs under it any more.
                            Err(e) => tracing::warn!(
                                epoch = held.lease.epoch,
                                "release failed (the lease will expire): {e}"
                            ),
                        }
                    });
                }
            }
        }
    }

    /// Sends the acquire transaction; on success starts keeping the lease at once (before
    /// the machine even hears of it), so the proof never lapses while it decides.
    fn try_acquire(&self) {
        let backend = self.backend.clone();
        let events = self.events.clone();
        let origin = self.origin;
        let timing = self.timing;
        let held = self.lease.clone();
        let (node_id, priority) = (self.node_id.clone(), self.priority);
        tokio::spawn(async move {
            let sent_at = origin.elapsed();
            let report = match backend.acquire(&node_id, priority).await {
                Ok(AcquireOutcome::Acquired(lease)) => {
                    let mut keeper = LeaseKeeper::acquired(timing, sent_at, lease.ttl);
                    let (b, l, ev) = (backend.clone(), lease.clone(), events.clone());
                    // The keeper's end must reach the machine after the acquisition does
                    // (a LeaseEnded before it would be ignored): it starts once that is sent.
                    // Its proof counts from `sent_at` whatever the delay.
                    let (go, wait_go) = tokio::sync::oneshot::channel::<()>();
                    let task = tokio::spawn(async move {
                        let _ = wait_go.await;
                        let (why, at) = syncguard_coordination::keep_lease(
                            b.as_ref(),
                            &l,
                            &mut keeper,
                            tokio::time::Instant::from_std(origin),
                        )
                        .await;
                        tracing::warn!(
                            epoch = l.epoch,
                            ?why,
                            at_ms = at.as_millis() as u64,
                            "lease keeper stopped"
                        );
                        let why = match why {
                            FenceReason::LeaseLost => LeaseEnd::Lost,
                            _ => LeaseEnd::NotRenewed,
                        };
                        let _ = ev.send(EtcdEvent::LeaseEnded { why }).await;
                    });
                    let watermark = match backend.get_watermark().await {
                        Ok(w) => w.map(|w| w.hrs),
                        Err(e) => {
                            // The fence (H + 2) and every state seen still bound it (S3).
                            tracing::warn!("watermark not read: {e}");
                            None
                        }
                    };
                    let epoch = lease.epoch;
                    if let Some(old) = lock_held(&held).replace(Held {
                        lease,
                        keeper: task.abort_handle(),
                    }) {
                        old.keeper.abort();
                    }
                    let _ = events
                        .send(EtcdEvent::Acquire(AcquireReport::Acquired {
                            epoch,
                            watermark,
                        }))
                        .await;
                    let _ = go.send(());
                    return;
                }
                Ok(AcquireOutcome::Held(h)) => AcquireReport::Held(h),
                Err(e) => AcquireReport::Failed {
                    reason: e.to_string(),
                },
            };
            let _ = events.send(EtcdEvent::Acquire(report)).await;
        });
    }

    fn record(&self, record: Record) {
        match record.kind {
            RecordKind::Alert => {
                tracing::error!(epoch = record.epoch, role = ?record.role, reason = %record.reason, "ALERT: {}", record.why)
            }
            RecordKind::RoleChange => {
                tracing::warn!(epoch = record.epoch, role = ?record.role, reason = %record.reason, "role change: {}", record.why)
            }
            RecordKind::Refusal | RecordKind::Info => {
                tracing::info!(epoch = record.epoch, role = ?record.role, "{}", record.why)
            }
        }
        if let Some(alert) = crate::alerting::record_alert(&self.node_id, &record) {
            self.alerts.notify(alert);
        }
        self.shared.push_record(record);
    }

    fn publish(&self) {
        let m = &self.machine;
        let status = Status {
            role: m.role(),
            held_role: m.held_role(),
            paused: m.paused(),
            epoch: m.epoch(),
            wish: self.wish,
            last_why: m.last_why().to_string(),
            peer: None,
            peer_unreachable_for_ms: None,
            standby_right: false,
        };
        let own = PeerStatus {
            node_id: syncguard_failover::NodeId::new(self.node_id.clone()),
            role: m.held_role(),
            paused: m.paused(),
            epoch: m.epoch(),
            healthy: self
                .shared
                .read(|v| v.health.as_ref().is_some_and(|h| h.healthy)),
            latest_height: m.latest_height(),
            is_primary_site: self.is_primary_site,
            last_state: m.highest_seen(),
            standby_right: false,
            wants_role: false,
        };
        self.shared.set_failover(status, own);
    }
}

/// Passes the health loop's rounds on (the daemon's health task speaks the peer machine's
/// events).
async fn forward_health(mut rx: mpsc::Receiver<Event>, tx: mpsc::Sender<EtcdEvent>) {
    while let Some(e) = rx.recv().await {
        if let Event::LocalHealth(h) = e {
            if tx.send(EtcdEvent::LocalHealth(h)).await.is_err() {
                return;
            }
        }
    }
}

/// One look at the lock per health round.
async fn poll_lock(
    backend: Arc<dyn LockBackend>,
    origin: Instant,
    interval: Duration,
    tx: mpsc::Sender<EtcdEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut t = ticker(interval);
    while next_tick(&mut t, &mut stop).await {
        let asked_at = origin.elapsed();
        let view = match backend.current_holder().await {
            Ok(None) => LockView::Free,
            Ok(Some(h)) => LockView::Held(h),
            Err(e) => LockView::Unreachable {
                reason: e.to_string(),
            },
        };
        if tx.send(EtcdEvent::Lock { asked_at, view }).await.is_err() {
            return;
        }
    }
}

/// The local state file: every change goes to the machine (the active writes it to etcd
/// as the watermark).
async fn watch_state(
    store: Arc<StateStore>,
    every: Duration,
    shared: Shared,
    tx: mpsc::Sender<EtcdEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut t = ticker(every);
    let mut last = None;
    while next_tick(&mut t, &mut stop).await {
        let Ok(Some(state)) = store.read_if_exists() else {
            continue;
        };
        let hrs = state.hrs();
        shared.update(|v| v.local_state = Some(hrs));
        if last != Some(hrs) {
            last = Some(hrs);
            if tx.send(EtcdEvent::StateSeen { hrs }).await.is_err() {
                return;
            }
        }
    }
}

async fn tick(every: Duration, tx: mpsc::Sender<EtcdEvent>, mut stop: watch::Receiver<bool>) {
    let mut t = ticker(every);
    while next_tick(&mut t, &mut stop).await {
        if tx.send(EtcdEvent::Tick).await.is_err() {
            return;
        }
    }
}
