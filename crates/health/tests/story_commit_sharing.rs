//! The health loop's catch-up and the witness share one commit log: when both run at once,
//! no height is asked twice, and each still answers from every commit it needed. Against a
//! node whose `/commit` answers take a while (so the two reads overlap) and that counts
//! every height asked.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use common::*;
use serde_json::{json, Value};
use syncguard_health::{ChainReader, CometClient, SignatureSeen};

const VALIDATOR: &str = "2DD9F44FD9067555C322243C3C913BA7B51D2BE0";
/// The node's newest height (its commit is not canonical yet).
const HEAD: u64 = 1_000;
/// How long a `/commit` answer takes.
const SLOW: Duration = Duration::from_millis(30);

type Asked = Arc<Mutex<BTreeMap<u64, u32>>>;

async fn status() -> Json<Value> {
    let mut r = fixture_json("cometbft/tmrs_v0_38_status.json")["result"].clone();
    r["sync_info"]["latest_block_height"] = json!(HEAD.to_string());
    r["sync_info"]["latest_block_time"] = json!("2023-05-17T14:12:53.605374524Z");
    Json(json!({"jsonrpc": "2.0", "id": -1, "result": r}))
}

async fn commit(
    State(asked): State<Asked>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Json<Value> {
    let height: u64 = q
        .get("height")
        .and_then(|h| h.trim_matches('"').parse().ok())
        .unwrap_or(HEAD);
    if let Ok(mut a) = asked.lock() {
        *a.entry(height).or_default() += 1;
    }
    tokio::time::sleep(SLOW).await;
    let mut r = fixture_json("cometbft/tmrs_v0_38_commit_at_height_10.json")["result"].clone();
    r["canonical"] = json!(height < HEAD);
    r["signed_header"]["header"]["height"] = json!(height.to_string());
    r["signed_header"]["commit"]["height"] = json!(height.to_string());
    Json(json!({"jsonrpc": "2.0", "id": -1, "result": r}))
}

async fn node() -> (Asked, ChainReader) {
    let asked: Asked = Arc::default();
    let app = Router::new()
        .route("/status", get(status))
        .route("/commit", get(commit))
        .with_state(asked.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let client = CometClient::new(&format!("http://{addr}"), Duration::from_secs(3)).unwrap();
    // 40 commits a round, a witness of 20: the witness's window lies inside the round's.
    (asked, ChainReader::new(client, VALIDATOR, 1_000, 40))
}

fn asked_twice(asked: &Asked) -> Vec<(u64, u32)> {
    asked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(h, n)| (*h, *n))
        .collect()
}

fn check(asked: &Asked, witness: &syncguard_health::WitnessReport, last_signed: Option<u64>) {
    assert_eq!(
        asked_twice(asked),
        vec![],
        "heights asked twice (height, times)"
    );
    let all = asked.lock().unwrap().len();
    assert_eq!(all, 40, "the round's 40 commits, each once");
    assert_eq!(witness.latest_height, HEAD - 1);
    assert_eq!(witness.heights.len(), 20);
    assert!(
        witness
            .heights
            .iter()
            .all(|h| h.seen == SignatureSeen::Signed),
        "the witness read its whole window (none Unknown): {:?}",
        witness.heights
    );
    assert_eq!(last_signed, Some(HEAD - 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn story_commit_sharing_a_witness_during_the_catch_up_asks_nothing_twice() {
    let (asked, reader) = node().await;
    let (seen, witness) = tokio::join!(reader.catch_up(HEAD, 1), async {
        // The catch-up is under way.
        tokio::time::sleep(SLOW / 3).await;
        reader.witness(20).await
    });
    check(&asked, &witness.unwrap(), seen.last_signed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn story_commit_sharing_a_catch_up_during_the_witness_asks_nothing_twice() {
    let (asked, reader) = node().await;
    let (witness, seen) = tokio::join!(reader.witness(20), async {
        // The witness has asked its `/status` and its commits.
        tokio::time::sleep(SLOW / 3).await;
        reader.catch_up(HEAD, 1).await
    });
    check(&asked, &witness.unwrap(), seen.last_signed);
}
