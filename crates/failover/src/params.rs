//! [`Params`]: the identities and timings the machine decides with, and their validation.
//! Every timing comes from the timing model ([`syncguard_timing::Timing`], `docs/TIMING.md`):
//! the inequalities that make the rules safe hold by construction there.

use std::time::Duration;

use serde::Serialize;
use syncguard_timing::Timing;
use thiserror::Error;

use crate::types::NodeId;

/// Everything the machine needs to know about its cluster and its clocks.
///
/// `peer_id` and `peer_is_primary_site` describe the one peer of the `peer` backend; the etcd
/// backend leaves `peer_id` empty and `peer_is_primary_site` false (its other nodes publish
/// their own status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Params {
    /// This node's id.
    pub node_id: NodeId,
    /// The peer's id; every peer message and status must carry it.
    pub peer_id: NodeId,
    /// `story.is_primary_site` of this node.
    pub is_primary_site: bool,
    /// The same flag of the peer, from this node's configuration. Both nodes must agree on
    /// who is preferred (tie-break: primary site first, then lowest node id); the peer's own
    /// report is compared with this and a disagreement blocks every unilateral promotion.
    pub peer_is_primary_site: bool,
    /// How long the primary site must be healthy, without a break, before it asks for the
    /// role back.
    pub fallback_grace_period: Duration,
    /// Every timing (round, window, witness spans, the activation bound, the settle wait, …).
    pub timing: Timing,
}

/// A parameter set the machine refuses to run with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParamsError {
    #[error("node id is empty")]
    EmptyNodeId,
    #[error("peer id is empty")]
    EmptyPeerId,
    #[error("node id and peer id are both `{0}`: the tie-break needs two different ids")]
    SameIds(String),
    #[error("health_check_interval must be longer than zero")]
    ZeroInterval,
    #[error("witness_blocks must be at least 1: without a witness there is no evidence")]
    ZeroWitness,
    #[error(
        "the timings break an inequality of the timing model ({0}); derive them with \
         syncguard_timing::derive"
    )]
    Timing(&'static str),
}

impl Params {
    /// The seed's defaults (5 s × 3 rounds, 60 s grace) on Story's 2.4 s blocks, every other
    /// timing derived.
    pub fn with_defaults(node_id: NodeId, peer_id: NodeId, is_primary_site: bool) -> Self {
        let inputs =
            syncguard_timing::Inputs::new(Duration::from_secs(5), 3, Duration::from_millis(2_400));
        Params {
            node_id,
            peer_id,
            is_primary_site,
            peer_is_primary_site: !is_primary_site,
            fallback_grace_period: Duration::from_secs(60),
            timing: syncguard_timing::derive_lenient(&inputs),
        }
    }

    /// How many blocks a handover target may trail this node and still count as caught up.
    /// Two heights compared here were observed up to two health rounds apart (each node's
    /// own round, plus this node's look at the peer), so a target in sync can seem behind by
    /// the blocks of two rounds; anything beyond that (plus one) is a node really behind.
    pub fn catch_up_tolerance(&self) -> u64 {
        self.catch_up_tolerance_at(self.timing.block)
    }

    /// [`Params::catch_up_tolerance`] for a chain whose blocks come every `block` (the
    /// chain may run faster than `story.block_interval` says: then more blocks fit in two
    /// rounds).
    pub fn catch_up_tolerance_at(&self, block: Duration) -> u64 {
        let block = block.min(self.timing.block).as_millis().max(1);
        let two_rounds = self.timing.round.as_millis().saturating_mul(2);
        let blocks = two_rounds.div_ceil(block);
        u64::try_from(blocks).unwrap_or(u64::MAX).saturating_add(1)
    }

    /// The passive's wait after losing its peer (at least `health_check_interval ×
    /// retry_attempts`; longer when the active's stop needs it).
    pub fn failover_window(&self) -> Duration {
        self.timing.window
    }

    /// Checks what the machine relies on and the model cannot know (ids), and the model's
    /// own inequalities (a hand-built `Timing` may break them).
    pub fn validate(&self) -> Result<(), ParamsError> {
        self.validate_own()?;
        if self.peer_id.as_str().trim().is_empty() {
            return Err(ParamsError::EmptyPeerId);
        }
        if self.node_id == self.peer_id {
            return Err(ParamsError::SameIds(self.node_id.0.clone()));
        }
        Ok(())
    }

    /// What every backend needs: a node id, and timings that keep the model's inequalities
    /// (the etcd backend has no peer: `peer_id` is unused there).
    pub fn validate_own(&self) -> Result<(), ParamsError> {
        if self.node_id.as_str().trim().is_empty() {
            return Err(ParamsError::EmptyNodeId);
        }
        let t = &self.timing;
        if t.round.is_zero() {
            return Err(ParamsError::ZeroInterval);
        }
        if t.witness_blocks == 0 {
            return Err(ParamsError::ZeroWitness);
        }
        if t.contact_lag + t.stop_bound > t.window {
            return Err(ParamsError::Timing(
                "a cut-off active must have stopped within the window",
            ));
        }
        if t.observe_lag + t.stall_age + t.stop_bound > t.witness_span_stall
            || t.observe_lag + t.stop_bound > t.witness_span_silent
        {
            return Err(ParamsError::Timing(
                "a quiet active must have stopped within the witness spans",
            ));
        }
        if t.activation_bound > t.settle || t.activation_bound > t.handover_timeout {
            return Err(ParamsError::Timing(
                "the settle wait and the handover timeout must cover an activation",
            ));
        }
        Ok(())
    }

    /// Whether this node alone is the primary site (it then takes the role back after the
    /// grace period: fallback).
    pub fn sole_primary(&self) -> bool {
        self.is_primary_site && !self.peer_is_primary_site
    }

    /// Whether the peer alone is the primary site.
    pub fn peer_sole_primary(&self) -> bool {
        self.peer_is_primary_site && !self.is_primary_site
    }

    /// Whether this node wins the deterministic tie-break against its peer: primary site
    /// first, then the lowest node id. Both nodes compute the same answer from consistent
    /// configurations.
    pub fn outranks_peer(&self) -> bool {
        match (self.is_primary_site, self.peer_is_primary_site) {
            (true, false) => true,
            (false, true) => false,
            _ => self.node_id < self.peer_id,
        }
    }
}
