#include "webhooks/admission_rules.h"

namespace bulkhead::webhooks {

const std::vector<AdmissionRule>& admissionRules() {
  static const std::vector<std::string> v1 = {"v1"};
  static const std::vector<std::string> write = {"CREATE", "UPDATE"};
  static const std::vector<std::string> writeDelete = {"CREATE", "UPDATE", "DELETE"};
  static const std::vector<std::string> update = {"UPDATE"};
  static const std::vector<AdmissionRule> rules = {
      // The pod rules, on pods and on the pod templates of workloads.
      {"", v1, "pods", write, Decider::kPod},
      {"", v1, "pods/ephemeralcontainers", write, Decider::kPod},
      {"", v1, "replicationcontrollers", write, Decider::kPod},
      {"", v1, "podtemplates", write, Decider::kPod},
      {"apps", v1, "deployments", write, Decider::kPod},
      {"apps", v1, "statefulsets", write, Decider::kPod},
      {"apps", v1, "daemonsets", write, Decider::kPod},
      {"apps", v1, "replicasets", write, Decider::kPod},
      {"batch", v1, "jobs", write, Decider::kPod},
      {"batch", v1, "cronjobs", write, Decider::kPod},
      // Services' externalIPs and NodePort/LoadBalancer types.
      {"", v1, "services", write, Decider::kService},
      // The status and finalize subresources carry label changes too.
      {"", v1, "namespaces", update, Decider::kNamespaceLabels},
      {"", v1, "namespaces/status", update, Decider::kNamespaceLabels},
      {"", v1, "namespaces/finalize", update, Decider::kNamespaceLabels},
      {"networking.k8s.io", v1, "networkpolicies", writeDelete, Decider::kNetworkObject},
      {"security.istio.io", v1, "peerauthentications", writeDelete, Decider::kNetworkObject},
      {"security.istio.io", v1, "authorizationpolicies", writeDelete, Decider::kNetworkObject},
      // EnvoyFilter is served only as v1alpha3.
      {"networking.istio.io",
       {"v1", "v1alpha3"},
       "envoyfilters",
       write,
       Decider::kTenantMeshObject},
      {"networking.istio.io", {"v1", "v1alpha3"}, "sidecars", write, Decider::kTenantMeshObject},
      {"bulkhead.dev", {"v1alpha1"}, "segmentationexceptions", write, Decider::kException},
      {"bulkhead.dev", {"v1alpha1"}, "accessgrants", write, Decider::kGrant},
  };
  return rules;
}

const AdmissionRule* findAdmissionRule(std::string_view resource, std::string_view subResource) {
  for (const auto& rule : admissionRules()) {
    std::string_view r = rule.resource;
    const size_t slash = r.find('/');
    const std::string_view name = r.substr(0, slash);
    const std::string_view sub = slash == std::string_view::npos ? "" : r.substr(slash + 1);
    if (name == resource && sub == subResource) {
      return &rule;
    }
  }
  return nullptr;
}

}  // namespace bulkhead::webhooks
