//! Rules on the values themselves, once they have the right types. Pure: touches neither
//! files nor the network (that is `syncguard config check` without `--offline`).

use std::collections::HashSet;

use crate::problem::Problem;
use crate::schema::*;

/// Errors make the config unusable; warnings are printed and the config is used.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl Findings {
    fn error(&mut self, path: &str, msg: impl Into<String>) {
        self.errors.push(Problem::new(path, msg));
    }
    fn warn(&mut self, path: &str, msg: impl Into<String>) {
        self.warnings.push(Problem::new(path, msg));
    }
    fn positive_secs(&mut self, path: &str, v: f64) {
        if !(v.is_finite() && v > 0.0) {
            self.error(
                path,
                format!("must be a positive number of seconds, not {v}"),
            );
        } else if v > 86_400.0 * 365.0 {
            self.error(
                path,
                format!("{v} seconds is more than a year; check the unit"),
            );
        }
    }
    fn non_negative_secs(&mut self, path: &str, v: f64) {
        if !(v.is_finite() && v >= 0.0) {
            self.error(path, format!("must be 0 or more seconds, not {v}"));
        }
    }
}

pub(crate) fn validate(c: &Config) -> Findings {
    let mut f = Findings::default();
    server(c, &mut f);
    story(c, &mut f);
    failover(c, &mut f);
    health(c, &mut f);
    communication(c, &mut f);
    coordination(c, &mut f);
    alerts(c, &mut f);
    timing(c, &mut f);
    f
}

/// The timing model (`syncguard_timing`): derived values never fail; an explicit value that
/// breaks one of its inequalities is an error at its key, naming the other key and a value
/// that works. (Positive-number checks of the raw values are done by each section.)
fn timing(c: &Config, f: &mut Findings) {
    if let Err(errors) = syncguard_timing::derive(&c.timing_inputs(0)) {
        for e in errors {
            // A value already refused as a number (zero, negative) is not reported twice.
            if !f.errors.iter().any(|p| p.path == e.key()) {
                f.error(e.key(), e.problem());
            }
        }
    }
}

fn server(c: &Config, f: &mut Findings) {
    let s = &c.server;
    if s.id.trim().is_empty() {
        f.error(
            "server.id",
            "must be set: a unique name for this node (peers refer to it)",
        );
    } else if !valid_id(&s.id) {
        f.error(
            "server.id",
            format!(
                "`{}` may contain only letters, digits, `-`, `_` and `.`",
                s.id
            ),
        );
    }
    if s.port == 0 {
        f.error("server.port", "must be between 1 and 65535");
    }
    if s.bind.parse::<std::net::IpAddr>().is_err() {
        f.error(
            "server.bind",
            format!(
                "`{}` is not an IP address (e.g. 0.0.0.0 or 127.0.0.1)",
                s.bind
            ),
        );
    }
    if let Some(a) = &s.advertise_address {
        let port = a.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
        match port {
            Some((host, Ok(p))) if p > 0 && !host.is_empty() && !a.contains('/') => {}
            _ => f.error(
                "server.advertise_address",
                format!("`{a}` is not host:port (e.g. 10.0.0.5:8080 or node-1.example:8080)"),
            ),
        }
    } else if c.coordination.backend == Backend::Etcd && s.advertised_api().is_none() {
        f.warn(
            "server.advertise_address",
            format!(
                "not set and server.bind is `{}`: the other nodes' `syncguard status` and \
                 `switchover` cannot read this node's API (set it to the host:port they reach \
                 it at)",
                s.bind
            ),
        );
    }
    if let Some(token) = &s.admin_token {
        if token.len() < 16 {
            f.error(
                "server.admin_token",
                "must be at least 16 characters (use a random token)",
            );
        }
    }
    for (key, v) in [
        ("server.header_timeout", s.header_timeout),
        ("server.body_timeout", s.body_timeout),
    ] {
        if let Some(v) = v {
            f.positive_secs(key, v);
        }
    }
    if !(1024..=64 * 1024 * 1024).contains(&s.max_body_bytes) {
        f.error(
            "server.max_body_bytes",
            format!(
                "is {}; must be between 1024 and 67108864 bytes",
                s.max_body_bytes
            ),
        );
    }
    if !(4..=65_536).contains(&s.max_connections) {
        f.error(
            "server.max_connections",
            format!(
                "is {}; must be between 4 and 65536 (peers, the CLI and monitoring each need one)",
                s.max_connections
            ),
        );
    }
    if let (Some(role), Some(primary)) = (s.role, c.story.is_primary_site) {
        if (role == SiteRole::Primary) != primary {
            f.error(
                "server.role",
                format!(
                    "is `{}` but story.is_primary_site is {primary}; they must agree",
                    if role == SiteRole::Primary {
                        "primary"
                    } else {
                        "secondary"
                    }
                ),
            );
        }
    }
}

fn story(c: &Config, f: &mut Findings) {
    let s = &c.story;
    url_field(f, "story.comet_rpc_url", &s.comet_rpc_url);
    if s.chain_profile.has_evm() {
        url_field(f, "story.evm_rpc_url", &s.evm_rpc_url);
    }
    if s.state_path() == s.validator_state_backup {
        f.error(
            "story.validator_state_backup",
            "must differ from story.validator_state_path (it is a separate copy)",
        );
    }
    for (path, value) in [
        ("story.validator_state_path", s.state_path()),
        (
            "story.validator_state_backup",
            s.validator_state_backup.clone(),
        ),
        ("story.validator_key_path", s.key_path()),
        ("story.validator_key_store", s.validator_key_store.clone()),
        ("story.placeholder_key_path", s.placeholder_key_path.clone()),
    ] {
        if value.as_os_str().is_empty() {
            f.error(path, "must not be empty");
        } else if !value.is_absolute() {
            f.error(
                path,
                format!("`{}` must be an absolute path", value.display()),
            );
        }
    }
    let distinct: HashSet<_> = [
        s.key_path(),
        s.validator_key_store.clone(),
        s.placeholder_key_path.clone(),
    ]
    .into_iter()
    .collect();
    if distinct.len() != 3 {
        f.error(
            "story.validator_key_store",
            "validator_key_path, validator_key_store and placeholder_key_path must be three different files",
        );
    }
    if s.block_interval == 0 {
        f.error(
            "story.block_interval",
            "must be at least 1 (milliseconds between blocks)",
        );
    } else if s.block_interval < 100 {
        f.warn(
            "story.block_interval",
            format!(
                "{} ms is very short; the unit is milliseconds",
                s.block_interval
            ),
        );
    } else if s.block_interval > 600_000 {
        f.error(
            "story.block_interval",
            format!(
                "{} ms is more than 10 minutes; the unit is milliseconds",
                s.block_interval
            ),
        );
    }
    f.positive_secs("story.state_sync_interval", s.state_sync_interval);
    for (key, v) in [
        ("story.stop_timeout", s.stop_timeout),
        ("story.kill_timeout", s.kill_timeout),
        ("story.start_timeout", s.start_timeout),
    ] {
        if let Some(v) = v {
            f.positive_secs(key, v);
        }
    }
    if s.min_peers == 0 {
        f.warn(
            "story.min_peers",
            "0 disables the peer check: an isolated node would still look healthy",
        );
    }
    if s.verify_blocks == 0 {
        f.error("story.verify_blocks", "must be at least 1");
    }
    if s.witness_blocks == 0 {
        f.error(
            "story.witness_blocks",
            "must be at least 1: the witness is what keeps a passive from promoting while the validator still signs",
        );
    } else if s.witness_blocks > 1000 {
        f.error("story.witness_blocks", "must be at most 1000");
    }
    if s.start_command.trim().is_empty() {
        f.error("story.start_command", "must not be empty");
    }
    if s.stop_command.trim().is_empty() {
        f.error("story.stop_command", "must not be empty");
    }
    if s.status_command.trim().is_empty() {
        f.error("story.status_command", "must not be empty");
    }
    match &s.kill_command {
        Some(cmd) if cmd.trim().is_empty() => f.error(
            "story.kill_command",
            "must not be empty: leave it out to derive it from story.stop_command, or give a \
             command that kills story outright",
        ),
        // An empty stop command is reported above; nothing to derive from.
        None if !s.stop_command.trim().is_empty() && s.kill_command().is_none() => f.error(
            "story.kill_command",
            format!(
                "must be set: it cannot be derived from story.stop_command `{}` (only \
                 `systemctl stop <unit>` gives a default, `systemctl kill --signal=SIGKILL \
                 <unit>`); give a command that kills story outright (SIGKILL), run when a stop \
                 is not confirmed within story.stop_timeout",
                s.stop_command
            ),
        ),
        _ => {}
    }
}

fn failover(c: &Config, f: &mut Findings) {
    let fo = &c.failover;
    f.positive_secs("failover.health_check_interval", fo.health_check_interval);
    if fo.retry_attempts == 0 {
        f.error("failover.retry_attempts", "must be at least 1");
    }
    f.non_negative_secs("failover.fallback_grace_period", fo.fallback_grace_period);
    for (key, v) in [
        ("failover.handover_timeout", fo.handover_timeout),
        ("failover.priority_margin", fo.priority_margin),
        ("failover.self_fence_timeout", fo.self_fence_timeout),
    ] {
        if let Some(v) = v {
            f.positive_secs(key, v);
        }
    }
}

fn health(c: &Config, f: &mut Findings) {
    let h = &c.health;
    if let Some(t) = h.rpc_timeout {
        f.positive_secs("health.rpc_timeout", t);
    }
    if let Some(t) = h.stall_threshold {
        f.positive_secs("health.stall_threshold", t);
        let block = c.story.block_interval as f64 / 1000.0;
        if t.is_finite() && t < 2.0 * block {
            f.error(
                "health.stall_threshold",
                format!(
                    "{t} s is less than two blocks ({block} s each): every node would look stalled"
                ),
            );
        }
    }
    if h.recovery_rounds == Some(0) {
        f.error("health.recovery_rounds", "must be at least 1");
    }
}

fn communication(c: &Config, f: &mut Findings) {
    let comm = &c.communication;
    let mut seen = HashSet::new();
    for (i, peer) in comm.peers.iter().enumerate() {
        let at = format!("communication.peers[{i}]");
        if peer.id.trim().is_empty() {
            f.error(&format!("{at}.id"), "must be set");
        } else if peer.id == c.server.id {
            f.error(
                &format!("{at}.id"),
                format!("`{}` is this node's own server.id", peer.id),
            );
        } else if !seen.insert(peer.id.as_str()) {
            f.error(
                &format!("{at}.id"),
                format!("`{}` is listed twice", peer.id),
            );
        }
        if let Err(why) = check_host_port(&peer.address) {
            f.error(&format!("{at}.address"), why);
        }
    }
    if comm.peers.is_empty() && c.coordination.backend == Backend::Peer {
        f.warn(
            "communication.peers",
            "no peers: this node can never hand over or take over the validator role",
        );
    }
    match &comm.tls {
        Some(tls) => tls_fields(f, "communication.tls", tls),
        None if comm.insecure => f.warn(
            "communication.insecure",
            "peer traffic is plain HTTP: for local tests and demos only",
        ),
        None if !comm.peers.is_empty() => f.warn(
            "communication.tls",
            "not set: peers talk only over mutual TLS; run `syncguard init` to create the certificates, or set communication.insecure: true for a local test",
        ),
        None => {}
    }
    if let Some(t) = comm.request_timeout {
        f.positive_secs("communication.request_timeout", t);
    }
}

fn coordination(c: &Config, f: &mut Findings) {
    let e = &c.coordination.etcd;
    if c.coordination.backend == Backend::Etcd {
        if e.endpoints.is_empty() {
            f.error(
                "coordination.etcd.endpoints",
                "must list at least one etcd member when coordination.backend is etcd",
            );
        }
        if e.endpoints.len() == 2 {
            f.warn(
                "coordination.etcd.endpoints",
                "two etcd members cannot survive the loss of either; use three",
            );
        }
    }
    for (i, ep) in e.endpoints.iter().enumerate() {
        url_field(f, &format!("coordination.etcd.endpoints[{i}]"), ep);
    }
    if !e.prefix.starts_with('/') {
        f.error("coordination.etcd.prefix", "must start with `/`");
    }
    f.positive_secs("coordination.etcd.lease_ttl", e.lease_ttl);
    f.positive_secs("coordination.etcd.safety_margin", e.safety_margin);
    if e.lease_ttl.is_finite() && e.lease_ttl > 0.0 && e.lease_ttl < 2.0 {
        f.error(
            "coordination.etcd.lease_ttl",
            format!(
                "{} s is too short: etcd leases are whole seconds and checked about every \
                 0.5 s; use at least 2",
                e.lease_ttl
            ),
        );
    }
    // The holder renews at a third of the lease and fences `safety_margin` before it
    // expires: the fence must come after the first renewal, or no renewal can ever help.
    let renew_window = e.lease_ttl - e.lease_ttl / 3.0;
    if e.safety_margin.is_finite() && e.safety_margin > 0.0 && e.safety_margin >= renew_window {
        f.error(
            "coordination.etcd.safety_margin",
            format!(
                "{} s must be shorter than lease_ttl − lease_ttl/3 ({renew_window:.2} s with \
                 lease_ttl {} s): the active renews at a third of the lease and fences \
                 safety_margin before it expires",
                e.safety_margin, e.lease_ttl
            ),
        );
    } else if e.safety_margin.is_finite() && renew_window - e.safety_margin < 2.0 {
        // Measured on a real 3-member etcd: when the member the active talks to is the Raft
        // leader and dies, renewals wait for an election (1–2 s); a smaller window makes
        // the active fence itself although the cluster is fine.
        f.warn(
            "coordination.etcd.safety_margin",
            format!(
                "only {:.2} s between the first renewal and the self-fence (lease_ttl − \
                 lease_ttl/3 − safety_margin): an etcd leader election takes 1–2 s, during \
                 which the active would fence itself needlessly; the defaults (10 s / 3 s) \
                 leave 3.67 s",
                renew_window - e.safety_margin
            ),
        );
    }
    if let Some(tls) = &e.tls {
        tls_fields(f, "coordination.etcd.tls", tls);
    }
}

fn alerts(c: &Config, f: &mut Findings) {
    let a = &c.alerts;
    for (path, url) in [
        ("alerts.webhook_url", &a.webhook_url),
        ("alerts.slack_webhook_url", &a.slack_webhook_url),
        ("alerts.discord_webhook_url", &a.discord_webhook_url),
    ] {
        if let Some(u) = url {
            url_field(f, path, u);
        }
    }
    if let Some(t) = &a.telegram {
        if t.bot_token.is_empty() {
            f.error("alerts.telegram.bot_token", "must be set");
        }
        if t.chat_id.is_empty() {
            f.error("alerts.telegram.chat_id", "must be set");
        }
        url_field(f, "alerts.telegram.api_url", &t.api_url);
    }
    if let Some(p) = &a.pagerduty {
        if p.routing_key.is_empty() {
            f.error("alerts.pagerduty.routing_key", "must be set");
        }
        url_field(f, "alerts.pagerduty.events_url", &p.events_url);
    }
    f.positive_secs("alerts.timeout", a.timeout);
    f.non_negative_secs("alerts.dedup_window", a.dedup_window);
    if a.retries == 0 {
        f.error("alerts.retries", "must be at least 1");
    }
    let any_sink = a.webhook_url.is_some()
        || a.slack_webhook_url.is_some()
        || a.discord_webhook_url.is_some()
        || a.telegram.is_some()
        || a.pagerduty.is_some();
    if c.logging.enable_alerts && !any_sink {
        f.warn(
            "logging.enable_alerts",
            "is true but no sink is configured in `alerts:`; alerts go to the log only",
        );
    }
}

fn tls_fields(f: &mut Findings, at: &str, tls: &TlsConfig) {
    for (name, p) in [
        ("ca_cert", &tls.ca_cert),
        ("cert", &tls.cert),
        ("key", &tls.key),
    ] {
        if p.as_os_str().is_empty() {
            f.error(&format!("{at}.{name}"), "must be set (a PEM file)");
        }
    }
}

fn url_field(f: &mut Findings, path: &str, value: &str) {
    match url::Url::parse(value) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {}
        Ok(u) => f.error(
            path,
            format!(
                "`{value}` must be an http:// or https:// URL (scheme `{}`)",
                u.scheme()
            ),
        ),
        Err(e) => f.error(path, format!("`{value}` is not a URL: {e}")),
    }
}

fn valid_id(id: &str) -> bool {
    id.chars()
        .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}

/// `host:port`, with IPv6 hosts in brackets (`[::1]:8080`).
pub fn check_host_port(address: &str) -> Result<(), String> {
    let (host, port) = match address.rsplit_once(':') {
        Some(parts) => parts,
        None => return Err(format!("`{address}` must be host:port")),
    };
    if host.is_empty() {
        return Err(format!("`{address}` has no host; expected host:port"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "`{address}`: an IPv6 host must be in brackets, e.g. [::1]:8080"
        ));
    }
    if host.contains('/') || host.contains(' ') {
        return Err(format!(
            "`{address}` must be host:port, without a scheme or path"
        ));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!(
            "`{address}`: port `{port}` must be a number from 1 to 65535"
        )),
        Ok(_) => Ok(()),
    }
}
