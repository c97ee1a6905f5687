#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>

namespace bulkhead::kube {

// Lets one thread abort another thread's blocking API call (a list, a watch waiting for its
// response headers, a Retry-After wait). Thread-safe.
class Cancellation {
 public:
  void cancel() {
    std::map<int, std::function<void()>> callbacks;
    {
      std::lock_guard lock(mu_);
      if (cancelled_) {
        return;
      }
      cancelled_ = true;
      callbacks.swap(callbacks_);
    }
    for (auto& [id, fn] : callbacks) {
      fn();
    }
  }
  bool cancelled() const {
    std::lock_guard lock(mu_);
    return cancelled_;
  }
  // Runs `fn` on cancel(), or right away when already cancelled. Returns a handle for remove().
  int onCancel(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      if (!cancelled_) {
        callbacks_[++next_] = std::move(fn);
        return next_;
      }
    }
    fn();
    return 0;
  }
  void remove(int id) {
    std::lock_guard lock(mu_);
    callbacks_.erase(id);
  }

 private:
  mutable std::mutex mu_;
  bool cancelled_ = false;
  int next_ = 0;
  std::map<int, std::function<void()>> callbacks_;
};
using CancellationPtr = std::shared_ptr<Cancellation>;

}  // namespace bulkhead::kube
