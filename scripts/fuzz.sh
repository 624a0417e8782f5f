#!/usr/bin/env bash
# Short fuzzing run of every target in fuzz/ (cargo-fuzz, libFuzzer): for CI and before a
# release. Installs cargo-fuzz if missing, seeds each corpus from fuzz/seeds/ and the recorded
# fixtures (../shared/fixtures, skipped quietly when absent), runs each target for
# FUZZ_SECONDS (default 4; 6 targets ≈ 35 s warm) and fails on any crash, leaving the crashing
# input in fuzz/artifacts/<target>/.  Usage: scripts/fuzz.sh [target...]
# One stable toolchain only: cargo-fuzz needs nightly flags (-Z sanitizer), hence
# RUSTC_BOOTSTRAP=1. fuzz/ is its own workspace, with its own target dir (fuzz/target).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
seconds="${FUZZ_SECONDS:-4}"
export RUSTC_BOOTSTRAP=1
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(state_file key_file config comet_rpc evm_rpc peer_message)
fi

fixtures="$root/../shared/fixtures"
seed() { # seed <target>: fill fuzz/corpus/<target> (kept between runs, not in git)
    local t="$1" dir="fuzz/corpus/$1" f i=0
    mkdir -p "$dir"
    if [ -d "fuzz/seeds/$t" ]; then cp -f fuzz/seeds/"$t"/* "$dir"/ 2>/dev/null || true; fi
    [ -d "$fixtures" ] || return 0
    case "$t" in
    state_file) cp -f "$fixtures"/privval/*state*.json "$dir"/ 2>/dev/null || true ;;
    key_file) cp -f "$fixtures"/privval/*key*.json "$dir"/ 2>/dev/null || true ;;
    comet_rpc) # first byte picks the route: 0 status, 1 net_info, 2 commit
        for f in "$fixtures"/cometbft/*_status.json "$fixtures"/cometbft/*_net_info.json \
            "$fixtures"/cometbft/*_commit_at_height_*.json; do
            [ -f "$f" ] || continue
            case "$f" in *REQUEST*) continue ;; *_status.json) b='\000' ;;
                *_net_info.json) b='\001' ;; *) b='\002' ;; esac
            { printf "$b"; cat "$f"; } >"$dir/fixture_$(basename "$f")"
        done ;;
    evm_rpc) # first byte picks the method: 0 blockNumber, 1 syncing, 2 peerCount, 3 block
        for f in "$fixtures"/evm/*.io; do
            [ -f "$f" ] || continue
            case "$f" in *blockNumber*) b='\000' ;; *syncing*) b='\001' ;;
                *peerCount*) b='\002' ;; *) b='\003' ;; esac
            grep '^<< ' "$f" | sed 's/^<< //' | while IFS= read -r line; do
                i=$((i + 1))
                { printf "$b"; printf '%s' "$line"; } >"$dir/fixture_$(basename "$f" .io)_$i"
            done
        done ;;
    esac
}

echo "== building fuzz targets"
if ! cargo fuzz build --fuzz-dir fuzz >fuzz/build.log 2>&1; then
    tail -n 40 fuzz/build.log
    echo "fuzz: build failed" >&2
    exit 1
fi
failed=()
for t in "${targets[@]}"; do
    seed "$t"
    echo "== fuzz $t (${seconds}s)"
    if ! cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -max_len=65536 -print_final_stats=0 \
        >"fuzz/$t.log" 2>&1; then
        tail -n 40 "fuzz/$t.log"
        failed+=("$t")
    else
        grep -E '^(#[0-9]+ *DONE|Done [0-9]+ runs)' "fuzz/$t.log" | tail -n 1 || true
    fi
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz: crash in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, no crash"
