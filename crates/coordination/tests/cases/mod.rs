//! The operator features of the lock (planned handover, requests, cluster-wide pause,
//! takeover), as cases run against both backends: `memory_backend.rs` on tokio's paused
//! clock, `etcd_cluster.rs` on a real etcd. Time is tokio's either way: every wait is a
//! bounded poll of the store (`tokio::time::sleep` auto-advances a paused clock).

#![allow(dead_code)] // each test binary uses the cases it runs

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use syncguard_coordination::{
    AcquireOutcome, ClusterView, CoordError, Handover, Lease, LockBackend, RequestKind,
    MAX_MEMBER_STATUS_BYTES,
};
use syncguard_validator::{Hrs, Step};
use tokio::time::Instant;

/// Three nodes' handles on one store: `a`, `b`, `c` (node ids `"a"`, `"b"`, `"c"`).
pub type Nodes = [Arc<dyn LockBackend>; 3];

pub fn h(height: i64) -> Hrs {
    Hrs::new(height, 0, Step::Precommit)
}

pub fn acquired(o: AcquireOutcome) -> Lease {
    match o {
        AcquireOutcome::Acquired(l) => l,
        other => panic!("expected to acquire, got {other:?}"),
    }
}

/// Calls `f` every 50 ms until it answers `Some`, at most for `limit`; the answer and the
/// time it took.
pub async fn poll_until<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return (v, start.elapsed());
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ttl of a handover or request lease, whole seconds: etcd rounds up and grants at
/// least its minimum (2 s with the default election timeout).
fn limit_for(ttl: Duration) -> Duration {
    ttl * 3 + Duration::from_secs(5)
}

/// Planned handover a → b: one transaction (watermark raised, handover key, leader key
/// gone, old lease revoked); only b may acquire while it lives, and b's lease carries it; a
/// deposed lease can hand nothing over; a lower final state never lowers the watermark; a
/// handover nobody picks up expires, then anybody may acquire.
pub async fn handover(n: &Nodes, ttl: Duration) {
    let [a, b, c] = n;
    let la = acquired(a.acquire("a", 0).await.unwrap());
    a.put_watermark(&la, h(10)).await.unwrap();
    let rev_before = a.view().await.unwrap().revision;

    assert!(a.hand_over(&la, "b", Some(h(20)), ttl).await.unwrap());
    let expected = Handover {
        from: "a".into(),
        to: "b".into(),
        from_epoch: la.epoch,
        final_state: Some(h(20)),
    };
    for node in n {
        let v = node.view().await.unwrap();
        assert!(
            v.revision > rev_before,
            "{} then {}",
            rev_before,
            v.revision
        );
        assert_eq!(v.holder, None);
        assert_eq!(v.handover.as_ref(), Some(&expected));
        let w = v.watermark.expect("watermark");
        assert_eq!(
            (w.hrs, w.epoch),
            (h(20), la.epoch),
            "raised to the final state"
        );
        assert_eq!(node.current_holder().await.unwrap(), None);
    }
    // The old lease went with it.
    assert!(matches!(
        a.renew(&la).await,
        Err(CoordError::LeaseLost { .. })
    ));
    // A third node, and the old holder itself: the role is being handed to b.
    for (node, id) in [(c, "c"), (a, "a")] {
        match node.acquire(id, 0).await.unwrap() {
            AcquireOutcome::HandoverPending(p) => assert_eq!(p, expected),
            other => panic!("{id}: {other:?}"),
        }
    }
    // The deposed lease cannot hand over again: false, nothing changed.
    let before = c.view().await.unwrap();
    assert!(!a.hand_over(&la, "c", Some(h(99)), ttl).await.unwrap());
    assert_eq!(c.view().await.unwrap(), before);

    // The target acquires and consumes the handover in the same transaction.
    let lb = acquired(b.acquire("b", 1).await.unwrap());
    assert!(lb.epoch > la.epoch, "{} then {}", la.epoch, lb.epoch);
    assert_eq!(
        lb.handover.as_ref(),
        Some(&expected),
        "the final state to fence at"
    );
    let v = c.view().await.unwrap();
    assert_eq!(v.handover, None);
    assert_eq!(v.holder, Some(lb.holder()));
    // A deposed holder's hand_over while another holds the lock: false, nothing changed.
    let before = c.view().await.unwrap();
    assert!(!a.hand_over(&la, "c", Some(h(99)), ttl).await.unwrap());
    assert_eq!(c.view().await.unwrap(), before);

    // b hands over to c with a lower final state: the watermark stays.
    let sent = Instant::now();
    assert!(b.hand_over(&lb, "c", Some(h(5)), ttl).await.unwrap());
    let v = a.view().await.unwrap();
    let w = v.watermark.expect("watermark");
    assert_eq!((w.hrs, w.epoch), (h(20), la.epoch), "never lowered");
    assert_eq!(
        v.handover.map(|p| (p.to, p.final_state)),
        Some(("c".into(), Some(h(5))))
    );
    // c never comes: the handover expires by itself, then a may take the lock.
    let a2 = a.clone();
    let (la2, _) = poll_until("the unclaimed handover expires", limit_for(ttl), || {
        let a2 = a2.clone();
        async move {
            match a2.acquire("a", 0).await.unwrap() {
                AcquireOutcome::Acquired(l) => Some(l),
                AcquireOutcome::HandoverPending(p) => {
                    assert_eq!(p.to, "c");
                    None
                }
                AcquireOutcome::Held(hd) => panic!("held by {hd:?}"),
            }
        }
    })
    .await;
    let after = sent.elapsed();
    assert!(
        after >= ttl,
        "acquired {after:?} after the handover of {ttl:?}"
    );
    assert_eq!(la2.handover, None);
    assert!(la2.epoch > lb.epoch);
    let v = b.view().await.unwrap();
    assert_eq!((v.holder, v.handover), (Some(la2.holder()), None));
}

/// A handover to b, then all three race: b acquires, the others are told who it is for (or
/// that b holds it).
pub async fn handover_race(n: &Nodes, ttl: Duration) {
    let la = acquired(n[0].acquire("a", 0).await.unwrap());
    assert!(n[0].hand_over(&la, "b", None, ttl).await.unwrap());
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let tasks: Vec<_> = n
        .iter()
        .zip(["a", "b", "c"])
        .map(|(node, id)| {
            let (node, barrier) = (node.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                (id, node.acquire(id, 0).await.unwrap())
            })
        })
        .collect();
    for t in tasks {
        match t.await.unwrap() {
            ("b", AcquireOutcome::Acquired(l)) => {
                assert_eq!(
                    l.handover.map(|p| (p.from, p.final_state)),
                    Some(("a".into(), None))
                )
            }
            (_, AcquireOutcome::HandoverPending(p)) => assert_eq!(p.to, "b"),
            (_, AcquireOutcome::Held(hd)) => assert_eq!(hd.node_id, "b"),
            (id, other) => panic!("{id}: {other:?}"),
        }
    }
    assert_eq!(n[2].current_holder().await.unwrap().unwrap().node_id, "b");
}

/// Requests: a newer one replaces the older (whoever posted it), only the poster clears its
/// own, the replaced one's lease expiring takes nothing along, and a request expires by
/// itself. `short` < `long`, both whole seconds.
pub async fn requests(n: &Nodes, short: Duration, long: Duration) {
    let [a, b, c] = n;
    assert_eq!(a.view().await.unwrap().request, None);
    let t0 = Instant::now();
    b.put_request("b", RequestKind::Switchover, short)
        .await
        .unwrap();
    for node in n {
        let r = node.view().await.unwrap().request.expect("b's request");
        assert_eq!((r.from.as_str(), r.kind), ("b", RequestKind::Switchover));
        assert!(r.at_unix_ms > 0);
    }
    c.put_request("c", RequestKind::Fallback, long)
        .await
        .unwrap();
    let seen = |r: Option<syncguard_coordination::Request>| r.map(|r| (r.from, r.kind));
    let c_request = Some(("c".to_string(), RequestKind::Fallback));
    assert_eq!(seen(a.view().await.unwrap().request), c_request);
    // Not b's any more: b cannot clear it.
    assert!(!b.clear_request("b").await.unwrap());
    assert_eq!(seen(b.view().await.unwrap().request), c_request);
    // b's lease runs out: it carried b's request, which was replaced; c's stays.
    tokio::time::sleep_until(t0 + short + Duration::from_secs(1)).await;
    assert!(t0.elapsed() < long, "too slow to tell the two leases apart");
    assert_eq!(seen(a.view().await.unwrap().request), c_request);
    assert!(c.clear_request("c").await.unwrap());
    assert_eq!(a.view().await.unwrap().request, None);
    assert!(!c.clear_request("c").await.unwrap());

    // Nobody clears it: it expires by itself.
    let sent = Instant::now();
    b.put_request("b", RequestKind::Fallback, short)
        .await
        .unwrap();
    let c2 = c.clone();
    let (_, took) = poll_until("the request expires", limit_for(short), || {
        let c2 = c2.clone();
        async move { c2.view().await.unwrap().request.is_none().then_some(()) }
    })
    .await;
    let after = sent.elapsed();
    assert!(
        after >= short,
        "expired {after:?} (poll {took:?}) after a ttl of {short:?}"
    );
}

/// The pause is one key every node sees; the last to set it is named; resume deletes it,
/// and it does not go with any lease.
pub async fn pause(n: &Nodes) {
    let [a, b, c] = n;
    for node in n {
        assert_eq!(node.view().await.unwrap().paused, None);
    }
    a.set_paused("a", true).await.unwrap();
    for node in n {
        let p = node.view().await.unwrap().paused.expect("paused");
        assert_eq!(p.by, "a");
        assert!(p.at_unix_ms > 0);
    }
    // A holder coming and going (its lease revoked) leaves the pause alone.
    let lb = acquired(b.acquire("b", 1).await.unwrap());
    b.release(&lb).await.unwrap();
    b.set_paused("b", true).await.unwrap();
    assert_eq!(
        c.view().await.unwrap().paused.map(|p| p.by),
        Some("b".into())
    );
    c.set_paused("c", false).await.unwrap();
    for node in n {
        assert_eq!(node.view().await.unwrap().paused, None);
    }
    // Resuming twice is no error.
    a.set_paused("a", false).await.unwrap();
}

/// Takeover: only the named epoch is removed (its lease revoked); a newer holder never.
pub async fn force_release(n: &Nodes) {
    let [a, b, c] = n;
    assert!(!c.force_release(1).await.unwrap(), "nobody holds it");
    let la = acquired(a.acquire("a", 0).await.unwrap());
    for wrong in [0, la.epoch - 1, la.epoch + 1] {
        assert!(!c.force_release(wrong).await.unwrap(), "epoch {wrong}");
    }
    assert_eq!(b.current_holder().await.unwrap(), Some(la.holder()));
    assert!(c.force_release(la.epoch).await.unwrap());
    assert_eq!(b.view().await.unwrap().holder, None);
    // The removed holder learns at its next renewal.
    assert!(matches!(
        a.renew(&la).await,
        Err(CoordError::LeaseLost { .. })
    ));
    let lb = acquired(b.acquire("b", 1).await.unwrap());
    // The old epoch again (an operator's second click): the new holder stays.
    assert!(!c.force_release(la.epoch).await.unwrap());
    assert_eq!(a.view().await.unwrap().holder, Some(lb.holder()));
    b.renew(&lb).await.unwrap();
}

/// Writes a value as-is at `<prefix>/members/<key>`, past every check (what a foreign writer
/// could leave there): `(key, value)`.
pub type RawMemberWriter =
    Box<dyn Fn(&'static str, Vec<u8>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// `(node id, status)` of each member in `v`, in the order given.
fn member_list(v: &ClusterView) -> Vec<(&str, &Value)> {
    v.members
        .iter()
        .map(|m| (m.node_id.as_str(), &m.status))
        .collect()
}

fn status(role: &str, height: i64) -> Value {
    json!({"role": role, "healthy": true, "height": height, "paused": false, "primary_site": "eu"})
}

/// Member statuses: published in any order, seen sorted by every node; a re-put replaces; bad
/// node ids, non-objects and oversize statuses refused (nothing sent); values nobody could
/// have put under `members/` left out of the view, the rest still read; an entry refreshed
/// within its ttl stays, one that is not expires by itself (the others stay), a put after
/// that brings it back; a removed one is gone at once. `short` < `long`, whole seconds.
pub async fn members(n: &Nodes, short: Duration, long: Duration, write_raw: RawMemberWriter) {
    let [a, b, c] = n;
    assert_eq!(a.view().await.unwrap().members, vec![]);
    // In any order; a's second put replaces its first.
    for (node, id, role, height) in [
        (c, "c", "passive", 9),
        (a, "a", "active", 10),
        (b, "b", "passive", 8),
        (a, "a", "active", 11),
    ] {
        node.put_member(id, &status(role, height), long)
            .await
            .unwrap();
    }
    let (sa, sb, sc) = (
        status("active", 11),
        status("passive", 8),
        status("passive", 9),
    );
    let all = vec![("a", &sa), ("b", &sb), ("c", &sc)];
    for node in n {
        assert_eq!(member_list(&node.view().await.unwrap()), all);
    }

    // Refused before anything is sent: the view (revision included) does not move.
    let before = c.view().await.unwrap();
    let refused = |r: Result<(), CoordError>, op: &str, words: &[&str]| match r {
        Err(e @ CoordError::Invalid { .. }) => {
            let text = e.to_string();
            assert!(text.starts_with(&format!("{op} refused: ")), "{text}");
            for w in words {
                assert!(text.contains(w), "{text:?} does not say {w:?}");
            }
        }
        other => panic!("{op} {words:?}: {other:?}"),
    };
    for (bad, words) in [
        ("", "node id is empty"),
        ("a/b", "node id \"a/b\" contains '/'"),
    ] {
        refused(a.put_member(bad, &sa, long).await, "put_member", &[words]);
        refused(a.remove_member(bad).await, "remove_member", &[words]);
    }
    for not_object in [json!(null), json!(7), json!("up"), json!([1, 2])] {
        refused(
            a.put_member("a", &not_object, long).await,
            "put_member",
            &["status of node \"a\"", "not an object"],
        );
    }
    let oversize = json!({"pad": "x".repeat(MAX_MEMBER_STATUS_BYTES)});
    refused(
        a.put_member("a", &oversize, long).await,
        "put_member",
        &["status of node \"a\"", "more than 8192"],
    );
    assert_eq!(c.view().await.unwrap(), before);

    // Values nobody could have put: left out, the rest of the view still read.
    write_raw("x", b"not json".to_vec()).await;
    write_raw("y", b"[1,2]".to_vec()).await;
    write_raw("z", oversize.to_string().into_bytes()).await;
    write_raw("q/r", b"{}".to_vec()).await;
    write_raw("", b"{}".to_vec()).await;
    for node in n {
        let v = node.view().await.unwrap();
        assert!(v.revision > before.revision);
        assert_eq!(member_list(&v), all);
        assert_eq!(
            (v.holder, v.watermark, v.paused),
            (None, None, None),
            "the rest of the view"
        );
    }

    // b publishes with a short ttl every quarter ttl: refreshed, it stays past the ttl.
    let start = Instant::now();
    let mut last = start;
    for height in 20..26 {
        last = Instant::now();
        b.put_member("b", &status("passive", height), short)
            .await
            .unwrap();
        tokio::time::sleep(short / 4).await;
    }
    assert!(start.elapsed() > short, "{:?}", start.elapsed());
    let sb = status("passive", 25);
    assert_eq!(
        member_list(&c.view().await.unwrap()),
        vec![("a", &sa), ("b", &sb), ("c", &sc)]
    );
    // Then it stops: gone by itself, a and c stay.
    let c2 = c.clone();
    let (v, _) = poll_until("b's entry expires", limit_for(short), || {
        let c2 = c2.clone();
        async move {
            let v = c2.view().await.unwrap();
            v.members.iter().all(|m| m.node_id != "b").then_some(v)
        }
    })
    .await;
    let after = last.elapsed();
    assert!(after >= short, "expired {after:?} after a ttl of {short:?}");
    assert_eq!(member_list(&v), vec![("a", &sa), ("c", &sc)]);

    // A put after the expiry brings it back (a new lease), and the next one keeps it.
    b.put_member("b", &status("passive", 30), short)
        .await
        .unwrap();
    b.put_member("b", &status("passive", 31), short)
        .await
        .unwrap();
    let sb = status("passive", 31);
    for node in n {
        assert_eq!(
            member_list(&node.view().await.unwrap()),
            vec![("a", &sa), ("b", &sb), ("c", &sc)]
        );
    }

    // A clean shutdown: gone at once (twice is no error), the others stay.
    b.remove_member("b").await.unwrap();
    b.remove_member("b").await.unwrap();
    a.remove_member("a").await.unwrap();
    for node in n {
        assert_eq!(member_list(&node.view().await.unwrap()), vec![("c", &sc)]);
    }
    // And a removed node may publish again.
    a.put_member("a", &sa, long).await.unwrap();
    assert_eq!(
        member_list(&b.view().await.unwrap()),
        vec![("a", &sa), ("c", &sc)]
    );
}
