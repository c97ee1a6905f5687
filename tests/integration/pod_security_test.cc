// Pod Security composed in, through the real API server with the chart installed and Bulkhead
// serving: the controller sets a selected namespace's pod-security labels with server-side apply
// under its own field manager, and takes exactly those away again; in such a namespace the API
// server's own PodSecurity admission refuses every baseline "fail" fixture of Kubernetes' own Pod
// Security tests and admits every "pass" fixture (k8s.io/pod-security-admission's test/testdata of
// this control plane's version, fetched by scripts/testenv.sh into
// $TESTENV_POD_SECURITY_FIXTURES).
#include "policy/pod_security.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kube/client.h"
#include "tests/support/bench_util.h"
#include "tests/support/bulkhead_process.h"
#include "tests/support/control_plane.h"

namespace bulkhead::testing {
namespace {

using nlohmann::json;
using policy::Labels;
using std::chrono::seconds;

const std::string kEnforce = policy::kPodSecurityEnforceLabel;
const std::string kEnforceVersion = policy::kPodSecurityEnforceVersionLabel;
const Labels kBaseline = {{kEnforce, "baseline"}, {kEnforceVersion, "latest"}};
// What the API server's PodSecurity admission says when it refuses a pod at that level.
const std::string kRefusedByPodSecurity = "violates PodSecurity \"baseline:latest\": ";

// Fail fixtures that the API server's validation refuses before any admission plugin sees them.
// Upstream marks them failRequiresError (fixtures_procMount.go: "the only combination that can
// fail the 1.35 baseline check also fails validation"): procMount Unmasked needs hostUsers false,
// and PodSecurity baseline forbids it only where hostUsers is not false.
const std::set<std::string> kRefusedByValidation = {"procmount0", "procmount1"};

std::shared_ptr<kube::Client> admin() {
  static std::shared_ptr<kube::Client> client = unthrottledClient(ControlPlane::get().kubeconfig());
  return client;
}

// Bulkhead (webhook and controllers) and the policies of these tests, once per binary.
BulkheadProcess& bulkhead() {
  static BulkheadProcess* process = [] {
    BulkheadProcess* p = &servingBulkhead("bulkhead");
    auto policies = kubectl({"apply", "-f", "-"}, R"(
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: fixtures}
spec:
  namespaceSelector: {matchLabels: {psa: fixtures}}
  # Bulkhead's own webhook admits every pod here (the fixtures carry no app.kubernetes.io/name
  # and no sidecar): a refusal can only be the API server's own, and a pass fixture must go
  # through the whole admission chain.
  mode: Audit
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: lifecycle}
spec:
  namespaceSelector: {matchLabels: {psa: "on"}}
  exceptions: {approverGroups: ["system:masters"]}  # the test's admin may take namespaces out
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: hands-off}
spec:
  namespaceSelector: {matchLabels: {psa: hands-off}}
  podSecurity: {enforce: Unmanaged}
)");
    REQUIRE_MESSAGE(policies.exitCode == 0, policies.err);
    return p;
  }();
  return *process;
}

json namespaceObject(const std::string& name) {
  auto ns = admin()->get(kube::resources::kNamespaces, "", name);
  REQUIRE_MESSAGE(ns.ok(), ns.status().toString());
  return *ns;
}


// The namespace's pod-security.kubernetes.io/ labels, whoever set them.
Labels podSecurityLabelsOf(const json& ns) {
  Labels out;
  for (const auto& [k, v] : policy::labelsOf(ns)) {
    if (policy::isPodSecurityLabel(k)) {
      out[k] = v;
    }
  }
  return out;
}

// The labels Bulkhead's Pod Security field manager owns on the namespace.
std::set<std::string> ownedByBulkhead(const json& ns) {
  return policy::labelsAppliedBy(ns, policy::kPodSecurityFieldManager);
}

bool segmented(const std::string& ns) {
  return admin()->get(kube::resources::kNetworkPolicies, ns, "bulkhead-default-deny").ok();
}

// Waits until namespace `name` carries exactly `want` as its pod-security labels; on a timeout,
// the test fails showing what it carries.
void waitForPodSecurityLabels(const std::string& name, const Labels& want) {
  bool reached =
      eventually(seconds(30), [&] { return podSecurityLabelsOf(namespaceObject(name)) == want; });
  CHECK_MESSAGE(reached, name << " carries " << json(podSecurityLabelsOf(namespaceObject(name)))
                              << ", not " << json(want));
}

void relabel(const std::string& ns, const json& labels) {
  auto patched = admin()->mergePatch(kube::resources::kNamespaces, "", ns,
                                     {{"metadata", {{"labels", labels}}}});
  REQUIRE_MESSAGE(patched.ok(), patched.status().toString());
}

// A server-side dry run of `pod` in `ns` through the whole admission chain, nothing stored.
Status dryRunPod(json pod, const std::string& ns) {
  pod["metadata"]["namespace"] = ns;
  return admin()->raw("POST", "/api/v1/namespaces/" + ns + "/pods?dryRun=All", pod.dump()).status();
}

struct Fixture {
  std::string name;  // the fixture's own name: its file name
  json pod;          // named validly (upstream's names have underscores)
};

// Kubernetes' own fixtures of `level`, `outcome` ("pass" or "fail"), read by kubectl itself.
std::vector<Fixture> fixtures(const std::string& level, const std::string& outcome) {
  auto r = ControlPlane::get().shell(
      "[ -d \"$TESTENV_POD_SECURITY_FIXTURES\" ] || { echo 'no fixtures: testenv.sh build' >&2; "
      "exit 1; }; kubectl create --dry-run=client -o json -f "
      "\"$TESTENV_POD_SECURITY_FIXTURES/" +
      level + "/" + outcome + "\"");
  REQUIRE_MESSAGE(r.exitCode == 0, r.err);
  // One JSON document per file, one after the other.
  std::vector<Fixture> out;
  std::istringstream in(r.out);
  while (!(in >> std::ws).eof()) {
    json pod;
    in >> pod;
    REQUIRE(pod["kind"] == "Pod");
    std::string name = pod["metadata"]["name"];
    std::string valid = name;
    std::replace(valid.begin(), valid.end(), '_', '-');
    pod["metadata"]["name"] = valid;
    out.push_back({name, pod});
  }
  return out;
}

// The namespace the fixtures run in: selected by `fixtures`, labelled by Bulkhead, and
// PodSecurity admission already enforcing there (it reads namespace labels from a cache of its
// own). Also a user's own labels, which Bulkhead leaves alone.
const std::string& fixturesNamespace() {
  static const std::string ns = [] {
    bulkhead();
    REQUIRE(createNamespace("psa-fixtures", {{"psa", "fixtures"},
                                     {"team", "payments"},
                                     {"pod-security.kubernetes.io/warn", "restricted"}}));
    waitForPodSecurityLabels("psa-fixtures", {{kEnforce, "baseline"},
                                              {kEnforceVersion, "latest"},
                                              {"pod-security.kubernetes.io/warn", "restricted"}});
    json hostNetwork = {
        {"apiVersion", "v1"},
        {"kind", "Pod"},
        {"metadata", {{"name", "probe"}}},
        {"spec", {{"hostNetwork", true}, {"containers", {{{"name", "c"}, {"image", "x"}}}}}}};
    REQUIRE(eventually(seconds(30), [&] {
      return dryRunPod(hostNetwork, "psa-fixtures").message().find(kRefusedByPodSecurity) !=
             std::string::npos;
    }));
    return std::string("psa-fixtures");
  }();
  return ns;
}

TEST_CASE("a selected namespace gets enforce=baseline and enforce-version=latest, Bulkhead's own") {
  const std::string& ns = fixturesNamespace();
  json object = namespaceObject(ns);
  CHECK(ownedByBulkhead(object) == std::set<std::string>{kEnforce, kEnforceVersion});
  // The user's labels are as they were, and not Bulkhead's.
  CHECK(policy::labelsOf(object).at("team") == "payments");
  CHECK(policy::labelsOf(object).at("psa") == "fixtures");
  // The field manager's entry is an Apply of those two labels and nothing else.
  int entries = 0;
  for (const auto& e : object["metadata"]["managedFields"]) {
    if (e["manager"] == policy::kPodSecurityFieldManager) {
      ++entries;
      CHECK(e["operation"] == "Apply");
      CHECK(e["fieldsV1"] == json::parse(R"({"f:metadata": {"f:labels": {
              "f:pod-security.kubernetes.io/enforce": {},
              "f:pod-security.kubernetes.io/enforce-version": {}}}})"));
    }
  }
  CHECK(entries == 1);

  // A full reconcile of every namespace (a spec change that changes no namespace's objects)
  // applies no label again: the cache tells that the labels are in place and Bulkhead's.
  BulkheadProcess& b = bulkhead();
  const std::string namespaceApplies = "bulkhead_api_writes_total{kind=\"Namespace\"";
  const std::string namespaceReconciles = "bulkhead_reconcile_total{controller=\"namespace\"";
  // First settled: no apply for longer than the 2 s in which the controller takes a write of its
  // own that its cache does not show yet as done, so that a needless apply now would be made.
  double applies = b.metric(namespaceApplies);
  auto unchangedSince = std::chrono::steady_clock::now();
  REQUIRE(eventually(seconds(30), [&] {
    if (double now = b.metric(namespaceApplies); now != applies) {
      applies = now;
      unchangedSince = std::chrono::steady_clock::now();
    }
    return std::chrono::steady_clock::now() - unchangedSince > seconds(3);
  }));
  double reconciles = b.metric(namespaceReconciles);
  auto touched = admin()->mergePatch(
      {"bulkhead.dev", "v1alpha1", "segmentationpolicies", "SegmentationPolicy", false}, "",
      "fixtures", {{"spec", {{"excludedNamespaces", {"no-such-namespace"}}}}});
  REQUIRE_MESSAGE(touched.ok(), touched.status().toString());
  CHECK(eventually(seconds(10), [&] { return b.metric(namespaceReconciles) > reconciles + 3; }));
  CHECK(b.metric(namespaceApplies) == applies);
  CHECK(namespaceObject(ns)["metadata"]["resourceVersion"] ==
        object["metadata"]["resourceVersion"]);
}

TEST_CASE(
    "Kubernetes' own baseline fixtures: every fail refused by PodSecurity, every pass admitted") {
  const std::string& ns = fixturesNamespace();
  // The control: a namespace no policy selects, so without Pod Security labels. What the API
  // server refuses in `ns` and admits there is refused because of the labels Bulkhead set.
  REQUIRE(createNamespace("psa-control", {}));
  auto fail = fixtures("baseline", "fail");
  auto pass = fixtures("baseline", "pass");
  int refused = 0, refusedByValidation = 0, admittedInControl = 0, admitted = 0;
  for (const auto& f : fail) {
    CAPTURE(f.name);
    Status inSelected = dryRunPod(f.pod, ns);
    Status inControl = dryRunPod(f.pod, "psa-control");
    if (kRefusedByValidation.contains(f.name)) {
      CHECK_MESSAGE(inSelected.code() == StatusCode::kInvalid, inSelected.toString());
      CHECK_MESSAGE(inControl.code() == StatusCode::kInvalid, inControl.toString());
      refusedByValidation += inSelected.code() == StatusCode::kInvalid;
      continue;
    }
    // "pods \"hostpathvolumes0\" is forbidden: violates PodSecurity \"baseline:latest\": hostPath
    // volumes (volume \"volume-hostpath\")"
    CHECK_MESSAGE(inSelected.code() == StatusCode::kForbidden, inSelected.toString());
    CHECK_MESSAGE(
        inSelected.message().starts_with("pods \"" + f.pod["metadata"]["name"].get<std::string>() +
                                         "\" is forbidden: " + kRefusedByPodSecurity),
        inSelected.toString());
    refused += inSelected.code() == StatusCode::kForbidden &&
               inSelected.message().find(kRefusedByPodSecurity) != std::string::npos;
    CHECK_MESSAGE(inControl.ok(), inControl.toString());
    admittedInControl += inControl.ok();
  }
  for (const auto& f : pass) {
    CAPTURE(f.name);
    Status s = dryRunPod(f.pod, ns);
    CHECK_MESSAGE(s.ok(), s.toString());
    admitted += s.ok();
  }
  MESSAGE("Pod Security baseline fixtures of k8s.io/pod-security-admission: "
          << fail.size() << " fail: " << refused << " refused by PodSecurity in " << ns
          << " (and admitted in a namespace without the labels: " << admittedInControl << "), "
          << refusedByValidation << " refused by validation first; " << pass.size()
          << " pass: " << admitted << " admitted");
  // The fixtures really are there: as many as upstream has for v1.35 (34 fail, 15 pass).
  CHECK(fail.size() == 34);
  CHECK(pass.size() == 15);
  CHECK(refused + refusedByValidation == static_cast<int>(fail.size()));
  CHECK(admittedInControl == refused);
  CHECK(admitted == static_cast<int>(pass.size()));
  REQUIRE(kubectl({"delete", "namespace", "psa-control", "--wait=false"}).exitCode == 0);
}

TEST_CASE("under baseline, Istio's injector needs CNI: istio-init's capabilities are refused") {
  const std::string& ns = fixturesNamespace();
  const std::string pod = R"({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-1", "labels": {"app.kubernetes.io/name": "web"}},
    "spec": {"serviceAccountName": "web",
             "containers": [{"name": "web", "image": "registry.example/web:1.0"}]}})";
  for (bool cni : {false, true}) {
    for (bool native : {false, true}) {
      CAPTURE(cni);
      CAPTURE(native);
      auto r = ControlPlane::get().shell(std::string("\"$TESTENV_ISTIO_INJECT\" --output json") +
                                             (cni ? " --cni" : "") +
                                             " --native-sidecars=" + (native ? "true" : "false"),
                                         pod);
      REQUIRE_MESSAGE(r.exitCode == 0, r.err);
      json injected = json::parse(r.out).at(0);
      REQUIRE(injected.dump().find(cni ? "\"istio-validation\"" : "\"istio-init\"") !=
              std::string::npos);
      Status s = dryRunPod(injected, ns);
      if (cni) {
        CHECK_MESSAGE(s.ok(), s.toString());
      } else {
        CHECK_MESSAGE(
            s.message() ==
                "pods \"web-1\" is forbidden: " + kRefusedByPodSecurity +
                    "non-default capabilities (container \"istio-init\" must not "
                    "include \"NET_ADMIN\", \"NET_RAW\" in securityContext.capabilities.add)",
            s.toString());
      }
    }
  }
}

TEST_CASE("labels go when the namespace leaves; labels Bulkhead does not own stay") {
  bulkhead();
  // Before selection: the user's own warn label, and an enforce label of the same value as the
  // policy's (so also the user's, after Bulkhead applied it too).
  REQUIRE(createNamespace("psa-leaving", {{"team", "blue"},
                                  {"pod-security.kubernetes.io/warn", "restricted"},
                                  {"pod-security.kubernetes.io/audit", "baseline"}}));
  REQUIRE(createNamespace("psa-shared", {{kEnforce, "baseline"}}));
  // A different level set before selection: the policy's is forced over it, and it is
  // Bulkhead's from then on (so it leaves with the policy).
  REQUIRE(createNamespace("psa-taken", {{kEnforce, "restricted"}, {kEnforceVersion, "v1.30"}}));
  for (const char* ns : {"psa-leaving", "psa-shared", "psa-taken"}) {
    relabel(ns, {{"psa", "on"}});
  }
  waitForPodSecurityLabels("psa-leaving", {{kEnforce, "baseline"},
                                           {kEnforceVersion, "latest"},
                                           {"pod-security.kubernetes.io/warn", "restricted"},
                                           {"pod-security.kubernetes.io/audit", "baseline"}});
  waitForPodSecurityLabels("psa-shared", kBaseline);
  waitForPodSecurityLabels("psa-taken", kBaseline);
  for (const char* ns : {"psa-leaving", "psa-shared", "psa-taken"}) {
    CAPTURE(ns);
    CHECK(ownedByBulkhead(namespaceObject(ns)) == std::set<std::string>{kEnforce, kEnforceVersion});
  }

  // Out of every policy: exactly Bulkhead's labels go, with its ownership.
  for (const char* ns : {"psa-leaving", "psa-shared", "psa-taken"}) {
    relabel(ns, {{"psa", nullptr}});
  }
  waitForPodSecurityLabels("psa-leaving", {{"pod-security.kubernetes.io/warn", "restricted"},
                                           {"pod-security.kubernetes.io/audit", "baseline"}});
  waitForPodSecurityLabels("psa-shared", {{kEnforce, "baseline"}});  // the user's, still
  waitForPodSecurityLabels("psa-taken", {});
  for (const char* ns : {"psa-leaving", "psa-shared", "psa-taken"}) {
    CAPTURE(ns);
    CHECK(ownedByBulkhead(namespaceObject(ns)).empty());
  }
  CHECK(policy::labelsOf(namespaceObject("psa-leaving")).at("team") == "blue");
}

TEST_CASE("Unmanaged writes no label; a policy turned Unmanaged or deleted takes its labels away") {
  BulkheadProcess& b = bulkhead();
  const kube::ResourceType policies{"bulkhead.dev", "v1alpha1", "segmentationpolicies",
                                    "SegmentationPolicy", false};
  // A namespace of an Unmanaged policy is segmented, and its own Pod Security label stays its.
  REQUIRE(createNamespace("psa-own", {{"psa", "hands-off"}, {kEnforce, "privileged"}}));
  REQUIRE(eventually(seconds(30), [] { return segmented("psa-own"); }));
  json own = namespaceObject("psa-own");
  CHECK(podSecurityLabelsOf(own) == Labels{{kEnforce, "privileged"}});
  for (const auto& e : own["metadata"]["managedFields"]) {
    CHECK(e["manager"] != policy::kPodSecurityFieldManager);
  }

  // A policy whose level changes, then becomes Unmanaged, then comes back and is deleted.
  auto created = kubectl({"apply", "-f", "-"}, R"(
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: changing}
spec:
  namespaceSelector: {matchLabels: {psa: changing}}
  podSecurity: {enforce: restricted, version: v1.34}
)");
  REQUIRE_MESSAGE(created.exitCode == 0, created.err);
  REQUIRE(createNamespace("psa-changing", {{"psa", "changing"}}));
  waitForPodSecurityLabels("psa-changing", {{kEnforce, "restricted"}, {kEnforceVersion, "v1.34"}});
  auto patch = [&](const json& podSecurity) {
    auto r =
        admin()->mergePatch(policies, "", "changing", {{"spec", {{"podSecurity", podSecurity}}}});
    REQUIRE_MESSAGE(r.ok(), r.status().toString());
  };
  patch({{"enforce", "Unmanaged"}, {"version", nullptr}});
  waitForPodSecurityLabels("psa-changing", {});
  CHECK(ownedByBulkhead(namespaceObject("psa-changing")).empty());
  CHECK(segmented("psa-changing"));  // still governed, only without Pod Security labels
  patch({{"enforce", "baseline"}});
  waitForPodSecurityLabels("psa-changing", kBaseline);

  // Deleting the policy: its finalizer holds it until the labels are gone too.
  REQUIRE(admin()->remove(policies, "", "changing").ok());
  waitForPodSecurityLabels("psa-changing", {});
  CHECK(eventually(seconds(30), [&] {
    return admin()->get(policies, "", "changing").status().code() == StatusCode::kNotFound;
  }));
  CHECK(ownedByBulkhead(namespaceObject("psa-changing")).empty());
  CHECK_FALSE(segmented("psa-changing"));
  CHECK(b.metric("bulkhead_reconcile_total{controller=\"namespace\",result=\"error\"") == 0);
}

// `bulkhead check` and the webhook on the same external inputs: every Pod Security fixture of
// Kubernetes' own tests (both levels, pass and fail), given the required label so that Bulkhead's
// other rules decide, judged by `bulkhead check` from files and by the webhook through a server
// dry run in a namespace the same policy governs. Verdicts and messages must be equal.
TEST_CASE(
    "bulkhead check agrees with the webhook on every Pod Security fixture and Istio-injected "
    "workload") {
  bulkhead();
  const std::string policyYaml = R"(apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: checked}
spec:
  namespaceSelector: {matchLabels: {psa: checked}}
  podSecurity: {enforce: Unmanaged}  # Bulkhead's own verdicts only
)";
  auto applied = kubectl({"apply", "-f", "-"}, policyYaml);
  REQUIRE_MESSAGE(applied.exitCode == 0, applied.err);
  REQUIRE(createNamespace("psa-checked", {{"psa", "checked"}}));
  json probe = {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata", {{"name", "probe"}, {"labels", {{"app.kubernetes.io/name", "p"}}}}},
      {"spec", {{"hostNetwork", true}, {"containers", {{{"name", "c"}, {"image", "x"}}}}}}};
  REQUIRE(eventually(seconds(30), [&] {
    return dryRunPod(probe, "psa-checked").message().find("forbidHostNetwork") != std::string::npos;
  }));

  const std::string dir = ControlPlane::get().dir() + "/check-fixtures";
  ControlPlane::get().shell("rm -rf '" + dir + "' && mkdir -p '" + dir + "'");
  std::map<std::string, json> pods;  // file name -> pod
  for (const char* level : {"baseline", "restricted"}) {
    for (const char* outcome : {"pass", "fail"}) {
      for (auto& f : fixtures(level, outcome)) {
        f.pod["metadata"]["labels"]["app.kubernetes.io/name"] = "fixture";
        f.pod["metadata"]["namespace"] = "psa-checked";
        const std::string file = std::string(level) + "-" + outcome + "-" +
                                 f.pod["metadata"]["name"].get<std::string>() + ".json";
        std::ofstream(dir + "/" + file) << f.pod.dump();
        pods[file] = f.pod;
      }
    }
  }
  // Pods and workloads as Istio's real injector makes them (istio-init or Istio CNI, sidecar
  // container or native sidecar): their proxy allowances must be judged alike too.
  const std::string workloads = R"([
    {"apiVersion": "v1", "kind": "Pod",
     "metadata": {"name": "web-1", "labels": {"app.kubernetes.io/name": "web"}},
     "spec": {"serviceAccountName": "web",
              "containers": [{"name": "web", "image": "registry.example/web:1.0",
                              "ports": [{"containerPort": 8080}]}]}},
    {"apiVersion": "apps/v1", "kind": "Deployment",
     "metadata": {"name": "api", "labels": {"app.kubernetes.io/name": "api"}},
     "spec": {"selector": {"matchLabels": {"app": "api"}},
              "template": {"metadata": {"labels": {"app": "api", "app.kubernetes.io/name": "api"}},
                           "spec": {"containers": [{"name": "api", "image": "registry.example/api:2",
                                                    "securityContext": {"runAsUser": 1337}}]}}}}])";
  int injected = 0;
  for (bool cni : {false, true}) {
    for (bool native : {false, true}) {
      for (const auto& input : json::parse(workloads)) {
        auto r = ControlPlane::get().shell(
            std::string("\"$TESTENV_ISTIO_INJECT\" --output json") + (cni ? " --cni" : "") +
                " --native-sidecars=" + (native ? "true" : "false"),
            input.dump());
        REQUIRE_MESSAGE(r.exitCode == 0, r.err);
        json object = json::parse(r.out).at(0);
        object["metadata"]["namespace"] = "psa-checked";
        const std::string file = std::string("istio-") + (cni ? "cni" : "init") + "-" +
                                 (native ? "native" : "container") + "-" +
                                 object["metadata"]["name"].get<std::string>() + ".json";
        std::ofstream(dir + "/" + file) << object.dump();
        pods[file] = object;
        ++injected;
      }
    }
  }
  std::ofstream(dir + "/../checked-policy.yaml") << policyYaml;
  auto checked = ControlPlane::get().shell(
      std::string(BULKHEAD_BINARY) + " check -f '" + dir + "' --policy '" + dir +
      "/../checked-policy.yaml' --namespace-labels psa=checked -o json");
  REQUIRE_MESSAGE(checked.exitCode <= 1, checked.err);
  std::map<std::string, json> verdicts;
  const json report = json::parse(checked.out);
  for (const auto& r : report["results"]) {
    std::string file = r["file"];
    verdicts[file.substr(file.rfind('/') + 1)] = r;
  }
  REQUIRE_MESSAGE(verdicts.size() == pods.size(), checked.out.substr(0, 2000) << checked.err);

  const std::string kDenied = "denied the request: ";
  int compared = 0, refused = 0, byValidation = 0;
  for (const auto& [file, pod] : pods) {
    Status s = pod["kind"] == "Deployment"
                   ? admin()
                         ->raw("POST", "/apis/apps/v1/namespaces/psa-checked/deployments?dryRun=All",
                               pod.dump())
                         .status()
                   : dryRunPod(pod, "psa-checked");
    const json& v = verdicts[file];
    if (s.ok()) {
      CHECK_MESSAGE(v["verdict"] == "admitted",
                    file << ": the webhook admits, check says " << v.dump());
    } else if (auto at = s.message().find(kDenied); at != std::string::npos) {
      ++refused;
      CHECK_MESSAGE(v["verdict"] == "refused",
                    file << ": the webhook refuses, check says " << v.dump());
      CHECK(v["message"] == s.message().substr(at + kDenied.size()));
    } else {
      ++byValidation;  // refused by the API server's validation before any webhook
      continue;
    }
    ++compared;
  }
  MESSAGE("bulkhead check and the webhook compared on " << compared << " objects (" << refused
                                                        << " refused; " << injected
                                                        << " made by Istio's injector), "
                                                        << byValidation
                                                        << " refused by validation first");
  CHECK(compared > 50);
  CHECK(refused > 10);
}

}  // namespace
}  // namespace bulkhead::testing
