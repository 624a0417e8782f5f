//! S1, the one gate: [`Common::promote`] is the only code that orders an `Activate`, and it
//! takes an [`Evidence`] — the positive proof that no other node signs. Evidence is made
//! only by the functions below, each from the proofs its case needs (a [`CleanWitness`] and
//! an [`OwnFit`] can only come from the witness and the own-node checks):
//!
//! | evidence | proves | cause |
//! |---|---|---|
//! | [`Evidence::handed_over`] | the old holder stopped (confirmed) and handed its final state over | `Handover` |
//! | [`Evidence::resumed`] | the target of this node's handover refused and never started | `Resume` |
//! | [`Evidence::granted`] | both nodes passive, the peer granted the claim, a clean witness | `Claim` |
//! | [`Evidence::standby`] | the peer lost for the window, this node the designated standby, a clean witness | `Failover` |
//! | [`Evidence::takeover`] | the operator vouches the peer is gone, a clean witness | `Takeover` |
//! | [`Evidence::leased`] | etcd: the lock acquired — free with a clean witness, released by the operator's takeover with a clean witness, or handed over after the holder's confirmed stop | `Failover` / `Takeover` / `Handover` |

use std::time::Duration;

use syncguard_validator::{Hrs, Step};

use crate::action::{Action, ActivationCause};
use crate::common::Common;
use crate::fence::{height_i64, FenceState};
use crate::local::OwnFit;
use crate::phase::Phase;
use crate::record::{RecordKind, RecordTag};
use crate::types::{HandedState, NodeId};
use crate::witness::CleanWitness;

/// The proof a promotion rests on. Its fields are private: only the constructors of this
/// module make one, from the checks each case needs.
#[derive(Debug, Clone)]
pub(crate) struct Evidence {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    HandedOver {
        from: NodeId,
        handed: Option<HandedState>,
        reply_to: Option<NodeId>,
        height: Option<u64>,
    },
    Resumed {
        own: Option<HandedState>,
    },
    Granted {
        fit: OwnFit,
    },
    Standby {
        fit: OwnFit,
    },
    Takeover {
        fit: OwnFit,
    },
    Leased {
        base: Hrs,
        cause: ActivationCause,
    },
}

impl Evidence {
    /// Two-node mode: the old holder offered the role after confirming its stop. Its final
    /// state is the fence; when it could not be read, the own chain height fences as after an
    /// unplanned failover.
    pub(crate) fn handed_over(
        from: NodeId,
        handed: Option<HandedState>,
        own_height: Option<u64>,
    ) -> Evidence {
        Evidence {
            kind: Kind::HandedOver {
                reply_to: Some(from.clone()),
                from,
                handed,
                height: own_height,
            },
        }
    }

    /// Two-node mode: the target of this node's own handover refused and provably never
    /// started; this node resumes, from `own`, the final state it stopped at (when read).
    pub(crate) fn resumed(own: Option<HandedState>) -> Evidence {
        Evidence {
            kind: Kind::Resumed { own },
        }
    }

    /// Two-node mode: both passive, the peer granted this node's claim; its own node fit and
    /// the chain clean (checked when the claim was made and again at the grant).
    pub(crate) fn granted(fit: OwnFit, _clean: CleanWitness) -> Evidence {
        Evidence {
            kind: Kind::Granted { fit },
        }
    }

    /// Two-node mode, unplanned: the peer lost for the whole window, this node the
    /// designated standby for the epoch (`c.has_standby_right()`), its own node fit and
    /// advancing, a clean witness. `None` without the right.
    pub(crate) fn standby(c: &Common, fit: OwnFit, _clean: CleanWitness) -> Option<Evidence> {
        c.has_standby_right().then_some(Evidence {
            kind: Kind::Standby { fit },
        })
    }

    /// The operator's takeover: its own node fit and a clean witness are still required.
    pub(crate) fn takeover(fit: OwnFit, _clean: CleanWitness) -> Evidence {
        Evidence {
            kind: Kind::Takeover { fit },
        }
    }

    /// etcd mode: the lock is this node's (`acquired`, the backend's answer), on one of the
    /// proofs of [`LeaseProof`]; the fence also covers the watermark stored with the lock.
    pub(crate) fn leased(fit: OwnFit, proof: LeaseProof, watermark: Option<Hrs>) -> Evidence {
        let (base, cause) = match proof {
            LeaseProof::Free(_) => (
                FenceState::unplanned(fit.height()),
                ActivationCause::Failover,
            ),
            LeaseProof::Takeover(_) => (
                FenceState::unplanned(fit.height()),
                ActivationCause::Takeover,
            ),
            LeaseProof::HandedOver { from, final_state } => (
                final_state.map_or_else(
                    || FenceState::unplanned(fit.height()),
                    FenceState::after_handover,
                ),
                ActivationCause::Handover { from },
            ),
        };
        let base = watermark.map_or(base, |w| w.max(base));
        Evidence {
            kind: Kind::Leased { base, cause },
        }
    }
}

/// What an etcd-mode acquisition rests on besides the lock itself. A witness is a token: it
/// is never read, holding one proves the check ran.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub(crate) enum LeaseProof {
    /// The lock was free, and a clean witness was read after the wait for it ended.
    Free(CleanWitness),
    /// The operator's takeover (the gone holder's lock released first): a clean witness.
    Takeover(CleanWitness),
    /// The old holder confirmed its stop and handed the lock to this node, with its final
    /// state when it could read it.
    HandedOver {
        from: NodeId,
        final_state: Option<Hrs>,
    },
}

impl Common {
    /// Takes the role at `epoch` on `evidence`: persist the epoch, then activate with a fence
    /// never below any state seen. The only place that orders an `Activate`.
    pub(crate) fn promote(&mut self, epoch: u64, evidence: Evidence, story: String, now: Duration) {
        let leased = matches!(evidence.kind, Kind::Leased { .. });
        let (cause, base, handed_state, reply_to) = match evidence.kind {
            Kind::HandedOver {
                from,
                handed,
                reply_to,
                height,
            } => {
                let base = handed.as_ref().map_or_else(
                    || FenceState::unplanned(height.unwrap_or(0)),
                    |h| FenceState::after_handover(h.hrs),
                );
                (ActivationCause::Handover { from }, base, handed, reply_to)
            }
            // Its own final state is handed to its own activation: the fence at that very
            // state must not become an unsigned state at the HRS its file holds signed (the
            // state file would refuse it as different data at one HRS, and the resume fail).
            Kind::Resumed { own } => (
                ActivationCause::Resume,
                self.fence
                    .highest_seen
                    .unwrap_or(Hrs::new(0, 0, Step::None)),
                own,
                None,
            ),
            Kind::Granted { fit } => (
                ActivationCause::Claim,
                FenceState::unplanned(fit.height()),
                None,
                None,
            ),
            Kind::Standby { fit } => (
                ActivationCause::Failover,
                FenceState::unplanned(fit.height()),
                None,
                None,
            ),
            Kind::Takeover { fit } => (
                ActivationCause::Takeover,
                FenceState::unplanned(fit.height()),
                None,
                None,
            ),
            Kind::Leased { base, cause } => (cause, base, None, None),
        };
        // The holder is never the standby: drop the right (a resume keeps the epoch, so the
        // lapse by epoch alone would not cover it), then persist before activating.
        let had_right = self.has_standby_right();
        self.right = None;
        if !self.adopt_epoch(epoch) && had_right {
            self.persist();
        }
        let start_after_height = self.fence.start_after(
            self.params.timing.double_sign_check_height,
            self.chain.last_signed,
        );
        let fence = self.fence.fence(base);
        self.phase = Phase::Promoting {
            epoch,
            cause: cause.clone(),
            abort: None,
            reply_to,
            label: if leased { "lock_acquired" } else { "" },
        };
        self.boot_claim_pending = false;
        self.takeover = None;
        self.last_hold = None;
        let heights = vec![u64::try_from(fence.height).unwrap_or(0)];
        let tag = match (leased, &cause) {
            (true, ActivationCause::Failover) => (RecordTag::FailoverStarted, "lock_acquired"),
            _ => promotion_started_tag(&cause),
        };
        self.record_as(now, RecordKind::RoleChange, tag, story, heights);
        self.push(Action::Activate {
            epoch,
            cause,
            fence,
            handed_state,
            start_after_height,
        });
    }
}

/// `(H + 2)` for records.
pub(crate) fn fence_height(h: u64) -> i64 {
    height_i64(h).saturating_add(2)
}

/// The tags of a promotion's completion and abort, by its cause.
pub(crate) fn promotion_tags(cause: &ActivationCause) -> (RecordTag, RecordTag) {
    match cause {
        ActivationCause::Handover { .. } => {
            (RecordTag::SwitchoverCompleted, RecordTag::SwitchoverAborted)
        }
        // Taking the role back after a refused handover: the abort was counted at its start.
        ActivationCause::Resume => (RecordTag::Other, RecordTag::SwitchoverAborted),
        ActivationCause::Failover | ActivationCause::Takeover => {
            (RecordTag::FailoverCompleted, RecordTag::FailoverAborted)
        }
        // Both nodes passive (a cluster starting): taking the role by agreement is routine.
        ActivationCause::Claim => (RecordTag::Other, RecordTag::Other),
    }
}

/// The tag and reason of a promotion's start.
fn promotion_started_tag(cause: &ActivationCause) -> (RecordTag, &'static str) {
    match cause {
        ActivationCause::Handover { .. } => (RecordTag::SwitchoverStarted, "handover"),
        ActivationCause::Resume => (RecordTag::SwitchoverAborted, "resume_after_refusal"),
        ActivationCause::Failover => (RecordTag::FailoverStarted, "peer_lost"),
        ActivationCause::Claim => (RecordTag::Other, "claim"),
        ActivationCause::Takeover => (RecordTag::FailoverStarted, "operator_takeover"),
    }
}
