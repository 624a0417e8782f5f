//! What one hostile client can cost the server: slow headers (slowloris), slow or huge
//! bodies, huge headers, deep JSON, garbage, too many connections, and remote callers when
//! the public API is local-only. Short limits, so nothing here waits long.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use syncguard_config::PublicAccess;
use syncguard_failover::{NodeId, PeerMessage};
use syncguard_peer::message::{header, path};
use syncguard_peer::server::MAX_POST_BYTES;
use syncguard_peer::{AllowList, Inbound, Limits, PeerSecurity, PeerServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

fn limits() -> Limits {
    Limits {
        max_body_bytes: 1024,
        header_timeout: Duration::from_millis(400),
        body_timeout: Duration::from_millis(400),
        max_connections: 64,
        public_access: PublicAccess::Any,
    }
}

struct Running {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start_on(bind: &str, limits: Limits, handshake: Duration) -> Running {
    let public = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/echo", post(|Json(v): Json<Value>| async move { Json(v) }));
    let peer = Router::new().route(
        path::MESSAGE,
        post(|Inbound(_env): Inbound<PeerMessage>| async { "queued" }),
    );
    let allowed = AllowList::new([NodeId::new("node-b")]);
    let server = PeerServer::new(&PeerSecurity::Insecure, allowed, public, peer)
        .unwrap()
        .limits(limits)
        .handshake_timeout(handshake);
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    Running { addr, _stop: stop }
}

async fn start(limits: Limits) -> Running {
    start_on("127.0.0.1:0", limits, Duration::from_secs(5)).await
}

/// Sends raw bytes, reads until the server closes (bounded): (status code if any, text).
async fn raw(addr: SocketAddr, request: &[u8]) -> (Option<u16>, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    read_to_close(&mut s, Duration::from_secs(5)).await
}

async fn read_to_close(s: &mut TcpStream, bound: Duration) -> (Option<u16>, String) {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(bound, s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok());
    (code, text)
}

fn deep_json(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test]
async fn failover_peer_slowloris_one_header_byte_at_a_time_is_cut_off() {
    let srv = start(limits()).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let began = Instant::now();
    let request =
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut = false;
    for b in request {
        if s.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        // Between bytes: has the server hung up?
        let mut one = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut one)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(_)) => {
                // An error answer (408) before the close is fine too.
                cut = true;
                break;
            }
            Err(_) => {}
        }
    }
    let took = began.elapsed();
    assert!(cut, "the trickling client was never cut off");
    assert!(
        took < Duration::from_millis(1500),
        "cut after {took:?}, header timeout is 400 ms"
    );
    assert!(
        took >= Duration::from_millis(350),
        "cut too early: {took:?}"
    );
    // Others are served all along.
    assert_eq!(
        raw(
            srv.addr,
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .await
        .0,
        Some(200)
    );
}

#[tokio::test]
async fn failover_peer_idle_keep_alive_connection_is_closed() {
    let srv = start(limits()).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let began = Instant::now();
    let (_, rest) = read_to_close(&mut s, Duration::from_secs(5)).await;
    let took = began.elapsed();
    assert!(
        took < Duration::from_millis(2000),
        "idle connection still open after {took:?} ({rest})"
    );
}

#[tokio::test]
async fn failover_peer_oversized_bodies_get_413_declared_or_chunked() {
    let srv = start(limits()).await;
    // Declared too large: refused before reading.
    let (code, text) = raw(
        srv.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, Some(413), "{text}");
    assert!(text.contains("larger than 1024 bytes"), "{text}");

    // Chunked, no length: cut at the limit.
    let chunk = format!("{:x}\r\n{}\r\n", 2000, "a".repeat(2000));
    let req = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk}0\r\n\r\n"
    );
    let (code, text) = raw(srv.addr, req.as_bytes()).await;
    assert_eq!(code, Some(413), "{text}");

    // The peer API's own bound (its largest message), even in a body the public limit
    // would also refuse.
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\n{}: node-b\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        path::MESSAGE,
        header::NODE,
        MAX_POST_BYTES + 1
    );
    let (code, text) = raw(srv.addr, req.as_bytes()).await;
    assert_eq!(code, Some(413), "{text}");
    assert!(
        text.contains(&format!("larger than {MAX_POST_BYTES}")),
        "{text}"
    );

    // A body within the limit still works.
    let (code, text) = raw(
        srv.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 7\r\nConnection: close\r\n\r\n{\"a\":1}",
    )
    .await;
    assert_eq!(code, Some(200), "{text}");
}

#[tokio::test]
async fn failover_peer_slow_body_gets_408() {
    let srv = start(limits()).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":")
        .await
        .unwrap();
    let began = Instant::now();
    let (code, text) = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert_eq!(code, Some(408), "{text}");
    assert!(began.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn failover_peer_huge_headers_get_431() {
    let srv = start(limits()).await;
    let req = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let (code, text) = raw(srv.addr, req.as_bytes()).await;
    assert_eq!(code, Some(431), "{}", text.get(..200).unwrap_or(&text));
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!("GET /health HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let (code, _) = raw(srv.addr, req.as_bytes()).await;
    assert_eq!(code, Some(431));
}

#[tokio::test]
async fn failover_peer_deep_json_and_garbage_are_refused_cleanly() {
    let srv = start(Limits {
        max_body_bytes: 64 * 1024,
        ..limits()
    })
    .await;
    // 10 000 levels: serde_json stops at 128 and says so; no stack overflow.
    let deep = deep_json(10_000);
    // In an unknown field: ignored fields are skipped, and skipping recurses too.
    let envelope = format!(r#"{{"from":"node-b","extra":{deep},"epoch":1,"seq":1}}"#);
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\n{}: node-b\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{envelope}",
        path::MESSAGE,
        header::NODE,
        envelope.len()
    );
    let (code, text) = raw(srv.addr, req.as_bytes()).await;
    // serde_json skips an ignored value without recursing: refused for what is missing.
    assert_eq!(code, Some(400), "{}", text.get(..300).unwrap_or(&text));
    assert!(text.contains("missing field `body`"), "{text}");
    // Where a JSON value is built (the public API's bodies, a sign state, a handed state's
    // text), serde_json stops at 128 levels.
    let err = syncguard_validator::SignState::from_json(deep.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("recursion limit"), "{err}");
    let req = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{deep}",
        deep.len()
    );
    let (code, text) = raw(srv.addr, req.as_bytes()).await;
    assert_eq!(code, Some(400), "{}", text.get(..300).unwrap_or(&text));
    assert!(text.contains("recursion limit exceeded"), "{text}");

    // Not HTTP at all.
    let (code, _) = raw(srv.addr, b"\x00\x01\x02garbage\r\n\r\n").await;
    assert!(matches!(code, Some(400) | None), "{code:?}");
    // A TLS-looking first byte in insecure mode: closed, nothing else.
    let (code, _) = raw(srv.addr, b"\x16\x03\x01\x00\x05hello").await;
    assert_eq!(code, None);
    // The server is still there.
    let (code, _) = raw(
        srv.addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, Some(200));
}

#[tokio::test]
async fn failover_peer_connections_beyond_the_limit_are_closed_at_once() {
    let srv = start_on(
        "127.0.0.1:0",
        Limits {
            max_connections: 4,
            ..limits()
        },
        Duration::from_secs(10),
    )
    .await;
    // Four silent clients hold every slot (the handshake timeout is long here).
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(srv.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let began = Instant::now();
    let (code, _) = raw(
        srv.addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, None, "a fifth connection must be closed, not served");
    assert!(began.elapsed() < Duration::from_secs(2));
    // A slot freed is a slot usable again.
    held.pop();
    let mut served = false;
    for _ in 0..50 {
        let (code, _) = raw(
            srv.addr,
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        if code == Some(200) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "a freed slot was never reused");
}

/// This host's address on its default route, if it has one that is not loopback.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn failover_peer_public_access_local_refuses_remote_plain_callers() {
    let srv = start_on(
        "0.0.0.0:0",
        Limits {
            public_access: PublicAccess::Local,
            ..limits()
        },
        Duration::from_secs(5),
    )
    .await;
    let port = srv.addr.port();
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (code, _) = raw(SocketAddr::from(([127, 0, 0, 1], port)), request).await;
    assert_eq!(code, Some(200), "loopback is served");
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback address on this host: remote refusal not exercised");
        return;
    };
    let (code, text) = raw(SocketAddr::new(ip, port), request).await;
    assert_eq!(code, Some(403), "{text}");
    assert!(text.contains("server.public_access: local"), "{text}");

    // `any` (the default) keeps serving everyone.
    let open = start_on("0.0.0.0:0", limits(), Duration::from_secs(5)).await;
    let (code, _) = raw(SocketAddr::new(ip, open.addr.port()), request).await;
    assert_eq!(code, Some(200));
}

#[test]
fn failover_peer_limits_come_from_the_config() {
    let loaded = syncguard_config::from_yaml_str(
        "server:\n  id: a\n  public_access: local\n  max_body_bytes: 2048\n  header_timeout: 3\n  body_timeout: 4\n  max_connections: 9\n",
        "t",
    )
    .unwrap();
    let l = Limits::from_config(&loaded.config.server);
    assert_eq!(
        l,
        Limits {
            max_body_bytes: 2048,
            header_timeout: Duration::from_secs(3),
            body_timeout: Duration::from_secs(4),
            max_connections: 9,
            public_access: PublicAccess::Local,
        }
    );
    let d = Limits::default();
    assert_eq!(
        (
            d.max_body_bytes,
            d.header_timeout,
            d.max_connections,
            d.public_access
        ),
        (64 * 1024, Duration::from_secs(10), 256, PublicAccess::Any)
    );
    for bad in [
        "server:\n  id: a\n  max_body_bytes: 10\n",
        "server:\n  id: a\n  max_connections: 1\n",
        "server:\n  id: a\n  header_timeout: 0\n",
        "server:\n  id: a\n  public_access: nobody\n",
    ] {
        assert!(
            syncguard_config::from_yaml_str(bad, "t").is_err(),
            "{bad} must be refused"
        );
    }
    let _ = json!(null);
}
