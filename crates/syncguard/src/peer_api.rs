//! The peer API (`/peer/...`), served only to authenticated peers by `syncguard-peer`:
//! this node's status, its state file, and the inbox of protocol messages.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use syncguard_failover::{Event, PeerMessage};
use syncguard_peer::message::path;
use syncguard_peer::{refuse, Envelope, Inbound, ReplayGuard, StateSnapshot};
use syncguard_validator::StateStore;
use tokio::sync::mpsc;

use crate::view::Shared;

#[derive(Clone)]
struct PeerApi {
    shared: Shared,
    events: mpsc::Sender<Event>,
    store: Arc<StateStore>,
    replay: Arc<Mutex<ReplayGuard>>,
}

pub fn router(shared: Shared, events: mpsc::Sender<Event>, store: Arc<StateStore>) -> Router {
    Router::new()
        .route(path::STATUS, get(status))
        .route(path::STATE, get(state))
        .route(path::MESSAGE, post(message))
        .with_state(PeerApi {
            shared,
            events,
            store,
            replay: Arc::new(Mutex::new(ReplayGuard::new(Duration::from_secs(60)))),
        })
}

fn own_id(api: &PeerApi) -> syncguard_failover::NodeId {
    syncguard_failover::NodeId::new(api.shared.read(|v| v.node_id.clone()))
}

fn epoch(api: &PeerApi) -> u64 {
    api.shared
        .read(|v| v.failover.as_ref().map_or(0, |s| s.epoch))
}

async fn status(State(api): State<PeerApi>) -> Response {
    let Some(own) = api.shared.read(|v| v.own_peer_status.clone()) else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "starting: no status yet");
    };
    match Envelope::new(own_id(&api), own.epoch, own) {
        Ok(envelope) => Json(envelope).into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn state(State(api): State<PeerApi>) -> Response {
    let state = match api.store.read() {
        Ok(s) => s,
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    match Envelope::new(own_id(&api), epoch(&api), StateSnapshot { state }) {
        Ok(envelope) => Json(envelope).into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A protocol message for the machine. The reply, if any, goes back as the machine's own
/// message later; here only the transport is acknowledged.
async fn message(State(api): State<PeerApi>, Inbound(envelope): Inbound<PeerMessage>) -> Response {
    let replay = match api.replay.lock() {
        Ok(mut guard) => guard.check_envelope(&envelope),
        Err(poisoned) => poisoned.into_inner().check_envelope(&envelope),
    };
    if let Err(e) = replay {
        return refuse(StatusCode::CONFLICT, e.to_string());
    }
    match api.events.send(Event::Message(envelope.body)).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(_) => refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}
