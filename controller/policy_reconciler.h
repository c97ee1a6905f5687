#pragma once

#include <string>

#include "controller/context.h"
#include "kube/controller.h"

namespace bulkhead::controller {

// Keyed by SegmentationPolicy name: the cleanup finalizer (added to every policy; removed once
// a deleted policy's namespaces no longer hold anything of it) and the status with its
// conditions (policy/policy_status.h), written only when it changed.
class PolicyReconciler {
 public:
  explicit PolicyReconciler(ControllerContext& ctx) : ctx_(ctx) {}
  StatusOr<kube::Result> reconcile(const std::string& name);

 private:
  StatusOr<kube::Result> cleanUpDeleted(const policy::SegmentationPolicy& p,
                                        const nlohmann::json& object);
  Status updateStatus(const policy::SegmentationPolicy& p, const nlohmann::json& object,
                      const std::string& invalidSpec);
  Status patchFinalizers(const std::string& name, const nlohmann::json& object,
                         nlohmann::json finalizers);

  ControllerContext& ctx_;
};

}  // namespace bulkhead::controller
