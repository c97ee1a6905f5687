#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "kube/client.h"
#include "kube/events.h"
#include "kube/informer.h"
#include "policy/pod_security.h"
#include "policy/segmentation.h"

namespace bulkhead::controller {

struct ControllerOptions {
  std::string installNamespace;
  std::chrono::milliseconds resyncPeriod{600'000};
  int namespaceWorkers = 4;
  std::string fieldManager = "bulkhead";
  // The field manager of the namespaces' Pod Security labels, and of nothing else.
  std::string podSecurityFieldManager = policy::kPodSecurityFieldManager;
  // The background scan of existing Pods and workloads (posture_reconciler.h). It caches every
  // Pod and workload of the cluster (only the fields the rules read).
  bool backgroundScan = true;
  // The admission twin of each policy: a ValidatingAdmissionPolicy and its binding
  // (twin_reconciler.h).
  bool admissionTwin = false;
};

namespace resources = kube::resources;

// What the background scan reads: Pods and every workload kind that runs them.
inline const std::vector<kube::ResourceType> kScannedTypes = {
    resources::kPods,        resources::kReplicationControllers, resources::kDeployments,
    resources::kStatefulSets, resources::kDaemonSets,            resources::kReplicaSets,
    resources::kJobs,         resources::kCronJobs};

// Index of the generated objects' caches: the bulkhead.dev/policy label.
inline constexpr const char* kPolicyIndex = "policy";
// Index of the generated objects' caches: "namespace/name" of the AccessGrant that made them.
inline constexpr const char* kGrantIndex = "grant";
// Index of the AccessGrants: spec.from.namespace.
inline constexpr const char* kSourceIndex = "source";
// Status is recomputed at most this often while namespaces change: it walks every namespace.
inline constexpr std::chrono::milliseconds kStatusDelay{1000};
// How long an applied object may be missing from the informer before it is applied again.
inline constexpr std::chrono::milliseconds kPendingWindow{2000};
// When a guarded write met a newer version than the cache's: look again once the watch caught up.
inline constexpr std::chrono::milliseconds kConflictRetry{200};

// The informers the reconcilers read, all from the process's shared cache.
struct Caches {
  std::shared_ptr<kube::Informer> namespaces;
  std::shared_ptr<kube::Informer> policies;
  std::shared_ptr<kube::Informer> networkPolicies;  // generated (managed-by Bulkhead)
  // NetworkPolicies Bulkhead did not generate: reported when they reach outside their
  // namespace, never changed or deleted.
  std::shared_ptr<kube::Informer> tenantNetworkPolicies;
  std::shared_ptr<kube::Informer> endpointSlices;  // default/kubernetes only
  std::shared_ptr<kube::Informer> exceptions;
  std::shared_ptr<kube::Informer> grants;
  // Pods and workloads, for the background scan (empty when it is off), as kScannedTypes.
  std::vector<std::shared_ptr<kube::Informer>> scanned;
  // The generated ValidatingAdmissionPolicies and bindings (null when the twin is off).
  std::shared_ptr<kube::Informer> admissionPolicies;
  std::shared_ptr<kube::Informer> admissionPolicyBindings;
};

// Istio's informers, while its security API is served.
struct MeshCaches {
  std::shared_ptr<kube::Informer> peerAuthentications;  // generated
  std::shared_ptr<kube::Informer> authorizationPolicies;
  std::shared_ptr<kube::Informer> tenantPeerAuthentications;  // tenants' own, reported
  std::shared_ptr<kube::Informer> tenantAuthorizationPolicies;
  explicit operator bool() const { return peerAuthentications != nullptr; }
};

// What the namespace reconciler last found for a namespace; the policy status reads it.
struct NamespaceState {
  std::string policy;  // the governing policy when last reconciled ("" = none)
  int64_t generation = 0;
  uint64_t factsVersion = 0;
  bool converged = false;  // every desired object existed and matched after the reconcile
  std::string error;       // the last reconcile error, if it failed
  // Objects applied but not yet seen by the informer ("Kind/name" -> a hash of the applied
  // content, and when), so that a reconcile racing its own watch events does not write them
  // again.
  std::map<std::string, std::pair<size_t, MonoTime>> pending;
  // The tenant policies reported as reaching outside the namespace, so that each change is one
  // Event.
  std::string tenantViolations;
};

// What the background scan last found in a namespace; the policy status counts it.
struct NamespacePosture {
  std::string policy;
  int64_t violatingPods = 0;
  int64_t violatingWorkloads = 0;
  bool operator==(const NamespacePosture&) const = default;
};

// What the reconcilers share: the client, the caches, and the state derived from them (decoded
// policies, cluster facts, each namespace's last reconcile). Thread-safe.
class ControllerContext {
 public:
  ControllerContext(kube::ClientPtr client, ClockPtr clock,
                    std::shared_ptr<kube::EventRecorder> events, ControllerOptions options,
                    Caches caches);

  const kube::ClientPtr client;
  const ClockPtr clock;
  const std::shared_ptr<kube::EventRecorder> events;
  const ControllerOptions options;
  const Caches caches;

  // An immutable snapshot: reconciles share it instead of copying every policy.
  std::shared_ptr<const std::vector<policy::SegmentationPolicy>> policies() const;
  // Decodes the cached policies again. A policy that stops decoding keeps its last good spec.
  void rebuildPolicies();
  // The policy governing namespace `ns` in `all`, from the namespace's cached labels.
  const policy::SegmentationPolicy* governing(const std::vector<policy::SegmentationPolicy>& all,
                                              const std::string& ns) const;

  policy::ClusterFacts facts() const;
  // Bumped whenever facts() changes: a namespace reconciled under older facts is not known to be
  // segmented.
  uint64_t factsVersion() const;
  // Each returns whether anything changed.
  bool setApiEndpoints(std::vector<policy::ApiEndpoint> endpoints);
  bool setMesh(MeshCaches mesh);
  MeshCaches mesh() const;

  // Every namespace's name and labels, kept by the namespace watch: status walks all namespaces,
  // and reading them from the cache would parse every one each time.
  void setNamespaceFacts(const policy::NamespaceFacts& facts);
  void forgetNamespace(const std::string& name);
  std::map<std::string, policy::NamespaceFacts> namespaceFacts() const;
  // One namespace's labels; none when it is not known.
  policy::Labels namespaceLabels(const std::string& name) const;

  NamespaceState namespaceState(const std::string& name) const;
  // Records a namespace's reconcile; calls onNamespaceStateChanged when what status reads from
  // it (policy, generation, facts, convergence, error) changed.
  void setNamespaceState(const std::string& name, NamespaceState state);
  // A generated object of the namespace changed: not known to be segmented until reconciled.
  void markUnconverged(const std::string& name, const std::string& deletedSlot);
  std::function<void()> onNamespaceStateChanged;  // set once, before the workers start

  // The background scan's last result for a namespace (none: not scanned, or not governed).
  // Setting a different one calls onNamespaceStateChanged.
  std::optional<NamespacePosture> posture(const std::string& name) const;
  void setPosture(const std::string& name, std::optional<NamespacePosture> posture);
  // The informer of Bulkhead's Reports, while the OpenReports API is served (else null).
  std::shared_ptr<kube::Informer> reports() const;
  void setReports(std::shared_ptr<kube::Informer> reports);

  // The generated objects of namespace `ns` that its policy owns (not those of AccessGrants).
  std::vector<nlohmann::json> managedObjects(const std::string& ns) const;
  // The tenant NetworkPolicies, PeerAuthentications and AuthorizationPolicies in `ns` that reach
  // outside it under `p` (see tenant_objects.h), one line each, sorted.
  std::vector<std::string> tenantPolicyViolations(const policy::SegmentationPolicy& p,
                                                  const std::string& ns) const;
  // The resource of a generated object, by its kind.
  static const kube::ResourceType& typeOf(const nlohmann::json& object);
  // Writes one planned object (server-side apply of a missing one, a guarded update of a drifted
  // one) or deletes a cached one (guarded by its uid; already gone is fine), counting
  // bulkhead_api_writes_total and, for repairs, bulkhead_drift_repairs_total.
  Status write(const nlohmann::json& object, bool replace, bool repair) const;
  Status remove(const nlohmann::json& cached) const;
  // Makes the cluster-scoped generated object `name` in `cache` say `desired` (its spec, owners
  // and labels), or not exist (nullopt): an apply when missing, a guarded update when it differs
  // (apply cannot take away what another manager added), a delete when unwanted.
  Status converge(const std::shared_ptr<kube::Informer>& cache, const std::string& name,
                  const std::optional<nlohmann::json>& desired) const;

  // The informer of the generated ClusterNetworkPolicies while the network-policy API is served
  // (else null).
  std::shared_ptr<kube::Informer> clusterNetworkPolicies() const;
  void setClusterNetworkPolicies(std::shared_ptr<kube::Informer> informer);

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const std::vector<policy::SegmentationPolicy>> decodedPolicies_ =
      std::make_shared<const std::vector<policy::SegmentationPolicy>>();
  MeshCaches mesh_;
  std::vector<policy::ApiEndpoint> apiEndpoints_;
  uint64_t factsVersion_ = 1;
  std::map<std::string, NamespaceState> namespaceStates_;
  std::map<std::string, policy::NamespaceFacts> namespaceFacts_;
  std::map<std::string, NamespacePosture> postures_;
  std::shared_ptr<kube::Informer> reports_;
  std::shared_ptr<kube::Informer> clusterNetworkPolicies_;
};

}  // namespace bulkhead::controller
