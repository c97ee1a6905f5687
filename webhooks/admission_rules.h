#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace bulkhead::webhooks {

// Which check decides a request.
enum class Decider {
  kPod,               // the pod rules, on a pod or a workload's pod template
  kService,           // externalIPs and exposure of Services
  kNamespaceLabels,   // label changes that would weaken a namespace's segmentation
  kNetworkObject,     // generated objects (controller only) and tenants' own network/mesh policies
  kTenantMeshObject,  // Istio mesh configuration tenants may write only where the policy allows
  kException,         // SegmentationException identity and duration
  kGrant,             // AccessGrant identity, approval and duration, by both namespaces' policies
};

// One resource the webhook checks, as the ValidatingWebhookConfiguration's rules name it.
struct AdmissionRule {
  std::string group;
  std::vector<std::string> versions;
  std::string resource;  // with its subresource: "pods/ephemeralcontainers"
  std::vector<std::string> operations;
  Decider decider;
};

// Every resource the webhook checks: the one list the handler dispatches on and the chart's
// webhook rules must equal (a test renders the chart and compares).
const std::vector<AdmissionRule>& admissionRules();

// The rule for a request's resource and subresource; null when the webhook does not check it.
const AdmissionRule* findAdmissionRule(std::string_view resource, std::string_view subResource);

}  // namespace bulkhead::webhooks
