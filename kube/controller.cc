#include "kube/controller.h"

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/metrics.h"

namespace bulkhead::kube {
namespace {

metrics::Counter& reconcileTotal(const std::string& controller, const char* result) {
  return metrics::defaultRegistry()
      .counter("bulkhead_reconcile_total", "Reconciles by controller and result.",
               {"controller", "result"})
      .labels({controller, result});
}

metrics::Histogram& reconcileDuration(const std::string& controller) {
  return metrics::defaultRegistry()
      .histogram("bulkhead_reconcile_duration_seconds", "Time spent in one reconcile.",
                 {"controller"})
      .labels({controller});
}

}  // namespace

Controller::Controller(std::string name, ClockPtr clock, int workers, Reconcile reconcile,
                       OnError onError)
    : name_(std::move(name)),
      clock_(clock),
      workers_(workers),
      reconcile_(std::move(reconcile)),
      onError_(std::move(onError)),
      queue_(clock, makeDefaultControllerRateLimiter(clock)) {}

Controller::~Controller() { stop(); }

void Controller::start() {
  for (int i = 0; i < workers_; ++i) {
    threads_.emplace_back([this] { work(); });
  }
}

void Controller::stop() {
  queue_.shutDown();
  for (auto& t : threads_) {
    t.join();
  }
  threads_.clear();
}

void Controller::work() {
  while (auto key = queue_.get()) {
    auto start = clock_->monotonicNow();
    StatusOr<Result> result = internalError("not run");
    try {
      result = reconcile_(*key);
    } catch (const nlohmann::json::exception& e) {
      result = internalError(std::string("malformed object: ") + e.what());
    }
    reconcileDuration(name_).observe(
        std::chrono::duration<double>(clock_->monotonicNow() - start).count());
    if (result.ok()) {
      reconcileTotal(name_, "success").inc();
      queue_.forget(*key);
      if (result->requeueAfter.count() > 0) {
        queue_.addAfter(*key, result->requeueAfter);
      }
    } else {
      reconcileTotal(name_, "error").inc();
      log::warn("reconcile failed",
                {{"controller", name_}, {"key", *key}, {"error", result.status().toString()}});
      if (onError_) {
        onError_(*key, result.status());
      }
      queue_.addRateLimited(*key);
    }
    queue_.done(*key);
  }
}

}  // namespace bulkhead::kube
