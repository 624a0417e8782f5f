//! `syncguard switchover`: the plan (a dry run unless `--yes`), the daemon's own checks, the
//! request, the wait for the target to sign, and the per-step timings of both nodes. Run on
//! the active or on the target — in etcd mode on any node. Nothing is decided here: the
//! daemon's failover core accepts or refuses, and this prints what it said.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;
use serde_json::json;

use super::admin::{etcd_line, load, opt, print_table, rows, runtime, snapshot, Cluster, Row};
use crate::cli::SwitchoverArgs;

pub fn run(args: &SwitchoverArgs) -> anyhow::Result<ExitCode> {
    let config = match load(&args.config)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let c = Cluster::new(config)?;
    runtime()?.block_on(run_switchover(&c, args))
}

/// The node a switchover goes to when `--to` is not given: this node when it is not the
/// active; else the healthy passive highest on the chain (with two nodes: the other one).
fn default_target(c: &Cluster, rows: &[Row], active: Option<&Row>) -> anyhow::Result<String> {
    let me = &c.config.server.id;
    let Some(a) = active else {
        bail!("no node is active: nothing to switch over (see `syncguard status`)");
    };
    if a.id != *me {
        return Ok(me.clone());
    }
    let mut others: Vec<&Row> = rows.iter().filter(|r| r.id != a.id).collect();
    others.sort_by_key(|r| {
        let ready = r.held_role == "passive" && r.healthy == Some(true) && !r.paused;
        (!ready, std::cmp::Reverse(r.height))
    });
    match others.first() {
        Some(r) => Ok(r.id.clone()),
        None => bail!("no other node to switch over to"),
    }
}

/// A refusal of the switchover made after it was accepted here (the holder declined the
/// request, the handover was refused), among the records of this node and of the old holder
/// made since `since` (a second of slack for the hosts' clocks).
async fn later_refusal(
    c: &Cluster,
    old: Option<&Row>,
    target: &str,
    since: SystemTime,
) -> Option<String> {
    let since = since - Duration::from_secs(1);
    let mut looks = vec![c.get_local("/events").await.ok()];
    if old.is_some_and(|o| o.id != c.config.server.id) {
        looks.push(c.get_node(old, "/events").await);
    }
    let declined = format!("declined {target}'s");
    for list in looks.into_iter().flatten() {
        for e in list["events"].as_array().into_iter().flatten() {
            let at = e["at"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok());
            if at.is_none_or(|at| at < since) {
                continue;
            }
            let why = e["why"].as_str().unwrap_or("");
            if why.contains("declined my request")
                || why.contains("refused the handover")
                || why.contains(&declined)
            {
                return Some(why.to_string());
            }
        }
    }
    None
}

async fn run_switchover(c: &Cluster, args: &SwitchoverArgs) -> anyhow::Result<ExitCode> {
    let (before, local) = snapshot(c).await?;
    let active = before.iter().find(|r| r.held_role == "active").cloned();
    let target = match &args.to {
        Some(t) => t.clone(),
        None => default_target(c, &before, active.as_ref())?,
    };
    println!("switchover plan:");
    print_table(&before);
    if let Some(line) = etcd_line(&local) {
        println!("{line}");
    }
    let timing = print_plan(c, &before, active.as_ref(), &target);
    if !daemon_checks_pass(c, &target).await? {
        println!("refused: nothing was changed; the active keeps signing.");
        return Ok(ExitCode::FAILURE);
    }
    if !args.yes {
        println!("dry run: nothing was changed. Run again with --yes to do it.");
        return Ok(ExitCode::SUCCESS);
    }
    let epoch_before = before.iter().filter_map(|r| r.epoch).max().unwrap_or(0);
    let started = Instant::now();
    let started_at = SystemTime::now();
    let (code, answer) = c.post("/switchover", &json!({"to": target})).await?;
    if code != 200 {
        let why = answer["error"].as_str().unwrap_or("no reason given");
        println!("refused (HTTP {code}): {why}");
        println!("nothing was changed; the active keeps signing.");
        return Ok(ExitCode::FAILURE);
    }
    println!("accepted; waiting for {target} to become active at epoch > {epoch_before} ...");
    let bound = timing.handover_timeout * 2 + Duration::from_secs(30);
    let after = match wait_done(c, active.as_ref(), &target, epoch_before, started_at, bound).await
    {
        Done::Active(after) => after,
        Done::Refused(why) => {
            println!("refused: {why}");
            return Ok(ExitCode::FAILURE);
        }
        Done::TimedOut => {
            println!(
                "NOT confirmed within {}s: see `syncguard status` and /events on every node",
                bound.as_secs()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    println!(
        "done in {:.1}s: {target} is active",
        started.elapsed().as_secs_f64()
    );
    print_table(&after);
    print_steps(c, active.as_ref(), &after, &target).await;
    Ok(ExitCode::SUCCESS)
}

/// The plan in words: who stops, who starts, how, and what it costs by the timing model of
/// this host's config and node (returned, for the wait's bound).
fn print_plan(
    c: &Cluster,
    before: &[Row],
    active: Option<&Row>,
    target: &str,
) -> syncguard_timing::Timing {
    match active {
        Some(a) => println!(
            "  active now:      {} (height {}, state height {})",
            a.id,
            opt(&a.height),
            opt(&a.state_height)
        ),
        None => println!("  active now:      none"),
    }
    match before.iter().find(|r| r.id == target) {
        Some(t) => println!(
            "  becomes active:  {} (height {}, state height {}, state lag {})",
            t.id,
            opt(&t.height),
            opt(&t.state_height),
            opt(&t.state_lag)
        ),
        None => println!("  becomes active:  {target} (not a node of this cluster?)"),
    }
    let me = c.config.server.id.clone();
    let holder = active.map_or("the holder", |a| a.id.as_str());
    let asked_on = match active {
        _ if !c.etcd() => String::new(),
        Some(a) if a.id == me => " (run on the active: it hands over)".to_string(),
        _ if target == me => {
            format!(" (run on the target: this node asks {holder} through etcd to hand over)")
        }
        _ => format!(" (run on {me}: it asks {holder} through etcd to hand over to {target})"),
    };
    let hand = if c.etcd() {
        format!("hands the lock in etcd to {target} with its final state")
    } else {
        format!("hands its final state to {target} with epoch +1")
    };
    println!(
        "  steps{asked_on}: the active stops its validator and confirms the stop, swaps in the \
         placeholder key and {hand}; {target} writes max(own, handed) state, installs the key \
         and starts. Nothing is signed twice: the target only starts after the old holder's \
         stop is confirmed."
    );
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
    timing
}

/// The daemon's own checks, as a dry run: whether the switchover would be accepted now.
async fn daemon_checks_pass(c: &Cluster, target: &str) -> anyhow::Result<bool> {
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
    Ok(blocked.is_none() && code == 200)
}

/// How the wait for the target ended.
enum Done {
    /// The target is the one active node at a newer epoch: the rows then.
    Active(Vec<Row>),
    /// The holder (or this node) recorded a refusal after the request.
    Refused(String),
    TimedOut,
}

async fn wait_done(
    c: &Cluster,
    active: Option<&Row>,
    target: &str,
    epoch_before: u64,
    started_at: SystemTime,
    bound: Duration,
) -> Done {
    let started = Instant::now();
    loop {
        if let Ok(now) = rows(c).await {
            let t = now.iter().find(|r| r.id == target);
            if t.is_some_and(|t| t.held_role == "active" && t.epoch.unwrap_or(0) > epoch_before)
                && now.iter().filter(|r| r.held_role == "active").count() == 1
            {
                return Done::Active(now);
            }
        }
        // A refusal by the active arrives later when this runs on another node: it shows as
        // the latest decision of this node or of the active.
        if let Some(last) = later_refusal(c, active, target, started_at).await {
            return Done::Refused(last);
        }
        if started.elapsed() > bound {
            return Done::TimedOut;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Per-step timings: the old holder's stop, then the new holder's start, each read from
/// that node's own `GET /switchover`.
async fn print_steps(c: &Cluster, active: Option<&Row>, after: &[Row], target: &str) {
    let me = &c.config.server.id;
    let old = active.map(|a| a.id.clone()).unwrap_or_default();
    let new_row = after.iter().find(|r| r.id == target);
    for (id, row, field, what) in [
        (old.as_str(), active, "last_deactivation", "stop"),
        (target, new_row, "last_activation", "start"),
    ] {
        let steps = c.get_node(row, "/switchover").await;
        match steps
            .as_ref()
            .map(|s| &s[field])
            .and_then(|t| t["table"].as_str())
        {
            Some(table) => println!("\n{what} on {id}:\n{table}"),
            None if row.is_some_and(|r| r.api.is_none() && r.id != *me) => println!(
                "\n{what} on {id}: no step table available (its API address is unknown: set \
                 server.advertise_address on {id})"
            ),
            None => println!("\n{what} on {id}: no step table available"),
        }
    }
}
