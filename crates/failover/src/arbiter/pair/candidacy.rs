//! Which promotion path a passive may take in two-node mode, and what holds it back: the
//! operator's takeover; a claim when both nodes are passive (or a boot wish); an unplanned
//! failover when the peer is lost — unreachable for the whole window, or hung promoting —
//! and this node holds the standby right, after any late start is excluded.

use std::time::Duration;

use super::{max_opt, Pair};
use crate::arbiter::{Candidate, Path};
use crate::common::Common;
use crate::hold::{words_duration, Hold};
use crate::types::Role;

/// The moment an unplanned promotion counts the own node's progress from.
const PEER_LOST: &str = "the peer was lost";

impl Pair {
    /// Every promotion ends (the actuator rolls back what it cannot verify): a peer seen
    /// promoting for longer than any activation takes is hung, and is a lost peer for the
    /// normal rules — window, witness, standby right — counted from where its activation had
    /// to be over.
    pub(super) fn stuck_promoting_since(&self, c: &Common, now: Duration) -> Option<Duration> {
        let st = self.peer.status.as_ref()?;
        if st.role != Role::Promoting {
            return None;
        }
        let (epoch, since, _) = self.peer.promoting_since?;
        let t = &c.params.timing;
        let over = since + t.activation_bound + t.news_max_age;
        (epoch == st.epoch && now >= over).then_some(over)
    }

    /// Which promotion path is open, if any. `Err(None)`: nothing to consider (the normal
    /// steady state); `Err(Some(hold))`: a candidate situation, held back for this reason.
    pub(super) fn open_path(
        &mut self,
        c: &mut Common,
        now: Duration,
    ) -> Result<Candidate, Option<Hold>> {
        let peer = self.peer_name(c);
        if let Some((asked, _)) = c.takeover {
            if let Some(st) = self.fresh_peer(c, now) {
                if st.role.may_sign() {
                    return Err(Some(Hold::PeerHolds {
                        peer,
                        role: st.role,
                        epoch: st.epoch,
                    }));
                }
            }
            return Ok(Candidate {
                path: Path::Takeover,
                not_before: asked,
                story: "the operator asked for a takeover".into(),
                advance: None,
            });
        }
        if let Some(got) = self.peer.mismatch.clone() {
            return Err(Some(Hold::PeerMismatch {
                expected: peer,
                got,
            }));
        }
        if self.peer.last_at.is_none() {
            return Err(None); // no look at the peer yet since start
        }
        if !c.is_fresh(self.peer.last_at, now) {
            return Err(Some(Hold::PeerNoNews { peer }));
        }
        let stuck = self.stuck_promoting_since(c, now);
        match (stuck, self.peer.status.clone()) {
            (None, Some(st)) if st.role.may_sign() => {
                if c.boot_claim_pending {
                    // A peer that is only stopping (its own start, a handover) may still
                    // become passive: the wish waits. One that holds the role answers it.
                    if st.role != Role::Demoting {
                        c.boot_claim_pending = false;
                    }
                    return Err(Some(Hold::PeerHolds {
                        peer,
                        role: st.role,
                        epoch: st.epoch,
                    }));
                }
                Err(None)
            }
            (None, Some(st)) => self.both_passive(c, &st, now),
            _ => self.peer_lost(c, stuck, now),
        }
    }

    /// The peer is passive or fenced: only a claim (granted by the peer) may follow.
    fn both_passive(
        &self,
        c: &Common,
        st: &crate::event::PeerStatus,
        now: Duration,
    ) -> Result<Candidate, Option<Hold>> {
        let peer = self.peer_name(c);
        let w = c.window();
        if c.boot_claim_pending {
            return Ok(Candidate {
                path: Path::Claim,
                not_before: c.boot_at,
                story: format!(
                    "started with --role active and peer {peer} is {} at epoch {}",
                    st.role, st.epoch
                ),
                advance: None,
            });
        }
        let both_since = max_opt(self.peer.passive_since, c.passive_since).unwrap_or(now);
        let not_before = both_since + w;
        // A peer started with `--role active` asks for the role itself (its wish counts
        // before the tie-break); otherwise the preferred node asks.
        let winner = (c.params.outranks_peer() && !st.wants_role) || !st.healthy || st.paused;
        if !winner {
            return Err(Some(Hold::PeerWillClaim { peer }));
        }
        if now < not_before {
            return Err(Some(Hold::Waiting {
                until: not_before,
                wait_why: format!(
                    "both nodes are passive; waiting the failover window ({}) before asking \
                     for the role",
                    words_duration(w)
                ),
            }));
        }
        Ok(Candidate {
            path: Path::Claim,
            not_before,
            story: format!(
                "both nodes have been passive for the failover window and peer {peer} {}",
                if !st.healthy {
                    "is unhealthy"
                } else if st.paused {
                    "is paused"
                } else {
                    "defers to this node (primary site / lower id)"
                }
            ),
            advance: None,
        })
    }

    /// The peer is unreachable (or hung promoting): an unplanned failover, for the standby.
    fn peer_lost(
        &self,
        c: &Common,
        stuck: Option<Duration>,
        now: Duration,
    ) -> Result<Candidate, Option<Hold>> {
        let peer = self.peer_name(c);
        let w = c.window();
        let lost = stuck.or(self.peer.lost_since).unwrap_or(now);
        let lost_for = now.saturating_sub(lost);
        if stuck.is_none() && lost_for < c.round() {
            return Err(None); // one missed look is not news yet
        }
        let last_seen = self
            .peer
            .last_seen
            .clone()
            .unwrap_or_else(|| "has not been seen since this node started".to_string());
        if !c.has_standby_right() {
            return Err(Some(Hold::NoRight { peer, last_seen }));
        }
        let how = match stuck {
            Some(_) => format!(
                "peer {peer} has been promoting for {}, longer than any activation takes ({}), \
                 so its activation is hung",
                words_duration(now.saturating_sub(self.peer.promoting_since.map_or(now, |p| p.1))),
                words_duration(c.params.timing.activation_bound)
            ),
            None => format!(
                "peer {peer} has been unreachable for {} (failover window {})",
                words_duration(lost_for),
                words_duration(w)
            ),
        };
        // A holder that may still start late (after a grant, an offer, a refused offer, this
        // node's start) must have had time to show on chain — unless the chain already shows
        // it signing (see `chain.rs`).
        let late = c.chain.late_start_until(&c.params.timing);
        let not_before = (lost + w).max(late.unwrap_or(Duration::ZERO));
        if now < not_before {
            let wait_why = match late {
                Some(t) if t > lost + w => {
                    format!("{how}; {}", c.chain.late_start_words(&c.params.timing))
                }
                _ => how,
            };
            return Err(Some(Hold::Waiting {
                until: not_before,
                wait_why,
            }));
        }
        // Seeing new blocks since the peer was lost (or seen hung promoting): a halted chain
        // is not a failover. Unknown: no progress can be shown.
        let at_loss = self
            .peer
            .height_at_loss
            .or(self.peer.promoting_since.and_then(|p| p.2))
            .or(c.local.latest_height)
            .unwrap_or(u64::MAX);
        Ok(Candidate {
            path: Path::Failover,
            not_before,
            story: format!(
                "{how} and {last_seen}; this node is the designated standby for epoch {}",
                c.epoch
            ),
            advance: Some((at_loss, PEER_LOST)),
        })
    }
}
