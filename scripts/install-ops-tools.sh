#!/usr/bin/env bash
# Installs the operations tools the metrics and status-page tests use (Debian packages):
#   - promtool (package `prometheus`), to check GET /metrics with `promtool check metrics`
#   - chromium, to render the status page headless and take a screenshot
# Idempotent: skips what is already present. Runs as root (no sudo) or through sudo.
set -euo pipefail

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ -x /usr/bin/chromium ] || need+=(chromium)
# Chromium renders text only with some font installed.
if ! fc-list 2>/dev/null | grep -qi 'dejavu'; then need+=(fonts-dejavu-core fontconfig); fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
  echo "install-ops-tools: must run as root (or with sudo) to install: ${need[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-ops-tools: apt-get not found; install by hand: ${need[*]}" >&2
  exit 1
fi
echo "install-ops-tools: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >/dev/null
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
command -v promtool >/dev/null 2>&1 || { echo "install-ops-tools: promtool still missing" >&2; exit 1; }
[ -x /usr/bin/chromium ] || { echo "install-ops-tools: /usr/bin/chromium still missing" >&2; exit 1; }
