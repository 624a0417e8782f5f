//! The devnet as processes: real binaries, real HTTP, read with the product's own clients.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use syncguard_devnet::{Devnet, DevnetOptions, Launcher, OffenseKind, RpcFault, RpcFaultMode};
use syncguard_health::{fetch_witness, CometClient, EvmClient, EvmSyncing, ProbeError};
use syncguard_validator::{verify_state, Hrs, SignState, Step, ValidatorKey};

/// The devnet runs inside the product's binary: `syncguard devnet …`.
const BIN: &str = env!("CARGO_BIN_EXE_syncguard");
const T: Duration = Duration::from_secs(20);

fn opts(hosts: usize, block_ms: u64) -> DevnetOptions {
    let mut o = DevnetOptions::new(Launcher::with_prefix(BIN, ["devnet"]));
    o.hosts = hosts;
    o.block_time = Duration::from_millis(block_ms);
    o.node_restart = Duration::from_millis(100);
    o
}

/// Poll `f` every 20 ms until it returns Some, or panic after `T`.
async fn until<F, Fut, R>(what: &str, mut f: F) -> R
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<R>>,
{
    let deadline = Instant::now() + T;
    loop {
        if let Some(r) = f().await {
            return r;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A devnet whose host-a has signed `heights` committed heights.
async fn signing(o: DevnetOptions, heights: u64) -> Devnet {
    let devnet = Devnet::start(o).await.unwrap();
    until("host-a signing", || async {
        let l = devnet.ledger().await.unwrap();
        (l.signed_heights >= heights).then_some(())
    })
    .await;
    devnet
}

fn comet(url: &str) -> CometClient {
    CometClient::new(url, Duration::from_secs(2)).unwrap()
}

/// Make the live key of host `i` the validator's (a promotion done by hand).
fn install_validator_key(devnet: &Devnet, i: usize) {
    let h = devnet.host(i).unwrap();
    std::fs::remove_file(&h.live_key).unwrap();
    std::fs::copy(&h.key_store, &h.live_key).unwrap();
}

fn run_node_directly(home: &Path) -> std::process::Output {
    Command::new(BIN)
        .args([
            "devnet",
            "node",
            "--chain",
            "http://127.0.0.1:9",
            "--rpc-listen",
            "127.0.0.1:0",
        ])
        .arg("--home")
        .arg(home)
        .output()
        .unwrap()
}

#[test]
fn devnet_node_refuses_to_start_without_state_file_or_with_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    std::fs::create_dir_all(home.join("config")).unwrap();
    std::fs::create_dir_all(home.join("data")).unwrap();
    let key_file = home.join("config/priv_validator_key.json");
    ValidatorKey::generate_secp256k1()
        .save_new(&key_file)
        .unwrap();

    let out = run_node_directly(home);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("priv_validator_state.json"), "{err}");

    std::fs::write(
        home.join("data/priv_validator_state.json"),
        SignState::initial().to_json(),
    )
    .unwrap();
    std::fs::write(&key_file, "{\"address\": \"00\"").unwrap();
    let out = run_node_directly(home);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("validator key"));

    std::fs::remove_file(&key_file).unwrap();
    std::fs::write(home.join("config/priv_validator_key.enc"), "ciphertext").unwrap();
    let out = run_node_directly(home);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("encrypted"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_validator_node_signs_monotonically_and_commits_show_it() {
    let devnet = Devnet::start(opts(2, 150)).await.unwrap();
    let validator = devnet.validator_address().to_string();
    let a = devnet.host(0).unwrap().clone();
    let b = devnet.host(1).unwrap().clone();

    // /status as the product reads it: the live key's address and power.
    let sa = comet(&a.comet_rpc_url).status().await.unwrap();
    assert_eq!(sa.validator_address, validator);
    assert_eq!(sa.voting_power, 10);
    assert_eq!(
        sa.validator_pub_key_type.as_deref(),
        Some("tendermint/PubKeySecp256k1")
    );
    assert!(!sa.catching_up);
    assert!(sa.latest_block_time.is_some());
    let sb = comet(&b.comet_rpc_url).status().await.unwrap();
    assert_ne!(sb.validator_address, validator);
    assert_eq!(sb.voting_power, 0);

    // The state file only ever moves up, and always describes what it claims.
    let start = devnet.head().await.unwrap().height;
    let mut last = Hrs::new(0, 0, Step::None);
    let mut changes = 0;
    while devnet.head().await.unwrap().height < start + 6 {
        let s = SignState::load(&a.state_file).unwrap();
        assert!(
            s.hrs() >= last,
            "state went back: {} after {}",
            s.hrs(),
            last
        );
        if s.hrs() > last {
            changes += 1;
            verify_state(&s).unwrap();
        }
        last = s.hrs();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(changes >= 4, "state changed only {changes} times");

    // Every vote the chain has from host-a is at or below what host-a's file holds.
    let ledger = devnet.ledger().await.unwrap();
    let state = SignState::load(&a.state_file).unwrap();
    let voted = ledger.per_node["host-a"].last_height.unwrap();
    assert!(state.hrs().height as u64 >= voted);
    assert!(ledger.is_clean(), "{ledger:#?}");
    assert_eq!(ledger.per_node.len(), 1, "only host-a signs: {ledger:#?}");
    assert!(ledger.signed_heights >= 3, "{ledger:#?}");
    assert_eq!(ledger.per_node["host-a"].in_commits, ledger.signed_heights);

    // The product's witness, read through host-b (a full node), sees the signatures.
    let head = comet(&b.comet_rpc_url)
        .status()
        .await
        .unwrap()
        .latest_block_height;
    let w = fetch_witness(&comet(&b.comet_rpc_url), &validator, 3)
        .await
        .unwrap();
    assert!(w.signed_recently(), "{w:#?}");
    // One of the last commits carries the validator's signature (a vote that came late under
    // load misses one commit: CI saw head - 1 without it once).
    let mut commits = Vec::new();
    for h in (head - 3)..head {
        commits.push(comet(&b.comet_rpc_url).commit(h).await.unwrap());
    }
    assert!(commits.iter().all(|c| c.canonical), "{commits:#?}");
    assert!(
        commits.iter().any(|c| c.signed_by(&validator)),
        "{commits:#?}"
    );
    // History before the validator started is unsigned.
    assert!(!comet(&b.comet_rpc_url)
        .commit(2)
        .await
        .unwrap()
        .signed_by(&validator));
    // Above the head: CometBFT's error.
    let e = comet(&b.comet_rpc_url)
        .commit(head + 1000)
        .await
        .unwrap_err();
    assert!(matches!(e, ProbeError::JsonRpc { .. }), "{e}");

    // Peers as configured, settable at runtime.
    assert_eq!(comet(&a.comet_rpc_url).net_info().await.unwrap().n_peers, 5);
    devnet.set_peers(0, 1).await.unwrap();
    assert_eq!(comet(&a.comet_rpc_url).net_info().await.unwrap().n_peers, 1);

    // Slow or broken RPC, as the product's probes classify it.
    let fault = |delay_ms, mode| RpcFault { delay_ms, mode };
    devnet
        .set_rpc_fault(1, fault(0, RpcFaultMode::Error))
        .await
        .unwrap();
    let e = comet(&b.comet_rpc_url).status().await.unwrap_err();
    assert!(matches!(e, ProbeError::JsonRpc { .. }), "{e}");
    devnet
        .set_rpc_fault(1, fault(0, RpcFaultMode::Garbage))
        .await
        .unwrap();
    let e = comet(&b.comet_rpc_url).status().await.unwrap_err();
    assert!(matches!(e, ProbeError::MalformedBody { .. }), "{e}");
    devnet
        .set_rpc_fault(1, fault(600, RpcFaultMode::Ok))
        .await
        .unwrap();
    let quick = CometClient::new(&b.comet_rpc_url, Duration::from_millis(200)).unwrap();
    let e = quick.status().await.unwrap_err();
    assert!(matches!(e, ProbeError::Timeout { .. }), "{e}");
    devnet.set_rpc_fault(1, RpcFault::default()).await.unwrap();
    quick.status().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_devnet_two_nodes_with_the_validator_key_are_flagged() {
    let mut o = opts(2, 150);
    o.validator_hosts = vec![0, 1];
    let devnet = Devnet::start(o).await.unwrap();
    let ledger = until("S1 violations and double signs", || async {
        let l = devnet.ledger().await.unwrap();
        (l.s1_violations >= 2 && l.double_signs >= 2).then_some(l)
    })
    .await;
    assert!(!ledger.is_clean());
    assert!(ledger
        .offenses
        .iter()
        .any(|o| o.kind == OffenseKind::S1Violation));
    assert!(ledger.offenses.iter().any(|o| matches!(
        o.kind,
        OffenseKind::DuplicateSigner | OffenseKind::Equivocation
    )));
    assert!(ledger.per_node.contains_key("host-a") && ledger.per_node.contains_key("host-b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_devnet_cut_node_equivocates_with_a_second_signer_after_heal() {
    let devnet = signing(opts(2, 150), 1).await;

    // A chain-wide halt, and host-a cut off once it has seen the last block: it stays at
    // the height in flight and keeps voting nil in new rounds, held back.
    let halted = devnet.halt().await.unwrap();
    until("host-a to see the halted head", || async {
        (devnet.node_info(0).await.unwrap().height == halted.height).then_some(())
    })
    .await;
    let info = devnet.set_cut(0, true).await.unwrap();
    assert!(info.cut);
    assert_eq!(
        comet(&devnet.host(0).unwrap().comet_rpc_url)
            .net_info()
            .await
            .unwrap()
            .n_peers,
        0
    );

    // The split brain: host-b gets the validator key and starts signing too.
    devnet.stop_node(1).await.unwrap();
    install_validator_key(&devnet, 1);
    devnet.start_node(1).await.unwrap();
    devnet.wait_node_ready(1, T).await.unwrap();
    until("both nodes signing in later rounds", || async {
        let a = devnet.node_info(0).await.unwrap();
        let b = devnet.node_info(1).await.unwrap();
        (a.votes_held >= 6 && b.votes_delivered >= 6).then_some(())
    })
    .await;
    // Nothing from the cut node reached the chain yet: no double sign visible.
    assert_eq!(devnet.ledger().await.unwrap().equivocations, 0);
    let a_height = devnet.node_info(0).await.unwrap().height;
    assert_eq!(a_height, halted.height, "a cut node sees no new block");

    // Heal: the held votes arrive, and the ledger shows the equivocation.
    devnet.set_cut(0, false).await.unwrap();
    let ledger = until("an equivocation", || async {
        let l = devnet.ledger().await.unwrap();
        (l.equivocations >= 1).then_some(l)
    })
    .await;
    let o = ledger
        .offenses
        .iter()
        .find(|o| o.kind == OffenseKind::Equivocation)
        .unwrap();
    assert_eq!(o.height, halted.proposal.height);
    assert!(o.nodes.contains(&"host-a".to_string()) && o.nodes.contains(&"host-b".to_string()));
    assert!(o.block_hashes.contains(&None), "one side voted nil: {o:#?}");
    assert!(ledger.s1_violations >= 1);
    assert!(ledger.double_signs >= ledger.equivocations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_devnet_muted_validator_votes_reach_the_ledger_not_commits() {
    let devnet = signing(opts(2, 150), 1).await;
    let validator = devnet.validator_address().to_string();
    let a = devnet.host(0).unwrap().clone();
    let in_commits = |l: &syncguard_devnet::LedgerReport| l.per_node["host-a"].in_commits;

    let info = devnet.set_muted(0, true).await.unwrap();
    assert!(info.muted && !info.cut);
    // A precommit released just before the mute may still make the next commit.
    let muted_at = devnet.head().await.unwrap().height;
    devnet.wait_for_height(muted_at + 2, T).await.unwrap();
    let before = devnet.ledger().await.unwrap();
    let state_before = SignState::load(&a.state_file).unwrap().hrs();
    let from = muted_at + 3;
    devnet.wait_for_height(from + 4, T).await.unwrap();
    let muted = devnet.ledger().await.unwrap();

    // It still follows the chain and votes at every height: the ledger has its votes...
    let node = &muted.per_node["host-a"];
    assert!(node.muted_votes >= 8, "{node:#?}");
    assert!(node.last_height.unwrap() >= from + 4, "{node:#?}");
    assert!(SignState::load(&a.state_file).unwrap().hrs() > state_before);
    let status = comet(&a.comet_rpc_url).status().await.unwrap();
    assert!(!status.catching_up);
    // Its view trails the chain by at most one poll (a quarter block).
    assert!(status.latest_block_height >= from + 3);
    assert_eq!(comet(&a.comet_rpc_url).net_info().await.unwrap().n_peers, 5);
    // Nothing held back (it is not cut): a vote signed this instant may be on its way, so
    // the outbox is seen empty once, not at one arbitrary poll.
    until("host-a's outbox empty", || async {
        (devnet.node_info(0).await.unwrap().votes_held == 0).then_some(())
    })
    .await;
    // ...but no commit: its own /commit shows the validator absent.
    assert_eq!(in_commits(&muted), in_commits(&before), "{muted:#?}");
    for h in from..=from + 3 {
        let c = comet(&a.comet_rpc_url).commit(h).await.unwrap();
        assert!(!c.signed_by(&validator), "height {h}: {c:#?}");
    }
    assert!(muted.is_clean(), "{muted:#?}");

    // Unmuted: its signatures are back in the commits.
    let info = devnet.set_muted(0, false).await.unwrap();
    assert!(!info.muted);
    let back = until("host-a back in commits", || async {
        let l = devnet.ledger().await.unwrap();
        (in_commits(&l) >= in_commits(&muted) + 2).then_some(l.last_signed_height?)
    })
    .await;
    // Its own /commit shows it again (once its view has reached that height).
    let c = until("host-a's /commit of a signed height", || async {
        comet(&a.comet_rpc_url).commit(back).await.ok()
    })
    .await;
    assert!(c.signed_by(&validator), "{c:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_devnet_muted_node_and_a_second_signer_are_flagged() {
    let devnet = signing(opts(2, 150), 1).await;
    // The asymmetric cut a failover core must catch: host-a is muted (its commits show the
    // validator absent) and host-b takes the key while host-a still signs.
    devnet.set_muted(0, true).await.unwrap();
    devnet.stop_node(1).await.unwrap();
    install_validator_key(&devnet, 1);
    devnet.start_node(1).await.unwrap();
    devnet.wait_node_ready(1, T).await.unwrap();
    let ledger = until("a double sign by the muted node and host-b", || async {
        let l = devnet.ledger().await.unwrap();
        (l.double_signs >= 2 && l.per_node.get("host-b").is_some_and(|b| b.in_commits >= 2))
            .then_some(l)
    })
    .await;
    let o = ledger
        .offenses
        .iter()
        .find(|o| {
            matches!(
                o.kind,
                OffenseKind::DuplicateSigner | OffenseKind::Equivocation
            )
        })
        .unwrap();
    assert!(o.nodes.contains(&"host-a".to_string()) && o.nodes.contains(&"host-b".to_string()));
    assert!(ledger.s1_violations >= 1);
    // Only host-b's precommits make the commits; host-a's are in the ledger alone.
    assert!(ledger.per_node["host-a"].muted_votes >= 2);
    assert_eq!(
        ledger.signed_heights,
        ledger.per_node["host-a"].in_commits + ledger.per_node["host-b"].in_commits
    );
}

/// The height named by the node's `ErrSignatureFoundInPastBlocks` line in its log.
fn refused_height(log: &str) -> Option<u64> {
    let rest = log.split("signed the commit of height ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_sign_devnet_check_height_refuses_a_recent_signer_starts_after_n_blocks_or_when_off()
{
    const N: u64 = 10;
    let mut o = opts(2, 150);
    o.double_sign_check_height = N;
    let devnet = signing(o, 2).await;
    let validator = devnet.validator_address().to_string();
    let b = devnet.host(1).unwrap().clone();
    let text = std::fs::read_to_string(&b.node_config).unwrap();
    assert!(text.contains("double_sign_check_height = 10"), "{text}");

    // A failover done by hand, at once: host-b starts with the key host-a just signed with.
    devnet.stop_node(0).await.unwrap();
    devnet.stop_node(1).await.unwrap();
    install_validator_key(&devnet, 1);
    devnet.start_node(1).await.unwrap();
    until("host-b's node to refuse and exit", || async {
        (!devnet.node_running(1).await.unwrap()).then_some(())
    })
    .await;
    let log = std::fs::read_to_string(&b.log_file).unwrap();
    assert!(log.contains("found signature from the same key"), "{log}");
    let h = refused_height(&log).unwrap_or_else(|| panic!("no height named: {log}"));
    // Both nodes are down: read the chain itself.
    let commit = devnet.commit(h).await.unwrap();
    let ours = commit.signatures.last().unwrap();
    assert_eq!(
        (ours.block_id_flag, ours.validator_address.as_str()),
        (2, validator.as_str())
    );
    let ledger = devnet.ledger().await.unwrap();
    assert!(!ledger.per_node.contains_key("host-b"), "{ledger:#?}");
    assert!(ledger.last_signed_height.unwrap() - h < N, "{ledger:#?}");

    // N blocks later without a signature of the key, the same start succeeds.
    let last = ledger.last_signed_height.unwrap();
    devnet.wait_for_height(last + N, T).await.unwrap();
    devnet.start_node(1).await.unwrap();
    devnet.wait_node_ready(1, T).await.unwrap();
    until("host-b signing", || async {
        let l = devnet.ledger().await.unwrap();
        (l.per_node.get("host-b")?.in_commits >= 2).then_some(())
    })
    .await;
    assert!(devnet.node_running(1).await.unwrap());

    // Off (0): host-a, its key still live, starts right after host-b signed — once the
    // height host-b last voted at is decided, so the two never vote at one height.
    devnet.stop_node(1).await.unwrap();
    let b_last = devnet.ledger().await.unwrap().per_node["host-b"]
        .last_height
        .unwrap();
    devnet.wait_for_height(b_last, T).await.unwrap();
    let a = devnet.host(0).unwrap().clone();
    std::fs::write(
        &a.node_config,
        "[consensus]\ndouble_sign_check_height = 0\n",
    )
    .unwrap();
    devnet.start_node(0).await.unwrap();
    devnet.wait_node_ready(0, T).await.unwrap();
    let before = devnet.ledger().await.unwrap().per_node["host-a"].in_commits;
    until("host-a signing again", || async {
        let l = devnet.ledger().await.unwrap();
        (l.per_node["host-a"].in_commits >= before + 2).then_some(())
    })
    .await;
    assert!(devnet.ledger().await.unwrap().is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_ctl_start_stop_status_round_trip() {
    let mut o = opts(1, 100);
    o.start_nodes = false;
    let devnet = Devnet::start(o).await.unwrap();
    let h = devnet.host(0).unwrap().clone();
    assert!(!devnet.node_running(0).await.unwrap());

    // The exact configured command strings work through a shell, as SyncGuard runs them.
    let sh = |cmd: &str| Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert_eq!(sh(&h.status_command).code(), Some(3));
    let started = Instant::now();
    assert!(sh(&h.start_command).success());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "start must return at once"
    );
    devnet.wait_node_ready(0, T).await.unwrap();
    assert!(sh(&h.status_command).success());
    let pid = std::fs::read_to_string(&h.pid_file).unwrap();
    // Starting a running node is a no-op.
    devnet.start_node(0).await.unwrap();
    assert_eq!(std::fs::read_to_string(&h.pid_file).unwrap(), pid);

    // A hang: the process lives, the RPC does not answer.
    devnet.pause_node(0).await.unwrap();
    let quick = CometClient::new(&h.comet_rpc_url, Duration::from_millis(300)).unwrap();
    assert!(quick.status().await.is_err());
    assert!(devnet.node_running(0).await.unwrap());
    devnet.resume_node(0).await.unwrap();
    quick.status().await.unwrap();

    // Stop returns once the node is gone.
    assert!(sh(&h.stop_command).success());
    assert!(!devnet.node_running(0).await.unwrap());
    assert!(!h.pid_file.exists());
    let e = quick.status().await.unwrap_err();
    assert!(matches!(e, ProbeError::ConnectionRefused { .. }), "{e}");
    devnet.stop_node(0).await.unwrap();

    // A crash leaves a stale pid file; status says stopped; start works again.
    devnet.start_node(0).await.unwrap();
    devnet.wait_node_ready(0, T).await.unwrap();
    devnet.kill_node(0).await.unwrap();
    assert!(h.pid_file.exists());
    assert!(!devnet.node_running(0).await.unwrap());
    devnet.start_node(0).await.unwrap();
    devnet.wait_node_ready(0, T).await.unwrap();
    let log = std::fs::read_to_string(&h.log_file).unwrap();
    assert!(log.contains("key and state loaded"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_geth_keeps_answering_with_frozen_head_while_node_stopped() {
    let devnet = Devnet::start(opts(1, 100)).await.unwrap();
    let evm = EvmClient::new(&devnet.host(0).unwrap().evm_rpc_url, Duration::from_secs(2)).unwrap();
    let first = until("the EVM head to follow the node", || async {
        let n = evm.block_number().await.ok()?;
        (n > 10).then_some(n)
    })
    .await;
    until("the EVM head to grow", || async {
        (evm.block_number().await.ok()? > first).then_some(())
    })
    .await;
    assert_eq!(evm.syncing().await.unwrap(), EvmSyncing::NotSyncing);
    assert_eq!(evm.peer_count().await.unwrap(), 5);

    devnet.stop_node(0).await.unwrap();
    let frozen = evm.latest_block().await.unwrap();
    let chain_then = devnet.head().await.unwrap().height;
    devnet.wait_for_height(chain_then + 5, T).await.unwrap();
    // Still answering, head where it was.
    assert_eq!(evm.latest_block().await.unwrap(), frozen);
    assert_eq!(evm.block_number().await.unwrap(), frozen.number);
    assert_eq!(evm.syncing().await.unwrap(), EvmSyncing::NotSyncing);

    devnet.start_node(0).await.unwrap();
    until("the EVM head to move again", || async {
        (evm.block_number().await.ok()? > frozen.number + 3).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_drop_kills_every_process() {
    // Other crates find the binary this way (next to their test executable).
    if std::env::var_os(syncguard_devnet::harness::BIN_ENV).is_none() {
        let found = Launcher::locate().unwrap();
        assert_eq!(
            found.program().canonicalize().unwrap(),
            Path::new(BIN).canonicalize().unwrap()
        );
    }
    let devnet = Devnet::start(opts(2, 100)).await.unwrap();
    let pids = devnet.pids();
    assert_eq!(pids.len(), 5, "chain, 2 geths, 2 nodes: {pids:?}");
    let dir = devnet.dir().to_path_buf();
    drop(devnet);
    until("every devnet process to be gone", || async {
        pids.iter().all(|&p| !alive(p)).then_some(())
    })
    .await;
    assert!(!dir.exists(), "temporary directory removed");
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Two `ctl start`s racing on one home (the soak's recovery and a daemon's actuator did, seed
/// 5027) leave one node, and `ctl stop` stops it: the loser never overwrites the pid file, so
/// no node runs unseen (before: the loser claimed the pid file, failed to bind the RPC port
/// and died; the winner ran on, and every later stop, kill and status missed it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_racing_starts_leave_one_node_that_stop_stops() {
    let devnet = Devnet::start(opts(1, 100)).await.unwrap();
    let h = devnet.host(0).unwrap().clone();
    let start = || async {
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&h.start_command)
            .output()
            .await
            .unwrap()
    };
    for round in 0..5 {
        devnet.stop_node(0).await.unwrap();
        let (x, y) = tokio::join!(start(), start());
        for out in [&x, &y] {
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        until("the node's RPC", || async {
            comet(&h.comet_rpc_url).status().await.ok()
        })
        .await;
        assert!(devnet.node_running(0).await.unwrap(), "round {round}");
        devnet.stop_node(0).await.unwrap();
        assert!(!devnet.node_running(0).await.unwrap(), "round {round}");
        assert!(
            comet(&h.comet_rpc_url).status().await.is_err(),
            "round {round}: a node still answers after ctl stop"
        );
    }
}

/// A node whose pid file went wrong (overwritten, as in the soak's seed 5023) is still seen
/// by `status` and stopped by `stop`: the node holding the home's lock is the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_node_with_a_wrong_pid_file_is_still_seen_and_stopped() {
    let devnet = Devnet::start(opts(1, 100)).await.unwrap();
    let h = devnet.host(0).unwrap().clone();
    until("the node's RPC", || async {
        comet(&h.comet_rpc_url).status().await.ok()
    })
    .await;
    std::fs::write(&h.pid_file, "999999 1\n").unwrap();
    assert!(
        devnet.node_running(0).await.unwrap(),
        "the lock holder runs"
    );
    devnet.stop_node(0).await.unwrap();
    assert!(!devnet.node_running(0).await.unwrap());
    assert!(
        comet(&h.comet_rpc_url).status().await.is_err(),
        "the node still answers after ctl stop"
    );
}
