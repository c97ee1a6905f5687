#include "kube/rate_limiter.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "tests/support/concurrency.h"

namespace doctest {
template <typename Rep, typename Period>
struct StringMaker<std::chrono::duration<Rep, Period>> {
  static String convert(const std::chrono::duration<Rep, Period>& d) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    return (std::to_string(ns) + "ns").c_str();
  }
};
}  // namespace doctest

namespace bulkhead::kube {
namespace {

using namespace std::chrono_literals;
using std::chrono::nanoseconds;

using testing::letOthersRun;

template <typename Pred>
bool eventually(Pred pred) {
  return testing::eventuallyYielding(pred);
}

TEST_CASE("TokenBucket spends its burst, then spaces reservations 1/qps apart") {
  auto clock = std::make_shared<FakeClock>();
  TokenBucket bucket(10, 3, clock);
  CHECK(bucket.reserve() == 0ns);
  CHECK(bucket.reserve() == 0ns);
  CHECK(bucket.reserve() == 0ns);
  CHECK(bucket.reserve() == 100ms);
  CHECK(bucket.reserve() == 200ms);
  clock->advance(100ms);
  CHECK(bucket.reserve() == 200ms);
  clock->advance(250ms);
  CHECK(bucket.reserve() == 50ms);
}

TEST_CASE("TokenBucket refills at qps up to its burst and no further") {
  auto clock = std::make_shared<FakeClock>();
  TokenBucket bucket(4, 2, clock);
  CHECK(bucket.tryTake());
  CHECK(bucket.tryTake());
  CHECK_FALSE(bucket.tryTake());
  clock->advance(249ms);
  CHECK_FALSE(bucket.tryTake());
  clock->advance(1ms);
  CHECK(bucket.tryTake());
  CHECK_FALSE(bucket.tryTake());
  clock->advance(1h);
  CHECK(bucket.tryTake());
  CHECK(bucket.tryTake());
  CHECK_FALSE(bucket.tryTake());
  CHECK(bucket.reserve() == 250ms);
}

TEST_CASE("TokenBucket::tryTake never goes into debt") {
  auto clock = std::make_shared<FakeClock>();
  TokenBucket bucket(4, 1, clock);
  CHECK(bucket.tryTake());
  for (int i = 0; i < 5; ++i) {
    CHECK_FALSE(bucket.tryTake());
  }
  clock->advance(250ms);
  CHECK(bucket.reserve() == 0ns);
}

TEST_CASE("TokenBucket with a non-positive qps is unlimited") {
  auto clock = std::make_shared<FakeClock>();
  for (double qps : {0.0, -1.0}) {
    TokenBucket bucket(qps, 1, clock);
    for (int i = 0; i < 1000; ++i) {
      REQUIRE(bucket.reserve() == 0ns);
      REQUIRE(bucket.tryTake());
      bucket.acquire();
    }
  }
}

TEST_CASE("TokenBucket counts a burst below 1 as 1") {
  auto clock = std::make_shared<FakeClock>();
  TokenBucket bucket(10, 0, clock);
  CHECK(bucket.reserve() == 0ns);
  CHECK(bucket.reserve() == 100ms);
}

TEST_CASE("TokenBucket::acquire blocks on the clock until its reservation is due") {
  auto clock = std::make_shared<FakeClock>();
  const MonoTime start = clock->monotonicNow();
  TokenBucket bucket(10, 1, clock);
  bucket.acquire();  // the burst: must not block

  std::atomic<bool> returned{false};
  MonoTime returnedAt;
  std::thread waiter([&] {
    bucket.acquire();
    returnedAt = clock->monotonicNow();
    returned = true;
  });
  REQUIRE(eventually([&] { return clock->waiters() == 1; }));
  clock->advance(99ms);
  letOthersRun();
  CHECK_FALSE(returned.load());
  clock->advance(1ms);
  waiter.join();
  CHECK(returnedAt - start == 100ms);
  CHECK(bucket.reserve() == 100ms);
}

TEST_CASE("TokenBucket::acquire returns early when cancelled and gives its token back") {
  auto clock = std::make_shared<FakeClock>();
  TokenBucket bucket(10, 1, clock);
  REQUIRE(bucket.tryTake());

  std::atomic<bool> cancel{false};
  std::thread waiter([&] { bucket.acquire(&cancel); });
  REQUIRE(eventually([&] { return clock->waiters() == 1; }));
  cancel = true;
  bucket.wakeAll();
  waiter.join();

  // Without the refund the bucket would still owe the cancelled reservation's token.
  clock->advance(100ms);
  CHECK(bucket.reserve() == 0ns);
  CHECK(bucket.reserve() == 100ms);
}

TEST_CASE("TokenBucket::acquire with a flag already set takes nothing") {
  auto clock = std::make_shared<FakeClock>();
  TokenBucket bucket(10, 1, clock);
  std::atomic<bool> cancel{true};
  bucket.acquire(&cancel);
  CHECK(bucket.tryTake());
}

TEST_CASE("ItemExponentialFailureRateLimiter doubles from 5ms per failure and caps at 1000s") {
  ItemExponentialFailureRateLimiter limiter;
  CHECK(limiter.when("a") == 5ms);
  CHECK(limiter.when("a") == 10ms);
  CHECK(limiter.when("a") == 20ms);
  CHECK(limiter.when("a") == 40ms);
  CHECK(limiter.when("a") == 80ms);
  for (int failures = 5; failures < 18; ++failures) {
    REQUIRE(limiter.when("a") == nanoseconds(5ms) * (int64_t{1} << failures));
  }
  // 5ms * 2^17 = 655.36s is the last step below the cap; 5ms * 2^18 would be 1310.72s.
  for (int failures = 18; failures < 200; ++failures) {
    REQUIRE(limiter.when("a") == 1000s);
  }
  CHECK(limiter.numRequeues("a") == 200);
}

TEST_CASE("ItemExponentialFailureRateLimiter tracks items apart and forget() starts over") {
  ItemExponentialFailureRateLimiter limiter(1ms, 1s);
  CHECK(limiter.numRequeues("a") == 0);
  CHECK(limiter.when("a") == 1ms);
  CHECK(limiter.when("a") == 2ms);
  CHECK(limiter.when("a") == 4ms);
  CHECK(limiter.when("b") == 1ms);
  CHECK(limiter.numRequeues("a") == 3);
  CHECK(limiter.numRequeues("b") == 1);
  limiter.forget("a");
  CHECK(limiter.numRequeues("a") == 0);
  CHECK(limiter.when("a") == 1ms);
  CHECK(limiter.when("b") == 2ms);
  CHECK(limiter.numRequeues("b") == 2);
}

TEST_CASE("ItemExponentialFailureRateLimiter saturates instead of overflowing") {
  SUBCASE("at 2^63 failures of 1ns") {
    ItemExponentialFailureRateLimiter limiter(1ns, nanoseconds::max());
    for (int failures = 0; failures < 63; ++failures) {
      REQUIRE(limiter.when("a") == nanoseconds(int64_t{1} << failures));
    }
    for (int failures = 63; failures < 300; ++failures) {
      REQUIRE(limiter.when("a") == nanoseconds::max());
    }
  }
  SUBCASE("when base * 2^failures no longer fits") {
    ItemExponentialFailureRateLimiter limiter(3ns, nanoseconds::max());
    for (int failures = 0; failures < 62; ++failures) {
      REQUIRE(limiter.when("a") == nanoseconds(int64_t{3} << failures));
    }
    CHECK(limiter.when("a") == nanoseconds::max());
  }
}

TEST_CASE("BucketRateLimiter shares one bucket across items and tracks none") {
  auto clock = std::make_shared<FakeClock>();
  BucketRateLimiter limiter(10, 2, clock);
  CHECK(limiter.when("a") == 0ns);
  CHECK(limiter.when("b") == 0ns);
  CHECK(limiter.when("a") == 100ms);
  CHECK(limiter.when("c") == 200ms);
  CHECK(limiter.numRequeues("a") == 0);
  limiter.forget("a");
  CHECK(limiter.when("a") == 300ms);
  clock->advance(1s);
  CHECK(limiter.when("d") == 0ns);
  CHECK(limiter.when("d") == 0ns);
  CHECK(limiter.when("d") == 100ms);
}

// Returns fixed answers and records what it was asked.
class RecordingLimiter : public RateLimiter {
 public:
  RecordingLimiter(nanoseconds delay, int requeues) : delay_(delay), requeues_(requeues) {}
  nanoseconds when(const std::string& item) override {
    asked.push_back(item);
    return delay_;
  }
  void forget(const std::string& item) override { forgotten.push_back(item); }
  int numRequeues(const std::string& /*item*/) override { return requeues_; }

  std::vector<std::string> asked;
  std::vector<std::string> forgotten;

 private:
  nanoseconds delay_;
  int requeues_;
};

TEST_CASE("MaxOfRateLimiter returns the longest delay and reaches every limiter") {
  auto first = std::make_unique<RecordingLimiter>(30ms, 2);
  auto second = std::make_unique<RecordingLimiter>(70ms, 5);
  auto third = std::make_unique<RecordingLimiter>(10ms, 1);
  std::vector<RecordingLimiter*> all = {first.get(), second.get(), third.get()};
  std::vector<RateLimiterPtr> limiters;
  limiters.push_back(std::move(first));
  limiters.push_back(std::move(second));
  limiters.push_back(std::move(third));
  MaxOfRateLimiter limiter(std::move(limiters));

  CHECK(limiter.when("k") == 70ms);
  CHECK(limiter.numRequeues("k") == 5);
  limiter.forget("k");
  for (RecordingLimiter* one : all) {
    CHECK(one->asked == std::vector<std::string>{"k"});
    CHECK(one->forgotten == std::vector<std::string>{"k"});
  }
}

TEST_CASE("MaxOfRateLimiter combines per-item backoff with an overall bucket") {
  auto clock = std::make_shared<FakeClock>();
  std::vector<RateLimiterPtr> limiters;
  limiters.push_back(std::make_unique<ItemExponentialFailureRateLimiter>(5ms, 1s));
  limiters.push_back(std::make_unique<BucketRateLimiter>(10, 1, clock));
  MaxOfRateLimiter limiter(std::move(limiters));
  CHECK(limiter.when("a") == 5ms);
  CHECK(limiter.when("b") == 100ms);
  CHECK(limiter.when("a") == 200ms);
  CHECK(limiter.numRequeues("a") == 2);
  clock->advance(1s);
  CHECK(limiter.when("a") == 20ms);
  CHECK(MaxOfRateLimiter({}).when("a") == 0ns);
}

TEST_CASE("The default controller rate limiter is 5ms..1000s per item and 10 qps, burst 100") {
  auto clock = std::make_shared<FakeClock>();
  RateLimiterPtr limiter = makeDefaultControllerRateLimiter(clock);
  for (int i = 0; i < 100; ++i) {
    REQUIRE(limiter->when("item-" + std::to_string(i)) == 5ms);
  }
  CHECK(limiter->when("item-100") == 100ms);
  CHECK(limiter->when("item-0") == 200ms);
  CHECK(limiter->numRequeues("item-0") == 2);

  clock->advance(1000s);
  CHECK(limiter->when("item-0") == 20ms);
  limiter->forget("item-0");
  CHECK(limiter->numRequeues("item-0") == 0);
  CHECK(limiter->when("item-0") == 5ms);

  // 19 failures stay within the burst, so only the per-item backoff shows.
  clock->advance(1000s);
  for (int failures = 0; failures < 18; ++failures) {
    REQUIRE(limiter->when("slow") == nanoseconds(5ms) * (int64_t{1} << failures));
  }
  CHECK(limiter->when("slow") == 1000s);
}

}  // namespace
}  // namespace bulkhead::kube
