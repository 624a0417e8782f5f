//! `status`, `pause`, `resume`, `takeover`, `unfence` (and what `switchover.rs` shares: the
//! cluster's rows): the operator's commands, spoken to the local
//! daemon's public API (and read-only to the peer's). Nothing is decided here: the daemon's
//! failover machine accepts or refuses, and this prints what it said.
//!
//! Credentials for the mutating calls, in this order: `server.admin_token` from the config
//! (as `Authorization: Bearer`, over plain HTTP to the local daemon), else this node's own
//! certificate from `communication.tls` (mutual TLS).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use syncguard_config::{Backend, Config};
use syncguard_failover::NodeId;
use syncguard_peer::PeerSecurity;

use super::EXIT_INVALID;
use crate::cli::{AdminArgs, StatusArgs};

/// The local daemon and, read-only, its peer.
pub(super) struct Cluster {
    pub(super) config: Config,
    local: String,
    /// Client for the local daemon's admin routes (token or mutual TLS).
    admin: reqwest::Client,
    admin_base: String,
    token: Option<String>,
    plain: reqwest::Client,
    /// Peer mode: the one peer (id, address).
    peer: Option<(String, String)>,
    /// Every configured peer (id, address): etcd mode reaches a member that advertises no
    /// API address through its entry here.
    peers: Vec<(String, String)>,
}

pub(super) fn load(path: &std::path::Path) -> anyhow::Result<Result<Config, ExitCode>> {
    match syncguard_config::load(path) {
        Ok(loaded) => Ok(Ok(loaded.config)),
        Err(e) => {
            eprintln!("{e}");
            Ok(Err(ExitCode::from(EXIT_INVALID)))
        }
    }
}

impl Cluster {
    pub(super) fn new(config: Config) -> anyhow::Result<Cluster> {
        // A daemon bound to every interface is reached on loopback from its own host.
        let host = match config.server.bind.as_str() {
            "0.0.0.0" | "::" | "" => "127.0.0.1".to_string(),
            b if b.contains(':') => format!("[{b}]"),
            b => b.to_string(),
        };
        let local = format!("{host}:{}", config.server.port);
        let plain = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        let token = config.server.admin_token.clone();
        let (admin, admin_base) = match (&token, &config.communication.tls) {
            (None, Some(_)) => {
                let security = PeerSecurity::from_config(&config)
                    .context("loading communication.tls (this node's certificate)")?;
                let PeerSecurity::MutualTls(material) = security else {
                    bail!("communication.tls is not usable");
                };
                // Our own daemon's certificate names our own id.
                let tls = material
                    .client_config(&NodeId::new(config.server.id.clone()))
                    .context("TLS client setup")?;
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(15))
                    .use_preconfigured_tls(tls)
                    .build()
                    .context("building the mutual-TLS client")?;
                (client, format!("https://{local}"))
            }
            _ => (plain.clone(), format!("http://{local}")),
        };
        let peers: Vec<(String, String)> = config
            .communication
            .peers
            .iter()
            .map(|p| (p.id.clone(), p.address.clone()))
            .collect();
        let peer = match config.coordination.backend {
            Backend::Peer => peers.first().cloned(),
            Backend::Etcd => None,
        };
        Ok(Cluster {
            config,
            local: format!("http://{local}"),
            admin,
            admin_base,
            token,
            plain,
            peer,
            peers,
        })
    }

    pub(super) fn etcd(&self) -> bool {
        self.config.coordination.backend == Backend::Etcd
    }

    /// Another node's public API at `address` (`host:port`); `None` when it does not answer.
    async fn get_at(&self, address: &str, path: &str) -> Option<Value> {
        let resp = self
            .plain
            .get(format!("http://{address}{path}"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// A node's `GET path`: the local daemon's for this node, else the address its row
    /// carries.
    pub(super) async fn get_node(&self, row: Option<&Row>, path: &str) -> Option<Value> {
        let row = row?;
        if row.id == self.config.server.id {
            return self.get_local(path).await.ok();
        }
        self.get_at(row.api.as_deref()?, path).await
    }

    pub(super) async fn get_local(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.local);
        let resp = self
            .plain
            .get(&url)
            .send()
            .await
            .with_context(|| format!("the local daemon does not answer at {url}"))?;
        resp.json()
            .await
            .with_context(|| format!("{url}: not JSON"))
    }

    /// The peer's public API; `None` when it does not answer (the table says so).
    async fn get_peer(&self, path: &str) -> Option<Value> {
        let (_, address) = self.peer.as_ref()?;
        let resp = self
            .plain
            .get(format!("http://{address}{path}"))
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    /// POST to a local admin route: (HTTP status, body).
    pub(super) async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.admin_base);
        let mut req = self.admin.post(&url).json(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("the local daemon does not answer at {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// One row of the cluster table.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Row {
    pub(super) id: String,
    pub(super) role: String,
    pub(super) held_role: String,
    pub(super) paused: bool,
    pub(super) epoch: Option<u64>,
    pub(super) healthy: Option<bool>,
    pub(super) height: Option<u64>,
    pub(super) state_height: Option<i64>,
    pub(super) state_lag: Option<i64>,
    pub(super) last_contact: String,
    pub(super) source: &'static str,
    /// Where its public API is reached (`host:port`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) api: Option<String>,
}

fn height_of(v: &Value) -> Option<i64> {
    v["height"].as_i64()
}

/// A node's row from its own `/status`.
fn own_row(s: &Value, source: &'static str) -> Row {
    let n = &s["node"];
    let state = [&n["state"], &n["replica"], &n["last_state"]]
        .into_iter()
        .filter_map(height_of)
        .max();
    Row {
        id: n["id"].as_str().unwrap_or("?").to_string(),
        role: n["role"].as_str().unwrap_or("?").to_string(),
        held_role: n["held_role"]
            .as_str()
            .or(n["role"].as_str())
            .unwrap_or("?")
            .to_string(),
        paused: n["paused"].as_bool().unwrap_or(false),
        epoch: n["epoch"].as_u64(),
        healthy: n["healthy"].as_bool(),
        height: n["latest_height"]
            .as_u64()
            .or_else(|| n["comet_height"].as_str().and_then(|h| h.parse().ok())),
        state_height: state,
        state_lag: None,
        last_contact: "-".into(),
        source,
        api: None,
    }
}

/// etcd mode: a member's row as it published its status in etcd (its API did not answer,
/// or its address is unknown).
fn member_row(m: &Value, source: &'static str) -> Row {
    Row {
        id: m["id"].as_str().unwrap_or("?").to_string(),
        role: m["role"].as_str().unwrap_or("?").to_string(),
        held_role: m["role"].as_str().unwrap_or("?").to_string(),
        paused: m["paused"].as_bool().unwrap_or(false),
        epoch: m["epoch"].as_u64(),
        healthy: m["healthy"].as_bool(),
        height: m["latest_height"].as_u64(),
        state_height: height_of(&m["last_state"]),
        state_lag: None,
        last_contact: "via etcd".into(),
        source,
        api: m["api"].as_str().map(str::to_string),
    }
}

/// The peer's row as the local daemon last saw it (when the peer's API does not answer).
fn seen_row(s: &Value, id: &str) -> Row {
    let p = &s["peer"];
    let reachable = p["reachable"].as_bool().unwrap_or(false);
    Row {
        id: p["id"].as_str().unwrap_or(id).to_string(),
        role: if reachable {
            p["role"].as_str().unwrap_or("?").to_string()
        } else {
            "unreachable".into()
        },
        held_role: p["role"].as_str().unwrap_or("?").to_string(),
        paused: p["paused"].as_bool().unwrap_or(false),
        epoch: p["epoch"].as_u64(),
        healthy: if reachable {
            p["healthy"].as_bool()
        } else {
            None
        },
        height: p["comet_height"].as_u64(),
        state_height: height_of(&p["last_state"]),
        state_lag: None,
        last_contact: p["last_contact"].as_str().unwrap_or("never").to_string(),
        source: "as seen by the local node",
        api: None,
    }
}

/// etcd mode: every member the local daemon's last look at etcd showed, each from its own
/// API when it answers (else as it published itself in etcd), and every configured peer that
/// publishes nothing (down, or not running SyncGuard).
async fn member_rows(c: &Cluster, local: &Value, out: &mut Vec<Row>) {
    let me = out.first().map(|r| r.id.clone()).unwrap_or_default();
    for m in local["members"].as_array().into_iter().flatten() {
        let Some(id) = m["id"].as_str().filter(|id| *id != me) else {
            continue;
        };
        let api = m["api"].as_str().map(str::to_string).or_else(|| {
            c.peers
                .iter()
                .find(|(p, _)| p == id)
                .map(|(_, a)| a.clone())
        });
        let answer = match &api {
            Some(a) => c.get_at(a, "/status").await,
            None => None,
        };
        let mut row = match answer {
            Some(p) if p["node"]["id"].as_str() == Some(id) => own_row(&p, "its daemon"),
            _ if api.is_none() => {
                member_row(m, "etcd (no API address: set server.advertise_address)")
            }
            _ => member_row(m, "etcd (its API does not answer)"),
        };
        row.api = api;
        out.push(row);
    }
    for (id, address) in &c.peers {
        if out.iter().any(|r| r.id == *id) {
            continue;
        }
        out.push(Row {
            id: id.clone(),
            role: "unreachable".into(),
            held_role: "?".into(),
            paused: false,
            epoch: None,
            healthy: None,
            height: None,
            state_height: None,
            state_lag: None,
            last_contact: "not in etcd".into(),
            source: "configured peer that publishes no status in etcd (down?)",
            api: Some(address.clone()),
        });
    }
}

pub(super) async fn rows(c: &Cluster) -> anyhow::Result<Vec<Row>> {
    Ok(snapshot(c).await?.0)
}

/// The rows, and the local daemon's `/status` they started from.
pub(super) async fn snapshot(c: &Cluster) -> anyhow::Result<(Vec<Row>, Value)> {
    let local = c.get_local("/status").await?;
    let mut out = vec![own_row(&local, "local daemon")];
    if local["coordination"] == "etcd" {
        member_rows(c, &local, &mut out).await;
    } else if let Some((id, address)) = &c.peer {
        let mut row = match c.get_peer("/status").await {
            Some(p) if p["node"]["id"].as_str() == Some(id.as_str()) => own_row(&p, "peer daemon"),
            _ => seen_row(&local, id),
        };
        row.last_contact = local["peer"]["last_contact"]
            .as_str()
            .unwrap_or("never")
            .to_string();
        row.api = Some(address.clone());
        out.push(row);
    }
    // State lag: how far each node's sign state is behind the active's.
    let active_state = out
        .iter()
        .filter(|r| r.held_role == "active")
        .filter_map(|r| r.state_height)
        .max();
    for r in &mut out {
        r.state_lag = match (active_state, r.state_height) {
            (Some(a), Some(mine)) => Some((a - mine).max(0)),
            _ => None,
        };
    }
    Ok((out, local))
}

/// etcd mode: the lock as the local daemon's last look showed it, in one line.
pub(super) fn etcd_line(local: &Value) -> Option<String> {
    let e = local.get("etcd")?;
    let mut parts = vec![match (e["holder"].as_str(), e["epoch"].as_u64()) {
        (Some(h), Some(epoch)) => format!("{h} holds the lock at epoch {epoch}"),
        _ => "nobody holds the lock".to_string(),
    }];
    if let Some(h) = e["handover"].as_object() {
        parts.push(format!(
            "handover from {} to {} pending",
            h["from"].as_str().unwrap_or("?"),
            h["to"].as_str().unwrap_or("?")
        ));
    }
    if let Some(r) = e["request"].as_object() {
        parts.push(format!(
            "{} request for {}",
            r["kind"].as_str().unwrap_or("?"),
            r["from"].as_str().unwrap_or("?")
        ));
    }
    if let Some(by) = e["paused_by"].as_str() {
        parts.push(format!("PAUSED cluster-wide (by {by})"));
    }
    if let Some(why) = e["unreachable"].as_str() {
        parts.push(format!("the last look FAILED: {why}"));
    }
    Some(format!("etcd: {}", parts.join("; ")))
}

pub(super) fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), |x| x.to_string())
}

pub(super) fn print_table(rows: &[Row]) {
    println!(
        "{:<16} {:<12} {:>5} {:<9} {:>8} {:>8} {:>9}  last contact",
        "id", "role", "epoch", "health", "height", "state", "state lag"
    );
    for r in rows {
        let health = match r.healthy {
            Some(true) => "healthy",
            Some(false) => "UNHEALTHY",
            None => "unknown",
        };
        let role = if r.paused && r.role != "paused" {
            format!("{} (paused)", r.role)
        } else if r.role == "paused" {
            format!("paused/{}", r.held_role)
        } else {
            r.role.clone()
        };
        println!(
            "{:<16} {:<12} {:>5} {:<9} {:>8} {:>8} {:>9}  {}",
            r.id,
            role,
            opt(&r.epoch),
            health,
            opt(&r.height),
            opt(&r.state_height),
            opt(&r.state_lag),
            r.last_contact
        );
    }
}

/// Exactly one node holds the role and its node is healthy.
fn cluster_ok(rows: &[Row]) -> (bool, String) {
    let active: Vec<&Row> = rows.iter().filter(|r| r.held_role == "active").collect();
    match active.as_slice() {
        [one] if one.healthy == Some(true) => {
            (true, format!("ok: {} is active and healthy", one.id))
        }
        [one] => (
            false,
            format!("NOT OK: {} is active but its node is not healthy", one.id),
        ),
        [] => (
            false,
            "NOT OK: no node is active — the validator is not signing".into(),
        ),
        many => (
            false,
            format!(
                "NOT OK: {} nodes report themselves active ({}) — check at once",
                many.len(),
                many.iter()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
}

pub fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let config = match load(&args.config)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let c = Cluster::new(config)?;
    let (rows, local) = runtime()?.block_on(snapshot(&c))?;
    let (ok, verdict) = cluster_ok(&rows);
    if args.json {
        let mut out = json!({"ok": ok, "verdict": verdict, "nodes": rows});
        if let Some(e) = local.get("etcd") {
            out["etcd"] = e.clone();
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&out).context("encoding JSON")?
        );
    } else {
        print_table(&rows);
        if let Some(line) = etcd_line(&local) {
            println!("{line}");
        }
        println!("{verdict}");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn pause_resume(args: &AdminArgs, pause: bool) -> anyhow::Result<ExitCode> {
    let config = match load(&args.config)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let c = Cluster::new(config)?;
    let path = if pause { "/pause" } else { "/resume" };
    let rt = runtime()?;
    let (code, body) = rt.block_on(c.post(path, &json!({})))?;
    if code != 200 {
        let why = body["error"].as_str().unwrap_or("no reason given");
        println!("refused (HTTP {code}): {why}");
        return Ok(ExitCode::FAILURE);
    }
    let node = body["node_id"].as_str().unwrap_or("this node");
    let word = if pause { "paused" } else { "resumed" };
    println!("{node}: {word}");
    if c.etcd() {
        return rt.block_on(wait_cluster_pause(&c, node, pause));
    }
    let peer = &body["peer"];
    let peer_id = peer["id"].as_str().unwrap_or("the peer");
    if peer["done"].as_bool() == Some(true) {
        println!("{peer_id}: {word}");
        if pause {
            println!(
                "no automatic transition will happen until `syncguard resume` (safety stops \
                 still act)"
            );
        }
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{peer_id}: NOT {word}: {} — run the command on {peer_id} too",
            peer["error"].as_str().unwrap_or("no peer configured")
        );
        Ok(ExitCode::FAILURE)
    }
}

/// etcd mode: the pause is one key in etcd that every node follows at its next look at the
/// lock; waits (a few health rounds) until every node shows it, and names those that do not.
async fn wait_cluster_pause(c: &Cluster, me: &str, pause: bool) -> anyhow::Result<ExitCode> {
    let word = if pause { "paused" } else { "resumed" };
    let bound = c.config.failover.health_check_interval() * 6 + Duration::from_secs(5);
    let started = Instant::now();
    let mut last = Vec::new();
    loop {
        if let Ok((rows, local)) = snapshot(c).await {
            let key_ok = local["etcd"]["paused_by"].is_null() != pause;
            let pending: Vec<String> = rows
                .iter()
                .filter(|r| r.id != me && (r.paused != pause || r.role == "unreachable"))
                .map(|r| r.id.clone())
                .collect();
            if key_ok && pending.is_empty() {
                for r in rows.iter().filter(|r| r.id != me) {
                    println!("{}: {word}", r.id);
                }
                if pause {
                    println!(
                        "paused cluster-wide (etcd's pause key): no automatic transition on any \
                         node until `syncguard resume` (safety stops still act)"
                    );
                } else {
                    println!("resumed cluster-wide: automatic operation on every node");
                }
                return Ok(ExitCode::SUCCESS);
            }
            last = rows
                .iter()
                .filter(|r| pending.contains(&r.id))
                .map(|r| (r.id.clone(), r.role.clone()))
                .collect();
            if !key_ok {
                last.push(("etcd".into(), "the pause key is not stored yet".into()));
            }
        }
        if started.elapsed() > bound {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (id, role) in last {
        println!(
            "{id}: NOT {word} after {}s ({role}) — every node follows etcd's pause key at its \
             next look at the lock; check it with `syncguard status`",
            bound.as_secs()
        );
    }
    Ok(ExitCode::FAILURE)
}

/// `syncguard takeover`: the operator vouches that the peer is down for good.
pub fn takeover(args: &crate::cli::ConfirmArgs) -> anyhow::Result<ExitCode> {
    if !args.yes {
        let etcd = syncguard_config::load(&args.config)
            .is_ok_and(|l| l.config.coordination.backend == Backend::Etcd);
        let what = if etcd {
            "REMOVE the lock of the holder etcd still shows (its lease may outlive its host) and \
             take the validator role itself"
        } else {
            "take the validator role WITHOUT its peer's agreement"
        };
        let who = if etcd { "holder's" } else { "peer" };
        println!(
            "takeover (dry run): this node would {what}.\n  still required: this node's own \
             Story node healthy and caught up, and the chain showing no signature from the \
             validator in the last blocks (if the validator signs anywhere, the takeover is \
             refused).\n  use it only when the {who} host is down for good and cannot come back \
             with the key live.\nrun again with --yes to do it."
        );
        return Ok(ExitCode::from(2));
    }
    local_command(&args.config, "/takeover")
}

/// `syncguard unfence`: leave `fenced` without waiting for the peer.
pub fn unfence(args: &AdminArgs) -> anyhow::Result<ExitCode> {
    local_command(&args.config, "/unfence")
}

fn local_command(config: &std::path::Path, path: &str) -> anyhow::Result<ExitCode> {
    let config = match load(config)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let c = Cluster::new(config)?;
    let (code, body) = runtime()?.block_on(c.post(path, &json!({})))?;
    if code != 200 {
        let why = body["error"].as_str().unwrap_or("no reason given");
        println!("refused (HTTP {code}): {why}");
        return Ok(ExitCode::FAILURE);
    }
    let node = body["node_id"].as_str().unwrap_or("this node").to_string();
    let mut refused = false;
    for r in body["records"].as_array().into_iter().flatten() {
        let why = r["why"].as_str().unwrap_or("");
        // An unfence is refused only by its own record; a hold the passive it made records
        // at once (etcd unreachable, the lock held) is the normal rules applying.
        refused |= match path {
            "/unfence" => why.starts_with("unfence ignored"),
            _ => r["kind"] == "refusal",
        };
        println!("{node}: {why}");
    }
    let role = body["role"].as_str().unwrap_or("unknown").to_string();
    if path == "/takeover" && !refused && role == "passive" {
        // The machine decides at its next looks (the witness, the lock): wait for the outcome.
        return runtime()?.block_on(wait_takeover(&c, &node));
    }
    println!("{node} is {role}");
    Ok(if refused {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// After an accepted takeover: waits until this node is active, or says why not (the chain
/// showed the validator signing, the lock could not be taken, the activation failed), within
/// the takeover's validity and an activation. Reads this node's records from the takeover's
/// own on: a later record may already have replaced the refusal as the latest decision.
async fn wait_takeover(c: &Cluster, node: &str) -> anyhow::Result<ExitCode> {
    let n = syncguard::daemon::node_double_sign_check_height(&c.config);
    let timing = c.config.timing_with(n);
    let bound =
        timing.window + timing.round + timing.handover_timeout * 2 + Duration::from_secs(10);
    let started = Instant::now();
    let mut said = 0;
    while started.elapsed() < bound {
        let events = c.get_local("/events").await.unwrap_or(Value::Null);
        let list = events["events"].as_array().cloned().unwrap_or_default();
        let from = list
            .iter()
            .rposition(|e| {
                e["why"]
                    .as_str()
                    .is_some_and(|w| w.starts_with("takeover requested by the operator"))
            })
            .map_or(list.len(), |i| i + 1);
        let since = &list[from.min(list.len())..];
        for e in since.iter().skip(said) {
            let why = e["why"].as_str().unwrap_or("");
            println!("{node}: {why}");
            let failed = ["takeover refused", "ACTIVATION FAILED", "not promoting"]
                .iter()
                .any(|w| why.contains(w));
            if failed {
                println!("{node} is {}", e["role"].as_str().unwrap_or("passive"));
                return Ok(ExitCode::FAILURE);
            }
            if e["role"] == "active" || why.starts_with("active at epoch") {
                println!("{node} is active");
                return Ok(ExitCode::SUCCESS);
            }
        }
        said = since.len();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "{node}: NOT active after {}s: see `syncguard status` and /events",
        bound.as_secs()
    );
    Ok(ExitCode::FAILURE)
}
