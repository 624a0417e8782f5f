//! `syncguard-devnet ctl`: start/stop/status of a node the way SyncGuard's actuator uses
//! `systemctl` (`story.start_command`, `stop_command`, `status_command`), plus faults.
//!
//! - `start` spawns the node detached (own process group, `<home>/node.pid`, output to
//!   `<home>/node.log`) and returns at once, like `systemctl start` of a simple unit; a
//!   start while the node runs is a no-op success.
//! - `stop` sends SIGTERM to the group, SIGKILL after a bound, returns once the process is
//!   gone and removes the pid file; stopping a stopped node succeeds.
//! - `status` exits 0 iff the recorded process is alive (a SIGSTOPped node counts as alive,
//!   as systemd sees a hung `story`), 3 otherwise (`systemctl is-active`'s code).
//! - `kill` (SIGKILL, a crash: the pid file stays behind, stale), `pause` / `resume`
//!   (SIGSTOP / SIGCONT, a hang).
//!
//! The pid file holds "PID STARTTIME": the start time (from `/proc`) guards against a
//! recycled pid being mistaken for the node.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::fsutil::write_atomic;
use crate::procs;

/// Exit code of `ctl status` for a stopped node (as `systemctl is-active`).
pub const EXIT_INACTIVE: u8 = 3;

/// Errors of ctl commands.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// File or process operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What.
        action: &'static str,
        /// Which path.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The node is not running (for pause/resume).
    #[error("the node of {} is not running", .0.display())]
    NotRunning(PathBuf),
    /// The process survived SIGKILL (should not happen).
    #[error("pid {0} is still alive after SIGKILL")]
    Unkillable(i32),
}

/// The pid file of a home.
pub fn pid_file(home: &Path) -> PathBuf {
    home.join("node.pid")
}

/// The log file of a home.
pub fn log_file(home: &Path) -> PathBuf {
    home.join("node.log")
}

/// The pid recorded for `home` if that process is alive (and is the one recorded).
pub fn running_pid(home: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(pid_file(home)).ok()?;
    let mut parts = text.split_whitespace();
    let pid: i32 = parts.next()?.parse().ok()?;
    let start: Option<u64> = parts.next().and_then(|s| s.parse().ok());
    let (state, actual_start) = procs::stat(pid)?;
    if state == 'Z' || state == 'X' {
        return None;
    }
    if start.is_some_and(|s| s != actual_start) {
        return None;
    }
    Some(pid)
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> CtlError + 'a {
    move |source| CtlError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// How the node is launched: this program (plus any leading arguments that select the
/// devnet, e.g. `["devnet"]` when embedded in another binary), then `node`.
#[derive(Debug, Clone)]
pub struct SelfExe {
    /// Program.
    pub program: PathBuf,
    /// Arguments before `node`.
    pub prefix: Vec<OsString>,
}

/// Records the calling process as `home`'s node: the node does this itself first thing, so
/// a `ctl start` killed between its spawn and its own write (its caller SIGKILLed, as a soak
/// does to a daemon) never leaves a node that `stop`, `kill` and `status` cannot see — as a
/// service manager never loses track of its service.
pub fn claim_pid_file(home: &Path) -> Result<(), CtlError> {
    let pid = std::process::id() as i32;
    let start = procs::stat(pid).map(|(_, s)| s).unwrap_or(0);
    let pf = pid_file(home);
    write_atomic(&pf, format!("{pid} {start}\n").as_bytes()).map_err(io_err("write", &pf))
}

/// `ctl start`: spawn the node detached unless it already runs. Returns the pid.
pub fn start(exe: &SelfExe, home: &Path, node_args: &[OsString]) -> Result<i32, CtlError> {
    if let Some(pid) = running_pid(home) {
        return Ok(pid);
    }
    let log_path = log_file(home);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_err("open", &log_path))?;
    let log2 = log.try_clone().map_err(io_err("open", &log_path))?;
    let child = Command::new(&exe.program)
        .args(&exe.prefix)
        .arg("node")
        .arg("--home")
        .arg(home)
        .args(node_args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        // Its own group: stop/kill reach the node and anything it spawns, and a signal to
        // the caller's group (e.g. Ctrl-C on a test) does not.
        .process_group(0)
        .spawn()
        .map_err(io_err("spawn", &exe.program))?;
    let pid = child.id() as i32;
    let start = procs::stat(pid).map(|(_, s)| s).unwrap_or(0);
    let pf = pid_file(home);
    write_atomic(&pf, format!("{pid} {start}\n").as_bytes()).map_err(io_err("write", &pf))?;
    // Not waited for: the node outlives this command, as a service outlives systemctl.
    drop(child);
    Ok(pid)
}

fn wait_gone(pid: i32, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if !procs::alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `ctl stop`: SIGTERM, then SIGKILL after `timeout`; returns once the process is gone.
/// Returns whether SIGKILL was needed.
pub fn stop(home: &Path, timeout: Duration) -> Result<bool, CtlError> {
    let pf = pid_file(home);
    let Some(pid) = running_pid(home) else {
        remove_pid_file(&pf)?;
        return Ok(false);
    };
    // A paused node cannot act on SIGTERM: continue it first (systemd does the same).
    let _ = procs::signal_group(pid, Signal::TERM);
    let _ = procs::signal_group(pid, Signal::CONT);
    let mut killed = false;
    if !wait_gone(pid, timeout) {
        killed = true;
        let _ = procs::signal_group(pid, Signal::KILL);
        if !wait_gone(pid, Duration::from_secs(10)) {
            return Err(CtlError::Unkillable(pid));
        }
    }
    remove_pid_file(&pf)?;
    Ok(killed)
}

fn remove_pid_file(pf: &Path) -> Result<(), CtlError> {
    match std::fs::remove_file(pf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", pf)(e)),
    }
}

/// `ctl kill`: SIGKILL (a crash). The pid file stays, stale, as after a real crash.
pub fn kill(home: &Path) -> Result<(), CtlError> {
    let Some(pid) = running_pid(home) else {
        return Ok(());
    };
    let _ = procs::signal_group(pid, Signal::KILL);
    if wait_gone(pid, Duration::from_secs(10)) {
        Ok(())
    } else {
        Err(CtlError::Unkillable(pid))
    }
}

/// `ctl pause` (SIGSTOP) / `ctl resume` (SIGCONT).
pub fn pause(home: &Path, paused: bool) -> Result<(), CtlError> {
    let pid = running_pid(home).ok_or_else(|| CtlError::NotRunning(home.to_path_buf()))?;
    let sig = if paused { Signal::STOP } else { Signal::CONT };
    procs::signal_group(pid, sig).map_err(io_err("signal", &pid_file(home)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_ctl_stale_or_foreign_pid_file_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running_pid(dir.path()), None);
        let me = std::process::id() as i32;
        let (_, start) = procs::stat(me).unwrap();
        std::fs::write(pid_file(dir.path()), format!("{me} {start}\n")).unwrap();
        assert_eq!(running_pid(dir.path()), Some(me));
        // Same pid, other start time: a recycled pid, not our node.
        std::fs::write(pid_file(dir.path()), format!("{me} {}\n", start + 1)).unwrap();
        assert_eq!(running_pid(dir.path()), None);
        std::fs::write(pid_file(dir.path()), "garbage").unwrap();
        assert_eq!(running_pid(dir.path()), None);
        // Stopping a stopped node succeeds and cleans the pid file.
        assert!(!stop(dir.path(), Duration::from_millis(10)).unwrap());
        assert!(!pid_file(dir.path()).exists());
    }

    /// The node records itself: a process that claims the home is seen running although no
    /// `ctl start` wrote its pid (the soak's seed 5016: a daemon SIGKILLed during `ctl start`
    /// left a node nobody could stop).
    #[test]
    fn devnet_ctl_node_that_claims_its_home_is_seen_without_ctl_start() {
        let dir = tempfile::tempdir().unwrap();
        claim_pid_file(dir.path()).unwrap();
        assert_eq!(running_pid(dir.path()), Some(std::process::id() as i32));
    }
}
