//! [`Params`]: the timings and identities the machine decides with, and their validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::types::NodeId;

/// Everything the machine needs to know about its cluster and its clocks.
///
/// Two-node clusters only (the `peer` backend): one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// `failover.health_check_interval`: one health round. Observations older than two
    /// rounds are stale; a witness older than one round is stale.
    pub health_check_interval: Duration,
    /// `failover.retry_attempts`.
    pub retry_attempts: u32,
    /// S4: an active that is stalled and cut off this long fences itself. Must be shorter
    /// than the failover window.
    pub self_fence_timeout: Duration,
    /// Recent commits that must show no signature before an unplanned promotion.
    pub witness_blocks: u32,
    /// Blocks within which a new active's signatures must appear.
    pub verify_blocks: u32,
    /// How long the primary site must be healthy, without a break, before it asks for the
    /// role back.
    pub fallback_grace_period: Duration,
    /// How long a handover (or a request for the role) may wait for the peer's answer.
    /// Must cover the target's whole activation (stop, write, start).
    pub handover_timeout: Duration,
    /// `M`: the longest time from a peer's decision to start signing until its signatures are
    /// visible in a witness this node fetches (message delay + activation + 2 blocks + one
    /// round), with slack. Waits that must let a possible peer promotion become visible
    /// use it (see the crate docs, "Timing"). At least the failover window.
    pub priority_margin: Duration,
    /// `story.block_interval`: the expected time between blocks. Only used to judge whether
    /// a switchover target is caught up (see [`Params::catch_up_tolerance`]).
    #[serde(default = "default_block_interval")]
    pub block_interval: Duration,
}

fn default_block_interval() -> Duration {
    Duration::from_millis(2_400)
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
    #[error("retry_attempts must be at least 1")]
    ZeroRetries,
    #[error("witness_blocks must be at least 1: without a witness there is no evidence")]
    ZeroWitness,
    #[error(
        "self_fence_timeout ({fence:?}) must be shorter than the failover window \
         ({window:?} = health_check_interval × retry_attempts), or a cut-off active could \
         still be signing when its peer promotes (S4)"
    )]
    SelfFenceTooLong { fence: Duration, window: Duration },
    #[error("self_fence_timeout must be longer than zero")]
    ZeroSelfFence,
    #[error("handover_timeout must be longer than zero")]
    ZeroHandoverTimeout,
    #[error(
        "priority_margin ({margin:?}) must be at least the failover window ({window:?}) and \
         the handover timeout ({handover:?}): it is the time a peer's promotion needs to \
         show in the witness, and a peer may act on a grant or a refusal until its timeout"
    )]
    MarginTooShort {
        margin: Duration,
        window: Duration,
        handover: Duration,
    },
}

impl Params {
    /// Defaults from the seed configuration (5 s × 3 rounds, 5 witness blocks, 60 s grace,
    /// self-fence at half the window), a 45 s handover timeout and a 120 s priority margin
    /// (45 s handover timeout + 60 s activation + 2 blocks + one round, rounded up).
    pub fn with_defaults(node_id: NodeId, peer_id: NodeId, is_primary_site: bool) -> Self {
        Params {
            node_id,
            peer_id,
            is_primary_site,
            peer_is_primary_site: !is_primary_site,
            health_check_interval: Duration::from_secs(5),
            retry_attempts: 3,
            self_fence_timeout: Duration::from_millis(7_500),
            witness_blocks: 5,
            verify_blocks: 5,
            fallback_grace_period: Duration::from_secs(60),
            handover_timeout: Duration::from_secs(45),
            priority_margin: Duration::from_secs(120),
            block_interval: default_block_interval(),
        }
    }

    /// How many blocks a handover target may trail this node and still count as caught up.
    /// Two heights compared here were observed up to two health rounds apart (each node's
    /// own round, plus this node's look at the peer), so a target in sync can seem behind by
    /// the blocks of two rounds; anything beyond that (plus one) is a node really behind.
    pub fn catch_up_tolerance(&self) -> u64 {
        let block = self.block_interval.as_millis().max(1);
        let two_rounds = self.health_check_interval.as_millis().saturating_mul(2);
        let blocks = two_rounds.div_ceil(block);
        u64::try_from(blocks).unwrap_or(u64::MAX).saturating_add(1)
    }

    /// `health_check_interval × retry_attempts`.
    pub fn failover_window(&self) -> Duration {
        self.health_check_interval
            .saturating_mul(self.retry_attempts)
    }

    /// Checks the relations the safety argument relies on.
    pub fn validate(&self) -> Result<(), ParamsError> {
        if self.node_id.as_str().trim().is_empty() {
            return Err(ParamsError::EmptyNodeId);
        }
        if self.peer_id.as_str().trim().is_empty() {
            return Err(ParamsError::EmptyPeerId);
        }
        if self.node_id == self.peer_id {
            return Err(ParamsError::SameIds(self.node_id.0.clone()));
        }
        if self.health_check_interval.is_zero() {
            return Err(ParamsError::ZeroInterval);
        }
        if self.retry_attempts == 0 {
            return Err(ParamsError::ZeroRetries);
        }
        if self.witness_blocks == 0 {
            return Err(ParamsError::ZeroWitness);
        }
        if self.self_fence_timeout.is_zero() {
            return Err(ParamsError::ZeroSelfFence);
        }
        let window = self.failover_window();
        if self.self_fence_timeout >= window {
            return Err(ParamsError::SelfFenceTooLong {
                fence: self.self_fence_timeout,
                window,
            });
        }
        if self.handover_timeout.is_zero() {
            return Err(ParamsError::ZeroHandoverTimeout);
        }
        if self.priority_margin < window || self.priority_margin < self.handover_timeout {
            return Err(ParamsError::MarginTooShort {
                margin: self.priority_margin,
                window,
                handover: self.handover_timeout,
            });
        }
        Ok(())
    }

    /// Timing relations the safety argument needs but that depend on numbers this struct
    /// does not hold (block interval, the actuator's stop and activation times). Empty when
    /// all hold; otherwise one sentence per problem, for `syncguard config check`.
    ///
    /// - S4: a cut-off active decides to fence after `self_fence_timeout` without a new block
    ///   (plus up to one round) and is stopped `max_stop` later. That must come before its
    ///   standby may promote: the failover window after the link was lost, and
    ///   `witness_blocks` blocks after the active's last signature.
    /// - `priority_margin` must cover the handover timeout (a peer may act on a grant or a
    ///   refusal until then) plus an activation, two blocks and one round.
    pub fn timing_warnings(
        &self,
        block_interval: Duration,
        max_stop: Duration,
        max_activation: Duration,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let fence_done = self.self_fence_timeout + self.health_check_interval + max_stop;
        let window = self.failover_window();
        if fence_done >= window {
            out.push(format!(
                "self_fence_timeout ({:?}) + one health round ({:?}) + the stop ({:?}) is not \
                 shorter than the failover window ({:?}): a cut-off active may still be signing \
                 when its peer may promote",
                self.self_fence_timeout, self.health_check_interval, max_stop, window
            ));
        }
        let clean = block_interval.saturating_mul(self.witness_blocks);
        if fence_done >= clean {
            out.push(format!(
                "self_fence_timeout ({:?}) + one health round ({:?}) + the stop ({:?}) is not \
                 shorter than witness_blocks × block_interval ({:?}): when the link was lost \
                 before the active's node stalled, the peer may see a clean chain before the \
                 active has stopped; raise witness_blocks or lower self_fence_timeout",
                self.self_fence_timeout, self.health_check_interval, max_stop, clean
            ));
        }
        let visible = self.handover_timeout
            + max_activation
            + block_interval.saturating_mul(2)
            + self.health_check_interval;
        if self.priority_margin < visible {
            out.push(format!(
                "priority_margin ({:?}) is shorter than the handover timeout + an activation \
                 ({:?}) + 2 blocks + one round ({:?}): a peer that just started may not show \
                 on chain in time",
                self.priority_margin, max_activation, visible
            ));
        }
        out
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
