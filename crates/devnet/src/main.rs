//! `syncguard-devnet`: see the library's `cli` module.

use std::process::ExitCode;

use clap::Parser;
use syncguard_devnet::cli::{run, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr (the node's to <home>/node.log); stdout carries the "listening on" line.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match run(cli.command, &[]).await.map_err(anyhow::Error::from) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("syncguard-devnet: {e:#}");
            ExitCode::FAILURE
        }
    }
}
