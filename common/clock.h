#pragma once

#include <chrono>
#include <memory>
#include <mutex>

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
};
using ClockPtr = std::shared_ptr<Clock>;

class RealClock : public Clock {
 public:
  WallTime now() const override { return std::chrono::system_clock::now(); }
  MonoTime monotonicNow() const override { return std::chrono::steady_clock::now(); }
};

// A clock that moves only when told to. Both readings advance together.
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
  void advance(std::chrono::nanoseconds d) {
    std::lock_guard lock(mu_);
    wall_ += std::chrono::duration_cast<WallTime::duration>(d);
    mono_ += std::chrono::duration_cast<MonoTime::duration>(d);
  }

 private:
  mutable std::mutex mu_;
  WallTime wall_;
  MonoTime mono_{};
};

}  // namespace bulkhead
