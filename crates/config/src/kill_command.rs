//! The default `story.kill_command`: what kills `story` outright when its stop is not
//! confirmed in time. Derived only where the stop command's meaning is certain — a plain
//! `systemctl stop <unit>` — because a wrong guess would be found out only during a failover.

/// Unit suffixes a kill must not be aimed at: only a service holds the `story` process.
const OTHER_UNIT_TYPES: [&str; 10] = [
    ".socket",
    ".target",
    ".device",
    ".mount",
    ".automount",
    ".swap",
    ".timer",
    ".path",
    ".slice",
    ".scope",
];

/// `systemctl stop X` → `systemctl kill --signal=SIGKILL X`, keeping a leading `sudo` (with
/// `-n`), the path of `systemctl` and `--user`/`--system`, dropping `--no-block`/`--quiet`
/// (meaningless for a kill). `None` for anything else: other programs, other verbs, options
/// we do not know, several commands, quoting or expansions — the shell's reading of those
/// is not ours to guess.
pub fn derive_kill_command(stop_command: &str) -> Option<String> {
    if !stop_command
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:@/=+".contains(c) || c == ' ' || c == '\t')
    {
        return None;
    }
    let mut words = stop_command.split_whitespace().peekable();
    let mut prefix: Vec<&str> = Vec::new();
    if words.peek() == Some(&"sudo") {
        prefix.extend(words.next());
        while let Some(&flag @ ("-n" | "--non-interactive")) = words.peek() {
            prefix.push(flag);
            words.next();
        }
    }
    let systemctl = words.next()?;
    if systemctl != "systemctl" && !systemctl.ends_with("/systemctl") {
        return None;
    }
    prefix.push(systemctl);
    let mut stop_seen = false;
    let mut units: Vec<&str> = Vec::new();
    for word in words {
        match word {
            "stop" if !stop_seen => stop_seen = true,
            "--no-block" | "--quiet" | "-q" => {}
            "--user" | "--system" => prefix.push(word),
            w if w.starts_with('-') => return None,
            w if stop_seen && is_service(w) => units.push(w),
            _ => return None,
        }
    }
    if !stop_seen || units.is_empty() {
        return None;
    }
    Some(format!(
        "{} kill --signal=SIGKILL {}",
        prefix.join(" "),
        units.join(" ")
    ))
}

fn is_service(unit: &str) -> bool {
    !unit.contains('/')
        && !unit.contains('=')
        && !OTHER_UNIT_TYPES.iter().any(|suffix| unit.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::derive_kill_command;

    #[test]
    fn config_kill_command_derived_from_systemctl_stop() {
        for (stop, kill) in [
            (
                "systemctl stop story",
                "systemctl kill --signal=SIGKILL story",
            ),
            (
                "systemctl stop story.service",
                "systemctl kill --signal=SIGKILL story.service",
            ),
            (
                "systemctl stop --no-block story",
                "systemctl kill --signal=SIGKILL story",
            ),
            (
                "systemctl --no-block stop story.service",
                "systemctl kill --signal=SIGKILL story.service",
            ),
            (
                "sudo systemctl stop story",
                "sudo systemctl kill --signal=SIGKILL story",
            ),
            (
                "sudo -n /usr/bin/systemctl stop --no-block story.service",
                "sudo -n /usr/bin/systemctl kill --signal=SIGKILL story.service",
            ),
            (
                "systemctl --user stop story",
                "systemctl --user kill --signal=SIGKILL story",
            ),
            (
                "  systemctl\tstop   story@mainnet  ",
                "systemctl kill --signal=SIGKILL story@mainnet",
            ),
            (
                "systemctl stop story story-geth",
                "systemctl kill --signal=SIGKILL story story-geth",
            ),
        ] {
            assert_eq!(derive_kill_command(stop).as_deref(), Some(kill), "{stop}");
        }
    }

    #[test]
    fn config_kill_command_not_derived_from_anything_else() {
        for stop in [
            "",
            "   ",
            "systemctl",
            "systemctl stop",
            "systemctl stop --no-block",
            "systemctl restart story",
            "systemctl kill story",
            "systemctl stop story.socket",
            "systemctl stop story.target",
            "systemctl stop -H host story",
            "systemctl stop story && echo done",
            "systemctl stop story; rm -f /run/story.pid",
            "systemctl stop 'story'",
            "systemctl stop $UNIT",
            "systemctl stop story*",
            "sudo -u story systemctl stop story",
            "docker stop story",
            "supervisorctl stop story",
            "/usr/local/bin/mysystemctl stop story",
            "pkill story",
            "echo stop >> /tmp/log; rm -f /tmp/flag",
        ] {
            assert_eq!(derive_kill_command(stop), None, "{stop:?}");
        }
    }
}
