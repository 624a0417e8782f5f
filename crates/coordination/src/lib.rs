//! SyncGuard coordination backends: the lock that decides which node may hold the validator
//! role, the state watermark every promotion merges into its fence (S3), and the timing that
//! makes an active fence itself before anybody else can take the lock (S4).
//!
//! - [`backend`]: the [`LockBackend`] trait and its types (object-safe: the daemon picks the
//!   backend from the config at run time and holds an `Arc<dyn LockBackend>`).
//! - [`keeper`]: the pure [`LeaseKeeper`]: when to renew, when the holder must fence. No I/O,
//!   no clock of its own (explicit `now`), tested with simulated time and proptest;
//!   [`holder::keep_lease`] is the async loop around it.
//! - [`memory`]: [`MemoryBackend`], an in-process lock with etcd's semantics (revisions,
//!   leases that expire on tokio's clock), for unit tests of callers.
//! - `etcd` (feature `etcd`): [`EtcdBackend`] on a real etcd v3 cluster.
//!
//! How the timing works and what happens when etcd is unreachable: `docs/COORDINATION.md`.

pub mod backend;
pub mod connect;
pub mod error;
pub mod holder;
pub mod keeper;
pub mod memory;
mod record;

#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "etcd")]
mod etcd_tls;

pub use backend::{
    AcquireOutcome, BoxFuture, ClusterView, Handover, Holder, Lease, LockBackend, Member, Paused,
    Renewed, Request, RequestKind, Watermark, MAX_MEMBER_STATUS_BYTES,
};
pub use connect::{connect, ETCD_SUPPORT, NO_ETCD_SUPPORT};
pub use error::CoordError;
pub use holder::keep_lease;
pub use keeper::{FenceReason, KeeperAction, LeaseKeeper, LeaseTiming, RenewalTicket, TimingError};
pub use memory::{MemoryBackend, MemoryStore};

#[cfg(feature = "etcd")]
pub use etcd::{EtcdBackend, EtcdOptions};
