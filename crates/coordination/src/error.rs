//! [`CoordError`]: what a backend call can answer besides success.

use crate::backend::Holder;

/// A failed backend call. `Unavailable` is the only transient kind: the caller retries on its
/// own schedule (the [`crate::LeaseKeeper`] says until when that is still worth it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordError {
    /// No endpoint answered (refused, timed out, cut off). Nothing is known about the outcome
    /// of the call: a renewal may or may not have reached etcd.
    #[error("coordination backend unreachable during {op}: {detail}")]
    Unavailable {
        /// The operation (`acquire`, `renew`, ...).
        op: &'static str,
        /// Each endpoint tried and what went wrong with it.
        detail: String,
    },
    /// The lease of this holder no longer exists (expired or revoked): the leader key went
    /// with it, somebody else may hold the lock now. Fence.
    #[error("the lease {lease_id:#x} of epoch {epoch} is gone (expired or revoked): fence now")]
    LeaseLost {
        /// The epoch that lease held.
        epoch: u64,
        /// The lease id.
        lease_id: i64,
    },
    /// The caller presented an epoch that is not the current holder's.
    #[error("epoch {epoch} does not hold the lock (current holder: {})", holder_words(.holder))]
    NotHolder {
        /// The epoch presented.
        epoch: u64,
        /// Who holds it now, when anybody does.
        holder: Option<Holder>,
    },
    /// A value stored under the prefix could not be read (written by something else?).
    #[error("coordination value at {key} is not SyncGuard's: {reason}")]
    Corrupt {
        /// The full key.
        key: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The caller asked to store something the backend does not take (a node id that cannot
    /// be part of a key, a member status that is not a JSON object or too large). Nothing was
    /// sent; trying again with the same arguments fails the same way.
    #[error("{op} refused: {reason}")]
    Invalid {
        /// The operation (`put_member`, ...).
        op: &'static str,
        /// What was wrong, naming the argument.
        reason: String,
    },
    /// The backend's configuration cannot be used.
    #[error("coordination config {key}: {reason}")]
    Config {
        /// The config key path (`coordination.etcd.tls`, ...).
        key: &'static str,
        /// Why.
        reason: String,
    },
}

fn holder_words(h: &Option<Holder>) -> String {
    match h {
        Some(h) => format!("{} at epoch {}", h.node_id, h.epoch),
        None => "nobody".into(),
    }
}
