// AccessGrant end to end through the real API server: the chart installed with real Helm, one
// `bulkhead` (webhook and leader) serving it, users impersonated with kubectl --as. A grant is
// Pending until someone else in the approver groups approves it, then opens exactly its flow
// (NetworkPolicies on both sides, an Istio AuthorizationPolicy) until it expires or is deleted.
#include "policy/grants.h"

#include <doctest/doctest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/time_format.h"
#include "policy/segmentation_policy.h"
#include "tests/support/bulkhead_process.h"
#include "tests/support/control_plane.h"

namespace bulkhead::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Steady = std::chrono::steady_clock;

const std::vector<std::string> kAlice = {"--as=alice", "--as-group=system:masters"};
const std::vector<std::string> kBob = {"--as=bob", "--as-group=security",
                                       "--as-group=system:masters"};
const std::vector<std::string> kCarol = {"--as=carol", "--as-group=system:masters"};
const std::vector<std::string> kDan = {"--as=dan", "--as-group=security", "--as-group=netops",
                                       "--as-group=system:masters"};

std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& as) {
  args.insert(args.end(), as.begin(), as.end());
  return args;
}

const char* kPolicies = R"(
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: grants-guarded}
spec:
  namespaceSelector: {matchLabels: {grants: guarded}}
  exceptions: {approverGroups: [security], maxDuration: 2h}
  authorization: {defaultDeny: true}  # so a grant needs an Istio ALLOW too
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: grants-open}
spec:
  namespaceSelector: {matchLabels: {grants: open}}
  authorization: {defaultDeny: true}
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: grants-netops}
spec:
  namespaceSelector: {matchLabels: {grants: netops}}
  exceptions: {approverGroups: [netops]}
)";

BulkheadProcess& serving() {
  static BulkheadProcess* process = [] {
    BulkheadProcess* p = &servingBulkhead("grants");
    auto applied = kubectl({"apply", "-f", "-"}, kPolicies);
    REQUIRE_MESSAGE(applied.exitCode == 0, applied.err);
    for (const auto& [ns, label] :
         std::vector<std::pair<std::string, std::string>>{{"api", "guarded"},
                                                          {"web", "open"},
                                                          {"api2", "open"},
                                                          {"ops", "netops"},
                                                          {"loose", ""}}) {
      REQUIRE(kubectl({"create", "namespace", ns}).exitCode == 0);
      if (!label.empty()) {
        REQUIRE(kubectl({"label", "namespace", ns, "grants=" + label}).exitCode == 0);
      }
    }
    REQUIRE(eventually(seconds(30), [] {
      for (const auto* ns : {"api", "web", "api2", "ops"}) {
        if (kubectl({"get", "networkpolicy", "bulkhead-default-deny", "-n", ns}).exitCode != 0) {
          return false;
        }
      }
      return true;
    }));
    return p;
  }();
  return *process;
}

std::string inSeconds(int n) {
  return formatRfc3339(std::chrono::system_clock::now() + seconds(n));
}

std::string grant(const std::string& name, const std::string& ns, const std::string& from,
                  const std::string& expiry, const std::string& requestedBy = "alice") {
  return R"({"apiVersion": "bulkhead.dev/v1alpha1", "kind": "AccessGrant",
    "metadata": {"name": ")" +
         name + R"(", "namespace": ")" + ns + R"("},
    "spec": {"from": {"namespace": ")" +
         from + R"(", "podSelector": {"matchLabels": {"app": "web"}},
                      "serviceAccount": "web"},
             "to": {"podSelector": {"matchLabels": {"app": "api"}},
                    "ports": [{"port": 8080, "protocol": "TCP"}]},
             )" +
         expiry + R"(, "reason": "INC-4711 debugging checkout",
             "requestedBy": ")" +
         requestedBy + R"("}})";
}

json getJson(const std::vector<std::string>& args) {
  auto r = kubectl(with(args, {"-o", "json"}));
  return r.exitCode == 0 ? json::parse(r.out) : json();
}

std::string phaseOf(const std::string& name, const std::string& ns) {
  json g = getJson({"get", "accessgrant", name, "-n", ns});
  return g.is_null() ? "" : g.value("status", json::object()).value("phase", "");
}

// "Kind/namespace/name" of the objects generated for a grant, with their specs.
std::map<std::string, json> grantObjects(const std::string& ns, const std::string& name) {
  std::map<std::string, json> out;
  const std::string selector =
      std::string(policy::kGrantLabel) + "=" + name + "," + policy::kGrantNamespaceLabel + "=" + ns;
  for (const auto* kind : {"networkpolicies", "authorizationpolicies.security.istio.io"}) {
    json list = getJson({"get", kind, "-A", "-l", selector});
    for (const auto& o : list.value("items", json::array())) {
      out[o["kind"].get<std::string>() + "/" + o["metadata"]["namespace"].get<std::string>() + "/" +
          o["metadata"]["name"].get<std::string>()] = o;
    }
  }
  return out;
}

bool hasEvent(const std::string& ns, const std::string& reason, const std::string& text) {
  json events = getJson({"get", "events", "-n", ns});
  for (const auto& e : events.value("items", json::array())) {
    if (e.value("reason", "") == reason && e.value("message", "").find(text) != std::string::npos) {
      return true;
    }
  }
  return false;
}

TEST_CASE("a grant is Pending until approved by someone else in the approver groups") {
  serving();
  // requestedBy must be the creating user.
  auto forged =
      kubectl(with({"create", "-f", "-"}, kCarol),
              grant("debug", "api", "web", R"("expiresAt": ")" + inSeconds(3600) + "\"", "alice"));
  CHECK(denial(forged).find("bulkhead: AccessGrant \"debug\" in namespace \"api\"") == 0);
  // Beyond the policy's maxDuration (2h).
  auto tooLong = kubectl(with({"create", "-f", "-"}, kAlice),
                         grant("debug", "api", "web", R"("duration": "3h")"));
  CHECK(denial(tooLong).find("bulkhead: AccessGrant \"debug\"") == 0);

  auto created = kubectl(with({"create", "-f", "-"}, kAlice),
                         grant("debug", "api", "web", R"("expiresAt": ")" + inSeconds(40) + "\""));
  REQUIRE_MESSAGE(created.exitCode == 0, created.err);
  CHECK(eventually(seconds(10), [] { return phaseOf("debug", "api") == "Pending"; }));
  CHECK(grantObjects("api", "debug").empty());
  CHECK(eventually(seconds(10), [] { return hasEvent("api", "GrantRequested", "alice"); }));

  auto approve = [](const std::vector<std::string>& as, const std::string& approver) {
    return kubectl(with({"patch", "accessgrant", "debug", "-n", "api", "--type=merge", "-p",
                         R"({"spec":{"approvedBy":")" + approver + R"("}})"},
                        as));
  };
  CHECK(approve(kAlice, "alice").exitCode != 0);  // the requester
  auto outsider = denial(approve(kCarol, "carol"));
  CHECK(outsider.find("bulkhead: AccessGrant \"debug\" in namespace \"api\"") == 0);
  CHECK(outsider.find("carol") != std::string::npos);
  CHECK(phaseOf("debug", "api") == "Pending");

  auto approved = approve(kBob, "bob");
  REQUIRE_MESSAGE(approved.exitCode == 0, approved.err);
  REQUIRE(eventually(seconds(10), [] { return phaseOf("debug", "api") == "Active"; }));
  auto objects = grantObjects("api", "debug");
  REQUIRE(objects.size() == 3);
  const json& ingress = objects["NetworkPolicy/api/bulkhead-grant-debug"];
  CHECK(ingress["spec"]["podSelector"] == json({{"matchLabels", {{"app", "api"}}}}));
  CHECK(ingress["spec"]["policyTypes"] == json({"Ingress"}));
  CHECK(ingress["spec"]["ingress"] ==
        json::parse(R"([{"from": [{"namespaceSelector": {"matchLabels":
                          {"kubernetes.io/metadata.name": "web"}},
                          "podSelector": {"matchLabels": {"app": "web"}}}],
                        "ports": [{"port": 8080, "protocol": "TCP"}]}])"));
  const json& egress = objects["NetworkPolicy/web/bulkhead-grant-api.debug"];
  CHECK(egress["spec"]["podSelector"] == json({{"matchLabels", {{"app", "web"}}}}));
  CHECK(egress["spec"]["policyTypes"] == json({"Egress"}));
  CHECK(egress["spec"]["egress"] == json::parse(R"([{"to": [{"namespaceSelector": {"matchLabels":
                          {"kubernetes.io/metadata.name": "api"}},
                          "podSelector": {"matchLabels": {"app": "api"}}}],
                        "ports": [{"port": 8080, "protocol": "TCP"}]}])"));
  const json& allow = objects["AuthorizationPolicy/api/bulkhead-grant-debug"];
  CHECK(allow["spec"]["action"] == "ALLOW");
  CHECK(allow["spec"]["selector"] == json({{"matchLabels", {{"app", "api"}}}}));
  CHECK(allow["spec"]["rules"] ==
        json::parse(R"([{"from": [{"source": {"principals": ["cluster.local/ns/web/sa/web"]}}],
                        "to": [{"operation": {"ports": ["8080"]}}]}])"));
  CHECK(eventually(seconds(10), [] {
    return hasEvent("api", "GrantApproved", "bob") && hasEvent("web", "GrantApproved", "bob");
  }));

  // Once Active the spec is fixed, except moving expiresAt earlier.
  auto widened = kubectl(with({"patch", "accessgrant", "debug", "-n", "api", "--type=merge", "-p",
                               R"({"spec":{"to":{"ports":[{"port":22,"protocol":"TCP"}]}}})"},
                              kAlice));
  CHECK(denial(widened).find("bulkhead: AccessGrant \"debug\"") == 0);

  // Nobody but the controller changes or deletes what the grant opened.
  auto edited = kubectl({"patch", "networkpolicy", "bulkhead-grant-debug", "-n", "api",
                         "--type=merge", "-p", R"({"spec":{"podSelector":{}}})"});
  CHECK(denial(edited).find("bulkhead:") == 0);
  CHECK(denial(kubectl({"delete", "networkpolicy", "bulkhead-grant-api.debug", "-n", "web"}))
            .find("bulkhead:") == 0);
  // Drift the webhook cannot see (made as the controller's own user) is repaired.
  auto asController = kubectl({"delete", "networkpolicy", "bulkhead-grant-api.debug", "-n", "web",
                               "--as=system:serviceaccount:bulkhead-system:bulkhead"});
  REQUIRE_MESSAGE(asController.exitCode == 0, asController.err);
  CHECK(eventually(seconds(10), [] {
    return grantObjects("api", "debug").contains("NetworkPolicy/web/bulkhead-grant-api.debug");
  }));

  // At expiresAt everything closes together, on a timer.
  json status = getJson({"get", "accessgrant", "debug", "-n", "api"})["status"];
  const auto expiresAt = parseRfc3339(status.value("expiresAt", "")).value();
  while (std::chrono::system_clock::now() < expiresAt - milliseconds(200)) {
    std::this_thread::sleep_for(milliseconds(100));
  }
  REQUIRE(eventually(seconds(10), [] { return grantObjects("api", "debug").empty(); }));
  const auto lag = std::chrono::system_clock::now() - expiresAt;
  MESSAGE("objects gone " << std::chrono::duration_cast<milliseconds>(lag).count()
                          << " ms after expiresAt (measured by polling)");
  CHECK(lag < seconds(2));
  CHECK(eventually(seconds(10), [] { return phaseOf("debug", "api") == "Expired"; }));
  CHECK(eventually(seconds(10), [] { return hasEvent("web", "GrantExpired", "debug"); }));
  json history = getJson({"get", "accessgrant", "debug", "-n", "api"})["status"]["history"];
  REQUIRE(history.size() == 3);
  CHECK(history[0]["phase"] == "Pending");
  CHECK(history[1]["phase"] == "Active");
  CHECK(history[2]["phase"] == "Expired");
}

TEST_CASE("no approval needed: Active at once; deleting it revokes at once") {
  serving();
  auto created = kubectl(with({"create", "-f", "-"}, kAlice),
                         grant("quick", "api2", "web", R"("duration": "1h")"));
  REQUIRE_MESSAGE(created.exitCode == 0, created.err);
  REQUIRE(eventually(seconds(10), [] { return grantObjects("api2", "quick").size() == 3; }));
  CHECK(eventually(seconds(10), [] { return phaseOf("quick", "api2") == "Active"; }));
  json status = getJson({"get", "accessgrant", "quick", "-n", "api2"})["status"];
  const auto activated = parseRfc3339(status.value("activatedAt", "")).value();
  CHECK(parseRfc3339(status.value("expiresAt", "")).value() == activated + std::chrono::hours(1));

  auto deleted = kubectl({"delete", "accessgrant", "quick", "-n", "api2", "--wait=true"});
  REQUIRE_MESSAGE(deleted.exitCode == 0, deleted.err);
  CHECK(grantObjects("api2", "quick").empty());  // the finalizer held it until they were gone
  CHECK(eventually(seconds(10), [] { return hasEvent("web", "GrantRevoked", "quick"); }));
}

TEST_CASE("a source namespace no policy selects gets only the destination side") {
  serving();
  auto created = kubectl(with({"create", "-f", "-"}, kAlice),
                         grant("from-loose", "api2", "loose", R"("duration": "1h")"));
  REQUIRE_MESSAGE(created.exitCode == 0, created.err);
  REQUIRE(eventually(seconds(10), [] { return phaseOf("from-loose", "api2") == "Active"; }));
  std::this_thread::sleep_for(milliseconds(500));
  auto objects = grantObjects("api2", "from-loose");
  CHECK(objects.size() == 2);
  CHECK(objects.contains("NetworkPolicy/api2/bulkhead-grant-from-loose"));
  CHECK(objects.contains("AuthorizationPolicy/api2/bulkhead-grant-from-loose"));
}

TEST_CASE("the source namespace's policy must accept the grant: its approvers approve too") {
  serving();
  auto created =
      kubectl(with({"create", "-f", "-"}, kAlice),
              grant("from-ops", "api", "ops", R"("expiresAt": ")" + inSeconds(3600) + "\""));
  REQUIRE_MESSAGE(created.exitCode == 0, created.err);
  auto approve = [](const std::vector<std::string>& as, const std::string& approver) {
    return kubectl(with({"patch", "accessgrant", "from-ops", "-n", "api", "--type=merge", "-p",
                         R"({"spec":{"approvedBy":")" + approver + R"("}})"},
                        as));
  };
  auto onlyDestination = denial(approve(kBob, "bob"));
  CHECK(onlyDestination.find("grants-netops") != std::string::npos);
  auto both = approve(kDan, "dan");
  CHECK_MESSAGE(both.exitCode == 0, both.err);
  CHECK(eventually(seconds(10), [] { return phaseOf("from-ops", "api") == "Active"; }));
}

}  // namespace
}  // namespace bulkhead::testing
