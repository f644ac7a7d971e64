#!/usr/bin/env bash
# The fast tier on a bare machine (README "Development and testing"): `cargo test` in a Debian 12
# made here with mmdebstrap that holds a C compiler and the CA bundle and nothing else (no
# PostgreSQL, Prometheus, nginx, Caddy, Chromium, Python, Node, Ruby or PHP), on a clean clone
# of HEAD (committed files only), with this machine's Rust toolchain mounted read-only and an
# empty CARGO_HOME (crates come from crates.io). It passes when every test binary passes and
# every skipped test said what it needs; it prints the counts.
#
#   sudo bash tests/bare.sh     # root: a mount namespace and chroot; a cold debug build
#
# State under target/bare (the base tarball is kept while this file is unchanged; the tree is
# made again and removed on exit). Not part of tests/run.sh, which runs every suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
STATE=$ROOT/target/bare
((EUID == 0)) || { echo "[bare] needs root (unshare --mount, chroot)" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "[bare] needs mmdebstrap (Debian package)" >&2; exit 1; }
SYSROOT=$(rustc --print sysroot)
mkdir -p "$STATE"

base=$STATE/base-$(sha256sum "$0" | cut -c1-16).tar
if [[ ! -s $base ]]; then
  rm -f "$STATE"/base-*.tar
  echo "[bare] making Debian 12 with gcc and libc6-dev (mmdebstrap)"
  mmdebstrap --quiet --variant=apt --format=tar --include=gcc,libc6-dev,ca-certificates bookworm "$base.part"
  mv "$base.part" "$base"
fi
tree=$STATE/root
log=$STATE/cargo-test.log
rm -rf "$tree"
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree"
tar -xf "$base" -C "$tree"
# This machine's network and trust store reach crates.io (a proxy's CA may be in it).
cp /etc/resolv.conf "$tree/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$tree/etc/ssl/certs/ca-certificates.crt"
git clone -q --no-local "$ROOT" "$tree/src"
git -C "$tree/src" checkout -q --detach "$(git rev-parse HEAD)"
mkdir -p "$tree/toolchain" "$tree/cargo"
for tool in psql initdb prometheus nginx caddy chromium node python3 ruby php; do
  if compgen -G "$tree/usr/bin/$tool" >/dev/null || compgen -G "$tree/usr/lib/postgresql/*/bin/$tool" >/dev/null; then
    echo "[bare] FAIL: the bare tree has $tool" >&2
    exit 1
  fi
done

echo "[bare] cargo test on $(git rev-parse --short HEAD), toolchain $(rustc --version)"
start=$SECONDS
set +e
unshare --mount --fork bash -ec '
  tree=$1 sysroot=$2
  mount --bind /proc "$tree/proc"
  mount --rbind /dev "$tree/dev"
  mount --bind /sys "$tree/sys"
  mount -t tmpfs tmpfs "$tree/tmp"
  mount --bind -o ro "$sysroot" "$tree/toolchain"
  exec chroot "$tree" /usr/bin/env -i HOME=/root TERM=dumb CARGO_HOME=/cargo \
    PATH=/toolchain/bin:/usr/bin:/bin bash -c "cd /src && cargo test --locked"
' bare "$tree" "$SYSROOT" >"$log" 2>&1
rc=$?
set -e
elapsed=$((SECONDS - start))
results=$(grep -c '^test result: ok' "$log" || true)
failed=$(grep -c '^test result: FAILED' "$log" || true)
passed=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$log" | awk '{ n += $1 } END { print n + 0 }')
skipped=$(grep -c '^skipped .*: needs ' "$log" || true)
if ((rc != 0 || failed != 0 || results == 0)); then
  tail -n 40 "$log" >&2
  echo "[bare] FAIL: cargo test exited $rc ($failed failing binaries); the log is $log" >&2
  exit 1
fi
echo "[bare] what the skipped tests need:"
sed -n 's/^skipped [^ ]*: needs \(.*\); .*/\1/p' "$log" | sort | uniq -c | sort -rn
echo "[bare] passed in ${elapsed} s: $passed tests in $results binaries, $skipped of them skipped with a line naming what they need; the log is $log"
