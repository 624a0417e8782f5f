//! Health rounds against a mock Story node over real HTTP, judged by the pure verdict with a
//! simulated clock.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::*;
use serde_json::json;
use syncguard_health::{
    evaluate, names, CheckStatus, HealthParams, HealthReport, HealthState, NodeProbe, ProbeError,
    ProbeErrorKind, StateSyncSeen, Verdict,
};

const TIMEOUT: Duration = Duration::from_secs(3);

fn probe(node: &MockNode, timeout: Duration) -> NodeProbe {
    NodeProbe::new(&node.comet_url(), &node.evm_url(), timeout)
        .unwrap()
        .with_state_dir(env!("CARGO_MANIFEST_DIR"))
}

fn status_of(report: &HealthReport, name: &str) -> CheckStatus {
    report
        .check(name)
        .unwrap_or_else(|| panic!("no check {name}"))
        .status
}

/// Runs rounds every 5 simulated seconds; `tick(i, now)` sets the mock before round i.
struct Rounds {
    probe: NodeProbe,
    params: HealthParams,
    state: HealthState,
    now: SystemTime,
}

impl Rounds {
    fn new(probe: NodeProbe) -> Self {
        Rounds {
            probe,
            params: params(),
            state: HealthState::new(),
            now: t0(),
        }
    }

    async fn round(&mut self) -> HealthReport {
        self.now += secs(5);
        let obs = self.probe.observe(StateSyncSeen::NotExpected).await;
        let (state, report) = evaluate(&self.params, self.state.clone(), &obs, self.now);
        self.state = state;
        report
    }

    /// Good rounds with growing heads until healthy; returns the last height.
    async fn make_healthy(&mut self, node: &MockNode) -> u64 {
        let mut height = 100;
        for _ in 0..self.params.recovery_rounds {
            height += 1;
            node.set_heads(height, self.now + secs(5));
            let r = self.round().await;
            assert!(!r.round_failed, "{}", r.summary);
        }
        assert!(self.state.is_healthy(), "{:?}", self.state);
        height
    }
}

#[tokio::test]
async fn story_good_rounds_make_a_started_node_healthy() {
    let node = MockNode::start().await;
    let mut rounds = Rounds::new(probe(&node, TIMEOUT));
    node.set_heads(101, rounds.now + secs(5));
    let r = rounds.round().await;
    assert_eq!(r.verdict, Verdict::Starting, "{}", r.summary);
    assert!(!r.healthy);
    assert_eq!(status_of(&r, names::COMET_HEIGHT), CheckStatus::Unknown);
    assert_eq!(status_of(&r, names::DISK_FREE), CheckStatus::Ok);
    assert_eq!(status_of(&r, names::STATE_SYNC_LAG), CheckStatus::Unknown);
    node.set_heads(102, rounds.now + secs(5));
    let r = rounds.round().await;
    assert_eq!(r.verdict, Verdict::Healthy, "{}", r.summary);
    for c in &r.checks {
        assert!(
            matches!(c.status, CheckStatus::Ok | CheckStatus::Unknown),
            "{c:?}"
        );
    }
    assert_eq!(status_of(&r, names::COMET_HEIGHT), CheckStatus::Ok);
    assert_eq!(status_of(&r, names::EVM_HEIGHT), CheckStatus::Ok);
    // One request per endpoint per round.
    let hits = node.hits();
    for key in [
        "comet:status",
        "comet:net_info",
        "evm:eth_blockNumber",
        "evm:eth_syncing",
        "evm:net_peerCount",
        "evm:eth_getBlockByNumber",
    ] {
        assert_eq!(hits.get(key), Some(&2), "{key}: {hits:?}");
    }
    assert_eq!(hits.len(), 6, "{hits:?}");
}

#[tokio::test]
async fn story_stalled_height_turns_unhealthy_after_retry_attempts() {
    let node = MockNode::start().await;
    let mut rounds = Rounds::new(probe(&node, TIMEOUT));
    let stalled_at = rounds.make_healthy(&node).await;
    // CometBFT stops at `stalled_at` (block time t-1 s at the last growth); the EVM keeps
    // going so only CometBFT is to blame.
    let mut evm_height = stalled_at;
    let mut reports = Vec::new();
    for _ in 0..12 {
        evm_height += 1;
        node.set_evm_head(evm_height, rounds.now + secs(4));
        let r = rounds.round().await;
        assert_eq!(status_of(&r, names::EVM_HEIGHT), CheckStatus::Ok);
        let done = !r.healthy;
        reports.push(r);
        if done {
            break;
        }
    }
    // Stall bound 15 s, rounds every 5 s after the last growth:
    // +5 s: unchanged 5 s (ok), block 6 s old (ok)
    // +10 s: unchanged 10 s (warn: over half the bound), block 11 s old (ok)
    // +15 s: unchanged 15 s (warn), block 16 s old -> FAIL (1st failed round)
    // +20 s: unchanged 20 s -> FAIL as well (2nd)
    // +25 s: 3rd failed round = retry_attempts -> unhealthy.
    let status = |i: usize, name: &str| status_of(&reports[i], name);
    assert_eq!(status(0, names::COMET_HEIGHT), CheckStatus::Ok);
    assert_eq!(status(1, names::COMET_HEIGHT), CheckStatus::Warn);
    assert!(!reports[1].round_failed, "a warning does not fail a round");
    assert_eq!(status(2, names::COMET_BLOCK_TIME), CheckStatus::Fail);
    assert_eq!(status(2, names::COMET_HEIGHT), CheckStatus::Warn);
    assert_eq!(status(3, names::COMET_HEIGHT), CheckStatus::Fail);
    let growth = reports[3].check(names::COMET_HEIGHT).unwrap();
    assert!(growth.reason.contains("no new block for 20s"), "{growth:?}");
    assert_eq!(
        growth.observed,
        format!("height {stalled_at}, unchanged for 20s")
    );
    let first_failed = reports.iter().position(|r| r.round_failed).unwrap();
    assert_eq!(first_failed, 2);
    for r in &reports[first_failed..reports.len() - 1] {
        assert!(r.healthy);
        assert_eq!(r.verdict, Verdict::Suspect, "{}", r.summary);
    }
    let last = reports.last().unwrap();
    assert_eq!(
        reports.len() - 1,
        first_failed + rounds.params.retry_attempts as usize - 1
    );
    assert!(!last.healthy);
    assert_eq!(last.verdict, Verdict::Unhealthy);
    assert_eq!(last.consecutive_failures, rounds.params.retry_attempts);
    assert!(
        last.summary.contains(names::COMET_HEIGHT),
        "{}",
        last.summary
    );
}

#[tokio::test]
async fn story_catching_up_fails_rounds() {
    let node = MockNode::start().await;
    let mut rounds = Rounds::new(probe(&node, TIMEOUT));
    let mut h = rounds.make_healthy(&node).await;
    for i in 0..3 {
        h += 1;
        node.set_heads(h, rounds.now + secs(5));
        node.edit_status(|v| v["sync_info"]["catching_up"] = json!(true));
        let r = rounds.round().await;
        let c = r.check(names::COMET_CATCHING_UP).unwrap();
        assert_eq!(c.status, CheckStatus::Fail);
        assert_eq!(c.observed, "catching_up: true");
        assert_eq!(r.healthy, i < 2, "round {i}: {}", r.summary);
    }
}

#[tokio::test]
async fn story_too_few_peers_fails_rounds() {
    let node = MockNode::start().await;
    let mut rounds = Rounds::new(probe(&node, TIMEOUT));
    let h = rounds.make_healthy(&node).await;
    node.set_peers(0);
    node.set_heads(h + 1, rounds.now + secs(5));
    let r = rounds.round().await;
    let c = r.check(names::COMET_PEERS).unwrap();
    assert_eq!(c.status, CheckStatus::Fail);
    assert_eq!(c.observed, "0 peers");
    assert_eq!(c.threshold, "n_peers >= 1");
    assert_eq!(r.verdict, Verdict::Suspect);
}

#[tokio::test]
async fn story_hanging_endpoint_times_out_within_the_round() {
    let node = MockNode::start().await;
    let timeout = Duration::from_millis(300);
    let probe = probe(&node, timeout);
    node.set_heads(101, t0());
    node.set_comet("status", Reply::Hang);
    node.set_evm("eth_syncing", Reply::Hang);
    let started = Instant::now();
    let obs = probe.observe(StateSyncSeen::NotExpected).await;
    let took = started.elapsed();
    assert!(
        took < timeout * 5,
        "round took {took:?} with a {timeout:?} timeout"
    );
    assert!(took >= timeout, "the hang was awaited ({took:?})");
    match &obs.status {
        Err(e @ ProbeError::Timeout { method, .. }) => {
            assert_eq!(method, "status");
            assert!(
                e.to_string().contains("no complete answer within 300ms"),
                "{e}"
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(
        evm(&obs).syncing.as_ref().unwrap_err().kind(),
        ProbeErrorKind::Timeout
    );
    // The others answered in the same round.
    assert_eq!(obs.net_info.as_ref().unwrap().n_peers, 5);
    assert_eq!(evm(&obs).block_number, Ok(101));
    let hits = node.hits();
    assert_eq!(hits["comet:status"], 1, "no retry inside a round");
    assert_eq!(hits["evm:eth_syncing"], 1);

    let (_, r) = evaluate(&params(), HealthState::new(), &obs, t0());
    assert_eq!(status_of(&r, names::COMET_REACHABLE), CheckStatus::Fail);
    assert_eq!(r.check(names::COMET_REACHABLE).unwrap().observed, "timeout");
    assert_eq!(
        status_of(&r, names::COMET_CATCHING_UP),
        CheckStatus::Unknown
    );
    assert_eq!(status_of(&r, names::EVM_SYNCING), CheckStatus::Fail);
}

#[tokio::test]
async fn story_http_500_and_garbage_bodies_are_distinct_failures() {
    let node = MockNode::start().await;
    let probe = probe(&node, TIMEOUT);
    node.set_comet(
        "status",
        Reply::Raw(
            500,
            "<html><body>500 Internal Server Error</body></html>".into(),
        ),
    );
    node.set_comet("net_info", Reply::Raw(200, "garbage{".into()));
    node.set_evm("eth_blockNumber", Reply::Result(json!("0xZZ")));
    node.set_evm(
        "eth_getBlockByNumber",
        Reply::Result(serde_json::Value::Null),
    );
    node.set_evm("eth_syncing", Reply::Raw(502, String::new()));
    let obs = probe.observe(StateSyncSeen::NotExpected).await;

    match obs.status.as_ref().unwrap_err() {
        ProbeError::Http { status, body, .. } => {
            assert_eq!(*status, 500);
            assert!(body.contains("Internal Server Error"));
        }
        other => panic!("{other:?}"),
    }
    let e = obs.net_info.as_ref().unwrap_err();
    assert_eq!(e.kind(), ProbeErrorKind::MalformedBody, "{e}");
    assert!(e.to_string().contains("garbage{"), "{e}");
    let e = evm(&obs).block_number.as_ref().unwrap_err();
    assert_eq!(e.kind(), ProbeErrorKind::MalformedBody, "{e}");
    assert!(e.to_string().contains("0xZZ"), "{e}");
    let e = evm(&obs).latest_block.as_ref().unwrap_err();
    assert_eq!(e.kind(), ProbeErrorKind::MalformedBody, "{e}");
    assert!(matches!(
        evm(&obs).syncing,
        Err(ProbeError::Http { status: 502, .. })
    ));

    let (_, r) = evaluate(&params(), HealthState::new(), &obs, t0());
    assert!(r.round_failed);
    for name in [
        names::COMET_REACHABLE,
        names::COMET_PEERS,
        names::EVM_REACHABLE,
        names::EVM_BLOCK_TIME,
        names::EVM_SYNCING,
    ] {
        assert_eq!(status_of(&r, name), CheckStatus::Fail, "{name}");
    }
    assert!(r
        .check(names::COMET_REACHABLE)
        .unwrap()
        .reason
        .contains("HTTP 500"));
}

#[tokio::test]
async fn story_evm_syncing_object_fails_the_round() {
    let node = MockNode::start().await;
    let mut rounds = Rounds::new(probe(&node, TIMEOUT));
    let h = rounds.make_healthy(&node).await;
    node.set_heads(h + 1, rounds.now + secs(5));
    node.set_evm(
        "eth_syncing",
        Reply::Result(json!({
            "startingBlock": "0x0", "currentBlock": "0x65", "highestBlock": "0x1f4",
            "syncedAccounts": "0x0", "healedTrienodes": "0x0"
        })),
    );
    let r = rounds.round().await;
    let c = r.check(names::EVM_SYNCING).unwrap();
    assert_eq!(c.status, CheckStatus::Fail);
    assert_eq!(c.observed, "syncing: block 101 of 500");
    assert!(r.round_failed);
}

#[tokio::test]
async fn story_method_not_found_is_unknown_not_failure() {
    let node = MockNode::start().await;
    let mut rounds = Rounds::new(probe(&node, TIMEOUT));
    // geth's wording (code -32601) for a disabled namespace, and the mock's default answer
    // (anvil's: -32601 "Method not found") for an unserved method.
    node.set_evm(
        "net_peerCount",
        Reply::Raw(
            200,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"the method net_peerCount does not exist/is not available"}}"#.into(),
        ),
    );
    node.state.lock().unwrap().evm.remove("eth_syncing");
    for h in [101, 102, 103] {
        node.set_heads(h, rounds.now + secs(5));
        let r = rounds.round().await;
        assert!(!r.round_failed, "{}", r.summary);
        assert_eq!(status_of(&r, names::EVM_PEERS), CheckStatus::Unknown);
        assert_eq!(status_of(&r, names::EVM_SYNCING), CheckStatus::Unknown);
        assert!(r
            .check(names::EVM_PEERS)
            .unwrap()
            .reason
            .contains("does not exist"));
    }
    assert!(rounds.state.is_healthy());
}

#[tokio::test]
async fn story_refused_connection_and_disk_error() {
    // A port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let probe = NodeProbe::new(&url, &url, TIMEOUT)
        .unwrap()
        .with_state_dir("/nonexistent/syncguard-state-dir");
    let started = Instant::now();
    let obs = probe
        .observe(StateSyncSeen::Never {
            expected_since: t0(),
        })
        .await;
    assert!(started.elapsed() < TIMEOUT, "refusal is immediate");
    let e = obs.status.as_ref().unwrap_err();
    assert_eq!(e.kind(), ProbeErrorKind::ConnectionRefused, "{e}");
    assert_eq!(
        e.to_string(),
        format!("status at {url}/status: connection refused (is the node running?)")
    );
    assert_eq!(
        evm(&obs).block_number.as_ref().unwrap_err().kind(),
        ProbeErrorKind::ConnectionRefused
    );
    let (state, r) = evaluate(&params(), HealthState::new(), &obs, t0() + secs(60));
    assert!(!state.is_healthy());
    assert_eq!(status_of(&r, names::DISK_FREE), CheckStatus::Fail);
    assert!(r
        .check(names::DISK_FREE)
        .unwrap()
        .reason
        .contains("/nonexistent"));
    let lag = r.check(names::STATE_SYNC_LAG).unwrap();
    assert_eq!(lag.status, CheckStatus::Warn, "{lag:?}");
    assert_eq!(
        r.check(names::COMET_REACHABLE).unwrap().observed,
        "connection_refused"
    );
}

#[tokio::test]
async fn story_report_serializes_for_get_health() {
    let node = MockNode::start().await;
    let mut rounds = Rounds::new(probe(&node, TIMEOUT));
    rounds.make_healthy(&node).await;
    node.set_heads(200, rounds.now + secs(5));
    let r = rounds.round().await;
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["healthy"], true);
    assert_eq!(v["verdict"], "healthy");
    assert_eq!(v["consecutive_failures"], 0);
    assert_eq!(v["consecutive_successes"], 3);
    assert_eq!(v["evaluated_at"], "2026-01-01T00:00:15.000Z");
    let first = &v["checks"][0];
    assert_eq!(first["name"], names::COMET_REACHABLE);
    assert_eq!(first["status"], "ok");
    for key in ["observed", "threshold", "reason"] {
        assert!(first[key].is_string(), "{key}");
    }
    let back: HealthReport = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

/// The state file is read in every round: the real CometBFT fixture parses, garbage and a
/// missing file are reported (a passive in that state must not promote).
#[tokio::test]
async fn story_state_file_is_read_every_round() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("priv_validator_state.json");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/privval/privval_state_h36_precommit_cometbft_docs.json");
    std::fs::copy(&fixture, &path).unwrap();
    let url = "http://127.0.0.1:9"; // nothing listens: only the file matters here
    let probe = NodeProbe::new(url, url, TIMEOUT)
        .unwrap()
        .with_state_file(&path);
    let seen = |o: &syncguard_health::RoundObservation| o.state_file.clone();
    let obs = probe.observe(StateSyncSeen::NotExpected).await;
    assert_eq!(
        seen(&obs),
        syncguard_health::StateFileSeen::Valid {
            height: 36,
            round: 0,
            step: 3
        }
    );
    std::fs::write(&path, b"\x00\xffnot json {{{").unwrap();
    let obs = probe.observe(StateSyncSeen::NotExpected).await;
    match seen(&obs) {
        syncguard_health::StateFileSeen::Invalid(e) => {
            assert!(e.contains("priv_validator_state.json"), "{e}")
        }
        other => panic!("garbage read as {other:?}"),
    }
    std::fs::remove_file(&path).unwrap();
    let obs = probe.observe(StateSyncSeen::NotExpected).await;
    assert!(
        matches!(seen(&obs), syncguard_health::StateFileSeen::Invalid(_)),
        "{:?}",
        seen(&obs)
    );
}
