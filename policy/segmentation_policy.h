#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "policy/label_selector.h"

namespace bulkhead::policy {

inline constexpr const char* kApiVersion = "bulkhead.dev/v1alpha1";
inline constexpr const char* kManagedByLabel = "app.kubernetes.io/managed-by";
inline constexpr const char* kManagedByValue = "bulkhead";
// The label selector of every generated object.
inline constexpr const char* kManagedBySelector = "app.kubernetes.io/managed-by=bulkhead";
// Do these labels mark an object Bulkhead generated?
inline bool isGenerated(const Labels& labels) {
  auto it = labels.find(kManagedByLabel);
  return it != labels.end() && it->second == kManagedByValue;
}
// The label selector of everything else: tenants' own objects.
inline constexpr const char* kNotManagedBySelector = "app.kubernetes.io/managed-by!=bulkhead";
// The generated NetworkPolicy whose presence makes a namespace segmented (SPEC 1.2, 3.1).
inline constexpr const char* kDefaultDenyName = "bulkhead-default-deny";
inline constexpr const char* kPolicyLabel = "bulkhead.dev/policy";
inline constexpr const char* kNamespaceNameLabel = "kubernetes.io/metadata.name";
inline constexpr const char* kFinalizer = "bulkhead.dev/cleanup";

enum class Mode { kEnforce, kWarn, kAudit };
enum class MtlsMode { kStrict, kPermissive, kDisable, kUnmanaged };
enum class Direction { kIngress, kEgress };
// What tenants may write as NetworkPolicies in a selected namespace (see tenant_objects.h).
enum class TenantPolicies { kSameNamespace, kUnrestricted, kForbidden };
// How a namespace's pods join the mesh: Istio sidecars, or ambient mode (ztunnel and waypoints).
// kFromNamespace follows the namespace's istio.io/dataplane-mode label, as Istio does.
enum class DataplaneMode { kFromNamespace, kSidecar, kAmbient };

// The namespace label with which Istio puts a namespace (or, on a pod, a pod) in ambient mode.
inline constexpr const char* kDataplaneModeLabel = "istio.io/dataplane-mode";

struct Port {
  int port = 0;
  std::string protocol = "TCP";
  bool operator==(const Port&) const = default;
};

struct Peer {
  std::string ns;
  LabelSelector podSelector;
  bool operator==(const Peer&) const = default;
};

struct BaselineAllow {
  std::string name;
  Direction direction = Direction::kIngress;
  LabelSelector podSelector;
  std::vector<Peer> peers;
  std::vector<Port> ports;
  bool operator==(const BaselineAllow&) const = default;
};

struct NetworkSettings {
  bool denyIngress = true;
  bool denyEgress = true;
  bool allowDNS = true;
  bool allowSameNamespace = false;
  bool allowMeshControlPlane = true;
  std::optional<LabelSelector> kubeApiPods;  // allowKubeAPI.podSelector; unset by default
  std::vector<BaselineAllow> baselineAllows;
  TenantPolicies tenantPolicies = TenantPolicies::kSameNamespace;
  bool operator==(const NetworkSettings&) const = default;
};

struct PodRules {
  std::vector<std::string> requiredLabels{"app.kubernetes.io/name"};
  bool forbidHostNetwork = true;
  bool forbidHostPorts = true;
  bool forbidHostPIDIPC = true;
  bool forbidPrivileged = true;
  std::vector<std::string> forbiddenCapabilities{"NET_ADMIN", "NET_RAW", "SYS_ADMIN"};
  bool requireSidecar = true;
  bool requireSegmentedNamespace = true;
  bool operator==(const PodRules&) const = default;
};

// Istio's official proxy image repositories: the injector's default hubs with image proxyv2.
inline const std::vector<std::string> kDefaultProxyImages = {"docker.io/istio/proxyv2",
                                                             "gcr.io/istio-release/proxyv2"};

struct MeshSettings {
  DataplaneMode dataplaneMode = DataplaneMode::kFromNamespace;
  // Image repositories (no tag or digest) whose containers may be the injector's istio-proxy,
  // istio-init and istio-validation, and istiod's waypoints.
  std::vector<std::string> proxyImages = kDefaultProxyImages;
  // The waypoint Gateways of each ambient namespace (their ServiceAccounts have the same name).
  std::vector<std::string> waypoints{"waypoint"};
  // Tenants may write EnvoyFilters and Sidecars (mesh.tenantConfiguration: Allowed).
  bool tenantConfiguration = false;
  bool operator==(const MeshSettings&) const = default;
};

// The Pod Security Standard Kubernetes' own PodSecurity admission enforces in the selected
// namespaces, through the namespace labels the controller sets (policy/pod_security.h).
// kUnmanaged: Bulkhead sets no such label.
enum class PodSecurityLevel { kPrivileged, kBaseline, kRestricted, kUnmanaged };

struct PodSecuritySettings {
  PodSecurityLevel enforce = PodSecurityLevel::kBaseline;
  std::string version = "latest";  // "latest" or "v1.<minor>", as the enforce-version label
  bool operator==(const PodSecuritySettings&) const = default;
};

struct ExceptionSettings {
  std::chrono::seconds maxDuration{168 * 3600};
  std::vector<std::string> approverGroups;
  bool operator==(const ExceptionSettings&) const = default;
};

// A SegmentationPolicy (SPEC 1.1), decoded, with every default applied.
struct SegmentationPolicy {
  std::string name;
  std::string uid;
  int64_t generation = 0;
  bool deleting = false;  // metadata.deletionTimestamp is set
  bool hasFinalizer = false;

  LabelSelector namespaceSelector;
  std::vector<std::string> excludedNamespaces{"kube-system", "kube-public", "kube-node-lease"};
  int priority = 0;
  Mode mode = Mode::kEnforce;
  NetworkSettings network;
  MtlsMode mtls = MtlsMode::kStrict;
  bool authorizationDefaultDeny = false;
  MeshSettings mesh;
  PodSecuritySettings podSecurity;
  PodRules podRules;
  ExceptionSettings exceptions;

  bool mtlsManaged() const { return mtls != MtlsMode::kUnmanaged; }
  // Is a namespace with these labels in ambient mode under this policy?
  bool ambient(const Labels& namespaceLabels) const;
};

// Decodes a SegmentationPolicy object as read from the API server. Fields the API server would
// default are defaulted here too, so a policy decodes the same with or without its CRD's
// defaulting. Invalid errors name the field path ("spec.network.baselineAllows[0].direction").
StatusOr<SegmentationPolicy> decodeSegmentationPolicy(const nlohmann::json& object);

// Every SegmentationPolicy of `objects`, decoded, sorted by name. One that no longer decodes (a
// CRD upgrade, an edit its schema let through) keeps the spec it last decoded to, found in
// `previous` by uid, so its namespaces keep their segmentation and nothing it generated is
// removed; its deletion still counts. One that never decoded governs nothing.
std::vector<SegmentationPolicy> decodePolicies(const std::vector<const nlohmann::json*>& objects,
                                               const std::vector<SegmentationPolicy>& previous);

std::string_view mtlsModeName(MtlsMode mode);
std::string_view modeName(Mode mode);

// How `to` protects a namespace less than `from`, one phrase per weaker setting ("mode Enforce
// to Audit", "mTLS STRICT to PERMISSIVE", "podRules.forbidHostNetwork off", "network
// baselineAllows adds bulkhead-baseline-x"); empty when `to` is at least as strict in every
// setting. A namespace moved from `from` to `to` is a downgrade when this is not empty.
std::vector<std::string> weakenings(const SegmentationPolicy& from, const SegmentationPolicy& to);

}  // namespace bulkhead::policy
