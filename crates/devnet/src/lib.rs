//! SyncGuard's devnet: a simulated Story chain and nodes, driven by real SyncGuard daemons
//! over real HTTP, with a ledger that flags every double sign (DESIGN §9). Never part of
//! the product's failover path.
//!
//! Processes (all run by the product's own binary as `syncguard devnet <command>`, see
//! [`cli`]):
//! - `chain` — block production, commits, chain-wide halt, the double-sign ledger
//!   ([`chain_server`] around the pure [`chain::ChainCore`] and [`ledger::Ledger`]).
//! - `node` — a Story node: CometBFT-shaped RPC, FilePV signing on real key/state files
//!   ([`node`], [`signer`], [`planner`]).
//! - `geth` — story-geth: EVM JSON-RPC following a node ([`geth`]).
//! - `ctl` — systemctl-like start/stop/status and faults ([`ctl`]).
//!
//! Modules:
//! - [`vote`] — canonical vote sign bytes (CometBFT's encoding), block hashes, times.
//! - [`api`] — JSON bodies of the chain's HTTP API and the ledger report.
//! - [`ledger`] — PURE: double-sign / S1 / bad-signature judgement.
//! - [`chain`] — PURE: the chain driven by `(call, now)`.
//! - [`chain_server`] — the chain's HTTP shell.
//! - [`planner`] — PURE: which (height, round) a node votes in, connected or cut off.
//! - [`signer`] — FilePV rules: check, sign, persist, then release.
//! - [`comet_json`] — CometBFT v0.38 RPC shapes.
//! - [`comet_config`] — PURE: `double_sign_check_height` of the node's `config.toml` and
//!   the heights CometBFT checks with it.
//! - [`node`], [`geth`], [`ctl`] — the processes.
//! - [`harness`] — [`Devnet`] for integration tests (and, later, `syncguard demo`).
//! - [`cli`] — the command line, embeddable as a subcommand of another binary.
//! - [`cluster`] — two real `syncguard story` daemons over mutual TLS on a devnet.
//! - [`demo`] — `syncguard demo`: scenarios on a [`cluster::Cluster`], a live view, a summary.
//! - [`soak`] — `syncguard devnet soak`: seeded random fault schedules, safety and recovery.
//! - [`bench`] — `syncguard devnet bench`: failover/switchover timings with p50/p95/max.
//!
//! Unix only (process groups, signals, `/proc`).

pub mod api;
pub mod bench;
pub mod chain;
pub mod chain_server;
pub mod cli;
pub mod cluster;
pub mod comet_config;
pub mod comet_json;
pub mod ctl;
pub mod demo;
pub mod etcd_cluster;
mod fsutil;
pub mod geth;
pub mod harness;
pub mod ledger;
pub mod link_proxy;
pub mod node;
pub mod planner;
pub mod playground;
mod procs;
pub mod signer;
pub mod soak;
pub mod vote;

pub use api::{BlockCommit, Head, LedgerReport, NodeCounts, Offense, OffenseKind, VoteMsg};
pub use cluster::{Cluster, ClusterError, ClusterOptions, StartRole};
pub use harness::{Devnet, DevnetOptions, HarnessError, Host, Launcher};
pub use node::{NodeInfo, RpcFault, RpcFaultMode};

/// The one line a server prints on stdout once bound: the harness waits for it.
pub(crate) fn print_listening(addr: std::net::SocketAddr) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    // If stdout is gone nobody is waiting for the line; the server still runs.
    let _ = writeln!(out, "listening on http://{addr}");
    let _ = out.flush();
}
