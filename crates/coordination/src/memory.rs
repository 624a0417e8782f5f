//! [`MemoryBackend`]: the lock in process memory, with etcd's semantics — a revision that
//! grows at every write (once per transaction), the epoch = the leader key's create
//! revision, leases that expire on tokio's clock (so `tokio::time::pause` drives them) and
//! take the keys attached to them along (leader, handover, request, members), the watermark
//! only from the current holder and never lower, acquisition only for the target of a
//! pending handover. For unit tests of callers; several handles on one [`MemoryStore`] are
//! several nodes, each of which can be cut off.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use syncguard_validator::Hrs;
use tokio::time::Instant;

use crate::backend::{
    unix_ms_now, AcquireOutcome, BoxFuture, ClusterView, Handover, Holder, Lease, LockBackend,
    Member, Paused, Renewed, Request, RequestKind, Watermark,
};
use crate::error::CoordError;
use crate::record::{check_node_id, decode_member, encode_member, node_id_fault};

#[derive(Debug, Default)]
struct State {
    revision: u64,
    next_lease: i64,
    /// lease id → (expiry, ttl)
    leases: HashMap<i64, (Instant, Duration)>,
    /// (holder, lease id)
    leader: Option<(Holder, i64)>,
    watermark: Option<Watermark>,
    /// (handover, lease id)
    handover: Option<(Handover, i64)>,
    /// (request, lease id)
    request: Option<(Request, i64)>,
    paused: Option<Paused>,
    /// `members/<key>` → (the value as stored, its lease id if any). Stored as bytes and
    /// decoded by [`State::view`], as etcd's are, so that a test can store a bad one.
    members: BTreeMap<String, (Vec<u8>, Option<i64>)>,
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

    /// Revokes a lease and deletes the keys attached to it (one revision, as etcd does).
    fn revoke(&mut self, id: i64) {
        if self.leases.remove(&id).is_none() {
            return;
        }
        let mut deleted = false;
        if self.leader.as_ref().map(|l| l.1) == Some(id) {
            self.leader = None;
            deleted = true;
        }
        if self.handover.as_ref().map(|l| l.1) == Some(id) {
            self.handover = None;
            deleted = true;
        }
        if self.request.as_ref().map(|l| l.1) == Some(id) {
            self.request = None;
            deleted = true;
        }
        let members = self.members.len();
        self.members.retain(|_, (_, lease)| *lease != Some(id));
        deleted |= self.members.len() != members;
        if deleted {
            self.revision += 1;
        }
    }

    fn grant(&mut self, ttl: Duration) -> i64 {
        self.next_lease += 1;
        self.leases
            .insert(self.next_lease, (Instant::now() + ttl, ttl));
        self.next_lease
    }

    fn holder(&self) -> Option<Holder> {
        self.leader.as_ref().map(|(h, _)| h.clone())
    }

    fn view(&self) -> ClusterView {
        ClusterView {
            revision: self.revision,
            holder: self.holder(),
            handover: self.handover.as_ref().map(|(h, _)| h.clone()),
            request: self.request.as_ref().map(|(r, _)| r.clone()),
            paused: self.paused.clone(),
            watermark: self.watermark,
            members: self.members(),
        }
    }

    /// The members' statuses that can be read, in key order (= node id order); the others
    /// are logged and left out, as the etcd backend does.
    fn members(&self) -> Vec<Member> {
        let mut out = Vec::with_capacity(self.members.len());
        for (node_id, (bytes, _)) in &self.members {
            let key = format!("members/{node_id}");
            let status = match node_id_fault(node_id) {
                Some(reason) => Err(CoordError::Corrupt {
                    key: key.clone(),
                    reason,
                }),
                None => decode_member(&key, bytes),
            };
            match status {
                Ok(status) => out.push(Member {
                    node_id: node_id.clone(),
                    status,
                }),
                Err(e) => tracing::warn!(%key, error = %e, "member status left out of the view"),
            }
        }
        out
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

    /// Stores `value` as-is at `members/<key>`, without a lease or any check (tests: what a
    /// foreign writer could leave there; `key` may be anything, `/` included).
    pub fn put_raw_member(&self, key: &str, value: &[u8]) {
        let mut s = self.lock();
        s.members.insert(key.to_string(), (value.to_vec(), None));
        s.revision += 1;
    }
}

/// One node's handle on a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    store: MemoryStore,
    ttl: Duration,
    reachable: Arc<AtomicBool>,
    /// The lease every member key this handle puts goes under: (id, ttl asked).
    member_lease: Arc<Mutex<Option<(i64, Duration)>>>,
}

impl MemoryBackend {
    /// A handle granting leases of `ttl`.
    pub fn new(store: &MemoryStore, ttl: Duration) -> Self {
        MemoryBackend {
            store: store.clone(),
            ttl,
            reachable: Arc::new(AtomicBool::new(true)),
            member_lease: Arc::default(),
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
        if let Some((h, _)) = &s.handover {
            if h.to != node_id {
                return Ok(AcquireOutcome::HandoverPending(h.clone()));
            }
        }
        // The handover for this node is consumed by the same transaction (its lease, which
        // now carries nothing, is given back).
        let consumed = s.handover.take().map(|(h, id)| {
            s.leases.remove(&id);
            h
        });
        let lease_id = s.grant(self.ttl);
        s.revision += 1;
        let epoch = s.revision;
        let lease = Lease {
            node_id: node_id.to_string(),
            priority,
            epoch,
            lease_id,
            ttl: self.ttl,
            handover: consumed,
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
        let (w, raised) = raise(&mut s, lease.epoch, hrs);
        if raised {
            s.revision += 1;
        }
        Ok(w)
    }

    fn hand_over_now(
        &self,
        lease: &Lease,
        to: &str,
        final_state: Option<Hrs>,
        ttl: Duration,
    ) -> Result<bool, CoordError> {
        let mut s = self.state("hand_over")?;
        if s.leader.as_ref().map(|(h, id)| (h.epoch, *id)) != Some((lease.epoch, lease.lease_id)) {
            return Ok(false);
        }
        // One transaction: watermark, handover key under its own lease, leader key gone.
        if let Some(hrs) = final_state {
            raise(&mut s, lease.epoch, hrs);
        }
        let handover_lease = s.grant(ttl);
        s.handover = Some((
            Handover {
                from: lease.node_id.clone(),
                to: to.to_string(),
                from_epoch: lease.epoch,
                final_state,
            },
            handover_lease,
        ));
        s.leader = None;
        s.revision += 1;
        // Then the old lease (it carries nothing any more).
        s.revoke(lease.lease_id);
        Ok(true)
    }

    fn put_request_now(
        &self,
        from: &str,
        kind: RequestKind,
        ttl: Duration,
    ) -> Result<(), CoordError> {
        let mut s = self.state("put_request")?;
        let id = s.grant(ttl);
        let request = Request {
            from: from.to_string(),
            kind,
            at_unix_ms: unix_ms_now(),
        };
        let old = s.request.replace((request, id));
        s.revision += 1;
        if let Some((_, old_id)) = old {
            s.revoke(old_id);
        }
        Ok(())
    }

    fn clear_request_now(&self, from: &str) -> Result<bool, CoordError> {
        let mut s = self.state("clear_request")?;
        match &s.request {
            Some((r, id)) if r.from == from => {
                let id = *id;
                s.revoke(id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn set_paused_now(&self, by: &str, paused: bool) -> Result<(), CoordError> {
        let mut s = self.state("set_paused")?;
        let before = s.paused.is_some();
        s.paused = paused.then(|| Paused {
            by: by.to_string(),
            at_unix_ms: unix_ms_now(),
        });
        // A put always writes; a delete of nothing does not.
        if paused || before {
            s.revision += 1;
        }
        Ok(())
    }

    fn force_release_now(&self, holder_epoch: u64) -> Result<bool, CoordError> {
        let mut s = self.state("force_release")?;
        match &s.leader {
            Some((h, id)) if h.epoch == holder_epoch => {
                let id = *id;
                s.leader = None;
                s.revision += 1;
                s.revoke(id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl MemoryBackend {
    fn member_lease(&self) -> MutexGuard<'_, Option<(i64, Duration)>> {
        self.member_lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put_member_now(
        &self,
        node_id: &str,
        status: &serde_json::Value,
        ttl: Duration,
    ) -> Result<(), CoordError> {
        let value = encode_member("put_member", node_id, status)?;
        let mut s = self.state("put_member")?;
        let mut cached = self.member_lease();
        // The keep-alive of the lease this handle reuses (a lease of another ttl is left to
        // expire: it may still carry a key this handle put), or a new one.
        let now = Instant::now();
        let kept = (*cached)
            .filter(|&(_, asked)| asked == ttl)
            .and_then(|(id, _)| {
                let (expiry, granted) = s.leases.get_mut(&id)?;
                *expiry = now + *granted;
                Some(id)
            });
        let id = match kept {
            Some(id) => id,
            None => {
                let id = s.grant(ttl);
                *cached = Some((id, ttl));
                id
            }
        };
        s.members.insert(node_id.to_string(), (value, Some(id)));
        s.revision += 1;
        Ok(())
    }

    fn remove_member_now(&self, node_id: &str) -> Result<(), CoordError> {
        check_node_id("remove_member", node_id)?;
        let mut s = self.state("remove_member")?;
        if s.members.remove(node_id).is_some() {
            s.revision += 1;
        }
        if let Some((id, _)) = self.member_lease().take() {
            s.revoke(id);
        }
        Ok(())
    }
}

/// Raises the watermark to `hrs` (never lowers it); the stored one afterwards, and whether
/// it changed.
fn raise(s: &mut State, epoch: u64, hrs: Hrs) -> (Watermark, bool) {
    match s.watermark {
        Some(w) if w.hrs >= hrs => (w, false),
        _ => {
            let w = Watermark { hrs, epoch };
            s.watermark = Some(w);
            (w, true)
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

    fn view(&self) -> BoxFuture<'_, Result<ClusterView, CoordError>> {
        Box::pin(async move { Ok(self.state("view")?.view()) })
    }

    fn hand_over<'a>(
        &'a self,
        lease: &'a Lease,
        to: &'a str,
        final_state: Option<Hrs>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, CoordError>> {
        Box::pin(async move { self.hand_over_now(lease, to, final_state, ttl) })
    }

    fn put_request<'a>(
        &'a self,
        from: &'a str,
        kind: RequestKind,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CoordError>> {
        Box::pin(async move { self.put_request_now(from, kind, ttl) })
    }

    fn clear_request<'a>(&'a self, from: &'a str) -> BoxFuture<'a, Result<bool, CoordError>> {
        Box::pin(async move { self.clear_request_now(from) })
    }

    fn set_paused<'a>(
        &'a self,
        by: &'a str,
        paused: bool,
    ) -> BoxFuture<'a, Result<(), CoordError>> {
        Box::pin(async move { self.set_paused_now(by, paused) })
    }

    fn force_release(&self, holder_epoch: u64) -> BoxFuture<'_, Result<bool, CoordError>> {
        Box::pin(async move { self.force_release_now(holder_epoch) })
    }

    fn put_member<'a>(
        &'a self,
        node_id: &'a str,
        status: &'a serde_json::Value,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CoordError>> {
        Box::pin(async move { self.put_member_now(node_id, status, ttl) })
    }

    fn remove_member<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<(), CoordError>> {
        Box::pin(async move { self.remove_member_now(node_id) })
    }
}
