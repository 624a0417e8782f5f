//! The HTTP API on `server.port`. Read-only for now: `GET /health`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use syncguard_health::{HealthReport, Verdict};

use crate::daemon::{NodeView, Shared};

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(shared)
}

#[derive(Serialize)]
struct HealthBody {
    node_id: String,
    site_role: syncguard_config::SiteRole,
    role: syncguard_config::NodeRole,
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

/// 200 when the local node is healthy, 503 otherwise (including before the first round),
/// with the verdict and every check.
async fn health(State(shared): State<Shared>) -> impl IntoResponse {
    let NodeView {
        node_id,
        site_role,
        role,
        health,
        probe_restarts,
        ..
    } = shared.snapshot();
    let healthy = health.as_ref().is_some_and(|r| r.healthy);
    let report = match health {
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
            node_id,
            site_role,
            role,
            probe_restarts,
            report,
        }),
    )
}
