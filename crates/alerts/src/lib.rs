//! SyncGuard's alerts: a generic JSON webhook, Slack, Discord, Telegram and PagerDuty
//! Events v2, with retries and backoff, a send timeout, de-duplication of repeats, and a
//! hand-off that never blocks the failover path.
//!
//! - `alert.rs` — [`Alert`], [`AlertKind`], [`Severity`], the dedup and incident keys, and
//!   [`alert_for_record_tag`] (failover record tag → alert).
//! - `sink.rs` — [`Sink`] and the pure payload builder of each service.
//! - `dispatch.rs` — [`Dispatcher`], the pure core: dedup, bounded queues, retries, give-up,
//!   counters; explicit `now`, tested in simulated time.
//! - `shell.rs` — [`spawn`] / [`Alerter`]: the tokio task and HTTP client around it.
//!
//! Secrets (the Telegram bot token, the PagerDuty routing key, webhook URLs) never appear in
//! `Debug`, logs or errors.

mod alert;
mod dispatch;
mod shell;
mod sink;

pub use alert::{alert_for_record_tag, Alert, AlertKind, Severity};
pub use dispatch::{Accepted, AlertStats, Dispatcher, JobId, Outcome, SendError, SendJob, Tuning};
pub use shell::{spawn, spawn_with, Alerter, AlertsError};
pub use sink::{
    discord_body, pagerduty_body, sinks_from_config, slack_body, telegram_body, telegram_url, text,
    webhook_body, Request, Sink,
};
