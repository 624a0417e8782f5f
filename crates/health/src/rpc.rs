//! One HTTP call to a node and the decoding of its JSON-RPC envelope, shared by the CometBFT
//! and EVM clients. Every failure becomes a [`ProbeError`] whose kind says what happened, so
//! the health report (and an operator reading it) can tell "the node is down" from "the node
//! answered nonsense".

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Characters of a body quoted in an error: enough to recognise an HTML error page or a
/// truncated JSON document, short enough for a log line.
const EXCERPT_CHARS: usize = 160;

/// A health answer is a few KB (a commit of a large validator set maybe a few hundred KB);
/// anything bigger is not an answer we want to hold in memory.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// JSON-RPC 2.0 "method not found". CometBFT answers it (HTTP 404) for an unknown path;
/// geth and anvil answer it (HTTP 200) for a method they do not serve, e.g. anvil 1.7 for
/// `net_peerCount`. Anvil answers -32600 "Invalid request" only for a body that is not a
/// JSON-RPC request at all, so -32600 stays a plain [`ProbeError::JsonRpc`].
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;

/// What went wrong with one call. Each variant names the URL and the method (the CometBFT
/// route such as `status`, or the EVM method such as `eth_syncing`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// No complete answer within the per-call timeout (connect + request + whole body).
    #[error("{method} at {url}: no complete answer within {timeout:?}")]
    Timeout {
        url: String,
        method: String,
        timeout: Duration,
    },
    /// Nothing listens on the port: the process is down or restarting.
    #[error("{method} at {url}: connection refused (is the node running?)")]
    ConnectionRefused { url: String, method: String },
    /// Any other failure to connect (DNS, unreachable network, TLS handshake).
    #[error("{method} at {url}: cannot connect: {detail}")]
    Connect {
        url: String,
        method: String,
        detail: String,
    },
    /// Connected, but the connection broke before a full answer (a node restarting cuts
    /// connections mid-answer; that is expected during a handover).
    #[error("{method} at {url}: connection lost before a full answer: {detail}")]
    Disconnected {
        url: String,
        method: String,
        detail: String,
    },
    /// A non-success HTTP status without a JSON-RPC error object in the body.
    #[error("{method} at {url}: HTTP {status}; body starts: {body}")]
    Http {
        url: String,
        method: String,
        status: u16,
        body: String,
    },
    /// The node answered with a JSON-RPC error object (CometBFT sends these with HTTP 500).
    #[error("{method} at {url}: JSON-RPC error {code}: {message}{}", data_suffix(.data))]
    JsonRpc {
        url: String,
        method: String,
        code: i64,
        message: String,
        data: Option<String>,
    },
    /// The node does not serve this method (JSON-RPC -32601). For optional calls this makes
    /// the check Unknown rather than failed.
    #[error("{method} at {url}: method not served by the node (JSON-RPC {code}: {message})")]
    MethodNotFound {
        url: String,
        method: String,
        code: i64,
        message: String,
    },
    /// An answer that is not the JSON we expect (not JSON, no result, bad hex, wrong types).
    #[error("{method} at {url}: malformed answer: {what}; body starts: {excerpt}")]
    MalformedBody {
        url: String,
        method: String,
        what: String,
        excerpt: String,
    },
}

fn data_suffix(data: &Option<String>) -> String {
    match data {
        Some(d) if !d.is_empty() => format!(" ({d})"),
        _ => String::new(),
    }
}

/// The kind of a [`ProbeError`], for metrics labels and for matching without the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeErrorKind {
    Timeout,
    ConnectionRefused,
    Connect,
    Disconnected,
    Http,
    JsonRpc,
    MethodNotFound,
    MalformedBody,
}

impl ProbeErrorKind {
    /// Stable snake_case name (same as the serde form).
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeErrorKind::Timeout => "timeout",
            ProbeErrorKind::ConnectionRefused => "connection_refused",
            ProbeErrorKind::Connect => "connect",
            ProbeErrorKind::Disconnected => "disconnected",
            ProbeErrorKind::Http => "http",
            ProbeErrorKind::JsonRpc => "json_rpc",
            ProbeErrorKind::MethodNotFound => "method_not_found",
            ProbeErrorKind::MalformedBody => "malformed_body",
        }
    }
}

impl ProbeError {
    pub fn kind(&self) -> ProbeErrorKind {
        match self {
            ProbeError::Timeout { .. } => ProbeErrorKind::Timeout,
            ProbeError::ConnectionRefused { .. } => ProbeErrorKind::ConnectionRefused,
            ProbeError::Connect { .. } => ProbeErrorKind::Connect,
            ProbeError::Disconnected { .. } => ProbeErrorKind::Disconnected,
            ProbeError::Http { .. } => ProbeErrorKind::Http,
            ProbeError::JsonRpc { .. } => ProbeErrorKind::JsonRpc,
            ProbeError::MethodNotFound { .. } => ProbeErrorKind::MethodNotFound,
            ProbeError::MalformedBody { .. } => ProbeErrorKind::MalformedBody,
        }
    }

    /// True when the node does not serve the method (an optional check becomes Unknown).
    pub fn is_method_not_found(&self) -> bool {
        self.kind() == ProbeErrorKind::MethodNotFound
    }
}

/// A client could not be built: a bad URL or an HTTP stack that failed to initialise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot set up a client for {url:?}: {reason}")]
pub struct SetupError {
    pub url: String,
    pub reason: String,
}

/// Checks that `url` is an absolute http(s) URL and returns it without a trailing slash.
pub(crate) fn normalize_base_url(url: &str) -> Result<String, SetupError> {
    let trimmed = url.trim();
    let parsed = reqwest::Url::parse(trimmed).map_err(|e| SetupError {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(SetupError {
            url: url.to_string(),
            reason: format!("scheme {:?} is not http or https", parsed.scheme()),
        });
    }
    if parsed.host().is_none() {
        return Err(SetupError {
            url: url.to_string(),
            reason: "no host".to_string(),
        });
    }
    Ok(trimmed.trim_end_matches('/').to_string())
}

/// The HTTP client of the probes: a connect timeout equal to the per-call timeout so a
/// black-holed port cannot outlast it, and NO idle connection pool: a probe runs every few
/// seconds, and a kept-alive connection to a node that restarted meanwhile fails the next
/// round with a spurious "connection lost" even though the node is back (or reports
/// "connection lost" instead of "refused" when it is down). A fresh connection per call
/// costs one local TCP handshake and makes every answer say what it really is.
pub(crate) fn build_http(url: &str, timeout: Duration) -> Result<reqwest::Client, SetupError> {
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| SetupError {
            url: url.to_string(),
            reason: error_chain(&e),
        })
}

/// Sends one request and decodes the JSON-RPC envelope; returns the `result` value.
/// The whole exchange (connect, send, read the body) is bounded by `timeout`: reqwest's own
/// timeout, plus a tokio timeout around it so nothing in the stack can outlast it.
pub(crate) async fn call(
    request: reqwest::RequestBuilder,
    url: &str,
    method: &str,
    timeout: Duration,
) -> Result<Value, ProbeError> {
    let exchange = async {
        let response = request
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| classify(&e, url, method, timeout))?;
        let status = response.status().as_u16();
        let body = read_body(response, url, method, timeout).await?;
        Ok::<_, ProbeError>((status, body))
    };
    let (status, body) = match tokio::time::timeout(timeout, exchange).await {
        Ok(answer) => answer?,
        Err(_elapsed) => {
            return Err(ProbeError::Timeout {
                url: url.to_string(),
                method: method.to_string(),
                timeout,
            })
        }
    };
    decode_envelope(url, method, status, &body)
}

async fn read_body(
    mut response: reqwest::Response,
    url: &str,
    method: &str,
    timeout: Duration,
) -> Result<Vec<u8>, ProbeError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(ProbeError::MalformedBody {
                        url: url.to_string(),
                        method: method.to_string(),
                        what: format!("answer larger than {MAX_BODY_BYTES} bytes"),
                        excerpt: excerpt(&body),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(classify(&e, url, method, timeout)),
        }
    }
}

/// Maps a reqwest failure onto the kinds an operator distinguishes.
fn classify(e: &reqwest::Error, url: &str, method: &str, timeout: Duration) -> ProbeError {
    let url = url.to_string();
    let method = method.to_string();
    if e.is_timeout() {
        return ProbeError::Timeout {
            url,
            method,
            timeout,
        };
    }
    if e.is_connect() {
        let refused = source_io_kinds(e).any(|k| k == std::io::ErrorKind::ConnectionRefused);
        if refused {
            return ProbeError::ConnectionRefused { url, method };
        }
        return ProbeError::Connect {
            url,
            method,
            detail: error_chain(e),
        };
    }
    ProbeError::Disconnected {
        url,
        method,
        detail: error_chain(e),
    }
}

fn source_io_kinds<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = std::io::ErrorKind> + 'a {
    let mut next: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    std::iter::from_fn(move || {
        while let Some(err) = next {
            next = err.source();
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                return Some(io.kind());
            }
        }
        None
    })
}

/// "outer: inner: innermost" — reqwest's own Display hides the cause.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The first [`EXCERPT_CHARS`] characters of a body, lossily decoded, on one line.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    if out.trim().is_empty() {
        out = "(empty)".to_string();
    }
    out
}

/// Decodes a JSON-RPC response body: an `error` object wins over the HTTP status (CometBFT
/// sends its errors with HTTP 500 or 404), then a non-2xx status is an HTTP error, then the
/// body must be JSON with a `result` member (which may be `null`).
pub(crate) fn decode_envelope(
    url: &str,
    method: &str,
    status: u16,
    body: &[u8],
) -> Result<Value, ProbeError> {
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    if let Ok(Value::Object(map)) = &parsed {
        if let Some(err) = map.get("error").filter(|e| !e.is_null()) {
            if let Some(e) = rpc_error(url, method, err) {
                return Err(e);
            }
        }
    }
    if !(200..300).contains(&status) {
        return Err(ProbeError::Http {
            url: url.to_string(),
            method: method.to_string(),
            status,
            body: excerpt(body),
        });
    }
    let malformed = |what: String| ProbeError::MalformedBody {
        url: url.to_string(),
        method: method.to_string(),
        what,
        excerpt: excerpt(body),
    };
    match parsed {
        Err(e) => Err(malformed(format!("not JSON ({e})"))),
        Ok(Value::Object(mut map)) => match map.remove("result") {
            Some(result) => Ok(result),
            None if map.contains_key("error") => Err(malformed(
                "error member is not a JSON-RPC error object".into(),
            )),
            None => Err(malformed("no \"result\" member".into())),
        },
        Ok(_) => Err(malformed("not a JSON-RPC response object".into())),
    }
}

/// Which answer a body is meant to be, for [`decode_answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    CometStatus,
    CometNetInfo,
    CometCommit,
    EvmBlockNumber,
    EvmSyncing,
    EvmPeerCount,
    EvmLatestBlock,
}

impl AnswerKind {
    pub const ALL: [AnswerKind; 7] = [
        AnswerKind::CometStatus,
        AnswerKind::CometNetInfo,
        AnswerKind::CometCommit,
        AnswerKind::EvmBlockNumber,
        AnswerKind::EvmSyncing,
        AnswerKind::EvmPeerCount,
        AnswerKind::EvmLatestBlock,
    ];
}

/// Decodes an HTTP answer (`status`, `body`) of the local node exactly as the probes do,
/// down to the typed value (returned in its `Debug` form). The entry point of the fuzz
/// targets and hostile-input tests, so they exercise the code the daemon runs on every
/// answer. Bodies larger than the probes accept (8 MiB) are refused the same way.
pub fn decode_answer(kind: AnswerKind, status: u16, body: &[u8]) -> Result<String, ProbeError> {
    use crate::{comet, evm};
    let url = "http://fuzz.invalid/";
    let method = format!("{kind:?}");
    if body.len() > MAX_BODY_BYTES {
        return Err(ProbeError::MalformedBody {
            url: url.into(),
            method,
            what: format!("answer larger than {MAX_BODY_BYTES} bytes"),
            excerpt: excerpt(&body[..64]),
        });
    }
    let result = decode_envelope(url, &method, status, body)?;
    let comet_err = |(what, result): (String, Value)| ProbeError::MalformedBody {
        url: url.into(),
        method: method.clone(),
        what,
        excerpt: excerpt(result.to_string().as_bytes()),
    };
    let evm_err = |what: String| ProbeError::MalformedBody {
        url: url.into(),
        method: method.clone(),
        what,
        excerpt: String::new(),
    };
    match kind {
        AnswerKind::CometStatus => comet::parse_status(result)
            .map(|v| format!("{v:?}"))
            .map_err(comet_err),
        AnswerKind::CometNetInfo => comet::parse_net_info(result)
            .map(|v| format!("{v:?}"))
            .map_err(comet_err),
        AnswerKind::CometCommit => comet::parse_commit(result)
            .map(|v| format!("{v:?}"))
            .map_err(comet_err),
        AnswerKind::EvmBlockNumber | AnswerKind::EvmPeerCount => evm::quantity(&result, "result")
            .map(|v| v.to_string())
            .map_err(evm_err),
        AnswerKind::EvmSyncing => evm::parse_syncing(&result)
            .map(|v| format!("{v:?}"))
            .map_err(evm_err),
        AnswerKind::EvmLatestBlock => evm::parse_block(&result)
            .map(|v| format!("{v:?}"))
            .map_err(evm_err),
    }
}

/// Maps a JSON-RPC error object; None when it does not look like one (no integer code).
fn rpc_error(url: &str, method: &str, err: &Value) -> Option<ProbeError> {
    let code = err.get("code")?.as_i64()?;
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if code == METHOD_NOT_FOUND || looks_like_method_not_found(&message) {
        return Some(ProbeError::MethodNotFound {
            url: url.to_string(),
            method: method.to_string(),
            code,
            message,
        });
    }
    let data = match err.get("data") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    Some(ProbeError::JsonRpc {
        url: url.to_string(),
        method: method.to_string(),
        code,
        message,
        data,
    })
}

/// Some servers send "method not found" under a generic code (e.g. -32000); geth's text is
/// "the method X does not exist/is not available".
fn looks_like_method_not_found(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("method not found")
        || (m.contains("method") && (m.contains("does not exist") || m.contains("not supported")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> String {
        let path = format!(
            "{}/../../../shared/fixtures/{rel}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
    }

    #[test]
    fn story_decode_answer_reads_fixtures_and_refuses_hostile_bodies() {
        let ok = |kind, rel: &str| {
            decode_answer(kind, 200, fixture(rel).as_bytes())
                .unwrap_or_else(|e| panic!("{rel}: {e}"))
        };
        assert!(
            ok(AnswerKind::CometStatus, "cometbft/tmrs_v0_38_status.json")
                .contains("latest_block_height")
        );
        ok(
            AnswerKind::CometNetInfo,
            "cometbft/tmrs_v0_38_net_info.json",
        );
        ok(
            AnswerKind::CometCommit,
            "cometbft/tmrs_v0_38_commit_at_height_10.json",
        );
        assert_eq!(
            decode_answer(
                AnswerKind::EvmBlockNumber,
                200,
                br#"{"jsonrpc":"2.0","id":1,"result":"0x14"}"#
            )
            .unwrap(),
            "20"
        );
        // Larger than any answer we hold in memory.
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        let e = decode_answer(AnswerKind::CometCommit, 200, &big).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        // 10 000 levels deep: serde_json's recursion limit (128), a clean error.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        for kind in AnswerKind::ALL {
            let e = decode_answer(kind, 200, deep.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("recursion limit"), "{kind:?}: {e}");
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{deep}}}"#);
            assert!(decode_answer(kind, 200, body.as_bytes()).is_err());
            assert!(decode_answer(kind, 200, b"\x00\xffgarbage").is_err());
        }
    }

    /// (HTTP status, body) pairs from cometbft_rpc_error_examples.txt: a `# GET ... -> HTTP n`
    /// line followed by the body line.
    fn error_examples() -> Vec<(u16, String)> {
        let text = fixture("cometbft/cometbft_rpc_error_examples.txt");
        let mut out = Vec::new();
        let mut status = None;
        for line in text.lines() {
            if let Some(pos) = line.find("-> HTTP ") {
                status = line[pos + 8..].trim().parse::<u16>().ok();
            } else if line.starts_with('{') {
                out.push((
                    status.take().expect("status line before body"),
                    line.to_string(),
                ));
            }
        }
        out
    }

    #[test]
    fn story_error_examples_map_to_kinds() {
        let examples = error_examples();
        assert_eq!(examples.len(), 2);
        let (status, body) = &examples[0];
        assert_eq!(*status, 500);
        let err = decode_envelope("http://n/block", "block", *status, body.as_bytes()).unwrap_err();
        match &err {
            ProbeError::JsonRpc {
                code,
                message,
                data,
                ..
            } => {
                assert_eq!(*code, -32603);
                assert_eq!(message, "Internal error");
                assert!(data.as_deref().unwrap().contains("999999"));
            }
            other => panic!("expected JsonRpc, got {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains("block at http://n/block"), "{text}");
        assert!(text.contains("-32603") && text.contains("current blockchain height 232"));

        let (status, body) = &examples[1];
        assert_eq!(*status, 404);
        let err = decode_envelope("http://n/nope", "nope", *status, body.as_bytes()).unwrap_err();
        assert_eq!(err.kind(), ProbeErrorKind::MethodNotFound, "{err}");
        assert!(err.is_method_not_found());
    }

    #[test]
    fn story_envelope_http_malformed_and_null_result() {
        let e = decode_envelope("u", "m", 502, b"<html>Bad Gateway</html>").unwrap_err();
        assert!(
            matches!(&e, ProbeError::Http { status: 502, body, .. } if body.contains("Bad Gateway")),
            "{e:?}"
        );
        let e = decode_envelope("u", "m", 200, b"{\"jsonrpc\":\"2.0\"").unwrap_err();
        assert_eq!(e.kind(), ProbeErrorKind::MalformedBody);
        let e = decode_envelope("u", "m", 200, b"{\"jsonrpc\":\"2.0\",\"id\":1}").unwrap_err();
        assert!(e.to_string().contains("no \"result\""), "{e}");
        let e = decode_envelope("u", "m", 200, b"[1,2]").unwrap_err();
        assert_eq!(e.kind(), ProbeErrorKind::MalformedBody);
        let v = decode_envelope("u", "m", 200, b"{\"id\":1,\"result\":null}").unwrap();
        assert!(v.is_null());
        // geth's wording under a generic code still means "not served".
        let body = br#"{"id":1,"error":{"code":-32000,"message":"the method net_peerCount does not exist/is not available"}}"#;
        let e = decode_envelope("u", "net_peerCount", 200, body).unwrap_err();
        assert!(e.is_method_not_found());
        // anvil's answer to a garbage request is not "method not found".
        let body =
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid request"}}"#;
        let e = decode_envelope("u", "m", 200, body).unwrap_err();
        assert_eq!(e.kind(), ProbeErrorKind::JsonRpc);
    }

    #[test]
    fn story_excerpt_is_short_single_line() {
        let long = "x\n".repeat(1000);
        let e = excerpt(long.as_bytes());
        assert!(!e.contains('\n'));
        assert!(e.chars().count() <= EXCERPT_CHARS + 1);
        assert_eq!(excerpt(b""), "(empty)");
        assert_eq!(excerpt(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn story_base_url_validation() {
        assert_eq!(
            normalize_base_url("http://127.0.0.1:26657/").unwrap(),
            "http://127.0.0.1:26657"
        );
        assert!(normalize_base_url("localhost:26657").is_err());
        assert!(normalize_base_url("ftp://x").is_err());
        assert!(normalize_base_url("").is_err());
    }
}
