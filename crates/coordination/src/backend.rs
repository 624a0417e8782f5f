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
    /// Takes the lock only when nobody holds it: one transaction that creates the leader key
    /// under a fresh lease and fails when the key exists. The lease starts counting when the
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
}
