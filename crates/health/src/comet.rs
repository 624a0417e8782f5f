//! CometBFT RPC client (URI/GET form: `{base}/status`, `{base}/commit?height=h`).
//!
//! The serde structs read only what the health checks and the witness need and ignore the
//! rest, so a field added by a later CometBFT (or by Story) never breaks a probe. CometBFT
//! encodes int64 as JSON strings; both strings and numbers are accepted.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::rpc::{self, ProbeError, SetupError};

/// Client for one node's CometBFT RPC. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CometClient {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
}

/// What `/status` says about the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CometStatus {
    pub network: String,
    pub moniker: String,
    pub latest_block_height: u64,
    /// The lowest height whose block (and commit) the node still has: 1 on an archive node,
    /// higher on a pruned or state-synced one (0 when the node does not say).
    pub earliest_block_height: u64,
    /// None when the node has no block yet (CometBFT then reports Go's zero time).
    pub latest_block_time: Option<SystemTime>,
    pub catching_up: bool,
    /// Uppercase hex address of the key the node runs with (the placeholder on a passive).
    pub validator_address: String,
    /// e.g. `tendermint/PubKeySecp256k1`; None when the node reports no key.
    pub validator_pub_key_type: Option<String>,
    pub voting_power: u64,
}

/// What `/net_info` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetInfo {
    pub n_peers: u64,
}

/// One commit from `/commit?height=h`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub height: u64,
    /// False for the latest height: the node's own "seen" commit, not yet in a block.
    pub canonical: bool,
    pub signatures: Vec<CommitSig>,
    /// The block's time (`signed_header.header.time`); `None` when missing or unreadable.
    pub time: Option<SystemTime>,
}

/// One validator's entry in a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSig {
    pub flag: BlockIdFlag,
    /// Empty or null for an absent validator; kept as sent (uppercase hex).
    pub validator_address: Option<String>,
}

/// `block_id_flag` of a commit signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockIdFlag {
    /// 1: no vote received.
    Absent,
    /// 2: precommit for the block.
    Commit,
    /// 3: precommit for nil — still a signature by that key.
    Nil,
    /// Anything else (0 is "unknown" in CometBFT's proto).
    Other(u8),
}

impl BlockIdFlag {
    fn from_code(code: u8) -> Self {
        match code {
            1 => BlockIdFlag::Absent,
            2 => BlockIdFlag::Commit,
            3 => BlockIdFlag::Nil,
            n => BlockIdFlag::Other(n),
        }
    }

    /// Did the validator's key sign something at this height (a commit or a nil vote)?
    pub fn is_signature(self) -> bool {
        matches!(self, BlockIdFlag::Commit | BlockIdFlag::Nil)
    }
}

impl Commit {
    /// Whether `address` (hex, any case) signed this commit (flag 2 or 3).
    pub fn signed_by(&self, address: &str) -> bool {
        let wanted = address.trim();
        self.signatures.iter().any(|s| {
            s.flag.is_signature()
                && s.validator_address
                    .as_deref()
                    .is_some_and(|a| a.trim().eq_ignore_ascii_case(wanted))
        })
    }
}

impl CometClient {
    /// `base_url` like `http://localhost:26657`; `timeout` bounds every call.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, SetupError> {
        let http = rpc::build_http(base_url, timeout)?;
        Self::with_http(http, base_url, timeout)
    }

    pub(crate) fn with_http(
        http: reqwest::Client,
        base_url: &str,
        timeout: Duration,
    ) -> Result<Self, SetupError> {
        Ok(CometClient {
            http,
            base: rpc::normalize_base_url(base_url)?,
            timeout,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn get(&self, route: &str, query: &str) -> Result<(Value, String), ProbeError> {
        let url = format!("{}/{route}{query}", self.base);
        let result = rpc::call(self.http.get(&url), &url, route, self.timeout).await?;
        Ok((result, url))
    }

    pub async fn status(&self) -> Result<CometStatus, ProbeError> {
        let (result, url) = self.get("status", "").await?;
        parse_status(result).map_err(|what| malformed(&url, "status", what))
    }

    pub async fn net_info(&self) -> Result<NetInfo, ProbeError> {
        let (result, url) = self.get("net_info", "").await?;
        parse_net_info(result).map_err(|what| malformed(&url, "net_info", what))
    }

    pub async fn commit(&self, height: u64) -> Result<Commit, ProbeError> {
        let (result, url) = self.get("commit", &format!("?height={height}")).await?;
        parse_commit(result).map_err(|what| malformed(&url, "commit", what))
    }
}

fn malformed(url: &str, method: &str, (what, result): (String, Value)) -> ProbeError {
    ProbeError::MalformedBody {
        url: url.to_string(),
        method: method.to_string(),
        what,
        excerpt: rpc::excerpt(result.to_string().as_bytes()),
    }
}

type ParseError = (String, Value);

fn from_result<T: for<'de> Deserialize<'de>>(result: Value) -> Result<T, ParseError> {
    // Deserialise from a reference so the value is still there to quote in the error.
    match T::deserialize(&result) {
        Ok(t) => Ok(t),
        Err(e) => Err((format!("unexpected result: {e}"), result)),
    }
}

pub(crate) fn parse_status(result: Value) -> Result<CometStatus, ParseError> {
    let raw = match RawStatus::deserialize(&result) {
        Ok(raw) => raw,
        Err(e) => return Err((format!("unexpected result: {e}"), result)),
    };
    let latest_block_time =
        parse_block_time(&raw.sync_info.latest_block_time).map_err(|what| (what, result))?;
    Ok(CometStatus {
        network: raw.node_info.network,
        moniker: raw.node_info.moniker,
        latest_block_height: raw.sync_info.latest_block_height,
        earliest_block_height: raw.sync_info.earliest_block_height,
        latest_block_time,
        catching_up: raw.sync_info.catching_up,
        validator_address: raw.validator_info.address,
        validator_pub_key_type: raw.validator_info.pub_key.and_then(|k| k.kind),
        voting_power: raw.validator_info.voting_power,
    })
}

pub(crate) fn parse_net_info(result: Value) -> Result<NetInfo, ParseError> {
    let raw: RawNetInfo = from_result(result)?;
    Ok(NetInfo {
        n_peers: raw.n_peers,
    })
}

pub(crate) fn parse_commit(result: Value) -> Result<Commit, ParseError> {
    let raw: RawCommitResult = from_result(result)?;
    let time = raw
        .signed_header
        .header
        .and_then(|h| h.time)
        .and_then(|t| parse_block_time(&t).ok().flatten());
    let commit = raw.signed_header.commit;
    Ok(Commit {
        height: commit.height,
        canonical: raw.canonical,
        time,
        signatures: commit
            .signatures
            .unwrap_or_default()
            .into_iter()
            .map(|s| CommitSig {
                flag: BlockIdFlag::from_code(s.block_id_flag),
                validator_address: s.validator_address.filter(|a| !a.trim().is_empty()),
            })
            .collect(),
    })
}

/// RFC3339 with up to nanoseconds. Go's zero time (`0001-01-01T00:00:00Z`, sent before the
/// first block) and an empty string mean "no block yet", not a malformed answer.
fn parse_block_time(text: &str) -> Result<Option<SystemTime>, String> {
    let t = text.trim();
    if t.is_empty() || t.starts_with("0001-01-01") {
        return Ok(None);
    }
    humantime::parse_rfc3339(t)
        .map(Some)
        .map_err(|e| format!("latest_block_time {t:?} is not RFC3339 UTC: {e}"))
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(default)]
    node_info: RawNodeInfo,
    sync_info: RawSyncInfo,
    #[serde(default)]
    validator_info: RawValidatorInfo,
}

#[derive(Deserialize, Default)]
struct RawNodeInfo {
    #[serde(default)]
    network: String,
    #[serde(default)]
    moniker: String,
}

#[derive(Deserialize)]
struct RawSyncInfo {
    #[serde(deserialize_with = "de_u64")]
    latest_block_height: u64,
    #[serde(default, deserialize_with = "de_u64_or_null")]
    earliest_block_height: u64,
    #[serde(default)]
    latest_block_time: String,
    catching_up: bool,
}

#[derive(Deserialize, Default)]
struct RawValidatorInfo {
    #[serde(default)]
    address: String,
    #[serde(default)]
    pub_key: Option<RawPubKey>,
    #[serde(default, deserialize_with = "de_u64_or_null")]
    voting_power: u64,
}

#[derive(Deserialize)]
struct RawPubKey {
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct RawNetInfo {
    #[serde(deserialize_with = "de_u64")]
    n_peers: u64,
}

#[derive(Deserialize)]
struct RawCommitResult {
    signed_header: RawSignedHeader,
    #[serde(default)]
    canonical: bool,
}

#[derive(Deserialize)]
struct RawSignedHeader {
    #[serde(default)]
    header: Option<RawHeader>,
    commit: RawCommit,
}

#[derive(Deserialize)]
struct RawHeader {
    #[serde(default)]
    time: Option<String>,
}

#[derive(Deserialize)]
struct RawCommit {
    #[serde(deserialize_with = "de_u64")]
    height: u64,
    #[serde(default)]
    signatures: Option<Vec<RawSig>>,
}

#[derive(Deserialize)]
struct RawSig {
    #[serde(deserialize_with = "de_u8")]
    block_id_flag: u8,
    #[serde(default)]
    validator_address: Option<String>,
}

/// An int64 sent as a JSON string (CometBFT) or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(u64),
    Str(String),
}

fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match IntOrString::deserialize(d)? {
        IntOrString::Int(n) => Ok(n),
        IntOrString::Str(s) => s.trim().parse::<u64>().map_err(|e| {
            serde::de::Error::custom(format!("{s:?} is not a non-negative integer: {e}"))
        }),
    }
}

fn de_u64_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v: Option<Value> = Option::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(v) => de_u64(v).map_err(serde::de::Error::custom),
    }
}

fn de_u8<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let n = de_u64(d)?;
    u8::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_result(name: &str) -> Value {
        let path = format!(
            "{}/../../../shared/fixtures/cometbft/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        crate::rpc::decode_envelope("fixture", name, 200, &body).unwrap()
    }

    #[test]
    fn story_status_fixtures_parse() {
        let s = parse_status(fixture_result("tmrs_v0_38_status.json")).unwrap();
        assert_eq!(s.latest_block_height, 232);
        assert_eq!(s.earliest_block_height, 1);
        assert!(!s.catching_up);
        assert_eq!(
            s.validator_address,
            "2DD9F44FD9067555C322243C3C913BA7B51D2BE0"
        );
        assert_eq!(
            s.validator_pub_key_type.as_deref(),
            Some("tendermint/PubKeyEd25519")
        );
        assert_eq!(s.voting_power, 10);
        assert_eq!(s.network, "dockerchain");
        assert_eq!(s.moniker, "dockernode");
        let t = s.latest_block_time.unwrap();
        assert_eq!(
            humantime::format_rfc3339_nanos(t).to_string(),
            "2023-05-17T14:14:48.530153458Z"
        );

        let s = parse_status(fixture_result("tmrs_v0_37_status.json")).unwrap();
        assert_eq!(s.latest_block_height, 53);
        assert_eq!(
            s.validator_address,
            "DD8A65495B6240145764A74E78CF203D51510371"
        );
        assert_eq!(
            humantime::format_rfc3339_nanos(s.latest_block_time.unwrap()).to_string(),
            "2023-02-27T07:13:30.422625189Z"
        );
    }

    #[test]
    fn story_net_info_and_commit_fixtures_parse() {
        for v in ["v0_37", "v0_38"] {
            let n = parse_net_info(fixture_result(&format!("tmrs_{v}_net_info.json"))).unwrap();
            assert_eq!(n.n_peers, 0);
            let c = parse_commit(fixture_result(&format!(
                "tmrs_{v}_commit_at_height_10.json"
            )))
            .unwrap();
            assert_eq!(c.height, 10);
            assert!(c.canonical);
            assert_eq!(c.signatures.len(), 1);
            assert_eq!(c.signatures[0].flag, BlockIdFlag::Commit);
        }
        let c = parse_commit(fixture_result("tmrs_v0_38_commit_at_height_10.json")).unwrap();
        assert!(c.signed_by("2dd9f44fd9067555c322243c3c913ba7b51d2be0"));
        assert!(!c.signed_by("DD8A65495B6240145764A74E78CF203D51510371"));
    }

    #[test]
    fn story_tolerant_numbers_flags_and_times() {
        let mut r = fixture_result("tmrs_v0_38_status.json");
        r["sync_info"]["latest_block_height"] = serde_json::json!(233);
        r["sync_info"]["latest_block_time"] = serde_json::json!("0001-01-01T00:00:00Z");
        r["validator_info"]["pub_key"] = Value::Null;
        let s = parse_status(r).unwrap();
        assert_eq!(s.latest_block_height, 233);
        assert_eq!(s.latest_block_time, None);
        assert_eq!(s.validator_pub_key_type, None);

        let mut r = fixture_result("tmrs_v0_38_status.json");
        r["sync_info"]["latest_block_height"] = serde_json::json!("-1");
        assert!(parse_status(r).is_err());
        let mut r = fixture_result("tmrs_v0_38_status.json");
        r["sync_info"]["latest_block_time"] = serde_json::json!("yesterday");
        let (what, _) = parse_status(r).unwrap_err();
        assert!(what.contains("yesterday"), "{what}");

        let mut r = fixture_result("tmrs_v0_38_commit_at_height_10.json");
        r["signed_header"]["commit"]["signatures"] = serde_json::json!([
            {"block_id_flag": 1, "validator_address": "", "timestamp": "0001-01-01T00:00:00Z", "signature": null},
            {"block_id_flag": "3", "validator_address": "AA", "signature": "x"},
            {"block_id_flag": 1, "validator_address": null},
            {"block_id_flag": 7, "validator_address": "BB"}
        ]);
        let c = parse_commit(r).unwrap();
        assert_eq!(c.signatures[0].validator_address, None);
        assert_eq!(c.signatures[1].flag, BlockIdFlag::Nil);
        assert_eq!(c.signatures[3].flag, BlockIdFlag::Other(7));
        assert!(c.signed_by("aa"));
        assert!(!c.signed_by("BB"));
    }
}
