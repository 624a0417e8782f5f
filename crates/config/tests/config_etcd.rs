//! `coordination.etcd` rules: endpoints when the backend is etcd, a lease long enough for
//! etcd's whole seconds, and a safety margin that leaves time for the renewal at a third.

use syncguard_config::from_yaml_str;

fn problems(yaml: &str) -> Vec<String> {
    match from_yaml_str(yaml, "test.yaml") {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
    }
}

fn etcd(body: &str) -> String {
    format!("server:\n  id: a\ncoordination:\n  backend: etcd\n  etcd:\n{body}")
}

const ENDPOINTS: &str = "    endpoints: [\"http://10.0.0.1:2379\", \"http://10.0.0.2:2379\", \"http://10.0.0.3:2379\"]\n";

#[test]
fn config_etcd_backend_needs_endpoints() {
    let found = problems(&etcd("    lease_ttl: 10\n"));
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("coordination.etcd.endpoints: must list at least one")),
        "{found:#?}"
    );
    assert!(
        problems(&etcd(ENDPOINTS)).is_empty(),
        "{:#?}",
        problems(&etcd(ENDPOINTS))
    );
}

#[test]
fn config_etcd_lease_ttl_at_least_two_seconds() {
    let found = problems(&etcd(&format!(
        "{ENDPOINTS}    lease_ttl: 1.5\n    safety_margin: 0.5\n"
    )));
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("coordination.etcd.lease_ttl: 1.5 s is too short")),
        "{found:#?}"
    );
    assert!(problems(&etcd(&format!(
        "{ENDPOINTS}    lease_ttl: 2\n    safety_margin: 0.5\n"
    )))
    .is_empty());
}

#[test]
fn config_etcd_safety_margin_must_leave_time_to_renew() {
    // lease_ttl 3: renew at 1 s, so the margin must be below 2 s.
    let found = problems(&etcd(&format!(
        "{ENDPOINTS}    lease_ttl: 3\n    safety_margin: 2\n"
    )));
    assert!(
        found.iter().any(|p| p.starts_with(
            "coordination.etcd.safety_margin: 2 s must be shorter than lease_ttl − lease_ttl/3"
        )),
        "{found:#?}"
    );
    assert!(problems(&etcd(&format!(
        "{ENDPOINTS}    lease_ttl: 3\n    safety_margin: 1.9\n"
    )))
    .is_empty());
    let found = problems(&etcd(&format!(
        "{ENDPOINTS}    lease_ttl: 3\n    safety_margin: 0\n"
    )));
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("coordination.etcd.safety_margin: must be a positive")),
        "{found:#?}"
    );
}

#[test]
fn config_etcd_warns_when_a_leader_election_would_make_the_active_fence() {
    let warnings = |body: &str| -> Vec<String> {
        let loaded = from_yaml_str(&etcd(&format!("{ENDPOINTS}{body}")), "test.yaml")
            .unwrap_or_else(|e| panic!("{e}"));
        loaded.warnings.iter().map(|p| p.to_string()).collect()
    };
    // 3 s / 1 s leaves 1 s between the first renewal and the fence: warned.
    let w = warnings("    lease_ttl: 3\n    safety_margin: 1\n");
    assert!(
        w.iter()
            .any(|w| w.contains("coordination.etcd.safety_margin") && w.contains("leader election")),
        "{w:?}"
    );
    // The defaults leave 3.67 s: quiet.
    let w = warnings("");
    assert!(!w.iter().any(|w| w.contains("leader election")), "{w:?}");
}
