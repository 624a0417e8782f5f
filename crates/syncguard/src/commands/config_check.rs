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
    warnings.extend(
        syncguard::daemon::timing_warnings(&loaded.config)
            .into_iter()
            .map(|w| syncguard_config::Problem::new("failover", w)),
    );
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
