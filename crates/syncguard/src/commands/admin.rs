//! `status`, `switchover`, `pause`, `resume`: the operator's commands, spoken to the local
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
use syncguard_config::Config;
use syncguard_failover::NodeId;
use syncguard_peer::PeerSecurity;

use super::EXIT_INVALID;
use crate::cli::{AdminArgs, StatusArgs, SwitchoverArgs};

/// The local daemon and, read-only, its peer.
struct Cluster {
    config: Config,
    local: String,
    /// Client for the local daemon's admin routes (token or mutual TLS).
    admin: reqwest::Client,
    admin_base: String,
    token: Option<String>,
    plain: reqwest::Client,
    peer: Option<(String, String)>,
}

fn load(path: &std::path::Path) -> anyhow::Result<Result<Config, ExitCode>> {
    match syncguard_config::load(path) {
        Ok(loaded) => Ok(Ok(loaded.config)),
        Err(e) => {
            eprintln!("{e}");
            Ok(Err(ExitCode::from(EXIT_INVALID)))
        }
    }
}

impl Cluster {
    fn new(config: Config) -> anyhow::Result<Cluster> {
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
        let peer = config
            .communication
            .peers
            .first()
            .map(|p| (p.id.clone(), p.address.clone()));
        Ok(Cluster {
            config,
            local: format!("http://{local}"),
            admin,
            admin_base,
            token,
            plain,
            peer,
        })
    }

    async fn get_local(&self, path: &str) -> anyhow::Result<Value> {
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
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// One row of the cluster table.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    id: String,
    role: String,
    held_role: String,
    paused: bool,
    epoch: Option<u64>,
    healthy: Option<bool>,
    height: Option<u64>,
    state_height: Option<i64>,
    state_lag: Option<i64>,
    last_contact: String,
    source: &'static str,
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
    }
}

async fn rows(c: &Cluster) -> anyhow::Result<Vec<Row>> {
    let local = c.get_local("/status").await?;
    let mut out = vec![own_row(&local, "local daemon")];
    if let Some((id, _)) = &c.peer {
        let mut row = match c.get_peer("/status").await {
            Some(p) if p["node"]["id"].as_str() == Some(id.as_str()) => own_row(&p, "peer daemon"),
            _ => seen_row(&local, id),
        };
        row.last_contact = local["peer"]["last_contact"]
            .as_str()
            .unwrap_or("never")
            .to_string();
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
    Ok(out)
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), |x| x.to_string())
}

fn print_table(rows: &[Row]) {
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
    let rows = runtime()?.block_on(rows(&c))?;
    let (ok, verdict) = cluster_ok(&rows);
    if args.json {
        let out = json!({"ok": ok, "verdict": verdict, "nodes": rows});
        println!(
            "{}",
            serde_json::to_string_pretty(&out).context("encoding JSON")?
        );
    } else {
        print_table(&rows);
        println!("{verdict}");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn switchover(args: &SwitchoverArgs) -> anyhow::Result<ExitCode> {
    let config = match load(&args.config)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let c = Cluster::new(config)?;
    runtime()?.block_on(run_switchover(&c, args))
}

async fn run_switchover(c: &Cluster, args: &SwitchoverArgs) -> anyhow::Result<ExitCode> {
    let before = rows(c).await?;
    let active = before.iter().find(|r| r.held_role == "active").cloned();
    let target = match (&args.to, &active) {
        (Some(t), _) => t.clone(),
        (None, Some(a)) => match before.iter().find(|r| r.id != a.id) {
            Some(r) => r.id.clone(),
            None => bail!("no other node to switch over to"),
        },
        (None, None) => bail!("no node is active: nothing to switch over (see `syncguard status`)"),
    };
    let target_row = before.iter().find(|r| r.id == target).cloned();
    println!("switchover plan:");
    print_table(&before);
    match &active {
        Some(a) => println!(
            "  active now:      {} (height {}, state height {})",
            a.id,
            opt(&a.height),
            opt(&a.state_height)
        ),
        None => println!("  active now:      none"),
    }
    match &target_row {
        Some(t) => println!(
            "  becomes active:  {} (height {}, state height {}, state lag {})",
            t.id,
            opt(&t.height),
            opt(&t.state_height),
            opt(&t.state_lag)
        ),
        None => println!("  becomes active:  {target} (not a node of this cluster?)"),
    }
    println!(
        "  steps: the active stops its validator and confirms the stop, swaps in the placeholder \
         key and hands its final state to {target} with epoch +1; {target} writes max(own, \
         handed) state, installs the key and starts. Nothing is signed twice: the target only \
         starts after the old holder's stop is confirmed."
    );
    // What the switchover costs, from the timing model (this host's config and node).
    let n = syncguard::daemon::node_double_sign_check_height(&c.config);
    let timing = c.config.timing_with(n);
    let (blocks, secs) = timing.switchover_cost();
    if n > 0 {
        println!(
            "  double_sign_check_height = {n}: {target} waits for {n} blocks without the \
             validator's signature before it starts (about {}), or CometBFT would refuse to \
             start",
            syncguard_timing::words(timing.block * u32::try_from(n).unwrap_or(u32::MAX))
        );
    }
    println!(
        "  expected cost: at most about {blocks} missed blocks ({}: {target}'s restart{})",
        syncguard_timing::words(secs),
        if n > 0 { " and that wait" } else { "" }
    );
    let (code, check) = c
        .post("/switchover", &json!({"to": target, "dry_run": true}))
        .await?;
    let blocked = check["error"].as_str().map(str::to_string);
    match &blocked {
        None if code == 200 => {
            println!("  checks: passed (target healthy, caught up, passive, not paused)")
        }
        None => println!("  checks: the daemon answered HTTP {code}: {check}"),
        Some(why) => println!("  checks: BLOCKED — {why}"),
    }
    if blocked.is_some() || code != 200 {
        println!("refused: nothing was changed; the active keeps signing.");
        return Ok(ExitCode::FAILURE);
    }
    if !args.yes {
        println!("dry run: nothing was changed. Run again with --yes to do it.");
        return Ok(ExitCode::SUCCESS);
    }
    let epoch_before = before.iter().filter_map(|r| r.epoch).max().unwrap_or(0);
    let started = Instant::now();
    let (code, answer) = c.post("/switchover", &json!({"to": target})).await?;
    if code != 200 {
        let why = answer["error"].as_str().unwrap_or("no reason given");
        println!("refused (HTTP {code}): {why}");
        println!("nothing was changed; the active keeps signing.");
        return Ok(ExitCode::FAILURE);
    }
    println!("accepted; waiting for {target} to become active at epoch > {epoch_before} ...");
    let bound = timing.handover_timeout * 2 + Duration::from_secs(30);
    let done = loop {
        if let Ok(now) = rows(c).await {
            let t = now.iter().find(|r| r.id == target);
            if t.is_some_and(|t| t.held_role == "active" && t.epoch.unwrap_or(0) > epoch_before)
                && now.iter().filter(|r| r.held_role == "active").count() == 1
            {
                break Some(now);
            }
        }
        // A refusal by the active arrives later when this runs on the target: it shows as
        // the local node's latest decision.
        if let Ok(s) = c.get_local("/status").await {
            let last = s["node"]["last_decision"].as_str().unwrap_or("");
            if last.contains("declined my request") || last.contains("refused the handover") {
                println!("refused: {last}");
                return Ok(ExitCode::FAILURE);
            }
        }
        if started.elapsed() > bound {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let Some(after) = done else {
        println!(
            "NOT confirmed within {}s: see `syncguard status` and /events on both nodes",
            bound.as_secs()
        );
        return Ok(ExitCode::FAILURE);
    };
    println!(
        "done in {:.1}s: {target} is active",
        started.elapsed().as_secs_f64()
    );
    print_table(&after);
    // Per-step timings: the old holder's stop, then the new holder's start.
    let old = active.as_ref().map(|a| a.id.clone()).unwrap_or_default();
    for (id, field, what) in [
        (&old, "last_deactivation", "stop"),
        (&target, "last_activation", "start"),
    ] {
        let steps = if c.peer.as_ref().is_some_and(|(p, _)| p == id) {
            c.get_peer("/switchover").await
        } else {
            c.get_local("/switchover").await.ok()
        };
        match steps
            .as_ref()
            .map(|s| &s[field])
            .and_then(|t| t["table"].as_str())
        {
            Some(table) => println!("\n{what} on {id}:\n{table}"),
            None => println!("\n{what} on {id}: no step table available"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn pause_resume(args: &AdminArgs, pause: bool) -> anyhow::Result<ExitCode> {
    let config = match load(&args.config)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let c = Cluster::new(config)?;
    let path = if pause { "/pause" } else { "/resume" };
    let (code, body) = runtime()?.block_on(c.post(path, &json!({})))?;
    if code != 200 {
        let why = body["error"].as_str().unwrap_or("no reason given");
        println!("refused (HTTP {code}): {why}");
        return Ok(ExitCode::FAILURE);
    }
    let node = body["node_id"].as_str().unwrap_or("this node");
    let word = if pause { "paused" } else { "resumed" };
    println!("{node}: {word}");
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

/// `syncguard takeover`: the operator vouches that the peer is down for good.
pub fn takeover(args: &crate::cli::ConfirmArgs) -> anyhow::Result<ExitCode> {
    if !args.yes {
        println!(
            "takeover (dry run): this node would take the validator role WITHOUT its peer's \
             agreement.\n  still required: this node's own Story node healthy and caught up, and \
             the chain showing no signature from the validator in the last blocks (if the \
             validator signs anywhere, the takeover is refused).\n  use it only when the peer \
             host is down for good and cannot come back with the key live.\nrun again with --yes \
             to do it."
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
    let node = body["node_id"].as_str().unwrap_or("this node");
    let mut refused = false;
    for r in body["records"].as_array().into_iter().flatten() {
        refused |= r["kind"] == "refusal";
        println!("{node}: {}", r["why"].as_str().unwrap_or(""));
    }
    println!("{node} is {}", body["role"].as_str().unwrap_or("unknown"));
    Ok(if refused {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
