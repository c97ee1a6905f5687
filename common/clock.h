#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

namespace bulkhead {

using WallTime = std::chrono::system_clock::time_point;
using MonoTime = std::chrono::steady_clock::time_point;

// The source of time for everything that is not the pure core (which takes time as a parameter).
// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time, for timestamps that leave the process (expiry, conditions, events).
  virtual WallTime now() const = 0;
  // Monotonic time, for timeouts, backoff and rate limits.
  virtual MonoTime monotonicNow() const = 0;
  // Blocks on `cv` (with `lock` held on entry and exit) until it is notified or until
  // monotonicNow() reaches `deadline`. Like every condition wait it may return spuriously:
  // callers re-check their condition and the time in a loop.
  virtual void waitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                         MonoTime deadline) const = 0;
};
using ClockPtr = std::shared_ptr<Clock>;

class RealClock : public Clock {
 public:
  WallTime now() const override { return std::chrono::system_clock::now(); }
  MonoTime monotonicNow() const override { return std::chrono::steady_clock::now(); }
  void waitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                 MonoTime deadline) const override {
    cv.wait_until(lock, deadline);
  }
};

// A clock that moves only when told to. Both readings advance together. advance() wakes every
// thread blocked in waitUntil(), so code under test never waits for real time.
class FakeClock : public Clock {
 public:
  explicit FakeClock(WallTime start = WallTime(std::chrono::seconds(1'800'000'000)))
      : wall_(start) {}

  WallTime now() const override {
    std::lock_guard lock(mu_);
    return wall_;
  }
  MonoTime monotonicNow() const override {
    std::lock_guard lock(mu_);
    return mono_;
  }
  void waitUntil(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                 MonoTime deadline) const override {
    Waiter self{lock.mutex(), &cv};
    {
      std::lock_guard g(mu_);
      if (mono_ >= deadline) {
        return;
      }
      waiters_.push_back(self);
    }
    cv.wait(lock);
    // Unregister without holding the caller's mutex (advance() takes notifyMu_ before it), and
    // under notifyMu_ so that advance() never notifies a waiter that has already returned.
    lock.unlock();
    {
      std::lock_guard n(notifyMu_);
      std::lock_guard g(mu_);
      auto it = std::find_if(waiters_.begin(), waiters_.end(), [&](const Waiter& w) {
        return w.cv == self.cv && w.mu == self.mu;
      });
      waiters_.erase(it);
    }
    lock.lock();
  }

  void advance(std::chrono::nanoseconds d) {
    std::lock_guard n(notifyMu_);
    std::vector<Waiter> waiters;
    {
      std::lock_guard lock(mu_);
      wall_ += std::chrono::duration_cast<WallTime::duration>(d);
      mono_ += std::chrono::duration_cast<MonoTime::duration>(d);
      waiters = waiters_;
    }
    // Taking each waiter's own mutex before notifying closes the window between its check of the
    // time and its wait, so no wake-up is lost.
    for (const auto& w : waiters) {
      std::lock_guard g(*w.mu);
      w.cv->notify_all();
    }
  }

  // Number of threads blocked in waitUntil(); lets tests wait for a worker to be parked.
  size_t waiters() const {
    std::lock_guard lock(mu_);
    return waiters_.size();
  }

 private:
  struct Waiter {
    std::mutex* mu;
    std::condition_variable* cv;
  };
  // Lock order: notifyMu_, then mu_ or a waiter's mutex; a waiter holds its mutex, then mu_.
  mutable std::mutex notifyMu_;
  mutable std::mutex mu_;
  mutable std::vector<Waiter> waiters_;
  WallTime wall_;
  MonoTime mono_{};
};

}  // namespace bulkhead
