#include "policy/posture.h"

#include <doctest/doctest.h>

#include "common/time_format.h"
#include "policy/pod_facts.h"

namespace bulkhead::policy {
namespace {

using nlohmann::json;

const auto kNow = parseRfc3339("2026-12-01T10:00:00Z").value();

SegmentationPolicy policyNamed(const std::string& name, Mode mode = Mode::kEnforce) {
  SegmentationPolicy p;
  p.name = name;
  p.uid = "uid-" + name;
  p.mode = mode;
  p.mtls = MtlsMode::kDisable;  // requireSidecar is for the mesh tests
  return p;
}

// A Pod as the API server returns it in a list: no kind, status, managedFields and everything
// else the rules never read.
json listedPod() {
  return json::parse(R"({
    "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-web-1",
                 "resourceVersion": "812", "generateName": "web-",
                 "labels": {"app.kubernetes.io/name": "web"},
                 "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}",
                                 "team": "shop"},
                 "ownerReferences": [
                   {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f",
                    "uid": "u-rs", "controller": true, "blockOwnerDeletion": true},
                   {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "u-cm"}],
                 "managedFields": [{"manager": "kube-controller-manager"}]},
    "spec": {"hostNetwork": true, "serviceAccountName": "web", "nodeName": "node-1",
             "securityContext": {"runAsUser": 1000, "fsGroup": 2000},
             "volumes": [{"name": "data", "emptyDir": {}}],
             "containers": [{"name": "web", "image": "nginx:1.27",
                             "env": [{"name": "A", "value": "b"}],
                             "resources": {"limits": {"cpu": "1"}},
                             "ports": [{"containerPort": 8080, "protocol": "TCP"},
                                       {"containerPort": 9090, "hostPort": 9090}],
                             "securityContext": {"privileged": true,
                                                 "capabilities": {"add": ["NET_ADMIN"]}}}],
             "initContainers": [{"name": "init", "image": "busybox", "command": ["true"],
                                 "restartPolicy": "Always"}]},
    "status": {"phase": "Running", "podIP": "10.0.0.7"}
  })");
}

TEST_CASE("keepScannedFields keeps exactly what the rules read, and they read the same") {
  json pod = listedPod();
  pod["metadata"]["annotations"]["sidecar.istio.io/inject"] = "true";
  json full = pod;
  keepScannedFields(pod, "Pod");
  const json expected = json::parse(R"({
    "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-web-1",
                 "resourceVersion": "812", "generateName": "web-",
                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                      "name": "web-5d8f", "controller": true}]}
  })");
  const json expectedRules = json::parse(R"({
    "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "shop", "generateName": "web-",
                 "labels": {"app.kubernetes.io/name": "web"},
                 "annotations": {"sidecar.istio.io/inject": "true"}},
    "spec": {"hostNetwork": true,
             "securityContext": {"runAsUser": 1000, "fsGroup": 2000},
             "containers": [{"name": "web", "image": "nginx:1.27",
                             "ports": [{}, {"hostPort": 9090}],
                             "securityContext": {"privileged": true,
                                                 "capabilities": {"add": ["NET_ADMIN"]}}}],
             "initContainers": [{"name": "init", "image": "busybox", "command": ["true"],
                                 "restartPolicy": "Always"}]}
  })");
  const json rules = json::parse(pod.value("scanned", "{}"));
  CHECK(pod.size() == 3);
  CHECK(pod["kind"] == expected["kind"]);
  CHECK(pod["metadata"] == expected["metadata"]);
  CHECK(rules == expectedRules);

  // The rules read the same facts, but for the annotations they do not read.
  full["kind"] = "Pod";
  full["metadata"]["annotations"] = {{"sidecar.istio.io/inject", "true"}};
  CHECK(decodePodFacts(rules).value() == decodePodFacts(full).value());

  // A CronJob keeps the path down to its template, and the template's labels and annotations.
  json cronJob = {
      {"metadata", {{"name", "nightly"}, {"namespace", "shop"}, {"uid", "u-cj"}}},
      {"spec",
       {{"schedule", "0 3 * * *"},
        {"jobTemplate",
         {{"spec",
           {{"backoffLimit", 2},
            {"template",
             {{"metadata", {{"labels", {{"app.kubernetes.io/name", "nightly"}}},
                            {"finalizers", {"x"}}}},
              {"spec", full["spec"]}}}}}}}}},
      {"status", {{"active", json::array()}}}};
  json kept = cronJob;
  keepScannedFields(kept, "CronJob");
  const json cronRules = json::parse(kept.value("scanned", "{}"));
  CHECK(cronRules["spec"].size() == 1);
  CHECK(cronRules["spec"]["jobTemplate"]["spec"].size() == 1);
  CHECK(cronRules["spec"]["jobTemplate"]["spec"]["template"]["metadata"] ==
        json{{"labels", {{"app.kubernetes.io/name", "nightly"}}}});
  CHECK(!kept.contains("status"));
  cronJob["kind"] = "CronJob";
  CHECK(decodePodFacts(cronRules).value() == decodePodFacts(cronJob).value());

  // A field of the wrong type stays, so that the scan reports the object as unreadable.
  json broken = {{"metadata", {{"name", "b"}}}, {"spec", {{"containers", "web"}}}};
  keepScannedFields(broken, "Pod");
  const json brokenRules = json::parse(broken.value("scanned", "{}"));
  CHECK(brokenRules["spec"]["containers"] == "web");
  CHECK(!decodePodFacts(brokenRules).ok());
}

json pod(const std::string& name, json spec, json labels = {{"app.kubernetes.io/name", "x"}}) {
  json p = {{"kind", "Pod"},
            {"metadata", {{"name", name}, {"namespace", "shop"}, {"uid", "u-" + name}}},
            {"spec", std::move(spec)}};
  if (!labels.is_null()) {
    p["metadata"]["labels"] = std::move(labels);
  }
  return p;
}

// As the scan's cache holds it.
json cached(json object) {
  const std::string kind = object.value("kind", "");
  keepScannedFields(object, kind);
  return object;
}

json container(json extra = json::object()) {
  json c = {{"name", "app"}, {"image", "app:1"}};
  c.update(extra);
  return c;
}

json workload(const std::string& kind, const std::string& name, json spec,
              json owner = nullptr) {
  json w = {{"kind", kind},
            {"metadata", {{"name", name}, {"namespace", "shop"}, {"uid", "u-" + name}}},
            {"spec",
             {{"template",
               {{"metadata", {{"labels", {{"app.kubernetes.io/name", name}}}}},
                {"spec", std::move(spec)}}}}}};
  if (kind == "CronJob") {
    w["spec"] = {{"jobTemplate", {{"spec", w["spec"]}}}};
  }
  if (!owner.is_null()) {
    w["metadata"]["ownerReferences"] = {std::move(owner)};
  }
  return w;
}

struct Scan {
  std::vector<json> objects;
  std::vector<SegmentationException> exceptions;
  Posture run(const SegmentationPolicy& p) const {
    PostureInput in;
    in.ns = "shop";
    in.policy = &p;
    const Labels labels{{"kubernetes.io/metadata.name", "shop"}};
    in.namespaceLabels = &labels;
    in.exceptions = &exceptions;
    in.now = kNow;
    std::vector<json> compact;
    for (const auto& o : objects) {
      compact.push_back(cached(o));
    }
    for (const auto& o : compact) {
      in.objects.push_back(&o);
    }
    return scanNamespace(in);
  }
};

TEST_CASE("scanNamespace: findings per object and rule, with the webhook's messages") {
  const SegmentationPolicy p = policyNamed("baseline");
  Scan scan;
  scan.objects = {
      pod("ok", {{"containers", {container()}}}),
      pod("host", {{"hostNetwork", true},
                   {"containers", {container({{"securityContext", {{"privileged", true}}}})}}}),
      pod("unlabelled", {{"containers", {container()}}}, nullptr),
      pod("gone", {{"hostPID", true}, {"containers", {container()}}}),
      pod("broken", {{"containers", "app"}}),
      workload("Deployment", "web",
               {{"containers",
                 {container({{"ports", {{{"hostPort", 80}}, {{"hostPort", 81}}}}})}}}),
      // Judged as part of their owners, which are scanned.
      workload("ReplicaSet", "web-5d8f", {{"hostNetwork", true}, {"containers", {container()}}},
               {{"apiVersion", "apps/v1"}, {"kind", "Deployment"}, {"name", "web"},
                {"controller", true}}),
      workload("Job", "nightly-1", {{"hostIPC", true}, {"containers", {container()}}},
               {{"apiVersion", "batch/v1"}, {"kind", "CronJob"}, {"name", "nightly"},
                {"controller", true}}),
      // A Job some other controller made is scanned on its own.
      workload("Job", "made-elsewhere", {{"hostIPC", true}, {"containers", {container()}}},
               {{"apiVersion", "example.com/v1"}, {"kind", "Pipeline"}, {"name", "p"},
                {"controller", true}}),
      workload("CronJob", "nightly", {{"containers", {container()}}}),
  };
  scan.objects[3]["metadata"]["deletionTimestamp"] = "2026-12-01T09:00:00Z";

  const Posture posture = scan.run(p);
  CHECK(posture.pods == 4);       // "gone" is on its way out
  CHECK(posture.workloads == 3);  // web, made-elsewhere, nightly
  CHECK(posture.violatingPods == 2);
  CHECK(posture.violatingWorkloads == 2);
  CHECK(posture.unreadable == 1);
  const std::vector<Finding> expected = {
      {"apps/v1", "Deployment", "web", "u-web", "forbidHostPorts",
       "bulkhead: deployment \"web\" in namespace \"shop\" has 2 violations of SegmentationPolicy "
       "\"baseline\": forbidHostPorts (spec.template.spec.containers[0].ports[0].hostPort=80): "
       "remove hostPort 80 from container \"app\"; forbidHostPorts "
       "(spec.template.spec.containers[0].ports[1].hostPort=81): remove hostPort 81 from "
       "container \"app\"; fix them or request a SegmentationException"},
      {"batch/v1", "Job", "made-elsewhere", "u-made-elsewhere", "forbidHostPIDIPC",
       "bulkhead: job \"made-elsewhere\" in namespace \"shop\" violates forbidHostPIDIPC "
       "(spec.template.spec.hostIPC=true) of SegmentationPolicy \"baseline\"; remove hostIPC or "
       "request a SegmentationException"},
      {"v1", "Pod", "broken", "u-broken", "",
       "bulkhead: cannot read the Pod: spec.containers: must be a list"},
      {"v1", "Pod", "host", "u-host", "forbidHostNetwork",
       "bulkhead: pod \"host\" in namespace \"shop\" violates forbidHostNetwork "
       "(spec.hostNetwork=true) of SegmentationPolicy \"baseline\"; remove hostNetwork or "
       "request a SegmentationException"},
      {"v1", "Pod", "host", "u-host", "forbidPrivileged",
       "bulkhead: pod \"host\" in namespace \"shop\" violates forbidPrivileged "
       "(spec.containers[0].securityContext.privileged=true) of SegmentationPolicy \"baseline\"; "
       "remove privileged: true from container \"app\" or request a SegmentationException"},
      {"v1", "Pod", "unlabelled", "u-unlabelled", "requiredLabels",
       "bulkhead: pod \"unlabelled\" in namespace \"shop\" violates requiredLabels "
       "(metadata.labels[app.kubernetes.io/name] is missing) of SegmentationPolicy \"baseline\"; "
       "add label app.kubernetes.io/name or request a SegmentationException"},
  };
  CHECK(posture.findings.size() == expected.size());
  for (size_t i = 0; i < std::min(expected.size(), posture.findings.size()); ++i) {
    CAPTURE(i);
    CHECK(posture.findings[i].message == expected[i].message);
    CHECK(posture.findings[i] == expected[i]);
  }

  // An active exception for forbidHostNetwork leaves "host" with its other rule only; once it
  // has expired, both count again.
  SegmentationException ex;
  ex.name = "host-net";
  ex.ns = "shop";
  ex.rules = {"forbidHostNetwork"};
  ex.expiresAt = kNow + std::chrono::hours(1);
  scan.exceptions = {ex};
  Posture excepted = scan.run(p);
  CHECK(excepted.violatingPods == 2);
  CHECK(std::count_if(excepted.findings.begin(), excepted.findings.end(),
                      [](const Finding& f) { return f.name == "host"; }) == 1);
  scan.exceptions[0].expiresAt = kNow - std::chrono::seconds(1);
  CHECK(scan.run(p) == posture);

  // No policy: nothing is scanned.
  PostureInput none;
  CHECK(scanNamespace(none) == Posture{});
}

TEST_CASE("postureReport: an OpenReports Report, results in the policy's mode") {
  Posture posture;
  posture.pods = 3;
  posture.workloads = 1;
  posture.violatingPods = 1;
  posture.unreadable = 1;
  posture.findings = {{"v1", "Pod", "host", "u-host", "forbidHostNetwork", "m1"},
                      {"v1", "Pod", "broken", "u-broken", "", "m2"}};
  const json expected = json::parse(R"({
    "apiVersion": "openreports.io/v1alpha1",
    "kind": "Report",
    "metadata": {
      "name": "bulkhead",
      "namespace": "shop",
      "labels": {"app.kubernetes.io/managed-by": "bulkhead", "bulkhead.dev/policy": "baseline"},
      "annotations": {"bulkhead.dev/violating-pods": "1",
                      "bulkhead.dev/violating-workloads": "0",
                      "bulkhead.dev/listed-results": "2 of 2"}
    },
    "scope": {"apiVersion": "v1", "kind": "Namespace", "name": "shop"},
    "summary": {"pass": 2, "fail": 1, "warn": 0, "error": 1, "skip": 0},
    "results": [
      {"source": "bulkhead", "policy": "baseline", "rule": "forbidHostNetwork",
       "category": "Segmentation", "severity": "high", "result": "fail", "scored": true,
       "message": "m1", "properties": {"mode": "Enforce"},
       "resources": [{"apiVersion": "v1", "kind": "Pod", "namespace": "shop", "name": "host",
                      "uid": "u-host"}]},
      {"source": "bulkhead", "policy": "baseline", "category": "Segmentation",
       "result": "error", "scored": true, "message": "m2", "properties": {"mode": "Enforce"},
       "resources": [{"apiVersion": "v1", "kind": "Pod", "namespace": "shop", "name": "broken",
                      "uid": "u-broken"}]}
    ]
  })");
  CHECK(postureReport("shop", policyNamed("baseline"), posture) == expected);

  const json warned = postureReport("shop", policyNamed("baseline", Mode::kWarn), posture);
  CHECK(warned["results"][0]["result"] == "warn");
  CHECK(warned["results"][0]["properties"]["mode"] == "Warn");
  CHECK(warned["summary"] ==
        json{{"pass", 2}, {"fail", 0}, {"warn", 1}, {"error", 1}, {"skip", 0}});

  // A namespace with more findings than a Report holds lists the first ones, counts them all.
  Posture many;
  many.pods = 1500;
  many.violatingPods = 1500;
  for (int i = 0; i < 1500; ++i) {
    many.findings.push_back({"v1", "Pod", "p" + std::to_string(i), "", "forbidHostNetwork", "m"});
  }
  const json big = postureReport("shop", policyNamed("baseline"), many);
  CHECK(big["results"].size() == kMaxReportResults);
  CHECK(big["summary"]["fail"] == 1500);
  CHECK(big["metadata"]["annotations"]["bulkhead.dev/listed-results"] == "1000 of 1500");
}

}  // namespace
}  // namespace bulkhead::policy
