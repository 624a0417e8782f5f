//! The peer backend's link: protocol messages to the one peer, over mutual TLS.

use std::sync::Arc;

use syncguard_failover::{Action, Event};
use syncguard_peer::PeerClient;
use tokio::sync::mpsc;

use super::Coordination;

/// Sends the machine's protocol messages; loss is tolerated by the machine (timeouts).
pub struct PeerLink {
    pub client: Arc<PeerClient>,
}

impl Coordination for PeerLink {
    fn perform(&self, action: Action, epoch: u64, _events: &mpsc::Sender<Event>) {
        match action {
            Action::Send { to, message } => {
                let client = self.client.clone();
                tokio::spawn(async move {
                    if let Err(e) = client.send(epoch, message).await {
                        tracing::warn!(peer = %to, "message not delivered: {e}");
                    }
                });
            }
            other => tracing::error!(?other, "not an action of the peer backend; ignored"),
        }
    }
}
