//! A real anvil process on a free loopback port, killed with its process group on drop.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Anvil {
    child: Child,
    url: String,
}

impl Anvil {
    /// Starts anvil mining a block every `block_time_secs`; `None` (the test skips, with why)
    /// when anvil is not installed — a failure instead under CI ([`crate::tools::available`]).
    pub fn start(block_time_secs: u64) -> Option<Anvil> {
        let path = anvil_path();
        let why = format!(
            "anvil not found at {}: run scripts/install-test-deps.sh (or set SYNCGUARD_ANVIL)",
            path.display()
        );
        if !crate::tools::available(path.exists(), &why) {
            return None;
        }
        let mut child = Command::new(native_binary(&path))
            .args(["--host", "127.0.0.1", "--port", "0", "--block-time"])
            .arg(block_time_secs.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start anvil at {}: {e}", path.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Drains stdout for anvil's whole life: a full pipe would block it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.trim().strip_prefix("Listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let mut anvil = Anvil {
            child,
            url: String::new(),
        };
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("anvil did not print its listening address within 30 s");
        anvil.url = format!("http://{addr}");
        Some(anvil)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Kills anvil now (an EVM node that died).
    pub fn kill(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        self.kill();
    }
}

fn anvil_path() -> PathBuf {
    match std::env::var_os("SYNCGUARD_ANVIL") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../.devtools/node_modules/.bin/anvil"),
    }
}

/// `.bin/anvil` is npm's node shim, which forks the native binary of a platform package.
/// Run that binary directly when it is there, so killing our child closes the port.
fn native_binary(path: &Path) -> PathBuf {
    let Ok(real) = std::fs::canonicalize(path) else {
        return path.to_path_buf();
    };
    if real.file_name().is_some_and(|n| n == "bin.mjs") {
        if let Some(scope) = real.parent().and_then(|p| p.parent()) {
            if let Ok(entries) = std::fs::read_dir(scope) {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let candidate = entry.path().join("bin/anvil");
                    if name.starts_with("anvil-") && candidate.is_file() {
                        return candidate;
                    }
                }
            }
        }
    }
    path.to_path_buf()
}
