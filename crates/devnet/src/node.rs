//! A simulated Story node (`syncguard devnet node`): what `story` does that SyncGuard can
//! see or break.
//!
//! - Reads `<home>/config/priv_validator_key.json` and `<home>/data/priv_validator_state.json`
//!   ONLY AT START; refuses to start without a state file, with an unreadable key, or with
//!   an encrypted `priv_validator_key.enc` (story would prompt for a password).
//! - Obeys `[consensus] double_sign_check_height` of `<home>/config/config.toml` like
//!   CometBFT v0.38 ([`crate::comet_config`]): a validator node whose key signed one of the
//!   last N-1 commits when it starts exits with an error naming the height.
//! - After its start delay (the restart time), serves a CometBFT-shaped RPC: `/status`,
//!   `/net_info`, `/commit?height=h`, `/health`; plus devnet controls under `/devnet/`.
//! - Follows the chain by polling its head every block_time/4. If its key is the chain's
//!   validator key it signs a prevote and a precommit per (height, round) with FilePV rules
//!   ([`crate::signer`]): state file written before the vote is released. Otherwise it is a
//!   full node.
//! - `POST /devnet/rpc {"delay_ms":N,"mode":"ok"|"error"|"garbage"}` makes the CometBFT routes
//!   slow or broken (the node itself keeps following and signing).
//! - Cut (`POST /devnet/cut {"on":true}`): sees no new block, reports no peers, keeps voting
//!   at its stuck height ([`crate::planner`]) and holds its votes; they reach the chain when
//!   the cut heals.
//! - Mute (`POST /devnet/mute {"on":true}`, an asymmetric cut): the node still sees every
//!   block, reports its peers and votes at every height, and its votes still leave it (the
//!   ledger records them: some validators may get them, so a conflicting vote by another
//!   node is a real double sign), but they never make it into a commit.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use syncguard_validator::{KeyError, SignState, StateError, StateErrorKind, ValidatorKey};
use tokio::sync::watch;

use crate::api::{BlockCommit, Head, VoteMsg, VoteReceipt};
use crate::comet_json::{self, NodeIdentity};
use crate::planner::VotePlanner;
use crate::procs;
use crate::signer::Signer;
use crate::vote::VoteType;

/// Voting power shown in `/status` by a node that runs the validator key.
pub const VALIDATOR_VOTING_POWER: u64 = 10;

/// Options of `syncguard devnet node`.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// CometBFT home: `config/priv_validator_key.json`, `data/priv_validator_state.json`.
    pub home: PathBuf,
    /// The chain's base URL.
    pub chain_url: String,
    /// Where the RPC listens.
    pub rpc_listen: SocketAddr,
    /// `n_peers` reported (settable at runtime).
    pub peers: u64,
    /// Start delay before the RPC answers and signing begins.
    pub restart: Duration,
    /// Node id used in votes and as moniker.
    pub node_id: String,
    /// Exit when this process is gone (test hygiene).
    pub watch_pid: Option<i32>,
}

/// Why a node does not start or stops with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// `story run` fails without a state file.
    #[error(
        "no validator state file at {}: story cannot start without priv_validator_state.json",
        .0.display()
    )]
    MissingState(PathBuf),
    /// The state file exists but cannot be read.
    #[error("cannot load the validator state: {0}")]
    State(#[from] StateError),
    /// The key file is missing, unreadable, invalid or encrypted.
    #[error("cannot load the validator key: {0}")]
    Key(#[from] KeyError),
    /// The RPC port cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another node runs on this home, or the home's lock or pid file failed.
    #[error("{0}")]
    Home(#[from] crate::ctl::CtlError),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    /// Signing could not persist its state (story panics here).
    #[error("{0}")]
    Sign(#[from] crate::signer::SignError),
    /// The server failed.
    #[error("rpc server: {0}")]
    Serve(std::io::Error),
    /// `config.toml` is unreadable or holds a value CometBFT refuses.
    #[error("{0}")]
    Config(#[from] crate::comet_config::ConfigError),
    /// CometBFT's `ErrSignatureFoundInPastBlocks`: the key signed a recent commit, so
    /// consensus does not start (story exits).
    #[error(
        "found signature from the same key: the validator key signed the commit of height \
         {height}, within double_sign_check_height = {check} of height {start} where consensus \
         would start; refusing to start (CometBFT's ErrSignatureFoundInPastBlocks)"
    )]
    SignedRecently {
        /// The committed height carrying the key's signature.
        height: u64,
        /// The height consensus would start at.
        start: u64,
        /// `double_sign_check_height`.
        check: u64,
    },
}

/// The key file path under a home.
pub fn key_path(home: &Path) -> PathBuf {
    home.join("config/priv_validator_key.json")
}

/// The state file path under a home.
pub fn state_path(home: &Path) -> PathBuf {
    home.join("data/priv_validator_state.json")
}

/// What `story` checks before anything else: the key (plain JSON, valid, not `.enc`) and the
/// state file (present and readable). Read once; never again while the node runs.
pub fn preflight(home: &Path) -> Result<(ValidatorKey, SignState), NodeError> {
    let key_file = key_path(home);
    let enc = key_file.with_extension("enc");
    if enc.exists() {
        // story prefers the encrypted key when present and prompts for its password.
        return Err(NodeError::Key(KeyError {
            path: enc,
            kind: syncguard_validator::KeyErrorKind::Encrypted,
        }));
    }
    let key = ValidatorKey::load(&key_file)?;
    let state_file = state_path(home);
    let state = match SignState::load(&state_file) {
        Ok(s) => s,
        Err(StateError {
            kind: StateErrorKind::Io(e),
            ..
        }) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NodeError::MissingState(state_file))
        }
        Err(e) => return Err(e.into()),
    };
    Ok((key, state))
}

/// What the RPC handlers read; the driver task writes it.
#[derive(Debug)]
struct Shared {
    identity: NodeIdentity,
    view: Head,
    cut: bool,
    muted: bool,
    peers: u64,
    outbox: VecDeque<VoteMsg>,
    signer_state: Option<SignState>,
    votes_signed: u64,
    votes_delivered: u64,
    refusals: u64,
    rpc_fault: RpcFault,
}

#[derive(Clone)]
struct Ctx {
    shared: Arc<Mutex<Shared>>,
    http: reqwest::Client,
    chain: String,
}

impl Ctx {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panicked handler must not take the node down with a poisoned lock.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn fetch_head(http: &reqwest::Client, chain: &str) -> Result<Head, reqwest::Error> {
    http.get(format!("{chain}/head"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}

/// The chain's commit at `height`; None when it has none (404).
async fn fetch_commit(
    http: &reqwest::Client,
    chain: &str,
    height: u64,
) -> Result<Option<BlockCommit>, reqwest::Error> {
    let resp = http
        .get(format!("{chain}/commit"))
        .query(&[("height", height)])
        .send()
        .await?;
    if resp.status() == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    Ok(Some(resp.error_for_status()?.json().await?))
}

/// CometBFT's `checkDoubleSigningRisk` before consensus starts on top of `last_committed`:
/// the first of the checked commits carrying `address`'s commit signature (flag 2) is an
/// error. The chain stands in for the node's block store, so a failed read is retried.
async fn double_sign_check(
    http: &reqwest::Client,
    chain: &str,
    address: &str,
    last_committed: u64,
    check: u64,
) -> Result<(), NodeError> {
    for height in crate::comet_config::check_heights(last_committed, check) {
        let commit = loop {
            match fetch_commit(http, chain, height).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, height, "cannot read a commit to check; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let signed = commit.is_some_and(|c| {
            c.signatures
                .iter()
                .any(|s| s.block_id_flag == 2 && s.validator_address.eq_ignore_ascii_case(address))
        });
        if signed {
            tracing::info!(height, "found signature from the same key");
            return Err(NodeError::SignedRecently {
                height,
                start: last_committed + 1,
                check,
            });
        }
    }
    Ok(())
}

/// Run a node until SIGTERM/SIGINT (Ok) or a fatal error.
pub async fn run_node(opts: NodeOptions) -> Result<(), NodeError> {
    // First thing: one node per home (a duplicate exits here, touching nothing).
    let _claim = crate::ctl::claim_home(&opts.home)?;
    let (key, state) = preflight(&opts.home)?;
    let check = crate::comet_config::read_double_sign_check_height(&opts.home)?;
    tracing::info!(
        node = %opts.node_id, address = %key.address_hex(), state = %state.hrs(),
        "key and state loaded; starting"
    );
    let shutdown = procs::shutdown_signal(opts.watch_pid);
    tokio::pin!(shutdown);

    // The restart time: nothing answers until it has passed.
    tokio::select! {
        _ = tokio::time::sleep(opts.restart) => {}
        why = &mut shutdown => { tracing::info!(%why, "stopped during start"); return Ok(()); }
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let chain = opts.chain_url.trim_end_matches('/').to_string();
    let mut warned = false;
    let head = loop {
        tokio::select! {
            r = fetch_head(&http, &chain) => match r {
                Ok(h) => break h,
                Err(e) => {
                    // Once: the node retries every 100 ms and the log should stay readable.
                    if !warned {
                        tracing::warn!(error = %e, "chain not reachable yet; retrying");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            why = &mut shutdown => { tracing::info!(%why, "stopped during start"); return Ok(()); }
        }
    };

    let is_validator = key.address_hex() == head.validator_address;
    if is_validator && check > 0 {
        let address = key.address_hex();
        tokio::select! {
            r = double_sign_check(&http, &chain, &address, head.height, check) => r?,
            why = &mut shutdown => { tracing::info!(%why, "stopped during start"); return Ok(()); }
        }
    }
    let identity = NodeIdentity {
        moniker: opts.node_id.clone(),
        address: key.address_hex(),
        pub_key_b64: key.public_key().to_base64(),
        pub_key_type: key.key_type().pub_key_type(),
        voting_power: if is_validator {
            VALIDATOR_VOTING_POWER
        } else {
            0
        },
        rpc_address: format!("tcp://{}", opts.rpc_listen),
    };
    let block_time = Duration::from_millis(head.block_time_ms.max(1));
    let signer = is_validator.then(|| {
        Signer::new(
            key,
            state.clone(),
            &state_path(&opts.home),
            &head.chain_id,
            &opts.node_id,
        )
    });
    tracing::info!(
        is_validator,
        "following the chain at height {}",
        head.height
    );

    let ctx = Ctx {
        shared: Arc::new(Mutex::new(Shared {
            identity,
            view: head,
            cut: false,
            muted: false,
            peers: opts.peers,
            outbox: VecDeque::new(),
            signer_state: is_validator.then_some(state),
            votes_signed: 0,
            votes_delivered: 0,
            refusals: 0,
            rpc_fault: RpcFault::default(),
        })),
        http,
        chain,
    };

    let listener = tokio::net::TcpListener::bind(opts.rpc_listen)
        .await
        .map_err(|source| NodeError::Bind {
            addr: opts.rpc_listen,
            source,
        })?;
    let app = router(ctx.clone());
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let driver = tokio::spawn(drive(ctx, signer, block_time, stop_rx.clone()));
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    });
    let server = tokio::spawn(async move { server.await });

    tokio::select! {
        why = &mut shutdown => {
            tracing::info!(%why, "stopping");
            let _ = stop_tx.send(true);
            let _ = server.await;
            Ok(())
        }
        res = driver => {
            let _ = stop_tx.send(true);
            match res {
                Ok(Err(e)) => Err(e),
                // The driver only returns on error or stop; a panic is a crash of the node.
                _ => Ok(()),
            }
        }
    }
}

/// The node's main loop: follow the head, sign, deliver.
async fn drive(
    ctx: Ctx,
    mut signer: Option<Signer>,
    block_time: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), NodeError> {
    let mut planner = VotePlanner::new(block_time);
    let mut interval = tokio::time::interval((block_time / 4).max(Duration::from_millis(10)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        let cut = ctx.lock().cut;
        if !cut {
            if let Ok(head) = fetch_head(&ctx.http, &ctx.chain).await {
                let mut s = ctx.lock();
                // A cut may have started while we were fetching: then the view stays frozen.
                if !s.cut {
                    s.view = head;
                }
            }
        }
        let (proposal, cut) = {
            let s = ctx.lock();
            (s.view.proposal.clone(), s.cut)
        };
        if let Some(signer) = signer.as_mut() {
            for round in planner.plan(&proposal, cut, SystemTime::now()) {
                for vote_type in [VoteType::Prevote, VoteType::Precommit] {
                    match signer.sign_vote(
                        vote_type,
                        round.height,
                        round.round,
                        round.block_hash,
                        SystemTime::now(),
                    ) {
                        Ok(vote) => {
                            let mut s = ctx.lock();
                            s.signer_state = Some(signer.state().clone());
                            s.votes_signed += 1;
                            s.outbox.push_back(vote);
                        }
                        Err(e) if e.is_refusal() => {
                            tracing::warn!(error = %e, "vote not signed");
                            ctx.lock().refusals += 1;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot persist the sign state; exiting");
                            return Err(e.into());
                        }
                    }
                }
            }
        }
        deliver(&ctx).await;
    }
}

/// Send held votes in order; stop at the first failure (retried next tick). Nothing leaves a
/// cut node.
async fn deliver(ctx: &Ctx) {
    loop {
        let vote = {
            let s = ctx.lock();
            if s.cut {
                return;
            }
            match s.outbox.front() {
                // Muted or not is how the vote travels now, not when it was signed.
                Some(v) => VoteMsg {
                    muted: s.muted,
                    ..v.clone()
                },
                None => return,
            }
        };
        let sent = ctx
            .http
            .post(format!("{}/vote", ctx.chain))
            .json(&vote)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                if let Ok(receipt) = r.json::<VoteReceipt>().await {
                    tracing::debug!(?receipt.outcome, h = vote.height, r = vote.round, "vote delivered");
                }
                let mut s = ctx.lock();
                s.outbox.pop_front();
                s.votes_delivered += 1;
            }
            _ => return,
        }
    }
}

fn router(ctx: Ctx) -> Router {
    let comet = Router::new()
        .route("/status", get(status))
        .route("/net_info", get(net_info))
        .route("/commit", get(commit))
        .route("/health", get(health))
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            rpc_faults,
        ));
    Router::new()
        .merge(comet)
        .route("/devnet/cut", post(set_cut))
        .route("/devnet/mute", post(set_muted))
        .route("/devnet/peers", post(set_peers))
        .route("/devnet/rpc", post(set_rpc_fault))
        .route("/devnet/info", get(info))
        .fallback(not_found)
        .with_state(ctx)
}

/// How the CometBFT routes misbehave (`POST /devnet/rpc`): the devnet controls stay sane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcFault {
    /// Delay before every answer, ms (a slow or hung RPC).
    #[serde(default)]
    pub delay_ms: u64,
    /// What the answer is.
    #[serde(default)]
    pub mode: RpcFaultMode,
}

/// The answer of a faulty RPC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RpcFaultMode {
    /// Normal answers.
    #[default]
    Ok,
    /// HTTP 500 with a JSON-RPC internal error.
    Error,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
}

async fn rpc_faults(
    State(ctx): State<Ctx>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let fault = ctx.lock().rpc_fault;
    if fault.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
    }
    match fault.mode {
        RpcFaultMode::Ok => next.run(req).await,
        RpcFaultMode::Error => rpc_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            -32603,
            "Internal error",
            Some("devnet: injected RPC failure".into()),
        ),
        RpcFaultMode::Garbage => (StatusCode::OK, "<html>502 Bad Gateway</html>").into_response(),
    }
}

async fn set_rpc_fault(State(ctx): State<Ctx>, Json(req): Json<RpcFault>) -> Json<NodeInfo> {
    let mut s = ctx.lock();
    s.rpc_fault = req;
    tracing::info!(?req, "rpc fault changed");
    Json(node_info(&s))
}

fn rpc_error(status: StatusCode, code: i64, message: &str, data: Option<String>) -> Response {
    (status, Json(comet_json::error(code, message, data))).into_response()
}

async fn not_found() -> Response {
    rpc_error(StatusCode::NOT_FOUND, -32601, "Method not found", None)
}

async fn status(State(ctx): State<Ctx>) -> Json<Value> {
    let s = ctx.lock();
    Json(comet_json::envelope(comet_json::status(
        &s.identity,
        &s.view,
    )))
}

async fn net_info(State(ctx): State<Ctx>) -> Json<Value> {
    let s = ctx.lock();
    // A cut-off host has lost its peers.
    let peers = if s.cut { 0 } else { s.peers };
    Json(comet_json::envelope(comet_json::net_info(peers)))
}

async fn health() -> Json<Value> {
    Json(comet_json::envelope(json!({})))
}

#[derive(Deserialize)]
struct HeightQuery {
    height: Option<String>,
}

async fn commit(State(ctx): State<Ctx>, Query(q): Query<HeightQuery>) -> Response {
    let (latest, chain_id) = {
        let s = ctx.lock();
        (s.view.height, s.view.chain_id.clone())
    };
    let height = match q.height.as_deref().map(|h| h.trim().trim_matches('"')) {
        None | Some("") => latest,
        Some(text) => match text.parse::<i64>() {
            Ok(h) => {
                if h <= 0 {
                    return rpc_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        -32603,
                        "Internal error",
                        Some(format!("height must be greater than 0, but got {h}")),
                    );
                }
                h as u64
            }
            Err(e) => {
                return rpc_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    -32602,
                    "Invalid params",
                    Some(format!("error converting http params to arguments: {e}")),
                )
            }
        },
    };
    if height > latest {
        return rpc_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            -32603,
            "Internal error",
            Some(format!(
                "height {height} must be less than or equal to the current blockchain height {latest}"
            )),
        );
    }
    let fetched = async {
        ctx.http
            .get(format!("{}/commit", ctx.chain))
            .query(&[("height", height)])
            .send()
            .await?
            .error_for_status()?
            .json::<BlockCommit>()
            .await
    }
    .await;
    match fetched {
        Ok(c) => Json(comet_json::envelope(comet_json::commit(
            &chain_id,
            &c,
            height != latest,
        )))
        .into_response(),
        Err(e) => rpc_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            -32603,
            "Internal error",
            Some(format!("could not load commit for height {height}: {e}")),
        ),
    }
}

/// `POST /devnet/cut` and `POST /devnet/mute` body.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct CutRequest {
    /// Cut or mute (true), heal (false).
    pub on: bool,
}

/// `POST /devnet/peers` body.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PeersRequest {
    /// New `n_peers`.
    pub n_peers: u64,
}

/// `GET /devnet/info`: the node's own view, for tests and the demo.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `--node-id`.
    pub node: String,
    /// Key address.
    pub address: String,
    /// Whether the key is the chain's validator key.
    pub is_validator: bool,
    /// Cut off?
    pub cut: bool,
    /// Muted (its votes never make a commit)?
    #[serde(default)]
    pub muted: bool,
    /// Peers reported when not cut.
    pub peers: u64,
    /// Height the node sees.
    pub height: u64,
    /// The in-memory last-sign state (validators only).
    pub sign_state: Option<Value>,
    /// Votes signed since start.
    pub votes_signed: u64,
    /// Votes accepted by the chain since start.
    pub votes_delivered: u64,
    /// Votes held back (cut, or chain unreachable).
    pub votes_held: u64,
    /// Sign requests refused by FilePV rules.
    pub refusals: u64,
    /// The injected RPC fault.
    pub rpc_fault: RpcFault,
}

fn node_info(s: &Shared) -> NodeInfo {
    NodeInfo {
        node: s.identity.moniker.clone(),
        address: s.identity.address.clone(),
        is_validator: s.signer_state.is_some(),
        cut: s.cut,
        muted: s.muted,
        peers: s.peers,
        height: s.view.height,
        sign_state: s.signer_state.as_ref().map(SignState::to_value),
        votes_signed: s.votes_signed,
        votes_delivered: s.votes_delivered,
        votes_held: s.outbox.len() as u64,
        refusals: s.refusals,
        rpc_fault: s.rpc_fault,
    }
}

async fn set_cut(State(ctx): State<Ctx>, Json(req): Json<CutRequest>) -> Json<NodeInfo> {
    let mut s = ctx.lock();
    s.cut = req.on;
    tracing::info!(cut = req.on, "network cut changed");
    Json(node_info(&s))
}

async fn set_muted(State(ctx): State<Ctx>, Json(req): Json<CutRequest>) -> Json<NodeInfo> {
    let mut s = ctx.lock();
    s.muted = req.on;
    tracing::info!(muted = req.on, "mute changed");
    Json(node_info(&s))
}

async fn set_peers(State(ctx): State<Ctx>, Json(req): Json<PeersRequest>) -> Json<NodeInfo> {
    let mut s = ctx.lock();
    s.peers = req.n_peers;
    Json(node_info(&s))
}

async fn info(State(ctx): State<Ctx>) -> Json<NodeInfo> {
    Json(node_info(&ctx.lock()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_preflight_refuses_what_story_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        std::fs::create_dir_all(home.join("config")).unwrap();
        std::fs::create_dir_all(home.join("data")).unwrap();
        // No key.
        assert!(matches!(preflight(home), Err(NodeError::Key(_))));
        let key = ValidatorKey::generate_secp256k1();
        key.save_new(&key_path(home)).unwrap();
        // No state.
        let e = preflight(home).unwrap_err();
        assert!(matches!(e, NodeError::MissingState(_)), "{e}");
        assert!(e.to_string().contains("priv_validator_state.json"));
        // Corrupt state.
        std::fs::write(state_path(home), "{\"height\": \"1\"").unwrap();
        assert!(matches!(preflight(home), Err(NodeError::State(_))));
        std::fs::write(state_path(home), SignState::initial().to_json()).unwrap();
        preflight(home).unwrap();
        // An encrypted key next to the plain one.
        std::fs::write(home.join("config/priv_validator_key.enc"), "x").unwrap();
        let e = preflight(home).unwrap_err();
        assert!(e.to_string().contains("encrypted"), "{e}");
    }
}
