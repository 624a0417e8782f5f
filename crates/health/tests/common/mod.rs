//! Shared by the integration tests: fixture reading and a mock Story node (CometBFT URI RPC
//! at `/`, EVM JSON-RPC at `/evm`) built from the recorded fixtures, whose answers a test
//! can vary field by field.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use syncguard_health::{
    CometStatus, DiskSeen, EvmBlock, EvmSeen, EvmSyncing, HealthParams, NetInfo, ProbeError,
    RoundObservation, StateFileSeen, StateSyncSeen,
};

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

pub fn fixture_text(rel: &str) -> String {
    let path = fixtures_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub fn fixture_json(rel: &str) -> Value {
    serde_json::from_str(&fixture_text(rel)).unwrap()
}

/// Fixture files of a directory whose name matches `pred`, sorted.
pub fn fixture_files(dir: &str, pred: impl Fn(&str) -> bool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| pred(n))
        .collect();
    names.sort();
    names
}

/// (request, response) pairs of an execution-apis `.io` file (`>>` / `<<` lines).
pub fn io_pairs(name: &str) -> Vec<(Value, Value)> {
    let text = fixture_text(&format!("evm/{name}"));
    let mut pairs = Vec::new();
    let mut request = None;
    for line in text.lines() {
        if let Some(r) = line.strip_prefix(">> ") {
            request = Some(serde_json::from_str(r).unwrap());
        } else if let Some(r) = line.strip_prefix("<< ") {
            pairs.push((request.take().unwrap(), serde_json::from_str(r).unwrap()));
        }
    }
    pairs
}

/// The `result` of the first exchange of an `.io` fixture.
pub fn io_result(name: &str) -> Value {
    io_pairs(name).remove(0).1["result"].clone()
}

/// A time well after the fixtures', used as the simulated clock's origin.
pub fn t0() -> SystemTime {
    humantime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// How the mock answers one route or method.
#[derive(Clone, Debug)]
pub enum Reply {
    /// HTTP 200 with a JSON-RPC envelope around this result.
    Result(Value),
    /// Exactly this status and body.
    Raw(u16, String),
    /// Never answers (the handler awaits a future that never completes).
    Hang,
}

#[derive(Debug)]
pub struct MockState {
    /// CometBFT routes (`status`, `net_info`, `commit?height=10`, ...) → reply.
    pub comet: HashMap<String, Reply>,
    /// EVM methods → reply.
    pub evm: HashMap<String, Reply>,
    /// Requests seen, by `comet:<route>` / `evm:<method>`.
    pub hits: HashMap<String, usize>,
}

/// A mock Story node on 127.0.0.1:0; the server task is aborted on drop.
pub struct MockNode {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<MockState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockNode {
    /// Answers from the v0_38 fixtures (5 CometBFT peers) and the EVM `.io` fixtures.
    pub async fn start() -> MockNode {
        let mut comet = HashMap::new();
        comet.insert(
            "status".to_string(),
            Reply::Result(fixture_json("cometbft/tmrs_v0_38_status.json")["result"].clone()),
        );
        let mut net = fixture_json("cometbft/tmrs_v0_38_net_info.json")["result"].clone();
        net["n_peers"] = json!("5");
        comet.insert("net_info".to_string(), Reply::Result(net));
        comet.insert(
            "commit?height=10".to_string(),
            Reply::Result(
                fixture_json("cometbft/tmrs_v0_38_commit_at_height_10.json")["result"].clone(),
            ),
        );
        let mut evm = HashMap::new();
        for (method, file) in [
            ("eth_blockNumber", "evm_eth_blockNumber.io"),
            ("eth_syncing", "evm_eth_syncing_false.io"),
            ("net_peerCount", "evm_net_peerCount.io"),
            ("eth_getBlockByNumber", "evm_eth_getBlockByNumber_latest.io"),
        ] {
            evm.insert(method.to_string(), Reply::Result(io_result(file)));
        }
        let state = Arc::new(Mutex::new(MockState {
            comet,
            evm,
            hits: HashMap::new(),
        }));
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        MockNode { addr, state, task }
    }

    pub fn comet_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn evm_url(&self) -> String {
        format!("http://{}/evm", self.addr)
    }

    pub fn set_comet(&self, route: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .comet
            .insert(route.to_string(), reply);
    }

    pub fn set_evm(&self, method: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .evm
            .insert(method.to_string(), reply);
    }

    /// Edits the `/status` result in place.
    pub fn edit_status(&self, f: impl FnOnce(&mut Value)) {
        let mut st = self.state.lock().unwrap();
        match st.comet.get_mut("status") {
            Some(Reply::Result(v)) => f(v),
            other => panic!("status is not a result: {other:?}"),
        }
    }

    /// CometBFT head: height (sent as a string, as CometBFT does) and block time.
    pub fn set_comet_head(&self, height: u64, time: SystemTime) {
        self.edit_status(|v| {
            v["sync_info"]["latest_block_height"] = json!(height.to_string());
            v["sync_info"]["latest_block_time"] =
                json!(humantime::format_rfc3339_nanos(time).to_string());
        });
    }

    pub fn set_peers(&self, n: u64) {
        let mut net = fixture_json("cometbft/tmrs_v0_38_net_info.json")["result"].clone();
        net["n_peers"] = json!(n.to_string());
        self.set_comet("net_info", Reply::Result(net));
    }

    /// EVM head: `eth_blockNumber` and the latest block's number and timestamp.
    pub fn set_evm_head(&self, number: u64, time: SystemTime) {
        let ts = time.duration_since(UNIX_EPOCH).unwrap().as_secs();
        let mut block = io_result("evm_eth_getBlockByNumber_latest.io");
        block["number"] = json!(format!("{number:#x}"));
        block["timestamp"] = json!(format!("{ts:#x}"));
        self.set_evm(
            "eth_blockNumber",
            Reply::Result(json!(format!("{number:#x}"))),
        );
        self.set_evm("eth_getBlockByNumber", Reply::Result(block));
    }

    /// Both heads at `height`, with block time 1 s before `now`.
    pub fn set_heads(&self, height: u64, now: SystemTime) {
        self.set_comet_head(height, now - secs(1));
        self.set_evm_head(height, now - secs(1));
    }

    pub fn hits(&self) -> HashMap<String, usize> {
        self.state.lock().unwrap().hits.clone()
    }

    pub fn clear_hits(&self) {
        self.state.lock().unwrap().hits.clear();
    }
}

async fn handle(
    State(state): State<Arc<Mutex<MockState>>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let (reply, id) = {
        let mut st = state.lock().unwrap();
        if method == Method::POST && uri.path() == "/evm" {
            let request: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(_) => {
                    return raw(
                        200,
                        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#,
                    )
                }
            };
            let name = request["method"].as_str().unwrap_or("").to_string();
            *st.hits.entry(format!("evm:{name}")).or_default() += 1;
            let reply = st.evm.get(&name).cloned().unwrap_or_else(|| {
                Reply::Raw(
                    200,
                    json!({"jsonrpc":"2.0","id":request["id"],"error":{"code":-32601,"message":"Method not found"}})
                        .to_string(),
                )
            });
            (reply, request["id"].clone())
        } else {
            let route = uri
                .path_and_query()
                .map(|pq| pq.as_str().trim_start_matches('/').to_string())
                .unwrap_or_default();
            *st.hits.entry(format!("comet:{route}")).or_default() += 1;
            // CometBFT's answers to an unknown route / a height it does not have.
            let reply = st.comet.get(&route).cloned().unwrap_or_else(|| {
                if route.starts_with("commit?height=") {
                    Reply::Raw(500, json!({"jsonrpc":"2.0","id":-1,"error":{"code":-32603,"message":"Internal error","data":format!("could not find results for {route}")}}).to_string())
                } else {
                    Reply::Raw(404, r#"{"jsonrpc":"2.0","id":-1,"error":{"code":-32601,"message":"Method not found"}}"#.to_string())
                }
            });
            (reply, json!(-1))
        }
    };
    match reply {
        Reply::Result(result) => raw(
            200,
            &json!({"jsonrpc":"2.0","id":id,"result":result}).to_string(),
        ),
        Reply::Raw(status, body) => raw(status, &body),
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    }
}

fn raw(status: u16, body: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Test parameters: 15 s stall bound (500 ms blocks, 5 s rounds), 3 failed rounds to turn
/// unhealthy, 2 good rounds to recover, 1 peer.
pub fn params() -> HealthParams {
    let mut p = HealthParams::from_block_interval(500, secs(5));
    p.retry_attempts = 3;
    p.recovery_rounds = 2;
    p.min_peers = 1;
    p.min_free_disk_bytes = 1024;
    p
}

/// A synthetic round where everything is fine: heights at `height`, blocks 1 s old.
pub fn good_observation(height: u64, now: SystemTime) -> RoundObservation {
    RoundObservation {
        status: Ok(CometStatus {
            network: "story".into(),
            moniker: "node-a".into(),
            latest_block_height: height,
            earliest_block_height: 1,
            latest_block_time: Some(now - secs(1)),
            catching_up: false,
            validator_address: "2DD9F44FD9067555C322243C3C913BA7B51D2BE0".into(),
            validator_pub_key_type: Some("tendermint/PubKeySecp256k1".into()),
            voting_power: 10,
        }),
        net_info: Ok(NetInfo { n_peers: 5 }),
        evm: Some(EvmSeen {
            block_number: Ok(height),
            syncing: Ok(EvmSyncing::NotSyncing),
            peer_count: Ok(3),
            latest_block: Ok(EvmBlock {
                number: height,
                timestamp: now - secs(1),
            }),
        }),
        state_sync: StateSyncSeen::Last(now - secs(2)),
        disk: DiskSeen::Free(10 << 30),
        state_file: StateFileSeen::Valid {
            height: i64::try_from(height).unwrap_or(i64::MAX),
            round: 0,
            step: 3,
        },
    }
}

pub fn timeout_error(method: &str) -> ProbeError {
    ProbeError::Timeout {
        url: format!("http://127.0.0.1:1/{method}"),
        method: method.to_string(),
        timeout: Duration::from_millis(500),
    }
}

/// What a round saw of the EVM (a `story` profile round always probes it).
pub fn evm(obs: &RoundObservation) -> &EvmSeen {
    obs.evm.as_ref().expect("the story profile probes the EVM")
}
