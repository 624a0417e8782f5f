//! The peer transport end to end on 127.0.0.1: a real server, real clients, generated certs,
//! carrying `syncguard-failover`'s messages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use syncguard_failover::{
    HandedState, HandoverOutcome, MessageBody, NodeId, PeerMessage, PeerStatus, Role,
};
use syncguard_peer::certs::ClusterCa;
use syncguard_peer::message::{header, path};
use syncguard_peer::{
    check_handed_state, checked_id, AllowList, CallerEpoch, Envelope, Inbound, MessageError,
    PeerClient, PeerError, PeerId, PeerSecurity, PeerServer, SetupError, StateSnapshot, TlsError,
    TlsMaterial,
};
use syncguard_validator::{Hrs, SignState, Step};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

fn id(s: &str) -> NodeId {
    checked_id(s).unwrap()
}

fn material(ca: &ClusterCa, ca_pem: &str, node: &str) -> Arc<TlsMaterial> {
    let cert = ca.issue(&id(node), &["127.0.0.1".into()]).unwrap();
    Arc::new(TlsMaterial::from_pem(ca_pem, &cert.cert_pem, cert.key_pem(), &id(node)).unwrap())
}

fn mtls(ca: &ClusterCa, node: &str) -> PeerSecurity {
    PeerSecurity::MutualTls(material(ca, ca.cert_pem(), node))
}

/// What the daemon's handlers pass on: who asked with which epoch (the looks at the peer),
/// and every message queued for the machine, with the authenticated sender.
#[derive(Clone)]
struct Inbox {
    asks: mpsc::UnboundedSender<(String, u64)>,
    messages: mpsc::UnboundedSender<(String, Envelope<PeerMessage>)>,
}

/// A final state as the actuator reads it after a confirmed stop.
fn final_state(height: i64) -> HandedState {
    let hrs = Hrs::new(height, 0, Step::Precommit);
    let state = SignState::signed(hrs, vec![1, 2, 3], vec![0x0a, 0x0b]).unwrap();
    HandedState {
        hrs,
        raw: state.to_json(),
    }
}

/// The daemon's side, reduced: a public router and a peer router whose handlers report who
/// asked (the authenticated PeerId) and with which epoch, and queue posted messages.
fn routers(me: &str, inbox: Inbox) -> (Router, Router) {
    let public = Router::new().route("/health", get(|| async { "ok" }));
    let me = id(me);
    let status_me = me.clone();
    let state_me = me.clone();
    let peer = Router::new()
        .route(
            path::STATUS,
            get(
                move |State(inbox): State<Inbox>, peer: PeerId, CallerEpoch(epoch): CallerEpoch| {
                    let me = status_me.clone();
                    async move {
                        let _ = inbox.asks.send((peer.to_string(), epoch));
                        let status = PeerStatus {
                            node_id: me.clone(),
                            role: Role::Active,
                            paused: false,
                            epoch: 7,
                            healthy: true,
                            latest_height: Some(100),
                            is_primary_site: true,
                            last_state: Some(Hrs::new(99, 0, Step::Precommit)),
                            standby_right: false,
                            wants_role: false,
                            peer_lost: false,
                        };
                        Json(Envelope::new(me, 7, status).unwrap())
                    }
                },
            ),
        )
        .route(
            path::STATE,
            get(move |_peer: PeerId| {
                let me = state_me.clone();
                async move {
                    let state = SignState::unsigned(Hrs::new(99, 0, Step::Precommit)).unwrap();
                    Json(Envelope::new(me, 7, StateSnapshot { state }).unwrap())
                }
            }),
        )
        .route(
            path::MESSAGE,
            post(
                |State(inbox): State<Inbox>,
                 peer: PeerId,
                 Inbound(message): Inbound<PeerMessage>| async move {
                    // The daemon would feed `Event::Message(message.body)` to its machine.
                    let _ = inbox.messages.send((peer.to_string(), message));
                    StatusCode::ACCEPTED
                },
            ),
        )
        .with_state(inbox);
    (public, peer)
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    asks: mpsc::UnboundedReceiver<(String, u64)>,
    messages: mpsc::UnboundedReceiver<(String, Envelope<PeerMessage>)>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops")
            .unwrap();
    }
}

async fn start_with(
    server: impl FnOnce(Router, Router) -> PeerServer,
    me: &str,
    extra_public: Option<Router>,
) -> Running {
    let (asks_tx, asks) = mpsc::unbounded_channel();
    let (messages_tx, messages) = mpsc::unbounded_channel();
    let inbox = Inbox {
        asks: asks_tx,
        messages: messages_tx,
    };
    let (mut public, peer) = routers(me, inbox);
    if let Some(extra) = extra_public {
        public = public.merge(extra);
    }
    let server = server(public, peer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
        asks,
        messages,
    }
}

async fn start(security: &PeerSecurity, me: &str, allowed: &[&str]) -> Running {
    let allowed = AllowList::new(allowed.iter().map(|s| id(s)));
    start_with(
        |public, peer| PeerServer::new(security, allowed, public, peer).unwrap(),
        me,
        None,
    )
    .await
}

fn client(security: &PeerSecurity, me: &str, peer: &str, addr: SocketAddr) -> PeerClient {
    PeerClient::new(
        id(me),
        id(peer),
        &addr.to_string(),
        security,
        Duration::from_secs(5),
    )
    .unwrap()
}

/// A reqwest client over mutual TLS as `me`, expecting `peer`, for requests the
/// `PeerClient` would never send.
fn raw_tls(ca: &ClusterCa, me: &str, peer: &str) -> reqwest::Client {
    let PeerSecurity::MutualTls(m) = mtls(ca, me) else {
        unreachable!()
    };
    reqwest::Client::builder()
        .no_proxy()
        .use_preconfigured_tls(m.client_config(&id(peer)).unwrap())
        .build()
        .unwrap()
}

/// Captures this thread's log lines (the tests run on a current-thread runtime, so the
/// server's tasks log on this thread too).
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn plain() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn failover_peer_round_trip_over_mutual_tls() {
    let ca = ClusterCa::generate().unwrap();
    let mut a = start(&mtls(&ca, "node-a"), "node-a", &["node-b"]).await;
    let b_to_a = client(&mtls(&ca, "node-b"), "node-b", "node-a", a.addr);

    let status = b_to_a.status(6).await.unwrap();
    assert_eq!(status.from, id("node-a"));
    assert_eq!(status.epoch, 7);
    assert_eq!(status.body.node_id, id("node-a"));
    assert_eq!(status.body.role, Role::Active);
    assert_eq!(
        status.body.last_state,
        Some(Hrs::new(99, 0, Step::Precommit))
    );
    // The handler saw who asked, authenticated, and the asker's epoch.
    assert_eq!(a.asks.recv().await.unwrap(), ("node-b".into(), 6));

    let state = b_to_a.state(6).await.unwrap();
    assert_eq!(state.body.state.hrs(), Hrs::new(99, 0, Step::Precommit));

    // An invalid message of ours is never sent: its `from` is not us.
    let forged = PeerMessage {
        from: id("node-c"),
        epoch: 8,
        body: MessageBody::HandoverOffer { final_state: None },
    };
    let err = b_to_a.send(7, forged).await.unwrap_err();
    assert!(matches!(err, PeerError::NotSent { .. }), "{err}");
    assert!(err.certainly_not_processed());
    assert!(a.messages.try_recv().is_err());
    a.stop().await;
}

#[tokio::test]
async fn failover_peer_handover_offer_and_reply_travel_as_messages() {
    let ca = ClusterCa::generate().unwrap();
    let mut a = start(&mtls(&ca, "node-a"), "node-a", &["node-b"]).await;
    let mut b = start(&mtls(&ca, "node-b"), "node-b", &["node-a"]).await;
    let b_to_a = client(&mtls(&ca, "node-b"), "node-b", "node-a", a.addr);
    let a_to_b = client(&mtls(&ca, "node-a"), "node-a", "node-b", b.addr);

    // node-b, the old holder, stopped and offers epoch 8 with its final state.
    let offer = PeerMessage {
        from: id("node-b"),
        epoch: 8,
        body: MessageBody::HandoverOffer {
            final_state: Some(final_state(120)),
        },
    };
    b_to_a.send(7, offer.clone()).await.unwrap();
    let (sender, received) = a.messages.recv().await.unwrap();
    assert_eq!(sender, "node-b");
    assert_eq!(received.from, id("node-b"));
    assert_eq!(received.epoch, 7);
    assert_eq!(received.body, offer);
    let MessageBody::HandoverOffer {
        final_state: Some(handed),
    } = &received.body.body
    else {
        panic!("not an offer with a final state: {received:?}");
    };
    // What arrives is what the target's actuator will write: a valid state file, untouched.
    let parsed = check_handed_state(handed).unwrap();
    assert_eq!(parsed.hrs(), Hrs::new(120, 0, Step::Precommit));
    assert_eq!(parsed.signature(), Some(&[1u8, 2, 3][..]));
    assert_eq!(handed.raw, final_state(120).raw);
    let first_seq = received.seq;

    // The answer is not an HTTP response but node-a's own message, posted to node-b.
    let reply = PeerMessage {
        from: id("node-a"),
        epoch: 8,
        body: MessageBody::HandoverReply {
            outcome: HandoverOutcome::Started,
            reason: "signing at epoch 8".into(),
        },
    };
    a_to_b.send(8, reply.clone()).await.unwrap();
    let (sender, received) = b.messages.recv().await.unwrap();
    assert_eq!(sender, "node-a");
    assert_eq!(received.body, reply);

    // A duplicate is delivered again (the machine is idempotent by epoch; the transport
    // does not second-guess it), with a new seq.
    b_to_a.send(7, offer.clone()).await.unwrap();
    let (_, again) = a.messages.recv().await.unwrap();
    assert_eq!(again.body, offer);
    assert!(again.seq > first_seq);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn failover_peer_handed_state_with_priv_key_is_refused() {
    let ca = ClusterCa::generate().unwrap();
    let mut a = start(&mtls(&ca, "node-a"), "node-a", &["node-b"]).await;
    let b_to_a = client(&mtls(&ca, "node-b"), "node-b", "node-a", a.addr);

    let mut with_key: serde_json::Value = serde_json::from_str(&final_state(120).raw).unwrap();
    with_key["priv_key"] = json!({"type": "tendermint/PrivKeySecp256k1", "value": "AAAA"});
    let offer = PeerMessage {
        from: id("node-b"),
        epoch: 8,
        body: MessageBody::HandoverOffer {
            final_state: Some(HandedState {
                hrs: Hrs::new(120, 0, Step::Precommit),
                raw: with_key.to_string(),
            }),
        },
    };
    // Our client refuses to send it...
    let err = b_to_a.send(7, offer.clone()).await.unwrap_err();
    match &err {
        PeerError::NotSent {
            source: MessageError::KeyLikeField { field },
            ..
        } => assert_eq!(field, "priv_key"),
        other => panic!("expected NotSent(KeyLikeField), got {other}"),
    }
    assert!(err.certainly_not_processed());

    // ...and the server refuses it from anyone who bypasses the client.
    let raw = raw_tls(&ca, "node-b", "node-a");
    let url = format!("https://{}{}", a.addr, path::MESSAGE);
    let wire = json!({"from": "node-b", "epoch": 7, "seq": 1,
                      "body": serde_json::to_value(&offer).unwrap()});
    let resp = raw
        .post(&url)
        .header(header::NODE, "node-b")
        .json(&wire)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("`priv_key`") && error.contains("keys never travel"),
        "{error}"
    );

    // A peer cannot speak for another: a valid envelope naming node-c, over node-b's cert.
    let forged = json!({"from": "node-c", "epoch": 7, "seq": 2,
        "body": {"from": "node-c", "epoch": 8, "body": {"type": "role_request", "kind": "claim"}}});
    let resp = raw.post(&url).json(&forged).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("authenticated as `node-b`"),
        "{body}"
    );
    // Oversized bodies are refused before they are read.
    let resp = raw
        .post(&url)
        .body(vec![b' '; syncguard_peer::server::MAX_POST_BYTES + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // None of it reached the machine.
    assert!(a.messages.try_recv().is_err());
    a.stop().await;
}

#[tokio::test]
async fn failover_peer_client_cert_from_another_ca_is_refused() {
    let logs = Logs::default();
    let _guard = logs.install();
    let ca = ClusterCa::generate().unwrap();
    let rogue_ca = ClusterCa::generate().unwrap();
    let server = start(&mtls(&ca, "node-a"), "node-a", &["node-b"]).await;
    // The rogue client trusts the real CA (so it would accept the server) but its own
    // certificate, named like a real peer, comes from another CA.
    let both = format!("{}{}", ca.cert_pem(), rogue_ca.cert_pem());
    let rogue = PeerSecurity::MutualTls(material(&rogue_ca, &both, "node-b"));
    let err = client(&rogue, "node-b", "node-a", server.addr)
        .status(1)
        .await
        .unwrap_err();
    assert!(matches!(err, PeerError::Tls { .. }), "{err}");
    assert!(err.certainly_not_processed());
    server.stop().await;
    let logs = logs.text();
    assert!(
        logs.contains("refused peer connection from 127.0.0.1:")
            && logs.contains("TLS handshake failed"),
        "{logs}"
    );
}

#[tokio::test]
async fn failover_peer_valid_cert_not_on_allow_list_is_refused() {
    let logs = Logs::default();
    let _guard = logs.install();
    let ca = ClusterCa::generate().unwrap();
    let server = start(&mtls(&ca, "node-a"), "node-a", &["node-b"]).await;
    let c = mtls(&ca, "node-c");
    let err = client(&c, "node-c", "node-a", server.addr)
        .status(1)
        .await
        .unwrap_err();
    match &err {
        PeerError::Refused {
            status: 403,
            reason,
            ..
        } => {
            assert!(
                reason.contains(
                    "names [DNS:node-c, IP:127.0.0.1], none of the configured peers [node-b]"
                ),
                "{reason}"
            );
        }
        other => panic!("expected a 403 refusal, got {other}"),
    }
    // A listed peer cannot claim another id in the header either.
    let raw = raw_tls(&ca, "node-b", "node-a");
    let resp = raw
        .get(format!("https://{}{}", server.addr, path::STATUS))
        .header(header::NODE, "node-z")
        .header(header::EPOCH, "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    server.stop().await;
    let logs = logs.text();
    assert!(
        logs.contains("refused peer connection from 127.0.0.1:")
            && logs.contains(
                "names [DNS:node-c, IP:127.0.0.1], none of the configured peers [node-b]"
            ),
        "{logs}"
    );
    assert!(
        logs.contains("says `node-z` but the certificate is `node-b`"),
        "{logs}"
    );
}

#[tokio::test]
async fn failover_peer_server_with_wrong_identity_is_refused_by_client() {
    let ca = ClusterCa::generate().unwrap();
    // Whatever listens at node-a's address presents node-c's (valid) certificate.
    let server = start(&mtls(&ca, "node-c"), "node-c", &["node-b"]).await;
    let err = client(&mtls(&ca, "node-b"), "node-b", "node-a", server.addr)
        .status(1)
        .await
        .unwrap_err();
    match &err {
        PeerError::Tls { detail, .. } => assert!(
            detail.contains("does not name its configured id"),
            "{detail}"
        ),
        other => panic!("expected a TLS refusal, got {other}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn failover_peer_plain_http_on_same_port_serves_public_but_not_peer_routes() {
    let ca = ClusterCa::generate().unwrap();
    let server = start(&mtls(&ca, "node-a"), "node-a", &["node-b"]).await;
    let http = plain();
    let base = format!("http://{}", server.addr);
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.unwrap(), "ok");
    for p in [path::STATUS, path::STATE, "/peer", "/peer/anything"] {
        let resp = http
            .get(format!("{base}{p}"))
            .header(header::NODE, "node-b")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{p}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("mutual TLS"));
    }
    let resp = http
        .post(format!("{base}{}", path::MESSAGE))
        .header(header::NODE, "node-b")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // Path tricks land on the public router, which has no peer routes.
    let resp = http
        .get(format!("{base}//peer/status"))
        .send()
        .await
        .unwrap();
    assert!(resp.status() == StatusCode::NOT_FOUND || resp.status() == StatusCode::FORBIDDEN);
    // And the public API answers over TLS too.
    let tls = raw_tls(&ca, "node-b", "node-a");
    let resp = tls
        .get(format!("https://{}/health", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn failover_peer_insecure_mode_identifies_by_header() {
    let mut server = start(&PeerSecurity::Insecure, "node-a", &["node-b"]).await;
    let b = client(&PeerSecurity::Insecure, "node-b", "node-a", server.addr);
    let status = b.status(3).await.unwrap();
    assert_eq!(status.body.node_id, id("node-a"));
    assert_eq!(server.asks.recv().await.unwrap(), ("node-b".into(), 3));
    // Messages travel the same way, identified by the header.
    let claim = PeerMessage {
        from: id("node-b"),
        epoch: 4,
        body: MessageBody::RoleRequest {
            kind: syncguard_failover::RequestKind::Claim,
        },
    };
    b.send(3, claim.clone()).await.unwrap();
    let (sender, received) = server.messages.recv().await.unwrap();
    assert_eq!((sender.as_str(), &received.body), ("node-b", &claim));

    let http = plain();
    let url = format!("http://{}{}", server.addr, path::STATUS);
    let no_header = http.get(&url).send().await.unwrap();
    assert_eq!(no_header.status(), StatusCode::FORBIDDEN);
    let stranger = http
        .get(&url)
        .header(header::NODE, "node-z")
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), StatusCode::FORBIDDEN);
    let err = client(&PeerSecurity::Insecure, "node-z", "node-a", server.addr)
        .status(1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PeerError::Refused { status: 403, .. }),
        "{err}"
    );

    // A TLS client gets nowhere in insecure mode.
    let ca = ClusterCa::generate().unwrap();
    let err = client(&mtls(&ca, "node-b"), "node-b", "node-a", server.addr)
        .status(1)
        .await
        .unwrap_err();
    assert!(!matches!(err, PeerError::Refused { .. }), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn failover_peer_stalled_handshakes_do_not_block_others() {
    let ca = ClusterCa::generate().unwrap();
    let security = mtls(&ca, "node-a");
    let server_with = |timeout: Duration| {
        let security = security.clone();
        move |public, peer| {
            PeerServer::new(&security, AllowList::new([id("node-b")]), public, peer)
                .unwrap()
                .handshake_timeout(timeout)
        }
    };

    // 1. A handshake timeout far beyond the client's 5 s request timeout: if stalled
    //    connections held up the accept loop, the requests below would time out.
    let server = start_with(server_with(Duration::from_secs(600)), "node-a", None).await;
    // One sends nothing, one sends the start of a TLS record and stalls.
    let _silent = TcpStream::connect(server.addr).await.unwrap();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x00]).await.unwrap();
    let b = client(&mtls(&ca, "node-b"), "node-b", "node-a", server.addr);
    for _ in 0..3 {
        b.status(1).await.unwrap();
    }
    let health = plain()
        .get(format!("http://{}/health", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // Shutdown does not wait for them either.
    server.stop().await;

    // 2. With a short handshake timeout the server closes stalled connections itself.
    let server = start_with(server_with(Duration::from_millis(200)), "node-a", None).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x00]).await.unwrap();
    for stream in [&mut silent, &mut half] {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("server closes a stalled connection")
            .unwrap_or(0);
        assert_eq!(n, 0);
    }
    server.stop().await;
}

#[tokio::test]
async fn failover_peer_shutdown_drains_in_flight_requests() {
    let (entered_tx, mut entered) = mpsc::unbounded_channel::<()>();
    let (release_tx, release) = oneshot::channel::<()>();
    let release = Arc::new(Mutex::new(Some(release)));
    let slow = Router::new().route(
        "/slow",
        get(move || {
            let entered_tx = entered_tx.clone();
            let release = release.clone();
            async move {
                let _ = entered_tx.send(());
                if let Some(rx) = release.lock().await.take() {
                    let _ = rx.await;
                }
                "done"
            }
        }),
    );
    let allowed = AllowList::new([id("node-b")]);
    let mut server = start_with(
        |public, peer| PeerServer::new(&PeerSecurity::Insecure, allowed, public, peer).unwrap(),
        "node-a",
        Some(slow),
    )
    .await;
    let url = format!("http://{}/slow", server.addr);
    let request = tokio::spawn(async move { plain().get(url).send().await?.text().await });
    entered.recv().await.unwrap();
    let _ = server.stop.take().unwrap().send(());
    // The server is draining: it does not finish while the request is in flight.
    tokio::task::yield_now().await;
    assert!(!server.task.is_finished());
    release_tx.send(()).unwrap();
    assert_eq!(request.await.unwrap().unwrap(), "done");
    let addr = server.addr;
    server.stop().await;
    // And it no longer listens.
    assert!(TcpStream::connect(addr).await.is_err());
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn failover_peer_missing_or_garbage_pem_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = ClusterCa::generate().unwrap();
    let a = ca.issue(&id("node-a"), &[]).unwrap();
    let b = ca.issue(&id("node-b"), &[]).unwrap();
    let ca_path = write(d, "ca.crt", ca.cert_pem());
    let cert = write(d, "a.crt", &a.cert_pem);
    let key = write(d, "a.key", a.key_pem());
    let cfg = |ca: &std::path::Path, cert: &std::path::Path, key: &std::path::Path| {
        syncguard_config::TlsConfig {
            ca_cert: ca.into(),
            cert: cert.into(),
            key: key.into(),
        }
    };
    let load = |c: &syncguard_config::TlsConfig, who: &str| {
        TlsMaterial::load(c, &id(who))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };

    assert!(TlsMaterial::load(&cfg(&ca_path, &cert, &key), &id("node-a")).is_ok());

    let missing = d.join("nope.crt");
    let msg = load(&cfg(&missing, &cert, &key), "node-a");
    assert!(
        msg.contains("communication.tls.ca_cert")
            && msg.contains("nope.crt")
            && msg.contains("does not exist"),
        "{msg}"
    );

    let garbage = write(d, "garbage.pem", "this is not PEM\n");
    let msg = load(&cfg(&ca_path, &garbage, &key), "node-a");
    assert!(
        msg.contains("communication.tls.cert")
            && msg.contains("garbage.pem")
            && msg.contains("no certificate"),
        "{msg}"
    );
    let msg = load(&cfg(&ca_path, &cert, &garbage), "node-a");
    assert!(
        msg.contains("communication.tls.key")
            && msg.contains("garbage.pem")
            && msg.contains("no private key"),
        "{msg}"
    );
    let broken = write(
        d,
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let msg = load(&cfg(&broken, &cert, &key), "node-a");
    assert!(
        msg.contains("communication.tls.ca_cert") && msg.contains("broken.pem"),
        "{msg}"
    );
    let empty = write(d, "empty.pem", "");
    let msg = load(&cfg(&empty, &cert, &key), "node-a");
    assert!(
        msg.contains("communication.tls.ca_cert") && msg.contains("empty.pem"),
        "{msg}"
    );

    // Well-formed but wrong: another node's key, a certificate for another id, another CA.
    let other_key = write(d, "b.key", b.key_pem());
    let msg = load(&cfg(&ca_path, &cert, &other_key), "node-a");
    assert!(
        msg.contains("communication.tls.key") && msg.contains("does not belong"),
        "{msg}"
    );
    let msg = load(&cfg(&ca_path, &cert, &key), "node-b");
    assert!(
        msg.contains("communication.tls.cert") && msg.contains("DNS:node-b"),
        "{msg}"
    );
    let other_ca = write(d, "other-ca.crt", ClusterCa::generate().unwrap().cert_pem());
    let msg = load(&cfg(&other_ca, &cert, &key), "node-a");
    assert!(
        msg.contains("communication.tls.cert") && msg.contains("does not chain"),
        "{msg}"
    );

    // A directory where a file should be: unreadable, named.
    let msg = load(&cfg(d, &cert, &key), "node-a");
    assert!(
        msg.contains("communication.tls.ca_cert") && msg.contains("cannot read"),
        "{msg}"
    );
}

#[test]
fn failover_peer_security_from_config() {
    let mut config = syncguard_config::Config::default();
    config.server.id = "node-a".into();
    let err = PeerSecurity::from_config(&config).unwrap_err();
    assert!(
        matches!(err, SetupError::Tls(TlsError::NotConfigured)),
        "{err}"
    );
    config.communication.insecure = true;
    assert!(matches!(
        PeerSecurity::from_config(&config),
        Ok(PeerSecurity::Insecure)
    ));

    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::generate().unwrap();
    let (ca_crt, ca_key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
    ca.write(&ca_crt, &ca_key).unwrap();
    let (crt, key) = (dir.path().join("a.crt"), dir.path().join("a.key"));
    ca.issue(&id("node-a"), &[])
        .unwrap()
        .write(&crt, &key)
        .unwrap();
    config.communication.tls = Some(syncguard_config::TlsConfig {
        ca_cert: ca_crt,
        cert: crt,
        key,
    });
    // TLS wins over `insecure` when both are set.
    assert!(matches!(
        PeerSecurity::from_config(&config),
        Ok(PeerSecurity::MutualTls(_))
    ));

    config.communication.peers = vec![syncguard_config::PeerConfig {
        id: "node-b".into(),
        address: "127.0.0.1:1".into(),
    }];
    let security = PeerSecurity::from_config(&config).unwrap();
    let clients = PeerClient::from_config(&config, &security).unwrap();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].peer_id().as_str(), "node-b");
    config.communication.peers[0].address = "no-port".into();
    let err = PeerClient::from_config(&config, &security).unwrap_err();
    assert!(err.to_string().contains("address"), "{err}");
}

#[tokio::test]
async fn failover_peer_unreachable_peer_is_reported_as_such() {
    // A port that was just free: bind, note, close.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let err = client(&PeerSecurity::Insecure, "node-b", "node-a", addr)
        .status(1)
        .await
        .unwrap_err();
    assert!(matches!(err, PeerError::Unreachable { .. }), "{err}");
    assert!(err.certainly_not_processed());
}

#[tokio::test]
async fn failover_peer_silent_peer_times_out() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let c = PeerClient::new(
        id("node-b"),
        id("node-a"),
        &addr.to_string(),
        &PeerSecurity::Insecure,
        Duration::from_millis(200),
    )
    .unwrap();
    let err = c.status(1).await.unwrap_err();
    assert!(matches!(err, PeerError::Timeout { .. }), "{err}");
    assert!(!err.certainly_not_processed());
    hold.abort();
}

#[test]
fn failover_peer_malformed_ids_are_refused_at_setup() {
    // syncguard_failover::NodeId takes any text; the transport checks where ids come in.
    let bad = NodeId::new("node b");
    let addr = "127.0.0.1:1";
    let insecure = PeerSecurity::Insecure;
    let err = PeerClient::new(
        bad.clone(),
        id("node-a"),
        addr,
        &insecure,
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(err.to_string().contains("server.id"), "{err}");
    let err = PeerClient::new(
        id("node-b"),
        bad.clone(),
        addr,
        &insecure,
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(err.to_string().contains("communication.peers"), "{err}");

    let allowed = || AllowList::new([id("node-b"), bad.clone()]);
    let err = PeerServer::new(&insecure, allowed(), Router::new(), Router::new())
        .err()
        .expect("a malformed allowed id is refused");
    assert!(
        err.to_string().contains("communication.peers[1].id"),
        "{err}"
    );
    let ca = ClusterCa::generate().unwrap();
    let err = PeerServer::new(
        &mtls(&ca, "node-a"),
        allowed(),
        Router::new(),
        Router::new(),
    )
    .err()
    .expect("a malformed allowed id is refused");
    assert!(
        err.to_string().contains("communication.peers[1].id"),
        "{err}"
    );
    assert!(TlsMaterial::from_pem(ca.cert_pem(), "", "", &bad)
        .unwrap_err()
        .to_string()
        .contains("server.id"));
}

#[tokio::test]
async fn failover_peer_message_answer_other_than_202_is_not_delivery() {
    // A peer router that answers 200: whether its machine got the message is unknown.
    let peer = Router::new().route(path::MESSAGE, post(|| async { StatusCode::OK }));
    let server = PeerServer::new(
        &PeerSecurity::Insecure,
        AllowList::new([id("node-b")]),
        Router::new(),
        peer,
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let claim = PeerMessage {
        from: id("node-b"),
        epoch: 4,
        body: MessageBody::RoleRequest {
            kind: syncguard_failover::RequestKind::Claim,
        },
    };
    let err = client(&PeerSecurity::Insecure, "node-b", "node-a", addr)
        .send(3, claim)
        .await
        .unwrap_err();
    assert!(matches!(err, PeerError::BadAnswer { .. }), "{err}");
    assert!(!err.certainly_not_processed());
    let _ = stop.send(());
    task.await.unwrap();
}
