//! The configuration schema: every key, its default and its unit.
//!
//! Units: `story.block_interval` is in **milliseconds** (as in the seed); every other interval,
//! timeout or period is in **seconds** and may be fractional (`0.5`).
//!
//! Every struct carries `#[serde(default)]`, so any key may be left out. A key written with no
//! value (`tls:`) also means "use the default" (see `parse.rs`). Unknown keys are not silently
//! ignored: the loader reports them, with a suggestion when a known key is near.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kill_command::derive_kill_command;

/// The whole `config-story.yaml`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    pub server: ServerConfig,
    pub story: StoryConfig,
    pub failover: FailoverConfig,
    pub health: HealthConfig,
    pub communication: CommunicationConfig,
    pub coordination: CoordinationConfig,
    pub alerts: AlertsConfig,
    pub logging: LoggingConfig,
}

/// The site's standing (`server.role`). It must agree with `story.is_primary_site`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SiteRole {
    /// The preferred active: fallback returns the role here.
    Primary,
    Secondary,
}

/// The kind of chain the node serves (`story.chain_profile`): what is probed besides
/// CometBFT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainProfile {
    /// Story: CometBFT plus story-geth (the EVM checks of `story.evm_rpc_url`).
    #[default]
    Story,
    /// Any CometBFT v0.37/v0.38 chain whose validator signs with a local key file
    /// (secp256k1 or ed25519): CometBFT only — the EVM checks are absent, not failing.
    Cometbft,
}

impl ChainProfile {
    /// Whether an EVM node stands beside CometBFT (and is probed).
    pub fn has_evm(self) -> bool {
        self == ChainProfile::Story
    }
}

/// What the node should be doing now (`story.node_role`, `--role`). A wish, not an order:
/// a node asked to start active still checks that nobody else signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Active,
    Passive,
}

impl std::str::FromStr for NodeRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(NodeRole::Active),
            "passive" => Ok(NodeRole::Passive),
            other => Err(format!(
                "`{other}` is not a role: use `active` or `passive`"
            )),
        }
    }
}

impl std::fmt::Display for NodeRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeRole::Active => "active",
            NodeRole::Passive => "passive",
        })
    }
}

/// `server:` — this SyncGuard instance and its HTTP port.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct ServerConfig {
    /// Unique id of this node in the cluster (peers refer to it). Default: empty, which the
    /// validator rejects — two hosts must never share an id.
    pub id: String,
    /// `primary` or `secondary`. Default: derived from `story.is_primary_site`, else `secondary`.
    pub role: Option<SiteRole>,
    /// Address the HTTP API binds to. Default `0.0.0.0` (peers must reach it).
    pub bind: String,
    /// HTTP API port (health, status, peer protocol). Default 8080.
    pub port: u16,
    /// Where the other nodes' operators reach this node's public API, as `host:port`
    /// (etcd mode publishes it with this node's status, so `syncguard status` and
    /// `syncguard switchover` run on any node can read every node). Default:
    /// `<bind>:<port>` when `bind` is one address; none when it is `0.0.0.0` or `::`.
    pub advertise_address: Option<String>,
    /// Token for mutating admin calls (`POST /switchover`, `/pause`, `/resume`), compared in
    /// constant time. Default: none (admin calls then need mutual TLS).
    pub admin_token: Option<String>,
    /// Who may call the public API (`/health`, `/status`, `/events`, `/metrics`, admin
    /// routes): `any` (default) or `local` — only loopback clients and mutual-TLS callers
    /// with a certificate of the cluster CA. The peer API is mutual TLS either way.
    pub public_access: PublicAccess,
    /// Largest request body accepted on the public API, bytes. Default 65536. (The peer API
    /// has its own fixed bound, the largest protocol message.)
    pub max_body_bytes: usize,
    /// A request's headers must arrive within this, seconds (slowloris); an idle keep-alive
    /// connection is closed after it too. Default 10.
    pub header_timeout: Option<f64>,
    /// A request's body must arrive within this, seconds. Default 10.
    pub body_timeout: Option<f64>,
    /// Most connections served at once; more are closed at once. Default 256.
    pub max_connections: usize,
}

/// `server.public_access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PublicAccess {
    /// Everyone who reaches the port (today's behaviour).
    #[default]
    Any,
    /// Loopback clients and mutual-TLS callers with a cluster certificate only.
    Local,
}

impl ServerConfig {
    /// The public API's address as others should dial it: `advertise_address`, else
    /// `<bind>:<port>` when `bind` is one address (not `0.0.0.0` / `::`).
    pub fn advertised_api(&self) -> Option<String> {
        if let Some(a) = &self.advertise_address {
            return Some(a.clone());
        }
        let ip: std::net::IpAddr = self.bind.parse().ok()?;
        if ip.is_unspecified() {
            return None;
        }
        Some(std::net::SocketAddr::new(ip, self.port).to_string())
    }

    pub fn header_timeout(&self) -> Duration {
        secs(self.header_timeout.unwrap_or(10.0))
    }
    pub fn body_timeout(&self) -> Duration {
        secs(self.body_timeout.unwrap_or(10.0))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            id: String::new(),
            role: None,
            bind: "0.0.0.0".into(),
            port: 8080,
            advertise_address: None,
            admin_token: None,
            public_access: PublicAccess::Any,
            max_body_bytes: 64 * 1024,
            header_timeout: None,
            body_timeout: None,
            max_connections: 256,
        }
    }
}

/// `story:` — the Story node this SyncGuard guards, its files and how to start and stop it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct StoryConfig {
    /// `story` (CometBFT + story-geth) or `cometbft` (any CometBFT chain: no EVM checks).
    /// Default `story`.
    pub chain_profile: ChainProfile,
    /// CometBFT RPC of the local node. Default `http://localhost:26657`.
    pub comet_rpc_url: String,
    /// story-geth JSON-RPC of the local node (the `story` profile only). Default
    /// `http://localhost:8545`.
    pub evm_rpc_url: String,
    /// Story's CometBFT home; the default file paths below hang off it.
    /// Default `/root/.story/story` (`$HOME/.story/story` of the root user).
    pub home: PathBuf,
    /// CometBFT's `priv_validator_state.json`. Default `<home>/data/priv_validator_state.json`.
    pub validator_state_path: Option<PathBuf>,
    /// The highest state known on this host: the active's own copy, the passive's replica of
    /// the active's state. Never goes lower. Default `/var/lib/syncguard/priv_validator_state.json`.
    pub validator_state_backup: PathBuf,
    /// The role this node should start in: `active` or `passive`. Default `passive`.
    pub node_role: Option<NodeRole>,
    /// Whether this is the primary site. Default: derived from `server.role`, else `false`.
    pub is_primary_site: Option<bool>,
    /// Fewest CometBFT peers for a healthy node. Default 3.
    pub min_peers: u32,
    /// Expected block interval in **milliseconds**. Default 2400 (Story mainnet).
    pub block_interval: u64,
    /// How often the passive pulls the active's state, seconds. Default 5.
    pub state_sync_interval: f64,
    /// The live key file `story` reads. Default `<home>/config/priv_validator_key.json`.
    pub validator_key_path: Option<PathBuf>,
    /// The real validator key at rest on this host (mode 0600).
    /// Default `/etc/syncguard/priv_validator_key.json`.
    pub validator_key_store: PathBuf,
    /// A non-validator key installed while passive. Default `/etc/syncguard/placeholder_key.json`.
    pub placeholder_key_path: PathBuf,
    /// CometBFT's `config.toml`, read to recommend `double_sign_check_height`.
    /// Default `<home>/config/config.toml`.
    pub node_config_path: Option<PathBuf>,
    /// Command that starts `story`. Default `systemctl start story`.
    pub start_command: String,
    /// Command that stops `story`. Default `systemctl stop story`.
    pub stop_command: String,
    /// Command that kills `story` outright (SIGKILL), run when a stop is not confirmed within
    /// `stop_timeout`; the stop is then confirmed again the same way before anything moves.
    /// Default: derived from `stop_command` — `systemctl stop X` gives
    /// `systemctl kill --signal=SIGKILL X`; any other stop command needs it set.
    pub kill_command: Option<String>,
    /// Command that exits 0 while `story` runs and non-zero once it has stopped; with the
    /// CometBFT RPC refusing connections, it confirms a stop before any key or state moves.
    /// Default `systemctl is-active --quiet story`.
    pub status_command: String,
    /// How long the stop command and its confirmation may take, seconds; a stop not confirmed
    /// by then is escalated to the kill step. Default: derived so that a cut-off active has
    /// stopped within the failover window (`docs/TIMING.md`), at most 30.
    pub stop_timeout: Option<f64>,
    /// How long the kill step and its confirmation may take, seconds. Default: derived
    /// (half a health round, between 0.2 and 3).
    pub kill_timeout: Option<f64>,
    /// The longest time from the start command until `story` signs (its restart), seconds.
    /// An activation not verified by then plus `verify_blocks` blocks is rolled back.
    /// Default 30.
    pub start_timeout: Option<f64>,
    /// Blocks within which a newly active node's signatures must appear. Default 5.
    pub verify_blocks: u32,
    /// The fewest recent commits searched for the validator's signature before an unplanned
    /// promotion. The witness reads more when the timing model needs a longer span of block
    /// time (`docs/TIMING.md`). Default 5.
    pub witness_blocks: u32,
}

impl Default for StoryConfig {
    fn default() -> Self {
        Self {
            chain_profile: ChainProfile::Story,
            comet_rpc_url: "http://localhost:26657".into(),
            evm_rpc_url: "http://localhost:8545".into(),
            home: PathBuf::from("/root/.story/story"),
            validator_state_path: None,
            validator_state_backup: PathBuf::from("/var/lib/syncguard/priv_validator_state.json"),
            node_role: None,
            is_primary_site: None,
            min_peers: 3,
            block_interval: 2400,
            state_sync_interval: 5.0,
            validator_key_path: None,
            validator_key_store: PathBuf::from("/etc/syncguard/priv_validator_key.json"),
            placeholder_key_path: PathBuf::from("/etc/syncguard/placeholder_key.json"),
            node_config_path: None,
            start_command: "systemctl start story".into(),
            stop_command: "systemctl stop story".into(),
            kill_command: None,
            status_command: "systemctl is-active --quiet story".into(),
            stop_timeout: None,
            kill_timeout: None,
            start_timeout: None,
            verify_blocks: 5,
            witness_blocks: 5,
        }
    }
}

impl StoryConfig {
    pub fn state_path(&self) -> PathBuf {
        self.validator_state_path
            .clone()
            .unwrap_or_else(|| self.home.join("data/priv_validator_state.json"))
    }
    pub fn key_path(&self) -> PathBuf {
        self.validator_key_path
            .clone()
            .unwrap_or_else(|| self.home.join("config/priv_validator_key.json"))
    }
    pub fn node_config(&self) -> PathBuf {
        self.node_config_path
            .clone()
            .unwrap_or_else(|| self.home.join("config/config.toml"))
    }
    pub fn block_interval(&self) -> Duration {
        Duration::from_millis(self.block_interval)
    }
    pub fn state_sync_interval(&self) -> Duration {
        secs(self.state_sync_interval)
    }
    /// The kill command in force: `kill_command` when set, else the one derived from
    /// `stop_command` ([`derive_kill_command`]); `None` when neither (validation reports it).
    pub fn kill_command(&self) -> Option<String> {
        match &self.kill_command {
            Some(cmd) => Some(cmd.clone()),
            None => derive_kill_command(&self.stop_command),
        }
    }
}

/// `failover:` — detection and role-change timing.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct FailoverConfig {
    /// Seconds between health rounds. Default 5.
    pub health_check_interval: f64,
    /// Consecutive failed rounds that make a node unhealthy. Default 3.
    pub retry_attempts: u32,
    /// Seconds the primary must stay healthy before it takes the role back. Default 60.
    pub fallback_grace_period: f64,
    /// Seconds: when the newest block of an active's node is this old (it follows no chain)
    /// while its peer is unreachable, it fences itself. At least two blocks. Default: derived
    /// (three blocks plus a slack, `docs/TIMING.md`).
    pub self_fence_timeout: Option<f64>,
    /// Seconds a handover (or a request for the role) may wait for the peer's answer; it
    /// must cover the target's whole activation. Default: derived from the stop and start
    /// timeouts and `verify_blocks` (`docs/TIMING.md`).
    pub handover_timeout: Option<f64>,
    /// Seconds: the longest a passive waits, after the role moved, for the new holder's
    /// first signature before the normal failover rules apply again (the wait ends at that
    /// signature). Default: derived from the holder's whole activation (`docs/TIMING.md`).
    pub priority_margin: Option<f64>,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            health_check_interval: 5.0,
            retry_attempts: 3,
            fallback_grace_period: 60.0,
            self_fence_timeout: None,
            handover_timeout: None,
            priority_margin: None,
        }
    }
}

impl FailoverConfig {
    pub fn health_check_interval(&self) -> Duration {
        secs(self.health_check_interval)
    }
    pub fn fallback_grace_period(&self) -> Duration {
        secs(self.fallback_grace_period)
    }
}

/// `health:` — thresholds of the health checks (DESIGN §6).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct HealthConfig {
    /// Per-call timeout of every RPC request, seconds; shorter than a health round.
    /// Default: derived (0.4 × `failover.health_check_interval`, at most 2).
    pub rpc_timeout: Option<f64>,
    /// Seconds without a new block before the node counts as stalled.
    /// Default: derived from `story.block_interval` (see the health crate).
    pub stall_threshold: Option<f64>,
    /// Consecutive good rounds that make an unhealthy node healthy again.
    /// Default: `failover.retry_attempts`.
    pub recovery_rounds: Option<u32>,
    /// Free space below which the state directory's disk fails its check, MiB. Default 512.
    pub min_free_disk_mb: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            rpc_timeout: None,
            stall_threshold: None,
            recovery_rounds: None,
            min_free_disk_mb: 512,
        }
    }
}

/// `communication:` — the other SyncGuards and how we talk to them.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct CommunicationConfig {
    pub peers: Vec<PeerConfig>,
    /// Mutual TLS material for the peer protocol.
    pub tls: Option<TlsConfig>,
    /// Plain HTTP between peers. For local tests and the demo only; warned about at every start.
    pub insecure: bool,
    /// Timeout of one peer request, seconds; shorter than a health round. Default: derived
    /// (0.4 × `failover.health_check_interval`, at most 2).
    pub request_timeout: Option<f64>,
}

/// One other SyncGuard.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PeerConfig {
    pub id: String,
    /// `host:port` of the peer's SyncGuard HTTP API.
    pub address: String,
}

/// PEM files for mutual TLS.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TlsConfig {
    /// The cluster CA that signed every node's certificate.
    pub ca_cert: PathBuf,
    /// This node's certificate (its id in the subject alternative name).
    pub cert: PathBuf,
    /// This node's TLS private key.
    pub key: PathBuf,
}

/// Which coordination backend decides who may hold the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Two nodes, the chain as witness.
    #[default]
    Peer,
    /// A leader key under a lease in etcd, for three or more machines.
    Etcd,
}

/// `coordination:`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct CoordinationConfig {
    pub backend: Backend,
    pub etcd: EtcdConfig,
    /// Lower promotes first when several passives stand by. Default 0.
    pub failover_priority: u32,
}

/// `coordination.etcd:`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct EtcdConfig {
    /// `http(s)://host:port` of each etcd member.
    pub endpoints: Vec<String>,
    /// Key prefix. Default `/syncguard`.
    pub prefix: String,
    /// Lease time-to-live, seconds. Default 10.
    pub lease_ttl: f64,
    /// The active fences itself this many seconds before its lease would expire. Default 3.
    pub safety_margin: f64,
    pub tls: Option<TlsConfig>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            prefix: "/syncguard".into(),
            lease_ttl: 10.0,
            safety_margin: 3.0,
            tls: None,
        }
    }
}

/// `alerts:` — where alerts go when `logging.enable_alerts` is true.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct AlertsConfig {
    /// Generic JSON webhook.
    pub webhook_url: Option<String>,
    pub slack_webhook_url: Option<String>,
    pub discord_webhook_url: Option<String>,
    pub telegram: Option<TelegramConfig>,
    pub pagerduty: Option<PagerDutyConfig>,
    /// Timeout of one send, seconds. Default 5.
    pub timeout: f64,
    /// Attempts per alert, with backoff. Default 3.
    pub retries: u32,
    /// Identical alerts within this many seconds are sent once. Default 300.
    pub dedup_window: f64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            slack_webhook_url: None,
            discord_webhook_url: None,
            telegram: None,
            pagerduty: None,
            timeout: 5.0,
            retries: 3,
            dedup_window: 300.0,
        }
    }
}

/// `alerts.telegram:` — a bot posting to one chat. Debug never shows the bot token.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct TelegramConfig {
    /// A secret: it is part of the Bot API URL, so that URL is never logged either.
    pub bot_token: String,
    pub chat_id: String,
    /// Bot API base URL. Default `https://api.telegram.org` (tests point it elsewhere).
    pub api_url: String,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        Self {
            bot_token: String::new(),
            chat_id: String::new(),
            api_url: "https://api.telegram.org".into(),
        }
    }
}

impl std::fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("bot_token", &"<redacted>")
            .field("chat_id", &self.chat_id)
            .field("api_url", &self.api_url)
            .finish()
    }
}

/// `alerts.pagerduty:` — PagerDuty Events v2. Debug never shows the routing key.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct PagerDutyConfig {
    /// Events v2 integration key (a secret).
    pub routing_key: String,
    /// Events v2 endpoint. Default `https://events.pagerduty.com/v2/enqueue`.
    pub events_url: String,
}

impl Default for PagerDutyConfig {
    fn default() -> Self {
        Self {
            routing_key: String::new(),
            events_url: "https://events.pagerduty.com/v2/enqueue".into(),
        }
    }
}

impl std::fmt::Debug for PagerDutyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagerDutyConfig")
            .field("routing_key", &"<redacted>")
            .field("events_url", &self.events_url)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `logging:`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct LoggingConfig {
    /// `trace`, `debug`, `info`, `warn` or `error`. Default `info`.
    pub level: LogLevel,
    /// Adds targets and spans to each line. Default false.
    pub verbose: bool,
    /// Send alerts to the sinks in `alerts:`. Default false.
    pub enable_alerts: bool,
    /// Log file, besides stderr. Default `story-failover.log`.
    pub file: Option<PathBuf>,
    /// `text` or `json`. Default `text`.
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: LogLevel::Info,
            verbose: false,
            enable_alerts: false,
            file: Some(PathBuf::from("story-failover.log")),
            format: LogFormat::Text,
        }
    }
}

impl Config {
    /// The site's standing, reconciling `server.role` and `story.is_primary_site`
    /// (validation guarantees they agree when both are given).
    pub fn site_role(&self) -> SiteRole {
        match (self.server.role, self.story.is_primary_site) {
            (Some(role), _) => role,
            (None, Some(true)) => SiteRole::Primary,
            (None, _) => SiteRole::Secondary,
        }
    }
    pub fn is_primary_site(&self) -> bool {
        self.site_role() == SiteRole::Primary
    }
    /// The configured starting role; passive when unset, because starting passive is safe.
    pub fn node_role(&self) -> NodeRole {
        self.story.node_role.unwrap_or(NodeRole::Passive)
    }
    /// The timing model's inputs from this config; `double_sign_check_height` comes from the
    /// node's `config.toml` (0 when unknown).
    pub fn timing_inputs(&self, double_sign_check_height: u64) -> syncguard_timing::Inputs {
        let opt = |v: Option<f64>| v.map(secs);
        syncguard_timing::Inputs {
            health_check_interval: self.failover.health_check_interval(),
            retry_attempts: self.failover.retry_attempts,
            block_interval: self.story.block_interval(),
            stop_timeout: opt(self.story.stop_timeout),
            kill_timeout: opt(self.story.kill_timeout),
            start_timeout: opt(self.story.start_timeout),
            verify_blocks: self.story.verify_blocks,
            witness_blocks: Some(self.story.witness_blocks),
            double_sign_check_height,
            rpc_timeout: opt(self.health.rpc_timeout),
            request_timeout: opt(self.communication.request_timeout),
            self_fence_timeout: opt(self.failover.self_fence_timeout),
            handover_timeout: opt(self.failover.handover_timeout),
            priority_margin: opt(self.failover.priority_margin),
        }
    }
    /// Every timing, derived (`docs/TIMING.md`), with CometBFT's double-sign check off.
    /// Validation has reported any explicit value that breaks the model; if one slipped
    /// through, the derived defaults are used for all of them.
    pub fn timing(&self) -> syncguard_timing::Timing {
        self.timing_with(0)
    }
    /// [`Config::timing`] with the node's `double_sign_check_height`.
    pub fn timing_with(&self, double_sign_check_height: u64) -> syncguard_timing::Timing {
        syncguard_timing::derive_lenient(&self.timing_inputs(double_sign_check_height))
    }
    pub fn recovery_rounds(&self) -> u32 {
        self.health
            .recovery_rounds
            .unwrap_or(self.failover.retry_attempts)
    }
}

/// Seconds to a Duration without panicking on values validation would reject anyway.
pub(crate) fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}
