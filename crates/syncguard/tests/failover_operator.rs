//! The operator's commands against two real daemons over mutual TLS on a devnet: planned
//! switchover there and back, a refused switchover, fallback to the primary after its grace
//! period (and none for a flapping primary), maintenance pause, and `syncguard init`. Every
//! two-daemon scenario ends by checking the devnet's ledger: no double sign, no S1 violation.

mod common;

use std::time::{Duration, Instant};

use common::{assert_no_double_sign, events, options, start, OrPanic, TOKEN};
use serde_json::json;
use syncguard_devnet::cluster::{Cluster, ClusterOptions, StartRole};

const SETTLE: Duration = Duration::from_secs(30);
const FAILOVER: Duration = Duration::from_secs(40);

async fn steady(opts: ClusterOptions) -> Cluster {
    let c = start(opts).await;
    c.wait_roles(["active", "passive"], SETTLE).await.or_panic();
    c.wait_signing_by(0, SETTLE).await.or_panic();
    c
}

/// Node-b active, node-a (the primary) passive.
fn b_active(grace_s: f64) -> ClusterOptions {
    let mut opts = options();
    opts.roles = [StartRole::Passive, StartRole::Active];
    opts.devnet.validator_hosts = vec![1];
    opts.timings.fallback_grace_period = grace_s;
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_operator_switchover_there_and_back_carries_the_state() {
    let c = steady(options()).await;
    let (code, out) = c.cli(0, &["status"]).await.or_panic();
    assert_eq!(code, 0, "one active and healthy: {out}");
    assert!(out.contains("node-a") && out.contains("node-b"), "{out}");
    // Dry run: the plan, nothing changes.
    let (code, out) = c.cli(0, &["switchover"]).await.or_panic();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("dry run") && out.contains("becomes active:  node-b"),
        "{out}"
    );
    assert_eq!(c.role(0).await.as_deref(), Some("active"));

    for (from, to, to_id) in [(0usize, 1usize, "node-b"), (1, 0, "node-a")] {
        let epoch = c.epoch(from).await.expect("epoch");
        let (code, out) = c
            .cli(from, &["switchover", "--to", to_id, "--yes"])
            .await
            .or_panic();
        assert_eq!(
            code,
            0,
            "switchover to {to_id}: {out}\n{}",
            c.describe().await
        );
        // Shown with --nocapture: the operator's view of a switchover.
        println!("{out}");
        assert!(
            out.contains(&format!("start on {to_id}")),
            "step timings: {out}"
        );
        assert!(out.contains("total"), "step timings: {out}");
        let mut want = ["passive", "passive"];
        want[to] = "active";
        c.wait_roles(want, SETTLE).await.or_panic();
        // Exactly one handover: the epoch grew by one.
        assert_eq!(c.epoch(to).await, Some(epoch + 1), "{}", c.describe().await);
        // The state was carried: the new holder's file starts at or above the old one's end.
        let old_final = c.state_height(from);
        c.wait_signing_by(to, SETTLE).await.or_panic();
        assert!(
            c.state_height(to) >= old_final,
            "state carried: {} on the new active vs {old_final}",
            c.state_height(to)
        );
    }
    let (code, out) = c.cli(1, &["status", "--json"]).await.or_panic();
    assert_eq!(code, 0, "{out}");
    assert_no_double_sign(&c).await;
}

/// CometBFT's `double_sign_check_height` on every node (the devnet's node refuses to start
/// while its key signed in its last N commits, as story does): the target of a switchover
/// waits for N blocks without the validator's signature before it starts, so a switchover
/// there and back works, a little slower, and nothing is signed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_operator_switchover_there_and_back_with_double_sign_check_height() {
    let mut opts = options();
    opts.devnet.double_sign_check_height = 3;
    let c = steady(opts).await;
    for (from, to, to_id) in [(0usize, 1usize, "node-b"), (1, 0, "node-a")] {
        let epoch = c.epoch(from).await.expect("epoch");
        let (code, out) = c
            .cli(from, &["switchover", "--to", to_id, "--yes"])
            .await
            .or_panic();
        assert_eq!(
            code,
            0,
            "switchover to {to_id}: {out}\n{}",
            c.describe().await
        );
        println!("{out}");
        // The target waited for the blocks CometBFT's check needs before it started.
        assert!(
            out.contains("double_sign_check_height"),
            "the wait is a step of its own: {out}"
        );
        let mut want = ["passive", "passive"];
        want[to] = "active";
        c.wait_roles(want, SETTLE).await.or_panic();
        assert_eq!(c.epoch(to).await, Some(epoch + 1), "{}", c.describe().await);
        c.wait_signing_by(to, SETTLE).await.or_panic();
    }
    assert_no_double_sign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_operator_switchover_to_an_unhealthy_target_is_refused_before_anything_stops() {
    let mut c = steady(options()).await;
    // Without credentials, or with a wrong token, the daemon refuses and says why.
    let (code, body) = c.post(0, "/switchover", None, &json!({})).await.or_panic();
    assert_eq!(code, 401, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("admin_token"),
        "{body}"
    );
    let (code, body) = c
        .post(
            0,
            "/switchover",
            Some("wrong-token-wrong-token"),
            &json!({}),
        )
        .await
        .or_panic();
    assert_eq!(code, 403, "{body}");
    let (code, _) = c.post(0, "/pause", None, &json!({})).await.or_panic();
    assert_eq!(code, 401);
    assert_eq!(c.role(0).await.as_deref(), Some("active"));

    let epoch = c.epoch(0).await.expect("epoch");
    c.devnet.kill_geth(1).expect("kill geth b");
    c.wait_until("node-a sees node-b unhealthy", SETTLE, || async {
        c.get(0, "/status")
            .await
            .is_some_and(|s| s["peer"]["healthy"] == false)
    })
    .await
    .or_panic();
    let (code, out) = c.cli(0, &["switchover", "--yes"]).await.or_panic();
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("unhealthy"), "the reason is shown: {out}");
    assert!(out.contains("refused"), "{out}");
    // The same through the API, with the token: 409 and the machine's reason.
    let (code, body) = c
        .post(0, "/switchover", Some(TOKEN), &json!({"to": "node-b"}))
        .await
        .or_panic();
    assert_eq!(code, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap_or("").contains("unhealthy"),
        "{body}"
    );
    // Nothing stopped: node-a keeps the role and keeps signing, same epoch.
    assert_eq!(c.role(0).await.as_deref(), Some("active"));
    assert_eq!(c.epoch(0).await, Some(epoch));
    c.wait_signing_by(0, SETTLE).await.or_panic();
    assert_no_double_sign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_operator_fallback_to_the_primary_after_the_grace_period() {
    let c = start(b_active(3.0)).await;
    c.wait_until("node-b active", SETTLE, || async {
        c.role(1).await.as_deref() == Some("active")
    })
    .await
    .or_panic();
    let epoch = c.epoch(1).await.expect("epoch");
    // node-a, the primary, healthy for 3 s without a break, takes the role back.
    c.wait_roles(["active", "passive"], FAILOVER)
        .await
        .or_panic();
    assert!(c.epoch(0).await.unwrap_or(0) > epoch);
    let events = events(&c, 0).await;
    assert!(
        events.contains("fallback: this primary node has been healthy"),
        "{events}"
    );
    c.wait_signing_by(0, SETTLE).await.or_panic();
    assert_no_double_sign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_operator_flapping_primary_never_takes_the_role_back() {
    let c = start(b_active(6.0)).await;
    // node-a flaps from the start — 2 s without CometBFT peers (unhealthy after three failed
    // rounds), 2 s with — so it is never healthy for the 6 s grace period in one stretch (the
    // grace counts from its own health; a node restart at boot resets its peers, the next
    // toggle takes them away again).
    let flapping = async {
        loop {
            c.devnet.set_peers(0, 0).await.expect("peers 0");
            tokio::time::sleep(Duration::from_secs(2)).await;
            c.devnet.set_peers(0, 1).await.expect("peers 1");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    let watch = async {
        c.wait_until("node-b active", SETTLE, || async {
            c.role(1).await.as_deref() == Some("active")
        })
        .await
        .or_panic();
        let epoch = c.epoch(1).await.expect("epoch");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(16) {
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(
                c.role(1).await.as_deref(),
                Some("active"),
                "a flapping primary took the role back\n{}",
                c.describe().await
            );
        }
        epoch
    };
    let epoch = tokio::select! {
        e = watch => e,
        () = flapping => unreachable!("flapping never ends"),
    };
    c.devnet.set_peers(0, 1).await.expect("peers 1");
    // node-b may have offered the role and resumed it at a new epoch when its own node
    // looked unhealthy on a loaded host (node-a refuses while it flaps): what matters is that
    // node-a never held the role and never asked for it.
    assert!(c.epoch(1).await >= Some(epoch));
    let events = events(&c, 0).await;
    assert!(
        !events.contains("fallback: this primary"),
        "no fallback request: {events}"
    );
    assert!(
        !events.contains("the validator key is live on this node"),
        "node-a never became active: {events}"
    );
    // Steady again: after a full grace period the primary does take the role back.
    c.wait_roles(["active", "passive"], FAILOVER)
        .await
        .or_panic();
    assert_no_double_sign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_operator_pause_blocks_failover_until_resume() {
    // No admin token: the CLI authenticates with the node's own certificate (mutual TLS),
    // and the daemon forwards the pause to its peer over mutual TLS.
    let mut c = steady(ClusterOptions {
        admin_token: None,
        ..options()
    })
    .await;
    let (code, body) = c
        .post(0, "/pause", Some(TOKEN), &json!({}))
        .await
        .or_panic();
    assert_eq!(code, 403, "no token configured, none accepted: {body}");
    let (code, out) = c.cli(0, &["pause"]).await.or_panic();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("node-b: paused"), "cluster-wide: {out}");
    for i in 0..2 {
        let health = c.get(i, "/health").await.expect("health");
        assert_eq!(health["paused"], true, "{health}");
        let status = c.get(i, "/status").await.expect("status");
        assert_eq!(status["node"]["paused"], true, "{status}");
    }
    // The active's host dies: node-b, paused, does not promote.
    c.kill_daemon(0).or_panic();
    c.devnet.kill_node(0).await.expect("kill node a");
    let watch = Duration::from_secs(8);
    let start = Instant::now();
    while start.elapsed() < watch {
        let s = c.get(1, "/status").await.expect("status b");
        assert_eq!(s["node"]["held_role"], "passive", "{}", c.describe().await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let events = events(&c, 1).await;
    assert!(
        events.contains("paused"),
        "node-b says why it waits: {events}"
    );
    // Resumed (its peer is down: the CLI says the peer was not reached) → it promotes.
    let (_, out) = c.cli(1, &["resume"]).await.or_panic();
    assert!(out.contains("node-b: resumed"), "{out}");
    assert!(out.contains("node-a: NOT resumed"), "{out}");
    c.wait_until("node-b active", FAILOVER, || async {
        c.role(1).await.as_deref() == Some("active")
    })
    .await
    .or_panic();
    c.wait_signing_by(1, SETTLE).await.or_panic();
    assert_no_double_sign(&c).await;
}

#[test]
fn failover_operator_init_output_passes_config_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("cluster");
    let bin = env!("CARGO_BIN_EXE_syncguard");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .output()
            .expect("run syncguard")
    };
    let dir_arg = out_dir.to_str().expect("utf-8 path");
    let init = [
        "init",
        "--id",
        "node-a",
        "--address",
        "10.0.0.1:8080",
        "--peer",
        "node-b=10.0.0.2:8080",
        "--dir",
        dir_arg,
    ];
    let out = run(&init);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("CA KEY STAYS ON THIS MACHINE"), "{text}");
    assert!(text.contains("never creates or copies it"), "{text}");
    for node in ["node-a", "node-b"] {
        let config = out_dir.join(node).join("syncguard.yaml");
        let check = run(&[
            "config",
            "check",
            "--offline",
            "--config",
            config.to_str().unwrap_or(""),
        ]);
        assert!(
            check.status.success(),
            "{node}: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(
            String::from_utf8_lossy(&check.stderr).trim().is_empty(),
            "no warnings: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let text = std::fs::read_to_string(&config).expect("config");
        assert!(text.contains("# "), "commented");
        use std::os::unix::fs::PermissionsExt;
        for secret in [
            out_dir.join(node).join("placeholder_key.json"),
            out_dir.join(node).join("tls").join(format!("{node}.key")),
            config.clone(),
        ] {
            let mode = std::fs::metadata(&secret)
                .expect("file")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{}", secret.display());
        }
    }
    // A second run overwrites nothing and names the file in the way.
    let before = std::fs::read(out_dir.join("ca").join("ca.pem")).expect("ca");
    let again = run(&init);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr).to_string();
    assert!(
        err.contains("already exists") && err.contains("ca.pem"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(out_dir.join("ca").join("ca.pem")).expect("ca"),
        before
    );
}

/// `takeover` and `unfence` are last resorts: the CLI only explains without --yes, and the
/// machine refuses them when they would be unsafe or make no sense — saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_operator_takeover_and_unfence_refuse_when_unsafe() {
    let c = steady(options()).await;
    let epochs = [c.epoch(0).await, c.epoch(1).await];
    // Without --yes: only the explanation, exit 2, nothing sent.
    let (code, out) = c.cli(1, &["takeover"]).await.or_panic();
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("WITHOUT its peer's agreement"), "{out}");
    // On the active: refused.
    let (code, out) = c.cli(0, &["takeover", "--yes"]).await.or_panic();
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("takeover refused: this node is active"),
        "{out}"
    );
    // On the passive while node-a is reachable and active: the takeover is noted, but the
    // machine stays passive and says why (the exit code says it did not happen).
    let (code, out) = c.cli(1, &["takeover", "--yes"]).await.or_panic();
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("takeover requested by the operator"), "{out}");
    assert!(
        out.contains("staying passive: peer node-a is active"),
        "{out}"
    );
    // Unfence on a node that is not fenced: ignored, said so.
    let (code, out) = c.cli(1, &["unfence"]).await.or_panic();
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("unfence ignored: this node is passive"),
        "{out}"
    );
    // Without credentials the API refuses both.
    for path in ["/takeover", "/unfence"] {
        let (code, _) = c.post(1, path, None, &json!({})).await.or_panic();
        assert_eq!(code, 401, "{path}");
    }
    assert_eq!(c.role(0).await.as_deref(), Some("active"));
    assert_eq!(c.role(1).await.as_deref(), Some("passive"));
    assert_eq!([c.epoch(0).await, c.epoch(1).await], epochs);
    assert_no_double_sign(&c).await;
}
