//! A plain CometBFT chain (`story.chain_profile: cometbft`): no EVM beside the nodes (the
//! devnet runs no story-geth) and an **ed25519** validator key, CometBFT's default. Two real
//! daemons: `/health` has no `evm.*` check, the active's host crashes, the passive takes over,
//! a switchover moves the role back; the ledger checks every ed25519 signature: 0 double signs,
//! 0 S1 violations, 0 bad signatures.

mod common;

use std::time::Duration;

use common::{assert_no_double_sign, options, start, OrPanic};
use syncguard_validator::KeyType;

const SETTLE: Duration = Duration::from_secs(30);
const FAILOVER: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_cometbft_profile_ed25519_validator_fails_over_and_back_without_geth() {
    let mut opts = options();
    opts.devnet.geth = false;
    opts.devnet.key_type = KeyType::Ed25519;
    let mut c = start(opts).await;
    c.wait_roles(["active", "passive"], SETTLE).await.or_panic();
    c.wait_signing_by(0, SETTLE).await.or_panic();

    // No EVM: its checks are absent, not failing, and the node is healthy.
    let health = c.get(1, "/health").await.expect("node-b /health");
    let checks = health["checks"].as_array().expect("checks");
    assert!(
        checks
            .iter()
            .all(|k| !k["name"].as_str().unwrap_or("").starts_with("evm.")),
        "{health}"
    );
    assert_eq!(c.healthy(1).await, Some(true), "{health}");
    let status = c.get(0, "/status").await.expect("node-a /status");
    assert_eq!(status["node"]["chain_profile"], "cometbft", "{status}");

    // The active's host dies: node-b takes over with the ed25519 key.
    c.crash_host(0).await.or_panic();
    c.wait_until("node-b active", FAILOVER, || async {
        c.role(1).await.as_deref() == Some("active")
    })
    .await
    .or_panic();
    c.wait_signing_by(1, SETTLE).await.or_panic();

    // node-a comes back passive; a switchover moves the role there again.
    c.restart_daemon(0, syncguard_devnet::StartRole::Passive)
        .or_panic();
    c.wait_roles(["passive", "active"], SETTLE).await.or_panic();
    c.wait_until("node-a healthy", SETTLE, || async {
        c.healthy(0).await == Some(true)
    })
    .await
    .or_panic();
    // node-b may not have seen node-a back (or healthy) yet: the switchover's own checks say
    // so, and nothing moves until they pass.
    let deadline = std::time::Instant::now() + SETTLE;
    loop {
        let (code, out) = c
            .cli(1, &["switchover", "--to", "node-a", "--yes"])
            .await
            .or_panic();
        if code == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline && out.contains("BLOCKED"),
            "{out}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    c.wait_signing_by(0, SETTLE).await.or_panic();

    let ledger = c.ledger().await.or_panic();
    assert_eq!(ledger.bad_signatures, 0, "every ed25519 signature verifies");
    assert!(ledger.signed_heights > 0);
    assert_no_double_sign(&c).await;
}
