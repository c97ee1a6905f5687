#!/usr/bin/env bash
# Bulkhead's lifecycle in a real cluster (scripts/node.sh: kubelet, kube-proxy, CoreDNS), with the
# chart installed (helm install --wait) as release `bulkhead` in bulkhead-system from CHART_DIR,
# image localhost/bulkhead:node, after tests/e2e/suite.sh. In order: both replicas Ready; one holds
# the Lease; the webhook is called through its Service; the pods make the certificates and rotate
# them without a failed admission; deleting the leader pod hands over without a failed admission;
# `helm uninstall` does what README.md says. Prints each step and command, bounds every wait and
# exits non-zero if any check failed. It ends with the chart uninstalled.
#
#   tests/node/lifecycle.sh CHART_DIR     (KUBECONFIG: a cluster admin)
# shellcheck disable=SC2015  # `check && pass || fail`: pass always succeeds
set -euo pipefail
chart=${1:?usage: lifecycle.sh CHART_DIR}
release=bulkhead rns=bulkhead-system deploy=bulkhead  # the full name is the release's: it holds the chart's
image=${NODE_BULKHEAD_IMAGE:-localhost/bulkhead:node}
ns=lifecycle-probe policy=lifecycle-probe  # made here, removed at the end
tmp=$(mktemp -d)

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"  # step, show, pass, fail (counting FAILURES), run, until_true
load_pid='' finished=''
note() { printf '     %s\n' "$*"; }
kubectl() { command kubectl --request-timeout=30s "$@"; }  # every API call is bounded
since_t0() { awk -v ms=$(($(now_ms) - t0)) 'BEGIN { printf "%.1f s", ms / 1000 }'; }

# --- the release: pods, Lease, certificates ---------------------------------------------------
pods_table() {  # NAME|DELETION-TIMESTAMP|READY|IP, a line per pod
  kubectl -n "$rns" get pods -l "app.kubernetes.io/instance=$release,app.kubernetes.io/component=controller" -o \
    jsonpath='{range .items[*]}{.metadata.name}|{.metadata.deletionTimestamp}|{.status.conditions[?(@.type=="Ready")].status}|{.status.podIP}{"\n"}{end}' 2>/dev/null || true
}
live_pods() { pods_table | awk -F'|' '$2 == "" { print $1 }'; }
ready_pods() { pods_table | awk -F'|' '$2 == "" && $3 == "True" { print $1 }'; }
deploy_ready() {  # the Deployment has all its replicas ready, and there are no more live pods
  [ "$(kubectl -n "$rns" get deployment "$deploy" -o jsonpath='{.spec.replicas}/{.status.readyReplicas}/{.status.availableReplicas}')" = "$replicas/$replicas/$replicas" ] &&
    [ "$(live_pods | wc -l)" -eq "$replicas" ] && [ "$(ready_pods | wc -l)" -eq "$replicas" ]
}
endpoints_ready() {  # each of the $replicas live pods is a ready endpoint of the webhook's Service
  local eps ips ip
  eps=$(kubectl -n "$rns" get endpointslices -l "kubernetes.io/service-name=$deploy" \
    -o jsonpath='{range .items[*].endpoints[*]}{.addresses[0]}={.conditions.ready}{"\n"}{end}')
  ips=$(pods_table | awk -F'|' '$2 == "" && $4 != "" { print $4 }')
  [ "$(grep -c . <<<"$ips")" -eq "$replicas" ] || return 1
  for ip in $ips; do grep -qx "$ip=true" <<<"$eps" || return 1; done
}
arg() {  # arg FLAG DEFAULT: the Deployment's last --FLAG=value (extraArgs come last and win)
  local v
  v=$(kubectl -n "$rns" get deployment "$deploy" -o jsonpath='{range .spec.template.spec.containers[0].args[*]}{@}{"\n"}{end}' |
    sed -n "s/^--$1=//p" | tail -1 || true)
  echo "${v:-$2}"
}
lease=$(arg leader-election-id bulkhead) lease_ns=$(arg leader-election-namespace "$rns")
secret=$(arg webhook-cert-secret bulkhead-webhook-tls) vwc=$(arg webhook-configuration bulkhead)
holder() { kubectl -n "$lease_ns" get lease "$lease" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true; }
# The pod holding the Lease. Bulkhead's identity is "<hostname>_<8 hex digits>" (cmd/main.cc,
# defaultIdentity; the chart sets no --leader-election-identity); a pod's hostname is its name.
holder_pod() {
  local h p
  h=$(holder)
  for p in $(pods_table | cut -d'|' -f1); do
    if [ -n "$h" ] && { [ "$h" = "$p" ] || [ "${h%_*}" = "$p" ]; }; then echo "$p"; fi
  done
}
has_leader() { [ -n "$(holder_pod)" ]; }
restarts() { kubectl -n "$rns" get pods -l "app.kubernetes.io/instance=$release" -o jsonpath='{.items[*].status.containerStatuses[*].restartCount}' || true; }
squash() { tr -d ' \r\n'; }  # PEM compared without its line breaks
sec_get() { kubectl -n "$rns" get secret "$secret" -o "jsonpath={.data.${1//./\\.}}" 2>/dev/null | base64 -d 2>/dev/null || true; }
vwc_bundle() { kubectl get validatingwebhookconfiguration "$vwc" -o jsonpath='{.webhooks[0].clientConfig.caBundle}' 2>/dev/null | base64 -d 2>/dev/null || true; }
certs() {  # what the Secret holds, for the reader
  for k in ca.crt tls.crt; do note "$k: $(sec_get $k | openssl x509 -noout -subject -serial -enddate 2>&1 | paste -sd' ' -)"; done
}
age() { if [ -z "$1" ]; then echo none; elif [ "$1" = "$2" ]; then echo old; else echo new; fi; }
holds() { if [ -n "$1" ] && [[ "$2" == *"$1"* ]]; then echo yes; else echo no; fi; }  # holds CERT BUNDLE
cert_state() {  # the Secret and the caBundle, against what they held before the rotation
  kubectl -n "$rns" get secret "$secret" >/dev/null 2>&1 || { echo "Secret absent"; return 0; }
  local ca tls b
  ca=$(sec_get ca.crt | squash) tls=$(sec_get tls.crt | squash) b=$(vwc_bundle | squash)
  echo "Secret: CA $(age "$ca" "$old_ca"), serving $(age "$tls" "$old_tls"); caBundle: old CA $(holds "$old_ca" "$b"), Secret's CA $(holds "$ca" "$b")"
}
rotated() { [[ "$(cert_state)" == "Secret: CA new, serving new; caBundle: "*"Secret's CA yes" ]]; }
loaded() {  # loaded POD: it logged serving a pair from the Secret since $since
  kubectl -n "$rns" logs "$1" --since-time="$since" >"$tmp/log" && grep -q 'webhook certificate updated from its Secret' "$tmp/log"
}

# --- admission requests -------------------------------------------------------------------------
pod() {  # pod NAME EXTRA_SPEC: a pod in $ns, as tests/e2e/suite.sh makes them
  printf '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"%s","namespace":"%s","labels":{"app.kubernetes.io/name":"web"}},"spec":{%s"containers":[{"name":"web","image":"nginx"}]}}' "$1" "$ns" "$2"
}
# request plain|hostnet: a server dry-run create in $ns. Prints the outcome (admitted; refused:
# by Bulkhead's forbidHostNetwork; error: anything else, such as "failed calling webhook"), a tab,
# and the message.
request() {
  local extra='' o outcome=error
  if [ "$1" = hostnet ]; then extra='"hostNetwork":true,'; fi
  if o=$(pod "probe-$1" "$extra" | timeout 30 kubectl --request-timeout=20s create --dry-run=server -f - 2>&1); then
    outcome=admitted
  elif grep -q 'violates forbidHostNetwork' <<<"$o"; then
    outcome=refused
  fi
  printf '%s\t%s\n' "$outcome" "$(tr '\n' ' ' <<<"$o" | cut -c1-300)"
}
outcome_is() { [ "$(request "$1" | cut -f1)" = "$2" ]; }
shown_request() {  # shown_request KIND: shows it, prints the message; the outcome in $outcome
  show "pod probe-$1 in $ns$([ "$1" = hostnet ] && echo ' with hostNetwork') | kubectl create --dry-run=server -f -"
  r=$(request "$1")
  outcome=${r%%$'\t'*}
  note "${r#*$'\t'}"
}
start_load() {  # start_load LABEL SECONDS: alternating requests in the background, a line each in $tmp/LABEL
  rm -f "$tmp/stop"
  show "(in the background: plain and hostNetwork pods in turn, dry-run, until stopped; at most ${2}s and 400)"
  (
    i=0 end=$(($(date +%s) + $2))
    while [ ! -e "$tmp/stop" ] && [ "$(date +%s)" -lt $end ] && [ $i -lt 400 ]; do
      i=$((i + 1)) kind=plain
      if [ $((i % 2)) -eq 0 ]; then kind=hostnet; fi
      printf '%s %s %s\n' "$(now_ms)" "$kind" "$(request "$kind")" >>"$tmp/$1"
    done
  ) &
  load_pid=$!
}
stop_load() {  # stop_load LABEL: stops the loop, prints the counts, fails on any unexpected outcome
  local file=$tmp/$1 deadline=$((SECONDS + 40)) bad
  touch "$tmp/stop" "$file"
  while kill -0 "$load_pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  kill "$load_pid" 2>/dev/null || true
  wait "$load_pid" 2>/dev/null || true
  load_pid=''
  note "$(wc -l <"$file") requests, from $(awk -v t0="$t0" 'NR == 1 { printf "%+.1f s", ($1 - t0) / 1000 }' "$file") to $(awk -v t0="$t0" 'END { printf "%+.1f s", ($1 - t0) / 1000 }' "$file") of the trigger; by kind and outcome:"
  awk '{ print $2, $3 }' "$file" | sort | uniq -c | sed 's/^/     /'
  bad=$(awk -v t0="$t0" '($2 == "plain" && $3 != "admitted") || ($2 == "hostnet" && $3 != "refused") {
    $1 = sprintf("%+.1fs", ($1 - t0) / 1000); print }' "$file")
  if [ ! -s "$file" ]; then
    fail "$1: no request was made"
  elif [ -z "$bad" ]; then
    pass "$1: every plain pod admitted, every hostNetwork pod refused by Bulkhead"
  else
    fail "$1: $(grep -c . <<<"$bad") request(s) with another outcome (time from the trigger):"
    head -20 <<<"$bad"
  fi
}

# --- the probe namespace and policy ------------------------------------------------------------
policy_ready() { [ "$(kubectl get segpol "$policy" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
psa_label() { kubectl get namespace "$ns" -o jsonpath='{.metadata.labels.pod-security\.kubernetes\.io/enforce}' || true; }
psa_privileged() { [ "$(psa_label)" = privileged ]; }
generated() {  # what Bulkhead generated in $ns (Istio's kinds too when served), sorted
  local kinds=networkpolicies
  kinds+=$(kubectl api-resources --api-group=security.istio.io -o name 2>/dev/null | grep -E '^(peer|authorization)' | sed 's/^/,/' | tr -d '\n' || true)
  kubectl get "$kinds" -n "$ns" -l app.kubernetes.io/managed-by=bulkhead -o name 2>/dev/null | sort || true
}
policy_gone() { ! kubectl get segpol "$policy" >/dev/null 2>&1; }
ns_gone() { ! kubectl get namespace "$ns" >/dev/null 2>&1; }
cleanup_probe() {  # idempotent; also run on an early exit
  if ! policy_gone && kubectl -n "$rns" get deployment "$deploy" >/dev/null 2>&1; then
    run kubectl delete segpol "$policy" --wait=false  # Bulkhead runs the policy's finalizer
    until_true 90 policy_gone || true
  fi
  if ! policy_gone; then
    note "no Bulkhead to run the policy's finalizer (bulkhead.dev/cleanup): removing it by hand"
    run kubectl patch segpol "$policy" --type=merge -p '{"metadata":{"finalizers":null}}'
    run kubectl delete segpol "$policy" --ignore-not-found --wait=false
    until_true 30 policy_gone || fail "SegmentationPolicy $policy is still there"
  fi
  if ! ns_gone; then
    run kubectl delete namespace "$ns" --wait=false
    until_true 120 ns_gone || fail "namespace $ns is still there"
  fi
}
on_exit() {
  local code=$?
  set +e
  if [ -n "$load_pid" ]; then touch "$tmp/stop"; kill "$load_pid" 2>/dev/null; fi
  [ -n "$finished" ] || { echo "node lifecycle: stopped early (exit $code); removing the probe"; cleanup_probe; }
  rm -rf "$tmp"
  exit "$code"
}
trap on_exit EXIT

step "1. Both replicas of deployment/$deploy are Ready"
run kubectl -n "$rns" get deployment "$deploy" -o 'jsonpath={.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].imagePullPolicy}'
[ "$out" = "$image Never" ] && pass "image $image, pullPolicy Never" || fail "the Deployment runs '$out', not '$image Never'"
replicas=$(kubectl -n "$rns" get deployment "$deploy" -o jsonpath='{.spec.replicas}' || true)
[ "$replicas" = 2 ] && pass "2 replicas" || fail "replicas is '$replicas', not 2"
until_true 120 deploy_ready && pass "both are Ready: $(ready_pods | paste -sd' ' -)" || fail "not every replica is Ready"
run kubectl -n "$rns" get pods -o wide
note "from the Deployment's args: Lease $lease_ns/$lease, Secret $secret, webhook configuration $vwc"

step "2. One replica holds the Lease $lease_ns/$lease"
until_true 60 has_leader || true
run kubectl -n "$lease_ns" get lease "$lease" -o 'custom-columns=HOLDER:.spec.holderIdentity,DURATION:.spec.leaseDurationSeconds,RENEWED:.spec.renewTime,TRANSITIONS:.spec.leaseTransitions'
leader=$(holder_pod)
[ -n "$leader" ] && grep -qx "$leader" <<<"$(ready_pods)" &&
  pass "the holder '$(holder)' is pod $leader (identity: hostname _ random)" ||
  fail "the holder '$(holder)' is none of the Ready pods"

step "3. The webhook is called through its Service, and answers"
run kubectl get validatingwebhookconfiguration "$vwc" -o 'jsonpath={range .webhooks[*]}{.name}: service={.clientConfig.service.namespace}/{.clientConfig.service.name}:{.clientConfig.service.port}{.clientConfig.service.path} url={.clientConfig.url} failurePolicy={.failurePolicy}{"\n"}{end}'
grep -q "service=$rns/$deploy:443/validate url= " <<<"$out" && ! grep -q 'url=[^ ]' <<<"$out" &&
  pass "clientConfig.service is $rns/$deploy:443/validate, no url" || fail "the webhook is not called through Service $rns/$deploy"
[ -n "$(vwc_bundle)" ] && pass "it has a caBundle ($(vwc_bundle | grep -c 'BEGIN CERTIFICATE') certificate(s))" || fail "no caBundle"
run kubectl -n "$rns" get endpointslices -l "kubernetes.io/service-name=$deploy" -o 'jsonpath={range .items[*].endpoints[*]}{.addresses[0]} ready={.conditions.ready} {.targetRef.name}{"\n"}{end}'
until_true 60 endpoints_ready && pass "both pods are ready endpoints of Service $deploy" || fail "the Service's endpoints are not both pods"
show "kubectl apply -f - (namespace $ns labelled bulkhead-lifecycle=on; SegmentationPolicy $policy selects it)"
kubectl apply -f - <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: $ns, labels: {bulkhead-lifecycle: "on"}}
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: $policy}
spec:
  namespaceSelector: {matchLabels: {bulkhead-lifecycle: "on"}}
  # Pod Security's baseline level would refuse a hostNetwork pod before Bulkhead is asked.
  podSecurity: {enforce: privileged}
YAML
until_true 60 policy_ready && until_true 60 kubectl get networkpolicy bulkhead-default-deny -n "$ns" &&
  until_true 30 psa_privileged && pass "$policy is Ready; $ns has its default-deny and Pod Security privileged" ||
  fail "$policy did not segment $ns"
until_true 60 outcome_is hostnet refused || true  # once both replicas have cached the namespace
until_true 30 outcome_is plain admitted || true
shown_request hostnet
[ "$outcome" = refused ] && grep -q "violates forbidHostNetwork (spec.hostNetwork=true) of SegmentationPolicy \"$policy\"" <<<"$r" &&
  pass "refused by Bulkhead, with its message" || fail "the hostNetwork pod was not refused by Bulkhead"
shown_request plain
[ "$outcome" = admitted ] && pass "the compliant pod is admitted" || fail "the compliant pod was not admitted"

step "4. The certificates are made by the pods, and rotated by them"
run kubectl -n "$rns" get secret "$secret" -o 'custom-columns=NAME:.metadata.name,TYPE:.type,MANAGED-BY:.metadata.labels.app\.kubernetes\.io/managed-by,HELM-RELEASE:.metadata.annotations.meta\.helm\.sh/release-name'
grep -q "^$secret *kubernetes.io/tls *bulkhead *<none>" <<<"$out" &&
  pass "Secret $secret exists, made by Bulkhead, not by Helm" || fail "Secret $secret is missing or not Bulkhead's"
for key in tls.crt tls.key ca.crt ca-bundle.crt; do [ -n "$(sec_get $key)" ] || fail "the Secret has no $key"; done
certs
bundle=$(vwc_bundle | squash) old_ca=$(sec_get ca.crt | squash) old_tls=$(sec_get tls.crt | squash)
[ -n "$bundle" ] && [ "$bundle" = "$(sec_get ca-bundle.crt | squash)" ] && [[ "$bundle" == *"$old_ca"* ]] &&
  pass "the caBundle is the Secret's ca-bundle.crt and holds its ca.crt" || fail "the caBundle does not match the Secret"
note "Rotation, as webhooks/webhook_certificates.cc does it when the Secret is gone: the leader stages"
note "a new CA next to the trusted ones, publishes both in caBundle, waits 30 s, issues a serving pair."
restarts_before=$(restarts)
start_load rotation 240
sleep 3
since=$(date -u +%Y-%m-%dT%H:%M:%SZ) t0=$(now_ms)
run kubectl -n "$rns" delete secret "$secret"
last='' state='' deadline=$((SECONDS + 180))
while [ $SECONDS -lt $deadline ]; do  # prints each state it sees
  state=$(cert_state)
  if [ "$state" != "$last" ]; then note "+$(since_t0)  $state"; last=$state; fi
  if [[ "$state" == "Secret: CA new, serving new; caBundle: "*"Secret's CA yes" ]]; then break; fi
  sleep 0.5
done
rotated && pass "new CA and serving certificate, trusted by the caBundle, $(since_t0) after the deletion" ||
  fail "no complete rotation within 180 s (last: $state)"
certs
[ "$(vwc_bundle | squash)" = "$(sec_get ca-bundle.crt | squash)" ] && pass "caBundle = the Secret's ca-bundle.crt" ||
  fail "the caBundle differs from the Secret's ca-bundle.crt"
[[ "$(vwc_bundle | squash)" == *"$old_ca"* ]] && pass "the old CA stays in caBundle until it expires (README)" ||
  fail "the old CA left caBundle before expiring"
openssl verify -CAfile <(sec_get ca.crt) <(sec_get tls.crt) >/dev/null 2>&1 &&
  pass "the new serving certificate is signed by the new CA (openssl verify)" || fail "it does not verify against the new CA"
for p in $(live_pods); do
  until_true 60 loaded "$p" && pass "$p serves the new pair (log: webhook certificate updated from its Secret)" ||
    fail "$p did not load the new pair"
done
[ "$(restarts)" = "$restarts_before" ] && pass "no container restarted" || fail "containers restarted during the rotation"
until_true 30 outcome_is hostnet refused && pass "a hostNetwork pod is still refused by Bulkhead, not by a TLS error" ||
  fail "admission fails after the rotation: $(request hostnet)"
sleep 3
stop_load rotation

step "5. Deleting the leader pod hands over, without a failed admission"
run kubectl -n "$rns" get pdb "$deploy" -o 'custom-columns=NAME:.metadata.name,MIN-AVAILABLE:.spec.minAvailable,HEALTHY:.status.currentHealthy,ALLOWED-DISRUPTIONS:.status.disruptionsAllowed'
grep -q "^$deploy *1 " <<<"$out" && pass "PodDisruptionBudget $deploy: minAvailable 1" || fail "no PodDisruptionBudget with minAvailable 1"
until_true 60 deploy_ready || true
old=$(holder_pod)
if [ -z "$old" ]; then
  fail "no pod holds the Lease: nothing to hand over"
else
  other=$(grep -vx "$old" <<<"$(live_pods)" | paste -sd' ' - || true)
  note "leader $old, other replica $other; kubectl delete sends SIGTERM, grace period 30 s"
  start_load handover 180
  sleep 3
  t0=$(now_ms) released='' new='' deadline=$((SECONDS + 60))
  run kubectl -n "$rns" delete pod "$old" --wait=false  # graceful as ever; we wait below
  while [ $SECONDS -lt $deadline ]; do
    if [ -z "$(holder)" ] && [ -z "$released" ]; then released=$(since_t0); fi
    new=$(holder_pod)
    if [ -n "$new" ] && [ "$new" != "$old" ]; then break; fi
    sleep 0.2
  done
  handover=$(since_t0)
  if [ -n "$released" ]; then note "the Lease was seen released (no holder) $released after the deletion"; fi
  if [ -z "$new" ] || [ "$new" = "$old" ]; then
    fail "the Lease did not leave $old within 60 s (holder: '$(holder)')"
  elif [ "$new" = "$other" ]; then
    pass "handover: the other replica $new holds the Lease $handover after the deletion"
  else
    pass "handover: the replacement pod $new holds the Lease $handover after the deletion (before $other)"
  fi
  pod_gone() { ! kubectl -n "$rns" get pod "$old" >/dev/null 2>&1; }
  until_true 60 pod_gone && pass "$old is gone, $(since_t0) after the deletion" || fail "$old is still there"
  until_true 180 deploy_ready && until_true 60 endpoints_ready &&
    pass "fully Ready again, both pods behind the Service, $(since_t0) after the deletion" ||
    fail "the Deployment is not Ready again"
  sleep 5
  stop_load handover
fi
run kubectl -n "$rns" get pods -o wide
run kubectl -n "$lease_ns" get lease "$lease" -o 'custom-columns=HOLDER:.spec.holderIdentity,TRANSITIONS:.spec.leaseTransitions'

step "6. helm uninstall, as README.md's Uninstall section says"
show "helm get manifest $release -n $rns | kubectl get -f - -o name   # what Helm made"
helm get manifest "$release" -n "$rns" >"$tmp/manifest.yaml" || fail "helm get manifest failed"
generated_before=$(generated)
kubectl get -f "$tmp/manifest.yaml" -o name >"$tmp/objects" || fail "cannot list the release's objects"
sed 's/^/     /' "$tmp/objects"
run helm uninstall "$release" -n "$rns" --wait --timeout 180s
[ $rc -eq 0 ] && pass "helm uninstall succeeded" || fail "helm uninstall failed"
# The OpenReports CRD the chart installs on request is marked helm.sh/resource-policy: keep:
# other tools' Reports may use it.
report_crd=customresourcedefinition.apiextensions.k8s.io/reports.openreports.io
left=$(kubectl get -f "$tmp/manifest.yaml" --ignore-not-found -o name 2>&1 | grep -vx "$report_crd" || true)
[ -z "$left" ] && pass "the objects Helm installed are gone: Deployment, Service, PDB, RBAC, webhook configuration" ||
  fail "left behind: $(paste -sd' ' - <<<"$left")"
if grep -qx "$report_crd" "$tmp/objects"; then
  kubectl get "$report_crd" >/dev/null 2>&1 && pass "the OpenReports CRD stays (resource-policy keep)" ||
    fail "the OpenReports CRD is gone"
fi
no_pods() { [ -z "$(pods_table)" ]; }
until_true 90 no_pods && pass "the pods are gone" || fail "pods are still there: $(pods_table | paste -sd' ' -)"
until_true 30 outcome_is hostnet admitted || true  # the API server drops the webhook within moments
shown_request hostnet
[ "$outcome" = admitted ] && pass "admitted in $ns, still selected by $policy: nothing is checked at admission" ||
  fail "a hostNetwork pod is still not admitted"
show "kubectl get networkpolicies,peerauthentications,authorizationpolicies -n $ns -l app.kubernetes.io/managed-by=bulkhead -o name"
generated | sed 's/^/     /'
[ -n "$generated_before" ] && [ "$(generated)" = "$generated_before" ] && grep -q bulkhead-default-deny <<<"$generated_before" &&
  pass "what Bulkhead generated in $ns stays: uninstalling never opens the network" ||
  fail "the generated objects changed: before: $(paste -sd' ' - <<<"$generated_before")"
psa_privileged && pass "the Pod Security labels stay" || fail "the Pod Security label is '$(psa_label)'"
for f in "$chart"/crds/*.yaml; do
  run kubectl get -f "$f" -o name
  [ $rc -eq 0 ] && pass "CRD kept (Helm never deletes CRDs)" || fail "the CRD of $(basename "$f") is gone"
done
for obj in "segpol $policy" "secret $secret -n $rns" "lease $lease -n $lease_ns"; do
  # shellcheck disable=SC2086  # words on purpose
  kubectl get $obj >/dev/null 2>&1 && pass "kept: $obj" || fail "gone: $obj"
done
note "README.md says nothing more; what is left in $rns (the Lease's holder, for one):"
run kubectl -n "$rns" get all,secrets,leases,configmaps,serviceaccounts -o wide

step "Cleaning up the probe policy and namespace"
cleanup_probe
note "left, as README.md says: the CRDs, Secret $rns/$secret and Lease $lease_ns/$lease"
finished=1

echo
if [ $FAILURES -eq 0 ]; then
  echo "node lifecycle: all checks passed"
else
  echo "node lifecycle: $FAILURES check(s) FAILED"
  exit 1
fi
