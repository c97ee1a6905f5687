#include "policy/policy_status.h"

#include <algorithm>

#include "common/time_format.h"

namespace bulkhead::policy {
namespace {

using nlohmann::json;

// "a, b, c and 3 more": at most `limit` items.
std::string listed(const std::vector<std::string>& items, size_t limit, const char* separator,
                   const char* more) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < limit; ++i) {
    out += (i ? separator : "") + items[i];
  }
  if (items.size() > limit) {
    out += more + std::to_string(items.size() - limit) + " more";
  }
  return out;
}

}  // namespace

json condition(const json& previous, const std::string& type, bool status,
               const std::string& reason, const std::string& message, int64_t generation,
               std::chrono::system_clock::time_point now) {
  std::string s = status ? "True" : "False";
  std::string since = formatRfc3339(now);
  if (previous.is_array()) {
    for (const auto& c : previous) {
      if (c.is_object() && c.value("type", json()) == type && c.value("status", json()) == s &&
          c.value("lastTransitionTime", json()).is_string()) {
        since = c["lastTransitionTime"].get<std::string>();
      }
    }
  }
  return {{"type", type},
          {"status", s},
          {"reason", reason},
          {"message", message},
          {"lastTransitionTime", since},
          {"observedGeneration", generation}};
}

json policyStatus(const PolicyStatusInput& in) {
  const SegmentationPolicy& p = *in.policy;
  int64_t governed = 0, segmented = 0, violatingPods = 0, violatingWorkloads = 0;
  std::vector<std::string> conflicting, conflictNames, tenantViolations;
  std::string firstError;
  for (const auto& ns : in.selected) {
    if (ns.governedBy != p.name) {
      conflicting.push_back(ns.name + " (by " + (ns.governedBy.empty() ? "?" : ns.governedBy) +
                            ")");
      conflictNames.push_back(ns.name);
      continue;
    }
    ++governed;
    if (ns.violatingPodsAndWorkloads.has_value()) {
      violatingPods += ns.violatingPodsAndWorkloads->first;
      violatingWorkloads += ns.violatingPodsAndWorkloads->second;
    }
    for (const auto& line : ns.tenantViolations) {
      tenantViolations.push_back(ns.name + ": " + line);
    }
    if (ns.segmented) {
      ++segmented;
    } else if (!ns.error.empty() && firstError.empty()) {
      firstError = ns.name + ": " + ns.error;
    }
  }
  const json oldConditions = in.oldStatus.value("conditions", json::array());
  auto cond = [&](const std::string& type, bool status, const std::string& reason,
                  const std::string& message) {
    return condition(oldConditions, type, status, reason, message, p.generation, in.now);
  };
  const std::string progress =
      std::to_string(segmented) + " of " + std::to_string(governed) + " namespaces segmented";
  json conditions = json::array();
  if (!in.invalidSpec.empty()) {
    conditions.push_back(cond("Ready", false, "InvalidSpec", in.invalidSpec));
  } else if (segmented == governed) {
    conditions.push_back(cond("Ready", true, "Segmented", progress));
  } else {
    conditions.push_back(cond("Ready", false, firstError.empty() ? "Progressing" : "ReconcileError",
                              progress + (firstError.empty() ? "" : "; failing: " + firstError)));
  }
  if (conflicting.empty()) {
    conditions.push_back(cond("Conflict", false, "NoConflict",
                              "no selected namespace is governed by another policy"));
  } else {
    conditions.push_back(cond("Conflict", true, "Overridden",
                              "namespaces governed by a policy of higher priority: " +
                                  listed(conflicting, 20, ", ", " and ")));
  }
  if (tenantViolations.empty()) {
    conditions.push_back(
        cond("TenantPolicies", true, "Contained",
             "no tenant NetworkPolicy or Istio policy reaches outside its namespace"));
  } else {
    conditions.push_back(cond("TenantPolicies", false, "Violations",
                              std::to_string(tenantViolations.size()) +
                                  " tenant policies reach outside their namespace (left in "
                                  "place): " +
                                  listed(tenantViolations, 10, "; ", "; and ")));
  }
  conditions.push_back(cond(
      "MeshAvailable", in.meshAvailable, in.meshAvailable ? "IstioServed" : "IstioNotInstalled",
      in.meshAvailable ? "security.istio.io/v1 is served"
                       : "security.istio.io/v1 is not served: only NetworkPolicies are "
                         "written"));
  json layers = json::array();
  if (p.network.denyIngress || p.network.denyEgress) {
    layers.push_back("NetworkPolicy");
  }
  if (in.adminTier && (p.network.denyIngress || p.network.denyEgress)) {
    layers.push_back("ClusterNetworkPolicy");
  }
  if (in.meshAvailable && p.mtlsManaged()) {
    layers.push_back("PeerAuthentication");
  }
  if (in.admissionTwin) {
    layers.push_back("ValidatingAdmissionPolicy");
  }
  json status = {{"observedGeneration", p.generation},
                 {"selectedNamespaces", static_cast<int64_t>(in.selected.size())},
                 {"segmentedNamespaces", segmented},
                 {"conflictingNamespaces", conflictNames},
                 {"tenantPolicyViolations", static_cast<int64_t>(tenantViolations.size())},
                 {"meshAvailable", in.meshAvailable},
                 {"layers", layers},
                 {"conditions", conditions}};
  if (in.backgroundScan) {
    status["violatingPods"] = violatingPods;
    status["violatingWorkloads"] = violatingWorkloads;
  }
  return status;
}

}  // namespace bulkhead::policy
