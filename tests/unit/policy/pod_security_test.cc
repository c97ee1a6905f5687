#include "policy/pod_security.h"

#include <doctest/doctest.h>

namespace bulkhead::policy {
namespace {

using nlohmann::json;

StatusOr<SegmentationPolicy> decodeSpec(json spec) {
  return decodeSegmentationPolicy({{"apiVersion", kApiVersion},
                                   {"kind", "SegmentationPolicy"},
                                   {"metadata", {{"name", "p"}}},
                                   {"spec", std::move(spec)}});
}

SegmentationPolicy withPodSecurity(json podSecurity) {
  auto p = decodeSpec({{"podSecurity", std::move(podSecurity)}});
  REQUIRE_MESSAGE(p.ok(), p.status().toString());
  return *p;
}

// A namespace as the API server returns it after `manager` applied `applied` (its managedFields
// entry in the API server's own shape), with `labels` on it.
json namespaceWith(const Labels& labels, const std::string& manager,
                   const std::vector<std::string>& applied,
                   const std::string& operation = "Apply") {
  json fields = json::object();
  for (const auto& k : applied) {
    fields["f:" + k] = json::object();
  }
  json created = {{"manager", "kubectl-create"},
                  {"operation", "Update"},
                  {"apiVersion", "v1"},
                  {"time", "2026-01-01T00:00:00Z"},
                  {"fieldsType", "FieldsV1"}};
  created["fieldsV1"]["f:metadata"]["f:labels"]["f:kubernetes.io/metadata.name"] = json::object();
  json applies = {{"manager", manager},
                  {"operation", operation},
                  {"apiVersion", "v1"},
                  {"time", "2026-01-01T00:00:01Z"},
                  {"fieldsType", "FieldsV1"}};
  applies["fieldsV1"]["f:metadata"]["f:labels"] = fields;
  json ns = {{"apiVersion", "v1"}, {"kind", "Namespace"}};
  ns["metadata"] = {{"name", "shop"}, {"uid", "u-shop"}, {"labels", labels}};
  ns["metadata"]["labels"]["kubernetes.io/metadata.name"] = "shop";
  ns["metadata"]["managedFields"] = json::array({created, applies});
  return ns;
}

const Labels kBaseline = {{"pod-security.kubernetes.io/enforce", "baseline"},
                          {"pod-security.kubernetes.io/enforce-version", "latest"}};
const std::vector<std::string> kBothKeys = {"pod-security.kubernetes.io/enforce",
                                            "pod-security.kubernetes.io/enforce-version"};

TEST_CASE("spec.podSecurity decodes: baseline and latest by default, every level, a version") {
  auto defaults = decodeSpec(json::object());
  REQUIRE(defaults.ok());
  CHECK(defaults->podSecurity.enforce == PodSecurityLevel::kBaseline);
  CHECK(defaults->podSecurity.version == "latest");
  CHECK(defaults->podSecurity == PodSecuritySettings{});
  CHECK(withPodSecurity({{"enforce", "restricted"}}).podSecurity.enforce ==
        PodSecurityLevel::kRestricted);
  CHECK(withPodSecurity({{"enforce", "privileged"}}).podSecurity.enforce ==
        PodSecurityLevel::kPrivileged);
  CHECK(withPodSecurity({{"enforce", "Unmanaged"}}).podSecurity.enforce ==
        PodSecurityLevel::kUnmanaged);
  CHECK(withPodSecurity({{"version", "v1.35"}}).podSecurity ==
        PodSecuritySettings{PodSecurityLevel::kBaseline, "v1.35"});
}

TEST_CASE("spec.podSecurity: values the labels do not take are refused with the field path") {
  auto err = [](json podSecurity) {
    return decodeSpec({{"podSecurity", std::move(podSecurity)}}).status().message();
  };
  // The labels' values are lower case; only Unmanaged, which is no label, is Bulkhead's word.
  CHECK(err({{"enforce", "Baseline"}}) ==
        "spec.podSecurity.enforce: \"Baseline\" is not baseline, restricted, privileged or "
        "Unmanaged");
  CHECK(err({{"enforce", "unmanaged"}}) ==
        "spec.podSecurity.enforce: \"unmanaged\" is not baseline, restricted, privileged or "
        "Unmanaged");
  CHECK(err({{"version", "1.35"}}) ==
        "spec.podSecurity.version: \"1.35\" is not latest or v1.<minor>");
  CHECK(err({{"version", "v1.35.4"}}) ==
        "spec.podSecurity.version: \"v1.35.4\" is not latest or v1.<minor>");
  CHECK(err({{"version", "v2.0"}}) ==
        "spec.podSecurity.version: \"v2.0\" is not latest or v1.<minor>");
  CHECK(err({{"version", 35}}) == "spec.podSecurity.version: must be a string");
  CHECK(err({{"enforce", 1}}).starts_with("SegmentationPolicy has a field of the wrong type"));
}

TEST_CASE("podSecurityLabels: enforce and enforce-version of the level; none when Unmanaged") {
  CHECK(podSecurityLabels(withPodSecurity(json::object())) == kBaseline);
  CHECK(podSecurityLabels(withPodSecurity({{"enforce", "restricted"}, {"version", "v1.33"}})) ==
        Labels{{"pod-security.kubernetes.io/enforce", "restricted"},
               {"pod-security.kubernetes.io/enforce-version", "v1.33"}});
  CHECK(podSecurityLabels(withPodSecurity({{"enforce", "privileged"}})) ==
        Labels{{"pod-security.kubernetes.io/enforce", "privileged"},
               {"pod-security.kubernetes.io/enforce-version", "latest"}});
  CHECK(
      podSecurityLabels(withPodSecurity({{"enforce", "Unmanaged"}, {"version", "v1.30"}})).empty());
  CHECK(podSecurityLevelName(PodSecurityLevel::kUnmanaged) == "Unmanaged");
}

TEST_CASE("isPodSecurityLabel: every label PodSecurity admission reads, nothing else") {
  CHECK(isPodSecurityLabel(kPodSecurityEnforceLabel));
  CHECK(isPodSecurityLabel(kPodSecurityEnforceVersionLabel));
  CHECK(isPodSecurityLabel("pod-security.kubernetes.io/warn"));
  CHECK(isPodSecurityLabel("pod-security.kubernetes.io/audit-version"));
  CHECK_FALSE(isPodSecurityLabel("pod-security.kubernetes.io"));
  CHECK_FALSE(isPodSecurityLabel("x.pod-security.kubernetes.io/enforce"));
  CHECK_FALSE(isPodSecurityLabel("Pod-Security.kubernetes.io/enforce"));
  CHECK_FALSE(isPodSecurityLabel("zero-trust"));
}

TEST_CASE("labelsAppliedBy reads the manager's Apply entry of managedFields") {
  json ns = namespaceWith(kBaseline, kPodSecurityFieldManager, kBothKeys);
  CHECK(labelsAppliedBy(ns, kPodSecurityFieldManager) ==
        std::set<std::string>(kBothKeys.begin(), kBothKeys.end()));
  CHECK(labelsAppliedBy(ns, "bulkhead").empty());
  // An Update by a manager of that name is not an apply (kubectl label, a PUT).
  CHECK(labelsAppliedBy(namespaceWith(kBaseline, kPodSecurityFieldManager, kBothKeys, "Update"),
                        kPodSecurityFieldManager)
            .empty());
  // No managedFields (an informer that strips them), or entries of an odd shape: nothing owned.
  json stripped = ns;
  stripped["metadata"].erase("managedFields");
  CHECK(labelsAppliedBy(stripped, kPodSecurityFieldManager).empty());
  json odd = ns;
  odd["metadata"]["managedFields"][1]["fieldsV1"] = "f:metadata";
  CHECK(labelsAppliedBy(odd, kPodSecurityFieldManager).empty());
  odd["metadata"]["managedFields"][1]["manager"] = 7;  // never thrown at, only not matched
  CHECK(labelsAppliedBy(odd, kPodSecurityFieldManager).empty());
  odd["metadata"]["managedFields"] = json::object();
  CHECK(labelsAppliedBy(odd, kPodSecurityFieldManager).empty());
  CHECK(labelsAppliedBy(json::array(), kPodSecurityFieldManager).empty());
}

TEST_CASE("podSecurityLabelsInPlace: the values, owned by the manager, and nothing more") {
  const std::string m = kPodSecurityFieldManager;
  CHECK(podSecurityLabelsInPlace(namespaceWith(kBaseline, m, kBothKeys), kBaseline, m));
  // The right values, set by someone else (kubectl label): not ours, so applied (and taken over).
  CHECK_FALSE(
      podSecurityLabelsInPlace(namespaceWith(kBaseline, "kubectl-label", kBothKeys), kBaseline, m));
  // Ours, but changed since by someone else's update (the API server moved the ownership).
  CHECK_FALSE(podSecurityLabelsInPlace(
      namespaceWith({{"pod-security.kubernetes.io/enforce", "privileged"},
                     {"pod-security.kubernetes.io/enforce-version", "latest"}},
                    m, {"pod-security.kubernetes.io/enforce-version"}),
      kBaseline, m));
  // A different level wanted now.
  Labels restricted = kBaseline;
  restricted["pod-security.kubernetes.io/enforce"] = "restricted";
  CHECK_FALSE(podSecurityLabelsInPlace(namespaceWith(kBaseline, m, kBothKeys), restricted, m));
  // Nothing wanted (Unmanaged, or no longer selected): in place only when the manager owns none.
  CHECK_FALSE(podSecurityLabelsInPlace(namespaceWith(kBaseline, m, kBothKeys), {}, m));
  CHECK(podSecurityLabelsInPlace(namespaceWith(kBaseline, "kubectl-label", kBothKeys), {}, m));
  CHECK(podSecurityLabelsInPlace(namespaceWith({}, m, {}), {}, m));
  // A label the manager owns beyond those wanted (a level applied once with a label more).
  std::vector<std::string> three = kBothKeys;
  three.push_back("pod-security.kubernetes.io/warn");
  Labels withWarn = kBaseline;
  withWarn["pod-security.kubernetes.io/warn"] = "baseline";
  CHECK_FALSE(podSecurityLabelsInPlace(namespaceWith(withWarn, m, three), kBaseline, m));
}

TEST_CASE("podSecurityApplyObject: the name, the uid precondition and only the wanted labels") {
  CHECK(podSecurityApplyObject("shop", "u-shop", kBaseline) ==
        json::parse(R"({"apiVersion": "v1", "kind": "Namespace",
          "metadata": {"name": "shop", "uid": "u-shop",
                       "labels": {"pod-security.kubernetes.io/enforce": "baseline",
                                  "pod-security.kubernetes.io/enforce-version": "latest"}}})"));
  // Nothing wanted: an apply without labels, which takes away those the manager set before.
  CHECK(podSecurityApplyObject("shop", "u-shop", {}) ==
        json::parse(R"({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "shop", "uid": "u-shop"}})"));
}

}  // namespace
}  // namespace bulkhead::policy
