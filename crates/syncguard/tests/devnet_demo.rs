//! `syncguard demo` end to end through the library: the real `syncguard` binary (two daemons
//! over mutual TLS) on a devnet of real processes, judged by the devnet's ledger.
//!
//! The binary is the one cargo built for this test; it also runs the devnet (`syncguard
//! devnet …`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use syncguard_devnet::demo::{run, DemoOptions, DemoSummary, Scenario};
use syncguard_devnet::Launcher;

/// The devnet as the product's binary runs it: `syncguard devnet …`.
fn devnet() -> Launcher {
    Launcher::with_prefix(env!("CARGO_BIN_EXE_syncguard"), ["devnet"])
}

/// One demo at a time: each runs a chain, four nodes' worth of processes and two daemons, and
/// their timings (failover windows of 1.5 s) must not suffer from a neighbour's load.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs a scenario, echoing progress to stderr (shown when a test fails) and keeping it.
async fn play(scenario: Scenario, json: bool) -> (DemoSummary, Vec<String>, Duration) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let bin = env!("CARGO_BIN_EXE_syncguard");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let mut opts = DemoOptions::new(bin, devnet());
    opts.scenario = scenario;
    opts.json = json;
    opts.out = Box::new(move |l: &str| {
        eprintln!("{l}");
        if let Ok(mut v) = sink.lock() {
            v.push(l.to_string());
        }
    });
    let start = Instant::now();
    let summary = run(opts).await.expect("the demo runs");
    let took = start.elapsed();
    let lines = lines.lock().map(|v| v.clone()).unwrap_or_default();
    (summary, lines, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_demo_crash_and_fallback_heals_twice_without_double_signing() {
    let (s, lines, took) = play(Scenario::CrashAndFallback, false).await;
    let json = serde_json::to_string_pretty(&s).expect("summary serializes");
    eprintln!("{json}");
    assert!(s.ok, "demo failed: {:?}", s.problems);
    assert_eq!(s.double_signs, 0);
    assert_eq!(s.s1_violations, 0);
    assert!(s.signed_blocks > 0 && s.committed_blocks >= s.signed_blocks);
    let names: Vec<&str> = s.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["failover", "fallback"]);
    let failover = &s.events[0];
    assert_eq!(failover.new_signer.as_deref(), Some("node-b"));
    assert!(failover.first_signature_after_ms.is_some_and(|t| t > 0));
    let fallback = &s.events[1];
    assert_eq!(fallback.new_signer.as_deref(), Some("node-a"));
    // The primary takes the role back only after its grace period of good health.
    let grace = fallback.designed_wait_ms.expect("grace recorded");
    assert!(
        fallback
            .first_signature_after_ms
            .is_some_and(|t| t >= grace),
        "{fallback:?}"
    );
    assert!(s.signed_by_node.get("host-b").is_some_and(|&n| n > 0));
    // The live view shows roles, the crash and the daemons' own role changes.
    let text = lines.join("\n");
    assert!(text.contains("node-b active"), "{text}");
    assert!(text.contains("CRASH"), "{text}");
    assert!(text.contains("role change"), "{text}");
    assert!(
        text.contains("=== summary: crash-and-fallback — OK ==="),
        "{text}"
    );
    assert!(took < Duration::from_secs(90), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_demo_switchover_there_and_back_in_json() {
    let (s, lines, _) = play(Scenario::Switchover, true).await;
    assert!(s.ok, "demo failed: {:?}", s.problems);
    assert_eq!((s.double_signs, s.s1_violations), (0, 0));
    let signers: Vec<Option<&str>> = s.events.iter().map(|e| e.new_signer.as_deref()).collect();
    assert_eq!(signers, [Some("node-b"), Some("node-a")]);
    // Every progress line is one JSON object; the last is the summary.
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
        assert!(v["type"].is_string(), "{l}");
    }
    let last: serde_json::Value = serde_json::from_str(lines.last().expect("lines")).expect("JSON");
    assert_eq!(last["type"], "summary");
    assert_eq!(last["summary"]["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_demo_both_started_active_end_with_one_signer() {
    let (s, _, _) = play(Scenario::BothActive, false).await;
    assert!(s.ok, "demo failed: {:?}", s.problems);
    assert_eq!((s.double_signs, s.s1_violations), (0, 0));
    assert_eq!(s.events.len(), 1);
    assert!(s.events[0].new_signer.is_some());
}

/// `syncguard devnet …` is the devnet CLI behind a prefix: a wrapper program that checks its
/// first argument is `devnet` (and runs `syncguard devnet …`) shows that the harness (chain,
/// geths, every host's start/stop/status commands) passes the prefix everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_demo_devnet_runs_behind_a_subcommand_prefix() {
    use std::os::unix::fs::PermissionsExt as _;
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wrapper = dir.path().join("syncguard");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ \"$1\" = devnet ] || {{ echo \"not devnet: $1\" >&2; exit 64; }}\nshift\nexec '{}' devnet \"$@\"\n",
            env!("CARGO_BIN_EXE_syncguard")
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut o = syncguard_devnet::DevnetOptions::new(Launcher::with_prefix(&wrapper, ["devnet"]));
    o.block_time = Duration::from_millis(200);
    let devnet = syncguard_devnet::Devnet::start(o)
        .await
        .expect("devnet via prefix");
    let a = devnet.host(0).expect("host a");
    assert!(
        a.start_command.contains(" devnet ctl start --home "),
        "{}",
        a.start_command
    );
    assert!(devnet.node_running(0).await.expect("status"));
    devnet.stop_node(1).await.expect("stop b");
    assert!(!devnet.node_running(1).await.expect("status"));
    let h = devnet.head().await.expect("head").height;
    devnet
        .wait_for_height(h + 3, Duration::from_secs(20))
        .await
        .expect("blocks");
    let l = devnet.ledger().await.expect("ledger");
    assert!(l.is_clean() && l.signed_heights > 0, "{l:?}");
}
