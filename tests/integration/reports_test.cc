// The background scan through the real API server: the chart installed with real Helm, one
// `bulkhead` (webhook and leader) serving it. Existing pods and workloads that break the rules
// (admitted under Audit, or made before their namespace was selected) are counted on the
// policy's status at once, published as an OpenReports Report once the pinned module's CRD is
// installed (no restart), follow fixes and drift, and the Report goes with the namespace's
// selection.
#include <doctest/doctest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <set>

#include "tests/support/bulkhead_process.h"
#include "tests/support/control_plane.h"

namespace bulkhead::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

json getJson(const std::vector<std::string>& args) {
  std::vector<std::string> all = {"get"};
  all.insert(all.end(), args.begin(), args.end());
  all.insert(all.end(), {"-o", "json"});
  auto r = kubectl(all);
  return r.exitCode == 0 ? json::parse(r.out, nullptr, false) : json();
}

const char* kPolicies = R"(
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: scan-audit}
spec:
  mode: Audit
  podSecurity: {enforce: privileged}  # else Kubernetes' own admission refuses hostNetwork first
  namespaceSelector: {matchLabels: {scan: audit}}
  exceptions: {approverGroups: [security]}
)";

// A pod with `spec` under the required label (unless `labelled` is false).
std::string pod(const std::string& name, const std::string& spec, bool labelled = true) {
  return R"({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": ")" + name + R"(", )" +
         (labelled ? R"("labels": {"app.kubernetes.io/name": ")" + name + R"("}, )" : "") +
         R"("namespace": "scan-a"}, "spec": )" + spec + "}";
}

const char* kWeb = R"({"apiVersion": "apps/v1", "kind": "Deployment",
  "metadata": {"name": "web", "namespace": "scan-a"},
  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
           "template": {"metadata": {"labels": {"app": "web", "app.kubernetes.io/name": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                                                 "ports": [{"containerPort": 80,
                                                            "hostPort": 8080}]}]}}}})";

const char* kContainer = R"([{"name": "app", "image": "app:1"}])";

json status() { return getJson({"segmentationpolicy", "scan-audit"}).value("status", json()); }

// (kind/name, rule) of every result of the namespace's Report.
std::set<std::string> results(const json& report) {
  std::set<std::string> out;
  for (const auto& r : report.value("results", json::array())) {
    out.insert(r["resources"][0].value("kind", "") + "/" + r["resources"][0].value("name", "") +
               " " + r.value("rule", "") + " " + r.value("result", ""));
  }
  return out;
}

TEST_CASE("the background scan counts, reports, follows fixes and goes with the selection") {
  servingBulkhead("reports");
  REQUIRE(kubectl({"apply", "-f", "-"}, kPolicies).exitCode == 0);
  REQUIRE(kubectl({"create", "namespace", "scan-a"}).exitCode == 0);
  REQUIRE(kubectl({"label", "namespace", "scan-a", "scan=audit"}).exitCode == 0);
  REQUIRE(eventually(seconds(30), [] {
    return kubectl({"get", "networkpolicy", "bulkhead-default-deny", "-n", "scan-a"}).exitCode ==
           0;
  }));
  // Audit admits what breaks the rules (with an audit annotation): these exist now.
  for (const auto& p : {pod("ok", std::string(R"({"containers": )") + kContainer + "}"),
                        pod("host", std::string(R"({"hostNetwork": true, "containers": )") +
                                        kContainer + "}"),
                        pod("nolabel", std::string(R"({"containers": )") + kContainer + "}",
                            false)}) {
    auto created = kubectl({"create", "-f", "-"}, p);
    REQUIRE_MESSAGE(created.exitCode == 0, created.err);
  }
  REQUIRE(kubectl({"create", "-f", "-"}, kWeb).exitCode == 0);

  // Without the OpenReports CRD the counts are on the status all the same.
  CHECK(eventually(seconds(30), [] {
    json s = status();
    return s.value("violatingPods", -1) == 2 && s.value("violatingWorkloads", -1) == 1;
  }));
  CHECK(kubectl({"get", "reports.openreports.io", "-n", "scan-a"}).exitCode != 0);

  // The CRD, from the pinned module, appears: discovery notices, Reports are published.
  auto crd = ControlPlane::get().shell(
      "kubectl apply --server-side -f \"$TESTENV_OPENREPORTS_CRD\" >/dev/null && "
      "kubectl wait --for condition=established --timeout=60s crd/reports.openreports.io");
  REQUIRE_MESSAGE(crd.exitCode == 0, crd.err);
  json report;
  CHECK(eventually(seconds(60), [&] {
    report = getJson({"reports.openreports.io", "bulkhead", "-n", "scan-a"});
    return report.is_object();
  }));
  CHECK(results(report) == std::set<std::string>{"Deployment/web forbidHostPorts fail",
                                                 "Pod/host forbidHostNetwork fail",
                                                 "Pod/nolabel requiredLabels fail"});
  CHECK(report["summary"] ==
        json{{"pass", 1}, {"fail", 3}, {"warn", 0}, {"error", 0}, {"skip", 0}});
  CHECK(report["scope"] == json{{"apiVersion", "v1"}, {"kind", "Namespace"}, {"name", "scan-a"}});
  for (const auto& r : report["results"]) {
    if (r["resources"][0]["name"] == "host") {
      CHECK(r["message"] ==
            "bulkhead: pod \"host\" in namespace \"scan-a\" violates forbidHostNetwork "
            "(spec.hostNetwork=true) of SegmentationPolicy \"scan-audit\"; remove hostNetwork or "
            "request a SegmentationException");
      CHECK(r["properties"]["mode"] == "Audit");
    }
  }
  CHECK(report["metadata"]["labels"]["bulkhead.dev/policy"] == "scan-audit");

  // Drift: a Report deleted by hand comes back.
  REQUIRE(kubectl({"delete", "reports.openreports.io", "bulkhead", "-n", "scan-a"}).exitCode == 0);
  CHECK(eventually(seconds(30), [] {
    return results(getJson({"reports.openreports.io", "bulkhead", "-n", "scan-a"})).size() == 3;
  }));

  // Fixing them: the Report and the counts follow.
  REQUIRE(kubectl({"delete", "pod", "host", "-n", "scan-a", "--wait=false"}).exitCode == 0);
  REQUIRE(kubectl({"label", "pod", "nolabel", "-n", "scan-a", "app.kubernetes.io/name=nolabel"})
              .exitCode == 0);
  REQUIRE(kubectl({"patch", "deployment", "web", "-n", "scan-a", "--type=json", "-p",
                   R"([{"op": "remove",
                        "path": "/spec/template/spec/containers/0/ports/0/hostPort"}])"})
              .exitCode == 0);
  CHECK(eventually(seconds(30), [] {
    json r = getJson({"reports.openreports.io", "bulkhead", "-n", "scan-a"});
    return r.is_object() && r["results"].empty() && r["summary"]["pass"] == 3;
  }));
  CHECK(eventually(seconds(30), [] {
    json s = status();
    return s.value("violatingPods", -1) == 0 && s.value("violatingWorkloads", -1) == 0;
  }));

  // Leaving the selection (an approver may) takes the Report away.
  REQUIRE(kubectl({"label", "namespace", "scan-a", "scan-", "--as=sec", "--as-group=security",
                   "--as-group=system:masters"})
              .exitCode == 0);
  CHECK(eventually(seconds(30), [] {
    return kubectl({"get", "reports.openreports.io", "bulkhead", "-n", "scan-a"}).exitCode != 0;
  }));
  CHECK(status().value("violatingPods", -1) == 0);
}

}  // namespace
}  // namespace bulkhead::testing
