//! Mutual TLS material and rustls configurations (ring provider only).
//!
//! **Node identity.** A node is the node id written as a DNS subject-alternative-name
//! (`DNS:node-a`) in a certificate signed by the cluster CA (`communication.tls.ca_cert`).
//! The certificate's common name is ignored, as TLS does. So node ids used with TLS must also
//! be valid DNS names: letters, digits, `-`, `_`, dots between labels, the last label not all
//! digits. Node certificates carry both the `serverAuth` and `clientAuth` extended key
//! usages, because every node is both a server and a client of its peers. Do not issue
//! wildcard names from the cluster CA: a wildcard would match several ids.
//!
//! - Server side ([`TlsMaterial::server_config`]): a client certificate chaining to the CA
//!   is required during the handshake; afterwards [`AllowList::identify`] turns the
//!   certificate into the peer's id, which must be one of the configured peers.
//! - Client side ([`TlsMaterial::client_config`]): trusts only the cluster CA, presents this
//!   node's certificate, and checks the server's certificate against the **peer id** rather
//!   than against the host name it dialled (a custom verifier wrapping rustls' WebPKI
//!   verifier). So `communication.peers[].address` may be an IP address or any host name,
//!   and a peer answering with another node's certificate is refused.
//!
//! Loading checks everything it can up front, so misconfiguration shows at start with the
//! file and the config key named: files present and readable, PEM well formed, the key
//! belongs to the certificate, the certificate chains to the CA and names this node.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use syncguard_config::TlsConfig;
use thiserror::Error;
use tracing::warn;
use zeroize::Zeroizing;

use syncguard_failover::NodeId;

use crate::message::{check_id, checked_id, MessageError};

/// What can go wrong with the TLS material. Every file problem names the config key and path.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{key}: file {} does not exist", path.display())]
    Missing { key: String, path: PathBuf },
    #[error("{key}: cannot read {}: {source}", path.display())]
    Unreadable {
        key: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{key}: {}: {reason}", path.display())]
    Invalid {
        key: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{key}: {source}")]
    BadId {
        key: String,
        #[source]
        source: MessageError,
    },
    #[error("{key}: node id `{id}` cannot be a certificate name: {reason}")]
    IdNotDnsName {
        key: String,
        id: String,
        reason: &'static str,
    },
    #[error("communication.tls is not set: peers talk only over mutual TLS; run `syncguard init` to create the certificates, or set communication.insecure: true for a local test")]
    NotConfigured,
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

/// The ring provider, always passed explicitly so no process-wide default is needed and
/// aws-lc-rs can never be picked up.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The node id as the DNS name its certificate must carry: the id rule ([`check_id`]) plus
/// the DNS-name rule. Every certificate issued or checked goes through here.
pub fn id_server_name(id: &NodeId, key: &str) -> Result<ServerName<'static>, TlsError> {
    check_id(id).map_err(|source| TlsError::BadId {
        key: key.to_string(),
        source,
    })?;
    let bad = |reason| TlsError::IdNotDnsName {
        key: key.to_string(),
        id: id.to_string(),
        reason,
    };
    match ServerName::try_from(id.as_str().to_string()) {
        Ok(name @ ServerName::DnsName(_)) => Ok(name),
        Ok(_) => Err(bad("it reads as an IP address")),
        Err(_) => Err(bad(
            "not a valid DNS name (labels of letters, digits, `-`, `_`; the last not all digits)",
        )),
    }
}

/// The three PEM files of `communication.tls`, loaded and checked.
///
/// Holds this node's TLS private key in memory (for rustls); its `Debug` never shows it.
pub struct TlsMaterial {
    own_id: NodeId,
    roots: Arc<RootCertStore>,
    ca_certs: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("own_id", &self.own_id)
            .field("ca_certs", &self.ca_certs.len())
            .field("chain", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Clone for TlsMaterial {
    fn clone(&self) -> Self {
        TlsMaterial {
            own_id: self.own_id.clone(),
            roots: self.roots.clone(),
            ca_certs: self.ca_certs.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsMaterial {
    /// Load `communication.tls` for node `own_id` (`server.id`).
    pub fn load(tls: &TlsConfig, own_id: &NodeId) -> Result<Self, TlsError> {
        Self::load_at(tls, "communication.tls", own_id)
    }

    /// Load a [`TlsConfig`] found at config key `at` (for error messages).
    pub fn load_at(tls: &TlsConfig, at: &str, own_id: &NodeId) -> Result<Self, TlsError> {
        let ca_key = format!("{at}.ca_cert");
        let cert_key = format!("{at}.cert");
        let key_key = format!("{at}.key");
        id_server_name(own_id, "server.id")?;

        let ca_certs = read_certs(&ca_key, &tls.ca_cert)?;
        let mut roots = RootCertStore::empty();
        for cert in &ca_certs {
            roots.add(cert.clone()).map_err(|e| {
                invalid(
                    &ca_key,
                    &tls.ca_cert,
                    format!("not a usable CA certificate: {e}"),
                )
            })?;
        }
        let chain = read_certs(&cert_key, &tls.cert)?;
        let key = read_key(&key_key, &tls.key)?;

        let material = TlsMaterial {
            own_id: own_id.clone(),
            roots: Arc::new(roots),
            ca_certs,
            chain,
            key,
        };
        material.check_key_matches(&key_key, &tls.key, &cert_key)?;
        material.check_own_cert(&cert_key, &tls.cert, &ca_key)?;
        Ok(material)
    }

    /// Build from PEM text already in memory (tests, `syncguard init` checks).
    pub fn from_pem(
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
        own_id: &NodeId,
    ) -> Result<Self, TlsError> {
        let mem = PathBuf::from("<memory>");
        id_server_name(own_id, "server.id")?;
        let ca_certs = parse_certs("ca_cert", &mem, ca_pem.as_bytes())?;
        let mut roots = RootCertStore::empty();
        for cert in &ca_certs {
            roots.add(cert.clone()).map_err(|e| {
                invalid("ca_cert", &mem, format!("not a usable CA certificate: {e}"))
            })?;
        }
        let material = TlsMaterial {
            own_id: own_id.clone(),
            roots: Arc::new(roots),
            ca_certs,
            chain: parse_certs("cert", &mem, cert_pem.as_bytes())?,
            key: parse_key("key", &mem, key_pem.as_bytes())?,
        };
        material.check_key_matches("key", &mem, "cert")?;
        material.check_own_cert("cert", &mem, "ca_cert")?;
        Ok(material)
    }

    /// This node's id, as its certificate names it.
    pub fn own_id(&self) -> &NodeId {
        &self.own_id
    }

    /// Server side: TLS 1.2/1.3, a client certificate chaining to the cluster CA required.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .build()
                .map_err(|e| TlsError::Setup(format!("client certificate verifier: {e}")))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Setup(format!("server certificate: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Client side for talking to `peer`: trusts only the cluster CA, presents this node's
    /// certificate, accepts only a server certificate naming `peer`.
    pub fn client_config(&self, peer: &NodeId) -> Result<ClientConfig, TlsError> {
        let provider = provider();
        let expected = id_server_name(peer, "communication.peers[].id")?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .build()
                .map_err(|e| TlsError::Setup(format!("server certificate verifier: {e}")))?;
        let verifier = PeerServerVerifier {
            inner,
            expected,
            supported: provider.signature_verification_algorithms,
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| TlsError::Setup(format!("client certificate: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    fn check_key_matches(
        &self,
        key_key: &str,
        key_path: &Path,
        cert_key: &str,
    ) -> Result<(), TlsError> {
        let provider = provider();
        let signing = provider
            .key_provider
            .load_private_key(self.key.clone_key())
            .map_err(|e| invalid(key_key, key_path, format!("unusable private key: {e}")))?;
        rustls::sign::CertifiedKey::new(self.chain.clone(), signing)
            .keys_match()
            .map_err(|_| {
                invalid(
                    key_key,
                    key_path,
                    format!("this private key does not belong to the certificate in {cert_key}"),
                )
            })
    }

    /// Our own certificate must chain to the CA and name our id: otherwise every peer would
    /// refuse us, and it is better to say so at start than at the first failover.
    fn check_own_cert(
        &self,
        cert_key: &str,
        cert_path: &Path,
        ca_key: &str,
    ) -> Result<(), TlsError> {
        let (end_entity, intermediates) = self
            .chain
            .split_first()
            .ok_or_else(|| invalid(cert_key, cert_path, "no certificate".into()))?;
        verify_chain(&self.roots, end_entity, intermediates).map_err(|e| {
            invalid(
                cert_key,
                cert_path,
                format!("the certificate does not chain to the CA in {ca_key} (or lacks the clientAuth usage): {e}"),
            )
        })?;
        let name = id_server_name(&self.own_id, "server.id")?;
        let parsed = ParsedCertificate::try_from(end_entity)
            .map_err(|e| invalid(cert_key, cert_path, format!("unparsable certificate: {e}")))?;
        verify_server_name(&parsed, &name).map_err(|e| {
            invalid(
                cert_key,
                cert_path,
                format!(
                    "the certificate is not for this node: it must carry `DNS:{}` (server.id) as a subject alternative name; it names {}",
                    self.own_id,
                    presented_names(&e)
                ),
            )
        })
    }
}

/// Check that `end_entity` chains to `roots` as a client certificate (what a peer's server
/// will check), now.
pub(crate) fn verify_chain(
    roots: &Arc<RootCertStore>,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<(), String> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| e.to_string())?;
    verifier
        .verify_client_cert(end_entity, intermediates, UnixTime::now())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Verifies the server's chain with rustls' WebPKI verifier, but against the peer's id
/// instead of the name the client dialled.
#[derive(Debug)]
struct PeerServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    expected: ServerName<'static>,
    supported: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            &self.expected,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.supported)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.supported)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.supported.supported_schemes()
    }
}

/// The peers this node accepts on its peer API (`communication.peers[].id`).
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    ids: Vec<(NodeId, Option<ServerName<'static>>)>,
}

impl AllowList {
    pub fn new(ids: impl IntoIterator<Item = NodeId>) -> Self {
        AllowList {
            ids: ids
                .into_iter()
                .map(|id| {
                    let name = id_server_name(&id, "").ok();
                    (id, name)
                })
                .collect(),
        }
    }

    /// From `communication.peers`, checking every id.
    pub fn from_config(peers: &[syncguard_config::PeerConfig]) -> Result<Self, crate::SetupError> {
        let mut ids = Vec::with_capacity(peers.len());
        for (i, p) in peers.iter().enumerate() {
            ids.push(
                checked_id(p.id.clone()).map_err(|e| crate::SetupError::Config {
                    key: format!("communication.peers[{i}].id"),
                    reason: e.to_string(),
                })?,
            );
        }
        Ok(AllowList::new(ids))
    }

    /// Every id must follow the id rule and, with mutual TLS, be usable as a certificate
    /// name. [`AllowList::new`] takes any `NodeId` (the machine's type does not check), so the
    /// server checks here, at setup, rather than meet a malformed id in a request.
    pub(crate) fn check_ids(&self, mutual_tls: bool) -> Result<(), TlsError> {
        for (i, (id, _)) in self.ids.iter().enumerate() {
            let key = format!("communication.peers[{i}].id");
            if mutual_tls {
                id_server_name(id, &key)?;
            } else {
                check_id(id).map_err(|source| TlsError::BadId { key, source })?;
            }
        }
        Ok(())
    }

    /// The listed id equal to `id`, if any (insecure mode's header check).
    pub fn get(&self, id: &str) -> Option<&NodeId> {
        self.ids.iter().map(|(n, _)| n).find(|n| n.as_str() == id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &NodeId> {
        self.ids.iter().map(|(n, _)| n)
    }

    /// The peer a verified client certificate belongs to: exactly one listed id must be
    /// among its DNS names. The chain itself was checked during the handshake.
    pub fn identify(&self, end_entity: &CertificateDer<'_>) -> Result<NodeId, String> {
        let cert = ParsedCertificate::try_from(end_entity)
            .map_err(|e| format!("unparsable client certificate: {e}"))?;
        let mut names = None;
        let mut matches = Vec::new();
        for (id, name) in &self.ids {
            match name.as_ref().map(|n| verify_server_name(&cert, n)) {
                Some(Ok(())) => matches.push(id),
                Some(Err(e)) => names = Some(presented_names(&e)),
                None => {}
            }
        }
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(format!(
                "its certificate (signed by the cluster CA) names {}, none of the configured peers [{}]",
                names.unwrap_or_else(|| "no usable name".into()),
                self.ids().map(NodeId::as_str).collect::<Vec<_>>().join(", ")
            )),
            many => Err(format!(
                "its certificate names several configured peers ({}); one certificate per node",
                many.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// The names a certificate carries, from rustls' name-mismatch error, for log lines.
fn presented_names(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
            presented,
            ..
        }) if !presented.is_empty() => {
            // rustls writes them as `DnsName("a")` / `IpAddress(1.2.3.4)`: make them X.509-ish.
            let tidy = |n: &String| {
                if let Some(dns) = n
                    .strip_prefix("DnsName(\"")
                    .and_then(|r| r.strip_suffix("\")"))
                {
                    format!("DNS:{dns}")
                } else if let Some(ip) = n
                    .strip_prefix("IpAddress(")
                    .and_then(|r| r.strip_suffix(')'))
                {
                    format!("IP:{ip}")
                } else {
                    n.clone()
                }
            };
            format!(
                "[{}]",
                presented.iter().map(tidy).collect::<Vec<_>>().join(", ")
            )
        }
        _ => "no DNS name".into(),
    }
}

fn invalid(key: &str, path: &Path, reason: String) -> TlsError {
    TlsError::Invalid {
        key: key.to_string(),
        path: path.to_path_buf(),
        reason,
    }
}

fn read_file(key: &str, path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Zeroizing::new(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(TlsError::Missing {
            key: key.to_string(),
            path: path.to_path_buf(),
        }),
        Err(e) => Err(TlsError::Unreadable {
            key: key.to_string(),
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

fn read_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(key, path)?;
    parse_certs(key, path, &bytes)
}

fn parse_certs(
    key: &str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, path, format!("malformed PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            key,
            path,
            "no certificate found (expected a PEM `BEGIN CERTIFICATE` block)".into(),
        ));
    }
    for cert in &certs {
        ParsedCertificate::try_from(cert)
            .map_err(|e| invalid(key, path, format!("not a valid X.509 certificate: {e}")))?;
    }
    Ok(certs)
}

fn read_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(key, path)?;
    warn_if_readable_by_others(key, path);
    parse_key(key, path, &bytes)
}

fn parse_key(key: &str, path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => invalid(
            key,
            path,
            "no private key found (expected a PEM `BEGIN PRIVATE KEY` block)".into(),
        ),
        other => invalid(key, path, format!("malformed PEM: {other}")),
    })
}

#[cfg(unix)]
fn warn_if_readable_by_others(key: &str, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            warn!(
                "{key}: {} has mode {mode:o}; a private key should be readable by its owner only (chmod 600)",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_key: &str, _path: &Path) {}
