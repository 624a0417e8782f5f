#!/usr/bin/env bash
# CI: `rust-version` in the workspace's Cargo.toml states the real minimum Rust. Only the
# current toolchains are installed and older ones cannot be downloaded, so the minimum is
# recomputed offline, from three lower bounds, and the declared value must be their maximum:
#   (a) the standard library: clippy's `incompatible_msrv` lint, with the MSRV set to a floor
#       (1.56, the first release with edition 2021), over every workspace crate, all targets,
#       the `etcd` feature included. It reports each use of a std item that is "stable since"
#       a later release; the latest of those is the minimum our own code needs.
#   (b) the dependencies: the highest `rust-version` declared by a package of Cargo.lock as
#       resolved for this platform with every feature (`cargo metadata`), the workspace's own
#       crates left out.
#   (c) the language, in part: the edition's first release, and let-chains under edition
#       2024. Other syntax is no API, so (a) does not see it: README.md, "Minimum Rust", has
#       the reasoning.
# Every workspace crate must inherit the value (`rust-version.workspace = true`): a crate that
# declares its own fails the check.
# Prints each bound and where it comes from; exit 1 when the declared value is not the largest
# bound or a crate does not inherit it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
floor="1.56.0"
fail() { echo "msrv-check: FAILED: $*" >&2; exit 1; }
# 1.89 -> 1.89.0, so that sort -V compares like with like.
norm() { awk -F. '{ printf "%d.%d.%d\n", $1, $2, ($3 == "" ? 0 : $3) }' <<<"$1"; }
max_of() { sort -V | tail -n 1; }
scripts/apt-install.sh jq:jq     # reads cargo metadata and clippy's JSON
scripts/etcd.sh install # protoc, for the etcd feature

declared="$(sed -n '/^\[workspace.package\]/,/^\[/s/^rust-version *= *"\([^"]*\)".*/\1/p' Cargo.toml)"
[ -n "$declared" ] || fail "no rust-version in [workspace.package] of Cargo.toml"
declared="$(norm "$declared")"
echo "declared: rust-version = $declared ([workspace.package] of Cargo.toml)"

# Every crate inherits it.
members="$(cargo metadata --format-version 1 --no-deps --locked)"
mismatch="$(jq -r --arg d "$declared" '.packages[]
  | select(((.rust_version // "none") | split(".") | if length == 2 then . + ["0"] else . end | join(".")) != $d)
  | "\(.name): \(.rust_version // "none")"' <<<"$members")"
[ -z "$mismatch" ] || fail "these crates do not inherit the workspace's rust-version ($declared): $mismatch"
for manifest in $(jq -r '.packages[].manifest_path' <<<"$members"); do
  grep -qx 'rust-version.workspace = true' "$manifest" ||
    fail "${manifest#"$root"/} does not say rust-version.workspace = true"
done
echo "every workspace crate inherits it ($(jq '.packages | length' <<<"$members") crates)"

# (b) dependencies.
deps="$(cargo metadata --format-version 1 --locked --all-features --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" |
  jq -r '(.workspace_members) as $ws | (.resolve.nodes | map(.id)) as $used
    | .packages[] | select(.rust_version != null)
    | select(.id as $i | ($used | index($i)) and ($ws | index($i) | not))
    | "\(.rust_version) \(.name) \(.version)"')"
deps_max="$(cut -d' ' -f1 <<<"$deps" | while read -r v; do norm "$v"; done | max_of)"
deps_who="$(while read -r v name version; do
  if [ "$(norm "$v")" = "$deps_max" ]; then printf '%s %s, ' "$name" "$version"; fi; done <<<"$deps")"
echo "(b) dependencies: $deps_max (${deps_who%, })"

# (a) std APIs of our own code. clippy.toml's msrv wins over Cargo.toml's rust-version.
conf="$(mktemp -d)"
trap 'rm -rf "$conf"' EXIT
echo "msrv = \"$floor\"" >"$conf/clippy.toml"
CLIPPY_CONF_DIR="$conf" cargo clippy --workspace --all-targets --locked --features syncguard-coordination/etcd \
  --message-format=json -q -- -A clippy::all -W clippy::incompatible_msrv >"$conf/out.json"
uses="$(jq -r 'select(.reason == "compiler-message" and .message.code.code == "clippy::incompatible_msrv")
  | .message as $m | ($m.spans[] | select(.is_primary)) as $s
  | "\($m.message | capture("stable since `(?<v>[0-9.]+)`").v) \($s.file_name):\($s.line_start) \($s.text[0].text | gsub("^ +"; ""))"' \
  "$conf/out.json" | sort -u)"
if [ -z "$uses" ]; then
  api_max="$floor"
  echo "(a) std APIs: nothing newer than $floor"
else
  api_max="$(cut -d' ' -f1 <<<"$uses" | while read -r v; do norm "$v"; done | max_of)"
  echo "(a) std APIs: $api_max; every use newer than $floor:"
  sed 's/^/      /' <<<"$uses"
fi

# (c) the language, as far as a script can tell: the edition's first release (2021: 1.56,
# 2024: 1.85); with edition 2024, let-chains (`if let ... && let ...`) need 1.88.
edition="$(sed -n '/^\[workspace.package\]/,/^\[/s/^edition *= *"\([^"]*\)".*/\1/p' Cargo.toml)"
case "$edition" in
  2021) lang_max="1.56.0" ;;
  2024)
    lang_max="1.85.0"
    if grep -rEq --include='*.rs' '(if|while) let [^{]*&& *let ' crates; then lang_max="1.88.0"; fi ;;
  *) fail "edition $edition: teach scripts/msrv-check.sh its first release" ;;
esac
echo "(c) language: edition $edition, $lang_max"

need="$(printf '%s\n%s\n%s\n' "$deps_max" "$api_max" "$lang_max" | max_of)"
echo "minimum: $need"
fix="set rust-version = \"${need%.0}\" in [workspace.package] of Cargo.toml (and in README.md)"
if [ "$need" != "$declared" ]; then
  if [ "$(printf '%s\n%s\n' "$need" "$declared" | max_of)" = "$need" ]; then
    fail "rust-version = $declared is lower than the minimum $need: $fix"
  fi
  # Higher than every bound: either a needless demand on users, or a need this script does not
  # see (new syntax), which belongs in (c) above so that the next reader sees it too.
  fail "rust-version = $declared is higher than the minimum found, $need: $fix, or teach (c) of scripts/msrv-check.sh what needs $declared"
fi
echo "msrv-check: ok (declared $declared = minimum $need)"
