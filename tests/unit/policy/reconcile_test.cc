// The decisions the controller's reconcilers leave to the pure core: what one namespace
// reconcile writes and deletes (policy/namespace_plan.h), and a SegmentationPolicy's status
// (policy/policy_status.h). Expected results are written out in full.
#include <doctest/doctest.h>

#include "common/time_format.h"
#include "policy/namespace_plan.h"
#include "policy/policy_status.h"

namespace bulkhead::policy {
namespace {

using nlohmann::json;

json networkPolicy(const std::string& name, json spec) {
  return {{"apiVersion", "networking.k8s.io/v1"},
          {"kind", "NetworkPolicy"},
          {"metadata",
           {{"name", name},
            {"namespace", "shop"},
            {"labels",
             {{"app.kubernetes.io/managed-by", "bulkhead"}, {"bulkhead.dev/policy", "baseline"}}}}},
          {"spec", std::move(spec)}};
}

// As the API server returns it: uid, resourceVersion, defaults.
json cached(json object) {
  object["metadata"]["uid"] = "uid-" + object["metadata"].value("name", "");
  object["metadata"]["resourceVersion"] = "42";
  return object;
}

const json kDenySpec = {{"podSelector", json::object()}, {"policyTypes", {"Ingress", "Egress"}}};
const json kDnsSpec = {{"podSelector", json::object()},
                       {"policyTypes", {"Egress"}},
                       {"egress", {{{"ports", {{{"port", 53}, {"protocol", "UDP"}}}}}}}};

TEST_CASE("planNamespace: a new namespace gets every object applied, none a repair") {
  const auto desired = {networkPolicy("deny", kDenySpec), networkPolicy("dns", kDnsSpec)};
  auto plan = planNamespace(desired, {}, {}, false);
  REQUIRE(plan.writes.size() == 2);
  CHECK(plan.writes[0].object == networkPolicy("deny", kDenySpec));
  CHECK_FALSE(plan.writes[0].replace);
  CHECK_FALSE(plan.writes[0].repair);
  CHECK(plan.writes[1].object == networkPolicy("dns", kDnsSpec));
  CHECK(plan.deletes.empty());
  CHECK(plan.awaitingWatch.empty());
}

TEST_CASE("planNamespace: nothing to do when the cache matches") {
  const std::vector<json> desired = {networkPolicy("deny", kDenySpec)};
  auto plan = planNamespace(desired, {cached(networkPolicy("deny", kDenySpec))}, {}, true);
  CHECK(plan.writes.empty());
  CHECK(plan.deletes.empty());
}

TEST_CASE("planNamespace: a deleted object of a segmented namespace is a repair") {
  const std::vector<json> desired = {networkPolicy("deny", kDenySpec)};
  auto plan = planNamespace(desired, {}, {}, true);
  REQUIRE(plan.writes.size() == 1);
  CHECK_FALSE(plan.writes[0].replace);
  CHECK(plan.writes[0].repair);
}

TEST_CASE("planNamespace: an edited object is replaced: cached metadata, wanted spec and labels") {
  json edited = cached(networkPolicy("deny", kDenySpec));
  edited["spec"]["ingress"] = json::array({json::object()});  // allow-all added by someone
  edited["metadata"]["labels"]["bulkhead.dev/policy"] = "other";
  edited["metadata"]["labels"]["team"] = "x";
  auto plan = planNamespace({networkPolicy("deny", kDenySpec)}, {edited}, {}, true);
  REQUIRE(plan.writes.size() == 1);
  CHECK(plan.writes[0].replace);
  CHECK(plan.writes[0].repair);
  const json expected = {{"apiVersion", "networking.k8s.io/v1"},
                         {"kind", "NetworkPolicy"},
                         {"metadata",
                          {{"name", "deny"},
                           {"namespace", "shop"},
                           {"uid", "uid-deny"},
                           {"resourceVersion", "42"},
                           {"labels",
                            {{"app.kubernetes.io/managed-by", "bulkhead"},
                             {"bulkhead.dev/policy", "baseline"},
                             {"team", "x"}}}}},
                         {"spec", kDenySpec}};
  CHECK(plan.writes[0].object == expected);
}

TEST_CASE("planNamespace: what is no longer wanted is deleted, as cached") {
  const json dns = cached(networkPolicy("dns", kDnsSpec));
  auto plan = planNamespace({networkPolicy("deny", kDenySpec)},
                            {cached(networkPolicy("deny", kDenySpec)), dns}, {}, true);
  CHECK(plan.writes.empty());
  REQUIRE(plan.deletes.size() == 1);
  CHECK(plan.deletes[0] == dns);
  auto none = planNamespace({}, {dns}, {}, false);
  CHECK(none.deletes == std::vector<json>{dns});
}

TEST_CASE("planNamespace: an object applied moments ago is awaited, not applied again") {
  const json deny = networkPolicy("deny", kDenySpec);
  auto plan = planNamespace({deny}, {}, {{"NetworkPolicy/deny", contentHash(deny)}}, false);
  CHECK(plan.writes.empty());
  CHECK(plan.awaitingWatch ==
        std::map<std::string, size_t>{{"NetworkPolicy/deny", contentHash(deny)}});
  // What was applied is not what is wanted now: applied again.
  json changed = networkPolicy("deny", kDnsSpec);
  auto again = planNamespace({changed}, {}, {{"NetworkPolicy/deny", contentHash(deny)}}, false);
  REQUIRE(again.writes.size() == 1);
  CHECK(again.awaitingWatch.empty());
}

SegmentationPolicy policyNamed(const std::string& name, int64_t generation) {
  SegmentationPolicy p;
  p.name = name;
  p.uid = "uid-" + name;
  p.generation = generation;
  return p;
}

const auto kNow = parseRfc3339("2026-12-01T10:00:00Z").value();

json cond(const std::string& type, const std::string& status, const std::string& reason,
          const std::string& message, const std::string& since = "2026-12-01T10:00:00Z") {
  return {{"type", type},
          {"status", status},
          {"reason", reason},
          {"message", message},
          {"lastTransitionTime", since},
          {"observedGeneration", 4}};
}

TEST_CASE("policyStatus: segmented, conflicting and failing namespaces") {
  const SegmentationPolicy p = policyNamed("baseline", 4);
  PolicyStatusInput in;
  in.policy = &p;
  in.meshAvailable = true;
  in.admissionTwin = true;
  in.now = kNow;
  in.selected = {{"a", "baseline", true, "", {}, {}},
                 {"b", "baseline", false, "Forbidden: networkpolicies", {}, {}},
                 {"c", "strict", false, "", {}, {}},
                 {"d", "baseline", true, "", {"networkpolicy \"open\" reaches outside"}, {}}};
  in.oldStatus = {{"conditions",
                   {cond("Ready", "False", "Progressing", "x", "2026-11-30T08:00:00Z"),
                    cond("MeshAvailable", "True", "IstioServed", "x", "2026-11-01T00:00:00Z")}}};
  const json expected = {
      {"observedGeneration", 4},
      {"selectedNamespaces", 4},
      {"segmentedNamespaces", 2},
      {"conflictingNamespaces", {"c"}},
      {"tenantPolicyViolations", 1},
      {"meshAvailable", true},
      {"layers", {"NetworkPolicy", "PeerAuthentication", "ValidatingAdmissionPolicy"}},
      {"conditions",
       {cond("Ready", "False", "ReconcileError",
             "2 of 3 namespaces segmented; failing: b: Forbidden: networkpolicies",
             "2026-11-30T08:00:00Z"),
        cond("Conflict", "True", "Overridden",
             "namespaces governed by a policy of higher priority: c (by strict)"),
        cond("TenantPolicies", "False", "Violations",
             "1 tenant policies reach outside their namespace (left in place): d: networkpolicy "
             "\"open\" reaches outside"),
        cond("MeshAvailable", "True", "IstioServed", "security.istio.io/v1 is served",
             "2026-11-01T00:00:00Z")}}};
  CHECK(policyStatus(in) == expected);
  // Without Istio's API and the admission twin, the NetworkPolicies alone; with no default-deny
  // (nothing denied by default), not even them.
  in.meshAvailable = false;
  in.admissionTwin = false;
  CHECK(policyStatus(in)["layers"] == json{"NetworkPolicy"});
  SegmentationPolicy open = p;
  open.network.denyIngress = open.network.denyEgress = false;
  in.policy = &open;
  CHECK(policyStatus(in)["layers"] == json::array());
}

TEST_CASE("policyStatus: all segmented; an invalid spec says why") {
  const SegmentationPolicy p = policyNamed("baseline", 4);
  PolicyStatusInput in;
  in.policy = &p;
  in.now = kNow;
  in.selected = {{"a", "baseline", true, "", {}, {}}};
  json status = policyStatus(in);
  CHECK(status["conditions"][0] ==
        cond("Ready", "True", "Segmented", "1 of 1 namespaces segmented"));
  CHECK(status["conditions"][3] ==
        cond("MeshAvailable", "False", "IstioNotInstalled",
             "security.istio.io/v1 is not served: only NetworkPolicies are written"));
  in.invalidSpec = "spec.priority: must be an integer";
  CHECK(policyStatus(in)["conditions"][0] ==
        cond("Ready", "False", "InvalidSpec", "spec.priority: must be an integer"));
}

TEST_CASE("policyStatus: the background scan's counts, summed over the namespaces it governs") {
  const SegmentationPolicy p = policyNamed("baseline", 4);
  PolicyStatusInput in;
  in.policy = &p;
  in.now = kNow;
  in.selected = {{"a", "baseline", true, "", {}, std::pair<int64_t, int64_t>{3, 1}},
                 {"b", "baseline", true, "", {}, std::nullopt},  // not scanned yet
                 {"c", "strict", true, "", {}, std::pair<int64_t, int64_t>{7, 7}},  // not ours
                 {"d", "baseline", true, "", {}, std::pair<int64_t, int64_t>{2, 0}}};
  json status = policyStatus(in);
  CHECK_FALSE(status.contains("violatingPods"));  // the scan is off: no count, rather than 0
  in.backgroundScan = true;
  status = policyStatus(in);
  CHECK(status["violatingPods"] == 5);
  CHECK(status["violatingWorkloads"] == 1);
}

TEST_CASE("policyStatus: long lists are cut with a count") {
  const SegmentationPolicy p = policyNamed("baseline", 4);
  PolicyStatusInput in;
  in.policy = &p;
  in.now = kNow;
  for (int i = 0; i < 23; ++i) {
    in.selected.push_back({"ns" + std::to_string(100 + i), "strict", false, "", {}, {}});
  }
  const std::string message = policyStatus(in)["conditions"][1]["message"];
  CHECK(message.find("ns119 (by strict) and 3 more") != std::string::npos);
  CHECK(message.find("ns120") == std::string::npos);
}

}  // namespace
}  // namespace bulkhead::policy
