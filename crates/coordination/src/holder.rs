//! [`keep_lease`]: the thin async shell around [`LeaseKeeper`] — the loop a holder runs.

use std::time::Duration;

use tokio::time::Instant;

use crate::backend::{Lease, LockBackend};
use crate::error::CoordError;
use crate::keeper::{FenceReason, KeeperAction, LeaseKeeper};

/// Renews `lease` on the keeper's schedule until the keeper says fence; returns why and the
/// instant (as an offset from `origin`, the clock the keeper was started on). Each renewal is
/// bounded by the keeper's fence instant: an answer after it would be of no use. Drop the
/// future to stop renewing (e.g. on release).
pub async fn keep_lease(
    backend: &dyn LockBackend,
    lease: &Lease,
    keeper: &mut LeaseKeeper,
    origin: Instant,
) -> (FenceReason, Duration) {
    let now = || origin.elapsed();
    loop {
        match keeper.poll(now()) {
            KeeperAction::Fence(why) => return (why, now()),
            KeeperAction::Wait { until } => tokio::time::sleep_until(origin + until).await,
            KeeperAction::Renew(ticket) => {
                let deadline = origin + keeper.fence_at();
                match tokio::time::timeout_at(deadline, backend.renew(lease)).await {
                    Ok(Ok(r)) => keeper.renewal_succeeded(ticket, now(), r.ttl),
                    Ok(Err(CoordError::LeaseLost { .. })) => keeper.lease_lost(now()),
                    Ok(Err(e)) => {
                        tracing::warn!(epoch = lease.epoch, error = %e, "lease renewal failed");
                        keeper.renewal_failed(ticket, now());
                    }
                    Err(_) => keeper.renewal_failed(ticket, now()),
                }
            }
        }
    }
}
