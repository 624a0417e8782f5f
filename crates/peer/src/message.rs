//! The wire: how `syncguard-failover`'s protocol messages travel between nodes.
//!
//! The protocol's types belong to the state machine (`syncguard_failover`): [`NodeId`],
//! [`PeerStatus`] (what a node tells its peer about itself) and [`PeerMessage`] (handover
//! offer/reply, role request/reply). This crate adds only what the transport needs:
//!
//! - [`Envelope`] (`from`, `epoch`, `seq`) around every payload, so a receiver knows who sent
//!   it ([`Envelope::check_sender`]), can refuse a status or state from an older epoch
//!   ([`Envelope::check_epoch`]) and can spot replays ([`ReplayGuard`]);
//! - [`StateSnapshot`], the active's sign state pulled by the passive (`GET /peer/state`),
//!   which is transport business, not a protocol step;
//! - [`Payload`]: what each carried type must satisfy. It is checked while an envelope is
//!   **deserialized** (an invalid message never reaches a handler, let alone the machine),
//!   in [`Envelope::new`] and again when an envelope is **serialized** (an invalid message
//!   is never sent).
//!
//! Tolerant and strict at once: unknown JSON fields are ignored (a newer peer may add some),
//! but everything a payload carries is validated: node ids are well formed ([`check_id`])
//! and name the envelope's sender, reasons are bounded, HRS values are in range, and a
//! handed-over state is a valid state file whose HRS is the one announced.
//!
//! S5, keys never travel: the protocol types have no field for key material, and a sign
//! state — the only open-ended JSON on the wire, in [`StateSnapshot::state`] and in
//! [`HandedState::raw`] — is refused, on sending and on receiving, if any of its fields at
//! any depth is named like a key (`priv…`, `…key…`, `…secret…`).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use syncguard_failover::{HandedState, MessageBody, NodeId, PeerMessage, PeerStatus};
use syncguard_validator::{Hrs, SignState};
use thiserror::Error;

/// Request paths of the peer API. The daemon mounts its handlers on exactly these paths in the
/// peer router it gives to [`crate::server::PeerServer`]; [`crate::client::PeerClient`] calls them.
pub mod path {
    /// Every peer route lives under this prefix; the server refuses it on unauthenticated
    /// connections.
    pub const PREFIX: &str = "/peer";
    /// `GET`: answers `Envelope<PeerStatus>` (`syncguard_failover::PeerStatus`).
    pub const STATUS: &str = "/peer/status";
    /// `GET`: answers `Envelope<StateSnapshot>`.
    pub const STATE: &str = "/peer/state";
    /// `POST Envelope<PeerMessage>` (`syncguard_failover::PeerMessage`): answers
    /// `202 Accepted` once the message is queued for the receiver's machine. Any reply the
    /// machine makes comes back later as the receiver's own `POST` to this path.
    pub const MESSAGE: &str = "/peer/message";
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
/// Longest reason in a reply (`HandoverReply`, `RoleReply`), in characters. Reasons are
/// logged and recorded, so a peer must not be able to flood either.
pub const MAX_REASON_LEN: usize = 2048;
/// Longest [`HandedState::raw`], in bytes. A state file is a few hundred bytes; the margin is
/// for fields a newer CometBFT may add.
pub const MAX_RAW_STATE_LEN: usize = 64 * 1024;

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
    #[error("`{field}` says `{found}` but {expected_from} says `{expected}`")]
    Mismatch {
        field: &'static str,
        found: String,
        /// Where the expected value comes from ("the envelope", "the state file").
        expected_from: &'static str,
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

/// The id rule (`server.id`, `communication.peers[].id`, the same as the config's): 1–253
/// characters of letters, digits, `-`, `_` and `.`.
///
/// `syncguard_failover::NodeId` accepts any text (the machine only compares ids), so the
/// transport applies this wherever an id arrives from outside: an envelope's `from`, a
/// status's `node_id`, a message's `from`, a client or server being set up, a certificate
/// being issued or checked ([`crate::tls::id_server_name`], which adds the DNS-name rule).
pub fn check_id(id: &NodeId) -> Result<(), MessageError> {
    let text = id.as_str();
    if text.is_empty() {
        return Err(MessageError::EmptyId);
    }
    let bad = |reason| MessageError::BadId {
        id: text.chars().take(MAX_ID_LEN).collect(),
        reason,
    };
    if text.len() > MAX_ID_LEN {
        return Err(bad("longer than 253 characters"));
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(bad("only letters, digits, `-`, `_` and `.` are allowed"));
    }
    Ok(())
}

/// A [`NodeId`] from text (a config value), checked with [`check_id`].
pub fn checked_id(id: impl Into<String>) -> Result<NodeId, MessageError> {
    let id = NodeId::new(id);
    check_id(&id)?;
    Ok(id)
}

// ---------------------------------------------------------------------------------------------
// Envelope, seq, replay
// ---------------------------------------------------------------------------------------------

/// What every payload checks about itself and against its envelope.
pub trait Payload {
    /// `from` and `epoch` are the envelope's; `from` has already passed [`check_id`].
    fn validate(&self, from: &NodeId, epoch: u64) -> Result<(), MessageError>;
}

/// The wrapper of every peer message.
///
/// `seq` grows strictly per sender: it is the wall clock in microseconds since the Unix
/// epoch, bumped by one when the clock has not advanced (see [`next_seq`]), so it keeps
/// growing across a restart of the sender, which a plain counter would not.
///
/// Validated both ways: deserializing fails on an invalid id or payload, and so does
/// serializing (an envelope built field by field with a key in its state is never sent).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(bound(deserialize = "T: DeserializeOwned + Payload"))]
#[serde(try_from = "RawEnvelope<T>")]
pub struct Envelope<T> {
    /// The sender's node id.
    pub from: NodeId,
    /// The sender's epoch when it sent this. For a [`PeerMessage`] the epoch that counts is
    /// the message's own (`PeerMessage::epoch`), which the machine judges.
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
        let envelope = Envelope {
            from: raw.from,
            epoch: raw.epoch,
            seq: raw.seq,
            body: raw.body,
        };
        envelope.validate()?;
        Ok(envelope)
    }
}

impl<T: Payload + Serialize> Serialize for Envelope<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The last line of defence for S5 and for the receiver's rules: whatever built this
        // envelope, an invalid one does not leave the process.
        self.validate().map_err(serde::ser::Error::custom)?;
        #[derive(Serialize)]
        struct Out<'a, T> {
            from: &'a NodeId,
            epoch: u64,
            seq: u64,
            body: &'a T,
        }
        Out {
            from: &self.from,
            epoch: self.epoch,
            seq: self.seq,
            body: &self.body,
        }
        .serialize(s)
    }
}

impl<T: Payload> Envelope<T> {
    /// Wrap `body` for sending, with a fresh [`next_seq`]. Fails when the body would be
    /// refused by the receiver anyway.
    pub fn new(from: NodeId, epoch: u64, body: T) -> Result<Self, MessageError> {
        let envelope = Envelope {
            from,
            epoch,
            seq: next_seq(),
            body,
        };
        envelope.validate()?;
        Ok(envelope)
    }

    /// The sender's id and the payload's own rules ([`Payload::validate`]).
    pub fn validate(&self) -> Result<(), MessageError> {
        check_id(&self.from)?;
        self.body.validate(&self.from, self.epoch)
    }
}

impl<T> Envelope<T> {
    /// DESIGN §2: a status or a state from an older epoch is refused.
    ///
    /// Not for `POST /peer/message`: the machine judges `PeerMessage::epoch` itself and
    /// answers a stale offer or claim with a reply carrying its newer epoch, which a transport
    /// refusal would swallow.
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
    /// [`crate::server::Inbound`] does this for posted envelopes.
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

/// `GET /peer/status`: the machine's `peer_status()`.
///
/// Its `node_id` must be the envelope's `from` and its `epoch` the envelope's, so the two
/// can never tell different stories; `last_state` must be in range. Unknown roles are
/// refused by the machine's `Role` itself: an answer that cannot be read is no answer, and
/// the caller reports the peer as unreachable rather than guess what it is doing.
impl Payload for PeerStatus {
    fn validate(&self, from: &NodeId, epoch: u64) -> Result<(), MessageError> {
        check_id(&self.node_id)?;
        same_id("body.node_id", &self.node_id, from)?;
        if self.epoch != epoch {
            return Err(MessageError::Mismatch {
                field: "body.epoch",
                found: self.epoch.to_string(),
                expected_from: "the envelope",
                expected: epoch.to_string(),
            });
        }
        if let Some(hrs) = self.last_state {
            // Deserializing already refuses these; a status built in memory is checked here.
            hrs_in_range("body.last_state", hrs)?;
        }
        Ok(())
    }
}

/// `POST /peer/message`: a protocol message for the receiver's machine.
///
/// `from` must be the envelope's; reasons are bounded; a handed-over final state must pass
/// [`check_handed_state`]. The message's `epoch` is deliberately not compared with anything:
/// it means different things per kind (offered, claimed, answered), and judging it is the
/// machine's job.
impl Payload for PeerMessage {
    fn validate(&self, from: &NodeId, _epoch: u64) -> Result<(), MessageError> {
        check_id(&self.from)?;
        same_id("body.from", &self.from, from)?;
        // Exhaustive on purpose: a new message kind must be looked at here before it can
        // travel.
        match &self.body {
            MessageBody::HandoverOffer { final_state } => {
                if let Some(state) = final_state {
                    check_handed_state(state)?;
                }
                Ok(())
            }
            MessageBody::HandoverReply { reason, .. } | MessageBody::RoleReply { reason, .. } => {
                bounded("body.reason", reason, MAX_REASON_LEN)
            }
            MessageBody::RoleRequest { .. } => Ok(()),
        }
    }
}

/// A handed-over final state must be what the target's actuator will accept: `raw` is at most
/// [`MAX_RAW_STATE_LEN`] bytes of JSON without any key-like field (S5), parses as a
/// [`SignState`] with the state file's strict rules, and its HRS is exactly `hrs` — the
/// machine fences on `hrs` while the actuator writes `raw`, so the two must agree or the
/// fence could sit below the state actually written (S3).
///
/// Returns the parsed state.
pub fn check_handed_state(state: &HandedState) -> Result<SignState, MessageError> {
    const FIELD: &str = "body.final_state.raw";
    if state.raw.len() > MAX_RAW_STATE_LEN {
        return Err(MessageError::TooLong {
            field: FIELD,
            len: state.raw.len(),
            max: MAX_RAW_STATE_LEN,
        });
    }
    // Parse to a plain JSON value first, so the key check sees every field exactly as sent,
    // even in a text that would fail the state-file rules anyway.
    let value: Value = serde_json::from_str(&state.raw).map_err(|e| MessageError::Invalid {
        field: FIELD,
        reason: format!("not JSON: {e}"),
    })?;
    check_keyless(&value)?;
    let parsed = SignState::from_value(value).map_err(|e| MessageError::Invalid {
        field: FIELD,
        reason: format!("not a valid sign state: {e}"),
    })?;
    if parsed.hrs() != state.hrs {
        return Err(MessageError::Mismatch {
            field: "body.final_state.hrs",
            found: state.hrs.to_string(),
            expected_from: "the state file in `raw`",
            expected: parsed.hrs().to_string(),
        });
    }
    Ok(parsed)
}

/// `GET /peer/state`: the active's `priv_validator_state.json`, parsed with the same strict
/// rules as the file ([`SignState`]'s serde), so the passive can keep a replica (and feed
/// its HRS to the machine as a state seen). Transport only: the machine never sees this
/// type. The epoch it was read under is the envelope's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSnapshot {
    #[serde(with = "keyless_state")]
    pub state: SignState,
}

impl Payload for StateSnapshot {
    fn validate(&self, _from: &NodeId, _epoch: u64) -> Result<(), MessageError> {
        // A SignState is in range by construction; only S5 is left to check.
        check_keyless(&self.state.to_value())
    }
}

/// The body of every refusal or error the peer API sends: `{"error": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

fn same_id(field: &'static str, found: &NodeId, envelope: &NodeId) -> Result<(), MessageError> {
    if found != envelope {
        return Err(MessageError::Mismatch {
            field,
            found: found.to_string(),
            expected_from: "the envelope",
            expected: envelope.to_string(),
        });
    }
    Ok(())
}

fn hrs_in_range(field: &'static str, hrs: Hrs) -> Result<(), MessageError> {
    if hrs.height < 0 || hrs.round < 0 {
        return Err(MessageError::Invalid {
            field,
            reason: format!(
                "height {} / round {} must not be negative",
                hrs.height, hrs.round
            ),
        });
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use syncguard_failover::{HandoverOutcome, RequestKind, Role};
    use syncguard_validator::Step;

    fn id(s: &str) -> NodeId {
        checked_id(s).unwrap()
    }

    fn status() -> PeerStatus {
        PeerStatus {
            node_id: id("node-a"),
            role: Role::Active,
            paused: false,
            epoch: 7,
            healthy: true,
            latest_height: Some(120),
            is_primary_site: true,
            last_state: Some(Hrs::new(119, 0, Step::Precommit)),
            standby_right: false,
            wants_role: false,
            peer_lost: false,
        }
    }

    fn state_value() -> Value {
        json!({"height": "36", "round": 0, "step": 3,
               "signature": "AQID", "signbytes": "0A0B"})
    }

    fn handed(raw: &Value) -> HandedState {
        HandedState {
            hrs: Hrs::new(36, 0, Step::Precommit),
            raw: raw.to_string(),
        }
    }

    fn offer(from: &str, final_state: Option<HandedState>) -> PeerMessage {
        PeerMessage {
            from: id(from),
            epoch: 8,
            body: MessageBody::HandoverOffer { final_state },
        }
    }

    #[test]
    fn peer_status_round_trips_and_ignores_unknown_fields() {
        let env = Envelope::new(id("node-a"), 7, status()).unwrap();
        let mut v = serde_json::to_value(&env).unwrap();
        assert_eq!(
            v["body"]["last_state"],
            json!({"height":119,"round":0,"step":3})
        );
        v["body"]["future_field"] = json!({"x": 1});
        v["also_new"] = json!(true);
        let back: Envelope<PeerStatus> = serde_json::from_value(v).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn peer_status_is_strictly_validated() {
        let good = serde_json::to_value(Envelope::new(id("node-a"), 7, status()).unwrap()).unwrap();
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("empty from", Box::new(|v| v["from"] = json!(""))),
            ("bad from", Box::new(|v| v["from"] = json!("a b"))),
            (
                "bad from and node_id alike",
                Box::new(|v| {
                    v["from"] = json!("a/b");
                    v["body"]["node_id"] = json!("a/b");
                }),
            ),
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
                Box::new(|v| v["body"]["last_state"]["height"] = json!(-1)),
            ),
            (
                "step 4",
                Box::new(|v| v["body"]["last_state"]["step"] = json!(4)),
            ),
            (
                "no role",
                Box::new(|v| {
                    v["body"].as_object_mut().unwrap().remove("role");
                }),
            ),
            (
                "unknown role",
                Box::new(|v| v["body"]["role"] = json!("observer")),
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
        // Built in memory, the same rules hold on sending.
        let mut negative = status();
        negative.last_state = Some(Hrs::new(-5, 0, Step::None));
        assert!(Envelope::new(id("node-a"), 7, negative).is_err());
        assert!(Envelope::new(id("node-a"), 8, status()).is_err());
        assert!(Envelope::new(NodeId::new("node a"), 7, status()).is_err());
    }

    #[test]
    fn peer_state_snapshot_parses_with_sign_state_rules() {
        let v = json!({"from": "node-a", "epoch": 3, "seq": 1,
                       "body": {"state": state_value()}});
        let env: Envelope<StateSnapshot> = serde_json::from_value(v).unwrap();
        assert_eq!(env.body.state.hrs(), Hrs::new(36, 0, Step::Precommit));
        // Height is written back as a string, as CometBFT wants it.
        assert_eq!(
            serde_json::to_value(&env).unwrap()["body"]["state"]["height"],
            json!("36")
        );

        let bad = json!({"from": "node-a", "epoch": 3, "seq": 1,
                         "body": {"state": {"height": 36, "round": 0, "step": 9}}});
        assert!(serde_json::from_value::<Envelope<StateSnapshot>>(bad).is_err());
    }

    #[test]
    fn peer_handover_offer_with_final_state_round_trips() {
        let msg = offer("node-a", Some(handed(&state_value())));
        let env = Envelope::new(id("node-a"), 7, msg).unwrap();
        let text = serde_json::to_string(&env).unwrap();
        // The wire shape is the machine's serde, inside the envelope.
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["from"], json!("node-a"));
        assert_eq!(v["body"]["from"], json!("node-a"));
        assert_eq!(v["body"]["epoch"], json!(8));
        assert_eq!(v["body"]["body"]["type"], json!("handover_offer"));
        assert_eq!(
            v["body"]["body"]["final_state"]["hrs"],
            json!({"height": 36, "round": 0, "step": 3})
        );
        let back: Envelope<PeerMessage> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, env);
        let MessageBody::HandoverOffer {
            final_state: Some(state),
        } = &back.body.body
        else {
            panic!("not an offer with a state: {back:?}");
        };
        let parsed = check_handed_state(state).unwrap();
        assert_eq!(parsed.signature(), Some(&[1u8, 2, 3][..]));
        // Without a final state (the old holder could not read it) is fine too.
        assert!(Envelope::new(id("node-a"), 7, offer("node-a", None)).is_ok());
    }

    #[test]
    fn peer_handed_state_with_key_material_is_refused() {
        for field in ["priv_key", "PrivateKey", "pub_key", "secret"] {
            let mut with_key = state_value();
            with_key[field] = json!({"type": "tendermint/PrivKeySecp256k1", "value": "AAAA"});
            let nested = json!({"height": "36", "round": 0, "step": 3,
                                "x": [{ field: "AAAA" }]});
            for raw in [with_key, nested] {
                let state = handed(&raw);
                let err = check_handed_state(&state).unwrap_err();
                assert!(
                    matches!(err, MessageError::KeyLikeField { .. }),
                    "{field}: {err}"
                );
                // Not sent: neither through Envelope::new nor serialized by hand...
                let msg = offer("node-a", Some(state));
                assert!(Envelope::new(id("node-a"), 7, msg.clone()).is_err());
                let env = Envelope {
                    from: id("node-a"),
                    epoch: 7,
                    seq: 1,
                    body: msg.clone(),
                };
                assert!(serde_json::to_string(&env).is_err());
                // ...and not received.
                let wire = json!({"from": "node-a", "epoch": 7, "seq": 1,
                                  "body": serde_json::to_value(&msg).unwrap()});
                let err = serde_json::from_value::<Envelope<PeerMessage>>(wire).unwrap_err();
                assert!(err.to_string().contains("keys never travel"), "{err}");
            }
        }
    }

    #[test]
    fn peer_state_snapshot_never_carries_key_material() {
        for field in ["priv_key", "PrivateKey", "pub_key", "secret"] {
            let mut state = state_value();
            state[field] = json!({"type": "tendermint/PrivKeySecp256k1", "value": "AAAA"});
            let v = json!({"from": "node-a", "epoch": 3, "seq": 1,
                           "body": {"state": state.clone()}});
            let err = serde_json::from_value::<Envelope<StateSnapshot>>(v).unwrap_err();
            assert!(err.to_string().contains("keys never travel"), "{err}");
            // A SignState that somehow carries one (its unknown fields are kept) cannot be sent.
            let snapshot = StateSnapshot {
                state: SignState::from_value(state).unwrap(),
            };
            assert!(Envelope::new(id("node-a"), 3, snapshot.clone()).is_err());
            let env = Envelope {
                from: id("node-a"),
                epoch: 3,
                seq: 1,
                body: snapshot,
            };
            assert!(serde_json::to_string(&env).is_err());
        }
    }

    #[test]
    fn peer_handed_state_must_be_a_state_file_with_the_announced_hrs() {
        let cases = [
            ("not JSON", "{\"height\": \"36\"".to_string(), "not JSON"),
            (
                "bad step",
                json!({"height": "36", "round": 0, "step": 9}).to_string(),
                "not a valid sign state",
            ),
            (
                "unpaired signature",
                json!({"height": "36", "round": 0, "step": 3, "signature": "AQID"}).to_string(),
                "not a valid sign state",
            ),
            (
                "other HRS",
                json!({"height": "37", "round": 0, "step": 3}).to_string(),
                "says `height 36",
            ),
            (
                "too long",
                format!(
                    "{{\"height\":\"36\",\"round\":0,\"step\":3,\"pad\":\"{}\"}}",
                    "x".repeat(MAX_RAW_STATE_LEN)
                ),
                "at most",
            ),
        ];
        for (name, raw, expected) in cases {
            let state = HandedState {
                hrs: Hrs::new(36, 0, Step::Precommit),
                raw,
            };
            let err = check_handed_state(&state).unwrap_err().to_string();
            assert!(err.contains(expected), "{name}: {err}");
            assert!(
                Envelope::new(id("node-a"), 7, offer("node-a", Some(state))).is_err(),
                "{name} sendable"
            );
        }
    }

    #[test]
    fn peer_message_sender_and_reasons_are_checked() {
        // message.from must be the envelope's from.
        let err = Envelope::new(id("node-b"), 7, offer("node-a", None)).unwrap_err();
        assert!(matches!(err, MessageError::Mismatch { .. }), "{err}");
        let wire = json!({"from": "node-b", "epoch": 7, "seq": 1,
            "body": {"from": "node-a", "epoch": 8, "body": {"type": "role_request", "kind": "claim"}}});
        assert!(serde_json::from_value::<Envelope<PeerMessage>>(wire).is_err());
        let wire = json!({"from": "a b", "epoch": 7, "seq": 1,
            "body": {"from": "a b", "epoch": 8, "body": {"type": "role_request", "kind": "claim"}}});
        assert!(serde_json::from_value::<Envelope<PeerMessage>>(wire).is_err());

        let reply = |reason: String| PeerMessage {
            from: id("node-b"),
            epoch: 8,
            body: MessageBody::HandoverReply {
                outcome: HandoverOutcome::Refused,
                reason,
            },
        };
        assert!(Envelope::new(id("node-b"), 8, reply("not caught up".into())).is_ok());
        assert!(Envelope::new(id("node-b"), 8, reply("x".repeat(MAX_REASON_LEN + 1))).is_err());
        let grant = |reason: String| PeerMessage {
            from: id("node-b"),
            epoch: 8,
            body: MessageBody::RoleReply {
                granted: false,
                reason,
            },
        };
        assert!(Envelope::new(id("node-b"), 8, grant(String::new())).is_ok());
        assert!(Envelope::new(id("node-b"), 8, grant("y".repeat(MAX_REASON_LEN + 1))).is_err());
        let request = PeerMessage {
            from: id("node-b"),
            epoch: 3,
            body: MessageBody::RoleRequest {
                kind: RequestKind::Fallback,
            },
        };
        // The message's epoch is the machine's business, not the envelope's.
        assert!(Envelope::new(id("node-b"), 8, request).is_ok());
    }

    #[test]
    fn peer_envelope_epoch_and_sender_checks() {
        let env = Envelope::new(id("a"), 5, offer("a", None)).unwrap();
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
        assert!(checked_id("node-1.example_x").is_ok());
        assert!(matches!(checked_id(""), Err(MessageError::EmptyId)));
        assert!(checked_id("a/b").is_err());
        assert!(checked_id("x".repeat(254)).is_err());
        assert!(check_id(&NodeId::new("é")).is_err());
        // An envelope with an empty sender is refused even though NodeId itself accepts it.
        let wire = json!({"from": "", "epoch": 1, "seq": 1, "body": {"state": state_value()}});
        assert!(serde_json::from_value::<Envelope<StateSnapshot>>(wire).is_err());
    }
}
