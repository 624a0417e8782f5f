//! CometBFT v0.38 RPC shapes served by a simulated node, following
//! `shared/fixtures/cometbft/tmrs_v0_38_*.json`: JSON-RPC envelope with `id: -1`, int64 values
//! as strings, RFC 3339 times, upper-case hex hashes and addresses.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::api::{BlockCommit, Head};
use crate::vote::hex_upper;

/// CometBFT's version string reported by the simulated nodes.
pub const COMET_VERSION: &str = "0.38.17";

/// `{"jsonrpc":"2.0","id":-1,"result":…}`.
pub fn envelope(result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": -1, "result": result})
}

/// A JSON-RPC error body as CometBFT's URI handler sends it.
pub fn error(code: i64, message: &str, data: Option<String>) -> Value {
    let mut err = json!({"code": code, "message": message});
    if let Some(d) = data {
        err["data"] = Value::String(d);
    }
    json!({"jsonrpc": "2.0", "id": -1, "error": err})
}

fn h(tag: &str, seed: &str) -> String {
    hex_upper(&Sha256::digest(format!("syncguard-devnet/{tag}/{seed}")))
}

/// The node's own key as `/status` shows it.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    /// `--node-id`, shown as the moniker.
    pub moniker: String,
    /// Key address, upper-case hex.
    pub address: String,
    /// Key public key, base64.
    pub pub_key_b64: String,
    /// Its amino type, e.g. `tendermint/PubKeySecp256k1`.
    pub pub_key_type: &'static str,
    /// Voting power (the validator's on a signing node, 0 on a full node).
    pub voting_power: u64,
    /// `tcp://host:port` of the RPC.
    pub rpc_address: String,
}

/// `/status` result for a node that sees `head`.
pub fn status(id: &NodeIdentity, head: &Head) -> Value {
    json!({
        "node_info": {
            "protocol_version": {"p2p": "8", "block": "11", "app": "0"},
            "id": h("node-id", &id.moniker)[..40].to_ascii_lowercase(),
            "listen_addr": "tcp://0.0.0.0:26656",
            "network": head.chain_id,
            "version": COMET_VERSION,
            "channels": "40202122233038606100",
            "moniker": id.moniker,
            "other": {"tx_index": "on", "rpc_address": id.rpc_address}
        },
        "sync_info": {
            "latest_block_hash": head.block_hash,
            "latest_app_hash": h("app", &head.height.to_string())[..16],
            "latest_block_height": head.height.to_string(),
            "latest_block_time": head.time,
            "earliest_block_hash": h("block", "1"),
            "earliest_app_hash": "0000000000000000",
            "earliest_block_height": "1",
            "earliest_block_time": head.time,
            "catching_up": false
        },
        "validator_info": {
            "address": id.address,
            "pub_key": {"type": id.pub_key_type, "value": id.pub_key_b64},
            "voting_power": id.voting_power.to_string()
        }
    })
}

/// `/net_info` result.
pub fn net_info(n_peers: u64) -> Value {
    let peers: Vec<Value> = (0..n_peers.min(64))
        .map(|i| {
            json!({
                "node_info": {"id": h("peer", &i.to_string())[..40].to_ascii_lowercase(),
                              "moniker": format!("peer-{i}"), "network": "", "version": COMET_VERSION},
                "is_outbound": i % 2 == 0,
                "remote_ip": format!("10.0.0.{}", i + 1)
            })
        })
        .collect();
    json!({
        "listening": true,
        "listeners": ["Listener(@)"],
        "n_peers": n_peers.to_string(),
        "peers": peers
    })
}

/// `/commit?height=h` result; `canonical` is false for the node's latest height (its own
/// seen commit, as in CometBFT).
pub fn commit(chain_id: &str, c: &BlockCommit, canonical: bool) -> Value {
    let validators_hash = h("validators", chain_id);
    let signatures: Vec<Value> = c
        .signatures
        .iter()
        .map(|s| {
            json!({
                "block_id_flag": s.block_id_flag,
                "validator_address": s.validator_address,
                "timestamp": s.timestamp,
                "signature": s.signature
            })
        })
        .collect();
    json!({
        "signed_header": {
            "header": {
                "version": {"block": "11", "app": "0"},
                "chain_id": chain_id,
                "height": c.height.to_string(),
                "time": c.time,
                "last_block_id": {
                    "hash": c.last_block_hash,
                    "parts": {"total": 1, "hash": h("parts", &c.last_block_hash)}
                },
                "last_commit_hash": h("last-commit", &c.height.to_string()),
                "data_hash": "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "validators_hash": validators_hash,
                "next_validators_hash": validators_hash,
                "consensus_hash": h("consensus", chain_id),
                "app_hash": h("app", &c.height.to_string())[..16],
                "last_results_hash": "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "evidence_hash": "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "proposer_address": c.proposer_address
            },
            "commit": {
                "height": c.height.to_string(),
                "round": c.round,
                "block_id": {
                    "hash": c.block_hash,
                    "parts": {"total": 1, "hash": c.parts_hash}
                },
                "signatures": signatures
            }
        },
        "canonical": canonical
    })
}
