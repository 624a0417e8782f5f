//! The command line, as clap definitions only. Handlers live in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use syncguard_config::NodeRole;

#[derive(Debug, Parser)]
#[command(
    name = "syncguard",
    version,
    about = "Active/passive failover for a Story Network validator that never signs twice",
    long_about = "SyncGuard runs beside each Story node. Exactly one node (the active) runs `story` \
with the validator key; the others run it as full nodes with a placeholder key. SyncGuard moves \
the role between them and carries priv_validator_state.json so that no height is signed twice."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch SyncGuard fail a validator over and back on a local simulated chain (no real
    /// keys, no network): crash of the active, failover, return of the primary, fallback,
    /// and a summary that must show 0 double signs.
    Demo(syncguard_devnet::demo::DemoArgs),
    /// The simulated chain's processes, run by `syncguard demo` itself.
    #[command(subcommand, hide = true)]
    Devnet(syncguard_devnet::cli::DevnetCommand),
    /// Run the SyncGuard daemon beside a Story node.
    Story(StoryArgs),
    /// Inspect or verify a priv_validator_state.json.
    #[command(subcommand)]
    State(StateCommand),
    /// Inspect a priv_validator_key.json (address and type only; never the private key).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Check a configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Ask the chain (through the local node) whether the validator signed the last blocks:
    /// the evidence SyncGuard needs before any unplanned promotion.
    Witness(WitnessArgs),
    /// The cluster as a table (role, epoch, health, heights, state lag, last contact): this
    /// node and its peer, or (etcd mode) every node etcd shows, and the lock. Exit 0 only when
    /// exactly one node is active and healthy.
    Status(StatusArgs),
    /// Planned handover of the validator role to another node, run on the active or on the
    /// target (etcd mode: on any node). Prints the plan (a dry run) unless --yes.
    Switchover(SwitchoverArgs),
    /// Maintenance: stop every automatic transition, on this node and its peer (etcd mode:
    /// on every node, through etcd).
    Pause(AdminArgs),
    /// End maintenance: automatic transitions again, on this node and its peer (etcd mode:
    /// on every node).
    Resume(AdminArgs),
    /// Last resort when the peer is down for good: take the validator role here without the
    /// peer's agreement (etcd mode: removing the lock a gone holder's lease still holds).
    /// This node's own health and a clean chain witness (no signature from
    /// the validator in the last blocks) are still required. Prints what it would do unless
    /// --yes.
    Takeover(ConfirmArgs),
    /// Leave `fenced` (after a self-fence) without waiting for the peer to be reachable; the
    /// node becomes passive and the normal rules apply.
    Unfence(AdminArgs),
    /// Write a commented config per node, a cluster CA, node certificates and placeholder
    /// keys into a new directory. Never overwrites a file. The validator key itself is the
    /// operator's to provision.
    Init(InitArgs),
    /// Write the manual pages, one per command, generated from these definitions (the
    /// Debian package ships them; `scripts/build-deb.sh` runs this).
    #[command(hide = true)]
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing; pages in it are replaced).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// The YAML configuration of this node (to find its daemon).
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Do it (without: only say what would happen).
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The YAML configuration of this node (to find its daemon and its peer).
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SwitchoverArgs {
    /// The node that should become active. Default: the node that is not active now.
    #[arg(long, value_name = "ID")]
    pub to: Option<String>,
    /// Do it. Without --yes only the plan and its checks are printed.
    #[arg(long)]
    pub yes: bool,
    /// The YAML configuration of this node.
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The YAML configuration of this node.
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// This node's id (server.id); it is the primary site.
    #[arg(long, value_name = "ID")]
    pub id: String,
    /// This node's address as its peers dial it (host:port).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8080")]
    pub address: String,
    /// A peer, as ID=HOST:PORT (repeat for each; the peer backend takes exactly one).
    #[arg(long = "peer", value_name = "ID=HOST:PORT", required = true)]
    pub peers: Vec<String>,
    /// Directory to write into (created if missing; files in it are never replaced).
    #[arg(long, value_name = "DIR", default_value = "syncguard-init")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct WitnessArgs {
    /// The YAML configuration file (for the RPC URL and the validator key store).
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Validator address (hex). Default: the address of story.validator_key_store.
    #[arg(long, value_name = "HEX")]
    pub address: Option<String>,
    /// How many recent commits to read. Default: story.witness_blocks.
    #[arg(long, value_name = "N")]
    pub blocks: Option<u64>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StoryArgs {
    /// The YAML configuration file.
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// The role to start in. A wish, not an order: a node asked to be active first checks
    /// that no other node holds the role and that the validator is not signing elsewhere.
    /// Default: story.node_role from the config, else passive.
    #[arg(long, value_name = "active|passive")]
    pub role: Option<NodeRole>,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Print the height, round, step and whether a signature is recorded.
    Show {
        #[arg(long, short, value_name = "FILE")]
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check the file is one CometBFT will accept: parses, signature and sign bytes agree
    /// with the height/round/step.
    Verify {
        #[arg(long, short, value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print the key's address and type, after checking they match the private key.
    Show {
        #[arg(long, short, value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file. Exit 0 when valid, 2 when not (every problem is listed).
    Check {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Check only the file itself: no paths are looked at and no network is touched.
        #[arg(long)]
        offline: bool,
    },
}
