//! [`Etcd`]: the lock of the lease worlds, with etcd's semantics as `MemoryBackend` keeps
//! them — a revision that grows at every write, the epoch = the leader key's create
//! revision, leases that expire `ttl` after etcd last handled a grant or keep-alive and take
//! the keys attached to them along (leader, handover, request), the watermark only from the
//! current holder and never lower, an acquisition only for the target of a pending handover,
//! the cluster-wide pause, and each node's published status (`members/`). Pure: every
//! operation takes the instant etcd handles it.

use std::collections::BTreeMap;

use syncguard_failover::{
    LockHandover, LockHolder, LockRequest, LockState, NodeId, PeerStatus, RequestKind,
};
use syncguard_validator::Hrs;

/// A lease this simulated etcd granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: u64,
    pub epoch: u64,
    pub ttl: u64,
}

/// What an acquisition found.
#[derive(Debug, Clone)]
pub enum Acquired {
    /// The lock is the caller's under `lease`, consuming the handover that named it, if any.
    Yes(Lease, Option<LockHandover>),
    Held(LockHolder),
    HandoverPending(LockHandover),
}

#[derive(Debug, Default)]
pub struct Etcd {
    pub revision: u64,
    next_lease: u64,
    /// lease id → expires at (ms).
    leases: BTreeMap<u64, u64>,
    /// (holder, lease id)
    leader: Option<(LockHolder, u64)>,
    pub watermark: Option<Hrs>,
    handover: Option<(LockHandover, u64)>,
    request: Option<(LockRequest, u64)>,
    paused: Option<NodeId>,
    /// node → (status, expires at)
    members: BTreeMap<NodeId, (PeerStatus, u64)>,
}

impl Etcd {
    pub fn new() -> Etcd {
        Etcd {
            revision: 1,
            ..Etcd::default()
        }
    }

    /// Drops expired leases and the keys attached to them, as etcd does.
    pub fn expire(&mut self, now: u64) {
        let gone: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.revoke(id);
        }
        self.members.retain(|_, (_, at)| *at > now);
    }

    fn revoke(&mut self, id: u64) {
        if self.leases.remove(&id).is_none() {
            return;
        }
        let before = (
            self.leader.is_some(),
            self.handover.is_some(),
            self.request.is_some(),
        );
        self.leader.take_if(|l| l.1 == id);
        self.handover.take_if(|h| h.1 == id);
        self.request.take_if(|r| r.1 == id);
        let after = (
            self.leader.is_some(),
            self.handover.is_some(),
            self.request.is_some(),
        );
        if before != after {
            self.revision += 1;
        }
    }

    fn grant(&mut self, ttl: u64, now: u64) -> u64 {
        self.next_lease += 1;
        self.leases.insert(self.next_lease, now + ttl);
        self.next_lease
    }

    /// The holder now, if any.
    pub fn holder(&self) -> Option<&LockHolder> {
        self.leader.as_ref().map(|(h, _)| h)
    }

    /// Takes the lock for `me` when nobody holds it and no handover names another node;
    /// first removes the lock of `force_release` (the operator's takeover) if it is still
    /// that epoch.
    pub fn acquire(&mut self, me: &NodeId, force: Option<u64>, ttl: u64, now: u64) -> Acquired {
        self.expire(now);
        if let Some(epoch) = force {
            if let Some((_, id)) = self.leader.clone().filter(|(h, _)| h.epoch == epoch) {
                self.leader = None;
                self.revision += 1;
                self.revoke(id);
            }
        }
        if let Some(h) = self.holder() {
            return Acquired::Held(h.clone());
        }
        if let Some((h, _)) = self.handover.as_ref().filter(|(h, _)| h.to != *me) {
            return Acquired::HandoverPending(h.clone());
        }
        let consumed = self.handover.take().map(|(h, id)| {
            self.leases.remove(&id);
            h
        });
        let id = self.grant(ttl, now);
        self.revision += 1;
        let epoch = self.revision;
        let holder = LockHolder {
            node_id: me.clone(),
            epoch,
        };
        self.leader = Some((holder, id));
        Acquired::Yes(Lease { id, epoch, ttl }, consumed)
    }

    /// A keep-alive: `false` when the lease is gone.
    pub fn renew(&mut self, lease: &Lease, now: u64) -> bool {
        self.expire(now);
        match self.leases.get_mut(&lease.id) {
            Some(at) => {
                *at = now + lease.ttl;
                true
            }
            None => false,
        }
    }

    pub fn release(&mut self, lease: &Lease, now: u64) {
        self.expire(now);
        if self.leader.as_ref().map(|(h, _)| h.epoch) == Some(lease.epoch) {
            self.leader = None;
            self.revision += 1;
        }
        self.revoke(lease.id);
    }

    fn raise(&mut self, hrs: Hrs) {
        if self.watermark.is_none_or(|w| hrs > w) {
            self.watermark = Some(hrs);
            self.revision += 1;
        }
    }

    /// Raises the watermark, only for the current holder.
    pub fn put_watermark(&mut self, lease: &Lease, hrs: Hrs, now: u64) {
        self.expire(now);
        if self.holder().map(|h| h.epoch) == Some(lease.epoch) {
            self.raise(hrs);
        }
    }

    /// One transaction: the watermark, a handover key naming `to` under its own lease of
    /// `ttl`, the leader key gone; then the old lease revoked. False: the lease no longer
    /// held the lock, nothing changed.
    pub fn hand_over(
        &mut self,
        lease: &Lease,
        from: &NodeId,
        to: &NodeId,
        fs: Option<Hrs>,
        ttl: u64,
        now: u64,
    ) -> bool {
        self.expire(now);
        if self.leader.as_ref().map(|(h, id)| (h.epoch, *id)) != Some((lease.epoch, lease.id)) {
            return false;
        }
        if let Some(hrs) = fs {
            self.raise(hrs);
        }
        let id = self.grant(ttl, now);
        let handover = LockHandover {
            from: from.clone(),
            to: to.clone(),
            from_epoch: lease.epoch,
            final_state: fs,
        };
        self.handover = Some((handover, id));
        self.leader = None;
        self.revision += 1;
        self.revoke(lease.id);
        true
    }

    pub fn put_request(&mut self, from: &NodeId, kind: RequestKind, ttl: u64, now: u64) {
        self.expire(now);
        let id = self.grant(ttl, now);
        let request = LockRequest {
            from: from.clone(),
            kind,
        };
        let old = self.request.replace((request, id));
        self.revision += 1;
        if let Some((_, old)) = old {
            self.revoke(old);
        }
    }

    pub fn clear_request(&mut self, from: &NodeId, now: u64) {
        self.expire(now);
        if let Some(id) = self
            .request
            .as_ref()
            .filter(|(r, _)| r.from == *from)
            .map(|r| r.1)
        {
            self.revoke(id);
        }
    }

    pub fn set_paused(&mut self, by: &NodeId, paused: bool, now: u64) {
        self.expire(now);
        let before = self.paused.is_some();
        self.paused = paused.then(|| by.clone());
        if paused || before {
            self.revision += 1;
        }
    }

    /// Publishes a node's own status for `ttl`.
    pub fn put_member(&mut self, st: PeerStatus, ttl: u64, now: u64) {
        self.expire(now);
        self.members.insert(st.node_id.clone(), (st, now + ttl));
        self.revision += 1;
    }

    /// Everything a look at the lock reads, at one revision.
    pub fn view(&mut self, now: u64) -> LockState {
        self.expire(now);
        LockState {
            holder: self.holder().cloned(),
            handover: self.handover.as_ref().map(|(h, _)| h.clone()),
            request: self.request.as_ref().map(|(r, _)| r.clone()),
            paused_by: self.paused.clone(),
            members: self.members.values().map(|(s, _)| s.clone()).collect(),
            watermark: self.watermark,
        }
    }
}
