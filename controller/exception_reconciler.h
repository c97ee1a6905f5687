#pragma once

#include <map>
#include <mutex>
#include <string>

#include "controller/context.h"
#include "kube/controller.h"

namespace bulkhead::controller {

// Keyed by "namespace/name" of a SegmentationException: keeps status.phase current (Pending
// while its namespace's policy wants an approval it lacks, Active, Expired at expiresAt to the
// second, with an Event) and bulkhead_exceptions{phase}.
class ExceptionReconciler {
 public:
  explicit ExceptionReconciler(ControllerContext& ctx) : ctx_(ctx) {}
  StatusOr<kube::Result> reconcile(const std::string& key);

 private:
  void setPhase(const std::string& key, const std::string& phase);

  ControllerContext& ctx_;
  std::mutex mu_;
  std::map<std::string, std::string> phases_;  // key -> phase, for the metric
};

}  // namespace bulkhead::controller
