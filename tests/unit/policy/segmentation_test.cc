#include "policy/segmentation.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace bulkhead::policy {
namespace {

using nlohmann::json;

SegmentationPolicy decode(const json& j) {
  auto p = decodeSegmentationPolicy(j);
  REQUIRE_MESSAGE(p.ok(), p.status().toString());
  return *p;
}

json policyObject(const std::string& name, json spec) {
  return {{"apiVersion", kApiVersion},
          {"kind", "SegmentationPolicy"},
          {"metadata", {{"name", name}, {"uid", "u-" + name}, {"generation", 3}}},
          {"spec", std::move(spec)}};
}

// Compares with tests/fixtures/golden/<name>.json; BULKHEAD_UPDATE_GOLDEN=1 rewrites the file.
void checkGolden(const std::string& name, const json& actual) {
  std::string path = std::string(BULKHEAD_SOURCE_DIR) + "/tests/fixtures/golden/" + name + ".json";
  if (std::getenv("BULKHEAD_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path) << actual.dump(2) << "\n";
  }
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "missing golden file " << path);
  std::stringstream ss;
  ss << in.rdbuf();
  json expected = json::parse(ss.str());
  CHECK_MESSAGE(actual == expected, "golden " << name << " differs; diff:\n"
                                              << json::diff(expected, actual).dump(2));
}

TEST_CASE("an empty spec decodes to SPEC 1.1's defaults") {
  SegmentationPolicy p = decode(policyObject("baseline", json::object()));
  CHECK(p.name == "baseline");
  CHECK(p.generation == 3);
  CHECK(p.namespaceSelector.empty());
  CHECK(p.excludedNamespaces == std::vector<std::string>{"kube-system", "kube-public",
                                                         "kube-node-lease"});
  CHECK(p.priority == 0);
  CHECK(p.mode == Mode::kEnforce);
  CHECK(p.network.denyIngress);
  CHECK(p.network.denyEgress);
  CHECK(p.network.allowDNS);
  CHECK_FALSE(p.network.allowSameNamespace);
  CHECK(p.network.allowMeshControlPlane);
  CHECK_FALSE(p.network.kubeApiPods.has_value());
  CHECK(p.network.baselineAllows.empty());
  CHECK(p.mtls == MtlsMode::kStrict);
  CHECK_FALSE(p.authorizationDefaultDeny);
  CHECK(p.podRules == PodRules{});
  CHECK(p.exceptions.maxDuration == std::chrono::hours(168));
  CHECK_FALSE(p.deleting);
}

TEST_CASE("bad policies are rejected with the field path") {
  auto err = [](json spec) {
    return decodeSegmentationPolicy(policyObject("p", std::move(spec))).status().message();
  };
  CHECK(err({{"mode", "Sometimes"}}) == "spec.mode: \"Sometimes\" is not Enforce, Warn or Audit");
  CHECK(err({{"mtls", {{"mode", "SOMETIMES"}}}}) ==
        "spec.mtls.mode: \"SOMETIMES\" is not STRICT, PERMISSIVE, DISABLE or Unmanaged");
  CHECK(err({{"priority", "high"}}) == "spec.priority: must be an integer");
  CHECK(err({{"network", {{"allowDNS", "yes"}}}}) == "spec.network.allowDNS: must be a boolean");
  CHECK(err({{"network", {{"baselineAllows", {{{"name", "x"}, {"direction", "Sideways"}}}}}}}) ==
        "spec.network.baselineAllows[0].direction: \"Sideways\" is not Ingress or Egress");
  CHECK(err({{"network", {{"baselineAllows", {{{"name", "Bad_Name"}}}}}}}) ==
        "spec.network.baselineAllows[0].name: \"Bad_Name\" must be a lower-case DNS label of at "
        "most 44 characters");
  CHECK(err({{"network",
              {{"baselineAllows", {{{"name", "a"}, {"ports", {{{"port", 70000}}}}}}}}}}) ==
        "spec.network.baselineAllows[0].ports[0].port: 70000 is not in 1-65535");
  CHECK(err({{"network", {{"baselineAllows", {{{"name", "a"}}, {{"name", "a"}}}}}}}) ==
        "spec.network.baselineAllows[1].name: \"a\" is used twice");
  CHECK(err({{"network", {{"baselineAllows", {{{"name", "a"}, {"peers", {json::object()}}}}}}}}) ==
        "spec.network.baselineAllows[0].peers[0].namespace: required");
  CHECK(err({{"namespaceSelector",
              {{"matchExpressions", {{{"key", "k"}, {"operator", "Maybe"}}}}}}}) ==
        "spec.namespaceSelector.matchExpressions[0].operator: \"Maybe\" is not one of In, NotIn, "
        "Exists, DoesNotExist");
  CHECK(err({{"namespaceSelector", {{"matchExpressions", {{{"key", "k"}, {"operator", "In"}}}}}}}) ==
        "spec.namespaceSelector.matchExpressions[0].values: must be non-empty for In");
  CHECK(err({{"exceptions", {{"maxDuration", "1 week"}}}}) ==
        "spec.exceptions.maxDuration: \"1 week\" is not a duration like 168h or 30m");
  CHECK(decodeSegmentationPolicy(json::object()).status().message() == "metadata.name: required");
  // Found by the fuzzer: fields of the wrong JSON type are errors, never exceptions.
  json wrongType = policyObject("p", json::object());
  wrongType["metadata"]["generation"] = "bob";
  CHECK(decodeSegmentationPolicy(wrongType).status().code() == StatusCode::kInvalid);
  CHECK(err({{"mode", 5}}).starts_with("SegmentationPolicy has a field of the wrong type"));
  CHECK(err({{"namespaceSelector", {{"matchExpressions", {{{"key", "k"}, {"operator", 1}}}}}}})
            .starts_with("spec.namespaceSelector: a field has the wrong type"));
  CHECK(apiEndpointsFromSlices({json{{"ports", 5}, {"endpoints", "x"}}}).empty());
}

TEST_CASE("label selectors follow Kubernetes semantics") {
  auto sel = [](json j) {
    auto s = decodeLabelSelector(j, "s");
    REQUIRE(s.ok());
    return *s;
  };
  Labels on = {{"zero-trust", "on"}, {"team", "shop"}};
  CHECK(sel(json::object()).matches({}));
  CHECK(sel({{"matchLabels", {{"zero-trust", "on"}}}}).matches(on));
  CHECK_FALSE(sel({{"matchLabels", {{"zero-trust", "off"}}}}).matches(on));
  auto expr = [&](const char* op, json values) {
    json e = {{"key", "team"}, {"operator", op}};
    if (!values.is_null()) {
      e["values"] = values;
    }
    return sel({{"matchExpressions", {e}}});
  };
  CHECK(expr("In", {"shop", "pay"}).matches(on));
  CHECK_FALSE(expr("In", {"pay"}).matches(on));
  CHECK_FALSE(expr("In", {"shop"}).matches({}));
  CHECK(expr("NotIn", {"pay"}).matches(on));
  CHECK(expr("NotIn", {"pay"}).matches({}));  // a missing key is "not in"
  CHECK_FALSE(expr("NotIn", {"shop"}).matches(on));
  CHECK(expr("Exists", nullptr).matches(on));
  CHECK_FALSE(expr("Exists", nullptr).matches({}));
  CHECK(expr("DoesNotExist", nullptr).matches({}));
  CHECK_FALSE(expr("DoesNotExist", nullptr).matches(on));
  // Both parts must hold.
  json both = {{"matchLabels", {{"zero-trust", "on"}}},
               {"matchExpressions", {{{"key", "team"}, {"operator", "In"}, {"values", {"pay"}}}}}};
  CHECK_FALSE(sel(both).matches(on));
}

TEST_CASE("selection: exclusions, the install namespace, priority, then name") {
  auto low = decode(policyObject("zeta", {{"priority", 1}}));
  auto high = decode(policyObject("alpha", {{"priority", 5},
                                            {"namespaceSelector",
                                             {{"matchLabels", {{"zero-trust", "on"}}}}}}));
  auto tie = decode(policyObject("beta", {{"priority", 5}}));
  std::vector<SegmentationPolicy> all = {low, high, tie};
  NamespaceFacts labelled{"shop", {{"zero-trust", "on"}}};
  NamespaceFacts plain{"blog", {}};
  CHECK(governingPolicy(all, labelled, "bulkhead-system")->name == "alpha");  // 5, then by name
  CHECK(governingPolicy(all, plain, "bulkhead-system")->name == "beta");
  CHECK(governingPolicy(all, {"kube-system", {}}, "bulkhead-system") == nullptr);
  CHECK(governingPolicy(all, {"bulkhead-system", {}}, "bulkhead-system") == nullptr);
  auto deleting = policyObject("beta", {{"priority", 5}});
  deleting["metadata"]["deletionTimestamp"] = "2026-11-29T00:00:00Z";
  all[2] = decode(deleting);
  CHECK(all[2].deleting);
  CHECK(governingPolicy(all, plain, "bulkhead-system")->name == "zeta");
}

TEST_CASE("desired objects with the defaults: default-deny, DNS, mesh, PeerAuthentication") {
  ClusterFacts facts{"bulkhead-system", true, {}};
  auto objs = desiredObjects(decode(policyObject("baseline", json::object())), {"shop", {}}, facts);
  checkGolden("defaults_mesh", objs);
  // Without the mesh: the NetworkPolicies only.
  facts.meshAvailable = false;
  auto noMesh =
      desiredObjects(decode(policyObject("baseline", json::object())), {"shop", {}}, facts);
  REQUIRE(noMesh.size() == 3);
  CHECK(noMesh[0]["metadata"]["name"] == "bulkhead-default-deny");
  CHECK(noMesh[1]["metadata"]["name"] == "bulkhead-allow-dns");
  CHECK(noMesh[2]["metadata"]["name"] == "bulkhead-allow-mesh");
}

TEST_CASE("desired objects with every option") {
  json spec = {
      {"network",
       {{"defaultDeny", {{"ingress", true}, {"egress", false}}},
        {"allowDNS", true},
        {"allowSameNamespace", true},
        {"allowKubeAPI", {{"podSelector", {{"matchLabels", {{"bulkhead.dev/kube-api", "true"}}}}}}},
        {"baselineAllows",
         {{{"name", "from-ingress"},
           {"direction", "Ingress"},
           {"podSelector", json::object()},
           {"peers",
            {{{"namespace", "ingress-nginx"},
              {"podSelector",
               {{"matchLabels", {{"app.kubernetes.io/name", "ingress-nginx"}}}}}}}},
           {"ports", {{{"port", 8080}, {"protocol", "TCP"}}}}},
          {{"name", "to-monitoring"},
           {"direction", "Egress"},
           {"podSelector", {{"matchLabels", {{"app", "exporter"}}}}},
           {"peers", {{{"namespace", "monitoring"}}}}}}}}},
      {"mtls", {{"mode", "PERMISSIVE"}}},
      {"authorization", {{"defaultDeny", true}}}};
  ClusterFacts facts{"bulkhead-system", true,
                     {{"10.0.0.1", 6443, "TCP"}, {"10.0.0.2", 6443, "TCP"}, {"fd00::1", 6443, "TCP"}}};
  auto objs = desiredObjects(decode(policyObject("full", spec)), {"shop", {}}, facts);
  checkGolden("every_option", objs);
  // Deterministic.
  CHECK(desiredObjects(decode(policyObject("full", spec)), {"shop", {}}, facts) == objs);
  // Egress is open in this policy, so no Egress allow is written: it would restrict, not allow.
  for (const auto& o : objs) {
    if (o["kind"] == "NetworkPolicy") {
      CHECK(o["spec"]["policyTypes"] == json::array({"Ingress"}));
    }
  }
  spec["network"]["defaultDeny"]["egress"] = true;
  checkGolden("every_option_deny_both",
              desiredObjects(decode(policyObject("full", spec)), {"shop", {}}, facts));
}

TEST_CASE("Unmanaged mTLS writes no Istio objects and no mesh egress") {
  ClusterFacts facts{"bulkhead-system", true, {}};
  auto objs = desiredObjects(decode(policyObject("p", {{"mtls", {{"mode", "Unmanaged"}}}})),
                             {"ns", {}}, facts);
  REQUIRE(objs.size() == 2);
  CHECK(objs[0]["metadata"]["name"] == "bulkhead-default-deny");
  CHECK(objs[1]["metadata"]["name"] == "bulkhead-allow-dns");
  // No default deny in either direction: no default-deny object at all.
  auto open = desiredObjects(
      decode(policyObject(
          "p", {{"network", {{"defaultDeny", {{"ingress", false}, {"egress", false}}}}}})),
      {"ns", {}}, {"x", false, {}});
  CHECK(open.empty());
}

TEST_CASE("matchesDesired: labels must be present, spec must be equal") {
  auto desired =
      desiredObjects(decode(policyObject("p", json::object())), {"ns", {}}, {"x", false, {}})[0];
  json current = desired;
  current["metadata"]["uid"] = "abc";
  current["metadata"]["labels"]["extra"] = "kept";
  CHECK(matchesDesired(current, desired));
  current["spec"]["ingress"] = json::array({json::object()});  // an allow-all rule added
  CHECK_FALSE(matchesDesired(current, desired));
  current = desired;
  current["metadata"]["labels"][kPolicyLabel] = "other";
  CHECK_FALSE(matchesDesired(current, desired));
}

TEST_CASE("API server endpoints come from ready EndpointSlice addresses") {
  json slice = {{"addressType", "IPv4"},
                {"endpoints",
                 {{{"addresses", {"10.0.0.2"}}, {"conditions", {{"ready", true}}}},
                  {{"addresses", {"10.0.0.9"}}, {"conditions", {{"ready", false}}}},
                  {{"addresses", {"10.0.0.1"}}}}},
                {"ports", {{{"name", "https"}, {"port", 6443}, {"protocol", "TCP"}}}}};
  auto eps = apiEndpointsFromSlices({slice, slice});
  REQUIRE(eps.size() == 2);
  CHECK(eps[0] == ApiEndpoint{"10.0.0.1", 6443, "TCP"});
  CHECK(eps[1] == ApiEndpoint{"10.0.0.2", 6443, "TCP"});
}

}  // namespace
}  // namespace bulkhead::policy
