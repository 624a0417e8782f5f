//! SyncGuard's daemon and the pieces the `syncguard` binary is built from.
//!
//! - `daemon` — the long-running process: health loop (supervised) and HTTP API.
//! - `api` — axum routes (`GET /health`).
//! - `preflight` — checks of the files a config names (used by `config check` and at start).
//! - `logging` — tracing set up from the `logging:` section.
//!
//! The decisions themselves live in the pure crates: `syncguard-config`,
//! `syncguard-validator`, `syncguard-health`.

pub mod api;
pub mod daemon;
pub mod logging;
pub mod preflight;
