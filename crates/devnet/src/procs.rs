//! Process helpers shared by `ctl`, the servers and the harness (Linux: `/proc`).

use std::time::Duration;

use rustix::process::{Pid, Signal};

/// `/proc/<pid>/stat`: (state char, start time in clock ticks), or None when the process
/// does not exist.
pub fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); start time is field 22.
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// Whether `pid` is a live process (a zombie is not: it has exited, its parent just has not
/// reaped it — which happens to detached nodes whose adoptive parent never reaps).
pub fn alive(pid: i32) -> bool {
    match stat(pid) {
        Some((state, _)) => state != 'Z' && state != 'X',
        None => false,
    }
}

/// Send `sig` to the process group led by `pid` (falls back to the process alone).
pub fn signal_group(pid: i32, sig: Signal) -> std::io::Result<()> {
    let Some(p) = Pid::from_raw(pid) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "pid must be positive",
        ));
    };
    match rustix::process::kill_process_group(p, sig) {
        Ok(()) => Ok(()),
        Err(_) => rustix::process::kill_process(p, sig).map_err(std::io::Error::from),
    }
}

/// Resolves when `pid` is gone (checked every 250 ms); never when `pid` is None.
pub async fn watched_pid_gone(pid: Option<i32>) {
    let Some(pid) = pid else {
        return std::future::pending().await;
    };
    loop {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Resolves on SIGTERM or SIGINT, or when the watched pid is gone. Returns what happened.
pub async fn shutdown_signal(watch_pid: Option<i32>) -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = watched_pid_gone(watch_pid) => "watched process gone",
        },
        // Without signal handlers the default action (exit) applies anyway.
        _ => {
            watched_pid_gone(watch_pid).await;
            "watched process gone"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_proc_stat_reads_self() {
        let me = std::process::id() as i32;
        let (state, start) = stat(me).unwrap();
        assert_ne!(state, 'Z');
        assert!(start > 0);
        assert!(alive(me));
        assert!(!alive(i32::MAX));
    }
}
