//! Where a node stands: its [`Phase`], what a passive waits for ([`Pending`]), why a holder
//! stops ([`DemoteCause`]) — and the role each phase shows.

use std::time::Duration;

use serde::Serialize;

use crate::action::ActivationCause;
use crate::message::RequestKind;
use crate::types::{NodeId, Role};

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub(crate) enum Phase {
    /// Before `Event::Start`.
    Booting,
    Passive {
        pending: Pending,
    },
    /// Activate ordered, not yet reported.
    Promoting {
        epoch: u64,
        cause: ActivationCause,
        /// Set when, meanwhile, this node learned it must not hold the role: deactivate as
        /// soon as the activation reports (the actuator runs one operation at a time).
        abort: Option<String>,
        /// The old holder to answer once started (planned handover, two-node mode).
        reply_to: Option<NodeId>,
        /// The reason label of the completion record (`lock_acquired` in etcd mode).
        label: &'static str,
    },
    Active {
        epoch: u64,
        since: Duration,
        /// The height of the signature that verified the activation: the silence rule
        /// counts missed commits above it (older signatures may be the previous holder's).
        signed_floor: u64,
    },
    /// Deactivate ordered, not yet confirmed: the key may still be live.
    Demoting {
        cause: DemoteCause,
        retry_at: Option<Duration>,
    },
    /// Key confirmed off, role offered to `to` at `epoch`, waiting for the answer.
    HandingOver {
        to: NodeId,
        epoch: u64,
        deadline: Duration,
        accepted: bool,
    },
    Fenced {
        since: Duration,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "pending", rename_all = "snake_case")]
pub(crate) enum Pending {
    None,
    /// Two-node mode: asked the peer for the role (both passive, or a boot wish).
    Claim {
        epoch: u64,
        deadline: Duration,
    },
    /// Asked the holder to hand the role over (switchover to this node, fallback).
    Request {
        kind: RequestKind,
        deadline: Duration,
    },
    /// etcd mode: the acquisition transaction is on its way.
    Acquire {
        deadline: Duration,
    },
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub(crate) enum DemoteCause {
    Boot,
    Handover { to: NodeId, epoch: u64 },
    Superseded,
    SelfFence,
    ActivationFailed { reply_to: Option<(NodeId, u64)> },
    NotPersisted,
}

impl Phase {
    /// The role held (what matters for safety). Before its boot deactivation is confirmed a
    /// node reports `Demoting`: the key may still be live from before a daemon crash.
    pub(crate) fn role(&self) -> Role {
        match self {
            Phase::Booting => Role::Demoting,
            Phase::Passive { .. } => Role::Passive,
            Phase::Promoting { .. } => Role::Promoting,
            Phase::Active { .. } => Role::Active,
            Phase::Demoting { .. } | Phase::HandingOver { .. } => Role::Demoting,
            Phase::Fenced { .. } => Role::Fenced,
        }
    }

    /// The epoch this node signs under, when it is promoting or active.
    pub(crate) fn holding(&self) -> Option<u64> {
        match self {
            Phase::Promoting { epoch, .. } | Phase::Active { epoch, .. } => Some(*epoch),
            _ => None,
        }
    }

    pub(crate) fn passive() -> Phase {
        Phase::Passive {
            pending: Pending::None,
        }
    }
}
