//! `GET /metrics` of two real daemons on a devnet: every contract name is there with its
//! help, the values say what `/status` says (one active, one passive, heights, health checks,
//! peer reachability), and `promtool check metrics` accepts the body. Also the signing
//! monitor against the devnet's chain.
//!
//! promtool comes from Debian's `prometheus` package: `scripts/install-ops-tools.sh`.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{options, start, OrPanic};
use syncguard::metrics::{Metrics, CHECKS, CHECK_STATUSES, ROLES};
use syncguard::view::{NodeView, Shared, SigningSeen};
use syncguard_config::{NodeRole, SiteRole};
use syncguard_devnet::Cluster;
use syncguard_health::{ChainReader, CometClient};

const SETTLE: Duration = Duration::from_secs(20);

/// One scrape: the content type, the body, and its samples (`name{labels}` → value).
struct Scrape {
    content_type: String,
    body: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn value(&self, series: &str) -> Option<f64> {
        self.samples.get(series).copied()
    }

    #[track_caller]
    fn must(&self, series: &str) -> f64 {
        match self.value(series) {
            Some(v) => v,
            None => panic!("no sample `{series}` in /metrics:\n{}", self.body),
        }
    }
}

fn parse_samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(c: &Cluster, i: usize) -> Scrape {
    let port = c.daemon(i).or_panic().port;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let resp = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp
        .text()
        .await
        .unwrap_or_else(|e| panic!("body of {url}: {e}"));
    Scrape {
        content_type,
        samples: parse_samples(&body),
        body,
    }
}

/// Scrapes until `ready` holds (both nodes report heights once a health round has run).
async fn scrape_when(c: &Cluster, i: usize, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let start = Instant::now();
    loop {
        let s = scrape(c, i).await;
        if ready(&s) || start.elapsed() > SETTLE {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `promtool check metrics` on the body; fails naming the install script when promtool is
/// not there.
fn promtool_check(what: &str, body: &str) {
    let how = "promtool not found: install it with `scripts/install-ops-tools.sh` (Debian \
               package `prometheus`)";
    if !syncguard_testkit::tools::available(syncguard_testkit::tools::runs("promtool"), how) {
        return;
    }
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot run promtool ({e}): install it with `scripts/install-ops-tools.sh` \
             (Debian package `prometheus`)"
        ),
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(body.as_bytes())
            .unwrap_or_else(|e| panic!("writing to promtool: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for promtool: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics rejected {what}'s /metrics ({}):\n{said}\n--- body ---\n{body}",
        out.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn story_metrics_two_daemons_show_roles_heights_checks_and_pass_promtool() {
    let c = start(options()).await;
    c.wait_roles(["active", "passive"], SETTLE).await.or_panic();
    let ready = |s: &Scrape| {
        s.value("syncguard_cometbft_height")
            .is_some_and(|h| h > 0.0)
            && s.value("syncguard_evm_height").is_some_and(|h| h > 0.0)
            && s.value("syncguard_node_healthy") == Some(1.0)
            && s.samples
                .keys()
                .any(|k| k.starts_with("syncguard_peer_reachable{"))
    };
    let a = scrape_when(&c, 0, ready).await;
    let b = scrape_when(&c, 1, ready).await;

    for (node, peer, role, s) in [
        ("node-a", "node-b", "active", &a),
        ("node-b", "node-a", "passive", &b),
    ] {
        assert!(
            s.content_type.starts_with("text/plain") && s.content_type.contains("0.0.4"),
            "{node}: content type {:?}",
            s.content_type
        );
        for name in syncguard::metrics::FAMILIES {
            assert!(
                s.body.contains(&format!("# HELP {name} "))
                    && s.body.contains(&format!("# TYPE {name} ")),
                "{node}: {name} without HELP/TYPE:\n{}",
                s.body
            );
        }
        let info = s
            .samples
            .iter()
            .find(|(k, _)| k.starts_with("syncguard_info{"))
            .map(|(k, v)| (k.clone(), *v));
        let (info, one) = info.unwrap_or_else(|| panic!("{node}: no syncguard_info:\n{}", s.body));
        assert_eq!(one, 1.0);
        assert!(info.contains(&format!("node_id=\"{node}\"")), "{info}");
        assert!(
            info.contains("version=\"") && info.contains("site_role=\""),
            "{info}"
        );
        // Exactly the current role is 1.
        for r in ROLES {
            let want = if r == role { 1.0 } else { 0.0 };
            assert_eq!(
                s.must(&format!("syncguard_role{{role=\"{r}\"}}")),
                want,
                "{node} role {r}"
            );
        }
        assert!(s.must("syncguard_epoch") >= 1.0, "{node}: epoch");
        assert_eq!(s.must("syncguard_node_healthy"), 1.0, "{node}: healthy");
        assert!(
            s.must("syncguard_cometbft_height") > 0.0,
            "{node}: comet height"
        );
        assert!(s.must("syncguard_evm_height") > 0.0, "{node}: evm height");
        assert!(
            s.value("syncguard_cometbft_peers").is_some(),
            "{node}: comet peers\n{}",
            s.body
        );
        // Every check reports exactly one status, and this healthy node fails none.
        for check in CHECKS {
            let set: Vec<&str> = CHECK_STATUSES
                .into_iter()
                .filter(|st| {
                    s.must(&format!(
                        "syncguard_health_check_status{{check=\"{check}\",status=\"{st}\"}}"
                    )) == 1.0
                })
                .collect();
            assert_eq!(set.len(), 1, "{node}: {check} has statuses {set:?}");
            assert_ne!(
                set[0], "fail",
                "{node}: {check} fails on a healthy node\n{}",
                s.body
            );
        }
        assert_eq!(
            s.must(&format!("syncguard_peer_reachable{{peer=\"{peer}\"}}")),
            1.0,
            "{node} reaches {peer}"
        );
        assert!(s.must("syncguard_uptime_seconds") > 0.0);
        assert_eq!(s.must("syncguard_alerts_dropped_total"), 0.0);
        // A quiet start: the primary's boot claim is routine, not a failover; nothing fenced,
        // no double sign prevented (the first witness refusals at boot are routine too).
        for family in [
            "syncguard_failovers_total{",
            "syncguard_double_signs_prevented_total{",
        ] {
            let counted: Vec<&String> =
                s.samples.keys().filter(|k| k.starts_with(family)).collect();
            assert!(counted.is_empty(), "{node}: {counted:?}\n{}", s.body);
        }
        assert!(
            !s.samples
                .keys()
                .any(|k| k.starts_with("syncguard_self_fences_total{")),
            "{node}: self-fence counted in a quiet start:\n{}",
            s.body
        );
        if let Some(h) = s.value("syncguard_validator_last_signed_height") {
            assert!(h > 0.0, "{node}: last signed height {h}");
        }
        promtool_check(node, &s.body);
    }
    // Both see the same epoch; the active has a local sign state.
    assert_eq!(a.must("syncguard_epoch"), b.must("syncguard_epoch"));
    assert!(a.must("syncguard_state_height{source=\"local\"}") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validator_signing_monitor_reads_the_devnet_chain_into_the_view_and_metrics() {
    let c = start(options()).await;
    c.wait_roles(["active", "passive"], SETTLE).await.or_panic();
    c.wait_signing_by(0, SETTLE).await.or_panic();
    let host = c
        .devnet
        .host(0)
        .unwrap_or_else(|e| panic!("devnet host 0: {e}"));
    let client = CometClient::new(&host.comet_rpc_url, Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("comet client for {}: {e}", host.comet_rpc_url));
    // The daemon's commit reader, as its health loop runs it after each round.
    let reader = ChainReader::new(client.clone(), c.devnet.validator_address(), 100, 50);
    let start = Instant::now();
    let seen = loop {
        let (latest, earliest) = match client.status().await {
            Ok(st) => (st.latest_block_height, st.earliest_block_height),
            Err(e) => panic!("status of the devnet node: {e}"),
        };
        let s = reader.catch_up(latest, earliest).await;
        if s.last_signed.is_some() || start.elapsed() > SETTLE {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let Some(last) = seen.last_signed else {
        panic!(
            "the reader never saw a signature: {seen:?}\n{}",
            c.describe().await
        );
    };
    assert!(last > 0 && last <= seen.upto, "{seen:?}");
    // node-a signs every block: at most the newest few are not yet carrying its vote.
    let missed = seen.missed_in_row.unwrap_or(u64::MAX);
    assert!(
        missed <= 2,
        "missed {missed} in a row while signing: {seen:?}"
    );
    assert!(seen.fastest_block.is_some(), "block times read: {seen:?}");

    let shared = Shared::new(NodeView::new(
        "probe".into(),
        SiteRole::Primary,
        NodeRole::Active,
    ));
    shared.update(|v| {
        v.signing = SigningSeen {
            validator_last_signed: seen.last_signed,
            validator_missed_in_row: seen.missed_in_row,
            checked_height: Some(seen.upto),
        }
    });
    let body = Metrics::new().render(&shared.snapshot(), None, std::time::SystemTime::now());
    assert!(
        body.contains(&format!("syncguard_validator_last_signed_height {last}\n")),
        "{body}"
    );
    assert!(
        body.contains("syncguard_validator_missed_blocks "),
        "{body}"
    );
}
