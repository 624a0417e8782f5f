//! Hostile input against a running daemon (node-a, active, on a devnet, peers over mutual
//! TLS): oversized and deep bodies, garbage, missing or wrong credentials, certificates from
//! another CA, a peer speaking for someone else, replayed, too-old and stale-epoch messages,
//! key material in a message. Each gets its refusal — status code and reason — and the
//! cluster is unmoved afterwards: same roles, same epoch, no double sign.
//! The table in docs/SECURITY.md lists these inputs and answers.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{assert_no_double_sign, options, start, OrPanic, TOKEN};
use serde_json::{json, Value};
use syncguard_config::TlsConfig;
use syncguard_devnet::cluster::Cluster;
use syncguard_failover::NodeId;
use syncguard_peer::certs::ClusterCa;
use syncguard_peer::message::{header, path};
use syncguard_peer::TlsMaterial;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SETTLE: Duration = Duration::from_secs(30);

fn id(s: &str) -> NodeId {
    NodeId::new(s)
}

/// A mutual-TLS client as `me` using the certificate the cluster gave `me` (in `tls_dir`),
/// expecting the server to be `peer`.
fn tls_client_from(tls_dir: &Path, ca_pem: &Path, me: &str, peer: &str) -> reqwest::Client {
    let tls = TlsConfig {
        ca_cert: ca_pem.to_path_buf(),
        cert: tls_dir.join(format!("{me}.pem")),
        key: tls_dir.join(format!("{me}.key")),
    };
    let material = TlsMaterial::load(&tls, &id(me)).expect("cluster TLS material");
    // A fresh connection per request: the server closes connections it refused a request
    // on, and a reused one would fail as a broken pipe instead of showing the answer.
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .use_preconfigured_tls(material.client_config(&id(peer)).unwrap())
        .build()
        .unwrap()
}

/// A mutual-TLS client whose CA and certificate come from another cluster.
fn foreign_client(me: &str, peer: &str) -> reqwest::Client {
    let ca = ClusterCa::generate().unwrap();
    let cert = ca.issue(&id(me), &["127.0.0.1".into()]).unwrap();
    let material =
        TlsMaterial::from_pem(ca.cert_pem(), &cert.cert_pem, cert.key_pem(), &id(me)).unwrap();
    // A fresh connection per request: the server closes connections it refused a request
    // on, and a reused one would fail as a broken pipe instead of showing the answer.
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .use_preconfigured_tls(material.client_config(&id(peer)).unwrap())
        .build()
        .unwrap()
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Raw bytes to `addr`; (status code if any, answer text).
async fn raw(addr: SocketAddr, request: &[u8]) -> (Option<u16>, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok());
    (code, text)
}

async fn answer(resp: reqwest::Response) -> (u16, String) {
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap_or_default())
}

#[track_caller]
fn expect(what: &str, got: (u16, String), code: u16, says: &str) {
    println!("| {what} | {} | {} |", got.0, got.1.replace('|', "\\|"));
    assert_eq!(got.0, code, "{what}: {}", got.1);
    assert!(
        got.1.contains(says),
        "{what}: expected `{says}` in {}",
        got.1
    );
}

async fn hostile_public_api(c: &Cluster) {
    let port = c.daemon(0).or_panic().port;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let base = format!("http://{addr}");
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    // 1 MiB body on an admin route: refused before any handler runs.
    let big = vec![b'a'; 1024 * 1024];
    let r = http
        .post(format!("{base}/switchover"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await;
    match r {
        Ok(resp) => expect(
            "POST /switchover, 1 MiB body",
            answer(resp).await,
            413,
            "larger than 65536 bytes",
        ),
        // The server may answer and close before the client has sent everything.
        Err(e) => println!("| POST /switchover, 1 MiB body | connection closed | {e} |"),
    }
    // 10 000-deep JSON: a typed body fails on the first wrong type (422), long before
    // serde_json's recursion limit of 128 (which guards every untyped value: 400).
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let r = http
        .post(format!("{base}/switchover"))
        .header("content-type", "application/json")
        .bearer_auth(TOKEN)
        .body(deep.clone())
        .send()
        .await
        .unwrap();
    expect(
        "POST /switchover, 10 000-deep JSON",
        answer(r).await,
        422,
        "invalid type",
    );
    let r = http
        .post(format!("{base}/switchover"))
        .header("content-type", "application/json")
        .bearer_auth(TOKEN)
        .body(format!(r#"{{"to": {deep}}}"#))
        .send()
        .await
        .unwrap();
    expect(
        "POST /switchover, `to` 10 000 levels deep",
        answer(r).await,
        422,
        "invalid type",
    );
    // Not JSON.
    let r = http
        .post(format!("{base}/switchover"))
        .header("content-type", "application/json")
        .bearer_auth(TOKEN)
        .body("\u{0}\u{1}garbage")
        .send()
        .await
        .unwrap();
    let (code, text) = answer(r).await;
    println!("| POST /switchover, garbage body | {code} | {text} |");
    assert_eq!(code, 400, "{text}");
    // No credentials, wrong credentials.
    let r = http
        .post(format!("{base}/pause"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    expect(
        "POST /pause, no token",
        answer(r).await,
        401,
        "authentication required",
    );
    let r = http
        .post(format!("{base}/pause"))
        .bearer_auth("test-admin-token-0123456780")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    expect(
        "POST /pause, wrong token",
        answer(r).await,
        403,
        "admin token is wrong",
    );
    // The peer API over plain HTTP.
    let r = http
        .get(format!("{base}{}", path::STATUS))
        .header(header::NODE, "node-b")
        .header(header::EPOCH, "1")
        .send()
        .await
        .unwrap();
    expect(
        "GET /peer/status over plain HTTP, claiming node-b",
        answer(r).await,
        403,
        "requires mutual TLS",
    );
    // Not HTTP at all, and a header of 64 KiB.
    let (code, _) = raw(addr, b"\x00\x01\x02\x03garbage\r\n\r\n").await;
    println!("| raw garbage bytes | {code:?} | (closed) |");
    assert!(matches!(code, Some(400) | None), "{code:?}");
    let req = format!(
        "GET /status HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let (code, _) = raw(addr, req.as_bytes()).await;
    println!("| GET /status with a 64 KiB header | {code:?} | |");
    assert_eq!(code, Some(431));
    // A TLS ClientHello that never finishes is dropped after the handshake timeout; here
    // only that it does not disturb others (the timeout itself: crates/peer tests).
    let _stalled = {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        s
    };
    let r = http.get(format!("{base}/health")).send().await.unwrap();
    assert!(r.status().is_success() || r.status().as_u16() == 503);
}

async fn hostile_peer_api(c: &Cluster) {
    let port = c.daemon(0).or_panic().port;
    let base = format!("https://127.0.0.1:{port}");
    let host_b = c.devnet.host(1).unwrap();
    let host_a = c.devnet.host(0).unwrap();
    let tls_b = host_b.dir.join("tls");
    let tls_a = host_a.dir.join("tls");
    let as_b = tls_client_from(&tls_b, &tls_b.join("ca.pem"), "node-b", "node-a");
    let epoch = c.epoch(0).await.expect("epoch");

    // A certificate of another CA: the handshake fails, nothing is served.
    let r = foreign_client("node-b", "node-a")
        .get(format!("{base}{}", path::STATUS))
        .header(header::EPOCH, "1")
        .send()
        .await;
    println!(
        "| GET /peer/status, certificate from another CA | handshake refused | {} |",
        r.as_ref().err().map(|e| e.to_string()).unwrap_or_default()
    );
    assert!(r.is_err(), "a foreign certificate was served: {r:?}");

    // node-a's own certificate (cluster CA, but not a peer) on the peer API.
    let as_a = tls_client_from(&tls_a, &tls_a.join("ca.pem"), "node-a", "node-a");
    let r = as_a
        .get(format!("{base}{}", path::STATUS))
        .header(header::EPOCH, "1")
        .send()
        .await
        .unwrap();
    expect(
        "GET /peer/status with node-a's own certificate",
        answer(r).await,
        403,
        "not the peer API",
    );
    // The header names someone else than the certificate.
    let r = as_b
        .get(format!("{base}{}", path::STATUS))
        .header(header::NODE, "node-c")
        .header(header::EPOCH, "1")
        .send()
        .await
        .unwrap();
    expect(
        "GET /peer/status as node-b with header node-c",
        answer(r).await,
        403,
        "your certificate is `node-b`",
    );

    let post = |body: Value| {
        let as_b = as_b.clone();
        let url = format!("{base}{}", path::MESSAGE);
        async move {
            answer(
                as_b.post(url)
                    .header(header::NODE, "node-b")
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    // An envelope speaking for another node.
    let seq = now_us();
    let msg = |from: &str, epoch: u64, seq: u64, body: Value| {
        json!({"from": from, "epoch": epoch, "seq": seq,
               "body": {"from": from, "epoch": epoch, "body": body}})
    };
    let reply = json!({"type": "role_reply", "granted": false, "reason": "hostile test"});
    expect(
        "POST /peer/message from node-b claiming to be node-c",
        post(msg("node-c", epoch, seq, reply.clone())).await,
        403,
        "authenticated as `node-b`",
    );
    // A stale-epoch message: accepted for the machine (202), which judges and ignores it.
    let stale = msg(
        "node-b",
        0,
        seq + 1,
        json!({"type": "role_request", "kind": "claim"}),
    );
    expect(
        "POST /peer/message, claim at epoch 0 (stale)",
        post(stale.clone()).await,
        202,
        "",
    );
    // The same message again: a replay.
    expect(
        "POST /peer/message, the same envelope again",
        post(stale).await,
        409,
        "replayed message",
    );
    // Much older than the newest seen (2 minutes > the 60 s window).
    expect(
        "POST /peer/message, seq 2 minutes old",
        post(msg("node-b", epoch, seq - 120_000_000, reply.clone())).await,
        409,
        "too old",
    );
    // Key material in a handed state: refused while deserializing.
    let raw_state = json!({"height": "5", "round": 0, "step": 3,
                           "priv_key": {"type": "tendermint/PrivKeySecp256k1", "value": "AAAA"}})
    .to_string();
    let offer = json!({"type": "handover_offer",
                       "final_state": {"hrs": {"height": 5, "round": 0, "step": 3}, "raw": raw_state}});
    expect(
        "POST /peer/message, handover offer whose state carries priv_key",
        post(msg("node-b", epoch + 1, seq + 2, offer)).await,
        400,
        "keys never travel",
    );
    // A handed state that is 10 000 levels deep.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let offer = json!({"type": "handover_offer",
                       "final_state": {"hrs": {"height": 5, "round": 0, "step": 3}, "raw": deep}});
    let (code, text) = post(msg("node-b", epoch + 1, seq + 3, offer)).await;
    println!("| POST /peer/message, handed state 10 000 levels deep | {code} | {text} |");
    assert_eq!(code, 400, "{text}");
    // Bigger than the largest message.
    let huge = "x".repeat(300 * 1024);
    let body = msg(
        "node-b",
        epoch,
        seq + 4,
        json!({"type": "role_reply", "granted": false, "reason": huge}),
    );
    // The server answers 413 as soon as the limit is passed and may close the connection
    // while the rest is still being written: a broken pipe is the same refusal.
    let sent = as_b
        .post(format!("{base}{}", path::MESSAGE))
        .header(header::NODE, "node-b")
        .json(&body)
        .send()
        .await;
    match sent {
        Ok(r) => {
            let (code, text) = answer(r).await;
            println!("| POST /peer/message, 300 KiB body | {code} | {text} |");
            assert_eq!(code, 413, "{text}");
        }
        Err(e) => {
            assert!(e.is_request() && !e.is_connect(), "{e:?}");
            println!("| POST /peer/message, 300 KiB body | closed while sending | {e} |");
        }
    }
    // A reason longer than allowed.
    expect(
        "POST /peer/message, 3000-character reason",
        post(msg(
            "node-b",
            epoch,
            seq + 5,
            json!({"type": "role_reply", "granted": false, "reason": "r".repeat(3000)}),
        ))
        .await,
        400,
        "at most 2048",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_hostile_input_is_refused_and_moves_nothing() {
    let c = start(options()).await;
    c.wait_roles(["active", "passive"], SETTLE).await.or_panic();
    c.wait_signing_by(0, SETTLE).await.or_panic();
    let epochs = (c.epoch(0).await, c.epoch(1).await);
    println!("| input | status | answer |\n|---|---|---|");
    hostile_public_api(&c).await;
    hostile_peer_api(&c).await;
    // Give the machine time to act on anything that got through (it must not).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        c.role(0).await.as_deref(),
        Some("active"),
        "{}",
        c.describe().await
    );
    assert_eq!(
        c.role(1).await.as_deref(),
        Some("passive"),
        "{}",
        c.describe().await
    );
    assert_eq!((c.epoch(0).await, c.epoch(1).await), epochs);
    c.wait_signing_by(0, SETTLE).await.or_panic();
    assert_no_double_sign(&c).await;
}
