#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"

namespace bulkhead::kube {

// A token bucket that holds up to `burst` tokens, starts full and refills at `qps` tokens per
// second. A non-positive qps means unlimited; a burst below 1 counts as 1. Time is kept in whole
// nanoseconds (one token every round(1e9 / qps) ns), so the arithmetic is exact. Thread-safe.
class TokenBucket {
 public:
  TokenBucket(double qps, int burst, ClockPtr clock);

  // Takes a token now, going into debt when none is left, and returns how long the caller must
  // wait before acting on it: zero when a token was available. Reservations are due in the order
  // they were made, 1/qps apart once the burst is spent.
  std::chrono::nanoseconds reserve();

  // Takes a token only if one is available now; never goes into debt.
  bool tryTake();

  // Reserves a token and blocks (through the clock) until it is due. Returns early, without
  // taking it, once `*cancel` is true. The flag is read on entry and on every wake-up: whoever sets
  // it calls wakeAll() to cut the wait short.
  void acquire(const std::atomic<bool>* cancel = nullptr);

  // Wakes every thread blocked in acquire() so that it re-reads its cancel flag.
  void wakeAll();

 private:
  // Takes a token at `now` and returns when it is due.
  MonoTime takeLocked(MonoTime now);

  // Zero when unlimited.
  const std::chrono::nanoseconds interval_;
  // The time a full bucket takes to refill: burst * interval_.
  const std::chrono::nanoseconds capacity_;
  const ClockPtr clock_;
  std::mutex mu_;
  std::condition_variable cv_;
  // When the bucket is (or was) empty: it holds (now - emptyAt_) / interval_ tokens, at most
  // burst. In the future while reservations are outstanding.
  MonoTime emptyAt_;
};

// Decides how long a failed item waits before it is retried. Implementations are thread-safe.
class RateLimiter {
 public:
  virtual ~RateLimiter() = default;
  // Records one more failure of `item` and returns the delay before its retry.
  virtual std::chrono::nanoseconds when(const std::string& item) = 0;
  // Stops tracking `item` (it succeeded): its next failure starts from the first delay again.
  virtual void forget(const std::string& item) = 0;
  // Failures of `item` recorded since it was last forgotten.
  virtual int numRequeues(const std::string& item) = 0;
};
using RateLimiterPtr = std::unique_ptr<RateLimiter>;

// Per item: base * 2^(failures so far), capped at `max`.
class ItemExponentialFailureRateLimiter : public RateLimiter {
 public:
  explicit ItemExponentialFailureRateLimiter(
      std::chrono::nanoseconds base = std::chrono::milliseconds(5),
      std::chrono::nanoseconds max = std::chrono::seconds(1000));

  std::chrono::nanoseconds when(const std::string& item) override;
  void forget(const std::string& item) override;
  int numRequeues(const std::string& item) override;

 private:
  const std::chrono::nanoseconds base_;
  const std::chrono::nanoseconds max_;
  std::mutex mu_;
  std::unordered_map<std::string, int> failures_;
};

// One token bucket shared by all items: bounds the overall retry rate. Tracks no items, so
// numRequeues() is always 0.
class BucketRateLimiter : public RateLimiter {
 public:
  static constexpr double kDefaultQps = 10;
  static constexpr int kDefaultBurst = 100;

  BucketRateLimiter(double qps, int burst, ClockPtr clock);

  std::chrono::nanoseconds when(const std::string& item) override;
  void forget(const std::string& item) override;
  int numRequeues(const std::string& item) override;

 private:
  TokenBucket bucket_;
};

// The longest delay of all its limiters. when() and forget() reach every limiter; numRequeues() is
// the largest of theirs.
class MaxOfRateLimiter : public RateLimiter {
 public:
  explicit MaxOfRateLimiter(std::vector<RateLimiterPtr>&& limiters);

  std::chrono::nanoseconds when(const std::string& item) override;
  void forget(const std::string& item) override;
  int numRequeues(const std::string& item) override;

 private:
  const std::vector<RateLimiterPtr> limiters_;
};

// client-go's DefaultControllerRateLimiter: the max of per-item exponential backoff (5 ms doubling
// up to 1000 s) and an overall bucket of 10 qps with a burst of 100.
RateLimiterPtr makeDefaultControllerRateLimiter(ClockPtr clock);

}  // namespace bulkhead::kube
