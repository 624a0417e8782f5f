//! Test-side helpers around [`syncguard_devnet::etcd_cluster`]: three real SyncGuard daemons
//! in etcd mode on a devnet, coordinating through a real three-member etcd.
//!
//! Needs `/usr/bin/etcd` (`scripts/etcd.sh install`) and a syncguard built with
//! `--features syncguard-coordination/etcd`; without either [`options`] prints `SKIPPED: …`
//! (the test returns), and fails when `CI` is set.

use std::time::Duration;

use serde_json::Value;
use syncguard_devnet::etcd_cluster::{etcd_binary, EtcdCluster, EtcdClusterOptions};
use syncguard_devnet::Launcher;

use super::OrPanic;

pub const SETTLE: Duration = Duration::from_secs(30);
pub const FAILOVER: Duration = Duration::from_secs(30);

/// The cluster's options, or `None` (skipped) without etcd or the etcd feature.
pub fn options() -> Option<EtcdClusterOptions> {
    let skip = |why: &str| {
        assert!(
            std::env::var_os("CI").is_none(),
            "{why} (CI is set: this is a failure, not a skip)"
        );
        eprintln!("SKIPPED: {why}");
        None
    };
    let etcd = match etcd_binary() {
        Ok(p) => p,
        Err(why) => return skip(&why),
    };
    if !syncguard_coordination::ETCD_SUPPORT {
        return skip(syncguard_coordination::NO_ETCD_SUPPORT);
    }
    Some(EtcdClusterOptions::new(
        env!("CARGO_BIN_EXE_syncguard"),
        etcd,
        Launcher::with_prefix(env!("CARGO_BIN_EXE_syncguard"), ["devnet"]),
    ))
}

/// Exactly one daemon active, and signing; returns it.
pub async fn steady(c: &EtcdCluster) -> usize {
    let a = c.wait_one_active(SETTLE).await.or_panic();
    c.wait_signing_by(a, SETTLE).await.or_panic();
    a
}

/// The ledger shows no double sign and no two nodes signing one height (S1).
pub async fn assert_ledger_clean(c: &EtcdCluster) {
    let l = c.ledger().await.or_panic();
    assert!(
        l.double_signs == 0 && l.s1_violations == 0,
        "double sign or S1 violation in the ledger: {l:#?}\n{}",
        c.describe().await
    );
}

/// Waits until exactly one daemon, none of `not`, is active; returns it.
pub async fn wait_other_active(c: &EtcdCluster, not: &[usize]) -> usize {
    let other = |a: &[usize]| match a {
        [b] if !not.contains(b) => Some(*b),
        _ => None,
    };
    c.wait_until("another node active", FAILOVER, || async {
        other(&c.actives().await).is_some()
    })
    .await
    .or_panic();
    match other(&c.actives().await) {
        Some(b) => b,
        None => panic!("the active changed again at once\n{}", c.describe().await),
    }
}

/// Daemon `i`'s `/events`, as JSON text (for `contains` checks).
pub async fn events_text(c: &EtcdCluster, i: usize) -> String {
    Value::Array(c.events(i).await).to_string()
}
