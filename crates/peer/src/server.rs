//! One port, two APIs: the plain-HTTP public API and the mutual-TLS peer API.
//!
//! Each accepted connection is sniffed with `TcpStream::peek`: a first byte of `0x16` (a TLS
//! handshake record, i.e. a ClientHello) means TLS with a required client certificate;
//! anything else is plain HTTP. So `curl http://localhost:8080/health` keeps working while
//! peers talk `https://` on the same port.
//!
//! **The caller's routers.** [`PeerServer`] takes two axum [`Router`]s: `public` (`/health`,
//! `/status`, …) and `peer` (the handlers of [`crate::message::path`], everything under
//! `/peer`). Requests under `/peer` go to the peer router only when the connection is
//! authenticated as a configured peer; the handler then finds the peer's id as a request
//! extension, [`PeerId`] (usable directly as an extractor). All other paths go to the public
//! router, on either kind of connection. The two routers are never merged, so no path trick
//! can reach a peer handler through the public side.
//!
//! **Handler helpers.** [`PeerId`] (who asks), [`CallerEpoch`] (their epoch, for `GET`s),
//! [`Inbound`] (a posted envelope, bounded, validated and checked against [`PeerId`]) and
//! [`refuse`] (the `{"error": …}` answer). The daemon's peer router, in short:
//! ```text
//! GET  /peer/status   (PeerId, CallerEpoch) -> Json(Envelope::new(me, epoch, machine.peer_status())?)
//! GET  /peer/state    (PeerId, CallerEpoch) -> Json(Envelope::new(me, epoch, StateSnapshot { state })?)
//! POST /peer/message  (Inbound(env): Inbound<PeerMessage>) -> queue Event::Message(env.body)
//!                     for the machine, answer StatusCode::ACCEPTED (202)
//! ```
//! A `/peer/message` handler refuses (4xx) only **before** queuing — the sender reads a 4xx
//! as "certainly not delivered" — and does not refuse by epoch: the machine judges the
//! message's epoch and answers a stale one with its own message.
//!
//! Who counts as a peer:
//! - mutual TLS: the client certificate chains to the cluster CA (checked in the handshake)
//!   and names exactly one id of the allow list (`communication.peers[].id`). A plain-HTTP
//!   request for `/peer/...` gets 403, as does a TLS client whose certificate is valid but
//!   names no listed peer (logged once per connection).
//! - insecure mode (`communication.insecure`, local tests and demos only): plain HTTP, the
//!   peer named by the `x-syncguard-node` header, which must be on the allow list. Warned
//!   about when serving starts. TLS connections are closed in that mode.
//!
//! Robustness: sniffing and the TLS handshake run inside each connection's own task under a
//! timeout ([`PeerServer::handshake_timeout`]), so a client that connects and stalls only
//! holds its own task. HTTP/1.1 only (see Cargo.toml). [`Limits`] (from `server:`) bound
//! what one client can cost, for both APIs at once: connections served at once (more are
//! closed on accept), the time to send headers (slowloris; hyper also closes an idle
//! keep-alive connection after it) and a body, the header size (431), the body size (413;
//! the public API's from `server.max_body_bytes`, the peer API's [`MAX_POST_BYTES`]).
//! Bodies are read whole, within those bounds, before any handler runs. With
//! `server.public_access: local` the public API answers only loopback clients and
//! mutual-TLS callers (403 for the rest). Shutdown: when the `shutdown` future
//! given to [`PeerServer::serve`] completes, the listener closes, idle connections close,
//! in-flight requests get [`PeerServer::drain_timeout`] to finish, then the rest are dropped.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use syncguard_failover::NodeId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, error, info, warn};

use crate::message::{header, path, Envelope, ErrorBody, Payload, MAX_RAW_STATE_LEN};
use crate::tls::AllowList;
use crate::{PeerSecurity, SetupError};
use syncguard_config::PublicAccess;

/// The authenticated id of the peer that sent a request to the peer router.
///
/// Only this crate creates one, after checking the peer's certificate (or, in insecure mode,
/// its header against the allow list), so a handler holding a `PeerId` may trust it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerId(NodeId);

impl PeerId {
    pub fn id(&self) -> &NodeId {
        &self.0
    }
}

impl Deref for PeerId {
    type Target = NodeId;
    fn deref(&self) -> &NodeId {
        &self.0
    }
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PeerId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<PeerId>()
            .cloned()
            .ok_or_else(|| refuse(StatusCode::FORBIDDEN, "not an authenticated peer request"))
    }
}

/// A caller of the **public** router that proved, by mutual TLS, to hold a certificate of the
/// cluster CA naming this node's own id (the CLI on this host, using this node's
/// certificate) or a configured peer's (the peer forwarding an operator's command). Inserted
/// as a request extension only for such connections, so admin handlers may trust it; plain
/// HTTP callers never get one and must show the admin token instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCaller(pub NodeId);

/// The caller's epoch from the `x-syncguard-epoch` header (sent by [`crate::client::PeerClient`]
/// on every request, the only place a `GET` can carry it). 400 when missing or malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerEpoch(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for CallerEpoch {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .headers
            .get(header::EPOCH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(CallerEpoch)
            .ok_or_else(|| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    format!("missing or malformed `{}` header", header::EPOCH),
                )
            })
    }
}

/// Largest request body [`Inbound`] reads. The biggest message, a handover offer, is a
/// handed state of at most [`MAX_RAW_STATE_LEN`] bytes (escaped once more inside the
/// envelope's JSON) plus a few hundred bytes.
pub const MAX_POST_BYTES: usize = 4 * MAX_RAW_STATE_LEN;

/// A posted envelope, ready for the machine: the body read (at most [`MAX_POST_BYTES`]),
/// parsed as `Envelope<T>` — which validates it ([`Payload`]) — and checked to come from the
/// authenticated peer ([`Envelope::check_sender`]), so a peer cannot speak for another.
///
/// Refusals answer `{"error": …}`: 403 when the request is not from an authenticated peer or
/// the envelope names another sender, 413 when the body is declared too large, 400 when it
/// cannot be read or is not a valid envelope. Replays are the handler's call
/// ([`crate::ReplayGuard`]); the machine is idempotent by epoch either way.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound<T>(pub Envelope<T>);

impl<S, T> FromRequest<S> for Inbound<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Payload + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request<Body>, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let peer = PeerId::from_request_parts(&mut parts, state).await?;
        let declared = parts
            .headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_POST_BYTES as u64) {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {MAX_POST_BYTES} bytes"),
            ));
        }
        // The limit also holds for bodies without a Content-Length (chunked).
        let bytes = axum::body::to_bytes(body, MAX_POST_BYTES)
            .await
            .map_err(|e| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body (at most {MAX_POST_BYTES} bytes): {e}"),
                )
            })?;
        let envelope: Envelope<T> = serde_json::from_slice(&bytes).map_err(|e| {
            warn!("refused a message from peer `{peer}`: {e}");
            refuse(StatusCode::BAD_REQUEST, format!("invalid message: {e}"))
        })?;
        envelope.check_sender(&peer).map_err(|e| {
            warn!("refused a message from peer `{peer}`: {e}");
            refuse(StatusCode::FORBIDDEN, e.to_string())
        })?;
        Ok(Inbound(envelope))
    }
}

/// The peer API's error answer: `status` with `{"error": reason}`. Peer handlers should
/// answer refusals this way; [`crate::client::PeerClient`] shows the reason to the operator.
pub fn refuse(status: StatusCode, reason: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: reason.into(),
        }),
    )
        .into_response()
}

/// Largest request head (request line + headers) read before answering 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// What one client may cost the server (both APIs). Defaults are `server:`'s defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest body of a public API request (the peer API's is [`MAX_POST_BYTES`]).
    pub max_body_bytes: usize,
    /// Time to send a request's headers; also how long an idle keep-alive connection stays.
    pub header_timeout: Duration,
    /// Time to send a request's body once the headers are in.
    pub body_timeout: Duration,
    /// Connections served at once; any more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Who may use the public API.
    pub public_access: PublicAccess,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&syncguard_config::ServerConfig::default())
    }
}

impl Limits {
    pub fn from_config(server: &syncguard_config::ServerConfig) -> Self {
        Limits {
            max_body_bytes: server.max_body_bytes,
            header_timeout: server.header_timeout(),
            body_timeout: server.body_timeout(),
            max_connections: server.max_connections.max(1),
            public_access: server.public_access,
        }
    }
}

/// Serves the public and the peer router on one listener.
pub struct PeerServer {
    tls: Option<TlsAcceptor>,
    allowed: AllowList,
    own: Option<AllowList>,
    public: Router,
    peer: Router,
    handshake_timeout: Duration,
    drain_timeout: Duration,
    limits: Limits,
}

struct Shared {
    tls: Option<TlsAcceptor>,
    allowed: AllowList,
    /// This node's own id: a certificate naming it may call the public admin routes.
    own: Option<AllowList>,
    public: Router,
    peer: Router,
    handshake_timeout: Duration,
    limits: Limits,
}

/// What a connection proved about its other end.
#[derive(Clone)]
enum Identity {
    /// Plain HTTP.
    Plain,
    /// Mutual TLS with a listed peer's certificate.
    Peer(PeerId),
    /// Mutual TLS with a certificate from the cluster CA that names no listed peer.
    Unlisted(Arc<str>),
    /// Mutual TLS with this node's own certificate (the local CLI): admin routes only.
    Own(NodeId),
}

impl PeerServer {
    /// `allowed` are the peers that may use the peer API (`communication.peers[].id`).
    /// Fails when an allowed id breaks the id rule or, with mutual TLS, cannot be a
    /// certificate name.
    pub fn new(
        security: &PeerSecurity,
        allowed: AllowList,
        public: Router,
        peer: Router,
    ) -> Result<Self, SetupError> {
        let (tls, own) = match security {
            PeerSecurity::MutualTls(material) => {
                allowed.check_ids(true)?;
                (
                    Some(TlsAcceptor::from(material.server_config()?)),
                    Some(AllowList::new([material.own_id().clone()])),
                )
            }
            PeerSecurity::Insecure => {
                allowed.check_ids(false)?;
                (None, None)
            }
        };
        Ok(PeerServer {
            tls,
            allowed,
            own,
            public,
            peer,
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            limits: Limits::default(),
        })
    }

    /// From the whole config: allow list from `communication.peers`.
    pub fn from_config(
        config: &syncguard_config::Config,
        security: &PeerSecurity,
        public: Router,
        peer: Router,
    ) -> Result<Self, SetupError> {
        let allowed = AllowList::from_config(&config.communication.peers)?;
        Ok(PeerServer::new(security, allowed, public, peer)?
            .limits(Limits::from_config(&config.server)))
    }

    /// Request and connection limits. Default [`Limits::default`] (`server:`'s defaults).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How long a new connection may take to send its first byte and finish the TLS
    /// handshake. Default 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How long in-flight requests may run after shutdown begins. Default 5 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Accept connections on `listener` until `shutdown` completes (pass e.g.
    /// `token.cancelled_owned()` or a signal future), then drain and return.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send) {
        let local = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into());
        match &self.tls {
            Some(_) => info!(
                "listening on {local}: public API on plain HTTP, peer API on mutual TLS for [{}]",
                ids(&self.allowed)
            ),
            None => warn!(
                "listening on {local}: communication.insecure is set: the peer API is plain HTTP and trusts the `{}` header of anyone who can reach this port; for local tests and demos only",
                header::NODE
            ),
        }
        let shared = Arc::new(Shared {
            tls: self.tls,
            allowed: self.allowed,
            own: self.own,
            public: self.public,
            peer: self.peer,
            handshake_timeout: self.handshake_timeout,
            limits: self.limits,
        });
        let slots = Arc::new(Semaphore::new(shared.limits.max_connections));
        let mut last_full_warning: Option<std::time::Instant> = None;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, remote)) => {
                        // Closing at once (instead of not accepting) keeps the backlog from
                        // filling with clients that would wait for nothing.
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            if last_full_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                                warn!(
                                    "refused connection from {remote}: {} connections open (server.max_connections)",
                                    shared.limits.max_connections
                                );
                                last_full_warning = Some(std::time::Instant::now());
                            }
                            drop(stream);
                            continue;
                        };
                        let task = connection(stream, remote, shared.clone(), stop_rx.clone());
                        conns.spawn(async move {
                            task.await;
                            drop(slot);
                        });
                    }
                    Err(e) => {
                        warn!("accepting a connection failed: {e}");
                        // Out of file descriptors and the like: back off instead of spinning.
                        if !matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionAborted
                                | std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::Interrupted
                        ) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                },
                Some(done) = conns.join_next(), if !conns.is_empty() => report(done),
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let drain = async {
            while let Some(done) = conns.join_next().await {
                report(done);
            }
        };
        if tokio::time::timeout(self.drain_timeout, drain)
            .await
            .is_err()
        {
            warn!(
                "shutdown: {} connection(s) still busy after {:?}; closing them",
                conns.len(),
                self.drain_timeout
            );
            conns.shutdown().await;
        }
        info!("HTTP server on {local} stopped");
    }
}

fn ids(allowed: &AllowList) -> String {
    allowed
        .ids()
        .map(NodeId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn report(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            error!("a connection task panicked: {e}");
        }
    }
}

/// Resolves once shutdown has begun (or the server is gone).
async fn stopping(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let setup = async {
        let mut first = [0u8; 1];
        match tokio::time::timeout(shared.handshake_timeout, stream.peek(&mut first)).await {
            Err(_) => {
                debug!(
                    "{remote}: sent nothing within {:?}; closed",
                    shared.handshake_timeout
                );
                return None;
            }
            Ok(Err(e)) => {
                debug!("{remote}: {e}");
                return None;
            }
            Ok(Ok(0)) => return None,
            Ok(Ok(_)) => {}
        }
        // 0x16 = TLS record type "handshake": the ClientHello. HTTP starts with a letter.
        if first[0] != 0x16 {
            return Some(Either::Plain(stream));
        }
        let Some(acceptor) = shared.tls.clone() else {
            warn!("refused TLS connection from {remote}: communication.insecure is set, the peer API speaks plain HTTP only");
            return None;
        };
        let tls =
            match tokio::time::timeout(shared.handshake_timeout, acceptor.accept(stream)).await {
                Err(_) => {
                    warn!(
                    "refused peer connection from {remote}: TLS handshake not finished within {:?}",
                    shared.handshake_timeout
                );
                    return None;
                }
                Ok(Err(e)) => {
                    warn!("refused peer connection from {remote}: TLS handshake failed: {e}");
                    return None;
                }
                Ok(Ok(tls)) => tls,
            };
        let cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first());
        let identity = match cert.map(|c| shared.allowed.identify(c)) {
            Some(Ok(id)) => {
                debug!("{remote}: mutual TLS as peer `{id}`");
                Identity::Peer(PeerId(id))
            }
            Some(Err(why)) => match shared
                .own
                .as_ref()
                .zip(cert)
                .map(|(own, c)| own.identify(c))
            {
                Some(Ok(id)) => {
                    debug!("{remote}: mutual TLS with this node's own certificate (admin)");
                    Identity::Own(id)
                }
                _ => {
                    warn!("refused peer connection from {remote}: {why}");
                    Identity::Unlisted(why.into())
                }
            },
            // The verifier requires a certificate, so this cannot happen; refuse anyway.
            None => Identity::Unlisted("no client certificate".into()),
        };
        Some(Either::Tls(Box::new(tls), identity))
    };
    let ready = tokio::select! {
        ready = setup => ready,
        () = stopping(stop.clone()) => None,
    };
    match ready {
        None => {}
        Some(Either::Plain(stream)) => {
            serve_http(stream, remote, Identity::Plain, shared, stop).await
        }
        Some(Either::Tls(tls, identity)) => serve_http(*tls, remote, identity, shared, stop).await,
    }
}

enum Either {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>, Identity),
}

async fn serve_http<IO>(
    io: IO,
    remote: SocketAddr,
    identity: Identity,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared_limits = shared.limits.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let identity = identity.clone();
        async move { Ok::<_, Infallible>(dispatch(req, remote, &identity, &shared).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared_limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        .max_headers(64);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopping(stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Clients hanging up mid-request are routine (a peer restarting): debug only.
        debug!("{remote}: connection ended: {e}");
    }
}

/// Reads the whole body (at most `max` bytes, within `timeout`) before any handler runs, so
/// no handler can be held by a slow or endless upload: 413 when it is larger, 408 when it
/// does not arrive in time, 400 when the connection breaks.
async fn read_body(
    req: Request<Incoming>,
    max: usize,
    timeout: Duration,
    remote: SocketAddr,
) -> Result<Request<Body>, Response> {
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {max} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        debug!(
            "refused {} from {remote}: body of {declared:?} bytes",
            req.uri().path()
        );
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let bytes =
        match tokio::time::timeout(timeout, axum::body::to_bytes(Body::new(body), max)).await {
            Err(_) => {
                debug!("{remote}: request body not received within {timeout:?}");
                return Err(refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("request body not received within {timeout:?}"),
                ));
            }
            Ok(Err(e)) => {
                // axum reports an over-long body as a length-limit error somewhere in the chain.
                let chain = error_chain(&e);
                if chain.contains("length limit") {
                    return Err(too_large());
                }
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {chain}"),
                ));
            }
            Ok(Ok(bytes)) => bytes,
        };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

fn is_peer_path(p: &str) -> bool {
    p == path::PREFIX || p.starts_with("/peer/")
}

async fn dispatch(
    req: Request<Incoming>,
    remote: SocketAddr,
    identity: &Identity,
    shared: &Shared,
) -> Response {
    let peer_path = is_peer_path(req.uri().path());
    if !peer_path
        && shared.limits.public_access == PublicAccess::Local
        && matches!(identity, Identity::Plain | Identity::Unlisted(_))
        && !remote.ip().to_canonical().is_loopback()
    {
        debug!(
            "refused {} from {remote}: server.public_access is local",
            req.uri().path()
        );
        return refuse(
            StatusCode::FORBIDDEN,
            "this node answers its public API only to local clients and mutual-TLS callers with a certificate of the cluster CA (server.public_access: local)",
        );
    }
    let max = if peer_path {
        MAX_POST_BYTES
    } else {
        shared.limits.max_body_bytes
    };
    let mut req = match read_body(req, max, shared.limits.body_timeout, remote).await {
        Ok(req) => req,
        Err(refusal) => return refusal,
    };
    req.extensions_mut().insert(ConnectInfo(remote));
    if !peer_path {
        // Public routes are served to everyone; an mTLS caller is marked so that admin
        // routes can accept it without a token.
        match identity {
            Identity::Peer(p) => {
                req.extensions_mut().insert(AdminCaller(p.id().clone()));
            }
            Identity::Own(id) => {
                req.extensions_mut().insert(AdminCaller(id.clone()));
            }
            Identity::Plain | Identity::Unlisted(_) => {}
        }
        return match shared.public.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        };
    }
    let claimed = req
        .headers()
        .get(header::NODE)
        .map(|v| v.to_str().unwrap_or("<not text>").to_string());
    let peer = match identity {
        Identity::Peer(peer) => {
            if let Some(claimed) = claimed.filter(|c| c != peer.as_str()) {
                warn!("refused {} from {remote}: header `{}` says `{claimed}` but the certificate is `{peer}`", req.uri().path(), header::NODE);
                return refuse(
                    StatusCode::FORBIDDEN,
                    format!(
                        "header `{}` says `{claimed}` but your certificate is `{peer}`",
                        header::NODE
                    ),
                );
            }
            peer.clone()
        }
        Identity::Own(_) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "this node's own certificate may call the admin routes, not the peer API",
            );
        }
        Identity::Unlisted(why) => {
            return refuse(
                StatusCode::FORBIDDEN,
                format!("not a configured peer: {why}"),
            );
        }
        Identity::Plain if shared.tls.is_some() => {
            warn!(
                "refused {} from {remote}: the peer API requires mutual TLS",
                req.uri().path()
            );
            return refuse(
                StatusCode::FORBIDDEN,
                "the peer API requires mutual TLS (https with a certificate from the cluster CA)",
            );
        }
        Identity::Plain => match claimed.as_deref().map(|c| shared.allowed.get(c)) {
            Some(Some(id)) => PeerId(id.clone()),
            Some(None) => {
                let claimed = claimed.unwrap_or_default();
                warn!(
                    "refused {} from {remote}: `{claimed}` is not a configured peer",
                    req.uri().path()
                );
                return refuse(
                    StatusCode::FORBIDDEN,
                    format!("`{claimed}` is not a configured peer"),
                );
            }
            None => {
                warn!(
                    "refused {} from {remote}: no `{}` header (insecure mode)",
                    req.uri().path(),
                    header::NODE
                );
                return refuse(
                    StatusCode::FORBIDDEN,
                    format!(
                        "insecure mode: the `{}` header must name a configured peer",
                        header::NODE
                    ),
                );
            }
        },
    };
    req.extensions_mut().insert(peer);
    match shared.peer.clone().oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// Bind `server.bind`:`server.port`.
pub async fn bind(server: &syncguard_config::ServerConfig) -> Result<TcpListener, SetupError> {
    let addr = if server.bind.contains(':') {
        format!("[{}]:{}", server.bind, server.port)
    } else {
        format!("{}:{}", server.bind, server.port)
    };
    TcpListener::bind(&addr)
        .await
        .map_err(|source| SetupError::Bind { addr, source })
}
