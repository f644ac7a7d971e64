#!/usr/bin/env bash
# Makes the image's base, gcr.io/distroless/cc-debian12:nonroot, from Debian packages, for
# machines that reach Debian's mirrors but no container registry (the test command runs it).
# Everywhere else `podman build` / `docker build` simply pulls the real base.
#
#   centrifugo/deploy/make-base.sh OUT.tar [MIRROR [SECURITY_MIRROR]]
#   podman import OUT.tar gcr.io/distroless/cc-debian12:nonroot
#
# What distroless' cc image holds, from the same Debian 12 packages: glibc and libgcc_s (what
# the binary links), libssl3, the CA bundle, time zones, /etc/services, and the users root (0),
# nonroot (65532) and nobody (65534). No shell, no package manager, no other program.
# The tarball is the same for the same package versions: entries sorted, owners numeric, every
# time SOURCE_DATE_EPOCH (default: a fixed instant).
set -euo pipefail
out=${1:?usage: make-base.sh OUT.tar [MIRROR [SECURITY_MIRROR]]}
mirror=${2:-http://deb.debian.org/debian}
security=${3:-http://deb.debian.org/debian-security}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
r=$(mktemp -d)
trap 'rm -rf "$r"' EXIT

# --variant=extract unpacks the packages and their dependencies (Debian 12 with its updates
# and security fixes) without running a maintainer script; what those scripts would have done
# for us (the CA bundle, the users) is done below, and what has no use at run time is removed.
mmdebstrap --quiet --variant=extract --format=directory \
  --include=base-files,netbase,tzdata,ca-certificates,libc6,libgcc-s1,libssl3 \
  bookworm "$r" "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
  "deb $security bookworm-security main"

mkdir -p "$r/etc/ssl/certs"
cat "$r"/usr/share/ca-certificates/mozilla/*.crt >"$r/etc/ssl/certs/ca-certificates.crt"
printf '%s\n' "root:x:0:0:root:/root:/sbin/nologin" \
  "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin" \
  "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" >"$r/etc/passwd"
printf '%s\n' "root:x:0:" "nobody:x:65534:" "nonroot:x:65532:" >"$r/etc/group"
rm -rf "$r"/usr/bin/* "$r"/usr/sbin/* "$r"/usr/games "$r"/usr/local/* \
  "$r"/usr/share/doc "$r"/usr/share/man "$r"/usr/share/info "$r"/usr/share/lintian \
  "$r"/usr/share/perl5 "$r"/usr/share/debconf "$r"/usr/share/bash-completion \
  "$r"/usr/share/ca-certificates "$r"/usr/share/pixmaps "$r"/usr/share/menu \
  "$r"/usr/lib/x86_64-linux-gnu/gconv "$r"/usr/lib/x86_64-linux-gnu/perl-base \
  "$r"/usr/lib/ssl/misc "$r"/var/lib/apt "$r"/var/cache/* "$r"/var/log/* "$r"/etc/apt \
  "$r"/etc/dpkg "$r"/var/lib/dpkg "$r"/etc/debconf.conf "$r"/etc/ld.so.cache
mkdir -p "$r/home/nonroot" "$r/root" "$r/tmp"
chown 65532:65532 "$r/home/nonroot"
chmod 0700 "$r/home/nonroot" "$r/root"
chmod 1777 "$r/tmp"

tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --numeric-owner --xattrs \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -C "$r" -cf "$out" .
