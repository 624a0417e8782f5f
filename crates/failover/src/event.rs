//! [`Event`]: everything the driver feeds in. Each is a fact the driver observed (or a
//! command an operator gave); the machine never asks the world anything directly.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use syncguard_validator::Hrs;

use crate::lock::{AcquireReport, LeaseEnd, LockView};
use crate::message::PeerMessage;
use crate::types::{opt_hrs_serde, HandedState, NodeId, Role, Wish};

/// An input to [`crate::Machine::handle`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The daemon started. Every node boots passive: the machine first orders a Deactivate
    /// (the key may still be live from before a crash of the daemon), then decides.
    Start {
        /// `--role`: a wish, not an order.
        wish: Wish,
        /// The epoch persisted by earlier `PersistEpoch` actions (0 on a fresh host).
        epoch_on_disk: u64,
        /// The `standby_right` persisted with that epoch; `None` when nothing was ever
        /// persisted (a fresh host: the preferred node then starts with the right).
        standby_right: Option<bool>,
    },
    /// Time passed. Feed at least once per health round so timeouts fire.
    Tick,
    /// One local health round (verdict with hysteresis, from the health crate).
    LocalHealth(LocalHealth),
    /// What the local node's commits say about the validator's signatures (once per round,
    /// from the commits not read before).
    Chain(ChainReport),
    /// One look at the peer's status API.
    Peer(PeerObservation),
    /// Answer to an `Action::RequestWitness`.
    Witness(WitnessReport),
    /// An actuator operation finished.
    Actuator(ActuatorResult),
    /// A protocol message from the peer.
    Message(PeerMessage),
    /// An operator's command (CLI / authenticated API).
    Operator(OperatorCommand),
    /// A sign state seen on this host (the replica pulled from the active, or the local
    /// file): fences never go below any state seen.
    StateSeen {
        /// Its height/round/step.
        #[serde(with = "crate::types::hrs_serde")]
        hrs: Hrs,
    },
    /// Answer to an `Action::Verify`.
    Verify(VerifyReport),
    /// etcd mode: one look at the lock, asked at `asked_at` (the machine's clock: a look
    /// asked before an acquisition or a stop says nothing about it).
    Lock {
        /// When the read was sent.
        asked_at: Duration,
        /// What it showed.
        view: LockView,
    },
    /// etcd mode: the answer to `Action::TryAcquire`.
    Acquire(AcquireReport),
    /// etcd mode: the driver's lease keeper stopped (the holder must stop signing).
    LeaseEnded {
        /// Why.
        why: LeaseEnd,
    },
    /// etcd mode: the answer to `Action::HandOver`. `Ok(true)`: the lock is handed to `to`;
    /// `Ok(false)`: this node's lease no longer held it, nothing changed; `Err`: unknown.
    HandedOver {
        /// The target.
        to: NodeId,
        /// The backend's answer.
        result: Result<bool, String>,
    },
    /// A `PersistEpoch` action failed. The driver must then skip the rest of that batch
    /// (except records): acting under an epoch that would not survive a restart is refused.
    EpochPersistFailed {
        /// The epoch that could not be written.
        epoch: u64,
        /// Why, for the operator.
        reason: String,
    },
}

/// One local health round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalHealth {
    /// The verdict: `retry_attempts` failed rounds make it false.
    pub healthy: bool,
    /// CometBFT's latest committed height, when `/status` answered.
    pub latest_height: Option<u64>,
    /// No new block within the stall bound, or the node's RPC did not answer this round.
    pub stalled: bool,
    /// The failing checks, for records ("CometBFT catching up", ...).
    pub why: Option<String>,
    /// How old the node's newest block was when this round looked (the host's clock minus
    /// the block's time), when `/status` answered: the self-fence's measure of "follows no
    /// chain" (`Timing::stall_age`).
    #[serde(default)]
    pub block_age: Option<Duration>,
    /// Still unhealthy by the verdict's hysteresis, but the last rounds were good: the node
    /// is coming back (after a chain-wide halt, every node is). Not a reason to hand the
    /// role over — the peer is likely only one round ahead in the same recovery.
    #[serde(default)]
    pub recovering: bool,
}

/// The validator's signatures in the commits the local node serves, from a reader that
/// reads each commit once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReport {
    /// The node's latest committed height (from `/status`).
    pub latest_height: u64,
    /// The highest height whose commit carries the validator's signature, among the commits
    /// read so far (`None`: none seen). Commits not read (not served, unreadable) are not
    /// signatures: an active that cannot read its own commits counts as silent.
    pub last_signed: Option<u64>,
    /// The shortest interval between two consecutive blocks among those read recently (the
    /// chain may run faster than `story.block_interval` says).
    #[serde(default)]
    pub fastest_block: Option<Duration>,
}

/// One look at the peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "peer", rename_all = "snake_case")]
pub enum PeerObservation {
    /// The peer's SyncGuard answered.
    Reachable(PeerStatus),
    /// It did not (timeout, refused, TLS failure, ...).
    Unreachable {
        /// Why, for records.
        reason: String,
    },
}

/// What a node tells its peer about itself (served by the peer status API; produced by
/// [`crate::Machine::peer_status`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The answering node's id.
    pub node_id: NodeId,
    /// The role held (never `Paused`; see `paused`). A node that has not finished making
    /// sure its key is off reports `Demoting`.
    pub role: Role,
    /// Whether an operator paused its automation.
    pub paused: bool,
    /// Its epoch (highest known).
    pub epoch: u64,
    /// Its health verdict.
    pub healthy: bool,
    /// Its CometBFT latest height.
    pub latest_height: Option<u64>,
    /// Its `is_primary_site`.
    pub is_primary_site: bool,
    /// The highest sign state it knows.
    #[serde(with = "opt_hrs_serde")]
    pub last_state: Option<Hrs>,
    /// Whether it holds the standby right for its epoch (may fail over alone). Two nodes
    /// reporting it for the same epoch is repaired at once by the tie-break.
    pub standby_right: bool,
    /// Whether it was started with `--role active` and has not been answered yet: it will
    /// ask for the role as soon as the chain is clean, so a passive peer leaves it the claim.
    #[serde(default)]
    pub wants_role: bool,
    /// Two-node mode: its own looks at its peer (the receiver of this status) fail now. The
    /// receiver, though it reaches this node, then counts contact as lost (S4): a one-way
    /// loss must not leave a silent active signing while this node counts towards a
    /// failover.
    #[serde(default)]
    pub peer_lost: bool,
}

impl PeerStatus {
    /// Fenced = the peer says it stopped itself and will not start on its own.
    pub fn fenced(&self) -> bool {
        self.role == Role::Fenced
    }
}

/// The chain as witness: the last `witness_blocks` commits seen by the local node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessReport {
    /// The id of the `RequestWitness` this answers; other ids are ignored.
    pub id: u64,
    /// Latest committed height the window ends at.
    pub latest_height: u64,
    /// Heights whose commit was read (signed or not).
    pub checked: Vec<u64>,
    /// Heights whose commit carries the validator's signature.
    pub signed: Vec<u64>,
    /// Heights that could not be read: never evidence of absence.
    pub unknown: Vec<u64>,
    /// `(height, block time in ms since the Unix epoch)` of the heights read: the witness
    /// counts the chain in seconds of block time. A read height without a time is unknown.
    #[serde(default)]
    pub block_times_ms: Vec<(u64, u64)>,
}

/// The end of an actuator operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ActuatorResult {
    /// An `Action::Activate` finished.
    Activated {
        /// The epoch of the Activate it answers.
        epoch: u64,
        /// `Ok`: `story` runs with the key and its signature was seen in a commit (an
        /// activation is finished only when verified; otherwise the actuator rolls back and
        /// reports `Err`). `Err(reason)`: the key may or may not be live; the machine
        /// deactivates.
        result: Result<(), String>,
        /// The height of the commit that verified it.
        #[serde(default)]
        signed_at: Option<u64>,
    },
    /// An `Action::Deactivate` finished.
    Deactivated {
        /// `Ok(final state)`: `story` is confirmed stopped and the placeholder is in place
        /// (the final state, when it could be read). `Err(reason)`: the key may still be
        /// live; the machine keeps reporting `Demoting` and retries.
        result: Result<Option<HandedState>, String>,
    },
}

/// Whether the new active's signatures showed up (DESIGN §5, "verify").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The epoch of the `Verify` action.
    pub epoch: u64,
    /// Whether the validator's signature appeared within `verify_blocks`.
    pub signed: bool,
    /// Details for the alert (address seen in `/status`, heights checked, ...).
    pub detail: String,
}

/// An operator's command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum OperatorCommand {
    /// Stop every automatic transition here (safety stops still act).
    Pause,
    /// Back to automatic operation in the role held.
    Resume,
    /// Planned handover to `to` (run on the active, or on the target with `to` = itself).
    Switchover {
        /// The node that should end up active.
        to: NodeId,
    },
    /// Leave `Fenced` without waiting for the peer (the operator vouches for it).
    Unfence,
    /// Take the role although the peer cannot be reached and the rules would wait or defer
    /// (the operator vouches that the peer is down). The chain witness and this node's own
    /// health are still required.
    Takeover,
}
