//! The chain witness against a mock CometBFT serving the recorded v0_38 commit at height 10
//! (signed by 2DD9F44FD9067555C322243C3C913BA7B51D2BE0).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use syncguard_health::{fetch_witness, CometClient, ProbeErrorKind, SignatureSeen};

const VALIDATOR: &str = "2DD9F44FD9067555C322243C3C913BA7B51D2BE0";
const OTHER: &str = "DD8A65495B6240145764A74E78CF203D51510371";

/// The recorded commit, moved to `height`, with the given (flag, address) signatures.
fn commit_at(height: u64, sigs: &[(u8, &str)]) -> Reply {
    let mut r = fixture_json("cometbft/tmrs_v0_38_commit_at_height_10.json")["result"].clone();
    r["signed_header"]["commit"]["height"] = json!(height.to_string());
    r["signed_header"]["header"]["height"] = json!(height.to_string());
    r["signed_header"]["commit"]["signatures"] = sigs
        .iter()
        .map(|(flag, addr)| {
            if *flag == 1 {
                json!({"block_id_flag": 1, "validator_address": addr, "timestamp": "0001-01-01T00:00:00Z", "signature": null})
            } else {
                json!({"block_id_flag": flag, "validator_address": addr, "timestamp": "2023-05-17T14:12:53.605374524Z", "signature": "AA=="})
            }
        })
        .collect();
    Reply::Result(r)
}

async fn node_at(latest: u64) -> (MockNode, CometClient) {
    let node = MockNode::start().await;
    node.set_comet_head(latest, t0());
    let client = CometClient::new(&node.comet_url(), Duration::from_secs(3)).unwrap();
    (node, client)
}

#[tokio::test]
async fn story_witness_sees_the_recorded_signature_at_height_10() {
    let (_node, client) = node_at(10).await;
    let w = fetch_witness(&client, VALIDATOR, 1).await.unwrap();
    assert_eq!(w.latest_height, 10);
    assert_eq!(w.heights.len(), 1);
    assert_eq!(w.heights[0].height, 10);
    assert_eq!(w.heights[0].seen, SignatureSeen::Signed);
    assert!(w.signed_recently());
    assert_eq!(w.last_signed_height(), Some(10));
    assert!(!w.proves_absence());
    // Case-insensitive address.
    let w = fetch_witness(&client, &VALIDATOR.to_lowercase(), 1)
        .await
        .unwrap();
    assert!(w.signed_recently());
    // Another validator did not sign the recorded commit.
    let w = fetch_witness(&client, OTHER, 1).await.unwrap();
    assert_eq!(w.heights[0].seen, SignatureSeen::Absent);
    assert!(w.proves_absence());
}

#[tokio::test]
async fn story_witness_window_with_absent_and_unfetchable_heights() {
    let (node, client) = node_at(12).await;
    node.set_comet("commit?height=12", commit_at(12, &[(2, OTHER), (1, "")]));
    node.set_comet(
        "commit?height=11",
        commit_at(11, &[(2, OTHER), (1, VALIDATOR)]),
    );
    // 10 is the recorded fixture (signed); 9 is not served (CometBFT's 500 error).
    let w = fetch_witness(&client, VALIDATOR, 4).await.unwrap();
    let seen: Vec<(u64, &SignatureSeen)> = w.heights.iter().map(|h| (h.height, &h.seen)).collect();
    assert_eq!(seen[0], (12, &SignatureSeen::Absent));
    assert_eq!(
        seen[1],
        (11, &SignatureSeen::Absent),
        "flag 1 with the address is absent"
    );
    assert_eq!(seen[2], (10, &SignatureSeen::Signed));
    match seen[3] {
        (9, SignatureSeen::Unknown(why)) => assert!(why.contains("-32603"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.last_signed_height(), Some(10));
    assert!(w.signed_recently());
    assert_eq!(w.unknown_heights(), vec![9]);

    // The last two commits alone prove the validator silent.
    let w = fetch_witness(&client, VALIDATOR, 2).await.unwrap();
    assert!(!w.signed_recently());
    assert!(w.proves_absence());
    // With the unfetchable height in the window, silence is not proven.
    node.set_comet("commit?height=10", commit_at(10, &[(2, OTHER)]));
    let w = fetch_witness(&client, VALIDATOR, 4).await.unwrap();
    assert!(!w.signed_recently());
    assert!(!w.proves_absence(), "height 9 is unknown");
    // Each height fetched once per call.
    assert_eq!(node.hits()["comet:commit?height=9"], 2);
}

#[tokio::test]
async fn story_witness_needs_status_and_gives_up_on_a_dead_node_quickly() {
    let (node, _) = node_at(100).await;
    let timeout = Duration::from_millis(250);
    let client = CometClient::new(&node.comet_url(), timeout).unwrap();
    node.set_comet("status", Reply::Raw(500, "oops".into()));
    let e = fetch_witness(&client, VALIDATOR, 5).await.unwrap_err();
    assert_eq!(e.kind(), ProbeErrorKind::Http);

    // Status answers, every commit hangs.
    let (node, _) = node_at(100).await;
    let client = CometClient::new(&node.comet_url(), timeout).unwrap();
    for h in 81..=100 {
        node.set_comet(&format!("commit?height={h}"), Reply::Hang);
    }
    let started = Instant::now();
    let w = fetch_witness(&client, VALIDATOR, 20).await.unwrap();
    let took = started.elapsed();
    assert!(took < timeout * 5, "took {took:?}");
    assert_eq!(w.heights.len(), 20);
    assert_eq!(w.unknown_heights().len(), 20);
    assert!(!w.proves_absence());
    let fetched: usize = node
        .hits()
        .iter()
        .filter(|(k, _)| k.starts_with("comet:commit"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        fetched < 20,
        "stopped after the node stopped answering ({fetched})"
    );
}
