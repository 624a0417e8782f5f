//! The etcd backend against a real three-member etcd cluster on loopback (Debian
//! etcd-server; installed by `scripts/etcd.sh install` when missing, skipped with a message
//! when it cannot be, a failure under `CI`). Each test starts its own cluster and kills it on
//! drop. Run: `cargo test -p syncguard-coordination --features etcd`. The operator features
//! (handover, requests, pause, takeover) run the cases of `cases/`, shared with the memory
//! backend's tests.

mod cases;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{Cluster, Proxy};
use syncguard_config::EtcdConfig;
use syncguard_coordination::{
    keep_lease, AcquireOutcome, CoordError, EtcdBackend, EtcdOptions, FenceReason, LeaseKeeper,
    LeaseTiming, LockBackend,
};

fn config(endpoints: Vec<String>, ttl: f64, margin: f64) -> EtcdConfig {
    EtcdConfig {
        endpoints,
        prefix: PREFIX.into(),
        lease_ttl: ttl,
        safety_margin: margin,
        tls: None,
    }
}

async fn backend(cfg: &EtcdConfig) -> EtcdBackend {
    let ttl = Duration::from_secs_f64(cfg.lease_ttl);
    EtcdBackend::connect(cfg, EtcdOptions::for_ttl(ttl))
        .await
        .expect("etcd backend")
}

use cases::{acquired, h};

/// Three nodes on `cluster`, each listing the members in its own order (so they talk to
/// different members).
async fn nodes(cluster: &Cluster) -> cases::Nodes {
    let eps = cluster.endpoints();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let mut e = eps.clone();
        e.rotate_left(i);
        nodes.push(Arc::new(backend(&config(e, 5.0, 1.5)).await) as Arc<dyn LockBackend>);
    }
    match nodes.try_into() {
        Ok(n) => n,
        Err(_) => unreachable!("three nodes"),
    }
}

/// etcd's smallest lease (1.5 s with the default election timeout, rounded up).
const SHORT: Duration = Duration::from_secs(2);

#[tokio::test]
async fn coordination_etcd_handover_only_the_target_acquires_at_the_final_state() {
    let bin = etcd_or_skip!();
    let cluster = Cluster::start(&bin).await;
    cases::handover(&nodes(&cluster).await, SHORT).await;
}

#[tokio::test]
async fn coordination_etcd_handover_race_only_the_target_wins() {
    let bin = etcd_or_skip!();
    let cluster = Cluster::start(&bin).await;
    cases::handover_race(&nodes(&cluster).await, SHORT).await;
}

#[tokio::test]
async fn coordination_etcd_requests_replace_each_other_and_expire() {
    let bin = etcd_or_skip!();
    let cluster = Cluster::start(&bin).await;
    cases::requests(&nodes(&cluster).await, SHORT, Duration::from_secs(6)).await;
}

#[tokio::test]
async fn coordination_etcd_pause_is_seen_by_every_node() {
    let bin = etcd_or_skip!();
    let cluster = Cluster::start(&bin).await;
    cases::pause(&nodes(&cluster).await).await;
}

#[tokio::test]
async fn coordination_etcd_force_release_removes_only_the_named_epoch() {
    let bin = etcd_or_skip!();
    let cluster = Cluster::start(&bin).await;
    cases::force_release(&nodes(&cluster).await).await;
}

const PREFIX: &str = "/syncguard-test";

#[tokio::test]
async fn coordination_etcd_members_seen_sorted_expire_and_bad_values_skipped() {
    let bin = etcd_or_skip!();
    let cluster = Cluster::start(&bin).await;
    let raw = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .expect("a plain etcd client");
    let write_raw: cases::RawMemberWriter = Box::new(move |key, value| {
        let mut raw = raw.clone();
        Box::pin(async move {
            raw.put(format!("{PREFIX}/members/{key}"), value, None)
                .await
                .expect("raw put");
        })
    });
    cases::members(
        &nodes(&cluster).await,
        SHORT,
        Duration::from_secs(30),
        write_raw,
    )
    .await;
}

type Requests = std::collections::BTreeMap<String, u64>;

/// Asserts that the cluster received exactly `expected` gRPC requests since `seen` (then
/// `seen` is now).
async fn expect_requests(
    cluster: &Cluster,
    seen: &mut Requests,
    expected: &[(&str, u64)],
    what: &str,
) {
    let now = support::grpc_requests(cluster).await;
    let got = support::requests_between(seen, &now);
    println!("{what}: {got:?}");
    let expected: Requests = expected.iter().map(|(m, n)| (m.to_string(), *n)).collect();
    assert_eq!(got, expected, "{what}");
    *seen = now;
}

/// The round trips of a member put, counted by etcd itself (its gRPC request counters):
/// the first put grants and puts, every later one keeps the lease alive and puts, one after
/// the lease expired finds it gone and grants a new one; a view is one range read.
#[tokio::test]
async fn coordination_etcd_member_put_is_two_requests() {
    let bin = etcd_or_skip!();
    let cluster = Cluster::start(&bin).await;
    let a = backend(&config(cluster.endpoints(), 5.0, 1.5)).await;
    let status = serde_json::json!({"role": "passive", "height": 1});
    let mut seen = support::grpc_requests(&cluster).await;

    a.put_member("a", &status, SHORT).await.unwrap();
    expect_requests(
        &cluster,
        &mut seen,
        &[("LeaseGrant", 1), ("Put", 1)],
        "first put",
    )
    .await;
    for _ in 0..5 {
        a.put_member("a", &status, SHORT).await.unwrap();
    }
    expect_requests(
        &cluster,
        &mut seen,
        &[("LeaseKeepAlive", 5), ("Put", 5)],
        "five puts on the live lease",
    )
    .await;
    a.view().await.unwrap();
    expect_requests(&cluster, &mut seen, &[("Range", 1)], "a view").await;
    // Nobody refreshes it: the lease (and the entry) expire.
    cases::poll_until("the entry expires", SHORT * 4, || async {
        a.view().await.unwrap().members.is_empty().then_some(())
    })
    .await;
    seen = support::grpc_requests(&cluster).await;
    a.put_member("a", &status, SHORT).await.unwrap();
    expect_requests(
        &cluster,
        &mut seen,
        &[("LeaseKeepAlive", 1), ("LeaseGrant", 1), ("Put", 1)],
        "a put after the expiry",
    )
    .await;
    a.put_member("a", &status, Duration::from_secs(6))
        .await
        .unwrap();
    expect_requests(
        &cluster,
        &mut seen,
        &[("LeaseGrant", 1), ("Put", 1)],
        "a put with another ttl",
    )
    .await;
    a.remove_member("a").await.unwrap();
    expect_requests(
        &cluster,
        &mut seen,
        &[("DeleteRange", 1), ("LeaseRevoke", 1)],
        "a clean removal",
    )
    .await;
    assert!(a.view().await.unwrap().members.is_empty());
}

#[tokio::test]
async fn coordination_etcd_acquire_only_when_absent_and_watermark_rules() {
    let bin = etcd_or_skip!();
    let cluster = Cluster::start(&bin).await;
    let cfg = config(cluster.endpoints(), 5.0, 1.5);
    let (a, b) = (backend(&cfg).await, backend(&cfg).await);

    assert_eq!(a.current_holder().await.unwrap(), None);
    assert_eq!(a.get_watermark().await.unwrap(), None);
    let la = acquired(a.acquire("a", 0).await.unwrap());
    assert_eq!(la.ttl, Duration::from_secs(5));
    match b.acquire("b", 1).await.unwrap() {
        AcquireOutcome::Held(hd) => {
            assert_eq!(
                (hd.node_id.as_str(), hd.priority, hd.epoch),
                ("a", 0, la.epoch)
            )
        }
        other => panic!("{other:?}"),
    }
    // A second try by the holder itself is refused too: one key, one lease.
    assert!(matches!(
        a.acquire("a", 0).await.unwrap(),
        AcquireOutcome::Held(_)
    ));

    // Watermark: raised by the holder, never lowered.
    assert_eq!(a.put_watermark(&la, h(10)).await.unwrap().hrs, h(10));
    assert_eq!(a.put_watermark(&la, h(4)).await.unwrap().hrs, h(10));
    let w = b.get_watermark().await.unwrap().unwrap();
    assert_eq!((w.hrs, w.epoch), (h(10), la.epoch));

    a.release(&la).await.unwrap();
    assert_eq!(b.current_holder().await.unwrap(), None);
    let lb = acquired(b.acquire("b", 1).await.unwrap());
    assert!(lb.epoch > la.epoch, "{} then {}", la.epoch, lb.epoch);
    // The deposed holder can neither raise nor lower it.
    for height in [2, 99] {
        match a.put_watermark(&la, h(height)).await {
            Err(CoordError::NotHolder { epoch, holder }) => {
                assert_eq!(epoch, la.epoch);
                assert_eq!(holder.unwrap().node_id, "b");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(b.get_watermark().await.unwrap().unwrap().hrs, h(10));
    // Renewing a released lease says so.
    assert!(matches!(
        a.renew(&la).await,
        Err(CoordError::LeaseLost { .. })
    ));
    assert_eq!(b.put_watermark(&lb, h(11)).await.unwrap().epoch, lb.epoch);
}

#[tokio::test]
async fn coordination_etcd_crashed_holder_lease_expires_then_another_acquires() {
    let bin = etcd_or_skip!();
    let cluster = Cluster::start(&bin).await;
    let cfg = config(cluster.endpoints(), 3.0, 1.0);
    let (a, b) = (backend(&cfg).await, backend(&cfg).await);
    let sent = Instant::now();
    let la = acquired(a.acquire("a", 0).await.unwrap());
    drop(a); // crashed: no more renewals
    let acquired_at = loop {
        if let AcquireOutcome::Acquired(lb) = b.acquire("b", 1).await.unwrap() {
            assert!(lb.epoch > la.epoch);
            break sent.elapsed();
        }
        assert!(
            sent.elapsed() < Duration::from_secs(20),
            "lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Never before the lease's time-to-live counted from the acquiring request's send.
    assert!(
        acquired_at >= Duration::from_secs(3),
        "acquired after {acquired_at:?}"
    );
}

#[tokio::test]
async fn coordination_etcd_member_the_holder_talks_to_killed_no_interruption() {
    let bin = etcd_or_skip!();
    let mut cluster = Cluster::start(&bin).await;
    // The defaults (10 s / 3 s): an etcd leader election fits in the renewal slack.
    let cfg = config(cluster.endpoints(), 10.0, 3.0);
    let timing = LeaseTiming::from_config(&cfg).unwrap();
    let a = Arc::new(backend(&cfg).await);
    let b = backend(&cfg).await;
    let origin = tokio::time::Instant::now();
    let la = acquired(a.acquire("a", 0).await.unwrap());
    let mut keeper = LeaseKeeper::acquired(timing, Duration::ZERO, la.ttl);
    let (a2, la2) = (a.clone(), la.clone());
    let holder = tokio::spawn(async move {
        let fenced = keep_lease(a2.as_ref(), &la2, &mut keeper, origin).await;
        (fenced, keeper)
    });
    tokio::time::sleep(Duration::from_secs(4)).await; // one renewal done
    let talked_to = a.current_endpoint().to_string();
    cluster.kill(&talked_to);
    // Three more renewal periods and more.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(
        !holder.is_finished(),
        "the holder fenced: {:?}",
        holder.await
    );
    holder.abort();
    assert_ne!(
        a.current_endpoint(),
        talked_to,
        "renewals moved to another member"
    );
    let hd = b.current_holder().await.unwrap().unwrap();
    assert_eq!((hd.node_id.as_str(), hd.epoch), ("a", la.epoch));
    // And the lease is still renewable.
    a.renew(&la).await.unwrap();
}

#[tokio::test]
async fn coordination_etcd_cut_off_holder_fences_before_the_other_acquires() {
    let bin = etcd_or_skip!();
    let cluster = Cluster::start(&bin).await;
    let (ttl, margin) = (3.0, 1.0);
    let mut proxies = Vec::new();
    for i in 0..3 {
        proxies.push(Proxy::start(cluster.addr(i)).await);
    }
    let cfg_a = config(proxies.iter().map(Proxy::url).collect(), ttl, margin);
    let cfg_b = config(cluster.endpoints(), ttl, margin);
    let timing = LeaseTiming::from_config(&cfg_a).unwrap();
    let a = Arc::new(backend(&cfg_a).await);
    let b = backend(&cfg_b).await;

    let origin = tokio::time::Instant::now();
    let la = acquired(a.acquire("a", 0).await.unwrap());
    let mut keeper = LeaseKeeper::acquired(timing, Duration::ZERO, la.ttl);
    let (a2, la2) = (a.clone(), la.clone());
    let holder =
        tokio::spawn(async move { keep_lease(a2.as_ref(), &la2, &mut keeper, origin).await });
    tokio::time::sleep(Duration::from_millis(2_500)).await; // renewed at least once
    for p in &proxies {
        p.cut();
    }
    let cut_at = origin.elapsed();

    // The other node tries every 20 ms, recording the instant its acquire returned.
    let b_acquired_at = loop {
        if let AcquireOutcome::Acquired(lb) = b.acquire("b", 1).await.unwrap() {
            assert!(lb.epoch > la.epoch);
            break origin.elapsed();
        }
        assert!(origin.elapsed() < Duration::from_secs(30), "never acquired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (why, fenced_at) = holder.await.unwrap();
    eprintln!(
        "cut at {cut_at:?}, holder fenced at {fenced_at:?}, other acquired at {b_acquired_at:?}"
    );
    assert!(
        matches!(why, FenceReason::NotRenewed { .. }),
        "fenced because {why:?}"
    );
    // Self-fence first, then promotion, by at least (about) the safety margin: the holder's
    // signing interval [0, fenced_at] and the other's [b_acquired_at, ..) never overlap.
    assert!(
        fenced_at > cut_at,
        "fenced at {fenced_at:?} before the cut at {cut_at:?}"
    );
    assert!(
        fenced_at + Duration::from_secs_f64(margin) - Duration::from_millis(50) <= b_acquired_at,
        "holder fenced at {fenced_at:?}, other acquired at {b_acquired_at:?}"
    );
    // The deposed epoch cannot touch the watermark, whichever member it reaches.
    drop(proxies);
    assert!(matches!(
        b.put_watermark(&la, h(5)).await,
        Err(CoordError::NotHolder { .. })
    ));
}

#[tokio::test]
async fn coordination_etcd_three_racers_one_acquires() {
    let bin = etcd_or_skip!();
    let cluster = Cluster::start(&bin).await;
    let eps = cluster.endpoints();
    let mut racers = Vec::new();
    for i in 0..3 {
        // Each node lists the members in its own order, so they hit different members.
        let mut e = eps.clone();
        e.rotate_left(i);
        racers.push(Arc::new(backend(&config(e, 5.0, 1.5)).await));
    }
    let mut last_epoch = 0;
    for round in 0..5 {
        let barrier = Arc::new(tokio::sync::Barrier::new(3));
        let tasks: Vec<_> = racers
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (r, barrier) = (r.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    r.acquire(&format!("n{i}"), i as u32).await.unwrap()
                })
            })
            .collect();
        let mut leases = Vec::new();
        let mut held = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                AcquireOutcome::Acquired(l) => leases.push(l),
                AcquireOutcome::Held(hd) => held.push(hd),
                AcquireOutcome::HandoverPending(p) => panic!("no handover was made: {p:?}"),
            }
        }
        assert_eq!(leases.len(), 1, "round {round}: {leases:?}");
        let l = &leases[0];
        assert!(held
            .iter()
            .all(|hd| hd.epoch == l.epoch && hd.node_id == l.node_id));
        assert!(l.epoch > last_epoch);
        last_epoch = l.epoch;
        let winner = l.node_id[1..].parse::<usize>().unwrap();
        racers[winner].release(l).await.unwrap();
    }
}
