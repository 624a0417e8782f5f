//! The status page `GET /` rendered by headless Chromium against two real daemons on a
//! devnet: the DOM carries the live data (node ids, roles, a height, the health checks, the
//! epoch, the timeline), and a screenshot is written to `target/status-page.png`; and the
//! signing strip through a crash failover, on the survivor (screenshot in a kept temp dir).
//!
//! Chromium comes from Debian's `chromium` package: `scripts/install-ops-tools.sh`.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{assert_no_double_sign, options, start, OrPanic};
use rustix::process::{kill_process_group, Pid, Signal};
use serde_json::Value;
use syncguard_devnet::Cluster;

const CHROMIUM: &str = "/usr/bin/chromium";
const SETTLE: Duration = Duration::from_secs(20);
const FAILOVER: Duration = Duration::from_secs(60);

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

/// Whether Chromium is here (a plain `cargo test` skips without it; CI fails).
fn chromium_available() -> bool {
    let how = format!(
        "{CHROMIUM} not found: install it with `scripts/install-ops-tools.sh` (Debian package \
         `chromium`)"
    );
    syncguard_testkit::tools::available(Path::new(CHROMIUM).is_file(), &how)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn story_status_page_renders_live_cluster_data_in_chromium() {
    if !chromium_available() {
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

/// The attributes of the tag starting at `at` (`name="value"` pairs up to the closing `>`,
/// which may appear inside a quoted value).
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        if rest[..eq].contains('>') {
            break;
        }
        let name = rest[..eq]
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or("")
            .to_string();
        let value_start = eq + 2;
        let Some(len) = rest[value_start..].find('"') else {
            break;
        };
        out.push((name, rest[value_start..value_start + len].to_string()));
        rest = &rest[value_start + len + 1..];
    }
    out
}

/// One column of the strip as drawn: its height, what was seen, its title, and the roles of
/// its marker (if any).
#[derive(Debug)]
struct Column {
    height: u64,
    seen: char,
    title: String,
    roles: Option<String>,
    flag: Option<String>,
}

/// The strip's columns in the DOM, oldest first.
fn dom_columns(dom: &str) -> Vec<Column> {
    let mut out = Vec::new();
    for (at, _) in dom.match_indices("<div class=\"col") {
        let attrs = attributes(&dom[at..]);
        let get = |name: &str| {
            attrs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let seen = match get("data-seen").as_deref() {
            Some("signed") => 'S',
            Some("missed") => 'M',
            Some("not yet known") => '?',
            other => panic!("column without a known data-seen: {other:?}"),
        };
        let flag = get("data-roles").and_then(|_| {
            let body = &dom[at..];
            let open = body.find("<span class=\"flag")?;
            let text = &body[open..];
            let start = text.find('>')? + 1;
            let end = text.find("</span>")?;
            Some(text[start..end].to_string())
        });
        out.push(Column {
            height: get("data-height")
                .and_then(|h| h.parse().ok())
                .unwrap_or_else(|| panic!("column without data-height: {attrs:?}")),
            seen,
            title: get("title").unwrap_or_default(),
            roles: get("data-roles"),
            flag,
        });
    }
    out
}

/// A failover as a strip shows it, given the cells from `first` and the height of the new
/// holder's "active" marker: signed cells, then a run of missed cells, the marker on the first
/// signed cell after them, and signed cells from there on (a vote that misses its block now
/// and then is allowed). `Err` says what is missing.
fn failover_shape(first: u64, cells: &[char], active_at: u64) -> Result<(), String> {
    let i = usize::try_from(
        active_at
            .checked_sub(first)
            .ok_or("marker before the strip")?,
    )
    .map_err(|e| e.to_string())?;
    let at = *cells.get(i).ok_or("marker after the strip")?;
    if at != 'S' {
        return Err(format!(
            "the marker's height {active_at} is `{at}`, not signed"
        ));
    }
    let before: String = cells[..i].iter().collect();
    let before = before.trim_end_matches('?');
    let without_run = before.trim_end_matches('M');
    let run = before.len() - without_run.len();
    if run < 2 {
        return Err(format!(
            "no run of missed cells before the marker ({before:?})"
        ));
    }
    if !without_run.trim_end_matches('?').ends_with('S') {
        return Err(format!(
            "no signed cells before the missed run ({before:?})"
        ));
    }
    let after = cells[i..].iter().filter(|c| **c == 'S').count();
    if after < 4 {
        return Err(format!("only {after} signed cells from the marker on"));
    }
    Ok(())
}

/// `node.signing.strip` of a `/status`.
fn strip_of(status: &Value) -> &Value {
    &status["node"]["signing"]["strip"]
}

/// The height of the marker of `role` on a `/status` strip.
fn marker_height(strip: &Value, role: &str) -> Option<u64> {
    strip["markers"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["role"] == role)
        .and_then(|m| m["height"].as_u64())
}

fn shape_of_status(status: &Value) -> Result<(), String> {
    let strip = strip_of(status);
    let first = strip["first"].as_u64().ok_or("no strip yet")?;
    let cells: Vec<char> = strip["cells"].as_str().ok_or("no cells")?.chars().collect();
    let active = marker_height(strip, "active").ok_or("no active marker")?;
    failover_shape(first, &cells, active)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn story_status_page_signing_strip_shows_a_crash_failover_in_chromium() {
    if !chromium_available() {
        return;
    }
    let mut c = start(options()).await;
    wait_ready(&c).await;
    // node-b reads the commits too: its strip shows node-a signing for a while.
    c.wait_until("node-b's strip shows 12 signed heights", SETTLE, || async {
        c.get(1, "/status").await.is_some_and(|s| {
            strip_of(&s)["cells"]
                .as_str()
                .is_some_and(|cells| cells.matches('S').count() >= 12)
        })
    })
    .await
    .or_panic();

    // Host a dies (its SyncGuard and its node); node-b takes over.
    c.crash_host(0).await.or_panic();
    c.wait_until("node-b active", FAILOVER, || async {
        c.role(1).await.as_deref() == Some("active")
    })
    .await
    .or_panic();
    c.wait_signing_by(1, SETTLE).await.or_panic();
    c.wait_until(
        "node-b's strip shows signed, missed, the takeover, signed",
        SETTLE,
        || async {
            c.get(1, "/status")
                .await
                .is_some_and(|s| shape_of_status(&s).is_ok())
        },
    )
    .await
    .or_panic();
    let status = c.get(1, "/status").await.unwrap_or(Value::Null);
    let strip = strip_of(&status).clone();

    let port = c.daemon(1).or_panic().port;
    let url = format!("http://127.0.0.1:{port}/");
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
        "chromium --dump-dom failed ({}):\n{}",
        dom.status,
        String::from_utf8_lossy(&dom.stderr)
    );
    let explain = || format!("--- strip in /status ---\n{strip:#}\n--- DOM ---\n{dom_text}");
    let cols = dom_columns(&dom_text);
    // The last 100 heights up to the node's newest (every height from 1 on a younger chain),
    // consecutive, each with its title.
    let (Some(oldest), Some(newest)) = (cols.first(), cols.last()) else {
        panic!("no strip columns in the DOM\n{}", explain());
    };
    assert!(newest.height >= 12, "{}", explain());
    assert_eq!(
        oldest.height,
        newest.height.saturating_sub(99).max(1),
        "{} columns\n{}",
        cols.len(),
        explain()
    );
    for pair in cols.windows(2) {
        assert_eq!(pair[1].height, pair[0].height + 1, "{}", explain());
    }
    assert_eq!(
        newest.seen,
        '?',
        "the newest height is not known yet\n{}",
        explain()
    );
    for col in &cols {
        assert!(
            col.title.starts_with(&format!("height {}: ", col.height)),
            "column {} has no title: {col:?}",
            col.height
        );
    }
    // The takeover: node-b's "active" marker, drawn where signing resumed.
    let active: Vec<&Column> = cols
        .iter()
        .filter(|c| c.roles.as_deref().is_some_and(|r| r.contains("active")))
        .collect();
    let Some(marker) = active.last() else {
        panic!(
            "no role-change marker with `active` on the strip\n{}",
            explain()
        );
    };
    assert!(
        marker
            .flag
            .as_deref()
            .is_some_and(|f| f.starts_with("node-b ") && f.contains("active")),
        "the marker names the new holder: {marker:?}"
    );
    assert!(marker.title.contains("node-b → active"), "{marker:?}");
    let first = cols[0].height;
    let cells: Vec<char> = cols.iter().map(|c| c.seen).collect();
    if let Err(why) = failover_shape(first, &cells, marker.height) {
        panic!("the strip does not show the failover: {why}\n{}", explain());
    }
    for word in ["signed", "missed", "not yet known", "role change"] {
        assert!(
            dom_text.contains(&format!("</span>{word}")),
            "legend entry `{word}`\n{}",
            explain()
        );
    }
    assert!(
        dom_text.contains("aria-label=\"signing of node-b"),
        "the strip's text alternative\n{}",
        explain()
    );

    // A screenshot, kept for a human to look at.
    let dir = tempfile::Builder::new()
        .prefix("syncguard-strip-")
        .tempdir()
        .unwrap_or_else(|e| panic!("temp dir: {e}"))
        .keep();
    let png = dir.join("status-page-strip.png");
    let shot = chromium(
        profile.path(),
        &[
            "--virtual-time-budget=5000".to_string(),
            "--window-size=1280,900".to_string(),
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
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 30_000,
        "{} is not a full PNG ({} bytes)",
        png.display(),
        bytes.len()
    );
    let text: String = cells.iter().collect();
    println!(
        "signing strip on node-b after the failover: heights {first}–{}: {text} (active marker \
         at {}); screenshot: {} ({} bytes); chromium took {:.1} s",
        first + cells.len() as u64 - 1,
        marker.height,
        png.display(),
        bytes.len(),
        started.elapsed().as_secs_f64()
    );
    assert_no_double_sign(&c).await;
}

#[test]
fn story_status_page_failover_shape_is_what_the_strip_must_show() {
    let cells = |s: &str| s.chars().collect::<Vec<char>>();
    assert_eq!(failover_shape(10, &cells("SSSSMMMSSSS?"), 17), Ok(()));
    assert_eq!(failover_shape(10, &cells("??SSMM?SSSS?"), 17), Ok(()));
    assert!(
        failover_shape(10, &cells("SSSSMMMSSSS?"), 16).is_err(),
        "marker on a missed cell"
    );
    assert!(
        failover_shape(10, &cells("MMMMMMMSSSS?"), 17).is_err(),
        "never signed before"
    );
    assert!(
        failover_shape(10, &cells("SSSSSSMSSSS?"), 17).is_err(),
        "one missed only"
    );
    assert!(
        failover_shape(10, &cells("SSSSMMMS????"), 17).is_err(),
        "not signing after"
    );
    let attrs = attributes("<div class=\"col mark\" data-height=\"7\" title=\"a > b\"><span>");
    assert_eq!(attrs.len(), 3);
    assert_eq!(attrs[2], ("title".to_string(), "a > b".to_string()));
}
