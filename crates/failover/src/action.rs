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
