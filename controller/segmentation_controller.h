#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "kube/client.h"
#include "kube/events.h"
#include "kube/informer.h"
#include "kube/workqueue.h"
#include "policy/pod_security.h"
#include "policy/segmentation.h"

namespace bulkhead::controller {

struct ControllerOptions {
  std::string installNamespace;
  std::chrono::milliseconds resyncPeriod{600'000};
  std::chrono::milliseconds meshDiscoveryInterval{10'000};
  int namespaceWorkers = 4;
  std::string fieldManager = "bulkhead";
  // The field manager of the namespaces' Pod Security labels, and of nothing else.
  std::string podSecurityFieldManager = policy::kPodSecurityFieldManager;
};

namespace resources {
inline const kube::ResourceType kSegmentationPolicies{"bulkhead.dev", "v1alpha1",
                                                      "segmentationpolicies",
                                                      "SegmentationPolicy", false};
inline const kube::ResourceType kSegmentationExceptions{"bulkhead.dev", "v1alpha1",
                                                        "segmentationexceptions",
                                                        "SegmentationException", true};
inline const kube::ResourceType kPeerAuthentications{"security.istio.io", "v1",
                                                     "peerauthentications", "PeerAuthentication",
                                                     true};
inline const kube::ResourceType kAuthorizationPolicies{"security.istio.io", "v1",
                                                       "authorizationpolicies",
                                                       "AuthorizationPolicy", true};
}  // namespace resources

// The segmentation controller (SPEC 1.2): a namespace-keyed reconciler that makes each
// namespace's generated objects equal to what its governing SegmentationPolicy wants (server-side
// apply for what is missing or drifted, delete for what is no longer wanted), and a policy-keyed
// reconciler for status, conditions and the cleanup finalizer. Reads come from informers; writes
// go to the API server. Drift is seen through label-selected informers on the generated kinds,
// and a periodic resync catches anything missed. A third, exception-keyed reconciler keeps each
// SegmentationException's status.phase (SPEC 1.3) current, at expiresAt to the second, with an
// Event when one expires.
//
// The namespace reconciler also keeps each namespace's Pod Security labels
// (policy/pod_security.h): applied with force under their own field manager while a policy wants
// them, and taken away with an empty apply under that manager when none does, so labels Bulkhead
// never set are never touched. The namespace informer keeps that manager's managedFields entry
// (and no other) to tell whether the labels are Bulkhead's.
class SegmentationController {
 public:
  SegmentationController(kube::ClientPtr client, ClockPtr clock,
                         std::shared_ptr<kube::EventRecorder> events, ControllerOptions options);
  ~SegmentationController();

  // Starts the informers, waits for them to sync (or for stop()), then starts the workers.
  void start();
  // Stops taking work, waits for in-flight reconciles, stops the informers. Idempotent.
  void stop();
  bool running() const { return running_.load(); }

 private:
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
    // The tenant NetworkPolicies reported as reaching outside the namespace, so that each change
    // is one Event.
    std::string tenantViolations;
  };

  // The tenant NetworkPolicies, PeerAuthentications and AuthorizationPolicies in `ns` that reach
  // outside it under `p` (see tenant_objects.h), one line each, sorted.
  std::vector<std::string> tenantPolicyViolations(const policy::SegmentationPolicy& p,
                                                  const std::string& ns) const;
  void startIstioInformers();
  void stopIstioInformers();
  void meshDiscoveryLoop();
  void resyncLoop();
  void namespaceWorker();
  void policyWorker();
  void exceptionWorker();
  // Takes keys from `queue` until it shuts down: reconcile, count, requeue with backoff on error.
  void runWorker(kube::WorkQueue& queue, const char* controller,
                 const std::function<Status(const std::string&)>& reconcile,
                 const std::function<void(const std::string&, const Status&)>& onError);

  Status reconcileNamespace(const std::string& ns);
  enum class PodSecurityOutcome { kInPlace, kApplied, kAwaitingWatch };
  // Part of reconcileNamespace: makes namespace `ns` carry the pod-security labels `desired`
  // under the Pod Security field manager (none: takes Bulkhead's away). An apply the informer has
  // not shown yet is kept in `pending`, as generated objects are.
  StatusOr<PodSecurityOutcome> reconcilePodSecurity(
      const nlohmann::json& ns, const policy::Labels& desired, const NamespaceState& before,
      std::map<std::string, std::pair<size_t, MonoTime>>& pending);
  Status reconcilePolicy(const std::string& name);
  Status reconcileException(const std::string& key);
  void enqueueAllExceptions();
  Status cleanUpDeletedPolicy(const policy::SegmentationPolicy& p, const nlohmann::json& object);
  Status updateStatus(const policy::SegmentationPolicy& p, const nlohmann::json& object,
                      const std::string& invalidSpec);

  // An immutable snapshot: reconciles share it instead of copying every policy.
  std::shared_ptr<const std::vector<policy::SegmentationPolicy>> policies() const;
  policy::ClusterFacts facts() const;
  std::vector<nlohmann::json> managedObjects(const std::string& ns) const;
  const kube::ResourceType& typeOf(const nlohmann::json& object) const;

  void enqueueAllNamespaces();
  void enqueueAllPolicies(std::chrono::milliseconds delay);
  void onManagedObjectEvent(const nlohmann::json& object, bool deleted);
  void rebuildPolicies();
  void recomputeApiEndpoints();
  bool sleepFor(std::chrono::milliseconds d);

  kube::ClientPtr client_;
  ClockPtr clock_;
  std::shared_ptr<kube::EventRecorder> events_;
  ControllerOptions options_;

  std::unique_ptr<kube::Informer> namespaces_;
  std::unique_ptr<kube::Informer> policies_;
  std::unique_ptr<kube::Informer> networkPolicies_;
  // NetworkPolicies Bulkhead did not generate: reported when they reach outside their namespace,
  // never changed or deleted.
  std::unique_ptr<kube::Informer> tenantNetworkPolicies_;
  std::unique_ptr<kube::Informer> endpointSlices_;
  std::unique_ptr<kube::Informer> exceptions_;
  std::unique_ptr<kube::Informer> peerAuthentications_;     // while the mesh is available
  std::unique_ptr<kube::Informer> authorizationPolicies_;  // while the mesh is available
  // Tenants' own PeerAuthentications and AuthorizationPolicies, reported like
  // tenantNetworkPolicies_; while the mesh is available.
  std::unique_ptr<kube::Informer> tenantPeerAuthentications_;
  std::unique_ptr<kube::Informer> tenantAuthorizationPolicies_;

  kube::WorkQueue namespaceQueue_;
  kube::WorkQueue policyQueue_;
  kube::WorkQueue exceptionQueue_;
  std::vector<std::thread> threads_;
  std::atomic<bool> running_{false};
  std::atomic<bool> stopping_{false};

  mutable std::mutex mu_;  // guards everything below, and the Istio informer pointers
  std::condition_variable cv_;
  std::shared_ptr<const std::vector<policy::SegmentationPolicy>> decodedPolicies_ =
      std::make_shared<const std::vector<policy::SegmentationPolicy>>();
  bool meshAvailable_ = false;
  std::vector<policy::ApiEndpoint> apiEndpoints_;
  uint64_t factsVersion_ = 1;
  std::map<std::string, NamespaceState> namespaceStates_;
  // Every namespace's name and labels, kept by the namespace informer's handlers: status walks
  // all namespaces, and reading them from the cache would parse every one each time.
  std::map<std::string, policy::NamespaceFacts> namespaceFacts_;
  std::map<std::string, std::string> exceptionPhases_;  // "ns/name" -> phase, for the metric
};

}  // namespace bulkhead::controller
