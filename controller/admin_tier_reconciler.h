#pragma once

#include <string>

#include "controller/context.h"
#include "kube/controller.h"

namespace bulkhead::controller {

// Keyed by namespace: its admin-tier ClusterNetworkPolicy (policy/admin_tier.h), written while the
// network-policy API is served, from the namespace's generated NetworkPolicies as cached. Deleted
// when no policy governs the namespace, or the namespace goes. Drift is repaired.
class AdminTierReconciler {
 public:
  explicit AdminTierReconciler(ControllerContext& ctx) : ctx_(ctx) {}
  StatusOr<kube::Result> reconcile(const std::string& ns);

 private:
  ControllerContext& ctx_;
};

}  // namespace bulkhead::controller
