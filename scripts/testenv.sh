#!/usr/bin/env bash
# The real Kubernetes control plane for Bulkhead's tests (see ../shared/TESTENV.md).
#
#   testenv.sh build        build kube-apiserver, kubectl, kube-controller-manager, etcd and helm
#                           from Go modules into the cache and extract the Istio, cert-manager and
#                           ServiceMonitor CRDs; a no-op when they are there already
#   testenv.sh paths        print the directories and files the build provides (shell assignments)
#   testenv.sh istio-crds   only fetch Istio's CRDs (for scripts/e2e-kind.sh); prints the file
#   testenv.sh start DIR [--owner PID] [--node-ip IP]
#                           start etcd + kube-apiserver on free loopback ports; writes
#                           DIR/kubeconfig and DIR/env (source it). With --owner, a watchdog stops
#                           them when process PID exits, however it exits. DIR/env also names
#                           CRDs for `kubectl apply -f`: TESTENV_ISTIO_CRDS (a file),
#                           TESTENV_CERT_MANAGER_CRDS (a directory: Certificate and Issuer),
#                           TESTENV_SERVICEMONITOR_CRD (a file); TESTENV_ISTIO_INJECT, Istio's
#                           own sidecar injector as a command (tests/tools/istio-inject/main.go);
#                           and TESTENV_POD_SECURITY_FIXTURES, Kubernetes' own Pod Security
#                           fixtures for this control plane's version: LEVEL/{pass,fail}/*.yaml;
#                           TESTENV_OPENREPORTS_CRD, the OpenReports Report CRD (a file)
#                           TESTENV_CLUSTER_NETWORK_POLICY_CRD, the network-policy API's
#                           ClusterNetworkPolicy CRD (a file)
#                           With --node-ip (scripts/node.sh), the control plane of a cluster
#                           with a node: kube-apiserver $NODE_K8S_VERSION on IP, its Service
#                           range 10.96.0.0/16, ServiceAccount admission, Node authorization
#   testenv.sh build-node-kubernetes
#                           build the node cluster's Kubernetes binaries; prints their folder
#   testenv.sh stop DIR     stop exactly the processes started in DIR and remove DIR
#   testenv.sh apiserver-stop DIR / apiserver-start DIR
#                           stop or start only the kube-apiserver (same port, same etcd)
#   testenv.sh kcm-start DIR [--controllers LIST]
#                           opt-in: start kube-controller-manager against the control plane in
#                           DIR, each controller as its own ServiceAccount; LIST is its
#                           --controllers (default: namespace-controller,job-controller,
#                           garbage-collector-controller). Returns when it is healthy and the
#                           controllers have started. `stop DIR` and the watchdog stop it too
#   testenv.sh kcm-stop DIR stop only the kube-controller-manager
#   testenv.sh client-kubeconfig DIR NAME CN [ORG]
#                           DIR/NAME.kubeconfig for the user CN (group ORG), a certificate of its own
set -euo pipefail

K8S_VERSION=v1.35.4
# The node cluster (scripts/node.sh) runs the newest minor, so every run tests the oldest and
# the newest supported Kubernetes.
NODE_K8S_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.20.2
ISTIO_API_VERSION=v1.32.0
# istio.io/istio (no semver tags: a pseudo-version) for tests/tools/istio-inject. The istio.io/api
# it builds with is the one this version requires, checked in build_istio_inject.
ISTIO_VERSION=v0.0.0-20260827124520-eed52ebb66ad
CERT_MANAGER_VERSION=v1.19.1
PROM_OPERATOR_VERSION=v0.85.0
# github.com/openreports/reports-api: the Report CRD the background scan publishes to. The chart
# ships a copy (charts/bulkhead/files/), which tests/chart/chart_test.sh compares with this one.
OPENREPORTS_VERSION=v0.2.1
# sigs.k8s.io/network-policy-api: the ClusterNetworkPolicy CRD (standard channel) the admin tier
# writes to.
NETWORK_POLICY_API_VERSION=v0.3.0

CACHE_ROOT="${BULKHEAD_TESTBIN:-${XDG_CACHE_HOME:-$HOME/.cache}/bulkhead/testbin}"
K8S_DIR="$CACHE_ROOT/kubernetes-$K8S_VERSION"
NODE_K8S_DIR="$CACHE_ROOT/kubernetes-$NODE_K8S_VERSION"
ETCD_DIR="$CACHE_ROOT/etcd-$ETCD_VERSION"
HELM_DIR="$CACHE_ROOT/helm-$HELM_VERSION"
ISTIO_DIR="$CACHE_ROOT/istio-api-$ISTIO_API_VERSION"
ISTIO_CRDS="$ISTIO_DIR/customresourcedefinitions.gen.yaml"
ISTIO_INJECT_DIR="$CACHE_ROOT/istio-inject-$ISTIO_VERSION"
ISTIO_INJECT="$ISTIO_INJECT_DIR/istio-inject"
CERT_MANAGER_CRDS="$CACHE_ROOT/cert-manager-crds-$CERT_MANAGER_VERSION"
OPENREPORTS_CRD="$CACHE_ROOT/openreports-$OPENREPORTS_VERSION/openreports.io_reports.yaml"
CNP_CRD="$CACHE_ROOT/network-policy-api-$NETWORK_POLICY_API_VERSION/policy.networking.k8s.io_clusternetworkpolicies.yaml"
PROM_OPERATOR_DIR="$CACHE_ROOT/prometheus-operator-$PROM_OPERATOR_VERSION"
SERVICEMONITOR_CRD="$PROM_OPERATOR_DIR/monitoring.coreos.com_servicemonitors.yaml"
# k8s.io/pod-security-admission is a staging module of the same release as kube-apiserver.
POD_SECURITY_VERSION="v0.${K8S_VERSION#v1.}"
POD_SECURITY_FIXTURES="$CACHE_ROOT/pod-security-fixtures-$POD_SECURITY_VERSION"
CERT_MANAGER_CRD_FILES="cert-manager.io_certificates.yaml cert-manager.io_issuers.yaml"

export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=processes.sh
source "$here/processes.sh"

log() { echo "testenv: $*" >&2; }
# Scratch directories of the build steps, removed on exit however the script ends.
scratch=()
trap 'rm -rf "${scratch[@]}"' EXIT
die() { echo "testenv: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# build

K8S_COMMANDS="kube-apiserver kubectl kube-controller-manager"
# The node cluster's: a control plane, a node, and agnhost (Kubernetes' own e2e test server).
NODE_K8S_COMMANDS="kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy
  test/images/agnhost"

# Is DIR/CMD there and of VERSION?
k8s_binary_ok() {
  local version=$1 bin=$2/$3
  [ -x "$bin" ] || return 1
  if [ "$3" = kubectl ]; then
    grep -qx "Client Version: $version" <<<"$("$bin" version --client 2>/dev/null)"
  else
    grep -qx "Kubernetes $version" <<<"$("$bin" --version 2>/dev/null)"
  fi
}

# build_kubernetes VERSION DIR CMD...: build k8s.io/kubernetes/cmd/CMD at VERSION into DIR (only
# the missing ones). A CMD with a slash is a package path inside the module (test/images/agnhost),
# installed under its last element and stamped with a VERSION file instead of --version.
build_kubernetes() {
  local version=$1 dir=$2 cmd missing=""
  shift 2
  for cmd in "$@"; do
    case "$cmd" in
      */*) [ -x "$dir/${cmd##*/}" ] && [ "$(cat "$dir/${cmd##*/}.version" 2>/dev/null)" = "$version" ] ||
             missing+=" $cmd" ;;
      *) k8s_binary_ok "$version" "$dir" "$cmd" || missing+=" $cmd" ;;
    esac
  done
  if [ -z "$missing" ]; then
    log "Kubernetes $version ($*): cached"
    return 0
  fi
  log "building$missing $version (several minutes each when cold)"
  local work gomod
  work=$(mktemp -d); scratch+=("$work")
  gomod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$version" |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  local staging_version="v0.${version#v1.}"
  {
    echo "module bulkhead.dev/testenv/kubernetes"
    echo
    grep -E '^go [0-9.]+$' "$gomod"
    grep -E '^godebug ' "$gomod" || true
    echo
    echo "require k8s.io/kubernetes $version"
    echo
    # Every k8s.io module that k8s.io/kubernetes requires at v0.0.0 is a staging module mapped
    # to a local folder upstream; map it to its published version instead.
    grep -Eo '^\s*k8s\.io/[A-Za-z0-9._/-]+ v0\.0\.0$' "$gomod" | awk -v v="$staging_version" \
      '{print "replace " $1 " => " $1 " " v}'
  } > "$work/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for cmd in $missing; do
      case "$cmd" in */*) printf '\t_ "k8s.io/kubernetes/%s"\n' "$cmd" ;;
                     *) printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd" ;; esac
    done
    printf ')\n'
  } > "$work/tools.go"
  (cd "$work" && go mod tidy >/dev/null 2>&1 || (cd "$work" && go mod tidy))
  local minor="${version#v1.}"; minor="${minor%%.*}"
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  done
  mkdir -p "$dir"
  # Only what is missing: the rest is there already, and the Go build cache has its packages.
  local n=0 total
  total=$(wc -w <<<"$missing")
  for cmd in $missing; do
    n=$((n + 1))
    local name=${cmd##*/} pkg="k8s.io/kubernetes/cmd/$cmd" start=$SECONDS
    case "$cmd" in */*) pkg="k8s.io/kubernetes/$cmd" ;; esac
    log "  [$n/$total] $name $version ..."
    (cd "$work" && go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ldflags" \
      -o "$dir/$name.tmp" "$pkg")
    mv "$dir/$name.tmp" "$dir/$name"
    case "$cmd" in */*) echo "$version" > "$dir/$name.version" ;; esac
    log "  [$n/$total] $name built in $((SECONDS - start)) s"
  done
}

build_etcd() {
  if [ -x "$ETCD_DIR/etcd" ] &&
     grep -q "etcd Version: ${ETCD_VERSION#v}$" <<<"$("$ETCD_DIR/etcd" --version 2>/dev/null)"; then
    return 0
  fi
  log "building etcd $ETCD_VERSION"
  local work
  work=$(mktemp -d); scratch+=("$work")
  local gover
  gover=$(go env GOVERSION); gover="${gover#go}"
  printf 'module bulkhead.dev/testenv/etcd\n\ngo %s\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$gover" "$ETCD_VERSION" > "$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$work/tools.go"
  (cd "$work" && go mod tidy >/dev/null 2>&1 || (cd "$work" && go mod tidy))
  mkdir -p "$ETCD_DIR"
  (cd "$work" && go build -trimpath -ldflags "-s -w" -o "$ETCD_DIR/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$ETCD_DIR/etcd.tmp" "$ETCD_DIR/etcd"
}

# Helm as its releases build it: the version, and the Kubernetes version that `helm template`
# and `helm lint` assume (the minor of the client-go it is built with; without these ldflags it
# assumes v1.20.0 and charts with a newer kubeVersion refuse to render). A stamp file records it.
build_helm() {
  if [ -x "$HELM_DIR/helm" ] && [ -s "$HELM_DIR/helm.kube-version" ] &&
     grep -q "^$HELM_VERSION" <<<"$("$HELM_DIR/helm" version --short 2>/dev/null)"; then
    return 0
  fi
  log "building helm $HELM_VERSION"
  local gomod client_go minor ldflags
  gomod=$(cd /tmp && go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  client_go=$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$gomod")
  minor=${client_go#v0.}; minor=${minor%%.*}
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  mkdir -p "$HELM_DIR"
  GOBIN="$HELM_DIR" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  echo "v1.$minor" > "$HELM_DIR/helm.kube-version"
}

# go mod download MODULE@VERSION and print its directory in the module cache.
module_dir() {
  (cd /tmp && go mod download -json "$1") |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}

fetch_istio_crds() {
  [ -s "$ISTIO_CRDS" ] && return 0
  log "extracting Istio CRDs from istio.io/api $ISTIO_API_VERSION"
  local dir
  dir=$(module_dir "istio.io/api@$ISTIO_API_VERSION")
  mkdir -p "$ISTIO_DIR"
  cp "$dir/kubernetes/customresourcedefinitions.gen.yaml" "$ISTIO_CRDS.tmp"
  chmod 644 "$ISTIO_CRDS.tmp"
  mv "$ISTIO_CRDS.tmp" "$ISTIO_CRDS"
}

# Copy a CRD file from a module into the cache, refusing Helm-templated sources (the files used
# here are plain controller-gen output; a templated one would need its templating stripped).
copy_crd() {
  local src=$1 dst=$2
  [ -s "$src" ] || die "$src is missing"
  if grep -q '{{' "$src"; then die "$src is Helm-templated; strip the templating first"; fi
  cp "$src" "$dst.tmp"
  chmod 644 "$dst.tmp"
  mv "$dst.tmp" "$dst"
}

# fetch_module_crd DST MODULE@VERSION PATH: a CRD file of a Go module into the cache.
fetch_module_crd() {
  local dst=$1 module=$2 path=$3 dir
  [ -s "$dst" ] && return 0
  log "extracting $(basename "$dst") from $module"
  dir=$(module_dir "$module")
  mkdir -p "$(dirname "$dst")"
  copy_crd "$dir/$path" "$dst"
}

fetch_openreports_crd() {
  fetch_module_crd "$OPENREPORTS_CRD" "github.com/openreports/reports-api@$OPENREPORTS_VERSION" \
    config/crd/openreports.io_reports.yaml
}

fetch_cnp_crd() {
  fetch_module_crd "$CNP_CRD" "sigs.k8s.io/network-policy-api@$NETWORK_POLICY_API_VERSION" \
    config/crd/standard/policy.networking.k8s.io_clusternetworkpolicies.yaml
}

# The Certificate and Issuer CRDs, for the chart's cert-manager mode (only the kinds it renders).
fetch_cert_manager_crds() {
  local f missing=false
  for f in $CERT_MANAGER_CRD_FILES; do [ -s "$CERT_MANAGER_CRDS/$f" ] || missing=true; done
  $missing || return 0
  log "extracting cert-manager CRDs from github.com/cert-manager/cert-manager $CERT_MANAGER_VERSION"
  local dir
  dir=$(module_dir "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION")
  mkdir -p "$CERT_MANAGER_CRDS"
  for f in $CERT_MANAGER_CRD_FILES; do
    copy_crd "$dir/deploy/crds/$f" "$CERT_MANAGER_CRDS/$f"
  done
}

# The ServiceMonitor CRD, for the chart's metrics.serviceMonitor option.
fetch_servicemonitor_crd() {
  [ -s "$SERVICEMONITOR_CRD" ] && return 0
  log "extracting the ServiceMonitor CRD from prometheus-operator $PROM_OPERATOR_VERSION"
  local dir
  dir=$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROM_OPERATOR_VERSION")
  mkdir -p "$PROM_OPERATOR_DIR"
  copy_crd "$dir/example/prometheus-operator-crd/$(basename "$SERVICEMONITOR_CRD")" \
    "$SERVICEMONITOR_CRD"
}

# Kubernetes' own Pod Security fixtures, from k8s.io/pod-security-admission's test/testdata
# (LEVEL/v1.MINOR/{pass,fail}/*.yaml, generated upstream by its TestFixtures): only those of this
# control plane's minor version, which is what the level's "latest" checks on it.
fetch_pod_security_fixtures() {
  [ -s "$POD_SECURITY_FIXTURES/README.md" ] && return 0
  log "extracting Pod Security fixtures from k8s.io/pod-security-admission $POD_SECURITY_VERSION"
  local dir minor level tmp="$POD_SECURITY_FIXTURES.tmp"
  dir=$(module_dir "k8s.io/pod-security-admission@$POD_SECURITY_VERSION")
  minor="${K8S_VERSION#v}"; minor="v${minor%.*}"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  for level in baseline restricted; do
    [ -d "$dir/test/testdata/$level/$minor/pass" ] && [ -d "$dir/test/testdata/$level/$minor/fail" ] ||
      die "$dir/test/testdata/$level/$minor has no pass and fail fixtures"
    cp -r "$dir/test/testdata/$level/$minor" "$tmp/$level"
  done
  printf 'Pod Security fixtures for %s from k8s.io/pod-security-admission %s test/testdata.\n' \
    "$minor" "$POD_SECURITY_VERSION" > "$tmp/README.md"
  chmod -R u+w,a+rX "$tmp"
  rm -rf "$POD_SECURITY_FIXTURES"
  mv "$tmp" "$POD_SECURITY_FIXTURES"
}

# tests/tools/istio-inject: Istio's own sidecar injector (and waypoint deployment controller) as
# a command, built against istio.io/istio $ISTIO_VERSION in a throwaway wrapper module. Skipped
# when the binary reports that version and the sha256 of the current main.go (stamped at build).
build_istio_inject() {
  local src hash
  src="$(dirname "$here")/tests/tools/istio-inject/main.go"
  [ -s "$src" ] || die "$src is missing"
  hash=$(sha256sum "$src" | cut -d' ' -f1)
  # (Output captured first: grep -q quitting early would SIGPIPE the writer, failing the pipe.)
  local reported
  if [ -x "$ISTIO_INJECT" ] && reported=$("$ISTIO_INJECT" --version 2>/dev/null) &&
     grep -qx "istio.io/istio $ISTIO_VERSION" <<<"$reported" &&
     grep -qx "source sha256:$hash" <<<"$reported"; then
    return 0
  fi
  log "building istio-inject against istio.io/istio $ISTIO_VERSION (a few minutes when cold)"
  local work gomod
  work=$(mktemp -d); scratch+=("$work")
  gomod=$(cd "$work" && go mod download -json "istio.io/istio@$ISTIO_VERSION" |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module bulkhead.dev/testenv/istio-inject"
    echo
    grep -E '^go [0-9.]+$' "$gomod"
    grep -E '^godebug ' "$gomod" || true
    echo
    echo "require istio.io/istio $ISTIO_VERSION"
  } > "$work/go.mod"
  cp "$src" "$work/main.go"
  (cd "$work" && go mod tidy >/dev/null 2>&1 || (cd "$work" && go mod tidy))
  # The istio.io/api that istio.io/istio was written against, not a newer one pulled in.
  local want got
  want=$(awk '$1 == "istio.io/api" {print $2; exit}' "$gomod")
  got=$(cd "$work" && go list -m -f '{{.Version}}' istio.io/api)
  [ "$want" = "$got" ] ||
    die "istio.io/api resolved to $got; istio.io/istio $ISTIO_VERSION requires $want"
  mkdir -p "$ISTIO_INJECT_DIR"
  (cd "$work" && go build -trimpath -ldflags "-s -w -X main.sourceHash=$hash" \
    -o "$ISTIO_INJECT.tmp" .)
  mv "$ISTIO_INJECT.tmp" "$ISTIO_INJECT"
}

cmd_build() {
  command -v go >/dev/null || die "go is needed to build the test control plane"
  fetch_istio_crds
  fetch_cert_manager_crds
  fetch_servicemonitor_crd
  fetch_openreports_crd
  fetch_cnp_crd
  fetch_pod_security_fixtures
  build_etcd
  build_helm
  build_kubernetes "$K8S_VERSION" "$K8S_DIR" $K8S_COMMANDS
  build_istio_inject
}

cmd_crds() {
  command -v go >/dev/null || die "go is needed to fetch the CRDs"
  fetch_istio_crds
  echo "$ISTIO_CRDS"
}

cmd_paths() {
  echo "TESTBIN_PATH=$K8S_DIR:$ETCD_DIR:$HELM_DIR"
  echo "ISTIO_CRDS=$ISTIO_CRDS"
  echo "CERT_MANAGER_CRDS=$CERT_MANAGER_CRDS"
  echo "SERVICEMONITOR_CRD=$SERVICEMONITOR_CRD"
  echo "ISTIO_INJECT=$ISTIO_INJECT"
  echo "POD_SECURITY_FIXTURES=$POD_SECURITY_FIXTURES"
  echo "OPENREPORTS_CRD=$OPENREPORTS_CRD"
  echo "CNP_CRD=$CNP_CRD"
}

# ---------------------------------------------------------------------------------------------
# start / stop

make_certs() {
  local d=$1/pki san="IP:127.0.0.1,DNS:localhost"
  # A node cluster's pods reach the API server by the node's address and the kubernetes Service.
  [ -n "${2:-}" ] && san+=",IP:$2,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  mkdir -p "$d"
  (
    cd "$d"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -subj "/CN=bulkhead-testenv-ca" -days 2 -out ca.crt \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl ecparam -name prime256v1 -genkey -noout -out apiserver.key 2>/dev/null
    openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" > apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl ecparam -name prime256v1 -genkey -noout -out admin.key 2>/dev/null
    openssl req -new -key admin.key -subj "/CN=admin/O=system:masters" -out admin.csr 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' > admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile admin.ext -out admin.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext ./*.srl
  )
}

wait_ready() {
  local dir=$1 pid=$2 url=$3 i
  for i in $(seq 1 600); do
    if curl -fsS --max-time 2 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" \
         --key "$dir/pki/admin.key" "$url/readyz" >/dev/null 2>&1; then
      return 0
    fi
    ours "$pid" "$dir" || return 1
    sleep 0.1
  done
  return 1
}

apiserver_start() {
  local dir=$1
  # shellcheck disable=SC1091
  source "$dir/ports"
  local p="$dir/pki" ip=${NODE_IP:-127.0.0.1} mode
  if [ -n "${NODE_IP:-}" ]; then
    # A cluster with a node: ServiceAccount tokens in pods, the kubelet authorised as a node,
    # and a client certificate to reach the kubelet (logs, exec).
    mode=(--service-cluster-ip-range 10.96.0.0/16 --authorization-mode Node,RBAC
          --enable-admission-plugins NodeRestriction
          --kubelet-client-certificate "$p/apiserver-kubelet-client.crt"
          --kubelet-client-key "$p/apiserver-kubelet-client.key"
          --kubelet-preferred-address-types InternalIP)
  else
    # An API server alone: no token controller runs, so no ServiceAccount admission.
    mode=(--service-cluster-ip-range 10.0.0.0/24 --authorization-mode RBAC
          --disable-admission-plugins ServiceAccount --enable-priority-and-fairness=false)
  fi
  "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$ip" --advertise-address "$ip" --secure-port "$APISERVER_PORT" \
    --cert-dir "$dir/apiserver-certs" \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --client-ca-file "$p/ca.crt" \
    --service-account-issuer "https://$ip:$APISERVER_PORT/" \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --allow-privileged=true "${mode[@]}" \
    >>"$dir/kube-apiserver.log" 2>&1 &
  local pid=$!
  echo "$pid" > "$dir/kube-apiserver.pid"
  if ! wait_ready "$dir" "$pid" "https://$ip:$APISERVER_PORT"; then
    tail -n 30 "$dir/kube-apiserver.log" >&2
    return 1
  fi
}

cmd_start() {
  local dir=${1:?usage: testenv.sh start DIR [--owner PID] [--node-ip IP]}
  shift
  local owner="" node_ip="" bin=$K8S_DIR
  while [ $# -gt 0 ]; do
    case "$1" in
      --owner) owner=${2:?--owner needs a pid}; shift 2 ;;
      --node-ip) node_ip=${2:?--node-ip needs an address}; bin=$NODE_K8S_DIR; shift 2 ;;
      *) die "start: unknown argument $1" ;;
    esac
  done
  [ -x "$bin/kube-apiserver" ] && [ -x "$ETCD_DIR/etcd" ] || die "run 'testenv.sh build' first"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ -e "$dir/env" ] && die "$dir already holds a control plane"
  local attempt
  for attempt in 1 2 3; do
    if start_once "$dir" "$bin" "$node_ip"; then
      [ -n "$owner" ] && start_watchdog "$here/testenv.sh" stop "$dir" "$owner"
      return 0
    fi
    log "start attempt $attempt failed; cleaning up"
    stop_processes "$dir"
    find "$dir" -mindepth 1 -delete
  done
  rm -rf "$dir"
  die "could not start the control plane"
}

start_once() {
  local dir=$1 bin=$2 node_ip=$3 host=127.0.0.1
  make_certs "$dir" "$node_ip"
  # The API server's own identity towards the kubelet (logs, exec, port-forward).
  [ -n "$node_ip" ] && { host=$node_ip; client_cert "$dir" apiserver-kubelet-client \
    kube-apiserver-kubelet-client system:masters; }
  {
    echo "ETCD_PORT=$(free_port)"
    echo "ETCD_PEER_PORT=$(free_port)"
    echo "APISERVER_PORT=$(free_port)"
    echo "K8S_BIN='$bin'"
    echo "NODE_IP='$node_ip'"
  } > "$dir/ports"
  # shellcheck disable=SC1091
  source "$dir/ports"
  "$ETCD_DIR/etcd" --name testenv --data-dir "$dir/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "testenv=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn >"$dir/etcd.log" 2>&1 &
  echo $! > "$dir/etcd.pid"
  local i
  for i in $(seq 1 100); do
    curl -fsS --max-time 1 "http://127.0.0.1:$ETCD_PORT/health" >/dev/null 2>&1 && break
    ours "$(cat "$dir/etcd.pid")" "$dir" || { tail -n 20 "$dir/etcd.log" >&2; return 1; }
    sleep 0.1
  done
  apiserver_start "$dir" || return 1
  local url="https://$host:$APISERVER_PORT"
  cat > "$dir/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: $url
    certificate-authority: $dir/pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $dir/pki/admin.crt
    client-key: $dir/pki/admin.key
contexts:
- name: testenv
  context: {cluster: testenv, user: admin}
current-context: testenv
KC
  cat > "$dir/env" <<ENV
export KUBECONFIG='$dir/kubeconfig'
export PATH='$bin:$ETCD_DIR:$HELM_DIR':"\$PATH"
export TESTENV_DIR='$dir'
export TESTENV_APISERVER_URL='$url'
export TESTENV_ETCD_URL='http://127.0.0.1:$ETCD_PORT'
export TESTENV_CA='$dir/pki/ca.crt'
export TESTENV_ISTIO_CRDS='$ISTIO_CRDS'
export TESTENV_ISTIO_INJECT='$ISTIO_INJECT'
export TESTENV_CERT_MANAGER_CRDS='$CERT_MANAGER_CRDS'
export TESTENV_SERVICEMONITOR_CRD='$SERVICEMONITOR_CRD'
export TESTENV_POD_SECURITY_FIXTURES='$POD_SECURITY_FIXTURES'
export TESTENV_OPENREPORTS_CRD='$OPENREPORTS_CRD'
export TESTENV_CLUSTER_NETWORK_POLICY_CRD='$CNP_CRD'
export TESTENV_ETCD_PID=$(cat "$dir/etcd.pid")
export TESTENV_APISERVER_PID=$(cat "$dir/kube-apiserver.pid")
ENV
}


stop_processes() {
  local dir=$1
  [ -f "$dir/kube-controller-manager.pid" ] &&
    stop_pid "$(cat "$dir/kube-controller-manager.pid")" "$dir"
  [ -f "$dir/kube-apiserver.pid" ] && stop_pid "$(cat "$dir/kube-apiserver.pid")" "$dir"
  [ -f "$dir/etcd.pid" ] && stop_pid "$(cat "$dir/etcd.pid")" "$dir"
  return 0
}

# ---------------------------------------------------------------------------------------------
# kube-controller-manager (opt-in: kcm-start / kcm-stop)

# The namespace controller (a deleted namespace's content goes, then the namespace), the Job
# controller (a Job's pods, and removing their batch.kubernetes.io/job-tracking finalizer when a
# pod ends or is deleted) and the garbage collector (ownerReferences: a deleted Job's pods go,
# background or foreground).
KCM_DEFAULT_CONTROLLERS=namespace-controller,job-controller,garbage-collector-controller

# client_cert DIR NAME CN [ORG]: DIR/pki/NAME.{crt,key}, a client certificate from the test CA.
client_cert() {
  local p=$1/pki name=$2 subj="/CN=$3"
  [ -n "${4:-}" ] && subj+="/O=$4"
  (
    cd "$p"
    openssl ecparam -name prime256v1 -genkey -noout -out "$name.key" 2>/dev/null
    openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' > "$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile "$name.ext" -out "$name.crt" 2>/dev/null
    rm -f "$name.csr" "$name.ext" ./*.srl
  )
}

# client_kubeconfig DIR NAME CN [ORG]: DIR/NAME.kubeconfig, for the user CN (in group ORG), with
# a certificate of its own. The control plane's users (system:kube-controller-manager,
# system:kube-scheduler, system:kube-proxy, system:node:NAME) are bound by the API server's
# bootstrap RBAC or the Node authorizer, as in a real cluster.
client_kubeconfig() {
  local dir=$1 name=$2
  [ -s "$dir/$name.kubeconfig" ] && return 0
  client_cert "$dir" "$name" "$3" "${4:-}"
  # shellcheck disable=SC1091
  source "$dir/ports"
  cat > "$dir/$name.kubeconfig.tmp" <<KC
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: https://${NODE_IP:-127.0.0.1}:$APISERVER_PORT
    certificate-authority: $dir/pki/ca.crt
users:
- name: $name
  user:
    client-certificate: $dir/pki/$name.crt
    client-key: $dir/pki/$name.key
contexts:
- name: testenv
  context: {cluster: testenv, user: $name}
current-context: testenv
KC
  mv "$dir/$name.kubeconfig.tmp" "$dir/$name.kubeconfig"
}

# Start kube-controller-manager on a free loopback port and wait until it has started its
# controllers: it adds one health check per started controller to /healthz, all at once after
# starting them, so /healthz?verbose passing with "[+]NAME ok" lines means they run.
kcm_start_once() {
  local dir=$1 controllers=$2 port pid i
  port=$(free_port)
  # No --authentication/--authorization-kubeconfig: nothing calls kcm but the health probe
  # (/healthz is always allowed), and the API server has no request-header CA for it to read.
  # shellcheck disable=SC1091
  source "$dir/ports"
  local node=()
  # A node cluster's: a pod CIDR per node (the bridge CNI and kube-router read it) and the
  # Service range of its API server.
  [ -n "$NODE_IP" ] && node=(--allocate-node-cidrs --cluster-cidr 10.244.0.0/16
    --node-cidr-mask-size 24 --service-cluster-ip-range 10.96.0.0/16)
  "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$dir/kcm.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$port" --cert-dir "$dir/kcm-certs" \
    --controllers "$controllers" --use-service-account-credentials=true --leader-elect=false \
    --service-account-private-key-file "$dir/pki/sa.key" --root-ca-file "$dir/pki/ca.crt" \
    "${node[@]}" >>"$dir/kube-controller-manager.log" 2>&1 &
  pid=$!
  echo "$pid" > "$dir/kube-controller-manager.pid"
  echo "$port" > "$dir/kube-controller-manager.port"
  for i in $(seq 1 600); do
    if kcm_controllers_started "$port" "$controllers"; then
      return 0
    fi
    ours "$pid" "$dir" || break
    sleep 0.1
  done
  tail -n 30 "$dir/kube-controller-manager.log" >&2
  stop_pid "$pid" "$dir"
  rm -f "$dir/kube-controller-manager.pid" "$dir/kube-controller-manager.port"
  return 1
}

# Does kcm on PORT pass /healthz with its controllers' checks in? Every entry of LIST given by
# its canonical name (namespace-controller) must have a check; aliases (namespace), "*" and
# "-name" entries are not checked one by one.
kcm_controllers_started() {
  local port=$1 health c
  health=$(curl -kfsS --max-time 2 "https://127.0.0.1:$port/healthz?verbose" 2>/dev/null) ||
    return 1
  grep -qE '^\[\+\][a-z0-9-]+-controller ok$' <<<"$health" || return 1
  for c in ${2//,/ }; do
    case "$c" in *-controller) grep -qxF "[+]$c ok" <<<"$health" || return 1 ;; esac
  done
}

cmd_kcm_start() {
  local dir=${1:?usage: testenv.sh kcm-start DIR [--controllers LIST]}
  [ -f "$dir/env" ] || die "$dir holds no control plane (testenv.sh start DIR)"
  dir=$(cd "$dir" && pwd)
  local controllers=$KCM_DEFAULT_CONTROLLERS
  if [ "${2:-}" = "--controllers" ]; then
    controllers=${3:?--controllers needs a list}
  fi
  [ -x "$(source "$dir/ports"; echo "$K8S_BIN")/kube-controller-manager" ] ||
    die "run 'testenv.sh build' first"
  if [ -f "$dir/kube-controller-manager.pid" ] &&
     ours "$(cat "$dir/kube-controller-manager.pid")" "$dir"; then
    die "kube-controller-manager already runs for $dir"
  fi
  client_kubeconfig "$dir" kcm system:kube-controller-manager
  local attempt
  for attempt in 1 2 3; do
    kcm_start_once "$dir" "$controllers" && return 0
    log "kube-controller-manager start attempt $attempt failed"
  done
  die "could not start kube-controller-manager (log: $dir/kube-controller-manager.log)"
}

cmd_kcm_stop() {
  local dir=${1:?usage: testenv.sh kcm-stop DIR}
  dir=$(cd "$dir" && pwd)
  [ -f "$dir/kube-controller-manager.pid" ] || return 0
  stop_pid "$(cat "$dir/kube-controller-manager.pid")" "$dir"
  rm -f "$dir/kube-controller-manager.pid" "$dir/kube-controller-manager.port"
}

cmd_stop() {
  local dir=${1:?usage: testenv.sh stop DIR}
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  stop_processes "$dir"
  rm -rf "$dir"
}

case "${1:-}" in
  build) cmd_build ;;
  build-node-kubernetes)
    build_kubernetes "$NODE_K8S_VERSION" "$NODE_K8S_DIR" $NODE_K8S_COMMANDS
    echo "$NODE_K8S_DIR" ;;
  paths) cmd_paths ;;
  istio-crds) cmd_crds ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  apiserver-stop) stop_pid "$(cat "${2:?DIR}/kube-apiserver.pid")" "$(cd "$2" && pwd)" ;;
  apiserver-start) apiserver_start "$(cd "${2:?DIR}" && pwd)" ;;
  kcm-start) shift; cmd_kcm_start "$@" ;;
  kcm-stop) shift; cmd_kcm_stop "$@" ;;
  client-kubeconfig) shift; client_kubeconfig "$(cd "${1:?DIR}" && pwd)" "${@:2}" ;;
  *) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 2 ;;
esac
