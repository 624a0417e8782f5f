//! The daemon (`syncguard story`): a supervised health loop and the HTTP API.
//!
//! The loop is a thin shell: it runs one observation round per `health_check_interval`,
//! hands it to the pure `syncguard_health::evaluate`, and publishes the report. It never
//! decides anything itself. The failover engine (roles, peers, actuator) plugs in here when
//! it lands; until then the daemon monitors and reports, and never starts or stops `story`.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use syncguard_config::{Config, NodeRole, SiteRole};
use syncguard_health::{
    evaluate, HealthParams, HealthReport, HealthState, NodeProbe, SetupError, StateSyncSeen,
    Verdict,
};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot set up the RPC clients of the local node: {0}")]
    Setup(#[from] SetupError),
    #[error("the HTTP API stopped: {0}")]
    Serve(#[source] std::io::Error),
}

/// What the daemon knows about this node, as served by the API.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub node_id: String,
    pub site_role: SiteRole,
    pub role: NodeRole,
    #[serde(with = "humantime_serde_rfc3339")]
    pub started_at: SystemTime,
    /// The latest health report; none before the first round completes.
    pub health: Option<HealthReport>,
    /// Times the health task died and was restarted.
    pub probe_restarts: u32,
}

/// Shared between the health loop (writer) and the API (readers). A std lock: it is never
/// held across an await.
#[derive(Debug, Clone)]
pub struct Shared(Arc<RwLock<NodeView>>);

impl Shared {
    pub fn new(view: NodeView) -> Self {
        Shared(Arc::new(RwLock::new(view)))
    }
    /// A copy of the current view. A poisoned lock still holds the last complete write.
    pub fn snapshot(&self) -> NodeView {
        match self.0.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
    fn update(&self, f: impl FnOnce(&mut NodeView)) {
        match self.0.write() {
            Ok(mut v) => f(&mut v),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
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

/// Runs until `shutdown` completes: serves the API on `listener` and probes the node.
pub async fn run(
    config: Config,
    role: NodeRole,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let state_path = config.story.state_path();
    let state_dir = state_path.parent().unwrap_or(Path::new("/"));
    let probe = NodeProbe::new(
        &config.story.comet_rpc_url,
        &config.story.evm_rpc_url,
        config.health.rpc_timeout(),
    )?
    .with_state_dir(state_dir);
    let shared = Shared::new(NodeView {
        node_id: config.server.id.clone(),
        site_role: config.site_role(),
        role,
        started_at: SystemTime::now(),
        health: None,
        probe_restarts: 0,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let health = tokio::spawn(supervise_health(
        probe,
        health_params(&config),
        config.failover.health_check_interval(),
        shared.clone(),
        stop_rx,
    ));
    let served = axum::serve(listener, crate::api::router(shared))
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_tx.send(true);
    let _ = health.await;
    served.map_err(DaemonError::Serve)
}

/// Keeps the health loop running: a task that panics is noticed, reported as a failing
/// verdict (never the last good one), and restarted after one interval.
async fn supervise_health(
    probe: NodeProbe,
    params: HealthParams,
    interval: Duration,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) {
    let probe = Arc::new(probe);
    loop {
        let task = tokio::spawn(health_loop(
            probe.clone(),
            params.clone(),
            interval,
            shared.clone(),
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
                shared.update(|v| {
                    v.probe_restarts += 1;
                    v.health = Some(probe_died_report(&why, v.health.as_ref()));
                });
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

async fn health_loop(
    probe: Arc<NodeProbe>,
    params: HealthParams,
    interval: Duration,
    shared: Shared,
) {
    let mut state = HealthState::new();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let obs = probe.observe(StateSyncSeen::NotExpected).await;
        let before = state.verdict();
        let (next, report) = evaluate(&params, state, &obs, SystemTime::now());
        state = next;
        log_verdict_change(before, &report);
        shared.update(|v| v.health = Some(report));
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

/// RFC 3339 timestamps in JSON, as CometBFT writes them.
mod humantime_serde_rfc3339 {
    use std::time::SystemTime;

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }
}
