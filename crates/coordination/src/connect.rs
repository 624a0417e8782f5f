//! [`connect`]: the backend named by `coordination.backend: etcd`, as the daemon holds it.

use std::sync::Arc;

use syncguard_config::EtcdConfig;

use crate::backend::LockBackend;
use crate::error::CoordError;

/// Whether this build can talk to etcd (the `etcd` feature).
pub const ETCD_SUPPORT: bool = cfg!(feature = "etcd");

/// The words of the error a build without etcd support gives.
pub const NO_ETCD_SUPPORT: &str = "this build of syncguard has no etcd support: rebuild with \
     `--features syncguard-coordination/etcd` (building it needs protoc: scripts/etcd.sh install)";

/// Connects to the etcd cluster of `coordination.etcd` (clients per endpoint, timeouts from
/// the lease). Without the `etcd` feature: a [`CoordError::Config`] saying how to rebuild.
#[cfg(feature = "etcd")]
pub async fn connect(config: &EtcdConfig) -> Result<Arc<dyn LockBackend>, CoordError> {
    let ttl = std::time::Duration::try_from_secs_f64(config.lease_ttl).map_err(|_| {
        CoordError::Config {
            key: "coordination.etcd.lease_ttl",
            reason: format!("{} s is not a usable duration", config.lease_ttl),
        }
    })?;
    let backend =
        crate::etcd::EtcdBackend::connect(config, crate::etcd::EtcdOptions::for_ttl(ttl)).await?;
    Ok(Arc::new(backend))
}

/// Connects to the etcd cluster of `coordination.etcd` (clients per endpoint, timeouts from
/// the lease). Without the `etcd` feature: a [`CoordError::Config`] saying how to rebuild.
#[cfg(not(feature = "etcd"))]
pub async fn connect(config: &EtcdConfig) -> Result<Arc<dyn LockBackend>, CoordError> {
    let _ = config;
    Err(CoordError::Config {
        key: "coordination.backend",
        reason: NO_ETCD_SUPPORT.to_string(),
    })
}

#[cfg(all(test, not(feature = "etcd")))]
mod tests {
    #[tokio::test]
    async fn coordination_connect_without_the_feature_says_how_to_rebuild() {
        let e = match super::connect(&syncguard_config::EtcdConfig::default()).await {
            Ok(_) => panic!("a build without the etcd feature cannot connect"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("--features syncguard-coordination/etcd"), "{e}");
    }
}
