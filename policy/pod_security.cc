#include "policy/pod_security.h"

#include <cstdlib>

namespace bulkhead::policy {

using nlohmann::json;

bool isPodSecurityLabel(std::string_view key) { return key.starts_with(kPodSecurityLabelPrefix); }

std::string_view podSecurityLevelName(PodSecurityLevel level) {
  switch (level) {
    case PodSecurityLevel::kPrivileged:
      return "privileged";
    case PodSecurityLevel::kBaseline:
      return "baseline";
    case PodSecurityLevel::kRestricted:
      return "restricted";
    case PodSecurityLevel::kUnmanaged:
      return "Unmanaged";
  }
  std::abort();
}

Labels podSecurityLabels(const SegmentationPolicy& policy) {
  if (policy.podSecurity.enforce == PodSecurityLevel::kUnmanaged) {
    return {};
  }
  return {{kPodSecurityEnforceLabel, std::string(podSecurityLevelName(policy.podSecurity.enforce))},
          {kPodSecurityEnforceVersionLabel, policy.podSecurity.version}};
}

std::set<std::string> labelsAppliedBy(const json& object, std::string_view manager) {
  std::set<std::string> owned;
  auto md = object.find("metadata");
  if (md == object.end() || !md->is_object()) {
    return owned;
  }
  auto entries = md->find("managedFields");
  if (entries == md->end() || !entries->is_array()) {
    return owned;
  }
  for (const auto& e : *entries) {
    auto field = [&e](const char* key) {
      auto it = e.find(key);
      return it != e.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    if (!e.is_object() || field("manager") != manager || field("operation") != "Apply") {
      continue;
    }
    // fieldsV1: {"f:metadata": {"f:labels": {"f:<key>": {}, ...}}}
    const json* labels = &e;
    for (const char* step : {"fieldsV1", "f:metadata", "f:labels"}) {
      auto it = labels->is_object() ? labels->find(step) : labels->end();
      if (it == labels->end()) {
        labels = nullptr;
        break;
      }
      labels = &*it;
    }
    if (labels == nullptr || !labels->is_object()) {
      continue;
    }
    for (const auto& [k, v] : labels->items()) {
      if (k.starts_with("f:")) {
        owned.insert(k.substr(2));
      }
    }
  }
  return owned;
}

bool podSecurityLabelsInPlace(const json& ns, const Labels& desired, std::string_view manager) {
  std::set<std::string> owned = labelsAppliedBy(ns, manager);
  if (owned.size() != desired.size()) {
    return false;
  }
  Labels have = labelsOf(ns);
  for (const auto& [k, v] : desired) {
    auto it = have.find(k);
    if (!owned.contains(k) || it == have.end() || it->second != v) {
      return false;
    }
  }
  return true;
}

json podSecurityApplyObject(const std::string& name, const std::string& uid,
                            const Labels& desired) {
  json object = {
      {"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", name}, {"uid", uid}}}};
  if (!desired.empty()) {
    object["metadata"]["labels"] = desired;
  }
  return object;
}

}  // namespace bulkhead::policy
