//! SyncGuard's peer protocol: what nodes say to each other and how, over HTTPS with mutual
//! TLS, on the same port as the public HTTP API.
//!
//! Modules:
//! - [`message`]: the wire types — [`Envelope`] (`from`, `epoch`, `seq`) around
//!   [`PeerStatus`], [`StateSnapshot`], [`HandoverOffer`] / [`HandoverReply`], [`Notice`];
//!   request paths and headers; [`ReplayGuard`]. No type can carry key material (S5).
//! - [`tls`]: loading `communication.tls` ([`TlsMaterial`]), rustls server/client configs
//!   (ring only), node identity = the node id as a DNS subject-alternative-name
//!   ([`AllowList`]).
//! - [`certs`]: generating a cluster CA and node certificates (rcgen), written as PEM without
//!   ever overwriting a file, keys mode 0600.
//! - [`server`]: [`PeerServer`], one listener serving the caller's public router on plain
//!   HTTP and its peer router on mutual TLS, sniffing the first byte of each connection;
//!   peer handlers get the authenticated [`PeerId`].
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
//! // in a peer handler: async fn h(peer: PeerId, CallerEpoch(e): CallerEpoch) -> ...
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
    Envelope, HandoverOffer, HandoverReply, MessageError, NodeId, Notice, Payload, PeerStatus,
    ReplayGuard, Role, StateSnapshot,
};
pub use server::{refuse, CallerEpoch, PeerId, PeerServer};
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
                let own =
                    NodeId::new(config.server.id.clone()).map_err(|e| SetupError::Config {
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
