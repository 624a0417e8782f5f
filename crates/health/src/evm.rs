//! EVM (story-geth) JSON-RPC client: POST `{"jsonrpc":"2.0","id":1,"method":...}` to the
//! endpoint. Quantities are hex strings (`"0x14"`); anything else is a malformed answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::rpc::{self, ProbeError, SetupError};

/// Client for one node's EVM JSON-RPC endpoint. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EvmClient {
    http: reqwest::Client,
    url: String,
    timeout: Duration,
}

/// Answer of `eth_syncing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvmSyncing {
    /// `false`.
    NotSyncing,
    /// A progress object (or a bare `true`, which some servers send: then both are None).
    Syncing {
        current_block: Option<u64>,
        highest_block: Option<u64>,
    },
}

/// The head block, from `eth_getBlockByNumber("latest", false)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvmBlock {
    pub number: u64,
    pub timestamp: SystemTime,
}

impl EvmClient {
    /// `url` like `http://localhost:8545`; `timeout` bounds every call.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, SetupError> {
        let http = rpc::build_http(url, timeout)?;
        Self::with_http(http, url, timeout)
    }

    pub(crate) fn with_http(
        http: reqwest::Client,
        url: &str,
        timeout: Duration,
    ) -> Result<Self, SetupError> {
        Ok(EvmClient {
            http,
            url: rpc::normalize_base_url(url)?,
            timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One JSON-RPC call; returns the `result` value.
    async fn call(&self, method: &str, params: Value) -> Result<Value, ProbeError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let request = self.http.post(&self.url).json(&body);
        rpc::call(request, &self.url, method, self.timeout).await
    }

    fn malformed(&self, method: &str, what: String, result: &Value) -> ProbeError {
        ProbeError::MalformedBody {
            url: self.url.clone(),
            method: method.to_string(),
            what,
            excerpt: rpc::excerpt(result.to_string().as_bytes()),
        }
    }

    pub async fn block_number(&self) -> Result<u64, ProbeError> {
        let method = "eth_blockNumber";
        let result = self.call(method, json!([])).await?;
        quantity(&result, "result").map_err(|what| self.malformed(method, what, &result))
    }

    pub async fn syncing(&self) -> Result<EvmSyncing, ProbeError> {
        let method = "eth_syncing";
        let result = self.call(method, json!([])).await?;
        parse_syncing(&result).map_err(|what| self.malformed(method, what, &result))
    }

    pub async fn peer_count(&self) -> Result<u64, ProbeError> {
        let method = "net_peerCount";
        let result = self.call(method, json!([])).await?;
        quantity(&result, "result").map_err(|what| self.malformed(method, what, &result))
    }

    pub async fn latest_block(&self) -> Result<EvmBlock, ProbeError> {
        let method = "eth_getBlockByNumber";
        let result = self.call(method, json!(["latest", false])).await?;
        parse_block(&result).map_err(|what| self.malformed(method, what, &result))
    }
}

/// A JSON-RPC QUANTITY: `"0x"` followed by 1–16 hex digits.
pub(crate) fn parse_hex_quantity(text: &str) -> Result<u64, String> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .ok_or_else(|| format!("{text:?} is not a 0x-prefixed hex quantity"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{text:?} is not a hex quantity"));
    }
    u64::from_str_radix(digits, 16).map_err(|_| format!("{text:?} does not fit in 64 bits"))
}

pub(crate) fn quantity(v: &Value, field: &str) -> Result<u64, String> {
    match v {
        Value::String(s) => parse_hex_quantity(s).map_err(|e| format!("{field}: {e}")),
        Value::Null => Err(format!("{field} is missing or null")),
        other => Err(format!("{field} is {other}, not a hex string")),
    }
}

pub(crate) fn parse_syncing(v: &Value) -> Result<EvmSyncing, String> {
    match v {
        Value::Bool(false) => Ok(EvmSyncing::NotSyncing),
        Value::Bool(true) => Ok(EvmSyncing::Syncing {
            current_block: None,
            highest_block: None,
        }),
        Value::Object(map) => {
            let field = |name: &str| -> Result<Option<u64>, String> {
                match map.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => quantity(v, name).map(Some),
                }
            };
            Ok(EvmSyncing::Syncing {
                current_block: field("currentBlock")?,
                highest_block: field("highestBlock")?,
            })
        }
        other => Err(format!(
            "eth_syncing result is {other}, not false or an object"
        )),
    }
}

pub(crate) fn parse_block(v: &Value) -> Result<EvmBlock, String> {
    if v.is_null() {
        return Err("the node has no latest block (null)".to_string());
    }
    let number = quantity(&v["number"], "number")?;
    let seconds = quantity(&v["timestamp"], "timestamp")?;
    let timestamp = UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .ok_or_else(|| format!("timestamp {seconds} is out of range"))?;
    Ok(EvmBlock { number, timestamp })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (request, response) JSON pairs of an execution-apis `.io` file.
    pub(crate) fn io_pairs(name: &str) -> Vec<(Value, Value)> {
        let path = format!(
            "{}/../../../shared/fixtures/evm/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let mut pairs = Vec::new();
        let mut request = None;
        for line in text.lines() {
            if let Some(r) = line.strip_prefix(">> ") {
                request = Some(serde_json::from_str(r).unwrap());
            } else if let Some(r) = line.strip_prefix("<< ") {
                pairs.push((request.take().unwrap(), serde_json::from_str(r).unwrap()));
            }
        }
        assert!(!pairs.is_empty(), "{name} has no exchange");
        pairs
    }

    fn result_of(name: &str) -> Value {
        let (_, response) = io_pairs(name).remove(0);
        let body = serde_json::to_vec(&response).unwrap();
        crate::rpc::decode_envelope("fixture", name, 200, &body).unwrap()
    }

    #[test]
    fn story_evm_io_fixtures_parse() {
        assert_eq!(
            quantity(&result_of("evm_eth_blockNumber.io"), "result"),
            Ok(0x14)
        );
        assert_eq!(
            parse_syncing(&result_of("evm_eth_syncing_false.io")),
            Ok(EvmSyncing::NotSyncing)
        );
        assert_eq!(
            quantity(&result_of("evm_net_peerCount.io"), "result"),
            Ok(0)
        );
        let b = parse_block(&result_of("evm_eth_getBlockByNumber_latest.io")).unwrap();
        assert_eq!(b.number, 0x14);
        assert_eq!(b.timestamp, UNIX_EPOCH + Duration::from_secs(0xc8));
    }

    #[test]
    fn story_hex_quantities() {
        assert_eq!(parse_hex_quantity("0x0"), Ok(0));
        assert_eq!(parse_hex_quantity("0xffffffffffffffff"), Ok(u64::MAX));
        for bad in [
            "",
            "0x",
            "14",
            "0x1g",
            "0x-1",
            "0x 1",
            "0x10000000000000000",
        ] {
            assert!(parse_hex_quantity(bad).is_err(), "{bad:?} accepted");
        }
        assert!(quantity(&json!(20), "result").is_err());
    }

    #[test]
    fn story_syncing_object_and_null_block() {
        let s = parse_syncing(
            &json!({"startingBlock":"0x0","currentBlock":"0x10","highestBlock":"0x20","knownStates":"0x0"}),
        );
        assert_eq!(
            s,
            Ok(EvmSyncing::Syncing {
                current_block: Some(16),
                highest_block: Some(32)
            })
        );
        assert!(parse_syncing(&json!({"currentBlock":"zz"})).is_err());
        assert!(parse_syncing(&json!("no")).is_err());
        assert!(parse_block(&Value::Null).is_err());
        assert!(parse_block(&json!({"number":"0x1"})).is_err());
    }
}
