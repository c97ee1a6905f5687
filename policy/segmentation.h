#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "policy/segmentation_policy.h"

// What the controller writes for a namespace (SPEC 1.2), and which policy governs it. Pure.
namespace bulkhead::policy {

struct NamespaceFacts {
  std::string name;
  Labels labels;
};

struct ApiEndpoint {
  std::string ip;  // IPv4 or IPv6 literal
  int port = 443;
  std::string protocol = "TCP";
  bool operator==(const ApiEndpoint&) const = default;
  auto operator<=>(const ApiEndpoint&) const = default;
};

// Facts about the cluster the desired state depends on.
struct ClusterFacts {
  std::string installNamespace;  // always excluded
  bool meshAvailable = false;    // security.istio.io/v1 is served
  std::vector<ApiEndpoint> apiServerEndpoints;  // of the default/kubernetes EndpointSlices
};

// Does `policy` select `ns` (selector matches, not excluded, not the install namespace)?
// A policy being deleted selects nothing.
bool selects(const SegmentationPolicy& policy, const NamespaceFacts& ns,
             const std::string& installNamespace);

// The policy that governs `ns`: of those selecting it, the highest priority, ties to the
// alphabetically first name. Null when none selects it.
const SegmentationPolicy* governingPolicy(const std::vector<SegmentationPolicy>& policies,
                                          const NamespaceFacts& ns,
                                          const std::string& installNamespace);

// The objects `policy` wants in namespace `ns`, complete (apiVersion, kind, metadata with labels,
// spec), in a fixed order. Deterministic: the same inputs give byte-identical output.
std::vector<nlohmann::json> desiredObjects(const SegmentationPolicy& policy, const std::string& ns,
                                           const ClusterFacts& facts);

// Does an object read from the API server already carry everything `desired` says (its labels
// and exactly its spec)? If so, applying `desired` again would change nothing.
bool matchesDesired(const nlohmann::json& current, const nlohmann::json& desired);

// The endpoints of the API server from the default/kubernetes EndpointSlices (ready addresses),
// sorted and deduplicated.
std::vector<ApiEndpoint> apiEndpointsFromSlices(const std::vector<nlohmann::json>& slices);

}  // namespace bulkhead::policy
