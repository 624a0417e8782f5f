//! The devnet's command line, as a library so that a binary (`syncguard`, as its hidden
//! `devnet` subcommand) can embed it: parse [`DevnetCommand`] (a clap
//! `Subcommand`) and call [`run`] with the arguments that select it (`&["devnet"]`), so that
//! `ctl start` re-invokes the right program.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::chain_server::{run_chain, ChainError, ChainOptions};
use crate::ctl::{self, CtlError, SelfExe};
use crate::geth::{run_geth, GethError, GethOptions};
use crate::node::{run_node, NodeError, NodeOptions};

/// The devnet's commands on their own (what `syncguard devnet` parses; tests use it).
#[derive(Debug, Parser)]
#[command(
    name = "syncguard devnet",
    version,
    about = "SyncGuard's devnet: a simulated chain with a double-sign ledger, simulated Story nodes and story-geth, and systemctl-like control"
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: DevnetCommand,
}

/// The devnet's commands.
#[derive(Debug, Subcommand)]
pub enum DevnetCommand {
    /// Run the simulated chain (block production, commits, halt/resume, the ledger).
    Chain(ChainArgs),
    /// Run a simulated Story node (CometBFT RPC; FilePV signing if its key is the validator's).
    Node(NodeArgs),
    /// Run a story-geth stand-in (EVM JSON-RPC following a node).
    Geth(GethArgs),
    /// Start/stop/status of a node like systemctl, and faults (kill, pause, resume).
    Ctl(CtlArgs),
    /// Seeded random fault schedules on two real daemons; checks 0 double signs, 0 S1
    /// violations, no state regression and recovery (exit 1 if any run failed).
    Soak(crate::soak::SoakArgs),
    /// Crash failover and planned switchover timings (p50/p95/max) on two real daemons.
    Bench(crate::bench::BenchArgs),
    /// The playground: two daemons on a devnet left running, with the commands to try and
    /// faults to inject printed; Ctrl-C tears everything down.
    Up(crate::playground::UpArgs),
}

/// `chain` options.
#[derive(Debug, Args)]
pub struct ChainArgs {
    /// Listen address; port 0 picks a free port (the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Block interval in milliseconds (≥ 10).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..))]
    pub block_time_ms: u64,
    /// The validator's address (hex).
    #[arg(long)]
    pub validator_address: String,
    /// The validator's public key (base64: 33 bytes compressed secp256k1, or 32 ed25519).
    #[arg(long)]
    pub validator_pubkey: String,
    /// Its amino type.
    #[arg(long, default_value = "tendermint/PubKeySecp256k1")]
    pub validator_pubkey_type: String,
    /// Directory for the chain's files (ledger.json).
    #[arg(long)]
    pub dir: PathBuf,
    /// Chain id.
    #[arg(long, default_value = "syncguard-devnet-1")]
    pub chain_id: String,
    /// Heights that already exist at start.
    #[arg(long, default_value_t = 10)]
    pub initial_height: u64,
    /// Exit when this process is gone.
    #[arg(long)]
    pub watch_pid: Option<i32>,
}

/// `node` options.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// CometBFT home (config/priv_validator_key.json, data/priv_validator_state.json).
    #[arg(long)]
    pub home: PathBuf,
    /// The chain's URL.
    #[arg(long)]
    pub chain: String,
    /// Where the CometBFT RPC listens.
    #[arg(long)]
    pub rpc_listen: SocketAddr,
    /// `n_peers` in /net_info (settable later with POST /devnet/peers).
    #[arg(long, default_value_t = 5)]
    pub peers: u64,
    /// Start delay in ms before the RPC answers and signing starts (the restart time).
    #[arg(long, default_value_t = 300)]
    pub restart_ms: u64,
    /// Node id in votes and moniker (default: the home's parent directory name).
    #[arg(long)]
    pub node_id: Option<String>,
    /// Exit when this process is gone.
    #[arg(long)]
    pub watch_pid: Option<i32>,
}

/// `geth` options.
#[derive(Debug, Args)]
pub struct GethArgs {
    /// The node's CometBFT RPC URL.
    #[arg(long)]
    pub node_rpc: String,
    /// Listen address; port 0 picks a free port (the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// `net_peerCount`.
    #[arg(long, default_value_t = 5)]
    pub peers: u64,
    /// How often to poll the node, ms.
    #[arg(long, default_value_t = 100)]
    pub poll_ms: u64,
    /// Exit when this process is gone.
    #[arg(long)]
    pub watch_pid: Option<i32>,
}

/// `ctl` options.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The action.
    #[command(subcommand)]
    pub action: CtlAction,
}

/// `ctl` actions.
#[derive(Debug, Subcommand)]
pub enum CtlAction {
    /// Start the node detached; returns at once (no-op if running).
    Start {
        /// The node's home.
        #[arg(long)]
        home: PathBuf,
        /// Arguments for `node` (after `--`), without `--home`.
        #[arg(last = true)]
        node_args: Vec<OsString>,
    },
    /// SIGTERM, SIGKILL after the timeout; returns when the node is gone.
    Stop {
        /// The node's home.
        #[arg(long)]
        home: PathBuf,
        /// Grace period before SIGKILL, ms.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
    },
    /// Exit 0 iff the node runs, 3 otherwise.
    Status {
        /// The node's home.
        #[arg(long)]
        home: PathBuf,
    },
    /// SIGKILL the node (a crash).
    Kill {
        /// The node's home.
        #[arg(long)]
        home: PathBuf,
    },
    /// SIGSTOP the node (a hang).
    Pause {
        /// The node's home.
        #[arg(long)]
        home: PathBuf,
    },
    /// SIGCONT the node.
    Resume {
        /// The node's home.
        #[arg(long)]
        home: PathBuf,
    },
}

/// Any failure of a devnet command.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// chain
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    /// node
    #[error("node: {0}")]
    Node(#[from] NodeError),
    /// geth
    #[error("geth: {0}")]
    Geth(#[from] GethError),
    /// ctl
    #[error("ctl: {0}")]
    Ctl(#[from] CtlError),
    /// soak or bench
    #[error("{0}")]
    Soak(#[from] crate::soak::SoakError),
    /// The playground failed.
    #[error("{0}")]
    Playground(#[from] crate::playground::PlaygroundError),
    /// The program's own path is unknown (needed by `ctl start`).
    #[error("cannot find this program's path: {0}")]
    SelfExe(std::io::Error),
}

fn default_node_id(home: &std::path::Path) -> String {
    // Homes are laid out as <host>/story by the harness: name the node after the host.
    let dir = if home.file_name().is_some_and(|n| n == "story") {
        home.parent().unwrap_or(home)
    } else {
        home
    };
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "node".into())
}

/// Run a devnet command. `self_prefix` are the arguments that select the devnet in the
/// current program (`&["devnet"]` in `syncguard`).
pub async fn run(cmd: DevnetCommand, self_prefix: &[&str]) -> Result<ExitCode, DevnetError> {
    match cmd {
        DevnetCommand::Chain(a) => {
            run_chain(ChainOptions {
                listen: a.listen,
                block_time: Duration::from_millis(a.block_time_ms),
                validator_address: a.validator_address,
                validator_pubkey_b64: a.validator_pubkey,
                validator_pubkey_type: a.validator_pubkey_type,
                dir: a.dir,
                chain_id: a.chain_id,
                initial_height: a.initial_height,
                watch_pid: a.watch_pid,
            })
            .await?;
        }
        DevnetCommand::Node(a) => {
            let node_id = a.node_id.unwrap_or_else(|| default_node_id(&a.home));
            run_node(NodeOptions {
                home: a.home,
                chain_url: a.chain,
                rpc_listen: a.rpc_listen,
                peers: a.peers,
                restart: Duration::from_millis(a.restart_ms),
                node_id,
                watch_pid: a.watch_pid,
            })
            .await?;
        }
        DevnetCommand::Geth(a) => {
            run_geth(GethOptions {
                node_rpc: a.node_rpc,
                listen: a.listen,
                peers: a.peers,
                poll: Duration::from_millis(a.poll_ms.max(1)),
                watch_pid: a.watch_pid,
            })
            .await?;
        }
        DevnetCommand::Ctl(c) => return run_ctl(c.action, self_prefix),
        DevnetCommand::Soak(a) => return Ok(crate::soak::run_args(a, self_prefix).await?),
        DevnetCommand::Bench(a) => return Ok(crate::bench::run_args(a, self_prefix).await?),
        DevnetCommand::Up(a) => return Ok(crate::playground::run_args(a, self_prefix).await?),
    }
    Ok(ExitCode::SUCCESS)
}

/// Entry point for a binary that embeds the devnet CLI as a subcommand (`syncguard devnet
/// …`): logs to stderr (a node's stderr is its `node.log`, so without
/// this the node logs would be empty), runs `cmd` on its own runtime and maps errors to exit
/// code 1. `self_prefix` selects the devnet in that binary (`&["devnet"]`).
pub fn main_embedded(cmd: DevnetCommand, self_prefix: &[&str]) -> ExitCode {
    // Another subscriber already set (e.g. by the host binary) is fine: it logs instead.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("devnet: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cmd, self_prefix)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("devnet: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_ctl(action: CtlAction, self_prefix: &[&str]) -> Result<ExitCode, DevnetError> {
    match action {
        CtlAction::Start { home, node_args } => {
            let exe = SelfExe {
                program: std::env::current_exe().map_err(DevnetError::SelfExe)?,
                prefix: self_prefix.iter().map(OsString::from).collect(),
            };
            let pid = ctl::start(&exe, &home, &node_args)?;
            println!("started (pid {pid})");
        }
        CtlAction::Stop { home, timeout_ms } => {
            let killed = ctl::stop(&home, Duration::from_millis(timeout_ms))?;
            println!(
                "{}",
                if killed {
                    "stopped (SIGKILL)"
                } else {
                    "stopped"
                }
            );
        }
        CtlAction::Status { home } => {
            return Ok(match ctl::running_pid(&home) {
                Some(pid) => {
                    println!("active (pid {pid})");
                    ExitCode::SUCCESS
                }
                None => {
                    println!("inactive");
                    ExitCode::from(ctl::EXIT_INACTIVE)
                }
            });
        }
        CtlAction::Kill { home } => ctl::kill(&home)?,
        CtlAction::Pause { home } => ctl::pause(&home, true)?,
        CtlAction::Resume { home } => ctl::pause(&home, false)?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn devnet_cli_parses_the_documented_forms() {
        Cli::command().debug_assert();
        let c = Cli::parse_from([
            "syncguard-devnet",
            "ctl",
            "start",
            "--home",
            "/h",
            "--",
            "--chain",
            "http://x",
            "--rpc-listen",
            "127.0.0.1:5",
        ]);
        let DevnetCommand::Ctl(CtlArgs {
            action: CtlAction::Start { home, node_args },
        }) = c.command
        else {
            panic!("not ctl start");
        };
        assert_eq!(home, PathBuf::from("/h"));
        assert_eq!(node_args.len(), 4);
        assert_eq!(
            default_node_id(std::path::Path::new("/d/host-a/story")),
            "host-a"
        );
        assert_eq!(default_node_id(std::path::Path::new("/d/n1")), "n1");
    }
}
