#!/usr/bin/env bash
# Bulkhead end to end, against whatever cluster kubectl points at, with the chart installed as
# release `bulkhead` in bulkhead-system and its webhook serving. One suite, two targets:
# scripts/demo.sh runs it on the local control plane (bulkhead on loopback), scripts/e2e-kind.sh
# in a kind cluster (bulkhead in its pods). Prints each step and command so a person can follow,
# checks every outcome, and exits non-zero if any check failed.
#
#   tests/e2e/suite.sh CHART_DIR       (E2E_KEEP=1 leaves what it created in place)
set -euo pipefail
chart=${1:?usage: suite.sh CHART_DIR}

failures=0
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; }
pass() { printf '\033[32mok\033[0m   %s\n' "$*"; }
fail() { printf '\033[31mFAIL\033[0m %s\n' "$*"; failures=$((failures + 1)); }
# run CMD...: shows it, runs it, keeps its output in $out and exit code in $rc.
run() {
  show "$*"
  set +e
  out=$("$@" 2>&1)
  rc=$?
  set -e
  [ -n "$out" ] && printf '%s\n' "$out"
  return 0
}
# until_true SECONDS CMD...: true once CMD succeeds within SECONDS.
until_true() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.3
  done
}
pod() {  # pod NAME NAMESPACE EXTRA_SPEC [APP]
  printf '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"%s","namespace":"%s","labels":{"app.kubernetes.io/name":"%s"}},"spec":{%s"containers":[{"name":"web","image":"nginx"}]}}' \
    "$1" "$2" "${4:-web}" "$3"
}
create_pod() { pod "$@" | kubectl create -f -; }
dry_run_pod() { pod "$@" | kubectl create --dry-run=server -f -; }
# Denied by Bulkhead for the host network (not merely failing, e.g. on an untrusted certificate).
denied_pod() {
  local o
  o=$(dry_run_pod "$@" 2>&1) && return 1
  grep -q 'violates forbidHostNetwork' <<<"$o"
}
ready() {
  [ "$(kubectl get segpol "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
# Each is re-run by until_true, so they read the cluster afresh every time.
segex_phase_is() {
  [ "$(kubectl get segex node-agent -n shop -o jsonpath='{.status.phase}')" = "$1" ]
}
nothing_generated_in() {
  [ -z "$(kubectl get networkpolicies,peerauthentications -n "$1" -l app.kubernetes.io/managed-by=bulkhead -o name)" ]
}

step "Namespaces and three SegmentationPolicies: baseline (Enforce), lenient (Warn), hardened"
for ns in shop payments lab blog; do
  kubectl get namespace "$ns" >/dev/null 2>&1 || run kubectl create namespace "$ns"
done
run kubectl label --overwrite namespace shop zero-trust=on
run kubectl label --overwrite namespace payments zero-trust=strict
run kubectl label --overwrite namespace lab zero-trust=warn
show "kubectl apply -f - (policies)"
kubectl apply -f - <<'YAML'
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: baseline}
spec:
  namespaceSelector: {matchLabels: {zero-trust: "on"}}
  # shop runs a node agent on the host network (below). Pod Security's baseline level would have
  # the API server refuse it before Bulkhead is asked, whatever exception Bulkhead grants.
  podSecurity: {enforce: privileged}
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: lenient}
spec:
  mode: Warn
  namespaceSelector: {matchLabels: {zero-trust: "warn"}}
  # Warn softens Bulkhead's own rules only; nothing is refused here while migrating.
  podSecurity: {enforce: privileged}
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: hardened}
spec:
  namespaceSelector: {matchLabels: {zero-trust: "strict"}}
  # podSecurity defaults to {enforce: baseline, version: latest}
YAML
for p in baseline lenient hardened; do
  until_true 60 ready $p && pass "policy $p is Ready" || fail "policy $p is not Ready"
done

step "What Bulkhead generated (nothing in blog, which no policy selects)"
run kubectl get segpol
run kubectl get networkpolicies,peerauthentications -A -l app.kubernetes.io/managed-by=bulkhead
for ns in shop payments lab; do
  kubectl get networkpolicy bulkhead-default-deny -n "$ns" >/dev/null 2>&1 &&
    pass "default-deny in $ns" || fail "no default-deny in $ns"
done
[ -z "$(kubectl get networkpolicies -n blog -o name)" ] && pass "nothing in blog" ||
  fail "objects were generated in blog"
run kubectl get networkpolicy bulkhead-default-deny -n shop -o 'jsonpath={.spec}{"\n"}'

step "A pod on the host network would bypass every NetworkPolicy: rejected"
# The API server picks up a new webhook configuration (and its caBundle) within moments.
until_true 60 denied_pod probe shop '"hostNetwork":true,' || true
run create_pod web-1 shop '"hostNetwork":true,'
if [ $rc -ne 0 ] && grep -q 'violates forbidHostNetwork (spec.hostNetwork=true)' <<<"$out"; then
  pass "rejected, with the rule, the field, the policy and the fix"
else
  fail "a hostNetwork pod in shop was not rejected as expected"
fi
run create_pod web-1 shop ''
[ $rc -eq 0 ] && pass "the same pod without hostNetwork is admitted" || fail "a clean pod was refused"

step "In a Warn namespace the same pod is admitted, with a warning kubectl prints"
run create_pod tool-1 lab '"hostNetwork":true,'
if [ $rc -eq 0 ] && grep -q '^Warning: bulkhead: pod "tool-1" in namespace "lab" violates forbidHostNetwork' <<<"$out"; then
  pass "admitted with an admission warning"
else
  fail "no Warn-mode warning"
fi

step "Before enforcing: the background scan finds what Enforce would refuse, and follows fixes"
# lab is in Warn mode: tool-1 is running on the host network. The leader judges existing pods
# and workloads too, counts them on the policy's status and, where the OpenReports CRD is
# installed, lists them in a Report per namespace.
violating_pods_are() {
  [ "$(kubectl get segpol lenient -o jsonpath='{.status.violatingPods}')" = "$1" ]
}
report_warnings_are() {  # a Warn policy's findings are warnings
  [ "$(kubectl get reports.openreports.io bulkhead -n lab -o jsonpath='{.summary.warn}')" = "$1" ]
}
until_true 30 violating_pods_are 1 && pass "SegmentationPolicy lenient: violatingPods 1" ||
  fail "the status does not count tool-1"
run kubectl get segpol lenient -o wide
if kubectl get crd reports.openreports.io >/dev/null 2>&1; then
  until_true 30 report_warnings_are 1 && pass "the Report in lab lists tool-1" ||
    fail "no Report lists tool-1"
  run kubectl get reports.openreports.io -n lab
  run kubectl get reports.openreports.io bulkhead -n lab \
    -o jsonpath='{range .results[*]}{.resources[0].kind}/{.resources[0].name} {.rule}: {.message}{"\n"}{end}'
else
  echo "(the OpenReports CRD is not installed here: the counts only)"
fi
run kubectl delete pod tool-1 -n lab --wait=false
until_true 30 violating_pods_are 0 && pass "fixed: violatingPods 0" ||
  fail "the count did not reach zero after the fix"
if kubectl get crd reports.openreports.io >/dev/null 2>&1; then
  until_true 30 report_warnings_are 0 && pass "fixed: the Report lists nothing" ||
    fail "the Report still lists tool-1"
fi

step "Pod Security composed in: the API server's own admission enforces each policy's level"
# pod_volume NAME NAMESPACE: a pod that mounts a directory of the node (Bulkhead has no rule on it).
pod_volume() {
  pod "$1" "$2" '"volumes":[{"name":"data","hostPath":{"path":"/var/lib/data"}}],'
}
psa_label() {
  kubectl get namespace "$1" -o jsonpath='{.metadata.labels.pod-security\.kubernetes\.io/enforce}'
}
psa_label_is() { [ "$(psa_label "$1")" = "$2" ]; }
refused_by_pod_security() {
  local o
  o=$(pod_volume probe payments | kubectl create --dry-run=server -f - 2>&1) && return 1
  grep -q 'violates PodSecurity "baseline:latest"' <<<"$o"
}
until_true 30 psa_label_is payments baseline && until_true 30 psa_label_is shop privileged &&
  pass "Bulkhead labelled payments baseline and shop privileged" ||
  fail "the Pod Security labels are not what the policies say"
run kubectl get namespaces shop payments lab blog -L pod-security.kubernetes.io/enforce,pod-security.kubernetes.io/enforce-version
# PodSecurity admission reads namespace labels from a cache of its own: a moment after the label.
until_true 30 refused_by_pod_security || true
show "pod web-2 in payments with a hostPath volume | kubectl create -f -"
set +e; out=$(pod_volume web-2 payments | kubectl create -f - 2>&1); rc=$?; set -e
printf '%s\n' "$out"
if [ $rc -ne 0 ] && grep -q 'violates PodSecurity "baseline:latest": hostPath volumes (volume "data")' <<<"$out"; then
  pass "a hostPath volume in payments: refused by the API server's PodSecurity (baseline)"
else
  fail "a hostPath pod in payments was not refused by Pod Security"
fi
run create_pod web-3 payments '"hostNetwork":true,'
if [ $rc -ne 0 ] && grep -q 'violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)' <<<"$out"; then
  pass "a hostNetwork pod in payments: refused by Pod Security first, before Bulkhead is asked"
else
  fail "a hostNetwork pod in payments was not refused by Pod Security"
fi

step "A SegmentationException lets one agent use the host network, for 20 seconds"
me=$(kubectl auth whoami -o jsonpath='{.status.userInfo.username}')
expires=$(date -u -d '+20 seconds' +%Y-%m-%dT%H:%M:%SZ)
show "kubectl apply -f - (exception for app.kubernetes.io/name=agent until $expires, requestedBy $me)"
kubectl apply -f - <<YAML
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationException
metadata: {name: node-agent, namespace: shop}
spec:
  podSelector: {matchLabels: {app.kubernetes.io/name: agent}}
  rules: [forbidHostNetwork]
  reason: "vendor agent needs the host network until its v5 (TICKET-123)"
  expiresAt: "$expires"
  requestedBy: "$me"
YAML
until_true 15 dry_run_pod agent-probe shop '"hostNetwork":true,' agent || true
run create_pod agent-1 shop '"hostNetwork":true,' agent
[ $rc -eq 0 ] && pass "the agent is admitted while the exception is active" ||
  fail "the exception was not honoured"
until_true 10 segex_phase_is Active &&
  pass "its status says Active" || fail "the exception's phase is not Active"
run create_pod other-1 shop '"hostNetwork":true,'
[ $rc -ne 0 ] && grep -q 'violates forbidHostNetwork' <<<"$out" && pass "other pods are still rejected" ||
  fail "the exception leaked to other pods"
show "sleep until $expires"
while [ "$(date -u +%s)" -le "$(date -u -d "$expires" +%s)" ]; do sleep 1; done
run create_pod agent-2 shop '"hostNetwork":true,' agent
if [ $rc -ne 0 ] && grep -q 'violates forbidHostNetwork' <<<"$out"; then
  pass "after expiresAt the exception no longer applies"
else
  fail "an expired exception still exempted a pod"
fi
until_true 15 segex_phase_is Expired && pass "its status says Expired" ||
  fail "the exception's phase is not Expired"
run kubectl get segex -n shop
run kubectl get events -n shop --field-selector reason=Expired -o custom-columns=REASON:.reason,MESSAGE:.message
grep -q 'its pods are checked by every rule again' <<<"$out" && pass "an Expired Event says so" ||
  fail "no Expired Event"

step "Generated objects are guarded: nobody but Bulkhead may change or delete them"
run kubectl delete networkpolicy bulkhead-default-deny -n shop
[ $rc -ne 0 ] && grep -q 'is generated by Bulkhead' <<<"$out" && pass "deletion rejected" ||
  fail "a generated NetworkPolicy was deleted"

step "Recovering when the webhook is down, and drift repair without the webhook"
run kubectl delete validatingwebhookconfiguration bulkhead
uid() { kubectl get networkpolicy bulkhead-default-deny -n shop -o jsonpath='{.metadata.uid}'; }
before=$(uid)
# The API server may still call the webhook for a moment after its configuration is gone.
show kubectl delete networkpolicy bulkhead-default-deny -n shop
until_true 30 kubectl delete networkpolicy bulkhead-default-deny -n shop || fail "could not delete it"
restored() { [ -n "$(uid)" ] && [ "$(uid)" != "$before" ]; }
until_true 30 restored && pass "Bulkhead put the default-deny back (a new object)" ||
  fail "drift was not repaired"
run kubectl get events -n shop --field-selector reason=Repaired -o custom-columns=REASON:.reason,MESSAGE:.message
grep -q 'restored NetworkPolicy bulkhead-default-deny' <<<"$out" && pass "a Repaired Event says so" ||
  fail "no Repaired Event"
show "helm upgrade bulkhead $chart -n bulkhead-system --reuse-values   # restores the webhook"
helm upgrade bulkhead "$chart" -n bulkhead-system --reuse-values --wait=false | grep -E '^(STATUS|REVISION)' || true
until_true 60 denied_pod probe shop '"hostNetwork":true,' &&
  pass "the webhook is back (Bulkhead wrote its CA into the new configuration)" ||
  fail "the webhook did not come back after helm upgrade"

step "Leaving segmentation is guarded too: a label change that unselects a namespace"
run kubectl label namespace payments zero-trust-
if [ $rc -ne 0 ] && grep -q 'would take namespace "payments" out of every SegmentationPolicy' <<<"$out"; then
  pass "rejected: only the policy's approver groups may do that"
else
  fail "a namespace left segmentation by a label change"
fi

step "Deleting a policy removes what it generated (its finalizer cleans up first)"
run kubectl delete segpol lenient
until_true 30 nothing_generated_in lab &&
  pass "lab is no longer segmented" || fail "objects were left in lab"
run kubectl get networkpolicies -n lab
until_true 30 psa_label_is lab "" && pass "lab's Pod Security labels are gone too" ||
  fail "lab still carries the Pod Security labels Bulkhead set"

if [ "${E2E_KEEP:-0}" != 1 ]; then
  step "Cleaning up what the suite created"
  kubectl delete pod web-1 agent-1 -n shop --ignore-not-found --wait=false >/dev/null 2>&1 || true
  kubectl delete pod tool-1 -n lab --ignore-not-found --wait=false >/dev/null 2>&1 || true
  kubectl delete pod web-2 web-3 -n payments --ignore-not-found --wait=false >/dev/null 2>&1 || true
  kubectl delete segex node-agent -n shop --ignore-not-found >/dev/null
  kubectl delete segpol baseline lenient hardened --ignore-not-found >/dev/null
  kubectl label namespace shop payments lab zero-trust- >/dev/null
fi

echo
if [ $failures -eq 0 ]; then
  echo "e2e suite: all checks passed"
else
  echo "e2e suite: $failures check(s) FAILED"
  exit 1
fi
