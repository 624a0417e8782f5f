//! [`Arbiter`]: how the right to promote is obtained and kept — the one thing the two
//! coordination backends do differently. The core (`core.rs`) decides everything else the
//! same way for both: health, the witness, the fence, the gate, self-fencing, the operator's
//! commands, the timers.
//!
//! - [`pair::Pair`] (`coordination.backend: peer`): two nodes and the chain as witness; a
//!   handshake between the nodes (offers, claims, grants) and a persisted **standby right**
//!   — per epoch, at most one node may fail over alone.
//! - [`lease::Lease`] (`coordination.backend: etcd`): a leader key under an etcd lease; its
//!   create revision is the epoch, a watermark key the highest state signed; planned
//!   handovers, requests and the cluster-wide pause go through etcd too.
//!
//! Model: Patroni's one HA loop (`ha.py`) over its lock backends (`dcs/`).

pub mod lease;
pub mod pair;

use std::time::Duration;

use crate::common::Common;
use crate::event::{Event, PeerStatus};
use crate::hold::Hold;
use crate::local::OwnFit;
use crate::message::RequestKind;
use crate::timers::Timers;
use crate::types::{HandedState, NodeId};
use crate::witness::CleanWitness;

/// The promotion path a passive may take now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Unplanned: the holder is gone (two-node: standby right; etcd: the free lock).
    Failover,
    /// Two-node: ask the peer for the role (both passive, or a boot wish).
    Claim,
    /// The operator's last resort.
    Takeover,
}

/// An open promotion path, held back until `not_before` (a witness asked before proves
/// nothing for it).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub(crate) path: Path,
    pub(crate) not_before: Duration,
    /// Why, in words, for the promotion's record.
    pub(crate) story: String,
    /// For an unplanned promotion: the own height when the holder was lost, and what that
    /// moment was — the node must have seen new blocks since.
    pub(crate) advance: Option<(u64, &'static str)>,
}

/// How the right to promote is obtained and kept. Every method gets the shared state;
/// everything it decides goes through [`Common`]'s operations (records, epochs, phases) and,
/// for a promotion, through the gate (`Common::promote` with an `Evidence`).
pub trait Arbiter: std::fmt::Debug + Clone {
    /// What the arbiter needs of the parameters (two-node: a peer id distinct from ours).
    fn validate(&self, params: &crate::params::Params) -> Result<(), crate::params::ParamsError>;

    /// At `Event::Start`, after the common boot: the persisted standby right (two-node).
    fn on_start(&mut self, c: &mut Common, standby_right: Option<bool>, now: Duration);

    /// An input only the arbiter understands: a look at the peer, a peer message, a look at
    /// the lock, an acquisition's answer, the lease's end, a handover's result.
    fn on_event(&mut self, c: &mut Common, event: Event, now: Duration);

    /// The stops that act even while paused, for a holder at `holding` (split brain, the lock
    /// moved, the lease lost) — after the common ones (a newer epoch, S4).
    fn holder_safety(&mut self, c: &mut Common, holding: u64, now: Duration);

    /// Since when a holder has had no contact with whoever could replace it: with its node
    /// quiet too, it must fence itself (S4).
    fn contact_lost_since(&self, c: &Common, now: Duration) -> Option<Duration>;

    /// Which promotion path is open, if any. `Err(None)`: nothing to consider (the steady
    /// state); `Err(Some(hold))`: a candidate situation held back for this reason.
    fn candidacy(&mut self, c: &mut Common, now: Duration) -> Result<Candidate, Option<Hold>>;

    /// The own node is fit and the chain clean: obtain the right and promote (at once, or
    /// when the answer comes).
    fn claim(
        &mut self,
        c: &mut Common,
        cand: Candidate,
        fit: OwnFit,
        clean: CleanWitness,
        now: Duration,
    );

    /// A planned handover: the stop is confirmed; give the role to `to` (two-node: `epoch`
    /// is the offered one).
    fn hand_over(
        &mut self,
        c: &mut Common,
        to: NodeId,
        epoch: u64,
        final_state: Option<HandedState>,
        now: Duration,
    );

    /// Asks the holder for the role (a switchover to this node, a fallback). False when
    /// there is nobody to ask.
    fn ask_for_role(&mut self, c: &mut Common, kind: RequestKind, now: Duration) -> bool;

    /// The node a planned handover would go to now, or why there is none ready.
    /// `Err(None)`: nothing to do (a chain-wide halt); `Err(Some(why))`: no target ready.
    fn handover_target(&self, c: &Common, now: Duration) -> Result<NodeId, Option<String>>;

    /// Whether `to` can take the role in a planned handover right now.
    fn target_ready(&self, c: &Common, to: &NodeId, now: Duration) -> Result<(), String>;

    /// The holder this node would ask for the role, if it is known and active now.
    fn holder_seen(&self, c: &Common, now: Duration) -> Option<(NodeId, Option<u64>)>;

    /// A fenced node may leave `Fenced`: why, in words (`None`: not yet).
    fn may_unfence(&self, c: &Common, now: Duration) -> Option<String>;

    /// An activation finished (`ok`), before the core records it.
    fn after_activation(&mut self, c: &mut Common, epoch: u64, ok: bool, now: Duration);

    /// A self-fence's stop is confirmed.
    fn after_fenced(&mut self, c: &mut Common, now: Duration);

    /// A failed activation's stop is confirmed (two-node: answer the old holder).
    fn after_failed_activation(
        &mut self,
        c: &mut Common,
        reply_to: Option<(NodeId, u64)>,
        now: Duration,
    );

    /// The operator paused or resumed this node.
    fn on_pause(&mut self, c: &mut Common, paused: bool, now: Duration);

    /// The arbiter's own timers.
    fn timers(&self, c: &Common, t: &mut Timers);

    /// The other node as last seen, for `/status` (two-node), and for how long it has been
    /// unreachable.
    fn peer_view(&self, c: &Common, now: Duration) -> (Option<PeerStatus>, Option<Duration>);

    /// The present state of a passive with nothing to decide, in words.
    fn standing_by(&self, c: &Common, now: Duration) -> String;

    /// Whether the other holder was reached once and is lost now: a witness showing the
    /// validator signing then prevented a double sign (for metrics and alerts).
    fn lost_peer(&self, c: &Common, now: Duration) -> bool;

    /// Whether this node's own looks at its peer fail now (two-node), published in its
    /// status so that a peer which still reaches it counts contact as lost too (S4 on a
    /// one-way loss). Only this node's own looks: never the peer's flag echoed back.
    fn reports_peer_lost(&self, _c: &Common, _now: Duration) -> bool {
        false
    }

    /// The new holder of a planned handover is active: answer the old one (two-node).
    fn answer_started(&mut self, c: &mut Common, epoch: u64, now: Duration);

    /// Who could take over from this holder, for the self-fence's record ("peer b", "etcd").
    fn replacement_words(&self, c: &Common) -> String;

    /// What ends `Fenced`, for the fence's record.
    fn unfence_words(&self, c: &Common) -> String;

    /// The holder a passive would ask, in words ("peer a", "the lock's holder").
    fn holder_words(&self, c: &Common) -> String;

    /// Every node's own status as the backend last showed it (etcd: `members/`), for
    /// `/status`; empty when the backend keeps none.
    fn members(&self) -> Vec<PeerStatus> {
        Vec::new()
    }

    /// Whether the holder is a primary site itself (no fallback asked of it).
    fn holder_is_primary(&self, _c: &Common, _now: Duration) -> bool {
        false
    }

    /// Whether `to` is a node of this cluster (the refusal in words).
    fn knows(&self, c: &Common, to: &NodeId) -> Result<(), String>;

    /// An operator's switchover to `to` run on a node that is neither the holder nor `to`:
    /// whether this node can pass it on to the holder now (`None`: this arbiter does not
    /// relay — run it on the active or on the target).
    fn relay_check(&self, _c: &Common, _to: &NodeId, _now: Duration) -> Option<Result<(), String>> {
        None
    }

    /// Passes the switchover to `to` on to the holder (after `relay_check` said yes).
    fn relay(&mut self, _c: &mut Common, _to: NodeId, _now: Duration) {}
}

/// Whether `name`, last seen as `st` (`None`: no fresh status), can take the role in a
/// planned handover right now: passive, not paused, healthy, and caught up with this node's
/// chain height. A switchover is planned: never hand the role to a node that could not sign
/// at once.
pub(crate) fn ready_as_target(
    c: &Common,
    name: &NodeId,
    st: Option<&PeerStatus>,
) -> Result<(), String> {
    let Some(st) = st else {
        return Err(format!("{name} is not reachable"));
    };
    if st.role != crate::types::Role::Passive {
        return Err(format!("{name} is {}, not passive", st.role));
    }
    if st.paused {
        return Err(format!("{name} is paused"));
    }
    if !st.healthy {
        return Err(format!("{name}'s node is unhealthy"));
    }
    let Some(theirs) = st.latest_height else {
        return Err(format!("{name} reports no chain height"));
    };
    if let Some(mine) = c.local.latest_height {
        let tolerance = c.catch_up_tolerance();
        if theirs.saturating_add(tolerance) < mine {
            return Err(format!(
                "{name} is behind (height {theirs}, this node {mine}; at most {tolerance} blocks \
                 behind counts as caught up)"
            ));
        }
    }
    Ok(())
}
