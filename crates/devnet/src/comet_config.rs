//! The part of CometBFT's `<home>/config/config.toml` the simulated node obeys (PURE but for
//! [`read_double_sign_check_height`]): `[consensus] double_sign_check_height`.
//!
//! CometBFT v0.38's rule (`consensus/state.go`, `checkDoubleSigningRisk`, run by the consensus
//! state's `OnStart`: at node start, or after block sync in `SwitchToConsensus`): with
//! `N = double_sign_check_height > 0` and consensus starting at `height` (last committed + 1),
//! `n = min(N, height)`, it reads the stored seen commits of `height - i` for `i` in `1..n`
//! — the last `N - 1` committed heights — and fails with `ErrSignatureFoundInPastBlocks`
//! ("found signature from the same key") if one holds a `BlockIDFlagCommit` signature by its
//! key. A nil precommit (flag 3) or an absent one does not count; a missing commit is skipped.
//! At start that error makes `story` exit; after block sync it panics. `N = 0` (the default)
//! and `N = 1` check nothing.

use std::path::{Path, PathBuf};

/// Errors reading the node's `config.toml`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The key is there with a value CometBFT would refuse.
    #[error("{}:{line}: [consensus] double_sign_check_height: {detail}", path.display())]
    Value {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        detail: String,
    },
}

/// `<home>/config/config.toml`.
pub fn config_path(home: &Path) -> PathBuf {
    home.join("config/config.toml")
}

/// What the devnet writes for a node: only the table and key the simulated node reads.
pub fn render(double_sign_check_height: u64) -> String {
    format!(
        "# Written by syncguard-devnet: the part of CometBFT's config.toml the simulated node reads.\n\
         [consensus]\n\
         # Refuse to start consensus when the key signed in the last N-1 committed blocks (0: off).\n\
         double_sign_check_height = {double_sign_check_height}\n"
    )
}

/// `[consensus] double_sign_check_height` in a config text: 0 when absent. A tolerant reader,
/// not a TOML parser: table headers, `key = value` lines, `#` comments, `_` in integers, a
/// dotted `consensus.double_sign_check_height` at the top level. Err: (line, what is wrong).
pub fn parse_double_sign_check_height(text: &str) -> Result<u64, (usize, String)> {
    const KEY: &str = "double_sign_check_height";
    let mut table = String::new();
    let mut found = 0;
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix('[') {
            // `[[array]]` tables never are `consensus`: their name keeps a bracket.
            let name = header.split(']').next().unwrap_or("");
            table = name.trim().trim_matches('"').to_string();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches('"');
        let ours = (table == "consensus" && key == KEY)
            || (table.is_empty() && key == format!("consensus.{KEY}"));
        if !ours {
            continue;
        }
        let value = value
            .split('#')
            .next()
            .unwrap_or("")
            .trim()
            .replace('_', "");
        found = match value.parse::<i64>() {
            Ok(n) if n < 0 => return Err((idx + 1, format!("{n} can't be negative"))),
            Ok(n) => n.unsigned_abs(),
            Err(_) => return Err((idx + 1, format!("{value:?} is not an integer"))),
        };
    }
    Ok(found)
}

/// `double_sign_check_height` of the node at `home`: 0 (off) without a config file.
pub fn read_double_sign_check_height(home: &Path) -> Result<u64, ConfigError> {
    let path = config_path(home);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(ConfigError::Io { path, source }),
    };
    parse_double_sign_check_height(&text).map_err(|(line, detail)| ConfigError::Value {
        path,
        line,
        detail,
    })
}

/// The committed heights CometBFT reads before starting consensus on top of
/// `last_committed`, newest first: `height - i` for `i` in `1..min(n, height)` with
/// `height = last_committed + 1`.
pub fn check_heights(last_committed: u64, n: u64) -> Vec<u64> {
    let height = last_committed.saturating_add(1);
    (1..n.min(height)).map(|i| height - i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_comet_config_reads_the_consensus_key_only() {
        assert_eq!(parse_double_sign_check_height(""), Ok(0));
        assert_eq!(parse_double_sign_check_height(&render(10)), Ok(10));
        let text = "moniker = \"x\"\ndouble_sign_check_height = 7\n\n[p2p]\n\
                    double_sign_check_height = 8\n[consensus]\n\
                    timeout_commit = \"1s\"\n  double_sign_check_height = 1_0 # ten\n\
                    [mempool]\nsize = 5000\n";
        assert_eq!(parse_double_sign_check_height(text), Ok(10));
        assert_eq!(
            parse_double_sign_check_height("consensus.double_sign_check_height = 3"),
            Ok(3)
        );
        assert_eq!(
            parse_double_sign_check_height("[consensus]\ndouble_sign_check_height = -1\n"),
            Err((2, "-1 can't be negative".into()))
        );
        let (line, why) =
            parse_double_sign_check_height("[consensus]\n\ndouble_sign_check_height = \"x\"")
                .unwrap_err();
        assert_eq!(line, 3);
        assert!(why.contains("not an integer"), "{why}");
    }

    #[test]
    fn devnet_comet_config_missing_file_is_off_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_double_sign_check_height(dir.path()).unwrap(), 0);
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(
            config_path(dir.path()),
            "[consensus]\ndouble_sign_check_height = x\n",
        )
        .unwrap();
        let e = read_double_sign_check_height(dir.path()).unwrap_err();
        assert!(e.to_string().contains("config.toml:2"), "{e}");
    }

    #[test]
    fn devnet_comet_config_check_heights_follow_cometbft_loop_bounds() {
        // N = 0 and N = 1 check nothing (the loop runs for i in 1..n).
        assert!(check_heights(100, 0).is_empty());
        assert!(check_heights(100, 1).is_empty());
        // Consensus starts at 101: N = 3 reads 100 and 99.
        assert_eq!(check_heights(100, 3), [100, 99]);
        assert_eq!(check_heights(100, 10).len(), 9);
        // Near genesis: n = min(N, height), so never height 0.
        assert_eq!(check_heights(2, 10), [2, 1]);
        assert!(check_heights(0, 10).is_empty());
    }
}
