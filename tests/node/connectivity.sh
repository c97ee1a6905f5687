#!/usr/bin/env bash
# Segmentation proven by traffic, on the single-node cluster of scripts/node.sh (kube-proxy in
# iptables mode, CoreDNS, kube-router's NetworkPolicy firewall, Debian's bridge CNI) with Bulkhead
# installed from the chart as release `bulkhead` in bulkhead-system. Two agnhost servers in each of
# the namespaces a, b and c probe each other, pod IP to pod IP (no Service, so kube-proxy plays no
# part), on TCP 80 and UDP 81, the way sig-network's NetworkPolicy e2e tests do: before and after
# a SegmentationPolicy selects a and b. Then DNS, API server egress, a tenant's own policy, drift
# repair timed on the wire, what pods are told while a namespace is being segmented, and an
# AccessGrant opening one flow after approval and closing it at its expiry.
# Every step and command is printed; any difference from the expected makes it exit non-zero.
#
#   source NODE_DIR/env && tests/node/connectivity.sh     (E2E_KEEP=1 leaves its objects in place)
#
# Needs KUBECONFIG (admin), kubectl, helm, and NODE_AGNHOST_IMAGE (imported on the node; pods use
# imagePullPolicy Never). Optional: NODE_IP and NODE_APISERVER_PORT (default: the endpoint of
# default/kubernetes), AGNHOST (the binary in the image, /agnhost), PROBE_TIMEOUT (1s),
# PROBE_JOBS (6), KUBE_API_VIP (10.96.0.1:443), DNS_SERVICE_IP (10.96.0.10), CLUSTER_DOMAIN
# (cluster.local), BULKHEAD_CHART (this tree's charts/bulkhead, for `helm upgrade`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

: "${NODE_AGNHOST_IMAGE:?must name the agnhost image imported on the node}"
AGNHOST=${AGNHOST:-/agnhost}
PROBE_TIMEOUT=${PROBE_TIMEOUT:-1s}
PROBE_JOBS=${PROBE_JOBS:-6}
KUBE_API_VIP=${KUBE_API_VIP:-10.96.0.1:443}
DNS_SERVICE_IP=${DNS_SERVICE_IP:-10.96.0.10}
CLUSTER_DOMAIN=${CLUSTER_DOMAIN:-cluster.local}
CHART=${BULKHEAD_CHART:-$here/../../charts/bulkhead}
RELEASE=bulkhead BULKHEAD_NS=bulkhead-system POLICY=e2e-connectivity
SELECT=e2e.bulkhead.dev/segment  # the policy selects namespaces labelled $SELECT=on, only ours
OWNER=e2e.bulkhead.dev/owner     # =connectivity on every namespace this script creates
PODS=(a/x a/y b/x b/y c/x c/y)   # a/x also carries api=yes, the policy's allowKubeAPI selector
WORK=$(mktemp -d)
CREATED=() WEBHOOK_DELETED=0

# The expectations, written out. Loopback (the diagonal) never leaves the pod: always '.'.
OPEN='
-     a/x  a/y  b/x  b/y  c/x  c/y
a/x   .    .    .    .    .    .
a/y   .    .    .    .    .    .
b/x   .    .    .    .    .    .
b/y   .    .    .    .    .    .
c/x   .    .    .    .    .    .
c/y   .    .    .    .    .    .'
# a and b selected with allowSameNamespace: each talks only to itself; c (never selected) keeps
# its own traffic but reaches neither a nor b, and neither reaches it (egress is denied too).
SEGMENTED='
-     a/x  a/y  b/x  b/y  c/x  c/y
a/x   .    .    X    X    X    X
a/y   .    .    X    X    X    X
b/x   X    X    .    .    X    X
b/y   X    X    .    .    X    X
c/x   X    X    X    X    .    .
c/y   X    X    X    X    .    .'
# allowSameNamespace off, plus the tenant's own policy in a: exactly a/x -> a/y on TCP 80.
TENANT_TCP='
-     a/x  a/y  b/x  b/y  c/x  c/y
a/x   .    .    X    X    X    X
a/y   X    .    X    X    X    X
b/x   X    X    .    X    X    X
b/y   X    X    X    .    X    X
c/x   X    X    X    X    .    .
c/y   X    X    X    X    .    .'
TENANT_UDP='
-     a/x  a/y  b/x  b/y  c/x  c/y
a/x   .    X    X    X    X    X
a/y   X    .    X    X    X    X
b/x   X    X    .    X    X    X
b/y   X    X    X    .    X    X
c/x   X    X    X    X    .    .
c/y   X    X    X    X    .    .'

# An AccessGrant in a from b's x pods to a's y pods on TCP 80, once approved: exactly b/x -> a/y
# opens on TCP 80 (an egress NetworkPolicy in b, an ingress one in a); UDP 81 stays as it was.
GRANT_TCP='
-     a/x  a/y  b/x  b/y  c/x  c/y
a/x   .    .    X    X    X    X
a/y   X    .    X    X    X    X
b/x   X    .    .    X    X    X
b/y   X    X    X    .    X    X
c/x   X    X    X    X    .    .
c/y   X    X    X    X    .    .'

# pod_manifest NS NAME LABELS SPEC ARG...: an agnhost pod running `agnhost ARG...`; LABELS is
# the content of a YAML flow map, SPEC extra pod spec fields ("" or e.g. "hostNetwork: true").
pod_manifest() {
  local ns=$1 name=$2 labels=$3 spec=$4 args ready=''
  shift 4
  args=$(printf '"%s", ' "$@")
  if [ "$1" = netexec ]; then ready='readinessProbe: {httpGet: {path: /readyz, port: 80}, periodSeconds: 2}'; fi
  # Every name and value quoted: YAML 1.1, which kubectl reads, takes a bare y or on for a bool.
  cat <<YAML
apiVersion: v1
kind: Pod
metadata: {name: "$name", namespace: "$ns", labels: {$labels}}
spec:
  enableServiceLinks: false
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  $spec
  containers:
    - name: agnhost
      image: "$NODE_AGNHOST_IMAGE"
      imagePullPolicy: Never
      command: ["$AGNHOST"]
      args: [${args%, }]
      $ready
YAML
}
labels_of() { echo "app: \"$1\", app.kubernetes.io/name: \"$1\""; }  # the latter: requiredLabels
np_uid() { k get networkpolicy "$2" -n "$1" -o jsonpath='{.metadata.uid}' 2>/dev/null; }
np_exists() { [ -n "$(np_uid "$@")" ]; }
np_gone() { ! np_exists "$@"; }
segpol_field() { k get segpol "$POLICY" -o jsonpath="{$1}" 2>/dev/null; }
policy_settled() {  # policy_settled SELECTED SEGMENTED
  [ "$(segpol_field .status.observedGeneration)" = "$(segpol_field .metadata.generation)" ] &&
    [ "$(segpol_field .status.selectedNamespaces)" = "$1" ] &&
    [ "$(segpol_field .status.segmentedNamespaces)" = "$2" ] &&
    [ "$(segpol_field '.status.conditions[?(@.type=="Ready")].status')" = True ]
}
# webhook_enforces NS: a pod without the required label is refused by Bulkhead in NS (NS selected).
webhook_enforces() {
  local o
  o=$(pod_manifest "$1" webhook-canary "app: canary" "" pause | k create --dry-run=server -f - 2>&1) && return 1
  grep -q requiredLabels <<<"$o"
}
restore_webhook() {  # the README's way back: helm upgrade recreates the configuration
  run timeout 180 helm upgrade "$RELEASE" "$CHART" -n "$BULKHEAD_NS" --reuse-values
  if [ "$rc" -eq 0 ]; then WEBHOOK_DELETED=0; else fail "helm upgrade failed: the webhook is still missing"; fi
}
cleanup() {
  local status=$? p  # not "rc": run() sets that one
  set +e
  for p in "${WATCHERS[@]}"; do kill "$p" 2>/dev/null; done
  # Never leave the cluster without its webhook, whatever happened.
  if [ "$WEBHOOK_DELETED" = 1 ]; then step "Restoring the webhook configuration"; restore_webhook; fi
  if [ "$status" -ne 0 ] || [ "$FAILURES" -ne 0 ]; then
    step "For debugging"
    run k get segpol "$POLICY" -o wide
    run k get networkpolicies -A -l "app.kubernetes.io/managed-by=bulkhead"
    run k get events -n b --sort-by=.lastTimestamp
    run k logs -n "$BULKHEAD_NS" -l app.kubernetes.io/name=bulkhead --tail=20 --prefix
    [ -r /proc/sys/net/bridge/bridge-nf-call-iptables ] &&
      log "bridge-nf-call-iptables=$(cat /proc/sys/net/bridge/bridge-nf-call-iptables) (0: iptables never sees pod-to-pod traffic)"
  fi
  if [ "${E2E_KEEP:-0}" = 1 ]; then
    log "E2E_KEEP=1: left in place: SegmentationPolicy $POLICY, namespaces ${CREATED[*]}"
  elif [ ${#CREATED[@]} -gt 0 ]; then
    step "Cleaning up (the policy first: its finalizer removes what it generated)"
    run k delete segpol "$POLICY" --ignore-not-found --timeout=90s
    run k delete namespace "${CREATED[@]}" --ignore-not-found --timeout=120s
  fi
  rm -rf "$WORK"
  if [ "$status" -eq 0 ] && [ "$FAILURES" -ne 0 ]; then status=1; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "0. The cluster this runs against"
run k get nodes -o wide
[ "$(k get nodes -o name | wc -l)" = 1 ] || die "expected exactly one node"
run k -n "$BULKHEAD_NS" rollout status deployment/bulkhead --timeout=120s
[ "$rc" -eq 0 ] || die "Bulkhead is not running"
k get validatingwebhookconfiguration "$RELEASE" >/dev/null || die "no ValidatingWebhookConfiguration $RELEASE"
run k get pods -n kube-system -l k8s-app=kube-dns -o wide  # what bulkhead-allow-dns selects
[ -n "$(k get pods -n kube-system -l k8s-app=kube-dns -o name)" ] || die "no kube-dns pods (k8s-app=kube-dns)"
if k get segpol "$POLICY" >/dev/null 2>&1; then run k delete segpol "$POLICY" --timeout=90s; fi
others=$(k get segpol -o name) || die "cannot list SegmentationPolicies (are Bulkhead's CRDs installed?)"
[ -z "$others" ] || die "other SegmentationPolicies exist and could select c: $others"
for ns in a b c d; do
  owner=$(k get namespace "$ns" -o jsonpath="{.metadata.labels.${OWNER//./\\.}}" 2>/dev/null) || continue
  [ "$owner" = connectivity ] || die "namespace $ns exists and is not this test's"
  run k delete namespace "$ns" --timeout=120s  # left by an earlier E2E_KEEP=1 run
done
api_ep=$(k get endpointslices -n default -l kubernetes.io/service-name=kubernetes \
  -o jsonpath='{.items[0].endpoints[0].addresses[0]}:{.items[0].ports[0].port}' || true)
NODE_IP=${NODE_IP:-${api_ep%:*}} NODE_APISERVER_PORT=${NODE_APISERVER_PORT:-${api_ep#*:}}
log "API server endpoint $NODE_IP:$NODE_APISERVER_PORT behind $KUBE_API_VIP; DNS $DNS_SERVICE_IP;" \
  "image $NODE_AGNHOST_IMAGE; probes $PROBE_TIMEOUT, $PROBE_JOBS at a time"

step "1. Namespaces a, b, c with two agnhost servers each (TCP 80, UDP 81)"
for ns in a b c; do
  run k create namespace "$ns"
  [ "$rc" -eq 0 ] || die "cannot create namespace $ns"
  CREATED+=("$ns")
  run k label namespace "$ns" "$OWNER=connectivity"
done
{
  for p in "${PODS[@]}"; do
    extra=''
    if [ "$p" = a/x ]; then extra=', api: "yes"'; fi
    pod_manifest "${p%/*}" "${p#*/}" "$(labels_of "${p#*/}")$extra" "" netexec --http-port=80 --udp-port=81
    echo ---
  done
  # Only for the DNS step: a name in c that resolves (to a ClusterIP); probes never use it.
  echo 'apiVersion: v1
kind: Service
metadata: {name: x, namespace: c}
spec: {selector: {app: "x"}, ports: [{name: http, port: 80, protocol: TCP}]}'
} >"$WORK/servers.yaml"
run k apply -f "$WORK/servers.yaml"
[ "$rc" -eq 0 ] || die "cannot create the servers"
for ns in a b c; do
  run k wait --for=condition=Ready pod --all -n "$ns" --timeout=120s
  [ "$rc" -eq 0 ] || { run k describe pods -n "$ns"; die "the servers in $ns are not Ready"; }
done
for p in "${PODS[@]}"; do IP[$p]=$(k get pod -n "${p%/*}" "${p#*/}" -o jsonpath='{.status.podIP}'); done
run k get pods -n a -o wide --show-labels
log "pod IPs: $(for p in "${PODS[@]}"; do printf '%s=%s ' "$p" "${IP[$p]}"; done)"

step "2-3. Before any policy: every pod reaches every pod"
ok=1
probe_matrix 80 tcp "$OPEN" || ok=0
probe_matrix 81 udp "$OPEN" || ok=0
[ "$ok" = 1 ] || die "the cluster's network is broken before Bulkhead does anything (see above)"
pass "all open, TCP and UDP"

step "4. A SegmentationPolicy selects a and b (Enforce, allowSameNamespace, allowDNS, allowKubeAPI api=yes)"
# mtls Unmanaged: the node has no Istio, and this test is about the NetworkPolicy data plane.
cat >"$WORK/policy.yaml" <<YAML
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: $POLICY}
spec:
  mode: Enforce
  namespaceSelector: {matchLabels: {$SELECT: "on"}}
  mtls: {mode: Unmanaged}
  network:
    defaultDeny: {ingress: true, egress: true}
    allowDNS: true
    allowSameNamespace: true
    allowKubeAPI: {podSelector: {matchLabels: {api: "yes"}}}
YAML
cat "$WORK/policy.yaml"
run k apply -f "$WORK/policy.yaml"
[ "$rc" -eq 0 ] || die "cannot create the policy"
DESC="the policy is Ready and selects nothing yet" check until_true 60 policy_settled 0 0
t_label=$(now_ms)
run k label namespace a b "$SELECT=on"
[ "$rc" -eq 0 ] || die "cannot label a and b"
log "labelled $(rel "$(now_ms)" "$t_label") after the label command started (t=0 below)"
watch_for "$WORK/np-a" 60 np_exists a bulkhead-default-deny
watch_for "$WORK/np-b" 60 np_exists b bulkhead-default-deny
wait_until_denied a/x "${IP[c/x]}:80" tcp "$t_label" 60 "labelled a -> its egress to c denied"
until_true 30 test -s "$WORK/np-a" || true
log "bulkhead-default-deny seen in a $(rel "$(read_ms "$WORK/np-a")" "$t_label"), in b $(rel "$(read_ms "$WORK/np-b")" "$t_label")"
TIMINGS+=("labelled a, b -> bulkhead-default-deny in a: $(rel "$(read_ms "$WORK/np-a")" "$t_label")")
for ns in a b; do
  for np in default-deny allow-dns allow-same-namespace allow-kube-api; do
    DESC="bulkhead-$np in $ns" check until_true 60 np_exists "$ns" "bulkhead-$np"
  done
done
run k get networkpolicies -A -l app.kubernetes.io/managed-by=bulkhead
DESC="nothing generated in c" check [ -z "$(k get networkpolicies -n c -o name)" ]
DESC="the policy is Ready, selects 2 namespaces, 2 segmented" check until_true 60 policy_settled 2 2
run k get segpol "$POLICY"
DESC="the webhook enforces the policy in a (a pod without app.kubernetes.io/name is refused)" \
  check until_true 30 webhook_enforces a
# The policies arrive one by one; wait for the last allow to be programmed before the matrix.
DESC="same-namespace traffic is allowed again (the data plane has the allow)" \
  check until_true 30 probe a/x "${IP[a/y]}:80" tcp
DESC="TCP/80 as expected" check probe_matrix 80 tcp "$SEGMENTED"
DESC="UDP/81 as expected" check probe_matrix 81 udp "$SEGMENTED"

step "5. DNS from a segmented pod goes to CoreDNS, through bulkhead-allow-dns"
run k exec -n a y -c agnhost -- "$AGNHOST" dns-server-list
DESC="the pod's resolver is $DNS_SERVICE_IP" check grep -qwF "$DNS_SERVICE_IP" <<<"$out"
# Names end in a dot: one query each, never expanded by the search path, never forwarded upstream.
api_name=kubernetes.default.svc.$CLUSTER_DOMAIN.
expect_probe . a/x "$api_name:443" tcp "a/x resolves $api_name and connects (DNS, then API egress)"
# A DNS failure would say "DNS: ..."; TIMEOUT or REFUSED means the name resolved.
for name in "x.c.svc.$CLUSTER_DOMAIN.:80" "$api_name:443"; do
  expect_probe X a/y "$name" tcp "a/y resolves ${name%:*}, and the connection is still blocked"
done
expect_probe '?' a/y "nosuch.c.svc.$CLUSTER_DOMAIN.:80" tcp "a name that does not exist fails in DNS"
DESC="...with CoreDNS's answer 'no such host' (not a timeout)" check grep -q 'no such host' <<<"$LAST_PROBE"

step "6. API server egress: only pods matching allowKubeAPI (api=yes)"
run k get networkpolicy bulkhead-allow-kube-api -n a -o jsonpath='{.spec}'
allows_endpoint() { grep -qF "\"cidr\":\"$NODE_IP/32\"" <<<"$out" && grep -qF "\"port\":$NODE_APISERVER_PORT" <<<"$out"; }
DESC="it allows $NODE_IP/32 port $NODE_APISERVER_PORT" check allows_endpoint
for dest in "$KUBE_API_VIP" "$NODE_IP:$NODE_APISERVER_PORT"; do
  expect_probe . c/y "$dest" tcp "c/y (never segmented) reaches $dest: the API server answers at all"
  expect_probe . a/x "$dest" tcp "a/x (api=yes) reaches $dest"
  expect_probe X a/y "$dest" tcp "a/y (no api label) does not reach $dest"
done

step "7. allowSameNamespace off; then a tenant's own policy opens exactly a/x -> a/y TCP 80"
t=$(now_ms)
run k patch segpol "$POLICY" --type merge -p '{"spec":{"network":{"allowSameNamespace":false}}}'
[ "$rc" -eq 0 ] || die "cannot patch the policy"
wait_until_denied a/x "${IP[a/y]}:80" tcp "$t" 60 "allowSameNamespace=false -> a/x to a/y denied"
for ns in a b; do
  DESC="bulkhead-allow-same-namespace removed from $ns" check until_true 60 np_gone "$ns" bulkhead-allow-same-namespace
done
cat >"$WORK/tenant.yaml" <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: x-to-y-egress, namespace: a}
spec:
  podSelector: {matchLabels: {app: "x"}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {app: "y"}}}], ports: [{port: 80, protocol: TCP}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: y-from-x-ingress, namespace: a}
spec:
  podSelector: {matchLabels: {app: "y"}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: "x"}}}], ports: [{port: 80, protocol: TCP}]}]
YAML
cat "$WORK/tenant.yaml"
run k apply -f "$WORK/tenant.yaml"
DESC="Bulkhead admits the tenant's same-namespace policies" check [ "$rc" -eq 0 ]
cat >"$WORK/escape.yaml" <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: y-from-anywhere, namespace: a}
spec:
  podSelector: {matchLabels: {app: "y"}}
  policyTypes: [Ingress]
  ingress: [{from: [{namespaceSelector: {}}], ports: [{port: 80, protocol: TCP}]}]
YAML
run k create --dry-run=server -f "$WORK/escape.yaml"
DESC="...and refuses one whose peers leave the namespace (namespaceSelector)" \
  check grep -q tenantPolicies <<<"$out"
t=$(now_ms)
DESC="a/x -> a/y TCP 80 opens" check until_true 30 probe a/x "${IP[a/y]}:80" tcp
TIMINGS+=("tenant policy applied -> a/x to a/y open: +$(since "$t") ms (poll)")
DESC="TCP/80 as expected" check probe_matrix 80 tcp "$TENANT_TCP"
DESC="UDP/81 as expected" check probe_matrix 81 udp "$TENANT_UDP"

step "8. Repair window: the default deny of b deleted behind Bulkhead's back"
# After step 7 nothing else in b selects pods for ingress (allow-dns and allow-kube-api are
# egress only), so without bulkhead-default-deny c -> b is open until the controller restores it.
# The webhook refuses the deletion (generatedObject), so it goes first, as the README says.
expect_probe X c/x "${IP[b/x]}:80" tcp "c/x -> b/x blocked before"
run k delete networkpolicy bulkhead-default-deny -n b
DESC="the webhook refuses to delete a generated object" check grep -q 'is generated by Bulkhead' <<<"$out"
before=$(np_uid b bulkhead-default-deny)
WEBHOOK_DELETED=1
run k delete validatingwebhookconfiguration "$RELEASE"
[ "$rc" -eq 0 ] || die "cannot delete the webhook configuration"
# The API server may call the webhook for a moment after its configuration is gone.
show "kubectl delete networkpolicy bulkhead-default-deny -n b   (retried for up to 30 s)"
until_true 30 k delete networkpolicy bulkhead-default-deny -n b || die "could not delete it"
t_del=$(now_ms)
restored() { local u; u=$(np_uid b bulkhead-default-deny); [ -n "$u" ] && [ "$u" != "$before" ]; }
watch_for "$WORK/restored" 60 restored
opened='' closed='' deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
  t=$(now_ms)
  if r=$(probe c/x "${IP[b/x]}:80" tcp); then
    if [ -z "$opened" ]; then opened=$t; log "c/x -> b/x connected (probe started $(rel "$t" "$t_del"))"; fi
  elif [ "$(mark "$r")" != X ]; then log "probe broke ($r); retrying"
  elif [ -n "$opened" ]; then closed=$t; break
  elif [ -s "$WORK/restored" ] && [ $((t - $(read_ms "$WORK/restored"))) -gt 5000 ]; then break
  fi
done
r_ms=$(read_ms "$WORK/restored")
log "deleted at t=0; Bulkhead recreated it $(rel "$r_ms" "$t_del"); c/x -> b/x first connected" \
  "$(rel "$opened" "$t_del"), blocked again $(rel "$closed" "$t_del")"
DESC="bulkhead-default-deny restored by Bulkhead" check [ -n "$r_ms" ]
if [ -z "$opened" ]; then
  pass "no open window observed: restored before the data plane opened (probes: ~1 s apart when blocked)"
  TIMINGS+=("repair: restored $(rel "$r_ms" "$t_del"); no open window observed")
elif [ -n "$closed" ]; then
  pass "open window: at most $((closed - t_del)) ms after the deletion (observed open $((closed - opened)) ms)"
  TIMINGS+=("repair: restored $(rel "$r_ms" "$t_del"); traffic open for at most $((closed - t_del)) ms")
else
  fail "c/x -> b/x was still open 60 s after the deletion"
fi
run k get events -n b --field-selector reason=Repaired -o custom-columns=REASON:.reason,MESSAGE:.message
restore_webhook
DESC="the webhook is back and enforcing in a" check until_true 60 webhook_enforces a

step "9. No open window: pods in namespace d while it is being segmented"
run k create namespace d
[ "$rc" -eq 0 ] || die "cannot create namespace d"
CREATED+=(d)
run k label namespace d "$OWNER=connectivity"
# Only once the webhook knows d (unselected: a pod is admitted) is its answer below about d.
d_known() { pod_manifest d canary "$(labels_of canary)" "" pause | k create --dry-run=server -f -; }
DESC="the webhook knows namespace d" check until_true 30 d_known
t_label=$(now_ms)
run k label namespace d "$SELECT=on"
watch_for "$WORK/np-d" 60 np_exists d bulkhead-default-deny
show "kubectl create -f - (pod d/hostnet, hostNetwork: true), right after the label"
rc=0; out=$(pod_manifest d hostnet "$(labels_of hostnet)" "hostNetwork: true" pause | k create -f - 2>&1) || rc=$?
log "answered $(rel "$(now_ms)" "$t_label"): $out"
refused() { [ "$rc" -ne 0 ] && grep -qE 'bulkhead:|PodSecurity' <<<"$out"; }
DESC="the hostNetwork pod is refused (Bulkhead, or Pod Security once Bulkhead set its label)" \
  check refused
show "kubectl create -f - (pod d/web, nothing wrong with it), retried until admitted (60 s)"
last='' admitted='' deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
  rc=0; out=$(pod_manifest d web "$(labels_of web)" "" pause | k create -f - 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then admitted=$(now_ms); break; fi
  if [ "$out" != "$last" ]; then log "refused $(rel "$(now_ms)" "$t_label"): $out"; last=$out; fi
  sleep 0.1
done
[ -n "$admitted" ] || die "the pod was never admitted in d"
segmented_at=$(np_uid d bulkhead-default-deny || true)
log "admitted $(rel "$admitted" "$t_label"); bulkhead-default-deny seen $(rel "$(read_ms "$WORK/np-d")" "$t_label")"
TIMINGS+=("d labelled -> ordinary pod admitted $(rel "$admitted" "$t_label"), default deny seen $(rel "$(read_ms "$WORK/np-d")" "$t_label")")
DESC="the pod was admitted only once d's default deny existed" check [ -n "$segmented_at" ]
pod_ct=$(k get pod web -n d -o jsonpath='{.metadata.creationTimestamp}' || true)
np_ct=$(k get networkpolicy bulkhead-default-deny -n d -o jsonpath='{.metadata.creationTimestamp}' || true)
DESC="pod created $pod_ct, not before the default deny ($np_ct)" check [ ! "$pod_ct" \< "$np_ct" ]

step "10. An AccessGrant opens b/x -> a/y TCP 80 once approved, and closes it at expiresAt"
run k patch segpol "$POLICY" --type merge -p '{"spec":{"exceptions":{"approverGroups":["security"]}}}'
[ "$rc" -eq 0 ] || die "cannot patch the policy"
grant_is() { [ "$(k get accessgrant b-to-a -n a -o jsonpath='{.status.phase}' 2>/dev/null)" = "$1" ]; }
expires=$(date -u -d '+90 seconds' +%Y-%m-%dT%H:%M:%SZ)
cat >"$WORK/grant.yaml" <<YAML
apiVersion: bulkhead.dev/v1alpha1
kind: AccessGrant
metadata: {name: b-to-a, namespace: a}
spec:
  from: {namespace: b, podSelector: {matchLabels: {app: "x"}}}
  to: {podSelector: {matchLabels: {app: "y"}}, ports: [{port: 80, protocol: TCP}]}
  expiresAt: "$expires"
  reason: "e2e: b/x needs a/y for a while"
  requestedBy: alice
YAML
cat "$WORK/grant.yaml"
run k create -f "$WORK/grant.yaml" --as=alice --as-group=system:masters
[ "$rc" -eq 0 ] || die "cannot create the grant"
DESC="the grant is Pending (the policy has approver groups)" check until_true 30 grant_is Pending
DESC="Pending: TCP/80 unchanged" check probe_matrix 80 tcp "$TENANT_TCP"
run k patch accessgrant b-to-a -n a --type merge -p '{"spec":{"approvedBy":"alice"}}' --as=alice --as-group=security --as-group=system:masters
DESC="the requester cannot approve it" check [ "$rc" -ne 0 ]
t=$(now_ms)
run k patch accessgrant b-to-a -n a --type merge -p '{"spec":{"approvedBy":"bob"}}' --as=bob --as-group=security --as-group=system:masters
[ "$rc" -eq 0 ] || die "bob cannot approve the grant"
DESC="b/x -> a/y TCP 80 opens" check until_true 30 probe b/x "${IP[a/y]}:80" tcp
TIMINGS+=("grant approved -> b/x to a/y open: +$(since "$t") ms (poll)")
run k get accessgrant b-to-a -n a -o wide
run k get networkpolicies -A -l bulkhead.dev/grant=b-to-a
DESC="Active: TCP/80 open only b/x -> a/y" check probe_matrix 80 tcp "$GRANT_TCP"
DESC="Active: UDP/81 unchanged (not granted)" check probe_matrix 81 udp "$TENANT_UDP"
expires_ms=$(($(date -d "$expires" +%s) * 1000))
log "expiresAt $expires: waiting for it"
while [ "$(now_ms)" -lt $((expires_ms - 1500)) ]; do sleep 0.5; done
wait_until_denied b/x "${IP[a/y]}:80" tcp "$expires_ms" 30 "expiresAt -> b/x to a/y denied"
DESC="the grant says Expired" check until_true 30 grant_is Expired
DESC="its NetworkPolicies are gone" check [ -z "$(k get networkpolicies -A -l bulkhead.dev/grant=b-to-a -o name)" ]
DESC="Expired: TCP/80 as before the grant" check probe_matrix 80 tcp "$TENANT_TCP"

step "Timings"
printf '  %s\n' "${TIMINGS[@]}"
if [ "$FAILURES" -eq 0 ]; then echo "connectivity: all checks passed"; else echo "connectivity: $FAILURES check(s) FAILED"; fi
