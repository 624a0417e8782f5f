//! The public HTTP API on `server.port` (plain HTTP or TLS; read-only):
//! `GET /health`, `/status`, `/validator_state`, `/events`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};
use syncguard_failover::Role;
use syncguard_health::{HealthReport, Verdict};
use syncguard_validator::Hrs;

use crate::view::{format_time, NodeView, Shared};

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/validator_state", get(validator_state))
        .route("/events", get(events))
        .with_state(shared)
}

#[derive(Serialize)]
struct HealthBody {
    node_id: String,
    site_role: syncguard_config::SiteRole,
    /// The failover role when a peer is configured, else the `--role` wish.
    role: String,
    paused: bool,
    probe_restarts: u32,
    #[serde(flatten)]
    report: ReportOrStarting,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ReportOrStarting {
    Report(HealthReport),
    Starting {
        healthy: bool,
        verdict: Verdict,
        summary: &'static str,
        checks: [(); 0],
    },
}

fn role_name(v: &NodeView) -> String {
    match &v.failover {
        Some(s) => s.role.name().to_string(),
        None => v.wish.to_string(),
    }
}

/// 200 when the local node is healthy, 503 otherwise (including before the first round),
/// with the verdict and every check.
async fn health(State(shared): State<Shared>) -> impl IntoResponse {
    let v = shared.snapshot();
    let healthy = v.health.as_ref().is_some_and(|r| r.healthy);
    let report = match v.health.clone() {
        Some(r) => ReportOrStarting::Report(r),
        None => ReportOrStarting::Starting {
            healthy: false,
            verdict: Verdict::Starting,
            summary: "starting: no health round has completed yet",
            checks: [],
        },
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(HealthBody {
            role: role_name(&v),
            paused: v.failover.as_ref().is_some_and(|s| s.paused),
            node_id: v.node_id,
            site_role: v.site_role,
            probe_restarts: v.probe_restarts,
            report,
        }),
    )
}

fn hrs_json(h: Option<Hrs>) -> Value {
    match h {
        Some(h) => json!({"height": h.height, "round": h.round, "step": h.step.as_u8()}),
        None => Value::Null,
    }
}

/// The cluster as this node sees it: itself and its peer.
async fn status(State(shared): State<Shared>) -> Json<Value> {
    let v = shared.snapshot();
    let health = v.health.as_ref();
    let height = health
        .and_then(|r| r.check(syncguard_health::names::COMET_HEIGHT))
        .map(|c| c.observed.clone());
    let mut out = json!({
        "node": {
            "id": v.node_id,
            "site_role": v.site_role,
            "wish": v.wish,
            "role": role_name(&v),
            "healthy": health.is_some_and(|r| r.healthy),
            "verdict": health.map(|r| r.verdict),
            "summary": health.map(|r| r.summary.clone()),
            "comet_height": height,
            "started_at": format_time(v.started_at),
        },
    });
    if let Some(f) = &v.failover {
        out["node"]["held_role"] = json!(f.held_role);
        out["node"]["epoch"] = json!(f.epoch);
        out["node"]["paused"] = json!(f.paused);
        out["node"]["standby_right"] = json!(f.standby_right);
        out["node"]["last_decision"] = json!(f.last_why);
        out["peer"] = match &f.peer {
            Some(p) => json!({
                "id": p.node_id,
                "reachable": f.peer_unreachable_for_ms.is_none(),
                "role": p.role,
                "epoch": p.epoch,
                "healthy": p.healthy,
                "paused": p.paused,
                "comet_height": p.latest_height,
                "last_state": hrs_json(p.last_state),
                "last_contact": v.peer_last_contact.map(format_time),
                "unreachable_for_ms": f.peer_unreachable_for_ms,
            }),
            None => json!({
                "reachable": false,
                "unreachable_for_ms": f.peer_unreachable_for_ms,
                "last_contact": v.peer_last_contact.map(format_time),
            }),
        };
        let active_somewhere =
            f.role == Role::Active || f.peer.as_ref().is_some_and(|p| p.role == Role::Active);
        if !active_somewhere {
            out["notice"] = json!("no node reports itself active. If the whole chain has stopped (every node stalled), nobody promotes: a validator with more than 1/3 of the voting power halts the chain when its active dies, and only the operator's switchover or takeover can restart signing.");
        }
    } else {
        out["notice"] = json!("no peer configured: this node only monitors health");
    }
    Json(out)
}

/// Local state file, the replica pulled from the active, the watermark and the sync lag.
async fn validator_state(State(shared): State<Shared>) -> Json<Value> {
    let v = shared.snapshot();
    let watermark = match (v.local_state, v.replica) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let lag = v
        .replica_synced_at
        .and_then(|t| t.elapsed().ok())
        .map(|d| d.as_secs_f64());
    Json(json!({
        "node_id": v.node_id,
        "local": hrs_json(v.local_state),
        "replica": hrs_json(v.replica),
        "watermark": hrs_json(watermark),
        "replica_synced_at": v.replica_synced_at.map(format_time),
        "sync_lag_seconds": lag,
        "replica_behind_local_heights": match (v.local_state, v.replica) {
            (Some(l), Some(r)) => Some(l.height.saturating_sub(r.height)),
            _ => None,
        },
    }))
}

/// The failover history, oldest first: every role change, refusal and alert, with why.
async fn events(State(shared): State<Shared>) -> Json<Value> {
    let v = shared.snapshot();
    let list: Vec<Value> = v
        .records
        .iter()
        .map(|r| {
            json!({
                "at": format_time(v.record_time(r)),
                "kind": r.kind,
                "role": r.role,
                "epoch": r.epoch,
                "why": r.why,
                "heights": r.heights,
            })
        })
        .collect();
    Json(json!({ "node_id": v.node_id, "events": list }))
}
