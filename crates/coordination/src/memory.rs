//! [`MemoryBackend`]: the lock in process memory, with etcd's semantics — a revision that
//! grows at every write, the epoch = the leader key's create revision, leases that expire on
//! tokio's clock (so `tokio::time::pause` drives them), the watermark only from the current
//! holder and never lower. For unit tests of callers; several handles on one
//! [`MemoryStore`] are several nodes, each of which can be cut off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use syncguard_validator::Hrs;
use tokio::time::Instant;

use crate::backend::{AcquireOutcome, BoxFuture, Holder, Lease, LockBackend, Renewed, Watermark};
use crate::error::CoordError;

#[derive(Debug, Default)]
struct State {
    revision: u64,
    next_lease: i64,
    /// lease id → (expiry, ttl)
    leases: HashMap<i64, (Instant, Duration)>,
    /// (holder, lease id)
    leader: Option<(Holder, i64)>,
    watermark: Option<Watermark>,
}

impl State {
    /// Drops expired leases and the leader key attached to one, as etcd does.
    fn expire(&mut self, now: Instant) {
        let expired: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.revoke(id);
        }
    }

    fn revoke(&mut self, id: i64) {
        if self.leases.remove(&id).is_some() && self.leader.as_ref().map(|l| l.1) == Some(id) {
            self.leader = None;
            self.revision += 1;
        }
    }

    fn holder(&self) -> Option<Holder> {
        self.leader.as_ref().map(|(h, _)| h.clone())
    }
}

/// The shared store: one per simulated cluster.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    /// An empty store at revision 0.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every update is one step).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The store's revision now (tests).
    pub fn revision(&self) -> u64 {
        self.lock().revision
    }
}

/// One node's handle on a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    store: MemoryStore,
    ttl: Duration,
    reachable: Arc<AtomicBool>,
}

impl MemoryBackend {
    /// A handle granting leases of `ttl`.
    pub fn new(store: &MemoryStore, ttl: Duration) -> Self {
        MemoryBackend {
            store: store.clone(),
            ttl,
            reachable: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Cuts this handle off (every call answers `Unavailable`, nothing reaches the store) or
    /// heals it.
    pub fn set_reachable(&self, reachable: bool) {
        self.reachable.store(reachable, Ordering::SeqCst);
    }

    fn state(&self, op: &'static str) -> Result<MutexGuard<'_, State>, CoordError> {
        if !self.reachable.load(Ordering::SeqCst) {
            return Err(CoordError::Unavailable {
                op,
                detail: "memory backend: this node is cut off".into(),
            });
        }
        let mut s = self.store.lock();
        s.expire(Instant::now());
        Ok(s)
    }

    fn acquire_now(&self, node_id: &str, priority: u32) -> Result<AcquireOutcome, CoordError> {
        let mut s = self.state("acquire")?;
        if let Some(h) = s.holder() {
            return Ok(AcquireOutcome::Held(h));
        }
        s.next_lease += 1;
        let lease_id = s.next_lease;
        s.leases
            .insert(lease_id, (Instant::now() + self.ttl, self.ttl));
        s.revision += 1;
        let epoch = s.revision;
        let lease = Lease {
            node_id: node_id.to_string(),
            priority,
            epoch,
            lease_id,
            ttl: self.ttl,
        };
        s.leader = Some((lease.holder(), lease_id));
        Ok(AcquireOutcome::Acquired(lease))
    }

    fn renew_now(&self, lease: &Lease) -> Result<Renewed, CoordError> {
        let mut s = self.state("renew")?;
        let now = Instant::now();
        match s.leases.get_mut(&lease.lease_id) {
            Some((expiry, ttl)) => {
                *expiry = now + *ttl;
                Ok(Renewed { ttl: *ttl })
            }
            None => Err(CoordError::LeaseLost {
                epoch: lease.epoch,
                lease_id: lease.lease_id,
            }),
        }
    }

    fn release_now(&self, lease: &Lease) -> Result<(), CoordError> {
        let mut s = self.state("release")?;
        if s.leader.as_ref().map(|(h, _)| h.epoch) == Some(lease.epoch) {
            s.leader = None;
            s.revision += 1;
        }
        s.revoke(lease.lease_id);
        Ok(())
    }

    fn put_watermark_now(&self, lease: &Lease, hrs: Hrs) -> Result<Watermark, CoordError> {
        let mut s = self.state("put_watermark")?;
        let holder = s.holder();
        if holder.as_ref().map(|h| h.epoch) != Some(lease.epoch) {
            return Err(CoordError::NotHolder {
                epoch: lease.epoch,
                holder,
            });
        }
        match s.watermark {
            Some(w) if w.hrs >= hrs => Ok(w),
            _ => {
                let w = Watermark {
                    hrs,
                    epoch: lease.epoch,
                };
                s.watermark = Some(w);
                s.revision += 1;
                Ok(w)
            }
        }
    }
}

impl LockBackend for MemoryBackend {
    fn acquire<'a>(
        &'a self,
        node_id: &'a str,
        priority: u32,
    ) -> BoxFuture<'a, Result<AcquireOutcome, CoordError>> {
        Box::pin(async move { self.acquire_now(node_id, priority) })
    }

    fn renew<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Renewed, CoordError>> {
        Box::pin(async move { self.renew_now(lease) })
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), CoordError>> {
        Box::pin(async move { self.release_now(lease) })
    }

    fn put_watermark<'a>(
        &'a self,
        lease: &'a Lease,
        hrs: Hrs,
    ) -> BoxFuture<'a, Result<Watermark, CoordError>> {
        Box::pin(async move { self.put_watermark_now(lease, hrs) })
    }

    fn get_watermark(&self) -> BoxFuture<'_, Result<Option<Watermark>, CoordError>> {
        Box::pin(async move { Ok(self.state("get_watermark")?.watermark) })
    }

    fn current_holder(&self) -> BoxFuture<'_, Result<Option<Holder>, CoordError>> {
        Box::pin(async move { Ok(self.state("current_holder")?.holder()) })
    }
}
