#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/exceptions.h"
#include "policy/pod_rules.h"
#include "policy/segmentation_policy.h"

// The admission twin of a SegmentationPolicy: a ValidatingAdmissionPolicy and its binding that
// make the API server itself enforce the pod rules that need no cluster state, in CEL, so that
// they hold while the webhook is unreachable (webhook.failurePolicy Ignore). Its expressions are
// written here from the same rule definitions and settings evaluatePod reads: each rule of
// kPodRuleNames has its CEL form below or is listed in kWebhookOnlyRules. The CEL must decide
// exactly as evaluatePod does; tests/integration/admission_twin_test.cc has the API server judge
// generated pods by both and compares. Pure.
namespace bulkhead::policy {

// Rules that need cluster state the API server's CEL cannot see: the webhook alone judges them.
// requireSegmentedNamespace reads whether the namespace's default-deny exists.
inline constexpr std::array<std::string_view, 1> kWebhookOnlyRules = {kRequireSegmentedNamespace};

struct TwinInput {
  const SegmentationPolicy* policy = nullptr;
  // The namespaces the policy governs, any order.
  std::vector<std::string> namespaces;
  // Istio's security API is served: requireSidecar applies under mTLS STRICT only then.
  bool meshAvailable = false;
  // The SegmentationExceptions of those namespaces, any phase: the Active ones at `now` are
  // written into the expressions.
  const std::vector<SegmentationException>* exceptions = nullptr;
  WallTime now;
};

struct AdmissionTwin {
  nlohmann::json policy;                  // the ValidatingAdmissionPolicy
  std::optional<nlohmann::json> binding;  // none while the policy governs no namespace
  // The earliest expiresAt of an exception written in: the twin must be written again then.
  std::optional<WallTime> nextChange;
};

// "bulkhead-<policy>": the name of both objects.
std::string twinName(const std::string& policyName);

// The twin of `in.policy`, complete (apiVersion, kind, metadata with the generated objects'
// labels, spec). Deterministic. The binding's validationActions follow the policy's mode:
// Enforce Deny, Warn Warn, Audit Audit.
AdmissionTwin admissionTwin(const TwinInput& in);

// A string as a CEL string literal: single-quoted, with \, ' and control characters escaped.
std::string celString(std::string_view s);

}  // namespace bulkhead::policy
