#pragma once

#include <string>

#include "controller/context.h"
#include "kube/controller.h"

namespace bulkhead::controller {

// Keyed by namespace name: makes the namespace's generated objects equal to what its governing
// SegmentationPolicy wants (server-side apply for what is missing, a guarded update for what
// drifted, delete for what is no longer wanted), and keeps its Pod Security labels: applied
// with force under their own field manager while a policy wants them, and taken away with an
// empty apply under that manager when none does, so labels Bulkhead never set are never touched.
// Tenant policies reaching outside the namespace are reported as Events, never changed.
class NamespaceReconciler {
 public:
  explicit NamespaceReconciler(ControllerContext& ctx) : ctx_(ctx) {}
  StatusOr<kube::Result> reconcile(const std::string& ns);
  // A failed reconcile: the namespace is not segmented, and the error shows in the status.
  void recordError(const std::string& ns, const Status& error);

 private:
  enum class PodSecurityOutcome { kInPlace, kApplied, kAwaitingWatch };
  StatusOr<PodSecurityOutcome> reconcilePodSecurity(
      const nlohmann::json& ns, const policy::Labels& desired, const NamespaceState& before,
      std::map<std::string, std::pair<size_t, MonoTime>>& pending);

  ControllerContext& ctx_;
};

}  // namespace bulkhead::controller
