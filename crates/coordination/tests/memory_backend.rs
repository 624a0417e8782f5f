//! The in-memory backend keeps etcd's semantics: only-when-absent acquisition, strictly
//! increasing epochs, lease expiry, a watermark only the holder moves and only upwards.
//! Time is tokio's paused clock. The operator features (handover, requests, pause,
//! takeover) run the cases of `cases/`, shared with the real-etcd tests.

mod cases;

use std::sync::Arc;
use std::time::Duration;

use syncguard_coordination::{
    AcquireOutcome, CoordError, KeeperAction, LeaseKeeper, LeaseTiming, LockBackend, MemoryBackend,
    MemoryStore,
};
use syncguard_validator::{Hrs, Step};

const TTL: Duration = Duration::from_secs(10);

use cases::acquired;

/// Three nodes on one store.
fn nodes() -> cases::Nodes {
    nodes_on(&MemoryStore::new())
}

fn nodes_on(store: &MemoryStore) -> cases::Nodes {
    [(); 3].map(|_| Arc::new(MemoryBackend::new(store, TTL)) as Arc<dyn LockBackend>)
}

#[tokio::test(start_paused = true)]
async fn coordination_memory_handover_only_the_target_acquires_at_the_final_state() {
    cases::handover(&nodes(), Duration::from_secs(2)).await;
}

#[tokio::test(start_paused = true)]
async fn coordination_memory_handover_race_only_the_target_wins() {
    cases::handover_race(&nodes(), Duration::from_secs(2)).await;
}

#[tokio::test(start_paused = true)]
async fn coordination_memory_requests_replace_each_other_and_expire() {
    cases::requests(&nodes(), Duration::from_secs(2), Duration::from_secs(6)).await;
}

#[tokio::test(start_paused = true)]
async fn coordination_memory_pause_is_seen_by_every_node() {
    cases::pause(&nodes()).await;
}

#[tokio::test(start_paused = true)]
async fn coordination_memory_force_release_removes_only_the_named_epoch() {
    cases::force_release(&nodes()).await;
}

#[tokio::test(start_paused = true)]
async fn coordination_memory_members_seen_sorted_expire_and_bad_values_skipped() {
    let store = MemoryStore::new();
    let raw = store.clone();
    let write_raw: cases::RawMemberWriter = Box::new(move |key, value| {
        raw.put_raw_member(key, &value);
        Box::pin(async {})
    });
    cases::members(
        &nodes_on(&store),
        Duration::from_secs(2),
        Duration::from_secs(30),
        write_raw,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn coordination_memory_acquire_only_when_absent_and_epochs_grow() {
    let store = MemoryStore::new();
    let (a, b): (Arc<dyn LockBackend>, Arc<dyn LockBackend>) = (
        Arc::new(MemoryBackend::new(&store, TTL)),
        Arc::new(MemoryBackend::new(&store, TTL)),
    );
    let la = acquired(a.acquire("a", 0).await.unwrap());
    match b.acquire("b", 1).await.unwrap() {
        AcquireOutcome::Held(h) => assert_eq!((h.node_id.as_str(), h.epoch), ("a", la.epoch)),
        other => panic!("{other:?}"),
    }
    a.release(&la).await.unwrap();
    let lb = acquired(b.acquire("b", 1).await.unwrap());
    assert!(lb.epoch > la.epoch);
    assert_eq!(b.current_holder().await.unwrap().unwrap().node_id, "b");
}

#[tokio::test(start_paused = true)]
async fn coordination_memory_lease_expiry_frees_the_lock() {
    let store = MemoryStore::new();
    let (a, b) = (
        MemoryBackend::new(&store, TTL),
        MemoryBackend::new(&store, TTL),
    );
    let la = acquired(a.acquire("a", 0).await.unwrap());
    tokio::time::advance(TTL - Duration::from_millis(1)).await;
    a.renew(&la).await.unwrap();
    tokio::time::advance(TTL - Duration::from_millis(1)).await;
    assert!(matches!(
        b.acquire("b", 1).await.unwrap(),
        AcquireOutcome::Held(_)
    ));
    tokio::time::advance(Duration::from_millis(1)).await;
    let lb = acquired(b.acquire("b", 1).await.unwrap());
    assert!(lb.epoch > la.epoch);
    assert!(matches!(
        a.renew(&la).await,
        Err(CoordError::LeaseLost { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn coordination_memory_watermark_only_from_the_holder_and_never_down() {
    let store = MemoryStore::new();
    let (a, b) = (
        MemoryBackend::new(&store, TTL),
        MemoryBackend::new(&store, TTL),
    );
    let la = acquired(a.acquire("a", 0).await.unwrap());
    let h = |height| Hrs::new(height, 0, Step::Precommit);
    assert_eq!(a.put_watermark(&la, h(10)).await.unwrap().hrs, h(10));
    // Lower: the stored one stays.
    assert_eq!(a.put_watermark(&la, h(5)).await.unwrap().hrs, h(10));
    a.release(&la).await.unwrap();
    let lb = acquired(b.acquire("b", 1).await.unwrap());
    // The deposed holder can neither raise nor lower it.
    for height in [3, 30] {
        match a.put_watermark(&la, h(height)).await {
            Err(CoordError::NotHolder { epoch, holder }) => {
                assert_eq!(epoch, la.epoch);
                assert_eq!(holder.unwrap().epoch, lb.epoch);
            }
            other => panic!("{other:?}"),
        }
    }
    let w = b.get_watermark().await.unwrap().unwrap();
    assert_eq!((w.hrs, w.epoch), (h(10), la.epoch));
    assert_eq!(b.put_watermark(&lb, h(11)).await.unwrap().epoch, lb.epoch);
}

/// A holder cut off from the store: its keeper says fence (at 7 s with the defaults) before
/// the lease expires (10 s) and the other node acquires.
#[tokio::test(start_paused = true)]
async fn coordination_memory_cut_off_holder_fences_before_the_other_acquires() {
    let store = MemoryStore::new();
    let (a, b) = (
        MemoryBackend::new(&store, TTL),
        MemoryBackend::new(&store, TTL),
    );
    let timing = LeaseTiming::new(TTL, Duration::from_secs(3)).unwrap();
    let origin = tokio::time::Instant::now();
    let now = || tokio::time::Instant::now() - origin;
    let sent = now();
    let la = acquired(a.acquire("a", 0).await.unwrap());
    let mut keeper = LeaseKeeper::acquired(timing, sent, la.ttl);
    a.set_reachable(false);
    let fenced_at = loop {
        match keeper.poll(now()) {
            KeeperAction::Renew(t) => match a.renew(&la).await {
                Ok(r) => keeper.renewal_succeeded(t, now(), r.ttl),
                Err(_) => keeper.renewal_failed(t, now()),
            },
            KeeperAction::Wait { until } => tokio::time::sleep_until(origin + until).await,
            KeeperAction::Fence(_) => break now(),
        }
    };
    assert_eq!(fenced_at, Duration::from_secs(7));
    let acquired_at = loop {
        if let AcquireOutcome::Acquired(_) = b.acquire("b", 1).await.unwrap() {
            break now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        fenced_at + timing.safety_margin <= acquired_at,
        "{fenced_at:?} vs {acquired_at:?}"
    );
}
