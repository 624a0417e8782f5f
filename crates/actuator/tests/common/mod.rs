//! A fake Story node for the actuator's tests, driven by real shell commands over real files.
//!
//! - "Running" means the flag file exists: `start_command` creates it, `stop_command` removes
//!   it, `status_command` tests it (`test -f`). `kill_command` removes it too and leaves a
//!   marker that also ends a wedged ("stuck") process, as SIGKILL would.
//! - A supervisor task watches the flag. When it appears, the node reads the key at the live
//!   path (as `story` does at start) and opens its CometBFT RPC port; when it disappears, the
//!   listener is closed, so connections are refused — like a stopped process.
//! - While running, `/status` reports the address of the key it started with, and `/commit`
//!   carries that address's signature (flag 2) when it is the validator's.
//! - The supervisor records every start (with its key) and flags any change of the state file
//!   while running (S2: SyncGuard writes only while story is stopped).
#![allow(dead_code)]

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use syncguard_actuator::{Actuator, ActuatorOptions};
use syncguard_config::{Config, StoryConfig};
use syncguard_validator::{Hrs, SignState, StateStore, Step, ValidatorKey};
use tokio::task::JoinHandle;

pub const BLOCK_INTERVAL: Duration = Duration::from_millis(50);
const INITIAL_HEIGHT: u64 = 100;
/// Supervisor poll: how quickly the fake node notices its flag file.
const WATCH: Duration = Duration::from_millis(5);

pub fn fixture_key_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/privval/privval_key_secp256k1_cometbft_docs.json")
}

pub fn signed(height: i64, round: i32, step: Step, tag: u8) -> SignState {
    SignState::signed(
        Hrs::new(height, round, step),
        vec![tag; 64],
        vec![tag, 1, 2, 3],
    )
    .unwrap()
}

pub fn unsigned(height: i64, round: i32, step: Step) -> SignState {
    SignState::unsigned(Hrs::new(height, round, step)).unwrap()
}

#[derive(Debug, Default)]
pub struct NodeState {
    /// Address of the key the node runs with, while its RPC is open.
    pub running: Option<String>,
    /// Address read at each start, in order.
    pub starts: Vec<String>,
    /// Height at the last start.
    pub start_height: u64,
    /// A wedged process: keeps serving after its flag is gone.
    pub stuck: bool,
    /// Report this address in `/status` instead of the loaded key's.
    pub report_address: Option<String>,
    /// Whether the validator's signatures appear in commits when it runs with its key.
    pub not_signing: bool,
    /// S2 violations seen: the state file changed while running.
    pub violations: Vec<String>,
}

struct Chain {
    origin: Instant,
    validator: String,
}

impl Chain {
    fn height(&self) -> u64 {
        INITIAL_HEIGHT + (self.origin.elapsed().as_millis() / BLOCK_INTERVAL.as_millis()) as u64
    }
}

#[derive(Clone)]
struct Shared {
    node: Arc<Mutex<NodeState>>,
    chain: Arc<Chain>,
}

pub struct FakeNode {
    pub dir: tempfile::TempDir,
    pub flag: PathBuf,
    /// Left by `kill_command`: the supervisor ends the process, wedged or not.
    pub killed: PathBuf,
    pub live_key: PathBuf,
    pub key_store: PathBuf,
    pub placeholder: PathBuf,
    pub state: PathBuf,
    pub backup: PathBuf,
    pub log: PathBuf,
    pub port: u16,
    pub validator_address: String,
    pub placeholder_address: String,
    pub node: Arc<Mutex<NodeState>>,
    chain: Arc<Chain>,
    supervisor: JoinHandle<()>,
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

pub enum Role {
    /// Runs with the placeholder key.
    Passive,
    /// Runs with the validator key.
    Active,
}

impl FakeNode {
    /// A running node with `state` in its state file.
    pub async fn start(role: Role, state: &SignState) -> FakeNode {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["config", "data", "keys", "backup", "run"] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        let validator = ValidatorKey::load(&fixture_key_path()).unwrap();
        let key_store = d.join("keys/priv_validator_key.json");
        validator.save_new(&key_store).unwrap();
        let placeholder_key = ValidatorKey::generate_secp256k1();
        let placeholder = d.join("keys/placeholder_key.json");
        placeholder_key.save_new(&placeholder).unwrap();
        let live_key = d.join("config/priv_validator_key.json");
        match role {
            Role::Passive => placeholder_key.save_new(&live_key).unwrap(),
            Role::Active => validator.save_new(&live_key).unwrap(),
        }
        let state_path = d.join("data/priv_validator_state.json");
        std::fs::write(&state_path, state.to_json()).unwrap();

        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let flag = d.join("run/story.running");
        let killed = d.join("run/story.killed");
        let node = Arc::new(Mutex::new(NodeState::default()));
        let chain = Arc::new(Chain {
            origin: Instant::now(),
            validator: validator.address_hex(),
        });
        let shared = Shared {
            node: node.clone(),
            chain: chain.clone(),
        };
        let supervisor = tokio::spawn(supervise(
            shared,
            flag.clone(),
            killed.clone(),
            live_key.clone(),
            state_path.clone(),
            port,
        ));
        std::fs::write(&flag, b"").unwrap();
        let fake = FakeNode {
            flag,
            killed,
            live_key,
            key_store,
            placeholder,
            state: state_path,
            backup: d.join("backup/priv_validator_state.json"),
            log: d.join("commands.log"),
            port,
            validator_address: validator.address_hex(),
            placeholder_address: placeholder_key.address_hex(),
            node,
            chain,
            supervisor,
            dir,
        };
        fake.wait_for(|n| n.running.is_some()).await;
        fake
    }

    /// The config of a SyncGuard managing this node.
    pub fn config(&self) -> Config {
        let q = |p: &Path| format!("'{}'", p.display());
        let mut c = Config::default();
        let s = &mut c.story;
        s.comet_rpc_url = format!("http://127.0.0.1:{}", self.port);
        s.home = self.dir.path().to_path_buf();
        s.validator_state_path = Some(self.state.clone());
        s.validator_state_backup = self.backup.clone();
        s.validator_key_path = Some(self.live_key.clone());
        s.validator_key_store = self.key_store.clone();
        s.placeholder_key_path = self.placeholder.clone();
        s.start_command = format!("echo start >> {}; touch {}", q(&self.log), q(&self.flag));
        s.stop_command = format!("echo stop >> {}; rm -f {}", q(&self.log), q(&self.flag));
        s.kill_command = Some(format!(
            "echo kill >> {}; touch {}; rm -f {}",
            q(&self.log),
            q(&self.killed),
            q(&self.flag)
        ));
        s.status_command = format!("test -f {}", q(&self.flag));
        s.stop_timeout = Some(2.0);
        s.verify_blocks = 3;
        s.block_interval = BLOCK_INTERVAL.as_millis() as u64;
        c
    }

    /// Short polls and bounds, for tests.
    pub fn options(config: &Config) -> ActuatorOptions {
        let mut o = ActuatorOptions::from_config(config);
        o.poll_interval = Duration::from_millis(10);
        o.start_timeout = Duration::from_secs(5);
        o.rpc_timeout = Duration::from_secs(1);
        o.kill_timeout = Duration::from_secs(1);
        o.verify_timeout = Duration::from_secs(3);
        o
    }

    pub fn open_store(&self) -> Arc<StateStore> {
        Arc::new(StateStore::open(&self.state, Some(self.backup.clone())).unwrap())
    }

    pub fn actuator(&self, config: &Config, store: &Arc<StateStore>) -> Actuator {
        Actuator::with_options(config, store.clone(), Self::options(config)).unwrap()
    }

    /// An actuator for this node with its config edited by `edit` (and a fresh store).
    pub fn actuator_with(&self, edit: impl FnOnce(&mut StoryConfig)) -> Actuator {
        let mut config = self.config();
        edit(&mut config.story);
        self.actuator(&config, &self.open_store())
    }

    /// A script file in the node's directory (for commands with state of their own).
    pub fn script(&self, name: &str, body: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        format!("'{}'", path.display())
    }

    /// A stop command that "succeeds" but does nothing: story keeps running.
    pub fn useless_stop(&self) -> String {
        format!("echo stop >> '{}'", self.log.display())
    }

    /// A kill command that does not help: logged, nothing else.
    pub fn useless_kill(&self) -> Option<String> {
        Some(format!("echo kill >> '{}'", self.log.display()))
    }

    /// A start command whose first run does `first_run` (shell) instead of starting story;
    /// later runs start it.
    pub fn start_once_then(&self, first_run: &str) -> String {
        let once = self.dir.path().join("started-once");
        self.script(
            "start.sh",
            &format!(
                "echo start >> '{log}'\nif [ ! -e '{once}' ]; then touch '{once}'; {first_run}; \
                 fi\ntouch '{flag}'",
                log = self.log.display(),
                once = once.display(),
                flag = self.flag.display(),
            ),
        )
    }

    /// Rolled back: the placeholder at the live path (0600), story running with it.
    pub async fn assert_full_node_with_placeholder(&self) {
        assert_eq!(self.live_address(), self.placeholder_address);
        assert_eq!(self.live_mode(), 0o600);
        self.wait_for(|n| n.running.is_some()).await;
        assert_eq!(
            self.with(|n| n.running.clone()).unwrap(),
            self.placeholder_address
        );
    }

    /// Commands run, in order (`start`, `stop`, `kill`).
    pub fn commands(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The chain's height now (as `/status` reports it while the node runs).
    pub fn chain_height(&self) -> u64 {
        self.chain.height()
    }

    pub fn live_address(&self) -> String {
        ValidatorKey::load_public(&self.live_key)
            .unwrap()
            .address_hex()
    }

    pub fn live_mode(&self) -> u32 {
        std::fs::metadata(&self.live_key)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    pub fn state_on_disk(&self) -> SignState {
        SignState::load(&self.state).unwrap()
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut NodeState) -> T) -> T {
        f(&mut self.node.lock().unwrap())
    }

    /// Polls the node's state until `pred` holds (bounded).
    pub async fn wait_for(&self, pred: impl Fn(&NodeState) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if pred(&self.node.lock().unwrap()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fake node never reached the expected state"
            );
            tokio::time::sleep(WATCH).await;
        }
    }

    /// Nothing the S2 watch flagged.
    pub fn assert_no_violations(&self) {
        let v = self.with(|n| n.violations.clone());
        assert!(v.is_empty(), "state file written while story ran: {v:?}");
    }
}

/// Follows the flag file: opens the RPC when it appears, closes it when it goes.
async fn supervise(
    shared: Shared,
    flag: PathBuf,
    killed: PathBuf,
    live_key: PathBuf,
    state: PathBuf,
    port: u16,
) {
    let mut server: Option<(JoinHandle<()>, Option<Vec<u8>>)> = None;
    loop {
        if std::fs::remove_file(&killed).is_ok() {
            shared.node.lock().unwrap().stuck = false;
        }
        let up = flag.exists();
        match (server.take(), up) {
            (None, true) => {
                let address = ValidatorKey::load_public(&live_key)
                    .map(|k| k.address_hex())
                    .unwrap_or_default();
                if let Some(listener) = bind(port) {
                    {
                        let mut n = shared.node.lock().unwrap();
                        n.running = Some(address.clone());
                        n.starts.push(address.clone());
                        n.start_height = shared.chain.height();
                    }
                    let app = Router::new()
                        .route("/status", get(status))
                        .route("/commit", get(commit))
                        .with_state((shared.clone(), address));
                    let task = tokio::spawn(async move {
                        let _ = axum::serve(listener, app).await;
                    });
                    server = Some((task, std::fs::read(&state).ok()));
                }
            }
            (Some((task, snapshot)), false) if !shared.node.lock().unwrap().stuck => {
                // Checked before the port closes: SyncGuard may write once it is closed.
                check_state(&shared, &state, &snapshot);
                task.abort();
                let _ = task.await;
                shared.node.lock().unwrap().running = None;
            }
            (Some((task, snapshot)), _) => {
                check_state(&shared, &state, &snapshot);
                server = Some((task, snapshot));
            }
            (None, false) => {}
        }
        tokio::time::sleep(WATCH).await;
    }
}

fn check_state(shared: &Shared, state: &Path, snapshot: &Option<Vec<u8>>) {
    let now = std::fs::read(state).ok();
    if &now != snapshot {
        shared.node.lock().unwrap().violations.push(format!(
            "{} changed while story was running",
            state.display()
        ));
    }
}

fn bind(port: u16) -> Option<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.set_reuseaddr(true).ok()?;
    socket.bind(([127, 0, 0, 1], port).into()).ok()?;
    socket.listen(64).ok()
}

type Ctx = (Shared, String);

fn envelope(result: Value) -> Json<Value> {
    Json(json!({"jsonrpc": "2.0", "id": -1, "result": result}))
}

async fn status(State((shared, address)): State<Ctx>) -> Json<Value> {
    let shown = shared
        .node
        .lock()
        .unwrap()
        .report_address
        .clone()
        .unwrap_or(address);
    envelope(json!({
        "node_info": {"network": "devnet-1", "moniker": "fake", "version": "0.38.17"},
        "sync_info": {
            "latest_block_hash": "B647CF507155BADAC86FADD00E38B065C63A84953A847AA9FA99DB1CEE6C4DA9",
            "latest_block_height": shared.chain.height().to_string(),
            "latest_block_time": "2025-01-01T00:00:00.000000000Z",
            "catching_up": false
        },
        "validator_info": {
            "address": shown,
            "pub_key": {"type": "tendermint/PubKeySecp256k1", "value": "AhRzbjoZaiyrbCE/yJ6gwIBXjwzl8+H7W8KMAphJVUzt"},
            "voting_power": "10"
        }
    }))
}

async fn commit(
    State((shared, address)): State<Ctx>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let latest = shared.chain.height();
    let height = q
        .get("height")
        .and_then(|h| h.trim_matches('"').parse::<u64>().ok())
        .unwrap_or(latest);
    if height > latest {
        let body = json!({"jsonrpc": "2.0", "id": -1, "error": {"code": -32603,
            "message": "Internal error",
            "data": format!("height {height} must be less than or equal to the current blockchain height {latest}")}});
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
    }
    let (start_height, not_signing) = {
        let n = shared.node.lock().unwrap();
        (n.start_height, n.not_signing)
    };
    let ours = if address == shared.chain.validator && !not_signing && height > start_height {
        json!({"block_id_flag": 2, "validator_address": address,
               "timestamp": "2025-01-01T00:00:00Z", "signature": "c2ln"})
    } else {
        json!({"block_id_flag": 1, "validator_address": "",
               "timestamp": "0001-01-01T00:00:00Z", "signature": null})
    };
    envelope(json!({
        "canonical": height < latest,
        "signed_header": {
            "header": {"chain_id": "devnet-1", "height": height.to_string()},
            "commit": {
                "height": height.to_string(),
                "round": 0,
                "signatures": [
                    {"block_id_flag": 2, "validator_address": "0000000000000000000000000000000000000001",
                     "timestamp": "2025-01-01T00:00:00Z", "signature": "c2ln"},
                    ours
                ]
            }
        }
    }))
    .into_response()
}
