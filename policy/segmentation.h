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
// spec), in a fixed order. Deterministic: the same inputs give byte-identical output. The
// namespace's labels say whether it is in Istio's ambient mode (SegmentationPolicy::ambient),
// which adds the allows ambient needs.
std::vector<nlohmann::json> desiredObjects(const SegmentationPolicy& policy,
                                           const NamespaceFacts& ns, const ClusterFacts& facts);

// The pods istiod runs as waypoints carry this label.
inline constexpr const char* kWaypointLabel = "gateway.istio.io/managed";
inline constexpr const char* kWaypointLabelValue = "istio.io-mesh-controller";
// Istio's HBONE port: ambient traffic between pods is tunnelled to it (ztunnel and waypoints).
inline constexpr int kHbonePort = 15008;
// The source address of kubelet probes in ambient mode: ztunnel's node-side redirection SNATs
// them to this link-local address so that they can be told from other traffic.
inline constexpr const char* kAmbientProbeSource = "169.254.7.127/32";
// The mesh's trust domain in the Istio principals Bulkhead writes (Istio's default).
inline constexpr const char* kTrustDomain = "cluster.local";

// Does an object read from the API server already carry everything `desired` says (its labels
// and exactly its spec)? If so, applying `desired` again would change nothing.
bool matchesDesired(const nlohmann::json& current, const nlohmann::json& desired);

// The endpoints of the API server from the default/kubernetes EndpointSlices (ready addresses),
// sorted and deduplicated.
std::vector<ApiEndpoint> apiEndpointsFromSlices(const std::vector<nlohmann::json>& slices);

}  // namespace bulkhead::policy
