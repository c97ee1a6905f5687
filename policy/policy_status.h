#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "policy/segmentation_policy.h"

// A SegmentationPolicy's status and conditions, from what is known of the namespaces it selects.
// Pure: the time is a parameter.
namespace bulkhead::policy {

// A condition in metav1.Condition shape. lastTransitionTime stays what it was in `previous` (the
// old conditions) while the condition's status is unchanged, else it is `now`.
nlohmann::json condition(const nlohmann::json& previous, const std::string& type, bool status,
                         const std::string& reason, const std::string& message, int64_t generation,
                         std::chrono::system_clock::time_point now);

// One namespace the policy selects.
struct SelectedNamespace {
  std::string name;
  std::string governedBy;  // the governing policy; another one's name means a conflict
  bool segmented = false;  // its last reconcile converged on the current spec and facts
  std::string error;       // its last reconcile error, if any
  // Tenant policies reaching outside it, one line each (read only when governed by this one).
  std::vector<std::string> tenantViolations;
  // What the background scan last found in it (read only when governed by this one); none when
  // it has not been scanned under this policy yet.
  std::optional<std::pair<int64_t, int64_t>> violatingPodsAndWorkloads;
};

struct PolicyStatusInput {
  const SegmentationPolicy* policy = nullptr;
  // Why the spec does not decode; empty when it does.
  std::string invalidSpec;
  bool meshAvailable = false;
  bool backgroundScan = false;  // the counts of violating objects are kept
  bool admissionTwin = false;   // its ValidatingAdmissionPolicy and binding are written
  bool adminTier = false;       // the network-policy API is served: admin-tier objects are written
  std::vector<SelectedNamespace> selected;  // in name order
  nlohmann::json oldStatus = nlohmann::json::object();
  std::chrono::system_clock::time_point now;
};

// The whole status object: observedGeneration, the counts (with the background scan, the Pods and
// workloads violating the rules in the namespaces it governs), conflicting namespaces, and the
// Ready, Conflict, TenantPolicies and MeshAvailable conditions.
nlohmann::json policyStatus(const PolicyStatusInput& in);

}  // namespace bulkhead::policy
