// What Istio and Kubernetes legitimately do, through the real API server with the chart installed
// and Bulkhead serving: workloads exactly as Istio's own injector outputs them (built from the
// istio.io/istio module: tests/tools/istio-inject), istiod's own waypoint Deployment, ambient
// namespaces, a segmented namespace deleted by the real namespace controller, and the real Job
// controller removing its pod finalizers after the exception that admitted the pods expired.
#include <doctest/doctest.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "policy/segmentation.h"
#include "tests/support/bulkhead_process.h"
#include "tests/support/control_plane.h"

namespace bulkhead::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

ProcessResult shell(const std::string& script, const std::string& input = "") {
  return ControlPlane::get().shell(script, input);
}

// A server-side dry run: the whole admission chain, webhooks included, and nothing stored.
ProcessResult dryRun(const json& object) {
  return kubectl({"create", "--dry-run=server", "-f", "-"}, object.dump());
}

// "+20 seconds" from now, as an RFC 3339 time.
std::string timeFromNow(const std::string& offset) {
  auto r = shell("date -u -d '" + offset + "' +%Y-%m-%dT%H:%M:%SZ");
  REQUIRE(r.exitCode == 0);
  return r.out.substr(0, r.out.size() - 1);
}

// Bulkhead (webhook and controllers) and the real kube-controller-manager, once per binary.
BulkheadProcess& bulkhead() {
  static BulkheadProcess* process = [] {
    BulkheadProcess* p = &servingBulkhead("bulkhead");
    REQUIRE(ControlPlane::get().startControllerManager("namespace,job,garbagecollector"));
    auto policies = kubectl({"apply", "-f", "-"}, R"(
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: baseline}
spec:
  namespaceSelector: {matchLabels: {zero-trust: "on"}}
  # Sidecar mode without Istio CNI (istio-init adds NET_ADMIN) and the hostNetwork Job below are
  # beyond Pod Security's baseline; Bulkhead's own rules are what these namespaces test.
  podSecurity: {enforce: privileged}
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: pod-security}
spec:
  namespaceSelector: {matchLabels: {zero-trust: "pss"}}
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: ambient}
spec:
  namespaceSelector: {matchLabels: {zero-trust: "ambient"}}
  authorization: {defaultDeny: true}
)");
    REQUIRE_MESSAGE(policies.exitCode == 0, policies.err);
    for (const auto& [ns, labels] : std::vector<std::pair<std::string, std::vector<std::string>>>{
             {"meshed", {"zero-trust=on", "istio-injection=enabled"}},
             {"jobs", {"zero-trust=on"}},
             {"meshed-pss", {"zero-trust=pss", "istio-injection=enabled"}},
             {"amb", {"zero-trust=ambient", "istio.io/dataplane-mode=ambient"}}}) {
      REQUIRE(kubectl({"create", "namespace", ns}).exitCode == 0);
      std::vector<std::string> args = {"label", "namespace", ns};
      args.insert(args.end(), labels.begin(), labels.end());
      REQUIRE(kubectl(args).exitCode == 0);
      REQUIRE(eventually(seconds(30), [&] {
        return kubectl({"get", "networkpolicy", policy::kDefaultDenyName, "-n", ns}).exitCode == 0;
      }));
    }
    // The webhook's caches know the policies once a pod on the host network is refused.
    json probe = {
        {"apiVersion", "v1"},
        {"kind", "Pod"},
        {"metadata", {{"name", "probe"}, {"namespace", "meshed"}}},
        {"spec", {{"hostNetwork", true}, {"containers", {{{"name", "c"}, {"image", "x"}}}}}}};
    REQUIRE(eventually(seconds(30), [&] { return dryRun(probe).exitCode != 0; }));
    return p;
  }();
  return *process;
}

// The ordinary workloads a team deploys, before injection: each kind the issue names.
std::string workloads(const std::string& ns, const std::string& extraAnnotations = "") {
  const std::string meta =
      R"("labels": {"app.kubernetes.io/name": "NAME"}, "annotations": {)" + extraAnnotations + "}";
  // A ServiceAccount of its own, as the injector's projected token volume requires.
  const std::string podSpec =
      R"({"serviceAccountName": "app", "containers": [{"name": "app", "image": "registry.example/app:1.0",
                          "ports": [{"containerPort": 8080}]}]})";
  auto named = [&](const std::string& name, const std::string& extraLabels = "") {
    std::string m = meta;
    m.replace(m.find("NAME"), 4, name);
    if (!extraLabels.empty()) {
      m.insert(m.find('}'), ", " + extraLabels);
    }
    return m;
  };
  std::string jobSpec =
      R"({"template": {"metadata": {)" + named("batch") +
      R"(}, "spec": {"restartPolicy": "Never", "serviceAccountName": "app", "containers": [{"name": "app",
                           "image": "registry.example/app:1.0"}]}}})";
  std::vector<std::string> docs = {
      R"({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": ")" + ns +
          R"(", )" + named("web") + R"(}, "spec": )" + podSpec + "}",
      R"({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": ")" +
          ns + R"("}, "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "api"}},
          "template": {"metadata": {)" +
          named("api") + R"(}, "spec": )" + podSpec + "}}}",
      R"({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": ")" +
          ns +
          R"("}, "spec": {"serviceName": "db", "selector": {"matchLabels": {"app.kubernetes.io/name": "db"}},
          "template": {"metadata": {)" +
          named("db") + R"(}, "spec": )" + podSpec + "}}}",
      R"({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "namespace": ")" +
          ns + R"("}, "spec": )" + jobSpec + "}",
      R"({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": ")" +
          ns + R"("}, "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": )" + jobSpec +
          "}}}",
      // A pod that asks for injection itself.
      R"({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "asks-1", "namespace": ")" + ns +
          R"(", )" + named("asks", R"("sidecar.istio.io/inject": "true")") + R"(}, "spec": )" +
          podSpec + "}",
  };
  std::string out;
  for (const auto& d : docs) {
    out += "---\n" + d + "\n";
  }
  return out;
}

struct Mode {
  bool cni;
  bool native;
  std::string name() const {
    return std::string(cni ? "Istio CNI" : "istio-init") + ", " +
           (native ? "native sidecar" : "sidecar container");
  }
};
const std::vector<Mode> kModes = {{false, false}, {false, true}, {true, false}, {true, true}};

// The workloads as Istio's injector outputs them in `mode`.
json inject(const std::string& input, const Mode& mode, const std::string& extraFlags = "") {
  auto r =
      shell(std::string("\"$TESTENV_ISTIO_INJECT\" --output json") + (mode.cni ? " --cni" : "") +
                " --native-sidecars=" + (mode.native ? "true" : "false") + " " + extraFlags,
            input);
  REQUIRE_MESSAGE(r.exitCode == 0, r.err);
  json out = json::parse(r.out, nullptr, false);
  REQUIRE(out.is_array());
  return out;
}

// The pod spec inside a workload (or the Pod's own).
json& podSpecOf(json& o) {
  std::string kind = o["kind"];
  if (kind == "Pod") {
    return o["spec"];
  }
  if (kind == "CronJob") {
    return o["spec"]["jobTemplate"]["spec"]["template"]["spec"];
  }
  return o["spec"]["template"]["spec"];
}

std::string describe(const json& o) {
  return o["kind"].get<std::string>() + " " + o["metadata"]["name"].get<std::string>();
}

TEST_CASE("workloads injected by Istio's own injector are admitted in every mode") {
  bulkhead();
  int admitted = 0;
  for (const Mode& mode : kModes) {
    json injected = inject(workloads("meshed"), mode);
    REQUIRE(injected.size() == 6);
    for (const auto& o : injected) {
      CAPTURE(mode.name());
      CAPTURE(describe(o));
      // It really is the injector's output: its proxy, and its iptables setup or CNI check.
      std::string text = o.dump();
      REQUIRE(text.find("\"istio-proxy\"") != std::string::npos);
      REQUIRE(text.find(mode.cni ? "\"istio-validation\"" : "\"istio-init\"") != std::string::npos);
      auto r = dryRun(o);
      CHECK_MESSAGE(r.exitCode == 0, r.err);
      admitted += r.exitCode == 0;
    }
  }
  CHECK(admitted == 24);
  // Under Pod Security's baseline (the default), sidecar mode needs Istio CNI: istio-init's
  // NET_ADMIN and NET_RAW are refused by the API server itself.
  REQUIRE(eventually(seconds(30), [] {
    return kubectl({"get", "namespace", "meshed-pss", "-o",
                    "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}"})
               .out == "baseline";
  }));
  for (const Mode& mode : kModes) {
    CAPTURE(mode.name());
    json pod = inject(workloads("meshed-pss"), mode)[0];
    auto r = dryRun(pod);
    if (mode.cni) {
      CHECK_MESSAGE(r.exitCode == 0, r.err);
    } else {
      CHECK_MESSAGE(r.err.find("violates PodSecurity \"baseline:latest\": non-default "
                               "capabilities") != std::string::npos,
                    r.err);
    }
  }
  // Created for real, not only dry-run: the injected Deployment is stored as the injector wrote it.
  json deployment = inject(workloads("meshed"), {true, true})[1];
  auto created = kubectl({"create", "-f", "-"}, deployment.dump());
  CHECK_MESSAGE(created.exitCode == 0, created.err);
  kubectl({"delete", "deployment", "api", "-n", "meshed", "--wait=false"});
}

TEST_CASE("the same workloads with an opt-out, a borrowed name or a foreign image are refused") {
  bulkhead();
  for (const Mode& mode : kModes) {
    CAPTURE(mode.name());
    // A user's opt-out, which the injector honours and keeps.
    json optedOut = inject(
        workloads("meshed", R"("traffic.sidecar.istio.io/excludeOutboundPorts": "5432")"), mode);
    for (const auto& o : optedOut) {
      CAPTURE(describe(o));
      std::string d = denial(dryRun(o));
      CHECK_MESSAGE(d.find("violates requireSidecar (") != std::string::npos, d);
      CHECK_MESSAGE(
          d.find("[traffic.sidecar.istio.io/excludeOutboundPorts]=\"5432\")") != std::string::npos,
          d);
      CHECK(d.find("of SegmentationPolicy \"baseline\"") != std::string::npos);
    }
    // Proxy images from a hub that is not the mesh's.
    json foreign = inject(workloads("meshed"), mode, "--hub evil.example/istio");
    for (const auto& o : foreign) {
      CAPTURE(describe(o));
      std::string d = denial(dryRun(o));
      CHECK_MESSAGE(d.find("is not the one Istio's injector adds: its image "
                           "\"evil.example/istio/proxyv2:1.28.0\" is not one of "
                           "spec.mesh.proxyImages") != std::string::npos,
                    d);
      // Each of the injector's containers fails: the CNI check's and the proxy's user, or
      // istio-init's capabilities.
      CHECK(d.find(mode.cni ? "requireSidecar (" : "forbiddenCapabilities (") != std::string::npos);
    }
    // A tenant container that takes the name of the injector's init container, in front of it.
    json borrowed = inject(workloads("meshed"), mode);
    for (auto& o : borrowed) {
      CAPTURE(describe(o));
      json& spec = podSpecOf(o);
      json impostor = {
          {"name", mode.cni ? "istio-validation" : "istio-init"},
          {"image", "registry.example/tools:1.0"},
          {"command", {"sh", "-c", "iptables -t nat -F"}},
          {"securityContext", {{"runAsUser", 1337}, {"capabilities", {{"add", {"NET_ADMIN"}}}}}}};
      // Replace the injector's container of that name: the API server refuses duplicate names.
      for (auto& c : spec["initContainers"]) {
        if (c["name"] == impostor["name"]) {
          c = impostor;
        }
      }
      std::string d = denial(dryRun(o));
      CHECK_MESSAGE(d.find("init container \"" + impostor["name"].get<std::string>() +
                           "\" is not the one Istio's injector adds: its image "
                           "\"registry.example/tools:1.0\" is not one of spec.mesh.proxyImages") !=
                        std::string::npos,
                    d);
      CHECK(d.find("forbiddenCapabilities") != std::string::npos);
      CHECK(d.find("requireSidecar") != std::string::npos);
    }
  }
}

TEST_CASE("an ambient namespace: its generated objects, its opt-outs and istiod's waypoint") {
  bulkhead();
  auto pol = kubectl({"get", "segmentationpolicy", "ambient", "-o", "json"});
  REQUIRE(pol.exitCode == 0);
  auto decoded = policy::decodeSegmentationPolicy(json::parse(pol.out));
  REQUIRE(decoded.ok());
  auto ns = kubectl({"get", "namespace", "amb", "-o", "json"});
  REQUIRE(ns.exitCode == 0);
  json nsObj = json::parse(ns.out);
  policy::NamespaceFacts facts{"amb", policy::labelsOf(nsObj)};
  auto desired = policy::desiredObjects(*decoded, facts, {"bulkhead-system", true, {}});
  std::vector<std::string> ambientNames;
  for (const auto& want : desired) {
    std::string name = want["metadata"]["name"];
    std::string resource = want["kind"] == "NetworkPolicy" ? "networkpolicy"
                           : want["kind"] == "PeerAuthentication"
                               ? "peerauthentications.security.istio.io"
                               : "authorizationpolicies.security.istio.io";
    CAPTURE(name);
    json have;
    REQUIRE(eventually(seconds(30), [&] {
      auto r = kubectl({"get", resource, name, "-n", "amb", "-o", "json"});
      if (r.exitCode != 0) {
        return false;
      }
      have = json::parse(r.out);
      return have["spec"] == want["spec"];
    }));
    if (name.find("waypoint") != std::string::npos || name == "bulkhead-allow-ambient") {
      ambientNames.push_back(name);
    }
  }
  CHECK(ambientNames ==
        std::vector<std::string>{"bulkhead-allow-ambient", "bulkhead-allow-waypoint",
                                 "bulkhead-allow-waypoints", "bulkhead-waypoint-allow-nothing"});

  // Pods need no sidecar here; leaving ambient capture is the opt-out.
  json pod = json::parse(R"({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "amb", "labels": {"app.kubernetes.io/name": "web"}},
    "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]}})");
  auto plain = dryRun(pod);
  CHECK_MESSAGE(plain.exitCode == 0, plain.err);
  pod["metadata"]["labels"]["istio.io/dataplane-mode"] = "none";
  CHECK(
      denial(dryRun(pod))
          .find(
              "bulkhead: pod \"web-1\" in namespace \"amb\" violates requireSidecar "
              "(metadata.labels[istio.io/dataplane-mode]=\"none\") of SegmentationPolicy "
              "\"ambient\"; remove the ambient opt-out label istio.io/dataplane-mode or request a "
              "SegmentationException") == 0);

  // The waypoint Deployment istiod's own deployment controller writes is admitted.
  auto waypoint = shell("\"$TESTENV_ISTIO_INJECT\" waypoint --name waypoint --namespace amb");
  REQUIRE_MESSAGE(waypoint.exitCode == 0, waypoint.err);
  json deployment = json::parse(waypoint.out);
  REQUIRE(deployment["kind"] == "Deployment");
  deployment["metadata"].erase("ownerReferences");  // its Gateway is not stored here
  auto admitted = dryRun(deployment);
  CHECK_MESSAGE(admitted.exitCode == 0, admitted.err);
  // A copy with a tenant's image under the waypoint's labels is not.
  podSpecOf(deployment)["containers"][0]["image"] = "registry.example/tools:1.0";
  std::string d = denial(dryRun(deployment));
  CHECK_MESSAGE(d.find("requireSidecar "
                       "(spec.template.metadata.labels[istio.io/dataplane-mode]=\"none\")") !=
                    std::string::npos,
                d);
}

TEST_CASE("a segmented namespace is deleted by the namespace controller and goes away") {
  BulkheadProcess& b = bulkhead();
  REQUIRE(kubectl({"create", "namespace", "doomed"}).exitCode == 0);
  REQUIRE(kubectl({"label", "namespace", "doomed", "zero-trust=on"}).exitCode == 0);
  REQUIRE(eventually(seconds(30), [] {
    return kubectl(
               {"get", "peerauthentications.security.istio.io", "bulkhead-mtls", "-n", "doomed"})
               .exitCode == 0;
  }));
  // As anyone but the controller, the generated objects stay while the namespace lives.
  CHECK(denial(kubectl({"delete", "networkpolicy", policy::kDefaultDenyName, "-n", "doomed"}))
            .find("is generated by Bulkhead") != std::string::npos);
  const double repairsBefore = b.metric("bulkhead_drift_repairs_total");
  REQUIRE(kubectl({"delete", "namespace", "doomed", "--wait=false"}).exitCode == 0);
  CHECK(eventually(seconds(90), [] {
    return kubectl({"get", "namespace", "doomed"}).exitCode != 0;
  }));
  CHECK(b.metric("bulkhead_drift_repairs_total") == repairsBefore);
}

TEST_CASE(
    "after the exception that admitted them expired, a Job's pods and a Deployment still "
    "take routine updates") {
  bulkhead();
  const std::string expires = timeFromNow("+25 seconds");
  auto exception = kubectl({"create", "-f", "-"}, R"({"apiVersion": "bulkhead.dev/v1alpha1",
    "kind": "SegmentationException", "metadata": {"name": "batch-host", "namespace": "jobs"},
    "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "batch"}},
             "rules": ["forbidHostNetwork"], "reason": "node-local batch import, TICKET-7",
             "expiresAt": ")" + expires + R"(", "requestedBy": "admin"}})");
  REQUIRE_MESSAGE(exception.exitCode == 0, exception.err);
  json job = json::parse(R"({"apiVersion": "batch/v1", "kind": "Job",
    "metadata": {"name": "import", "namespace": "jobs"},
    "spec": {"backoffLimit": 0, "template": {
      "metadata": {"labels": {"app.kubernetes.io/name": "batch"}},
      "spec": {"hostNetwork": true, "restartPolicy": "Never",
               "containers": [{"name": "import", "image": "registry.example/import:1.0"}]}}}})");
  json deployment = json::parse(R"({"apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "agent", "namespace": "jobs"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "batch"}},
      "template": {"metadata": {"labels": {"app.kubernetes.io/name": "batch"}},
        "spec": {"hostNetwork": true,
                 "containers": [{"name": "agent", "image": "registry.example/agent:1.0"}]}}}})");
  // Probes under other names: a dry run of an existing name fails for that reason alone.
  auto probe = [](json o) {
    o["metadata"]["name"] = o["metadata"]["name"].get<std::string>() + "-probe";
    return dryRun(o);
  };
  REQUIRE(eventually(seconds(15), [&] { return probe(job).exitCode == 0; }));
  auto createdJob = kubectl({"create", "-f", "-"}, job.dump());
  REQUIRE_MESSAGE(createdJob.exitCode == 0, createdJob.err);
  auto createdDeployment = kubectl({"create", "-f", "-"}, deployment.dump());
  REQUIRE_MESSAGE(createdDeployment.exitCode == 0, createdDeployment.err);
  // The real Job controller creates the pod (through the webhook) with its tracking finalizer.
  std::string podName;
  REQUIRE(eventually(seconds(30), [&] {
    auto r = kubectl({"get", "pods", "-n", "jobs", "-l", "batch.kubernetes.io/job-name=import",
                      "-o", "jsonpath={.items[0].metadata.name} {.items[0].metadata.finalizers}"});
    if (r.exitCode != 0 || r.out.find("batch.kubernetes.io/job-tracking") == std::string::npos) {
      return false;
    }
    podName = r.out.substr(0, r.out.find(' '));
    return true;
  }));
  // Once the exception has expired, the same objects are refused when created...
  REQUIRE(eventually(seconds(60), [&] {
    return denial(probe(job)).find("violates forbidHostNetwork") != std::string::npos;
  }));
  CHECK(denial(probe(deployment)).find("violates forbidHostNetwork") != std::string::npos);

  // ...but updates that change nothing a rule reads are admitted.
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"label", "deployment", "agent", "-n", "jobs", "team=blue"},
           {"annotate", "deployment", "agent", "-n", "jobs", "owner=platform"},
           {"scale", "deployment", "agent", "-n", "jobs", "--replicas=2"},
           {"label", "pod", podName, "-n", "jobs", "checked=yes"}}) {
    auto r = kubectl(args);
    CHECK_MESSAGE(r.exitCode == 0, args[0] << " " << args[1] << ": " << r.err);
  }
  // A change to the pod template is judged in full.
  auto image = kubectl(
      {"set", "image", "deployment/agent", "-n", "jobs", "agent=registry.example/agent:1.1"});
  CHECK(denial(image).find("bulkhead: deployment \"agent\" in namespace \"jobs\" violates "
                           "forbidHostNetwork (spec.template.spec.hostNetwork=true)") == 0);

  // Deleting the Job's pod: the Job controller removes its finalizer (an UPDATE), and it goes.
  REQUIRE(kubectl({"delete", "pod", podName, "-n", "jobs", "--wait=false"}).exitCode == 0);
  CHECK(eventually(seconds(60), [&] {
    return kubectl({"get", "pod", podName, "-n", "jobs"}).exitCode != 0;
  }));
  kubectl({"delete", "job", "import", "-n", "jobs", "--wait=false"});
  kubectl({"delete", "deployment", "agent", "-n", "jobs", "--wait=false"});
}

}  // namespace
}  // namespace bulkhead::testing
