//! End-to-end fault scenarios (issue 7) on two real SyncGuard daemons over mutual TLS managing
//! the simulated Story nodes of a devnet whose ledger records every validator vote. Every
//! scenario ends with the ledger check: no double sign, no two nodes signing one height (S1).

mod common;

use std::time::{Duration, Instant};

use common::{assert_no_double_sign, events, options, start, OrPanic};
use syncguard_devnet::cluster::{Cluster, ClusterOptions};
use syncguard_devnet::{RpcFault, RpcFaultMode};

const SETTLE: Duration = Duration::from_secs(30);
const FAILOVER: Duration = Duration::from_secs(60);

/// A healthy cluster: node-a active and signing, node-b passive.
async fn steady(opts: ClusterOptions) -> Cluster {
    let c = start(opts).await;
    c.wait_roles(["active", "passive"], SETTLE).await.or_panic();
    c.wait_signing_by(0, SETTLE).await.or_panic();
    c
}

/// Watches both roles for `window`, asserting every 200 ms that node-a stays active and
/// node-b passive.
async fn hold_roles(c: &Cluster, window: Duration, why: &str) {
    let start = Instant::now();
    while start.elapsed() < window {
        let roles = [c.role(0).await, c.role(1).await];
        assert_eq!(
            [roles[0].as_deref(), roles[1].as_deref()],
            [Some("active"), Some("passive")],
            "{why}\n{}",
            c.describe().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_scenario_active_cut_off_then_healed_never_double_signs() {
    let c = steady(options()).await;
    let epoch_before = c.epoch(0).await.unwrap_or(0);
    // node-a's node is cut off: it sees no new block, its votes are held (it keeps voting at
    // its stuck height). node-a's SyncGuard still talks to node-b over the peer link.
    c.devnet.set_cut(0, true).await.expect("cut node a");
    // Observed: node-a's node goes stale (comet/evm block age over the stall bound, too few
    // peers); after retry_attempts failed rounds node-a stops its validator, swaps in the
    // placeholder key and hands the role to node-b over the peer link at epoch 2 (the cut
    // does not touch the daemons' link), ending `passive`. Either way node-a must have
    // fenced itself (`fenced` or `passive`) before node-b is active.
    c.wait_until(
        "node-b active after node-a is cut off",
        FAILOVER,
        || async { c.role(1).await.as_deref() == Some("active") },
    )
    .await
    .or_panic();
    let a_role = c.role(0).await;
    assert!(
        matches!(a_role.as_deref(), Some("fenced") | Some("passive")),
        "node-a fenced itself before node-b took the role: {a_role:?}\n{}",
        c.describe().await
    );
    assert!(c.epoch(1).await.unwrap_or(0) > epoch_before);
    println!(
        "cut: node-a {a_role:?} epoch {:?}, node-b active epoch {:?}",
        c.epoch(0).await,
        c.epoch(1).await
    );
    c.wait_signing_by(1, SETTLE).await.or_panic();
    // Heal: node-a's held votes (for heights it was stuck at) reach the ledger now.
    c.devnet.set_cut(0, false).await.expect("heal node a");
    // Let the held votes land and a few more blocks pass.
    let head = c.devnet.head().await.expect("head").height;
    c.devnet
        .wait_for_height(head + 10, SETTLE)
        .await
        .expect("chain goes on");
    let roles = [c.role(0).await, c.role(1).await];
    assert_eq!(
        roles
            .iter()
            .filter(|r| r.as_deref() == Some("active"))
            .count(),
        1,
        "exactly one active at the end: {roles:?}\n{}",
        c.describe().await
    );
    println!(
        "healed: roles {roles:?}, node-a events: {}",
        events(&c, 0).await
    );
    assert_no_double_sign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_scenario_chain_wide_halt_changes_nothing() {
    let c = steady(options()).await;
    let epochs = [c.epoch(0).await, c.epoch(1).await];
    c.devnet.halt().await.expect("halt");
    hold_roles(&c, Duration::from_secs(5), "a chain-wide halt moved a role").await;
    c.devnet.resume().await.expect("resume");
    hold_roles(&c, Duration::from_secs(3), "resume moved a role").await;
    assert_eq!([c.epoch(0).await, c.epoch(1).await], epochs, "epoch moved");
    c.wait_signing_by(0, SETTLE).await.or_panic();
    assert_no_double_sign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_scenario_flapping_health_on_the_active_does_not_hand_over() {
    let c = steady(options()).await;
    let epochs = [c.epoch(0).await, c.epoch(1).await];
    let bad = RpcFault {
        delay_ms: 0,
        mode: RpcFaultMode::Error,
    };
    let good = RpcFault {
        delay_ms: 0,
        mode: RpcFaultMode::Ok,
    };
    // Faulty for 0.4 s, fine for 0.4 s: shorter than retry_attempts (3) × 0.5 s rounds.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        c.devnet.set_rpc_fault(0, bad).await.expect("fault");
        tokio::time::sleep(Duration::from_millis(400)).await;
        c.devnet.set_rpc_fault(0, good).await.expect("unfault");
        let roles = [c.role(0).await, c.role(1).await];
        assert_eq!(
            [roles[0].as_deref(), roles[1].as_deref()],
            [Some("active"), Some("passive")],
            "flapping health moved a role\n{}",
            c.describe().await
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    hold_roles(&c, Duration::from_secs(2), "after the flapping").await;
    assert_eq!([c.epoch(0).await, c.epoch(1).await], epochs, "epoch moved");
    c.wait_signing_by(0, SETTLE).await.or_panic();
    assert_no_double_sign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_scenario_corrupt_state_file_on_the_passive_blocks_promotion() {
    let mut c = steady(options()).await;
    let state_file = c.devnet.host(1).expect("host b").state_file.clone();
    let good = std::fs::read(&state_file).expect("state of b");
    std::fs::write(&state_file, b"\x00\xffnot json {{{ garbage").expect("corrupt state of b");
    // node-b reads its state file in every health round: it turns unhealthy before anything
    // else happens, so when node-a dies it refuses up front, never starting a promotion.
    c.wait_until("node-b unhealthy", SETTLE, || async {
        c.healthy(1).await == Some(false)
    })
    .await
    .or_panic();
    c.crash_host(0).await.or_panic();
    let watch = Duration::from_secs(10);
    let start = Instant::now();
    while start.elapsed() < watch {
        let role = c.role(1).await;
        assert!(
            matches!(role.as_deref(), Some("passive") | None),
            "node-b moved towards the role over a state file it cannot read: {role:?}\n{}",
            c.describe().await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ev = events(&c, 1).await;
    assert!(
        ev.contains("not promoting: my own node is unhealthy") && ev.contains("not valid JSON"),
        "node-b says why it does not take the role: {ev}"
    );
    // The operator restores the file: node-b recovers and takes the role (node-a is gone,
    // the chain shows no signature).
    std::fs::write(&state_file, good).expect("restore state of b");
    c.wait_until(
        "node-b active after its state file is restored",
        FAILOVER,
        || async { c.role(1).await.as_deref() == Some("active") },
    )
    .await
    .or_panic();
    c.wait_signing_by(1, SETTLE).await.or_panic();
    assert_no_double_sign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_scenario_too_few_peers_on_the_active_hands_over() {
    let c = steady(options()).await;
    let epoch_before = c.epoch(0).await.unwrap_or(0);
    c.devnet.set_peers(0, 0).await.expect("peers of a");
    c.wait_roles(["passive", "active"], FAILOVER)
        .await
        .or_panic();
    c.wait_signing_by(1, SETTLE).await.or_panic();
    assert!(c.epoch(1).await.unwrap_or(0) > epoch_before);
    assert_no_double_sign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_scenario_only_the_peer_link_cut_moves_nothing() {
    let c = steady(options()).await;
    let epochs = [c.epoch(0).await, c.epoch(1).await];
    // Only the SyncGuard-to-SyncGuard link: both nodes still see the chain. node-b cannot
    // tell a dead node-a from a cut link, but the chain can: the validator keeps signing,
    // so node-b must not promote, and node-a (its node sees new blocks) must not fence.
    c.set_link_cut(true);
    c.wait_until("node-b notices the lost peer", SETTLE, || async {
        c.get(1, "/status")
            .await
            .and_then(|v| v.pointer("/peer/reachable").and_then(|r| r.as_bool()))
            == Some(false)
    })
    .await
    .or_panic();
    // node-b waits out the failover window and the time anything node-a may have started
    // needs to show on chain, then asks the chain: the validator signs, so it refuses. The
    // roles must hold the whole time.
    let start = Instant::now();
    loop {
        hold_roles(
            &c,
            Duration::from_millis(500),
            "a cut peer link moved a role",
        )
        .await;
        let ev = events(&c, 1).await;
        if ev.contains("still active somewhere") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node-b never said the chain shows the validator signing: {ev}"
        );
    }
    hold_roles(&c, Duration::from_secs(2), "a cut peer link moved a role").await;
    c.set_link_cut(false);
    hold_roles(&c, Duration::from_secs(2), "healing the link moved a role").await;
    assert_eq!([c.epoch(0).await, c.epoch(1).await], epochs, "epoch moved");
    c.wait_signing_by(0, SETTLE).await.or_panic();
    assert_no_double_sign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_scenario_disk_full_on_the_passive_blocks_promotion() {
    let mut c = steady(options()).await;
    // node-b's state directory (a 4 MiB tmpfs) has no free byte: it could not write the
    // start state, so it is unhealthy and must refuse the role when node-a dies.
    c.devnet.set_disk_full(1, true).expect("fill node-b's disk");
    c.wait_until("node-b unhealthy", SETTLE, || async {
        c.healthy(1).await == Some(false)
    })
    .await
    .or_panic();
    c.crash_host(0).await.or_panic();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        let role = c.role(1).await;
        assert!(
            matches!(role.as_deref(), Some("passive") | None),
            "node-b moved towards the role with a full disk: {role:?}\n{}",
            c.describe().await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ev = events(&c, 1).await;
    assert!(
        ev.contains("not promoting: my own node is unhealthy") && ev.contains("nearly) full"),
        "node-b says why: {ev}"
    );
    // Space is freed: node-b recovers and takes the role.
    c.devnet
        .set_disk_full(1, false)
        .expect("free node-b's disk");
    c.wait_until("node-b active once its disk has room", FAILOVER, || async {
        c.role(1).await.as_deref() == Some("active")
    })
    .await
    .or_panic();
    c.wait_signing_by(1, SETTLE).await.or_panic();
    assert_no_double_sign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_scenario_muted_active_with_the_peer_link_cut_fences_itself_silent() {
    let c = steady(options()).await;
    let epoch_before = c.epoch(0).await.unwrap_or(0);
    // The asymmetric cut: node-a's node follows the chain and signs, but its votes never
    // make a commit, and the daemons cannot reach each other. To node-b this is a dead
    // active (peer lost, the witness shows no signature); node-a must see its own
    // signatures missing from the commits and fence itself (`self_fenced`, `silent`) before
    // node-b can promote.
    c.set_muted(0, true).await.or_panic();
    c.set_link_cut(true);
    let cut_at = Instant::now();
    c.wait_until("node-b active", FAILOVER, || async {
        c.role(1).await.as_deref() == Some("active")
    })
    .await
    .or_panic();
    let b_active_after = cut_at.elapsed();
    c.wait_signing_by(1, SETTLE).await.or_panic();
    let a_role = c.role(0).await;
    // Heal the link; node-a is still muted, so whatever it signs from here is in the
    // ledger only (it must have fenced itself long before node-b started).
    c.set_link_cut(false);
    let a_stood_down = c
        .wait_until("node-a not active", SETTLE, || async {
            c.role(0).await.as_deref() != Some("active")
        })
        .await
        .is_ok();
    let _ = c.set_muted(0, false).await;
    let head = c.devnet.head().await.expect("head");
    c.devnet
        .wait_for_height(head.height + 3, SETTLE)
        .await
        .expect("chain goes on");

    // The measurement, printed before any verdict: how long the key was live on both nodes.
    let l = c.ledger().await.or_panic();
    let per = |n: &str| l.per_node.get(n).cloned().unwrap_or_default();
    let (a, b) = (per("host-a"), per("host-b"));
    let b_first = b.first_height.unwrap_or(0);
    let a_last = a.last_height.unwrap_or(0);
    let both = (a_last + 1).saturating_sub(b_first);
    println!(
        "mute + link cut: node-b active {:.1} s after the cut, node-a then {a_role:?} (stood \
         down after the heal: {a_stood_down}); ledger: {} double signs ({} equivocations), {} \
         S1 violations; host-a voted {:?}..={a_last} ({} muted votes), host-b from {b_first}: \
         the key signed on both nodes at {both} height(s) (~{:.1} s of {} ms blocks); first \
         offenses: {}",
        b_active_after.as_secs_f64(),
        l.double_signs,
        l.equivocations,
        l.s1_violations,
        a.first_height,
        a.muted_votes,
        both as f64 * head.block_time_ms as f64 / 1000.0,
        head.block_time_ms,
        serde_json::to_string(&l.offenses.iter().take(3).collect::<Vec<_>>()).unwrap_or_default(),
    );
    let fenced = c.events(0).await.into_iter().find(|e| {
        e["tag"].as_str() == Some("self_fenced") && e["reason"].as_str() == Some("silent")
    });
    println!("node-a's silent self-fence: {fenced:?}");
    assert_no_double_sign(&c).await;
    assert!(
        fenced.is_some(),
        "node-a recorded no self_fenced/silent event: {}",
        events(&c, 0).await
    );
    assert!(c.epoch(1).await.unwrap_or(0) > epoch_before);
}
