//! A two-daemon SyncGuard cluster on a devnet: the real `syncguard story` binary twice
//! (node-a on host-a, the primary; node-b on host-b), talking over mutual TLS with
//! certificates of a fresh cluster CA, each managing its host's simulated Story node through
//! the devnet's `ctl` commands. Used by `syncguard demo` ([`crate::demo`]) and by the
//! two-daemon tests.
//!
//! [`Cluster::start`] writes per host `<host>/syncguard.yaml`, `<host>/tls/{ca,node-x}.pem`,
//! and logs `<host>/syncguard.log` (the daemon's file log) and `<host>/syncguard.stderr.log`.
//! Daemons are killed (SIGKILL) when the [`Cluster`] is dropped, before the devnet goes.
//!
//! The syncguard binary is a parameter (the demo passes its own executable, tests the one
//! cargo built — see [`locate_syncguard`]); so is the devnet's [`Launcher`], so the same code
//! works with any program embedding the devnet CLI (`syncguard devnet …`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use syncguard_failover::NodeId;
use syncguard_peer::certs::{CertError, ClusterCa};

use crate::api::LedgerReport;
use crate::harness::{Devnet, DevnetOptions, HarnessError, Host, Launcher};
use crate::link_proxy::LinkProxy;
use crate::node::NodeInfo;

/// The daemons' node ids, in host order (node-a on host-a is the primary).
pub const NODE_IDS: [&str; 2] = ["node-a", "node-b"];

/// Environment variable naming the syncguard binary for [`locate_syncguard`].
pub const SYNCGUARD_BIN_ENV: &str = crate::harness::BIN_ENV;

/// An admin token both daemons accept (`server.admin_token`), for demos and tests only.
pub const DEMO_ADMIN_TOKEN: &str = "devnet-admin-token-0123456789";

/// Errors of the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The devnet failed.
    #[error("devnet: {0}")]
    Devnet(#[from] HarnessError),
    /// The syncguard binary is not there.
    #[error(
        "the syncguard binary is not at {}: build it with `cargo build -p syncguard` \
         (`cargo test` at the root builds it too) or set {SYNCGUARD_BIN_ENV}", .0.display()
    )]
    BinaryNotFound(PathBuf),
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What.
        action: &'static str,
        /// Which path.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Certificates could not be made or written.
    #[error("TLS material: {0}")]
    Cert(#[from] CertError),
    /// An HTTP call to a daemon failed.
    #[error("{what}: {source}")]
    Http {
        /// Which call.
        what: String,
        /// The error.
        #[source]
        source: reqwest::Error,
    },
    /// No daemon with that index.
    #[error("no daemon {0} (the cluster has two: 0 and 1)")]
    NoSuchDaemon(usize),
    /// A condition was not reached in time; `details` holds both daemons' views and logs.
    #[error("timed out after {after:?} waiting for {what}\n{details}")]
    Timeout {
        /// For what.
        what: String,
        /// How long.
        after: Duration,
        /// The daemons' status, events and log tails.
        details: String,
    },
    /// The ledger shows a double sign or an S1 violation.
    #[error("the ledger shows {double_signs} double sign(s) and {s1_violations} S1 violation(s): {offenses}")]
    Unsafe {
        /// Double signs.
        double_signs: u64,
        /// S1 violations.
        s1_violations: u64,
        /// The offences, as JSON.
        offenses: String,
    },
}

pub(crate) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ClusterError + 'a {
    move |source| ClusterError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The syncguard binary ([`crate::harness::find_syncguard`]).
pub fn locate_syncguard() -> Result<PathBuf, ClusterError> {
    crate::harness::find_syncguard().map_err(|looked| match looked {
        crate::harness::Looked::At(p) => ClusterError::BinaryNotFound(p),
        crate::harness::Looked::NoSelf(e) => io_err("find", Path::new("current exe"))(e),
    })
}

/// The `--role` a daemon is started with (a wish: the cluster decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartRole {
    /// `--role active`.
    Active,
    /// `--role passive`.
    Passive,
}

impl StartRole {
    /// The word on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            StartRole::Active => "active",
            StartRole::Passive => "passive",
        }
    }
}

/// The daemons' timing knobs: the keys an operator sets (`failover.*`, `story.*`, `health.*`
/// of the config); every other timing is derived by the timing model, as in production
/// (`docs/TIMING.md`). Chosen so a failover takes seconds on a devnet with sub-second blocks;
/// the defaults are those of the two-daemon tests.
#[derive(Debug, Clone)]
pub struct Timings {
    /// `failover.health_check_interval`, s.
    pub health_check_interval: f64,
    /// `failover.retry_attempts`.
    pub retry_attempts: u32,
    /// `failover.fallback_grace_period`, s. Default an hour: no fallback unless asked.
    pub fallback_grace_period: f64,
    /// `story.state_sync_interval`, s.
    pub state_sync_interval: f64,
    /// `story.stop_timeout`, s (the devnet's node stops in milliseconds).
    pub stop_timeout: f64,
    /// `story.kill_timeout`, s.
    pub kill_timeout: f64,
    /// `story.start_timeout`, s: the devnet's node signs well within this after its start.
    pub start_timeout: f64,
    /// `story.verify_blocks`.
    pub verify_blocks: u32,
    /// `story.witness_blocks` (the fewest commits a witness reads).
    pub witness_blocks: u32,
    /// `health.rpc_timeout`, s (explicit: shorter than a round).
    pub rpc_timeout: Option<f64>,
    /// `communication.request_timeout`, s (explicit: shorter than a round).
    pub request_timeout: Option<f64>,
    /// `health.stall_threshold`, s (the health verdict's).
    pub stall_threshold: f64,
    /// `health.recovery_rounds`.
    pub recovery_rounds: u32,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            health_check_interval: 0.5,
            retry_attempts: 3,
            fallback_grace_period: 3600.0,
            state_sync_interval: 0.5,
            stop_timeout: 0.3,
            kill_timeout: 0.2,
            start_timeout: 1.5,
            verify_blocks: 3,
            witness_blocks: 4,
            rpc_timeout: Some(0.3),
            request_timeout: Some(0.4),
            stall_threshold: 1.5,
            recovery_rounds: 2,
        }
    }
}

impl Timings {
    /// Every timing the daemons derive from these keys and the chain's block time (the
    /// bounds of the bench and the demo come from it).
    pub fn model(
        &self,
        block: Duration,
        double_sign_check_height: u64,
    ) -> syncguard_timing::Timing {
        let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
        let mut i = syncguard_timing::Inputs::new(
            secs(self.health_check_interval),
            self.retry_attempts,
            block,
        );
        i.stop_timeout = Some(secs(self.stop_timeout));
        i.kill_timeout = Some(secs(self.kill_timeout));
        i.start_timeout = Some(secs(self.start_timeout));
        i.verify_blocks = self.verify_blocks;
        i.witness_blocks = Some(self.witness_blocks);
        i.rpc_timeout = self.rpc_timeout.map(secs);
        i.request_timeout = self.request_timeout.map(secs);
        i.double_sign_check_height = double_sign_check_height;
        syncguard_timing::derive_lenient(&i)
    }

    /// The config lines of these keys (every daemon of a devnet cluster gets them).
    pub(crate) fn yaml(&self) -> TimingYaml {
        let opt =
            |key: &str, v: Option<f64>| v.map(|v| format!("  {key}: {v}\n")).unwrap_or_default();
        TimingYaml {
            story: format!(
                "  state_sync_interval: {}\n  stop_timeout: {}\n  kill_timeout: {}\n  start_timeout: {}\n  verify_blocks: {}\n  witness_blocks: {}\n",
                self.state_sync_interval,
                self.stop_timeout,
                self.kill_timeout,
                self.start_timeout,
                self.verify_blocks,
                self.witness_blocks
            ),
            failover: format!(
                "  health_check_interval: {}\n  retry_attempts: {}\n  fallback_grace_period: {}\n",
                self.health_check_interval, self.retry_attempts, self.fallback_grace_period
            ),
            health: format!(
                "{}  stall_threshold: {}\n  recovery_rounds: {}\n  min_free_disk_mb: 1\n",
                opt("rpc_timeout", self.rpc_timeout),
                self.stall_threshold,
                self.recovery_rounds
            ),
            request_timeout: opt("request_timeout", self.request_timeout),
        }
    }
}

/// [`Timings::yaml`]: the lines of each section, indented for it.
pub(crate) struct TimingYaml {
    pub story: String,
    pub failover: String,
    pub health: String,
    /// Under `communication:`.
    pub request_timeout: String,
}

/// Options of [`Cluster::start`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The `syncguard` binary.
    pub syncguard_bin: PathBuf,
    /// The devnet (its `hosts` is forced to 2; its `validator_hosts` says whose node runs
    /// with the validator key before the daemons start).
    pub devnet: DevnetOptions,
    /// `--role` of node-a and node-b.
    pub roles: [StartRole; 2],
    /// Timing knobs of both configs.
    pub timings: Timings,
    /// node-b's CA and certificate come from another cluster (a misconfiguration on purpose).
    pub foreign_ca_for_b: bool,
    /// `server.admin_token` of both daemons.
    pub admin_token: Option<String>,
    /// `RUST_LOG` of the daemons (their stderr goes to `<host>/syncguard.stderr.log`).
    pub log_filter: String,
    /// `logging.level` of the daemons' file log.
    pub log_level: String,
    /// `alerts.webhook_url` of both daemons (with `logging.enable_alerts: true`); None: no
    /// alerts.
    pub alert_webhook: Option<String>,
}

impl ClusterOptions {
    /// node-a active with the validator key, node-b passive; test timings; 300 ms blocks.
    pub fn new(syncguard_bin: impl Into<PathBuf>, launcher: Launcher) -> Self {
        let mut devnet = DevnetOptions::new(launcher);
        devnet.block_time = Duration::from_millis(300);
        ClusterOptions {
            syncguard_bin: syncguard_bin.into(),
            devnet,
            roles: [StartRole::Active, StartRole::Passive],
            timings: Timings::default(),
            foreign_ca_for_b: false,
            admin_token: Some(DEMO_ADMIN_TOKEN.to_string()),
            log_filter: "info,syncguard=debug".into(),
            log_level: "debug".into(),
            alert_webhook: None,
        }
    }
}

/// One `syncguard story` process.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    /// Its node id.
    pub id: String,
    /// Its HTTP port on 127.0.0.1 (public API and, over mutual TLS, the peer API).
    pub port: u16,
    /// Its config file.
    pub config: PathBuf,
    /// Its stderr log.
    pub log: PathBuf,
    /// The `--role` it was last started with.
    pub role: StartRole,
}

impl Daemon {
    /// SIGKILL: the daemon dies without cleaning anything up (its node keeps running).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Already gone is fine: the point is that it no longer runs.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process runs (false once killed or exited).
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a daemon's `GET /status` says, the parts the demo and tests look at.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct DaemonStatus {
    /// Role shown (`active`, `passive`, `promoting`, `demoting`, `fenced`, `paused`).
    pub role: String,
    /// Its epoch.
    pub epoch: Option<u64>,
    /// Its node's health verdict.
    pub healthy: bool,
    /// Its node's CometBFT height.
    pub comet_height: Option<u64>,
    /// Whether it reaches its peer.
    pub peer_reachable: bool,
}

impl DaemonStatus {
    fn from_json(v: &Value) -> Option<DaemonStatus> {
        let node = v.get("node")?;
        Some(DaemonStatus {
            role: node.get("role")?.as_str()?.to_string(),
            epoch: node.get("epoch").and_then(Value::as_u64),
            healthy: node.get("healthy").and_then(Value::as_bool) == Some(true),
            // `latest_height` is the number the daemon tells its peer; before the failover
            // machine runs there is only the height check's observation, "height 123 (+2)".
            comet_height: node
                .get("latest_height")
                .and_then(Value::as_u64)
                .or_else(|| node.get("comet_height").and_then(height_in)),
            peer_reachable: v
                .get("peer")
                .and_then(|p| p.get("reachable"))
                .and_then(Value::as_bool)
                == Some(true),
        })
    }
}

/// The first number in a height observation (`42`, `"42"`, `"height 42 (+2)"`).
fn height_in(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let s = v.as_str()?;
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let digits: String = s[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Two daemons on a devnet. Field order matters: daemons are dropped (killed) before the
/// devnet, so no daemon restarts a node the devnet is tearing down.
pub struct Cluster {
    daemons: Vec<Daemon>,
    /// `links[j]` carries the peer link towards daemon `j` (cut with [`Cluster::set_link_cut`]).
    links: Vec<LinkProxy>,
    /// The devnet under the daemons (chain, nodes, geths, ledger).
    pub devnet: Devnet,
    http: reqwest::Client,
    syncguard_bin: PathBuf,
    log_filter: String,
    admin_token: Option<String>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("devnet", &self.devnet)
            .field("daemons", &self.daemons)
            .finish()
    }
}

/// A port free on loopback now, for a process started later to listen on (see
/// [`crate::harness`]'s: one pool for everything a test process starts).
pub(crate) fn free_port() -> Result<u16, ClusterError> {
    Ok(crate::harness::free_port()?)
}

/// A YAML double-quoted scalar (paths and shell lines may hold `"` or `\`).
pub(crate) fn yaml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) fn p(path: &Path) -> String {
    yaml_str(&path.to_string_lossy())
}

/// The config of daemon `i` (node-a is the primary site).
#[allow(clippy::too_many_arguments)]
fn config_yaml(
    i: usize,
    host: &Host,
    port: u16,
    peer_port: u16,
    tls_dir: &Path,
    block_time: Duration,
    opts: &ClusterOptions,
) -> String {
    let id = NODE_IDS[i];
    let peer = NODE_IDS[1 - i];
    let t = opts.timings.yaml();
    let token = match &opts.admin_token {
        Some(t) => format!("  admin_token: {}\n", yaml_str(t)),
        None => String::new(),
    };
    format!(
        r#"# Written by syncguard-devnet's cluster for a devnet: everything on 127.0.0.1.
server:
  id: "{id}"
  role: "{site}"
  bind: "127.0.0.1"
  port: {port}
{token}story:
  chain_profile: {profile}
  comet_rpc_url: {comet}
  evm_rpc_url: {evm}
  home: {home}
  validator_state_path: {state}
  validator_state_backup: {backup}
  is_primary_site: {primary}
  min_peers: 1
  block_interval: {block_ms}
  validator_key_path: {live}
  validator_key_store: {store}
  placeholder_key_path: {placeholder}
  node_config_path: {node_config}
  start_command: {start}
  stop_command: {stop}
  kill_command: {kill}
  status_command: {status}
{story_timing}failover:
{failover_timing}health:
{health_timing}communication:
  peers:
    - id: "{peer}"
      address: "127.0.0.1:{peer_port}"
  tls:
    ca_cert: {ca}
    cert: {cert}
    key: {key}
{request_timeout}logging:
  level: "{level}"
  file: {log}
{alerts}"#,
        alerts = match &opts.alert_webhook {
            Some(url) => format!(
                "  enable_alerts: true\nalerts:\n  webhook_url: {}\n  timeout: 2\n  retries: 2\n",
                yaml_str(url)
            ),
            None => String::new(),
        },
        site = if i == 0 { "primary" } else { "secondary" },
        primary = i == 0,
        profile = if opts.devnet.geth {
            "story"
        } else {
            "cometbft"
        },
        comet = yaml_str(&host.comet_rpc_url),
        evm = yaml_str(&host.evm_rpc_url),
        home = p(&host.home),
        state = p(&host.state_file),
        backup = p(&host.state_backup),
        live = p(&host.live_key),
        store = p(&host.key_store),
        placeholder = p(&host.placeholder_key),
        node_config = p(&host.node_config),
        start = yaml_str(&host.start_command),
        stop = yaml_str(&host.stop_command),
        kill = yaml_str(&host.kill_command),
        status = yaml_str(&host.status_command),
        block_ms = block_time.as_millis().max(1),
        story_timing = t.story,
        failover_timing = t.failover,
        health_timing = t.health,
        request_timeout = t.request_timeout,
        ca = p(&tls_dir.join("ca.pem")),
        cert = p(&tls_dir.join(format!("{id}.pem"))),
        key = p(&tls_dir.join(format!("{id}.key"))),
        level = opts.log_level,
        log = p(&host.dir.join("syncguard.log")),
    )
}

fn spawn_daemon(
    bin: &Path,
    log_filter: &str,
    id: &str,
    config: &Path,
    role: StartRole,
    port: u16,
    dir: &Path,
) -> Result<Daemon, ClusterError> {
    let (child, log) = spawn_story(bin, log_filter, config, role, dir)?;
    Ok(Daemon {
        child: Some(child),
        id: id.to_string(),
        port,
        config: config.to_path_buf(),
        log,
        role,
    })
}

/// Starts `syncguard story --config <config> --role <role>` with `RUST_LOG=<log_filter>`;
/// its stderr is appended to `<dir>/syncguard.stderr.log` (returned), so a restarted
/// daemon's log follows the previous run's.
pub(crate) fn spawn_story(
    bin: &Path,
    log_filter: &str,
    config: &Path,
    role: StartRole,
    dir: &Path,
) -> Result<(Child, PathBuf), ClusterError> {
    let log = dir.join("syncguard.stderr.log");
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(io_err("open", &log))?;
    let child = Command::new(bin)
        .args(["story", "--config"])
        .arg(config)
        .args(["--role", role.as_str()])
        .env("RUST_LOG", log_filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(io_err("start", bin))?;
    Ok((child, log))
}

/// The last `lines` lines of a file ("" when unreadable: it is only shown to a human).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Cluster {
    /// Start the devnet, write TLS material and configs, start both daemons. Returns at
    /// once after spawning them; see [`Cluster::wait_roles`] and [`Cluster::wait_signing_by`].
    pub async fn start(opts: ClusterOptions) -> Result<Cluster, ClusterError> {
        if !opts.syncguard_bin.is_file() {
            return Err(ClusterError::BinaryNotFound(opts.syncguard_bin.clone()));
        }
        let mut devnet_opts = opts.devnet.clone();
        devnet_opts.hosts = 2;
        let block_time = devnet_opts.block_time;
        let devnet = Devnet::start(devnet_opts).await?;
        let ports = [free_port()?, free_port()?];
        // Each daemon reaches its peer through a proxy, so a test can cut just that link.
        let mut links = Vec::new();
        for port in ports {
            let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let proxy = LinkProxy::start(target).await.map_err(io_err(
                "start the peer-link proxy to",
                Path::new(&target.to_string()),
            ))?;
            links.push(proxy);
        }
        let peer_ports = [links[1].addr().port(), links[0].addr().port()];
        let ca = ClusterCa::generate()?;
        let mut daemons = Vec::new();
        for (i, id) in NODE_IDS.iter().enumerate() {
            let host = devnet.host(i)?.clone();
            let tls = host.dir.join("tls");
            std::fs::create_dir_all(&tls).map_err(io_err("create", &tls))?;
            // A node of another cluster: its whole TLS world (CA and certificate) is foreign.
            let other;
            let issuer = if i == 1 && opts.foreign_ca_for_b {
                other = ClusterCa::generate()?;
                &other
            } else {
                &ca
            };
            issuer.write_cert(&tls.join("ca.pem"))?;
            issuer
                .issue(&NodeId::new(*id), &["127.0.0.1".to_string()])?
                .write(
                    &tls.join(format!("{id}.pem")),
                    &tls.join(format!("{id}.key")),
                )?;
            if let Some(dir) = host.state_backup.parent() {
                std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
            }
            let config = host.dir.join("syncguard.yaml");
            let yaml = config_yaml(i, &host, ports[i], peer_ports[i], &tls, block_time, &opts);
            std::fs::write(&config, yaml).map_err(io_err("write", &config))?;
            daemons.push(spawn_daemon(
                &opts.syncguard_bin,
                &opts.log_filter,
                id,
                &config,
                opts.roles[i],
                ports[i],
                &host.dir,
            )?);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|source| ClusterError::Http {
                what: "build client".into(),
                source,
            })?;
        Ok(Cluster {
            daemons,
            links,
            devnet,
            http,
            syncguard_bin: opts.syncguard_bin,
            log_filter: opts.log_filter,
            admin_token: opts.admin_token,
        })
    }

    /// Cuts (or heals) only the SyncGuard-to-SyncGuard link, both directions: the daemons
    /// cannot reach each other, while their nodes, the chain and the operator's API are
    /// untouched.
    pub fn set_link_cut(&self, on: bool) {
        for l in &self.links {
            l.set_cut(on);
        }
    }

    /// Mutes (or unmutes) host `i`'s node: it keeps following the chain and signing, but its
    /// votes never make it into a commit (they still reach the ledger).
    pub async fn set_muted(&self, i: usize, on: bool) -> Result<NodeInfo, ClusterError> {
        Ok(self.devnet.set_muted(i, on).await?)
    }

    /// The syncguard binary the daemons run.
    pub fn syncguard_bin(&self) -> &Path {
        &self.syncguard_bin
    }

    /// The admin token both daemons accept, if any.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// Daemon `i` (0 = node-a, 1 = node-b).
    pub fn daemon(&self, i: usize) -> Result<&Daemon, ClusterError> {
        self.daemons.get(i).ok_or(ClusterError::NoSuchDaemon(i))
    }

    fn daemon_mut(&mut self, i: usize) -> Result<&mut Daemon, ClusterError> {
        self.daemons.get_mut(i).ok_or(ClusterError::NoSuchDaemon(i))
    }

    /// SIGKILL daemon `i` (its node keeps running).
    pub fn kill_daemon(&mut self, i: usize) -> Result<(), ClusterError> {
        self.daemon_mut(i)?.kill();
        Ok(())
    }

    /// The whole host `i` dies: its SyncGuard and its node (SIGKILL both; the daemon first,
    /// so it cannot react to its node's death).
    pub async fn crash_host(&mut self, i: usize) -> Result<(), ClusterError> {
        self.kill_daemon(i)?;
        self.devnet.kill_node(i).await?;
        Ok(())
    }

    /// Kill daemon `i` (if it runs) and start it again with `role`, same config and port.
    pub fn restart_daemon(&mut self, i: usize, role: StartRole) -> Result<(), ClusterError> {
        let bin = self.syncguard_bin.clone();
        let filter = self.log_filter.clone();
        let dir = self.devnet.host(i)?.dir.clone();
        let d = self.daemon_mut(i)?;
        d.kill();
        let (id, config, port) = (d.id.clone(), d.config.clone(), d.port);
        *d = spawn_daemon(&bin, &filter, &id, &config, role, port, &dir)?;
        Ok(())
    }

    fn url(&self, i: usize, path: &str) -> Result<String, ClusterError> {
        Ok(format!("http://127.0.0.1:{}{path}", self.daemon(i)?.port))
    }

    /// `GET path` on daemon `i`'s public API; None when it does not answer with JSON.
    pub async fn get(&self, i: usize, path: &str) -> Option<Value> {
        get_json(&self.http, self.daemon(i).ok()?.port, path).await
    }

    /// A POST to daemon `i`'s public API: (HTTP status, JSON body or null).
    pub async fn post(
        &self,
        i: usize,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<(u16, Value), ClusterError> {
        post_json(&self.http, &self.url(i, path)?, token, body).await
    }

    /// Daemon `i`'s `/status`, the parts that matter (None when it does not answer).
    pub async fn status(&self, i: usize) -> Option<DaemonStatus> {
        DaemonStatus::from_json(&self.get(i, "/status").await?)
    }

    /// The role daemon `i` shows (None when it does not answer).
    pub async fn role(&self, i: usize) -> Option<String> {
        self.status(i).await.map(|s| s.role)
    }

    /// Daemon `i`'s epoch.
    pub async fn epoch(&self, i: usize) -> Option<u64> {
        self.status(i).await.and_then(|s| s.epoch)
    }

    /// Daemon `i`'s node health verdict.
    pub async fn healthy(&self, i: usize) -> Option<bool> {
        self.status(i).await.map(|s| s.healthy)
    }

    /// Daemon `i`'s `/events` list (empty when it does not answer).
    pub async fn events(&self, i: usize) -> Vec<Value> {
        events_of(self.get(i, "/events").await)
    }

    /// Runs the `syncguard` CLI with `args` and `--config` of daemon `i`: (exit code, output).
    pub async fn cli(&self, i: usize, args: &[&str]) -> Result<(i32, String), ClusterError> {
        run_cli(&self.syncguard_bin, &self.daemon(i)?.config, args).await
    }

    /// The height in host `i`'s local state file (0 when unreadable).
    pub fn state_height(&self, i: usize) -> u64 {
        let Ok(host) = self.devnet.host(i) else {
            return 0;
        };
        let text = std::fs::read_to_string(&host.state_file).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        // CometBFT writes the height as a string; accept a number too.
        v["height"]
            .as_str()
            .and_then(|h| h.parse().ok())
            .or_else(|| v["height"].as_u64())
            .unwrap_or(0)
    }

    /// The ledger.
    pub async fn ledger(&self) -> Result<LedgerReport, ClusterError> {
        Ok(self.devnet.ledger().await?)
    }

    /// Precommits of host `i`'s node that made it into a commit (0 when unknown).
    pub async fn signed_by(&self, i: usize) -> u64 {
        signed_in_commits(&self.devnet, i).await
    }

    /// The ledger, or [`ClusterError::Unsafe`] when it shows a double sign or S1 violation.
    pub async fn check_ledger(&self) -> Result<LedgerReport, ClusterError> {
        let l = self.ledger().await?;
        if l.double_signs == 0 && l.s1_violations == 0 {
            Ok(l)
        } else {
            Err(ClusterError::Unsafe {
                double_signs: l.double_signs,
                s1_violations: l.s1_violations,
                offenses: serde_json::to_string(&l.offenses).unwrap_or_default(),
            })
        }
    }

    /// Polls `pred` every 100 ms until it holds; on timeout the error carries
    /// [`Cluster::describe`].
    pub async fn wait_until<F, Fut>(
        &self,
        what: &str,
        bound: Duration,
        pred: F,
    ) -> Result<(), ClusterError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        poll_until(what, bound, pred, || self.describe()).await
    }

    /// Waits until node-a and node-b show `want` (e.g. `["active", "passive"]`).
    pub async fn wait_roles(&self, want: [&str; 2], bound: Duration) -> Result<(), ClusterError> {
        self.wait_until(&format!("roles {want:?}"), bound, || async {
            self.role(0).await.as_deref() == Some(want[0])
                && self.role(1).await.as_deref() == Some(want[1])
        })
        .await
    }

    /// Waits until exactly one daemon shows `active` and the other `passive`; returns the
    /// active's index.
    pub async fn wait_one_active(&self, bound: Duration) -> Result<usize, ClusterError> {
        let start = Instant::now();
        loop {
            match (self.role(0).await.as_deref(), self.role(1).await.as_deref()) {
                (Some("active"), Some("passive")) => return Ok(0),
                (Some("passive"), Some("active")) => return Ok(1),
                _ => {}
            }
            if start.elapsed() >= bound {
                return Err(ClusterError::Timeout {
                    what: "exactly one active and one passive".into(),
                    after: bound,
                    details: self.describe().await,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the chain has committed more than two new signatures of the validator
    /// made by host `i`'s node.
    pub async fn wait_signing_by(&self, i: usize, bound: Duration) -> Result<(), ClusterError> {
        let name = self.devnet.host(i)?.name.clone();
        let before = self.signed_by(i).await;
        self.wait_until(&format!("{name} signing"), bound, || async {
            self.signed_by(i).await > before + 2
        })
        .await
    }

    /// Both daemons' status, events and log tails, for a failure message.
    pub async fn describe(&self) -> String {
        let mut out = String::new();
        for (i, d) in self.daemons.iter().enumerate() {
            let status = self.get(i, "/status").await;
            out.push_str(&describe_daemon(
                &d.id,
                status,
                self.events(i).await,
                &d.log,
            ));
        }
        out
    }
}

// ---- shared with the etcd-mode cluster (`etcd_cluster.rs`) ----

/// A POST of `body` to `url` (with `token` as the bearer, if any): (HTTP status, JSON body
/// or null).
pub(crate) async fn post_json(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<(u16, Value), ClusterError> {
    let mut req = http.post(url).json(body).timeout(Duration::from_secs(15));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|source| ClusterError::Http {
        what: format!("POST {url}"),
        source,
    })?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// Runs the `syncguard` CLI `bin` with `args` and `--config <config>`: (exit code, stdout
/// and stderr).
pub(crate) async fn run_cli(
    bin: &Path,
    config: &Path,
    args: &[&str],
) -> Result<(i32, String), ClusterError> {
    let out = tokio::process::Command::new(bin)
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(io_err("run", bin))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code().unwrap_or(-1), text))
}

/// `GET path` on the public API at `port`; None when it does not answer with JSON.
pub(crate) async fn get_json(http: &reqwest::Client, port: u16, path: &str) -> Option<Value> {
    let resp = http
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

/// The `events` list of a `/events` answer (empty without one).
pub(crate) fn events_of(answer: Option<Value>) -> Vec<Value> {
    match answer {
        Some(Value::Object(mut m)) => match m.remove("events") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Precommits of host `i`'s node that made it into a commit (0 when unknown).
pub(crate) async fn signed_in_commits(devnet: &Devnet, i: usize) -> u64 {
    let Ok(host) = devnet.host(i) else {
        return 0;
    };
    match devnet.ledger().await {
        Ok(l) => l.per_node.get(&host.name).map_or(0, |c| c.in_commits),
        Err(_) => 0,
    }
}

/// Polls `pred` every 100 ms up to `bound`; a timeout carries `describe()`.
pub(crate) async fn poll_until<F, Fut, D, DFut>(
    what: &str,
    bound: Duration,
    mut pred: F,
    describe: D,
) -> Result<(), ClusterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
    D: FnOnce() -> DFut,
    DFut: Future<Output = String>,
{
    let start = Instant::now();
    loop {
        if pred().await {
            return Ok(());
        }
        if start.elapsed() >= bound {
            return Err(ClusterError::Timeout {
                what: what.to_string(),
                after: bound,
                details: describe().await,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One daemon's status, events and log tail, for a failure message.
pub(crate) fn describe_daemon(
    id: &str,
    status: Option<Value>,
    events: Vec<Value>,
    log: &Path,
) -> String {
    let status = status.map_or_else(|| "(no answer)".into(), |v| v.to_string());
    let events = Value::Array(events).to_string();
    format!(
        "--- {id} status: {status}\n--- events: {events}\n--- log tail ({}):\n{}\n",
        log.display(),
        tail(log, 40),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_cluster_yaml_strings_escape_quotes_and_backslashes() {
        assert_eq!(yaml_str("/a/b"), "\"/a/b\"");
        assert_eq!(yaml_str("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(yaml_str("a\\b"), "\"a\\\\b\"");
    }

    #[test]
    fn devnet_cluster_status_reads_the_daemon_shape() {
        let v = serde_json::json!({
            "node": {"role": "active", "epoch": 3, "healthy": true, "comet_height": "42"},
            "peer": {"reachable": true}
        });
        let s = DaemonStatus::from_json(&v).expect("parsed");
        assert_eq!(s.role, "active");
        assert_eq!(s.epoch, Some(3));
        assert!(s.healthy && s.peer_reachable);
        assert_eq!(s.comet_height, Some(42));
        let v = serde_json::json!({"node": {"role": "passive", "comet_height": "height 57 (+2)"}});
        assert_eq!(
            DaemonStatus::from_json(&v).and_then(|s| s.comet_height),
            Some(57)
        );
        let v = serde_json::json!({"node": {"role": "passive", "latest_height": 60, "comet_height": "height 57"}});
        assert_eq!(
            DaemonStatus::from_json(&v).and_then(|s| s.comet_height),
            Some(60)
        );
        assert!(DaemonStatus::from_json(&serde_json::json!({})).is_none());
    }
}
