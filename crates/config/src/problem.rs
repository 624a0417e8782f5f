//! Problems found in a configuration, each naming its key path.

use std::fmt;

/// One thing wrong (or worth a warning) in a config file, at a key path such as
/// `failover.retry_attempts` or `communication.peers[1].address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path; empty for the document as a whole.
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A config that cannot be used. Lists every problem found, not just the first.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{source_name} is invalid ({} problem{}):\n{}", .problems.len(), if .problems.len() == 1 { "" } else { "s" }, list(.problems))]
    Invalid {
        source_name: String,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems, when the file could be read at all.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}
