#!/usr/bin/env bash
# The Dockerfile's runtime stage installs what the binary needs and nothing it does not: every
# shared library `ldd` finds for the built binary comes from a package the runtime stage
# installs, one of their dependencies, or a package bookworm-slim already has; every package it
# installs (but ca-certificates) provides a library the binary links. No Docker engine is needed:
# this machine is Debian 12 too, so its dpkg database answers for the image.
#
#   tests/packaging/dockerfile_test.sh BINARY
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
binary=${1:?usage: dockerfile_test.sh BINARY}
dockerfile="$root/Dockerfile"

# In bookworm-slim (Priority required; the libraries among them).
base="libc6 libgcc-s1 libstdc++6 zlib1g libzstd1 liblzma5 libbz2-1.0 libcrypt1 libselinux1
libpcre2-8-0 libacl1 libattr1 libaudit1 libcap-ng0 libgmp10 libtinfo6 libmd0 libudev1"

# The packages of the runtime stage: the apt-get install after the last FROM.
runtime=$(awk '/^FROM/ {stage++} {print stage "\t" $0}' "$dockerfile" |
  awk -F'\t' -v last="$(grep -c '^FROM' "$dockerfile")" '$1 == last {print $2}' |
  sed -n '/apt-get install/,/rm -rf/p' | tr ' \\' '\n\n' |
  grep -E '^[a-z0-9][a-z0-9.+-]+$' | grep -vE '^(apt-get|install|rm|useradd|update)$' | sort -u)
[ -n "$runtime" ] || { echo "FAIL: no runtime packages found in $dockerfile"; exit 1; }

# Their dependencies, transitively, as this machine's dpkg knows them.
closure=$runtime
frontier=$runtime
while [ -n "$frontier" ]; do
  next=$(for p in $frontier; do
    dpkg-query -W -f='${Depends}\n' "$p" 2>/dev/null | tr ',|' '\n\n' |
      sed -E 's/\(.*\)//; s/:any//; s/^ +//; s/ +$//'
  done | grep -v '^$' | sort -u | comm -23 - <(echo "$closure" | tr ' ' '\n' | sort -u) || true)
  closure=$(printf '%s\n%s\n' "$closure" "$next" | grep -v '^$' | sort -u)
  frontier=$next
done

fail=0
used=""
if ldd "$binary" | grep 'not found'; then
  echo "FAIL: the binary links libraries this machine does not have"; fail=1
fi
while read -r lib; do
  pkg=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null || true)
  pkg=${pkg%%:*}
  used="$used $pkg"
  if [ -z "$pkg" ]; then
    echo "FAIL: $lib belongs to no package"; fail=1
  elif grep -qxF "$pkg" <(echo "$closure") || grep -qw -- "$pkg" <<<"$base"; then
    echo "PASS: $lib from $pkg"
  else
    echo "FAIL: $lib comes from $pkg, which the Dockerfile's runtime stage does not install"
    fail=1
  fi
done < <(ldd "$binary" | awk '/=>/ {print $3}')

for pkg in $runtime; do
  [ "$pkg" = ca-certificates ] && continue
  if grep -qw -- "$pkg" <<<"$used"; then
    echo "PASS: $pkg is needed"
  else
    echo "FAIL: the runtime stage installs $pkg, which the binary does not link"; fail=1
  fi
done
grep -q '^USER 65532' "$dockerfile" && echo "PASS: runs as uid 65532" ||
  { echo "FAIL: the image does not run as non-root uid 65532"; fail=1; }
exit $fail
