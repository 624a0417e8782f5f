//! RPC economy: what one `syncguard story` daemon asks of its node per health round.
//!
//! A **counting stand-in node** — a small HTTP server answering CometBFT's `/status`,
//! `/net_info`, `/commit?height=` and story-geth's JSON-RPC from the recorded fixtures in
//! `../shared/fixtures` (heights, times and the validator's address patched in, the shapes
//! as recorded), counting every request by path (and by JSON-RPC method) — drives the real
//! daemon binary. Its chain advances with wall time. A **pruned** stand-in keeps only the
//! last [`RETAINED`] blocks (its `earliest_block_height` follows the head, as on a
//! state-synced or pruning node); an **archive** one has every block from 1. Its CometBFT port
//! is behind a switch that the daemon's `story.stop_command` / `start_command` flip (files in
//! the test's directory): stopped, it refuses connections, as a stopped `story` does.
//!
//! The rules of the economy, checked on the requests (`check`):
//! 1. a `/commit` is asked only for a canonical height (below the node's head when it is
//!    asked) and, in the steady rounds, one the node still has (not below its
//!    `earliest_block_height` then);
//! 2. no height is asked twice (the health loop's signing monitor and the witness share one
//!    commit log: what one read, the other does not ask again) — unless the node was stopped
//!    in between, which may have cut the first answer;
//! 3. in the steady rounds, the commits asked are at most the blocks that became canonical
//!    (plus the heights not read yet when the steady rounds began);
//! 4. each steady round asks the six health probes once (`/status`, `/net_info`, four
//!    story-geth calls) and nothing else but commits — plus, on a passive whose peer is lost,
//!    the witness's own `/status` (at most one a round: it asks for the head, then only the
//!    commits not read yet).
//!
//! Tests:
//! - `story_rpc_economy_a_round_costs_its_probes_plus_the_new_blocks_commits` (monitor: no
//!   peer; the seed's intervals ten times faster — 0.5 s rounds, 50 ms blocks: ten new blocks
//!   a round as with the seed's 5 s rounds and 0.5 s blocks), against a pruned stand-in; and
//!   the strip of `/status` drawn from the same reads.
//! - `story_rpc_economy_a_passive_whose_peer_is_lost_shares_the_commits_with_its_witness`:
//!   a passive with a peer configured that never answers; after its start (it makes sure the
//!   key is not live: stop, placeholder, start) it asks the chain as witness every round or
//!   so; the chain shows the validator signing (every commit carries its signature), so it
//!   never promotes. Same rules, one more `/status` a round allowed.
//! - `story_rpc_economy_bench_at_the_seed_intervals` (`--ignored`): the seed's intervals
//!   (5 s rounds, 0.5 s blocks) for `SYNCGUARD_BENCH_SECS` (default 300), printing calls
//!   per round and the daemon's RSS and CPU from `/proc`, then checking the rules.
//!   `SYNCGUARD_BENCH_PEER=lost` for the passive with a lost peer (default: monitor),
//!   `SYNCGUARD_BENCH_NODE=archive` for an archive stand-in (default: pruned),
//!   `SYNCGUARD_BENCH_DUMP=1` to print the commits asked, round by round. Its numbers are in
//!   `BENCHMARKS.md`.
//!
//! Every test runs `SYNCGUARD_BIN` when set (another build, e.g. main's, to measure the
//! "before"; the rules then say what it breaks), else this crate's binary.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{OriginalUri, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// The stand-in chain's height when it starts.
const INITIAL_HEIGHT: u64 = 5_000;
/// Blocks a pruned stand-in keeps: fewer than the 200 commits a daemon's round may read.
const RETAINED: u64 = 100;

/// The six health probes of a round, as the stand-in counts them.
const PROBES: [&str; 6] = [
    "GET /status",
    "GET /net_info",
    "POST eth_blockNumber",
    "POST eth_syncing",
    "POST net_peerCount",
    "POST eth_getBlockByNumber",
];

fn fixture(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// The `result` of a recorded CometBFT answer.
fn comet_result(name: &str) -> Value {
    let v: Value = serde_json::from_str(&fixture(&format!("cometbft/{name}")))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    v["result"].clone()
}

/// method → the recorded `result` of each `.io` exchange (`>>` request, `<<` answer).
fn evm_results() -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for name in [
        "evm_eth_blockNumber.io",
        "evm_eth_syncing_false.io",
        "evm_net_peerCount.io",
        "evm_eth_getBlockByNumber_latest.io",
    ] {
        let text = fixture(&format!("evm/{name}"));
        let line = |prefix: &str| -> Value {
            let l = text
                .lines()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("{name}: no `{prefix}` line"));
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let method = line(">> ")["method"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        out.insert(method, line("<< ")["result"].clone());
    }
    out
}

/// One request the stand-in answered.
#[derive(Debug, Clone)]
struct Request {
    /// `GET /status`, `GET /commit`, `POST eth_blockNumber`, …
    key: String,
    /// The height asked, for `/commit`.
    height: Option<u64>,
    /// The chain's newest height when it was answered.
    head: u64,
    /// The node's earliest height then.
    earliest: u64,
    /// Marks of the node's stops: two for each (one before it closes, one after it has
    /// closed), so a request counted between them may have been cut by the stop.
    stops: u64,
}

/// What kind of node the stand-in is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// Keeps the last [`RETAINED`] blocks.
    Pruned,
    /// Has every block from 1.
    Archive,
}

struct Chain {
    started: Instant,
    start_time: SystemTime,
    block: Duration,
    node: Node,
    address: String,
    status: Value,
    commit: Value,
    net_info: Value,
    evm: HashMap<String, Value>,
    log: Mutex<Vec<Request>>,
    stops: std::sync::atomic::AtomicU64,
}

impl Chain {
    fn head(&self) -> u64 {
        let blocks = self.started.elapsed().as_nanos() / self.block.as_nanos().max(1);
        INITIAL_HEIGHT + u64::try_from(blocks).unwrap_or(u64::MAX / 2)
    }

    /// The oldest height the node still has.
    fn earliest(&self, head: u64) -> u64 {
        match self.node {
            Node::Pruned => head - RETAINED,
            Node::Archive => 1,
        }
    }

    fn time_of(&self, height: u64) -> String {
        let t = if height >= INITIAL_HEIGHT {
            self.start_time + self.block * u32::try_from(height - INITIAL_HEIGHT).unwrap_or(0)
        } else {
            self.start_time - self.block * u32::try_from(INITIAL_HEIGHT - height).unwrap_or(0)
        };
        humantime::format_rfc3339_nanos(t).to_string()
    }

    fn count(&self, key: String, height: Option<u64>) -> u64 {
        let head = self.head();
        let earliest = self.earliest(head);
        let stops = self.stops.load(std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut log) = self.log.lock() {
            log.push(Request {
                key,
                height,
                head,
                earliest,
                stops,
            });
        }
        head
    }

    fn requests(&self) -> Vec<Request> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

type Shared = Arc<Chain>;

fn envelope(result: Value) -> Response {
    Json(json!({"jsonrpc": "2.0", "id": -1, "result": result})).into_response()
}

/// A CometBFT RPC error, as `cometbft_rpc_error_examples.txt` shows them (HTTP 500).
fn rpc_error(code: i64, message: &str, data: String) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": -1,
                      "error": {"code": code, "message": message, "data": data}});
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

async fn status(State(chain): State<Shared>) -> Response {
    let head = chain.count("GET /status".into(), None);
    let mut r = chain.status.clone();
    let earliest = chain.earliest(head);
    let sync = &mut r["sync_info"];
    sync["latest_block_height"] = json!(head.to_string());
    sync["latest_block_time"] = json!(chain.time_of(head));
    sync["earliest_block_height"] = json!(earliest.to_string());
    sync["earliest_block_time"] = json!(chain.time_of(earliest));
    envelope(r)
}

async fn net_info(State(chain): State<Shared>) -> Response {
    chain.count("GET /net_info".into(), None);
    let mut r = chain.net_info.clone();
    // The recorded node had no peers; a healthy one has a few.
    r["n_peers"] = json!("3");
    envelope(r)
}

async fn commit(
    State(chain): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let asked = query
        .get("height")
        .and_then(|h| h.trim_matches('"').parse::<u64>().ok());
    let head = chain.count("GET /commit".into(), asked);
    let height = asked.unwrap_or(head);
    if height > head {
        let why = format!(
            "height {height} must be less than or equal to the current blockchain height {head}"
        );
        return rpc_error(-32603, "Internal error", why);
    }
    let earliest = chain.earliest(head);
    if height < earliest {
        let why = format!("height {height} is not available, lowest height is {earliest}");
        return rpc_error(-32603, "Internal error", why);
    }
    let mut r = chain.commit.clone();
    let time = chain.time_of(height);
    r["canonical"] = json!(height < head);
    r["signed_header"]["header"]["height"] = json!(height.to_string());
    r["signed_header"]["header"]["time"] = json!(time);
    let c = &mut r["signed_header"]["commit"];
    c["height"] = json!(height.to_string());
    c["signatures"][0]["validator_address"] = json!(chain.address);
    c["signatures"][0]["timestamp"] = json!(time);
    envelope(r)
}

async fn evm(State(chain): State<Shared>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let method = request["method"].as_str().unwrap_or("?").to_string();
    let head = chain.count(format!("POST {method}"), None);
    let id = request["id"].clone();
    let Some(recorded) = chain.evm.get(&method) else {
        let error = json!({"code": -32601, "message": format!("the method {method} does not exist/is not available")});
        return Json(json!({"jsonrpc": "2.0", "id": id, "error": error})).into_response();
    };
    let mut result = recorded.clone();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match method.as_str() {
        "eth_blockNumber" => result = json!(format!("{head:#x}")),
        "net_peerCount" => result = json!("0x3"),
        "eth_getBlockByNumber" => {
            result["number"] = json!(format!("{head:#x}"));
            result["timestamp"] = json!(format!("{now:#x}"));
        }
        _ => {}
    }
    Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

async fn other(State(chain): State<Shared>, OriginalUri(uri): OriginalUri) -> Response {
    chain.count(format!("GET {}", uri.path()), None);
    let body = json!({"jsonrpc": "2.0", "id": -1, "error": {"code": -32601, "message": "Method not found"}});
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// The accept loop of a [`Switch`] that is on, and its open connections.
type Front = (JoinHandle<()>, Arc<Mutex<Vec<AbortHandle>>>);

/// A TCP front on a fixed loopback port that forwards to `target` while on; off, nothing
/// listens there (connections are refused) and the open ones are closed — a stopped node.
struct Switch {
    addr: SocketAddr,
    target: SocketAddr,
    front: tokio::sync::Mutex<Option<Front>>,
}

impl Switch {
    async fn start(target: SocketAddr) -> Arc<Switch> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let switch = Arc::new(Switch {
            addr,
            target,
            front: tokio::sync::Mutex::new(None),
        });
        *switch.front.lock().await = Some(Switch::serve(listener, target));
        switch
    }

    fn serve(listener: TcpListener, target: SocketAddr) -> Front {
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let kept = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                if let Ok(mut c) = kept.lock() {
                    c.retain(|h| !h.is_finished());
                    c.push(task.abort_handle());
                }
            }
        });
        (accept, conns)
    }

    async fn set(&self, on: bool) {
        let mut front = self.front.lock().await;
        match (on, front.is_some()) {
            (false, true) => {
                if let Some((accept, conns)) = front.take() {
                    accept.abort();
                    let _ = accept.await;
                    for c in conns.lock().map(|c| c.clone()).unwrap_or_default() {
                        c.abort();
                    }
                }
            }
            (true, false) => {
                // The same port again (the listener sets SO_REUSEADDR).
                for _ in 0..50 {
                    if let Ok(listener) = TcpListener::bind(self.addr).await {
                        *front = Some(Switch::serve(listener, self.target));
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                panic!("cannot listen on {} again", self.addr);
            }
            _ => {}
        }
    }
}

/// The stand-in: CometBFT (behind its switch) on one port, story-geth on another, one chain
/// and one count.
struct StandIn {
    chain: Shared,
    comet: Arc<Switch>,
    evm: SocketAddr,
}

impl StandIn {
    async fn start(block: Duration, node: Node, address: &str) -> StandIn {
        let chain = Arc::new(Chain {
            started: Instant::now(),
            start_time: SystemTime::now(),
            block,
            node,
            address: address.to_string(),
            status: comet_result("tmrs_v0_38_status.json"),
            commit: comet_result("tmrs_v0_38_commit_at_height_10.json"),
            net_info: comet_result("tmrs_v0_38_net_info.json"),
            evm: evm_results(),
            log: Mutex::new(Vec::new()),
            stops: Default::default(),
        });
        let comet = Router::new()
            .route("/status", get(status))
            .route("/net_info", get(net_info))
            .route("/commit", get(commit))
            .fallback(other)
            .with_state(chain.clone());
        let evm_app = Router::new()
            .route("/", post(evm))
            .fallback(other)
            .with_state(chain.clone());
        let serve = |app: Router| async move {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a loopback port");
            let addr = listener.local_addr().expect("local addr");
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            addr
        };
        let comet_addr = serve(comet).await;
        let evm_addr = serve(evm_app).await;
        StandIn {
            chain,
            comet: Switch::start(comet_addr).await,
            evm: evm_addr,
        }
    }

    /// Health rounds seen so far (each asks `/net_info` once; nothing else does).
    fn rounds(&self) -> usize {
        self.chain
            .requests()
            .iter()
            .filter(|r| r.key == "GET /net_info")
            .count()
    }

    /// Runs `story` as the daemon's commands say: `story.stopped` in `dir` present = stopped.
    fn follow_commands(&self, dir: &Path) {
        let switch = self.comet.clone();
        let chain = self.chain.clone();
        let flag = dir.join("story.stopped");
        tokio::spawn(async move {
            let mut was_on = true;
            loop {
                let on = !flag.exists();
                if was_on && !on {
                    // A request counted between the two marks may have been cut by the stop.
                    chain
                        .stops
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    switch.set(false).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    chain
                        .stops
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                was_on = on;
                switch.set(on).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The validator key the daemon watches for (the recorded secp256k1 example key, 0600) and
/// its address.
fn key_store(dir: &Path) -> (PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("priv_validator_key.json");
    std::fs::write(
        &path,
        fixture("privval/privval_key_secp256k1_cometbft_docs.json"),
    )
    .expect("key store");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let address = syncguard_validator::ValidatorKey::load_public(&path)
        .expect("the fixture key loads")
        .address_hex();
    (path, address)
}

/// Who the daemon is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No peer: it monitors its node only (the health loop, the commit log, the strip).
    Monitor,
    /// A passive whose configured peer never answers: the health loop, and the witness.
    PassiveLostPeer,
}

/// The `communication:` section of a peer that never answers, with this node's certificates.
fn lost_peer_yaml(dir: &Path) -> String {
    use syncguard_peer::certs::ClusterCa;
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).expect("tls dir");
    let ca = ClusterCa::generate().expect("a cluster CA");
    ca.write_cert(&tls.join("ca.pem")).expect("ca.pem");
    ca.issue(
        &syncguard_failover::NodeId::new("story-validator-2"),
        &["127.0.0.1".to_string()],
    )
    .expect("a node certificate")
    .write(&tls.join("node.pem"), &tls.join("node.key"))
    .expect("write the certificate");
    format!(
        r#"communication:
  peers:
    - id: "story-validator-1"
      address: "127.0.0.1:{port}"
  tls:
    ca_cert: "{dir}/tls/ca.pem"
    cert: "{dir}/tls/node.pem"
    key: "{dir}/tls/node.key"
"#,
        port = free_port(),
        dir = dir.display()
    )
}

/// `syncguard story` against the stand-in, with `round` health rounds and `block_ms` as the
/// configured block interval; and its API port. Its story commands flip the stand-in's
/// switch through a file (never a service of this host).
#[allow(clippy::too_many_arguments)]
fn start_daemon(
    bin: &Path,
    dir: &Path,
    node: &StandIn,
    key: &Path,
    mode: Mode,
    round: f64,
    block_ms: u64,
) -> (Daemon, u16) {
    let port = free_port();
    for sub in ["data", "backup", "config"] {
        std::fs::create_dir_all(dir.join(sub)).expect("a directory");
    }
    std::fs::write(
        dir.join("data/priv_validator_state.json"),
        "{\n  \"height\": \"0\",\n  \"round\": 0,\n  \"step\": 0\n}",
    )
    .expect("state file");
    let placeholder = dir.join("placeholder_key.json");
    syncguard_validator::ValidatorKey::generate_secp256k1()
        .save_new(&placeholder)
        .expect("placeholder key");
    let flag = dir.join("story.stopped");
    let communication = match mode {
        Mode::Monitor => String::new(),
        Mode::PassiveLostPeer => {
            // The designated standby of epoch 1 (its active was signing when it last saw
            // it): with its peer lost, it asks the chain before it may fail over alone.
            std::fs::write(
                dir.join("backup/syncguard-epoch.json"),
                r#"{"epoch": 1, "standby_right": true}"#,
            )
            .expect("epoch file");
            lost_peer_yaml(dir)
        }
    };
    let config = format!(
        r#"
server:
  id: "story-validator-2"
  role: "secondary"
  bind: "127.0.0.1"
  port: {port}
story:
  comet_rpc_url: "http://{comet}"
  evm_rpc_url: "http://{evm}"
  validator_state_path: "{dir}/data/priv_validator_state.json"
  validator_state_backup: "{dir}/backup/priv_validator_state.json"
  validator_key_store: "{key}"
  validator_key_path: "{dir}/config/priv_validator_key.json"
  placeholder_key_path: "{placeholder}"
  node_config_path: "{dir}/config/config.toml"
  start_command: "rm -f {flag}"
  stop_command: "touch {flag}"
  kill_command: "touch {flag}"
  status_command: "test ! -e {flag}"
  node_role: "passive"
  is_primary_site: false
  block_interval: {block_ms}
  # The stand-in starts at once: a short start bounds how long an activation may stay
  # unverified, so the wait after its start (the chain shows the validator signing, the
  # holder never seen active) ends within a few seconds and the witness runs.
  start_timeout: 2
failover:
  health_check_interval: {round}
{communication}logging:
  level: "info"
  file: "{dir}/syncguard.log"
"#,
        comet = node.comet.addr,
        evm = node.evm,
        dir = dir.display(),
        key = key.display(),
        placeholder = placeholder.display(),
        flag = flag.display(),
    );
    std::fs::write(
        dir.join("config/config.toml"),
        "double_sign_check_height = 0\n",
    )
    .expect("config.toml");
    let path = dir.join("config-story.yaml");
    std::fs::write(&path, config).expect("write config");
    node.follow_commands(dir);
    let child = Command::new(bin)
        .args(["story", "--config"])
        .arg(&path)
        .args(["--role", "passive"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    (Daemon(child), port)
}

fn bin() -> PathBuf {
    std::env::var_os("SYNCGUARD_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_syncguard")),
        PathBuf::from,
    )
}

fn daemon_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("syncguard.log")).unwrap_or_default()
}

/// Waits (bounded) until the stand-in has seen `n` health rounds.
async fn wait_rounds(node: &StandIn, n: usize, bound: Duration, dir: &Path) {
    let start = Instant::now();
    while node.rounds() < n {
        if start.elapsed() > bound {
            panic!(
                "only {} rounds within {bound:?}; the daemon's log:\n{}",
                node.rounds(),
                daemon_log(dir)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_status(port: u16) -> Option<Value> {
    reqwest::get(format!("http://127.0.0.1:{port}/status"))
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Waits (bounded) until the daemon's `/status` says `role`.
async fn wait_role(port: u16, role: &str, bound: Duration, dir: &Path) {
    let start = Instant::now();
    loop {
        let seen = get_status(port).await;
        if seen.as_ref().is_some_and(|s| s["node"]["role"] == role) {
            return;
        }
        if start.elapsed() > bound {
            panic!(
                "not {role} within {bound:?}: {seen:#?}\nthe daemon's log:\n{}",
                daemon_log(dir)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The steady rounds: a round starts at its `/net_info` (asked by the health round only)
/// and lasts until the next one; the last round may be cut by the end of the run and is
/// left out.
#[derive(Debug, Default)]
struct Tally {
    rounds: u64,
    /// Requests by key over the steady rounds.
    by_key: BTreeMap<String, u64>,
    /// Blocks made over the steady rounds.
    new_blocks: u64,
    /// The most `/status` requests in one steady round.
    max_status: u64,
    /// The most commits asked in one steady round, and the blocks made in it.
    max_commits: (u64, u64),
}

impl Tally {
    fn commits(&self) -> u64 {
        self.by_key.get("GET /commit").copied().unwrap_or(0)
    }

    fn total(&self) -> u64 {
        self.by_key.values().sum()
    }

    fn per_round(&self, n: u64) -> f64 {
        n as f64 / self.rounds.max(1) as f64
    }

    fn table(&self) -> String {
        let mut out = String::new();
        for (k, n) in &self.by_key {
            out.push_str(&format!(
                "  {k:<28} {:>6.2} per round ({n} in {} rounds)\n",
                self.per_round(*n),
                self.rounds
            ));
        }
        out.push_str(&format!(
            "  {:<28} {:>6.2} per round; new blocks {:.2} per round\n",
            "all",
            self.per_round(self.total()),
            self.per_round(self.new_blocks)
        ));
        out
    }
}

/// Indices of the round starts at or after `from`.
fn round_starts(requests: &[Request], from: usize) -> Vec<usize> {
    (from..requests.len())
        .filter(|&i| requests[i].key == "GET /net_info")
        .collect()
}

/// Counts the steady rounds: those starting at or after `from`. Pure counting, no rule.
fn tally(requests: &[Request], from: usize) -> Tally {
    let starts = round_starts(requests, from);
    let mut t = Tally::default();
    for w in starts.windows(2) {
        let round = &requests[w[0]..w[1]];
        let new = requests[w[1]].head - requests[w[0]].head;
        let count = |key: &str| round.iter().filter(|r| r.key == key).count() as u64;
        t.rounds += 1;
        t.new_blocks += new;
        t.max_status = t.max_status.max(count("GET /status"));
        if count("GET /commit") > t.max_commits.0 {
            t.max_commits = (count("GET /commit"), new);
        }
        for r in round {
            *t.by_key.entry(r.key.clone()).or_default() += 1;
        }
    }
    t
}

/// The rules of the economy (the module's doc), over the whole run (1, 2) and the steady
/// rounds from `from` (3, 4). `Err` lists every rule broken.
fn check(requests: &[Request], from: usize, mode: Mode) -> Result<Tally, String> {
    let mut broken = Vec::new();
    // 1. Only canonical heights the node still has.
    let commits: Vec<&Request> = requests.iter().filter(|r| r.key == "GET /commit").collect();
    let not_canonical: Vec<u64> = commits
        .iter()
        .filter_map(|r| r.height.filter(|h| *h >= r.head))
        .collect();
    // Below the earliest height: in the steady rounds. (The first round's read of the
    // history may race the node's pruning: a height it had when its `/status` answered may
    // be gone a moment later.)
    let pruned: Vec<u64> = requests[from..]
        .iter()
        .filter(|r| r.key == "GET /commit")
        .filter_map(|r| r.height.filter(|h| *h < r.earliest))
        .collect();
    let unnamed = commits.iter().filter(|r| r.height.is_none()).count();
    if !not_canonical.is_empty() {
        broken.push(format!(
            "rule 1: {} commits asked at or above the head (not canonical yet), e.g. {:?}",
            not_canonical.len(),
            &not_canonical[..not_canonical.len().min(8)]
        ));
    }
    if !pruned.is_empty() {
        broken.push(format!(
            "rule 1: {} commits asked in the steady rounds below the node's earliest height (it \
             no longer has them), e.g. {:?}",
            pruned.len(),
            &pruned[..pruned.len().min(8)]
        ));
    }
    if unnamed > 0 {
        broken.push(format!("rule 1: {unnamed} commits asked without a height"));
    }
    // 2. Never twice — unless the node was stopped in between (the stop may have cut the
    // first answer).
    let mut asked: BTreeMap<u64, u32> = BTreeMap::new();
    let mut last_ask: BTreeMap<u64, u64> = BTreeMap::new();
    for r in &commits {
        let Some(h) = r.height else { continue };
        match last_ask.insert(h, r.stops) {
            Some(stops) if stops == r.stops => *asked.entry(h).or_default() += 1,
            _ => {
                asked.entry(h).or_insert(1);
            }
        }
    }
    let twice: Vec<(u64, u32)> = asked
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(h, n)| (*h, *n))
        .collect();
    if !twice.is_empty() {
        broken.push(format!(
            "rule 2: {} heights asked more than once (height, times), e.g. {:?}",
            twice.len(),
            &twice[..twice.len().min(8)]
        ));
    }
    // 3. The steady rounds ask at most the blocks made in them, plus what was not read yet
    // when they began (heights the node had, below its head, not asked before).
    let starts = round_starts(requests, from);
    if starts.len() < 4 {
        broken.push(format!(
            "too few steady rounds: {}",
            starts.len().saturating_sub(1)
        ));
        return Err(broken.join("\n"));
    }
    let t = tally(requests, from);
    let (first, last) = (starts[0], starts[starts.len() - 1]);
    let before: BTreeSet<u64> = requests[..first]
        .iter()
        .filter(|r| r.key == "GET /commit")
        .filter_map(|r| r.height)
        .collect();
    let at = &requests[first];
    let backlog = (at.earliest.max(1)..at.head)
        .filter(|h| !before.contains(h))
        .count() as u64;
    let steady_commits = requests[first..last]
        .iter()
        .filter(|r| r.key == "GET /commit")
        .count() as u64;
    if steady_commits > t.new_blocks + backlog {
        broken.push(format!(
            "rule 3: {steady_commits} commits asked in {} steady rounds, with {} new blocks and \
             {backlog} heights not read before them",
            t.rounds, t.new_blocks
        ));
    }
    // 4. The six probes once a round (a probe answered just before its round's `/net_info`
    // counts in the round before: ±1 over the run), the witness's `/status` at most once a
    // round, nothing else.
    for key in t.by_key.keys() {
        if key != "GET /commit" && !PROBES.contains(&key.as_str()) {
            broken.push(format!("rule 4: an unexpected request: {key}"));
        }
    }
    for p in PROBES {
        let n = t.by_key.get(p).copied().unwrap_or(0);
        let allowed = match (p, mode) {
            ("GET /status", Mode::PassiveLostPeer) => 2 * t.rounds,
            _ => t.rounds,
        };
        if n + 1 < t.rounds || n > allowed + 1 {
            broken.push(format!(
                "rule 4: {p}: {n} requests in {} rounds (allowed {}..={})",
                t.rounds,
                t.rounds.saturating_sub(1),
                allowed + 1
            ));
        }
    }
    let status_cap = match mode {
        Mode::Monitor => 2,
        Mode::PassiveLostPeer => 3,
    };
    if t.max_status > status_cap {
        broken.push(format!(
            "rule 4: {} `/status` requests in one round (at most {status_cap})",
            t.max_status
        ));
    }
    if broken.is_empty() {
        Ok(t)
    } else {
        Err(broken.join("\n"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn story_rpc_economy_a_round_costs_its_probes_plus_the_new_blocks_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, address) = key_store(dir.path());
    // The seed's 5 s rounds and 0.5 s blocks, ten times faster: ten new blocks a round.
    let node = StandIn::start(Duration::from_millis(50), Node::Pruned, &address).await;
    let (daemon, port) = start_daemon(&bin(), dir.path(), &node, &key, Mode::Monitor, 0.5, 100);
    // Past the first round (it reads the history the node has).
    wait_rounds(&node, 2, Duration::from_secs(30), dir.path()).await;
    let from = node.chain.requests().len();
    wait_rounds(&node, 18, Duration::from_secs(60), dir.path()).await;
    // The strip is drawn from the same reads: every commit of the stand-in carries the
    // validator's signature; only the newest height is not known yet.
    let status = get_status(port).await.unwrap_or(Value::Null);
    drop(daemon);
    let strip = &status["node"]["signing"]["strip"];
    let cells = strip["cells"].as_str().unwrap_or_default();
    assert_eq!(cells.len(), 100, "{strip:#}");
    assert_eq!(
        cells.trim_end_matches('?').trim_start_matches('S'),
        "",
        "{strip:#}"
    );
    assert!(cells.ends_with("S?"), "{strip:#}");
    let requests = node.chain.requests();
    let tally = check(&requests, from, Mode::Monitor).unwrap_or_else(|why| {
        panic!("{why}\n{}", tally(&requests, from).table());
    });
    println!(
        "stand-in node (pruned), monitor, 0.5 s rounds, 50 ms blocks, {} steady rounds:\n{}",
        tally.rounds,
        tally.table()
    );
    // The claim in words: a round costs its six probes and the new blocks' commits.
    assert!(tally.commits() > 0);
    assert!(
        tally.total() <= 6 * tally.rounds + tally.new_blocks + 6,
        "{}",
        tally.table()
    );
    let (most, made) = tally.max_commits;
    assert!(
        most <= made + 2,
        "{most} commits in a round that made {made} blocks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn story_rpc_economy_a_passive_whose_peer_is_lost_shares_the_commits_with_its_witness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, address) = key_store(dir.path());
    let node = StandIn::start(Duration::from_millis(50), Node::Pruned, &address).await;
    let (daemon, port) = start_daemon(
        &bin(),
        dir.path(),
        &node,
        &key,
        Mode::PassiveLostPeer,
        0.5,
        100,
    );
    // Its start: the key made safe (stop, placeholder, start), then passive.
    wait_role(port, "passive", Duration::from_secs(60), dir.path()).await;
    let start = node.rounds();
    wait_rounds(&node, start + 2, Duration::from_secs(30), dir.path()).await;
    let from = node.chain.requests().len();
    wait_rounds(&node, start + 22, Duration::from_secs(60), dir.path()).await;
    let status = get_status(port).await.unwrap_or(Value::Null);
    drop(daemon);
    let log = daemon_log(dir.path());
    assert_eq!(status["node"]["role"], "passive", "{status:#}\n{log}");
    let requests = node.chain.requests();
    let tally = check(&requests, from, Mode::PassiveLostPeer).unwrap_or_else(|why| {
        panic!("{why}\n{}\n{log}", tally(&requests, from).table());
    });
    println!(
        "stand-in node (pruned), passive with a lost peer, 0.5 s rounds, 50 ms blocks, {} \
         steady rounds:\n{}",
        tally.rounds,
        tally.table()
    );
    // The witness did run (its `/status` beside the round's), and read nothing twice.
    let statuses = tally.by_key.get("GET /status").copied().unwrap_or(0);
    assert!(
        statuses > tally.rounds + 1,
        "no witness in {} rounds ({statuses} `/status`)\n{log}",
        tally.rounds
    );
    assert!(
        tally.total() <= 7 * tally.rounds + tally.new_blocks + 7,
        "{}",
        tally.table()
    );
}

/// `/proc/<pid>/status` VmRSS and VmHWM (kB), and `/proc/<pid>/stat` utime + stime (ticks).
fn proc_sample(pid: u32) -> (u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 14th and 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (kb("VmRSS:"), kb("VmHWM:"), ticks(11) + ticks(12))
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: minutes at the seed's intervals; prints, then checks the rules"]
async fn story_rpc_economy_bench_at_the_seed_intervals() {
    let secs: u64 = std::env::var("SYNCGUARD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mode = match std::env::var("SYNCGUARD_BENCH_PEER").as_deref() {
        Ok("lost") => Mode::PassiveLostPeer,
        _ => Mode::Monitor,
    };
    let kind = match std::env::var("SYNCGUARD_BENCH_NODE").as_deref() {
        Ok("archive") => Node::Archive,
        _ => Node::Pruned,
    };
    let bin = bin();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, address) = key_store(dir.path());
    let node = StandIn::start(Duration::from_millis(500), kind, &address).await;
    let (daemon, port) = start_daemon(&bin, dir.path(), &node, &key, mode, 5.0, 500);
    let pid = daemon.0.id();
    if mode == Mode::PassiveLostPeer {
        wait_role(port, "passive", Duration::from_secs(120), dir.path()).await;
    }
    // Past the first rounds (the history read, the allocator warmed up).
    let start = node.rounds();
    wait_rounds(&node, start + 2, Duration::from_secs(60), dir.path()).await;
    let from = node.chain.requests().len();
    let (_, _, cpu0) = proc_sample(pid);
    let t0 = Instant::now();
    let mut rss_max = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        rss_max = rss_max.max(proc_sample(pid).0);
    }
    let (rss, hwm, cpu1) = proc_sample(pid);
    let wall = t0.elapsed().as_secs_f64();
    drop(daemon);
    let requests = node.chain.requests();
    let t = tally(&requests, from);
    let failed = requests[from..]
        .iter()
        .filter(|r| {
            r.key == "GET /commit" && r.height.is_some_and(|h| h < r.earliest || h >= r.head)
        })
        .count() as u64;
    if std::env::var_os("SYNCGUARD_BENCH_DUMP").is_some() {
        // What was asked, round by round: the head, then the commits (`!` = refused).
        let starts = round_starts(&requests, 0);
        for w in starts.windows(2) {
            let round = &requests[w[0]..w[1]];
            let asked: Vec<String> = round
                .iter()
                .filter(|r| r.key == "GET /commit")
                .map(|r| {
                    let h = r.height.unwrap_or(0);
                    let refused = h < r.earliest || h >= r.head;
                    format!("{h}{}", if refused { "!" } else { "" })
                })
                .collect();
            println!(
                "head {} (earliest {}): {}",
                round[0].head,
                round[0].earliest,
                asked.join(" ")
            );
        }
    }
    let cpu_s = (cpu1 - cpu0) as f64 / clock_ticks() as f64;
    println!(
        "{} (pid {pid}), {mode:?}, {kind:?} stand-in, 5 s rounds, 0.5 s blocks, {wall:.0} s \
         measured, {} steady rounds:\n{}  commits the node could not answer: {:.2} per round\n\
         RSS {rss} kB at the end (max sampled {rss_max} kB, VmHWM {hwm} kB); CPU {cpu_s:.2} s \
         in {wall:.0} s = {:.3} % of one core",
        bin.display(),
        t.rounds,
        t.table(),
        t.per_round(failed),
        100.0 * cpu_s / wall
    );
    if let Err(why) = check(&requests, from, mode) {
        panic!("{why}");
    }
}
