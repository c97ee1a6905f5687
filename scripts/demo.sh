#!/usr/bin/env bash
# The main job, end to end on this machine: starts a real local Kubernetes control plane
# (etcd + kube-apiserver), installs Bulkhead's CRDs and chart with Helm, runs the `bulkhead`
# controller and admission webhook as the chart's ServiceAccount, and shows namespaces being
# segmented, drift repaired, and a pod that would break segmentation being rejected.
#
#   scripts/demo.sh          run and clean up
#   scripts/demo.sh --keep   leave everything running and print how to use it
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

keep=false
[ "${1:-}" = "--keep" ] && keep=true

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; eval "$@"; }

scripts/install-deps.sh
scripts/testenv.sh build
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build build -j2 --target bulkhead | grep -v '^ninja: no work to do' || true

dir=$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-demo.XXXXXX")
rmdir "$dir"
controller_pid=""
cleanup() {
  $keep && return 0
  [ -n "$controller_pid" ] && kill "$controller_pid" 2>/dev/null && wait "$controller_pid" 2>/dev/null
  scripts/testenv.sh stop "$dir"
}
trap cleanup EXIT

step "Starting a local control plane (etcd + kube-apiserver $(scripts/testenv.sh paths >/dev/null; echo v1.35.4))"
scripts/testenv.sh start "$dir"
# shellcheck disable=SC1091
source "$dir/env"
kubectl version | grep Server

step "Installing the CRDs (Bulkhead's and Istio's) and the chart"
kubectl apply --server-side -f charts/bulkhead/crds/ -f "$TESTENV_ISTIO_CRDS" >/dev/null
kubectl wait --for condition=established --timeout=60s \
  crd/segmentationpolicies.bulkhead.dev crd/peerauthentications.security.istio.io >/dev/null
show helm install bulkhead charts/bulkhead --namespace bulkhead-system --create-namespace \
  "| grep -E '^(NAME|STATUS)'"

step "Running bulkhead (controller + webhook) as the chart's ServiceAccount (a real token)"
sa="$dir/serviceaccount"
mkdir -p "$sa"
cp "$TESTENV_CA" "$sa/ca.crt"
echo bulkhead-system > "$sa/namespace"
kubectl create token bulkhead -n bulkhead-system --duration 2h > "$sa/token"
KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="${TESTENV_APISERVER_URL##*:}" \
  KUBECONFIG= build/bin/bulkhead --service-account-dir "$sa" --leader-elect \
  --metrics-bind-address 127.0.0.1:0 --mesh-discovery-interval 2s \
  --webhook-url "https://127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')/validate" \
  >"$dir/bulkhead.log" 2>&1 &
controller_pid=$!
for _ in $(seq 1 300); do
  grep -q '"registered the ValidatingWebhookConfiguration' "$dir/bulkhead.log" && break
  sleep 0.1
done
grep -E 'connected|became leader|serving the admission|registered the' "$dir/bulkhead.log" | cut -c1-160

step "Three namespaces, two of them labelled zero-trust=on, and a SegmentationPolicy"
show kubectl create namespace shop
show kubectl create namespace payments
show kubectl create namespace blog
show kubectl label namespace shop payments zero-trust=on
show "kubectl apply -f - <<'YAML'
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: baseline}
spec:
  namespaceSelector: {matchLabels: {zero-trust: \"on\"}}
YAML"

for _ in $(seq 1 100); do
  [ "$(kubectl get segpol baseline -o jsonpath='{.status.segmentedNamespaces}' 2>/dev/null)" = 2 ] && break
  sleep 0.2
done

step "What Bulkhead generated (nothing in blog, which is not selected)"
show kubectl get segpol
show kubectl get networkpolicies,peerauthentications -A -l app.kubernetes.io/managed-by=bulkhead
show kubectl get networkpolicy bulkhead-default-deny -n shop -o jsonpath="'{.spec}{\"\\n\"}'"

step "A pod on the host network would bypass every NetworkPolicy: rejected"
pod() {
  printf '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"%s","namespace":"%s","labels":{"app.kubernetes.io/name":"web"}},"spec":{%s"containers":[{"name":"web","image":"nginx"}]}}' "$1" "$2" "$3"
}
for _ in $(seq 1 50); do  # the API server picks the webhook up within a moment
  pod probe shop '"hostNetwork":true,' | kubectl create --dry-run=server -f - >/dev/null 2>&1 || break
  sleep 0.2
done
show "pod web-1 shop '\"hostNetwork\":true,' | kubectl create -f - || true"
show "pod web-1 shop '' | kubectl create -f -"

step "Generated objects are guarded: a user may not delete them"
show "kubectl delete networkpolicy bulkhead-default-deny -n shop || true"

step "Drift is repaired even past the webhook: remove the webhook, delete the default-deny"
show kubectl delete validatingwebhookconfiguration bulkhead
show kubectl delete networkpolicy bulkhead-default-deny -n shop
sleep 1
show kubectl get networkpolicy bulkhead-default-deny -n shop
show "kubectl get events -n shop --field-selector reason=Repaired -o custom-columns=REASON:.reason,MESSAGE:.message"

step "Taking a namespace out of the selection removes what was generated there"
show kubectl label namespace payments zero-trust-
sleep 1
show kubectl get networkpolicies -n payments
show kubectl get segpol baseline

if $keep; then
  step "Left running. To use it:"
  echo "  source $dir/env && kubectl get segpol,networkpolicies -A"
  echo "  bulkhead log: $dir/bulkhead.log (pid $controller_pid)"
  echo "  stop: kill $controller_pid; scripts/testenv.sh stop $dir"
fi
