//! Cluster CA and node certificates, generated with rcgen (ECDSA P-256), written as PEM.
//!
//! Used by the tests and by `syncguard init`. Node certificates follow the identity rule of
//! [`crate::tls`]: the node id as a DNS subject-alternative-name, plus any extra host names or
//! IP addresses the operator wants, with both `serverAuth` and `clientAuth` usages.
//!
//! Files are created, never replaced: writing to a path that exists is an error, so a second
//! `syncguard init` cannot silently swap a cluster's CA. Private keys are written mode 0600.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use thiserror::Error;
use zeroize::Zeroizing;

use syncguard_failover::NodeId;

use crate::tls::{id_server_name, verify_chain};

/// The CA's common name, followed by a tag derived from its public key. Derived rather than
/// random so that a CA written by `syncguard init` can be loaded back from its key alone
/// (rcgen needs the issuer's name to sign, and we do not parse X.509); distinct per CA so
/// that a certificate from another cluster fails as "unknown CA", not as a bad signature.
pub const CA_COMMON_NAME: &str = "SyncGuard cluster CA";
/// CA validity, years.
pub const CA_YEARS: i32 = 30;
/// Node certificate validity, years. Long on purpose: an expired certificate cuts peers off.
pub const NODE_YEARS: i32 = 10;

#[derive(Debug, Error)]
pub enum CertError {
    #[error("{} already exists; refusing to overwrite it (move it away to generate a new one)", path.display())]
    Exists { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("`{name}` is neither an IP address nor a valid DNS name")]
    BadName { name: String },
    #[error(transparent)]
    Id(#[from] crate::tls::TlsError),
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// A cluster CA able to issue node certificates.
pub struct ClusterCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("key", &"<redacted>")
            .finish()
    }
}

fn ca_params(key: &KeyPair) -> CertificateParams {
    let raw = key.public_key_raw();
    let tag: String = raw[raw.len().saturating_sub(8)..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{CA_COMMON_NAME} {tag}"));
    // Path length 0: the CA signs node certificates only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl ClusterCa {
    /// A new CA with a fresh key.
    pub fn generate() -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params(&key);
        set_validity(&mut params, CA_YEARS);
        let cert = params.self_signed(&key)?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(ca_params(&key), key),
        })
    }

    /// Load a CA written by [`ClusterCa::write`] (`syncguard init`), to issue more node
    /// certificates. A CA made by other tooling cannot be used: issuing then fails with a
    /// clear error rather than producing certificates that do not chain.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CertError> {
        let cert_pem = fs::read_to_string(cert_path).map_err(|source| CertError::Read {
            path: cert_path.to_path_buf(),
            source,
        })?;
        let key_pem =
            Zeroizing::new(
                fs::read_to_string(key_path).map_err(|source| CertError::Read {
                    path: key_path.to_path_buf(),
                    source,
                })?,
            );
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
            CertError::Invalid {
                path: cert_path.to_path_buf(),
                reason: format!("no usable PEM certificate: {e}"),
            }
        })?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CertError::Invalid {
            path: key_path.to_path_buf(),
            reason: format!("no usable PEM private key: {e}"),
        })?;
        Ok(ClusterCa {
            cert_pem,
            cert_der,
            issuer: Issuer::new(ca_params(&key), key),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issue a certificate for `node` with extra names (`"10.0.0.5"`, `"host.example"`).
    /// The id must pass the id and DNS-name rules: it becomes the certificate's identity.
    pub fn issue(&self, node: &NodeId, extra_names: &[String]) -> Result<NodeCert, CertError> {
        id_server_name(node, "server.id")?;
        let mut sans = vec![SanType::DnsName(node.as_str().try_into()?)];
        for name in extra_names {
            if let Ok(ip) = name.parse::<std::net::IpAddr>() {
                sans.push(SanType::IpAddress(ip));
            } else if rustls::pki_types::DnsName::try_from(name.as_str()).is_ok() {
                sans.push(SanType::DnsName(name.as_str().try_into()?));
            } else {
                return Err(CertError::BadName { name: name.clone() });
            }
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, node.as_str());
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, NODE_YEARS);
        let cert = params.signed_by(&key, &self.issuer)?;

        // A loaded CA whose name is not ours yields certificates that do not chain: catch it.
        let mut roots = RootCertStore::empty();
        roots
            .add(self.cert_der.clone())
            .map_err(|e| CertError::Invalid {
                path: PathBuf::from("<cluster CA>"),
                reason: e.to_string(),
            })?;
        verify_chain(&Arc::new(roots), cert.der(), &[]).map_err(|e| CertError::Invalid {
            path: PathBuf::from("<cluster CA>"),
            reason: format!(
                "a certificate issued with this CA does not verify ({e}); only a CA made by `syncguard init` can be used here"
            ),
        })?;

        Ok(NodeCert {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }

    /// Write the CA certificate (0644) and key (0600); neither may exist yet.
    pub fn write(&self, cert_path: &Path, key_path: &Path) -> Result<(), CertError> {
        let key_pem = Zeroizing::new(self.issuer.key().serialize_pem());
        write_pair(cert_path, &self.cert_pem, key_path, &key_pem)
    }

    /// Write only the CA certificate (what every node needs), mode 0644.
    pub fn write_cert(&self, cert_path: &Path) -> Result<(), CertError> {
        write_new(cert_path, self.cert_pem.as_bytes(), 0o644)
    }
}

/// A node's certificate and private key, in PEM.
pub struct NodeCert {
    pub cert_pem: String,
    key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCert")
            .field("key", &"<redacted>")
            .finish()
    }
}

impl NodeCert {
    /// The private key PEM, for loading in memory (tests). Never log it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Write certificate (0644) and key (0600); neither may exist yet.
    pub fn write(&self, cert_path: &Path, key_path: &Path) -> Result<(), CertError> {
        write_pair(cert_path, &self.cert_pem, key_path, &self.key_pem)
    }
}

fn write_pair(cert_path: &Path, cert: &str, key_path: &Path, key: &str) -> Result<(), CertError> {
    // Check both first so a refusal leaves nothing half-written.
    for p in [cert_path, key_path] {
        if p.exists() {
            return Err(CertError::Exists {
                path: p.to_path_buf(),
            });
        }
    }
    write_new(key_path, key.as_bytes(), 0o600)?;
    write_new(cert_path, cert.as_bytes(), 0o644)
}

/// Create `path` (never replacing it) with `mode`, write, fsync. A failed write removes the
/// partial file so a retry is not blocked by it.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            CertError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            CertError::Write {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if let Err(source) = written {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(CertError::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

/// From yesterday (tolerates clock skew between nodes) to `years` from now, in whole days.
fn set_validity(params: &mut CertificateParams, years: i32) {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    let days = i64::try_from(days).unwrap_or(0);
    let (y, m, d) = civil_from_days(days - 1);
    params.not_before = date_time_ymd(y, m, d);
    // 28th at most, so the same day exists in the target year and month.
    params.not_after = date_time_ymd(y + years, m, d.min(28));
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // Ranges are bounded by construction: m in 1..=12, d in 1..=31.
    (
        i32::try_from(y).unwrap_or(1970),
        u8::try_from(m).unwrap_or(1),
        u8::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }

    #[test]
    fn peer_certs_written_once_with_private_keys_0600() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate().unwrap();
        let (ca_crt, ca_key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
        ca.write(&ca_crt, &ca_key).unwrap();
        assert!(matches!(
            ca.write(&ca_crt, &dir.path().join("other.key")),
            Err(CertError::Exists { .. })
        ));
        // The refused write left nothing behind.
        assert!(!dir.path().join("other.key").exists());

        let node = ca
            .issue(
                &NodeId::new("node-a"),
                &["127.0.0.1".into(), "a.example".into()],
            )
            .unwrap();
        let (crt, key) = (dir.path().join("a.crt"), dir.path().join("a.key"));
        node.write(&crt, &key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&key), 0o600);
            assert_eq!(mode(&ca_key), 0o600);
            assert_eq!(mode(&crt), 0o644);
        }
        let before = fs::read(&key).unwrap();
        assert!(matches!(
            node.write(&crt, &key),
            Err(CertError::Exists { .. })
        ));
        assert_eq!(fs::read(&key).unwrap(), before);
        assert!(!format!("{node:?}{ca:?}").contains("PRIVATE"));
    }

    #[test]
    fn peer_ca_loaded_back_issues_chaining_certs() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate().unwrap();
        let (ca_crt, ca_key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
        ca.write(&ca_crt, &ca_key).unwrap();
        let loaded = ClusterCa::load(&ca_crt, &ca_key).unwrap();
        let id = NodeId::new("node-b");
        let node = loaded.issue(&id, &[]).unwrap();
        crate::tls::TlsMaterial::from_pem(ca.cert_pem(), &node.cert_pem, node.key_pem(), &id)
            .unwrap();
        assert!(matches!(
            loaded.issue(&id, &["not a name".into()]),
            Err(CertError::BadName { .. })
        ));
        // The id becomes the certificate's identity: it must pass the id rule first.
        for bad in ["", "node b", "node/b"] {
            assert!(
                loaded.issue(&NodeId::new(bad), &[]).is_err(),
                "issued for `{bad}`"
            );
        }

        // A CA certificate with a key that is not its own (or a CA made elsewhere) cannot
        // issue: the result would not chain, and we say so instead of writing it.
        let other = ClusterCa::generate().unwrap();
        let (o_crt, o_key) = (dir.path().join("o.crt"), dir.path().join("o.key"));
        other.write(&o_crt, &o_key).unwrap();
        let mismatched = ClusterCa::load(&ca_crt, &o_key).unwrap();
        let err = mismatched.issue(&id, &[]).unwrap_err();
        assert!(err.to_string().contains("does not verify"), "{err}");
    }
}
