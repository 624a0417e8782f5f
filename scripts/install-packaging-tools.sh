#!/usr/bin/env bash
# Installs what building the Debian package needs beyond cargo, into the project's own
# .devtools/ folder:
#   - cargo-deb (crates.io, pinned), as .devtools/cargo/bin/cargo-deb; scripts/build-deb.sh
#     puts that folder on PATH so that `cargo deb` finds it
#   - dpkg-dev (Debian), for dpkg-shlibdeps: cargo-deb computes the package's Depends with it
# Idempotent: does nothing when the pinned version is already there. Prints the folder to put
# on PATH.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
prefix="$root/.devtools/cargo"
cargo_deb_version="3.8.0"

scripts/apt-install.sh dpkg-shlibdeps:dpkg-dev >&2

if ! "$prefix/bin/cargo-deb" --version 2>/dev/null | grep -qx "cargo-deb $cargo_deb_version"; then
  echo "install-packaging-tools: installing cargo-deb $cargo_deb_version into $prefix" >&2
  # Its own Cargo.lock (--locked), built in a temporary folder (not the workspace's target).
  env -u CARGO_TARGET_DIR cargo install --quiet --locked --force --root "$prefix" \
    --version "=$cargo_deb_version" cargo-deb >&2
fi
echo "$prefix/bin"
