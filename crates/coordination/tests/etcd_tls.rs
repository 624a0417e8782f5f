//! The etcd backend over TLS with client certificates, against a real etcd member started
//! with `--client-cert-auth`: certificates from a cluster CA made with rcgen (the peer
//! crate's `certs`), the whole lock life cycle through it, and the clients etcd must refuse.
//! Skipped like `etcd_cluster.rs` when etcd cannot be had. Run:
//! `cargo test -p syncguard-coordination --features etcd --test etcd_tls`.

mod cases;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cases::{acquired, h};
use support::{Cluster, ServerTls};
use syncguard_config::{EtcdConfig, TlsConfig};
use syncguard_coordination::{CoordError, EtcdBackend, EtcdOptions, Handover, LockBackend};
use syncguard_failover::NodeId;
use syncguard_peer::certs::ClusterCa;

/// A CA written to `dir/<name>-ca.crt`, with the certificates it issued.
struct Pki {
    ca: ClusterCa,
    ca_cert: PathBuf,
    dir: PathBuf,
    name: &'static str,
}

impl Pki {
    fn new(dir: &Path, name: &'static str) -> Pki {
        let ca = ClusterCa::generate().expect("CA");
        let ca_cert = dir.join(format!("{name}-ca.crt"));
        ca.write_cert(&ca_cert).expect("write CA certificate");
        Pki {
            ca,
            ca_cert,
            dir: dir.to_path_buf(),
            name,
        }
    }

    /// A certificate for `id` (DNS name) and `extra` names, written; (cert, key) paths.
    fn issue(&self, id: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let cert = self.ca.issue(&NodeId::new(id), &extra).expect("issue");
        let (crt, key) = (
            self.dir.join(format!("{}-{id}.crt", self.name)),
            self.dir.join(format!("{}-{id}.key", self.name)),
        );
        cert.write(&crt, &key).expect("write certificate");
        (crt, key)
    }

    /// The client config of node `id`: trusts `server_ca`, presents a certificate from this
    /// CA.
    fn client(&self, id: &str, server_ca: &Path) -> TlsConfig {
        let (cert, key) = self.issue(id, &[]);
        TlsConfig {
            ca_cert: server_ca.to_path_buf(),
            cert,
            key,
        }
    }
}

fn config(endpoints: Vec<String>, tls: Option<TlsConfig>) -> EtcdConfig {
    EtcdConfig {
        endpoints,
        prefix: "/syncguard-tls".into(),
        lease_ttl: 5.0,
        safety_margin: 1.5,
        tls,
    }
}

async fn connect(cfg: &EtcdConfig) -> Result<EtcdBackend, CoordError> {
    EtcdBackend::connect(cfg, EtcdOptions::for_ttl(Duration::from_secs(5))).await
}

/// An etcd member that only lets in clients with a certificate from `pki`'s CA.
async fn tls_member(bin: &Path, pki: &Pki) -> Cluster {
    let (cert, key) = pki.issue("etcd-server", &["127.0.0.1", "localhost"]);
    let tls = ServerTls {
        ca: pki.ca_cert.clone(),
        cert,
        key,
    };
    Cluster::start_tls(bin, &tls).await
}

#[tokio::test]
async fn coordination_etcd_over_tls_with_client_certificates() {
    let bin = etcd_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let cluster = tls_member(&bin, &pki).await;
    let eps = cluster.endpoints();
    assert!(eps[0].starts_with("https://"), "{eps:?}");
    let a = connect(&config(
        eps.clone(),
        Some(pki.client("node-a", &pki.ca_cert)),
    ))
    .await
    .unwrap();
    let b = connect(&config(eps, Some(pki.client("node-b", &pki.ca_cert))))
        .await
        .unwrap();

    let la = acquired(a.acquire("node-a", 0).await.unwrap());
    a.renew(&la).await.unwrap();
    assert_eq!(a.put_watermark(&la, h(7)).await.unwrap().hrs, h(7));
    let v = b.view().await.unwrap();
    assert_eq!(v.holder, Some(la.holder()));
    assert_eq!(v.watermark.map(|w| w.hrs), Some(h(7)));
    assert!(a
        .hand_over(&la, "node-b", Some(h(8)), Duration::from_secs(2))
        .await
        .unwrap());
    let lb = acquired(b.acquire("node-b", 1).await.unwrap());
    assert_eq!(
        lb.handover,
        Some(Handover {
            from: "node-a".into(),
            to: "node-b".into(),
            from_epoch: la.epoch,
            final_state: Some(h(8)),
        })
    );
    b.renew(&lb).await.unwrap();
    b.release(&lb).await.unwrap();
    let v = a.view().await.unwrap();
    assert_eq!((v.holder, v.handover), (None, None));
    assert_eq!(v.watermark.map(|w| w.hrs), Some(h(8)));
}

#[tokio::test]
async fn coordination_etcd_over_tls_refuses_clients_without_a_valid_certificate() {
    let bin = etcd_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let other = Pki::new(dir.path(), "other");
    let cluster = tls_member(&bin, &pki).await;
    let eps = cluster.endpoints();
    let url = eps[0].clone();

    // A client certificate from another CA: etcd refuses it, and connect says which file.
    let stranger = other.client("node-x", &pki.ca_cert);
    let refused = |r: Result<EtcdBackend, CoordError>, who: &str| match r {
        Err(e @ CoordError::Config { .. }) => {
            eprintln!("{who}: {e}");
            e
        }
        Err(e) => panic!("{who}: not a config error: {e}"),
        Ok(_) => panic!("{who}: connected"),
    };
    let e = refused(
        connect(&config(eps.clone(), Some(stranger.clone()))).await,
        "client certificate from another CA",
    );
    let words = e.to_string();
    assert!(
        words.contains("coordination.etcd.tls.cert")
            && words.contains(&url)
            && words.contains(&stranger.cert.display().to_string())
            && words.contains("refused this node's client certificate"),
        "{words}"
    );
    // And etcd says why on its side (its log is written as it goes: a bounded poll).
    cases::poll_until(
        "etcd logs the refused certificate",
        Duration::from_secs(5),
        || {
            let tail = cluster.first_log_tail(40);
            async move {
                tail.contains("failed to verify client certificate")
                    .then_some(())
            }
        },
    )
    .await;

    // A client that does not trust the CA of etcd's certificate refuses etcd.
    let doubter = pki.client("node-y", &other.ca_cert);
    let e = refused(
        connect(&config(eps.clone(), Some(doubter.clone()))).await,
        "server certificate from an untrusted CA",
    );
    let words = e.to_string();
    assert!(
        words.contains("coordination.etcd.tls.ca_cert")
            && words.contains(&url)
            && words.contains("UnknownIssuer")
            && words.contains(&doubter.ca_cert.display().to_string()),
        "{words}"
    );

    // No certificate at all: an https endpoint without coordination.etcd.tls is refused at
    // connect, naming the key to set.
    match connect(&config(eps.clone(), None)).await {
        Err(CoordError::Config { key, reason }) => {
            assert_eq!(key, "coordination.etcd.tls");
            assert!(reason.contains(&url), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // And etcd itself lets no client in without one (trusting the right CA is not enough).
    let no_cert = etcd_client::ConnectOptions::new()
        .with_timeout(Duration::from_secs(2))
        .with_connect_timeout(Duration::from_secs(2))
        .with_tls(etcd_client::TlsOptions::new().ca_certificate(
            etcd_client::Certificate::from_pem(std::fs::read(&pki.ca_cert).unwrap()),
        ));
    let mut c = etcd_client::Client::connect([url.as_str()], Some(no_cert))
        .await
        .unwrap();
    let e = c.get("/syncguard-tls/leader", None).await.unwrap_err();
    eprintln!("no client certificate (raw etcd client): {e}");
    cases::poll_until(
        "etcd logs the client without a certificate",
        Duration::from_secs(5),
        || {
            let tail = cluster.first_log_tail(40);
            async move { tail.contains("didn't provide a certificate").then_some(()) }
        },
    )
    .await;

    // Nothing got through: the lock is still free for a proper client.
    let a = connect(&config(eps, Some(pki.client("node-a", &pki.ca_cert))))
        .await
        .unwrap();
    assert_eq!(a.view().await.unwrap().holder, None);
}
