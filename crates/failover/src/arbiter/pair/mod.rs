//! [`Pair`]: the two-node arbiter (`coordination.backend: peer`). No third party: the right
//! to promote comes from the other node — its handover after a confirmed stop, its grant of a
//! claim — or, unplanned, from the persisted **standby right**: for each epoch, at most one
//! node may ever fail over alone. A node takes it only when it learns the peer holds (or may
//! start under) the current epoch; it drops it whenever it promotes or claims, and it lapses
//! with every newer epoch. On a fresh cluster the preferred node (primary site, then lowest
//! id) starts with it, so two nodes started blind end with exactly one active. Two nodes
//! reporting it for one epoch (a wiped disk) are repaired by the tie-break.
//!
//! - `mod.rs` — the peer as last seen ([`PeerView`]) and the [`Arbiter`] implementation;
//! - `handshake.rs` — the peer protocol: offers and replies, claims, requests and grants;
//! - `candidacy.rs` — which promotion path is open when the peer is lost, hung or passive.

mod candidacy;
mod handshake;

use std::time::Duration;

use serde::Serialize;

use super::{Arbiter, Candidate, Path};
use crate::common::Common;
use crate::core::stand_down;
use crate::event::{Event, PeerObservation, PeerStatus};
use crate::gate::{fence_height, Evidence};
use crate::hold::Hold;
use crate::local::OwnFit;
use crate::message::{HandoverOutcome, MessageBody, PeerMessage, RequestKind};
use crate::phase::{Pending, Phase};
use crate::record::RecordKind;
use crate::timers::{Timer, Timers};
use crate::types::{HandedState, NodeId, Role};
use crate::witness::CleanWitness;

/// The two-node arbiter's state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pair {
    peer: PeerView,
    /// The latest epoch under which this node itself acted (promoted, offered, granted,
    /// answered an offer). An epoch merely learned from the peer's status is not one: the
    /// first offer under it may still be taken.
    acted_at: Option<u64>,
    last_grant: Option<(NodeId, u64)>,
    last_offer: Option<OfferSeen>,
    stale_peer_since: Option<Duration>,
    /// The clean witness a pending claim was made on (the grant promotes on it).
    #[serde(skip)]
    claim_witness: Option<CleanWitness>,
    /// The final state this node stopped at before its offer (a refused offer resumes from
    /// it: this node's own last signature, kept as it is on disk).
    #[serde(skip)]
    offered_state: Option<HandedState>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct PeerView {
    last_at: Option<Duration>,
    /// The last answer when it was reachable and the right node; `None` otherwise.
    status: Option<PeerStatus>,
    unreachable_reason: Option<String>,
    lost_since: Option<Duration>,
    height_at_loss: Option<u64>,
    /// What was last known of it, in words ("was last seen passive at epoch 0").
    last_seen: Option<String>,
    /// The epoch at which the peer was last seen promoting or active.
    seen_holding: Option<u64>,
    passive_since: Option<Duration>,
    /// The epoch the peer was first seen promoting under, when, and this node's height then:
    /// a promotion that lasts longer than an activation can (`Timing::activation_bound`) is
    /// a lost peer.
    promoting_since: Option<(u64, Duration, Option<u64>)>,
    mismatch: Option<NodeId>,
    /// Since when the peer's status has said that its looks at this node fail
    /// (`PeerStatus::peer_lost`): contact is lost for S4 although this node reaches it.
    lost_me_since: Option<Duration>,
}

#[derive(Debug, Clone, Serialize)]
struct OfferSeen {
    from: NodeId,
    epoch: u64,
    accepted: bool,
}

fn max_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

impl Pair {
    fn peer_name(&self, c: &Common) -> NodeId {
        c.params.peer_id.clone()
    }

    /// The peer's status, if the last look is recent, reachable and from the right node.
    fn fresh_peer<'a>(&'a self, c: &Common, now: Duration) -> Option<&'a PeerStatus> {
        if c.is_fresh(self.peer.last_at, now) {
            self.peer.status.as_ref()
        } else {
            None
        }
    }

    fn send(&self, c: &mut Common, epoch: u64, body: MessageBody) {
        let to = self.peer_name(c);
        let from = c.params.node_id.clone();
        c.push(crate::action::Action::Send {
            to,
            message: PeerMessage { from, epoch, body },
        });
    }

    fn on_peer(&mut self, c: &mut Common, obs: PeerObservation, now: Duration) {
        self.peer.last_at = Some(now);
        match obs {
            PeerObservation::Reachable(st) => self.on_peer_status(c, st, now),
            PeerObservation::Unreachable { reason } => {
                self.peer.status = None;
                self.peer.promoting_since = None;
                self.peer.unreachable_reason = Some(reason);
                self.peer.passive_since = None;
                if self.peer.lost_since.is_none() {
                    self.peer.lost_since = Some(now);
                    self.peer.height_at_loss = c.local.latest_height;
                }
            }
        }
    }

    /// Whether the answer comes from the configured peer (alerting once when it does not, or
    /// when the two configurations disagree on the primary site).
    fn is_our_peer(&mut self, c: &mut Common, st: &PeerStatus, now: Duration) -> bool {
        if st.node_id != c.params.peer_id {
            // Something answers at the peer's address, but not our peer: no evidence about
            // the peer at all, and nothing may be promoted on it.
            self.peer.status = None;
            let got = st.node_id.clone();
            self.peer.mismatch = Some(got.clone());
            let why = format!(
                "the peer address answers as node `{got}`, expected `{}`: check \
                 communication.peers",
                c.params.peer_id
            );
            c.alert_once(now, format!("mismatch:{got}"), why);
            return false;
        }
        self.peer.mismatch = None;
        if st.is_primary_site != c.params.peer_is_primary_site {
            let why = format!(
                "peer {} reports is_primary_site = {}, but this node's configuration says {}: \
                 the two nodes may disagree on who is preferred (fallback and tie-breaks); fix \
                 story.is_primary_site",
                st.node_id, st.is_primary_site, c.params.peer_is_primary_site
            );
            c.alert_once(now, "primary_mismatch".into(), why);
        }
        true
    }

    fn on_peer_status(&mut self, c: &mut Common, st: PeerStatus, now: Duration) {
        if !self.is_our_peer(c, &st, now) {
            return;
        }
        self.peer.lost_since = None;
        self.peer.height_at_loss = None;
        self.peer.unreachable_reason = None;
        self.peer.lost_me_since = if st.peer_lost {
            Some(self.peer.lost_me_since.unwrap_or(now))
        } else {
            None
        };
        self.peer.last_seen = Some(format!("was last seen {} at epoch {}", st.role, st.epoch));
        c.adopt_epoch(st.epoch);
        if st.role.may_sign() {
            self.peer.passive_since = None;
        } else {
            self.peer.passive_since = Some(self.peer.passive_since.unwrap_or(now));
        }
        if st.role == Role::Promoting {
            if self
                .peer
                .promoting_since
                .is_none_or(|(e, _, _)| e != st.epoch)
            {
                self.peer.promoting_since = Some((st.epoch, now, c.local.latest_height));
            }
        } else {
            self.peer.promoting_since = None;
        }
        if st.role == Role::Active {
            // An activation ends only once verified on chain.
            let who = format!(
                "peer {} reports itself active at epoch {}",
                st.node_id, st.epoch
            );
            c.holder_verified(st.epoch, &who, now);
        }
        if matches!(st.role, Role::Promoting | Role::Active) {
            if self.peer.seen_holding != Some(st.epoch) {
                // First sight of the peer holding this epoch: if it is still promoting, it
                // may start signing any moment without this node seeing it.
                self.peer.seen_holding = Some(st.epoch);
                if st.role == Role::Promoting {
                    c.holder_may_start(now);
                }
            }
            // The peer holds the current epoch: this node is its standby.
            if !st.standby_right && c.holding() != Some(st.epoch) {
                c.grab_right(st.epoch);
            }
        }
        if st.standby_right
            && st.epoch == c.epoch
            && c.has_standby_right()
            && !c.params.outranks_peer()
        {
            // Two standbys for one epoch (a wiped state directory, or a bug): the tie-break
            // keeps one, so never both may fail over alone.
            c.drop_right();
            let why = format!(
                "peer {} also holds the standby right for epoch {}; the tie-break leaves it \
                 to {}, this node gives it up",
                st.node_id, c.epoch, st.node_id
            );
            c.alert_once(now, format!("two_rights:{}", c.epoch), why);
        }
        c.fence.see(st.last_state);
        self.peer.status = Some(st);
    }

    /// A message from the peer is contact, even while its status API does not answer: the
    /// loss clock restarts now, so an unplanned failover waits a whole window from the last
    /// sign of life — a claim granted, an offer or a reply heard is a peer that may act on
    /// it (start signing) the moment after.
    pub(super) fn heard_from(&mut self, c: &Common, m: &PeerMessage, now: Duration) {
        if self.peer.lost_since.is_some() {
            self.peer.lost_since = Some(now);
            self.peer.height_at_loss = c.local.latest_height;
        }
        let what = match &m.body {
            MessageBody::HandoverOffer { .. } => "offering a handover".to_string(),
            MessageBody::HandoverReply { outcome, .. } => {
                format!("answering a handover ({outcome:?})").to_lowercase()
            }
            MessageBody::RoleRequest { kind } => format!("asking for the role ({})", kind.name()),
            MessageBody::RoleReply { granted: true, .. } => "granting a claim".to_string(),
            MessageBody::RoleReply { granted: false, .. } => "declining a request".to_string(),
        };
        self.peer.last_seen = Some(format!("was last heard from {what} at epoch {}", m.epoch));
    }

    /// Since when this node's own looks at its peer have failed (or been silent).
    fn own_contact_lost_since(&self, c: &Common, now: Duration) -> Option<Duration> {
        match self.peer.last_at {
            None => Some(c.boot_at),
            Some(at) if !c.is_fresh(Some(at), now) => Some(self.peer.lost_since.unwrap_or(at)),
            Some(_) if self.peer.status.is_none() && self.peer.mismatch.is_none() => {
                self.peer.lost_since
            }
            Some(_) => None,
        }
    }

    /// Whether the peer can take the role in a planned handover right now.
    pub(super) fn peer_ready(&self, c: &Common, now: Duration) -> Result<(), String> {
        super::ready_as_target(c, &self.peer_name(c), self.fresh_peer(c, now))
    }
}

impl Arbiter for Pair {
    fn validate(&self, params: &crate::params::Params) -> Result<(), crate::params::ParamsError> {
        params.validate()
    }

    fn on_start(&mut self, c: &mut Common, standby_right: Option<bool>, _now: Duration) {
        c.right = match standby_right {
            Some(true) => Some(c.epoch),
            Some(false) => None,
            // A fresh host: on a fresh cluster the preferred node is the standby of epoch 0,
            // so exactly one of two nodes started blind may take the role.
            None if c.epoch == 0 && c.params.outranks_peer() => Some(0),
            None => None,
        };
        if standby_right.is_none() {
            c.persist();
        }
    }

    fn on_event(&mut self, c: &mut Common, event: Event, now: Duration) {
        match event {
            Event::Peer(obs) => self.on_peer(c, obs, now),
            Event::Message(m) => self.on_message(c, m, now),
            Event::LocalHealth(_)
                if self.peer.lost_since.is_some() && self.peer.height_at_loss.is_none() =>
            {
                self.peer.height_at_loss = c.local.latest_height;
            }
            _ => {}
        }
    }

    fn holder_safety(&mut self, c: &mut Common, holding: u64, now: Duration) {
        let peer = self.peer_name(c);
        let stale_peer = self.fresh_peer(c, now).is_some_and(|st| {
            matches!(st.role, Role::Promoting | Role::Active | Role::Paused) && st.epoch < holding
        });
        // A stale look during a normal handover is expected; only a lasting one is news.
        self.stale_peer_since = if stale_peer {
            Some(self.stale_peer_since.unwrap_or(now))
        } else {
            None
        };
        let Some(st) = self.fresh_peer(c, now).cloned() else {
            return;
        };
        if !matches!(st.role, Role::Promoting | Role::Active | Role::Paused) {
            return;
        }
        if st.epoch == holding {
            if c.params.outranks_peer() {
                let why = format!(
                    "SPLIT BRAIN: peer {peer} is also {} at epoch {holding} — this must never \
                     happen; the tie-break (primary site first, then lowest id) keeps this \
                     node, {peer} must stop now",
                    st.role
                );
                c.alert_once(now, format!("split:{holding}"), why);
            } else {
                let why = format!(
                    "SPLIT BRAIN: peer {peer} is also {} at epoch {holding} — this must never \
                     happen; the tie-break (primary site first, then lowest id) gives the role \
                     to {peer}, so this node stops now",
                    st.role
                );
                stand_down(c, why, now);
            }
        } else if st.epoch < holding
            && self
                .stale_peer_since
                .is_some_and(|t| now.saturating_sub(t) >= c.round().saturating_mul(2))
        {
            let why = format!(
                "peer {peer} still acts as {} at older epoch {}; it must stand down when it \
                 sees epoch {holding}",
                st.role, st.epoch
            );
            c.alert_once(now, format!("stale_peer:{}", st.epoch), why);
        }
    }

    /// Since when this node has had no contact with its peer: an unreachable peer, silence of
    /// the peer check itself (it may be broken), or a peer that says it cannot reach this
    /// node (contact is only contact both ways).
    fn contact_lost_since(&self, c: &Common, now: Duration) -> Option<Duration> {
        let own = self.own_contact_lost_since(c, now);
        let theirs = self
            .peer
            .lost_me_since
            .filter(|_| self.fresh_peer(c, now).is_some());
        match (own, theirs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn reports_peer_lost(&self, c: &Common, now: Duration) -> bool {
        self.peer.last_at.is_some() && self.own_contact_lost_since(c, now).is_some()
    }

    fn candidacy(&mut self, c: &mut Common, now: Duration) -> Result<Candidate, Option<Hold>> {
        self.open_path(c, now)
    }

    fn claim(
        &mut self,
        c: &mut Common,
        cand: Candidate,
        fit: OwnFit,
        clean: CleanWitness,
        now: Duration,
    ) {
        let peer = self.peer_name(c);
        let h = fit.height();
        let (lo, hi) = (clean.lo(), clean.hi());
        let fence_h = fence_height(h);
        let chain_words =
            format!("the chain shows no signature from the validator in blocks {lo}–{hi}");
        let epoch = c.epoch + 1;
        match cand.path {
            Path::Claim => {
                c.boot_claim_pending = false;
                // The peer becomes the standby if it grants; never two standbys.
                c.drop_right();
                c.phase = Phase::Passive {
                    pending: Pending::Claim {
                        epoch,
                        deadline: now + c.params.timing.handover_timeout,
                    },
                };
                self.claim_witness = Some(clean);
                self.send(
                    c,
                    epoch,
                    MessageBody::RoleRequest {
                        kind: RequestKind::Claim,
                    },
                );
                let why = format!(
                    "{}; my node is healthy at height {h}; {chain_words} — asking {peer} for the \
                     role at epoch {epoch}",
                    cand.story
                );
                c.record_as(
                    now,
                    RecordKind::Info,
                    (crate::record::RecordTag::Other, ""),
                    why,
                    vec![lo, hi],
                );
            }
            Path::Failover => {
                let at_loss = cand.advance.map_or(h, |(a, _)| a);
                let story = format!(
                    "promoting to active at epoch {epoch}: {}; my node is healthy at height {h} \
                     and advancing ({at_loss} when the peer was lost); {chain_words}; fence at \
                     height {fence_h} round 0 step 0 — nothing at or below height {} will be \
                     signed here",
                    cand.story,
                    fence_h - 1
                );
                if let Some(ev) = Evidence::standby(c, fit, clean) {
                    c.promote(epoch, ev, story, now);
                }
            }
            Path::Takeover => {
                let story = format!(
                    "promoting to active at epoch {epoch} on the operator's takeover: my node is \
                     healthy at height {h}; {chain_words}; fence at height {fence_h} round 0 \
                     step 0"
                );
                c.promote(epoch, Evidence::takeover(fit, clean), story, now);
            }
        }
    }

    fn hand_over(
        &mut self,
        c: &mut Common,
        to: NodeId,
        epoch: u64,
        final_state: Option<HandedState>,
        now: Duration,
    ) {
        let final_words = final_state.as_ref().map_or_else(
            || "final state unknown".to_string(),
            |f| format!("final state {}", f.hrs),
        );
        if c.epoch >= epoch {
            c.enter_passive(now);
            let why = format!(
                "handover to {to} abandoned after stopping: epoch {} already exists, so \
                 offering epoch {epoch} would be refused; staying passive",
                c.epoch
            );
            c.record(now, RecordKind::RoleChange, why);
            return;
        }
        c.adopt_epoch(epoch);
        self.acted_at = Some(epoch);
        self.offered_state.clone_from(&final_state);
        self.send(c, epoch, MessageBody::HandoverOffer { final_state });
        c.holder_may_start(now);
        c.phase = Phase::HandingOver {
            to: to.clone(),
            epoch,
            deadline: now + c.params.timing.handover_timeout,
            accepted: false,
        };
        let why = format!(
            "handover: stopped signing here and swapped in the placeholder key ({final_words}); \
             offering the role to {to} at epoch {epoch}"
        );
        c.record(now, RecordKind::RoleChange, why);
    }

    fn ask_for_role(&mut self, c: &mut Common, kind: RequestKind, now: Duration) -> bool {
        if kind == RequestKind::Fallback {
            c.phase = Phase::Passive {
                pending: Pending::Request {
                    kind,
                    deadline: now + c.params.timing.handover_timeout,
                },
            };
        }
        self.send(c, c.epoch, MessageBody::RoleRequest { kind });
        true
    }

    fn handover_target(&self, c: &Common, now: Duration) -> Result<NodeId, Option<String>> {
        let peer = self.peer_name(c);
        // A stalled node hands over only to a peer that sees blocks it does not: when both
        // are stuck at the same height it is a chain-wide halt, and nothing should move.
        let ahead = match (
            self.fresh_peer(c, now).and_then(|st| st.latest_height),
            c.local.latest_height,
        ) {
            (Some(theirs), Some(mine)) => theirs > mine,
            // My node does not answer at all while the peer's follows the chain: not a
            // chain-wide halt — hand over (stopping first) rather than hold the role with a
            // dead node (the peer would wait for this node forever).
            (Some(_), None) => true,
            _ => false,
        };
        let stuck = c.local.stalled
            || c.local
                .no_new_block_for(now)
                .is_some_and(|d| d >= c.params.timing.stall_age);
        if stuck && !ahead {
            return Err(None);
        }
        match self.peer_ready(c, now) {
            Ok(()) => Ok(peer),
            Err(reason) => Err(Some(format!("{peer} cannot take over ({reason})"))),
        }
    }

    fn target_ready(&self, c: &Common, _to: &NodeId, now: Duration) -> Result<(), String> {
        self.peer_ready(c, now)
    }

    fn holder_seen(&self, c: &Common, now: Duration) -> Option<(NodeId, Option<u64>)> {
        self.fresh_peer(c, now)
            .filter(|st| st.role == Role::Active && !st.paused)
            .map(|st| (st.node_id.clone(), st.latest_height))
    }

    fn may_unfence(&self, c: &Common, now: Duration) -> Option<String> {
        let st = self.fresh_peer(c, now)?;
        Some(format!(
            "leaving fenced: peer {} is reachable again and reports itself {} at epoch {}; \
             passive now, the normal rules apply",
            st.node_id, st.role, st.epoch
        ))
    }

    fn after_activation(&mut self, _c: &mut Common, _epoch: u64, _ok: bool, _now: Duration) {}

    fn after_fenced(&mut self, _c: &mut Common, _now: Duration) {}

    fn after_failed_activation(
        &mut self,
        c: &mut Common,
        reply_to: Option<(NodeId, u64)>,
        now: Duration,
    ) {
        let Some((to, e)) = reply_to else {
            return;
        };
        self.last_offer = Some(OfferSeen {
            from: to,
            epoch: e,
            accepted: false,
        });
        // This node activated (and failed) under `e`; the old holder resumes under `e + 1`,
        // which this node reserves for it by adopting it now, so no epoch ever names two
        // activations.
        let resume = e + 1;
        c.adopt_epoch(resume);
        self.acted_at = Some(resume);
        self.send(
            c,
            resume,
            MessageBody::HandoverReply {
                outcome: HandoverOutcome::Refused,
                reason: "activation failed here; the validator is confirmed stopped and this \
                         node will not start under this epoch"
                    .into(),
            },
        );
        // The old holder may resume now. No standby right is taken here: this node was
        // promoting under `e`, so the old holder may hold that right already.
        c.holder_may_start(now);
    }

    fn on_pause(&mut self, _c: &mut Common, _paused: bool, _now: Duration) {}

    fn timers(&self, c: &Common, t: &mut Timers) {
        let timing = &c.params.timing;
        t.set_opt(
            Timer::ContactAgesOut,
            self.peer
                .last_at
                .map(|at| crate::timers::just_after(at + timing.news_max_age)),
        );
        t.set_opt(
            Timer::WaitEnds,
            self.peer
                .lost_since
                .map(|lost| (lost + c.round()).max(lost + timing.window)),
        );
        t.set_opt(
            Timer::PromotionOverdue,
            self.peer
                .promoting_since
                .map(|(_, since, _)| since + timing.activation_bound + timing.news_max_age),
        );
        t.set_opt(
            Timer::WaitEnds,
            max_opt(self.peer.passive_since, c.passive_since).map(|s| s + timing.window),
        );
    }

    fn peer_view(&self, _c: &Common, now: Duration) -> (Option<PeerStatus>, Option<Duration>) {
        (
            self.peer.status.clone(),
            self.peer.lost_since.map(|t| now.saturating_sub(t)),
        )
    }

    fn standing_by(&self, c: &Common, now: Duration) -> String {
        match self.fresh_peer(c, now) {
            Some(st) => format!(
                "standing by: peer {} is {} at epoch {}{}",
                st.node_id,
                st.role,
                st.epoch,
                if st.healthy {
                    ""
                } else {
                    " (its node is unhealthy)"
                }
            ),
            None => "standing by".to_string(),
        }
    }

    fn lost_peer(&self, c: &Common, now: Duration) -> bool {
        self.peer.last_at.is_some() && self.contact_lost_since(c, now).is_some()
    }

    fn answer_started(&mut self, c: &mut Common, epoch: u64, _now: Duration) {
        self.send(
            c,
            epoch,
            MessageBody::HandoverReply {
                outcome: HandoverOutcome::Started,
                reason: format!("started: active at epoch {epoch}"),
            },
        );
    }

    fn replacement_words(&self, c: &Common) -> String {
        format!("peer {}", self.peer_name(c))
    }

    fn unfence_words(&self, c: &Common) -> String {
        format!("it can reach peer {} again", self.peer_name(c))
    }

    fn holder_words(&self, c: &Common) -> String {
        self.peer_name(c).to_string()
    }

    fn knows(&self, c: &Common, to: &NodeId) -> Result<(), String> {
        let peer = self.peer_name(c);
        if *to == peer {
            Ok(())
        } else {
            Err(format!("`{to}` is neither this node nor its peer `{peer}`"))
        }
    }
}
