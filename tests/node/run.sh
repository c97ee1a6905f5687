#!/usr/bin/env bash
# Bulkhead on a real node (scripts/demo.sh runs this by default; scripts/test.sh too): builds
# what the node needs and Bulkhead's image (scripts/node.sh build), starts the node cluster,
# installs Istio's CRDs and the chart with that image, so Bulkhead runs as two pods, then runs:
#   tests/e2e/suite.sh          the end-to-end suite, as in every other target
#   tests/node/connectivity.sh  segmentation proven by traffic: the pod-to-pod matrix before and
#                               after a SegmentationPolicy, DNS, API server egress, repair window
#   tests/node/lifecycle.sh     the chart as pods: Lease, certificates, handover, uninstall
# and finally checks that the node left nothing behind.
#
#   tests/node/run.sh [--keep]   (--keep leaves the cluster running and says how to use it)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

keep=false
[ "${1:-}" = "--keep" ] && keep=true
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; }

step "Building the node's parts and Bulkhead's image (cached after the first run)"
t=$SECONDS
scripts/node.sh build
echo "built in $((SECONDS - t)) s"

dir=$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-node.XXXXXX")
before="$dir.before"
tests/node/leftovers.sh snapshot "$before"
rmdir "$dir"
cleanup() {
  local rc=$?
  if $keep && [ $rc -eq 0 ]; then return 0; fi
  if [ $rc -ne 0 ] && [ -f "$dir/env" ]; then
    step "bulkhead's logs (the run failed)"
    kubectl -n bulkhead-system logs -l app.kubernetes.io/name=bulkhead --all-containers \
      --tail=60 --prefix 2>/dev/null | cut -c1-300 || true
  fi
  scripts/node.sh down "$dir"
  tests/node/leftovers.sh check "$dir" "$before" || rc=1
  rm -f "$before"
  exit $rc
}
trap cleanup EXIT

step "Starting a single-node cluster (scripts/node.sh up)"
t=$SECONDS
scripts/node.sh up "$dir" --owner $$
# shellcheck disable=SC1091
source "$dir/env"
echo "up in $((SECONDS - t)) s"
show kubectl get nodes -o wide
kubectl get nodes -o wide
show kubectl get pods -A -o wide
kubectl get pods -A -o wide

step "Installing Istio's CRDs and Bulkhead's chart: Bulkhead runs as pods"
kubectl apply --server-side -f "$TESTENV_ISTIO_CRDS" >/dev/null
t=$SECONDS
show helm install bulkhead charts/bulkhead -n bulkhead-system --create-namespace \
  --set image.repository="${NODE_BULKHEAD_IMAGE%:*}" --set image.tag="${NODE_BULKHEAD_IMAGE##*:}" \
  --set image.pullPolicy=Never --set backgroundScan.installReportCRD=true --wait
helm install bulkhead charts/bulkhead -n bulkhead-system --create-namespace \
  --set image.repository="${NODE_BULKHEAD_IMAGE%:*}" --set image.tag="${NODE_BULKHEAD_IMAGE##*:}" \
  --set image.pullPolicy=Never --set backgroundScan.installReportCRD=true --wait --timeout 180s |
  grep -E '^(NAME|STATUS)'
echo "both replicas Ready $((SECONDS - t)) s after helm install"
show kubectl get pods,lease -n bulkhead-system -o wide
kubectl get pods,lease -n bulkhead-system -o wide

status=0
tests/e2e/suite.sh "$root/charts/bulkhead" || status=1
# The matrices are also asked of `bulkhead explain` (tests/node/lib.sh): this tree's build.
if [ -z "${BULKHEAD_EXPLAIN:-}" ] && [ -x build/bin/bulkhead ]; then
  export BULKHEAD_EXPLAIN=$PWD/build/bin/bulkhead
fi
tests/node/connectivity.sh || status=1
tests/node/lifecycle.sh "$root/charts/bulkhead" || status=1

if $keep && [ $status -eq 0 ]; then
  step "Left running. To use it:"
  echo "  source $dir/env; kubectl get pods -A"
  echo "  stop: scripts/node.sh down $dir"
fi
exit $status
