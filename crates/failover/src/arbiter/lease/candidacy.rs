//! A passive's side in etcd mode: which promotion path is open (a free lock after this
//! node's turn in the promotion order and any late start; the operator's takeover), the
//! handover of the lock to this node, and the cluster-wide pause.

use std::time::Duration;

use super::{Claim, Lease};
use crate::action::Action;
use crate::arbiter::{Candidate, Path};
use crate::common::Common;
use crate::gate::LeaseProof;
use crate::hold::{words_duration, Hold};
use crate::lock::{LockHandover, LockState, LockView};
use crate::phase::{Pending, Phase};
use crate::record::RecordKind;

/// The moment an unplanned promotion counts the own node's progress from.
const LOCK_FREE: &str = "the lock was seen free";

impl Lease {
    /// Which promotion path is open, if any. `Err(None)`: nothing to consider;
    /// `Err(Some(hold))`: held back for this reason.
    pub(super) fn open_path(
        &mut self,
        c: &mut Common,
        now: Duration,
    ) -> Result<Candidate, Option<Hold>> {
        let Some(l) = &self.lock else {
            return Err(None); // no look at the lock yet since start
        };
        if !c.is_fresh(Some(l.at), now) {
            self.free_since = None;
            return Err(Some(Hold::LockNoNews));
        }
        let st = match &l.view {
            LockView::Unreachable { reason } => {
                self.free_since = None;
                let reason = reason.clone();
                return Err(Some(Hold::LockUnreachable { reason }));
            }
            LockView::Seen(st) => st.clone(),
        };
        let me = c.params.node_id.clone();
        if let Some((asked, _)) = c.takeover {
            return self.takeover(&st, asked);
        }
        if let Some(ho) = &st.handover {
            self.free_since = None;
            if ho.to == me {
                return Err(None); // taken when seen (`take_handover`)
            }
            let to = ho.to.to_string();
            return Err(Some(Hold::HandoverPending { to }));
        }
        if let Some(h) = &st.holder {
            self.free_since = None;
            let holder = h.node_id.to_string();
            return Err(Some(Hold::LockHeld {
                holder,
                epoch: h.epoch,
            }));
        }
        // Free. The height counts from the first sight of it free with a known height.
        let (since, height_then) = *self.free_since.get_or_insert((now, None));
        let height_then = height_then.or(c.local.latest_height);
        self.free_since = Some((since, height_then));
        let late = c.chain.late_start_until(&c.params.timing);
        let not_before = self.turn_after(c, since);
        if now < not_before {
            if late.is_some_and(|l| now < l) {
                return Err(Some(Hold::Waiting {
                    until: not_before,
                    wait_why: format!(
                        "the lock is free, but {}",
                        c.chain.late_start_words(&c.params.timing)
                    ),
                }));
            }
            return Err(Some(Hold::WaitingTurn {
                ahead: self.params.rank,
            }));
        }
        let last = match self.seen_holder {
            Some(e) => format!("its last holder was seen at epoch {e}"),
            None => "no holder has been seen since this node started".to_string(),
        };
        Ok(Candidate {
            path: Path::Failover,
            not_before,
            story: format!(
                "the lock is free (for {}; {last})",
                words_duration(now.saturating_sub(since))
            ),
            advance: Some((height_then.unwrap_or(u64::MAX), LOCK_FREE)),
        })
    }

    /// When this node's turn comes for a lock seen free since `since`: its place in the
    /// promotion order, counted from the moment the lock is free and any late start is
    /// excluded — so that nodes held back by the same late start still try in order.
    pub(super) fn turn_after(&self, c: &Common, since: Duration) -> Duration {
        let late = c.chain.late_start_until(&c.params.timing);
        late.map_or(since, |l| l.max(since)) + self.wait_turn(c)
    }

    /// The operator's takeover: the holder is gone for good. Its lock is removed first (only
    /// if it is still that epoch); the witness must still be clean.
    fn takeover(&mut self, st: &LockState, asked: Duration) -> Result<Candidate, Option<Hold>> {
        self.takeover_release = st.holder.as_ref().map(|h| h.epoch);
        let story = match &st.holder {
            Some(h) => format!(
                "the operator asked for a takeover: {} holds the lock at epoch {}, gone for \
                 good — its lock is removed first",
                h.node_id, h.epoch
            ),
            None => "the operator asked for a takeover".to_string(),
        };
        Ok(Candidate {
            path: Path::Takeover,
            not_before: asked,
            story,
            advance: None,
        })
    }

    /// The old holder confirmed its stop and handed the lock to this node: take it, if this
    /// node can sign at once.
    pub(super) fn take_handover(&mut self, c: &mut Common, ho: LockHandover, now: Duration) {
        let waiting = matches!(
            c.phase,
            Phase::Passive {
                pending: Pending::None | Pending::Request { .. }
            }
        );
        if !waiting {
            return;
        }
        if c.paused {
            c.hold(now, Hold::Paused, false);
            return;
        }
        let fit = match c.local.fit(c.local_fresh(now), None) {
            Ok(fit) => fit,
            Err(hold) => {
                c.hold(now, hold, false);
                return;
            }
        };
        let final_words = ho.final_state.map_or_else(
            || "its final state unknown".to_string(),
            |f| format!("its final state {f}"),
        );
        let from = ho.from.clone();
        let story = format!(
            "promoting to active: {from} handed the role over after stopping its validator \
             ({final_words})"
        );
        c.phase = Phase::Passive {
            pending: Pending::Acquire {
                deadline: now + c.params.timing.handover_timeout,
            },
        };
        self.claim = Some(Claim {
            fit,
            proof: LeaseProof::HandedOver {
                from: ho.from,
                final_state: ho.final_state,
            },
            story,
        });
        c.push(Action::TryAcquire {
            force_release: None,
        });
        let why = format!("{from} handed the role to this node ({final_words}): taking the lock");
        c.record(now, RecordKind::Info, why);
    }

    /// The cluster-wide pause, as etcd shows it (a look older than this node's own pause or
    /// resume does not undo it).
    pub(super) fn follow_pause(
        &mut self,
        c: &mut Common,
        st: &LockState,
        asked_at: Duration,
        now: Duration,
    ) {
        if let Some((at, want)) = self.pause_sent {
            if asked_at < at {
                return;
            }
            if st.paused_by.is_some() != want {
                // The write may not have landed when this look was read: the operator's
                // pause (or resume) here stands until etcd shows it, or for as long as a
                // write may take — then etcd, the cluster's record, decides.
                if now.saturating_sub(at) <= c.params.timing.handover_timeout {
                    return;
                }
                let (asked, shows) = match want {
                    true => ("pause", "no pause"),
                    false => ("resume", "the pause"),
                };
                let why = format!(
                    "the cluster-wide {asked} asked on this node was not stored in etcd (it \
                     still shows {shows}): following etcd"
                );
                c.record(now, RecordKind::Alert, why);
            }
            self.pause_sent = None;
        }
        match (&st.paused_by, c.paused) {
            (Some(by), false) => {
                c.paused = true;
                let why = format!(
                    "paused cluster-wide by the operator on {by}: no automatic transition on any \
                     node until `syncguard resume` (safety stops still act)"
                );
                c.record(now, RecordKind::Info, why);
            }
            (None, true) => {
                c.paused = false;
                c.last_hold = None;
                let why = format!(
                    "resumed cluster-wide: automatic operation as {}",
                    c.phase.role()
                );
                c.record(now, RecordKind::Info, why);
            }
            _ => {}
        }
    }
}
