//! `syncguard devnet up`: the playground. The demo's cluster — two real SyncGuard daemons over
//! mutual TLS on a devnet — left running, with what a user can do printed: the status pages,
//! the configs, copy-paste `syncguard` commands, and fault commands served by a small control
//! API on loopback (crash or bring back a host, cut the SyncGuard link, stall the chain, mute
//! a node). Ctrl-C (or SIGTERM) prints the ledger's verdict and tears everything down: every
//! process killed, the temporary directory removed (unless `--keep`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use tokio::sync::Mutex;

use crate::cluster::{
    Cluster, ClusterError, ClusterOptions, StartRole, DEMO_ADMIN_TOKEN, NODE_IDS,
};
use crate::harness::Launcher;

/// `syncguard devnet up` options.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Block interval of the devnet, ms (100–2000).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(100..=2000))]
    pub block_time_ms: u64,
    /// Keep the devnet's files (configs, logs, ledger) in this new directory.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// Errors of the playground.
#[derive(Debug, thiserror::Error)]
pub enum PlaygroundError {
    /// The cluster failed to start or to elect an active.
    #[error("cluster: {0}")]
    Cluster(#[from] ClusterError),
    /// This program's own path is unknown.
    #[error("cannot find this program's path: {0}")]
    SelfExe(std::io::Error),
    /// The control API could not listen.
    #[error("control API: cannot listen on 127.0.0.1: {0}")]
    Control(std::io::Error),
    /// SIGTERM could not be watched.
    #[error("cannot watch SIGTERM: {0}")]
    Signal(std::io::Error),
}

type Shared = Arc<Mutex<Cluster>>;

/// Runs the playground until Ctrl-C / SIGTERM. `devnet_prefix` selects the devnet in this
/// program (`["devnet"]` inside syncguard), which also runs the daemons.
pub async fn run_args(args: UpArgs, devnet_prefix: &[&str]) -> Result<ExitCode, PlaygroundError> {
    let exe = std::env::current_exe().map_err(PlaygroundError::SelfExe)?;
    let mut opts = ClusterOptions::new(
        &exe,
        Launcher::with_prefix(&exe, devnet_prefix.iter().copied()),
    );
    opts.admin_token = Some(DEMO_ADMIN_TOKEN.to_string());
    opts.devnet.block_time = Duration::from_millis(args.block_time_ms);
    opts.devnet.dir = args.keep.clone();
    println!("starting two SyncGuard daemons on a devnet ...");
    let cluster = Cluster::start(opts).await?;
    let active = cluster.wait_one_active(Duration::from_secs(60)).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(PlaygroundError::Control)?;
    let control = listener.local_addr().map_err(PlaygroundError::Control)?;
    let dir = cluster.devnet.dir().to_path_buf();
    print_guide(
        &cluster,
        &exe,
        active,
        control,
        args.block_time_ms,
        args.keep.is_some(),
    )?;
    let shared: Shared = Arc::new(Mutex::new(cluster));
    let app = Router::new()
        .route("/{action}", post(fault))
        .route("/{action}/{node}", post(fault_on))
        .with_state(shared.clone());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(PlaygroundError::Signal)?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    // The control API ends with the playground; an error there ends it too.
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        eprintln!("control API failed: {e}");
    }
    let cluster = shared.lock().await;
    let verdict = match cluster.ledger().await {
        Ok(l) => format!(
            "ledger: {} double signs, {} S1 violations, {} heights signed",
            l.double_signs, l.s1_violations, l.signed_heights
        ),
        Err(e) => format!("ledger not read: {e}"),
    };
    drop(cluster);
    // The last reference: dropping the cluster kills the daemons, then the devnet's processes
    // and its temporary directory.
    drop(shared);
    println!("{verdict}");
    if args.keep.is_some() {
        println!("stopped every process; the files stay in {}", dir.display());
    } else {
        println!("stopped every process and removed {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_guide(
    c: &Cluster,
    exe: &std::path::Path,
    active: usize,
    control: std::net::SocketAddr,
    block_ms: u64,
    keep: bool,
) -> Result<(), ClusterError> {
    let exe = exe.display();
    let (a, b) = (c.daemon(0)?, c.daemon(1)?);
    let (ca, cb) = (a.config.display(), b.config.display());
    let other = NODE_IDS[1 - active];
    println!(
        "playground up: {} is active, {other} passive (blocks every {} ms).",
        NODE_IDS[active], block_ms
    );
    println!("  status pages:  {}  http://127.0.0.1:{}/", a.id, a.port);
    println!("                 {}  http://127.0.0.1:{}/", b.id, b.port);
    println!("  configs:       {ca}");
    println!("                 {cb}");
    println!(
        "  files:         {} ({})",
        c.devnet.dir().display(),
        if keep { "kept" } else { "removed at the end" }
    );
    println!("try (any node's config works; the admin token is in the configs):");
    println!("  {exe} status --config {ca}");
    println!("  {exe} switchover --config {ca} --to {other} --yes");
    println!("  {exe} pause --config {ca}");
    println!("  {exe} resume --config {ca}");
    println!("  {exe} witness --config {cb}");
    println!(
        "  curl -s http://127.0.0.1:{}/metrics | grep '^syncguard_role'",
        a.port
    );
    println!("faults (then watch the status pages, or `status` above):");
    let url = format!("http://127.0.0.1:{}", control.port());
    for (cmd, what) in [
        (
            "crash/node-a".to_string(),
            "node-a's host dies (SyncGuard and story)",
        ),
        ("crash/node-b".to_string(), "node-b's host dies"),
        (
            "restart/node-a".to_string(),
            "node-a's host comes back (passive)",
        ),
        (
            "restart/node-b".to_string(),
            "node-b's host comes back (passive)",
        ),
        (
            "cut-link".to_string(),
            "cut the SyncGuard link only (heal-link)",
        ),
        (
            "halt-chain".to_string(),
            "stall the whole chain (resume-chain)",
        ),
        (
            "mute/node-a".to_string(),
            "node-a's votes miss every commit (unmute/node-a)",
        ),
        (
            "mute/node-b".to_string(),
            "node-b's votes miss every commit (unmute/node-b)",
        ),
    ] {
        println!("  curl -X POST {url}/{cmd:<16} # {what}");
    }
    println!("Ctrl-C stops everything.");
    Ok(())
}

fn index(node: &str) -> Result<usize, (StatusCode, String)> {
    NODE_IDS.iter().position(|n| *n == node).ok_or((
        StatusCode::NOT_FOUND,
        format!("no node {node}: node-a or node-b\n"),
    ))
}

fn done(r: Result<String, ClusterError>) -> (StatusCode, String) {
    match r {
        Ok(what) => (StatusCode::OK, format!("{what}\n")),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("failed: {e}\n")),
    }
}

/// `POST /{action}`: the cluster-wide faults.
async fn fault(State(c): State<Shared>, UrlPath(action): UrlPath<String>) -> (StatusCode, String) {
    let c = c.lock().await;
    let r = match action.as_str() {
        "cut-link" | "heal-link" => {
            let cut = action == "cut-link";
            c.set_link_cut(cut);
            Ok(format!(
                "SyncGuard link {}",
                if cut { "cut" } else { "healed" }
            ))
        }
        "halt-chain" => c
            .devnet
            .halt()
            .await
            .map(|h| format!("chain halted at height {}", h.height)),
        "resume-chain" => c
            .devnet
            .resume()
            .await
            .map(|h| format!("chain resumed at height {}", h.height)),
        _ => return (StatusCode::NOT_FOUND, format!("no fault {action}\n")),
    };
    done(r.map_err(ClusterError::from))
}

/// `POST /{action}/{node}`: the faults of one host.
async fn fault_on(
    State(c): State<Shared>,
    UrlPath((action, node)): UrlPath<(String, String)>,
) -> (StatusCode, String) {
    let i = match index(&node) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let mut c = c.lock().await;
    let r = match action.as_str() {
        "crash" => c
            .crash_host(i)
            .await
            .map(|()| format!("{node}'s host crashed")),
        "restart" => c
            .restart_daemon(i, StartRole::Passive)
            .map(|()| format!("{node}'s SyncGuard restarted --role passive (it starts story)")),
        "mute" | "unmute" => {
            let on = action == "mute";
            c.set_muted(i, on)
                .await
                .map(|_| format!("{node} {}", if on { "muted" } else { "unmuted" }))
        }
        _ => return (StatusCode::NOT_FOUND, format!("no fault {action}\n")),
    };
    done(r)
}
