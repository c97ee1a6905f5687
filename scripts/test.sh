#!/usr/bin/env bash
# Builds everything and runs every test: unit, integration (real kube-apiserver + etcd; the chart
# with real Helm), the end-to-end suite on an API server alone (scripts/demo.sh --no-node), the
# node suite on a real single-node cluster (tests/node/run.sh: Bulkhead's image, the chart as
# pods, segmentation proven by traffic), and the pure core's unit tests again under
# AddressSanitizer + UBSan. Exits non-zero on any failure.
# Installs what it needs when missing; fast when already set up.
#
#   scripts/test.sh              everything
#   scripts/test.sh -L unit      only tests with this CTest label (ctest arguments pass through)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

phases=()
phase_start=0
current=""
begin() { current=$1; phase_start=$(date +%s.%N); echo "==> $1"; }
end() {
  local t; t=$(awk -v a="$phase_start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  phases+=("$(printf '%-34s %8ss' "$current" "$t")"); current=""
}
summary() {
  local rc=$?
  [ -n "$current" ] && end
  echo
  echo "Timing:"
  for p in "${phases[@]}"; do echo "  $p"; done
  [ $rc -eq 0 ] && echo "scripts/test.sh: all passed" || echo "scripts/test.sh: FAILED (exit $rc)"
}
trap summary EXIT

jobs=${BULKHEAD_JOBS:-2}

begin "install Debian packages"
scripts/install-deps.sh
end

begin "build the test control plane"
scripts/testenv.sh build
end

begin "configure and build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBULKHEAD_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
end

check_leftovers() {
  # Every control plane a test binary started must be gone, and its directory with it.
  local i
  for i in $(seq 1 30); do
    pgrep -f 'bulkhead-testenv\.' >/dev/null || break
    sleep 0.2
  done
  local left=0
  if pgrep -af 'bulkhead-testenv\.' | grep -E 'etcd|kube-apiserver'; then
    echo "error: control-plane processes were left running by the tests" >&2
    pkill -9 -f 'bulkhead-testenv\.' || true
    left=1
  fi
  if compgen -G "${TMPDIR:-/tmp}/bulkhead-testenv.*" >/dev/null; then
    echo "error: test directories were left behind: $(echo "${TMPDIR:-/tmp}"/bulkhead-testenv.*)" >&2
    rm -rf "${TMPDIR:-/tmp}"/bulkhead-testenv.*
    left=1
  fi
  return $left
}

status=0
if [ $# -gt 0 ]; then
  begin "ctest $*"
  ctest --test-dir build --output-on-failure "$@" || status=1
  end
  check_leftovers || status=1
  exit $status
fi

begin "unit tests"
ctest --test-dir build --output-on-failure -L unit -j"$jobs" || status=1
end

begin "integration tests"
ctest --test-dir build --output-on-failure -L integration || status=1
end
check_leftovers || status=1

# Every benchmark at its smoke size: a broken benchmark fails here, not months later.
begin "benchmarks at smoke size"
ctest --test-dir build --output-on-failure -L bench || status=1
end
check_leftovers || status=1

begin "end-to-end suite on an API server (scripts/demo.sh --no-node)"
scripts/demo.sh --no-node || status=1
end

# The node suite needs root and a kernel that runs containers; where it cannot run, say why.
begin "node suite (tests/node/run.sh)"
if why=$(scripts/node.sh check 2>&1); then
  tests/node/run.sh || status=1
else
  echo "scripts/test.sh: SKIPPED the node suite: ${why#node: }"
fi
end

begin "pure core under ASan+UBSan"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DBULKHEAD_SANITIZE=address \
  -DBULKHEAD_PURE_ONLY=ON -DBULKHEAD_WERROR=ON >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -L unit -j"$jobs" || status=1
end

exit $status
