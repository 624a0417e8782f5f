//! Three real SyncGuard daemons with `coordination.backend: etcd` on a three-host devnet,
//! coordinating through a real three-member etcd (each daemon through its own cuttable
//! proxies). Every scenario ends with the ledger: no double sign, no two nodes signing one
//! height (S1).
//!
//! Needs `/usr/bin/etcd` (`scripts/etcd.sh install`) and a syncguard built with
//! `--features syncguard-coordination/etcd`; without either the tests print `SKIPPED: …`,
//! and fail when `CI` is set.

mod common;

use std::time::{Duration, SystemTime};

use common::etcd::{assert_ledger_clean, options, steady, wait_other_active, FAILOVER, SETTLE};
use common::OrPanic;
use serde_json::Value;
use syncguard_devnet::etcd_cluster::EtcdCluster;

/// The `at` of the last record of daemon `i` with `tag`.
async fn last_at(c: &EtcdCluster, i: usize, tag: &str) -> Option<SystemTime> {
    c.events(i)
        .await
        .iter()
        .rev()
        .find(|e| e["tag"] == tag)
        .and_then(|e| e["at"].as_str().map(str::to_string))
        .and_then(|t| humantime::parse_rfc3339(&t).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_etcd_crash_of_the_active_host_promotes_another_after_the_lease() {
    let Some(opts) = options() else { return };
    let started = std::time::Instant::now();
    let mut c = EtcdCluster::start(opts).await.or_panic();
    let a = steady(&c).await;
    let settled = started.elapsed();
    let epoch_before = c.epoch(a).await.unwrap_or(0);
    let crash = std::time::Instant::now();
    c.crash_host(a).await.or_panic();
    let b = wait_other_active(&c, &[a]).await;
    let promoted = crash.elapsed();
    c.wait_signing_by(b, SETTLE).await.or_panic();
    let epoch_after = c.epoch(b).await.unwrap_or(0);
    assert!(
        epoch_after > epoch_before,
        "the epoch grows at a change of holder: {epoch_before} → {epoch_after}"
    );
    assert!(
        last_at(&c, b, "failover_completed").await.is_some(),
        "node {b} records its promotion"
    );
    assert_ledger_clean(&c).await;
    eprintln!(
        "timings: settled (one active, signing) after {settled:?}; crash → node-{b} active after {promoted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_etcd_active_cut_off_from_etcd_fences_before_another_promotes() {
    let Some(opts) = options() else { return };
    let c = EtcdCluster::start(opts).await.or_panic();
    let a = steady(&c).await;
    let epoch_before = c.epoch(a).await.unwrap_or(0);
    // Only its links to etcd go: its node keeps running and signing until it fences.
    let cut = std::time::Instant::now();
    c.set_etcd_cut(a, true).or_panic();
    c.wait_until("the cut-off active fenced", FAILOVER, || async {
        matches!(c.role(a).await.as_deref(), Some("fenced") | Some("passive"))
    })
    .await
    .or_panic();
    let fenced = cut.elapsed();
    let b = wait_other_active(&c, &[a]).await;
    let promoted = cut.elapsed();
    c.wait_signing_by(b, SETTLE).await.or_panic();
    let fence_at = last_at(&c, a, "self_fenced").await;
    let started_at = last_at(&c, b, "failover_started").await;
    let events_a = Value::Array(c.events(a).await).to_string();
    assert!(
        events_a.contains("lease_unrenewable"),
        "node {a} says it fenced because the lease could not be renewed: {events_a}"
    );
    match (fence_at, started_at) {
        (Some(f), Some(s)) => assert!(
            f < s,
            "node {a} fenced at {f:?}, after node {b} started promoting at {s:?}\n{}",
            c.describe().await
        ),
        other => panic!("records missing: {other:?}\n{}", c.describe().await),
    }
    assert!(c.epoch(b).await.unwrap_or(0) > epoch_before);
    // Heal: the old active sees the new holder and stands by.
    c.set_etcd_cut(a, false).or_panic();
    c.wait_until("the old active passive again", SETTLE, || async {
        c.role(a).await.as_deref() == Some("passive")
    })
    .await
    .or_panic();
    for _ in 0..10 {
        let actives = c.actives().await;
        assert_eq!(actives, vec![b], "exactly one active after the heal");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_ledger_clean(&c).await;
    eprintln!(
        "timings: cut → node-{a} fenced after {fenced:?}; node-{b} active after {promoted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_etcd_member_the_active_talks_to_killed_interrupts_nothing() {
    let Some(mut opts) = options() else { return };
    // The killed member may be the Raft leader: renewals then wait for an election (about
    // 1–2 s with etcd's default 1 s election timeout). A lease must leave room for that
    // between the renewal at ttl/3 and the fence at ttl − safety_margin — as the default
    // 10 s / 3 s does (3.7 s); the other tests' 3 s / 1 s leaves 1 s, too little for this one.
    opts.lease_ttl = 8.0;
    opts.safety_margin = 2.0;
    let mut c = EtcdCluster::start(opts).await.or_panic();
    let a = steady(&c).await;
    let epoch = c.epoch(a).await;
    let signed_before = c.signed_by(a).await;
    // Every daemon lists member 0 first: the active renews its lease there. Two members keep
    // the quorum; the renewals move to the next endpoint well within the lease.
    c.kill_etcd_member(0);
    // Two lease TTLs: the active never fences, nobody else promotes.
    let watch = std::time::Instant::now();
    while watch.elapsed() < Duration::from_secs(16) {
        assert_eq!(
            c.actives().await,
            vec![a],
            "exactly node-{a} active after an etcd member died\n{}",
            c.describe().await
        );
        assert_eq!(c.epoch(a).await, epoch, "the epoch moved");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        last_at(&c, a, "self_fenced").await.is_none(),
        "node-{a} fenced itself although two etcd members answered"
    );
    assert!(
        c.signed_by(a).await > signed_before + 10,
        "node-{a} kept signing"
    );
    assert_ledger_clean(&c).await;
}
