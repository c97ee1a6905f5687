#!/usr/bin/env python3
"""Assertions on one rendered variant of charts/bulkhead.

usage: check_rendered.py VARIANT OBJECTS.json NAMESPACE

OBJECTS.json is `kubectl create --dry-run=client -o json` of the `helm template` output: the
objects' JSON documents one after another. Prints one PASS or FAIL line per assertion; exits 1
if any failed.

VARIANT names the option set (see chart_test.sh): the invariants are checked for every variant,
the rest against what that variant's option should change.
"""
import json
import os
import sys

RELEASE = "bulkhead"  # also the full name: the release name contains the chart name
SECRET = "bulkhead-webhook-tls"

# The guarded resources, exactly: (apiGroups, apiVersions, resources, operations), every one with scope "*".
STANDARD_LABELS = ["app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/version", "app.kubernetes.io/part-of",
                   "app.kubernetes.io/managed-by", "helm.sh/chart"]
SELF_MANAGED_FLAGS = ["--manage-webhook-certs", "--webhook-cert-hosts=", "--ca-validity=",
                      "--cert-validity=", "--cert-renew-before="]

failed = 0


def check(desc, ok, detail=""):
    global failed
    if ok:
        print(f"PASS: {variant}: {desc}")
    else:
        failed += 1
        print(f"FAIL: {variant}: {desc}" + (f" ({detail})" if detail else ""))


def objects_of(kind):
    return [o for o in objects if o["kind"] == kind]


def one(kind, name=RELEASE):
    found = [o for o in objects_of(kind) if o["metadata"]["name"] == name]
    if len(found) != 1:  # reported only when missing or duplicated: one() runs per assertion
        check(f"exactly one {kind} {name}", False, f"found {len(found)}")
    return found[0] if found else {}


variant, path, namespace = sys.argv[1], sys.argv[2], sys.argv[3]
with open(path) as f:
    text = f.read()
objects = []
decoder = json.JSONDecoder()
pos = len(text) - len(text.lstrip())
while pos < len(text):
    obj, pos = decoder.raw_decode(text, pos)
    objects.append(obj)
    pos += len(text[pos:]) - len(text[pos:].lstrip())
kinds = sorted(o["kind"] for o in objects)
cert_manager = variant in ("cert-manager", "cert-manager-issuer")

# --- invariants of every variant -----------------------------------------------------------

for o in objects:
    labels = o["metadata"].get("labels", {})
    missing = [k for k in STANDARD_LABELS if k not in labels]
    check(f"{o['kind']} {o['metadata']['name']} has the standard labels", not missing,
          f"missing {missing}")

wildcards = []
for role in objects_of("ClusterRole") + objects_of("Role"):
    for rule in role.get("rules", []):
        for field in ("verbs", "resources", "apiGroups", "resourceNames"):
            if any("*" in v for v in rule.get(field, [])):
                wildcards.append(f"{role['metadata']['name']}.{field}")
check("no RBAC rule has a wildcard", not wildcards, ", ".join(wildcards))

vwc = one("ValidatingWebhookConfiguration")
hooks = vwc.get("webhooks", [])
check("the VWC has one webhook, validate.bulkhead.dev",
      [h["name"] for h in hooks] == ["validate.bulkhead.dev"], str([h["name"] for h in hooks]))
hook = hooks[0] if hooks else {}
client = hook.get("clientConfig", {})
check("the VWC renders no caBundle", "caBundle" not in client, str(client))
# The rules themselves must equal the webhook's table of checked resources: the admission
# integration test renders the chart and compares them with it.
check("the VWC has rules", bool(hook.get("rules")), str(hook))
check("every VWC rule has scope *", all(r.get("scope") == "*" for r in hook.get("rules", [])))
guarded = {res for r in hook.get("rules", []) for res in r["resources"]}
check("no VWC rule mentions leases, events or nodes",
      not guarded & {"leases", "events", "nodes"}, str(guarded))
exprs = hook.get("namespaceSelector", {}).get("matchExpressions", [])
excluded = [v for e in exprs if e.get("key") == "kubernetes.io/metadata.name"
            and e.get("operator") == "NotIn" for v in e.get("values", [])]
check("the namespaceSelector excludes kube-system, kube-node-lease and the release namespace",
      {"kube-system", "kube-node-lease", namespace} <= set(excluded), str(exprs))
check("sideEffects NoneOnDryRun, matchPolicy Equivalent, admissionReviewVersions [v1]",
      (hook.get("sideEffects"), hook.get("matchPolicy"), hook.get("admissionReviewVersions"))
      == ("NoneOnDryRun", "Equivalent", ["v1"]))

deploy = one("Deployment")
pod = deploy.get("spec", {}).get("template", {}).get("spec", {})
containers = pod.get("containers", [{}])
container = containers[0]
args = container.get("args", [])
psc = pod.get("securityContext", {})
csc = container.get("securityContext", {})
check("pod: runAsNonRoot, uid/gid/fsGroup 65532, seccomp RuntimeDefault",
      psc == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
              "seccompProfile": {"type": "RuntimeDefault"}}, str(psc))
check("container: readOnlyRootFilesystem, no privilege escalation, not privileged, drop ALL",
      csc == {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
              "privileged": False, "capabilities": {"drop": ["ALL"]}}, str(csc))
check("pod: enableServiceLinks false, automountServiceAccountToken true",
      pod.get("enableServiceLinks") is False and pod.get("automountServiceAccountToken") is True)
check("the webhook Secret is not mounted (read through the API)",
      not any("secret" in v for v in pod.get("volumes", [])), str(pod.get("volumes")))
check("TMPDIR=/tmp on an emptyDir at /tmp",
      {"name": "TMPDIR", "value": "/tmp"} in container.get("env", [])
      and {"name": "tmp", "mountPath": "/tmp"} in container.get("volumeMounts", [])
      and any(v["name"] == "tmp" and "emptyDir" in v for v in pod.get("volumes", [])))
check("probes: /healthz and /readyz on the metrics port",
      container.get("livenessProbe", {}).get("httpGet") == {"path": "/healthz", "port": "metrics"}
      and container.get("readinessProbe", {}).get("httpGet")
      == {"path": "/readyz", "port": "metrics"})
fixed_args = [f"--namespace={namespace}", "--leader-elect", f"--leader-election-id={RELEASE}",
              f"--webhook-cert-secret={SECRET}", f"--webhook-configuration={RELEASE}",
              f"--controller-username=system:serviceaccount:{namespace}:{RELEASE}"]
check("the binary gets namespace, leader election, Secret, VWC and controller username",
      all(a in args for a in fixed_args), str(args))

service = one("Service")
ports = {(p["name"], p["port"], p["targetPort"]) for p in service.get("spec", {}).get("ports", [])}
check("Service ports https 443 -> webhook, metrics 8080 -> metrics",
      ports == {("https", 443, "webhook"), ("metrics", 8080, "metrics")}, str(ports))

vwc_rules = [r for r in one("ClusterRole", f"{RELEASE}-controller").get("rules", [])
             if "validatingwebhookconfigurations" in r.get("resources", [])]
secret_rules = one("Role", f"{RELEASE}-webhook-certs").get("rules", [])
check("the webhook-certs Role is bound to the ServiceAccount",
      one("RoleBinding", f"{RELEASE}-webhook-certs").get("subjects")
      == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": namespace}])
reads = {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [SECRET],
         "verbs": ["get", "list", "watch"]}

# --- the two certificate modes --------------------------------------------------------------

cm_kinds = [k for k in kinds if k in ("Certificate", "Issuer")]
if cert_manager:
    check("cert-manager: no self-managed certificate flags",
          not [a for a in args if any(a.startswith(f) for f in SELF_MANAGED_FLAGS)], str(args))
    check("cert-manager: the VWC asks the cainjector for the CA",
          vwc.get("metadata", {}).get("annotations", {}).get("cert-manager.io/inject-ca-from")
          == f"{namespace}/{RELEASE}-webhook")
    check("cert-manager: no ClusterRole rule on validatingwebhookconfigurations", not vwc_rules,
          str(vwc_rules))
    check("cert-manager: the Secret is only read", secret_rules == [reads], str(secret_rules))
    serving = one("Certificate", f"{RELEASE}-webhook").get("spec", {})
    check("cert-manager: the serving Certificate's Secret, names, key and usages",
          serving.get("secretName") == SECRET
          and serving.get("dnsNames") == [RELEASE, f"{RELEASE}.{namespace}",
                                          f"{RELEASE}.{namespace}.svc",
                                          f"{RELEASE}.{namespace}.svc.cluster.local"]
          and serving.get("privateKey", {}).get("algorithm") == "ECDSA"
          and serving.get("privateKey", {}).get("size") == 256
          and serving.get("usages") == ["server auth"]
          and (serving.get("duration"), serving.get("renewBefore")) == ("2160h", "720h"),
          str(serving))
    if variant == "cert-manager-issuer":
        check("issuerRef: only the serving Certificate, no Issuer", cm_kinds == ["Certificate"],
              str(cm_kinds))
        check("issuerRef: the Certificate is issued by the given issuer",
              serving.get("issuerRef") == {"name": "corp-ca", "kind": "ClusterIssuer",
                                           "group": "cert-manager.io"},
              str(serving.get("issuerRef")))
    else:
        check("bootstrap CA: two Certificates and two Issuers",
              cm_kinds == ["Certificate", "Certificate", "Issuer", "Issuer"], str(cm_kinds))
        check("bootstrap CA: a self-signed Issuer",
              "selfSigned" in one("Issuer", f"{RELEASE}-selfsigned").get("spec", {}))
        ca = one("Certificate", f"{RELEASE}-webhook-ca").get("spec", {})
        check("bootstrap CA: the CA Certificate (isCA, ECDSA 256, 8760h, its Secret)",
              ca.get("isCA") is True and ca.get("duration") == "8760h"
              and ca.get("secretName") == f"{RELEASE}-webhook-ca"
              and ca.get("privateKey") == {"algorithm": "ECDSA", "size": 256}
              and ca.get("issuerRef", {}).get("name") == f"{RELEASE}-selfsigned", str(ca))
        check("bootstrap CA: the CA Issuer uses the CA's Secret",
              one("Issuer", f"{RELEASE}-webhook-ca").get("spec")
              == {"ca": {"secretName": f"{RELEASE}-webhook-ca"}})
        check("bootstrap CA: the serving Certificate is issued by the CA Issuer",
              serving.get("issuerRef") == {"name": f"{RELEASE}-webhook-ca", "kind": "Issuer",
                                           "group": "cert-manager.io"})
else:
    hosts = (f"--webhook-cert-hosts={RELEASE},{RELEASE}.{namespace},{RELEASE}.{namespace}.svc,"
             f"{RELEASE}.{namespace}.svc.cluster.local")
    check("self-managed: certificate flags with the four Service names",
          ["--manage-webhook-certs", hosts, "--ca-validity=8760h", "--cert-validity=2160h",
           "--cert-renew-before=720h"] == [a for a in args if any(a.startswith(f) for f in
                                                               SELF_MANAGED_FLAGS)], str(args))
    check("self-managed: no cert-manager objects", not cm_kinds, str(cm_kinds))
    check("self-managed: no inject-ca-from annotation",
          "annotations" not in vwc.get("metadata", {}))
    check("self-managed: VWC access is get/list/watch/update on this one object, and no create",
          vwc_rules == [{"apiGroups": ["admissionregistration.k8s.io"],
                         "resources": ["validatingwebhookconfigurations"],
                         "resourceNames": [RELEASE],
                         "verbs": ["get", "list", "watch", "update"]}],
          str(vwc_rules))
    check("self-managed: the Secret is read and updated by name, created in this namespace",
          secret_rules == [reads, dict(reads, verbs=["update"]),
                           {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}],
          str(secret_rules))

# --- the other options ----------------------------------------------------------------------

expected_replicas = 3 if variant == "replicas-3" else 2
check(f"Deployment replicas {expected_replicas}",
      deploy.get("spec", {}).get("replicas") == expected_replicas)

if variant == "no-priority-class":
    check("no priorityClassName", "priorityClassName" not in pod)
else:
    check("priorityClassName system-cluster-critical",
          pod.get("priorityClassName") == "system-cluster-critical")

pdbs = objects_of("PodDisruptionBudget")
if variant == "no-pdb":
    check("no PodDisruptionBudget", not pdbs, str(pdbs))
else:
    pdb = one("PodDisruptionBudget").get("spec", {})
    check("PDB minAvailable 1 over the selector labels",
          pdb.get("minAvailable") == 1 and pdb.get("selector")
          == deploy.get("spec", {}).get("selector"), str(pdb))

policy = "Ignore" if variant in ("failure-policy-ignore", "twin-off-ignore") else "Fail"
check(f"VWC failurePolicy {policy}, timeoutSeconds 3",
      (hook.get("failurePolicy"), hook.get("timeoutSeconds")) == (policy, 3))

if variant == "webhook-url":
    check("webhook.url: clientConfig is the URL, no Service",
          client == {"url": "https://127.0.0.1:9443/validate"}, str(client))
else:
    check("clientConfig is the Service on 443 at /validate",
          client == {"service": {"name": RELEASE, "namespace": namespace, "path": "/validate",
                                 "port": 443}}, str(client))

monitors = objects_of("ServiceMonitor")
if variant == "servicemonitor":
    endpoints = one("ServiceMonitor").get("spec", {}).get("endpoints", [])
    check("ServiceMonitor scrapes port metrics at /metrics every 30s",
          [(e.get("port"), e.get("path"), e.get("interval")) for e in endpoints]
          == [("metrics", "/metrics", "30s")], str(endpoints))
else:
    check("no ServiceMonitor", not monitors)

if variant == "extra-args":
    check("extraArgs come last, in order",
          args[-2:] == ["--resync-period=5m", "--log-level=debug"], str(args))
else:
    last = "--tls-min-version=1.3" if cert_manager else "--cert-renew-before=720h"
    check(f"the last flag is the chart's own {last}", args[-1:] == [last], str(args[-1:]))

# --- the background scan and its Reports -----------------------------------------------------

scan_rules = [r for r in one("ClusterRole", f"{RELEASE}-controller").get("rules", [])
              if set(r.get("apiGroups", [])) & {"apps", "batch", "openreports.io"}
              or "pods" in r.get("resources", [])]
report_crds = [o for o in objects_of("CustomResourceDefinition")
               if o["metadata"]["name"] == "reports.openreports.io"]
if variant == "no-background-scan":
    check("no background scan: --background-scan=false", "--background-scan=false" in args,
          str(args))
    check("no background scan: no RBAC on pods, workloads or Reports", not scan_rules,
          str(scan_rules))
else:
    check("background scan: --background-scan=true", "--background-scan=true" in args, str(args))
    check("background scan: only list/watch on pods and workloads, all of Reports' verbs",
          scan_rules == [
              {"apiGroups": [""], "resources": ["pods", "replicationcontrollers"],
               "verbs": ["list", "watch"]},
              {"apiGroups": ["apps"],
               "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"],
               "verbs": ["list", "watch"]},
              {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"],
               "verbs": ["list", "watch"]},
              {"apiGroups": ["openreports.io"], "resources": ["reports"],
               "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]}],
          str(scan_rules))
if variant == "report-crd":
    with open(os.environ["OPENREPORTS_CRD_JSON"]) as f:  # chart_test.sh: the module's, as JSON
        upstream = json.load(f)
    crd = report_crds[0] if len(report_crds) == 1 else {}
    check("report-crd: the OpenReports CRD, its spec as the pinned module has it",
          crd.get("spec") == upstream["spec"], str(crd.get("metadata")))
    check("report-crd: kept on uninstall",
          crd.get("metadata", {}).get("annotations", {}).get("helm.sh/resource-policy") == "keep")
else:
    check("no OpenReports CRD unless asked for", not report_crds)

if variant == "defaults":
    spread = pod.get("topologySpreadConstraints", [])
    check("topology spread across nodes over the selector labels",
          spread == [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                      "whenUnsatisfiable": "ScheduleAnyway",
                      "labelSelector": deploy["spec"]["selector"]}], str(spread))
    check("resources: requests 100m/128Mi, limit 512Mi memory, no CPU limit",
          container.get("resources") == {"requests": {"cpu": "100m", "memory": "128Mi"},
                                         "limits": {"memory": "512Mi"}})
    check("terminationGracePeriodSeconds 30", pod.get("terminationGracePeriodSeconds") == 30)
    app_version = deploy["metadata"]["labels"]["app.kubernetes.io/version"]
    check("image bulkhead:<appVersion>, IfNotPresent",
          (container.get("image"), container.get("imagePullPolicy"))
          == (f"bulkhead:{app_version}", "IfNotPresent"), container.get("image"))

# --- the admission twin ------------------------------------------------------------------------

twin_rules = [r for r in one("ClusterRole", f"{RELEASE}-controller").get("rules", [])
              if "validatingadmissionpolicies" in r.get("resources", [])]
twin_on = variant in ("twin-on", "failure-policy-ignore")
check(f"admission twin {'on' if twin_on else 'off'}: --validating-admission-policy={str(twin_on).lower()}",
      f"--validating-admission-policy={str(twin_on).lower()}" in args, str(args))
if twin_on:
    check("admission twin: every verb on the admission policies and bindings, nothing else",
          twin_rules == [{"apiGroups": ["admissionregistration.k8s.io"],
                          "resources": ["validatingadmissionpolicies",
                                        "validatingadmissionpolicybindings"],
                          "verbs": ["get", "list", "watch", "create", "patch", "update",
                                    "delete"]}], str(twin_rules))
else:
    check("admission twin off: no RBAC on admission policies", not twin_rules, str(twin_rules))

sys.exit(1 if failed else 0)

