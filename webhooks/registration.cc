#include "webhooks/registration.h"

namespace bulkhead::webhooks {
namespace {

using nlohmann::json;

std::string base64(const std::string& in) {
  static constexpr char kTable[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                 (static_cast<unsigned char>(in[i + 1]) << 8) | static_cast<unsigned char>(in[i + 2]);
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += kTable[(v >> 6) & 63];
    out += kTable[v & 63];
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) {
      v |= static_cast<unsigned char>(in[i + 1]) << 8;
    }
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += i + 1 < in.size() ? kTable[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

json rule(const std::string& group, const std::string& version, json resources, json operations) {
  return {{"apiGroups", {group}},
          {"apiVersions", {version}},
          {"resources", std::move(resources)},
          {"operations", std::move(operations)},
          {"scope", "*"}};
}

}  // namespace

json webhookConfiguration(const std::string& url, const std::string& caBundlePem,
                          const std::string& installNamespace) {
  json rules = json::array({
      rule("", "v1", {"pods", "pods/ephemeralcontainers", "services"}, {"CREATE", "UPDATE"}),
      rule("apps", "v1", {"deployments", "statefulsets", "daemonsets", "replicasets"},
           {"CREATE", "UPDATE"}),
      rule("batch", "v1", {"jobs", "cronjobs"}, {"CREATE", "UPDATE"}),
      rule("", "v1", {"namespaces"}, {"UPDATE"}),
      rule("networking.k8s.io", "v1", {"networkpolicies"}, {"UPDATE", "DELETE"}),
      rule("security.istio.io", "v1", {"peerauthentications", "authorizationpolicies"},
           {"UPDATE", "DELETE"}),
      rule("bulkhead.dev", "v1alpha1", {"segmentationexceptions"}, {"CREATE", "UPDATE"}),
  });
  return {{"apiVersion", "admissionregistration.k8s.io/v1"},
          {"kind", "ValidatingWebhookConfiguration"},
          {"metadata",
           {{"name", "bulkhead"},
            {"labels", {{"app.kubernetes.io/name", "bulkhead"},
                        {"app.kubernetes.io/managed-by", "bulkhead"}}}}},
          {"webhooks",
           {{{"name", "validate.bulkhead.dev"},
             {"clientConfig", {{"url", url}, {"caBundle", base64(caBundlePem)}}},
             {"rules", rules},
             {"failurePolicy", "Fail"},
             {"matchPolicy", "Equivalent"},
             {"sideEffects", "NoneOnDryRun"},
             {"timeoutSeconds", 3},
             {"admissionReviewVersions", {"v1"}},
             {"namespaceSelector",
              {{"matchExpressions",
                {{{"key", "kubernetes.io/metadata.name"},
                  {"operator", "NotIn"},
                  {"values", {"kube-system", "kube-node-lease", installNamespace}}}}}}}}}}};
}

Status registerWebhook(kube::Client& client, const json& configuration) {
  return client
      .apply(kube::resources::kValidatingWebhookConfigurations, configuration, "bulkhead", true,
             "")
      .status();
}

}  // namespace bulkhead::webhooks
