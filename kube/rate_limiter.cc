#include "kube/rate_limiter.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <utility>

namespace bulkhead::kube {
namespace {

// One token every `interval`: round(1e9 / qps) ns, at least 1 ns, and small enough that
// burst * interval stays far from overflowing the clock (at most 1e18 ns, about 31 years).
std::chrono::nanoseconds intervalFor(double qps, int burst) {
  if (!(qps > 0)) {
    return std::chrono::nanoseconds(0);
  }
  const double nanos = std::clamp(std::round(1e9 / qps), 1.0, 1e18 / burst);
  return std::chrono::nanoseconds(static_cast<int64_t>(nanos));
}

MonoTime saturatingAdd(MonoTime t, std::chrono::nanoseconds d) {
  if (d > std::chrono::nanoseconds(0) && t > MonoTime::max() - d) {
    return MonoTime::max();
  }
  return t + d;
}

bool isCancelled(const std::atomic<bool>* cancel) { return cancel != nullptr && cancel->load(); }

}  // namespace

TokenBucket::TokenBucket(double qps, int burst, ClockPtr clock)
    : interval_(intervalFor(qps, std::max(burst, 1))),
      capacity_(interval_ * std::max(burst, 1)),
      clock_(std::move(clock)),
      emptyAt_(clock_->monotonicNow() - capacity_) {}

MonoTime TokenBucket::takeLocked(MonoTime now) {
  emptyAt_ = saturatingAdd(std::max(emptyAt_, now - capacity_), interval_);
  return emptyAt_;
}

std::chrono::nanoseconds TokenBucket::reserve() {
  if (interval_ == std::chrono::nanoseconds(0)) {
    return std::chrono::nanoseconds(0);
  }
  std::lock_guard lock(mu_);
  const MonoTime now = clock_->monotonicNow();
  const MonoTime due = takeLocked(now);
  return due > now ? due - now : std::chrono::nanoseconds(0);
}

bool TokenBucket::tryTake() {
  if (interval_ == std::chrono::nanoseconds(0)) {
    return true;
  }
  std::lock_guard lock(mu_);
  const MonoTime now = clock_->monotonicNow();
  const MonoTime next = saturatingAdd(std::max(emptyAt_, now - capacity_), interval_);
  if (next > now) {
    return false;
  }
  emptyAt_ = next;
  return true;
}

void TokenBucket::acquire(const std::atomic<bool>* cancel) {
  if (interval_ == std::chrono::nanoseconds(0) || isCancelled(cancel)) {
    return;
  }
  std::unique_lock lock(mu_);
  const MonoTime due = takeLocked(clock_->monotonicNow());
  while (clock_->monotonicNow() < due) {
    if (isCancelled(cancel)) {
      // Give the unused token back so that later callers are not charged for it.
      emptyAt_ -= interval_;
      return;
    }
    clock_->waitUntil(lock, cv_, due);
  }
}

void TokenBucket::wakeAll() {
  std::lock_guard lock(mu_);
  cv_.notify_all();
}

ItemExponentialFailureRateLimiter::ItemExponentialFailureRateLimiter(std::chrono::nanoseconds base,
                                                                     std::chrono::nanoseconds max)
    : base_(base), max_(max) {}

std::chrono::nanoseconds ItemExponentialFailureRateLimiter::when(const std::string& item) {
  int exp = 0;
  {
    std::lock_guard lock(mu_);
    int& failures = failures_[item];
    exp = failures;
    if (failures < INT_MAX) {
      ++failures;
    }
  }
  const int64_t base = base_.count();
  if (base <= 0) {
    return std::chrono::nanoseconds(0);
  }
  // base << exp would overflow or exceed max_ exactly when base > (max_ >> exp).
  if (exp >= 63 || base > (max_.count() >> exp)) {
    return max_;
  }
  return std::chrono::nanoseconds(base << exp);
}

void ItemExponentialFailureRateLimiter::forget(const std::string& item) {
  std::lock_guard lock(mu_);
  failures_.erase(item);
}

int ItemExponentialFailureRateLimiter::numRequeues(const std::string& item) {
  std::lock_guard lock(mu_);
  auto it = failures_.find(item);
  return it == failures_.end() ? 0 : it->second;
}

BucketRateLimiter::BucketRateLimiter(double qps, int burst, ClockPtr clock)
    : bucket_(qps, burst, std::move(clock)) {}

std::chrono::nanoseconds BucketRateLimiter::when(const std::string& /*item*/) {
  return bucket_.reserve();
}

void BucketRateLimiter::forget(const std::string& /*item*/) {}

int BucketRateLimiter::numRequeues(const std::string& /*item*/) { return 0; }

MaxOfRateLimiter::MaxOfRateLimiter(std::vector<RateLimiterPtr>&& limiters)
    : limiters_(std::move(limiters)) {}

std::chrono::nanoseconds MaxOfRateLimiter::when(const std::string& item) {
  std::chrono::nanoseconds longest(0);
  for (const auto& limiter : limiters_) {
    longest = std::max(longest, limiter->when(item));
  }
  return longest;
}

void MaxOfRateLimiter::forget(const std::string& item) {
  for (const auto& limiter : limiters_) {
    limiter->forget(item);
  }
}

int MaxOfRateLimiter::numRequeues(const std::string& item) {
  int most = 0;
  for (const auto& limiter : limiters_) {
    most = std::max(most, limiter->numRequeues(item));
  }
  return most;
}

RateLimiterPtr makeDefaultControllerRateLimiter(ClockPtr clock) {
  std::vector<RateLimiterPtr> limiters;
  limiters.push_back(std::make_unique<ItemExponentialFailureRateLimiter>());
  limiters.push_back(std::make_unique<BucketRateLimiter>(
      BucketRateLimiter::kDefaultQps, BucketRateLimiter::kDefaultBurst, std::move(clock)));
  return std::make_unique<MaxOfRateLimiter>(std::move(limiters));
}

}  // namespace bulkhead::kube
