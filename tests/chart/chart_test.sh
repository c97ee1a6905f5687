#!/usr/bin/env bash
# Tests of the Helm chart charts/bulkhead with the real helm and kubectl against a real
# kube-apiserver (scripts/testenv.sh):
#   - helm lint --strict and helm template for the defaults and every option set below;
#   - the API server accepts every rendered object (kubectl apply --dry-run=server), with the
#     chart's, Istio's, cert-manager's and the ServiceMonitor CRDs installed first;
#   - assertions on the rendered objects (check_rendered.py);
#   - values.schema.json rejects bad values with a schema error;
#   - a real install: NOTES, the controller's RBAC as the API server evaluates it, a caBundle
#     written by someone else survives helm upgrade, the switch to cert-manager, and uninstall
#     leaving the CRDs;
#   - helm package: the chart's crds/ is a symlink to the top-level crds/; the package holds
#     them as real files with the same content, and a real install from the .tgz creates them.
# One PASS or FAIL line per check; exits 1 if any check failed. Needs `scripts/testenv.sh build`.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
chart="$root/charts/bulkhead"
crds_dir="$root/crds"  # charts/bulkhead/crds is a symlink to it
testenv="$root/scripts/testenv.sh"
ns=bulkhead-system
release=bulkhead  # contains the chart name, so it is also the full name of every object
kube_version=1.35.4

# name:helm arguments (no spaces inside one argument). check_rendered.py reads the name.
variants=(
  "defaults:"
  "cert-manager:--set certManager.enabled=true"
  "cert-manager-issuer:--set certManager.enabled=true --set certManager.issuerRef.name=corp-ca
    --set certManager.issuerRef.kind=ClusterIssuer"
  "servicemonitor:--set metrics.serviceMonitor.enabled=true"
  "replicas-3:--set replicaCount=3"
  "failure-policy-ignore:--set webhook.failurePolicy=Ignore"
  "webhook-url:--set webhook.url=https://127.0.0.1:9443/validate"
  "no-pdb:--set podDisruptionBudget.enabled=false"
  "no-priority-class:--set priorityClassName="
  "extra-args:--set extraArgs={--resync-period=5m,--log-level=debug}"
  "no-background-scan:--set backgroundScan.enabled=false"
  "report-crd:--set backgroundScan.installReportCRD=true"
  "twin-on:--set validatingAdmissionPolicy.enabled=true"
  "twin-off-ignore:--set webhook.failurePolicy=Ignore --set validatingAdmissionPolicy.enabled=false"
)

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
indent() { sed 's/^/    /' "$@"; }

started=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-chart-test.XXXXXX")
# The control plane's directory is named like the C++ tests' so scripts/test.sh finds leftovers.
cp_dir=$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-testenv.XXXXXX")
cleanup() {
  "$testenv" stop "$cp_dir" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Keep helm's and kubectl's caches and configuration out of $HOME.
export HELM_CACHE_HOME="$work/helm/cache" HELM_CONFIG_HOME="$work/helm/config"
export HELM_DATA_HOME="$work/helm/data" KUBECACHEDIR="$work/kube-cache"

echo "==> starting a control plane"
if ! "$testenv" start "$cp_dir" --owner $$ >"$work/testenv.log" 2>&1; then
  echo "FAIL: starting the control plane"
  indent "$work/testenv.log"
  exit 1
fi
# shellcheck disable=SC1091
source "$cp_dir/env"
for f in "$TESTENV_ISTIO_CRDS" "$TESTENV_CERT_MANAGER_CRDS" "$TESTENV_SERVICEMONITOR_CRD" \
         "$TESTENV_OPENREPORTS_CRD"; do
  [ -e "$f" ] || { echo "FAIL: $f is missing (run scripts/testenv.sh build)"; exit 1; }
done
# The chart's copy of the OpenReports CRD is the pinned module's, unchanged.
if cmp -s "$chart/files/openreports.io_reports.yaml" "$TESTENV_OPENREPORTS_CRD"; then
  pass "files/openreports.io_reports.yaml is the pinned github.com/openreports/reports-api's"
else
  fail "files/openreports.io_reports.yaml is the pinned github.com/openreports/reports-api's"
fi
kubectl create --dry-run=client -o json -f "$TESTENV_OPENREPORTS_CRD" >"$work/openreports-crd.json"
export OPENREPORTS_CRD_JSON="$work/openreports-crd.json"

echo "==> installing the CRDs and the release namespace"
# Server-side apply: the Istio and cert-manager CRDs are too big for the last-applied annotation.
if ! { kubectl apply --server-side -f "$crds_dir/" -f "$TESTENV_ISTIO_CRDS" \
         -f "$TESTENV_CERT_MANAGER_CRDS" -f "$TESTENV_SERVICEMONITOR_CRD" \
         -f "$TESTENV_OPENREPORTS_CRD" &&
       kubectl wait --for condition=established --timeout=60s \
         crd/segmentationpolicies.bulkhead.dev crd/segmentationexceptions.bulkhead.dev \
         crd/peerauthentications.security.istio.io crd/authorizationpolicies.security.istio.io \
         crd/certificates.cert-manager.io crd/issuers.cert-manager.io \
         crd/servicemonitors.monitoring.coreos.com crd/reports.openreports.io &&
       kubectl create namespace "$ns"; } >"$work/setup" 2>&1; then
  echo "FAIL: installing the CRDs and creating namespace $ns"
  indent "$work/setup"
  exit 1
fi

for variant in "${variants[@]}"; do
  name=${variant%%:*}
  read -rd '' -a args <<<"${variant#*:}" || true  # all lines, split on whitespace
  echo "==> $name ${args[*]}"
  if helm lint --strict --kube-version "$kube_version" "$chart" "${args[@]}" >"$work/lint" 2>&1
  then
    pass "$name: helm lint --strict"
  else
    fail "$name: helm lint --strict"; indent "$work/lint"
  fi
  rendered="$work/$name.yaml"
  if ! helm template "$release" "$chart" -n "$ns" --kube-version "$kube_version" "${args[@]}" \
       >"$rendered" 2>"$work/err"; then
    fail "$name: helm template"; indent "$work/err"
    continue
  fi
  pass "$name: helm template"
  objects=$(grep -c '^kind:' "$rendered")
  if kubectl apply --dry-run=server -o name -f "$rendered" >"$work/applied" 2>"$work/err" &&
     [ "$(wc -l <"$work/applied")" -eq "$objects" ]; then
    pass "$name: the API server accepts all $objects objects (apply --dry-run=server)"
  else
    fail "$name: the API server accepts all $objects objects (apply --dry-run=server)"
    indent "$work/applied" "$work/err"
  fi
  if kubectl create --dry-run=client -o json -f "$rendered" >"$work/$name.json" 2>"$work/err"; then
    rc=0
    python3 "$root/tests/chart/check_rendered.py" "$name" "$work/$name.json" "$ns" \
      >"$work/checks" 2>&1 || rc=$?
    cat "$work/checks"
    passed=$((passed + $(grep -c '^PASS' "$work/checks" || true)))
    failed=$((failed + $(grep -c '^FAIL' "$work/checks" || true)))
    if [ "$rc" -ne 0 ] && ! grep -q '^FAIL' "$work/checks"; then
      fail "$name: check_rendered.py exited with $rc"
    fi
  else
    fail "$name: kubectl create --dry-run=client -o json"; indent "$work/err"
  fi
done

echo "==> values.schema.json rejects bad values"
# reject DESCRIPTION EXPECTED-ERROR-LINE HELM-ARGS...
reject() {
  local desc=$1 expected=$2
  shift 2
  if helm template "$release" "$chart" -n "$ns" --kube-version "$kube_version" "$@" \
       >/dev/null 2>"$work/err"; then
    fail "schema rejects $desc (rendered without error)"
  elif grep -qF "values don't meet the specifications of the schema" "$work/err" &&
       grep -qF -- "$expected" "$work/err"; then
    pass "schema rejects $desc: $expected"
  else
    fail "schema rejects $desc: expected \"$expected\""; indent "$work/err"
  fi
}
reject "replicaCount=two" "at '/replicaCount': got string, want integer" \
  --set-string replicaCount=two
reject "replicaCount=0" "at '/replicaCount': minimum: got 0, want 1" --set replicaCount=0
reject "webhook.failurePolicy=Maybe" \
  "at '/webhook/failurePolicy': value must be one of 'Fail', 'Ignore'" \
  --set webhook.failurePolicy=Maybe
reject "webhook.timeoutSeconds=60" "at '/webhook/timeoutSeconds': maximum: got 60, want 30" \
  --set webhook.timeoutSeconds=60
reject "logLevel=loud" "at '/logLevel': value must be one of" --set logLevel=loud
reject "an unknown top-level key" "additional properties 'replicas' not allowed" --set replicas=3
reject "webhook.url=http://x" "at '/webhook/url': 'http://x' does not match pattern" \
  --set webhook.url=http://x
reject "a duration in days" "at '/webhook/certificate/validity': '90d' does not match pattern" \
  --set webhook.certificate.validity=90d
printf 'tlsMinVersion: 1.2\n' >"$work/unquoted.yaml"
reject "tlsMinVersion 1.2 unquoted (a number)" "at '/tlsMinVersion': got number, want string" \
  -f "$work/unquoted.yaml"
reject "certManager.issuerRef without a name" "missing property 'name'" \
  --set certManager.issuerRef.kind=ClusterIssuer

echo "==> helm package: the CRDs are real files in the package"
# Helm's chart loader follows the symlink charts/bulkhead/crds -> ../../crds; the package must
# hold copies, not a link that would dangle outside the repository.
pkg_dir="$work/package"
pkg=""
mkdir -p "$pkg_dir/unpacked"
if helm package "$chart" -d "$pkg_dir" >"$work/package.log" 2>&1; then
  pkgs=("$pkg_dir"/bulkhead-*.tgz)
  if [ "${#pkgs[@]}" -eq 1 ] && [ -f "${pkgs[0]}" ]; then
    pkg=${pkgs[0]}
    pass "helm package: $(basename "$pkg")"
  else
    fail "helm package: expected one bulkhead-*.tgz in $pkg_dir"; ls -l "$pkg_dir" | indent
  fi
else
  fail "helm package"; indent "$work/package.log"
fi
if [ -n "$pkg" ]; then
  # "-rw-r--r-- 0/0 11630 2025-01-01 00:00 bulkhead/crds/x.yaml": type, then the path.
  tar tvzf "$pkg" | awk '$NF ~ /^bulkhead\/crds\// {print substr($1, 1, 1), $NF}' | sort \
    >"$work/package-crds"
  (cd "$crds_dir" && for f in *; do echo "- bulkhead/crds/$f"; done) | sort >"$work/want-crds"
  if [ -s "$work/want-crds" ] && cmp -s "$work/package-crds" "$work/want-crds"
  then
    pass "the package holds exactly crds/'s $(wc -l <"$work/want-crds") files, as regular files"
  else
    fail "the package holds exactly crds/'s files, as regular files"
    echo "    want:"; indent "$work/want-crds"; echo "    got:"; indent "$work/package-crds"
  fi
  tar xzf "$pkg" -C "$pkg_dir/unpacked"
  for f in "$crds_dir"/*; do
    name=$(basename "$f")
    if cmp -s "$f" "$pkg_dir/unpacked/bulkhead/crds/$name"; then
      pass "the package's crds/$name is identical to crds/$name"
    else
      fail "the package's crds/$name is identical to crds/$name"
    fi
  done
  if helm show crds "$chart" >"$work/show-dir" 2>"$work/err" &&
     helm show crds "$pkg" >"$work/show-pkg" 2>>"$work/err" &&
     cmp -s "$work/show-dir" "$work/show-pkg" &&
     grep -q '^  name: segmentationpolicies.bulkhead.dev$' "$work/show-dir" &&
     grep -q '^  name: segmentationexceptions.bulkhead.dev$' "$work/show-dir"; then
    pass "helm show crds: the chart directory and the package give the same two CRDs"
  else
    fail "helm show crds: the chart directory and the package give the same two CRDs"
    indent "$work/err"
  fi
fi

echo "==> install, RBAC, upgrade, uninstall"
sa="system:serviceaccount:$ns:$release"
# expect_can yes|no VERB RESOURCE [NAMESPACE]: the API server's RBAC decision for the controller.
expect_can() {
  local want=$1 verb=$2 resource=$3 namespace=${4:-$ns} got
  got=$(kubectl auth can-i "$verb" "$resource" -n "$namespace" --as="$sa" 2>/dev/null || true)
  if [ "$got" = "$want" ]; then
    pass "RBAC: $verb $resource in $namespace: $want"
  else
    fail "RBAC: $verb $resource in $namespace: want $want, got '$got'"
  fi
}
vwc="validatingwebhookconfigurations.admissionregistration.k8s.io"
vwc_field() { kubectl get "$vwc/$release" -o jsonpath="{$1}"; }

if helm install "$release" "$chart" -n "$ns" >"$work/install" 2>&1 &&
   grep -q '^STATUS: deployed' "$work/install"; then
  pass "helm install"
else
  fail "helm install"; indent "$work/install"
fi
if grep -qF "kubectl delete validatingwebhookconfiguration $release" "$work/install" &&
   grep -qF "kubectl -n $ns get pods" "$work/install" &&
   grep -qF "kind: SegmentationPolicy" "$work/install"; then
  pass "NOTES: how to check, a first policy, the recovery command"
else
  fail "NOTES: how to check, a first policy, the recovery command"; indent "$work/install"
fi

secret=secrets/bulkhead-webhook-tls
for verb in get list watch update; do expect_can yes "$verb" "$secret"; done
expect_can yes create secrets
expect_can no create secrets default
expect_can no get secrets/some-other-secret
expect_can no list secrets
expect_can no delete "$secret"
for verb in get list watch update; do expect_can yes "$verb" "$vwc/$release"; done
expect_can no list "$vwc"
expect_can no update "$vwc/some-other-webhook"
expect_can no create "$vwc"
expect_can no delete "$vwc/$release"
# Pod Security labels: server-side apply (patch) on any namespace; never create, update or delete.
expect_can yes patch namespaces/any-namespace
for verb in create update delete; do expect_can no "$verb" namespaces; done
# The background scan reads pods and workloads, writes only its Reports.
for r in pods deployments.apps cronjobs.batch; do
  expect_can yes list "$r"; expect_can yes watch "$r"; expect_can no create "$r"
done
expect_can no delete pods
expect_can yes patch reports.openreports.io
expect_can yes delete reports.openreports.io
# The admission twin is off by default (failurePolicy Fail): no access to admission policies.
expect_can no create validatingadmissionpolicies.admissionregistration.k8s.io
expect_can no list validatingadmissionpolicybindings.admissionregistration.k8s.io

# What bulkhead (or cert-manager's cainjector) does at run time: write the CA into caBundle.
ca_bundle=$(base64 -w0 <"$TESTENV_CA")
kubectl patch "$vwc/$release" --type=json -p \
  "[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$ca_bundle\"}]" \
  >/dev/null
if helm upgrade "$release" "$chart" -n "$ns" --set webhook.timeoutSeconds=5 >"$work/upgrade" 2>&1 &&
   [ "$(vwc_field '.webhooks[0].timeoutSeconds')" = 5 ] &&
   [ "$(vwc_field '.webhooks[0].clientConfig.caBundle')" = "$ca_bundle" ]; then
  pass "helm upgrade changes the VWC and keeps the caBundle written outside Helm"
else
  fail "helm upgrade changes the VWC and keeps the caBundle written outside Helm"
  indent "$work/upgrade"
fi

if helm upgrade "$release" "$chart" -n "$ns" --set certManager.enabled=true >"$work/upgrade" 2>&1 &&
   kubectl get -n "$ns" "certificates.cert-manager.io/$release-webhook" >/dev/null 2>&1 &&
   [ "$(vwc_field '.metadata.annotations.cert-manager\.io/inject-ca-from')" = \
     "$ns/$release-webhook" ] &&
   [ "$(vwc_field '.webhooks[0].clientConfig.caBundle')" = "$ca_bundle" ]; then
  pass "helm upgrade to cert-manager mode: Certificate, inject-ca-from, caBundle kept"
else
  fail "helm upgrade to cert-manager mode: Certificate, inject-ca-from, caBundle kept"
  indent "$work/upgrade"
fi
expect_can yes watch "$secret"
expect_can no update "$secret"
expect_can no create secrets
expect_can no get "$vwc/$release"
expect_can no update "$vwc/$release"

if helm uninstall "$release" -n "$ns" >"$work/uninstall" 2>&1 &&
   ! kubectl get "$vwc/$release" >/dev/null 2>&1 &&
   kubectl get crd segmentationpolicies.bulkhead.dev segmentationexceptions.bulkhead.dev \
     >/dev/null 2>&1; then
  pass "helm uninstall removes the VWC and leaves the CRDs"
else
  fail "helm uninstall removes the VWC and leaves the CRDs"; indent "$work/uninstall"
fi

echo "==> install from the packaged chart"
# Its own release and namespace. Helm skips a CRD that exists already, so the CRDs applied with
# kubectl at the start are deleted first: then this install must create them itself (the API
# server's own finalizer removes a CRD; no controller-manager is needed).
pkg_release=bulkhead-packaged
pkg_ns=bulkhead-packaged
bulkhead_crds=(crd/segmentationpolicies.bulkhead.dev crd/segmentationexceptions.bulkhead.dev)
# The managers of a CRD's fields: "helm" when helm created it.
crd_managers() { kubectl get "$1" -o jsonpath='{.metadata.managedFields[*].manager}' 2>/dev/null; }
if [ -z "$pkg" ]; then
  fail "helm install from the package: there is no package"
elif ! kubectl delete "${bulkhead_crds[@]}" --wait --timeout=60s >"$work/pkg-setup" 2>&1 ||
     kubectl get "${bulkhead_crds[@]}" >/dev/null 2>&1; then
  fail "deleting the CRDs before the install from the package"; indent "$work/pkg-setup"
else
  if helm install "$pkg_release" "$pkg" -n "$pkg_ns" --create-namespace >"$work/pkg-install" 2>&1 &&
     grep -q '^STATUS: deployed' "$work/pkg-install"; then
    pass "helm install from $(basename "$pkg")"
  else
    fail "helm install from $(basename "$pkg")"; indent "$work/pkg-install"
  fi
  if kubectl wait --for condition=established --timeout=60s "${bulkhead_crds[@]}" \
       >"$work/pkg-crds" 2>&1 &&
     [[ " $(crd_managers "${bulkhead_crds[0]}") " == *" helm "* ]] &&
     [[ " $(crd_managers "${bulkhead_crds[1]}") " == *" helm "* ]]; then
    pass "the install from the package created both CRDs (established, managed by helm)"
  else
    fail "the install from the package created both CRDs (established, managed by helm)"
    indent "$work/pkg-crds"
    for c in "${bulkhead_crds[@]}"; do echo "    $c managers: $(crd_managers "$c")"; done
  fi
  if helm uninstall "$pkg_release" -n "$pkg_ns" >"$work/pkg-uninstall" 2>&1 &&
     kubectl get "${bulkhead_crds[@]}" >/dev/null 2>&1; then
    pass "helm uninstall of the packaged release leaves the CRDs"
  else
    fail "helm uninstall of the packaged release leaves the CRDs"; indent "$work/pkg-uninstall"
  fi
fi

echo
echo "chart_test: $passed passed, $failed failed, $((SECONDS - started))s"
[ "$failed" -eq 0 ]
