//! Checks of the files a config names: what `syncguard config check` (without `--offline`)
//! reports and what the daemon logs at start. Reads files only; writes nothing.
//!
//! Each finding says what would stop a failover and how to fix it, because the operator
//! usually reads it while setting a host up — long before the night it matters.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use syncguard_config::{Config, Problem};
use syncguard_validator::{verify_state, SignState, ValidatorKey};

/// Errors would stop this node from ever holding the validator role safely; warnings are
/// worth fixing.
#[derive(Debug, Default)]
pub struct Findings {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl Findings {
    fn error(&mut self, path: &str, msg: impl Into<String>) {
        self.errors.push(Problem::new(path, msg));
    }
    fn warn(&mut self, path: &str, msg: impl Into<String>) {
        self.warnings.push(Problem::new(path, msg));
    }
}

/// Looks at every file the config names.
pub fn check_files(config: &Config) -> Findings {
    let mut f = Findings::default();
    let story = &config.story;

    state_file(&mut f, &story.state_path());
    backup_file(&mut f, &story.validator_state_backup);

    let validator = key_at_rest(
        &mut f,
        "story.validator_key_store",
        &story.validator_key_store,
    );
    let placeholder = key_at_rest(
        &mut f,
        "story.placeholder_key_path",
        &story.placeholder_key_path,
    );
    if let (Some(v), Some(p)) = (&validator, &placeholder) {
        if v == p {
            f.error(
                "story.placeholder_key_path",
                format!("has the validator's own address {v}: a placeholder must be a different key (generate one with `syncguard init`)"),
            );
        }
    }
    live_key(
        &mut f,
        &story.key_path(),
        validator.as_deref(),
        placeholder.as_deref(),
    );
    node_config(&mut f, config, &story.node_config());

    for (at, tls) in [
        ("communication.tls", config.communication.tls.as_ref()),
        (
            "coordination.etcd.tls",
            config.coordination.etcd.tls.as_ref(),
        ),
    ] {
        if let Some(tls) = tls {
            for (name, path) in [
                ("ca_cert", &tls.ca_cert),
                ("cert", &tls.cert),
                ("key", &tls.key),
            ] {
                if !path.is_file() {
                    f.error(
                        &format!("{at}.{name}"),
                        format!("{} does not exist or is not a file", path.display()),
                    );
                }
            }
        }
    }
    f
}

fn state_file(f: &mut Findings, path: &Path) {
    let at = "story.validator_state_path";
    if !path.exists() {
        f.error(
            at,
            format!("{} does not exist: `story run` fails without a state file, so every node (passive too) needs one", path.display()),
        );
        return;
    }
    match SignState::load(path) {
        Ok(state) => {
            if let Err(e) = verify_state(&state) {
                f.error(at, format!("{}: {e}", path.display()));
            }
        }
        Err(e) => f.error(at, e.to_string()),
    }
}

fn backup_file(f: &mut Findings, path: &Path) {
    let at = "story.validator_state_backup";
    match path.parent() {
        Some(dir) if !dir.is_dir() => f.error(
            at,
            format!(
                "directory {} does not exist: create it (mkdir -p) so the state can be backed up",
                dir.display()
            ),
        ),
        _ => {}
    }
    if path.exists() {
        if let Err(e) = SignState::load(path) {
            f.error(at, e.to_string());
        }
    }
}

/// A key that must be present on this host, readable by its owner only. Returns its address.
fn key_at_rest(f: &mut Findings, at: &str, path: &Path) -> Option<String> {
    if !path.exists() {
        f.error(
            at,
            format!(
                "{} does not exist: provision it on this host (it never travels over the network)",
                path.display()
            ),
        );
        return None;
    }
    loose_permissions(f, at, path);
    match ValidatorKey::load(path) {
        Ok(key) => Some(key.address_hex()),
        Err(e) => {
            f.error(at, e.to_string());
            None
        }
    }
}

fn loose_permissions(f: &mut Findings, at: &str, path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            f.error(
                at,
                format!(
                    "{} is readable by group or others (mode {mode:o}); run `chmod 600 {}`",
                    path.display(),
                    path.display()
                ),
            );
        }
    }
}

/// The key `story` reads: the validator's (on the active) or the placeholder (on a passive).
fn live_key(f: &mut Findings, path: &Path, validator: Option<&str>, placeholder: Option<&str>) {
    let at = "story.validator_key_path";
    let encrypted = path.with_extension("enc");
    if encrypted.exists() {
        f.error(
            at,
            format!("{} exists: story would prompt for a password, so SyncGuard cannot start it unattended; use the plain priv_validator_key.json form", encrypted.display()),
        );
    }
    if !path.exists() {
        f.warn(
            at,
            format!(
                "{} does not exist yet: SyncGuard installs the validator or placeholder key there",
                path.display()
            ),
        );
        return;
    }
    match ValidatorKey::load(path) {
        Ok(key) => {
            let address = key.address_hex();
            if Some(address.as_str()) != validator && Some(address.as_str()) != placeholder {
                f.warn(
                    at,
                    format!("holds key {address}, which is neither the validator key nor the placeholder"),
                );
            }
        }
        Err(e) => f.error(at, e.to_string()),
    }
}

/// CometBFT's `double_sign_check_height` from the node's `config.toml` (`[consensus]`):
/// 0 when the key is absent. `Err` names the file when it cannot be read.
pub fn double_sign_check_height(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "double_sign_check_height").then(|| {
            value
                .split('#')
                .next()
                .unwrap_or("")
                .trim()
                .parse::<i64>()
                .ok()
        })
    });
    match value {
        None => Ok(0),
        Some(Some(n)) => Ok(u64::try_from(n).unwrap_or(0)),
        Some(None) => Err(format!(
            "double_sign_check_height in {} is not a whole number",
            path.display()
        )),
    }
}

/// CometBFT refuses to start when the key signed in its last `double_sign_check_height`
/// commits: a last line of defence (against a start SyncGuard did not make) worth having on
/// every validator node. SyncGuard waits for that many blocks without the validator's
/// signature before it starts a node, so the guard never fires on its own starts.
fn node_config(f: &mut Findings, config: &Config, path: &Path) {
    let at = "story.node_config_path";
    match double_sign_check_height(path) {
        Err(why) => f.warn(
            at,
            format!("{why}; could not check double_sign_check_height"),
        ),
        Ok(0) => f.warn(
            at,
            format!(
                "double_sign_check_height is not set above 0 in {}; set it (e.g. 10) so \
                 CometBFT itself refuses to start a key that signed in its last blocks. \
                 SyncGuard then waits for that many blocks without the validator's signature \
                 before it starts a node, so each planned switchover misses that many more \
                 blocks (`syncguard config check` says how long)",
                path.display()
            ),
        ),
        Ok(n) => {
            // The post-handover wait grows with N: explicit handover_timeout and
            // priority_margin were checked without it (validation cannot read config.toml).
            let without = syncguard_timing::derive(&config.timing_inputs(0)).err();
            if let Err(errors) = syncguard_timing::derive(&config.timing_inputs(n)) {
                let known = without.unwrap_or_default();
                for e in errors.into_iter().filter(|e| !known.contains(e)) {
                    f.error(
                        e.key(),
                        format!(
                            "{} (with double_sign_check_height = {n} in {})",
                            e.problem(),
                            path.display()
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Config {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/config-story.yaml"
        ));
        let text = text.unwrap_or_else(|e| panic!("seed config: {e}"));
        syncguard_config::from_yaml_str(&text, "seed")
            .unwrap_or_else(|e| panic!("seed config: {e}"))
            .config
    }

    fn errors_at(f: &Findings, key: &str) -> Vec<String> {
        f.errors
            .iter()
            .filter(|p| p.path == key)
            .map(|p| p.to_string())
            .collect()
    }

    /// An explicit priority_margin that fits a node without CometBFT's double-sign check is
    /// refused once the node's config.toml turns it on: the post-handover wait grows by N
    /// blocks, so the margin would end while a new holder may still start.
    #[test]
    fn double_sign_check_height_is_checked_against_an_explicit_priority_margin() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("config.toml");
        let mut config = seed();
        let margin = config.timing_with(0).settle;
        config.failover.priority_margin = Some(margin.as_secs_f64() + 0.5);

        std::fs::write(&path, "[consensus]\ndouble_sign_check_height = 0\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut f = Findings::default();
        node_config(&mut f, &config, &path);
        assert!(
            errors_at(&f, "failover.priority_margin").is_empty(),
            "{f:?}"
        );

        std::fs::write(&path, "[consensus]\ndouble_sign_check_height = 10\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut f = Findings::default();
        node_config(&mut f, &config, &path);
        let found = errors_at(&f, "failover.priority_margin");
        assert_eq!(found.len(), 1, "{f:?}");
        assert!(
            found[0].contains("is shorter than a new holder's whole activation")
                && found[0].contains("double_sign_check_height = 10"),
            "{found:?}"
        );
    }
}
