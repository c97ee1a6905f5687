#!/usr/bin/env bash
# Bulkhead measured against its peers, side by side: Bulkhead, Kyverno and OPA Gatekeeper, each
# on a fresh local control plane of its own (etcd + kube-apiserver from scripts/testenv.sh, one
# after the other, so only one tool's webhooks are ever registered), each configured with the
# closest equivalent of Bulkhead's default SegmentationPolicy (tests/bench/peers/*/), each run out
# of cluster with the flags and environment of its own chart or manifest, as its own
# ServiceAccount with its own RBAC, serving its webhook on loopback behind a webhook
# configuration with url + caBundle. Per tool, in order:
#
#   correctness  the same 20 bad and 20 good pods (tests/bench/peers/pods/), server dry run
#   admission    --creates server-dry-run creates of a 3.9 KB pod through the API server,
#                --concurrency in flight: creates/s, client latency, and the API server's own
#                apiserver_admission_webhook_admission_duration_seconds for the tool's webhooks
#   webhook      the same pod in an AdmissionReview POSTed straight to the tool's webhook URL,
#                --webhook-connections TLS keep-alive connections for --webhook-seconds
#   generation   --namespaces labelled namespaces: time until every one has the tool's
#                generated objects (given up after --generation-timeout, or when none appeared
#                for --generation-stall), and the API writes made until they settle
#   no-op        --noop-seconds with nothing to do: the API writes made
#   memory       peak RSS of the tool's processes in each of those phases
#
# Every figure is printed as a table, absolute and as a ratio to Bulkhead's in the same run, and
# written as Markdown to --out. Everything runs on loopback; nothing is pulled from a registry.
# Not part of CI (scripts/test.sh does not run it).
#
#   tests/bench/peers.sh [--namespaces 1000] [--creates 2000] [--concurrency 8]
#                        [--webhook-seconds 15] [--webhook-connections 16] [--noop-seconds 60]
#                        [--baseline-seconds 60] [--generation-timeout 900]
#                        [--generation-stall 180]
#                        [--tools bulkhead,kyverno,gatekeeper] [--out /tmp/peers/peers.md]
#                        [--work /tmp/peers/work] [--keep]
#
# Needs: scripts/testenv.sh build (run here; a no-op when cached), build/bin/bulkhead (cmake
# --build build), Go (the peers and the load tool are built from their Go modules into the test
# tool cache, ~/.cache/bulkhead/testbin, the first time: several minutes). --keep leaves the work
# directory (logs, JSON results); the processes are always stopped. Bulkhead comes first and is
# the reference of the ratios. A run at the default sizes takes about 20 minutes on 2 cores
# (up to --generation-timeout longer when a tool's generation never completes).
set -eEuo pipefail

KYVERNO_VERSION=v1.19.1
GATEKEEPER_VERSION=v3.23.1

namespaces=1000
creates=2000
concurrency=8
webhook_seconds=15
webhook_connections=16
noop_seconds=60
baseline_seconds=60
generation_timeout=900
generation_stall=180
tools=bulkhead,kyverno,gatekeeper
out=/tmp/peers/peers.md
work=/tmp/peers/work
keep=false
command_line="tests/bench/peers.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --namespaces) namespaces=$2; shift 2 ;;
    --creates) creates=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --webhook-seconds) webhook_seconds=$2; shift 2 ;;
    --webhook-connections) webhook_connections=$2; shift 2 ;;
    --noop-seconds) noop_seconds=$2; shift 2 ;;
    --baseline-seconds) baseline_seconds=$2; shift 2 ;;
    --generation-timeout) generation_timeout=$2; shift 2 ;;
    --generation-stall) generation_stall=$2; shift 2 ;;
    --tools) tools=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --keep) keep=true; shift ;;
    -h|--help) sed -n '2,/^set -e/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
    *) echo "peers: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
peers=$here/peers
testenv=$repo/scripts/testenv.sh
# shellcheck source=../../scripts/processes.sh
source "$repo/scripts/processes.sh"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
CACHE_ROOT="${BULKHEAD_TESTBIN:-${XDG_CACHE_HOME:-$HOME/.cache}/bulkhead/testbin}"
KYVERNO_DIR=$CACHE_ROOT/kyverno-$KYVERNO_VERSION
GATEKEEPER_DIR=$CACHE_ROOT/gatekeeper-$GATEKEEPER_VERSION
LOAD=$CACHE_ROOT/peers-load/peers-load
# The pod of the admission and webhook runs (also good-01 of the verdicts).
LOAD_POD=$peers/pods/good-01-checkout.json
TEST_NAMESPACE="peers-shop"

log() { echo "peers: $*"; }
die() { echo "peers: error: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------------------------------------
# Processes: every one started here is remembered with the directory its command line names, and
# stopped by its pid (scripts/processes.sh's stop_pid checks it is still ours).

started=()      # "PID DIR"
control_planes=()

start_process() {  # start_process DIR LOG CMD...: run in the background, remember it; sets $!
  local dir=$1 logfile=$2
  shift 2
  "$@" >>"$logfile" 2>&1 &
  started+=("$! $dir")
}

# The load tool in the foreground, but stoppable: bash runs a trap only once the foreground
# command ends, while `wait` returns at once when a signal arrives.
load() {
  "$LOAD" "$@" &
  local pid=$! rc=0
  started+=("$pid $work")
  wait "$pid" || rc=$?
  unset 'started[-1]'
  return "$rc"
}

# SIGTERM to all at once, up to 20 s for them to finish (Gatekeeper delays its shutdown by 10 s),
# then stop_pid (SIGKILL for any left).
stop_started() {
  local entry i alive
  for entry in "${started[@]}"; do
    ours "${entry%% *}" "${entry#* }" && kill -TERM "${entry%% *}" 2>/dev/null
  done
  for i in $(seq 1 200); do
    alive=false
    for entry in "${started[@]}"; do
      ours "${entry%% *}" "${entry#* }" && alive=true
    done
    $alive || break
    sleep 0.1
  done
  for entry in "${started[@]}"; do
    stop_pid "${entry%% *}" "${entry#* }"
  done
  started=()
}

cleanup() {
  local rc=$?
  stop_started
  local cp
  for cp in "${control_planes[@]}"; do
    "$testenv" stop "$cp" >/dev/null 2>&1 || true
  done
  if ! $keep && [ -f "$work/.peers-work" ]; then
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "peers: error: line $LINENO: $BASH_COMMAND failed" >&2' ERR

# ---------------------------------------------------------------------------------------------
# Building: the control plane (testenv.sh), the peers from their pinned Go modules, the load tool.

# go mod download MODULE@VERSION and print its directory in the module cache.
module_dir() {
  (cd /tmp && go mod download -json "$1") |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}

# Is BINARY built from MODULE at VERSION (its embedded build information says so)?
built_from() {
  [ -x "$1" ] && go version -m "$1" 2>/dev/null | grep -qP "^\tmod\t\Q$2\E\t\Q$3\E\t"
}

# Kyverno's go.mod has a replace directive, so `go install ...@version` refuses it: build in a
# throwaway wrapper module that requires it and repeats its replaces.
build_kyverno() {
  if built_from "$KYVERNO_DIR/kyverno" github.com/kyverno/kyverno "$KYVERNO_VERSION" &&
     built_from "$KYVERNO_DIR/background-controller" github.com/kyverno/kyverno "$KYVERNO_VERSION"; then
    return 0
  fi
  log "building Kyverno $KYVERNO_VERSION (admission controller and background controller; minutes)"
  local wrapper gomod
  wrapper=$(mktemp -d)
  gomod=$(cd "$wrapper" && go mod download -json "github.com/kyverno/kyverno@$KYVERNO_VERSION" |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module bulkhead.dev/bench/kyverno"
    grep -E '^go [0-9.]+$' "$gomod"
    grep -E '^godebug ' "$gomod" || true
    echo "require github.com/kyverno/kyverno $KYVERNO_VERSION"
    # Its replace directives, one-line and block form.
    awk '/^replace \(/ {block=1; print; next} block {print; if ($0 ~ /^\)/) block=0; next}
         /^replace / {print}' "$gomod"
  } > "$wrapper/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport (\n\t_ "github.com/kyverno/kyverno/cmd/kyverno"\n\t_ "github.com/kyverno/kyverno/cmd/background-controller"\n)\n' \
    > "$wrapper/tools.go"
  (cd "$wrapper" && go mod tidy)
  mkdir -p "$KYVERNO_DIR"
  local cmd
  for cmd in kyverno background-controller; do
    (cd "$wrapper" && go build -trimpath \
      -ldflags "-s -w -X github.com/kyverno/kyverno/pkg/version.BuildVersion=$KYVERNO_VERSION" \
      -o "$KYVERNO_DIR/$cmd.tmp" "github.com/kyverno/kyverno/cmd/$cmd")
    mv "$KYVERNO_DIR/$cmd.tmp" "$KYVERNO_DIR/$cmd"
  done
  rm -rf "$wrapper"
}

build_gatekeeper() {
  built_from "$GATEKEEPER_DIR/gatekeeper" github.com/open-policy-agent/gatekeeper/v3 \
    "$GATEKEEPER_VERSION" && return 0
  log "building Gatekeeper $GATEKEEPER_VERSION (minutes)"
  mkdir -p "$GATEKEEPER_DIR"
  (cd /tmp && GOBIN="$GATEKEEPER_DIR" go install -trimpath \
    -ldflags "-s -w -X github.com/open-policy-agent/gatekeeper/v3/pkg/version.Version=$GATEKEEPER_VERSION" \
    "github.com/open-policy-agent/gatekeeper/v3@$GATEKEEPER_VERSION")
}

# The load tool, rebuilt when its sources change (their sha256 is stamped next to it).
build_load() {
  local hash
  hash=$(cat "$peers"/load/go.mod "$peers"/load/*.go | sha256sum | cut -d' ' -f1)
  [ -x "$LOAD" ] && [ "$(cat "$LOAD.sha256" 2>/dev/null)" = "$hash" ] && return 0
  log "building the load tool"
  mkdir -p "$(dirname "$LOAD")"
  (cd "$peers/load" && go build -trimpath -o "$LOAD.tmp" .)
  mv "$LOAD.tmp" "$LOAD"
  echo "$hash" > "$LOAD.sha256"
}

machine_info() {
  local cpu bulkhead_version
  cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  bulkhead_version="$("$work/bin/bulkhead" --version 2>/dev/null | head -n1) (commit $(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- 2>/dev/null || echo ", uncommitted changes"))"
  cat > "$work/machine.txt" <<EOF
**Machine:** $(uname -srm), $(nproc) CPUs ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM; load average $(cut -d' ' -f1-3 /proc/loadavg) at the start. $(date -u '+%Y-%m-%d %H:%M UTC').

**Versions:** $bulkhead_version; Kyverno $KYVERNO_VERSION; Gatekeeper $GATEKEEPER_VERSION; each on its own control plane: etcd and kube-apiserver $(kube-apiserver --version 2>/dev/null | awk '{print $2}') on loopback, kube-controller-manager with only its ClusterRole aggregation controller, Istio's CRDs.

**Command:** \`$command_line\`
EOF
  {
    echo "namespace_concurrency=$concurrency"
    echo "generation_timeout=$generation_timeout"
    echo "generation_stall=$generation_stall"
  } > "$work/settings.env"
}

# ---------------------------------------------------------------------------------------------
# Helpers on a running control plane (after `source CP/env`).

api=()  # peers-load's API server flags for the current control plane

# kubeconfig_for SA NAMESPACE FILE: a kubeconfig with a real token of that ServiceAccount.
kubeconfig_for() {
  local token
  token=$(kubectl create token "$1" -n "$2" --duration 6h)
  cat > "$3" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster: {server: "$TESTENV_APISERVER_URL", certificate-authority: "$TESTENV_CA"}
users:
- name: $1
  user: {token: "$token"}
contexts:
- name: testenv
  context: {cluster: testenv, user: $1}
current-context: testenv
EOF
}

# Convert manifests (files, or - for stdin) into one kubectl List in JSON.
to_json_list() { kubectl create --dry-run=client -o json "$@"; }

# wait_for SECONDS WHAT CMD...: retry CMD every half second until it succeeds, bounded.
wait_for() {
  local seconds=$1 what=$2 i
  shift 2
  for i in $(seq 1 $((seconds * 2))); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  die "$what did not happen within $seconds s"
}

# Does a server-dry-run create of the pod FILE give ANSWER (admitted, or a refusal naming the
# webhook)?
pod_refused_by() {  # pod_refused_by FILE WEBHOOK
  local out
  out=$(kubectl create --dry-run=server -n "$TEST_NAMESPACE" -f "$1" 2>&1) && return 1
  grep -qF "admission webhook \"$2\" denied" <<<"$out"
}
pod_admitted() { kubectl create --dry-run=server -n "$TEST_NAMESPACE" -f "$1"; }

phase_begin() { phase_name=$1; phase_start=$(now_ms); log "[$tool] phase $1"; }
phase_end() { echo "$phase_name $phase_start $(now_ms)" >> "$dir/phases.log"; }

# The tool's processes, for the RSS sampler and the VmHWM at the end.
tool_pids=()
tool_names=()

# Sample the RSS of the tool's processes from now on (each setup calls it once they started).
start_sampler() {
  start_process "$dir" "$dir/rss-sampler.log" "$LOAD" rss --pids "$(IFS=,; echo "${tool_pids[*]}")" \
    --out "$dir/rss.log"
}

# ---------------------------------------------------------------------------------------------
# Bulkhead: the chart installed with real Helm (webhook.url on loopback), its default policy, and
# the binary run with the chart Deployment's args as the chart's ServiceAccount, the way
# tests/support/bulkhead_process.cc runs it.

setup_bulkhead() {
  local port metrics_port args=()
  port=$(free_port)
  metrics_port=$(free_port)
  helm install bulkhead "$repo/charts/bulkhead" --namespace bulkhead-system --create-namespace \
    --wait=false --set "webhook.url=https://127.0.0.1:$port/validate" >/dev/null
  kubectl apply -f "$peers/bulkhead/policy.yaml" >/dev/null
  mapfile -t args < <(kubectl get deployment bulkhead -n bulkhead-system \
    -o jsonpath='{.spec.template.spec.containers[0].args}' |
    python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)))')
  mkdir -p "$dir/sa" "$dir/tmp"
  cp "$TESTENV_CA" "$dir/sa/ca.crt"
  echo bulkhead-system > "$dir/sa/namespace"
  kubectl create token bulkhead -n bulkhead-system --duration 6h > "$dir/sa/token"
  local apiport=${TESTENV_APISERVER_URL##*:}
  start_process "$dir" "$dir/bulkhead.log" env -u KUBECONFIG KUBERNETES_SERVICE_HOST=127.0.0.1 \
    KUBERNETES_SERVICE_PORT="$apiport" TMPDIR="$dir/tmp" "$work/bin/bulkhead" "${args[@]}" \
    --service-account-dir "$dir/sa" --leader-election-identity peers-bench \
    --metrics-bind-address "127.0.0.1:$metrics_port" \
    --webhook-bind-address "127.0.0.1:$port" --webhook-cert-hosts 127.0.0.1
  tool_pids=("$!")
  tool_names=(bulkhead)
  start_sampler
  wait_for 90 "Bulkhead serving its webhook" grep -q '"serving the admission webhook"' "$dir/bulkhead.log"
  {
    echo "display=Bulkhead"
    echo "pod_webhook=validate.bulkhead.dev"
    echo "webhook_configuration=validatingwebhookconfiguration/bulkhead"
    echo "default_deny=bulkhead-default-deny"
  } > "$dir/info.env"
  expect=(--expect "networking.k8s.io/v1/networkpolicies=bulkhead-default-deny,bulkhead-allow-dns,bulkhead-allow-mesh"
          --expect "security.istio.io/v1/peerauthentications=bulkhead-mtls")
}

# ---------------------------------------------------------------------------------------------
# Kyverno: its CRDs from the module's config/crds; ServiceAccounts, RBAC, ConfigMaps and the
# Deployments' args and environment from its own chart (rendered by Helm from the module, the
# chart's subchart dependencies left out); the admission controller in its out-of-cluster mode
# (--serverIP: webhook configurations with url and caBundle, a serving certificate for that IP)
# and the background controller, which carries out generate rules.

setup_kyverno() {
  local src chart port
  src=$(module_dir "github.com/kyverno/kyverno@$KYVERNO_VERSION")
  kubectl apply --server-side -f "$src/config/crds/kyverno" -f "$src/config/crds/policies.kyverno.io" \
    -f "$src/config/crds/policyreport" -f "$src/config/crds/reports" >/dev/null
  wait_for 60 "the CRDs established" kubectl wait --for condition=established --timeout=5s crd --all
  chart=$dir/kyverno-chart
  cp -r "$src/charts/kyverno" "$chart"
  chmod -R u+w "$chart"
  rm -f "$chart/Chart.lock"
  sed -i '/^dependencies:/,$d' "$chart/Chart.yaml"
  local show=() component t
  for component in admission-controller background-controller; do
    for t in serviceaccount clusterrole clusterrolebinding role rolebinding deployment; do
      show+=(--show-only "templates/$component/$t.yaml")
    done
  done
  for t in policies policyreports reports updaterequests; do show+=(--show-only "templates/rbac/$t.yaml"); done
  show+=(--show-only templates/config/configmap.yaml --show-only templates/config/metricsconfigmap.yaml)
  helm template kyverno "$chart" --namespace kyverno "${show[@]}" | to_json_list -f - > "$dir/chart.json"
  "$LOAD" manifest select --in "$dir/chart.json" --drop Deployment --out "$dir/install.json"
  kubectl create namespace kyverno >/dev/null
  kubectl apply -f "$dir/install.json" -f "$peers/kyverno/rbac.yaml" >/dev/null
  kubeconfig_for kyverno-admission-controller kyverno "$dir/admission.kubeconfig"
  kubeconfig_for kyverno-background-controller kyverno "$dir/background.kubeconfig"
  # RBAC by aggregation: wait until kube-controller-manager has aggregated the rules.
  wait_for 60 "the aggregated ClusterRole of Kyverno's background controller" \
    bash -c "kubectl auth can-i create networkpolicies.networking.k8s.io \
      --as system:serviceaccount:kyverno:kyverno-background-controller -n default | grep -qx yes"

  port=$(free_port)
  local admission_args=() admission_env=() background_args=() background_env=()
  mapfile -t admission_args < <("$LOAD" manifest args --in "$dir/chart.json" \
    --deployment kyverno-admission-controller --container kyverno)
  mapfile -t admission_env < <("$LOAD" manifest env --in "$dir/chart.json" \
    --deployment kyverno-admission-controller --container kyverno)
  mapfile -t background_args < <("$LOAD" manifest args --in "$dir/chart.json" \
    --deployment kyverno-background-controller)
  mapfile -t background_env < <("$LOAD" manifest env --in "$dir/chart.json" \
    --deployment kyverno-background-controller)
  mkdir -p "$dir/sigstore"
  start_process "$dir" "$dir/kyverno.log" env -u KUBECONFIG "${admission_env[@]}" \
    KYVERNO_NAMESPACE=kyverno \
    KYVERNO_POD_NAME=kyverno-admission-controller-peers TUF_ROOT="$dir/sigstore" \
    "$KYVERNO_DIR/kyverno" "${admission_args[@]}" --kubeconfig "$dir/admission.kubeconfig" \
    --serverIP "127.0.0.1:$port" --webhookServerHost 127.0.0.1 --webhookServerPort "$port" \
    --metricsHost 127.0.0.1 --metricsPort "$(free_port)" \
    --controllerRuntimeMetricsAddress "127.0.0.1:$(free_port)"
  tool_pids=("$!")
  start_process "$dir" "$dir/background-controller.log" env -u KUBECONFIG "${background_env[@]}" \
    KYVERNO_NAMESPACE=kyverno KYVERNO_POD_NAME=kyverno-background-controller-peers \
    "$KYVERNO_DIR/background-controller" "${background_args[@]}" \
    --kubeconfig "$dir/background.kubeconfig" --metricsHost 127.0.0.1 --metricsPort "$(free_port)" \
    --controllerRuntimeMetricsAddress "127.0.0.1:$(free_port)"
  tool_pids+=("$!")
  tool_names=(kyverno background-controller)
  start_sampler
  wait_for 120 "Kyverno's policy webhook registered" \
    kubectl get validatingwebhookconfiguration kyverno-policy-validating-webhook-cfg
  wait_for 60 "Kyverno's ClusterPolicies accepted" \
    kubectl apply -f "$peers/kyverno/policies.yaml"
  wait_for 120 "Kyverno's ClusterPolicies ready" kubectl wait --for condition=Ready --timeout=5s \
    clusterpolicy/zero-trust-pods clusterpolicy/zero-trust-namespaces
  wait_for 120 "Kyverno's resource webhook registered" \
    kubectl get validatingwebhookconfiguration kyverno-resource-validating-webhook-cfg
  {
    echo "display=Kyverno"
    echo "pod_webhook=validate.kyverno.svc-fail"
    echo "webhook_configuration=validatingwebhookconfiguration/kyverno-resource-validating-webhook-cfg"
    echo "default_deny=zt-default-deny"
  } > "$dir/info.env"
  expect=(--expect "networking.k8s.io/v1/networkpolicies=zt-default-deny,zt-allow-dns,zt-allow-mesh"
          --expect "security.istio.io/v1/peerauthentications=zt-mtls")
}

# ---------------------------------------------------------------------------------------------
# Gatekeeper: everything of its release manifest (manifest_staging/deploy/gatekeeper.yaml in the
# module: namespace, CRDs, RBAC) but the Deployments, Service and PDB; its two webhook
# configurations as the manifest has them, pointed at loopback with url + caBundle; its two
# Deployments' args: the webhook (validation and mutation webhooks) and the audit (audit, status,
# and the "generate" operation that turns ConstraintTemplates into constraint CRDs). Certificates
# are ours (--disable-cert-rotation, as with cert-manager): its own rotation writes certificates
# for the Service's DNS name only. Each process gets a Pod object to own its status objects.

setup_gatekeeper() {
  local src port
  src=$(module_dir "github.com/open-policy-agent/gatekeeper/v3@$GATEKEEPER_VERSION")
  to_json_list -f "$src/manifest_staging/deploy/gatekeeper.yaml" > "$dir/manifest.json"
  "$LOAD" manifest select --in "$dir/manifest.json" --out "$dir/install.json" \
    --drop Deployment,Service,PodDisruptionBudget,ValidatingWebhookConfiguration,MutatingWebhookConfiguration
  kubectl apply --server-side -f "$dir/install.json" >/dev/null
  wait_for 60 "the CRDs established" kubectl wait --for condition=established --timeout=5s crd --all
  kubeconfig_for gatekeeper-admin gatekeeper-system "$dir/gatekeeper.kubeconfig"

  local certs=$dir/certs
  mkdir -p "$certs"
  (
    cd "$certs"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -subj "/CN=peers-gatekeeper-ca" -days 2 -out ca.crt \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
    openssl ecparam -name prime256v1 -genkey -noout -out tls.key 2>/dev/null
    openssl req -new -key tls.key -subj "/CN=gatekeeper-webhook-service.gatekeeper-system.svc" \
      -out tls.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:gatekeeper-webhook-service.gatekeeper-system.svc\nextendedKeyUsage=serverAuth\n' > tls.ext
    openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile tls.ext -out tls.crt 2>/dev/null
    rm -f tls.csr tls.ext ca.srl
  )
  port=$(free_port)
  "$LOAD" manifest webhooks --in "$dir/manifest.json" --url-base "https://127.0.0.1:$port" \
    --ca "$certs/ca.crt" --out "$dir/webhooks.json"

  local role args=() name
  for role in controller-manager audit; do
    name=gatekeeper-$role-peers
    kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name, namespace: gatekeeper-system, labels: {gatekeeper.sh/system: "yes"}}
spec:
  containers:
  - name: manager
    image: openpolicyagent/gatekeeper:$GATEKEEPER_VERSION
    securityContext:
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
      runAsNonRoot: true
      runAsUser: 1000
      seccompProfile: {type: RuntimeDefault}
EOF
    mapfile -t args < <("$LOAD" manifest args --in "$dir/manifest.json" --deployment "gatekeeper-$role")
    local serve=(--port "$(free_port)")
    [ "$role" = controller-manager ] && serve=(--port "$port")
    mkdir -p "$dir/audit-cache"
    start_process "$dir" "$dir/gatekeeper-$role.log" env -u KUBECONFIG POD_NAMESPACE=gatekeeper-system \
      NAMESPACE=gatekeeper-system POD_NAME="$name" CONTAINER_NAME=manager \
      "$GATEKEEPER_DIR/gatekeeper" "${args[@]}" --kubeconfig "$dir/gatekeeper.kubeconfig" \
      --host 127.0.0.1 "${serve[@]}" --cert-dir "$certs" --disable-cert-rotation \
      --health-addr "127.0.0.1:$(free_port)" --prometheus-port "$(free_port)" \
      --api-cache-dir "$dir/audit-cache"
    tool_pids+=("$!")
    tool_names+=("gatekeeper-$role")
  done
  start_sampler
  wait_for 120 "Gatekeeper serving" bash -c "curl -sk --max-time 2 -o /dev/null https://127.0.0.1:$port/"
  kubectl apply -f "$dir/webhooks.json" >/dev/null
  kubectl apply -f "$peers/gatekeeper/templates.yaml" >/dev/null
  local kind
  for kind in ztforbidhostnamespaces ztforbidhostports ztforbidprivileged ztforbiddencapabilities \
              ztrequiredlabels; do
    wait_for 120 "the constraint CRD $kind" \
      kubectl wait --for condition=established --timeout=5s "crd/$kind.constraints.gatekeeper.sh"
  done
  wait_for 60 "Gatekeeper's constraints accepted" kubectl apply -f "$peers/gatekeeper/constraints.yaml"
  {
    echo "display=Gatekeeper"
    echo "pod_webhook=validation.gatekeeper.sh"
    echo "webhook_configuration=validatingwebhookconfiguration/gatekeeper-validating-webhook-configuration"
    echo "default_deny="
  } > "$dir/info.env"
  expect=()
}

# ---------------------------------------------------------------------------------------------
# One tool, on a control plane of its own.

run_tool() {
  tool=$1
  dir=$work/$tool
  mkdir -p "$dir"
  local cp=$dir/cp
  log "[$tool] starting a control plane"
  control_planes+=("$cp")
  "$testenv" start "$cp" --owner $$ >/dev/null
  # shellcheck disable=SC1091
  source "$cp/env"
  api=(--server "$TESTENV_APISERVER_URL" --ca "$TESTENV_CA" --cert "$cp/pki/admin.crt"
       --key "$cp/pki/admin.key")
  "$testenv" kcm-start "$cp" --controllers clusterrole-aggregation-controller >/dev/null
  if [ ! -s "$work/baseline-delta.json" ]; then
    log "[$tool] the control plane alone, for $baseline_seconds s: its own API writes"
    load settle "${api[@]}" --out "$work/baseline-settle.json" >/dev/null
    load scrape "${api[@]}" --out "$work/baseline-before.txt"
    sleep "$baseline_seconds" & wait $!
    load scrape "${api[@]}" --out "$work/baseline-after.txt"
    load delta --before "$work/baseline-before.txt" --after "$work/baseline-after.txt" \
      --out "$work/baseline-delta.json"
  fi
  kubectl apply --server-side -f "$TESTENV_ISTIO_CRDS" >/dev/null
  wait_for 60 "Istio's CRDs established" kubectl wait --for condition=established --timeout=5s \
    crd/peerauthentications.security.istio.io

  tool_pids=()
  tool_names=()
  expect=()
  local load_start
  load_start=$(cut -d' ' -f1 /proc/loadavg)
  phase_begin setup
  "setup_$tool"
  kubectl create namespace "$TEST_NAMESPACE" >/dev/null
  kubectl label namespace "$TEST_NAMESPACE" zero-trust=on >/dev/null
  local default_deny
  default_deny=$(sed -n 's/^default_deny=//p' "$dir/info.env")
  if [ -n "$default_deny" ]; then
    wait_for 120 "$TEST_NAMESPACE segmented" kubectl get networkpolicy -n "$TEST_NAMESPACE" "$default_deny"
  fi
  local webhook
  webhook=$(sed -n 's/^pod_webhook=//p' "$dir/info.env")
  wait_for 120 "$tool's webhook refusing an unlabelled pod" \
    pod_refused_by "$peers/pods/bad-17-no-labels.yaml" "$webhook"
  wait_for 60 "$tool's webhook admitting a good pod" pod_admitted "$peers/pods/good-02-minimal.yaml"
  # Its webhook's URL and CA, as registered, for calling it directly.
  local config url
  config=$(sed -n 's/^webhook_configuration=//p' "$dir/info.env")
  kubectl get "$config" -o json > "$dir/webhook-configuration.json"
  url=$("$LOAD" manifest webhook --in "$dir/webhook-configuration.json" --webhook "$webhook" \
    --ca-out "$dir/webhook-ca.pem")
  phase_end

  phase_begin admission
  log "[$tool] verdicts on the 20 bad and 20 good pods"
  to_json_list -f "$peers/pods/" > "$dir/pods.json"
  load verdicts "${api[@]}" --namespace "$TEST_NAMESPACE" --pods "$dir/pods.json" \
    --out "$dir/verdicts.json"
  log "[$tool] the same pods sent to its webhook alone, at $url"
  load verdicts --url "$url" --webhook-ca "$dir/webhook-ca.pem" --namespace "$TEST_NAMESPACE" \
    --pods "$dir/pods.json" --out "$dir/verdicts-webhook.json"
  log "[$tool] $creates pod creates through the API server, $concurrency in flight"
  load creates "${api[@]}" --namespace "$TEST_NAMESPACE" --pod "$LOAD_POD" \
    --count $((concurrency * 25)) --concurrency "$concurrency" --out "$dir/warmup.json" >/dev/null
  load scrape "${api[@]}" --out "$dir/admission-before.txt"
  load creates "${api[@]}" --namespace "$TEST_NAMESPACE" --pod "$LOAD_POD" --count "$creates" \
    --concurrency "$concurrency" --out "$dir/creates.json"
  load scrape "${api[@]}" --out "$dir/admission-after.txt"
  load delta --before "$dir/admission-before.txt" --after "$dir/admission-after.txt" \
    --out "$dir/admission-delta.json"
  phase_end

  phase_begin webhook
  log "[$tool] its webhook called directly at $url"
  load webhook --url "$url" --ca "$dir/webhook-ca.pem" --pod "$LOAD_POD" \
    --namespace "$TEST_NAMESPACE" --seconds "$webhook_seconds" \
    --connections "$webhook_connections" --out "$dir/webhook.json"
  phase_end

  phase_begin generation
  log "[$tool] $namespaces labelled namespaces"
  load scrape "${api[@]}" --out "$dir/generation-before.txt"
  load generate "${api[@]}" --count "$namespaces" --prefix zt- --labels zero-trust=on \
    --concurrency "$concurrency" --timeout "${generation_timeout}s" \
    --stall "${generation_stall}s" "${expect[@]}" \
    --out "$dir/generation.json"
  load settle "${api[@]}" --out "$dir/settle.json"
  load scrape "${api[@]}" --out "$dir/generation-after.txt"
  load delta --before "$dir/generation-before.txt" --after "$dir/generation-after.txt" \
    --out "$dir/generation-delta.json"
  phase_end

  phase_begin noop
  log "[$tool] $noop_seconds s with nothing to do"
  load scrape "${api[@]}" --out "$dir/noop-before.txt"
  sleep "$noop_seconds" & wait $!
  load scrape "${api[@]}" --out "$dir/noop-after.txt"
  load delta --before "$dir/noop-before.txt" --after "$dir/noop-after.txt" \
    --out "$dir/noop-delta.json"
  phase_end

  echo "load_start=$load_start" >> "$dir/info.env"
  echo "load_end=$(cut -d' ' -f1 /proc/loadavg)" >> "$dir/info.env"
  local i
  for i in "${!tool_pids[@]}"; do
    echo "vmhwm_${tool_names[$i]}=$(awk '/^VmHWM/ {print $2}' "/proc/${tool_pids[$i]}/status")" \
      >> "$dir/info.env"
  done
  log "[$tool] stopping"
  stop_started
  "$testenv" stop "$cp"
  control_planes=()
}

# ---------------------------------------------------------------------------------------------

[ -x "$repo/build/bin/bulkhead" ] || die "build/bin/bulkhead is missing: cmake --build build"
mkdir -p "$(dirname "$out")"
# The work directory is ours only when an earlier run made it (its marker file) or it is new.
if [ -e "$work" ]; then
  [ -f "$work/.peers-work" ] || die "$work exists and is not a work directory of this script"
  rm -rf "$work"
fi
mkdir -p "$work/bin"
touch "$work/.peers-work"
# A copy: the run uses one binary even if build/ is rebuilt meanwhile.
cp "$repo/build/bin/bulkhead" "$work/bin/bulkhead"
start=$SECONDS
"$testenv" build >&2
eval "$("$testenv" paths)"
export PATH="$TESTBIN_PATH:$PATH"
build_kyverno
build_gatekeeper
build_load
machine_info
cat "$work/machine.txt"
IFS=, read -r -a tool_list <<<"$tools"
for tool in "${tool_list[@]}"; do
  case "$tool" in bulkhead|kyverno|gatekeeper) ;; *) die "unknown tool $tool" ;; esac
  run_tool "$tool"
done
echo
echo "**Load average at the end:** $(cut -d' ' -f1-3 /proc/loadavg)." >> "$work/machine.txt"
load report --work "$work" --tools "$tools" --out "$out"
log "written to $out; the whole run took $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
