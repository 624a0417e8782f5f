//! SyncGuard's daemon and the pieces the `syncguard` binary is built from.
//!
//! - `daemon` — the long-running process: wires health, peer polling, state sync, ticks, the
//!   failover driver and the HTTP server together.
//! - `driver` — owns the pure failover machine, feeds it events, performs its actions.
//! - `epoch_file` — the epoch and standby right, persisted before they are acted on.
//! - `view` — what the daemon knows, shared by its tasks and its API.
//! - `api` — public routes (`/health`, `/status`, `/validator_state`, `/events`,
//!   `GET /switchover`) and the authenticated admin routes (`POST /switchover`, `/pause`,
//!   `/resume`), which relay operator commands to the machine and report its answer.
//! - `peer_api` — `/peer/...` routes, served to authenticated peers only.
//! - `preflight` — checks of the files a config names (used by `config check` and at start).
//! - `logging` — tracing set up from the `logging:` section.
//!
//! The decisions themselves live in the pure crates: `syncguard-config`,
//! `syncguard-validator`, `syncguard-health`.

pub mod api;
pub mod daemon;
pub mod driver;
pub mod epoch_file;
pub mod logging;
pub mod peer_api;
pub mod preflight;
pub mod view;
