//! The failover state machine of SyncGuard (DESIGN §3–§5): pure, deterministic,
//! `(state, event, now) → (state, actions)`.
//!
//! No I/O, no clock, no threads, no randomness. The async driver around it feeds
//! [`Event`]s (health rounds, looks at the peer, witness reports, actuator completions,
//! peer messages, operator commands) with the time `now` — a [`std::time::Duration`] since
//! an arbitrary origin of a **monotonic** clock — and performs the [`Action`]s it gets back,
//! in order. Every role change and every refusal comes out as an [`Action::Record`] whose
//! `why` an operator can act on at 3 a.m.
//!
//! # Modules
//! - [`machine`] — [`Machine`]: the rules. The only place that decides a role.
//! - [`event`] — [`Event`] and its payloads ([`LocalHealth`], [`PeerObservation`],
//!   [`PeerStatus`], [`WitnessReport`], [`ActuatorResult`], [`OperatorCommand`], ...).
//! - [`action`] — [`Action`] and [`ActivationCause`].
//! - [`message`] — [`PeerMessage`]: handover offer/reply, role request/reply.
//! - [`params`] — [`Params`], their validation, and [`Params::timing_warnings`].
//! - [`record`] — [`Record`]: the `/events` history; the closed list of reasons not to
//!   promote, recorded once per change of reason.
//! - [`types`] — [`NodeId`], [`Role`], [`Wish`], [`HandedState`], serde for `Hrs`.
//!
//! # Roles
//! Every node boots passive: `Start` first orders a Deactivate (the key may still be live from
//! before a daemon crash) and reports `Demoting` until it is confirmed. Then
//! `Passive → Promoting → Active → Demoting → Passive`, plus `Fenced` (stopped itself; left
//! only when the peer is reachable again, or by an operator's `Unfence`) and `Paused` (shown
//! role; the held role stays underneath and is what peers are told).
//!
//! # Operator commands
//! `Pause`/`Resume` (maintenance: no automatic transition; safety stops still act),
//! `Switchover { to }` (planned handover by the same handshake; [`Machine::switchover_check`]
//! gives the refusal before anything stops — target passive, healthy, not paused and within
//! [`Params::catch_up_tolerance`] blocks — and is what the daemon's dry run asks), `Unfence`,
//! `Takeover`. Fallback is automatic: the sole primary, healthy without a break for
//! `fallback_grace_period` (any failed verdict restarts it), asks the active for the role.
//!
//! # Invariants and where they are kept
//! - **S1, one signer** ([`machine`]):
//!   - A node promotes only with positive evidence: the old holder's offer after its stop
//!     was confirmed (`on_offer`); the peer's grant of a claim when both are passive
//!     (`on_role_request`/`on_role_reply`); or, unplanned (`candidacy`, `own_fit`,
//!     `witness_state`), all of: the peer unreachable for the whole failover window; this
//!     node healthy, not stalled, and its height grown since the peer was lost; a witness
//!     **requested after** the wait ended, **at most one round old**, **complete** (every
//!     height of the last `witness_blocks` read) and **without a signature**; and this node
//!     holding the **standby right** for the current epoch.
//!   - The standby right: for each epoch, at most one node may ever fail over alone. A
//!     node takes it only when it learns the peer holds (or may start under) the current
//!     epoch — seeing it promoting/active, granting its claim, refusing its offer (the old
//!     holder may resume), hearing it started after a handover; a node drops it whenever it
//!     promotes or claims, and it lapses with every newer epoch. It is persisted with the
//!     epoch. On a fresh cluster (nothing persisted) the preferred node — primary site,
//!     then lowest id — starts with it, so two nodes started with `--role active` that cannot
//!     see each other end with exactly one active. Two nodes reporting it for the same epoch
//!     (a wiped disk) are repaired by the tie-break as soon as they see each other.
//!     This replaces timed priority delays, which two nodes cannot keep apart when one of
//!     them is held back by its own health for an arbitrary time.
//!   - Anything the peer may have started without this node seeing it (first sight of it
//!     holding an epoch, a grant, a refused offer, an offer sent, this node's start) must
//!     have had `priority_margin` to show on chain before an unplanned promotion; so must
//!     this node's own last signatures.
//!   - Split brain (`safety`, acts even while paused): a holder that learns a newer epoch
//!     stands down at once; two holders of one epoch (never expected) are resolved by the
//!     tie-break, the loser stopping at once, the winner raising an alert. A promoting node
//!     that must stand down deactivates as soon as its activation reports.
//!   - A failed activation is always followed by a Deactivate; a failed stop keeps the
//!     node `Demoting` (peers never promote on it) and is retried every round.
//! - **Epochs** ([`machine`]): the epoch grows with every change of holder, is persisted
//!   (`PersistEpoch`) before any action that depends on it, and names at most one activation:
//!   unplanned and claimed promotions take `epoch + 1`; a handover offers `epoch + 1`; a
//!   refused offer is resumed under the offered epoch (which the target adopted), and after
//!   the target's own failed attempt under the next one (which the target reserves).
//!   Messages from an older epoch are refused; every receiver is idempotent by epoch, so a
//!   retried or duplicated offer, claim or reply never acts twice.
//! - **S2, the state never goes back**: enforced by the actuator and the validator crate's
//!   store; here, every fence is `max(every state seen, base)`.
//! - **S3, the fence height** (`promote`, `unplanned_fence`): after an unplanned promotion or
//!   a claim the fence is `(H + 2, 0, 0)`, H the latest committed height on this node's view;
//!   after a handover it is the old holder's final state (handed over); never below any state
//!   this machine has seen (replica, peer reports, final states, earlier fences).
//! - **S4, self-fencing** (`safety`): an active with no new block for `self_fence_timeout`
//!   and no contact with its peer for as long stops itself and becomes `Fenced`. "No new
//!   block" is the machine's own clock on the heights it is fed (or the health verdict's
//!   stall flag, if sooner): the verdict's stall bound is tens of blocks, far too slow. A
//!   chain-wide halt with the peer reachable changes nothing: no fence, no promotion (the
//!   height must grow), no handover (a stalled node hands over only to a peer that is ahead).
//! - **S5, keys never travel**: no type here can carry key material; a handed state is the
//!   state file (height/round/step, signature, sign bytes).
//!
//! # Timing assumptions
//! Safety under partitions rests on (see [`Params::timing_warnings`]):
//! - `self_fence_timeout + health_check_interval + the actuator's stop time` below both the
//!   failover window and `witness_blocks × block interval`;
//! - `priority_margin` above a peer's activation + two blocks + one round;
//! - a stop ordered on a node cut off from the chain succeeds (the actuator escalates).
//!
//! # Driver contract (short)
//! - Read the persisted `(epoch, standby_right)` and feed `Start` first (anything before it
//!   is ignored). Then every health round: `LocalHealth` (with the latest height whenever
//!   `/status` answered — the machine's own stall clock runs on it) and `Peer` (a failed look
//!   is `Unreachable`, never silence); `Tick` at least once a round; `StateSeen` for the
//!   replica and the local state file; every actuator completion, witness and verify answer,
//!   peer message and operator command.
//! - Perform actions in order. `PersistEpoch` writes both values atomically before anything
//!   after it; if it fails, skip the rest of the batch (records excepted) and feed
//!   `EpochPersistFailed`. Report every `Activate`/`Deactivate` exactly once (the actuator
//!   has its own timeouts and must escalate a stop that hangs). `story` must not be started
//!   by the service manager at boot with the validator key: every start goes through here.

pub mod action;
mod actuation;
pub mod arbiter;
mod chain;
mod common;
mod core;
pub mod event;
mod fence;
mod gate;
mod hold;
mod local;
pub mod lock;
pub mod message;
mod operator;
pub mod params;
mod phase;
pub mod record;
pub mod timers;
pub mod types;
mod witness;

pub use crate::core::{step, Core, Status};
pub use action::{Action, ActivationCause};
pub use arbiter::lease::{Lease, LeaseParams, PromotionOrder};
pub use arbiter::pair::Pair;
pub use arbiter::Arbiter;
pub use event::{
    ActuatorResult, ChainReport, Event, LocalHealth, OperatorCommand, PeerObservation, PeerStatus,
    VerifyReport, WitnessReport,
};
pub use lock::{
    AcquireReport, LeaseEnd, LockHandover, LockHolder, LockRequest, LockState, LockView,
};
pub use message::{HandoverOutcome, MessageBody, PeerMessage, RequestKind};
pub use params::{Params, ParamsError};
pub use record::{Record, RecordKind, RecordTag};
pub use timers::{Timer, Timers};
pub use types::{HandedState, NodeId, Role, Wish};

/// The two-node machine (`coordination.backend: peer`): the core over the [`Pair`] arbiter.
pub type Machine = Core<Pair>;

impl Core<Pair> {
    /// A two-node machine that has not started: it orders nothing until `Event::Start`.
    pub fn new(params: Params) -> Result<Self, ParamsError> {
        Core::with_arbiter(params, Pair::default())
    }
}

/// The etcd machine (`coordination.backend: etcd`): the core over the [`Lease`] arbiter.
pub type EtcdMachine = Core<Lease>;

impl Core<Lease> {
    /// An etcd-mode machine that has not started: it orders nothing until `Event::Start`.
    pub fn etcd(params: Params, lease: LeaseParams) -> Result<Self, ParamsError> {
        Core::with_arbiter(params, Lease::new(lease))
    }
}
