//! RPC economy: what one `syncguard story` daemon asks of its node per health round.
//!
//! A **counting stand-in node** — a small HTTP server answering CometBFT's `/status`,
//! `/net_info`, `/commit?height=` and story-geth's JSON-RPC from the recorded fixtures in
//! `../shared/fixtures` (heights, times and the validator's address patched in, the shapes
//! as recorded), counting every request by path (and by JSON-RPC method) — drives the real
//! daemon binary. Its chain advances with wall time; its node is pruned (it still has only
//! the last few hundred blocks), as a state-synced node is.
//!
//! - `story_rpc_economy_a_round_costs_its_probes_plus_the_new_blocks_commits` (asserted, at the
//!   seed's intervals scaled down ten times: 0.5 s rounds, 50 ms blocks — ten new blocks
//!   a round as with the seed's 5 s rounds and 0.5 s blocks): every round asks the six probes
//!   once, and commits only for the heights that became canonical since the round before;
//!   no commit is asked twice, none the node has pruned, none not canonical yet.
//! - `story_rpc_economy_bench_at_the_seed_intervals` (`--ignored`; prints, asserts nothing
//!   about time): the same at the seed's intervals for `SYNCGUARD_BENCH_SECS` (default 300),
//!   with the daemon's RSS and CPU from `/proc`. Run against a release binary with
//!   `SYNCGUARD_BIN=target/release/syncguard`. Its numbers are in `BENCHMARKS.md`.
//!
//! The daemon runs with no peer (monitoring only): the health loop — probes, then the commit
//! log's catch-up — is the same task on an active, a passive or a monitor. A passive adds the
//! witness only when its peer is lost (one `/status` and the commits not read yet).

use std::collections::{BTreeMap, HashMap};
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

/// The stand-in chain's height when it starts.
const INITIAL_HEIGHT: u64 = 5_000;
/// The oldest height the stand-in node still has when it starts (a pruned node: fewer than
/// the 200 commits a daemon's first round would like to read).
const EARLIEST_HEIGHT: u64 = 4_900;

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
        let method = line(">> ")["method"].as_str().unwrap_or_default().to_string();
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
}

struct Chain {
    started: Instant,
    start_time: SystemTime,
    block: Duration,
    address: String,
    status: Value,
    commit: Value,
    net_info: Value,
    evm: HashMap<String, Value>,
    log: Mutex<Vec<Request>>,
}

impl Chain {
    fn head(&self) -> u64 {
        let blocks = self.started.elapsed().as_nanos() / self.block.as_nanos().max(1);
        INITIAL_HEIGHT + u64::try_from(blocks).unwrap_or(u64::MAX / 2)
    }

    /// The oldest height the node still has: it keeps the last `INITIAL - EARLIEST` blocks
    /// and prunes as it goes.
    fn earliest(&self, head: u64) -> u64 {
        head - (INITIAL_HEIGHT - EARLIEST_HEIGHT)
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
        if let Ok(mut log) = self.log.lock() {
            log.push(Request { key, height, head });
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

/// The stand-in: CometBFT on one port, story-geth on another, one chain and one count.
struct StandIn {
    chain: Shared,
    comet: SocketAddr,
    evm: SocketAddr,
}

impl StandIn {
    async fn start(block: Duration, address: &str) -> StandIn {
        let chain = Arc::new(Chain {
            started: Instant::now(),
            start_time: SystemTime::now(),
            block,
            address: address.to_string(),
            status: comet_result("tmrs_v0_38_status.json"),
            commit: comet_result("tmrs_v0_38_commit_at_height_10.json"),
            net_info: comet_result("tmrs_v0_38_net_info.json"),
            evm: evm_results(),
            log: Mutex::new(Vec::new()),
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
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
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
            comet: comet_addr,
            evm: evm_addr,
        }
    }

    fn rounds(&self) -> usize {
        self.chain
            .requests()
            .iter()
            .filter(|r| r.key == "GET /status")
            .count()
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

/// The validator key the daemon watches for (the recorded secp256k1 example key) and its
/// address.
fn key_store(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("priv_validator_key.json");
    std::fs::write(&path, fixture("privval/privval_key_secp256k1_cometbft_docs.json"))
        .expect("key store");
    let address = syncguard_validator::ValidatorKey::load_public(&path)
        .expect("the fixture key loads")
        .address_hex();
    (path, address)
}

/// `syncguard story` (monitoring only) against the stand-in, with `round` health rounds and
/// `block_ms` as the configured block interval; and its API port.
fn start_daemon(
    bin: &Path,
    dir: &Path,
    node: &StandIn,
    key: &Path,
    round: f64,
    block_ms: u64,
) -> (Daemon, u16) {
    let port = free_port();
    std::fs::create_dir_all(dir.join("data")).expect("state dir");
    std::fs::write(
        dir.join("data/priv_validator_state.json"),
        "{\n  \"height\": \"0\",\n  \"round\": 0,\n  \"step\": 0\n}",
    )
    .expect("state file");
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
  node_role: "passive"
  is_primary_site: false
  block_interval: {block_ms}
failover:
  health_check_interval: {round}
logging:
  level: "info"
  file: "{dir}/syncguard.log"
"#,
        comet = node.comet,
        evm = node.evm,
        dir = dir.display(),
        key = key.display(),
    );
    let path = dir.join("config-story.yaml");
    std::fs::write(&path, config).expect("write config");
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

/// Waits (bounded) until the stand-in has answered `n` rounds' `/status`.
async fn wait_rounds(node: &StandIn, n: usize, bound: Duration, dir: &Path) {
    let start = Instant::now();
    while node.rounds() < n {
        if start.elapsed() > bound {
            let log = std::fs::read_to_string(dir.join("syncguard.log")).unwrap_or_default();
            panic!(
                "only {} rounds within {bound:?}; the daemon's log:\n{log}",
                node.rounds()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the requests say, round by round: a round starts at its `/status` (the commits of a
/// round are read after its probes, before the next round's `/status`).
#[derive(Debug, Default)]
struct Tally {
    /// Rounds after the first (the first reads the history the log keeps).
    rounds: u64,
    /// Requests by key over those rounds.
    by_key: BTreeMap<String, u64>,
    /// Blocks that became canonical over those rounds.
    new_blocks: u64,
}

/// Checks every rule of the economy on `requests` and tallies the rounds after the first.
/// Panics with the round and the rule broken.
fn check_and_tally(requests: &[Request]) -> Tally {
    let starts: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].key == "GET /status")
        .collect();
    assert!(starts.len() >= 3, "too few rounds: {}", starts.len());
    let mut asked: BTreeMap<u64, u32> = BTreeMap::new();
    let mut tally = Tally::default();
    // The last round may have been cut by the end of the run: leave it out.
    for (k, w) in starts.windows(2).enumerate() {
        let (from, to) = (w[0], w[1]);
        let head = requests[from].head;
        let earliest = head - (INITIAL_HEIGHT - EARLIEST_HEIGHT);
        let commits: Vec<u64> = requests[from..to]
            .iter()
            .filter(|r| r.key == "GET /commit")
            .map(|r| r.height.unwrap_or(0))
            .collect();
        for &h in &commits {
            *asked.entry(h).or_default() += 1;
            assert!(
                h < head,
                "round {k}: the commit of {h} asked, not canonical at head {head}"
            );
            assert!(
                h >= earliest,
                "round {k}: the commit of {h} asked, below the node's earliest {earliest}"
            );
        }
        if k == 0 {
            assert!(
                commits.len() as u64 <= head - earliest,
                "the first round asked {} commits",
                commits.len()
            );
            continue;
        }
        let before = requests[starts[k - 1]].head;
        let new = head - before;
        assert!(
            commits.len() as u64 <= new,
            "round {k}: {} commits asked for {new} new blocks: {commits:?}",
            commits.len()
        );
        assert!(
            commits.iter().all(|&h| h >= before),
            "round {k}: a commit read the round before (head then {before}): {commits:?}"
        );
        tally.rounds += 1;
        tally.new_blocks += new;
        for r in &requests[from..to] {
            *tally.by_key.entry(r.key.clone()).or_default() += 1;
        }
    }
    let twice: Vec<(&u64, &u32)> = asked.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "commits asked more than once: {twice:?}");
    // The six probes, once each per round (a probe answered just before its round's
    // `/status` lands in the previous round: ±1 over the run); nothing else.
    let probes = [
        "GET /status",
        "GET /net_info",
        "POST eth_blockNumber",
        "POST eth_syncing",
        "POST net_peerCount",
        "POST eth_getBlockByNumber",
    ];
    for key in tally.by_key.keys() {
        assert!(
            key == "GET /commit" || probes.contains(&key.as_str()),
            "an unexpected request: {key}"
        );
    }
    for p in probes {
        let n = tally.by_key.get(p).copied().unwrap_or(0);
        assert!(
            n.abs_diff(tally.rounds) <= 1,
            "{p}: {n} requests in {} rounds",
            tally.rounds
        );
    }
    let total: u64 = tally.by_key.values().sum();
    assert!(
        total <= 6 * tally.rounds + tally.new_blocks + 6,
        "{total} requests in {} rounds with {} new blocks",
        tally.rounds,
        tally.new_blocks
    );
    tally
}

fn per_round_table(t: &Tally) -> String {
    let mut out = String::new();
    for (k, n) in &t.by_key {
        out.push_str(&format!(
            "  {k:<28} {:>6.2} per round ({n} in {} rounds)\n",
            *n as f64 / t.rounds as f64,
            t.rounds
        ));
    }
    let total: u64 = t.by_key.values().sum();
    out.push_str(&format!(
        "  {:<28} {:>6.2} per round; new blocks {:.2} per round\n",
        "all",
        total as f64 / t.rounds as f64,
        t.new_blocks as f64 / t.rounds as f64
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn story_rpc_economy_a_round_costs_its_probes_plus_the_new_blocks_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, address) = key_store(dir.path());
    // The seed's 5 s rounds and 0.5 s blocks, ten times faster: ten new blocks a round.
    let node = StandIn::start(Duration::from_millis(50), &address).await;
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_syncguard"));
    let (daemon, port) = start_daemon(&bin, dir.path(), &node, &key, 0.5, 100);
    wait_rounds(&node, 16, Duration::from_secs(60), dir.path()).await;
    // The strip is drawn from the same reads: every commit of the stand-in carries the
    // validator's signature; only the newest height is not known yet.
    let status: Value = reqwest::get(format!("http://127.0.0.1:{port}/status"))
        .await
        .expect("GET /status")
        .json()
        .await
        .expect("JSON");
    let strip = &status["node"]["signing"]["strip"];
    let cells = strip["cells"].as_str().unwrap_or_default();
    assert_eq!(cells.len(), 100, "{strip:#}");
    assert_eq!(cells.trim_end_matches('?').trim_start_matches('S'), "", "{strip:#}");
    assert!(cells.ends_with("S?"), "{strip:#}");
    drop(daemon);
    let requests = node.chain.requests();
    let tally = check_and_tally(&requests);
    println!(
        "stand-in node, 0.5 s rounds, 50 ms blocks, {} rounds after the first:\n{}",
        tally.rounds,
        per_round_table(&tally)
    );
    assert!(tally.by_key.get("GET /commit").copied().unwrap_or(0) > 0);
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
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
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
#[ignore = "a benchmark: minutes at the seed's intervals; prints, asserts only the economy"]
async fn story_rpc_economy_bench_at_the_seed_intervals() {
    let secs: u64 = std::env::var("SYNCGUARD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let bin = std::env::var_os("SYNCGUARD_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_syncguard")), PathBuf::from);
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, address) = key_store(dir.path());
    let node = StandIn::start(Duration::from_millis(500), &address).await;
    let (daemon, _) = start_daemon(&bin, dir.path(), &node, &key, 5.0, 500);
    let pid = daemon.0.id();
    // Past the first rounds (the history read, the allocator warmed up).
    wait_rounds(&node, 3, Duration::from_secs(60), dir.path()).await;
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
    let tally = check_and_tally(&node.chain.requests());
    let cpu_s = (cpu1 - cpu0) as f64 / clock_ticks() as f64;
    println!(
        "{} ({}), 5 s rounds, 0.5 s blocks, {:.0} s measured, {} rounds after the first:\n{}\
         RSS {rss} kB at the end (max sampled {rss_max} kB, VmHWM {hwm} kB); CPU {cpu_s:.2} s \
         in {wall:.0} s = {:.3} % of one core",
        bin.display(),
        pid,
        wall,
        tally.rounds,
        per_round_table(&tally),
        100.0 * cpu_s / wall
    );
}
