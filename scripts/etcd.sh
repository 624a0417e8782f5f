#!/usr/bin/env bash
# etcd for the coordination tests: a three-member cluster on loopback.
#   scripts/etcd.sh install        Debian etcd-server + protobuf-compiler + libprotobuf-dev (protoc
#                                  and its well-known .proto files build the
#                                  `etcd` feature of syncguard-coordination); idempotent, quiet.
#   scripts/etcd.sh start DIR [BASE]
#                                  three members, data and logs under DIR, client ports
#                                  BASE+1..3 (default 23791-23793), peer ports BASE+11..13
#                                  (23801-23803); waits until all three are healthy, prints
#                                  the client endpoints on one line, comma-separated.
#   scripts/etcd.sh stop DIR       stops the members started with that DIR (by their pid files).
set -euo pipefail

etcd_bin() {
  if [[ -n "${SYNCGUARD_ETCD:-}" ]]; then echo "$SYNCGUARD_ETCD"; return; fi
  command -v etcd 2>/dev/null || { [[ -x /usr/bin/etcd ]] && echo /usr/bin/etcd; } || true
}

install() {
  if [[ -n "$(etcd_bin)" ]] && command -v protoc >/dev/null 2>&1 && [[ -f /usr/include/google/protobuf/descriptor.proto ]]; then
    return 0
  fi
  if [[ "$(id -u)" != 0 ]]; then
    echo "etcd.sh: installing etcd-server and protobuf-compiler needs root (apt-get)" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # The package's maintainer scripts may try to start a system etcd on 2379; policy-rc.d is
  # not ours to change, so we stop whatever it started right after (only that service).
  apt-get install -y -qq --no-install-recommends etcd-server protobuf-compiler libprotobuf-dev >/dev/null
  if command -v service >/dev/null 2>&1 && service etcd status >/dev/null 2>&1; then
    service etcd stop >/dev/null 2>&1 || true
  fi
  [[ -n "$(etcd_bin)" ]] || { echo "etcd.sh: etcd still not found after install" >&2; return 1; }
}

start() {
  local dir="${1:?usage: etcd.sh start DIR [BASE]}" base="${2:-23790}"
  local bin; bin="$(etcd_bin)"
  [[ -n "$bin" ]] || { echo "etcd.sh: etcd not installed (run: scripts/etcd.sh install)" >&2; return 1; }
  mkdir -p "$dir"
  local cluster="" i
  for i in 1 2 3; do
    cluster+="${cluster:+,}m$i=http://127.0.0.1:$((base + 10 + i))"
  done
  local endpoints=""
  for i in 1 2 3; do
    local client="http://127.0.0.1:$((base + i))" peer="http://127.0.0.1:$((base + 10 + i))"
    mkdir -p "$dir/m$i"
    ETCD_UNSUPPORTED_ARCH="" "$bin" --name "m$i" --data-dir "$dir/m$i/data" \
      --listen-client-urls "$client" --advertise-client-urls "$client" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token "syncguard-test-$base" \
      >"$dir/m$i/log" 2>&1 &
    echo $! >"$dir/m$i/pid"
    endpoints+="${endpoints:+,}$client"
  done
  local deadline=$((SECONDS + 30))
  while :; do
    local ok=0
    for i in 1 2 3; do
      if curl -fsS "http://127.0.0.1:$((base + i))/health" 2>/dev/null | grep -q '"health":"true"'; then
        ok=$((ok + 1))
      fi
    done
    [[ $ok == 3 ]] && break
    if ((SECONDS > deadline)); then
      echo "etcd.sh: cluster under $dir not healthy after 30 s; logs in $dir/m*/log" >&2
      stop "$dir"
      return 1
    fi
    sleep 0.2
  done
  echo "$endpoints"
}

stop() {
  local dir="${1:?usage: etcd.sh stop DIR}" i pids=()
  for i in 1 2 3; do
    local pidfile="$dir/m$i/pid"
    [[ -f "$pidfile" ]] || continue
    local pid; pid="$(cat "$pidfile")"
    # Only a process that is still our etcd member (its data dir is on its command line).
    if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$dir/m$i/data"; then
      kill "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$pidfile"
  done
  # A leader whose followers are gone may hang in its leadership transfer: wait 5 s, then kill.
  local deadline=$((SECONDS + 5)) p
  for p in "${pids[@]}"; do
    while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
}

case "${1:-}" in
  install) install ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) echo "usage: $0 install | start DIR [BASE] | stop DIR" >&2; exit 2 ;;
esac
