//! The operator's commands in etcd mode, against three real SyncGuard daemons coordinating
//! through a real three-member etcd on a devnet: `status` and `switchover` (there and back,
//! run on the active, on the target and on a third node, with the per-step timings),
//! fallback to the primary site (node-0) after its grace period, `takeover` of a holder whose
//! host died with its lease still alive, `unfence` of a node fenced by a cut from etcd, and
//! the cluster-wide `pause` / `resume`. Every scenario ends with the ledger: no double sign,
//! no two nodes signing one height (S1).
//!
//! Needs `/usr/bin/etcd` (`scripts/etcd.sh install`) and a syncguard built with
//! `--features syncguard-coordination/etcd`; without either the tests print `SKIPPED: …`,
//! and fail when `CI` is set.

mod common;

use std::time::{Duration, Instant};

use common::etcd::{
    assert_ledger_clean, events_text as events, options, steady, wait_other_active, FAILOVER,
    SETTLE,
};
use common::OrPanic;
use syncguard_devnet::etcd_cluster::EtcdCluster;

fn id(i: usize) -> String {
    format!("node-{i}")
}

/// Waits until daemon `i` shows `role`.
async fn wait_role(c: &EtcdCluster, i: usize, role: &str, bound: Duration) {
    c.wait_until(&format!("node-{i} {role}"), bound, || async {
        c.role(i).await.as_deref() == Some(role)
    })
    .await
    .or_panic();
}

/// The target's height as it published it in etcd trails the holder's by up to a round or
/// two (more on a loaded host): the checks then refuse with "is behind". Waits, as an
/// operator would, until the dry run on `on` no longer says so.
async fn until_not_behind(c: &EtcdCluster, on: usize, to: usize) {
    let target = id(to);
    let deadline = Instant::now() + SETTLE;
    loop {
        let (code, out) = c.cli(on, &["switchover", "--to", &target]).await.or_panic();
        if code == 0 || !out.contains("is behind") || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `syncguard switchover --to <to> --yes` run on daemon `on`; returns the CLI's output and
/// how long after the command the chain first showed `to` signing.
async fn switchover(c: &EtcdCluster, on: usize, to: usize) -> (String, Duration) {
    until_not_behind(c, on, to).await;
    let before = c.signed_by(to).await;
    let epoch = c.epoch(c.actives().await[0]).await.unwrap_or(0);
    let started = Instant::now();
    let target = id(to);
    let args = ["switchover", "--to", &target, "--yes"];
    let run = c.cli(on, &args);
    let first_signature = async {
        loop {
            if c.signed_by(to).await > before {
                return started.elapsed();
            }
            if started.elapsed() > SETTLE {
                return Duration::MAX;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (out, signed_after) = tokio::join!(run, first_signature);
    let (code, out) = out.or_panic();
    assert_eq!(
        code,
        0,
        "switchover to {target} run on node-{on}: {out}\n{}",
        c.describe().await
    );
    // Shown with --nocapture: the operator's view of a switchover in etcd mode.
    println!("{out}");
    for want in [
        format!("start on {target}:"),
        "stop on node-".to_string(),
        "total".to_string(),
    ] {
        assert!(out.contains(&want), "step timings ({want}): {out}");
    }
    assert!(
        !out.contains("no step table available"),
        "both step tables: {out}"
    );
    assert_eq!(c.actives().await, vec![to], "{}", c.describe().await);
    assert!(
        c.epoch(to).await.unwrap_or(0) > epoch,
        "the new holder's epoch grows: {epoch} → {:?}",
        c.epoch(to).await
    );
    assert!(signed_after < SETTLE, "{target} never signed");
    (out, signed_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_etcd_switchover_there_and_back_run_on_any_node() {
    let Some(opts) = options() else { return };
    let c = EtcdCluster::start(opts).await.or_panic();
    let a = steady(&c).await;
    let (b, third) = ((a + 1) % 3, (a + 2) % 3);
    // Every node in the table, whichever node it runs on.
    c.wait_until("every node publishes its status", SETTLE, || async {
        let (_, out) = c.cli(b, &["status"]).await.unwrap_or_default();
        (0..3).all(|i| out.contains(&id(i)))
    })
    .await
    .or_panic();
    let (code, out) = c.cli(b, &["status"]).await.or_panic();
    println!("{out}");
    let s = c.get(b, "/status").await.expect("status");
    assert_eq!(s["coordination"], "etcd", "{s}");
    assert_eq!(s["etcd"]["holder"], id(a), "{s}");
    let members = s["members"].as_array().cloned().unwrap_or_default();
    assert_eq!(members.len(), 3, "{s}");
    assert!(members.iter().all(|m| m["api"].is_string()), "{s}");
    assert_eq!(code, 0, "one active and healthy: {out}");
    assert!(
        out.contains(&format!("etcd: node-{a} holds the lock at epoch")),
        "{out}"
    );
    for i in 0..3 {
        let row = out.lines().find(|l| l.starts_with(&id(i))).unwrap_or("");
        let role = if i == a { "active" } else { "passive" };
        assert!(
            row.contains(role) && row.contains("healthy"),
            "{row}\n{out}"
        );
    }
    // Dry run on the active: the plan, its checks, nothing changes.
    until_not_behind(&c, a, b).await;
    let (code, out) = c.cli(a, &["switchover", "--to", &id(b)]).await.or_panic();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("dry run") && out.contains(&format!("becomes active:  node-{b}")),
        "{out}"
    );
    assert_eq!(c.actives().await, vec![a]);

    // There (run on the active), back (run on the target), and once more from a third node.
    let mut firsts = Vec::new();
    for (on, to) in [(a, b), (a, a), (third, b)] {
        let (_, first) = switchover(&c, on, to).await;
        firsts.push(first);
        c.wait_signing_by(to, SETTLE).await.or_panic();
    }
    firsts.sort();
    eprintln!(
        "timings: switchover, command → first signature of the new holder: {firsts:?} (p50 {:?})",
        firsts[firsts.len() / 2]
    );
    assert_ledger_clean(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_etcd_fallback_to_the_primary_after_its_grace_period() {
    let Some(mut opts) = options() else { return };
    opts.timings.fallback_grace_period = 3.0;
    let mut c = EtcdCluster::start(opts).await.or_panic();
    // node-0 is the primary site: whoever took the role first, it holds it after its grace.
    wait_role(&c, 0, "active", SETTLE + FAILOVER).await;
    c.wait_signing_by(0, SETTLE).await.or_panic();
    c.crash_host(0).await.or_panic();
    let b = wait_other_active(&c, &[0]).await;
    c.wait_signing_by(b, SETTLE).await.or_panic();
    let epoch = c.epoch(b).await.unwrap_or(0);
    // The host comes back: its daemon starts its node as a full node, and once it has been
    // healthy for the grace period it asks node-b (through etcd) for the role back.
    let back = Instant::now();
    c.restart_daemon(0).or_panic();
    wait_role(&c, 0, "active", SETTLE + FAILOVER).await;
    let fallback = back.elapsed();
    assert_eq!(c.actives().await, vec![0], "{}", c.describe().await);
    assert!(c.epoch(0).await.unwrap_or(0) > epoch);
    let ev = events(&c, 0).await;
    assert!(
        ev.contains("fallback: this primary node has been healthy"),
        "{ev}"
    );
    let ev = events(&c, b).await;
    assert!(ev.contains("the primary site, has been healthy"), "{ev}");
    c.wait_signing_by(0, SETTLE).await.or_panic();
    assert_ledger_clean(&c).await;
    eprintln!(
        "timings: primary's daemon restarted → node-0 active again after {fallback:?} (grace 3 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_etcd_takeover_of_a_dead_holder_whose_lease_lives_on() {
    let Some(mut opts) = options() else { return };
    // A long lease (an operator riding out etcd hiccups): after the holder's host dies, its
    // lock outlives it for up to 30 s. The takeover is the shortcut — never past the witness.
    opts.lease_ttl = 30.0;
    opts.safety_margin = 5.0;
    let mut c = EtcdCluster::start(opts).await.or_panic();
    let a = steady(&c).await;
    let (b, third) = ((a + 1) % 3, (a + 2) % 3);
    let epoch = c.epoch(a).await.unwrap_or(0);
    // Without --yes: only the explanation.
    let (code, out) = c.cli(b, &["takeover"]).await.or_panic();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("REMOVE the lock"), "{out}");
    // While the holder signs: refused by the witness, and nothing moved.
    let (code, out) = c.cli(b, &["takeover", "--yes"]).await.or_panic();
    assert_ne!(code, 0, "{out}\n{}", c.describe().await);
    assert!(out.contains("takeover refused"), "{out}");
    assert_eq!(c.actives().await, vec![a]);
    assert_eq!(c.epoch(a).await.unwrap_or(0), epoch);
    // The holder's host dies; its lease lives on in etcd.
    c.crash_host(a).await.or_panic();
    let crashed = Instant::now();
    // Asked again until it holds: at first the chain still shows the holder's last
    // signatures, and each refusal says so.
    for tries in 1.. {
        let (code, out) = c.cli(b, &["takeover", "--yes"]).await.or_panic();
        eprintln!("takeover try {tries}: exit {code}: {}", out.trim());
        if code == 0 {
            break;
        }
        assert!(out.contains("takeover refused"), "{out}");
        assert!(crashed.elapsed() < FAILOVER, "{}", c.describe().await);
    }
    let taken = crashed.elapsed();
    assert!(
        taken < Duration::from_secs(25),
        "the takeover came after the lease would have expired anyway ({taken:?})"
    );
    assert_eq!(c.actives().await, vec![b], "{}", c.describe().await);
    assert!(c.epoch(b).await.unwrap_or(0) > epoch);
    assert!(
        events(&c, b).await.contains("operator_takeover"),
        "{}",
        events(&c, b).await
    );
    c.wait_signing_by(b, SETTLE).await.or_panic();
    assert_ne!(c.role(third).await.as_deref(), Some("active"));
    assert_ledger_clean(&c).await;
    eprintln!("timings: holder's host crashed → takeover done on node-{b} after {taken:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_etcd_node_fenced_by_a_cut_is_unfenced_by_the_operator() {
    let Some(opts) = options() else { return };
    let c = EtcdCluster::start(opts).await.or_panic();
    let a = steady(&c).await;
    let (code, out) = c.cli(a, &["unfence"]).await.or_panic();
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("unfence ignored: this node is active"),
        "{out}"
    );
    // Cut from etcd, the active fences itself and stays fenced: no look at the lock can
    // show it the new holder.
    c.set_etcd_cut(a, true).or_panic();
    wait_role(&c, a, "fenced", FAILOVER).await;
    let b = wait_other_active(&c, &[a]).await;
    c.wait_signing_by(b, SETTLE).await.or_panic();
    assert_eq!(c.role(a).await.as_deref(), Some("fenced"));
    // The operator vouches for it: passive at once — still cut, it cannot take the lock.
    let (code, out) = c.cli(a, &["unfence"]).await.or_panic();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("unfenced by the operator"), "{out}");
    assert_eq!(c.role(a).await.as_deref(), Some("passive"));
    c.set_etcd_cut(a, false).or_panic();
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        assert_eq!(c.actives().await, vec![b], "{}", c.describe().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(c.role(a).await.as_deref(), Some("passive"));
    assert_ledger_clean(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_etcd_pause_on_one_node_holds_every_node_until_resume() {
    let Some(opts) = options() else { return };
    let mut c = EtcdCluster::start(opts).await.or_panic();
    let a = steady(&c).await;
    let (b, third) = ((a + 1) % 3, (a + 2) % 3);
    // Paused on a passive: etcd's pause key, followed by every node.
    let (code, out) = c.cli(b, &["pause"]).await.or_panic();
    assert_eq!(code, 0, "{out}\n{}", c.describe().await);
    for i in 0..3 {
        assert!(out.contains(&format!("node-{i}: paused")), "{out}");
        let s = c.get(i, "/status").await.expect("status");
        assert_eq!(s["node"]["paused"], true, "node-{i}: {s}");
        assert_eq!(s["node"]["role"], "paused", "node-{i}: {s}");
    }
    // The active's host dies: paused, nobody promotes — not after the lease, not ever.
    c.crash_host(a).await.or_panic();
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(8) {
        for i in [b, third] {
            let s = c.get(i, "/status").await.expect("status");
            assert_eq!(s["node"]["held_role"], "passive", "{}", c.describe().await);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ev = events(&c, b).await + &events(&c, third).await;
    assert!(
        ev.contains("paused"),
        "the passives say why they wait: {ev}"
    );
    // Resumed on the third node: every node that runs resumes, one of them takes over.
    let (code, out) = c.cli(third, &["resume"]).await.or_panic();
    assert_eq!(code, 0, "{out}\n{}", c.describe().await);
    for i in [b, third] {
        assert!(out.contains(&format!("node-{i}: resumed")), "{out}");
    }
    let n = wait_other_active(&c, &[a]).await;
    c.wait_signing_by(n, SETTLE).await.or_panic();
    assert_ledger_clean(&c).await;
}
