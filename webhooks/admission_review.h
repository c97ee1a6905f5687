#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "policy/admission.h"

namespace bulkhead::webhooks {

// The part of an admission.k8s.io/v1 AdmissionReview request that Bulkhead reads.
struct AdmissionRequest {
  std::string uid;
  std::string kind;  // request.kind.kind: "Pod", "Deployment", ...
  std::string resource;     // request.resource.resource: "pods"
  std::string subResource;  // "ephemeralcontainers", or ""
  std::string ns;
  std::string name;
  std::string operation;  // CREATE, UPDATE, DELETE, CONNECT
  policy::UserInfo user;
  bool dryRun = false;
  // For pods (also pods/ephemeralcontainers) and workloads: the facts the rules read, decoded
  // straight from the body on the hot path (an Invalid status for a malformed object). For other
  // resources: object and oldObject as DOMs.
  std::optional<StatusOr<policy::PodFacts>> pod;
  // UPDATE of a pod or workload: the facts of oldObject, and whether the pod spec (a workload's
  // pod template spec) differs between the two, compared as the API server serialized them.
  std::optional<StatusOr<policy::PodFacts>> oldPod;
  bool podSpecChanged = true;
  nlohmann::json object;     // null when absent (DELETE) or when `pod` is set
  nlohmann::json oldObject;  // null when absent (CREATE) or when `pod` is set
};

// Does the request carry a pod or a pod template (decoded into AdmissionRequest::pod)?
bool isPodLike(std::string_view resource, std::string_view subResource);

// Deepest JSON nesting accepted; Kubernetes objects stay far below it, and refusing deeper input
// before parsing keeps a hostile body from exhausting the stack.
inline constexpr int kMaxJsonDepth = 100;

// Decodes an AdmissionReview. Invalid, with a message fit for an HTTP 400 body, for a body that
// is not JSON, is nested too deeply, is not an admission.k8s.io/v1 AdmissionReview, or has no
// request.uid.
StatusOr<AdmissionRequest> decodeAdmissionReview(std::string_view body);

// The AdmissionReview response for `uid`.
std::string encodeAdmissionReview(const std::string& uid, const policy::Decision& decision);

}  // namespace bulkhead::webhooks
