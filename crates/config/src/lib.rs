//! SyncGuard's configuration (`config-story.yaml`).
//!
//! - `schema.rs` — every key, its default and unit (the YAML of the original SyncGuard README
//!   parses unchanged; newer keys all have safe defaults).
//! - `parse.rs` — YAML → typed config, listing every type error and unknown key with its path.
//! - `validate.rs` — rules on values (ranges, agreement between keys, the self-fence bound).
//! - `kill_command.rs` — the default `story.kill_command`, derived from `story.stop_command`.
//! - `problem.rs` — the `Problem` (key path + reason) and `ConfigError` types.
//!
//! Everything here is pure: checks that touch files or the network live in the CLI
//! (`syncguard config check` without `--offline`).

mod kill_command;
mod parse;
mod problem;
mod schema;
mod validate;

use std::path::Path;

pub use kill_command::derive_kill_command;
pub use problem::{ConfigError, Problem};
pub use schema::*;
pub use validate::check_host_port;

/// A usable configuration and the warnings worth printing about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Problem>,
}

/// Parses and validates YAML text. `source_name` names the file in errors.
pub fn from_yaml_str(text: &str, source_name: &str) -> Result<Loaded, ConfigError> {
    let parsed = parse::parse(text);
    let mut problems = parsed.problems;
    let mut warnings = Vec::new();
    if let Some(config) = parsed.config {
        let findings = validate::validate(&config);
        // A value already reported as the wrong type would only be reported again.
        let fresh = |p: &Problem| {
            !parsed
                .bad_paths
                .iter()
                .any(|bad| p.path == *bad || p.path.starts_with(&format!("{bad}.")))
        };
        problems.extend(findings.errors.into_iter().filter(|p| fresh(p)));
        warnings.extend(findings.warnings.into_iter().filter(|p| fresh(p)));
        if problems.is_empty() {
            return Ok(Loaded { config, warnings });
        }
    }
    Err(ConfigError::Invalid {
        source_name: source_name.to_string(),
        problems,
    })
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    from_yaml_str(&text, &path.display().to_string())
}
