//! External tools some tests need (anvil, promtool, Chromium, etcd): `scripts/test.sh`
//! installs them. A plain `cargo test` on a machine without one skips the tests that need it
//! and says so (`SKIPPED: …` with the install command); under CI (`CI` set) a missing tool
//! is a failure, so nothing passes there by skipping.

/// Whether a test needing a tool may run: `true` when `found`; otherwise prints `SKIPPED:`
/// with `why` and returns `false`, or panics when `CI` is set.
pub fn available(found: bool, why: &str) -> bool {
    if found {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{why} (CI is set: this is a failure, not a skip)"
    );
    eprintln!("SKIPPED: {why}");
    false
}

/// Whether `program` runs at all (`program --version`).
pub fn runs(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}
