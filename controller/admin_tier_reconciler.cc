#include "controller/admin_tier_reconciler.h"

#include "common/log.h"
#include "policy/admin_tier.h"

namespace bulkhead::controller {

using nlohmann::json;

StatusOr<kube::Result> AdminTierReconciler::reconcile(const std::string& ns) {
  std::shared_ptr<kube::Informer> cache = ctx_.clusterNetworkPolicies();
  if (cache == nullptr) {
    return kube::Result{};
  }
  if (!cache->hasSynced()) {
    return kube::Result{kConflictRetry};
  }
  const std::string name = policy::adminTierName(ns);
  kube::ObjectPtr nsObject = ctx_.caches.namespaces->store().get(ns);
  auto all = ctx_.policies();
  const policy::SegmentationPolicy* p =
      nsObject == nullptr || policy::isTerminating(*nsObject) ? nullptr : ctx_.governing(*all, ns);
  if (p == nullptr) {
    RETURN_IF_ERROR(ctx_.converge(cache, name, std::nullopt));
    return kube::Result{};
  }
  std::vector<json> generated;
  for (const auto& np : ctx_.caches.networkPolicies->store().byNamespace(ns)) {
    generated.push_back(*np);
  }
  auto desired = policy::adminTierPolicy(*p, ns, generated);
  if (!desired.ok()) {
    // Keeps what is there: a tier that cannot say everything allowed would deny some of it.
    log::warn("no admin-tier ClusterNetworkPolicy for the namespace",
              {{"namespace", ns}, {"error", desired.status().message()}});
    return kube::Result{};
  }
  RETURN_IF_ERROR(ctx_.converge(cache, name, *desired));
  return kube::Result{};
}

}  // namespace bulkhead::controller
