#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "kube/workqueue.h"

namespace bulkhead::kube {

// What a reconcile asks for besides success: to be run again for the same key after a while
// (an expiry, an object applied but not yet seen by the watch). Zero: only when an event says so.
struct Result {
  std::chrono::milliseconds requeueAfter{0};
};

// A named reconcile loop in the manner of controller-runtime: a rate-limited work queue of keys
// fed by the watches that map events to keys, and workers that reconcile one key at a time. An
// error requeues the key with per-key exponential backoff; success forgets the backoff and honours
// requeueAfter. bulkhead_reconcile_total{controller,result} and
// bulkhead_reconcile_duration_seconds{controller} are kept. A reconcile that throws on an object
// of an unexpected shape fails that key, not the process.
class Controller {
 public:
  using Reconcile = std::function<StatusOr<Result>(const std::string& key)>;
  using OnError = std::function<void(const std::string& key, const Status& error)>;

  Controller(std::string name, ClockPtr clock, int workers, Reconcile reconcile,
             OnError onError = {});
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  const std::string& name() const { return name_; }
  void enqueue(const std::string& key) { queue_.add(key); }
  void enqueueAfter(const std::string& key, std::chrono::milliseconds delay) {
    queue_.addAfter(key, delay);
  }

  void start();
  // Stops taking keys and waits for the reconciles in flight; queued keys are dropped.
  void stop();

 private:
  void work();

  std::string name_;
  ClockPtr clock_;
  int workers_;
  Reconcile reconcile_;
  OnError onError_;
  WorkQueue queue_;
  std::vector<std::thread> threads_;
};

}  // namespace bulkhead::kube
