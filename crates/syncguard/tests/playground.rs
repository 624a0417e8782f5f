//! The playground (`syncguard devnet up`) driven as a newcomer would: through the commands it
//! prints. A switchover with the printed `switchover` line, a host crash with the printed
//! fault line, `status` after each, then Ctrl-C (SIGINT): the ledger's verdict is printed,
//! and no process and no file of the devnet is left behind.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_syncguard");

/// The playground's stdout, line by line, as it comes.
struct Playground {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Playground {
    fn start() -> Playground {
        let mut child = Command::new(BIN)
            .args(["devnet", "up"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn syncguard devnet up");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Playground {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Lines until one contains `marker` (panics after `bound`).
    fn until(&mut self, marker: &str, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    eprintln!("| {l}");
                    let hit = l.contains(marker);
                    self.seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(e) => panic!("no `{marker}` ({e:?}); so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The printed command line containing `what`.
    fn command(&self, what: &str) -> String {
        self.seen
            .iter()
            .find(|l| l.contains(what))
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| panic!("no printed command with `{what}`"))
    }
}

impl Drop for Playground {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a printed command line in a shell: (exit code, stdout + stderr).
fn sh(line: &str) -> (i32, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(line)
        .output()
        .expect("run sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Polls the printed `status` command (as JSON) until `node` is the one active node.
fn wait_active(status: &str, node: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut last = String::new();
    while Instant::now() < deadline {
        let (_, out) = sh(&format!("{status} --json"));
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&out) {
            let actives: Vec<&str> = v["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["held_role"] == "active")
                .filter_map(|n| n["id"].as_str())
                .collect();
            if actives == [node] {
                return;
            }
        }
        last = out;
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{node} not the one active node; last status:\n{last}");
}

/// Every process whose command line names `dir`.
fn processes_naming(dir: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(dir) {
                found.push(cmd);
            }
        }
    }
    found
}

#[test]
fn devnet_playground_switchover_and_crash_through_its_printed_commands_then_ctrl_c_cleans_up() {
    let mut p = Playground::start();
    p.until("Ctrl-C stops everything.", Duration::from_secs(90));
    let status = p.command(" status --config ");
    let files = p.command("files:");
    let dir = files
        .split_whitespace()
        .nth(1)
        .expect("the files line names the directory")
        .to_string();
    assert!(
        p.seen.iter().any(|l| l.contains("node-a is active")),
        "{:?}",
        p.seen
    );

    let (code, out) = sh(&status);
    assert_eq!(code, 0, "{out}");

    // A switchover, exactly as printed.
    let (code, out) = sh(&p.command(" switchover --config "));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("done in"), "{out}");
    wait_active(&status, "node-b");

    // node-b's host dies: node-a takes over.
    let (code, out) = sh(&p.command("/crash/node-b"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("node-b's host crashed"), "{out}");
    wait_active(&status, "node-a");

    // Ctrl-C: the verdict, then nothing left.
    let pid = rustix::process::Pid::from_raw(p.child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    p.until("stopped every process", Duration::from_secs(30));
    let exit = p.child.wait().expect("wait");
    assert!(exit.success(), "{exit}");
    assert!(
        p.seen
            .iter()
            .any(|l| l.contains("ledger: 0 double signs, 0 S1 violations")),
        "{:?}",
        p.seen
    );
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
    let left = processes_naming(&dir);
    assert!(left.is_empty(), "processes left: {left:?}");
}
