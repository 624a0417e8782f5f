//! `syncguard story` as a real process against a real EVM node (anvil) and a CometBFT-shaped
//! mock: `GET /health` answers 200 while the node is healthy and 503 once it stalls.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use syncguard_testkit::anvil::Anvil;
use syncguard_testkit::comet_mock::CometMock;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `GET /health` until `want` holds (bounded), returning the last status and body.
async fn health_until(
    port: u16,
    deadline: Duration,
    want: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/health");
    let start = Instant::now();
    let mut last = (0, Value::Null);
    while start.elapsed() < deadline {
        if let Ok(resp) = client
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if want(status, &body) {
                return (status, body);
            }
            last = (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "/health never reached the wanted answer within {deadline:?}; last: {} {:#}",
        last.0, last.1
    );
}

fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {body:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn story_daemon_health_is_200_when_healthy_and_503_when_cometbft_stalls() {
    let Some(anvil) = Anvil::start(1) else {
        return;
    };
    let comet = CometMock::start(Duration::from_millis(500), 3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("data")).expect("state dir");
    std::fs::write(
        dir.path().join("data/priv_validator_state.json"),
        "{\n  \"height\": \"0\",\n  \"round\": 0,\n  \"step\": 0\n}",
    )
    .expect("state file");
    let port = free_port();
    let config = format!(
        r#"
server:
  id: "story-validator-2"
  role: "secondary"
  bind: "127.0.0.1"
  port: {port}
story:
  comet_rpc_url: "{comet}"
  evm_rpc_url: "{evm}"
  validator_state_path: "{dir}/data/priv_validator_state.json"
  validator_state_backup: "{dir}/backup/priv_validator_state.json"
  node_role: "passive"
  is_primary_site: false
  min_peers: 2
  block_interval: 500
failover:
  health_check_interval: 0.5
  retry_attempts: 2
health:
  rpc_timeout: 0.4
  stall_threshold: 3
  recovery_rounds: 2
logging:
  level: "info"
  file: "{dir}/story-failover.log"
"#,
        comet = comet.url(),
        evm = anvil.url(),
        dir = dir.path().display(),
    );
    let config_path = dir.path().join("config-story.yaml");
    std::fs::write(&config_path, config).expect("write config");

    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_syncguard"))
            .args(["story", "--config"])
            .arg(&config_path)
            .args(["--role", "passive"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start syncguard story"),
    );

    // Healthy once two good rounds have passed.
    let (_, body) = health_until(port, Duration::from_secs(20), |status, _| status == 200).await;
    assert_eq!(body["healthy"], true);
    assert_eq!(body["verdict"], "healthy");
    assert_eq!(body["node_id"], "story-validator-2");
    assert_eq!(body["role"], "passive");
    assert_eq!(check(&body, "comet.peers")["status"], "ok");
    assert_eq!(check(&body, "evm.reachable")["status"], "ok");
    assert_eq!(
        check(&body, "evm.peers")["status"],
        "unknown",
        "anvil has no net_peerCount"
    );
    assert!(
        body["checks"].as_array().is_some_and(|c| c.len() >= 10),
        "{body:#}"
    );

    // The CometBFT chain stalls: unhealthy after the stall bound plus retry_attempts rounds.
    comet.set_stalled(true);
    let (_, body) = health_until(port, Duration::from_secs(20), |status, _| status == 503).await;
    assert_eq!(body["healthy"], false);
    assert_eq!(body["verdict"], "unhealthy");
    assert_eq!(
        check(&body, "comet.height_growth")["status"],
        "fail",
        "{body:#}"
    );

    // Recovery needs recovery_rounds good rounds in a row.
    comet.set_stalled(false);
    health_until(port, Duration::from_secs(20), |status, _| status == 200).await;

    // Too few peers fails the round again.
    comet.set_peers(1);
    let (_, body) = health_until(port, Duration::from_secs(20), |status, _| status == 503).await;
    assert_eq!(check(&body, "comet.peers")["status"], "fail", "{body:#}");

    // logging.file has every verdict change, as stderr does.
    let log = std::fs::read_to_string(dir.path().join("story-failover.log")).expect("log file");
    assert!(log.contains("syncguard started"), "{log}");
    assert!(log.contains("node is UNHEALTHY"), "{log}");
}

/// `syncguard witness` reads the validator's address from the key store and reports what the
/// chain shows: signing → "IS signing"; silent → "no signature in the window".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn story_witness_command_reports_whether_the_validator_signs() {
    let comet = CometMock::start(Duration::from_millis(200), 3).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key_src = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/privval/privval_key_secp256k1_cometbft_docs.json");
    let key_store = dir.path().join("validator_key.json");
    std::fs::copy(&key_src, &key_store).expect("copy key");
    let config_path = dir.path().join("c.yaml");
    std::fs::write(
        &config_path,
        format!(
            "server:\n  id: a\nstory:\n  comet_rpc_url: \"{}\"\n  validator_key_store: \"{}\"\n",
            comet.url(),
            key_store.display()
        ),
    )
    .expect("config");
    let run = |json: bool| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_syncguard"));
        cmd.args(["witness", "--config"])
            .arg(&config_path)
            .args(["--blocks", "3"]);
        if json {
            cmd.arg("--json");
        }
        cmd.output()
    };
    let address = "E5B4F106D46A46820308C49B5F92DC22D9F9ACFA";

    comet.set_validator_signing(address, false);
    let out = run(false).await.expect("run syncguard witness");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{said}");
    assert!(said.contains(&format!("validator {address}")), "{said}");
    assert!(said.contains("no signature in the window"), "{said}");

    comet.set_validator_signing(address, true);
    let out = run(true).await.expect("run syncguard witness");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["address"], address);
    assert_eq!(v["heights"].as_array().map(Vec::len), Some(3));
    assert!(
        v["heights"]
            .as_array()
            .is_some_and(|hs| hs.iter().all(|h| h["seen"] == "signed")),
        "{v:#}"
    );
}
