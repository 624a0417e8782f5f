//! S5, keys never travel and are never printed: a two-daemon devnet scenario with debug
//! logging everywhere (`RUST_LOG=debug`, `logging.level: debug`) — start, a planned
//! switchover, a crash of the active host and the failover — then every byte the daemons
//! showed to the world is searched for every private key on the hosts (the validator key
//! and both placeholder keys) as raw bytes, base64 (standard, unpadded, URL-safe), and hex
//! in lower and upper case, whole and by halves.
//!
//! Searched: both daemons' stderr and file logs; `/`, `/status`, `/health`, `/events`,
//! `/validator_state`, `/switchover` and `/metrics` of both daemons (node-a's before its
//! host dies), and every alert both daemons sent to a webhook receiver.

mod common;

use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::{assert_no_double_sign, options, start, OrPanic};
use serde_json::{json, Value};
use syncguard_devnet::cluster::Cluster;

const SETTLE: Duration = Duration::from_secs(30);
const FAILOVER: Duration = Duration::from_secs(60);

/// Every way a private key could show up in text or bytes.
struct Needles {
    /// (what, bytes)
    all: Vec<(String, Vec<u8>)>,
}

impl Needles {
    fn from_key_files(files: &[(&str, &Path)]) -> Self {
        let mut all = Vec::new();
        for (name, path) in files {
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            let v: Value = serde_json::from_str(&text).unwrap();
            let b64 = v["priv_key"]["value"].as_str().expect("priv_key.value");
            let raw = STANDARD.decode(b64).expect("base64 private key");
            assert!(raw.len() >= 32, "{name}: {} bytes", raw.len());
            let mut forms = |what: &str, bytes: &[u8]| {
                all.push((format!("{name} {what} raw"), bytes.to_vec()));
                all.push((
                    format!("{name} {what} hex"),
                    hex::encode(bytes).into_bytes(),
                ));
                all.push((
                    format!("{name} {what} HEX"),
                    hex::encode_upper(bytes).into_bytes(),
                ));
                for (enc, s) in [
                    ("base64", STANDARD.encode(bytes)),
                    ("base64 unpadded", STANDARD_NO_PAD.encode(bytes)),
                    ("base64url", URL_SAFE.encode(bytes)),
                    ("base64url unpadded", URL_SAFE_NO_PAD.encode(bytes)),
                ] {
                    all.push((format!("{name} {what} {enc}"), s.into_bytes()));
                }
            };
            forms("whole", &raw);
            forms("first half", &raw[..raw.len() / 2]);
            forms("second half", &raw[raw.len() / 2..]);
            all.push((format!("{name} as in the file"), b64.as_bytes().to_vec()));
        }
        Needles { all }
    }

    /// The needles found in `hay`.
    fn found_in(&self, hay: &[u8]) -> Vec<&str> {
        self.all
            .iter()
            .filter(|(_, n)| hay.windows(n.len()).any(|w| w == n.as_slice()))
            .map(|(what, _)| what.as_str())
            .collect()
    }
}

/// What daemon `i` shows over HTTP: (what, body).
async fn http_surface(c: &Cluster, i: usize) -> Vec<(String, Vec<u8>)> {
    let port = c.daemon(i).or_panic().port;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut out = Vec::new();
    for route in [
        "/",
        "/status",
        "/health",
        "/events",
        "/validator_state",
        "/switchover",
        "/metrics",
    ] {
        let url = format!("http://127.0.0.1:{port}{route}");
        let body = match http.get(&url).send().await {
            Ok(r) => r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
            Err(e) => format!("unreachable: {e}").into_bytes(),
        };
        out.push((format!("node {i} GET {route}"), body));
    }
    out
}

/// A webhook receiver keeping every body it gets.
async fn alert_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    use std::sync::{Arc, Mutex};
    let got: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/alert",
        axum::routing::post(move |body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(body.to_vec());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alert", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_no_private_key_byte_in_logs_api_metrics_or_alerts() {
    let mut opts = options();
    opts.log_filter = "debug".into();
    opts.log_level = "debug".into();
    let (webhook, alerts) = alert_receiver().await;
    opts.alert_webhook = Some(webhook);
    let mut c = start(opts).await;

    let hosts: Vec<_> = (0..2).map(|i| c.devnet.host(i).unwrap().clone()).collect();
    let needles = Needles::from_key_files(&[
        ("validator key (node-a store)", hosts[0].key_store.as_path()),
        ("validator key (node-b store)", hosts[1].key_store.as_path()),
        ("placeholder node-a", hosts[0].placeholder_key.as_path()),
        ("placeholder node-b", hosts[1].placeholder_key.as_path()),
    ]);
    // The search can fail: it finds the key in the key file itself.
    let own = std::fs::read(&hosts[0].key_store).unwrap();
    assert!(!needles.found_in(&own).is_empty());

    c.wait_roles(["active", "passive"], SETTLE).await.or_panic();
    c.wait_signing_by(0, SETTLE).await.or_panic();
    let mut surface = Vec::new();

    // A planned switchover to node-b and back: keys are installed and removed twice.
    for (from, to, to_id) in [(0usize, 1usize, "node-b"), (1, 0, "node-a")] {
        let (code, body) = c
            .post(
                from,
                "/switchover",
                c.admin_token(),
                &json!({"to": to_id, "dry_run": false}),
            )
            .await
            .or_panic();
        assert_eq!(code, 200, "switchover to {to_id}: {body}");
        surface.push((
            format!("POST /switchover to {to_id}"),
            body.to_string().into_bytes(),
        ));
        let mut want = ["passive", "passive"];
        want[to] = "active";
        c.wait_roles(want, SETTLE).await.or_panic();
        c.wait_signing_by(to, SETTLE).await.or_panic();
    }
    surface.extend(http_surface(&c, 0).await);

    // Unplanned: node-a's host dies; node-b fails over.
    c.kill_daemon(0).or_panic();
    c.devnet.kill_node(0).await.expect("kill node a");
    c.wait_until("node-b active", FAILOVER, || async {
        c.role(1).await.as_deref() == Some("active")
    })
    .await
    .or_panic();
    c.wait_signing_by(1, SETTLE).await.or_panic();
    surface.extend(http_surface(&c, 1).await);
    // The alerts both daemons sent. node-b's failover must be among them (the pipeline
    // works end to end), with its shape.
    let got = c
        .wait_until("node-b's failover alert", SETTLE, || async {
            alerts
                .lock()
                .unwrap()
                .iter()
                .any(|b| String::from_utf8_lossy(b).contains("\"failover_completed\""))
        })
        .await;
    let bodies = alerts.lock().unwrap().clone();
    got.unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}",
            bodies
                .iter()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .collect::<Vec<_>>()
        )
    });
    let failover: Value = bodies
        .iter()
        .filter_map(|b| serde_json::from_slice::<Value>(b).ok())
        .find(|v| v["kind"] == "failover_completed")
        .expect("a failover_completed alert");
    assert_eq!(failover["node_id"], "node-b", "{failover}");
    assert_eq!(failover["severity"], "warning", "{failover}");
    println!("alerts received: {}", bodies.len());
    for (n, body) in bodies.into_iter().enumerate() {
        surface.push((format!("alert #{n}"), body));
    }

    // The logs, with debug lines in them (else this proves little).
    let mut debug_lines = 0;
    for (i, host) in hosts.iter().enumerate() {
        for log in [
            c.daemon(i).or_panic().log.clone(),
            host.dir.join("syncguard.log"),
        ] {
            let bytes = std::fs::read(&log).unwrap_or_default();
            debug_lines += String::from_utf8_lossy(&bytes)
                .lines()
                .filter(|l| l.contains("DEBUG") || l.contains("\"level\":\"debug\""))
                .count();
            surface.push((format!("log {}", log.display()), bytes));
        }
    }
    assert!(
        debug_lines > 0,
        "no debug line logged: the scenario proves nothing"
    );

    let mut leaks = Vec::new();
    for (what, bytes) in &surface {
        assert!(!bytes.is_empty() || what.contains("log"), "{what} is empty");
        for needle in needles.found_in(bytes) {
            leaks.push(format!("{needle} in {what}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "private key material leaked:\n{}",
        leaks.join("\n")
    );
    println!(
        "searched {} sources ({} bytes, {debug_lines} debug lines) for {} key encodings: none found",
        surface.len(),
        surface.iter().map(|(_, b)| b.len()).sum::<usize>(),
        needles.all.len()
    );
    assert_no_double_sign(&c).await;
}
