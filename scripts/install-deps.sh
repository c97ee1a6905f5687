#!/usr/bin/env bash
# Installs the Debian packages that building and testing Bulkhead need, only when missing.
# Quiet and fast (one dpkg query) when everything is already present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git openssl ca-certificates curl
  libcpprest-dev libboost-dev libboost-system-dev libssl-dev libyaml-cpp-dev nlohmann-json3-dev
  libspdlog-dev libfmt-dev doctest-dev libsimdjson-dev
  clang libclang-rt-14-dev wrk
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
