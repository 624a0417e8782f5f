//! `syncguard devnet ctl`: start/stop/status of a node the way SyncGuard's actuator uses
//! `systemctl` (`story.start_command`, `stop_command`, `status_command`), plus faults.
//!
//! - `start` spawns the node detached (own process group, output to `<home>/node.log`) and
//!   returns once the node has recorded itself in `<home>/node.pid`, like `systemctl start`
//!   of a simple unit; a start while the node runs is a no-op success, also when two starts
//!   race (the soak's recovery and a daemon's actuator did, seed 5027).
//! - `stop` sends SIGTERM to the group, SIGKILL after a bound, returns once the process is
//!   gone and removes the pid file; stopping a stopped node succeeds.
//! - `status` exits 0 iff the recorded process is alive (a SIGSTOPped node counts as alive,
//!   as systemd sees a hung `story`), 3 otherwise (`systemctl is-active`'s code).
//! - `kill` (SIGKILL, a crash: the pid file stays behind, stale), `pause` / `resume`
//!   (SIGSTOP / SIGCONT, a hang).
//!
//! The pid file holds "PID STARTTIME": the start time (from `/proc`) guards against a
//! recycled pid being mistaken for the node. Only the node that holds `<home>/node.lock`
//! (an exclusive `flock`, released by the kernel when the process dies) writes it: a second
//! node on the same home exits at once without touching it, so a duplicate start can never
//! make the pid file name a dead process while the running node goes unseen.

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
    /// Another node holds the home's lock: this one must not run.
    #[error("another node already runs on {} (pid {pid}): not starting a second one", home.display())]
    AlreadyRunning {
        /// The home.
        home: PathBuf,
        /// Its pid as its pid file says (0 if unreadable).
        pid: i32,
    },
    /// The node started by `ctl start` exited before recording itself.
    #[error("the node of {} exited at once ({status}): see {}", home.display(), log_file(home).display())]
    ExitedAtOnce {
        /// The home.
        home: PathBuf,
        /// How it exited.
        status: std::process::ExitStatus,
    },
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

/// The lock file of a home: held by its one running node.
pub fn lock_file(home: &Path) -> PathBuf {
    home.join("node.lock")
}

/// `home`'s lock, held by its node for as long as it lives (the kernel releases it when the
/// process dies, however it dies).
#[derive(Debug)]
pub struct HomeClaim {
    _lock: std::fs::File,
}

/// Makes the calling process `home`'s one node: takes the home's lock, then records itself
/// in the pid file. The node does this itself first thing, so a `ctl start` killed between
/// its spawn and its return (its caller SIGKILLed, as a soak does to a daemon; seed 5016)
/// never leaves a node that `stop`, `kill` and `status` cannot see; and a second node on the
/// same home gets [`CtlError::AlreadyRunning`] before it writes anything (seed 5027: two
/// racing starts, the loser overwrote the pid file and died, the winner ran unseen).
pub fn claim_home(home: &Path) -> Result<HomeClaim, CtlError> {
    let lf = lock_file(home);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lf)
        .map_err(io_err("open", &lf))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(CtlError::AlreadyRunning {
                home: home.to_path_buf(),
                pid: running_pid(home).unwrap_or(0),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err("lock", &lf)(e)),
    }
    let pid = std::process::id() as i32;
    let start = procs::stat(pid).map(|(_, s)| s).unwrap_or(0);
    let pf = pid_file(home);
    write_atomic(&pf, format!("{pid} {start}\n").as_bytes()).map_err(io_err("write", &pf))?;
    Ok(HomeClaim { _lock: lock })
}

/// How long `ctl start` waits for the node it spawned to record itself.
const CLAIM_WAIT: Duration = Duration::from_secs(5);

/// `ctl start`: spawn the node detached unless it already runs, and wait until it has
/// recorded itself ([`claim_home`]). Returns the running node's pid: the new one, or the one
/// that won a race with another start.
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
    let mut child = Command::new(&exe.program)
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
    // The node writes its pid file itself, under its lock: this only waits for that (or for
    // a duplicate's exit). The node is never reaped here: it outlives this command, as a
    // service outlives systemctl.
    let deadline = Instant::now() + CLAIM_WAIT;
    loop {
        if running_pid(home) == Some(pid) {
            return Ok(pid);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return match running_pid(home) {
                Some(other) => Ok(other),
                None => Err(CtlError::ExitedAtOnce {
                    home: home.to_path_buf(),
                    status,
                }),
            };
        }
        if Instant::now() >= deadline {
            // Slow to start (a loaded host): it records itself when it gets there.
            return Ok(pid);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
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
        let _claim = claim_home(dir.path()).unwrap();
        assert_eq!(running_pid(dir.path()), Some(std::process::id() as i32));
    }

    /// A second node on a claimed home is refused before it writes anything: the pid file
    /// keeps naming the running one (seed 5027: the loser of two racing starts overwrote it
    /// and died, and the winner ran on unseen, unstoppable). The lock goes with its holder.
    #[test]
    fn devnet_ctl_second_claim_of_a_home_is_refused_and_leaves_the_pid_file() {
        let dir = tempfile::tempdir().unwrap();
        let first = claim_home(dir.path()).unwrap();
        let me = std::process::id() as i32;
        let (_, start) = procs::stat(me).unwrap();
        // As if the first claimant were another process: the second must not touch this.
        std::fs::write(pid_file(dir.path()), format!("{me} {start} first\n")).unwrap();
        match claim_home(dir.path()) {
            Err(CtlError::AlreadyRunning { pid, .. }) => assert_eq!(pid, me),
            other => panic!("second claim: {other:?}"),
        }
        let text = std::fs::read_to_string(pid_file(dir.path())).unwrap();
        assert!(text.ends_with("first\n"), "pid file rewritten: {text}");
        drop(first);
        claim_home(dir.path()).expect("the lock is free once its holder is gone");
    }
}
