//! The test harness: [`Devnet::start`] launches a chain and, per host, a home with a live
//! key (the validator's or a placeholder), a state file, a key store, a story-geth, and —
//! optionally — the node, all on 127.0.0.1 with free ports. Everything it started, and every
//! node started through a host's `start_command`, is killed when the [`Devnet`] is dropped
//! (also on a test panic); each process also exits by itself once the test process is gone
//! (`--watch-pid`).
//!
//! Finding the binary: the devnet's processes run inside the product's own binary, as
//! `syncguard devnet …` ([`Launcher::with_prefix`]) — one binary, so that a plain `cargo test`
//! builds everything its tests start. The `syncguard` crate's tests pass
//! `env!("CARGO_BIN_EXE_syncguard")`; anything else uses [`Launcher::locate`], which honours
//! `SYNCGUARD_BIN` and otherwise looks in `target/<profile>/` next to the running
//! executable.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use syncguard_validator::{KeyError, KeyType, SignState, ValidatorKey};

use crate::api::{BlockCommit, Head, LedgerReport};
use crate::ctl;
use crate::fsutil::write_atomic;
use crate::node::{CutRequest, NodeInfo, PeersRequest, RpcFault};
use crate::procs;

/// Environment variable naming the `syncguard` binary for [`Launcher::locate`].
pub const BIN_ENV: &str = "SYNCGUARD_BIN";

/// The binary's file name: the devnet is its hidden `devnet` subcommand.
pub const BIN_NAME: &str = "syncguard";

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The devnet binary is not where it was looked for.
    #[error(
        "the syncguard binary (which runs the devnet as `syncguard devnet …`) is not at {}: \
         build it with `cargo build -p syncguard` (`cargo test` at the root builds it too) or \
         set {BIN_ENV}", .0.display()
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
    /// A key could not be written.
    #[error("key: {0}")]
    Key(#[from] KeyError),
    /// A process did not come up.
    #[error("{what} did not start: {detail}")]
    Startup {
        /// Which process.
        what: String,
        /// Why.
        detail: String,
    },
    /// An HTTP call failed.
    #[error("{what}: {source}")]
    Http {
        /// Which call.
        what: String,
        /// The error.
        #[source]
        source: reqwest::Error,
    },
    /// A ctl command failed.
    #[error("`{command}` failed ({status}): {output}")]
    Ctl {
        /// The command.
        command: String,
        /// Exit status.
        status: String,
        /// Its output.
        output: String,
    },
    /// Waited too long.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// For what.
        what: String,
        /// How long.
        after: Duration,
    },
    /// No host with that index.
    #[error("no host {0}")]
    NoSuchHost(usize),
    /// The disk-full fault needs a small tmpfs, which only root may mount.
    #[error("the disk-full fault cannot mount a tmpfs on {}: {detail} (it needs root)", dir.display())]
    Mount {
        /// The state directory.
        dir: PathBuf,
        /// What `mount` said.
        detail: String,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> HarnessError + 'a {
    move |source| HarnessError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// How to run the devnet CLI: a program plus the arguments selecting the devnet in it.
#[derive(Debug, Clone)]
pub struct Launcher {
    program: PathBuf,
    prefix: Vec<OsString>,
}

/// Where [`find_syncguard`] looked in vain.
#[derive(Debug)]
pub enum Looked {
    /// The path it expected.
    At(PathBuf),
    /// The running executable's own path is unknown.
    NoSelf(std::io::Error),
}

/// The `syncguard` binary: `$SYNCGUARD_BIN`, else `target/<profile>/syncguard` found from the
/// running executable (a test in `target/<profile>/deps/`, or a binary in `target/<profile>/`).
pub fn find_syncguard() -> Result<PathBuf, Looked> {
    if let Some(p) = std::env::var_os(BIN_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Looked::At(p))
        };
    }
    let exe = std::env::current_exe().map_err(Looked::NoSelf)?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [
        dir.parent().map(|p| p.join(BIN_NAME)),
        Some(dir.join(BIN_NAME)),
    ];
    match candidates.iter().flatten().find(|c| c.is_file()) {
        Some(c) => Ok(c.clone()),
        None => Err(Looked::At(dir.parent().unwrap_or(dir).join(BIN_NAME))),
    }
}

impl Launcher {
    /// A program that is the devnet CLI itself (no prefix).
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Launcher {
            program: program.into(),
            prefix: Vec::new(),
        }
    }

    /// A program that embeds the devnet CLI behind `prefix` (e.g. `syncguard` + `["devnet"]`).
    pub fn with_prefix<I, S>(program: impl Into<PathBuf>, prefix: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Launcher {
            program: program.into(),
            prefix: prefix.into_iter().map(Into::into).collect(),
        }
    }

    /// `syncguard devnet` with the binary [`find_syncguard`] finds.
    pub fn locate() -> Result<Self, HarnessError> {
        let program = find_syncguard().map_err(|looked| match looked {
            Looked::At(p) => HarnessError::BinaryNotFound(p),
            Looked::NoSelf(e) => io_err("find", Path::new("current exe"))(e),
        })?;
        Ok(Launcher::with_prefix(program, ["devnet"]))
    }

    /// The program.
    pub fn program(&self) -> &Path {
        &self.program
    }

    fn argv(&self, args: &[OsString]) -> Vec<OsString> {
        let mut v = vec![self.program.clone().into_os_string()];
        v.extend(self.prefix.iter().cloned());
        v.extend(args.iter().cloned());
        v
    }

    fn std_command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.prefix);
        c
    }
}

/// Quote for `sh`: plain words stay as they are.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=@,+-%".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn shell_line(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Options of [`Devnet::start`].
#[derive(Debug, Clone)]
pub struct DevnetOptions {
    /// How to run the devnet binary.
    pub launcher: Launcher,
    /// Number of hosts (each: a story home, a geth, keys). Default 2.
    pub hosts: usize,
    /// Block interval. Default 500 ms (≥ 10 ms).
    pub block_time: Duration,
    /// Hosts whose live key is the validator key at start (others get their placeholder).
    /// Default `[0]`. Two entries make an S1 violation on purpose.
    pub validator_hosts: Vec<usize>,
    /// Start every host's node (via its start command). Default true; false leaves that to
    /// SyncGuard's daemons.
    pub start_nodes: bool,
    /// Node start delay (restart time). Default 300 ms.
    pub node_restart: Duration,
    /// `n_peers` of every node and `net_peerCount` of every geth. Default 5.
    pub peers: u64,
    /// Heights existing at start. Default 10.
    pub initial_height: u64,
    /// Chain id. Default `syncguard-devnet-1`.
    pub chain_id: String,
    /// Where to put everything; None: a temporary directory removed on drop.
    pub dir: Option<PathBuf>,
    /// `[consensus] double_sign_check_height` written to every node's `config.toml`: a node
    /// with the validator key refuses to start when the key signed one of the last N-1
    /// commits, as CometBFT does. Default 0 (off).
    pub double_sign_check_height: u64,
    /// The validator's (and the placeholders') key type. Default secp256k1 (Story's).
    pub key_type: KeyType,
    /// A story-geth beside every node (a Story chain). Default true; false: a plain
    /// CometBFT chain, no EVM endpoint (`Host::evm_rpc_url` then names nothing).
    pub geth: bool,
}

impl DevnetOptions {
    /// Defaults with `launcher`.
    pub fn new(launcher: Launcher) -> Self {
        DevnetOptions {
            launcher,
            hosts: 2,
            block_time: Duration::from_millis(500),
            validator_hosts: vec![0],
            start_nodes: true,
            node_restart: Duration::from_millis(300),
            peers: 5,
            initial_height: 10,
            chain_id: "syncguard-devnet-1".into(),
            dir: None,
            double_sign_check_height: 0,
            key_type: KeyType::Secp256k1,
            geth: true,
        }
    }
}

/// One host: everything SyncGuard's config needs to manage it.
#[derive(Debug, Clone)]
pub struct Host {
    /// `host-a`, `host-b`, …: also the node id in the ledger.
    pub name: String,
    /// The host's directory.
    pub dir: PathBuf,
    /// Story's CometBFT home.
    pub home: PathBuf,
    /// `story.comet_rpc_url`.
    pub comet_rpc_url: String,
    /// `story.evm_rpc_url`.
    pub evm_rpc_url: String,
    /// `story.start_command` (shell words).
    pub start_command: String,
    /// `story.stop_command`.
    pub stop_command: String,
    /// `story.kill_command` (`ctl kill`: SIGKILL; nothing to derive it from).
    pub kill_command: String,
    /// `story.status_command`.
    pub status_command: String,
    /// `story.validator_key_store`: the validator key at rest (0600), on every host.
    pub key_store: PathBuf,
    /// `story.placeholder_key_path`: this host's placeholder key.
    pub placeholder_key: PathBuf,
    /// `story.validator_key_path`: the live key the node reads at start.
    pub live_key: PathBuf,
    /// `story.validator_state_path`: the node's state file.
    pub state_file: PathBuf,
    /// `story.node_config_path`: the node's `config.toml`.
    pub node_config: PathBuf,
    /// A path for `story.validator_state_backup` (not created).
    pub state_backup: PathBuf,
    /// The node's pid file.
    pub pid_file: PathBuf,
    /// The node's log.
    pub log_file: PathBuf,
    /// The node's RPC address.
    pub rpc_addr: SocketAddr,
    start_argv: Vec<OsString>,
    stop_argv: Vec<OsString>,
    status_argv: Vec<OsString>,
}

/// A process started by the harness, killed with its group on drop.
struct Proc {
    child: Child,
    what: String,
}

impl Proc {
    fn kill(&mut self) {
        let pid = self.child.id() as i32;
        let _ = procs::signal_group(pid, Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running devnet.
pub struct Devnet {
    hosts: Vec<Host>,
    chain_url: String,
    validator_address: String,
    launcher: Launcher,
    http: reqwest::Client,
    procs: Vec<Proc>,
    /// State directories put on a small tmpfs by [`Devnet::set_disk_full`] (unmounted on drop).
    mounts: std::sync::Mutex<Vec<PathBuf>>,
    dir: PathBuf,
    // Dropped last (fields drop in order): processes are gone before their files.
    _tmp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet")
            .field("dir", &self.dir)
            .field("chain_url", &self.chain_url)
            .field("validator_address", &self.validator_address)
            .field(
                "hosts",
                &self.hosts.iter().map(|h| &h.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A port free on loopback now, for a process started later to listen on (a node, a
/// daemon, an etcd member). It is released before its user binds it, so two things could
/// meet on it; seen with five etcd clusters at once (a node, or a daemon, found its port
/// taken):
/// - never the same port twice in this process (the clusters of tests running side by side
///   draw from one pool);
/// - drawn at random below Linux's ephemeral range (32768–60999), where neither `bind(0)`
///   nor the outgoing connections of every process here (etcd clients, HTTP, gRPC) take
///   their ports from;
/// - only a port that can be bound now.
pub(crate) fn free_port() -> Result<u16, HarnessError> {
    use rand::Rng;
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(20_000..32_000);
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return Ok(port);
        }
    }
    // Crowded: let the kernel choose (an ephemeral port), still never one given before.
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(io_err("bind", Path::new("127.0.0.1:0")))?;
        let port = l
            .local_addr()
            .map_err(io_err("bind", Path::new("127.0.0.1:0")))?
            .port();
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
}

fn mkdir(p: &Path) -> Result<(), HarnessError> {
    std::fs::create_dir_all(p).map_err(io_err("create", p))
}

/// Spawn a server process that prints `listening on http://ADDR` first; wait for it.
async fn spawn_server(
    launcher: &Launcher,
    args: &[OsString],
    what: &str,
    log: &Path,
) -> Result<(Proc, String), HarnessError> {
    let log_file = std::fs::File::create(log).map_err(io_err("create", log))?;
    let mut child = launcher
        .std_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .map_err(io_err("spawn", launcher.program()))?;
    let stdout = child.stdout.take();
    let mut proc = Proc {
        child,
        what: what.to_string(),
    };
    let Some(stdout) = stdout else {
        proc.kill();
        return Err(HarnessError::Startup {
            what: what.into(),
            detail: "no stdout".into(),
        });
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Drains stdout for the process's whole life: a full pipe would block it.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.trim().strip_prefix("listening on ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(url.to_string());
                }
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(20), rx).await {
        Ok(Ok(url)) => Ok((proc, url)),
        other => {
            proc.kill();
            let log_text = std::fs::read_to_string(log).unwrap_or_default();
            Err(HarnessError::Startup {
                what: what.into(),
                detail: format!(
                    "{}; log: {}",
                    if other.is_err() {
                        "no address printed within 20 s"
                    } else {
                        "exited before printing its address"
                    },
                    log_text.trim()
                ),
            })
        }
    }
}

impl Devnet {
    /// Launch the chain, prepare every host and start geths (and nodes, unless told not to).
    pub async fn start(opts: DevnetOptions) -> Result<Devnet, HarnessError> {
        let (tmp, dir) = match &opts.dir {
            Some(d) => {
                mkdir(d)?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("syncguard-devnet-")
                    .tempdir()
                    .map_err(io_err("create", &std::env::temp_dir()))?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|source| HarnessError::Http {
                what: "build client".into(),
                source,
            })?;
        let validator = ValidatorKey::generate(opts.key_type);
        let me = std::process::id().to_string();
        let mut devnet = Devnet {
            hosts: Vec::new(),
            chain_url: String::new(),
            validator_address: validator.address_hex(),
            launcher: opts.launcher.clone(),
            http,
            procs: Vec::new(),
            mounts: std::sync::Mutex::default(),
            dir: dir.clone(),
            _tmp: tmp,
        };

        let chain_dir = dir.join("chain");
        mkdir(&chain_dir)?;
        let chain_args: Vec<OsString> = [
            "chain",
            "--listen",
            "127.0.0.1:0",
            "--block-time-ms",
            &opts.block_time.as_millis().max(10).to_string(),
            "--validator-address",
            &validator.address_hex(),
            "--validator-pubkey",
            &validator.public_key().to_base64(),
            "--validator-pubkey-type",
            opts.key_type.pub_key_type(),
            "--chain-id",
            &opts.chain_id,
            "--initial-height",
            &opts.initial_height.to_string(),
            "--watch-pid",
            &me,
            "--dir",
        ]
        .iter()
        .map(OsString::from)
        .chain([chain_dir.clone().into_os_string()])
        .collect();
        let (proc, chain_url) = spawn_server(
            &devnet.launcher,
            &chain_args,
            "chain",
            &chain_dir.join("chain.log"),
        )
        .await?;
        devnet.procs.push(proc);
        devnet.chain_url = chain_url;

        for i in 0..opts.hosts {
            let host = devnet.prepare_host(i, &opts, &validator, &dir, &me)?;
            if !opts.geth {
                devnet.hosts.push(Host {
                    // Nothing listens there: a chain without an EVM.
                    evm_rpc_url: "http://127.0.0.1:9".into(),
                    ..host
                });
                continue;
            }
            let geth_args: Vec<OsString> = [
                "geth",
                "--node-rpc",
                &host.comet_rpc_url,
                "--listen",
                "127.0.0.1:0",
                "--peers",
                &opts.peers.to_string(),
                "--poll-ms",
                &(opts.block_time.as_millis() / 4).clamp(10, 250).to_string(),
                "--watch-pid",
                &me,
            ]
            .iter()
            .map(OsString::from)
            .collect();
            let (proc, evm_url) = spawn_server(
                &devnet.launcher,
                &geth_args,
                &format!("geth of {}", host.name),
                &host.dir.join("geth.log"),
            )
            .await?;
            devnet.procs.push(proc);
            devnet.hosts.push(Host {
                evm_rpc_url: evm_url,
                ..host
            });
        }

        if opts.start_nodes {
            for i in 0..devnet.hosts.len() {
                devnet.start_node(i).await?;
            }
            let bound = opts.node_restart + Duration::from_secs(15);
            for i in 0..devnet.hosts.len() {
                devnet.wait_node_ready(i, bound).await?;
            }
        }
        Ok(devnet)
    }

    fn prepare_host(
        &self,
        i: usize,
        opts: &DevnetOptions,
        validator: &ValidatorKey,
        dir: &Path,
        me: &str,
    ) -> Result<Host, HarnessError> {
        let letter = (b'a' + (i % 26) as u8) as char;
        let name = if i < 26 {
            format!("host-{letter}")
        } else {
            format!("host-{i}")
        };
        let host_dir = dir.join(&name);
        let home = host_dir.join("story");
        let keys = host_dir.join("keys");
        for d in [
            home.join("config"),
            home.join("data"),
            keys.clone(),
            host_dir.join("syncguard"),
        ] {
            mkdir(&d)?;
        }
        let key_store = keys.join("priv_validator_key.json");
        let placeholder_key = keys.join("placeholder_key.json");
        let live_key = crate::node::key_path(&home);
        let state_file = crate::node::state_path(&home);
        validator.save_new(&key_store)?;
        let placeholder = ValidatorKey::generate(opts.key_type);
        placeholder.save_new(&placeholder_key)?;
        if opts.validator_hosts.contains(&i) {
            validator.save_new(&live_key)?;
        } else {
            placeholder.save_new(&live_key)?;
        }
        write_atomic(&state_file, SignState::initial().to_json().as_bytes())
            .map_err(io_err("write", &state_file))?;
        let node_config = crate::comet_config::config_path(&home);
        let toml = crate::comet_config::render(opts.double_sign_check_height);
        write_atomic(&node_config, toml.as_bytes()).map_err(io_err("write", &node_config))?;

        let port = free_port()?;
        let rpc_addr = SocketAddr::from(([127, 0, 0, 1], port));
        let home_os = home.clone().into_os_string();
        let mut start: Vec<OsString> = ["ctl", "start", "--home"].map(OsString::from).to_vec();
        start.push(home_os.clone());
        start.extend(
            [
                "--",
                "--chain",
                &self.chain_url,
                "--rpc-listen",
                &rpc_addr.to_string(),
                "--peers",
                &opts.peers.to_string(),
                "--restart-ms",
                &opts.node_restart.as_millis().to_string(),
                "--node-id",
                &name,
                "--watch-pid",
                me,
            ]
            .map(OsString::from),
        );
        let with_home = |verb: &str| -> Vec<OsString> {
            vec!["ctl".into(), verb.into(), "--home".into(), home_os.clone()]
        };
        let stop = with_home("stop");
        let kill = with_home("kill");
        let status = with_home("status");
        let l = &self.launcher;
        Ok(Host {
            comet_rpc_url: format!("http://{rpc_addr}"),
            evm_rpc_url: String::new(),
            start_command: shell_line(&l.argv(&start)),
            stop_command: shell_line(&l.argv(&stop)),
            kill_command: shell_line(&l.argv(&kill)),
            status_command: shell_line(&l.argv(&status)),
            key_store,
            placeholder_key,
            live_key,
            state_file,
            node_config,
            state_backup: host_dir.join("syncguard/priv_validator_state.json"),
            pid_file: ctl::pid_file(&home),
            log_file: ctl::log_file(&home),
            rpc_addr,
            start_argv: start,
            stop_argv: stop,
            status_argv: status,
            name,
            dir: host_dir,
            home,
        })
    }

    /// The hosts.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// Host `i`.
    pub fn host(&self, i: usize) -> Result<&Host, HarnessError> {
        self.hosts.get(i).ok_or(HarnessError::NoSuchHost(i))
    }

    /// The chain's URL.
    pub fn chain_url(&self) -> &str {
        &self.chain_url
    }

    /// The validator's address (upper-case hex).
    pub fn validator_address(&self) -> &str {
        &self.validator_address
    }

    /// The devnet's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: String,
    ) -> Result<T, HarnessError> {
        let wrap = |source| HarnessError::Http {
            what: format!("GET {url}"),
            source,
        };
        self.http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(wrap)?
            .json()
            .await
            .map_err(wrap)
    }

    async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        url: String,
        body: &impl serde::Serialize,
    ) -> Result<T, HarnessError> {
        let wrap = |source| HarnessError::Http {
            what: format!("POST {url}"),
            source,
        };
        self.http
            .post(&url)
            .json(body)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(wrap)?
            .json()
            .await
            .map_err(wrap)
    }

    /// The chain's head.
    pub async fn head(&self) -> Result<Head, HarnessError> {
        self.get_json(format!("{}/head", self.chain_url)).await
    }

    /// The ledger.
    pub async fn ledger(&self) -> Result<LedgerReport, HarnessError> {
        self.get_json(format!("{}/ledger", self.chain_url)).await
    }

    /// The chain's commit at `height`.
    pub async fn commit(&self, height: u64) -> Result<BlockCommit, HarnessError> {
        self.get_json(format!("{}/commit?height={height}", self.chain_url))
            .await
    }

    /// Halt the whole chain.
    pub async fn halt(&self) -> Result<Head, HarnessError> {
        self.post_json(format!("{}/halt", self.chain_url), &())
            .await
    }

    /// Resume the chain.
    pub async fn resume(&self) -> Result<Head, HarnessError> {
        self.post_json(format!("{}/resume", self.chain_url), &())
            .await
    }

    /// Wait until the chain's head reaches `height`.
    pub async fn wait_for_height(
        &self,
        height: u64,
        bound: Duration,
    ) -> Result<Head, HarnessError> {
        let deadline = Instant::now() + bound;
        loop {
            let head = self.head().await?;
            if head.height >= height {
                return Ok(head);
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("chain height {height} (at {})", head.height),
                    after: bound,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn ctl(&self, argv: &[OsString]) -> Result<std::process::Output, HarnessError> {
        let mut c = tokio::process::Command::new(self.launcher.program());
        c.args(&self.launcher.prefix)
            .args(argv)
            .stdin(Stdio::null());
        c.output()
            .await
            .map_err(io_err("run", self.launcher.program()))
    }

    async fn ctl_ok(&self, argv: &[OsString]) -> Result<(), HarnessError> {
        let out = self.ctl(argv).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(HarnessError::Ctl {
                command: shell_line(&self.launcher.argv(argv)),
                status: out.status.to_string(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            })
        }
    }

    /// Run host `i`'s start command (returns at once; see [`Devnet::wait_node_ready`]).
    pub async fn start_node(&self, i: usize) -> Result<(), HarnessError> {
        let argv = self.host(i)?.start_argv.clone();
        self.ctl_ok(&argv).await
    }

    /// Run host `i`'s stop command (returns once the node is gone).
    pub async fn stop_node(&self, i: usize) -> Result<(), HarnessError> {
        let argv = self.host(i)?.stop_argv.clone();
        self.ctl_ok(&argv).await
    }

    /// Run host `i`'s status command: whether the node runs.
    pub async fn node_running(&self, i: usize) -> Result<bool, HarnessError> {
        let argv = self.host(i)?.status_argv.clone();
        Ok(self.ctl(&argv).await?.status.success())
    }

    async fn ctl_verb(&self, i: usize, verb: &str) -> Result<(), HarnessError> {
        let home = self.host(i)?.home.clone();
        self.ctl_ok(&[
            "ctl".into(),
            verb.into(),
            "--home".into(),
            home.into_os_string(),
        ])
        .await
    }

    /// Crash host `i`'s node (SIGKILL).
    pub async fn kill_node(&self, i: usize) -> Result<(), HarnessError> {
        self.ctl_verb(i, "kill").await
    }

    /// Hang host `i`'s node (SIGSTOP).
    pub async fn pause_node(&self, i: usize) -> Result<(), HarnessError> {
        self.ctl_verb(i, "pause").await
    }

    /// Un-hang host `i`'s node (SIGCONT).
    pub async fn resume_node(&self, i: usize) -> Result<(), HarnessError> {
        self.ctl_verb(i, "resume").await
    }

    /// Wait until host `i`'s node answers `/status`.
    pub async fn wait_node_ready(&self, i: usize, bound: Duration) -> Result<(), HarnessError> {
        let url = format!("{}/status", self.host(i)?.comet_rpc_url);
        let deadline = Instant::now() + bound;
        loop {
            if let Ok(r) = self.http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                let log = std::fs::read_to_string(&self.host(i)?.log_file).unwrap_or_default();
                return Err(HarnessError::Timeout {
                    what: format!("{url} to answer; node log: {}", log.trim()),
                    after: bound,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Cut host `i`'s node off the network (`true`) or heal it (`false`).
    pub async fn set_cut(&self, i: usize, on: bool) -> Result<NodeInfo, HarnessError> {
        let url = format!("{}/devnet/cut", self.host(i)?.comet_rpc_url);
        self.post_json(url, &CutRequest { on }).await
    }

    /// Mute host `i`'s node (`true`: it follows the chain and votes, its votes reach the
    /// ledger but never a commit) or unmute it (`false`).
    pub async fn set_muted(&self, i: usize, on: bool) -> Result<NodeInfo, HarnessError> {
        let url = format!("{}/devnet/mute", self.host(i)?.comet_rpc_url);
        self.post_json(url, &CutRequest { on }).await
    }

    /// Set host `i`'s node's `n_peers`.
    pub async fn set_peers(&self, i: usize, n_peers: u64) -> Result<NodeInfo, HarnessError> {
        let url = format!("{}/devnet/peers", self.host(i)?.comet_rpc_url);
        self.post_json(url, &PeersRequest { n_peers }).await
    }

    /// Make host `i`'s CometBFT RPC slow or broken (`RpcFault::default()` repairs it).
    pub async fn set_rpc_fault(&self, i: usize, fault: RpcFault) -> Result<NodeInfo, HarnessError> {
        let url = format!("{}/devnet/rpc", self.host(i)?.comet_rpc_url);
        self.post_json(url, &fault).await
    }

    /// Host `i`'s node's own view.
    pub async fn node_info(&self, i: usize) -> Result<NodeInfo, HarnessError> {
        let url = format!("{}/devnet/info", self.host(i)?.comet_rpc_url);
        self.get_json(url).await
    }

    /// Kills host `i`'s story-geth (an EVM endpoint that went down; its node keeps running).
    pub fn kill_geth(&mut self, i: usize) -> Result<(), HarnessError> {
        let what = format!("geth of {}", self.host(i)?.name);
        for p in self.procs.iter_mut().filter(|p| p.what == what) {
            p.kill();
        }
        Ok(())
    }

    /// Pids of every process the devnet runs right now (chain, geths, running nodes).
    pub fn pids(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.procs.iter().map(|p| p.child.id() as i32).collect();
        v.extend(self.hosts.iter().filter_map(|h| ctl::running_pid(&h.home)));
        v
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        for h in &self.hosts {
            if let Some(pid) = ctl::running_pid(&h.home) {
                let _ = procs::signal_group(pid, Signal::KILL);
            }
        }
        for p in &mut self.procs {
            tracing::debug!(what = %p.what, "killing");
            p.kill();
        }
        let mounts = match self.mounts.get_mut() {
            Ok(m) => std::mem::take(m),
            Err(poisoned) => std::mem::take(poisoned.into_inner()),
        };
        for dir in mounts {
            // Lazy: a daemon still holding a file there must not keep the mount alive.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&dir)
                .status();
        }
    }
}

/// Size of the tmpfs under a host's state directory for the disk-full fault.
const SMALL_FS_BYTES: u64 = 4 << 20;
const FILLER: &str = ".syncguard-devnet-disk-filler";

impl Devnet {
    /// Disk full on host `i`: its state directory (the state file's, where SyncGuard writes
    /// the start state and the node writes every vote) has no free byte left. The first call
    /// moves the directory's files onto a 4 MiB tmpfs mounted over it (root only); `on`
    /// fills it with a filler file, `!on` removes the filler.
    pub fn set_disk_full(&self, i: usize, on: bool) -> Result<(), HarnessError> {
        let host = self.host(i)?;
        let dir = host
            .state_file
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| HarnessError::NoSuchHost(i))?;
        self.ensure_small_fs(&dir)?;
        let filler = dir.join(FILLER);
        if on {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).map_err(io_err("create", &filler))?;
            let block = vec![0u8; 64 * 1024];
            // Until ENOSPC: then one byte at a time, so not even a small file fits.
            let mut chunk = block.len();
            while chunk > 0 {
                match f.write(&block[..chunk]) {
                    Ok(0) => chunk /= 2,
                    Ok(_) => {}
                    Err(e) if e.raw_os_error() == Some(28) => chunk /= 2,
                    Err(e) => return Err(io_err("fill", &filler)(e)),
                }
            }
            let _ = f.sync_all();
        } else {
            match std::fs::remove_file(&filler) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &filler)(e)),
            }
        }
        Ok(())
    }

    fn ensure_small_fs(&self, dir: &Path) -> Result<(), HarnessError> {
        let mut mounts = match self.mounts.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if mounts.iter().any(|m| m == dir) {
            return Ok(());
        }
        // Keep the directory's files (state file, lock files) and put them back on the tmpfs.
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err("read", dir))? {
            let entry = entry.map_err(io_err("read", dir))?;
            let path = entry.path();
            if path.is_file() {
                let bytes = std::fs::read(&path).map_err(io_err("read", &path))?;
                let mode = std::fs::metadata(&path)
                    .map_err(io_err("stat", &path))?
                    .permissions();
                files.push((entry.file_name(), bytes, mode));
            }
        }
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={SMALL_FS_BYTES},mode=0755"))
            .arg("tmpfs")
            .arg(dir)
            .output()
            .map_err(io_err("run mount for", dir))?;
        if !out.status.success() {
            return Err(HarnessError::Mount {
                dir: dir.to_path_buf(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        mounts.push(dir.to_path_buf());
        for (name, bytes, mode) in files {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(io_err("restore", &path))?;
            std::fs::set_permissions(&path, mode).map_err(io_err("chmod", &path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_shell_quote_keeps_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("/tmp/a-b_c/story"), "/tmp/a-b_c/story");
        assert_eq!(shell_quote("127.0.0.1:5"), "127.0.0.1:5");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
