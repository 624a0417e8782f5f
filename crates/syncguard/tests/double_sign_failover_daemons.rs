//! Two real SyncGuard daemons (real HTTP, real mutual TLS, real files, actuator commands that
//! are small scripts) managing the simulated Story nodes of a devnet whose ledger records
//! every vote signed with the validator key. Every scenario ends by checking the ledger:
//! no double sign, no two nodes signing the same height (S1).

mod common;

use std::time::Duration;

use common::{assert_no_double_sign, events, options, start, OrPanic};
use syncguard_devnet::cluster::{Cluster, ClusterOptions, StartRole};

const SETTLE: Duration = Duration::from_secs(30);
const FAILOVER: Duration = Duration::from_secs(60);

/// A healthy cluster: node-a active and signing, node-b passive.
async fn steady(opts: ClusterOptions) -> Cluster {
    let c = start(opts).await;
    c.wait_roles(["active", "passive"], SETTLE).await.or_panic();
    c.wait_signing_by(0, SETTLE).await.or_panic();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_crash_of_the_active_host_promotes_the_passive_after_the_window() {
    let mut c = steady(options()).await;
    let epoch_before = c.epoch(1).await.unwrap_or(0);
    // The whole host dies: its SyncGuard and its node.
    c.kill_daemon(0).or_panic();
    c.devnet.kill_node(0).await.expect("kill node a");
    c.wait_until("node-b active", FAILOVER, || async {
        c.role(1).await.as_deref() == Some("active")
    })
    .await
    .or_panic();
    c.wait_signing_by(1, SETTLE).await.or_panic();
    assert!(
        c.epoch(1).await.unwrap_or(0) > epoch_before,
        "the epoch grows at a change of holder"
    );
    assert_no_double_sign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_killed_syncguard_on_a_signing_active_never_promotes() {
    let mut c = steady(options()).await;
    // Only node-a's SyncGuard dies: its node keeps signing, so the witness sees signatures.
    c.kill_daemon(0).or_panic();
    let watch = Duration::from_secs(20);
    let start = std::time::Instant::now();
    while start.elapsed() < watch {
        assert_eq!(
            c.role(1).await.as_deref(),
            Some("passive"),
            "node-b promoted while node-a still signed\n{}",
            c.describe().await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let events = events(&c, 1).await;
    assert!(
        events.contains("signed"),
        "node-b says why it does not promote: {events}"
    );
    assert_no_double_sign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_evm_down_on_the_active_hands_over_to_the_passive() {
    let mut c = steady(options()).await;
    let epoch_before = c.epoch(0).await.unwrap_or(0);
    c.devnet.kill_geth(0).expect("kill geth a");
    c.wait_roles(["passive", "active"], FAILOVER)
        .await
        .or_panic();
    c.wait_signing_by(1, SETTLE).await.or_panic();
    assert!(c.epoch(1).await.unwrap_or(0) > epoch_before);
    assert_no_double_sign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_both_started_active_end_with_exactly_one_active() {
    let mut opts = options();
    opts.roles = [StartRole::Active, StartRole::Active];
    opts.devnet.validator_hosts = vec![];
    let c = start(opts).await;
    c.wait_until("exactly one active", SETTLE + FAILOVER, || async {
        let roles = [c.role(0).await, c.role(1).await];
        roles
            .iter()
            .filter(|r| r.as_deref() == Some("active"))
            .count()
            == 1
            && roles
                .iter()
                .filter(|r| r.as_deref() == Some("passive"))
                .count()
                == 1
    })
    .await
    .or_panic();
    let active = if c.role(0).await.as_deref() == Some("active") {
        0
    } else {
        1
    };
    c.wait_signing_by(active, SETTLE).await.or_panic();
    // And it stays that way.
    for _ in 0..10 {
        let roles = [c.role(0).await, c.role(1).await];
        assert_eq!(
            roles
                .iter()
                .filter(|r| r.as_deref() == Some("active"))
                .count(),
            1,
            "{roles:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_no_double_sign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_peer_with_a_certificate_from_another_ca_is_refused() {
    let c = steady(ClusterOptions {
        foreign_ca_for_b: true,
        ..options()
    })
    .await;
    // node-b cannot talk to node-a (and the reverse): node-b stays passive because the chain
    // shows node-a signing, and node-a keeps the role.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(c.role(0).await.as_deref(), Some("active"));
    assert_eq!(c.role(1).await.as_deref(), Some("passive"));
    let status = c.get(1, "/status").await.expect("status of b");
    assert_eq!(status["peer"]["reachable"], false, "{status:#}");
    assert_no_double_sign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_target_dying_mid_handover_aborts_safely() {
    let mut c = steady(options()).await;
    c.devnet.kill_geth(0).expect("kill geth a");
    // Wait for node-b to start taking the role, then kill its host mid-way.
    c.wait_until("node-b promoting", FAILOVER, || async {
        matches!(
            c.role(1).await.as_deref(),
            Some("promoting") | Some("active")
        )
    })
    .await
    .or_panic();
    c.kill_daemon(1).or_panic();
    let _ = c.devnet.kill_node(1).await;
    // Whatever happens next, never two signers; give the machines time to settle.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_no_double_sign(&c).await;
    let a = c.role(0).await;
    assert!(a.is_some(), "node-a's daemon keeps running");
}
