//! The TLS check [`crate::EtcdBackend::connect`] makes against each member (feature `etcd`).
//!
//! Why: with TLS 1.3 the server judges the client's certificate only after the client has
//! finished its handshake, so a gRPC client whose certificate etcd refuses sees nothing but
//! "transport error: broken pipe" on its first request. One handshake of our own at connect
//! (the same CA, certificate and key), followed by the HTTP/2 preface so that etcd answers or
//! refuses, turns that into an error that names the file to fix. Only a definite verdict
//! counts: a member that cannot be reached or does not answer in time says nothing (etcd's
//! unavailability is the caller's business, as without TLS).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use syncguard_config::TlsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::CoordError;

/// The HTTP/2 client preface and an empty SETTINGS frame: etcd answers with its SETTINGS.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// The client side of `coordination.etcd.tls`, ready for handshakes.
pub(crate) struct Preflight {
    config: Arc<ClientConfig>,
    tls: TlsConfig,
}

/// What one member's handshake said.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Handshake done and etcd answered: it accepts this node's certificate.
    Accepted,
    /// No verdict (unreachable, no answer in time, connection closed without a word).
    Unknown(String),
    /// A definite refusal, with the config key to fix.
    Refused(CoordError),
}

fn bad_pem(key: &'static str, path: &Path, what: &str, e: impl std::fmt::Display) -> CoordError {
    CoordError::Config {
        key,
        reason: format!("{}: no usable {what}: {e}", path.display()),
    }
}

/// The PEM certificates in `pem` (at least one), read from `path` (config key `key`).
fn certificates(
    key: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, CoordError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(key, path, "certificate", e))?;
    if certs.is_empty() {
        return Err(bad_pem(
            key,
            path,
            "certificate",
            "no PEM certificate in it",
        ));
    }
    Ok(certs)
}

impl Preflight {
    /// Parses the PEM files (already read by the caller).
    pub(crate) fn new(
        tls: &TlsConfig,
        ca: &[u8],
        cert: &[u8],
        key: &[u8],
    ) -> Result<Self, CoordError> {
        const CA: &str = "coordination.etcd.tls.ca_cert";
        let mut roots = RootCertStore::empty();
        for c in certificates(CA, &tls.ca_cert, ca)? {
            roots
                .add(c)
                .map_err(|e| bad_pem(CA, &tls.ca_cert, "certificate", e))?;
        }
        let chain = certificates("coordination.etcd.tls.cert", &tls.cert, cert)?;
        // The key's bytes never reach an error message (S5 spirit): only its path.
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| bad_pem("coordination.etcd.tls.key", &tls.key, "private key", e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CoordError::Config {
                key: "coordination.etcd.tls",
                reason: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| CoordError::Config {
                key: "coordination.etcd.tls.key",
                reason: format!(
                    "{} does not go with {}: {e}",
                    tls.key.display(),
                    tls.cert.display()
                ),
            })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Preflight {
            config: Arc::new(config),
            tls: tls.clone(),
        })
    }

    /// One handshake with the member at `url` (`https://host:port`), each step bounded by
    /// `timeout`.
    pub(crate) async fn check(&self, url: &str, timeout: Duration) -> Verdict {
        let Some(authority) = url
            .strip_prefix("https://")
            .map(|rest| rest.split('/').next().unwrap_or(rest))
        else {
            return Verdict::Unknown(format!("{url}: not an https:// URL"));
        };
        let host = match authority.rsplit_once(':') {
            Some((host, _port)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => authority,
        };
        let Ok(name) = ServerName::try_from(host.to_string()) else {
            return Verdict::Refused(CoordError::Config {
                key: "coordination.etcd.endpoints",
                reason: format!("{url}: `{host}` is neither a host name nor an IP address"),
            });
        };
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(authority)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Verdict::Unknown(format!("{url}: {e}")),
            Err(_) => return Verdict::Unknown(format!("{url}: no connection within {timeout:?}")),
        };
        let connector = TlsConnector::from(self.config.clone());
        let mut stream = match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return self.judge(url, &e),
            Err(_) => {
                return Verdict::Unknown(format!("{url}: no TLS handshake within {timeout:?}"))
            }
        };
        // A refused write (the server may already have closed) still leaves its alert to read.
        let _ = stream.write_all(H2_PREFACE).await;
        let _ = stream.flush().await;
        let mut buf = [0u8; 64];
        match tokio::time::timeout(timeout, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => Verdict::Accepted,
            Ok(Ok(_)) => Verdict::Unknown(format!("{url}: closed without a word")),
            Ok(Err(e)) => self.judge(url, &e),
            Err(_) => Verdict::Unknown(format!("{url}: no answer within {timeout:?}")),
        }
    }

    /// A definite refusal when the error is TLS's, naming the file to fix.
    fn judge(&self, url: &str, e: &std::io::Error) -> Verdict {
        let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            return Verdict::Unknown(format!("{url}: {e}"));
        };
        let (key, reason) = match tls {
            rustls::Error::InvalidCertificate(why) => (
                "coordination.etcd.tls.ca_cert",
                format!(
                    "{url}: etcd's certificate is not trusted ({why:?}): {} must be the CA that \
                     signed etcd's --cert-file, for a name or IP address in the URL",
                    self.tls.ca_cert.display()
                ),
            ),
            rustls::Error::AlertReceived(alert) => (
                "coordination.etcd.tls.cert",
                format!(
                    "{url}: etcd refused this node's client certificate {} (TLS alert \
                     {alert:?}): it must be signed by the CA etcd trusts (its \
                     --trusted-ca-file) and be valid for client authentication",
                    self.tls.cert.display()
                ),
            ),
            other => (
                "coordination.etcd.tls",
                format!("{url}: TLS handshake failed: {other}"),
            ),
        };
        Verdict::Refused(CoordError::Config { key, reason })
    }
}
