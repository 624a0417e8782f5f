//! Two real SyncGuard daemons over mutual TLS, each managing a simulated Story node of a
//! devnet (real processes, real files, real secp256k1 signatures, a ledger of every vote).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use syncguard_devnet::{Devnet, DevnetOptions, Host, Launcher, LedgerReport};
use syncguard_failover::NodeId;
use syncguard_peer::certs::ClusterCa;

pub const IDS: [&str; 2] = ["node-a", "node-b"];
pub const BLOCK_MS: u64 = 300;

pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// SIGKILL: the daemon dies without cleaning anything up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Cluster {
    pub devnet: Devnet,
    pub daemons: Vec<Daemon>,
    http: reqwest::Client,
}

pub struct Options {
    pub roles: [&'static str; 2],
    /// Host whose node runs with the validator key at the start.
    pub validator_hosts: Vec<usize>,
    /// Node b's certificate comes from another CA.
    pub foreign_ca_for_b: bool,
    /// `failover.fallback_grace_period`, seconds (default: an hour, i.e. no fallback).
    pub grace_s: f64,
    /// `server.admin_token` of both nodes.
    pub admin_token: Option<&'static str>,
}

pub const TOKEN: &str = "test-admin-token-0123456789";

impl Default for Options {
    fn default() -> Self {
        Options {
            roles: ["active", "passive"],
            validator_hosts: vec![0],
            foreign_ca_for_b: false,
            grace_s: 3600.0,
            admin_token: Some(TOKEN),
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn config_yaml(
    i: usize,
    host: &Host,
    port: u16,
    peer_port: u16,
    tls_dir: &Path,
    opts: &Options,
) -> String {
    let id = IDS[i];
    let peer = IDS[1 - i];
    let token = match opts.admin_token {
        Some(t) => format!("  admin_token: \"{t}\"\n"),
        None => String::new(),
    };
    format!(
        r#"server:
  id: "{id}"
  role: "{site}"
  bind: "127.0.0.1"
  port: {port}
{token}story:
  comet_rpc_url: "{comet}"
  evm_rpc_url: "{evm}"
  validator_state_path: "{state}"
  validator_state_backup: "{backup}"
  is_primary_site: {primary}
  min_peers: 1
  block_interval: {BLOCK_MS}
  state_sync_interval: 0.5
  validator_key_path: "{live}"
  validator_key_store: "{store}"
  placeholder_key_path: "{placeholder}"
  node_config_path: "{home}/config/config.toml"
  start_command: "{start}"
  stop_command: "{stop}"
  status_command: "{status}"
  stop_timeout: 5
  verify_blocks: 4
  witness_blocks: 4
failover:
  health_check_interval: 0.5
  retry_attempts: 3
  self_fence_timeout: 0.6
  handover_timeout: 6
  fallback_grace_period: {grace}
health:
  rpc_timeout: 0.3
  stall_threshold: 1.5
  recovery_rounds: 2
  min_free_disk_mb: 1
communication:
  peers:
    - id: "{peer}"
      address: "127.0.0.1:{peer_port}"
  tls:
    ca_cert: "{tls}/ca.pem"
    cert: "{tls}/{id}.pem"
    key: "{tls}/{id}.key"
  request_timeout: 1
logging:
  level: "debug"
  file: "{dir}/syncguard.log"
"#,
        site = if i == 0 { "primary" } else { "secondary" },
        primary = i == 0,
        comet = host.comet_rpc_url,
        evm = host.evm_rpc_url,
        state = host.state_file.display(),
        backup = host.state_backup.display(),
        live = host.live_key.display(),
        store = host.key_store.display(),
        placeholder = host.placeholder_key.display(),
        home = host.home.display(),
        start = host.start_command.replace('"', "\\\""),
        stop = host.stop_command.replace('"', "\\\""),
        status = host.status_command.replace('"', "\\\""),
        tls = tls_dir.display(),
        dir = host.dir.display(),
        grace = opts.grace_s,
    )
}

impl Cluster {
    pub async fn start(opts: Options) -> Cluster {
        let mut devnet_opts = DevnetOptions::new(
            Launcher::locate().expect("syncguard-devnet binary (cargo test --workspace builds it)"),
        );
        devnet_opts.block_time = Duration::from_millis(BLOCK_MS);
        devnet_opts.validator_hosts = opts.validator_hosts.clone();
        let devnet = Devnet::start(devnet_opts).await.expect("devnet starts");
        let ports = [free_port(), free_port()];
        let ca = ClusterCa::generate().expect("CA");
        let other_ca = ClusterCa::generate().expect("other CA");
        let mut daemons = Vec::new();
        for i in 0..2 {
            let host = devnet.host(i).expect("host").clone();
            let tls = host.dir.join("tls");
            std::fs::create_dir_all(&tls).expect("tls dir");
            // A node of another cluster: its whole TLS world (CA and certificate) is foreign.
            let issuer = if i == 1 && opts.foreign_ca_for_b {
                &other_ca
            } else {
                &ca
            };
            issuer
                .write_cert(&tls.join("ca.pem"))
                .expect("write CA cert");
            let id = NodeId::new(IDS[i]);
            issuer
                .issue(&id, &["127.0.0.1".to_string()])
                .expect("issue node cert")
                .write(
                    &tls.join(format!("{}.pem", IDS[i])),
                    &tls.join(format!("{}.key", IDS[i])),
                )
                .expect("write node cert");
            if let Some(dir) = host.state_backup.parent() {
                std::fs::create_dir_all(dir).expect("backup dir");
            }
            let config = host.dir.join("syncguard.yaml");
            std::fs::write(
                &config,
                config_yaml(i, &host, ports[i], ports[1 - i], &tls, &opts),
            )
            .expect("config");
            daemons.push(spawn_daemon(&config, opts.roles[i], ports[i], &host.dir));
        }
        Cluster {
            devnet,
            daemons,
            http: reqwest::Client::new(),
        }
    }

    pub fn restart_daemon(&mut self, i: usize, role: &str) {
        let (config, port, dir) = {
            let d = &self.daemons[i];
            (
                d.config.clone(),
                d.port,
                d.log.parent().map(Path::to_path_buf).unwrap_or_default(),
            )
        };
        self.daemons[i].kill();
        self.daemons[i] = spawn_daemon(&config, role, port, &dir);
    }

    pub async fn get(&self, i: usize, path: &str) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}{path}", self.daemons[i].port);
        let resp = self
            .http
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// The role node `i` shows in `/status` (None when its daemon does not answer).
    pub async fn role(&self, i: usize) -> Option<String> {
        let v = self.get(i, "/status").await?;
        v["node"]["role"].as_str().map(str::to_string)
    }

    /// Runs the `syncguard` CLI with `args` and `--config` of node `i`: (exit code, stdout).
    pub async fn cli(&self, i: usize, args: &[&str]) -> (i32, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_syncguard"))
            .args(args)
            .arg("--config")
            .arg(&self.daemons[i].config)
            .output()
            .await
            .expect("run the syncguard CLI");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    /// A raw POST to node `i`'s public API: (HTTP status, JSON body).
    pub async fn post(
        &self,
        i: usize,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let url = format!("http://127.0.0.1:{}{path}", self.daemons[i].port);
        let mut req = self
            .http
            .post(url)
            .json(&body)
            .timeout(Duration::from_secs(15));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("POST answered");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The height of node `i`'s local state file (priv_validator_state.json).
    pub fn state_height(&self, i: usize) -> i64 {
        let host = self.devnet.host(i).expect("host");
        let text = std::fs::read_to_string(&host.state_file).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        v["height"]
            .as_str()
            .and_then(|h| h.parse().ok())
            .or_else(|| v["height"].as_i64())
            .unwrap_or(0)
    }

    pub async fn healthy(&self, i: usize) -> Option<bool> {
        self.get(i, "/status").await?["node"]["healthy"].as_bool()
    }

    pub async fn epoch(&self, i: usize) -> Option<u64> {
        self.get(i, "/status").await?["node"]["epoch"].as_u64()
    }

    /// Polls until `pred` holds, panicking with the daemons' views and logs when it does not.
    pub async fn wait_until<F, Fut>(&self, what: &str, bound: Duration, mut pred: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        while start.elapsed() < bound {
            if pred().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{what}: not reached within {bound:?}\n{}",
            self.describe().await
        );
    }

    pub async fn wait_roles(&self, want: [&str; 2], bound: Duration) {
        self.wait_until(&format!("roles {want:?}"), bound, || async {
            self.role(0).await.as_deref() == Some(want[0])
                && self.role(1).await.as_deref() == Some(want[1])
        })
        .await;
    }

    /// Waits until the chain has committed signatures of the validator made by `host`.
    pub async fn wait_signing_by(&self, host: usize, bound: Duration) {
        let name = self.devnet.host(host).expect("host").name.clone();
        let before = self.signed_by(&name).await;
        self.wait_until(&format!("{name} signing"), bound, || async {
            self.signed_by(&name).await > before + 2
        })
        .await;
    }

    async fn signed_by(&self, name: &str) -> u64 {
        match self.devnet.ledger().await {
            Ok(l) => l.per_node.get(name).map_or(0, |c| c.heights),
            Err(_) => 0,
        }
    }

    pub async fn ledger(&self) -> LedgerReport {
        self.devnet.ledger().await.expect("ledger")
    }

    pub async fn assert_no_double_sign(&self) {
        let l = self.ledger().await;
        assert!(
            l.double_signs == 0 && l.s1_violations == 0,
            "double sign or S1 violation in the ledger: {l:#?}\n{}",
            self.describe().await
        );
    }

    pub async fn events(&self, i: usize) -> String {
        self.get(i, "/events")
            .await
            .map(|v| v.to_string())
            .unwrap_or_default()
    }

    pub async fn describe(&self) -> String {
        let mut out = String::new();
        for (i, id) in IDS.iter().enumerate() {
            out.push_str(&format!(
                "--- {} status: {}\n--- events: {}\n--- log tail:\n{}\n",
                id,
                self.get(i, "/status")
                    .await
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "(no answer)".into()),
                self.events(i).await,
                tail(&self.daemons[i].log, 40),
            ));
        }
        out
    }
}

fn spawn_daemon(config: &Path, role: &str, port: u16, dir: &Path) -> Daemon {
    let log = dir.join("syncguard.stderr.log");
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_syncguard"))
        .args(["story", "--config"])
        .arg(config)
        .args(["--role", role])
        .env("RUST_LOG", "info,syncguard=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .spawn()
        .expect("start syncguard story");
    Daemon {
        child: Some(child),
        port,
        config: config.to_path_buf(),
        log,
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
