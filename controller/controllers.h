#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "controller/admin_tier_reconciler.h"
#include "controller/context.h"
#include "controller/exception_reconciler.h"
#include "controller/grant_reconciler.h"
#include "controller/namespace_reconciler.h"
#include "controller/policy_reconciler.h"
#include "controller/posture_reconciler.h"
#include "controller/twin_reconciler.h"
#include "kube/controller.h"
#include "kube/discovery.h"
#include "kube/manager.h"
#include "kube/shared_cache.h"

namespace bulkhead::controller {

// Sets what the controllers need of the process's cache before anything uses it: the namespace
// informer keeps the Apply entry of the Pod Security field manager in managedFields (without its
// time), so that the cache tells whether the Pod Security labels are Bulkhead's.
void configureCache(kube::SharedCache& cache, const ControllerOptions& options);

// Bulkhead's controllers, run on the leader: the namespace, policy-status, exception,
// AccessGrant and posture (background scan) reconcilers, each a kube::Controller fed by the
// watches declared in watches.cc, plus
// the periodic resync and the reaction to Istio's API appearing or going. Made anew each time the
// replica leads (kube::Manager).
class Controllers : public kube::LeaderRunnable {
 public:
  Controllers(kube::ClientPtr client, ClockPtr clock, kube::SharedCache& cache,
              kube::ApiDiscovery& discovery, std::shared_ptr<kube::EventRecorder> events,
              ControllerOptions options);
  ~Controllers() override;

  // Registers the watches, waits for the caches (and the first answer on Istio) and starts the
  // workers. Returns early on stop().
  void start() override;
  void stop() override;

 private:
  // watches.cc: every mapping from a watched object to the keys it affects.
  void watch();
  void watchMesh(const MeshCaches& mesh);
  // Adds `handlers` to `informer` and remembers it, so that stop() removes them.
  void on(const std::shared_ptr<kube::Informer>& informer, kube::EventHandlers handlers);

  void enqueueAllNamespaces();
  void enqueueAllPolicies(std::chrono::milliseconds delay);
  void enqueueAllExceptions();
  void enqueueAllGrants();
  void enqueueAllPostures();
  // Every policy's admission twin, and those of policies that are gone (orphans).
  void enqueueAllTwins(std::chrono::milliseconds delay);
  // A scanned Pod or workload, or an exception, changed in `ns`: scan it again (batched).
  void enqueuePosture(const std::string& ns);
  // The grants whose destination or source is namespace `ns`.
  void enqueueGrantsOf(const std::string& ns);
  // A generated object changed: its grant's key, or its namespace's.
  void onGenerated(const nlohmann::json& object, bool deleted);
  void onManagedObject(const nlohmann::json& object, bool deleted);
  void recomputeApiEndpoints();
  // Starts or stops managing Istio objects as discovery says its API is served or not.
  void updateMesh();
  bool meshSynced(const MeshCaches& mesh) const;
  // Starts or stops publishing Reports as discovery says the OpenReports API is served or not.
  void updateReports();
  // Starts or stops writing admin-tier ClusterNetworkPolicies as discovery says the
  // network-policy API is served or not.
  void updateAdminTier();
  // For the generated objects of an optional API: when discovery says `type` is served and they
  // are not `following`, their informer with `onObject` for every event (recorded in
  // `registration`, which stop() removes); when it is not served any more, null, after removing
  // the handlers. Nullopt when nothing changes. The caller publishes the informer and, on null,
  // drops the cache.
  std::optional<std::shared_ptr<kube::Informer>> followOptionalApi(
      const kube::ResourceType& type, bool following,
      std::pair<std::shared_ptr<kube::Informer>, int>& registration,
      const std::function<void(const nlohmann::json&)>& onObject);
  void enqueueAdminTier(const std::string& ns, std::chrono::milliseconds delay);
  void loop();
  // Waits `d`, or until stop() (false), or until discovery reports a change if asked to.
  bool sleepFor(std::chrono::milliseconds d, bool wakeOnMeshChange = true);

  kube::SharedCache& cache_;
  kube::ApiDiscovery& discovery_;
  ControllerContext ctx_;
  NamespaceReconciler namespaceReconciler_;
  PolicyReconciler policyReconciler_;
  ExceptionReconciler exceptionReconciler_;
  GrantReconciler grantReconciler_;
  PostureReconciler postureReconciler_;
  TwinReconciler twinReconciler_;
  AdminTierReconciler adminTierReconciler_;
  kube::Controller namespaces_;
  kube::Controller policies_;
  kube::Controller exceptions_;
  kube::Controller grants_;
  kube::Controller postures_;
  kube::Controller twins_;
  kube::Controller adminTiers_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool meshCheck_ = false;  // discovery reported a change
  std::vector<std::pair<std::shared_ptr<kube::Informer>, int>> registrations_;
  std::vector<std::pair<std::shared_ptr<kube::Informer>, int>> meshRegistrations_;
  std::pair<std::shared_ptr<kube::Informer>, int> reportsRegistration_;
  std::pair<std::shared_ptr<kube::Informer>, int> adminTierRegistration_;
  int discoverySubscription_ = 0;
  std::thread loop_;
};

}  // namespace bulkhead::controller
