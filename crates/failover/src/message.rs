//! [`PeerMessage`]: the peer protocol as the machine sees it. Every message names its sender
//! and carries an epoch; a message from an older epoch than the receiver's is refused.

use serde::{Deserialize, Serialize};

use crate::types::{HandedState, NodeId};

/// One protocol message, from the peer or to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerMessage {
    /// The sender.
    pub from: NodeId,
    /// For an offer: the new epoch handed over. For a claim: the epoch asked for. For a
    /// reply: the epoch it answers (or, when it says "stale", the replier's newer epoch).
    /// For a fallback/switchover request: the sender's epoch.
    pub epoch: u64,
    /// What it says.
    pub body: MessageBody,
}

/// The message kinds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageBody {
    /// "I have stopped signing; take the role at `epoch`, at or above this final state."
    HandoverOffer {
        /// The old holder's final state (absent when it could not be read: the target then
        /// fences at `(H + 2, 0, 0)` as after an unplanned failover).
        final_state: Option<HandedState>,
    },
    /// The target's answer to an offer.
    HandoverReply {
        /// What happened.
        outcome: HandoverOutcome,
        /// Why, in words.
        reason: String,
    },
    /// "May I have the role?" ([`RequestKind::Claim`], to a passive peer) or "please hand
    /// me the role" (fallback / switchover, to the active).
    RoleRequest {
        /// Which.
        kind: RequestKind,
    },
    /// The answer to a [`MessageBody::RoleRequest`]. A granted claim is the peer's promise
    /// that it will not take `epoch` itself; a fallback/switchover request is granted by
    /// the handover offer itself, so its replies here are only refusals.
    RoleReply {
        /// Granted or not.
        granted: bool,
        /// Why, in words.
        reason: String,
    },
}

/// The target's answer to a handover offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoverOutcome {
    /// Accepted; activation under way. Not yet proof of anything.
    Accepted,
    /// Activated: the target signs now.
    Started,
    /// Refused, and the target provably is not signing and never will under the offered
    /// epoch (it adopted it, so a late duplicate of the offer is refused too). Only this lets
    /// the old holder resume, under `PeerMessage::epoch`: the offered epoch when the target
    /// never tried, the next one when it tried, failed and confirmed its stop (it reserved
    /// that epoch for the old holder) — so no epoch ever names two activations.
    Refused,
    /// Not acted upon, but the target cannot prove it is not signing (it knows a newer
    /// epoch — carried in `PeerMessage::epoch` — or is itself in a role that may sign).
    /// Never a reason to resume.
    Ignored,
}

/// What a role request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Both nodes passive: "may I take `epoch`?"
    Claim,
    /// The primary site, healthy for the grace period, asks the active to hand back.
    Fallback,
    /// An operator asked (on the target) for a switchover to the sender.
    Switchover,
}

impl RequestKind {
    /// Lower-case name for messages.
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Claim => "claim",
            RequestKind::Fallback => "fallback",
            RequestKind::Switchover => "switchover",
        }
    }
}
