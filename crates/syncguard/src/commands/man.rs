//! `syncguard man --dir D` (hidden): the manual pages, generated from the clap definitions
//! in `cli.rs` so that they say exactly what `--help` says. One page per visible command:
//! `syncguard.1`, `syncguard-story.1`, `syncguard-config-check.1`, ... Hidden commands (the
//! demo's `devnet` processes, this one) get none.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::Cli;

pub fn run(dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
    let mut pages: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("syncguard") && n.ends_with(".1"))
        .collect();
    pages.sort();
    for page in &pages {
        println!("{}", dir.join(page).display());
    }
    Ok(ExitCode::SUCCESS)
}
