#!/usr/bin/env bash
# CI: the Debian package builds, installs, works, and leaves nothing behind. Builds it
# (scripts/build-deb.sh: the release build is reused when up to date), prints its contents,
# installs it with dpkg -i (needs root), runs the installed binary and checks that it has the
# etcd backend, runs `systemd-analyze verify` on the installed unit and the story drop-in
# (works without systemd as PID 1; installs Debian's `systemd` when systemd-analyze is
# missing) and `syncguard config check --offline` on the installed example configs, checks the
# manual pages and the system user, then removes the package (conffiles and the user stay) and
# purges it (nothing of the package, and no user or group, may be left).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
started=$SECONDS
say() { echo "== deb-check: $*"; }
fail() { echo "deb-check: FAILED: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root: it installs the package with dpkg -i"
command -v dpkg >/dev/null 2>&1 || fail "dpkg not found: this check needs a Debian-like system"
scripts/apt-install.sh systemd-analyze:systemd

deb="$(scripts/build-deb.sh)"
[ -f "$deb" ] || fail "scripts/build-deb.sh printed no package path (got: $deb)"
say "package $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb -f "$deb" Package Version Architecture Depends

if dpkg-query -W -f '${db:Status-Status}' syncguard 2>/dev/null | grep -qv '^not-installed$'; then
  say "syncguard is installed (an earlier run?): purging it first"
  dpkg --purge syncguard
fi
getent passwd syncguard >/dev/null && fail "a user syncguard exists before the install; the purge check needs a host without one"
getent group syncguard >/dev/null && fail "a group syncguard exists before the install; the purge check needs a host without one"
# A failed check must not leave the package installed for the next run.
trap 'status=$?; if [ $status -ne 0 ] && dpkg-query -W syncguard >/dev/null 2>&1; then dpkg --purge syncguard >/dev/null 2>&1 || true; fi' EXIT

say "dpkg -c"
dpkg -c "$deb"
# The package's paths, without the leading ".".
mapfile -t paths < <(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's#^\./#/#; s#/$##' | grep -v '^\.\?$')

say "dpkg -i"
dpkg -i "$deb"

say "syncguard --version"
/usr/bin/syncguard --version | grep -E "^syncguard [0-9]" || fail "/usr/bin/syncguard --version"

# The package serves etcd mode too (scripts/build-deb.sh builds with the etcd feature): etcd's
# gRPC service names are in the binary only when etcd-client is linked in.
say "etcd backend built in"
grep -qF '/etcdserverpb.KV/' /usr/bin/syncguard || fail "/usr/bin/syncguard is built without the etcd backend"
echo "etcd backend: yes"

say "user and group"
getent passwd syncguard || fail "postinst did not create the user syncguard"
getent group syncguard || fail "postinst did not create the group syncguard"
[ "$(getent passwd syncguard | cut -d: -f7)" = /usr/sbin/nologin ] || fail "the user syncguard has a login shell"
[ "$(id -u syncguard)" -lt 1000 ] || fail "the user syncguard is not a system user"

say "systemd-analyze verify"
unit=/usr/lib/systemd/system/syncguard.service
dropin=/usr/share/syncguard/systemd/story.service.d/10-syncguard.conf
[ -f "$unit" ] || fail "$unit is not installed"
[ -f "$dropin" ] || fail "$dropin is not installed"
grep -qx 'ExecStart=/usr/bin/syncguard story --config /etc/syncguard/syncguard.yaml' "$unit" ||
  fail "the unit does not start /usr/bin/syncguard"
tmp="$(mktemp -d)"
# A stand-in for Story's own unit, with the drop-in as the setup installs it.
printf '[Unit]\nDescription=story\n[Service]\nExecStart=/bin/sh -c "exec sleep 1"\n' >"$tmp/story.service"
mkdir "$tmp/story.service.d"
cp "$dropin" "$tmp/story.service.d/"
set +e
verify="$(cd "$tmp" && systemd-analyze verify "$unit" "$tmp/story.service" 2>&1)"
verify_status=$?
set -e
[ -z "$verify" ] || printf '%s\n' "$verify"
# verify exits 0 on unknown keys and bad values, printing them: any line about our files fails.
ours="$(printf '%s\n' "$verify" | grep -E "syncguard|story" || true)"
rm -rf "$tmp"
[ "$verify_status" -eq 0 ] && [ -z "$ours" ] || fail "systemd-analyze verify: $ours"
echo "systemd-analyze verify: $unit and the story drop-in: no finding"

say "config check --offline of the example configs"
for example in /etc/syncguard/primary.example.yaml /etc/syncguard/secondary.example.yaml; do
  /usr/bin/syncguard config check --offline --config "$example" || fail "$example"
  dpkg-query -W -f '${Conffiles}\n' syncguard | grep -q " $example " || fail "$example is not a conffile"
done

say "manual pages"
man1=/usr/share/man/man1
commands="$(/usr/bin/syncguard --help | sed -n '/^Commands:/,/^$/p' | awk 'NR > 1 && $1 != "" && $1 != "help" {print $1}')"
[ -n "$commands" ] || fail "no commands in syncguard --help"
for page in syncguard $(printf 'syncguard-%s\n' $commands) syncguard-config-check syncguard-state-show; do
  [ -f "$man1/$page.1.gz" ] || fail "no manual page $man1/$page.1.gz"
done
zcat "$man1/syncguard-config-check.1.gz" | grep -q -- 'offline' || fail "syncguard-config-check(1) does not document --offline"
[ ! -e "$man1/syncguard-devnet.1.gz" ] && [ ! -e "$man1/syncguard-man.1.gz" ] || fail "a hidden command has a manual page"
ls "$man1" | grep '^syncguard' | tr '\n' ' '
echo

say "dpkg -r: the binary and the unit go, the conffiles and the user stay"
dpkg -r syncguard
[ ! -e /usr/bin/syncguard ] || fail "/usr/bin/syncguard is left after dpkg -r"
[ ! -e "$unit" ] || fail "$unit is left after dpkg -r"
[ -f /etc/syncguard/primary.example.yaml ] || fail "dpkg -r removed a conffile"
getent passwd syncguard >/dev/null || fail "dpkg -r removed the user (only a purge should)"

say "dpkg --purge: nothing left"
dpkg --purge syncguard
left=()
for p in "${paths[@]}"; do
  if [ -d "$p" ] && [ ! -L "$p" ]; then
    # A directory other packages also use (/usr/bin, /usr/share/man/man1, ...) stays.
    dpkg -S "$p" >/dev/null 2>&1 || left+=("$p")
  elif [ -e "$p" ] || [ -L "$p" ]; then
    left+=("$p")
  fi
done
for p in /etc/systemd/system/syncguard.service /etc/systemd/system/multi-user.target.wants/syncguard.service \
  /var/lib/systemd/deb-systemd-helper-enabled/syncguard.service.dsh-also \
  /var/lib/systemd/deb-systemd-helper-masked/syncguard.service; do
  if [ -e "$p" ] || [ -L "$p" ]; then left+=("$p"); fi
done
[ ${#left[@]} -eq 0 ] || fail "left after the purge: ${left[*]}"
getent passwd syncguard >/dev/null && fail "the user syncguard is left after the purge"
getent group syncguard >/dev/null && fail "the group syncguard is left after the purge"
dpkg-query -W -f '${db:Status-Status}' syncguard 2>/dev/null | grep -qv '^not-installed$' &&
  fail "dpkg still knows syncguard: $(dpkg-query -W -f '${db:Status-Status}' syncguard)"
echo "nothing left: ${#paths[@]} package paths, the user and the group are gone"

say "ok in $((SECONDS - started)) s"
