//! The deployment kit in `deploy/` works as shipped: the example configs pass
//! `syncguard config check --offline`, the systemd units say what the runbook relies on (and
//! `systemd-analyze verify` accepts them where it exists), the Prometheus rules pass
//! `promtool check rules` and their unit tests, and the rules and the Grafana dashboard use
//! only the metric names the daemon exports (the list in the shared contracts).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const CONFIGS: &[&str] = &["config/primary.yaml", "config/secondary.yaml"];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(rel: &str) -> String {
    let path = deploy().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// promtool, or `None` (the test skips; a failure under CI) with how to install it.
fn promtool() -> Option<&'static str> {
    syncguard_testkit::tools::available(
        syncguard_testkit::tools::runs("promtool"),
        "promtool not found: run scripts/install-ops-tools.sh (installs Debian's `prometheus`, \
         which ships promtool)",
    )
    .then_some("promtool")
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

/// `syncguard_<name>` words in a text (PromQL, YAML, JSON): `syncguard_` followed by
/// lowercase letters and `_`, not part of a longer identifier.
fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(found) = text[i..].find("syncguard_") {
        let start = i + found;
        let before_ok = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        };
        let mut end = start + "syncguard_".len();
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        if before_ok {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

/// A systemd unit file as sections of (key, value) lines, in order.
fn ini(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = None::<String>;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.to_string());
            sections.entry(name.to_string()).or_default();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: `{line}` is not key=value", n + 1));
        let section = current
            .clone()
            .unwrap_or_else(|| panic!("line {}: `{line}` is outside any [section]", n + 1));
        sections
            .entry(section)
            .or_default()
            .push((key.trim().to_string(), value.trim().to_string()));
    }
    sections
}

fn get<'a>(
    unit: &'a BTreeMap<String, Vec<(String, String)>>,
    section: &str,
    key: &str,
) -> Option<&'a str> {
    unit.get(section)?
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A scalar `key: value` of a config (first occurrence), without YAML: enough for the flat,
/// commented examples here.
fn yaml_scalar(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix(key)?.strip_prefix(':')?;
        let value = rest.split(" #").next().unwrap_or("").trim();
        Some(value.trim_matches('"').to_string())
    })
}

fn secs(value: &str) -> f64 {
    value
        .trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("`{value}` is not a number of seconds"))
}

#[test]
fn deploy_example_configs_pass_config_check_offline_without_warnings() {
    for rel in CONFIGS {
        let path = deploy().join(rel);
        let out = Command::new(env!("CARGO_BIN_EXE_syncguard"))
            .args(["config", "check", "--offline", "--config"])
            .arg(&path)
            .output()
            .expect("run syncguard config check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{rel} is not valid ({}):\n{stdout}{stderr}",
            out.status
        );
        assert!(stdout.contains("valid"), "{rel}: {stdout}");
        assert!(!stderr.contains("warning"), "{rel} has warnings:\n{stderr}");
    }
}

#[test]
fn deploy_example_configs_are_one_cluster() {
    let primary = read("config/primary.yaml");
    let secondary = read("config/secondary.yaml");
    let id = |t: &str| yaml_scalar(t, "id").expect("server.id");
    // The first `id:` is server.id, the second the peer's.
    let ids = |t: &str| -> Vec<String> {
        t.lines()
            .filter_map(|l| {
                let l = l.trim_start().trim_start_matches("- ");
                l.strip_prefix("id:").map(|v| {
                    v.split(" #")
                        .next()
                        .unwrap_or("")
                        .trim()
                        .trim_matches('"')
                        .to_string()
                })
            })
            .collect()
    };
    assert_eq!(ids(&primary), vec![id(&primary), id(&secondary)]);
    assert_eq!(ids(&secondary), vec![id(&secondary), id(&primary)]);
    assert_eq!(yaml_scalar(&primary, "role").as_deref(), Some("primary"));
    assert_eq!(
        yaml_scalar(&secondary, "role").as_deref(),
        Some("secondary")
    );
    // Timings must be identical on both hosts (the failover argument assumes it).
    // They are the operator's keys of the timing model (docs/TIMING.md); every other timing
    // is derived from them, so none is written.
    for key in [
        "health_check_interval",
        "retry_attempts",
        "fallback_grace_period",
        "stop_timeout",
        "start_timeout",
        "verify_blocks",
        "block_interval",
    ] {
        assert_eq!(
            yaml_scalar(&primary, key),
            yaml_scalar(&secondary, key),
            "{key} differs between the hosts"
        );
        assert!(yaml_scalar(&primary, key).is_some(), "{key} is not set");
    }
    // The certificate paths are the ones `syncguard init` writes for each node.
    for (text, node) in [(&primary, id(&primary)), (&secondary, id(&secondary))] {
        assert_eq!(
            yaml_scalar(text, "cert").as_deref(),
            Some(format!("/etc/syncguard/tls/{node}.pem").as_str())
        );
        assert_eq!(
            yaml_scalar(text, "key").as_deref(),
            Some(format!("/etc/syncguard/tls/{node}.key").as_str())
        );
    }
}

#[test]
fn deploy_systemd_units_have_what_the_runbook_relies_on() {
    let unit = ini(&read("systemd/syncguard.service"));
    assert_eq!(get(&unit, "Service", "Type"), Some("notify"));
    assert_eq!(get(&unit, "Service", "Restart"), Some("on-failure"));
    assert_eq!(get(&unit, "Service", "RestartPreventExitStatus"), Some("2"));
    let exec = get(&unit, "Service", "ExecStart").expect("ExecStart");
    assert!(
        exec.contains("syncguard story --config /etc/syncguard/syncguard.yaml"),
        "{exec}"
    );
    assert_eq!(get(&unit, "Install", "WantedBy"), Some("multi-user.target"));

    // The timing model counts the watchdog (a hung SyncGuard is killed by systemd and
    // BindsTo= stops story, within TimeoutStopSec, then SIGKILL) before a peer may start: the
    // units carry exactly the numbers it derives for the example config.
    let config = read("config/primary.yaml");
    let model = match syncguard_config::from_yaml_str(&config, "config/primary.yaml") {
        Ok(loaded) => loaded.config.timing(),
        Err(e) => panic!("the example config: {e}"),
    };
    let watchdog = secs(get(&unit, "Service", "WatchdogSec").expect("WatchdogSec"));
    assert_eq!(
        watchdog,
        model.watchdog.as_secs_f64(),
        "WatchdogSec must be the model's watchdog (one round, its probes and its commits)"
    );
    let dropin = ini(&read("systemd/story.service.d/10-syncguard.conf"));
    let story_stop = secs(get(&dropin, "Service", "TimeoutStopSec").expect("TimeoutStopSec"));
    assert_eq!(story_stop, model.story_timeout_stop.as_secs_f64());
    assert!(
        model.watchdog + model.story_timeout_stop + model.slack <= model.window,
        "a hung SyncGuard must have taken story down before the peer may start: {model:?}"
    );

    // What SyncGuard writes must be writable under ProtectSystem=strict.
    assert_eq!(get(&unit, "Service", "ProtectSystem"), Some("strict"));
    let writable = get(&unit, "Service", "ReadWritePaths").expect("ReadWritePaths");
    let home = yaml_scalar(&config, "home").expect("story.home");
    assert!(
        writable
            .split_whitespace()
            .any(|p| p.trim_start_matches('-') == home),
        "story.home {home} is not in ReadWritePaths={writable}"
    );
    let log = yaml_scalar(&config, "file").expect("logging.file");
    let logs_dir = get(&unit, "Service", "LogsDirectory").expect("LogsDirectory");
    assert!(
        log.starts_with(&format!("/var/log/{logs_dir}/")),
        "{log} is outside LogsDirectory"
    );
    let backup = yaml_scalar(&config, "validator_state_backup").expect("backup");
    let state_dir = get(&unit, "Service", "StateDirectory").expect("StateDirectory");
    assert!(
        backup.starts_with(&format!("/var/lib/{state_dir}/")),
        "{backup}"
    );

    // story is bound to syncguard, and the actuator commands name that very unit.
    let dropin = ini(&read("systemd/story.service.d/10-syncguard.conf"));
    assert_eq!(get(&dropin, "Unit", "BindsTo"), Some("syncguard.service"));
    assert_eq!(get(&dropin, "Unit", "After"), Some("syncguard.service"));
    for key in ["start_command", "stop_command", "status_command"] {
        let cmd = yaml_scalar(&config, key).expect(key);
        assert!(
            cmd.starts_with("systemctl ") && cmd.ends_with(" story"),
            "{key}: {cmd}"
        );
    }
}

#[test]
fn deploy_systemd_units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        println!(
            "note: systemd-analyze not found; `systemd-analyze verify` of deploy/systemd skipped"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // verify checks that ExecStart exists: point it at the binary under test.
    let unit = read("systemd/syncguard.service")
        .replace("/usr/bin/syncguard", env!("CARGO_BIN_EXE_syncguard"));
    std::fs::write(dir.path().join("syncguard.service"), unit).expect("write unit");
    // A stand-in for Story's own unit, which the drop-in extends.
    std::fs::write(
        dir.path().join("story.service"),
        "[Unit]\nDescription=story\n[Service]\nExecStart=/bin/sh -c 'exec sleep 1'\n",
    )
    .expect("write story.service");
    let dropins = dir.path().join("story.service.d");
    std::fs::create_dir(&dropins).expect("mkdir");
    std::fs::write(
        dropins.join("10-syncguard.conf"),
        read("systemd/story.service.d/10-syncguard.conf"),
    )
    .expect("write drop-in");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("syncguard.service"))
        .arg(dir.path().join("story.service"))
        .current_dir(dir.path())
        .output()
        .expect("run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // verify exits 0 on unknown keys and bad values, printing them: any line about our
    // files is a failure.
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&*dir.path().to_string_lossy()))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{text}"
    );
}

#[test]
fn deploy_prometheus_rules_pass_promtool_and_their_unit_tests() {
    let Some(promtool) = promtool() else { return };
    let dir = deploy().join("prometheus");
    let checked = run_ok(
        Command::new(promtool)
            .args(["check", "rules", "syncguard-rules.yml"])
            .current_dir(&dir),
        "promtool check rules",
    );
    assert!(checked.contains("SUCCESS"), "{checked}");
    run_ok(
        Command::new(promtool)
            .args(["test", "rules", "syncguard-rules.test.yml"])
            .current_dir(&dir),
        "promtool test rules",
    );
    run_ok(
        Command::new(promtool)
            .args(["check", "config", "prometheus.yml"])
            .current_dir(&dir),
        "promtool check config",
    );
}

#[test]
fn deploy_rules_and_dashboard_use_only_exported_metrics() {
    // What the daemon exports: rules and panels may only use these.
    let known: BTreeSet<&str> = syncguard::metrics::FAMILIES.iter().copied().collect();
    let mut used = BTreeSet::new();
    for rel in [
        "prometheus/syncguard-rules.yml",
        "prometheus/syncguard-rules.test.yml",
        "grafana/syncguard-dashboard.json",
    ] {
        let names = metric_names(&read(rel));
        assert!(!names.is_empty(), "{rel} names no metric");
        let unknown: Vec<_> = names
            .iter()
            .filter(|n| !known.contains(n.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "{rel} uses metrics the daemon does not export: {unknown:?}"
        );
        used.extend(names);
    }
    // The alerts the runbook promises are there.
    let rules = read("prometheus/syncguard-rules.yml");
    for alert in [
        "SyncGuardNoActiveNode",
        "SyncGuardTwoActiveNodes",
        "SyncGuardNodeUnhealthy",
        "SyncGuardPeerUnreachable",
        "SyncGuardStateSyncLagHigh",
        "SyncGuardValidatorMissingBlocks",
        "SyncGuardSelfFenced",
        "SyncGuardPromotionRefusedRepeatedly",
    ] {
        assert!(
            rules.contains(&format!("alert: {alert}\n")),
            "no alert {alert}"
        );
    }
    for must in [
        "syncguard_role",
        "syncguard_node_healthy",
        "syncguard_peer_reachable",
        "syncguard_state_sync_lag_seconds",
        "syncguard_validator_missed_blocks",
        "syncguard_self_fences_total",
        "syncguard_promotions_refused_total",
    ] {
        assert!(used.contains(must), "{must} is used nowhere");
    }
}

#[test]
fn deploy_metric_name_scanner_finds_whole_names_only() {
    let names = metric_names(
        "sum(syncguard_role{role=\"active\"}) + rate(syncguard_failovers_total[5m]) \
         foo_syncguard_x job=\"syncguard\" SyncGuardDown",
    );
    let want: BTreeSet<String> = ["syncguard_role", "syncguard_failovers_total"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want);
}

#[test]
fn deploy_grafana_dashboard_is_importable() {
    let text = read("grafana/syncguard-dashboard.json");
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let schema = dash["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(dash["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let inputs = dash["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "no DS_PROMETHEUS input"
    );
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut queries = Vec::new();
    let mut data_panels = 0;
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id at {title}"
        );
        let grid = &p["gridPos"];
        let (x, w) = (grid["x"].as_u64(), grid["w"].as_u64());
        assert!(
            matches!((x, w), (Some(x), Some(w)) if w > 0 && x + w <= 24),
            "{title}: gridPos {grid}"
        );
        if p["type"] == "row" {
            continue;
        }
        data_panels += 1;
        assert_eq!(
            p["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{title}: datasource"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no target");
        for t in targets {
            assert_eq!(
                t["datasource"]["uid"], "${DS_PROMETHEUS}",
                "{title}: target datasource"
            );
            let expr = t["expr"].as_str().expect("expr");
            assert!(!expr.trim().is_empty(), "{title}: empty expr");
            queries.push((title.to_string(), expr.to_string()));
        }
    }
    assert!(data_panels >= 10, "only {data_panels} panels");

    // Every query is valid PromQL: promtool checks them as recording rules ($job → any).
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| {
            serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr.replace("$job", ".+")})
        })
        .collect();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dashboard-queries.yml");
    // JSON is YAML.
    std::fs::write(&path, file.to_string()).expect("write");
    let Some(promtool) = promtool() else { return };
    run_ok(
        Command::new(promtool).args(["check", "rules"]).arg(&path),
        "promtool check rules (dashboard queries)",
    );
}

/// GitHub's heading anchor: lowercase, punctuation dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn deploy_every_runbook_link_of_the_alert_rules_exists_in_the_operations_guide() {
    let guide_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/OPERATIONS.md");
    let guide = std::fs::read_to_string(&guide_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", guide_path.display()));
    let anchors: BTreeSet<String> = guide
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| anchor(l.trim_start_matches('#').trim()))
        .collect();
    let rules = read("prometheus/syncguard-rules.yml");
    let mut links = 0;
    for line in rules.lines() {
        if let Some((_, rest)) = line.split_once("OPERATIONS.md#") {
            let link = rest.trim_end_matches('"');
            assert!(
                anchors.contains(link),
                "no heading for runbook link #{link}"
            );
            links += 1;
        }
    }
    assert!(links >= 10, "only {links} runbook links");
    // Every alert has a runbook link.
    assert_eq!(rules.matches("- alert: ").count(), links);
}

/// The first two quoted strings of each `["source", "dest", "mode"]` asset line of
/// `[package.metadata.deb]` in this crate's Cargo.toml.
fn deb_assets() -> Vec<(String, String)> {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect("read Cargo.toml");
    let section = manifest
        .split_once("[package.metadata.deb]")
        .expect("[package.metadata.deb] in crates/syncguard/Cargo.toml")
        .1;
    section
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[\""))
        .map(|l| {
            let mut parts = l.split('"');
            let source = parts.next().unwrap_or("").to_string();
            let dest = parts.nth(1).unwrap_or("").to_string();
            (source, dest)
        })
        .collect()
}

#[test]
fn deploy_debian_package_ships_the_kit_where_the_unit_expects_it() {
    let assets = deb_assets();
    assert!(assets.len() >= 8, "{assets:?}");
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (source, dest) in &assets {
        // target/release/... is built by scripts/build-deb.sh; everything else is in the tree.
        if !source.starts_with("target/") {
            assert!(
                crate_dir.join(source).is_file(),
                "asset {source} does not exist"
            );
        }
        assert!(
            !dest.starts_with('/'),
            "asset destination {dest} must be relative"
        );
    }
    let dest_of = |source: &str| {
        assets
            .iter()
            .find(|(s, _)| s == source)
            .map(|(_, d)| d.as_str())
            .unwrap_or_else(|| panic!("the package does not ship {source}"))
    };
    // The unit starts the binary where the package puts it.
    let unit = ini(&read("systemd/syncguard.service"));
    let exec = get(&unit, "Service", "ExecStart").expect("ExecStart");
    let binary = exec.split_whitespace().next().expect("a command");
    assert_eq!(
        binary,
        format!("/{}syncguard", dest_of("target/release/syncguard"))
    );
    // Its Documentation= is shipped.
    let doc = get(&unit, "Unit", "Documentation").expect("Documentation");
    let doc = doc.strip_prefix("file:///").expect("a file:// URL");
    assert_eq!(
        format!("{}OPERATIONS.md", dest_of("../../docs/OPERATIONS.md")),
        doc
    );
    // Both example configs are conffiles (under /etc) and the unit's config lives beside them.
    for example in [
        "../../deploy/config/primary.yaml",
        "../../deploy/config/secondary.yaml",
    ] {
        let dest = dest_of(example);
        assert!(dest.starts_with("etc/syncguard/"), "{dest}");
        assert!(
            dest.ends_with(".yaml"),
            "{dest}: config check takes it as it is"
        );
    }
    assert!(
        exec.contains("--config /etc/syncguard/syncguard.yaml"),
        "{exec}"
    );
    // The story drop-in is shipped, but not where systemd reads it (the setup installs it).
    let dropin = dest_of("../../deploy/systemd/story.service.d/10-syncguard.conf");
    assert!(!dropin.contains("systemd/system"), "{dropin}");
    // The unit itself comes from deploy/systemd/ through cargo-deb's systemd-units.
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).expect("Cargo.toml");
    assert!(
        manifest.contains("unit-scripts = \"../../deploy/systemd/\""),
        "systemd-units must take deploy/systemd/syncguard.service"
    );
}
