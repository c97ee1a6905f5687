#pragma once

#include <nlohmann/json.hpp>
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
  nlohmann::json object;     // null when absent (DELETE)
  nlohmann::json oldObject;  // null when absent (CREATE)
};

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
