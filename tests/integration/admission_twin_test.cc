// The admission twin (policy/admission_twin.h) against the real API server, which evaluates its
// CEL itself:
//  - agreement: the API server's verdict on the twin and the webhook's decision function
//    (policy::decidePod) on the same objects must be the same, refusal for refusal and rule for
//    rule. The objects are generated (seeded, so a failure can be replayed), passed through
//    Istio's real injector in each of its modes, and Kubernetes' own Pod Security fixtures;
//  - the controller writes the twin for a policy, keeps its binding on the governed namespaces,
//    and with Bulkhead stopped and failurePolicy Ignore the twin still refuses, honouring an
//    active exception until it expires.
#include "policy/admission_twin.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kube/client.h"
#include "kube/resource.h"
#include "kube/yaml.h"
#include "policy/admission.h"
#include "policy/exceptions.h"
#include "tests/support/bench_util.h"
#include "tests/support/bulkhead_process.h"
#include "tests/support/control_plane.h"

namespace bulkhead::testing {
namespace {

using nlohmann::json;
using policy::Labels;
using std::chrono::seconds;

std::shared_ptr<kube::Client> admin() {
  static std::shared_ptr<kube::Client> client = unthrottledClient(ControlPlane::get().kubeconfig());
  return client;
}

constexpr std::string_view kTwinRefused = "ValidatingAdmissionPolicy 'bulkhead-";

const kube::ResourceType& typeOfKind(const std::string& kind) {
  namespace r = kube::resources;
  static const std::vector<const kube::ResourceType*> types = {
      &r::kPods, &r::kDeployments, &r::kStatefulSets,           &r::kDaemonSets,  &r::kReplicaSets,
      &r::kJobs, &r::kCronJobs,    &r::kReplicationControllers, &r::kPodTemplates};
  for (const auto* t : types) {
    if (t->kind == kind) {
      return *t;
    }
  }
  FAIL("no resource for kind " << kind);
  return r::kPods;
}

// A server-side dry run of creating `object` in `ns`: OK, or the API server's refusal.
Status dryRun(const json& object, const std::string& ns) {
  return admin()
      ->raw("POST", typeOfKind(object["kind"]).path(ns) + "?dryRun=All", object.dump())
      .status();
}

// The rule a refusal by the twin names ("... violates forbidHostNetwork (...").
std::string ruleOf(const std::string& message) {
  size_t at = message.find(" violates ");
  if (at == std::string::npos) {
    return "";
  }
  at += 10;
  return message.substr(at, message.find(' ', at) - at);
}

// ---------------------------------------------------------------------------------------------
// Generated objects: every field the rules read, in values on both sides of each rule's line.

class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  json object(int index) {
    static const std::vector<std::string> kinds = {
        "Pod",        "Pod",        "Pod", "Deployment", "StatefulSet",
        "DaemonSet",  "ReplicaSet", "Job", "CronJob",    "ReplicationController",
        "PodTemplate"};
    const std::string kind = pick(kinds);
    const std::string name = "gen-" + std::to_string(index);
    json tmpl = podTemplate(index);
    json o = {{"kind", kind}, {"metadata", {{"name", name}}}};
    const json selector = {{"twin-id", std::to_string(index)}};
    if (kind == "Pod") {
      o["apiVersion"] = "v1";
      o["metadata"]["labels"] = tmpl["metadata"]["labels"];
      o["metadata"]["annotations"] = tmpl["metadata"]["annotations"];
      o["spec"] = tmpl["spec"];
      return o;
    }
    if (kind == "PodTemplate") {
      o["apiVersion"] = "v1";
      o["template"] = tmpl;
      return o;
    }
    if (kind == "ReplicationController") {
      o["apiVersion"] = "v1";
      o["spec"] = {{"selector", selector}, {"template", tmpl}};
      return o;
    }
    if (kind == "Job" || kind == "CronJob") {
      o["apiVersion"] = "batch/v1";
      tmpl["spec"]["restartPolicy"] = "Never";
      json job = {{"template", tmpl}};
      o["spec"] =
          kind == "Job" ? job : json{{"schedule", "0 * * * *"}, {"jobTemplate", {{"spec", job}}}};
      return o;
    }
    o["apiVersion"] = "apps/v1";
    o["spec"] = {{"selector", {{"matchLabels", selector}}}, {"template", tmpl}};
    if (kind == "StatefulSet") {
      o["spec"]["serviceName"] = name;
    }
    return o;
  }

  // A Pod for Istio's injector: an application pod with what a tenant might write on it.
  json injectable(int index) {
    json o = object(index);
    while (o["kind"] != "Pod") {
      o = object(index);
    }
    o["spec"].erase("initContainers");
    json& containers = o["spec"]["containers"];
    json kept = json::array();
    for (auto& c : containers) {
      if (c["name"] != "istio-proxy") {
        kept.push_back(c);
      }
    }
    containers = kept.empty() ? json::array({app("web", false)}) : kept;
    o["spec"]["serviceAccountName"] = "web";  // the injector mounts its token
    return o;
  }

 private:
  bool chance(int percent) { return std::uniform_int_distribution<int>(0, 99)(rng_) < percent; }
  template <typename T>
  const T& pick(const std::vector<T>& from) {
    return from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng_)];
  }

  json ids(json sc) {
    static const std::vector<int> values = {1000, 1337};
    if (chance(15)) {
      sc["runAsUser"] = pick(values);
    }
    if (chance(10)) {
      sc["runAsGroup"] = pick(values);
    }
    return sc;
  }

  json securityContext() {
    json sc = ids(json::object());
    if (chance(10)) {
      sc["privileged"] = chance(70);
    }
    if (chance(35)) {
      static const std::vector<std::string> caps = {
          "NET_ADMIN",        "cap_net_raw", "SYS_TIME",  "ALL",
          "net_adm\xc4\xb1n", "CHOWN",       "sys_admin", "NET_BIND_SERVICE",
          "Cap_Sys_Ptrace",   "NET-ADMIN"};
      json add = json::array();
      for (int n = 1 + std::uniform_int_distribution<int>(0, 1)(rng_); n > 0; --n) {
        add.push_back(pick(caps));
      }
      sc["capabilities"] = {{"add", add}};
    }
    return sc;
  }

  json app(const std::string& name, bool hostNetwork) {
    json c = {{"name", name},
              {"image", pick(std::vector<std::string>{"registry.local/app:1", "busybox"})}};
    int port = 8000 + std::uniform_int_distribution<int>(0, 50)(rng_);
    if (chance(20)) {
      c["ports"] = {{{"containerPort", port}, {"hostPort", chance(70) ? port : 0}}};
    } else if (hostNetwork) {
      c["ports"] = json::array();
    } else {
      c["ports"] = {{{"containerPort", port}}};
    }
    json sc = securityContext();
    if (!sc.empty()) {
      c["securityContext"] = sc;
    }
    return c;
  }

  // The injector's containers, right or subtly wrong.
  json proxy(bool native) {
    static const std::vector<std::string> images = {
        "docker.io/istio/proxyv2:1.28.0",
        "istio/proxyv2:1.28.0",
        "index.docker.io/istio/proxyv2@sha256:" + std::string(64, 'a'),
        "gcr.io/istio-release/proxyv2:1.28.0",
        "evil.example/istio/proxyv2:1.28.0",
        "registry.local:5000/proxyv2:1"};
    json c = {{"name", "istio-proxy"},
              {"image", pick(images)},
              {"args", chance(85) ? json{"proxy", "sidecar", "--domain", "cluster.local"}
                                  : json{"proxy", "router"}}};
    if (chance(10)) {
      c["command"] = {"/bin/sh"};
    }
    if (native) {
      c["restartPolicy"] = "Always";
    }
    c["securityContext"] = ids({{"runAsUser", 1337}, {"runAsGroup", 1337}});
    return c;
  }

  json initContainer(const std::string& name) {
    json c = {{"name", name},
              {"image", pick(std::vector<std::string>{"docker.io/istio/proxyv2:1.28.0",
                                                      "evil.example/proxyv2:1"})},
              {"args", chance(85) ? json{"istio-iptables", "-p", "15001"} : json{"pilot-agent"}}};
    if (name == "istio-validation" && chance(70)) {
      c["args"].push_back("--run-validation");
    }
    if (chance(10)) {
      c["restartPolicy"] = "Always";
    }
    json sc = securityContext();
    if (name == "istio-init" && chance(70)) {
      sc["capabilities"] = {{"add", {"NET_ADMIN", "NET_RAW"}}};
    }
    c["securityContext"] = ids(sc);
    return c;
  }

  json podTemplate(int index) {
    json labels = {{"twin-id", std::to_string(index)}};
    auto maybe = [&](const std::string& k, const std::vector<std::string>& values, int percent) {
      if (chance(percent)) {
        labels[k] = pick(values);
      }
    };
    maybe("app.kubernetes.io/name", {"web"}, 75);
    maybe("team", {"red", "blue"}, 50);
    maybe("exempt", {"yes", "no"}, 25);
    maybe("sidecar.istio.io/inject", {"true", "false", "", "Yes", "bogus"}, 15);
    maybe("istio.io/rev", {"canary"}, 5);
    maybe("istio.io/dataplane-mode", {"none", "ambient"}, 10);
    maybe("gateway.istio.io/managed", {"istio.io-mesh-controller"}, 5);
    json annotations = json::object();
    auto note = [&](const std::string& k, const std::vector<std::string>& values, int percent) {
      if (chance(percent)) {
        annotations[k] = pick(values);
      }
    };
    note("traffic.sidecar.istio.io/excludeInboundPorts",
         {"15020", "15020, 80", " ", "", "15021,15090,", "\t15090 "}, 8);
    note("traffic.sidecar.istio.io/includeOutboundIPRanges", {"*", " * ", "10.0.0.0/8"}, 6);
    note("traffic.sidecar.istio.io/excludeOutboundPorts", {"", "443", " \t"}, 6);
    note("traffic.sidecar.istio.io/kubevirtInterfaces", {"net1"}, 3);
    note("sidecar.istio.io/interceptionMode", {"REDIRECT", "NONE", "TPROXY", "redirect"}, 6);
    note(
        "proxy.istio.io/config",
        {"interceptionMode: NONE", "interceptionMode: REDIRECT", R"({"interceptionMode":"TPROXY"})",
         "interceptionModeX: NONE", "interceptionMode: REDIRECTX", "concurrency: 2",
         "interceptionMode: 'TPROXY' # x\ninterceptionMode: NONE"},
        8);
    note("sidecar.istio.io/proxyImage",
         {"docker.io/istio/proxyv2:1.28", "istio/proxyv2", "evil/proxy:1"}, 5);
    note("inject.istio.io/templates", {"sidecar", "gateway"}, 4);
    note("ambient.istio.io/bypass-inbound-capture", {"true", "TRUE", "false"}, 6);
    note("sidecar.istio.io/inject", {"false", "true", "no"}, 5);

    const bool hostNetwork = chance(12);
    json spec = {{"containers", json::array()}};
    if (hostNetwork) {
      spec["hostNetwork"] = true;
    }
    if (chance(6)) {
      spec["hostPID"] = true;
    }
    if (chance(6)) {
      spec["hostIPC"] = true;
    }
    json podSc = ids(json::object());
    if (!podSc.empty()) {
      spec["securityContext"] = podSc;
    }
    const bool waypoint = labels.contains("gateway.istio.io/managed") && chance(60);
    if (waypoint) {
      json c = proxy(false);
      c["args"] = {"proxy", "waypoint"};
      spec["containers"].push_back(c);
    } else {
      for (int n = 1 + std::uniform_int_distribution<int>(0, 1)(rng_); n > 0; --n) {
        spec["containers"].push_back(app("app-" + std::to_string(n), hostNetwork));
      }
      const bool withProxy = chance(30);
      const bool native = withProxy && chance(40);
      if (withProxy && !native) {
        spec["containers"].push_back(proxy(false));
      }
      json init = json::array();
      if (native) {
        init.push_back(proxy(true));
      }
      if (chance(25)) {
        init.push_back(initContainer(chance(50) ? "istio-init" : "istio-validation"));
      }
      if (!init.empty()) {
        spec["initContainers"] = init;
      }
    }
    if (hostNetwork) {
      // The API server wants hostPort equal to containerPort on the host's network.
      for (auto& c : spec["containers"]) {
        if (c.contains("ports")) {
          for (auto& p : c["ports"]) {
            p["hostPort"] = p["containerPort"];
          }
        }
      }
    }
    return {{"metadata", {{"labels", labels}, {"annotations", annotations}}}, {"spec", spec}};
  }

  std::mt19937 rng_;
};

// ---------------------------------------------------------------------------------------------

struct Case {
  std::string ns;
  const policy::SegmentationPolicy* policy;
  Labels nsLabels;
};

policy::SegmentationPolicy decodePolicy(const std::string& yaml) {
  auto docs = kube::parseYamlDocuments(yaml);
  REQUIRE_MESSAGE(docs.ok(), docs.status().toString());
  auto p = policy::decodeSegmentationPolicy(docs->at(0));
  REQUIRE_MESSAGE(p.ok(), p.status().toString());
  return *p;
}

policy::SegmentationException exception(const std::string& ns, const std::string& name,
                                        const std::string& selectorYaml,
                                        std::vector<std::string> rules, policy::WallTime expires) {
  policy::SegmentationException e;
  e.ns = ns;
  e.name = name;
  auto sel = policy::decodeLabelSelector(json::parse(selectorYaml), "podSelector");
  REQUIRE(sel.ok());
  e.podSelector = *sel;
  e.rules = std::move(rules);
  e.reason = "test";
  e.requestedBy = "someone";
  e.expiresAt = expires;
  return e;
}

TEST_CASE(
    "the API server's CEL twin and the webhook's decision agree on every generated, "
    "injected and Pod Security fixture object") {
  const auto now = std::chrono::system_clock::now();
  // Two policies: the defaults, and a stricter one with its own proxy images and sidecar mode.
  const policy::SegmentationPolicy defaults = decodePolicy(R"(
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: agree-defaults}
spec: {namespaceSelector: {}}
)");
  const policy::SegmentationPolicy strict = decodePolicy(R"(
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: agree-strict}
spec:
  namespaceSelector: {}
  podRules:
    requiredLabels: [team, app.kubernetes.io/name]
    forbiddenCapabilities: [ALL]
  mesh:
    dataplaneMode: Sidecar
    proxyImages: [registry.local:5000/proxyv2, docker.io/istio/proxyv2]
)");
  const std::vector<Case> cases = {
      {"agree-plain", &defaults, {}},
      {"agree-injected", &defaults, {{"istio-injection", "enabled"}}},
      {"agree-ambient", &defaults, {{"istio.io/dataplane-mode", "ambient"}}},
      {"agree-strict", &strict, {{"istio.io/rev", "canary"}}},
  };
  // Exceptions: active ones by selector, one expired, one listing a rule the pod does not break.
  const std::vector<policy::SegmentationException> exceptions = {
      exception("agree-plain", "hosts", R"({"matchLabels": {"exempt": "yes"}})",
                {"forbidHostNetwork", "requireSidecar", "forbiddenCapabilities"},
                now + std::chrono::hours(1)),
      exception("agree-plain", "old", "{}", {"forbidPrivileged"}, now - std::chrono::hours(1)),
      exception("agree-ambient", "red-team",
                R"({"matchExpressions": [{"key": "team", "operator": "In", "values": ["red"]}]})",
                {"requiredLabels", "forbidHostPorts"}, now + std::chrono::hours(1)),
      exception("agree-strict", "no-team",
                R"({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]})",
                {"requiredLabels"}, now + std::chrono::hours(1)),
  };
  for (const auto* p : {&defaults, &strict}) {
    policy::TwinInput in;
    in.policy = p;
    in.meshAvailable = true;
    in.exceptions = &exceptions;
    in.now = now;
    for (const auto& c : cases) {
      if (c.policy == p) {
        in.namespaces.push_back(c.ns);
      }
    }
    const policy::AdmissionTwin twin = policy::admissionTwin(in);
    REQUIRE(twin.binding.has_value());
    for (const json* o : {&twin.policy, &*twin.binding}) {
      auto r = kubectl({"apply", "--server-side", "-f", "-"}, o->dump());
      REQUIRE_MESSAGE(r.exitCode == 0, r.err);
    }
  }
  for (const auto& c : cases) {
    Labels labels = c.nsLabels;
    REQUIRE(createNamespace(c.ns, labels));
  }
  // The API server's admission reads policies and bindings from caches of its own.
  const json probe = json::parse(R"({"apiVersion": "v1", "kind": "Pod",
      "metadata": {"name": "probe", "labels": {"app.kubernetes.io/name": "p", "team": "blue"}},
      "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "busybox"}]}})");
  for (const auto& c : cases) {
    REQUIRE(eventually(seconds(30), [&] {
      return dryRun(probe, c.ns).message().find(kTwinRefused) != std::string::npos;
    }));
  }

  int compared = 0, refused = 0, byValidation = 0, injected = 0, notInjected = 0, fixtures = 0;
  std::map<std::string, int> byRule;
  auto judge = [&](json object, const Case& c, const std::string& origin) {
    object["metadata"]["namespace"] = c.ns;
    auto facts = policy::decodePodFacts(object);
    REQUIRE_MESSAGE(facts.ok(), facts.status().toString());
    facts->ns = c.ns;
    std::vector<policy::SegmentationException> inNamespace;
    for (const auto& e : exceptions) {
      if (e.ns == c.ns) {
        inNamespace.push_back(e);
      }
    }
    policy::PodReview review;
    review.pod = &*facts;
    review.governing = c.policy;
    review.meshAvailable = true;
    review.defaultDenyExists = true;  // requireSegmentedNamespace is the webhook's alone
    review.exceptions = &inNamespace;
    review.now = std::chrono::system_clock::now();
    review.namespaceLabels = &c.nsLabels;
    const policy::Decision webhook = policy::decidePod(review);
    const Status s = dryRun(object, c.ns);
    const bool byTwin = s.message().find(kTwinRefused) != std::string::npos;
    if (!s.ok() && !byTwin) {
      ++byValidation;  // the API server's validation refused it before admission
      MESSAGE("refused by validation (" << origin << "): " << s.message());
      return;
    }
    ++compared;
    CAPTURE(origin);
    CAPTURE(c.ns);
    CAPTURE(object.dump());
    CHECK_MESSAGE(byTwin == !webhook.allowed,
                  "twin: " << s.toString() << "\nwebhook: " << webhook.message);
    if (byTwin && !webhook.allowed) {
      ++refused;
      // Both name the first rule broken, in the rules' order.
      CHECK(ruleOf(s.message()) == webhook.rules.front());
      ++byRule[webhook.rules.front()];
    }
  };

  Generator gen(20261202);
  for (int i = 0; i < 480; ++i) {
    judge(gen.object(i), cases[i % cases.size()], "generated " + std::to_string(i));
  }
  // Istio's injector, in each mode, on generated application pods.
  for (int i = 0; i < 32; ++i) {
    json pod = gen.injectable(1000 + i);
    const bool cni = i % 2 == 1;
    const bool native = i % 4 >= 2;
    auto r = ControlPlane::get().shell(std::string("\"$TESTENV_ISTIO_INJECT\" --output json") +
                                           (cni ? " --cni" : "") +
                                           " --native-sidecars=" + (native ? "true" : "false"),
                                       pod.dump());
    if (r.exitCode != 0) {
      // It refuses annotations it cannot parse (" * " as an IP range): nothing to judge.
      REQUIRE_MESSAGE(r.err.find("invalid value") != std::string::npos, r.err);
      ++notInjected;
      continue;
    }
    ++injected;
    judge(json::parse(r.out).at(0), cases[i % cases.size()], "injected " + std::to_string(i));
  }
  // Kubernetes' Pod Security fixtures of this control plane's version.
  for (const std::string level : {"baseline", "restricted"}) {
    for (const std::string outcome : {"pass", "fail"}) {
      auto r = ControlPlane::get().shell(
          "kubectl create --dry-run=client -o json -f \"$TESTENV_POD_SECURITY_FIXTURES/" + level +
          "/" + outcome + "\"");
      REQUIRE_MESSAGE(r.exitCode == 0, r.err);
      std::istringstream in(r.out);
      while (!(in >> std::ws).eof()) {
        json pod;
        in >> pod;
        std::string name = pod["metadata"]["name"];
        std::replace(name.begin(), name.end(), '_', '-');
        pod["metadata"]["name"] = name;
        // The policies' required labels, so that the fixtures are judged on the other rules.
        pod["metadata"]["labels"]["app.kubernetes.io/name"] = "fixture";
        pod["metadata"]["labels"]["team"] = "blue";
        ++fixtures;
        judge(pod, cases[fixtures % cases.size()], "fixture " + level + "/" + outcome + "/" + name);
      }
    }
  }
  MESSAGE("compared on " << compared << " objects (" << refused << " refused by both; " << injected
                         << " made by Istio's injector (which refused " << notInjected
                         << " for their annotations), " << fixtures << " Pod Security fixtures), "
                         << byValidation
                         << " refused by validation first; first rules: " << json(byRule).dump());
  CHECK(compared > 500);
  // Every rule the twin carries was the reason of some refusal.
  for (const auto& rule :
       {"requiredLabels", "forbidHostNetwork", "forbidHostPorts", "forbidHostPIDIPC",
        "forbidPrivileged", "forbiddenCapabilities", "requireSidecar"}) {
    CHECK_MESSAGE(byRule[rule] > 0, rule);
  }
}

json get(const kube::ResourceType& type, const std::string& name) {
  auto o = admin()->get(type, "", name);
  return o.ok() ? *o : json();
}

// The namespaces the binding of `policy`'s twin lists.
json boundNamespaces(const std::string& policy) {
  json b = get(kube::resources::kValidatingAdmissionPolicyBindings, "bulkhead-" + policy);
  if (b.is_null()) {
    return json();
  }
  return b["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]["values"];
}

json pod(const std::string& name, const json& labels, bool hostNetwork) {
  json p = {{"apiVersion", "v1"},
            {"kind", "Pod"},
            {"metadata", {{"name", name}, {"labels", labels}}},
            {"spec", {{"containers", {{{"name", "c"}, {"image", "busybox"}}}}}}};
  if (hostNetwork) {
    p["spec"]["hostNetwork"] = true;
  }
  return p;
}

TEST_CASE(
    "the controller writes each policy's twin, and with the webhook down and failurePolicy "
    "Ignore the twin still refuses, honouring an exception until it expires") {
  const int port = freePort();
  // failurePolicy Ignore: the chart's validatingAdmissionPolicy.enabled "auto" turns the twin on.
  installChart(port, {"--set", "webhook.failurePolicy=Ignore"});
  auto bulkhead = std::make_unique<BulkheadProcess>("twin", webhookArgs(port));
  REQUIRE(bulkhead->waitForLog("serving the admission webhook", 60));
  auto applied = kubectl({"apply", "-f", "-"}, R"(
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: twin-enforce}
spec:
  namespaceSelector: {matchLabels: {twin: enforce}}
  # The API server's PodSecurity admission would refuse hostNetwork before the twin is asked.
  podSecurity: {enforce: Unmanaged}
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: twin-warn}
spec:
  namespaceSelector: {matchLabels: {twin: warn}}
  podSecurity: {enforce: Unmanaged}
  mode: Warn
)");
  REQUIRE_MESSAGE(applied.exitCode == 0, applied.err);
  REQUIRE(createNamespace("twin-down", {{"twin", "enforce"}}));
  REQUIRE(createNamespace("twin-lab", {{"twin", "warn"}}));

  // The binding lists exactly the governed namespaces, with the mode's action.
  REQUIRE(
      eventually(seconds(30), [] { return boundNamespaces("twin-enforce") == json{"twin-down"}; }));
  REQUIRE(eventually(seconds(30), [] { return boundNamespaces("twin-warn") == json{"twin-lab"}; }));
  const json policyObject = get(kube::resources::kSegmentationPolicies, "twin-enforce");
  const std::string uid = policyObject["metadata"]["uid"];
  const json binding =
      get(kube::resources::kValidatingAdmissionPolicyBindings, "bulkhead-twin-enforce");
  CHECK(binding["metadata"]["labels"] == json{{"app.kubernetes.io/managed-by", "bulkhead"},
                                              {"bulkhead.dev/policy", "twin-enforce"}});
  CHECK(binding["metadata"]["ownerReferences"] ==
        json::parse(R"([{"apiVersion": "bulkhead.dev/v1alpha1", "kind": "SegmentationPolicy",
                         "name": "twin-enforce", "uid": ")" +
                    uid + R"(", "controller": true}])"));
  CHECK(binding["spec"] == json::parse(R"({
      "policyName": "bulkhead-twin-enforce",
      "validationActions": ["Deny"],
      "matchResources": {
        "matchPolicy": "Equivalent",
        "objectSelector": {},
        "namespaceSelector": {"matchExpressions": [
          {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["twin-down"]}]}}})"));
  CHECK(get(kube::resources::kValidatingAdmissionPolicyBindings,
            "bulkhead-twin-warn")["spec"]["validationActions"] == json{"Warn"});
  const json vap = get(kube::resources::kValidatingAdmissionPolicies, "bulkhead-twin-enforce");
  CHECK(vap["spec"]["failurePolicy"] == "Fail");
  CHECK(vap["spec"]["matchConstraints"]["resourceRules"] == json::parse(R"([
      {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
       "resources": ["pods", "pods/ephemeralcontainers", "replicationcontrollers", "podtemplates"],
       "scope": "Namespaced"},
      {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
       "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"],
       "scope": "Namespaced"},
      {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
       "resources": ["jobs", "cronjobs"], "scope": "Namespaced"}])"));
  // One validation per rule that needs no cluster state; without Istio's API, no requireSidecar.
  std::vector<std::string> rules;
  for (const auto& v : vap["spec"]["validations"]) {
    rules.push_back(ruleOf(v["messageExpression"].get<std::string>() + " ("));
    CHECK(v["reason"] == "Forbidden");
  }
  CHECK(rules == std::vector<std::string>{"requiredLabels", "forbidHostNetwork", "forbidHostPorts",
                                          "forbidHostPIDIPC", "forbidPrivileged",
                                          "forbiddenCapabilities"});

  // The policy's status names the layers in force: no Istio here, so no PeerAuthentication.
  CHECK(eventually(seconds(30), [] {
    return get(kube::resources::kSegmentationPolicies, "twin-enforce")["status"]["layers"] ==
           json{"NetworkPolicy", "ValidatingAdmissionPolicy"};
  }));

  // Drift: a deleted binding comes back, an emptied policy is rewritten.
  REQUIRE(
      kubectl({"delete", "validatingadmissionpolicybinding", "bulkhead-twin-enforce"}).exitCode ==
      0);
  CHECK(
      eventually(seconds(30), [] { return boundNamespaces("twin-enforce") == json{"twin-down"}; }));
  REQUIRE(
      kubectl({"patch", "validatingadmissionpolicy", "bulkhead-twin-enforce", "--type=json", "-p",
               R"([{"op": "replace", "path": "/spec/validations",
                "value": [{"expression": "true"}]}])"})
          .exitCode == 0);
  CHECK(eventually(seconds(30), [] {
    return get(kube::resources::kValidatingAdmissionPolicies,
               "bulkhead-twin-enforce")["spec"]["validations"]
               .size() == 6;
  }));
  // A namespace joining the policy joins the binding.
  REQUIRE(createNamespace("twin-down-2", {{"twin", "enforce"}}));
  CHECK(eventually(seconds(30), [] {
    return boundNamespaces("twin-enforce") == json{"twin-down", "twin-down-2"};
  }));

  // An exception for 60 s, carried by the twin once active.
  const auto expires = std::chrono::system_clock::now() + seconds(60);
  const std::string expiresAt =
      policy::formatDateTime(std::chrono::time_point_cast<seconds>(expires));
  applied = kubectl({"apply", "--as=alice", "--as-group=system:masters", "-f", "-"}, R"(
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationException
metadata: {name: legacy, namespace: twin-down}
spec:
  podSelector: {matchLabels: {legacy: "true"}}
  rules: [forbidHostNetwork]
  reason: the legacy agent needs the host's network until it is rewritten
  requestedBy: alice
  expiresAt: ")" + expiresAt + "\"\n");
  REQUIRE_MESSAGE(applied.exitCode == 0, applied.err);
  REQUIRE(eventually(seconds(30), [] {
    return get(kube::resources::kValidatingAdmissionPolicies, "bulkhead-twin-enforce")
               .dump()
               .find("legacy") != std::string::npos;
  }));

  // The API server's admission applies a changed policy at its next refresh (every second): wait
  // for it to hold this one, with the exception, before the webhook goes away.
  const json named = {{"app.kubernetes.io/name", "agent"}};
  json legacy = {{"app.kubernetes.io/name", "agent"}, {"legacy", "true"}};
  REQUIRE(eventually(seconds(10), [&] {
    return dryRun(pod("host", named, true), "twin-down").message().find(kTwinRefused) !=
               std::string::npos &&
           dryRun(pod("legacy", legacy, true), "twin-down").ok();
  }));

  // The webhook goes away: the API server calls it, fails, and ignores it.
  bulkhead.reset();
  Status refused = dryRun(pod("host", named, true), "twin-down");
  if (refused.ok()) {
    auto log = ControlPlane::get().shell(
        "grep -h 'refreshing policies\\|policies' \"$TESTENV_DIR\"/kube-apiserver.log | tail -20; "
        "date -u +%T.%N");
    FAIL_CHECK("admitted with the webhook down: " << log.out);
  }
  CHECK(
      refused.message() ==
      "pods \"host\" is forbidden: ValidatingAdmissionPolicy 'bulkhead-twin-enforce' with binding "
      "'bulkhead-twin-enforce' denied request: bulkhead: pod \"host\" in namespace \"twin-down\" "
      "violates forbidHostNetwork (spec.hostNetwork=true) of SegmentationPolicy \"twin-enforce\"; "
      "remove hostNetwork or request a SegmentationException");
  CHECK(dryRun(pod("unnamed", json::object(), false), "twin-down")
            .message()
            .find("violates requiredLabels (metadata.labels[app.kubernetes.io/name] is missing)") !=
        std::string::npos);
  Status good = dryRun(pod("good", named, false), "twin-down");
  CHECK_MESSAGE(good.ok(), good.toString());
  // Warn mode warns and admits.
  CHECK(dryRun(pod("host", named, true), "twin-lab").ok());
  // The exception still exempts its pods, and only from its rule, until it expires.
  Status exempt = dryRun(pod("legacy", legacy, true), "twin-down");
  CHECK_MESSAGE(exempt.ok(), exempt.toString());
  json privileged = pod("legacy", legacy, true);
  privileged["spec"]["containers"][0]["securityContext"] = {{"privileged", true}};
  CHECK(dryRun(privileged, "twin-down").message().find("violates forbidPrivileged") !=
        std::string::npos);
  REQUIRE(eventually(seconds(60), [&] { return std::chrono::system_clock::now() > expires; }));
  CHECK(eventually(seconds(5), [&] {
    return dryRun(pod("legacy", legacy, true), "twin-down")
               .message()
               .find("violates forbidHostNetwork") != std::string::npos;
  }));

  // Back up: the controller writes the twin without the expired exception.
  bulkhead = std::make_unique<BulkheadProcess>("twin-2", webhookArgs(port));
  CHECK(eventually(seconds(60), [] {
    return get(kube::resources::kValidatingAdmissionPolicies, "bulkhead-twin-enforce")
               .dump()
               .find("legacy") == std::string::npos;
  }));
  // A deleted policy takes its twin with it.
  REQUIRE(kubectl({"delete", "segmentationpolicy", "twin-enforce", "--wait=false"}).exitCode == 0);
  CHECK(eventually(seconds(60), [] {
    return get(kube::resources::kValidatingAdmissionPolicies, "bulkhead-twin-enforce").is_null() &&
           get(kube::resources::kValidatingAdmissionPolicyBindings, "bulkhead-twin-enforce")
               .is_null();
  }));
}

}  // namespace
}  // namespace bulkhead::testing
