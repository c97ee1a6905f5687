#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "common/clock.h"
#include "controller/context.h"
#include "kube/controller.h"

namespace bulkhead::controller {

// Keyed by namespace: the background scan (policy/posture.h). Judges the namespace's cached Pods
// and workloads by the rules of the policy governing it, keeps the counts for the policy status,
// and, while the OpenReports API is served, keeps the namespace's Report "bulkhead" equal to the
// result (written only when it differs; deleted when no policy governs the namespace).
class PostureReconciler {
 public:
  explicit PostureReconciler(ControllerContext& ctx) : ctx_(ctx) {}
  StatusOr<kube::Result> reconcile(const std::string& ns);

 private:
  Status publish(const std::string& ns, const nlohmann::json& report);
  Status unpublish(const std::string& ns);

  ControllerContext& ctx_;
  std::mutex mu_;
  // Reports applied but maybe not yet seen by the informer: namespace -> (content, when).
  std::map<std::string, std::pair<std::string, MonoTime>> pending_;
};

}  // namespace bulkhead::controller
