//! The public HTTP API on `server.port` (plain HTTP, or HTTPS with a cluster certificate):
//! read-only `GET /` (the status page, [`crate::status_page`]), `/metrics` (Prometheus,
//! [`crate::metrics`]), `/health`, `/status`, `/validator_state`, `/events`, `/switchover` (the
//! last activation/deactivation step tables); and the operator's mutating calls
//! `POST /switchover`, `/pause`, `/resume` (see [`Admin`] for who may call them).
//!
//! The admin routes only relay a command to the failover machine (through the driver) and
//! report what it decided: every rule — is the target healthy and caught up, is automation
//! paused — is the machine's.
//!
//! Cluster-wide pause: the daemon that receives `POST /pause` (or `/resume`) takes it, then
//! forwards it to its peer's public `POST /pause` over the mutual-TLS connection it already
//! uses for the peer API (its certificate makes it an admin caller there), with
//! `{"forward": false}` so the peer does not send it back. No new protocol message: a pause
//! is an operator's command, not a step of the failover protocol, and a pause that reaches
//! only one node is reported as such (never unsafe — pausing only ever withholds
//! transitions; safety stops act while paused).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use syncguard_failover::{NodeId, OperatorCommand, PeerStatus, Record, RecordKind, Role};
use syncguard_health::{HealthReport, Verdict};
use syncguard_peer::{AdminCaller, PeerClient};
use syncguard_validator::Hrs;
use tokio::sync::{mpsc, oneshot};

use crate::driver::{OperatorAnswer, OperatorRequest, OperatorRequestKind};
use crate::view::{format_time, EtcdSeen, NodeView, Shared};

/// Who may call the mutating routes, and where their commands go.
///
/// A caller is admitted when it presents, over mutual TLS, a certificate of the cluster CA
/// naming this node or a configured peer (the server marks such requests with
/// [`AdminCaller`]), **or** `Authorization: Bearer <server.admin_token>` (compared in constant
/// time). Anything else gets 401 (no credentials) or 403 (wrong token), with the reason.
#[derive(Clone)]
pub struct Admin {
    pub token: Option<String>,
    /// The driver's operator inbox; `None` without a peer (no failover on this node).
    pub operator: Option<mpsc::Sender<OperatorRequest>>,
    /// The peer, for forwarding a pause/resume cluster-wide.
    pub peer: Option<Arc<PeerClient>>,
    pub peer_id: Option<String>,
}

#[derive(Clone)]
struct Api {
    shared: Shared,
    admin: Admin,
}

impl FromRef<Api> for Shared {
    fn from_ref(api: &Api) -> Shared {
        api.shared.clone()
    }
}

pub fn router(shared: Shared, admin: Admin) -> Router {
    Router::new()
        .route("/", get(crate::status_page::page))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/validator_state", get(validator_state))
        .route("/events", get(events))
        .route("/switchover", get(switchover_steps).post(switchover))
        .route("/pause", axum::routing::post(pause))
        .route("/resume", axum::routing::post(resume))
        .route("/takeover", axum::routing::post(takeover))
        .route("/unfence", axum::routing::post(unfence))
        .with_state(Api { shared, admin })
}

fn refuse(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, Json(json!({ "error": reason.into() }))).into_response()
}

/// Byte-wise comparison whose time depends only on the lengths, never on where the first
/// difference is, so a remote caller cannot guess the token one character at a time.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

/// `Ok(who)` when the caller may change things here.
fn authorize(
    admin: &Admin,
    caller: Option<&AdminCaller>,
    headers: &HeaderMap,
) -> Result<String, (StatusCode, String)> {
    if let Some(AdminCaller(id)) = caller {
        return Ok(format!("mutual TLS as `{id}`"));
    }
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        let how = if admin.token.is_some() {
            "send `Authorization: Bearer <server.admin_token>`, or call over mutual TLS with a certificate of the cluster CA"
        } else {
            "server.admin_token is not set on this node, so only mutual TLS with a certificate of the cluster CA is accepted"
        };
        return Err((
            StatusCode::UNAUTHORIZED,
            format!("authentication required: {how}"),
        ));
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match (&admin.token, presented) {
        (Some(token), Some(p)) if constant_time_eq(token.as_bytes(), p.as_bytes()) => {
            Ok("admin token".into())
        }
        (None, _) => Err((
            StatusCode::FORBIDDEN,
            "server.admin_token is not set on this node: tokens are not accepted; use mutual TLS"
                .into(),
        )),
        _ => Err((
            StatusCode::FORBIDDEN,
            "the admin token is wrong (expected `Authorization: Bearer <server.admin_token>`)"
                .into(),
        )),
    }
}

/// Hands a request to the driver and waits for the machine's answer.
async fn ask(admin: &Admin, kind: OperatorRequestKind) -> Result<OperatorAnswer, Response> {
    let Some(tx) = &admin.operator else {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "no peer configured: this node only monitors health and has no failover to command",
        ));
    };
    let (reply, answer) = oneshot::channel();
    if tx.send(OperatorRequest { kind, reply }).await.is_err() {
        return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting down"));
    }
    match tokio::time::timeout(Duration::from_secs(10), answer).await {
        Ok(Ok(a)) => Ok(a),
        _ => Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the failover driver did not answer",
        )),
    }
}

fn records_json(records: &[Record]) -> Vec<Value> {
    records
        .iter()
        .map(|r| json!({"kind": r.kind, "role": r.role, "epoch": r.epoch, "why": r.why}))
        .collect()
}

#[derive(Debug, Default, Deserialize)]
struct SwitchoverBody {
    /// The node that should end up active; default: the one that is not active now.
    to: Option<String>,
    /// Only ask whether it could start now; changes nothing (no authentication needed).
    #[serde(default)]
    dry_run: bool,
}

/// The default target: the node that is not active now (two nodes).
fn default_target(v: &NodeView, admin: &Admin) -> Option<String> {
    let me_active = v
        .failover
        .as_ref()
        .is_some_and(|f| f.held_role == Role::Active);
    if me_active {
        admin.peer_id.clone()
    } else {
        Some(v.node_id.clone())
    }
}

/// `POST /switchover {"to": ID, "dry_run": bool}`: 200 when the machine started it (or, dry
/// run, would), 409 with the machine's reason when it refuses — before anything stops.
async fn switchover(
    State(api): State<Api>,
    caller: Option<Extension<AdminCaller>>,
    headers: HeaderMap,
    body: Option<Json<SwitchoverBody>>,
) -> Response {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let v = api.shared.snapshot();
    let Some(to) = body.to.clone().or_else(|| default_target(&v, &api.admin)) else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "no peer configured");
    };
    let to_id = NodeId::new(to.clone());
    if body.dry_run {
        return match ask(&api.admin, OperatorRequestKind::CheckSwitchover(to_id)).await {
            Ok(a) => match a.refusal {
                None => Json(json!({"to": to, "ok": true, "dry_run": true})).into_response(),
                Some(why) => (
                    StatusCode::CONFLICT,
                    Json(json!({"to": to, "ok": false, "dry_run": true, "error": why})),
                )
                    .into_response(),
            },
            Err(r) => r,
        };
    }
    let who = match authorize(&api.admin, caller.as_ref().map(|e| &e.0), &headers) {
        Ok(w) => w,
        Err((code, why)) => return refuse(code, why),
    };
    tracing::warn!(to = %to, by = %who, "operator: switchover requested");
    let answer = match ask(
        &api.admin,
        OperatorRequestKind::Command(OperatorCommand::Switchover { to: to_id }),
    )
    .await
    {
        Ok(a) => a,
        Err(r) => return r,
    };
    let refusal = answer
        .records
        .iter()
        .find(|r| r.kind == RecordKind::Refusal && r.why.contains("switchover"))
        .map(|r| r.why.clone());
    let epoch = api
        .shared
        .read(|v| v.failover.as_ref().map_or(0, |f| f.epoch));
    let body = json!({
        "to": to,
        "ok": refusal.is_none(),
        "epoch_before": epoch,
        "error": refusal,
        "records": records_json(&answer.records),
    });
    let status = if refusal.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

/// `GET /switchover`: the step tables of the last activation and deactivation here.
async fn switchover_steps(State(api): State<Api>) -> Json<Value> {
    let v = api.shared.snapshot();
    Json(json!({
        "node_id": v.node_id,
        "last_activation": v.last_activation,
        "last_deactivation": v.last_deactivation,
    }))
}

#[derive(Debug, Deserialize)]
struct PauseBody {
    /// Also tell the peer (default). The peer forwards with `false`, so it never loops.
    #[serde(default = "yes")]
    forward: bool,
}

fn yes() -> bool {
    true
}

async fn pause(
    State(api): State<Api>,
    caller: Option<Extension<AdminCaller>>,
    headers: HeaderMap,
    body: Option<Json<PauseBody>>,
) -> Response {
    let forward = body.is_none_or(|Json(b)| b.forward);
    pause_or_resume(&api, caller, &headers, forward, true).await
}

async fn resume(
    State(api): State<Api>,
    caller: Option<Extension<AdminCaller>>,
    headers: HeaderMap,
    body: Option<Json<PauseBody>>,
) -> Response {
    let forward = body.is_none_or(|Json(b)| b.forward);
    pause_or_resume(&api, caller, &headers, forward, false).await
}

async fn pause_or_resume(
    api: &Api,
    caller: Option<Extension<AdminCaller>>,
    headers: &HeaderMap,
    forward: bool,
    pause: bool,
) -> Response {
    let who = match authorize(&api.admin, caller.as_ref().map(|e| &e.0), headers) {
        Ok(w) => w,
        Err((code, why)) => return refuse(code, why),
    };
    let (command, path) = if pause {
        (OperatorCommand::Pause, "/pause")
    } else {
        (OperatorCommand::Resume, "/resume")
    };
    tracing::warn!(by = %who, forward, "operator: {path}");
    let answer = match ask(&api.admin, OperatorRequestKind::Command(command)).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (node_id, epoch, paused) = api.shared.read(|v| {
        (
            v.node_id.clone(),
            v.failover.as_ref().map_or(0, |f| f.epoch),
            v.failover.as_ref().is_some_and(|f| f.paused),
        )
    });
    let peer = match (&api.admin.peer, forward) {
        (Some(client), true) => {
            // Our own token is not the peer's: over mutual TLS our certificate admits us.
            match client
                .admin_post(
                    path,
                    epoch,
                    &json!({"forward": false}),
                    api.admin.token.as_deref(),
                )
                .await
            {
                Ok(_) => json!({"id": client.peer_id(), "done": true}),
                Err(e) => {
                    tracing::error!("{path} not forwarded to the peer: {e}");
                    json!({"id": client.peer_id(), "done": false, "error": e.to_string()})
                }
            }
        }
        _ => Value::Null,
    };
    Json(json!({
        "node_id": node_id,
        "paused": paused,
        "records": records_json(&answer.records),
        "peer": peer,
    }))
    .into_response()
}

/// `POST /takeover`: this node takes the role although its peer cannot be reached (the
/// operator vouches that the peer is down). The machine still requires its own node healthy
/// and the chain witness clean; otherwise it refuses and says why. Local only.
async fn takeover(
    State(api): State<Api>,
    caller: Option<Extension<AdminCaller>>,
    headers: HeaderMap,
) -> Response {
    local_command(
        &api,
        caller,
        &headers,
        OperatorCommand::Takeover,
        "/takeover",
    )
    .await
}

/// `POST /unfence`: leave `fenced` without waiting for the peer (the operator vouches for
/// it). Local only.
async fn unfence(
    State(api): State<Api>,
    caller: Option<Extension<AdminCaller>>,
    headers: HeaderMap,
) -> Response {
    local_command(&api, caller, &headers, OperatorCommand::Unfence, "/unfence").await
}

async fn local_command(
    api: &Api,
    caller: Option<Extension<AdminCaller>>,
    headers: &HeaderMap,
    command: OperatorCommand,
    path: &str,
) -> Response {
    let who = match authorize(&api.admin, caller.as_ref().map(|e| &e.0), headers) {
        Ok(w) => w,
        Err((code, why)) => return refuse(code, why),
    };
    tracing::warn!(by = %who, "operator: {path}");
    let answer = match ask(&api.admin, OperatorRequestKind::Command(command)).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (node_id, role) = api.shared.read(|v| (v.node_id.clone(), role_name(v)));
    Json(json!({
        "node_id": node_id,
        "role": role,
        "records": records_json(&answer.records),
    }))
    .into_response()
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

/// The validator's signing as the commits show it, with the strip of the last heights.
fn signing_json(v: &NodeView) -> Value {
    let mut signing = json!(v.signing);
    signing["strip"] = crate::signing_strip::strip_json(v);
    signing
}

/// The cluster as this node sees it: itself and its peer.
async fn status(State(shared): State<Shared>) -> Json<Value> {
    let v = shared.snapshot();
    let readings = crate::metrics::readings(&v, None, SystemTime::now());
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
            "chain_profile": v.chain_profile,
            "evm_height": readings.evm_height,
            "signing": signing_json(&v),
            "latest_height": v.failover.as_ref().and(v.own_peer_status.as_ref()).and_then(|p| p.latest_height),
            "state": hrs_json(v.local_state),
            "replica": hrs_json(v.replica),
            "last_state": hrs_json(v.own_peer_status.as_ref().and_then(|p| p.last_state)),
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
        if let Some(e) = &v.etcd {
            // etcd mode: no one peer — every node's own status as etcd showed it, and the
            // lock itself.
            out.as_object_mut().map(|o| o.remove("peer"));
            out["coordination"] = json!("etcd");
            out["etcd"] = etcd_json(e);
            out["members"] = members_json(&f.members, e);
        }
        let active_somewhere = f.role == Role::Active
            || f.peer.as_ref().is_some_and(|p| p.role == Role::Active)
            || f.members.iter().any(|m| m.role == Role::Active);
        if !active_somewhere {
            out["notice"] = json!("no node reports itself active. If the whole chain has stopped (every node stalled), nobody promotes: a validator with more than 1/3 of the voting power halts the chain when its active dies, and only the operator's switchover or takeover can restart signing.");
        }
    } else {
        out["notice"] = json!("no peer configured: this node only monitors health");
    }
    Json(out)
}

/// etcd mode: every node's own status as it published it, with whether it holds the lock
/// and where its API is reached.
fn members_json(members: &[PeerStatus], e: &EtcdSeen) -> Value {
    members
        .iter()
        .map(|m| {
            json!({
                "id": m.node_id,
                "role": m.role,
                "paused": m.paused,
                "epoch": m.epoch,
                "healthy": m.healthy,
                "latest_height": m.latest_height,
                "last_state": hrs_json(m.last_state),
                "is_primary_site": m.is_primary_site,
                "holds_lock": e.holder.as_ref().is_some_and(|(h, _)| *h == m.node_id.as_str()),
                "api": e.apis.get(m.node_id.as_str()),
            })
        })
        .collect()
}

/// etcd mode: the lock and the keys beside it, as the last look showed them.
fn etcd_json(e: &EtcdSeen) -> Value {
    json!({
        "holder": e.holder.as_ref().map(|(id, _)| id),
        "epoch": e.holder.as_ref().map(|(_, epoch)| epoch),
        "handover": e.handover.as_ref().map(|(from, to)| json!({"from": from, "to": to})),
        "request": e.request.as_ref().map(|(from, kind)| json!({"from": from, "kind": kind})),
        "paused_by": e.paused_by,
        "watermark": hrs_json(e.watermark),
        "last_look": e.at.map(format_time),
        "unreachable": e.error,
    })
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

/// `GET /metrics`: the Prometheus text format; gauges read from the view now.
async fn metrics(State(api): State<Api>) -> Response {
    let v = api.shared.snapshot();
    let body = api
        .shared
        .metrics()
        .render(&v, api.admin.peer_id.as_deref(), SystemTime::now());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        body,
    )
        .into_response()
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
                "tag": r.tag,
                "reason": r.reason,
            })
        })
        .collect();
    Json(json!({ "node_id": v.node_id, "events": list }))
}
