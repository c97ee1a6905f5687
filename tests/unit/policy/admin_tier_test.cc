// The admin tier (policy/admin_tier.h), from the NetworkPolicies desiredObjects() generates. That
// the API server accepts it under the network-policy API's own schema and CEL rules is checked in
// tests/integration/admin_tier_test.cc.
#include "policy/admin_tier.h"

#include <doctest/doctest.h>

#include "policy/segmentation.h"

namespace bulkhead::policy {
namespace {

using nlohmann::json;

SegmentationPolicy policyFrom(const json& spec) {
  auto p = decodeSegmentationPolicy({{"apiVersion", "bulkhead.dev/v1alpha1"},
                                     {"kind", "SegmentationPolicy"},
                                     {"metadata", {{"name", "baseline"}, {"uid", "u"}}},
                                     {"spec", spec}});
  REQUIRE_MESSAGE(p.ok(), p.status().toString());
  return *p;
}

std::vector<json> networkPolicies(const SegmentationPolicy& p, const std::string& ns) {
  ClusterFacts facts;
  facts.meshAvailable = true;
  facts.apiServerEndpoints = {{"10.0.0.1", 6443, "TCP"}};
  std::vector<json> out;
  for (auto& o : desiredObjects(p, {ns, {}}, facts)) {
    if (o["kind"] == "NetworkPolicy") {
      out.push_back(std::move(o));
    }
  }
  return out;
}

TEST_CASE("the admin tier passes on exactly the cross-namespace flows the policy allows") {
  const SegmentationPolicy p = policyFrom(json::parse(R"({
    "namespaceSelector": {},
    "network": {
      "allowKubeAPI": {"podSelector": {"matchLabels": {"api": "yes"}}},
      "baselineAllows": [{"name": "from-ingress", "direction": "Ingress",
                          "podSelector": {"matchLabels": {"app": "web"}},
                          "peers": [{"namespace": "ingress-nginx",
                                     "podSelector": {"matchLabels": {"app": "nginx"}}}],
                          "ports": [{"port": 8080}]}]}})"));
  // An AccessGrant's NetworkPolicy in the namespace counts like the policy's own.
  std::vector<json> generated = networkPolicies(p, "shop");
  generated.push_back(json::parse(R"({"kind": "NetworkPolicy",
    "metadata": {"name": "bulkhead-grant-reports", "namespace": "shop"},
    "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
             "ingress": [{"from": [{"namespaceSelector": {"matchLabels":
                                      {"kubernetes.io/metadata.name": "reports"}},
                                    "podSelector": {"matchLabels": {"app": "cron"}}}],
                          "ports": [{"protocol": "TCP", "port": 5432}]}]}})"));
  auto cnp = adminTierPolicy(p, "shop", generated);
  REQUIRE(cnp.ok());
  REQUIRE(cnp->has_value());
  CHECK(**cnp == json::parse(R"({
    "apiVersion": "policy.networking.k8s.io/v1alpha2",
    "kind": "ClusterNetworkPolicy",
    "metadata": {"name": "bulkhead-shop",
                 "labels": {"app.kubernetes.io/managed-by": "bulkhead",
                            "bulkhead.dev/policy": "baseline",
                            "bulkhead.dev/namespace": "shop"}},
    "spec": {
      "tier": "Admin",
      "priority": 100,
      "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}},
      "ingress": [
        {"name": "same-namespace", "action": "Pass",
         "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}}]},
        {"name": "allowed-1", "action": "Pass",
         "from": [{"pods": {"namespaceSelector": {"matchLabels":
                                {"kubernetes.io/metadata.name": "ingress-nginx"}},
                            "podSelector": {"matchLabels": {"app": "nginx"}}}}],
         "protocols": [{"tcp": {"destinationPort": {"number": 8080}}}]},
        {"name": "allowed-2", "action": "Pass",
         "from": [{"pods": {"namespaceSelector": {"matchLabels":
                                {"kubernetes.io/metadata.name": "reports"}},
                            "podSelector": {"matchLabels": {"app": "cron"}}}}],
         "protocols": [{"tcp": {"destinationPort": {"number": 5432}}}]},
        {"name": "other-namespaces", "action": "Deny", "from": [{"namespaces": {}}]}],
      "egress": [
        {"name": "same-namespace", "action": "Pass",
         "to": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}}]},
        {"name": "allowed-1", "action": "Pass",
         "to": [{"pods": {"namespaceSelector": {"matchLabels":
                              {"kubernetes.io/metadata.name": "kube-system"}},
                          "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}}],
         "protocols": [{"udp": {"destinationPort": {"number": 53}}},
                       {"tcp": {"destinationPort": {"number": 53}}}]},
        {"name": "allowed-2", "action": "Pass", "to": [{"networks": ["10.0.0.1/32"]}],
         "protocols": [{"tcp": {"destinationPort": {"number": 6443}}}]},
        {"name": "allowed-3", "action": "Pass",
         "to": [{"pods": {"namespaceSelector": {"matchLabels":
                              {"kubernetes.io/metadata.name": "istio-system"}},
                          "podSelector": {"matchLabels": {"app": "istiod"}}}}],
         "protocols": [{"tcp": {"destinationPort": {"number": 15010}}},
                       {"tcp": {"destinationPort": {"number": 15012}}},
                       {"tcp": {"destinationPort": {"number": 15014}}}]},
        {"name": "other-namespaces", "action": "Deny", "to": [{"namespaces": {}}]}]}})"));
  // The cache's order does not matter.
  std::vector<json> reversed(generated.rbegin(), generated.rend());
  CHECK(*adminTierPolicy(p, "shop", reversed) == *cnp);
}

TEST_CASE("a direction not denied by default is left alone; nothing denied, no object") {
  const SegmentationPolicy ingressOnly = policyFrom(
      {{"namespaceSelector", json::object()}, {"network", {{"defaultDeny", {{"egress", false}}}}}});
  auto cnp = adminTierPolicy(ingressOnly, "shop", networkPolicies(ingressOnly, "shop"));
  REQUIRE(cnp.ok());
  REQUIRE(cnp->has_value());
  CHECK((**cnp)["spec"].contains("ingress"));
  CHECK(!(**cnp)["spec"].contains("egress"));
  const SegmentationPolicy open =
      policyFrom({{"namespaceSelector", json::object()},
                  {"network", {{"defaultDeny", {{"egress", false}, {"ingress", false}}}}}});
  auto none = adminTierPolicy(open, "shop", networkPolicies(open, "shop"));
  REQUIRE(none.ok());
  CHECK(!none->has_value());
}

TEST_CASE("past 25 rules the passes merge without ports; past 25 x 25 peers, an error") {
  const SegmentationPolicy p = policyFrom({{"namespaceSelector", json::object()}});
  auto grantsFrom = [](int count) {
    std::vector<json> out;
    for (int i = 0; i < count; ++i) {
      out.push_back({{"kind", "NetworkPolicy"},
                     {"metadata", {{"name", "g" + std::to_string(i)}}},
                     {"spec",
                      {{"policyTypes", {"Ingress"}},
                       {"ingress",
                        {{{"from",
                           {{{"namespaceSelector",
                              {{"matchLabels",
                                {{"kubernetes.io/metadata.name", "n" + std::to_string(i)}}}}}}}},
                          {"ports", {{{"port", 80}}}}}}}}}});
    }
    return out;
  };
  auto merged = adminTierPolicy(p, "shop", grantsFrom(30));
  REQUIRE(merged.ok());
  const json& ingress = (**merged)["spec"]["ingress"];
  REQUIRE(ingress.size() == 4);  // same namespace, 25 + 5 peers, deny
  CHECK(ingress[1]["from"].size() == 25);
  CHECK(ingress[2]["from"].size() == 5);
  CHECK(!ingress[1].contains("protocols"));
  auto tooMany = adminTierPolicy(p, "shop", grantsFrom(25 * 24));
  CHECK(!tooMany.ok());
}

}  // namespace
}  // namespace bulkhead::policy
