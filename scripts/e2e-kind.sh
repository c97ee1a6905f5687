#!/usr/bin/env bash
# End to end in a real cluster, for users with Docker and kind: builds the image from the
# Dockerfile, creates a kind cluster, loads the image, installs Istio's CRDs and the chart, waits
# for both replicas, and runs the same end-to-end suite as scripts/demo.sh (tests/e2e/suite.sh).
# The project's build machines have no Docker engine, so this runs only where Docker does.
#
#   scripts/e2e-kind.sh          run, then delete the cluster
#   scripts/e2e-kind.sh --keep   leave the cluster running (kind delete cluster --name bulkhead-e2e)
#
# Needs docker, kind, kubectl and helm on PATH, and Go to fetch Istio's CRDs (or set
# ISTIO_CRDS to a file holding them). KIND_CLUSTER names the cluster (default bulkhead-e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

keep=false
[ "${1:-}" = "--keep" ] && keep=true
cluster=${KIND_CLUSTER:-bulkhead-e2e}
image=bulkhead:e2e

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "e2e-kind: $tool is needed" >&2; exit 2; }
done
docker info >/dev/null 2>&1 || { echo "e2e-kind: the Docker engine is not reachable" >&2; exit 2; }
istio_crds=${ISTIO_CRDS:-$(scripts/testenv.sh istio-crds)}

step "Building the image $image"
docker build -t "$image" .

step "Creating the kind cluster $cluster"
created=false
if ! kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --wait 180s
  created=true
fi
cleanup() {
  if ! $keep && $created; then
    kind delete cluster --name "$cluster"
  fi
}
trap cleanup EXIT
kubectl config use-context "kind-$cluster" >/dev/null
kind load docker-image "$image" --name "$cluster"

step "Installing Istio's CRDs and the chart"
kubectl apply --server-side -f "$istio_crds" >/dev/null
helm upgrade --install bulkhead charts/bulkhead --namespace bulkhead-system --create-namespace \
  --set image.repository=bulkhead --set image.tag=e2e --set image.pullPolicy=Never \
  --set logLevel=debug
kubectl -n bulkhead-system rollout status deployment/bulkhead --timeout=180s
kubectl -n bulkhead-system get pods -o wide

status=0
E2E_KEEP=$($keep && echo 1 || echo 0) tests/e2e/suite.sh "$root/charts/bulkhead" || status=$?
if [ $status -ne 0 ]; then
  step "bulkhead's logs"
  kubectl -n bulkhead-system logs deployment/bulkhead --all-containers --tail=200 || true
fi
exit $status
