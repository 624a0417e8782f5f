//! SyncGuard's daemon and the pieces the `syncguard` binary is built from.
//!
//! - `daemon` — the long-running process: wires health, peer polling, state sync, ticks, the
//!   failover driver and the HTTP server together.
//! - `driver` — the one driver: owns the pure failover core (either backend), feeds it
//!   events, performs its actions, sleeps until its next timer.
//! - `coordination` — what differs between the backends on the async side: the peer link
//!   (protocol messages) and the lease link (the etcd lock, its lease, handovers, requests,
//!   the pause, member statuses).
//! - `chain_check` — the witness: reads the last commits for the validator's signature
//!   (through the health crate's commit log) when the machine asks.
//! - `epoch_file` — the epoch and standby right, persisted before they are acted on.
//! - `view` — what the daemon knows, shared by its tasks and its API.
//! - `api` — public routes (`/health`, `/status`, `/validator_state`, `/events`,
//!   `GET /switchover`) and the authenticated admin routes (`POST /switchover`, `/pause`,
//!   `/resume`), which relay operator commands to the machine and report its answer.
//! - `metrics` — `GET /metrics` (Prometheus text): counters bumped per failover record,
//!   gauges read from the view at scrape time by a pure mapping.
//! - `status_page` — `GET /`: one self-contained HTML page refreshing from `/status`,
//!   `/health` and `/events`.
//! - `signing_strip` — `signing.strip` of `/status` (pure): the last heights signed / missed /
//!   not yet known, from the commit log, and the role changes as markers at their heights.
//! - `alerting` — what is alerted (pure): the machine's records, and edges of the view's
//!   conditions (health, peer, state sync, missed blocks) found by a watcher task.
//! - `sd_notify` — systemd readiness and watchdog keep-alives.
//! - `peer_api` — `/peer/...` routes, served to authenticated peers only.
//! - `peer_poll` — one look at the peer per health round; a look still unanswered when the
//!   last news would age out is reported unreachable, so the machine never goes two rounds
//!   without news.
//! - `preflight` — checks of the files a config names (used by `config check` and at start).
//! - `logging` — tracing set up from the `logging:` section.
//!
//! The decisions themselves live in the pure crates: `syncguard-failover` (roles),
//! `syncguard-timing` (every timeout, derived), `syncguard-config`, `syncguard-validator`,
//! `syncguard-health`, `syncguard-coordination` (etcd mode).

pub mod alerting;
pub mod api;
mod chain_check;
pub mod coordination;
pub mod daemon;
pub mod driver;
pub mod epoch_file;
pub mod logging;
pub mod metrics;
pub mod peer_api;
mod peer_poll;
pub mod preflight;
pub mod sd_notify;
pub mod signing_strip;
pub mod status_page;
pub mod view;
