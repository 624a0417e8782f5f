//! The daemon (`syncguard story`): wires the pure crates to the world.
//!
//! Tasks, each a thin shell that only observes or acts:
//! - health loop: one observation round per `health_check_interval` → pure verdict →
//!   `/health`, and `Event::LocalHealth` for the failover machine;
//! - peer poller (`peer_poll.rs`): the peer's `/peer/status` → `Event::Peer`, and a look
//!   still unanswered when the last news would age out (two rounds) → `Unreachable`;
//! - state sync: on a passive, the active's state file → the backup (never lower) →
//!   `Event::StateSeen`;
//! - etcd mode instead: a look at the lock every round (publishing this node's status) and
//!   the local state file (`coordination/lease.rs`);
//! - the driver (`driver.rs`): owns the machine, performs its actions, and sleeps until the
//!   machine's next timer — one driver for both backends (`coordination/` holds what
//!   differs);
//! - the HTTP server (`syncguard-peer`): public API and mutual-TLS peer API on one port.
//!
//! With no peer configured, the daemon monitors health only and never starts or stops `story`.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use syncguard_actuator::{Actuator, ActuatorError, ActuatorOptions};
use syncguard_config::{Backend, Config, NodeRole, PeerConfig};
use syncguard_failover::{
    ChainReport, Event, LeaseParams, LocalHealth, Machine, NodeId, Params, ParamsError,
    PromotionOrder, Role, Wish,
};
use syncguard_health::{
    evaluate, names, ChainReader, CheckStatus, CometClient, HealthParams, HealthReport,
    HealthState, NodeProbe, SetupError, StateSyncSeen, Verdict,
};
use syncguard_peer::{PeerClient, PeerSecurity, PeerServer};
use syncguard_validator::{StateStore, StoreError, ValidatorKey};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::driver::{Deps, Driver, OperatorRequest};
use crate::epoch_file::{EpochFile, EpochFileError};
use crate::view::{NodeView, Shared, SigningSeen};

/// Heights of commits kept in memory (the longest witness reads at most 2,000).
const COMMITS_KEPT: u64 = 2_500;
/// The most commits read after one round (a node far ahead catches up over rounds).
const COMMITS_PER_ROUND: u64 = 200;

/// Why the daemon could not start: every setup step of every backend names what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot set up the RPC clients of the local node: {0}")]
    Setup(#[from] SetupError),
    #[error("the state file cannot be used: {0}")]
    Store(#[from] StoreError),
    #[error("the actuator cannot be set up: {0}")]
    Actuator(#[from] ActuatorError),
    #[error("the validator key store cannot be read: {0}")]
    Key(#[from] syncguard_validator::KeyError),
    #[error("the chain reader could not be set up (the validator key store is unreadable)")]
    NoChainReader,
    #[error(transparent)]
    Epoch(#[from] EpochFileError),
    #[error("the failover timings are unsafe: {0}")]
    Params(#[from] ParamsError),
    #[error("alerts cannot be set up: {0}")]
    Alerts(#[from] syncguard_alerts::AlertsError),
    #[error("peer communication cannot be set up: {0}")]
    Peer(String),
    #[error("the peer backend supports exactly one peer; {0} are configured (use coordination.backend: etcd for more)")]
    TooManyPeers(usize),
    #[error("coordination.etcd: {0}")]
    LeaseTiming(#[from] syncguard_coordination::TimingError),
    #[error("coordination.failover_priority: {0}")]
    Order(#[from] syncguard_failover::arbiter::lease::JitterNotBelowStep),
    #[error("etcd coordination cannot be set up: {0}")]
    Etcd(#[from] syncguard_coordination::CoordError),
}

/// The health thresholds from the config.
pub fn health_params(config: &Config) -> HealthParams {
    let interval = config.failover.health_check_interval();
    let mut p = HealthParams::from_block_interval(config.story.block_interval, interval);
    if let Some(stall) = config.health.stall_threshold {
        p.stall_bound = Duration::try_from_secs_f64(stall).unwrap_or(p.stall_bound);
    }
    p.min_peers = u64::from(config.story.min_peers);
    p.retry_attempts = config.failover.retry_attempts;
    p.recovery_rounds = config.recovery_rounds();
    p.state_sync_interval = config.story.state_sync_interval();
    p.min_free_disk_bytes = config.health.min_free_disk_mb.saturating_mul(1024 * 1024);
    p
}

/// The failover machine's parameters from the config (two nodes: the peer is the other site)
/// and the node's `double_sign_check_height`.
pub fn failover_params(
    config: &Config,
    peer: &PeerConfig,
    double_sign_check_height: u64,
) -> Params {
    Params {
        node_id: NodeId::new(config.server.id.clone()),
        peer_id: NodeId::new(peer.id.clone()),
        is_primary_site: config.is_primary_site(),
        peer_is_primary_site: !config.is_primary_site(),
        fallback_grace_period: config.failover.fallback_grace_period(),
        timing: config.timing_with(double_sign_check_height),
    }
}

/// CometBFT's `double_sign_check_height` of the local node (0 when its `config.toml` cannot
/// be read: the preflight has said why).
pub fn node_double_sign_check_height(config: &Config) -> u64 {
    crate::preflight::double_sign_check_height(&config.story.node_config()).unwrap_or(0)
}

/// Runs until `shutdown` completes. (A little over 80 lines: it is the daemon's wiring list,
/// one step per task, meant to be read top to bottom.)
pub async fn run(
    config: Config,
    wish: NodeRole,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let state_path = config.story.state_path();
    // Every timing, with the node's own double_sign_check_height (docs/TIMING.md).
    let timing = config.timing_with(node_double_sign_check_height(&config));
    for g in timing.guarantees() {
        tracing::info!("timing: {g}");
    }
    let story = &config.story;
    let probe = if story.chain_profile.has_evm() {
        NodeProbe::new(&story.comet_rpc_url, &story.evm_rpc_url, timing.rpc_timeout)?
    } else {
        NodeProbe::comet_only(&story.comet_rpc_url, timing.rpc_timeout)?
    }
    .with_state_dir(state_path.parent().unwrap_or(Path::new("/")))
    .with_state_file(&state_path);
    let shared = Shared::new(NodeView::new(
        config.server.id.clone(),
        config.site_role(),
        wish,
    ));
    shared.update(|v| {
        v.chain_profile = match story.chain_profile {
            syncguard_config::ChainProfile::Story => "story",
            syncguard_config::ChainProfile::Cometbft => "cometbft",
        }
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let peers = &config.communication.peers;
    if config.coordination.backend == Backend::Peer && peers.len() > 1 {
        return Err(DaemonError::TooManyPeers(peers.len()));
    }
    // Peers are only ever spoken to over mutual TLS unless the operator said `insecure`.
    let security = (!peers.is_empty())
        .then(|| PeerSecurity::from_config(&config).map_err(|e| DaemonError::Peer(e.to_string())))
        .transpose()?;

    let chain = chain_reader(&config, &timing)?;
    let mut tasks = Vec::new();
    let alerter = alerts(&config, &shared, stop_rx.clone(), &mut tasks)?;
    let mut admin = crate::api::Admin {
        token: config.server.admin_token.clone(),
        operator: None,
        peer: None,
        peer_id: peers.first().map(|p| p.id.clone()),
    };
    let failover = start_failover(
        &config,
        &timing,
        wish,
        &shared,
        &alerter,
        chain.clone(),
        &security,
        &stop_rx,
    )
    .await?;
    let events = match failover {
        Some(f) => {
            admin.operator = Some(f.operator);
            admin.peer = f.peer;
            tasks.extend(f.tasks);
            Some((f.events, f.store))
        }
        None => None,
    };
    tasks.push(tokio::spawn(supervise_health(
        probe,
        chain,
        health_params(&config),
        config.failover.health_check_interval(),
        shared.clone(),
        events.as_ref().map(|(tx, _)| tx.clone()),
        stop_rx.clone(),
    )));

    serve(
        &config, &shared, admin, events, security, listener, shutdown,
    )
    .await?;
    if let Ok(n) = crate::sd_notify::Notifier::from_env() {
        let _ = n.stopping();
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

/// The failover side for the configured backend, or `None` (no peer configured: monitoring
/// only).
#[allow(clippy::too_many_arguments)]
async fn start_failover(
    config: &Config,
    timing: &syncguard_timing::Timing,
    wish: NodeRole,
    shared: &Shared,
    alerter: &syncguard_alerts::Alerter,
    chain: Option<Arc<ChainReader>>,
    security: &Option<PeerSecurity>,
    stop_rx: &watch::Receiver<bool>,
) -> Result<Option<Started>, DaemonError> {
    let peers = &config.communication.peers;
    Ok(
        match (config.coordination.backend, peers.first(), security) {
            // coordination.backend: etcd — the lock decides; the others publish their status in
            // etcd (peers in the config are optional there).
            (Backend::Etcd, _, _) => {
                let base = FailoverBase::new(config, timing, wish, shared, alerter, chain)?;
                Some(start_etcd(config, timing, base, stop_rx.clone()).await?)
            }
            (Backend::Peer, Some(peer), Some(security)) => {
                let base = FailoverBase::new(config, timing, wish, shared, alerter, chain)?;
                let stop = stop_rx.clone();
                Some(start_peer(config, timing, peer, security, base, stop)?)
            }
            _ => {
                tracing::warn!(
                "no peer configured: monitoring health only; this node never starts or stops story"
            );
                None
            }
        },
    )
}

/// The HTTP API until `shutdown`: the public and admin routes, plus the peer API over mutual
/// TLS when a peer backend runs.
async fn serve(
    config: &Config,
    shared: &Shared,
    admin: crate::api::Admin,
    events: Option<(mpsc::Sender<Event>, Arc<StateStore>)>,
    security: Option<PeerSecurity>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let public = crate::api::router(shared.clone(), admin);
    match (&events, &security) {
        (Some((tx, store)), Some(security)) => {
            let peer_router = crate::peer_api::router(shared.clone(), tx.clone(), store.clone());
            let server = PeerServer::from_config(config, security, public, peer_router)
                .map_err(|e| DaemonError::Peer(e.to_string()))?;
            server.serve(listener, shutdown).await;
        }
        _ => {
            let served = axum::serve(listener, public)
                .with_graceful_shutdown(shutdown)
                .await;
            if let Err(e) = served {
                tracing::error!("the HTTP API stopped: {e}");
            }
        }
    }
    Ok(())
}

/// The chain's commits, each read once: the machine's chain report every round, the witness,
/// the signing view of `/status` and `/metrics`. Without a readable key store there is no
/// address to look for (`None`; the preflight has already said why).
fn chain_reader(
    config: &Config,
    timing: &syncguard_timing::Timing,
) -> Result<Option<Arc<ChainReader>>, DaemonError> {
    Ok(
        match ValidatorKey::load_public(&config.story.validator_key_store) {
            Ok(key) => Some(Arc::new(ChainReader::new(
                CometClient::new(&config.story.comet_rpc_url, timing.rpc_timeout)?,
                &key.address_hex(),
                COMMITS_KEPT,
                COMMITS_PER_ROUND,
            ))),
            Err(e) => {
                tracing::warn!("not watching the validator's signatures on chain: {e}");
                None
            }
        },
    )
}

/// Alerts: the machine's records (through the driver) and the view's conditions (a watcher).
/// Sending never blocks; delivery runs on its own task.
fn alerts(
    config: &Config,
    shared: &Shared,
    stop: watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<syncguard_alerts::Alerter, DaemonError> {
    let alerter = if config.logging.enable_alerts {
        syncguard_alerts::spawn(&config.alerts, &config.server.id)?
    } else {
        syncguard_alerts::Alerter::disabled()
    };
    let source = alerter.clone();
    shared.metrics().set_alert_source(move || {
        let s = source.stats();
        crate::metrics::AlertCounts {
            sent: s.sent,
            failed: s.failed,
            dropped: s.dropped,
        }
    });
    if alerter.is_enabled() {
        tasks.push(crate::alerting::spawn_watcher(
            shared.clone(),
            alerter.clone(),
            config.communication.peers.first().map(|p| p.id.clone()),
            config.failover.health_check_interval(),
            stop,
        ));
    }
    Ok(alerter)
}

/// What every backend's failover side is built from, before anything runs, so that every
/// setup error (key store unreadable, unsafe timings, a bad epoch file) stops the start with
/// its reason.
struct FailoverBase {
    deps: Deps,
    store: Arc<StateStore>,
    origin: Instant,
    /// The first events: the boot, then every state this host already knows.
    first: Vec<Event>,
}

impl FailoverBase {
    fn new(
        config: &Config,
        timing: &syncguard_timing::Timing,
        wish: NodeRole,
        shared: &Shared,
        alerts: &syncguard_alerts::Alerter,
        chain: Option<Arc<ChainReader>>,
    ) -> Result<FailoverBase, DaemonError> {
        let store = Arc::new(StateStore::open(
            config.story.state_path(),
            Some(config.story.validator_state_backup.clone()),
        )?);
        let actuator = Arc::new(Actuator::with_options(
            config,
            store.clone(),
            ActuatorOptions::from_timing(timing),
        )?);
        // The witness needs the validator's address: without a readable key store the daemon
        // cannot decide anything (the daemon built no chain reader then).
        let chain = match chain {
            Some(chain) => chain,
            None => {
                ValidatorKey::load_public(&config.story.validator_key_store)?;
                return Err(DaemonError::NoChainReader);
            }
        };
        let epoch_file = EpochFile::beside(&config.story.validator_state_backup);
        let persisted = epoch_file.load()?;
        let wish = match wish {
            NodeRole::Active => Wish::Active,
            NodeRole::Passive => Wish::Passive,
        };
        let mut first = vec![Event::Start {
            wish,
            epoch_on_disk: persisted.map_or(0, |p| p.epoch),
            standby_right: persisted.map(|p| p.standby_right),
        }];
        for state in [store.read_if_exists()?, store.read_backup()?]
            .into_iter()
            .flatten()
        {
            first.push(Event::StateSeen { hrs: state.hrs() });
        }
        let origin = Instant::now();
        shared.update(|v| v.started_at = SystemTime::now());
        let deps = Deps {
            actuator,
            chain,
            dsc_wait: timing.dsc_wait,
            epoch_file,
            shared: shared.clone(),
            alerts: alerts.clone(),
        };
        Ok(FailoverBase {
            deps,
            store,
            origin,
            first,
        })
    }

    /// The machine's inbox, with the first events queued.
    fn inbox(&mut self) -> (mpsc::Sender<Event>, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(256);
        for event in self.first.drain(..) {
            // The channel is fresh and larger than this batch.
            let _ = tx.try_send(event);
        }
        (tx, rx)
    }
}

/// A running failover side: where events and operator commands go, its tasks.
struct Started {
    events: mpsc::Sender<Event>,
    store: Arc<StateStore>,
    operator: mpsc::Sender<OperatorRequest>,
    /// The peer backend's client (pause and resume are forwarded to the peer).
    peer: Option<Arc<PeerClient>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// `coordination.backend: peer`: the core over the pair arbiter; the peer is looked at
/// every round, its state file pulled into the backup, its messages sent over mutual TLS.
fn start_peer(
    config: &Config,
    timing: &syncguard_timing::Timing,
    peer: &PeerConfig,
    security: &PeerSecurity,
    mut base: FailoverBase,
    stop: watch::Receiver<bool>,
) -> Result<Started, DaemonError> {
    let client = PeerClient::from_config(config, security)
        .map_err(|e| DaemonError::Peer(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| DaemonError::Peer("no peer client could be built".into()))?;
    let client = Arc::new(client);
    let mut params = failover_params(config, peer, 0);
    params.timing = timing.clone();
    let machine = Machine::new(params)?;
    let (tx, inbox) = base.inbox();
    let (op_tx, op_rx) = mpsc::channel(16);
    let shared = base.deps.shared.clone();
    let link = Arc::new(crate::coordination::peer::PeerLink {
        client: client.clone(),
    });
    let driver = Driver::new(machine, base.origin, base.deps, link, tx.clone());
    let mut tasks = vec![tokio::spawn(driver.run(inbox, op_rx, stop.clone()))];
    let look_client = client.clone();
    let look = move |epoch| {
        let client = look_client.clone();
        async move {
            client
                .status(epoch)
                .await
                .map(|envelope| envelope.body)
                .map_err(|e| e.to_string())
        }
    };
    tasks.push(tokio::spawn(crate::peer_poll::poll_peer(
        look,
        config.failover.health_check_interval(),
        shared.clone(),
        tx.clone(),
        stop.clone(),
    )));
    tasks.push(tokio::spawn(sync_state(
        client.clone(),
        base.store.clone(),
        config.story.state_sync_interval(),
        shared,
        tx.clone(),
        stop,
    )));
    Ok(Started {
        events: tx,
        store: base.store,
        operator: op_tx,
        peer: Some(client),
        tasks,
    })
}

/// `coordination.backend: etcd`: the core over the lease arbiter; the lock is looked at
/// (and this node's status published) every round, the local state file watched for the
/// watermark, the lease kept while held.
async fn start_etcd(
    config: &Config,
    timing: &syncguard_timing::Timing,
    mut base: FailoverBase,
    stop: watch::Receiver<bool>,
) -> Result<Started, DaemonError> {
    let etcd = &config.coordination.etcd;
    let lease_timing = syncguard_coordination::LeaseTiming::from_config(etcd)?;
    let backend = syncguard_coordination::connect(etcd).await?;
    let interval = config.failover.health_check_interval();
    let priority = config.coordination.failover_priority;
    let step = interval * 2;
    let lease = LeaseParams {
        priority,
        rank: usize::try_from(priority).unwrap_or(usize::MAX),
        order: PromotionOrder::new(step, step / 2)?,
        lease_ttl: lease_timing.ttl,
    };
    let params = Params {
        node_id: NodeId::new(config.server.id.clone()),
        peer_id: NodeId::new(""),
        is_primary_site: config.is_primary_site(),
        peer_is_primary_site: false,
        fallback_grace_period: config.failover.fallback_grace_period(),
        timing: timing.clone(),
    };
    let machine = syncguard_failover::EtcdMachine::etcd(params, lease)?;
    let (tx, inbox) = base.inbox();
    let (op_tx, op_rx) = mpsc::channel(16);
    let shared = base.deps.shared.clone();
    let link = Arc::new(crate::coordination::lease::LeaseLink::new(
        backend.clone(),
        lease_timing,
        config.server.id.clone(),
        priority,
        base.origin,
        timing.handover_timeout,
    ));
    let driver = Driver::new(machine, base.origin, base.deps, link, tx.clone());
    let tasks = vec![
        tokio::spawn(driver.run(inbox, op_rx, stop.clone())),
        tokio::spawn(crate::coordination::lease::poll_lock(
            backend,
            crate::coordination::lease::Me {
                node_id: config.server.id.clone(),
                api: config.server.advertised_api(),
            },
            base.origin,
            interval,
            shared.clone(),
            tx.clone(),
            stop.clone(),
        )),
        tokio::spawn(crate::coordination::lease::watch_state(
            base.store.clone(),
            config.story.state_sync_interval().min(interval),
            shared,
            tx.clone(),
            stop,
        )),
    ];
    Ok(Started {
        events: tx,
        store: base.store,
        operator: op_tx,
        peer: None,
        tasks,
    })
}

fn current_epoch(shared: &Shared) -> u64 {
    shared.read(|v| v.failover.as_ref().map_or(0, |s| s.epoch))
}

fn held_role(shared: &Shared) -> Option<Role> {
    shared.read(|v| v.failover.as_ref().map(|s| s.held_role))
}

/// A ticker that, after a slow iteration, waits a full period instead of bursting. (A zero
/// period would panic: never below 50 ms.)
pub(crate) fn ticker(period: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval(period.max(Duration::from_millis(50)));
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// Waits for the next tick; false once the daemon is stopping.
pub(crate) async fn next_tick(
    ticker: &mut tokio::time::Interval,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = stop.changed() => false,
        _ = ticker.tick() => true,
    }
}

/// On a node that does not hold the role, pulls the peer's state file into the backup
/// (monotonic: a lower state is simply not taken) and tells the machine what it saw.
async fn sync_state(
    client: Arc<PeerClient>,
    store: Arc<StateStore>,
    interval: Duration,
    shared: Shared,
    events: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = ticker(interval);
    while next_tick(&mut ticker, &mut stop).await {
        if let Ok(Some(local)) = store.read_if_exists() {
            shared.update(|v| v.local_state = Some(local.hrs()));
        }
        if matches!(
            held_role(&shared),
            Some(Role::Active | Role::Promoting) | None
        ) {
            continue;
        }
        let snapshot = match client.state(current_epoch(&shared)).await {
            Ok(envelope) => envelope.body.state,
            Err(e) => {
                tracing::debug!("state sync: peer did not answer: {e}");
                continue;
            }
        };
        let hrs = snapshot.hrs();
        let taken = match store.write_backup(&snapshot) {
            Ok(_) => true,
            // Our backup is already higher: nothing to take, still a successful sync.
            Err(StoreError::Regression { .. }) => true,
            Err(e) => {
                tracing::error!("state sync: cannot record the peer's state: {e}");
                false
            }
        };
        if taken {
            shared.update(|v| {
                v.replica = Some(v.replica.map_or(hrs, |r| r.max(hrs)));
                v.replica_synced_at = Some(SystemTime::now());
            });
            if events.send(Event::StateSeen { hrs }).await.is_err() {
                return;
            }
        }
    }
}

/// Keeps the health loop running: a task that panics is noticed, reported as a failing
/// verdict (never the last good one), and restarted after one interval.
async fn supervise_health(
    probe: NodeProbe,
    chain: Option<Arc<ChainReader>>,
    params: HealthParams,
    interval: Duration,
    shared: Shared,
    events: Option<mpsc::Sender<Event>>,
    mut stop: watch::Receiver<bool>,
) {
    let probe = Arc::new(probe);
    // systemd: READY after the first round, WATCHDOG from every round — so a wedged health
    // loop stops the keep-alives and systemd restarts the daemon (`WatchdogSec=`).
    let notifier = Arc::new(crate::sd_notify::Notifier::from_env().unwrap_or_else(|e| {
        tracing::warn!("systemd notifications off: {e}");
        crate::sd_notify::Notifier::disabled()
    }));
    loop {
        let task = tokio::spawn(health_loop(
            probe.clone(),
            chain.clone(),
            params.clone(),
            interval,
            shared.clone(),
            events.clone(),
            notifier.clone(),
        ));
        let abort = task.abort_handle();
        tokio::select! {
            _ = stop.changed() => {
                abort.abort();
                return;
            }
            ended = task => {
                let why = match ended {
                    Err(e) if e.is_panic() => "the health task panicked".to_string(),
                    Err(e) => format!("the health task was cancelled: {e}"),
                    Ok(()) => "the health task exited".to_string(),
                };
                tracing::error!(reason = %why, "health monitoring interrupted; restarting it");
                let report = shared.read(|v| probe_died_report(&why, v.health.as_ref()));
                shared.update(|v| {
                    v.probe_restarts += 1;
                    v.health = Some(report);
                });
                if let Some(tx) = &events {
                    let down = LocalHealth {
                        healthy: false,
                        latest_height: None,
                        stalled: true,
                        why: Some(why),
                        block_age: None,
                        recovering: false,
                    };
                    let _ = tx.send(Event::LocalHealth(down)).await;
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// One task for the node's whole view each round: the health probes, then the commits not
/// read yet (so a round costs its probes plus the new blocks' commits), then the machine's
/// events and the view.
async fn health_loop(
    probe: Arc<NodeProbe>,
    chain: Option<Arc<ChainReader>>,
    params: HealthParams,
    interval: Duration,
    shared: Shared,
    events: Option<mpsc::Sender<Event>>,
    notifier: Arc<crate::sd_notify::Notifier>,
) {
    let mut state = HealthState::new();
    let mut ticker = ticker(interval);
    let mut ready = false;
    loop {
        ticker.tick().await;
        let sync = state_sync_seen(&shared);
        let obs = probe.observe(sync).await;
        let now = SystemTime::now();
        let before = state.verdict();
        let (next, report) = evaluate(&params, state, &obs, now);
        state = next;
        log_verdict_change(before, &report);
        // How old the node's newest block is (the self-fence's "follows no chain").
        let block_age = obs.status.as_ref().ok().and_then(|st| {
            st.latest_block_time
                .map(|t| now.duration_since(t).unwrap_or(Duration::ZERO))
        });
        let head = obs
            .status
            .as_ref()
            .ok()
            .map(|st| (st.latest_block_height, st.earliest_block_height));
        if let Some(tx) = &events {
            let _ = tx
                .send(Event::LocalHealth(local_health(&report, &state, block_age)))
                .await;
        }
        if let (Some(chain), Some((latest, earliest))) = (&chain, head) {
            let seen = chain.catch_up(latest, earliest).await;
            // The status page's strip, from the same log (no call of its own).
            let strip = chain.strip(latest, crate::signing_strip::HEIGHTS).await;
            shared.update(|v| {
                v.signing = SigningSeen {
                    validator_last_signed: seen.last_signed,
                    validator_missed_in_row: seen.missed_in_row,
                    checked_height: Some(seen.upto),
                };
                v.strip = Some(strip);
            });
            if let Some(tx) = &events {
                let report = ChainReport {
                    latest_height: seen.upto,
                    last_signed: seen.last_signed,
                    fastest_block: seen.fastest_block,
                };
                let _ = tx.send(Event::Chain(report)).await;
            }
        }
        let status = format!("{}; {}", role_word(&shared), report.summary);
        shared.update(|v| v.health = Some(report));
        if notifier.enabled() {
            let first = if ready { Ok(true) } else { notifier.ready() };
            let sent = first
                .and_then(|_| notifier.watchdog())
                .and_then(|_| notifier.status(&status));
            match sent {
                Ok(_) => ready = true,
                Err(e) => tracing::warn!("systemd notification failed: {e}"),
            }
        }
    }
}

/// The role for `systemctl status`.
fn role_word(shared: &Shared) -> String {
    shared.read(|v| match &v.failover {
        Some(s) => format!("{}", s.role),
        None => "monitoring only".to_string(),
    })
}

/// What the health checks should expect of state sync: only a standby pulls the state.
fn state_sync_seen(shared: &Shared) -> StateSyncSeen {
    shared.read(|v| match v.failover.as_ref().map(|s| s.held_role) {
        None | Some(Role::Active | Role::Promoting | Role::Demoting) => StateSyncSeen::NotExpected,
        Some(_) => match v.replica_synced_at {
            Some(t) => StateSyncSeen::Last(t),
            None => StateSyncSeen::Never {
                expected_since: v.started_at,
            },
        },
    })
}

/// The machine's view of one round: the verdict, the height, and whether the node sees no
/// new blocks (a stall or an unreachable node), with the failing checks as the reason.
fn local_health(
    report: &HealthReport,
    state: &HealthState,
    block_age: Option<Duration>,
) -> LocalHealth {
    let failing = |name: &str| {
        report
            .check(name)
            .is_some_and(|c| c.status == CheckStatus::Fail)
    };
    LocalHealth {
        healthy: report.healthy,
        latest_height: state.last_comet_height(),
        stalled: failing(names::COMET_HEIGHT) || failing(names::COMET_REACHABLE),
        why: (!report.healthy).then(|| report.summary.clone()),
        block_age,
        recovering: report.verdict == Verdict::Recovering,
    }
}

fn log_verdict_change(before: Verdict, report: &HealthReport) {
    if before == report.verdict {
        return;
    }
    match report.verdict {
        Verdict::Healthy => {
            tracing::info!(from = ?before, summary = %report.summary, "node is healthy")
        }
        Verdict::Unhealthy => {
            tracing::warn!(from = ?before, summary = %report.summary, "node is UNHEALTHY")
        }
        other => {
            tracing::info!(from = ?before, to = ?other, summary = %report.summary, "health verdict changed")
        }
    }
}

/// What `/health` says while the health task is being restarted: unhealthy, with the
/// reason, and the previous checks kept only for context.
fn probe_died_report(why: &str, last: Option<&HealthReport>) -> HealthReport {
    HealthReport {
        healthy: false,
        verdict: Verdict::Unhealthy,
        summary: format!("unhealthy: health monitoring was interrupted ({why}); restarting it"),
        round_failed: true,
        consecutive_failures: last.map_or(1, |r| r.consecutive_failures + 1),
        consecutive_successes: 0,
        checks: last.map(|r| r.checks.clone()).unwrap_or_default(),
        evaluated_at: SystemTime::now(),
    }
}
