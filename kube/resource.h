#pragma once

#include <string>
#include <string_view>

namespace bulkhead::kube {

// A REST resource of the Kubernetes API: enough to build its paths.
struct ResourceType {
  std::string group;  // "" for the core group
  std::string version;
  std::string resource;  // plural, lower case: "networkpolicies"
  std::string kind;
  bool namespaced = true;

  std::string apiVersion() const { return group.empty() ? version : group + "/" + version; }
  // "/api/v1" or "/apis/networking.k8s.io/v1"
  std::string groupVersionPath() const {
    return group.empty() ? "/api/" + version : "/apis/" + group + "/" + version;
  }
  // The collection path, namespaced when `ns` is not empty and the resource is namespaced;
  // with `name`, the object's path; with `subresource`, below it.
  std::string path(std::string_view ns = {}, std::string_view name = {},
                   std::string_view subresource = {}) const {
    std::string p = groupVersionPath();
    if (namespaced && !ns.empty()) {
      p += "/namespaces/";
      p += ns;
    }
    p += "/" + resource;
    if (!name.empty()) {
      p += "/";
      p += name;
      if (!subresource.empty()) {
        p += "/";
        p += subresource;
      }
    }
    return p;
  }
  bool operator==(const ResourceType&) const = default;
};

namespace resources {
inline const ResourceType kNamespaces{"", "v1", "namespaces", "Namespace", false};
inline const ResourceType kConfigMaps{"", "v1", "configmaps", "ConfigMap", true};
inline const ResourceType kSecrets{"", "v1", "secrets", "Secret", true};
inline const ResourceType kPods{"", "v1", "pods", "Pod", true};
inline const ResourceType kServices{"", "v1", "services", "Service", true};
inline const ResourceType kEvents{"", "v1", "events", "Event", true};
inline const ResourceType kServiceAccounts{"", "v1", "serviceaccounts", "ServiceAccount", true};
inline const ResourceType kNetworkPolicies{"networking.k8s.io", "v1", "networkpolicies",
                                           "NetworkPolicy", true};
inline const ResourceType kClusterNetworkPolicies{
    "policy.networking.k8s.io", "v1alpha2", "clusternetworkpolicies", "ClusterNetworkPolicy", false};
inline const ResourceType kLeases{"coordination.k8s.io", "v1", "leases", "Lease", true};
inline const ResourceType kEndpointSlices{"discovery.k8s.io", "v1", "endpointslices",
                                          "EndpointSlice", true};
inline const ResourceType kValidatingWebhookConfigurations{
    "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
    "ValidatingWebhookConfiguration", false};
inline const ResourceType kValidatingAdmissionPolicies{
    "admissionregistration.k8s.io", "v1", "validatingadmissionpolicies",
    "ValidatingAdmissionPolicy", false};
inline const ResourceType kValidatingAdmissionPolicyBindings{
    "admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings",
    "ValidatingAdmissionPolicyBinding", false};
inline const ResourceType kCustomResourceDefinitions{"apiextensions.k8s.io", "v1",
                                                     "customresourcedefinitions",
                                                     "CustomResourceDefinition", false};
// The workload kinds that run pods.
inline const ResourceType kReplicationControllers{"", "v1", "replicationcontrollers",
                                                  "ReplicationController", true};
inline const ResourceType kPodTemplates{"", "v1", "podtemplates", "PodTemplate", true};
inline const ResourceType kDeployments{"apps", "v1", "deployments", "Deployment", true};
inline const ResourceType kStatefulSets{"apps", "v1", "statefulsets", "StatefulSet", true};
inline const ResourceType kDaemonSets{"apps", "v1", "daemonsets", "DaemonSet", true};
inline const ResourceType kReplicaSets{"apps", "v1", "replicasets", "ReplicaSet", true};
inline const ResourceType kJobs{"batch", "v1", "jobs", "Job", true};
inline const ResourceType kCronJobs{"batch", "v1", "cronjobs", "CronJob", true};

// Bulkhead's own APIs (the versions it speaks), and those of the tools it writes to.
inline const ResourceType kSegmentationPolicies{"bulkhead.dev", "v1alpha1", "segmentationpolicies",
                                                "SegmentationPolicy", false};
inline const ResourceType kSegmentationExceptions{
    "bulkhead.dev", "v1alpha1", "segmentationexceptions", "SegmentationException", true};
inline const ResourceType kAccessGrants{"bulkhead.dev", "v1alpha1", "accessgrants", "AccessGrant",
                                        true};
inline const ResourceType kPeerAuthentications{"security.istio.io", "v1", "peerauthentications",
                                               "PeerAuthentication", true};
inline const ResourceType kAuthorizationPolicies{"security.istio.io", "v1",
                                                 "authorizationpolicies", "AuthorizationPolicy",
                                                 true};
inline const ResourceType kReports{"openreports.io", "v1alpha1", "reports", "Report", true};
}  // namespace resources

}  // namespace bulkhead::kube
