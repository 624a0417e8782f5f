//! A CometBFT-shaped RPC (`/status`, `/net_info`) whose chain advances with wall time.
//! Shapes follow the v0.38 fixtures: int64 values as JSON strings, RFC 3339 block times.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The chain has history when the mock starts, so a witness window is full at once.
pub const INITIAL_HEIGHT: u64 = 100;

#[derive(Debug)]
struct Chain {
    started: Instant,
    start_time: SystemTime,
    block_interval: Duration,
    /// Set when the chain stalls: height and time stay where they were.
    frozen_at: Option<(u64, SystemTime)>,
    peers: u64,
    validator_address: String,
    /// Whether commits carry the validator's signature (flag 2) or mark it absent (flag 1).
    validator_signing: bool,
}

impl Chain {
    fn head(&self) -> (u64, SystemTime) {
        if let Some(head) = self.frozen_at {
            return head;
        }
        let blocks =
            (self.started.elapsed().as_millis() / self.block_interval.as_millis().max(1)) as u64;
        (
            INITIAL_HEIGHT + blocks,
            self.start_time + self.block_interval * blocks as u32,
        )
    }
}

/// Handle to the running mock; the server stops when the tokio runtime does.
#[derive(Clone)]
pub struct CometMock {
    chain: Arc<Mutex<Chain>>,
    addr: SocketAddr,
}

impl CometMock {
    /// Serves on a free loopback port from the current tokio runtime.
    pub async fn start(block_interval: Duration, peers: u64) -> CometMock {
        let chain = Arc::new(Mutex::new(Chain {
            started: Instant::now(),
            start_time: SystemTime::now(),
            block_interval,
            frozen_at: None,
            peers,
            validator_address: "2DD9F44FD9067555C322243C3C913BA7B51D2BE0".into(),
            validator_signing: false,
        }));
        let app = Router::new()
            .route("/status", get(status))
            .route("/net_info", get(net_info))
            .route("/commit", get(commit))
            .with_state(chain.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        CometMock { chain, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The chain stops producing blocks (or resumes, from where it stood).
    pub fn set_stalled(&self, stalled: bool) {
        let mut c = self.chain.lock().expect("mock lock");
        if stalled {
            let head = c.head();
            c.frozen_at = Some(head);
        } else if let Some((height, _)) = c.frozen_at.take() {
            // Resume at the frozen height, producing from now on.
            let produced = c.block_interval * height.saturating_sub(INITIAL_HEIGHT) as u32;
            c.started = Instant::now() - produced;
            c.start_time = SystemTime::now() - produced;
        }
    }

    /// Whether the validator `address` signs the blocks from now on (as seen in `/commit`).
    pub fn set_validator_signing(&self, address: &str, signing: bool) {
        let mut c = self.chain.lock().expect("mock lock");
        c.validator_address = address.to_string();
        c.validator_signing = signing;
    }

    pub fn set_peers(&self, peers: u64) {
        self.chain.lock().expect("mock lock").peers = peers;
    }
}

type Shared = Arc<Mutex<Chain>>;

fn envelope(result: Value) -> Json<Value> {
    Json(json!({"jsonrpc": "2.0", "id": -1, "result": result}))
}

async fn status(State(chain): State<Shared>) -> Json<Value> {
    let (height, time, address) = {
        let c = chain.lock().expect("mock lock");
        let (h, t) = c.head();
        (h, t, c.validator_address.clone())
    };
    envelope(json!({
        "node_info": {
            "id": "cf4a66aa29e5123abfdfbdf485da6788bb8e46d1",
            "listen_addr": "tcp://0.0.0.0:26656",
            "network": "devnet-1",
            "version": "0.38.17",
            "moniker": "mock",
            "other": {"tx_index": "on", "rpc_address": "tcp://0.0.0.0:26657"}
        },
        "sync_info": {
            "latest_block_hash": "B647CF507155BADAC86FADD00E38B065C63A84953A847AA9FA99DB1CEE6C4DA9",
            "latest_app_hash": "0600000000000000",
            "latest_block_height": height.to_string(),
            "latest_block_time": humantime::format_rfc3339_nanos(time).to_string(),
            "earliest_block_height": "1",
            "catching_up": false
        },
        "validator_info": {
            "address": address,
            "pub_key": {"type": "tendermint/PubKeySecp256k1", "value": "AhRzbjoZaiyrbCE/yJ6gwIBXjwzl8+H7W8KMAphJVUzt"},
            "voting_power": "0"
        }
    }))
}

async fn net_info(State(chain): State<Shared>) -> Json<Value> {
    let peers = chain.lock().expect("mock lock").peers;
    envelope(json!({
        "listening": true,
        "listeners": ["Listener(@)"],
        "n_peers": peers.to_string(),
        "peers": []
    }))
}

/// `/commit?height=h`: one signature from another validator, and the watched validator's
/// signature (flag 2) or absence (flag 1), like the v0.38 fixture.
async fn commit(
    State(chain): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Value> {
    let (latest, time, address, signing) = {
        let c = chain.lock().expect("mock lock");
        let (h, t) = c.head();
        (h, t, c.validator_address.clone(), c.validator_signing)
    };
    let height = query
        .get("height")
        .and_then(|h| h.trim_matches('"').parse::<u64>().ok())
        .unwrap_or(latest)
        .min(latest);
    let time = humantime::format_rfc3339_nanos(time).to_string();
    let ours = if signing {
        json!({"block_id_flag": 2, "validator_address": address, "timestamp": time,
               "signature": "5y0Kas3bSrgVYG/QKwWovMpTBfavZfy/A8DXkQHzFHVMjOcVk2TK6xhYQasfiodordg1bjDf7NDwNi/YdilaAw=="})
    } else {
        json!({"block_id_flag": 1, "validator_address": "", "timestamp": "0001-01-01T00:00:00Z", "signature": null})
    };
    envelope(json!({
        "canonical": true,
        "signed_header": {
            "header": {"chain_id": "devnet-1", "height": height.to_string(), "time": time},
            "commit": {
                "height": height.to_string(),
                "round": 0,
                "block_id": {"hash": "00ECDAC463C201ECD4BDBBAAE4A53A4C80291D4051FD69ED97F6420CE1388BFE", "parts": {"total": 1, "hash": "FF0A320E696FD233DD4D3CC7CD82FF90F54B8FDBC9C700D9375C95A02782B062"}},
                "signatures": [
                    {"block_id_flag": 2, "validator_address": "0000000000000000000000000000000000000001", "timestamp": time,
                     "signature": "5y0Kas3bSrgVYG/QKwWovMpTBfavZfy/A8DXkQHzFHVMjOcVk2TK6xhYQasfiodordg1bjDf7NDwNi/YdilaAw=="},
                    ours
                ]
            }
        }
    }))
}
