//! The daemon (`syncguard story`): wires the pure crates to the world.
//!
//! Tasks, each a thin shell that only observes or acts:
//! - health loop: one observation round per `health_check_interval` → pure verdict →
//!   `/health`, and `Event::LocalHealth` for the failover machine;
//! - peer poller (`peer_poll.rs`): the peer's `/peer/status` → `Event::Peer`, and a look
//!   still unanswered when the last news would age out (two rounds) → `Unreachable`;
//! - state sync: on a passive, the active's state file → the backup (never lower) →
//!   `Event::StateSeen`;
//! - ticker: `Event::Tick`, so the machine's deadlines fire;
//! - the driver (`driver.rs`): owns the machine and performs its actions;
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
    ChainReport, Event, LocalHealth, Machine, NodeId, Params, ParamsError, PeerMessage, Role, Wish,
};
use syncguard_health::{
    evaluate, names, ChainReader, CheckStatus, CometClient, HealthParams, HealthReport,
    HealthState, NodeProbe, SetupError, StateSyncSeen, Verdict,
};
use syncguard_peer::{PeerClient, PeerSecurity, PeerServer};
use syncguard_validator::{StateStore, StoreError, ValidatorKey};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::driver::{Deps, Driver, PeerSender};
use crate::epoch_file::{EpochFile, EpochFileError};
use crate::view::{NodeView, Shared, SigningSeen};

/// Heights of commits kept in memory (the longest witness reads at most 2,000).
const COMMITS_KEPT: u64 = 2_500;
/// The most commits read after one round (a node far ahead catches up over rounds).
const COMMITS_PER_ROUND: u64 = 200;

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
    #[error("etcd coordination cannot be set up: {0}")]
    Etcd(#[from] crate::etcd_driver::EtcdSetupError),
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

/// Runs until `shutdown` completes.
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
    let probe = NodeProbe::new(
        &config.story.comet_rpc_url,
        &config.story.evm_rpc_url,
        timing.rpc_timeout,
    )?
    .with_state_dir(state_path.parent().unwrap_or(Path::new("/")))
    .with_state_file(&state_path);
    let shared = Shared::new(NodeView::new(
        config.server.id.clone(),
        config.site_role(),
        wish,
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let peers = &config.communication.peers;
    if config.coordination.backend == Backend::Peer && peers.len() > 1 {
        return Err(DaemonError::TooManyPeers(peers.len()));
    }
    // Peers are only ever spoken to over mutual TLS unless the operator said `insecure`.
    let security = match peers.is_empty() {
        true => None,
        false => {
            Some(PeerSecurity::from_config(&config).map_err(|e| DaemonError::Peer(e.to_string()))?)
        }
    };

    // The chain's commits, each read once: the machine's chain report every round, the
    // witness, the signing view of `/status` and `/metrics`. Without a readable key store
    // there is no address to look for; the preflight has already said why.
    let chain = match ValidatorKey::load_public(&config.story.validator_key_store) {
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
    };

    let mut tasks = Vec::new();
    // Alerts: the machine's records (through the driver) and the view's conditions (a
    // watcher). Sending never blocks; delivery runs on its own task.
    let alerter = if config.logging.enable_alerts {
        syncguard_alerts::spawn(&config.alerts, &config.server.id)?
    } else {
        syncguard_alerts::Alerter::disabled()
    };
    {
        let alerter = alerter.clone();
        shared.metrics().set_alert_source(move || {
            let s = alerter.stats();
            crate::metrics::AlertCounts {
                sent: s.sent,
                failed: s.failed,
                dropped: s.dropped,
            }
        });
    }
    if alerter.is_enabled() {
        tasks.push(crate::alerting::spawn_watcher(
            shared.clone(),
            alerter.clone(),
            peers.first().map(|p| p.id.clone()),
            config.failover.health_check_interval(),
            stop_rx.clone(),
        ));
    }
    let mut admin = crate::api::Admin {
        token: config.server.admin_token.clone(),
        operator: None,
        peer: None,
        peer_id: peers.first().map(|p| p.id.clone()),
    };
    let events = match (peers.first(), &security) {
        // coordination.backend: etcd — the lock decides; peers are optional. The health
        // loop below feeds its rounds to the etcd driver through `started.events`.
        _ if config.coordination.backend == Backend::Etcd => {
            let started = crate::etcd_driver::start(
                &config,
                wish,
                shared.clone(),
                alerter.clone(),
                chain.clone(),
                stop_rx.clone(),
            )
            .await?;
            admin.operator = Some(started.operator);
            tasks.extend(started.tasks);
            Some((started.events, started.store))
        }
        (Some(peer), Some(security)) => {
            let (tx, inbox) = mpsc::channel(256);
            let (op_tx, op_rx) = mpsc::channel(16);
            let failover = Failover::start(
                &config,
                &timing,
                peer,
                security,
                wish,
                shared.clone(),
                tx.clone(),
                alerter.clone(),
                chain.clone(),
            )?;
            admin.operator = Some(op_tx);
            admin.peer = Some(failover.client.clone());
            tasks.push(tokio::spawn(failover.driver.run(
                inbox,
                op_rx,
                stop_rx.clone(),
            )));
            let client = failover.client.clone();
            let look = move |epoch| {
                let client = client.clone();
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
                stop_rx.clone(),
            )));
            tasks.push(tokio::spawn(sync_state(
                failover.client.clone(),
                failover.store.clone(),
                config.story.state_sync_interval(),
                shared.clone(),
                tx.clone(),
                stop_rx.clone(),
            )));
            tasks.push(tokio::spawn(tick(
                config.failover.health_check_interval() / 4,
                tx.clone(),
                stop_rx.clone(),
            )));
            Some((tx, failover.store))
        }
        _ => {
            tracing::warn!(
                "no peer configured: monitoring health only; this node never starts or stops story"
            );
            None
        }
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

    let public = crate::api::router(shared.clone(), admin);
    match (&events, &security) {
        (Some((tx, store)), Some(security)) => {
            let peer_router = crate::peer_api::router(shared.clone(), tx.clone(), store.clone());
            let server = PeerServer::from_config(&config, security, public, peer_router)
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
    if let Ok(n) = crate::sd_notify::Notifier::from_env() {
        let _ = n.stopping();
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

/// The failover side of the daemon, built before anything runs so that every setup error
/// (lock held, key store unreadable, unsafe timings) stops the start with its reason.
struct Failover {
    driver: Driver,
    client: Arc<PeerClient>,
    store: Arc<StateStore>,
}

impl Failover {
    #[allow(clippy::too_many_arguments)]
    fn start(
        config: &Config,
        timing: &syncguard_timing::Timing,
        peer: &PeerConfig,
        security: &PeerSecurity,
        wish: NodeRole,
        shared: Shared,
        tx: mpsc::Sender<Event>,
        alerts: syncguard_alerts::Alerter,
        chain: Option<Arc<ChainReader>>,
    ) -> Result<Failover, DaemonError> {
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
        // cannot decide anything.
        let chain = match chain {
            Some(chain) => chain,
            None => {
                ValidatorKey::load_public(&config.story.validator_key_store)?;
                return Err(DaemonError::Peer("no chain reader".into()));
            }
        };
        let client = PeerClient::from_config(config, security)
            .map_err(|e| DaemonError::Peer(e.to_string()))?
            .into_iter()
            .next()
            .ok_or_else(|| DaemonError::Peer("no peer client could be built".into()))?;
        let client = Arc::new(client);
        let epoch_file = EpochFile::beside(&config.story.validator_state_backup);
        let persisted = epoch_file.load()?;
        let mut params = failover_params(config, peer, 0);
        params.timing = timing.clone();
        let machine = Machine::new(params)?;
        let origin = Instant::now();
        shared.update(|v| v.started_at = SystemTime::now());
        let driver = Driver::new(
            machine,
            origin,
            Deps {
                actuator,
                chain,
                dsc_wait: timing.dsc_wait,
                epoch_file,
                peer: client.clone(),
                shared,
                alerts,
            },
            tx.clone(),
        );
        // The first events: the boot, then every state this host already knows.
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
        for event in first {
            // The channel is fresh and larger than this batch.
            let _ = tx.try_send(event);
        }
        Ok(Failover {
            driver,
            client,
            store,
        })
    }
}

impl PeerSender for PeerClient {
    fn send(
        &self,
        epoch: u64,
        message: PeerMessage,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            PeerClient::send(self, epoch, message)
                .await
                .map_err(|e| e.to_string())
        })
    }
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

async fn tick(every: Duration, events: mpsc::Sender<Event>, mut stop: watch::Receiver<bool>) {
    let mut ticker = ticker(every.max(Duration::from_millis(50)));
    while next_tick(&mut ticker, &mut stop).await {
        if events.send(Event::Tick).await.is_err() {
            return;
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
        let latest = obs.status.as_ref().ok().map(|st| st.latest_block_height);
        if let Some(tx) = &events {
            let _ = tx
                .send(Event::LocalHealth(local_health(&report, &state, block_age)))
                .await;
        }
        if let (Some(chain), Some(latest)) = (&chain, latest) {
            let seen = chain.catch_up(latest).await;
            shared.update(|v| {
                v.signing = SigningSeen {
                    validator_last_signed: seen.last_signed,
                    validator_missed_in_row: seen.missed_in_row,
                    checked_height: Some(seen.upto),
                }
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
