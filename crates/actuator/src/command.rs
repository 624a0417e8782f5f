//! Running the operator's `start_command`, `stop_command`, `kill_command` and `status_command`.
//!
//! Each runs as `sh -c <command>` with stdin and stdout closed and stderr captured, under a
//! timeout. A command that outlives its timeout is killed (SIGKILL to the shell; processes it
//! started in the background are not ours to kill). The result keeps the exit status and the
//! tail of stderr, which is what an operator needs to see in an error. [`run`] returns within
//! its timeout plus [`MAX_OVERRUN`], whatever the command does.

use std::fmt;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::AsyncReadExt;

/// Bytes of stderr kept (the most recent ones: errors tend to come last).
const STDERR_KEEP: usize = 4096;
/// Characters of stderr quoted in a message: one readable log line.
const STDERR_EXCERPT: usize = 300;
/// How long to wait for stderr to reach EOF after the shell exited (a command that leaves a
/// background process holding stderr open, `story run &`, must not hold us up), and for the
/// shell to be reaped after a timeout's SIGKILL. So [`run`] ends by its timeout plus this.
pub const MAX_OVERRUN: Duration = Duration::from_millis(50);

/// Which configured command ran (the config key, so an operator knows what to fix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// `story.start_command`
    Start,
    /// `story.stop_command`
    Stop,
    /// `story.kill_command`
    Kill,
    /// `story.status_command`
    Status,
}

impl CommandKind {
    /// The config key that holds the command.
    pub fn config_key(self) -> &'static str {
        match self {
            CommandKind::Start => "story.start_command",
            CommandKind::Stop => "story.stop_command",
            CommandKind::Kill => "story.kill_command",
            CommandKind::Status => "story.status_command",
        }
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.config_key())
    }
}

/// How a finished command ended.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// The exit status of `sh`.
    pub status: ExitStatus,
    /// The tail of stderr on one line (empty when it wrote nothing).
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub duration: Duration,
}

impl CommandOutput {
    /// `sh`'s exit code; `None` when it was killed by a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// `exit status 0`, `exit status 3`, `killed by signal 9`.
    pub fn describe_status(&self) -> String {
        describe(self.status)
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        "; no stderr output".to_string()
    } else {
        format!("; stderr: \"{stderr}\"")
    }
}

/// A command that did not run to a successful end.
#[derive(Debug, Error)]
pub enum CommandError {
    /// The configured command is empty.
    #[error("{kind} is empty: nothing to run")]
    Empty {
        /// Which command.
        kind: CommandKind,
    },
    /// `sh` itself could not be started.
    #[error("{kind} `{command}` could not be started (sh -c): {source}")]
    Spawn {
        /// Which command.
        kind: CommandKind,
        /// The command text.
        command: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Still running at the timeout; it was killed.
    #[error("{kind} `{command}` did not finish within {timeout:?} and was killed{}", stderr_suffix(.stderr))]
    TimedOut {
        /// Which command.
        kind: CommandKind,
        /// The command text.
        command: String,
        /// The limit.
        timeout: Duration,
        /// Tail of stderr so far.
        stderr: String,
    },
    /// Finished with a non-zero status.
    #[error("{kind} `{command}` failed with {status}{}", stderr_suffix(.stderr))]
    Failed {
        /// Which command.
        kind: CommandKind,
        /// The command text.
        command: String,
        /// `exit status N` or `killed by signal N`.
        status: String,
        /// `sh`'s exit code, if it exited.
        code: Option<i32>,
        /// Tail of stderr.
        stderr: String,
    },
}

/// Runs `sh -c command` and returns how it ended, whatever its exit status.
pub async fn run(
    kind: CommandKind,
    command: &str,
    timeout: Duration,
) -> Result<CommandOutput, CommandError> {
    if command.trim().is_empty() {
        return Err(CommandError::Empty { kind });
    }
    let started = Instant::now();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Backstop: if this future is dropped, the shell does not linger.
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CommandError::Spawn {
            kind,
            command: command.to_string(),
            source,
        })?;

    let captured = Arc::new(Mutex::new(Vec::new()));
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    if let Some(mut pipe) = child.stderr.take() {
        let captured = captured.clone();
        // Detached: it drains stderr until EOF so that a background process still writing to
        // it never blocks on a full pipe (nor dies of SIGPIPE if we closed our end).
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            loop {
                match pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Ok(mut kept) = captured.lock() {
                            kept.extend_from_slice(&buf[..n]);
                            if kept.len() > STDERR_KEEP {
                                let cut = kept.len() - STDERR_KEEP;
                                kept.drain(..cut);
                            }
                        }
                    }
                }
            }
            let _ = eof_tx.send(());
        });
    } else {
        let _ = eof_tx.send(());
    }

    let waited = tokio::time::timeout(timeout, child.wait()).await;
    let status = match waited {
        Ok(Ok(status)) => status,
        Ok(Err(source)) => {
            return Err(CommandError::Spawn {
                kind,
                command: command.to_string(),
                source,
            })
        }
        Err(_elapsed) => {
            // Best effort: the shell may have exited between the timeout and the kill. A shell
            // not reaped within the grace is left to tokio's orphan reaper (kill_on_drop).
            let _ = child.start_kill();
            let _ = tokio::time::timeout(MAX_OVERRUN, child.wait()).await;
            return Err(CommandError::TimedOut {
                kind,
                command: command.to_string(),
                timeout,
                stderr: excerpt(&captured),
            });
        }
    };
    let _ = tokio::time::timeout(MAX_OVERRUN, eof_rx).await;
    Ok(CommandOutput {
        status,
        stderr: excerpt(&captured),
        duration: started.elapsed(),
    })
}

/// Runs the command and requires exit status 0.
pub async fn run_checked(
    kind: CommandKind,
    command: &str,
    timeout: Duration,
) -> Result<CommandOutput, CommandError> {
    let out = run(kind, command, timeout).await?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(CommandError::Failed {
            kind,
            command: command.to_string(),
            status: out.describe_status(),
            code: out.code(),
            stderr: out.stderr,
        })
    }
}

/// The last [`STDERR_EXCERPT`] characters of what was captured, on one line.
fn excerpt(captured: &Mutex<Vec<u8>>) -> String {
    let bytes = match captured.lock() {
        Ok(b) => b.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let text = String::from_utf8_lossy(&bytes);
    let one_line: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let count = one_line.chars().count();
    if count > STDERR_EXCERPT {
        let tail: String = one_line.chars().skip(count - STDERR_EXCERPT).collect();
        format!("…{tail}")
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn actuator_command_reports_status_and_stderr() {
        let out = run(
            CommandKind::Status,
            "echo first >&2; echo 'second line' >&2; exit 3",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(out.code(), Some(3));
        assert_eq!(out.stderr, "first second line");

        let e = run_checked(
            CommandKind::Start,
            "echo 'Job for story.service failed' >&2; exit 1",
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("story.start_command"), "{text}");
        assert!(text.contains("exit status 1"), "{text}");
        assert!(text.contains("Job for story.service failed"), "{text}");
    }

    #[tokio::test]
    async fn actuator_command_timeout_kills() {
        let t = Instant::now();
        let e = run(
            CommandKind::Stop,
            "echo waiting >&2; exec sleep 30",
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(matches!(e, CommandError::TimedOut { .. }), "{e}");
        assert!(e.to_string().contains("waiting"), "{e}");
    }

    #[tokio::test]
    async fn actuator_command_background_child_does_not_block() {
        // A start command that leaves a daemon behind with stderr still open.
        let t = Instant::now();
        let out = run_checked(
            CommandKind::Start,
            "sleep 5 & echo started >&2",
            Duration::from_secs(4),
        )
        .await
        .unwrap();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(out.stderr, "started");
    }

    #[tokio::test]
    async fn actuator_command_empty_and_long_stderr() {
        assert!(matches!(
            run(CommandKind::Status, "  ", Duration::from_secs(1)).await,
            Err(CommandError::Empty { .. })
        ));
        let out = run(
            CommandKind::Status,
            "i=0; while [ $i -lt 200 ]; do echo line$i >&2; i=$((i+1)); done; echo LAST >&2",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert!(out.stderr.starts_with('…'));
        assert!(out.stderr.ends_with("LAST"));
        assert!(out.stderr.chars().count() <= STDERR_EXCERPT + 1);
    }
}
