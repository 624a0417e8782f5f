//! What etcd mode's arbiter is fed: a look at the lock and what etcd keeps beside it
//! ([`LockView`]), the answer to an acquisition ([`AcquireReport`]), the end of the lease
//! ([`LeaseEnd`]). Plain data: the driver's adapter translates the backend's own types
//! (`syncguard-coordination`) into these, so the core depends on no backend.

use serde::{Deserialize, Serialize};
use syncguard_validator::Hrs;

use crate::event::PeerStatus;
use crate::message::RequestKind;
use crate::types::{opt_hrs_serde, NodeId};

/// One look at the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "lock", rename_all = "snake_case")]
pub enum LockView {
    /// No etcd member answered.
    Unreachable {
        /// Why, for records.
        reason: String,
    },
    /// What etcd holds, read at one revision.
    Seen(LockState),
}

impl LockView {
    /// A free lock, nothing else stored.
    pub fn free() -> LockView {
        LockView::Seen(LockState::default())
    }

    /// The lock held by `node_id` at `epoch`, nothing else stored.
    pub fn held(node_id: impl Into<NodeId>, epoch: u64) -> LockView {
        LockView::Seen(LockState {
            holder: Some(LockHolder {
                node_id: node_id.into(),
                epoch,
            }),
            ..LockState::default()
        })
    }
}

/// The lock and the keys beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockState {
    /// Who holds the lock (`None`: free).
    pub holder: Option<LockHolder>,
    /// A planned handover waiting for its target.
    pub handover: Option<LockHandover>,
    /// A node asking the holder for the role.
    pub request: Option<LockRequest>,
    /// The cluster-wide pause, and the node whose operator set it.
    pub paused_by: Option<NodeId>,
    /// Every node's own status, as it published it (`members/`), itself included.
    pub members: Vec<PeerStatus>,
    /// The watermark: the highest state the holders wrote (a passive keeps it as the
    /// state it has seen, as a passive of two nodes keeps the replica).
    #[serde(default, with = "opt_hrs_serde")]
    pub watermark: Option<Hrs>,
}

/// The holder of the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Its node id.
    pub node_id: NodeId,
    /// Its epoch: the leader key's create revision.
    pub epoch: u64,
}

/// A planned handover: the old holder stopped signing and gave the lock up for `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHandover {
    /// The old holder.
    pub from: NodeId,
    /// The only node that may take the lock while this lives.
    pub to: NodeId,
    /// The epoch the old holder held.
    pub from_epoch: u64,
    /// The state its signer stopped at (after its confirmed stop), when known.
    #[serde(default, with = "opt_hrs_serde")]
    pub final_state: Option<Hrs>,
}

/// A node asks the holder for the role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRequest {
    /// The node that asked (and would get the role).
    pub from: NodeId,
    /// A switchover to it, or a fallback to the primary site.
    pub kind: RequestKind,
}

/// The answer to `Action::TryAcquire`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AcquireReport {
    /// The lock is this node's at `epoch`; the driver keeps the lease from now on.
    Acquired {
        /// The lease's epoch (the leader key's create revision).
        epoch: u64,
        /// The watermark stored in etcd, if any.
        #[serde(default, with = "opt_hrs_serde")]
        watermark: Option<Hrs>,
        /// The planned handover this acquisition consumed (it named this node).
        handover: Option<LockHandover>,
    },
    /// Somebody holds it.
    Held(LockHolder),
    /// Nobody holds it, but it is being handed to another node.
    HandoverPending(LockHandover),
    /// etcd did not answer (nothing known; a lease granted on the way is not ours to use).
    Failed {
        /// Why.
        reason: String,
    },
}

/// Why the lease ended under a holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseEnd {
    /// No renewal succeeded in time: the keeper's fence instant came.
    NotRenewed,
    /// etcd said the lease is gone.
    Lost,
}
