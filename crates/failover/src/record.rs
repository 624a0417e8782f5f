//! [`Record`]: the reason for every role change and every refusal, worded for an operator
//! woken at 3 a.m., kept by the driver for `/events`. `Hold` is the closed list of reasons
//! not to promote; repeated identical holds are recorded once (when the reason changes).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::{NodeId, Role};

/// One entry of the failover history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Milliseconds since the machine's time origin (the driver's monotonic start).
    pub at_ms: u64,
    /// What sort of entry.
    pub kind: RecordKind,
    /// The role shown after this entry.
    pub role: Role,
    /// The epoch after this entry.
    pub epoch: u64,
    /// Why, in words.
    pub why: String,
    /// The heights that matter (signatures seen, fence height, ...), for machines.
    pub heights: Vec<u64>,
    /// What happened, for metrics and alerts (`other` for progress notes).
    #[serde(default)]
    pub tag: RecordTag,
    /// A short snake_case label of the cause (`witness_signed`, `cut_off`, ...), or empty.
    /// Stable across releases: metrics use it as the `reason` label.
    #[serde(default)]
    pub reason: String,
}

/// What a record means for metrics and alerts. Planned handovers are `switchover_*` on the
/// node taking the role; unplanned promotions (failover, claim, takeover) are `failover_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordTag {
    FailoverStarted,
    FailoverCompleted,
    FailoverAborted,
    SwitchoverStarted,
    SwitchoverCompleted,
    SwitchoverAborted,
    /// An active stopped itself because it was cut off (S4).
    SelfFenced,
    /// A passive declined to promote (the reason is the hold's label).
    PromotionRefused,
    /// Something that would have made two signers was stopped: the chain showed the
    /// validator still signing, a second active was seen, or the key went live unasked.
    DoubleSignPrevented,
    /// The node stopped signing and became passive (superseded, handing over).
    Demoted,
    #[default]
    Other,
}

impl RecordTag {
    /// The snake_case name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordTag::FailoverStarted => "failover_started",
            RecordTag::FailoverCompleted => "failover_completed",
            RecordTag::FailoverAborted => "failover_aborted",
            RecordTag::SwitchoverStarted => "switchover_started",
            RecordTag::SwitchoverCompleted => "switchover_completed",
            RecordTag::SwitchoverAborted => "switchover_aborted",
            RecordTag::SelfFenced => "self_fenced",
            RecordTag::PromotionRefused => "promotion_refused",
            RecordTag::DoubleSignPrevented => "double_sign_prevented",
            RecordTag::Demoted => "demoted",
            RecordTag::Other => "other",
        }
    }
}

/// Kinds of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// The role changed (or an activation / deactivation was ordered).
    RoleChange,
    /// The machine declined to promote or to act on a request, and says why.
    Refusal,
    /// Something an operator must look at now (split brain, failed stop, verify failure).
    Alert,
    /// Progress worth keeping (handover steps, witness requests, pauses).
    Info,
}

/// Why a passive node does not promote right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hold {
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
        peer: NodeId,
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
        }
    }

    /// Heights worth attaching to the record.
    pub(crate) fn heights(&self) -> Vec<u64> {
        match self {
            Hold::WitnessSigned { heights, .. } => heights.clone(),
            Hold::WitnessIncomplete { unknown, .. } => unknown.clone(),
            Hold::OwnNotAdvancing { height, at_loss } => vec![*at_loss, *height],
            _ => Vec::new(),
        }
    }

    /// The sentence for the operator. `now` turns deadlines into "in 12 s".
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
            Hold::OwnNotAdvancing { height, at_loss } => format!(
                "not promoting: my node has seen no new block since the peer was lost (height \
                 {at_loss} then, {height} now) — a halted chain is not a failover"
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
        }
    }
}

/// "12 s", "1.5 s", "2 min 5 s".
pub(crate) fn words_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 10_000 && ms % 1000 != 0 {
        return format!("{:.1} s", d.as_secs_f64());
    }
    let s = d.as_secs();
    if s < 120 {
        format!("{s} s")
    } else if s % 60 == 0 {
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
