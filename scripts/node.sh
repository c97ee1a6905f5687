#!/usr/bin/env bash
# A single-node Kubernetes cluster from real parts, on this machine, for Bulkhead's node tests
# and the demo. Needs root. Everything it starts lives under DIR and `down` removes all of it:
# processes, containers, mounts, pod network namespaces, iptables/nftables rules and ipsets,
# cgroups, the node address and the bridge.
#
#   node.sh build               build and cache what the node needs (see below); per-component
#                               progress, a no-op when everything is cached
#   node.sh check               exit 0 when a node can run here, else say why (exit 3)
#   node.sh up DIR [--owner PID]
#                               start the cluster; DIR/env (source it) sets KUBECONFIG, PATH and
#                               NODE_* (NODE_IP, NODE_APISERVER_PORT, NODE_AGNHOST_IMAGE,
#                               NODE_BULKHEAD_IMAGE, ...). With --owner, a watchdog runs `down DIR`
#                               when process PID exits, however it exits
#   node.sh down DIR            stop it and remove everything it made
#
# The parts (versions below):
#   control plane   etcd, kube-apiserver, kube-controller-manager, kube-scheduler (scripts/testenv.sh)
#   node            kubelet over containerd + runc (Debian), Debian's CNI bridge plugin on the
#                   bridge bulkhead-cni0 (pods 10.244.0.0/24), kube-proxy (iptables mode; Services
#                   10.96.0.0/16), the node address 10.95.0.1 on lo
#   add-ons         CoreDNS as kube-system/coredns behind the kube-dns Service (10.96.0.10);
#                   kube-router's NetworkPolicy controller, firewall only, as the data plane
#   images          pause (Kubernetes' build/pause, built static), agnhost (Kubernetes' e2e test
#                   server), CoreDNS: one-layer OCI archives written by tests/tools/oci-image.py;
#                   Bulkhead: the repository's Dockerfile built by buildah on a Debian base made
#                   by debootstrap. All imported into containerd; nothing is pulled.
#
# kube-router v2.1.0 (the only version the Go module proxy serves) has published security
# advisories: here it is a test tool on a closed machine, never part of what Bulkhead ships.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
testenv="$root/scripts/testenv.sh"

COREDNS_VERSION=v1.15.0
KUBE_ROUTER_VERSION=v2.1.0
CACHE_ROOT="${BULKHEAD_TESTBIN:-${XDG_CACHE_HOME:-$HOME/.cache}/bulkhead/testbin}"
NODE_CACHE="$CACHE_ROOT/node"
IMAGES="$NODE_CACHE/images"

NODE_NAME=bulkhead-node
NODE_IP=10.95.0.1
BRIDGE=bulkhead-cni0
POD_CIDR=10.244.0.0/24
CLUSTER_CIDR=10.244.0.0/16
DNS_IP=10.96.0.10
BULKHEAD_IMAGE=localhost/bulkhead:node
LOCK=/run/bulkhead-node.dir

export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
# shellcheck source=processes.sh
source "$root/scripts/processes.sh"

log() { echo "node: $*" >&2; }
die() { echo "node: error: $*" >&2; exit 1; }

# The node cluster's Kubernetes version and binaries (scripts/testenv.sh builds them).
k8s_version() { sed -n 's/^NODE_K8S_VERSION=//p' "$testenv"; }
k8s_dir() { echo "$CACHE_ROOT/kubernetes-$(k8s_version)"; }
# Kubernetes' own source tree at that version (pause.c, agnhost's VERSION).
k8s_module_dir() {
  (cd /tmp && go mod download -json "k8s.io/kubernetes@$(k8s_version)") |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}

NODE_PACKAGES=(containerd runc containernetworking-plugins buildah debootstrap nftables iptables
  ipset conntrack iproute2 gcc libc6-dev)

# ---------------------------------------------------------------------------------------------
# check

# Why a node cannot run here, or nothing.
why_not() {
  [ "$(id -u)" -eq 0 ] || { echo "not root (the kubelet and containerd need root)"; return; }
  [ "$(uname -s)" = Linux ] || { echo "not Linux"; return; }
  [ -d /sys/fs/cgroup ] || { echo "no /sys/fs/cgroup"; return; }
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] ||
    { echo "the kernel has no bridge netfilter (br_netfilter)"; return; }
  unshare --net true 2>/dev/null || { echo "cannot create network namespaces"; return; }
  grep -qw overlay /proc/filesystems || { echo "the kernel has no overlay filesystem"; return; }
}

cmd_check() {
  local why
  why=$(why_not)
  [ -z "$why" ] && return 0
  echo "node: cannot run a node here: $why" >&2
  exit 3
}

# ---------------------------------------------------------------------------------------------
# build

# step NAME: prints what is being built, and how long it took when it is done.
step_start=0
step() { step_start=$SECONDS; log "$*"; }
done_step() { log "  done in $((SECONDS - step_start)) s"; }

install_packages() {
  local p missing=()
  for p in "${NODE_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && { log "Debian packages: cached"; return 0; }
  step "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  done_step
}

# go_tool NAME MODULE/PKG VERSION: go install into the cache; a stamp file holds the version.
go_tool() {
  local name=$1 pkg=$2 version=$3 dir="$NODE_CACHE/$1-$3"
  if [ -x "$dir/$name" ] && [ "$(cat "$dir/$name.version" 2>/dev/null)" = "$version" ]; then
    log "$name $version: cached"
    return 0
  fi
  step "building $name $version from its Go module (a few minutes when cold)"
  mkdir -p "$dir"
  GOBIN="$dir" go install -trimpath -ldflags "-s -w" "$pkg@$version" \
    2> >(grep -v '^go: downloading' >&2)
  echo "$version" > "$dir/$name.version"
  done_step
}

# build_pause K8S_SOURCE: the pause binary from Kubernetes' source tree K8S_SOURCE.
build_pause() {
  local dir="$NODE_CACHE/pause-$(k8s_version)" src="$1/build/pause" tag
  tag=$(sed -n 's/^TAG ?= //p' "$src/Makefile")
  echo "$tag" > "$NODE_CACHE/pause.tag"
  if [ -x "$dir/pause" ]; then log "pause $tag: cached"; return 0; fi
  step "building pause $tag (static, from Kubernetes' build/pause)"
  mkdir -p "$dir"
  gcc -Os -Wall -Werror -static -DVERSION="v$tag-bulkhead" -o "$dir/pause.tmp" "$src/linux/pause.c"
  mv "$dir/pause.tmp" "$dir/pause"
  done_step
}

# image NAME ARCHIVE ENTRYPOINT DEST=SRC...: write the OCI archive when a file is newer than it.
image() {
  local name=$1 out="$IMAGES/$2" entry=$3 f stale=false
  shift 3
  [ -s "$out" ] || stale=true
  for f in "$@"; do [ "${f#*=}" -nt "$out" ] && stale=true; done
  if ! $stale && [ "$(cat "$out.name" 2>/dev/null)" = "$name" ]; then return 0; fi
  mkdir -p "$IMAGES"
  local args=()
  for f in "$@"; do args+=(--file "$f"); done
  python3 "$root/tests/tools/oci-image.py" "$out" "$name" --entrypoint "$entry" "${args[@]}"
  echo "$name" > "$out.name"
  log "image $name written"
}

# The Debian the Dockerfile starts from (debian:bookworm and debian:bookworm-slim are both this
# minbase rootfs): made by debootstrap from the mirror apt already uses, kept as a tar.
debian_mirror() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    sed -E 's/\[[^]]*\]//' | awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}'
  grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' |
    grep -v security | head -1
}

build_base_image() {
  if buildah inspect --type image docker.io/library/debian:bookworm-slim >/dev/null 2>&1; then
    log "debian:bookworm base image: cached"
    return 0
  fi
  local tar="$NODE_CACHE/debian-bookworm-minbase.tar"
  if [ ! -s "$tar" ]; then
    local mirror rootfs
    mirror=$(debian_mirror | head -1)
    [ -n "$mirror" ] || die "no Debian mirror for bookworm in /etc/apt/sources.list*"
    step "debootstrap --variant=minbase bookworm (about 30 s)"
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$NODE_CACHE/debootstrap.log" 2>&1 ||
      { tail -20 "$NODE_CACHE/debootstrap.log" >&2; rm -rf "$rootfs"; die "debootstrap failed"; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$tar.tmp" .
    rm -rf "$rootfs"
    mv "$tar.tmp" "$tar"
    done_step
  fi
  step "importing the Debian rootfs into buildah as debian:bookworm and debian:bookworm-slim"
  local ctr mnt
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  tar -C "$mnt" -xf "$tar"
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash "$ctr"
  buildah commit -q "$ctr" docker.io/library/debian:bookworm >/dev/null
  buildah rm "$ctr" >/dev/null
  buildah tag docker.io/library/debian:bookworm docker.io/library/debian:bookworm-slim
  done_step
}

# Bulkhead's image, from the repository's Dockerfile as users build it. buildah's layer cache
# makes an unchanged tree a no-op; the archive is rewritten only when the image changed.
build_bulkhead_image() {
  step "building $BULKHEAD_IMAGE from the Dockerfile with buildah (compiles Bulkhead when the tree changed)"
  buildah build --layers --network host --isolation chroot --pull=never \
    -t "$BULKHEAD_IMAGE" -f "$root/Dockerfile" "$root" >"$NODE_CACHE/buildah.log" 2>&1 ||
    { tail -30 "$NODE_CACHE/buildah.log" >&2; die "buildah build failed (log: $NODE_CACHE/buildah.log)"; }
  local id
  id=$(buildah inspect --type image -f '{{.FromImageID}}' "$BULKHEAD_IMAGE")
  if [ "$(cat "$IMAGES/bulkhead.tar.id" 2>/dev/null)" != "$id" ]; then
    mkdir -p "$IMAGES"
    rm -f "$IMAGES/bulkhead.tar"
    buildah push -q "$BULKHEAD_IMAGE" "docker-archive:$IMAGES/bulkhead.tar:$BULKHEAD_IMAGE" >/dev/null
    echo "$id" > "$IMAGES/bulkhead.tar.id"
  fi
  done_step
}

cmd_build() {
  cmd_check
  mkdir -p "$NODE_CACHE"
  install_packages
  "$testenv" build
  log "Kubernetes $(k8s_version) for the node:"
  "$testenv" build-node-kubernetes >/dev/null
  go_tool coredns github.com/coredns/coredns "$COREDNS_VERSION"
  go_tool kube-router github.com/cloudnativelabs/kube-router/v2/cmd/kube-router "$KUBE_ROUTER_VERSION"
  local k8s k8s_source agnhost_tag
  k8s=$(k8s_dir)
  k8s_source=$(k8s_module_dir)
  build_pause "$k8s_source"
  agnhost_tag=$(cat "$k8s_source/test/images/agnhost/VERSION")
  echo "$agnhost_tag" > "$NODE_CACHE/agnhost.tag"
  image "registry.k8s.io/pause:$(cat "$NODE_CACHE/pause.tag")" pause.tar /pause \
    "/pause=$NODE_CACHE/pause-$(k8s_version)/pause"
  image "registry.k8s.io/e2e-test-images/agnhost:$agnhost_tag" agnhost.tar /agnhost \
    "/agnhost=$k8s/agnhost"
  image "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" coredns.tar /coredns \
    "/coredns=$NODE_CACHE/coredns-$COREDNS_VERSION/coredns"
  build_base_image
  build_bulkhead_image
}

# ---------------------------------------------------------------------------------------------
# up

# start NAME CMD...: run CMD in the background, logging to DIR/NAME.log, pid in DIR/NAME.pid.
start() {
  local name=$1
  shift
  "$@" >>"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

# wait_for SECONDS WHAT CMD...: until CMD succeeds, or fail showing WHAT's log (at once when
# WHAT's process has exited).
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ] || ! ours "$(cat "$dir/$what.pid" 2>/dev/null)" "$dir"; then
      log "$what did not become ready; its log ends with:"
      tail -n 30 "$dir/$what.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.5
  done
}

write_containerd_config() {
  mkdir -p "$dir/containerd" "$dir/cni/net.d"
  cat >"$dir/containerd/config.toml" <<TOML
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
# This VM refuses negative oom_score_adj writes: containerd keeps its own score.
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$dir/containerd/containerd.sock"
[ttrpc]
  address = "$dir/containerd/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  # Imported locally, never pulled.
  sandbox_image = "registry.k8s.io/pause:$(cat "$NODE_CACHE/pause.tag")"
  # Clamp containers' oom_score_adj to containerd's own (0): without it runc's sandbox start
  # fails here with "can't get final child's PID from pipe" (the kernel refuses negative values).
  restrict_oom_score_adj = true
  # No hugetlb cgroup controller is mounted on this machine.
  disable_hugetlb_controller = true
  tolerate_missing_hugetlb_controller = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # The kubelet's cgroupDriver is cgroupfs (no systemd here): the two must agree.
        SystemdCgroup = false
TOML
  # Debian's bridge plugin: every pod on one bridge, its gateway the node's end of it, addresses
  # from the node's pod CIDR (kube-controller-manager gives the first node 10.244.0.0/24).
  # No masquerading: only pods and the node talk here. portmap serves hostPort.
  cat >"$dir/cni/net.d/10-bulkhead.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "bulkhead",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false,
     "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$dir/cni/ipam",
              "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
}

write_kubelet_config() {
  local port=$1 healthz=$2
  mkdir -p "$dir/kubelet"
  # Pods with dnsPolicy Default (CoreDNS itself) get this: no resolver outside the cluster.
  echo "options ndots:1" >"$dir/kubelet/resolv.conf"
  cat >"$dir/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
# No systemd here: cgroups are managed through cgroupfs, under a root of our own that 'down'
# removes. The machine mounts cgroup v1 controllers beside a unified hierarchy, which Kubernetes
# 1.35+ refuses unless told otherwise.
cgroupDriver: cgroupfs
cgroupRoot: /$NODE_NAME
failCgroupV1: false
# The VM refuses negative oom_score_adj (the default is -999).
oomScoreAdj: 0
failSwapOn: false
address: $NODE_IP
port: $port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $dir/cp/pki/ca.crt}
authorization: {mode: Webhook}
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $dir/kubelet/resolv.conf
podLogsDir: $dir/kubelet/logs
# The images are imported, not pulled: never collect them, and tolerate a full-ish disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
serializeImagePulls: false
YAML
}

write_kube_proxy_config() {
  cat >"$dir/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $dir/cp/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $CLUSTER_CIDR
# The VM refuses negative oom_score_adj (the default is -999).
oomScoreAdj: 0
# Leave the machine's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0}
# NodePorts on the node address only.
nodePortAddresses: [$NODE_IP/32]
healthzBindAddress: 127.0.0.1:$1
metricsBindAddress: 127.0.0.1:$(free_port)
YAML
}

kube_router_rbac() {
  kubectl apply -f - >/dev/null <<'YAML'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:kube-router"}
rules:
- apiGroups: [""]
  resources: [namespaces, pods, services, nodes, endpoints]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:kube-router"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:kube-router"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:kube-router"}
YAML
}

coredns_manifest() {
  cat <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  # Cluster names only: this machine reaches no resolver outside it.
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      containers:
      - name: coredns
        image: registry.k8s.io/coredns/coredns:$COREDNS_VERSION
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
        livenessProbe: {httpGet: {path: /health, port: 8080}}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
YAML
}

node_ready() {
  [ "$(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
healthy() { curl -kfsS --max-time 2 "$1" >/dev/null; }

cmd_up() {
  dir=${1:?usage: node.sh up DIR [--owner PID]}
  local owner=""
  [ "${2:-}" = "--owner" ] && owner=${3:?--owner needs a pid}
  cmd_check
  [ -s "$IMAGES/bulkhead.tar" ] || die "run 'node.sh build' first"
  if [ -s "$LOCK" ] && [ -d "$(cat "$LOCK")" ]; then
    die "a node cluster runs already in $(cat "$LOCK") (node.sh down $(cat "$LOCK"))"
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  echo "$dir" >"$LOCK"
  [ -n "$owner" ] && start_watchdog "$root/scripts/node.sh" down "$dir" "$owner" "$dir/watchdog.log"
  local k8s t0=$SECONDS
  k8s=$(k8s_dir)

  # Host settings, restored by 'down': forwarding between pods and the node, and bridged pod
  # traffic through iptables (kube-router's and kube-proxy's rules see pod-to-pod packets).
  {
    echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
    echo "bridge_nf=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables)"
  } >"$dir/sysctl.saved"
  nft list tables 2>/dev/null | sort >"$dir/nft-tables.before" || true
  echo 1 >/proc/sys/net/ipv4/ip_forward
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  # The node's address: on lo, reachable from the pods through their gateway.
  ip addr add "$NODE_IP/32" dev lo

  log "control plane (Kubernetes $(k8s_version))"
  "$testenv" start "$dir/cp" --node-ip "$NODE_IP"
  # shellcheck disable=SC1091
  source "$dir/cp/env"
  source "$dir/cp/ports"
  "$testenv" kcm-start "$dir/cp" --controllers '*' >/dev/null
  "$testenv" client-kubeconfig "$dir/cp" kubelet "system:node:$NODE_NAME" system:nodes
  "$testenv" client-kubeconfig "$dir/cp" scheduler system:kube-scheduler
  "$testenv" client-kubeconfig "$dir/cp" kube-proxy system:kube-proxy
  "$testenv" client-kubeconfig "$dir/cp" kube-router system:kube-router
  local sched_port
  sched_port=$(free_port)
  start kube-scheduler "$k8s/kube-scheduler" --kubeconfig "$dir/cp/scheduler.kubeconfig" \
    --authentication-kubeconfig "$dir/cp/scheduler.kubeconfig" \
    --authorization-kubeconfig "$dir/cp/scheduler.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$sched_port"
  wait_for 60 kube-scheduler healthy "https://127.0.0.1:$sched_port/healthz" ||
    die "kube-scheduler did not start"

  log "containerd and images"
  write_containerd_config
  mkdir -p "/sys/fs/cgroup/unified/$NODE_NAME" 2>/dev/null || true
  local c
  for c in /sys/fs/cgroup/*/; do
    [ -d "$c" ] && [ ! -L "${c%/}" ] && mkdir -p "$c$NODE_NAME" 2>/dev/null || true
  done
  start containerd containerd --config "$dir/containerd/config.toml"
  ctr_() { ctr --address "$dir/containerd/containerd.sock" -n k8s.io "$@"; }
  wait_for 30 containerd ctr_ version || die "containerd did not start"
  local img
  for img in pause agnhost coredns bulkhead; do
    ctr_ images import --no-unpack=false "$IMAGES/$img.tar" >/dev/null ||
      die "could not import $IMAGES/$img.tar"
  done

  log "kubelet, kube-proxy, kube-router"
  local kubelet_port kubelet_healthz
  kubelet_port=$(free_port)
  kubelet_healthz=$(free_port)
  write_kubelet_config "$kubelet_port" "$kubelet_healthz"
  start kubelet "$k8s/kubelet" --config "$dir/kubelet/config.yaml" \
    --kubeconfig "$dir/cp/kubelet.kubeconfig" --root-dir "$dir/kubelet/root" \
    --cert-dir "$dir/kubelet/pki" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
  wait_for 120 kubelet node_ready || die "the node did not become Ready"
  local proxy_health
  proxy_health=$(free_port)
  write_kube_proxy_config "$proxy_health"
  start kube-proxy "$k8s/kube-proxy" --config "$dir/kube-proxy.yaml"
  wait_for 60 kube-proxy healthy "http://127.0.0.1:$proxy_health/healthz" ||
    die "kube-proxy did not start"
  kube_router_rbac
  local router_health
  router_health=$(free_port)
  start kube-router "$NODE_CACHE/kube-router-$KUBE_ROUTER_VERSION/kube-router" \
    --kubeconfig "$dir/cp/kube-router.kubeconfig" --hostname-override "$NODE_NAME" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --enable-ipv6=false --metrics-port 0 --health-port "$router_health"
  wait_for 60 kube-router healthy "http://127.0.0.1:$router_health/healthz" ||
    die "kube-router did not start"

  log "CoreDNS"
  coredns_manifest | kubectl apply -f - >/dev/null
  kubectl -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null ||
    { kubectl -n kube-system describe pods -l k8s-app=kube-dns >&2; die "CoreDNS did not start"; }

  cat >"$dir/env" <<ENV
source '$dir/cp/env'
export NODE_DIR='$dir'
export NODE_NAME='$NODE_NAME'
export NODE_IP='$NODE_IP'
export NODE_APISERVER_PORT='$APISERVER_PORT'
export NODE_K8S_VERSION='$(k8s_version)'
export NODE_AGNHOST_IMAGE='registry.k8s.io/e2e-test-images/agnhost:$(cat "$NODE_CACHE/agnhost.tag")'
export NODE_BULKHEAD_IMAGE='$BULKHEAD_IMAGE'
export NODE_CONTAINERD_ADDRESS='$dir/containerd/containerd.sock'
ENV
  log "node $NODE_NAME ready in $((SECONDS - t0)) s (source $dir/env)"
}


# ---------------------------------------------------------------------------------------------
# down

# stop_named NAME: stop the process whose pid is in DIR/NAME.pid, if it is still ours.
stop_named() { stop_pid "$(cat "$dir/$1.pid" 2>/dev/null)" "$dir"; }

# Every process in our cgroups (the containers) and the shims of our containerd.
kill_leftovers() {
  local pids p
  pids=$(find /sys/fs/cgroup -path "*/$NODE_NAME/*" -name cgroup.procs -exec cat {} + 2>/dev/null || true)
  for p in $(pgrep -f "containerd-shim.*$dir" || true) $pids; do
    kill -KILL "$p" 2>/dev/null || true
  done
}

# Remove chains named PREFIX* from every iptables table, with the rules that jump to them.
flush_chains() {
  local table chain rule
  for table in filter nat mangle raw; do
    iptables-save -t "$table" 2>/dev/null | grep -E "^-A .* -j ($1)" |
      while read -r rule; do
        # shellcheck disable=SC2086
        iptables -t "$table" ${rule/-A/-D} 2>/dev/null || true
      done
    for chain in $(iptables-save -t "$table" 2>/dev/null | sed -nE "s/^:(($1)[^ ]*) .*/\1/p"); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables-save -t "$table" 2>/dev/null | sed -nE "s/^:(($1)[^ ]*) .*/\1/p"); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

cmd_down() {
  dir=${1:?usage: node.sh down DIR}
  # Best effort, every step: one that fails must not leave the rest behind.
  set +e +o pipefail
  [ -d "$dir" ] || { [ "$(cat "$LOCK" 2>/dev/null)" = "$dir" ] && rm -f "$LOCK"; return 0; }
  dir=$(cd "$dir" && pwd)
  local k8s
  k8s=$(k8s_dir)
  # The pod sandboxes' network namespaces, while containerd can still say which are ours.
  local netns=()
  if [ -S "$dir/containerd/containerd.sock" ]; then
    mapfile -t netns < <(ctr --address "$dir/containerd/containerd.sock" -n k8s.io containers ls -q 2>/dev/null |
      while read -r id; do
        ctr --address "$dir/containerd/containerd.sock" -n k8s.io containers info "$id" 2>/dev/null |
          python3 -c 'import json,sys
for n in json.load(sys.stdin).get("Spec",{}).get("linux",{}).get("namespaces",[]):
    if n.get("type")=="network" and n.get("path","").startswith(("/run/netns/","/var/run/netns/")): print(n["path"])' 2>/dev/null || true
      done | sort -u)
  fi
  # Gracefully first: the kubelet tears pods down through CNI (addresses, veths).
  if [ -f "$dir/env" ] && ours "$(cat "$dir/kubelet.pid" 2>/dev/null)" "$dir"; then
    (
      # shellcheck disable=SC1091
      source "$dir/env"
      "$testenv" kcm-stop "$dir/cp" 2>/dev/null || true
      stop_named kube-scheduler
      kubectl delete pods --all -A --grace-period=0 --force --wait=false >/dev/null 2>&1 || true
      for _ in $(seq 1 60); do
        [ -z "$(ctr --address "$dir/containerd/containerd.sock" -n k8s.io tasks ls -q 2>/dev/null)" ] && break
        sleep 0.5
      done
    ) || true
  fi
  local n
  for n in kube-router kube-proxy kubelet kube-scheduler; do stop_named "$n"; done
  kill_leftovers
  stop_named containerd
  kill_leftovers
  # The data plane's rules: each tool's own clean-up, then whatever remains of their chains.
  [ -x "$NODE_CACHE/kube-router-$KUBE_ROUTER_VERSION/kube-router" ] &&
    "$NODE_CACHE/kube-router-$KUBE_ROUTER_VERSION/kube-router" --cleanup-config >/dev/null 2>&1 || true
  [ -x "$k8s/kube-proxy" ] && "$k8s/kube-proxy" --cleanup >/dev/null 2>&1 || true
  flush_chains 'KUBE-|CNI-'
  local set
  for set in $(ipset list -n 2>/dev/null | grep -E '^(KUBE-|kube-router-|inet6:)' || true); do
    ipset destroy "$set" 2>/dev/null || true
  done
  # nftables tables that were not there before the node (iptables-nft's own, kube-proxy's).
  if [ -f "$dir/nft-tables.before" ]; then
    comm -13 "$dir/nft-tables.before" <(nft list tables 2>/dev/null | sort) |
      while read -r _ family name; do nft delete table "$family" "$name" 2>/dev/null || true; done
  fi
  # Mounts under DIR (pod volumes, rootfs, shm), deepest first; then the pods' netns.
  awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for n in "${netns[@]}"; do
    umount -l "$n" 2>/dev/null || true
    rm -f "$n"
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  ip link show type veth 2>/dev/null | sed -nE 's/^[0-9]+: (veth[^@:]+).*master '"$BRIDGE"'.*/\1/p' |
    while read -r v; do ip link del "$v" 2>/dev/null || true; done
  # Our cgroups, deepest first.
  find /sys/fs/cgroup -depth -type d -path "*/$NODE_NAME*" -exec rmdir {} \; 2>/dev/null || true
  ip addr del "$NODE_IP/32" dev lo 2>/dev/null || true
  if [ -f "$dir/sysctl.saved" ]; then
    # shellcheck disable=SC1091
    source "$dir/sysctl.saved"
    echo "$ip_forward" >/proc/sys/net/ipv4/ip_forward
    echo "$bridge_nf" >/proc/sys/net/bridge/bridge-nf-call-iptables
  fi
  "$testenv" stop "$dir/cp" 2>/dev/null || true
  rm -rf "$dir"
  [ "$(cat "$LOCK" 2>/dev/null)" = "$dir" ] && rm -f "$LOCK"
  return 0
}

case "${1:-}" in
  build) cmd_build ;;
  check) cmd_check ;;
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  *) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 2 ;;
esac
