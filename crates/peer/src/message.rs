//! What peers say to each other: serde types for the wire.
//!
//! Every message travels in an [`Envelope`] that names its sender (`from`), the sender's epoch
//! (the fencing token of DESIGN §2) and a per-sender increasing `seq`, so a receiver can refuse
//! messages from an older epoch ([`Envelope::check_epoch`]) and spot replays ([`ReplayGuard`]).
//!
//! Tolerant and strict at once: unknown JSON fields are ignored (a newer peer may add some),
//! unknown roles read as [`Role::Unknown`], but everything an `Envelope` carries is validated
//! while it is deserialized: ids are non-empty and well formed, texts are bounded, HRS values
//! are in range, a handover raises the epoch, a reply that refuses says the target never started.
//!
//! S5, keys never travel: no type here has a field for key material, and a sign state (the
//! only open-ended JSON on the wire) is refused, on sending and on receiving, if any of its
//! fields at any depth is named like a key (`priv…`, `…key…`).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use syncguard_validator::{Hrs, SignState, Step};
use thiserror::Error;

/// Request paths of the peer API. The daemon mounts its handlers on exactly these paths in the
/// peer router it gives to [`crate::server::PeerServer`]; [`crate::client::PeerClient`] calls them.
pub mod path {
    /// Every peer route lives under this prefix; the server refuses it on unauthenticated
    /// connections.
    pub const PREFIX: &str = "/peer";
    /// `GET`: answers `Envelope<PeerStatus>`.
    pub const STATUS: &str = "/peer/status";
    /// `GET`: answers `Envelope<StateSnapshot>`.
    pub const STATE: &str = "/peer/state";
    /// `POST Envelope<HandoverOffer>`: answers `Envelope<HandoverReply>`.
    pub const HANDOVER: &str = "/peer/handover";
    /// `POST Envelope<Notice>`: answers `204 No Content` (or any 2xx).
    pub const NOTICE: &str = "/peer/notice";
}

/// Headers the client puts on every peer request. `GET` requests have no body to carry an
/// envelope, so the asker's id, epoch and seq ride here (see [`crate::server::CallerEpoch`]).
pub mod header {
    /// The sender's node id. Over mutual TLS it must match the certificate; in insecure mode
    /// it is the only identification there is.
    pub const NODE: &str = "x-syncguard-node";
    /// The sender's epoch.
    pub const EPOCH: &str = "x-syncguard-epoch";
    /// The sender's sequence number for this request.
    pub const SEQ: &str = "x-syncguard-seq";
}

/// Longest node id: the longest DNS name, since the id is the certificate's DNS name.
pub const MAX_ID_LEN: usize = 253;
/// Longest health verdict text in a status.
pub const MAX_HEALTH_LEN: usize = 2048;
/// Longest reason in a refusal.
pub const MAX_REASON_LEN: usize = 2048;
/// Longest notice kind.
pub const MAX_KIND_LEN: usize = 64;
/// Longest notice text.
pub const MAX_TEXT_LEN: usize = 8192;

/// Why a message is not acceptable.
#[derive(Debug, Error)]
pub enum MessageError {
    #[error("node id is empty")]
    EmptyId,
    #[error("node id `{id}` is invalid: {reason}")]
    BadId { id: String, reason: &'static str },
    #[error("`{field}` is {len} characters long; at most {max} allowed")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("`{field}` is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("`{field}` says `{found}` but the envelope says `{expected}`")]
    Mismatch {
        field: &'static str,
        found: String,
        expected: String,
    },
    #[error("refused: a sign state must not carry a field named `{field}` (keys never travel)")]
    KeyLikeField { field: String },
    #[error("message from `{from}` is from epoch {got}, older than ours ({ours})")]
    StaleEpoch { from: String, got: u64, ours: u64 },
    #[error("message claims to come from `{claimed}` but the connection is authenticated as `{authenticated}`")]
    WrongSender {
        claimed: String,
        authenticated: String,
    },
    #[error("replayed message from `{from}` (seq {seq} was already seen)")]
    Replay { from: String, seq: u64 },
    #[error("message from `{from}` is too old (seq {seq}, newest seen {newest})")]
    TooOld { from: String, seq: u64, newest: u64 },
}

// ---------------------------------------------------------------------------------------------
// Node ids
// ---------------------------------------------------------------------------------------------

/// A node id (`server.id`, `communication.peers[].id`): 1–253 characters of letters, digits,
/// `-`, `_` and `.` (the same rule as the config). Deserializing checks it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    /// Check and wrap an id.
    pub fn new(id: impl Into<String>) -> Result<Self, MessageError> {
        let id = id.into();
        if id.is_empty() {
            return Err(MessageError::EmptyId);
        }
        if id.len() > MAX_ID_LEN {
            return Err(MessageError::BadId {
                id,
                reason: "longer than 253 characters",
            });
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(MessageError::BadId {
                id,
                reason: "only letters, digits, `-`, `_` and `.` are allowed",
            });
        }
        Ok(NodeId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeId {
    type Error = MessageError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        NodeId::new(s)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for NodeId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

// ---------------------------------------------------------------------------------------------
// Envelope, seq, replay
// ---------------------------------------------------------------------------------------------

/// What every payload checks about itself and against its envelope.
pub trait Payload {
    /// `from` and `epoch` are the envelope's.
    fn validate(&self, from: &NodeId, epoch: u64) -> Result<(), MessageError>;
}

/// The wrapper of every peer message.
///
/// `seq` grows strictly per sender: it is the wall clock in microseconds since the Unix
/// epoch, bumped by one when the clock has not advanced (see [`next_seq`]), so it keeps
/// growing across a restart of the sender, which a plain counter would not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "T: Serialize",
    deserialize = "T: DeserializeOwned + Payload"
))]
#[serde(try_from = "RawEnvelope<T>")]
pub struct Envelope<T> {
    /// The sender's node id.
    pub from: NodeId,
    /// The sender's epoch when it sent this.
    pub epoch: u64,
    /// Per-sender increasing sequence number.
    pub seq: u64,
    /// The message itself.
    pub body: T,
}

#[derive(Deserialize)]
struct RawEnvelope<T> {
    from: NodeId,
    epoch: u64,
    seq: u64,
    body: T,
}

impl<T: Payload> TryFrom<RawEnvelope<T>> for Envelope<T> {
    type Error = MessageError;
    fn try_from(raw: RawEnvelope<T>) -> Result<Self, Self::Error> {
        raw.body.validate(&raw.from, raw.epoch)?;
        Ok(Envelope {
            from: raw.from,
            epoch: raw.epoch,
            seq: raw.seq,
            body: raw.body,
        })
    }
}

impl<T: Payload> Envelope<T> {
    /// Wrap `body` for sending, with a fresh [`next_seq`]. Fails when the body would be
    /// refused by the receiver anyway.
    pub fn new(from: NodeId, epoch: u64, body: T) -> Result<Self, MessageError> {
        body.validate(&from, epoch)?;
        Ok(Envelope {
            from,
            epoch,
            seq: next_seq(),
            body,
        })
    }
}

impl<T> Envelope<T> {
    /// DESIGN §2: a message from an older epoch is refused.
    pub fn check_epoch(&self, ours: u64) -> Result<(), MessageError> {
        if self.epoch < ours {
            return Err(MessageError::StaleEpoch {
                from: self.from.to_string(),
                got: self.epoch,
                ours,
            });
        }
        Ok(())
    }

    /// The envelope's `from` must be the node the connection was authenticated as (pass
    /// the handler's [`crate::server::PeerId`]): a peer cannot speak for another.
    pub fn check_sender(&self, authenticated: &NodeId) -> Result<(), MessageError> {
        if &self.from != authenticated {
            return Err(MessageError::WrongSender {
                claimed: self.from.to_string(),
                authenticated: authenticated.to_string(),
            });
        }
        Ok(())
    }
}

static LAST_SEQ: AtomicU64 = AtomicU64::new(0);

/// The next sequence number of this process: `max(previous + 1, now in µs since 1970)`.
pub fn next_seq() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let mut prev = LAST_SEQ.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev.saturating_add(1));
        match LAST_SEQ.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(actual) => prev = actual,
        }
    }
}

/// Receiver-side replay detection, per sender.
///
/// A sender may have several requests in flight (a status poll and a state pull), which can
/// arrive out of order, so instead of "strictly greater than the last one" the guard accepts
/// any seq it has not seen within `window` (in seq units, i.e. µs) of the newest one, and
/// refuses repeats and anything older than the window. Over mutual TLS the transport already
/// prevents replays on the wire; this catches resent or relayed messages and insecure mode.
///
/// A sender whose clock jumped back further than the window after a restart is refused
/// until its clock catches up; [`ReplayGuard::forget`] resets it (e.g. on operator request).
#[derive(Debug)]
pub struct ReplayGuard {
    window: u64,
    senders: HashMap<NodeId, SenderWindow>,
}

#[derive(Debug, Default)]
struct SenderWindow {
    newest: u64,
    seen: BTreeSet<u64>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(Duration::from_secs(60))
    }
}

impl ReplayGuard {
    pub fn new(window: Duration) -> Self {
        ReplayGuard {
            window: u64::try_from(window.as_micros()).unwrap_or(u64::MAX),
            senders: HashMap::new(),
        }
    }

    /// Accept `(from, seq)` once; refuse it if it was seen or is older than the window.
    pub fn check(&mut self, from: &NodeId, seq: u64) -> Result<(), MessageError> {
        let w = self.senders.entry(from.clone()).or_default();
        if seq.saturating_add(self.window) < w.newest {
            return Err(MessageError::TooOld {
                from: from.to_string(),
                seq,
                newest: w.newest,
            });
        }
        if !w.seen.insert(seq) {
            return Err(MessageError::Replay {
                from: from.to_string(),
                seq,
            });
        }
        if seq > w.newest {
            w.newest = seq;
            // Keep only what can still be compared against: memory stays bounded by the
            // number of messages a sender sends within one window.
            let floor = w.newest.saturating_sub(self.window);
            w.seen = w.seen.split_off(&floor);
        }
        Ok(())
    }

    /// Check an envelope's `from` and `seq`.
    pub fn check_envelope<T>(&mut self, envelope: &Envelope<T>) -> Result<(), MessageError> {
        self.check(&envelope.from, envelope.seq)
    }

    /// Drop what is known of a sender.
    pub fn forget(&mut self, from: &NodeId) {
        self.senders.remove(from);
    }
}

// ---------------------------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------------------------

/// A node's role (DESIGN §4), as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Passive,
    Promoting,
    Active,
    Demoting,
    Fenced,
    Paused,
    /// A role this version does not know (a newer peer). Whoever reads it must assume the
    /// peer may be signing.
    #[serde(other)]
    Unknown,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Passive => "passive",
            Role::Promoting => "promoting",
            Role::Active => "active",
            Role::Demoting => "demoting",
            Role::Fenced => "fenced",
            Role::Paused => "paused",
            Role::Unknown => "unknown",
        })
    }
}

/// `GET /peer/status`: how a node sees itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Must equal the envelope's `from`.
    pub node_id: NodeId,
    pub role: Role,
    /// Must equal the envelope's `epoch`.
    pub epoch: u64,
    /// The node's own health verdict.
    pub healthy: bool,
    /// The verdict in words (which checks fail and why).
    #[serde(default)]
    pub health: String,
    pub fenced: bool,
    pub paused: bool,
    /// CometBFT's `latest_block_height` on this node; absent when unknown.
    #[serde(default)]
    pub comet_height: Option<u64>,
    /// The HRS of the node's state file; absent when unknown.
    #[serde(default, with = "opt_hrs")]
    pub last_sign: Option<Hrs>,
    /// When the node made this report (RFC 3339).
    #[serde(with = "rfc3339")]
    pub reported_at: SystemTime,
}

impl Payload for PeerStatus {
    fn validate(&self, from: &NodeId, epoch: u64) -> Result<(), MessageError> {
        if &self.node_id != from {
            return Err(MessageError::Mismatch {
                field: "node_id",
                found: self.node_id.to_string(),
                expected: from.to_string(),
            });
        }
        if self.epoch != epoch {
            return Err(MessageError::Mismatch {
                field: "epoch",
                found: self.epoch.to_string(),
                expected: epoch.to_string(),
            });
        }
        bounded("health", &self.health, MAX_HEALTH_LEN)
    }
}

/// `GET /peer/state`: the active's `priv_validator_state.json`, parsed with the same strict
/// rules as the file ([`SignState`]'s serde), and the epoch it was signed under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateSnapshot {
    pub epoch: u64,
    #[serde(with = "keyless_state")]
    pub state: SignState,
}

impl Payload for StateSnapshot {
    fn validate(&self, _from: &NodeId, _epoch: u64) -> Result<(), MessageError> {
        check_keyless(&self.state.to_value())
    }
}

/// `POST /peer/handover`: the old holder has stopped signing and hands over its final state
/// and the epoch the target is to hold (DESIGN §5, planned switchover).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoverOffer {
    /// Strictly above the envelope's epoch: a change of holder raises the epoch.
    pub epoch_new: u64,
    /// The old holder's state file after it stopped: the fence for the target (S3).
    #[serde(with = "keyless_state")]
    pub final_state: SignState,
}

impl Payload for HandoverOffer {
    fn validate(&self, _from: &NodeId, epoch: u64) -> Result<(), MessageError> {
        if self.epoch_new <= epoch {
            return Err(MessageError::Invalid {
                field: "epoch_new",
                reason: format!(
                    "{} does not exceed the sender's epoch {epoch}",
                    self.epoch_new
                ),
            });
        }
        check_keyless(&self.final_state.to_value())
    }
}

/// The target's answer to a [`HandoverOffer`].
///
/// Wire form: `{"result":"accepted","started":true}` or
/// `{"result":"refused","reason":"…","never_started":true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum HandoverReply {
    /// The target took the role; `started` tells whether its `story` is already running.
    Accepted { started: bool },
    /// The target did not take the role. `never_started` must be `true`: a refusal is the
    /// target's promise that it never started signing, the only case in which the old holder
    /// may resume (DESIGN §5). A refusal without that promise is an invalid message, so the
    /// old holder treats it like no answer at all.
    Refused { reason: String, never_started: bool },
}

impl HandoverReply {
    /// A refusal, with the never-started promise.
    pub fn refused(reason: impl Into<String>) -> Self {
        HandoverReply::Refused {
            reason: reason.into(),
            never_started: true,
        }
    }
}

impl Payload for HandoverReply {
    fn validate(&self, _from: &NodeId, _epoch: u64) -> Result<(), MessageError> {
        match self {
            HandoverReply::Accepted { .. } => Ok(()),
            HandoverReply::Refused {
                reason,
                never_started,
            } => {
                if !never_started {
                    return Err(MessageError::Invalid {
                        field: "never_started",
                        reason: "a refusal must promise the target never started".into(),
                    });
                }
                bounded("reason", reason, MAX_REASON_LEN)
            }
        }
    }
}

/// `POST /peer/notice`: anything worth telling a peer that is not a protocol step
/// ("pausing for maintenance", "fenced myself: …"). Not for secrets: `text` is logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// A short token: letters, digits, `-`, `_`, `.`.
    pub kind: String,
    pub text: String,
}

impl Payload for Notice {
    fn validate(&self, _from: &NodeId, _epoch: u64) -> Result<(), MessageError> {
        if self.kind.is_empty() {
            return Err(MessageError::Invalid {
                field: "kind",
                reason: "empty".into(),
            });
        }
        bounded("kind", &self.kind, MAX_KIND_LEN)?;
        if !self
            .kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(MessageError::Invalid {
                field: "kind",
                reason: format!(
                    "`{}`: only letters, digits, `-`, `_` and `.` are allowed",
                    self.kind
                ),
            });
        }
        bounded("text", &self.text, MAX_TEXT_LEN)
    }
}

/// The body of every refusal or error the peer API sends: `{"error": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

fn bounded(field: &'static str, text: &str, max: usize) -> Result<(), MessageError> {
    let len = text.chars().count();
    if len > max {
        return Err(MessageError::TooLong { field, len, max });
    }
    Ok(())
}

/// S5: refuse any JSON that has a field named like key material, at any depth.
fn check_keyless(value: &Value) -> Result<(), MessageError> {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let lower = k.to_ascii_lowercase();
                if lower.contains("priv") || lower.contains("key") || lower.contains("secret") {
                    return Err(MessageError::KeyLikeField { field: k.clone() });
                }
                check_keyless(v)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_keyless),
        _ => Ok(()),
    }
}

/// A [`SignState`] on the wire, refused both ways when it carries a key-like field.
mod keyless_state {
    use super::*;

    pub fn serialize<S: Serializer>(state: &SignState, s: S) -> Result<S::Ok, S::Error> {
        let value = state.to_value();
        check_keyless(&value).map_err(serde::ser::Error::custom)?;
        value.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SignState, D::Error> {
        let value = Value::deserialize(d)?;
        check_keyless(&value).map_err(serde::de::Error::custom)?;
        SignState::from_value(value).map_err(serde::de::Error::custom)
    }
}

/// HRS on the wire: `{"height": 36, "round": 0, "step": 3}`. The height may also come as a
/// string (CometBFT's habit); negative values and steps above 3 are refused.
mod opt_hrs {
    use super::*;

    #[derive(Serialize)]
    struct Out {
        height: i64,
        round: i32,
        step: u8,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Height {
        Num(u64),
        Text(String),
    }

    #[derive(Deserialize)]
    struct In {
        height: Height,
        round: u32,
        step: u8,
    }

    pub fn serialize<S: Serializer>(hrs: &Option<Hrs>, s: S) -> Result<S::Ok, S::Error> {
        hrs.map(|h| Out {
            height: h.height,
            round: h.round,
            step: h.step.as_u8(),
        })
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Hrs>, D::Error> {
        use serde::de::Error;
        let Some(raw) = Option::<In>::deserialize(d)? else {
            return Ok(None);
        };
        let height = match raw.height {
            Height::Num(n) => n,
            Height::Text(t) => t
                .parse::<u64>()
                .map_err(|_| D::Error::custom(format!("height `{t}` is not a whole number")))?,
        };
        let height = i64::try_from(height)
            .map_err(|_| D::Error::custom(format!("height {height} is out of range")))?;
        let round = i32::try_from(raw.round)
            .map_err(|_| D::Error::custom(format!("round {} is out of range", raw.round)))?;
        let step = Step::from_u8(raw.step)
            .ok_or_else(|| D::Error::custom(format!("step {} is not 0..=3", raw.step)))?;
        Ok(Some(Hrs::new(height, round, step)))
    }
}

/// `SystemTime` as an RFC 3339 string with milliseconds, readable in logs and `/status`.
mod rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&text)
            .map_err(|e| serde::de::Error::custom(format!("time `{text}`: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn status() -> PeerStatus {
        PeerStatus {
            node_id: id("node-a"),
            role: Role::Active,
            epoch: 7,
            healthy: true,
            health: "all checks pass".into(),
            fenced: false,
            paused: false,
            comet_height: Some(120),
            last_sign: Some(Hrs::new(119, 0, Step::Precommit)),
            reported_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        }
    }

    #[test]
    fn peer_status_round_trips_and_ignores_unknown_fields() {
        let env = Envelope::new(id("node-a"), 7, status()).unwrap();
        let mut v = serde_json::to_value(&env).unwrap();
        assert_eq!(
            v["body"]["last_sign"],
            json!({"height":119,"round":0,"step":3})
        );
        assert_eq!(v["body"]["reported_at"], json!("2023-11-14T22:13:20.123Z"));
        v["body"]["future_field"] = json!({"x": 1});
        v["also_new"] = json!(true);
        let back: Envelope<PeerStatus> = serde_json::from_value(v).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn peer_status_unknown_role_and_string_height_are_tolerated() {
        let mut v =
            serde_json::to_value(Envelope::new(id("node-a"), 7, status()).unwrap()).unwrap();
        v["body"]["role"] = json!("observer");
        v["body"]["last_sign"]["height"] = json!("119");
        let back: Envelope<PeerStatus> = serde_json::from_value(v).unwrap();
        assert_eq!(back.body.role, Role::Unknown);
        assert_eq!(back.body.last_sign, Some(Hrs::new(119, 0, Step::Precommit)));
    }

    #[test]
    fn peer_status_is_strictly_validated() {
        let good = serde_json::to_value(Envelope::new(id("node-a"), 7, status()).unwrap()).unwrap();
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("empty from", Box::new(|v| v["from"] = json!(""))),
            ("bad from", Box::new(|v| v["from"] = json!("a b"))),
            (
                "node_id mismatch",
                Box::new(|v| v["body"]["node_id"] = json!("node-b")),
            ),
            (
                "epoch mismatch",
                Box::new(|v| v["body"]["epoch"] = json!(8)),
            ),
            (
                "negative height",
                Box::new(|v| v["body"]["last_sign"]["height"] = json!(-1)),
            ),
            (
                "step 4",
                Box::new(|v| v["body"]["last_sign"]["step"] = json!(4)),
            ),
            (
                "no role",
                Box::new(|v| {
                    v["body"].as_object_mut().unwrap().remove("role");
                }),
            ),
            (
                "bad time",
                Box::new(|v| v["body"]["reported_at"] = json!("yesterday")),
            ),
            (
                "huge health",
                Box::new(|v| v["body"]["health"] = json!("x".repeat(5000))),
            ),
        ];
        for (name, mutate) in cases {
            let mut v = good.clone();
            mutate(&mut v);
            assert!(
                serde_json::from_value::<Envelope<PeerStatus>>(v).is_err(),
                "{name} accepted"
            );
        }
    }

    fn state_value() -> Value {
        json!({"height": "36", "round": 0, "step": 3,
               "signature": "AQID", "signbytes": "0A0B"})
    }

    #[test]
    fn peer_state_snapshot_parses_with_sign_state_rules() {
        let v = json!({"from": "node-a", "epoch": 3, "seq": 1,
                       "body": {"epoch": 3, "state": state_value()}});
        let env: Envelope<StateSnapshot> = serde_json::from_value(v).unwrap();
        assert_eq!(env.body.state.hrs(), Hrs::new(36, 0, Step::Precommit));
        // Height is written back as a string, as CometBFT wants it.
        assert_eq!(
            serde_json::to_value(&env).unwrap()["body"]["state"]["height"],
            json!("36")
        );

        let bad = json!({"from": "node-a", "epoch": 3, "seq": 1,
                         "body": {"epoch": 3, "state": {"height": 36, "round": 0, "step": 9}}});
        assert!(serde_json::from_value::<Envelope<StateSnapshot>>(bad).is_err());
    }

    #[test]
    fn peer_messages_never_carry_key_material() {
        for field in ["priv_key", "PrivateKey", "pub_key", "secret"] {
            let mut state = state_value();
            state[field] = json!({"type": "tendermint/PrivKeySecp256k1", "value": "AAAA"});
            let v = json!({"from": "node-a", "epoch": 3, "seq": 1,
                           "body": {"epoch": 3, "state": state.clone()}});
            let err = serde_json::from_value::<Envelope<StateSnapshot>>(v).unwrap_err();
            assert!(err.to_string().contains("keys never travel"), "{err}");
            // Nested too.
            let nested = json!({"from": "node-a", "epoch": 3, "seq": 1,
                "body": {"epoch_new": 4, "final_state": {
                    "height": "1", "round": 0, "step": 0, "x": [{ field: "AAAA" }]}}});
            assert!(serde_json::from_value::<Envelope<HandoverOffer>>(nested).is_err());
            // And a SignState that somehow carries one cannot be sent.
            let st = SignState::from_value(state).unwrap();
            let offer = HandoverOffer {
                epoch_new: 4,
                final_state: st,
            };
            assert!(Envelope::new(id("node-a"), 3, offer.clone()).is_err());
            let env = Envelope {
                from: id("node-a"),
                epoch: 3,
                seq: 1,
                body: offer,
            };
            assert!(serde_json::to_string(&env).is_err());
        }
    }

    #[test]
    fn peer_handover_messages_validate_epoch_and_promise() {
        let st = SignState::from_value(state_value()).unwrap();
        let ok = HandoverOffer {
            epoch_new: 4,
            final_state: st.clone(),
        };
        assert!(Envelope::new(id("a"), 3, ok).is_ok());
        let same = HandoverOffer {
            epoch_new: 3,
            final_state: st,
        };
        assert!(Envelope::new(id("a"), 3, same).is_err());

        let refused = Envelope::new(id("b"), 3, HandoverReply::refused("not caught up")).unwrap();
        let v = serde_json::to_value(&refused).unwrap();
        assert_eq!(
            v["body"],
            json!({"result":"refused","reason":"not caught up","never_started":true})
        );
        let mut broken = v.clone();
        broken["body"]["never_started"] = json!(false);
        assert!(serde_json::from_value::<Envelope<HandoverReply>>(broken).is_err());
        let accepted: Envelope<HandoverReply> = serde_json::from_value(json!({
            "from": "b", "epoch": 4, "seq": 9, "body": {"result": "accepted", "started": true}
        }))
        .unwrap();
        assert_eq!(accepted.body, HandoverReply::Accepted { started: true });
    }

    #[test]
    fn peer_notice_validation() {
        let n = |kind: &str, text: &str| Notice {
            kind: kind.into(),
            text: text.into(),
        };
        assert!(Envelope::new(id("a"), 1, n("fenced", "stopped story")).is_ok());
        assert!(Envelope::new(id("a"), 1, n("", "x")).is_err());
        assert!(Envelope::new(id("a"), 1, n("has space", "x")).is_err());
        assert!(Envelope::new(id("a"), 1, n("k", &"x".repeat(MAX_TEXT_LEN + 1))).is_err());
    }

    #[test]
    fn peer_envelope_epoch_and_sender_checks() {
        let env = Envelope::new(id("a"), 5, n_notice()).unwrap();
        assert!(env.check_epoch(5).is_ok());
        assert!(env.check_epoch(4).is_ok());
        assert!(matches!(
            env.check_epoch(6),
            Err(MessageError::StaleEpoch {
                got: 5,
                ours: 6,
                ..
            })
        ));
        assert!(env.check_sender(&id("a")).is_ok());
        assert!(env.check_sender(&id("b")).is_err());
    }

    fn n_notice() -> Notice {
        Notice {
            kind: "info".into(),
            text: String::new(),
        }
    }

    #[test]
    fn peer_seq_grows_strictly() {
        let mut last = 0;
        for _ in 0..1000 {
            let s = next_seq();
            assert!(s > last);
            last = s;
        }
    }

    #[test]
    fn peer_replay_guard_refuses_repeats_and_old_but_allows_reordering() {
        let mut g = ReplayGuard::new(Duration::from_micros(100));
        let a = id("a");
        assert!(g.check(&a, 1000).is_ok());
        assert!(g.check(&a, 1002).is_ok());
        assert!(g.check(&a, 1001).is_ok(), "reordered within the window");
        assert!(matches!(
            g.check(&a, 1002),
            Err(MessageError::Replay { .. })
        ));
        assert!(g.check(&a, 1200).is_ok());
        assert!(matches!(
            g.check(&a, 1050),
            Err(MessageError::TooOld { .. })
        ));
        // Other senders are independent.
        assert!(g.check(&id("b"), 1002).is_ok());
        g.forget(&a);
        assert!(g.check(&a, 1050).is_ok());
    }

    #[test]
    fn peer_node_id_rules() {
        assert!(NodeId::new("node-1.example_x").is_ok());
        assert!(matches!(NodeId::new(""), Err(MessageError::EmptyId)));
        assert!(NodeId::new("a/b").is_err());
        assert!(NodeId::new("x".repeat(254)).is_err());
        assert!(serde_json::from_value::<NodeId>(json!("")).is_err());
    }
}
