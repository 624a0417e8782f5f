//! [`Record`]: the reason for every role change and every refusal, worded for an operator
//! woken at 3 a.m., kept by the driver for `/events`. The closed list of reasons not to
//! promote is `hold.rs`.

use serde::{Deserialize, Serialize};

use crate::types::Role;

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
    /// The heights that matter (signatures seen, the fence height of a promotion, the first
    /// height signed after an activation, ...), for machines and the signing strip.
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
