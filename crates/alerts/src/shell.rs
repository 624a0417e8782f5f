//! The async shell: one tokio task owns the [`Dispatcher`], makes the HTTP requests
//! (reqwest, rustls) each under `alerts.timeout`, and feeds the results back.
//! [`Alerter::notify`] only `try_send`s on a bounded channel: it never awaits, so the
//! failover path never waits for an alert.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use syncguard_config::AlertsConfig;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::alert::{Alert, Severity};
use crate::dispatch::{
    Accepted, AlertStats, Dispatcher, JobId, Outcome, SendError, SendJob, Tuning,
};
use crate::sink::{sinks_from_config, Sink};

/// Why the alerter could not start.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error("alerts: cannot start outside a tokio runtime")]
    NoRuntime,
    /// Names the setting; the URL itself may be a secret and is not shown.
    #[error("{key}: not a usable http(s) URL ({why})")]
    BadUrl { key: &'static str, why: String },
    #[error("alerts: cannot build the HTTP client: {0}")]
    Client(String),
}

/// The handle the daemon keeps. Cheap to clone; every clone feeds the same task.
/// Dropping every clone lets the task finish what is queued and stop.
#[derive(Clone)]
pub struct Alerter {
    tx: Option<mpsc::Sender<Alert>>,
    stats: Arc<watch::Sender<AlertStats>>,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerter")
            .field("enabled", &self.tx.is_some())
            .finish()
    }
}

impl Alerter {
    /// An alerter that does nothing (`logging.enable_alerts: false`).
    pub fn disabled() -> Self {
        Self {
            tx: None,
            stats: Arc::new(watch::Sender::new(AlertStats::default())),
        }
    }

    /// Hands an alert to the alert task. Never awaits and never blocks: when the channel
    /// is full (a sink hung for long) the alert is counted as dropped.
    pub fn notify(&self, alert: Alert) {
        let Some(tx) = &self.tx else {
            return;
        };
        if let Err(e) = tx.try_send(alert) {
            let alert = match e {
                mpsc::error::TrySendError::Full(a) | mpsc::error::TrySendError::Closed(a) => a,
            };
            tracing::warn!(
                kind = %alert.kind,
                "alert dropped (the alert queue is full): {}",
                alert.summary
            );
            self.stats.send_modify(|s| s.dropped += 1);
        }
    }

    /// The counters now.
    pub fn stats(&self) -> AlertStats {
        self.stats.borrow().clone()
    }

    /// A receiver that sees every change of the counters (for metrics, and for tests that
    /// wait for an outcome instead of sleeping).
    pub fn watch_stats(&self) -> watch::Receiver<AlertStats> {
        self.stats.subscribe()
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }
}

/// Starts the alert task for `alerts:` (call it only when `logging.enable_alerts` is true;
/// otherwise use [`Alerter::disabled`]). With no sink configured the task still runs and
/// writes each alert to the log, de-duplicated.
pub fn spawn(config: &AlertsConfig, node_id: &str) -> Result<Alerter, AlertsError> {
    spawn_with(
        sinks_from_config(config),
        Tuning::from_config(config),
        node_id,
    )
}

/// [`spawn`] with explicit sinks and tuning (tests shorten the backoff).
pub fn spawn_with(sinks: Vec<Sink>, tuning: Tuning, node_id: &str) -> Result<Alerter, AlertsError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| AlertsError::NoRuntime)?;
    for s in &sinks {
        match url::Url::parse(s.base_url()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(u) => {
                return Err(AlertsError::BadUrl {
                    key: s.config_key(),
                    why: format!("scheme `{}`", u.scheme()),
                })
            }
            Err(e) => {
                return Err(AlertsError::BadUrl {
                    key: s.config_key(),
                    why: e.to_string(),
                })
            }
        }
    }
    let client = reqwest::Client::builder()
        .user_agent(concat!("syncguard/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(tuning.timeout)
        .timeout(tuning.timeout)
        .build()
        .map_err(|e| AlertsError::Client(e.without_url().to_string()))?;
    let (tx, rx) = mpsc::channel(tuning.channel_bound.max(1));
    let dispatcher = Dispatcher::new(sinks, tuning);
    let stats = Arc::new(watch::Sender::new(dispatcher.stats().clone()));
    let names: Vec<&str> = dispatcher.sinks().map(Sink::name).collect();
    tracing::info!(
        node = node_id,
        "alerts on: sinks [{}]",
        if names.is_empty() {
            "none; alerts go to the log only".to_string()
        } else {
            names.join(", ")
        }
    );
    runtime.spawn(run(dispatcher, client, rx, Arc::clone(&stats)));
    Ok(Alerter {
        tx: Some(tx),
        stats,
    })
}

async fn run(
    mut d: Dispatcher,
    client: reqwest::Client,
    mut rx: mpsc::Receiver<Alert>,
    stats: Arc<watch::Sender<AlertStats>>,
) {
    let origin = Instant::now();
    let now = || Instant::now().saturating_duration_since(origin);
    let mut tries: JoinSet<Result<(), SendError>> = JoinSet::new();
    // Task id → job, so that even a try whose task died is reported and frees its sink.
    let mut jobs: HashMap<tokio::task::Id, JobId> = HashMap::new();
    let mut open = true;
    let mut published_drops = 0;
    loop {
        for job in d.poll(now()) {
            let id = job.id;
            let handle = tries.spawn(attempt(client.clone(), job, d.tuning().timeout));
            jobs.insert(handle.id(), id);
        }
        if !open && d.is_idle() {
            break;
        }
        let deadline = d.next_deadline().map(|at| origin + at);
        tokio::select! {
            msg = rx.recv(), if open => match msg {
                Some(alert) => {
                    let accepted = d.accept(&alert, now());
                    log_alert(&alert, accepted);
                }
                None => open = false,
            },
            Some(joined) = tries.join_next_with_id() => {
                let (task, result) = match joined {
                    Ok((task, result)) => (task, result),
                    Err(e) => (e.id(), Err(SendError::Network("the send task failed".into()))),
                };
                if let Some(id) = jobs.remove(&task) {
                    log_outcome(&d.on_result(id, result, now()), d.tuning().attempts);
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
            else => break,
        }
        publish(&stats, d.stats(), &mut published_drops);
    }
}

/// Copies the dispatcher's counters. `notify` adds its own drops straight to the published
/// value, so the dispatcher's drops are added as a delta (`published_drops` = how many of
/// them are in already); both happen under the watch's lock.
fn publish(stats: &watch::Sender<AlertStats>, mine: &AlertStats, published_drops: &mut u64) {
    let new_drops = mine.dropped.saturating_sub(*published_drops);
    *published_drops = mine.dropped;
    stats.send_if_modified(|s| {
        let merged = AlertStats {
            sent: mine.sent.clone(),
            failed: mine.failed.clone(),
            dropped: s.dropped + new_drops,
            deduplicated: mine.deduplicated,
        };
        let changed = *s != merged;
        *s = merged;
        changed
    });
}

async fn attempt(
    client: reqwest::Client,
    job: SendJob,
    timeout: Duration,
) -> Result<(), SendError> {
    let send = client.post(&job.request.url).json(&job.request.body).send();
    match tokio::time::timeout(timeout, send).await {
        Err(_) => Err(SendError::Timeout),
        Ok(Err(e)) if e.is_timeout() => Err(SendError::Timeout),
        // without_url: the Telegram URL holds the bot token, webhook URLs are secrets too.
        Ok(Err(e)) => Err(SendError::Network(error_chain(&e.without_url()))),
        Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
        Ok(Ok(resp)) => Err(SendError::Status(resp.status().as_u16())),
    }
}

/// "error sending request: tcp connect error: Connection refused (os error 111)". The
/// causes below reqwest's own error (hyper, io) do not carry the URL.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

fn log_alert(alert: &Alert, accepted: Accepted) {
    match (accepted, alert.severity) {
        (Accepted::Deduplicated, _) => tracing::debug!(
            kind = %alert.kind, key = %alert.dedup_key,
            "alert repeated within alerts.dedup_window; not sent again"
        ),
        (_, Severity::Critical) => {
            tracing::error!(kind = %alert.kind, epoch = ?alert.epoch, "alert: {}", alert.summary)
        }
        (_, Severity::Warning) => {
            tracing::warn!(kind = %alert.kind, epoch = ?alert.epoch, "alert: {}", alert.summary)
        }
        (_, Severity::Info) => {
            tracing::info!(kind = %alert.kind, epoch = ?alert.epoch, "alert: {}", alert.summary)
        }
    }
}

fn log_outcome(outcome: &Outcome, attempts: u32) {
    match outcome {
        Outcome::Sent { sink, attempt } => {
            tracing::debug!(sink, attempt, "alert delivered")
        }
        Outcome::Retry {
            sink,
            attempt,
            error,
            ..
        } => tracing::warn!(
            sink,
            "alert to {sink} failed (try {attempt} of {attempts}: {error}); will retry"
        ),
        Outcome::GaveUp {
            sink,
            attempt,
            error,
        } => tracing::error!(
            sink,
            "alert to {sink} given up after {attempt} tr{}: {error}",
            if *attempt == 1 { "y" } else { "ies" }
        ),
        Outcome::Unknown => {}
    }
}
