//! Every recorded fixture, served byte for byte over HTTP, parsed by the real clients.

mod common;

use std::time::Duration;

use common::*;
use syncguard_health::{
    BlockIdFlag, CometClient, EvmClient, EvmSyncing, ProbeError, ProbeErrorKind,
};

const TIMEOUT: Duration = Duration::from_secs(5);

fn int64(v: &serde_json::Value) -> u64 {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn story_every_cometbft_status_net_info_commit_fixture_parses() {
    let node = MockNode::start().await;
    let client = CometClient::new(&node.comet_url(), TIMEOUT).unwrap();
    let real = |n: &str| !n.contains("REQUEST");

    let statuses = fixture_files("cometbft", |n| real(n) && n.ends_with("_status.json"));
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    for name in &statuses {
        let text = fixture_text(&format!("cometbft/{name}"));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        node.set_comet("status", Reply::Raw(200, text));
        let s = client
            .status()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = &json["result"];
        assert_eq!(
            s.latest_block_height,
            int64(&r["sync_info"]["latest_block_height"])
        );
        assert_eq!(
            s.catching_up,
            r["sync_info"]["catching_up"].as_bool().unwrap()
        );
        assert_eq!(
            s.validator_address,
            r["validator_info"]["address"].as_str().unwrap()
        );
        assert_eq!(s.voting_power, int64(&r["validator_info"]["voting_power"]));
        assert_eq!(
            s.validator_pub_key_type.as_deref(),
            r["validator_info"]["pub_key"]["type"].as_str()
        );
        assert_eq!(s.network, r["node_info"]["network"].as_str().unwrap());
        assert_eq!(s.moniker, r["node_info"]["moniker"].as_str().unwrap());
        let time = s.latest_block_time.expect("block time");
        assert_eq!(
            humantime::format_rfc3339_nanos(time).to_string(),
            r["sync_info"]["latest_block_time"].as_str().unwrap(),
            "{name}: nanoseconds kept"
        );
    }

    let nets = fixture_files("cometbft", |n| real(n) && n.ends_with("_net_info.json"));
    assert_eq!(nets.len(), 2, "{nets:?}");
    for name in &nets {
        let text = fixture_text(&format!("cometbft/{name}"));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        node.set_comet("net_info", Reply::Raw(200, text));
        let n = client
            .net_info()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(n.n_peers, int64(&json["result"]["n_peers"]));
    }

    let commits = fixture_files("cometbft", |n| real(n) && n.contains("_commit_at_height_"));
    assert_eq!(commits.len(), 2, "{commits:?}");
    for name in &commits {
        let text = fixture_text(&format!("cometbft/{name}"));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let commit_json = &json["result"]["signed_header"]["commit"];
        let height = int64(&commit_json["height"]);
        node.set_comet(
            &format!("commit?height={height}"),
            Reply::Raw(200, text.clone()),
        );
        let c = client
            .commit(height)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.height, height);
        let sigs = commit_json["signatures"].as_array().unwrap();
        assert_eq!(c.signatures.len(), sigs.len());
        for (got, want) in c.signatures.iter().zip(sigs) {
            assert_eq!(got.flag, BlockIdFlag::Commit);
            assert_eq!(want["block_id_flag"], 2);
            assert_eq!(
                got.validator_address.as_deref(),
                want["validator_address"].as_str()
            );
            assert!(c.signed_by(&want["validator_address"].as_str().unwrap().to_lowercase()));
        }
    }
    // One GET per call, on the URI routes.
    let hits = node.hits();
    assert_eq!(hits["comet:status"], 2);
    assert_eq!(hits["comet:net_info"], 2);
    assert_eq!(hits["comet:commit?height=10"], 2);
}

#[tokio::test]
async fn story_every_evm_io_fixture_parses() {
    let node = MockNode::start().await;
    let client = EvmClient::new(&node.evm_url(), TIMEOUT).unwrap();
    let files = fixture_files("evm", |n| n.ends_with(".io"));
    assert_eq!(files.len(), 4, "{files:?}");
    for name in &files {
        for (request, response) in io_pairs(name) {
            let method = request["method"].as_str().unwrap().to_string();
            node.set_evm(&method, Reply::Raw(200, response.to_string()));
            let result = &response["result"];
            let hex = |v: &serde_json::Value| {
                u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
            };
            match method.as_str() {
                "eth_blockNumber" => assert_eq!(client.block_number().await.unwrap(), hex(result)),
                "net_peerCount" => assert_eq!(client.peer_count().await.unwrap(), hex(result)),
                "eth_syncing" => {
                    assert_eq!(result, &serde_json::Value::Bool(false));
                    assert_eq!(client.syncing().await.unwrap(), EvmSyncing::NotSyncing);
                }
                "eth_getBlockByNumber" => {
                    let b = client.latest_block().await.unwrap();
                    assert_eq!(b.number, hex(&result["number"]));
                    assert_eq!(
                        b.timestamp,
                        std::time::UNIX_EPOCH + Duration::from_secs(hex(&result["timestamp"]))
                    );
                }
                other => panic!("{name}: no client call for {other}"),
            }
            assert_eq!(node.hits()[&format!("evm:{method}")], 1, "{name}");
        }
    }
}

#[tokio::test]
async fn story_cometbft_error_examples_over_http_map_to_kinds() {
    // The two shapes of cometbft_rpc_error_examples.txt, with their HTTP statuses.
    let text = fixture_text("cometbft/cometbft_rpc_error_examples.txt");
    let bodies: Vec<&str> = text.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(bodies.len(), 2);
    assert!(text.contains("-> HTTP 500") && text.contains("-> HTTP 404"));

    let node = MockNode::start().await;
    let client = CometClient::new(&node.comet_url(), TIMEOUT).unwrap();
    node.set_comet("status", Reply::Raw(500, bodies[0].to_string()));
    node.set_comet("net_info", Reply::Raw(404, bodies[1].to_string()));

    let e = client.status().await.unwrap_err();
    match &e {
        ProbeError::JsonRpc {
            code,
            message,
            data,
            url,
            method,
        } => {
            assert_eq!(*code, -32603);
            assert_eq!(message, "Internal error");
            assert!(data
                .as_deref()
                .unwrap()
                .contains("must be less than or equal"));
            assert_eq!(url, &format!("{}/status", node.comet_url()));
            assert_eq!(method, "status");
        }
        other => panic!("expected JsonRpc, got {other:?}"),
    }
    assert!(e
        .to_string()
        .starts_with(&format!("status at {}/status", node.comet_url())));

    let e = client.net_info().await.unwrap_err();
    assert_eq!(e.kind(), ProbeErrorKind::MethodNotFound, "{e}");
    assert!(e.to_string().contains("net_info"), "{e}");
}
