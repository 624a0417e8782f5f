//! Secrets never reach the log, even when a send fails with an error that names its URL.
//! Its own test binary: a thread-local subscriber in a binary with other tests running
//! can miss events (tracing caches each call site's interest process-wide).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::Router;
use syncguard_alerts::{spawn_with, Alert, AlertKind, AlertStats, Alerter, Sink, Tuning};

const TOKEN: &str = "123456:TOKEN-SECRET-abc";
const ROUTING: &str = "ROUTING-SECRET-xyz";

/// Counts requests and answers 500.
async fn failing_receiver() -> (String, Arc<Mutex<u32>>) {
    let hits = Arc::new(Mutex::new(0u32));
    let counted = Arc::clone(&hits);
    let app = Router::new().fallback(move || {
        let counted = Arc::clone(&counted);
        async move {
            *counted.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            StatusCode::INTERNAL_SERVER_ERROR
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), hits)
}

fn count(m: &std::collections::BTreeMap<String, u64>, k: &str) -> u64 {
    m.get(k).copied().unwrap_or(0)
}

async fn wait_stats(alerter: &Alerter, f: impl Fn(&AlertStats) -> bool) {
    let mut rx = alerter.watch_stats();
    let ok = matches!(
        tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|s| f(s))).await,
        Ok(Ok(_))
    );
    assert!(ok, "timed out; stats {:?}", alerter.stats());
}

#[tokio::test]
async fn alerts_http_secrets_never_reach_the_log() {
    let (base, hits) = failing_receiver().await;
    // A closed port: connection refused, an error that reqwest would print with its URL.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let sinks = vec![
        Sink::Telegram {
            api_url: base.clone(),
            bot_token: TOKEN.into(),
            chat_id: "1".into(),
        },
        Sink::Telegram {
            api_url: format!("http://{closed}"),
            bot_token: TOKEN.into(),
            chat_id: "1".into(),
        },
        Sink::PagerDuty {
            events_url: format!("http://{closed}/v2/enqueue"),
            routing_key: ROUTING.into(),
        },
    ];
    let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = {
        let logs = Arc::clone(&logs);
        move || LogBuf(Arc::clone(&logs))
    };
    let subscriber = tracing_subscriber::fmt()
        // Our crate only: hyper's own traces name hosts and ports (never paths or bodies),
        // and the daemon keeps hyper at warn.
        .with_env_filter("syncguard_alerts=trace")
        .with_ansi(false)
        .with_writer(writer)
        .finish();
    // Current-thread runtime: the alert task logs on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let alerter = spawn_with(
        sinks,
        Tuning {
            attempts: 2,
            backoff_base: Duration::from_millis(5),
            ..Tuning::default()
        },
        "node-a",
    )
    .expect("alerts start");
    alerter.notify(Alert::new(AlertKind::SelfFence, "node-a", "stopped"));
    wait_stats(&alerter, |s| {
        count(&s.failed, "telegram") == 2 && count(&s.failed, "pagerduty") == 1
    })
    .await;
    assert_eq!(*hits.lock().unwrap_or_else(|e| e.into_inner()), 2);
    let text = String::from_utf8_lossy(&logs.lock().unwrap_or_else(|e| e.into_inner())).to_string();
    assert!(text.contains("alert to telegram given up"), "{text}");
    assert!(text.contains("alert to pagerduty given up"), "{text}");
    assert!(
        text.contains("Connection refused"),
        "the cause is kept: {text}"
    );
    assert!(!text.contains("TOKEN-SECRET"), "{text}");
    assert!(!text.contains("ROUTING-SECRET"), "{text}");
    assert!(
        !text.contains(&closed.to_string()),
        "no URL in the log: {text}"
    );
}

struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
