//! A story-geth stand-in (`syncguard devnet geth`): EVM JSON-RPC whose head follows the
//! node's `/status`. Like the real pair, it is a separate process that keeps answering while
//! `story` is stopped or restarting — its head simply stops advancing (DESIGN §9).
//!
//! Methods: `eth_blockNumber`, `eth_syncing` (false), `net_peerCount`,
//! `eth_getBlockByNumber` (latest/earliest/number, full flag ignored: no transactions),
//! `eth_chainId`, `net_version`, `web3_clientVersion`. Anything else: -32601, as geth.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::procs;

/// Story mainnet's EVM chain id (1514).
pub const EVM_CHAIN_ID: u64 = 1514;

/// Options of `syncguard devnet geth`.
#[derive(Debug, Clone)]
pub struct GethOptions {
    /// The node's CometBFT RPC base URL.
    pub node_rpc: String,
    /// Listen address (port 0 = any; the bound address is printed on stdout).
    pub listen: SocketAddr,
    /// `net_peerCount`.
    pub peers: u64,
    /// How often the node's `/status` is polled.
    pub poll: Duration,
    /// Exit when this process is gone.
    pub watch_pid: Option<i32>,
}

/// Why geth stops with an error.
#[derive(Debug, thiserror::Error)]
pub enum GethError {
    /// Cannot bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// HTTP client.
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    /// Server failure.
    #[error("server: {0}")]
    Serve(std::io::Error),
}

#[derive(Debug, Clone, Copy)]
struct EvmHead {
    number: u64,
    timestamp: u64,
}

#[derive(Clone)]
struct Ctx {
    head: Arc<Mutex<EvmHead>>,
    peers: u64,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn block_hash(number: u64) -> String {
    format!(
        "0x{}",
        hex::encode(Sha256::digest(format!("syncguard-devnet/evm/{number}")))
    )
}

/// The block JSON for `number` at `timestamp` (no transactions).
fn block_json(number: u64, timestamp: u64) -> Value {
    json!({
        "number": format!("0x{number:x}"),
        "hash": block_hash(number),
        "parentHash": block_hash(number.saturating_sub(1)),
        "timestamp": format!("0x{timestamp:x}"),
        "miner": "0x0000000000000000000000000000000000000000",
        "difficulty": "0x0",
        "totalDifficulty": "0x0",
        "extraData": "0x",
        "gasLimit": "0x1c9c380",
        "gasUsed": "0x0",
        "baseFeePerGas": "0x3b9aca00",
        "nonce": "0x0000000000000000",
        "mixHash": format!("0x{}", "0".repeat(64)),
        "sha3Uncles": "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347",
        "stateRoot": block_hash(number ^ 0x5555),
        "receiptsRoot": "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421",
        "transactionsRoot": "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421",
        "logsBloom": format!("0x{}", "0".repeat(512)),
        "size": "0x200",
        "transactions": [],
        "uncles": [],
        "withdrawals": []
    })
}

/// Answer one JSON-RPC request object (pure apart from reading the head).
fn answer(head: EvmHead, peers: u64, req: &Value) -> Value {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let method = req.get("method").and_then(Value::as_str).unwrap_or("");
    let ok = |result: Value| json!({"jsonrpc": "2.0", "id": id, "result": result});
    let err = |code: i64, message: String| json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    match method {
        "eth_blockNumber" => ok(json!(format!("0x{:x}", head.number))),
        "eth_syncing" => ok(json!(false)),
        "net_peerCount" => ok(json!(format!("0x{peers:x}"))),
        "eth_chainId" => ok(json!(format!("0x{EVM_CHAIN_ID:x}"))),
        "net_version" => ok(json!(EVM_CHAIN_ID.to_string())),
        "web3_clientVersion" => ok(json!("Geth/v1.0.0-syncguard-devnet")),
        "eth_getBlockByNumber" => {
            let tag = req.pointer("/params/0").and_then(Value::as_str);
            let number = match tag {
                None | Some("latest" | "pending" | "safe" | "finalized") => Some(head.number),
                Some("earliest") => Some(0),
                Some(hex_num) => match hex_num
                    .strip_prefix("0x")
                    .and_then(|d| u64::from_str_radix(d, 16).ok())
                {
                    Some(n) => Some(n),
                    None => return err(-32602, format!("invalid block number {hex_num:?}")),
                },
            };
            match number {
                Some(n) if n <= head.number => {
                    // Earlier blocks are spaced one second apart back from the head.
                    let ts = head.timestamp.saturating_sub(head.number - n);
                    ok(block_json(n, ts))
                }
                _ => ok(Value::Null),
            }
        }
        "" => err(-32600, "invalid request".into()),
        other => err(
            -32601,
            format!("the method {other} does not exist/is not available"),
        ),
    }
}

async fn rpc(State(ctx): State<Ctx>, Json(body): Json<Value>) -> Json<Value> {
    let head = *ctx.head.lock().unwrap_or_else(|p| p.into_inner());
    match &body {
        Value::Array(reqs) => Json(Value::Array(
            reqs.iter().map(|r| answer(head, ctx.peers, r)).collect(),
        )),
        req => Json(answer(head, ctx.peers, req)),
    }
}

/// Follow the node: height and time of its latest block. Errors leave the head as it was.
async fn follow(ctx: Ctx, http: reqwest::Client, node_rpc: String, poll: Duration) {
    let url = format!("{}/status", node_rpc.trim_end_matches('/'));
    loop {
        tokio::time::sleep(poll).await;
        let Ok(resp) = http.get(&url).send().await else {
            continue;
        };
        let Ok(body) = resp.json::<Value>().await else {
            continue;
        };
        let height = body
            .pointer("/result/sync_info/latest_block_height")
            .and_then(Value::as_str)
            .and_then(|h| h.parse::<u64>().ok());
        let time = body
            .pointer("/result/sync_info/latest_block_time")
            .and_then(Value::as_str)
            .and_then(|t| humantime::parse_rfc3339(t).ok());
        if let (Some(height), Some(time)) = (height, time) {
            let mut head = ctx.head.lock().unwrap_or_else(|p| p.into_inner());
            // Never go back: a restarted node may briefly report an older view.
            if height > head.number {
                *head = EvmHead {
                    number: height,
                    timestamp: unix_secs(time),
                };
            }
        }
    }
}

/// Run until SIGTERM/SIGINT. Prints `listening on http://ADDR` on stdout once bound.
pub async fn run_geth(opts: GethOptions) -> Result<(), GethError> {
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| GethError::Bind {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(GethError::Serve)?;
    let ctx = Ctx {
        head: Arc::new(Mutex::new(EvmHead {
            number: 0,
            timestamp: unix_secs(SystemTime::now()),
        })),
        peers: opts.peers,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()?;
    tokio::spawn(follow(ctx.clone(), http, opts.node_rpc.clone(), opts.poll));
    let app = Router::new().route("/", post(rpc)).with_state(ctx);
    crate::print_listening(addr);
    let watch = opts.watch_pid;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let why = procs::shutdown_signal(watch).await;
            tracing::info!(%why, "geth stopping");
        })
        .await
        .map_err(GethError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_geth_answers_in_evm_shapes() {
        let head = EvmHead {
            number: 20,
            timestamp: 200,
        };
        let r = answer(
            head,
            3,
            &json!({"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}),
        );
        assert_eq!(r["result"], "0x14");
        let r = answer(head, 3, &json!({"id":32,"method":"eth_syncing"}));
        assert_eq!(r, json!({"jsonrpc":"2.0","id":32,"result":false}));
        let r = answer(head, 3, &json!({"id":1,"method":"net_peerCount"}));
        assert_eq!(r["result"], "0x3");
        let r = answer(
            head,
            3,
            &json!({"id":1,"method":"eth_getBlockByNumber","params":["latest",false]}),
        );
        assert_eq!(r["result"]["number"], "0x14");
        assert_eq!(r["result"]["timestamp"], "0xc8");
        let r = answer(
            head,
            3,
            &json!({"id":1,"method":"eth_getBlockByNumber","params":["0x15",false]}),
        );
        assert_eq!(r["result"], Value::Null);
        let r = answer(head, 3, &json!({"id":1,"method":"eth_call"}));
        assert_eq!(r["error"]["code"], -32601);
    }
}
