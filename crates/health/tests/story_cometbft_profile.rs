//! The `cometbft` chain profile: a node with no EVM beside it. Against a real CometBFT node's
//! recorded answers (tendermint-rs' kvstore fixtures, ed25519 validator, served byte for
//! byte), a round asks only CometBFT, and the verdict has no `evm.*` check at all — absent,
//! not failing. The `story` profile against the same node fails its EVM checks.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use syncguard_health::{evaluate, CheckStatus, HealthState, NodeProbe, StateSyncSeen};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn recorded_cometbft_node() -> MockNode {
    let node = MockNode::start().await;
    for (route, file) in [
        ("status", "cometbft/tmrs_v0_38_status.json"),
        ("net_info", "cometbft/tmrs_v0_38_net_info.json"),
    ] {
        node.set_comet(route, Reply::Raw(200, fixture_text(file)));
    }
    node
}

#[tokio::test]
async fn story_cometbft_profile_round_has_no_evm_checks_on_a_recorded_cometbft_node() {
    let node = recorded_cometbft_node().await;
    let probe = NodeProbe::comet_only(&node.comet_url(), TIMEOUT).unwrap();
    assert!(probe.evm().is_none());
    let obs = probe.observe(StateSyncSeen::NotExpected).await;
    assert!(obs.evm.is_none(), "no EVM asked");
    let status = obs.status.as_ref().expect("the recorded /status parses");
    assert_eq!(
        status.validator_pub_key_type.as_deref(),
        Some("tendermint/PubKeyEd25519")
    );
    let (_, report) = evaluate(&params(), HealthState::new(), &obs, SystemTime::now());
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert!(!names.iter().any(|n| n.starts_with("evm.")), "{names:?}");
    assert!(names.contains(&"comet.reachable"), "{names:?}");
    let reachable = report
        .checks
        .iter()
        .find(|c| c.name == "comet.reachable")
        .expect("comet.reachable");
    assert_eq!(reachable.status, CheckStatus::Ok, "{reachable:?}");
}

#[tokio::test]
async fn story_story_profile_on_the_same_node_fails_its_evm_checks() {
    let node = recorded_cometbft_node().await;
    // The story profile probes an EVM endpoint that is not there.
    let probe = NodeProbe::new(&node.comet_url(), "http://127.0.0.1:9", TIMEOUT).unwrap();
    let obs = probe.observe(StateSyncSeen::NotExpected).await;
    let (_, report) = evaluate(&params(), HealthState::new(), &obs, SystemTime::now());
    let evm_fail = report
        .checks
        .iter()
        .any(|c| c.name == "evm.reachable" && c.status == CheckStatus::Fail);
    assert!(evm_fail, "{:?}", report.checks);
}
