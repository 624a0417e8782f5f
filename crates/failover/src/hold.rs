//! [`Hold`]: every reason not to promote, typed, and the one place that renders it for the
//! operator (`Hold::why`) and labels it for metrics and alerts (`Hold::key`, `Hold::tag`).
//! Repeated identical holds are recorded once, when the reason changes (`Common::hold`).

use std::time::Duration;

use crate::record::RecordTag;
use crate::types::{NodeId, Role};

/// Why a passive node does not promote right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    Paused,
    PeerNoNews {
        peer: NodeId,
    },
    PeerMismatch {
        expected: NodeId,
        got: NodeId,
    },
    PeerHolds {
        peer: NodeId,
        role: Role,
        epoch: u64,
    },
    Waiting {
        until: Duration,
        wait_why: String,
    },
    NoRight {
        peer: NodeId,
        last_seen: String,
    },
    PeerWillClaim {
        peer: NodeId,
    },
    OwnNoHealth,
    OwnUnhealthy {
        why: Option<String>,
    },
    OwnStalled {
        height: Option<u64>,
    },
    OwnNotAdvancing {
        height: u64,
        at_loss: u64,
        /// "the peer was lost", "the lock was seen free".
        since: &'static str,
    },
    WitnessSigned {
        last: u64,
        latest: u64,
        heights: Vec<u64>,
    },
    WitnessIncomplete {
        unknown: Vec<u64>,
        read: usize,
        wanted: u64,
    },
    /// Every commit read is clean, but they do not yet span enough block time.
    WitnessShort {
        clean: usize,
        short: String,
    },
    /// etcd mode: no recent look at the lock.
    LockNoNews,
    /// etcd mode: etcd did not answer (a look, or the acquisition).
    LockUnreachable {
        reason: String,
    },
    /// etcd mode: another node holds the lock (routine: recorded as information).
    LockHeld {
        holder: String,
        epoch: u64,
    },
    /// etcd mode: the lock is free; waiting for this node's turn in the promotion order.
    WaitingTurn {
        ahead: usize,
    },
    /// etcd mode: the role is being handed to another node.
    HandoverPending {
        to: String,
    },
}

impl Hold {
    /// Identity for de-duplication: the variant, never the numbers (which change every
    /// round while the reason stays the same).
    pub(crate) fn key(&self) -> &'static str {
        match self {
            Hold::Paused => "paused",
            Hold::PeerNoNews { .. } => "peer_no_news",
            Hold::PeerMismatch { .. } => "peer_mismatch",
            Hold::PeerHolds { .. } => "peer_holds",
            Hold::Waiting { .. } => "waiting",
            Hold::NoRight { .. } => "no_right",
            Hold::PeerWillClaim { .. } => "peer_will_claim",
            Hold::OwnNoHealth => "own_no_health",
            Hold::OwnUnhealthy { .. } => "own_unhealthy",
            Hold::OwnStalled { .. } => "own_stalled",
            Hold::OwnNotAdvancing { .. } => "own_not_advancing",
            Hold::WitnessSigned { .. } => "witness_signed",
            Hold::WitnessIncomplete { .. } => "witness_incomplete",
            Hold::WitnessShort { .. } => "witness_short",
            Hold::LockNoNews => "etcd_no_news",
            Hold::LockUnreachable { .. } => "etcd_unreachable",
            Hold::LockHeld { .. } => "held",
            Hold::WaitingTurn { .. } => "waiting",
            Hold::HandoverPending { .. } => "handover_pending",
        }
    }

    /// What the record means for metrics and alerts. A witness showing the validator still
    /// signing while the peer (or the holder), once reached, is lost: promoting would have
    /// made a second signer. (At boot, or with the peer in sight, the same refusal is routine:
    /// the old holder's last blocks age out.) Routine waits are information, not refusals.
    pub(crate) fn tag(&self, lost_peer: bool) -> RecordTag {
        match self {
            Hold::WitnessSigned { .. } if lost_peer => RecordTag::DoubleSignPrevented,
            Hold::LockHeld { .. } | Hold::WaitingTurn { .. } | Hold::HandoverPending { .. } => {
                RecordTag::Other
            }
            _ => RecordTag::PromotionRefused,
        }
    }

    /// Heights worth attaching to the record.
    pub(crate) fn heights(&self) -> Vec<u64> {
        match self {
            Hold::WitnessSigned { heights, .. } => heights.clone(),
            Hold::WitnessIncomplete { unknown, .. } => unknown.clone(),
            Hold::OwnNotAdvancing {
                height, at_loss, ..
            } => vec![*at_loss, *height],
            _ => Vec::new(),
        }
    }

    /// The sentence for the operator. `now` turns deadlines into "in 12 s".
    ///
    /// Longer than most functions on purpose: one arm per refusal, so every sentence an
    /// operator reads about a refusal is written here and nowhere else.
    pub(crate) fn why(&self, now: Duration) -> String {
        match self {
            Hold::Paused => "not promoting: automation is paused by the operator \
                             (`syncguard resume` to continue)"
                .into(),
            Hold::PeerNoNews { peer } => format!(
                "not promoting: no recent news of peer {peer} (the peer check has not \
                 reported for two rounds) — without it there is no evidence either way"
            ),
            Hold::PeerMismatch { expected, got } => format!(
                "not promoting: the peer address answers as node `{got}`, not `{expected}` — \
                 fix communication.peers; until then nothing is promoted automatically"
            ),
            Hold::PeerHolds { peer, role, epoch } => {
                format!("staying passive: peer {peer} is {role} at epoch {epoch}")
            }
            Hold::Waiting {
                until, wait_why, ..
            } => format!(
                "not promoting yet: {wait_why} — earliest check in {}",
                words_duration(until.saturating_sub(now))
            ),
            Hold::NoRight { peer, last_seen } => format!(
                "not promoting: I cannot reach peer {peer}, which {last_seen}, and this node is \
                 not the designated standby for the current epoch — {peer} may be the standby \
                 itself, or may have started; only one node may ever take the role alone, so \
                 this one waits until it can reach {peer}. If {peer} is down for good, run \
                 `syncguard takeover` here"
            ),
            Hold::PeerWillClaim { peer } => format!(
                "staying passive: both nodes are passive and peer {peer} is preferred and \
                 healthy — it will ask for the role"
            ),
            Hold::OwnNoHealth => "not promoting: no recent health verdict for my own node".into(),
            Hold::OwnUnhealthy { why } => match why {
                Some(why) => format!("not promoting: my own node is unhealthy ({why})"),
                None => "not promoting: my own node is unhealthy".into(),
            },
            Hold::OwnStalled { height } => match height {
                Some(h) => format!(
                    "not promoting: my node sees no new block (stuck at height {h}); if every \
                     node is stalled this is a chain-wide halt, not a failover"
                ),
                None => "not promoting: my node reports no height".into(),
            },
            Hold::OwnNotAdvancing {
                height,
                at_loss,
                since,
            } => format!(
                "not promoting: my node has seen no new block since {since} (height {at_loss} \
                 then, {height} now) — a halted chain is not a failover"
            ),
            Hold::WitnessSigned {
                last,
                latest,
                heights,
            } => {
                let ago = latest.saturating_sub(*last);
                let when = match ago {
                    0 => "in the latest block".to_string(),
                    1 => "one block ago".to_string(),
                    n => format!("{} blocks ago", words_count(n)),
                };
                format!(
                    "not promoting: the validator signed block {last} {when} — it is still \
                     active somewhere (signed {} of the last checked blocks)",
                    heights.len()
                )
            }
            Hold::WitnessIncomplete {
                unknown,
                read,
                wanted,
            } => format!(
                "not promoting: the chain witness could read only {read} of the last {wanted} \
                 commits (unreadable: {}) — no evidence that the validator stopped signing",
                list_heights(unknown)
            ),
            Hold::WitnessShort { clean, short } => format!(
                "not promoting yet: the last {clean} commits show no signature from the \
                 validator, but that is not yet evidence ({short}) — a node that stopped \
                 following the chain, or whose votes stopped reaching it, must have had time \
                 to stop itself first; reading further back"
            ),
            Hold::LockNoNews => "not promoting: no recent look at the etcd lock".into(),
            Hold::LockUnreachable { reason } => {
                format!("not promoting: etcd is unreachable ({reason})")
            }
            Hold::LockHeld { holder, epoch } => {
                format!("staying passive: {holder} holds the lock at epoch {epoch}")
            }
            Hold::WaitingTurn { ahead } => {
                format!("the lock is free: waiting my turn ({ahead} ahead of me) before trying it")
            }
            Hold::HandoverPending { to } => format!(
                "staying passive: the role is being handed to {to} (a planned switchover); \
                 it takes the lock first"
            ),
        }
    }
}

/// "12 s", "1.5 s", "2 min 5 s".
pub(crate) fn words_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 10_000 && !ms.is_multiple_of(1000) {
        return format!("{:.1} s", d.as_secs_f64());
    }
    let s = d.as_secs();
    if s < 120 {
        format!("{s} s")
    } else if s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{} min {} s", s / 60, s % 60)
    }
}

fn words_count(n: u64) -> String {
    const W: [&str; 11] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    usize::try_from(n)
        .ok()
        .and_then(|i| W.get(i))
        .map_or_else(|| n.to_string(), |w| (*w).to_string())
}

pub(crate) fn list_heights(h: &[u64]) -> String {
    const MAX: usize = 8;
    let mut s: Vec<String> = h.iter().take(MAX).map(u64::to_string).collect();
    if h.len() > MAX {
        s.push(format!("and {} more", h.len() - MAX));
    }
    s.join(", ")
}
