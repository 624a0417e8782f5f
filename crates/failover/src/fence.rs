//! S3, the fence: the state a promotion writes is never below any state this node has seen
//! (its own final states, handed states, the replica, the peer's reports, the etcd
//! watermark, its earlier fences); after an unplanned promotion it skips the height in
//! flight, `(H + 2, 0, 0)`; after a handover it starts at the height after the final state. And CometBFT's `double_sign_check_height`: a node starts only
//! once the chain is N blocks past the validator's last known signature.

use serde::Serialize;
use syncguard_validator::{Hrs, Step};

use crate::types::opt_hrs_serde;

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct FenceState {
    /// The highest sign state this machine has seen: no fence goes below it.
    #[serde(with = "opt_hrs_serde")]
    pub(crate) highest_seen: Option<Hrs>,
}

pub(crate) fn height_i64(h: u64) -> i64 {
    i64::try_from(h).unwrap_or(i64::MAX)
}

impl FenceState {
    pub(crate) fn see(&mut self, hrs: Option<Hrs>) {
        if let Some(h) = hrs {
            self.highest_seen = Some(self.highest_seen.map_or(h, |s| s.max(h)));
        }
    }

    /// S3 after an unplanned promotion: the old holder's last votes are unknown, so the fence
    /// skips the height in flight: `(H + 2, 0, 0)`.
    pub(crate) fn unplanned(h: u64) -> Hrs {
        Hrs::new(height_i64(h).saturating_add(2), 0, Step::None)
    }

    /// S3 after a planned handover: the height after the old holder's final state. Its
    /// last height may still be in flight (the chain stalled, rounds went on); a second
    /// signer in a later round of it would not know the lock the old holder's consensus took
    /// there (CometBFT keeps it in memory and its WAL, not in the state file) and could
    /// prevote against it. So one height has one signer: the new holder starts at the next.
    pub(crate) fn after_handover(final_state: Hrs) -> Hrs {
        Hrs::new(final_state.height.saturating_add(1), 0, Step::None)
    }

    /// The state to write: `max(base, every state seen)`; it is seen from now on.
    pub(crate) fn fence(&mut self, base: Hrs) -> Hrs {
        let fence = self.highest_seen.map_or(base, |s| s.max(base));
        self.see(Some(fence));
        fence
    }

    /// CometBFT's `double_sign_check_height` (N): `story` refuses to start while the key's
    /// signature is in its last N commits. The height to wait for: N blocks past the highest
    /// height the validator may have signed — the chain's last signature, any state seen (a
    /// handed final state, the replica). Call before this promotion's own fence joins them.
    pub(crate) fn start_after(&self, n: u64, last_signed: Option<u64>) -> Option<u64> {
        (n > 0).then(|| {
            let seen = self
                .highest_seen
                .map_or(0, |h| u64::try_from(h.height).unwrap_or(0));
            seen.max(last_signed.unwrap_or(0)).saturating_add(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_sign_fence_never_below_a_state_seen() {
        let mut f = FenceState::default();
        f.see(Some(Hrs::new(120, 1, Step::Precommit)));
        assert_eq!(
            f.fence(FenceState::unplanned(100)),
            Hrs::new(120, 1, Step::Precommit)
        );
        assert_eq!(
            f.fence(FenceState::unplanned(200)),
            Hrs::new(202, 0, Step::None)
        );
        // The fence itself is seen: a later, lower base cannot go under it.
        assert_eq!(
            f.fence(FenceState::unplanned(150)),
            Hrs::new(202, 0, Step::None)
        );
    }

    #[test]
    fn double_sign_fence_after_a_handover_is_the_next_height() {
        let final_state = Hrs::new(34, 4, Step::Precommit);
        assert_eq!(
            FenceState::after_handover(final_state),
            Hrs::new(35, 0, Step::None)
        );
    }

    #[test]
    fn double_sign_check_height_waits_past_the_last_signature() {
        let mut f = FenceState::default();
        assert_eq!(f.start_after(0, Some(50)), None);
        assert_eq!(f.start_after(3, Some(50)), Some(53));
        f.see(Some(Hrs::new(60, 0, Step::Precommit)));
        assert_eq!(f.start_after(3, Some(50)), Some(63));
    }
}
