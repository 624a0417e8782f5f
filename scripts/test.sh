#!/usr/bin/env bash
# The project's test command: installs what the tests need beyond cargo (anvil, a real EVM
# node, from npm into .devtools/), then runs every test of the workspace.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh story`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-test-deps.sh
export SYNCGUARD_ANVIL="$root/.devtools/node_modules/.bin/anvil"
cargo test --workspace --locked "$@"
