//! The chain process (`syncguard devnet chain`): the thin HTTP shell around [`ChainCore`].
//!
//! | route | what |
//! |---|---|
//! | `GET /head` | [`Head`](crate::api::Head): last block, proposal in flight, halted? |
//! | `POST /vote` | a [`VoteMsg`](crate::api::VoteMsg) → [`VoteReceipt`](crate::api::VoteReceipt) |
//! | `GET /commit?height=h` | [`BlockCommit`](crate::api::BlockCommit) (404 above the head) |
//! | `POST /halt`, `POST /resume` | chain-wide halt / resume → head |
//! | `GET /ledger` | [`LedgerReport`](crate::api::LedgerReport) |
//! | `GET /health` | `{"ok":true}` |
//!
//! Time comes from the wall clock here and nowhere else: every request first ticks the
//! core, and a ticker does so every few milliseconds. The ledger is also written to
//! `<dir>/ledger.json` (atomically) whenever it changed, and at exit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use syncguard_validator::{KeyType, PublicKey};

use crate::api::{Head, LedgerReport, VoteMsg, VoteReceipt};
use crate::chain::{ChainConfig, ChainCore};
use crate::fsutil::write_atomic;
use crate::procs;

/// Options of `syncguard devnet chain`.
#[derive(Debug, Clone)]
pub struct ChainOptions {
    /// Listen address (port 0 = any; the bound address is printed on stdout).
    pub listen: SocketAddr,
    /// Block interval.
    pub block_time: Duration,
    /// The validator's address (checked against the public key).
    pub validator_address: String,
    /// The validator's public key, base64.
    pub validator_pubkey_b64: String,
    /// Its amino type (`tendermint/PubKeySecp256k1` or `tendermint/PubKeyEd25519`).
    pub validator_pubkey_type: String,
    /// Where `ledger.json` is kept.
    pub dir: PathBuf,
    /// Chain id.
    pub chain_id: String,
    /// Heights that exist at start.
    pub initial_height: u64,
    /// Exit when this process is gone.
    pub watch_pid: Option<i32>,
}

/// Why the chain does not start or stops with an error.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The public key is not a compressed secp256k1 key in base64.
    #[error("--validator-pubkey: {0}")]
    PubKey(String),
    /// Address and key disagree.
    #[error("--validator-address {given} is not the address of the key ({derived})")]
    AddressMismatch {
        /// Given.
        given: String,
        /// From the key.
        derived: String,
    },
    /// Cannot bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Cannot create the directory.
    #[error("cannot create {}: {source}", path.display())]
    Dir {
        /// Directory.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Server failure.
    #[error("server: {0}")]
    Serve(std::io::Error),
}

struct Inner {
    core: ChainCore,
    dirty: bool,
}

#[derive(Clone)]
struct Ctx {
    inner: Arc<Mutex<Inner>>,
}

impl Ctx {
    /// The core, ticked to now.
    fn now(&self) -> MutexGuard<'_, Inner> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.core.tick(SystemTime::now()).is_some() {
            g.dirty = true;
        }
        g
    }
}

fn parse_pubkey(type_name: &str, b64: &str) -> Result<PublicKey, ChainError> {
    let key_type = KeyType::from_pub_key_type(type_name)
        .ok_or_else(|| ChainError::PubKey(format!("unknown key type {type_name}")))?;
    let bytes = BASE64
        .decode(b64.trim())
        .map_err(|e| ChainError::PubKey(format!("not base64: {e}")))?;
    PublicKey::from_bytes(key_type, &bytes).map_err(|e| ChainError::PubKey(e.to_string()))
}

/// Run the chain until SIGTERM/SIGINT. Prints `listening on http://ADDR` once bound.
pub async fn run_chain(opts: ChainOptions) -> Result<(), ChainError> {
    let validator = parse_pubkey(&opts.validator_pubkey_type, &opts.validator_pubkey_b64)?;
    if !validator
        .address_hex()
        .eq_ignore_ascii_case(opts.validator_address.trim())
    {
        return Err(ChainError::AddressMismatch {
            given: opts.validator_address.clone(),
            derived: validator.address_hex(),
        });
    }
    std::fs::create_dir_all(&opts.dir).map_err(|source| ChainError::Dir {
        path: opts.dir.clone(),
        source,
    })?;
    let core = ChainCore::new(
        ChainConfig {
            chain_id: opts.chain_id.clone(),
            block_time: opts.block_time,
            validator,
            initial_height: opts.initial_height,
        },
        SystemTime::now(),
    );
    let ctx = Ctx {
        inner: Arc::new(Mutex::new(Inner { core, dirty: true })),
    };
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ChainError::Bind {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ChainError::Serve)?;

    let ledger_path = opts.dir.join("ledger.json");
    let ticker_ctx = ctx.clone();
    let tick_every =
        (opts.block_time / 20).clamp(Duration::from_millis(2), Duration::from_millis(20));
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick_every);
        let mut last_save = SystemTime::now();
        loop {
            interval.tick().await;
            let report = {
                let mut g = ticker_ctx.now();
                let due = last_save.elapsed().unwrap_or_default() >= Duration::from_millis(500);
                if g.dirty && due {
                    g.dirty = false;
                    Some(g.core.ledger())
                } else {
                    None
                }
            };
            if let Some(report) = report {
                last_save = SystemTime::now();
                save_ledger(&ledger_path, &report);
            }
        }
    });

    let app = Router::new()
        .route("/head", get(head))
        .route("/vote", post(vote))
        .route("/commit", get(commit))
        .route("/halt", post(halt))
        .route("/resume", post(resume))
        .route("/ledger", get(ledger))
        .route("/health", get(|| async { Json(json!({"ok": true})) }))
        .with_state(ctx.clone());
    crate::print_listening(addr);
    tracing::info!(%addr, chain_id = %opts.chain_id, "chain running");
    let watch = opts.watch_pid;
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let why = procs::shutdown_signal(watch).await;
            tracing::info!(%why, "chain stopping");
        })
        .await
        .map_err(ChainError::Serve);
    let report = ctx.now().core.ledger();
    save_ledger(&opts.dir.join("ledger.json"), &report);
    served
}

fn save_ledger(path: &std::path::Path, report: &LedgerReport) {
    match serde_json::to_vec_pretty(report) {
        Ok(bytes) => {
            if let Err(e) = write_atomic(path, &bytes) {
                tracing::warn!(error = %e, path = %path.display(), "cannot write the ledger file");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot serialise the ledger"),
    }
}

async fn head(State(ctx): State<Ctx>) -> Json<Head> {
    Json(ctx.now().core.head())
}

async fn vote(State(ctx): State<Ctx>, Json(msg): Json<VoteMsg>) -> Json<VoteReceipt> {
    let mut g = ctx.now();
    let receipt = g.core.vote(&msg, SystemTime::now());
    g.dirty = true;
    if !matches!(
        receipt.outcome,
        crate::api::VoteOutcome::Recorded | crate::api::VoteOutcome::Duplicate
    ) {
        tracing::warn!(node = %msg.node, h = msg.height, r = msg.round, outcome = ?receipt.outcome, detail = %receipt.detail, "vote");
    }
    Json(receipt)
}

#[derive(Deserialize)]
struct HeightQuery {
    height: Option<u64>,
}

async fn commit(State(ctx): State<Ctx>, Query(q): Query<HeightQuery>) -> Response {
    let g = ctx.now();
    let height = q.height.unwrap_or_else(|| g.core.height());
    match g.core.commit(height) {
        Some(c) => Json(c).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no commit at height {height} (head is {})", g.core.height())})),
        )
            .into_response(),
    }
}

async fn halt(State(ctx): State<Ctx>) -> Json<Head> {
    let mut g = ctx.now();
    g.core.halt(SystemTime::now());
    tracing::info!(height = g.core.height(), "chain halted");
    Json(g.core.head())
}

async fn resume(State(ctx): State<Ctx>) -> Json<Head> {
    let mut g = ctx.now();
    g.core.resume(SystemTime::now());
    tracing::info!(height = g.core.height(), "chain resumed");
    Json(g.core.head())
}

async fn ledger(State(ctx): State<Ctx>) -> Json<LedgerReport> {
    Json(ctx.now().core.ledger())
}
