#include "policy/pod_rules.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

namespace bulkhead::policy {
namespace {

using nlohmann::json;
using Strings = std::vector<std::string>;

// A pod every default rule allows.
json compliantPod() {
  return json::parse(R"({
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "shop",
                 "labels": {"app.kubernetes.io/name": "web"}},
    "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                             "ports": [{"containerPort": 8080}]}]}
  })");
}

// The pod template of `pod` (its labels, annotations and spec).
json templateOf(const json& pod) {
  json tpl = {{"metadata", json::object()}, {"spec", pod["spec"]}};
  for (const char* key : {"labels", "annotations"}) {
    if (pod["metadata"].contains(key)) {
      tpl["metadata"][key] = pod["metadata"][key];
    }
  }
  return tpl;
}

json workload(const std::string& kind, const json& pod) {
  return {{"apiVersion", kind == "CronJob" || kind == "Job" ? "batch/v1" : "apps/v1"},
          {"kind", kind},
          {"metadata", {{"name", "web"}, {"namespace", "shop"}}},
          {"spec", {{"replicas", 2}, {"template", templateOf(pod)}}}};
}

json cronJob(const json& pod) {
  return {
      {"apiVersion", "batch/v1"},
      {"kind", "CronJob"},
      {"metadata", {{"name", "nightly"}, {"namespace", "shop"}}},
      {"spec",
       {{"schedule", "0 3 * * *"}, {"jobTemplate", {{"spec", {{"template", templateOf(pod)}}}}}}}};
}

SegmentationPolicy baseline() {
  SegmentationPolicy p;
  p.name = "baseline";
  return p;
}

// mTLS STRICT and the namespace's default-deny in place: every rule applies, none fires for
// requireSegmentedNamespace.
PodContext segmented() {
  PodContext c;
  c.mtlsStrict = true;
  c.defaultDenyExists = true;
  return c;
}

PodFacts facts(const json& object) {
  auto f = decodePodFacts(object);
  REQUIRE_MESSAGE(f.ok(), f.status().toString());
  return *f;
}

std::vector<Violation> violations(const json& object, const PodContext& context = segmented(),
                                  const SegmentationPolicy& policy = baseline()) {
  return evaluatePod(facts(object), policy, context);
}

Strings denials(const json& object, const PodContext& context = segmented(),
                const SegmentationPolicy& policy = baseline()) {
  PodFacts f = facts(object);
  Strings out;
  for (const auto& v : evaluatePod(f, policy, context)) {
    out.push_back(denialMessage(f, v, policy.name));
  }
  return out;
}

Strings rulesOf(const std::vector<Violation>& vs) {
  Strings out;
  for (const auto& v : vs) {
    out.push_back(v.rule);
  }
  return out;
}

Strings pathsOf(const std::vector<Violation>& vs) {
  Strings out;
  for (const auto& v : vs) {
    out.push_back(v.path);
  }
  return out;
}

std::string decodeError(const json& object) {
  auto f = decodePodFacts(object);
  REQUIRE_FALSE(f.ok());
  CHECK(f.status().code() == StatusCode::kInvalid);
  return f.status().message();
}

json::json_pointer ptr(const std::string& p) { return json::json_pointer(p); }

// `object` without the member at `pointer`.
json erased(json object, const std::string& pointer) {
  json::json_pointer p = ptr(pointer);
  object[p.parent_pointer()].erase(p.back());
  return object;
}

const std::string kTail = " of SegmentationPolicy \"baseline\"; ";

// ---------------------------------------------------------------------------------------------
// PodFacts

TEST_CASE("decodePodFacts reads every fact of a Pod with its field path") {
  json pod = json::parse(R"({
    "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"},
                 "annotations": {"note": "x"}},
    "spec": {
      "hostNetwork": true, "hostPID": false,
      "securityContext": {"runAsUser": 1000},
      "containers": [
        {"name": "web", "image": "nginx",
         "ports": [{"containerPort": 80}, {"containerPort": 443, "hostPort": 8443}],
         "securityContext": {"privileged": true, "allowPrivilegeEscalation": false,
                             "runAsUser": 1337,
                             "capabilities": {"add": ["NET_BIND_SERVICE", "cap_net_admin"],
                                              "drop": ["ALL"]}}}],
      "initContainers": [{"name": "setup", "image": "busybox"}],
      "ephemeralContainers": [{"name": "debugger", "image": "busybox",
                               "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}}}]
    }
  })");
  PodFacts f = facts(pod);
  CHECK(f.kind == "Pod");
  CHECK(f.name == "web-1");
  CHECK(f.ns == "shop");
  CHECK(f.labels == Field<Labels>{{{"app", "web"}}, "metadata.labels"});
  CHECK(f.annotations == Field<Labels>{{{"note", "x"}}, "metadata.annotations"});
  CHECK(f.hostNetwork == Field<bool>{true, "spec.hostNetwork"});
  CHECK(f.hostPID == Field<bool>{false, "spec.hostPID"});
  CHECK(f.hostIPC == Field<bool>{false, "spec.hostIPC"});
  CHECK(f.runAsUser.value == 1000);
  CHECK(f.runAsUser.path == "spec.securityContext.runAsUser");
  REQUIRE(f.containers.size() == 3);

  const ContainerFacts& web = f.containers[0];
  CHECK(web.kind == ContainerFacts::Kind::kRegular);
  CHECK(web.path == "spec.containers[0]");
  CHECK(web.name == "web");
  CHECK(web.image == "nginx");
  REQUIRE(web.hostPorts.size() == 1);
  CHECK(web.hostPorts[0] == Field<int64_t>{8443, "spec.containers[0].ports[1].hostPort"});
  CHECK(web.privileged == Field<bool>{true, "spec.containers[0].securityContext.privileged"});
  CHECK(web.allowPrivilegeEscalation.value == false);
  CHECK(web.allowPrivilegeEscalation.path ==
        "spec.containers[0].securityContext.allowPrivilegeEscalation");
  CHECK(web.runAsUser.value == 1337);
  CHECK(web.runAsUser.path == "spec.containers[0].securityContext.runAsUser");
  REQUIRE(web.addedCapabilities.size() == 2);
  CHECK(web.addedCapabilities[1] ==
        Field<std::string>{"cap_net_admin",
                           "spec.containers[0].securityContext.capabilities.add[1]"});

  const ContainerFacts& setup = f.containers[1];
  CHECK(setup.kind == ContainerFacts::Kind::kInit);
  CHECK(setup.path == "spec.initContainers[0]");
  CHECK_FALSE(setup.allowPrivilegeEscalation.value.has_value());
  CHECK_FALSE(setup.runAsUser.value.has_value());
  CHECK(setup.runAsUser.path == "spec.initContainers[0].securityContext.runAsUser");

  const ContainerFacts& debugger = f.containers[2];
  CHECK(debugger.kind == ContainerFacts::Kind::kEphemeral);
  CHECK(debugger.addedCapabilities ==
        std::vector<Field<std::string>>{
            {"SYS_PTRACE", "spec.ephemeralContainers[0].securityContext.capabilities.add[0]"}});
}

TEST_CASE("decodePodFacts reads the pod template of every workload kind") {
  json pod = compliantPod();
  pod["spec"]["hostIPC"] = true;
  pod["metadata"]["annotations"] = {{"a", "b"}};
  for (const char* kind :
       {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"}) {
    CAPTURE(kind);
    PodFacts f = facts(workload(kind, pod));
    CHECK(f.kind == kind);
    CHECK(f.name == "web");
    CHECK(f.ns == "shop");
    CHECK(f.labels ==
          Field<Labels>{{{"app.kubernetes.io/name", "web"}}, "spec.template.metadata.labels"});
    CHECK(f.annotations == Field<Labels>{{{"a", "b"}}, "spec.template.metadata.annotations"});
    CHECK(f.hostIPC == Field<bool>{true, "spec.template.spec.hostIPC"});
    CHECK(f.hostNetwork == Field<bool>{false, "spec.template.spec.hostNetwork"});
    REQUIRE(f.containers.size() == 1);
    CHECK(f.containers[0].path == "spec.template.spec.containers[0]");
  }

  PodFacts cj = facts(cronJob(pod));
  CHECK(cj.name == "nightly");
  CHECK(cj.labels.path == "spec.jobTemplate.spec.template.metadata.labels");
  CHECK(cj.hostIPC == Field<bool>{true, "spec.jobTemplate.spec.template.spec.hostIPC"});
  CHECK(cj.runAsUser.path == "spec.jobTemplate.spec.template.spec.securityContext.runAsUser");
  CHECK(cj.containers[0].path == "spec.jobTemplate.spec.template.spec.containers[0]");

  CHECK(podTemplatePath("Pod") == "");
  CHECK(podTemplatePath("CronJob") == "spec.jobTemplate.spec.template");
  CHECK_FALSE(podTemplatePath("Service").has_value());
}

TEST_CASE("decodePodFacts: absent optional parts and generateName") {
  json pod = json::parse(R"({"kind": "Pod",
    "metadata": {"generateName": "web-7d9f-", "labels": null},
    "spec": {"containers": null, "securityContext": null, "hostNetwork": null}})");
  PodFacts f = facts(pod);
  CHECK(f.name == "web-7d9f-");
  CHECK(f.ns.empty());
  CHECK(f.labels.value.empty());
  CHECK(f.labels.path == "metadata.labels");
  CHECK_FALSE(f.hostNetwork.value);
  CHECK_FALSE(f.runAsUser.value.has_value());
  CHECK(f.containers.empty());

  // A template without metadata has no labels; its paths still point into the template.
  json d = workload("Deployment", compliantPod());
  d["spec"]["template"].erase("metadata");
  PodFacts df = facts(d);
  CHECK(df.labels.value.empty());
  CHECK(df.labels.path == "spec.template.metadata.labels");
}

TEST_CASE("decodePodFacts: malformed shapes are Invalid and name the path") {
  struct Case {
    std::string name;
    json object;
    std::string message;
  };
  json pod = compliantPod();
  auto with = [&](const std::string& pointer, json value) {
    json copy = pod;
    copy[ptr(pointer)] = std::move(value);
    return copy;
  };
  json deployment = workload("Deployment", pod);
  auto deploymentWith = [&](const std::string& pointer, json value) {
    json copy = deployment;
    copy[ptr(pointer)] = std::move(value);
    return copy;
  };
  json cj = cronJob(pod);
  cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"] =
      json::parse(R"([{"name": "i", "securityContext": {"capabilities": {"add": ["A", 7]}}}])");

  const std::vector<Case> cases = {
      {"not an object", json::array(), "object: must be a JSON object"},
      {"no kind", json::object(), "kind: required"},
      {"kind not a string", with("/kind", 3), "kind: must be a string"},
      {"kind without a pod", with("/kind", "Service"), "kind: \"Service\" has no pod template"},
      {"metadata", with("/metadata", "x"), "metadata: must be an object"},
      {"name", with("/metadata/name", 5), "metadata.name: must be a string"},
      {"namespace", with("/metadata/namespace", true), "metadata.namespace: must be a string"},
      {"labels", with("/metadata/labels", json::array()), "metadata.labels: must be an object"},
      {"label value", with("/metadata/labels/tier", 1), "metadata.labels[tier]: must be a string"},
      {"annotation value", with("/metadata/annotations", {{"a", {{"b", 1}}}}),
       "metadata.annotations[a]: must be a string"},
      {"no spec", erased(pod, "/spec"), "spec: required"},
      {"spec", with("/spec", json::array()), "spec: must be an object"},
      {"hostNetwork", with("/spec/hostNetwork", "true"), "spec.hostNetwork: must be a boolean"},
      {"hostPID", with("/spec/hostPID", 1), "spec.hostPID: must be a boolean"},
      {"pod securityContext", with("/spec/securityContext", 1),
       "spec.securityContext: must be an object"},
      {"pod runAsUser", with("/spec/securityContext", {{"runAsUser", "1337"}}),
       "spec.securityContext.runAsUser: must be an integer"},
      {"pod runAsUser float", with("/spec/securityContext", {{"runAsUser", 1337.5}}),
       "spec.securityContext.runAsUser: must be an integer"},
      {"runAsUser out of range",
       with("/spec/securityContext", {{"runAsUser", uint64_t{18446744073709551615u}}}),
       "spec.securityContext.runAsUser: out of range"},
      {"containers", with("/spec/containers", json::object()), "spec.containers: must be a list"},
      {"container", with("/spec/containers/0", "web"), "spec.containers[0]: must be an object"},
      {"container name", with("/spec/containers/0/name", 1),
       "spec.containers[0].name: must be a string"},
      {"image", with("/spec/containers/0/image", json::array()),
       "spec.containers[0].image: must be a string"},
      {"ports", with("/spec/containers/0/ports", 80), "spec.containers[0].ports: must be a list"},
      {"port", with("/spec/containers/0/ports/0", 80),
       "spec.containers[0].ports[0]: must be an object"},
      {"hostPort", with("/spec/containers/0/ports/1", {{"hostPort", "80"}}),
       "spec.containers[0].ports[1].hostPort: must be an integer"},
      {"securityContext", with("/spec/containers/0/securityContext", true),
       "spec.containers[0].securityContext: must be an object"},
      {"privileged", with("/spec/containers/0/securityContext", {{"privileged", "yes"}}),
       "spec.containers[0].securityContext.privileged: must be a boolean"},
      {"allowPrivilegeEscalation",
       with("/spec/containers/0/securityContext", {{"allowPrivilegeEscalation", 0}}),
       "spec.containers[0].securityContext.allowPrivilegeEscalation: must be a boolean"},
      {"container runAsUser", with("/spec/containers/0/securityContext", {{"runAsUser", true}}),
       "spec.containers[0].securityContext.runAsUser: must be an integer"},
      {"capabilities", with("/spec/containers/0/securityContext", {{"capabilities", "ALL"}}),
       "spec.containers[0].securityContext.capabilities: must be an object"},
      {"add", with("/spec/containers/0/securityContext", {{"capabilities", {{"add", "ALL"}}}}),
       "spec.containers[0].securityContext.capabilities.add: must be a list"},
      {"init containers", with("/spec/initContainers", "x"), "spec.initContainers: must be a list"},
      {"ephemeral container", with("/spec/ephemeralContainers", {1}),
       "spec.ephemeralContainers[0]: must be an object"},
      {"no template", erased(deployment, "/spec/template"), "spec.template: required"},
      {"deployment spec", deploymentWith("/spec", 1), "spec: must be an object"},
      {"template", deploymentWith("/spec/template", json::array()),
       "spec.template: must be an object"},
      {"template metadata", deploymentWith("/spec/template/metadata", 1),
       "spec.template.metadata: must be an object"},
      {"template label", deploymentWith("/spec/template/metadata/labels/x", false),
       "spec.template.metadata.labels[x]: must be a string"},
      {"template spec", erased(deployment, "/spec/template/spec"), "spec.template.spec: required"},
      {"template hostPort",
       deploymentWith("/spec/template/spec/containers/0/ports/0/hostPort", 1.5),
       "spec.template.spec.containers[0].ports[0].hostPort: must be an integer"},
      {"cronjob jobTemplate", erased(cronJob(pod), "/spec/jobTemplate"),
       "spec.jobTemplate: required"},
      {"cronjob capability", cj,
       "spec.jobTemplate.spec.template.spec.initContainers[0].securityContext.capabilities.add[1]: "
       "must be a string"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    CHECK(decodeError(c.object) == c.message);
  }
}

// ---------------------------------------------------------------------------------------------
// Rules, one by one, both ways

TEST_CASE("a compliant pod, deployment and cronjob have no violations") {
  CHECK(violations(compliantPod()).empty());
  CHECK(violations(workload("Deployment", compliantPod())).empty());
  CHECK(violations(cronJob(compliantPod())).empty());
}

TEST_CASE("requiredLabels") {
  json pod = compliantPod();
  pod["metadata"]["labels"] = {{"app", "web"}};
  CHECK(denials(pod) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates requiredLabels "
                "(metadata.labels[app.kubernetes.io/name] is missing)" +
                kTail + "add label app.kubernetes.io/name or request a SegmentationException"});
  CHECK(denials(workload("Deployment", pod)) ==
        Strings{"bulkhead: deployment \"web\" in namespace \"shop\" violates requiredLabels "
                "(spec.template.metadata.labels[app.kubernetes.io/name] is missing)" +
                kTail +
                "add label app.kubernetes.io/name to the pod template or request a "
                "SegmentationException"});

  // Every missing key, in key order; an empty value counts as present.
  SegmentationPolicy p = baseline();
  p.podRules.requiredLabels = {"team", "app.kubernetes.io/name", "team"};
  CHECK(pathsOf(violations(pod, segmented(), p)) ==
        Strings{"metadata.labels[app.kubernetes.io/name]", "metadata.labels[team]"});
  pod["metadata"]["labels"]["app.kubernetes.io/name"] = "";
  pod["metadata"]["labels"]["team"] = "payments";
  CHECK(violations(pod, segmented(), p).empty());
}

TEST_CASE("forbidHostNetwork") {
  json pod = compliantPod();
  pod["spec"]["hostNetwork"] = true;
  // SPEC 3.2's example, verbatim.
  CHECK(denials(pod) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates forbidHostNetwork "
                "(spec.hostNetwork=true) of SegmentationPolicy \"baseline\"; remove hostNetwork "
                "or request a SegmentationException"});
  CHECK(denials(workload("Deployment", pod)) ==
        Strings{"bulkhead: deployment \"web\" in namespace \"shop\" violates forbidHostNetwork "
                "(spec.template.spec.hostNetwork=true)" +
                kTail + "remove hostNetwork or request a SegmentationException"});
  CHECK(denials(cronJob(pod)) ==
        Strings{"bulkhead: cronjob \"nightly\" in namespace \"shop\" violates forbidHostNetwork "
                "(spec.jobTemplate.spec.template.spec.hostNetwork=true)" +
                kTail + "remove hostNetwork or request a SegmentationException"});
  pod["spec"]["hostNetwork"] = false;
  CHECK(violations(pod).empty());
}

TEST_CASE("forbidHostPorts") {
  json pod = compliantPod();
  pod["spec"]["containers"][0]["ports"] = {{{"containerPort", 8080}, {"hostPort", 0}},
                                           {{"containerPort", 9090}, {"hostPort", 9090}}};
  CHECK(denials(pod) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates forbidHostPorts "
                "(spec.containers[0].ports[1].hostPort=9090)" +
                kTail +
                "remove hostPort 9090 from container \"web\" or request a "
                "SegmentationException"});
  CHECK(denials(workload("StatefulSet", pod)) ==
        Strings{"bulkhead: statefulset \"web\" in namespace \"shop\" violates forbidHostPorts "
                "(spec.template.spec.containers[0].ports[1].hostPort=9090)" +
                kTail +
                "remove hostPort 9090 from container \"web\" or request a "
                "SegmentationException"});
  pod["spec"]["containers"][0]["ports"][1].erase("hostPort");
  CHECK(violations(pod).empty());  // hostPort 0 means none
}

TEST_CASE("forbidHostPIDIPC") {
  json pod = compliantPod();
  pod["spec"]["hostPID"] = true;
  pod["spec"]["hostIPC"] = true;
  CHECK(denials(pod) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates forbidHostPIDIPC "
                "(spec.hostIPC=true)" +
                    kTail + "remove hostIPC or request a SegmentationException",
                "bulkhead: pod \"web-1\" in namespace \"shop\" violates forbidHostPIDIPC "
                "(spec.hostPID=true)" +
                    kTail + "remove hostPID or request a SegmentationException"});
  pod["spec"]["hostIPC"] = false;
  CHECK(pathsOf(violations(pod)) == Strings{"spec.hostPID"});
  pod["spec"].erase("hostPID");
  CHECK(violations(pod).empty());
}

TEST_CASE("forbidPrivileged") {
  json pod = compliantPod();
  pod["spec"]["initContainers"] = json::parse(R"([{"name": "setup", "image": "busybox",
      "securityContext": {"privileged": true, "allowPrivilegeEscalation": true}}])");
  CHECK(denials(pod) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates forbidPrivileged "
                "(spec.initContainers[0].securityContext.privileged=true)" +
                kTail +
                "remove privileged: true from init container \"setup\" or request a "
                "SegmentationException"});
  json d = workload("DaemonSet", compliantPod());
  d[ptr("/spec/template/spec/containers/0/securityContext")] = {{"privileged", true}};
  CHECK(denials(d) ==
        Strings{"bulkhead: daemonset \"web\" in namespace \"shop\" violates forbidPrivileged "
                "(spec.template.spec.containers[0].securityContext.privileged=true)" +
                kTail +
                "remove privileged: true from container \"web\" or request a "
                "SegmentationException"});

  // The minimal fix: not privileged. allowPrivilegeEscalation without privileged is allowed.
  pod["spec"]["initContainers"][0]["securityContext"]["privileged"] = false;
  CHECK(violations(pod).empty());
}

TEST_CASE("forbiddenCapabilities covers init and ephemeral containers, with exact paths") {
  json pod = compliantPod();
  pod["spec"]["initContainers"] = json::parse(R"([{"name": "setup", "image": "busybox",
      "securityContext": {"capabilities": {"add": ["CHOWN", "cap_net_admin"]}}}])");
  pod["spec"]["ephemeralContainers"] = json::parse(R"([{"name": "debugger", "image": "busybox",
      "securityContext": {"capabilities": {"add": ["NET_RAW"]}}}])");
  CHECK(denials(pod) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates forbiddenCapabilities "
                "(spec.ephemeralContainers[0].securityContext.capabilities.add[0]=\"NET_RAW\")" +
                    kTail +
                    "remove NET_RAW from the added capabilities of ephemeral container "
                    "\"debugger\" or request a SegmentationException",
                "bulkhead: pod \"web-1\" in namespace \"shop\" violates forbiddenCapabilities "
                "(spec.initContainers[0].securityContext.capabilities.add[1]=\"cap_net_admin\")" +
                    kTail +
                    "remove NET_ADMIN from the added capabilities of init container "
                    "\"setup\" or request a SegmentationException"});

  json d = workload("Deployment", pod);
  d["spec"]["template"]["spec"].erase("ephemeralContainers");
  CHECK(denials(d) ==
        Strings{"bulkhead: deployment \"web\" in namespace \"shop\" violates "
                "forbiddenCapabilities (spec.template.spec.initContainers[0].securityContext."
                "capabilities.add[1]=\"cap_net_admin\")" +
                kTail +
                "remove NET_ADMIN from the added capabilities of init container "
                "\"setup\" or request a SegmentationException"});
  json cj = cronJob(pod);
  CHECK(pathsOf(violations(cj)) ==
        Strings{"spec.jobTemplate.spec.template.spec.ephemeralContainers[0].securityContext."
                "capabilities.add[0]",
                "spec.jobTemplate.spec.template.spec.initContainers[0].securityContext."
                "capabilities.add[1]"});

  // The minimal fix: add only capabilities not on the list.
  pod["spec"]["initContainers"][0]["securityContext"]["capabilities"]["add"] = {"CHOWN"};
  pod["spec"]["ephemeralContainers"][0]["securityContext"]["capabilities"]["add"] = {"SYS_PTRACE"};
  CHECK(violations(pod).empty());
}

TEST_CASE("capability names are normalised on both sides; ALL counts as every capability") {
  CHECK(normalizeCapability("cap_net_admin") == "NET_ADMIN");
  CHECK(normalizeCapability("CAP_SYS_ADMIN") == "SYS_ADMIN");
  CHECK(normalizeCapability("Cap_Net_Raw") == "NET_RAW");
  CHECK(normalizeCapability("net_admin") == "NET_ADMIN");
  CHECK(normalizeCapability("all") == "ALL");
  CHECK(normalizeCapability("CAP") == "CAP");

  json pod = compliantPod();
  pod[ptr("/spec/containers/0/securityContext/capabilities/add")] = {
      "cap_net_admin", "CAP_SYS_ADMIN", "net_raw", "all", "NET_BIND_SERVICE", "CAP_CHOWN"};
  std::vector<Violation> vs = violations(pod);
  REQUIRE(pathsOf(vs) == Strings{"spec.containers[0].securityContext.capabilities.add[0]",
                                 "spec.containers[0].securityContext.capabilities.add[1]",
                                 "spec.containers[0].securityContext.capabilities.add[2]",
                                 "spec.containers[0].securityContext.capabilities.add[3]"});
  CHECK(vs[3].detail == "spec.containers[0].securityContext.capabilities.add[3]=\"all\"");
  CHECK(denialMessage(facts(pod), vs[3], "baseline") ==
        "bulkhead: pod \"web-1\" in namespace \"shop\" violates forbiddenCapabilities "
        "(spec.containers[0].securityContext.capabilities.add[3]=\"all\")" +
            kTail +
            "remove ALL from the added capabilities of container \"web\" or request a "
            "SegmentationException");

  // The policy's list is normalised too.
  SegmentationPolicy p = baseline();
  p.podRules.forbiddenCapabilities = {"cap_chown"};
  CHECK(pathsOf(violations(pod, segmented(), p)) ==
        Strings{"spec.containers[0].securityContext.capabilities.add[3]",
                "spec.containers[0].securityContext.capabilities.add[5]"});
  // Forbidding ALL forbids adding any capability.
  p.podRules.forbiddenCapabilities = {"ALL"};
  CHECK(violations(pod, segmented(), p).size() == 6);
}

TEST_CASE("requireSidecar: opt-out labels and annotations in a STRICT namespace") {
  json pod = compliantPod();
  pod["metadata"]["labels"]["sidecar.istio.io/inject"] = "false";
  CHECK(denials(pod) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
                "(metadata.labels[sidecar.istio.io/inject]=\"false\")" +
                kTail +
                "remove the sidecar opt-out label sidecar.istio.io/inject or request a "
                "SegmentationException"});
  json d = workload("Deployment", pod);
  CHECK(denials(d) ==
        Strings{"bulkhead: deployment \"web\" in namespace \"shop\" violates requireSidecar "
                "(spec.template.metadata.labels[sidecar.istio.io/inject]=\"false\")" +
                kTail +
                "remove the sidecar opt-out label sidecar.istio.io/inject or request a "
                "SegmentationException"});
  // Asking for injection and arriving without the injector's proxy: injection failed or was
  // bypassed.
  pod["metadata"]["labels"]["sidecar.istio.io/inject"] = "true";
  CHECK(denials(pod) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
                "(spec.containers has no istio-proxy, though injection is requested by its "
                "label sidecar.istio.io/inject=true)" +
                kTail +
                "let Istio's injector add its sidecar: check that the revision exists and its "
                "injector is running, and create the pod again or request a "
                "SegmentationException"});
  pod["metadata"]["labels"]["sidecar.istio.io/inject"] = "yes";  // not what the injector selects
  CHECK(violations(pod).empty());

  pod = compliantPod();
  pod["metadata"]["annotations"] = {
      {"sidecar.istio.io/inject", "False"},
      {"traffic.sidecar.istio.io/excludeInboundPorts", "8080"},
      {"traffic.sidecar.istio.io/excludeOutboundPorts", "5432"},
      {"traffic.sidecar.istio.io/excludeOutboundIPRanges", "10.0.0.0/8"},
      {"traffic.sidecar.istio.io/includeOutboundIPRanges", "10.96.0.0/12"},
      {"traffic.sidecar.istio.io/excludeInterfaces", "eth1"},
      {"traffic.sidecar.istio.io/includeInboundPorts", "8080"},
      {"traffic.sidecar.istio.io/includeOutboundPorts", "9090"},  // adds capture: allowed
      {"sidecar.istio.io/proxyCPU", "100m"},                      // unrelated
  };
  CHECK(denials(pod) ==
        Strings{
            "bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
            "(metadata.annotations[sidecar.istio.io/inject]=\"False\")" +
                kTail +
                "remove the sidecar opt-out annotation sidecar.istio.io/inject or "
                "request a SegmentationException",
            "bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
            "(metadata.annotations[traffic.sidecar.istio.io/excludeInboundPorts]=\"8080\")" +
                kTail +
                "remove the sidecar opt-out annotation "
                "traffic.sidecar.istio.io/excludeInboundPorts or request a "
                "SegmentationException",
            "bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
            "(metadata.annotations[traffic.sidecar.istio.io/excludeInterfaces]=\"eth1\")" +
                kTail +
                "remove the sidecar opt-out annotation "
                "traffic.sidecar.istio.io/excludeInterfaces or request a "
                "SegmentationException",
            "bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
            "(metadata.annotations[traffic.sidecar.istio.io/excludeOutboundIPRanges]="
            "\"10.0.0.0/8\")" +
                kTail +
                "remove the sidecar opt-out annotation "
                "traffic.sidecar.istio.io/excludeOutboundIPRanges or request a "
                "SegmentationException",
            "bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
            "(metadata.annotations[traffic.sidecar.istio.io/excludeOutboundPorts]=\"5432\")" +
                kTail +
                "remove the sidecar opt-out annotation "
                "traffic.sidecar.istio.io/excludeOutboundPorts or request a "
                "SegmentationException",
            "bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
            "(metadata.annotations[traffic.sidecar.istio.io/includeInboundPorts]=\"8080\")" +
                kTail +
                "remove the sidecar opt-out annotation "
                "traffic.sidecar.istio.io/includeInboundPorts or request a "
                "SegmentationException",
            "bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
            "(metadata.annotations[traffic.sidecar.istio.io/includeOutboundIPRanges]="
            "\"10.96.0.0/12\")" +
                kTail +
                "remove the sidecar opt-out annotation "
                "traffic.sidecar.istio.io/includeOutboundIPRanges or request a "
                "SegmentationException",
        });

  // Every value Istio does not read as "inject" opts out, not only "false".
  for (const char* value : {"false", "FALSE", "no", "off", "0", "n", "disabled"}) {
    CAPTURE(value);
    json p = compliantPod();
    p["metadata"]["annotations"] = {{"sidecar.istio.io/inject", value}};
    CHECK(rulesOf(violations(p)) == Strings{"requireSidecar"});
  }
  for (const char* value : {"True", "yes", "y", "on", ""}) {
    CAPTURE(value);
    json p = compliantPod();
    p["metadata"]["labels"]["sidecar.istio.io/inject"] = value;
    p["metadata"]["annotations"] = {{"sidecar.istio.io/inject", value},
                                    {"traffic.sidecar.istio.io/includeInboundPorts", "*"}};
    CHECK(violations(p).empty());
  }
}

TEST_CASE("requireSidecar: runAsUser 1337 outside the proxy") {
  json pod = compliantPod();
  pod["spec"]["securityContext"] = {{"runAsUser", 1337}};
  pod["spec"]["containers"].push_back(json::parse(R"({"name": "istio-proxy",
      "image": "docker.io/istio/proxyv2:1.28.0", "args": ["proxy", "sidecar"],
      "securityContext": {"runAsUser": 1337}})"));
  pod["spec"]["initContainers"] = json::parse(R"([{"name": "setup", "image": "busybox",
      "securityContext": {"runAsUser": 1337}}])");
  CHECK(denials(pod) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
                "(spec.initContainers[0].securityContext.runAsUser=1337)" +
                    kTail +
                    "run init container \"setup\" as a user other than 1337 (reserved "
                    "for the Istio proxy) or request a SegmentationException",
                "bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
                "(spec.securityContext.runAsUser=1337)" +
                    kTail +
                    "run the pod as a user other than 1337 (reserved for the Istio "
                    "proxy) or request a SegmentationException"});

  json cj = cronJob(pod);
  CHECK(pathsOf(violations(cj)) ==
        Strings{"spec.jobTemplate.spec.template.spec.initContainers[0].securityContext.runAsUser",
                "spec.jobTemplate.spec.template.spec.securityContext.runAsUser"});

  // Only the proxy may run as 1337; an ephemeral container borrowing its name may not.
  pod["spec"]["securityContext"]["runAsUser"] = 1000;
  pod["spec"]["initContainers"][0]["securityContext"]["runAsUser"] = 1001;
  CHECK(violations(pod).empty());
  pod["spec"]["ephemeralContainers"] = json::parse(R"([{"name": "istio-proxy",
      "image": "docker.io/istio/proxyv2:1.28.0", "args": ["proxy", "sidecar"],
      "securityContext": {"runAsUser": 1337}}])");
  CHECK(denials(pod) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
                "(spec.ephemeralContainers[0].securityContext.runAsUser=1337)" +
                kTail +
                "ephemeral container \"istio-proxy\" is not the one Istio's injector adds: it "
                "is an ephemeral container, which the injector never adds; run ephemeral "
                "container \"istio-proxy\" as a user other than 1337 (reserved for the Istio "
                "proxy) or request a SegmentationException"});
}

TEST_CASE("requireSidecar only applies when the namespace's mTLS is STRICT") {
  json pod = compliantPod();
  pod["metadata"]["labels"]["sidecar.istio.io/inject"] = "false";
  pod["spec"]["securityContext"] = {{"runAsUser", 1337}};
  PodContext notStrict = segmented();
  notStrict.mtlsStrict = false;
  CHECK(violations(pod, notStrict).empty());
  CHECK(rulesOf(violations(pod)) == Strings{"requireSidecar", "requireSidecar"});
}

TEST_CASE("requireSegmentedNamespace") {
  PodContext unsegmented = segmented();
  unsegmented.defaultDenyExists = false;
  CHECK(denials(compliantPod(), unsegmented) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates "
                "requireSegmentedNamespace (no NetworkPolicy bulkhead-default-deny in namespace "
                "\"shop\" yet)" +
                kTail +
                "wait for the namespace to be segmented and retry or request a "
                "SegmentationException"});
  CHECK(denials(workload("Job", compliantPod()), unsegmented) ==
        Strings{"bulkhead: job \"web\" in namespace \"shop\" violates "
                "requireSegmentedNamespace (no NetworkPolicy bulkhead-default-deny in namespace "
                "\"shop\" yet)" +
                kTail +
                "wait for the namespace to be segmented and retry or request a "
                "SegmentationException"});
  CHECK(violations(compliantPod(), segmented()).empty());
}

// ---------------------------------------------------------------------------------------------
// Switches, exemptions, context, order

// Violates every rule once (requireSegmentedNamespace through the context).
json everythingWrong() {
  json pod = json::parse(R"({
    "kind": "Pod",
    "metadata": {"name": "bad", "namespace": "shop",
                 "annotations": {"traffic.sidecar.istio.io/excludeOutboundPorts": "443"}},
    "spec": {
      "hostNetwork": true, "hostPID": true,
      "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}],
                      "securityContext": {"privileged": true,
                                          "capabilities": {"add": ["SYS_ADMIN"]}}}]
    }
  })");
  return pod;
}

PodContext unsegmentedStrict() {
  PodContext c;
  c.mtlsStrict = true;
  c.defaultDenyExists = false;
  return c;
}

TEST_CASE("violations come in rule order, then path order with numeric indices") {
  CHECK(rulesOf(violations(everythingWrong(), unsegmentedStrict())) ==
        Strings{"requiredLabels", "forbidHostNetwork", "forbidHostPorts", "forbidHostPIDIPC",
                "forbidPrivileged", "forbiddenCapabilities", "requireSidecar",
                "requireSegmentedNamespace"});
  Strings names(kPodRuleNames.begin(), kPodRuleNames.end());
  CHECK(rulesOf(violations(everythingWrong(), unsegmentedStrict())) == names);

  json pod = compliantPod();
  json c = pod["spec"]["containers"][0];
  c["ports"] = {{{"containerPort", 1}, {"hostPort", 1}}};
  pod["spec"]["containers"] = json::array();
  for (int i = 0; i < 12; ++i) {
    c["name"] = "c" + std::to_string(i);
    pod["spec"]["containers"].push_back(c);
  }
  pod["spec"]["initContainers"] = {c};
  Strings paths = pathsOf(violations(pod));
  REQUIRE(paths.size() == 13);
  CHECK(paths[0] == "spec.containers[0].ports[0].hostPort");
  CHECK(paths[2] == "spec.containers[2].ports[0].hostPort");
  CHECK(paths[10] == "spec.containers[10].ports[0].hostPort");
  CHECK(paths[11] == "spec.containers[11].ports[0].hostPort");
  CHECK(paths[12] == "spec.initContainers[0].ports[0].hostPort");
}

TEST_CASE("each rule can be switched off in podRules") {
  json pod = everythingWrong();
  PodContext ctx = unsegmentedStrict();
  auto without = [&](auto change) {
    SegmentationPolicy p = baseline();
    change(p.podRules);
    return rulesOf(violations(pod, ctx, p));
  };
  auto allBut = [](std::string_view rule) {
    Strings out;
    for (auto name : kPodRuleNames) {
      if (name != rule) {
        out.emplace_back(name);
      }
    }
    return out;
  };
  CHECK(without([](PodRules& r) { r.requiredLabels.clear(); }) == allBut("requiredLabels"));
  CHECK(without([](PodRules& r) { r.forbidHostNetwork = false; }) == allBut("forbidHostNetwork"));
  CHECK(without([](PodRules& r) { r.forbidHostPorts = false; }) == allBut("forbidHostPorts"));
  CHECK(without([](PodRules& r) { r.forbidHostPIDIPC = false; }) == allBut("forbidHostPIDIPC"));
  CHECK(without([](PodRules& r) { r.forbidPrivileged = false; }) == allBut("forbidPrivileged"));
  CHECK(without([](PodRules& r) { r.forbiddenCapabilities.clear(); }) ==
        allBut("forbiddenCapabilities"));
  CHECK(without([](PodRules& r) { r.requireSidecar = false; }) == allBut("requireSidecar"));
  CHECK(without([](PodRules& r) { r.requireSegmentedNamespace = false; }) ==
        allBut("requireSegmentedNamespace"));

  SegmentationPolicy off = baseline();
  off.podRules = PodRules{{}, false, false, false, false, {}, false, false};
  CHECK(violations(pod, ctx, off).empty());
}

TEST_CASE("rules exempted by active SegmentationExceptions are skipped") {
  json pod = everythingWrong();
  PodContext ctx = unsegmentedStrict();
  ctx.exemptedRules = {"forbidHostNetwork", "forbidHostPorts", "requireSegmentedNamespace"};
  CHECK(rulesOf(violations(pod, ctx)) == Strings{"requiredLabels", "forbidHostPIDIPC",
                                                 "forbidPrivileged", "forbiddenCapabilities",
                                                 "requireSidecar"});
  ctx.exemptedRules.clear();
  for (auto name : kPodRuleNames) {
    ctx.exemptedRules.emplace(name);
  }
  CHECK(violations(pod, ctx).empty());
  // An unknown name exempts nothing.
  ctx.exemptedRules = {"forbidhostnetwork"};
  CHECK(violations(pod, ctx).size() == 8);
}

TEST_CASE("a default PodContext applies every rule") {
  PodContext ctx;
  CHECK(ctx.mtlsStrict);
  CHECK_FALSE(ctx.defaultDenyExists);
  CHECK(ctx.exemptedRules.empty());
  CHECK(rulesOf(violations(everythingWrong(), ctx)).size() == 8);
}

// ---------------------------------------------------------------------------------------------
// Messages

TEST_CASE("several violations make one message listing each with its fix") {
  json pod = compliantPod();
  pod["spec"]["hostNetwork"] = true;
  pod["spec"]["containers"][0]["ports"][0]["hostPort"] = 8080;
  PodFacts f = facts(pod);
  std::vector<Violation> vs = evaluatePod(f, baseline(), segmented());
  REQUIRE(vs.size() == 2);
  CHECK(denialMessage(f, vs, "baseline") ==
        "bulkhead: pod \"web-1\" in namespace \"shop\" has 2 violations of SegmentationPolicy "
        "\"baseline\": forbidHostNetwork (spec.hostNetwork=true): remove hostNetwork; "
        "forbidHostPorts (spec.containers[0].ports[0].hostPort=8080): remove hostPort 8080 from "
        "container \"web\"; fix them or request a SegmentationException");

  // One violation: exactly the single form.
  CHECK(denialMessage(f, std::vector<Violation>{vs[0]}, "baseline") ==
        denialMessage(f, vs[0], "baseline"));
  CHECK(denialMessage(f, std::vector<Violation>{}, "baseline").empty());

  // Long lists are cut after kMaxListedViolations.
  json many = compliantPod();
  for (int i = 0; i < 12; ++i) {
    many["spec"]["containers"][0]["ports"][i] = {{"containerPort", 100 + i}, {"hostPort", 100 + i}};
  }
  PodFacts mf = facts(many);
  std::string msg = denialMessage(mf, evaluatePod(mf, baseline(), segmented()), "baseline");
  CHECK(
      msg.starts_with("bulkhead: pod \"web-1\" in namespace \"shop\" has 12 violations of "
                      "SegmentationPolicy \"baseline\": forbidHostPorts "
                      "(spec.containers[0].ports[0].hostPort=100): remove hostPort 100 from "
                      "container \"web\"; "));
  CHECK(
      msg.ends_with("forbidHostPorts (spec.containers[0].ports[9].hostPort=109): remove "
                    "hostPort 109 from container \"web\"; and 2 more; fix them or request a "
                    "SegmentationException"));
}

TEST_CASE("string values in messages are quoted, escaped and cut") {
  json pod = compliantPod();
  std::string ranges;
  for (int i = 0; i < 20; ++i) {
    ranges += "10." + std::to_string(i) + ".0.0/16,";
  }
  pod["metadata"]["annotations"] = {{"traffic.sidecar.istio.io/excludeOutboundIPRanges", ranges},
                                    {"sidecar.istio.io/inject", "no \"way\"\n"}};
  std::vector<Violation> vs = violations(pod);
  REQUIRE(vs.size() == 2);
  CHECK(vs[0].detail == "metadata.annotations[sidecar.istio.io/inject]=\"no \\\"way\\\"\\u000a\"");
  CHECK(vs[1].detail ==
        "metadata.annotations[traffic.sidecar.istio.io/excludeOutboundIPRanges]=\"" +
            ranges.substr(0, 64) + "...\"");
}

TEST_CASE("containers without a name are named by their path") {
  json pod = compliantPod();
  pod["spec"]["containers"][0].erase("name");
  pod["spec"]["containers"][0]["securityContext"] = {{"privileged", true}};
  CHECK(denials(pod) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates forbidPrivileged "
                "(spec.containers[0].securityContext.privileged=true)" +
                kTail +
                "remove privileged: true from container spec.containers[0] or request a "
                "SegmentationException"});
}

}  // namespace
}  // namespace bulkhead::policy
