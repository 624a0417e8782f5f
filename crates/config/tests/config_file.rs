//! The config file as an operator writes it: the seed's YAML, defaults, and mistakes.

use std::path::PathBuf;
use std::time::Duration;

use syncguard_config::{from_yaml_str, Config, NodeRole, SiteRole};

/// The YAML block of the original SyncGuard README, read from the file itself so that this
/// test follows the seed rather than a copy of it.
fn seed_yaml() -> String {
    let readme =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/seed/SyncGuard-README.md");
    let text = std::fs::read_to_string(&readme).expect("the seed README is in ../shared/seed");
    let start = text
        .find("```yaml\n")
        .expect("the seed README has a yaml block")
        + "```yaml\n".len();
    let len = text[start..].find("```").expect("the yaml block ends");
    text[start..start + len].to_string()
}

/// The config of valid YAML.
fn valid(yaml: &str) -> Config {
    from_yaml_str(yaml, "test.yaml").expect("valid").config
}

fn problems(yaml: &str) -> Vec<String> {
    match from_yaml_str(yaml, "test.yaml") {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn config_seed_yaml_parses_unchanged() {
    let loaded = from_yaml_str(&seed_yaml(), "seed").expect("the seed config is valid");
    let c = loaded.config;
    assert_eq!(c.server.id, "story-validator-1");
    assert_eq!(c.server.role, Some(SiteRole::Primary));
    assert_eq!(c.server.port, 8080);
    assert_eq!(c.story.comet_rpc_url, "http://localhost:26657");
    assert_eq!(
        c.story.state_path(),
        PathBuf::from("/home/story/.story/story/data/priv_validator_state.json")
    );
    assert_eq!(c.node_role(), NodeRole::Active);
    assert!(c.is_primary_site());
    assert_eq!(c.story.min_peers, 3);
    assert_eq!(c.story.block_interval(), Duration::from_millis(500));
    assert_eq!(c.story.state_sync_interval(), Duration::from_secs(5));
    assert_eq!(c.failover.health_check_interval(), Duration::from_secs(5));
    assert_eq!(c.failover.retry_attempts, 3);
    // The seed's window is its own I × R; everything else is derived without a warning.
    let t = c.timing();
    assert_eq!(t.window, Duration::from_secs(15));
    assert_eq!(t.rpc_timeout, Duration::from_secs(2));
    assert!(t.contact_lag + t.stop_bound < t.window);
    assert_eq!(c.communication.peers.len(), 1);
    assert_eq!(c.communication.peers[0].address, "192.168.1.2:8080");
    assert!(c.logging.verbose && c.logging.enable_alerts);
    // No TLS and alerts without a sink in the seed: warnings, not errors — and no timing
    // warning: every timing the seed does not set is derived.
    let paths: Vec<_> = loaded.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(
        paths,
        ["communication.tls", "logging.enable_alerts"],
        "{:#?}",
        loaded.warnings
    );
}

#[test]
fn config_defaults_fill_every_missing_key() {
    let c = from_yaml_str("server:\n  id: a\n", "t")
        .expect("valid")
        .config;
    assert_eq!(c, {
        let mut d = Config::default();
        d.server.id = "a".into();
        d
    });
    assert_eq!(
        c.node_role(),
        NodeRole::Passive,
        "unset role is the safe one"
    );
    assert_eq!(c.site_role(), SiteRole::Secondary);
    assert_eq!(c.story.witness_blocks, 5);
    assert_eq!(c.story.start_command, "systemctl start story");
    assert_eq!(c.recovery_rounds(), 3);
    assert_eq!(
        c.story.key_path(),
        PathBuf::from("/root/.story/story/config/priv_validator_key.json")
    );
}

#[test]
fn config_five_mistakes_are_all_reported_with_paths() {
    let yaml = seed_yaml()
        .replace("retry_attempts: 3", "retry_attempts: 0")
        .replace("port: 8080", "port: eighty")
        .replace("min_peers: 3", "min_peers: 3\n  min_peer: 4")
        .replace("192.168.1.2:8080", "192.168.1.2")
        .replace("level: \"info\"", "level: \"loud\"");
    let found = problems(&yaml);
    assert_eq!(found.len(), 5, "{found:#?}");
    let has = |needle: &str| found.iter().any(|p| p.starts_with(needle));
    assert!(
        has("failover.retry_attempts: must be at least 1"),
        "{found:#?}"
    );
    assert!(has("server.port: invalid type"), "{found:#?}");
    assert!(
        has("story.min_peer: unknown key; did you mean `min_peers`?"),
        "{found:#?}"
    );
    assert!(has("communication.peers[0].address:"), "{found:#?}");
    assert!(has("logging.level: unknown variant `loud`"), "{found:#?}");
}

#[test]
fn config_unknown_keys_get_suggestions_or_the_right_section() {
    let found = problems(
        "server:\n  id: a\nfailover:\n  retry_attempt: 2\n  min_peers: 2\nstroy:\n  x: 1\n",
    );
    assert!(
        found
            .iter()
            .any(|p| p == "failover.retry_attempt: unknown key; did you mean `retry_attempts`?"),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|p| p
            == "failover.min_peers: unknown key here; `min_peers` belongs in the `story` section"),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p == "stroy: unknown key; did you mean `story`?"),
        "{found:#?}"
    );
}

#[test]
fn config_roles_must_agree_and_use_known_words() {
    let found = problems("server:\n  id: a\n  role: primary\nstory:\n  is_primary_site: false\n");
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("server.role: is `primary` but story.is_primary_site is false")),
        "{found:#?}"
    );
    let found = problems("server:\n  id: a\n  role: leader\nstory:\n  node_role: standby\n");
    assert!(
        found.iter().any(|p| p.starts_with(
            "server.role: unknown variant `leader`, expected `primary` or `secondary`"
        )),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|p| p.starts_with(
            "story.node_role: unknown variant `standby`, expected `active` or `passive`"
        )),
        "{found:#?}"
    );
    // One side given: the other is derived.
    let c = from_yaml_str("server:\n  id: a\nstory:\n  is_primary_site: true\n", "t")
        .expect("valid")
        .config;
    assert_eq!(c.site_role(), SiteRole::Primary);
}

#[test]
fn config_self_fence_timeout_must_exceed_two_blocks() {
    let found = problems(
        "server:\n  id: a\nstory:\n  block_interval: 2400\nfailover:\n  self_fence_timeout: 4\n",
    );
    assert!(
        found.iter().any(|p| p.starts_with("failover.self_fence_timeout: 4 s is less than two blocks (story.block_interval = 2.4 s)") && p.contains("use at least 8.2 s")),
        "{found:#?}"
    );
    // Longer than the window is fine now: it lengthens the witness span, never the risk.
    assert!(problems("server:\n  id: a\nfailover:\n  health_check_interval: 4\n  retry_attempts: 3\n  self_fence_timeout: 20\n").is_empty());
}

#[test]
fn config_timing_only_an_interval_set_gives_no_error_about_keys_never_written() {
    assert!(problems("server:\n  id: a\nfailover:\n  health_check_interval: 1\n").is_empty());
    let found = problems(
        "server:\n  id: a\nfailover:\n  health_check_interval: 1\nhealth:\n  rpc_timeout: 2\n",
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with(
            "health.rpc_timeout: 2 s must be shorter than failover.health_check_interval (1 s)"
        ) && found[0].contains("use at most 400 ms"),
        "{found:#?}"
    );
}

#[test]
fn config_peer_addresses_and_ids_are_checked() {
    let yaml = "server:\n  id: a\ncommunication:\n  insecure: true\n  peers:\n    - id: a\n      address: \"h:1\"\n    - id: b\n      address: \"http://h:1\"\n    - id: b\n      address: \"[::1]:8080\"\n    - id: c\n      address: \"::1:80\"\n    - id: d\n      address: \"h:70000\"\n    - \"e=h:1\"\n";
    let found = problems(yaml);
    for expected in [
        "communication.peers[0].id: `a` is this node's own server.id",
        "communication.peers[1].address:",
        "communication.peers[2].id: `b` is listed twice",
        "communication.peers[3].address:",
        "communication.peers[4].address:",
        "communication.peers[5]: invalid type",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "missing {expected}: {found:#?}"
        );
    }
    assert_eq!(found.len(), 6, "{found:#?}");
}

#[test]
fn config_broken_yaml_and_odd_documents_are_clear_errors() {
    for (yaml, needle) in [
        ("server: [", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping of sections"),
        (
            "server: 5\n",
            "server: invalid type: integer `5`, expected a section of keys",
        ),
        ("server:\n  id: a\n  id: b\n", "not valid YAML"),
        (
            "story:\n  block_interval: -5\n",
            "story.block_interval: invalid value",
        ),
        (
            "failover:\n  health_check_interval: .nan\n",
            "failover.health_check_interval: must be a positive number",
        ),
        (
            "story:\n  retry_attempts: 99999999999999999999999\n",
            "story.retry_attempts:",
        ),
    ] {
        let found = problems(yaml);
        assert!(
            found.iter().any(|p| p.contains(needle)),
            "{yaml:?} → {found:#?}"
        );
    }
}

#[test]
fn config_empty_values_mean_defaults() {
    let c = from_yaml_str("server:\n  id: a\ncommunication:\n  tls:\nlogging:\n", "t")
        .expect("valid")
        .config;
    assert_eq!(c.communication.tls, None);
    assert_eq!(c.logging, Config::default().logging);
}

#[test]
fn config_kill_command_is_derived_from_systemctl_or_required() {
    let c = valid("server:\n  id: a\n");
    assert_eq!(c.story.kill_command, None);
    assert_eq!(
        c.story.kill_command().as_deref(),
        Some("systemctl kill --signal=SIGKILL story")
    );

    let c = valid("server:\n  id: a\nstory:\n  stop_command: \"sudo systemctl stop --no-block story.service\"\n");
    assert_eq!(
        c.story.kill_command().as_deref(),
        Some("sudo systemctl kill --signal=SIGKILL story.service")
    );

    // Not derivable: the operator must say how to kill story.
    let found = problems("server:\n  id: a\nstory:\n  stop_command: \"docker stop story\"\n");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("story.kill_command: must be set")
            && found[0].contains("cannot be derived from story.stop_command `docker stop story`"),
        "{found:#?}"
    );

    let c = valid("server:\n  id: a\nstory:\n  stop_command: \"docker stop story\"\n  kill_command: \"docker kill story\"\n");
    assert_eq!(c.story.kill_command().as_deref(), Some("docker kill story"));

    let found = problems("server:\n  id: a\nstory:\n  kill_command: \" \"\n");
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("story.kill_command: must not be empty")),
        "{found:#?}"
    );
}
