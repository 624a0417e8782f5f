//! [`Common`]: the state every arbiter shares — the phase, the epoch, the views of the own
//! node, the chain and the witness, the fence state, the operator's pause — and the small
//! operations the core and the arbiters act through (records, refusals, epochs, the passive
//! phase). The rules live in `core.rs`, `gate.rs`, `actuation.rs`, `operator.rs` and the
//! arbiters; this file holds what they all need.

use std::time::Duration;

use serde::Serialize;

use crate::action::Action;
use crate::chain::ChainView;
use crate::fence::FenceState;
use crate::hold::Hold;
use crate::local::LocalView;
use crate::params::Params;
use crate::phase::Phase;
use crate::record::{Record, RecordKind, RecordTag};
use crate::types::{Role, Wish};
use crate::witness::WitnessView;

/// The state every arbiter shares.
#[derive(Debug, Clone, Serialize)]
pub struct Common {
    pub(crate) params: Params,
    pub(crate) phase: Phase,
    pub(crate) paused: bool,
    pub(crate) epoch: u64,
    pub(crate) wish: Wish,
    pub(crate) boot_at: Duration,
    /// `--role active` not yet answered (by a claim, or by finding the role held).
    pub(crate) boot_claim_pending: bool,
    pub(crate) last_now: Duration,
    pub(crate) passive_since: Option<Duration>,
    pub(crate) local: LocalView,
    pub(crate) chain: ChainView,
    pub(crate) witness: WitnessView,
    pub(crate) fence: FenceState,
    /// The operator's takeover: asked at, valid until.
    pub(crate) takeover: Option<(Duration, Duration)>,
    pub(crate) handover_backoff_until: Option<Duration>,
    pub(crate) last_fallback_request: Option<Duration>,
    /// Two-node mode's standby right: `Some(e)` with `e == epoch` means this node may fail
    /// over alone for epoch `e` (persisted with the epoch; never set in etcd mode).
    pub(crate) right: Option<u64>,
    pub(crate) last_hold: Option<&'static str>,
    pub(crate) last_alert: Option<String>,
    pub(crate) last_why: String,
    /// What the current input made the core ask for, in order.
    #[serde(skip)]
    pub(crate) out: Vec<Action>,
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Common {
    pub(crate) fn new(params: Params) -> Common {
        Common {
            params,
            phase: Phase::Booting,
            paused: false,
            epoch: 0,
            wish: Wish::Passive,
            boot_at: Duration::ZERO,
            boot_claim_pending: false,
            last_now: Duration::ZERO,
            passive_since: None,
            local: LocalView::default(),
            chain: ChainView::default(),
            witness: WitnessView::default(),
            fence: FenceState::default(),
            takeover: None,
            handover_backoff_until: None,
            last_fallback_request: None,
            right: None,
            last_hold: None,
            last_alert: None,
            last_why: "not started".into(),
            out: Vec::new(),
        }
    }

    /// The role shown to operators: `Paused` while paused, else the held role.
    pub(crate) fn role(&self) -> Role {
        if self.paused {
            Role::Paused
        } else {
            self.phase.role()
        }
    }

    pub(crate) fn round(&self) -> Duration {
        self.params.timing.round
    }

    pub(crate) fn window(&self) -> Duration {
        self.params.timing.window
    }

    /// An observation is news for `Timing::news_max_age` (two rounds and a request: a look
    /// that takes its whole timeout is still a look).
    pub(crate) fn is_fresh(&self, at: Option<Duration>, now: Duration) -> bool {
        at.is_some_and(|t| now.saturating_sub(t) <= self.params.timing.news_max_age)
    }

    /// How many blocks a node may trail and still count as caught up, at the fastest block
    /// interval seen on chain.
    pub(crate) fn catch_up_tolerance(&self) -> u64 {
        let block = self.chain.fastest_block.unwrap_or(self.params.timing.block);
        self.params.catch_up_tolerance_at(block)
    }

    pub(crate) fn local_fresh(&self, now: Duration) -> bool {
        self.is_fresh(self.local.at, now)
    }

    pub(crate) fn holding(&self) -> Option<u64> {
        self.phase.holding()
    }

    pub(crate) fn push(&mut self, action: Action) {
        self.out.push(action);
    }

    /// A progress note or decision without a tag.
    pub(crate) fn record(&mut self, now: Duration, kind: RecordKind, why: String) {
        self.record_as(now, kind, (RecordTag::Other, ""), why, Vec::new());
    }

    /// A record with its meaning for metrics and alerts: `(tag, reason label)`.
    pub(crate) fn record_as(
        &mut self,
        now: Duration,
        kind: RecordKind,
        (tag, reason): (RecordTag, &str),
        why: String,
        heights: Vec<u64>,
    ) {
        self.last_why.clone_from(&why);
        let record = Record {
            at_ms: ms(now),
            kind,
            role: self.role(),
            epoch: self.epoch,
            why,
            heights,
            tag,
            reason: reason.to_string(),
        };
        self.out.push(Action::Record(record));
    }

    /// An alert recorded once per `key` (a split brain is re-detected every round).
    pub(crate) fn alert_once(&mut self, now: Duration, key: String, why: String) {
        if self.last_alert.as_deref() != Some(key.as_str()) {
            self.last_alert = Some(key);
            self.record(now, RecordKind::Alert, why);
        }
    }

    /// A refusal, recorded only when its reason changes. `lost_peer`: the peer (or the
    /// lock's holder) was reached once and is lost now — a witness showing the validator
    /// signing then prevented a double sign.
    pub(crate) fn hold(&mut self, now: Duration, hold: Hold, lost_peer: bool) {
        if self.last_hold == Some(hold.key()) {
            return;
        }
        self.last_hold = Some(hold.key());
        let why = hold.why(now);
        let heights = hold.heights();
        let tag = hold.tag(lost_peer);
        let kind = if tag == RecordTag::Other {
            RecordKind::Info
        } else {
            RecordKind::Refusal
        };
        self.record_as(now, kind, (tag, hold.key()), why, heights);
    }

    /// Nothing to decide: a refusal that no longer holds must not stay on `/status`.
    pub(crate) fn clear_hold(&mut self, standing_by: impl FnOnce() -> String) {
        if self.last_hold.take().is_some() {
            self.last_why = standing_by();
        }
    }

    /// Learns a newer epoch and persists it. Any standby right held for the older epoch
    /// lapses with it. True when it was newer.
    pub(crate) fn adopt_epoch(&mut self, epoch: u64) -> bool {
        if epoch > self.epoch {
            self.epoch = epoch;
            self.persist();
            true
        } else {
            false
        }
    }

    /// Writes the epoch and the standby right durably before anything after it.
    pub(crate) fn persist(&mut self) {
        let standby_right = self.has_standby_right();
        self.out.push(Action::PersistEpoch {
            epoch: self.epoch,
            standby_right,
        });
    }

    /// Whether this node holds the standby right for its current epoch.
    pub(crate) fn has_standby_right(&self) -> bool {
        self.right == Some(self.epoch)
    }

    /// Becomes the designated standby for `epoch` (only ever for the current epoch, so a
    /// right can never outlive a holder change).
    pub(crate) fn grab_right(&mut self, epoch: u64) {
        if epoch == self.epoch && !self.has_standby_right() {
            self.right = Some(epoch);
            self.persist();
        }
    }

    pub(crate) fn drop_right(&mut self) {
        if self.has_standby_right() {
            self.right = None;
            self.persist();
        }
    }

    pub(crate) fn enter_passive(&mut self, now: Duration) {
        self.phase = Phase::passive();
        self.passive_since = Some(now);
        self.last_hold = None;
    }

    /// Another node may start signing from `now` on without this node seeing it start (a
    /// grant, an offer, a refused offer, a holder first seen promoting, a lock handed over):
    /// an unplanned promotion waits for its first signature on chain, or for as long as an
    /// activation can take (`chain.rs`, the late start).
    pub(crate) fn holder_may_start(&mut self, now: Duration) {
        let chain_known = self.local.latest_height.is_some() || self.chain.at.is_some();
        let known = [
            self.local.latest_height,
            self.chain.last_signed,
            Some(self.chain.latest),
            self.fence
                .highest_seen
                .map(|h| u64::try_from(h.height).unwrap_or(0)),
        ]
        .into_iter()
        .flatten()
        .max()
        .filter(|_| chain_known);
        let epoch = self.epoch;
        self.chain.may_start(now, epoch, known);
    }

    /// The holder of `epoch` reports its activation verified (`who`, in words): it runs and,
    /// being active, fences itself on a cut — no late start and no unverified activation is
    /// pending any more.
    pub(crate) fn holder_verified(&mut self, epoch: u64, who: &str, now: Duration) {
        if self.chain.late_start.is_none_or(|m| epoch < m.epoch) {
            return;
        }
        self.chain.late_start = None;
        let why = format!(
            "{who}, its activation verified: the new holder is running, no late start is \
             pending — from now on an unplanned failover needs only the window and the witness"
        );
        self.record(now, RecordKind::Info, why);
    }

    /// Orders the validator stopped.
    pub(crate) fn deactivate(&mut self, reason: String) {
        self.out.push(Action::Deactivate { reason });
    }
}
