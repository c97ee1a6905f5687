#!/usr/bin/env bash
# `bulkhead check` as CI uses it, no cluster: exit codes, the three output formats, stdin,
# Lists, directories, a chart's Namespace selecting itself, and unusable input named by file and
# document. Usage: tests/cli/check_test.sh path/to/bulkhead
set -uo pipefail
bin=$(realpath "${1:?usage: check_test.sh BULKHEAD_BINARY}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; failures=$((failures + 1)); }
expect() {  # expect DESC WANT_RC CMD...: runs CMD, output in $out
  local desc=$1 want=$2 rc=0
  shift 2
  out=$("$@" 2>&1) || rc=$?
  if [ "$rc" -eq "$want" ]; then ok "$desc (exit $rc)"; else bad "$desc: exit $rc, want $want: $out"; fi
}

cat >"$work/policy.yaml" <<'YAML'
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: baseline}
spec:
  namespaceSelector: {matchLabels: {zero-trust: "on"}}
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationException
metadata: {name: agent, namespace: shop}
spec:
  podSelector: {matchLabels: {app.kubernetes.io/name: agent}}
  rules: [forbidHostNetwork]
  reason: "vendor agent until v5, TICKET-123"
  expiresAt: "2099-01-01T00:00:00Z"
  requestedBy: alice
YAML
mkdir -p "$work/app"
cat >"$work/app/good.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, app.kubernetes.io/name: web}}
    spec: {containers: [{name: web, image: nginx}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
YAML
cat >"$work/bad.yaml" <<'YAML'
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: probe, namespace: shop, labels: {app.kubernetes.io/name: probe}}
  spec: {hostNetwork: true, containers: [{name: c, image: x}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: agent, namespace: shop, labels: {app.kubernetes.io/name: agent}}
  spec: {hostNetwork: true, containers: [{name: c, image: x}]}
YAML

expect "admitted workloads: exit 0" 0 "$bin" check -f "$work/app" --policy "$work/policy.yaml" --namespace-labels zero-trust=on
grep -q "1 objects checked: 1 admitted, 0 refused (1 of other kinds not checked)" <<<"$out" && ok "summary line" || bad "summary: $out"
expect "a refused pod: exit 1" 1 "$bin" check -f "$work/bad.yaml" --policy "$work/policy.yaml" --namespace-labels zero-trust=on
grep -qF 'bad.yaml#0.items[0] Pod shop/probe: refused: bulkhead: pod "probe" in namespace "shop" violates forbidHostNetwork (spec.hostNetwork=true) of SegmentationPolicy "baseline"' <<<"$out" \
  && ok "the webhook's message, with file and document" || bad "message: $out"
grep -qF 'bad.yaml#0.items[1] Pod shop/agent: admitted' <<<"$out" && ok "an active exception is honoured" || bad "exception: $out"
expect "an unselected namespace: exit 0" 0 "$bin" check -f "$work/bad.yaml" --policy "$work/policy.yaml"
expect "stdin and JSON output" 1 sh -c "cat '$work/bad.yaml' | '$bin' check -f - --policy '$work/policy.yaml' --namespace-labels zero-trust=on -o json"
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["summary"]=={"checked":2,"admitted":1,"refused":1,"notChecked":0}, d["summary"]; assert d["results"][0]["rules"]==["forbidHostNetwork"]' "$out" \
  && ok "JSON results and summary" || bad "JSON: $out"
expect "SARIF output" 1 "$bin" check -f "$work/bad.yaml" --policy "$work/policy.yaml" --namespace-labels zero-trust=on -o sarif
python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["version"]=="2.1.0"; r=d["runs"][0]; assert r["tool"]["driver"]["rules"]==[{"id":"forbidHostNetwork","name":"forbidHostNetwork"}]; assert [x["ruleId"] for x in r["results"]]==["forbidHostNetwork"]; assert r["results"][0]["level"]=="error"' "$out" \
  && ok "SARIF 2.1.0 with one result per violated rule" || bad "SARIF: $out"
cat >"$work/ns.yaml" <<'YAML'
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {zero-trust: "on"}}
YAML
expect "a Namespace among the manifests selects itself" 1 "$bin" check -f "$work/ns.yaml" -f "$work/bad.yaml" --policy "$work/policy.yaml"
printf 'apiVersion: v1\nkind: Pod\n---\n- [unclosed\n' >"$work/broken.yaml"
expect "unusable YAML: exit 2" 2 "$bin" check -f "$work/broken.yaml" --policy "$work/policy.yaml"
grep -q "broken.yaml" <<<"$out" && ok "names the file" || bad "names the file: $out"
expect "a missing file: exit 2" 2 "$bin" check -f "$work/nope.yaml" --policy "$work/policy.yaml"
expect "no policy: exit 2" 2 "$bin" check -f "$work/bad.yaml"
printf 'apiVersion: bulkhead.dev/v1alpha1\nkind: SegmentationPolicy\nmetadata: {name: x}\nspec: {mode: Sometimes}\n' >"$work/badpolicy.yaml"
expect "an invalid policy: exit 2" 2 "$bin" check -f "$work/bad.yaml" --policy "$work/badpolicy.yaml"
grep -q "badpolicy.yaml document 0" <<<"$out" && ok "names the policy's file and document" || bad "policy doc: $out"
ln -sf "$bin" "$work/kubectl-bulkhead"
expect "as kubectl-bulkhead" 1 "$work/kubectl-bulkhead" check -f "$work/bad.yaml" --policy "$work/policy.yaml" --namespace-labels zero-trust=on

if [ "$failures" -eq 0 ]; then echo "check_test: all passed"; else echo "check_test: $failures FAILED"; exit 1; fi
