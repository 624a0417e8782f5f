//! SyncGuard's peer transport: how `syncguard-failover`'s protocol travels between nodes,
//! over HTTPS with mutual TLS, on the same port as the public HTTP API.
//!
//! The protocol itself — [`NodeId`](syncguard_failover::NodeId),
//! [`PeerStatus`](syncguard_failover::PeerStatus),
//! [`PeerMessage`](syncguard_failover::PeerMessage) (handover offer/reply, role
//! request/reply), [`HandedState`](syncguard_failover::HandedState) — belongs to the state
//! machine; this crate defines no protocol type of its own. It carries those types, validates
//! them on the way in and out, and authenticates who sends them.
//!
//! The machine is asynchronous, and so is the transport: a message (the machine's
//! `Action::Send`) is one `POST /peer/message`, answered `202 Accepted` as soon as the
//! receiver has validated it and queued it for its machine; a reply is the receiver's own
//! message, posted back later. Only the looks at the peer are request/answer.
//!
//! Routes ([`message::path`]):
//! - `GET /peer/status` → `Envelope<PeerStatus>` ([`PeerClient::status`]);
//! - `GET /peer/state` → `Envelope<StateSnapshot>` ([`PeerClient::state`]): the active's sign
//!   state, pulled by the passive (transport only; the machine never sees it);
//! - `POST /peer/message` with `Envelope<PeerMessage>` → `202 Accepted` ([`PeerClient::send`]).
//!
//! Modules:
//! - [`message`]: [`Envelope`] (`from`, `epoch`, `seq`) and [`Payload`] — the checks every
//!   carried type passes when an envelope is deserialized, built or serialized (implemented
//!   for `PeerStatus`, `PeerMessage` and [`StateSnapshot`]); the id rule ([`check_id`]);
//!   [`check_handed_state`]; [`ReplayGuard`]; paths and headers. S5: a sign state carrying
//!   any key-like field is refused both ways.
//! - [`tls`]: loading `communication.tls` ([`TlsMaterial`]), rustls server/client configs
//!   (ring only), node identity = the node id as a DNS subject-alternative-name
//!   ([`AllowList`]).
//! - [`certs`]: generating a cluster CA and node certificates (rcgen), written as PEM without
//!   ever overwriting a file, keys mode 0600.
//! - [`server`]: [`PeerServer`], one listener serving the caller's public router on plain
//!   HTTP and its peer router on mutual TLS, sniffing the first byte of each connection;
//!   handler helpers [`PeerId`], [`CallerEpoch`], [`Inbound`], [`refuse`].
//! - [`client`]: [`PeerClient`], one per configured peer, with errors in actionable kinds
//!   ([`PeerError`]).
//!
//! Typical use in the daemon:
//! ```text
//! let security = PeerSecurity::from_config(&config)?;             // loads and checks the PEMs
//! let server = PeerServer::from_config(&config, &security, public_router, peer_router)?;
//! let listener = syncguard_peer::server::bind(&config.server).await?;
//! tokio::spawn(server.serve(listener, token.cancelled_owned()));
//! let peers = PeerClient::from_config(&config, &security)?;        // one per peer
//! let status = peers[0].status(my_epoch).await?;                  // Envelope<PeerStatus>
//! // for each Action::Send { message, .. } of the machine:
//! peers[0].send(my_epoch, message).await?;                       // 202: queued over there
//! // in the peer router: POST /peer/message with Inbound(env): Inbound<PeerMessage>
//! //   -> feed Event::Message(env.body) to the machine, answer 202
//! ```

pub mod certs;
pub mod client;
pub mod message;
pub mod server;
pub mod tls;

use std::sync::Arc;

use thiserror::Error;
use tracing::warn;

pub use client::{PeerClient, PeerError};
pub use message::{
    check_handed_state, check_id, checked_id, Envelope, MessageError, Payload, ReplayGuard,
    StateSnapshot,
};
pub use server::{refuse, AdminCaller, CallerEpoch, Inbound, Limits, PeerId, PeerServer};
pub use tls::{AllowList, TlsError, TlsMaterial};

/// How peers talk: mutual TLS (the default), or plain HTTP in insecure mode.
#[derive(Debug, Clone)]
pub enum PeerSecurity {
    MutualTls(Arc<TlsMaterial>),
    /// `communication.insecure: true` without `communication.tls`: local tests and demos only.
    Insecure,
}

impl PeerSecurity {
    /// From `communication.tls` / `communication.insecure` and `server.id`.
    ///
    /// When both are set, TLS wins (the safer reading) and a warning says so.
    pub fn from_config(config: &syncguard_config::Config) -> Result<Self, SetupError> {
        let comm = &config.communication;
        match &comm.tls {
            Some(tls) => {
                if comm.insecure {
                    warn!("communication.insecure is ignored: communication.tls is set, so peers use mutual TLS");
                }
                let own = checked_id(config.server.id.clone()).map_err(|e| SetupError::Config {
                    key: "server.id".into(),
                    reason: e.to_string(),
                })?;
                Ok(PeerSecurity::MutualTls(Arc::new(TlsMaterial::load(
                    tls, &own,
                )?)))
            }
            None if comm.insecure => {
                warn!("communication.insecure is set: peer traffic is plain HTTP, unauthenticated; for local tests and demos only");
                Ok(PeerSecurity::Insecure)
            }
            None => Err(TlsError::NotConfigured.into()),
        }
    }
}

/// Why the peer transport could not be set up.
#[derive(Debug, Error)]
pub enum SetupError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{key}: {reason}")]
    Config { key: String, reason: String },
    #[error("cannot listen on {addr} (server.bind, server.port): {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client for peer `{peer}`: {detail}")]
    Http { peer: String, detail: String },
}
