#!/usr/bin/env bash
# The main job, end to end on this machine.
#
# By default on a real single-node cluster (scripts/node.sh: kubelet, containerd, kube-proxy,
# CoreDNS, kube-router as the NetworkPolicy data plane): builds Bulkhead's image from the
# Dockerfile, `helm install`s the chart so that Bulkhead runs as two pods, runs the end-to-end
# suite (tests/e2e/suite.sh), then shows segmentation as traffic: a pod-to-pod connectivity matrix
# before and after a SegmentationPolicy (tests/node/connectivity.sh), and the chart's life as pods
# (tests/node/lifecycle.sh: Lease, certificates, leader handover, uninstall).
#
# With --no-node (or where no node can run), an API server alone: starts etcd + kube-apiserver,
# installs the chart, runs `bulkhead` locally as the chart's ServiceAccount (a real token) with
# the chart's Deployment args and the chart's webhook configuration pointed at it, and runs the
# same end-to-end suite.
#
#   scripts/demo.sh [--no-node] [--keep]
#                            run and clean up; exits non-zero if any check failed; --keep
#                            leaves everything running and prints how to use it
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

keep=false
node=true
for arg in "$@"; do
  case "$arg" in
    --keep) keep=true ;;
    --no-node) node=false ;;
    *) echo "usage: scripts/demo.sh [--no-node] [--keep]" >&2; exit 2 ;;
  esac
done
if $node && ! why=$(scripts/node.sh check 2>&1); then
  echo "demo: ${why#node: } -- running on an API server alone (--no-node)"
  node=false
fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; }

scripts/install-deps.sh
if $node; then
  args=()
  $keep && args+=(--keep)
  exec tests/node/run.sh "${args[@]}"
fi
scripts/testenv.sh build
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build build -j2 --target bulkhead | grep -v '^ninja: no work to do' || true

dir=$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-demo.XXXXXX")
rmdir "$dir"
bulkhead_pid=""
cleanup() {
  $keep && return 0
  [ -n "$bulkhead_pid" ] && kill "$bulkhead_pid" 2>/dev/null && wait "$bulkhead_pid" 2>/dev/null
  scripts/testenv.sh stop "$dir"
}
trap cleanup EXIT

step "Starting a local control plane (etcd + kube-apiserver)"
scripts/testenv.sh start "$dir"
# shellcheck disable=SC1091
source "$dir/env"
kubectl version | grep Server

step "Installing Istio's CRDs (the mesh Bulkhead configures) and Bulkhead's chart"
kubectl apply --server-side -f "$TESTENV_ISTIO_CRDS" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# No kubelet runs here, so the chart's pods never start: bulkhead runs on loopback instead, and
# the chart's webhook configuration calls it there.
show helm install bulkhead charts/bulkhead --namespace bulkhead-system --create-namespace \
  --set webhook.url=https://127.0.0.1:$port/validate --set backgroundScan.installReportCRD=true
helm install bulkhead charts/bulkhead --namespace bulkhead-system --create-namespace \
  --set "webhook.url=https://127.0.0.1:$port/validate" --set backgroundScan.installReportCRD=true |
  grep -E '^(NAME|STATUS)'
kubectl wait --for condition=established --timeout=60s crd/segmentationpolicies.bulkhead.dev \
  crd/peerauthentications.security.istio.io >/dev/null
show kubectl get all,pdb,validatingwebhookconfiguration -n bulkhead-system -l app.kubernetes.io/instance=bulkhead
kubectl get all,pdb,validatingwebhookconfiguration -n bulkhead-system \
  -l app.kubernetes.io/instance=bulkhead

step "Running bulkhead with the chart's Deployment args, as its ServiceAccount (a real token)"
sa="$dir/serviceaccount"
mkdir -p "$sa"
cp "$TESTENV_CA" "$sa/ca.crt"
echo bulkhead-system > "$sa/namespace"
kubectl create token bulkhead -n bulkhead-system --duration 2h > "$sa/token"
mapfile -t args < <(kubectl get deployment bulkhead -n bulkhead-system \
  -o jsonpath='{range .spec.template.spec.containers[0].args[*]}{@}{"\n"}{end}')
# Made local: loopback addresses, a certificate for 127.0.0.1, faster Istio discovery.
local_args=(--service-account-dir "$sa" --metrics-bind-address 127.0.0.1:0
  --webhook-bind-address "127.0.0.1:$port" --webhook-cert-hosts 127.0.0.1
  --mesh-discovery-interval 2s)
show "bulkhead ${args[*]} ${local_args[*]}"
KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="${TESTENV_APISERVER_URL##*:}" \
  KUBECONFIG='' TMPDIR="$dir" build/bin/bulkhead "${args[@]}" "${local_args[@]}" \
  >"$dir/bulkhead.log" 2>&1 &
bulkhead_pid=$!
for _ in $(seq 1 300); do
  grep -q '"serving the admission webhook' "$dir/bulkhead.log" && break
  kill -0 "$bulkhead_pid" 2>/dev/null || { cat "$dir/bulkhead.log"; exit 1; }
  sleep 0.1
done
grep -E 'connected|became leader|webhook certificates|serving the admission' "$dir/bulkhead.log" |
  cut -c1-170
show kubectl get secret bulkhead-webhook-tls -n bulkhead-system
kubectl get secret bulkhead-webhook-tls -n bulkhead-system

status=0
E2E_KEEP=$($keep && echo 1 || echo 0) tests/e2e/suite.sh "$root/charts/bulkhead" || status=$?

if grep -q '"level":"error"' "$dir/bulkhead.log"; then
  step "Errors bulkhead logged"
  grep '"level":"error"' "$dir/bulkhead.log" | cut -c1-300
fi

if $keep; then
  step "Left running. To use it:"
  echo "  source $dir/env"
  echo "  kubectl get segpol,segex -A; kubectl get networkpolicies,peerauthentications -A"
  echo "  bulkhead log: $dir/bulkhead.log (pid $bulkhead_pid)"
  echo "  stop: kill $bulkhead_pid; scripts/testenv.sh stop $dir"
fi
exit $status
