//! [`PeerClient`]: this node talking to one peer.
//!
//! With mutual TLS it dials `https://<address>` (`communication.peers[].address`, any host
//! name or IP) and accepts only a server certificate that chains to the cluster CA **and
//! names the peer's id** — a custom rustls verifier ([`crate::tls`]) checks the id instead of
//! the dialled host, so no DNS entry or `resolve()` override per peer id is needed. It
//! presents this node's certificate. In insecure mode it dials `http://<address>`.
//!
//! Every request carries `x-syncguard-node`, `x-syncguard-epoch` and `x-syncguard-seq`; every
//! answer must be an envelope from the peer dialled. Proxies from the environment are
//! ignored and redirects are not followed: peer traffic goes straight to the peer.
//!
//! Three calls: [`PeerClient::status`] and [`PeerClient::state`] ask and get an answer;
//! [`PeerClient::send`] delivers one `syncguard_failover::PeerMessage` (an `Action::Send` of
//! the machine) and gets only `202 Accepted` back. The protocol is asynchronous: a reply is
//! the peer's own message, posted to this node's server later, never an HTTP response.

use std::error::Error as _;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use thiserror::Error;

use syncguard_failover::{NodeId, PeerMessage, PeerStatus};

use crate::message::{
    check_id, checked_id, header, next_seq, path, Envelope, ErrorBody, MessageError, Payload,
    StateSnapshot,
};
use crate::{PeerSecurity, SetupError};

/// Largest answer read from a peer; a status or a state is a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Why a call to a peer failed, in kinds the daemon can act on.
#[derive(Debug, Error)]
pub enum PeerError {
    /// No connection could be made (refused, no route, DNS): nothing was sent.
    #[error("peer `{peer}` at {address} is unreachable: {detail}")]
    Unreachable {
        peer: String,
        address: String,
        detail: String,
    },
    /// The connection broke after the request was sent: the peer may have acted on it.
    #[error("peer `{peer}` at {address}: connection lost before a full answer: {detail}")]
    ConnectionLost {
        peer: String,
        address: String,
        detail: String,
    },
    /// No full answer within the timeout: the peer may have acted on the request.
    #[error("peer `{peer}` at {address} did not answer within {timeout:?}")]
    Timeout {
        peer: String,
        address: String,
        timeout: Duration,
    },
    /// The TLS handshake failed: a certificate not from the cluster CA, a server certificate
    /// that does not name the peer, or our certificate refused by the peer.
    #[error("peer `{peer}` at {address}: TLS failed: {detail}")]
    Tls {
        peer: String,
        address: String,
        detail: String,
    },
    /// The peer answered 4xx: it refused the request, and did not act on it.
    #[error("peer `{peer}` refused the request (HTTP {status}): {reason}")]
    Refused {
        peer: String,
        status: u16,
        reason: String,
    },
    /// The peer answered 5xx: it failed while handling the request.
    #[error("peer `{peer}` failed (HTTP {status}): {reason}")]
    PeerFailed {
        peer: String,
        status: u16,
        reason: String,
    },
    /// Our own message failed validation: nothing was sent (a bug on our side).
    #[error("message to peer `{peer}` not sent: {source}")]
    NotSent {
        peer: String,
        #[source]
        source: MessageError,
    },
    /// An answer that is not a valid envelope from this peer.
    #[error("peer `{peer}` gave a bad answer: {detail}")]
    BadAnswer { peer: String, detail: String },
}

impl PeerError {
    /// True when the peer surely did not act on the request: nothing reached it, TLS never
    /// completed, or it refused (a 4xx: the peer API refuses before feeding anything to its
    /// machine). For [`PeerClient::send`] that means the message was certainly not
    /// delivered; every other failure leaves it unknown whether the peer's machine got it —
    /// which is harmless for the machine (receivers are idempotent by epoch, so resending is
    /// safe) but must never be read as "the peer did not act".
    pub fn certainly_not_processed(&self) -> bool {
        matches!(
            self,
            PeerError::Unreachable { .. }
                | PeerError::Tls { .. }
                | PeerError::Refused { .. }
                | PeerError::NotSent { .. }
        )
    }
}

/// A client for one peer.
#[derive(Debug, Clone)]
pub struct PeerClient {
    own_id: NodeId,
    peer: NodeId,
    address: String,
    base: String,
    http: reqwest::Client,
    timeout: Duration,
}

impl PeerClient {
    /// A client for `peer_id` at `address` (`host:port`), as node `own_id`. Both ids must
    /// pass [`check_id`]: they go into headers, envelopes and (with TLS) certificate checks.
    pub fn new(
        own_id: NodeId,
        peer_id: NodeId,
        address: &str,
        security: &PeerSecurity,
        request_timeout: Duration,
    ) -> Result<Self, SetupError> {
        for (key, id) in [
            ("server.id", &own_id),
            ("communication.peers[].id", &peer_id),
        ] {
            check_id(id).map_err(|e| SetupError::Config {
                key: key.into(),
                reason: e.to_string(),
            })?;
        }
        let bad_address = |reason: String| SetupError::Config {
            key: format!("communication.peers[id={peer_id}].address"),
            reason,
        };
        syncguard_config::check_host_port(address).map_err(bad_address)?;
        let builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            .pool_idle_timeout(Duration::from_secs(30));
        let (scheme, builder) = match security {
            PeerSecurity::MutualTls(material) => {
                let config = material.client_config(&peer_id)?;
                (
                    "https",
                    builder.use_preconfigured_tls(config).https_only(true),
                )
            }
            PeerSecurity::Insecure => ("http", builder),
        };
        let base = format!("{scheme}://{address}");
        reqwest::Url::parse(&base).map_err(|e| bad_address(format!("`{address}`: {e}")))?;
        let http = builder.build().map_err(|e| SetupError::Http {
            peer: peer_id.to_string(),
            detail: e.to_string(),
        })?;
        Ok(PeerClient {
            own_id,
            peer: peer_id,
            address: address.to_string(),
            base,
            http,
            timeout: request_timeout,
        })
    }

    /// One client per `communication.peers` entry, with `communication.request_timeout`.
    pub fn from_config(
        config: &syncguard_config::Config,
        security: &PeerSecurity,
    ) -> Result<Vec<PeerClient>, SetupError> {
        let own = checked_id(config.server.id.clone()).map_err(|e| SetupError::Config {
            key: "server.id".into(),
            reason: e.to_string(),
        })?;
        let timeout = config.timing().request_timeout;
        config
            .communication
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let id = checked_id(p.id.clone()).map_err(|e| SetupError::Config {
                    key: format!("communication.peers[{i}].id"),
                    reason: e.to_string(),
                })?;
                PeerClient::new(own.clone(), id, &p.address, security, timeout)
            })
            .collect()
    }

    pub fn peer_id(&self) -> &NodeId {
        &self.peer
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// `GET /peer/status`, telling the peer our `epoch`: its machine's `peer_status()`, to
    /// feed to ours as `PeerObservation::Reachable` (a failure is `Unreachable`, never
    /// silence).
    pub async fn status(&self, epoch: u64) -> Result<Envelope<PeerStatus>, PeerError> {
        self.get(path::STATUS, epoch).await
    }

    /// `GET /peer/state`: the peer's sign state (the passive's replica of the active's).
    pub async fn state(&self, epoch: u64) -> Result<Envelope<StateSnapshot>, PeerError> {
        self.get(path::STATE, epoch).await
    }

    /// `POST /peer/message`: deliver one protocol message to the peer's machine, under our
    /// `epoch` (the envelope's; the machine judges `message.epoch`). `Ok` means the peer
    /// answered `202 Accepted`: it validated the message and queued it for its machine — not
    /// that its machine acted on it. Any reply arrives later as the peer's own message.
    ///
    /// `message.from` must be this node's id, or the message is not sent
    /// ([`PeerError::NotSent`]).
    pub async fn send(&self, epoch: u64, message: PeerMessage) -> Result<(), PeerError> {
        let envelope = self.envelope(epoch, message)?;
        let (status, _) = self
            .exchange(Method::POST, path::MESSAGE, epoch, Some(&envelope))
            .await?;
        // Only 202 is the contract. Another 2xx is a peer we do not understand: whether its
        // machine got the message is unknown, which is what BadAnswer says.
        if status != StatusCode::ACCEPTED {
            return Err(self.bad(format!(
                "{}: expected 202 Accepted, got HTTP {status}",
                path::MESSAGE
            )));
        }
        Ok(())
    }

    /// `POST` to one of the peer's **public** admin routes (`/pause`, `/resume`) over the
    /// same connection as the peer API: with mutual TLS the peer's server recognises this
    /// node's certificate as an admin caller; `token` (the peer's `server.admin_token`, when
    /// shared) is sent as a bearer token for insecure mode. `Ok` is any 2xx.
    pub async fn admin_post<B: serde::Serialize>(
        &self,
        path: &str,
        epoch: u64,
        body: &B,
        token: Option<&str>,
    ) -> Result<Vec<u8>, PeerError> {
        let (_, bytes) = self
            .exchange_with(Method::POST, path, epoch, Some(body), token)
            .await?;
        Ok(bytes)
    }

    fn envelope<T: Payload>(&self, epoch: u64, body: T) -> Result<Envelope<T>, PeerError> {
        Envelope::new(self.own_id.clone(), epoch, body).map_err(|source| PeerError::NotSent {
            peer: self.peer.to_string(),
            source,
        })
    }

    /// A `GET` answered by an envelope from the peer dialled.
    async fn get<T>(&self, path: &str, epoch: u64) -> Result<Envelope<T>, PeerError>
    where
        T: DeserializeOwned + Payload,
    {
        let (_, bytes) = self.exchange(Method::GET, path, epoch, None::<&()>).await?;
        let envelope: Envelope<T> =
            serde_json::from_slice(&bytes).map_err(|e| self.bad(format!("{path}: {e}")))?;
        if envelope.from != self.peer {
            return Err(self.bad(format!(
                "{path}: the answer comes from `{}`, not from `{}`",
                envelope.from, self.peer
            )));
        }
        Ok(envelope)
    }

    /// Send, read the whole (bounded) answer, and sort out non-2xx statuses.
    async fn exchange<B: serde::Serialize>(
        &self,
        method: Method,
        path: &str,
        epoch: u64,
        body: Option<&B>,
    ) -> Result<(StatusCode, Vec<u8>), PeerError> {
        self.exchange_with(method, path, epoch, body, None).await
    }

    async fn exchange_with<B: serde::Serialize>(
        &self,
        method: Method,
        path: &str,
        epoch: u64,
        body: Option<&B>,
        token: Option<&str>,
    ) -> Result<(StatusCode, Vec<u8>), PeerError> {
        let timeout = self.timeout;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(timeout)
            .header(header::NODE, self.own_id.as_str())
            .header(header::EPOCH, epoch.to_string())
            .header(header::SEQ, next_seq().to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            // Serialized here rather than by `request.json`: a failure must read as "not
            // sent" (it is a refusal of our own message by `Envelope`'s Serialize), not as a
            // transport error whose outcome would look unknown.
            let bytes = serde_json::to_vec(body).map_err(|e| PeerError::NotSent {
                peer: self.peer.to_string(),
                source: MessageError::Invalid {
                    field: "envelope",
                    reason: e.to_string(),
                },
            })?;
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| self.transport(e, timeout))?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport(e, timeout))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(self.bad(format!(
                    "{path}: answer larger than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok((status, bytes));
        }
        let reason = reason_of(&bytes, status);
        let peer = self.peer.to_string();
        if status.is_client_error() {
            Err(PeerError::Refused {
                peer,
                status: status.as_u16(),
                reason,
            })
        } else if status.is_server_error() {
            Err(PeerError::PeerFailed {
                peer,
                status: status.as_u16(),
                reason,
            })
        } else {
            Err(self.bad(format!("{path}: unexpected HTTP {status}")))
        }
    }

    fn bad(&self, detail: String) -> PeerError {
        PeerError::BadAnswer {
            peer: self.peer.to_string(),
            detail,
        }
    }

    fn transport(&self, e: reqwest::Error, timeout: Duration) -> PeerError {
        let peer = self.peer.to_string();
        let address = self.address.clone();
        // TLS first: with TLS 1.3 the server refuses our certificate after the client
        // considers the handshake done, so that alert surfaces while reading the answer.
        if let Some(tls) = rustls_error(&e) {
            return PeerError::Tls {
                peer,
                address,
                detail: describe_tls(tls),
            };
        }
        if e.is_timeout() {
            return PeerError::Timeout {
                peer,
                address,
                timeout,
            };
        }
        let detail = chain(&e);
        if e.is_connect() {
            PeerError::Unreachable {
                peer,
                address,
                detail,
            }
        } else {
            PeerError::ConnectionLost {
                peer,
                address,
                detail,
            }
        }
    }
}

/// The reason from an error answer: our `{"error": …}` body, else the text, shortened.
fn reason_of(bytes: &[u8], status: StatusCode) -> String {
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(bytes) {
        return body.error;
    }
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_string();
    }
    text.chars().take(500).collect()
}

/// The rustls error somewhere in `e`'s causes. `io::Error::source()` skips the error it
/// wraps, so step into each io::Error's payload explicitly.
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = match err.downcast_ref::<std::io::Error>() {
            Some(io) => match io.get_ref() {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => err.source(),
            },
            None => err.source(),
        };
    }
    None
}

fn describe_tls(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let hint = match e {
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            " (the peer's certificate does not name its configured id)"
        }
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            " (the peer's certificate is not from our cluster CA)"
        }
        E::AlertReceived(
            A::UnknownCA | A::BadCertificate | A::CertificateUnknown | A::DecryptError,
        ) => " (the peer does not accept our certificate: is it from the same cluster CA?)",
        E::AlertReceived(A::CertificateRequired) => " (the peer requires a client certificate)",
        _ => "",
    };
    format!("{e}{hint}")
}

fn chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
