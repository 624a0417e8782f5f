#!/usr/bin/env bash
# Installs the Debian package of each missing command. Arguments: COMMAND:PACKAGE pairs, e.g.
#   scripts/apt-install.sh jq:jq systemd-analyze:systemd
# Does nothing (and needs no root) when every command is there; otherwise runs apt-get as root
# or through sudo, and fails if a command is still missing after the install.
set -euo pipefail
need=()
for pair in "$@"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
  echo "apt-install: must run as root (or with sudo) to install: ${need[*]}" >&2
  exit 1
fi
command -v apt-get >/dev/null 2>&1 || { echo "apt-install: apt-get not found; install by hand: ${need[*]}" >&2; exit 1; }
echo "apt-install: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >/dev/null
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
for pair in "$@"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || { echo "apt-install: ${pair%%:*} still missing after installing ${pair#*:}" >&2; exit 1; }
done
