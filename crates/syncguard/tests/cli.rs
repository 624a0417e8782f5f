//! The `syncguard` binary as an operator runs it: exit codes and what it prints.

use std::path::PathBuf;
use std::process::{Command, Output};

fn syncguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_syncguard"))
        .args(args)
        .output()
        .expect("the syncguard binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/privval")
        .join(name)
        .display()
        .to_string()
}

fn example_config() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/config-story.yaml")
        .display()
        .to_string()
}

#[test]
fn config_check_offline_accepts_the_seed_config() {
    let out = syncguard(&[
        "config",
        "check",
        "--config",
        &example_config(),
        "--offline",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("valid"));
}

#[test]
fn config_check_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = std::fs::read_to_string(example_config()).expect("example config");
    let broken = seed
        .replace("retry_attempts: 3", "retry_attempts: 0")
        .replace("port: 8080", "port: -1")
        .replace("health_check_interval: 5", "health_check_intervall: 5")
        .replace("192.168.1.2:8080", "192.168.1.2")
        .replace("role: \"primary\"", "role: \"secondary\"");
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, broken).expect("write");
    let out = syncguard(&[
        "config",
        "check",
        "--config",
        &path.display().to_string(),
        "--offline",
    ]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    for needle in [
        "(5 problems)",
        "failover.retry_attempts: must be at least 1",
        "server.port: invalid value",
        "failover.health_check_intervall: unknown key; did you mean `health_check_interval`?",
        "communication.peers[0].address:",
        "server.role: is `secondary` but story.is_primary_site is true",
    ] {
        assert!(said.contains(needle), "missing {needle:?} in:\n{said}");
    }
}

#[test]
fn config_check_online_reports_missing_files_on_this_host() {
    let out = syncguard(&["config", "check", "--config", &example_config()]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("story.validator_state_path:"), "{said}");
    assert!(
        said.contains("`story run` fails without a state file"),
        "{said}"
    );
}

#[test]
fn config_check_of_a_missing_file_is_a_clear_error() {
    let out = syncguard(&[
        "config",
        "check",
        "--config",
        "/nonexistent/x.yaml",
        "--offline",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("cannot read config file /nonexistent/x.yaml"));
}

#[test]
fn validator_state_show_prints_hrs_of_the_fixtures() {
    let out = syncguard(&[
        "state",
        "show",
        "--file",
        &fixture("privval_state_h36_precommit_cometbft_docs.json"),
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("height:    36") && said.contains("step:      3 (precommit)"),
        "{said}"
    );

    let out = syncguard(&[
        "state",
        "show",
        "--json",
        "--file",
        &fixture("privval_state_initial_cometbft_docs.json"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(v["height"], 0);
    assert_eq!(v["signed"], false);
}

#[test]
fn validator_state_verify_accepts_fixtures_and_rejects_bad_files() {
    let out = syncguard(&[
        "state",
        "verify",
        "--file",
        &fixture("privval_state_h36_precommit_cometbft_docs.json"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("chain test-chain-HfdKnD"));

    let dir = tempfile::tempdir().expect("tempdir");
    for (name, body, needle) in [
        ("empty.json", "", "empty"),
        ("truncated.json", "{\"height\":\"3", "truncated"),
        (
            "negative.json",
            "{\"height\":\"-1\",\"round\":0,\"step\":0}",
            "height",
        ),
        (
            "bigstep.json",
            "{\"height\":\"1\",\"round\":0,\"step\":9}",
            "step",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, body).expect("write");
        let out = syncguard(&["state", "verify", "--file", &path.display().to_string()]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        assert!(text(&out).contains(needle), "{name}: {}", text(&out));
    }
    // Sign bytes that do not match the state's height.
    let h36 = std::fs::read_to_string(fixture("privval_state_h36_precommit_cometbft_docs.json"))
        .expect("fixture");
    let path = dir.path().join("moved.json");
    std::fs::write(&path, h36.replace("\"36\"", "\"37\"")).expect("write");
    let out = syncguard(&["state", "verify", "--file", &path.display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn validator_key_show_prints_address_never_the_private_key() {
    let file = fixture("privval_key_secp256k1_cometbft_docs.json");
    let out = syncguard(&["key", "show", "--file", &file]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("E5B4F106D46A46820308C49B5F92DC22D9F9ACFA"),
        "{said}"
    );
    assert!(said.contains("tendermint/PubKeySecp256k1"), "{said}");
    assert!(
        !said.contains("Lfa2uW//4KGvzLXhtoHGfI5Yd2DA2gC7pOfHSkFheGg="),
        "private key printed"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let tampered = std::fs::read_to_string(&file)
        .expect("fixture")
        .replace("E5B4F1", "E5B4F2");
    let path = dir.path().join("k.json");
    std::fs::write(&path, tampered).expect("write");
    let out = syncguard(&["key", "show", "--file", &path.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out).contains("Lfa2uW//4KGvzLXhtoHGfI5Yd2DA2gC7pOfHSkFheGg="));

    let enc = dir.path().join("priv_validator_key.enc");
    std::fs::write(&enc, b"\x01\x02 not json").expect("write");
    let out = syncguard(&["key", "show", "--file", &enc.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("encrypted"), "{}", text(&out));
}

#[test]
fn every_command_has_help_and_the_binary_has_a_version() {
    for args in [
        &["--help"][..],
        &["story", "--help"],
        &["state", "--help"],
        &["state", "show", "--help"],
        &["state", "verify", "--help"],
        &["key", "--help"],
        &["key", "show", "--help"],
        &["config", "--help"],
        &["config", "check", "--help"],
    ] {
        let out = syncguard(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("Usage:"), "{args:?}");
    }
    let out = syncguard(&["--version"]);
    assert!(text(&out).starts_with("syncguard "));
    let out = syncguard(&["story", "--config", "x.yaml", "--role", "leader"]);
    assert_eq!(out.status.code(), Some(2), "clap rejects an unknown role");
    assert!(text(&out).contains("not a role"));
}

#[test]
fn man_writes_one_page_per_visible_command_from_the_clap_definitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = syncguard(&["man", "--dir", &dir.path().display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    // The commands `--help` lists (hidden ones, like `man` itself, are not there).
    let help = text(&syncguard(&["--help"]));
    assert!(!help.contains("\n  man "), "man is hidden:\n{help}");
    let commands: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands: section")
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(
        commands.contains(&"story") && commands.contains(&"init"),
        "{commands:?}"
    );
    for page in std::iter::once("syncguard.1".to_string())
        .chain(commands.iter().map(|c| format!("syncguard-{c}.1")))
        .chain([
            "syncguard-config-check.1".to_string(),
            "syncguard-state-verify.1".to_string(),
        ])
    {
        assert!(pages.contains(&page), "no {page} in {pages:?}");
    }
    for hidden in ["syncguard-devnet.1", "syncguard-man.1"] {
        assert!(
            !pages.contains(&hidden.to_string()),
            "{hidden} in {pages:?}"
        );
    }
    // What --help says is in the page.
    let page = std::fs::read_to_string(dir.path().join("syncguard-config-check.1")).expect("page");
    assert!(page.contains("offline"), "{page}");
    assert!(page.contains("Validate a config file"), "{page}");
}
