//! [`LockBackend`]: the lock the failover core holds, whatever stores it.
//!
//! Why object-safe (methods return a boxed future) rather than `async fn` in a generic
//! trait: the backend is chosen from the config at run time (`coordination.backend`), and the
//! driver, the daemon's tasks and the tests all want one `Arc<dyn LockBackend>` without a type
//! parameter threading through every layer. The price is one allocation per call, at a rate
//! of a few calls per second at most.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use syncguard_validator::Hrs;

use crate::error::CoordError;

/// A `Send` future borrowed from the backend and its arguments.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the holder gets from a successful [`LockBackend::acquire`] and presents on every
/// later call as proof of what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The holder's node id.
    pub node_id: String,
    /// Its `failover_priority` (kept for `/status`).
    pub priority: u32,
    /// The fencing token: the revision at which the leader key was created. Strictly
    /// increasing across acquisitions (every acquisition creates the key anew, and the store's
    /// revision only grows).
    pub epoch: u64,
    /// The backend's lease id.
    pub lease_id: i64,
    /// The time-to-live the backend granted. It counts from when the backend handled the
    /// request, which is after the caller sent it: the caller measures expiry from its send
    /// instant (see [`crate::LeaseKeeper`]).
    pub ttl: Duration,
    /// The planned handover this acquisition consumed (it named this node): its
    /// `final_state` is the state the old holder stopped at, the least this node fences at.
    /// `None` for an ordinary acquisition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<Handover>,
}

impl Lease {
    /// The holder as others see it.
    pub fn holder(&self) -> Holder {
        Holder {
            node_id: self.node_id.clone(),
            priority: self.priority,
            epoch: self.epoch,
        }
    }
}

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Its node id.
    pub node_id: String,
    /// Its `failover_priority`.
    pub priority: u32,
    /// Its epoch (see [`Lease::epoch`]).
    pub epoch: u64,
}

/// The answer to [`LockBackend::acquire`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AcquireOutcome {
    /// The key was absent and is now this node's, under a fresh lease.
    Acquired(Lease),
    /// Somebody holds it (possibly this node under an older lease it lost track of).
    Held(Holder),
    /// Nobody holds it, but the role is being handed to another node (`handover.to`): only
    /// that node may take it until the handover key expires.
    HandoverPending(Handover),
}

/// A planned handover in progress: the old holder stopped signing at `final_state` and gave
/// the lock up for `to`, the only node that may acquire while this lives (it expires by
/// itself after the ttl [`LockBackend::hand_over`] was given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// The node id of the holder that handed the role over.
    pub from: String,
    /// The node id it is handed to.
    pub to: String,
    /// The epoch the old holder held.
    pub from_epoch: u64,
    /// The state the old holder's signer stopped at (after its confirmed stop), if known.
    #[serde(default, with = "crate::record::hrs_opt_serde")]
    pub final_state: Option<Hrs>,
}

/// What a node asks of the holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// The operator asked for the role to move to the requesting node.
    Switchover,
    /// The primary site is healthy again and asks for the role back.
    Fallback,
}

/// A request to the holder, posted by a node that wants the role
/// ([`LockBackend::put_request`]). At most one exists; it expires by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The node that asked (and would get the role).
    pub from: String,
    /// What it asks for.
    pub kind: RequestKind,
    /// When it asked, by its own clock (milliseconds since the Unix epoch; for display).
    pub at_unix_ms: u64,
}

/// The cluster-wide pause ([`LockBackend::set_paused`]): while it exists, no automatic
/// transition happens on any node (fences still do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    /// The node whose operator paused the cluster.
    pub by: String,
    /// When, by that node's clock (milliseconds since the Unix epoch; for display).
    pub at_unix_ms: u64,
}

/// The most a member status may take, as JSON ([`LockBackend::put_member`]): a status is a
/// handful of fields, and every node reads every member's at each [`LockBackend::view`].
pub const MAX_MEMBER_STATUS_BYTES: usize = 8 * 1024;

/// One node's published status ([`LockBackend::put_member`]): `<prefix>/members/<node_id>`,
/// under a lease of that node, so that a node that stops publishing disappears by itself.
/// The status is opaque here (a JSON object: role, health, height, ... as the failover core
/// writes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's id (the last part of its key).
    pub node_id: String,
    /// What it published: always a JSON object of at most [`MAX_MEMBER_STATUS_BYTES`].
    pub status: serde_json::Value,
}

/// Everything under the prefix, read at one revision ([`LockBackend::view`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// The store revision the view was read at: two views compare by it (the higher one is
    /// the newer; an equal one saw the same data).
    pub revision: u64,
    /// Who holds the lock.
    pub holder: Option<Holder>,
    /// A planned handover waiting for its target.
    pub handover: Option<Handover>,
    /// A request to the holder.
    pub request: Option<Request>,
    /// The cluster-wide pause.
    pub paused: Option<Paused>,
    /// The watermark.
    pub watermark: Option<Watermark>,
    /// The nodes' published statuses, sorted by node id. A value that cannot be read is
    /// left out (and logged with its key): one bad entry does not hide the others.
    #[serde(default)]
    pub members: Vec<Member>,
}

/// Milliseconds since the Unix epoch by this machine's clock (0 before 1970).
pub(crate) fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A successful renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewed {
    /// The time-to-live the lease has again, counted from when the backend handled the
    /// renewal.
    pub ttl: Duration,
}

/// The highest sign state known to have been signed with the validator key, as the holders
/// wrote it. It never goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// Height/round/step.
    #[serde(with = "crate::record::hrs_serde")]
    pub hrs: Hrs,
    /// The epoch of the holder that last raised it.
    pub epoch: u64,
}

/// The lock and the watermark. Every method is one round trip (or a few, over other
/// endpoints); none retries on its own schedule: the caller decides when to try again.
pub trait LockBackend: Send + Sync {
    /// Takes the lock only when nobody holds it and no handover to another node is pending:
    /// one transaction that creates the leader key under a fresh lease (and, when a handover
    /// names this node, deletes the handover key and returns it in [`Lease::handover`]), and
    /// fails when the leader key exists ([`AcquireOutcome::Held`]) or a handover names
    /// another node ([`AcquireOutcome::HandoverPending`]). The lease starts counting when the
    /// backend handles the request: the caller should note its clock **before** calling and
    /// give that instant to [`crate::LeaseKeeper::acquired`].
    fn acquire<'a>(
        &'a self,
        node_id: &'a str,
        priority: u32,
    ) -> BoxFuture<'a, Result<AcquireOutcome, CoordError>>;

    /// One keep-alive of the lease. Note the clock before calling (the renewal proves the
    /// lease from the instant the request was sent, not from the answer).
    /// `Err(LeaseLost)` means the lease is gone: fence.
    fn renew<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Renewed, CoordError>>;

    /// Gives the lock up: deletes the leader key if it is still this lease's, and revokes the
    /// lease. Call only after the key is confirmed off (the next holder may sign at once).
    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), CoordError>>;

    /// Raises the watermark to `hrs` if it is higher, only while `lease.epoch` still holds
    /// the lock (checked in the same transaction: a deposed active can neither raise nor lower
    /// it). Returns the watermark stored afterwards (the higher of the two).
    fn put_watermark<'a>(
        &'a self,
        lease: &'a Lease,
        hrs: Hrs,
    ) -> BoxFuture<'a, Result<Watermark, CoordError>>;

    /// The watermark, if any holder ever wrote one. A promoting node merges it into its fence.
    fn get_watermark(&self) -> BoxFuture<'_, Result<Option<Watermark>, CoordError>>;

    /// Who holds the lock now.
    fn current_holder(&self) -> BoxFuture<'_, Result<Option<Holder>, CoordError>>;

    /// The holder, a pending handover, a request, the pause, the watermark and the members'
    /// statuses, all read at one revision (one range read of the prefix).
    fn view(&self) -> BoxFuture<'_, Result<ClusterView, CoordError>>;

    /// Hands the role to `to` — call only after this holder's stop is confirmed. One
    /// transaction, only while `lease` still holds the leader key (its create revision and
    /// its lease both match): raise the watermark to `final_state` (never lower it), put the
    /// handover key `{from, to, from_epoch, final_state}` under a new lease of `ttl` (so a
    /// handover nobody picks up expires by itself: the lock is then free for anybody), delete
    /// the leader key. Then revokes `lease`. `Ok(false)` when `lease` no longer holds the
    /// lock: nothing changed. etcd leases are whole seconds (`ttl` is rounded up) and etcd
    /// grants no less than its minimum ttl (about 2 s with the default election timeout).
    fn hand_over<'a>(
        &'a self,
        lease: &'a Lease,
        to: &'a str,
        final_state: Option<Hrs>,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, CoordError>>;

    /// Posts a request to the holder from node `from`, under its own lease of `ttl`: it
    /// expires by itself. One request at a time: this replaces any earlier one (whoever
    /// posted it).
    fn put_request<'a>(
        &'a self,
        from: &'a str,
        kind: RequestKind,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CoordError>>;

    /// Deletes the request if `from` posted it (a newer request by another node stays).
    /// `Ok(true)` when one was deleted.
    fn clear_request<'a>(&'a self, from: &'a str) -> BoxFuture<'a, Result<bool, CoordError>>;

    /// Pauses (`paused = {by, at_unix_ms}`, a plain key without lease: it lasts until
    /// somebody resumes) or resumes (deletes it) the whole cluster.
    fn set_paused<'a>(&'a self, by: &'a str, paused: bool)
        -> BoxFuture<'a, Result<(), CoordError>>;

    /// The operator's last resort when the holder is gone for good: deletes the leader key
    /// and revokes its lease, only if the key's create revision is still `holder_epoch` (a
    /// newer holder is never removed). `Ok(false)` otherwise (including when nobody holds
    /// the lock any more).
    fn force_release(&self, holder_epoch: u64) -> BoxFuture<'_, Result<bool, CoordError>>;

    /// Publishes node `node_id`'s status at `<prefix>/members/<node_id>` (replacing its
    /// previous one), under a lease of `ttl`: an entry nobody refreshes disappears by itself.
    /// One lease per backend instance carries every member key it puts: each call refreshes
    /// it (a keep-alive) and grants a new one only when it is gone or `ttl` changed, so a put
    /// is normally two round trips (keep-alive, put). Meant for a node's own status, once
    /// per health round, with `ttl` a few rounds long. `Err(Invalid)` (nothing sent) when
    /// `node_id` is empty or contains `/`, or `status` is not a JSON object or is more than
    /// [`MAX_MEMBER_STATUS_BYTES`] as JSON. etcd leases are whole seconds (`ttl` is rounded
    /// up, and no less than etcd's minimum).
    fn put_member<'a>(
        &'a self,
        node_id: &'a str,
        status: &'a serde_json::Value,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), CoordError>>;

    /// A clean shutdown's goodbye: deletes `<prefix>/members/<node_id>` and revokes this
    /// instance's member lease (with every member key still attached to it). Removing an
    /// entry that does not exist is no error.
    fn remove_member<'a>(&'a self, node_id: &'a str) -> BoxFuture<'a, Result<(), CoordError>>;
}
