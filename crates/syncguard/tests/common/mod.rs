//! Test-side helpers around [`syncguard_devnet::cluster`]: two real SyncGuard daemons over
//! mutual TLS, each managing a simulated Story node of a devnet (real processes, real files,
//! real secp256k1 signatures, a ledger of every vote). The cluster itself lives in the
//! library; here are only the options the tests start from and helpers that panic with the
//! daemons' views and logs ([`Cluster::describe`]) when something does not hold.

#![allow(dead_code)]

use serde_json::Value;
use syncguard_devnet::cluster::{ClusterError, ClusterOptions};
use syncguard_devnet::{Cluster, Launcher};

/// The admin token of both daemons in the tests.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// node-a active with the validator key, node-b passive, the tests' admin token, the syncguard
/// binary cargo built for this test.
pub fn options() -> ClusterOptions {
    let mut opts = ClusterOptions::new(
        env!("CARGO_BIN_EXE_syncguard"),
        Launcher::with_prefix(env!("CARGO_BIN_EXE_syncguard"), ["devnet"]),
    );
    opts.admin_token = Some(TOKEN.to_string());
    opts
}

/// Starts the cluster (panics when it cannot).
pub async fn start(opts: ClusterOptions) -> Cluster {
    Cluster::start(opts).await.or_panic()
}

/// Unwraps a cluster result; a timeout's message carries both daemons' status, events and
/// log tails.
pub trait OrPanic<T> {
    fn or_panic(self) -> T;
}

impl<T> OrPanic<T> for Result<T, ClusterError> {
    #[track_caller]
    fn or_panic(self) -> T {
        match self {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Daemon `i`'s `/events`, as JSON text (for `contains` checks).
pub async fn events(c: &Cluster, i: usize) -> String {
    Value::Array(c.events(i).await).to_string()
}

/// The ledger shows no double sign and no S1 violation.
pub async fn assert_no_double_sign(c: &Cluster) {
    let l = c.ledger().await.or_panic();
    assert!(
        l.double_signs == 0 && l.s1_violations == 0,
        "double sign or S1 violation in the ledger: {l:#?}\n{}",
        c.describe().await
    );
}

pub mod etcd;
