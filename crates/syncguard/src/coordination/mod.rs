//! How the driver reaches the other nodes: the one thing that differs between the backends
//! on the async side, as the arbiter is on the pure side. The driver performs every common
//! action itself (records, the epoch file, the actuator, the witness) and hands the rest to
//! its [`Coordination`]:
//!
//! - [`peer::PeerLink`] (`coordination.backend: peer`): protocol messages to the peer over
//!   mutual TLS; the peer's status is looked at every round (`peer_poll.rs`) and its state
//!   file pulled into the backup (`sync_state`).
//! - [`lease::LeaseLink`] (`coordination.backend: etcd`): the lock, its lease (kept by the
//!   coordination crate's keeper from the moment an acquisition succeeds), the watermark,
//!   handovers, requests and the cluster-wide pause; a look at the lock every round, which
//!   also publishes this node's own status under `members/`.

pub mod lease;
pub mod peer;

use syncguard_failover::{Action, Event};
use tokio::sync::mpsc;

/// Performs the actions only one backend understands; answers (if any) come back as events.
pub trait Coordination: Send + Sync + 'static {
    /// Performs `action` (never blocks: long work runs on its own task and reports on
    /// `events`). `epoch`: the machine's current epoch, for the peer envelope.
    fn perform(&self, action: Action, epoch: u64, events: &mpsc::Sender<Event>);

    /// The daemon is stopping.
    fn shutdown(&self) {}
}
