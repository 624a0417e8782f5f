#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo, into the project's own .devtools/ folder:
#   - anvil (a real EVM JSON-RPC node, from the npm package @foundry-rs/anvil)
# Idempotent: does nothing when the pinned version is already there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.devtools"
anvil_version="1.7.1"

mkdir -p "$tools"
if [ -x "$tools/node_modules/.bin/anvil" ] && "$tools/node_modules/.bin/anvil" --version 2>/dev/null | grep -q "$anvil_version"; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "install-test-deps: npm is required to install anvil (@foundry-rs/anvil)" >&2
  exit 1
fi
echo "install-test-deps: installing @foundry-rs/anvil@$anvil_version into $tools" >&2
( cd "$tools" && npm install --no-audit --no-fund --loglevel=error --prefix "$tools" "@foundry-rs/anvil@$anvil_version" >&2 )
"$tools/node_modules/.bin/anvil" --version >&2
