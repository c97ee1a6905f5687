#include "controller/exception_reconciler.h"

#include <algorithm>

#include "common/log.h"
#include "common/time_format.h"
#include "controller/metrics.h"
#include "policy/exceptions.h"

namespace bulkhead::controller {

using nlohmann::json;

void ExceptionReconciler::setPhase(const std::string& key, const std::string& phase) {
  std::lock_guard lock(mu_);
  if (phase.empty()) {
    phases_.erase(key);
  } else {
    phases_[key] = phase;
  }
  for (auto p : {policy::ExceptionPhase::kPending, policy::ExceptionPhase::kActive,
                 policy::ExceptionPhase::kExpired}) {
    const auto name = policy::exceptionPhaseName(p);
    exceptionsGauge(name).set(static_cast<double>(std::count_if(
        phases_.begin(), phases_.end(), [&](const auto& e) { return e.second == name; })));
  }
}

StatusOr<kube::Result> ExceptionReconciler::reconcile(const std::string& key) {
  kube::ObjectPtr object = ctx_.caches.exceptions->store().get(key);
  if (object == nullptr) {
    setPhase(key, "");
    return kube::Result{};
  }
  auto exception = policy::decodeSegmentationException(*object);
  if (!exception.ok()) {
    // The CRD's schema makes this rare; the webhook refuses such objects. Nothing to compute.
    log::warn("ignoring an invalid SegmentationException",
              {{"key", key}, {"error", exception.status().message()}});
    setPhase(key, "");
    return kube::Result{};
  }
  // The policy governing the exception's namespace decides whether approval is needed.
  const policy::SegmentationPolicy ungoverned;
  auto all = ctx_.policies();
  const policy::SegmentationPolicy* governing = ctx_.governing(*all, exception->ns);
  const WallTime now = ctx_.clock->now();
  const auto phase = policy::phaseOf(*exception, governing ? *governing : ungoverned, now);
  const std::string phaseName(policy::exceptionPhaseName(phase));
  const json status = object->value("status", json::object());
  const int64_t generation = (*object)["metadata"].value("generation", int64_t{0});
  if (status.value("phase", "") != phaseName ||
      status.value("observedGeneration", int64_t{-1}) != generation) {
    json updated = *object;
    updated["status"]["phase"] = phaseName;
    updated["status"]["observedGeneration"] = generation;
    RETURN_IF_ERROR(ctx_.client->updateStatus(resources::kSegmentationExceptions, updated)
                        .status()
                        .withContext("writing the status of SegmentationException " + key));
    if (phase == policy::ExceptionPhase::kExpired && status.value("phase", "") != phaseName) {
      ctx_.events->record(kube::referenceTo(*object), kube::EventRecorder::Type::kNormal, "Expired",
                          "expired at " + formatRfc3339(exception->expiresAt) +
                              "; its pods are checked by every rule again");
    }
    log::info(
        "SegmentationException phase",
        {{"key", key}, {"phase", phaseName}, {"expiresAt", formatRfc3339(exception->expiresAt)}});
  }
  setPhase(key, phaseName);
  if (phase == policy::ExceptionPhase::kExpired) {
    return kube::Result{};
  }
  // The webhook stops honouring it at expiresAt on its own; the status follows at that moment.
  return kube::Result{
      std::chrono::duration_cast<std::chrono::milliseconds>(exception->expiresAt - now) +
      std::chrono::milliseconds(50)};
}

}  // namespace bulkhead::controller
