//! The status page `GET /` rendered by headless Chromium against two real daemons on a
//! devnet: the DOM carries the live data (node ids, roles, a height, the health checks, the
//! epoch, the timeline), and a screenshot is written to `target/status-page.png`.
//!
//! Chromium comes from Debian's `chromium` package: `scripts/install-ops-tools.sh`.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{options, start, OrPanic};
use rustix::process::{kill_process_group, Pid, Signal};
use syncguard_devnet::Cluster;

const CHROMIUM: &str = "/usr/bin/chromium";
const SETTLE: Duration = Duration::from_secs(20);

/// The workspace's target directory (where cargo put this test), for the screenshot.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

/// Headless Chromium with nothing of its own running in the background, a fresh profile,
/// and `extra` arguments, on `url`. Killed after `bound`.
fn chromium(profile: &Path, extra: &[String], url: &str, bound: Duration) -> Output {
    if !Path::new(CHROMIUM).is_file() {
        panic!(
            "{CHROMIUM} not found: install it with `scripts/install-ops-tools.sh` (Debian \
             package `chromium`)"
        );
    }
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    // Its own process group, so the watchdog can stop it with its helpers.
    .process_group(0);
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot start {CHROMIUM}: {e} (see scripts/install-ops-tools.sh)")
    });
    let pid = child.id();
    // Chromium has been seen to hang on exit in containers: a watchdog kills its group.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(bound).is_err() {
            let group = i32::try_from(pid).ok().and_then(Pid::from_raw);
            if let Some(group) = group {
                let _ = kill_process_group(group, Signal::KILL);
            }
        }
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {CHROMIUM}: {e}"));
    let _ = done_tx.send(());
    let _ = watchdog.join();
    out
}

/// The text of the first `<dd>` after the `<dt>` labelled `label` in the card of `node`.
fn card_value(dom: &str, node: &str, label: &str) -> Option<String> {
    let card = dom.find(&format!("data-node=\"{node}\""))?;
    let rest = &dom[card..];
    let at = rest.find(&format!("<dt>{label}</dt>"))?;
    let rest = &rest[at..];
    let open = rest.find("<dd")?;
    let rest = &rest[open..];
    let start = rest.find('>')? + 1;
    let end = rest.find("</dd>")?;
    Some(rest[start..end].to_string())
}

async fn wait_ready(c: &Cluster) {
    c.wait_roles(["active", "passive"], SETTLE).await.or_panic();
    c.wait_signing_by(0, SETTLE).await.or_panic();
    // A health round with every check, and the peer seen, on node-a.
    c.wait_until("node-a healthy and reaching node-b", SETTLE, || async {
        c.status(0)
            .await
            .is_some_and(|s| s.healthy && s.peer_reachable)
    })
    .await
    .or_panic();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn story_status_page_renders_live_cluster_data_in_chromium() {
    let how = format!(
        "{CHROMIUM} not found: install it with `scripts/install-ops-tools.sh` (Debian package \
         `chromium`)"
    );
    if !syncguard_testkit::tools::available(Path::new(CHROMIUM).is_file(), &how) {
        return;
    }
    let c = start(options()).await;
    wait_ready(&c).await;
    let port = c.daemon(0).or_panic().port;
    let url = format!("http://127.0.0.1:{port}/");
    let epoch = c
        .epoch(0)
        .await
        .unwrap_or_else(|| panic!("node-a shows no epoch"));

    let profile = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let started = Instant::now();
    let dom = chromium(
        profile.path(),
        &[
            "--virtual-time-budget=5000".to_string(),
            "--dump-dom".to_string(),
        ],
        &url,
        Duration::from_secs(20),
    );
    let dom_text = String::from_utf8_lossy(&dom.stdout).to_string();
    assert!(
        dom.status.success() && dom_text.contains("</html>"),
        "chromium --dump-dom failed ({}):\n{}\n{}",
        dom.status,
        String::from_utf8_lossy(&dom.stderr),
        dom_text
    );
    let explain = || format!("--- DOM ---\n{dom_text}");
    // The page fetched and drew the live data.
    assert!(
        dom_text.contains("data-node=\"node-a\""),
        "node-a card\n{}",
        explain()
    );
    assert!(
        dom_text.contains("data-node=\"node-b\""),
        "node-b card\n{}",
        explain()
    );
    assert!(
        dom_text.contains("<span class=\"badge active\">active</span>")
            && dom_text.contains("<span class=\"badge passive\">passive</span>"),
        "roles\n{}",
        explain()
    );
    let height: u64 = card_value(&dom_text, "node-a", "CometBFT height")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("node-a's CometBFT height is not a number\n{}", explain()));
    assert!(height > 0, "height {height}");
    assert_eq!(
        card_value(&dom_text, "node-a", "epoch").as_deref(),
        Some(epoch.to_string().as_str()),
        "epoch\n{}",
        explain()
    );
    for check in ["comet.reachable", "comet.height_growth", "evm.reachable"] {
        assert!(
            dom_text.contains(&format!("data-check=\"{check}\"")),
            "check {check}\n{}",
            explain()
        );
    }
    // The timeline has the boot's records, newest first.
    assert!(
        dom_text.contains("<tr><td class=\"when\">") && dom_text.contains("promoting to active"),
        "timeline\n{}",
        explain()
    );
    assert!(
        dom_text.contains("class=\"banner error hidden\""),
        "the page shows a fetch error\n{}",
        explain()
    );

    let png = target_dir().join("status-page.png");
    let _ = std::fs::remove_file(&png);
    let shot = chromium(
        profile.path(),
        &[
            "--virtual-time-budget=5000".to_string(),
            "--window-size=1280,1600".to_string(),
            format!("--screenshot={}", png.display()),
        ],
        &url,
        Duration::from_secs(20),
    );
    let bytes = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {} ({e}); chromium said ({}):\n{}",
            png.display(),
            shot.status,
            String::from_utf8_lossy(&shot.stderr)
        )
    });
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "{} is not a PNG",
        png.display()
    );
    let width = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let height_px = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    assert_eq!((width, height_px), (1280, 1600), "screenshot size");
    // A blank page compresses to a few kB; text, tables and badges do not.
    assert!(
        bytes.len() > 30_000,
        "the screenshot looks empty: {} bytes",
        bytes.len()
    );
    println!(
        "status page screenshot: {} ({} bytes); chromium took {:.1} s for both runs",
        png.display(),
        bytes.len(),
        started.elapsed().as_secs_f64()
    );
}
