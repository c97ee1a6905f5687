#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "policy/segmentation_policy.h"

// The admin tier of a selected namespace: an Admin-tier ClusterNetworkPolicy
// (policy.networking.k8s.io/v1alpha2) that the network enforces before any namespace
// NetworkPolicy, so no NetworkPolicy written into the namespace can open it further across
// namespace boundaries. Pure.
//
// Its subject is the whole namespace. Traffic within the namespace is passed to the NetworkPolicy
// tier (the default-deny and what tenants may allow there). Every flow across the namespace's
// boundary that one of its generated NetworkPolicies allows (DNS, the mesh's control plane,
// baselineAllows, AccessGrants, ...) is passed to the NetworkPolicy tier too, with its peers and
// ports: the generated NetworkPolicies keep deciding which of the namespace's pods it is for,
// which a rule of an object whose subject is the namespace cannot say. Everything else to or
// from pods of other namespaces is denied. A direction the policy does not deny by default is
// left alone.
namespace bulkhead::policy {

// The label naming the namespace an admin-tier object is for.
inline constexpr const char* kAdminTierNamespaceLabel = "bulkhead.dev/namespace";
// The priority of the admin-tier objects in the Admin tier (0 to 1000, lower first). Each
// object's subject is its own namespace, so two of them never decide the same direction of the
// same connection.
inline constexpr int kAdminTierPriority = 100;

// "bulkhead-<namespace>".
std::string adminTierName(const std::string& ns);

// The ClusterNetworkPolicy for namespace `ns` governed by `policy`, from the generated
// NetworkPolicies of the namespace (the policy's and its AccessGrants', as cached), complete and
// deterministic. Nullopt when the policy denies neither direction by default. The API allows 25
// rules per direction: past that, the Pass rules are merged without their ports (still only
// passed on to the NetworkPolicies, which check the ports); Invalid when even that does not fit.
StatusOr<std::optional<nlohmann::json>> adminTierPolicy(
    const SegmentationPolicy& policy, const std::string& ns,
    const std::vector<nlohmann::json>& generatedNetworkPolicies);

}  // namespace bulkhead::policy
