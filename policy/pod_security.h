#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>

#include "policy/segmentation_policy.h"

// Pod Security composed in: the labels with which Kubernetes' own PodSecurity admission enforces
// a Pod Security Standard on a namespace, as a SegmentationPolicy wants them (spec.podSecurity),
// and whether a namespace read from the API server already carries them. Pure.
namespace bulkhead::policy {

// Every label Kubernetes' PodSecurity admission reads starts with this prefix (enforce, audit,
// warn, and their -version labels).
inline constexpr std::string_view kPodSecurityLabelPrefix = "pod-security.kubernetes.io/";
// The two Bulkhead writes: the level the API server enforces, and the version of its checks.
inline constexpr const char* kPodSecurityEnforceLabel = "pod-security.kubernetes.io/enforce";
inline constexpr const char* kPodSecurityEnforceVersionLabel =
    "pod-security.kubernetes.io/enforce-version";
// The server-side apply field manager of those labels. It is not the manager of the generated
// objects: an apply under it carries only these labels, so applying an empty set takes away
// exactly the labels Bulkhead set, never one it does not own.
inline constexpr const char* kPodSecurityFieldManager = "bulkhead-pod-security";

// Is `key` a label PodSecurity admission reads (any pod-security.kubernetes.io/ label)? For the
// namespace-label guard: these labels on a selected namespace are the policy's.
bool isPodSecurityLabel(std::string_view key);

// "baseline", "restricted", "privileged" as the labels take them; "Unmanaged".
std::string_view podSecurityLevelName(PodSecurityLevel level);

// The pod-security labels a namespace governed by `policy` must carry: enforce and
// enforce-version from spec.podSecurity; none when it is Unmanaged.
Labels podSecurityLabels(const SegmentationPolicy& policy);

// The keys under metadata.labels that `manager` owns on `object` through server-side apply
// (metadata.managedFields entries of that manager with operation Apply).
std::set<std::string> labelsAppliedBy(const nlohmann::json& object, std::string_view manager);

// Does the namespace `ns` (as read from the API server, managedFields included) carry exactly
// what an apply of `desired` under `manager` would leave: every desired label with its value and
// owned by `manager`, and no other label owned by it? If so, there is nothing to write. With an
// empty `desired`: true when `manager` owns no label.
bool podSecurityLabelsInPlace(const nlohmann::json& ns, const Labels& desired,
                              std::string_view manager);

// The server-side apply body that makes namespace `name` (uid `uid`) carry `desired` as the
// field manager's only labels: an empty `desired` removes what the manager set before. The uid
// is a precondition: the API server refuses the apply if the namespace was deleted and
// recreated since it was read.
nlohmann::json podSecurityApplyObject(const std::string& name, const std::string& uid,
                                      const Labels& desired);

}  // namespace bulkhead::policy
