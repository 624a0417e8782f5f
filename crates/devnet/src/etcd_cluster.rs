//! N SyncGuard daemons with `coordination.backend: etcd` on an N-host devnet, and the
//! three-member etcd they coordinate through ([`LocalEtcd`], real `etcd` processes on
//! loopback). Used by the etcd failover scenarios.
//!
//! Each daemon reaches every etcd member through its own [`LinkProxy`], so a test can cut one
//! daemon off etcd ([`EtcdCluster::set_etcd_cut`]) while its node keeps signing. No peer links:
//! the lock decides who holds the role; the witness still checks the chain.
//!
//! Files per host: `<host>/syncguard.yaml`, `<host>/syncguard.log`, `<host>/syncguard.stderr.log`.
//! Field order of [`EtcdCluster`] matters: daemons are killed before the devnet and etcd go.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::LedgerReport;
use crate::cluster::{
    describe_daemon, events_of, free_port, get_json, io_err, p, poll_until, post_json, run_cli,
    signed_in_commits, spawn_story, tail, yaml_str, ClusterError, StartRole, Timings,
};
use crate::harness::{Devnet, DevnetOptions, Host, Launcher};
use crate::link_proxy::LinkProxy;

/// Where [`etcd_binary`] looks first.
pub const ETCD_BIN_ENV: &str = "SYNCGUARD_ETCD";

/// The etcd server binary: `$SYNCGUARD_ETCD`, `etcd` on `PATH`, `/usr/bin/etcd`,
/// `/usr/local/bin/etcd`; the error names the script that installs it.
pub fn etcd_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(ETCD_BIN_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{ETCD_BIN_ENV}={} is not a file", p.display()))
        };
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "etcd is not installed (no etcd on PATH, /usr/bin or /usr/local/bin): run \
             `scripts/etcd.sh install` (Debian etcd-server)"
                .to_string()
        })
}

struct EtcdMember {
    name: String,
    client: u16,
    child: Option<Child>,
}

/// A three-member etcd on loopback, each member with its own data dir under `dir`; the
/// members are killed when this is dropped.
pub struct LocalEtcd {
    members: Vec<EtcdMember>,
    dir: PathBuf,
}

impl std::fmt::Debug for LocalEtcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEtcd")
            .field("dir", &self.dir)
            .field("clients", &self.client_addrs())
            .finish()
    }
}

impl LocalEtcd {
    /// Starts `n` members of one new cluster and waits (up to 30 s) until each answers
    /// `/health` true.
    pub async fn start(bin: &Path, n: usize, dir: &Path) -> Result<LocalEtcd, ClusterError> {
        std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        let mut ports = Vec::new();
        for _ in 0..n {
            ports.push((free_port()?, free_port()?));
        }
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let mut etcd = LocalEtcd {
            members: Vec::new(),
            dir: dir.to_path_buf(),
        };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let log_path = dir.join(format!("etcd-{name}.log"));
            let log = std::fs::File::create(&log_path).map_err(io_err("create", &log_path))?;
            let child = Command::new(bin)
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.join(format!("etcd-{name}")))
                .arg("--listen-client-urls")
                .arg(format!("http://127.0.0.1:{client}"))
                .arg("--advertise-client-urls")
                .arg(format!("http://127.0.0.1:{client}"))
                .arg("--listen-peer-urls")
                .arg(format!("http://127.0.0.1:{peer}"))
                .arg("--initial-advertise-peer-urls")
                .arg(format!("http://127.0.0.1:{peer}"))
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &format!("sg-{}", ports[0].0)])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(io_err("start", bin))?;
            etcd.members.push(EtcdMember {
                name,
                client: *client,
                child: Some(child),
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for m in &etcd.members {
            while !healthy(m.client).await {
                if Instant::now() >= deadline {
                    let log = dir.join(format!("etcd-{}.log", m.name));
                    return Err(ClusterError::Timeout {
                        what: format!("etcd member {} healthy", m.name),
                        after: Duration::from_secs(30),
                        details: format!("its log ({}) ends:\n{}", log.display(), tail(&log, 15)),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(etcd)
    }

    /// SIGKILL of member `i` (the cluster keeps a quorum with two of three).
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut c) = self.members.get_mut(i).and_then(|m| m.child.take()) {
            // Already gone is fine: the point is that it no longer runs.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The members' client addresses.
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        self.members
            .iter()
            .map(|m| SocketAddr::from(([127, 0, 0, 1], m.client)))
            .collect()
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

async fn healthy(port: u16) -> bool {
    let get = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).await.ok()?;
        Some(body.contains("\"health\":\"true\""))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), get).await,
        Ok(Some(true))
    )
}

/// Options of [`EtcdCluster::start`].
#[derive(Debug, Clone)]
pub struct EtcdClusterOptions {
    /// The `syncguard` binary (built with the etcd feature).
    pub syncguard_bin: PathBuf,
    /// The etcd server binary.
    pub etcd_bin: PathBuf,
    /// The devnet (its `hosts` is forced to `nodes`).
    pub devnet: DevnetOptions,
    /// Daemons (and hosts). Default 3.
    pub nodes: usize,
    /// Timing knobs of every config.
    pub timings: Timings,
    /// `coordination.etcd.lease_ttl`, s. Default 3.
    pub lease_ttl: f64,
    /// `coordination.etcd.safety_margin`, s. Default 1.
    pub safety_margin: f64,
    /// `server.admin_token` of every daemon.
    pub admin_token: Option<String>,
    /// `RUST_LOG` of the daemons.
    pub log_filter: String,
}

impl EtcdClusterOptions {
    /// Three nodes, 300 ms blocks, lease 3 s with a 1 s margin, host-a's node started with
    /// the validator key (its daemon stops it at boot like any other).
    pub fn new(syncguard_bin: impl Into<PathBuf>, etcd_bin: PathBuf, launcher: Launcher) -> Self {
        let mut devnet = DevnetOptions::new(launcher);
        devnet.block_time = Duration::from_millis(300);
        EtcdClusterOptions {
            syncguard_bin: syncguard_bin.into(),
            etcd_bin,
            devnet,
            nodes: 3,
            timings: Timings::default(),
            lease_ttl: 3.0,
            safety_margin: 1.0,
            admin_token: Some(crate::cluster::DEMO_ADMIN_TOKEN.to_string()),
            log_filter: "info,syncguard=debug".into(),
        }
    }
}

/// One `syncguard story` process.
#[derive(Debug)]
pub struct EtcdDaemon {
    child: Option<Child>,
    /// Its node id (`node-0`, `node-1`, ...; its `failover_priority` is its index).
    pub id: String,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    /// Its config file.
    pub config: PathBuf,
    /// Its stderr log.
    pub log: PathBuf,
}

impl EtcdDaemon {
    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for EtcdDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn config_yaml(
    i: usize,
    host: &Host,
    port: u16,
    endpoints: &[String],
    block_time: Duration,
    opts: &EtcdClusterOptions,
) -> String {
    let t = opts.timings.yaml();
    let token = match &opts.admin_token {
        Some(t) => format!("  admin_token: {}\n", yaml_str(t)),
        None => String::new(),
    };
    let endpoints: Vec<String> = endpoints.iter().map(|e| yaml_str(e)).collect();
    format!(
        r#"# Written by syncguard-devnet's etcd cluster: everything on 127.0.0.1.
server:
  id: "node-{i}"
  role: "{site}"
  bind: "127.0.0.1"
  port: {port}
{token}story:
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
{health_timing}coordination:
  backend: etcd
  failover_priority: {i}
  etcd:
    endpoints: [{endpoints}]
    lease_ttl: {ttl}
    safety_margin: {margin}
logging:
  level: "debug"
  file: {log}
"#,
        site = if i == 0 { "primary" } else { "secondary" },
        primary = i == 0,
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
        endpoints = endpoints.join(", "),
        ttl = opts.lease_ttl,
        margin = opts.safety_margin,
        log = p(&host.dir.join("syncguard.log")),
    )
}

/// Starts one daemon, `--role passive` (the lock decides).
fn spawn(
    opts: &EtcdClusterOptions,
    id: &str,
    config: &Path,
    port: u16,
    dir: &Path,
) -> Result<EtcdDaemon, ClusterError> {
    let (child, log) = spawn_story(
        &opts.syncguard_bin,
        &opts.log_filter,
        config,
        StartRole::Passive,
        dir,
    )?;
    Ok(EtcdDaemon {
        child: Some(child),
        id: id.to_string(),
        port,
        config: config.to_path_buf(),
        log,
    })
}

/// N daemons on a devnet, coordinating through a real etcd.
pub struct EtcdCluster {
    daemons: Vec<EtcdDaemon>,
    /// `links[i]`: daemon `i`'s proxies, one per etcd member.
    links: Vec<Vec<LinkProxy>>,
    /// The devnet (chain, nodes, ledger).
    pub devnet: Devnet,
    etcd: LocalEtcd,
    http: reqwest::Client,
    opts: EtcdClusterOptions,
}

impl std::fmt::Debug for EtcdCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCluster")
            .field("devnet", &self.devnet)
            .field("etcd", &self.etcd)
            .field("daemons", &self.daemons)
            .finish()
    }
}

impl EtcdCluster {
    /// Starts the devnet, the etcd members, one proxy per (daemon, member) and the daemons
    /// (`--role passive`: the lock decides).
    pub async fn start(opts: EtcdClusterOptions) -> Result<EtcdCluster, ClusterError> {
        if !opts.syncguard_bin.is_file() {
            return Err(ClusterError::BinaryNotFound(opts.syncguard_bin.clone()));
        }
        let mut devnet_opts = opts.devnet.clone();
        devnet_opts.hosts = opts.nodes;
        let block_time = devnet_opts.block_time;
        let devnet = Devnet::start(devnet_opts).await?;
        let etcd = LocalEtcd::start(&opts.etcd_bin, 3, &devnet.dir().join("etcd")).await?;
        let mut links = Vec::new();
        for _ in 0..opts.nodes {
            let mut mine = Vec::new();
            for target in etcd.client_addrs() {
                mine.push(LinkProxy::start(target).await.map_err(io_err(
                    "start the etcd-link proxy",
                    Path::new("127.0.0.1:0"),
                ))?);
            }
            links.push(mine);
        }
        let mut daemons = Vec::new();
        for (i, mine) in links.iter().enumerate() {
            let host = devnet.host(i)?.clone();
            if let Some(dir) = host.state_backup.parent() {
                std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
            }
            let port = free_port()?;
            let endpoints: Vec<String> = mine
                .iter()
                .map(|l| format!("http://{}", l.addr()))
                .collect();
            let config = host.dir.join("syncguard.yaml");
            let yaml = config_yaml(i, &host, port, &endpoints, block_time, &opts);
            std::fs::write(&config, yaml).map_err(io_err("write", &config))?;
            daemons.push(spawn(
                &opts,
                &format!("node-{i}"),
                &config,
                port,
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
        Ok(EtcdCluster {
            daemons,
            links,
            devnet,
            etcd,
            http,
            opts,
        })
    }

    /// The admin token every daemon accepts, if any.
    pub fn admin_token(&self) -> Option<&str> {
        self.opts.admin_token.as_deref()
    }

    /// SIGKILL of daemon `i` (its node keeps running).
    pub fn kill_daemon(&mut self, i: usize) -> Result<(), ClusterError> {
        self.daemon_mut(i)?.kill();
        Ok(())
    }

    /// Kills daemon `i` (if it runs) and starts it again, `--role passive`, same config and
    /// port — a host coming back after [`EtcdCluster::crash_host`]: its daemon's boot
    /// deactivation starts its node as a full node with the placeholder key.
    pub fn restart_daemon(&mut self, i: usize) -> Result<(), ClusterError> {
        let dir = self.devnet.host(i)?.dir.clone();
        let d = self
            .daemons
            .get_mut(i)
            .ok_or(ClusterError::NoSuchDaemon(i))?;
        d.kill();
        let (id, config, port) = (d.id.clone(), d.config.clone(), d.port);
        *d = spawn(&self.opts, &id, &config, port, &dir)?;
        Ok(())
    }

    /// A POST to daemon `i`'s public API with the admin token: (HTTP status, JSON body or
    /// null).
    pub async fn post(
        &self,
        i: usize,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Value), ClusterError> {
        let port = self
            .daemons
            .get(i)
            .ok_or(ClusterError::NoSuchDaemon(i))?
            .port;
        let url = format!("http://127.0.0.1:{port}{path}");
        post_json(&self.http, &url, self.admin_token(), body).await
    }

    /// Runs the `syncguard` CLI with `args` and `--config` of daemon `i`: (exit code, output).
    pub async fn cli(&self, i: usize, args: &[&str]) -> Result<(i32, String), ClusterError> {
        let d = self.daemons.get(i).ok_or(ClusterError::NoSuchDaemon(i))?;
        run_cli(&self.opts.syncguard_bin, &d.config, args).await
    }

    /// How many daemons.
    pub fn len(&self) -> usize {
        self.daemons.len()
    }

    /// Never empty once started.
    pub fn is_empty(&self) -> bool {
        self.daemons.is_empty()
    }

    /// Daemon `i`.
    pub fn daemon_mut(&mut self, i: usize) -> Result<&mut EtcdDaemon, ClusterError> {
        self.daemons.get_mut(i).ok_or(ClusterError::NoSuchDaemon(i))
    }

    /// Cuts (or heals) daemon `i`'s links to every etcd member; its node keeps running.
    pub fn set_etcd_cut(&self, i: usize, on: bool) -> Result<(), ClusterError> {
        for l in self.links.get(i).ok_or(ClusterError::NoSuchDaemon(i))? {
            l.set_cut(on);
        }
        Ok(())
    }

    /// SIGKILL of etcd member `i` (every daemon lists member 0 first, so killing it takes
    /// away the member the active talks to).
    pub fn kill_etcd_member(&mut self, i: usize) {
        self.etcd.kill_member(i);
    }

    /// The host dies: SIGKILL of its daemon, then its node.
    pub async fn crash_host(&mut self, i: usize) -> Result<(), ClusterError> {
        self.daemon_mut(i)?.kill();
        self.devnet.kill_node(i).await?;
        Ok(())
    }

    /// `GET` on daemon `i`'s public API.
    pub async fn get(&self, i: usize, path: &str) -> Option<Value> {
        get_json(&self.http, self.daemons.get(i)?.port, path).await
    }

    /// Daemon `i`'s role (`/status` `node.role`); `None` when it does not answer — or when
    /// another node answers on its port (it could not listen there).
    pub async fn role(&self, i: usize) -> Option<String> {
        let v = self.get(i, "/status").await?;
        let d = self.daemons.get(i)?;
        if v["node"]["id"].as_str() != Some(d.id.as_str()) {
            return None;
        }
        v["node"]["role"].as_str().map(str::to_string)
    }

    /// Daemon `i`'s epoch.
    pub async fn epoch(&self, i: usize) -> Option<u64> {
        self.get(i, "/status").await?["node"]["epoch"].as_u64()
    }

    /// The roles of all daemons (None where no answer).
    pub async fn roles(&self) -> Vec<Option<String>> {
        let mut out = Vec::new();
        for i in 0..self.daemons.len() {
            out.push(self.role(i).await);
        }
        out
    }

    /// The indexes of the daemons that say `active`.
    pub async fn actives(&self) -> Vec<usize> {
        self.roles()
            .await
            .iter()
            .enumerate()
            .filter(|(_, r)| r.as_deref() == Some("active"))
            .map(|(i, _)| i)
            .collect()
    }

    /// Daemon `i`'s `/events` list.
    pub async fn events(&self, i: usize) -> Vec<Value> {
        events_of(self.get(i, "/events").await)
    }

    /// The ledger of every vote.
    pub async fn ledger(&self) -> Result<LedgerReport, ClusterError> {
        Ok(self.devnet.ledger().await?)
    }

    /// Votes of host `i`'s node found in commits.
    pub async fn signed_by(&self, i: usize) -> u64 {
        signed_in_commits(&self.devnet, i).await
    }

    /// Polls `pred` every 100 ms up to `bound`; the timeout carries every daemon's view.
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

    /// Waits until exactly one daemon is active; returns it.
    pub async fn wait_one_active(&self, bound: Duration) -> Result<usize, ClusterError> {
        let start = Instant::now();
        loop {
            let a = self.actives().await;
            if a.len() == 1 {
                return Ok(a[0]);
            }
            if start.elapsed() >= bound {
                return Err(ClusterError::Timeout {
                    what: "exactly one active".into(),
                    after: bound,
                    details: self.describe().await,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until host `i`'s node has signed three more commits.
    pub async fn wait_signing_by(&self, i: usize, bound: Duration) -> Result<(), ClusterError> {
        let name = self.devnet.host(i)?.name.clone();
        let before = self.signed_by(i).await;
        self.wait_until(&format!("{name} signing"), bound, || async {
            self.signed_by(i).await > before + 2
        })
        .await
    }

    /// Every daemon's status, events and log tail.
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
