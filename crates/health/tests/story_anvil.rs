//! Against a REAL EVM JSON-RPC node: anvil (installed by scripts/install-test-deps.sh into
//! .devtools/, or named by SYNCGUARD_ANVIL). The CometBFT side is the mock, kept healthy, so
//! the verdict reflects the EVM alone.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::*;
use serde_json::json;
use syncguard_health::{
    evaluate, names, CheckStatus, HealthParams, HealthReport, HealthState, NodeProbe,
    ProbeErrorKind, StateSyncSeen, Verdict,
};
use syncguard_testkit::anvil::Anvil;

async fn anvil_rpc(url: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    reqwest::Client::new()
        .post(url)
        .json(&json!({"jsonrpc":"2.0","id":1,"method":method,"params":params}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn evm_statuses(r: &HealthReport) -> Vec<(String, CheckStatus)> {
    r.checks
        .iter()
        .filter(|c| c.name.starts_with("evm."))
        .map(|c| (c.name.clone(), c.status))
        .collect()
}

struct Harness {
    probe: NodeProbe,
    comet: MockNode,
    params: HealthParams,
    state: HealthState,
    comet_height: u64,
}

impl Harness {
    /// One real round at simulated `now`; the mock CometBFT advances with `now`.
    async fn round(&mut self, now: SystemTime) -> HealthReport {
        self.comet_height += 1;
        self.comet.set_comet_head(self.comet_height, now - secs(1));
        let obs = self.probe.observe(StateSyncSeen::NotExpected).await;
        if let Err(e) = &evm(&obs).peer_count {
            // anvil 1.7 does not serve net_peerCount.
            assert_eq!(e.kind(), ProbeErrorKind::MethodNotFound, "{e}");
        }
        let (state, report) = evaluate(&self.params, self.state.clone(), &obs, now);
        self.state = state;
        report
    }
}

#[tokio::test]
async fn story_real_anvil_mining_then_stalled_then_gone() {
    let Some(anvil) = Anvil::start(1) else {
        return;
    };
    let comet = MockNode::start().await;
    let probe = NodeProbe::new(&comet.comet_url(), anvil.url(), Duration::from_secs(2)).unwrap();

    // Ready when eth_blockNumber answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut height = loop {
        match probe.evm().expect("evm").block_number().await {
            Ok(h) => break h,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("anvil at {} never answered: {e}", anvil.url()),
        }
    };

    // 1 s blocks, 1 s rounds: stall bound max(20 s, 3 s, 10 s) = 20 s.
    let mut params = HealthParams::from_block_interval(1000, secs(1));
    params.retry_attempts = 3;
    params.recovery_rounds = 2;
    params.min_peers = 1;
    assert_eq!(params.stall_bound, secs(20));
    let mut h = Harness {
        probe,
        comet,
        params,
        state: HealthState::new(),
        comet_height: 1000,
    };

    // While anvil mines, rounds separated by a new block are good (real time: anvil stamps
    // its blocks with the wall clock).
    let r = h.round(SystemTime::now()).await;
    assert!(!r.round_failed, "{}", r.summary);
    assert_eq!(
        r.check(names::EVM_HEIGHT).unwrap().status,
        CheckStatus::Unknown
    );
    let wait_until = Instant::now() + Duration::from_secs(5);
    while h.probe.evm().expect("evm").block_number().await.unwrap() <= height {
        assert!(Instant::now() < wait_until, "anvil mined no block in 5 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = h.round(SystemTime::now()).await;
    assert_eq!(r.verdict, Verdict::Healthy, "{}", r.summary);
    let expected = vec![
        (names::EVM_REACHABLE.to_string(), CheckStatus::Ok),
        (names::EVM_SYNCING.to_string(), CheckStatus::Ok),
        (names::EVM_HEIGHT.to_string(), CheckStatus::Ok),
        (names::EVM_BLOCK_TIME.to_string(), CheckStatus::Ok),
        // anvil answers -32601 "Method not found" to net_peerCount: unknown, allowed.
        (names::EVM_PEERS.to_string(), CheckStatus::Unknown),
    ];
    assert_eq!(evm_statuses(&r), expected, "{}", r.summary);

    // Stop mining (interval 0 = off; automine stays off since --block-time was given).
    let answer = anvil_rpc(anvil.url(), "evm_setIntervalMining", json!([0])).await;
    assert!(answer.get("error").is_none(), "{answer}");
    height = h.probe.evm().expect("evm").block_number().await.unwrap();

    // Simulated time from here: rounds every 5 s; CometBFT keeps advancing, the EVM does not.
    let stopped = SystemTime::now();
    let mut reports = Vec::new();
    for i in 1..=12u64 {
        let r = h.round(stopped + secs(5 * i)).await;
        let unhealthy = !r.healthy;
        reports.push(r);
        if unhealthy {
            break;
        }
    }
    let last = reports.last().unwrap();
    assert_eq!(last.verdict, Verdict::Unhealthy, "{}", last.summary);
    let failing: Vec<&str> = last.failing().map(|c| c.name.as_str()).collect();
    assert!(failing.contains(&names::EVM_HEIGHT), "{failing:?}");
    assert!(failing.contains(&names::EVM_BLOCK_TIME), "{failing:?}");
    assert!(failing.iter().all(|n| n.starts_with("evm.")), "{failing:?}");
    assert_eq!(
        h.probe.evm().expect("evm").block_number().await.unwrap(),
        height,
        "anvil kept mining"
    );
    // Stall bound 20 s: the rounds at +5..+20 s pass (block ≤ 21 s old at +20 s is the edge),
    // then 3 failed rounds.
    let first_failed = reports.iter().position(|r| r.round_failed).unwrap();
    assert!(
        (3..=4).contains(&first_failed),
        "first failed round {first_failed}"
    );
    assert_eq!(reports.len(), first_failed + 3);

    // Gone: the next round cannot reach it at all.
    let url = anvil.url().to_string();
    drop(anvil);
    let obs = h.probe.observe(StateSyncSeen::NotExpected).await;
    let e = evm(&obs).block_number.as_ref().unwrap_err();
    assert_eq!(e.kind(), ProbeErrorKind::ConnectionRefused, "{e}");
    assert!(e.to_string().contains(&url), "{e}");
}
