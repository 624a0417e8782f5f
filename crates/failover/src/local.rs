//! The own node, as the health rounds show it: [`LocalView`], and whether it may carry the
//! role ([`LocalView::fit`]).

use std::time::Duration;

use serde::Serialize;

use crate::event::LocalHealth;
use crate::hold::Hold;

/// What the last health rounds said about the own node.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct LocalView {
    pub(crate) at: Option<Duration>,
    pub(crate) healthy: bool,
    pub(crate) latest_height: Option<u64>,
    pub(crate) stalled: bool,
    pub(crate) why: Option<String>,
    pub(crate) healthy_since: Option<Duration>,
    pub(crate) stalled_since: Option<Duration>,
    /// When the reported height last grew (or `/status` first answered): how long the node
    /// has seen no new block, for the handover on local failure.
    pub(crate) height_grew_at: Option<Duration>,
    /// The age of the node's newest block at the last round (S4's "follows no chain").
    pub(crate) block_age: Option<Duration>,
    /// Unhealthy, but the last rounds were good (`LocalHealth::recovering`).
    pub(crate) recovering: bool,
}

/// What [`LocalView::fit`] proved: this node's node may carry the role at `height`. Only
/// `fit` makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnFit {
    height: u64,
}

impl OwnFit {
    pub(crate) fn height(self) -> u64 {
        self.height
    }
}

impl LocalView {
    pub(crate) fn observe(&mut self, h: LocalHealth, now: Duration) {
        self.at = Some(now);
        self.healthy = h.healthy;
        if let Some(new) = h.latest_height {
            if self.latest_height.is_none_or(|old| new > old) {
                self.height_grew_at = Some(now);
            }
            self.latest_height = Some(new);
        }
        self.stalled = h.stalled;
        self.why = h.why;
        self.block_age = h.block_age;
        self.recovering = !h.healthy && h.recovering;
        self.healthy_since = if h.healthy {
            Some(self.healthy_since.unwrap_or(now))
        } else {
            None
        };
        self.stalled_since = if h.stalled {
            Some(self.stalled_since.unwrap_or(now))
        } else {
            None
        };
    }

    /// Whether this node's own node may carry the role now (`fresh`: the last round is
    /// news). `advance`: for an unplanned promotion, the height seen when the other holder
    /// was lost and what that moment was — the node must have seen new blocks since (a
    /// halted chain is not a failover).
    pub(crate) fn fit(
        &self,
        fresh: bool,
        advance: Option<(u64, &'static str)>,
    ) -> Result<OwnFit, Hold> {
        if !fresh {
            return Err(Hold::OwnNoHealth);
        }
        if !self.healthy {
            return Err(Hold::OwnUnhealthy {
                why: self.why.clone(),
            });
        }
        let Some(h) = self.latest_height else {
            return Err(Hold::OwnStalled { height: None });
        };
        if self.stalled {
            return Err(Hold::OwnStalled { height: Some(h) });
        }
        if let Some((at_loss, since)) = advance {
            if h <= at_loss {
                return Err(Hold::OwnNotAdvancing {
                    height: h,
                    at_loss,
                    since,
                });
            }
        }
        Ok(OwnFit { height: h })
    }

    /// How long this node has seen no new block: by the health verdict's stall flag, or by
    /// its own clock on the reported heights, whichever says so first.
    pub(crate) fn no_new_block_for(&self, now: Duration) -> Option<Duration> {
        let by_flag = self.stalled.then_some(self.stalled_since).flatten();
        [by_flag, self.height_grew_at]
            .into_iter()
            .flatten()
            .min()
            .map(|t| now.saturating_sub(t))
    }

    /// A sentence about the own node's trouble, for records.
    pub(crate) fn unhealthy_words(&self) -> String {
        self.why
            .as_ref()
            .map(|w| format!(" ({w})"))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(healthy: bool, height: Option<u64>, stalled: bool) -> LocalHealth {
        LocalHealth {
            healthy,
            latest_height: height,
            stalled,
            why: (!healthy).then(|| "CometBFT catching up".into()),
            block_age: None,
            recovering: false,
        }
    }

    #[test]
    fn failover_local_fit_needs_fresh_healthy_advancing() {
        let mut l = LocalView::default();
        assert_eq!(l.fit(false, None), Err(Hold::OwnNoHealth));
        l.observe(round(true, Some(10), false), Duration::from_secs(1));
        assert_eq!(l.fit(true, None).map(OwnFit::height), Ok(10));
        assert!(matches!(
            l.fit(true, Some((10, "the peer was lost"))),
            Err(Hold::OwnNotAdvancing {
                height: 10,
                at_loss: 10,
                ..
            })
        ));
        assert_eq!(l.fit(true, Some((9, "x"))).map(OwnFit::height), Ok(10));
        l.observe(round(false, Some(11), false), Duration::from_secs(2));
        assert!(matches!(l.fit(true, None), Err(Hold::OwnUnhealthy { .. })));
        l.observe(round(true, Some(11), true), Duration::from_secs(3));
        assert_eq!(
            l.fit(true, None),
            Err(Hold::OwnStalled { height: Some(11) })
        );
    }

    #[test]
    fn failover_local_no_new_block_clock_runs_from_the_last_growth() {
        let mut l = LocalView::default();
        l.observe(round(true, Some(10), false), Duration::from_secs(1));
        l.observe(round(true, Some(10), false), Duration::from_secs(3));
        assert_eq!(
            l.no_new_block_for(Duration::from_secs(4)),
            Some(Duration::from_secs(3))
        );
        l.observe(round(true, Some(11), false), Duration::from_secs(5));
        assert_eq!(
            l.no_new_block_for(Duration::from_secs(5)),
            Some(Duration::ZERO)
        );
    }
}
