//! `config check`: exit 0 when valid, 2 when not, with every problem listed.

use std::path::Path;
use std::process::ExitCode;

use syncguard::preflight;

use super::EXIT_INVALID;

pub fn run(path: &Path, offline: bool) -> anyhow::Result<ExitCode> {
    let loaded = match syncguard_config::load(path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let mut warnings = loaded.warnings;
    let mut errors = Vec::new();
    if !offline {
        let files = preflight::check_files(&loaded.config);
        errors.extend(files.errors);
        warnings.extend(files.warnings);
    }
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if errors.is_empty() {
        println!(
            "{}: valid{}",
            path.display(),
            if offline {
                " (offline: the files it names were not checked)"
            } else {
                ""
            }
        );
        // What these settings guarantee, from the timing model (docs/TIMING.md), with the
        // node's own double_sign_check_height when its config.toml can be read.
        let n = if offline {
            0
        } else {
            syncguard::daemon::node_double_sign_check_height(&loaded.config)
        };
        let timing = loaded.config.timing_with(n);
        println!("With these settings:");
        println!("  - {}", profile_line(&loaded.config.story));
        for g in timing.guarantees() {
            println!("  - {g}");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} is not usable on this host ({} problem{}):",
            path.display(),
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        );
        for e in &errors {
            eprintln!("  - {e}");
        }
        Ok(ExitCode::from(EXIT_INVALID))
    }
}

/// What the chain profile makes SyncGuard watch, in words.
fn profile_line(story: &syncguard_config::StoryConfig) -> String {
    match story.chain_profile {
        syncguard_config::ChainProfile::Story => format!(
            "chain profile `story`: CometBFT at {} and story-geth at {} are both checked",
            story.comet_rpc_url, story.evm_rpc_url
        ),
        syncguard_config::ChainProfile::Cometbft => format!(
            "chain profile `cometbft`: only CometBFT at {} is checked (no EVM checks; \
             story.evm_rpc_url is not used)",
            story.comet_rpc_url
        ),
    }
}
