#pragma once

#include <string>

#include "controller/context.h"
#include "kube/controller.h"

namespace bulkhead::controller {

// Keyed by SegmentationPolicy name: the policy's admission twin (policy/admission_twin.h), a
// ValidatingAdmissionPolicy and its binding, written while --validating-admission-policy is on.
// The binding lists the namespaces the policy governs now; the expressions carry its Active
// exceptions, and the reconcile comes back when the first of them expires. Drift is repaired; a
// deleted policy's twin is deleted (its ownerReference lets the garbage collector do so too).
class TwinReconciler {
 public:
  explicit TwinReconciler(ControllerContext& ctx) : ctx_(ctx) {}
  StatusOr<kube::Result> reconcile(const std::string& policyName);

 private:
  ControllerContext& ctx_;
};

}  // namespace bulkhead::controller
