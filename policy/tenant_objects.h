#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "policy/admission.h"
#include "policy/segmentation_policy.h"

// What tenants may write themselves in a selected namespace: NetworkPolicies and Istio
// AuthorizationPolicies are additive, so one that admits other namespaces undoes the default
// deny; a PeerAuthentication can lower STRICT mTLS; an EnvoyFilter or a Sidecar can take traffic
// around the proxy. Pure.
namespace bulkhead::policy {

inline constexpr const char* kTenantPoliciesRule = "tenantPolicies";
inline constexpr const char* kTenantMeshConfigurationRule = "tenantMeshConfiguration";

// Why `object` (a NetworkPolicy, AuthorizationPolicy, PeerAuthentication, EnvoyFilter or
// Sidecar, by `kind`) reaches beyond what `policy` lets tenants of namespace `ns` write, one
// phrase per offending field, in field order ("spec.ingress[0].from[1].namespaceSelector reaches
// other namespaces"). Empty when it stays inside.
//  - NetworkPolicy, with network.tenantPolicies SameNamespace: every ingress `from` and egress
//    `to` peer is a podSelector of this namespace (no namespaceSelector, no ipBlock, and no rule
//    without peers, which admits everyone); Forbidden refuses every one, Unrestricted none.
//  - AuthorizationPolicy, with authorization.defaultDeny: every ALLOW rule names its sources,
//    and they are only this namespace (principals cluster.local/ns/<ns>/sa/<name>, namespaces
//    [<ns>]).
//  - PeerAuthentication, with STRICT mTLS: its modes (and port-level modes) STRICT or UNSET.
//  - EnvoyFilter and Sidecar: only with mesh.tenantConfiguration Allowed.
std::vector<std::string> tenantObjectViolations(const std::string& kind, const std::string& ns,
                                                const nlohmann::json& object,
                                                const SegmentationPolicy& policy);

// The admission decision for a tenant's `object` in a namespace governed by `governing` (null:
// allowed), in the policy's mode, naming the rule, the fields and how to get the flow instead.
Decision decideTenantObject(const std::string& kind, const std::string& ns,
                            const std::string& name, const nlohmann::json& object,
                            const SegmentationPolicy* governing);

}  // namespace bulkhead::policy
