//! Test support for SyncGuard's crates. Never a dependency of the product.
//!
//! - `anvil` — starts a real EVM JSON-RPC node (`@foundry-rs/anvil`, installed into
//!   `.devtools/` by `scripts/install-test-deps.sh`) on a free loopback port.
//! - `comet_mock` — a CometBFT-shaped RPC whose chain advances with wall time, can be frozen
//!   (a stall) and told how many peers it has; its JSON follows `../shared/fixtures/cometbft`.
//! - `tools` — skip (or, under CI, fail) a test whose external tool is not installed.

pub mod anvil;
pub mod comet_mock;
pub mod tools;
