//! [`Action`]: what the machine asks the driver to do. The driver performs them **in order**
//! and reports completions back as events. Each is safe to perform twice.

use serde::{Deserialize, Serialize};
use syncguard_validator::Hrs;

use crate::message::PeerMessage;
use crate::record::Record;
use crate::types::{hrs_serde, HandedState, NodeId};

/// An output of [`crate::Machine::handle`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Write the epoch and the standby right durably (one file, atomically) before doing
    /// anything that follows in the batch; feed both back in `Event::Start` after a restart.
    /// On failure feed `Event::EpochPersistFailed` and drop the rest of the batch (records
    /// excepted). Idempotent: writing the same values again changes nothing.
    PersistEpoch {
        /// The epoch to keep across restarts.
        epoch: u64,
        /// Whether this node is the designated standby for `epoch` (see the crate docs).
        standby_right: bool,
    },
    /// Start signing: write `max(local, replica, fence, handed_state)` (never lower than the
    /// file on disk, S2), install the validator key, start `story`. Report
    /// `ActuatorResult::Activated` with the same epoch. Idempotent: a node already active at
    /// this epoch with at least this state just reports success.
    Activate {
        /// The epoch this activation holds the role under.
        epoch: u64,
        /// Why (for logs and the verify step).
        cause: ActivationCause,
        /// The lowest state to write: `(H + 2, 0, 0)` after an unplanned failover, the
        /// handed state after a handover, and never below any state this machine has seen.
        #[serde(with = "hrs_serde")]
        fence: Hrs,
        /// The old holder's final state after a planned handover.
        handed_state: Option<HandedState>,
        /// CometBFT's `double_sign_check_height`: touch nothing until the local node's
        /// latest height reaches this (N blocks past the validator's last known signature),
        /// or `story` would refuse to start. `None`: start at once.
        #[serde(default)]
        start_after_height: Option<u64>,
    },
    /// Stop signing: stop `story`, confirm it stopped, swap in the placeholder key, start it
    /// as a full node, read the final state. Report `ActuatorResult::Deactivated`.
    /// Idempotent: on a node already passive it only confirms.
    Deactivate {
        /// Why, in words.
        reason: String,
    },
    /// Send a protocol message to the peer. Loss is tolerated (timeouts), duplicates too
    /// (every receiver is idempotent by epoch).
    Send {
        /// The receiver.
        to: NodeId,
        /// The message.
        message: PeerMessage,
    },
    /// Fetch the last `blocks` commits from the local node and answer with
    /// `Event::Witness` carrying this `id`. A second request with the same id may be
    /// answered once.
    RequestWitness {
        /// Echo this in the report.
        id: u64,
        /// How many commits.
        blocks: u32,
    },
    /// Check that the validator's signatures appear within `blocks` blocks; answer with
    /// `Event::Verify`.
    Verify {
        /// The epoch of the activation to verify.
        epoch: u64,
        /// How many blocks to wait.
        blocks: u32,
    },
    /// etcd mode: try to take the lock (one transaction; a handover naming this node is
    /// consumed by it), first removing the lock of the gone holder at `force_release` (the
    /// operator's takeover; only if it is still that epoch). Answer with `Event::Acquire`;
    /// on success keep the lease from then on (report its end as `Event::LeaseEnded`).
    TryAcquire {
        /// The operator's takeover: the epoch of the holder to remove first.
        force_release: Option<u64>,
    },
    /// etcd mode: raise the watermark stored with the lock to `hrs` (only while holding it).
    PutWatermark {
        /// The state.
        #[serde(with = "hrs_serde")]
        hrs: Hrs,
    },
    /// etcd mode: stop keeping the lease and give the lock up (the key is confirmed off, or
    /// was never put on). Nothing to do when no lease is held.
    Release,
    /// etcd mode: hand the lock to `to` (after this node's confirmed stop): raise the
    /// watermark to `final_state`, leave a handover key naming `to`, delete the leader key.
    /// Answer with `Event::HandedOver`.
    HandOver {
        /// The target.
        to: NodeId,
        /// The state this node's signer stopped at, if read.
        #[serde(default, with = "crate::types::opt_hrs_serde")]
        final_state: Option<Hrs>,
    },
    /// etcd mode: ask the holder for the role (a switchover to this node, a fallback), or
    /// — an operator's switchover run on a third node — for the role to go to `for_node`.
    PutRequest {
        /// What is asked.
        kind: crate::message::RequestKind,
        /// The node that would get the role, when not this one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        for_node: Option<NodeId>,
    },
    /// etcd mode: withdraw this node's request, or refuse `from`'s (the holder's answer).
    ClearRequest {
        /// Whose request.
        from: NodeId,
    },
    /// etcd mode: pause or resume every node of the cluster.
    SetPaused {
        /// Paused or not.
        paused: bool,
    },
    /// Keep this for `/events` and log it.
    Record(Record),
}

/// Why an activation happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum ActivationCause {
    /// Unplanned failover (S1's conditions) by the designated standby.
    Failover,
    /// Both nodes passive; the peer granted this node's claim.
    Claim,
    /// Planned handover from `from`.
    Handover {
        /// The old holder.
        from: NodeId,
    },
    /// The handover this node offered was refused (target provably never started): the old
    /// holder takes its role back.
    Resume,
    /// The operator's takeover.
    Takeover,
}

impl ActivationCause {
    /// Whether this activation rests on the chain witness (unplanned).
    pub fn needs_witness(&self) -> bool {
        matches!(
            self,
            ActivationCause::Failover | ActivationCause::Claim | ActivationCause::Takeover
        )
    }
}
