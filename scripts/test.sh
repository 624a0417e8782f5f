#!/usr/bin/env bash
# The project's test command: installs what the tests need beyond cargo — anvil (a real EVM
# node, from npm into .devtools/), promtool and chromium (Debian: /metrics and status page
# tests), etcd-server and protoc (Debian: the etcd backend and its real three-member cluster
# tests) — then runs every test of the workspace (a plain `cargo test` at the root), the etcd
# feature included, and closes with
# one summary line. Extra arguments go to `cargo test` as a name filter
# (e.g. `scripts/test.sh story`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-test-deps.sh
scripts/install-ops-tools.sh
scripts/etcd.sh install
export SYNCGUARD_ANVIL="$root/.devtools/node_modules/.bin/anvil"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
# No --workspace: every crate is a default member, so this is the `cargo test` a newcomer
# types at the root (plus the etcd feature) — CI thereby checks that it finds every binary.
cargo test --locked --all-targets --no-fail-fast --features syncguard-coordination/etcd "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
