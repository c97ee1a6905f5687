// The admission twin's objects (policy/admission_twin.h). Whether its CEL decides as the webhook
// does is for the API server to say: tests/integration/admission_twin_test.cc.
#include "policy/admission_twin.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>

namespace bulkhead::policy {
namespace {

using nlohmann::json;
using std::chrono::hours;

SegmentationPolicy policyFrom(const json& spec, const std::string& name = "baseline") {
  auto p = decodeSegmentationPolicy({{"apiVersion", "bulkhead.dev/v1alpha1"},
                                     {"kind", "SegmentationPolicy"},
                                     {"metadata", {{"name", name}, {"uid", "uid-1"}}},
                                     {"spec", spec}});
  REQUIRE_MESSAGE(p.ok(), p.status().toString());
  return *p;
}

// The rule each validation names, in order.
std::vector<std::string> rulesOf(const json& vap) {
  std::vector<std::string> out;
  for (const auto& v : vap["spec"]["validations"]) {
    const std::string m = v["messageExpression"];
    size_t at = m.find(" violates ") + 10;
    out.push_back(m.substr(at, m.find(' ', at) - at));
  }
  return out;
}

SegmentationException exceptionIn(const std::string& ns, const std::string& name,
                                  std::vector<std::string> rules, WallTime expires,
                                  std::string approvedBy = "") {
  SegmentationException e;
  e.ns = ns;
  e.name = name;
  e.podSelector.matchLabels = {{"app", name}};
  e.rules = std::move(rules);
  e.expiresAt = expires;
  e.requestedBy = "alice";
  e.approvedBy = std::move(approvedBy);
  return e;
}

const WallTime kNow = WallTime(std::chrono::seconds(1'800'000'000));

TEST_CASE("every pod rule is in the twin or left to the webhook by name") {
  const SegmentationPolicy p = policyFrom({{"namespaceSelector", json::object()}});
  TwinInput in{&p, {"shop"}, true, nullptr, kNow};
  const AdmissionTwin twin = admissionTwin(in);
  std::vector<std::string> want;
  for (auto rule : kPodRuleNames) {
    if (std::find(kWebhookOnlyRules.begin(), kWebhookOnlyRules.end(), rule) ==
        kWebhookOnlyRules.end()) {
      want.emplace_back(rule);
    }
  }
  CHECK(rulesOf(twin.policy) == want);
  for (const auto& v : twin.policy["spec"]["validations"]) {
    CHECK(v["reason"] == "Forbidden");
    // The unchanged update, as the webhook allows it, comes first.
    CHECK(v["expression"].get<std::string>().starts_with("variables.unchanged || "));
  }
  CHECK(twin.policy["metadata"] == json::parse(R"({"name": "bulkhead-baseline",
          "labels": {"app.kubernetes.io/managed-by": "bulkhead", "bulkhead.dev/policy": "baseline"},
          "ownerReferences": [{"apiVersion": "bulkhead.dev/v1alpha1", "kind": "SegmentationPolicy",
                               "name": "baseline", "uid": "uid-1", "controller": true}]})"));
  CHECK(twin.policy["spec"]["failurePolicy"] == "Fail");
  CHECK(!twin.nextChange.has_value());
}

TEST_CASE("rules switched off, and requireSidecar without STRICT mTLS in force, are not written") {
  const SegmentationPolicy off = policyFrom({{"namespaceSelector", json::object()},
                                             {"podRules",
                                              {{"requiredLabels", json::array()},
                                               {"forbidHostPorts", false},
                                               {"forbiddenCapabilities", json::array()}}}});
  CHECK(rulesOf(admissionTwin({&off, {"shop"}, true, nullptr, kNow}).policy) ==
        std::vector<std::string>{"forbidHostNetwork", "forbidHostPIDIPC", "forbidPrivileged",
                                 "requireSidecar"});
  // Istio's API not served: the webhook does not apply requireSidecar either.
  CHECK(rulesOf(admissionTwin({&off, {"shop"}, false, nullptr, kNow}).policy) ==
        std::vector<std::string>{"forbidHostNetwork", "forbidHostPIDIPC", "forbidPrivileged"});
  const SegmentationPolicy permissive =
      policyFrom({{"namespaceSelector", json::object()}, {"mtls", {{"mode", "PERMISSIVE"}}}});
  const auto rules = rulesOf(admissionTwin({&permissive, {"shop"}, true, nullptr, kNow}).policy);
  CHECK(std::find(rules.begin(), rules.end(), "requireSidecar") == rules.end());
}

TEST_CASE("the binding lists the governed namespaces with the mode's action, or is absent") {
  for (auto [mode, action] : std::vector<std::pair<std::string, std::string>>{
           {"Enforce", "Deny"}, {"Warn", "Warn"}, {"Audit", "Audit"}}) {
    CAPTURE(mode);
    const SegmentationPolicy p =
        policyFrom({{"namespaceSelector", json::object()}, {"mode", mode}});
    const AdmissionTwin twin = admissionTwin({&p, {"web", "db", "web"}, true, nullptr, kNow});
    REQUIRE(twin.binding.has_value());
    CHECK(twin.binding->at("spec") == json::parse(R"({
        "policyName": "bulkhead-baseline",
        "validationActions": [")" + action + R"("],
        "matchResources": {
          "matchPolicy": "Equivalent",
          "objectSelector": {},
          "namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In",
             "values": ["db", "web"]}]}}})"));
    CHECK(twin.binding->at("metadata") == twin.policy["metadata"]);
  }
  const SegmentationPolicy p = policyFrom({{"namespaceSelector", json::object()}});
  // In takes at least one value: with no namespace there is no binding, and nothing is judged.
  CHECK(!admissionTwin({&p, {}, true, nullptr, kNow}).binding.has_value());
}

TEST_CASE("only Active exceptions of governed namespaces are written, until the first expires") {
  const SegmentationPolicy p = policyFrom({{"namespaceSelector", json::object()}});
  const SegmentationPolicy approving = policyFrom(
      {{"namespaceSelector", json::object()}, {"exceptions", {{"approverGroups", {"sec"}}}}});
  const std::vector<SegmentationException> exceptions = {
      exceptionIn("shop", "agent", {"forbidHostNetwork"}, kNow + hours(2)),
      exceptionIn("shop", "debugger", {"forbidPrivileged", "forbidHostNetwork"}, kNow + hours(1)),
      exceptionIn("shop", "expired", {"forbidHostPorts"}, kNow - hours(1)),
      exceptionIn("elsewhere", "other", {"forbidHostPIDIPC"}, kNow + hours(1)),
  };
  const AdmissionTwin twin = admissionTwin({&p, {"shop"}, true, &exceptions, kNow});
  const json& validations = twin.policy["spec"]["validations"];
  auto expressionOf = [&](const std::string& rule) {
    for (const auto& v : validations) {
      if (v["messageExpression"].get<std::string>().find(" violates " + rule + " ") !=
          std::string::npos) {
        return v["expression"].get<std::string>();
      }
    }
    return std::string();
  };
  const std::string hostNetwork = expressionOf("forbidHostNetwork");
  CHECK(hostNetwork.find("variables.labels['app'] == 'agent'") != std::string::npos);
  CHECK(hostNetwork.find("variables.labels['app'] == 'debugger'") != std::string::npos);
  // Each exemption holds only for objects created before its expiresAt, by the API server's clock.
  CHECK(hostNetwork.find("(request.namespace == 'shop' && (('app' in variables.labels && "
                         "variables.labels['app'] == 'agent')) && "
                         "timestamp(object.metadata.creationTimestamp) < "
                         "timestamp('2027-01-15T10:00:00Z'))") != std::string::npos);
  CHECK(expressionOf("forbidPrivileged").find("'debugger'") != std::string::npos);
  CHECK(expressionOf("forbidHostPorts").find("expired") == std::string::npos);
  CHECK(expressionOf("forbidHostPIDIPC").find("request.namespace") == std::string::npos);
  CHECK(twin.nextChange == kNow + hours(1));

  // Pending (awaiting approval) is not Active.
  const AdmissionTwin pending = admissionTwin({&approving, {"shop"}, true, &exceptions, kNow});
  CHECK(pending.policy.dump().find("'agent'") == std::string::npos);
  CHECK(!pending.nextChange.has_value());
  std::vector<SegmentationException> approved = exceptions;
  approved[0].approvedBy = "bob";
  CHECK(
      admissionTwin({&approving, {"shop"}, true, &approved, kNow}).policy.dump().find("'agent'") !=
      std::string::npos);
}

TEST_CASE("the twin is deterministic and quotes what users wrote") {
  const SegmentationPolicy p = policyFrom(
      {{"namespaceSelector", json::object()},
       {"podRules", {{"requiredLabels", {"it's/a-key"}}}},
       {"mesh", {{"proxyImages", {"docker.io/istio/proxyv2", "registry.local:5000/proxy"}}}}});
  const TwinInput in{&p, {"b", "a"}, true, nullptr, kNow};
  CHECK(admissionTwin(in).policy.dump() == admissionTwin(in).policy.dump());
  const std::string text = admissionTwin(in).policy.dump();
  CHECK(text.find(R"(['it\\'s/a-key'])") != std::string::npos);
  // Every spelling a container runtime resolves to a proxy image repository.
  for (const char* spelling : {"'istio/proxyv2'", "'docker.io/istio/proxyv2'",
                               "'index.docker.io/istio/proxyv2'", "'registry.local:5000/proxy'"}) {
    CHECK_MESSAGE(text.find(spelling) != std::string::npos, spelling);
  }
  CHECK(celString("a'b\\c\td\x01") == R"('a\'b\\c\td\x01')");
}

}  // namespace
}  // namespace bulkhead::policy
