//! `syncguard story`: load the config, check the files, run the daemon until SIGINT/SIGTERM.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use syncguard::{daemon, logging, preflight};
use syncguard_config::NodeRole;

use super::EXIT_INVALID;

pub fn run(config_path: &Path, role: Option<NodeRole>) -> anyhow::Result<ExitCode> {
    let loaded = match syncguard_config::load(config_path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let config = loaded.config;
    if let Err(e) = logging::init(&config.logging) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    for w in &loaded.warnings {
        tracing::warn!("config: {w}");
    }
    let files = preflight::check_files(&config);
    for w in &files.warnings {
        tracing::warn!("files: {w}");
    }
    for e in &files.errors {
        tracing::error!(
            "files: {e} — this node cannot take the validator role until this is fixed"
        );
    }
    let role = role.unwrap_or(config.node_role());
    if role == NodeRole::Active && config.communication.peers.is_empty() {
        tracing::warn!(
            "asked to start active, but no peer is configured: SyncGuard only monitors health \
             here and never starts, stops or re-keys story"
        );
    }
    let bind = (config.server.bind.clone(), config.server.port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((bind.0.as_str(), bind.1))
            .await
            .with_context(|| format!("cannot listen on {}:{}", bind.0, bind.1))?;
        tracing::info!(
            node = %config.server.id,
            %role,
            address = %format!("{}:{}", bind.0, bind.1),
            "syncguard started"
        );
        daemon::run(config, role, listener, shutdown_signal()).await?;
        tracing::info!("syncguard stopped");
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
}
