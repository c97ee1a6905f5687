#include "kube/workqueue.h"

#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "kube/rate_limiter.h"
#include "tests/support/concurrency.h"

namespace bulkhead::kube {
namespace {

using namespace std::chrono_literals;

using testing::letOthersRun;

template <typename Pred>
bool eventually(Pred pred) {
  return testing::eventuallyYielding(pred);
}

RateLimiterPtr backoff() { return std::make_unique<ItemExponentialFailureRateLimiter>(5ms, 1000s); }

// get() that cannot hang a single-threaded test: a key, or why there was none.
std::string getReady(WorkQueue& queue) {
  if (!queue.shuttingDown() && queue.len() == 0) {
    return "<nothing ready>";
  }
  std::optional<std::string> key = queue.get();
  return key ? *key : "<nullopt>";
}

TEST_CASE("WorkQueue hands out ready keys in FIFO order and does not queue a key twice") {
  auto clock = std::make_shared<FakeClock>();
  WorkQueue queue(clock, backoff());
  queue.add("c");
  queue.add("a");
  queue.add("b");
  queue.add("a");
  queue.add("c");
  CHECK(queue.len() == 3);
  CHECK(getReady(queue) == "c");
  CHECK(getReady(queue) == "a");
  CHECK(getReady(queue) == "b");
  CHECK(queue.len() == 0);
  CHECK(getReady(queue) == "<nothing ready>");
}

TEST_CASE("WorkQueue queues a key added while processing again only once done() is called") {
  auto clock = std::make_shared<FakeClock>();
  WorkQueue queue(clock, backoff());
  queue.add("a");
  REQUIRE(getReady(queue) == "a");
  queue.add("a");
  queue.add("a");
  CHECK(queue.len() == 0);
  queue.add("b");
  CHECK(getReady(queue) == "b");
  CHECK(getReady(queue) == "<nothing ready>");
  queue.done("b");
  CHECK(queue.len() == 0);
  queue.done("a");
  CHECK(queue.len() == 1);
  CHECK(getReady(queue) == "a");
  queue.done("a");
  CHECK(queue.len() == 0);
}

TEST_CASE("WorkQueue puts a key queued again by done() behind the keys already ready") {
  auto clock = std::make_shared<FakeClock>();
  WorkQueue queue(clock, backoff());
  queue.add("a");
  REQUIRE(getReady(queue) == "a");
  queue.add("a");
  queue.add("b");
  queue.done("a");
  queue.add("c");
  CHECK(getReady(queue) == "b");
  CHECK(getReady(queue) == "a");
  CHECK(getReady(queue) == "c");
}

TEST_CASE("WorkQueue never hands one key to two workers and processes every add") {
  constexpr int kWorkers = 8;
  constexpr int kKeys = 50;
  constexpr int kAdds = 4000;
  auto clock = std::make_shared<FakeClock>();
  WorkQueue queue(clock, backoff());

  std::array<std::atomic<bool>, kKeys> held{};
  // Tickets order the adds and the starts of processing: an add must be followed by a start.
  std::atomic<uint64_t> ticket{0};
  std::array<std::atomic<uint64_t>, kKeys> lastAdd{};
  std::array<std::atomic<uint64_t>, kKeys> lastStart{};
  std::atomic<int> addBudget{kAdds};
  std::atomic<int> addsInFlight{0};
  std::atomic<int> doubleHolds{0};
  std::atomic<int> gets{0};

  auto raise = [](std::atomic<uint64_t>& slot, uint64_t value) {
    uint64_t seen = slot.load();
    while (seen < value && !slot.compare_exchange_weak(seen, value)) {
    }
  };
  auto addKey = [&](int k) {
    ++addsInFlight;
    if (addBudget.fetch_sub(1) > 0) {
      raise(lastAdd[k], ++ticket);
      queue.add("key-" + std::to_string(k));
    }
    --addsInFlight;
  };
  auto worker = [&](unsigned seed) {
    std::mt19937 rng(seed);
    while (true) {
      addKey(static_cast<int>(rng() % kKeys));
      std::optional<std::string> key = queue.get();
      if (!key) {
        return;
      }
      const int k = std::stoi(key->substr(4));
      if (held[k].exchange(true)) {
        ++doubleHolds;
      }
      raise(lastStart[k], ++ticket);
      ++gets;
      if (rng() % 4 == 0) {
        addKey(k);
      }
      for (unsigned spin = rng() % 4; spin > 0; --spin) {
        std::this_thread::yield();
      }
      held[k] = false;
      queue.done(*key);
    }
  };

  std::vector<std::thread> workers;
  for (unsigned i = 0; i < kWorkers; ++i) {
    workers.emplace_back(worker, i + 1);
  }
  // Shutting down stops adds, so wait until every add has been made.
  while (addBudget.load() > 0 || addsInFlight.load() > 0) {
    std::this_thread::yield();
  }
  queue.shutDownWithDrain();
  for (auto& w : workers) {
    w.join();
  }

  CHECK(doubleHolds.load() == 0);
  CHECK(gets.load() > kKeys);
  CHECK(gets.load() <= kAdds);
  int keysAdded = 0;
  for (int k = 0; k < kKeys; ++k) {
    if (lastAdd[k].load() == 0) {
      continue;
    }
    ++keysAdded;
    INFO("key-" << k);
    CHECK(lastStart[k].load() > lastAdd[k].load());
  }
  CHECK(keysAdded == kKeys);
  CHECK(queue.len() == 0);
}

TEST_CASE("WorkQueue::addAfter makes keys ready in the order of their ready times") {
  auto clock = std::make_shared<FakeClock>();
  WorkQueue queue(clock, backoff());
  queue.addAfter("c", 30ms);
  queue.addAfter("a", 10ms);
  queue.addAfter("b", 20ms);
  queue.addAfter("d", 20ms);
  CHECK(queue.len() == 0);
  clock->advance(9ms);
  CHECK(queue.len() == 0);
  clock->advance(1ms);
  CHECK(queue.len() == 1);
  clock->advance(10ms);
  CHECK(queue.len() == 3);
  CHECK(getReady(queue) == "a");
  CHECK(getReady(queue) == "b");
  CHECK(getReady(queue) == "d");
  CHECK(getReady(queue) == "<nothing ready>");
  clock->advance(10ms);
  CHECK(getReady(queue) == "c");
}

TEST_CASE("WorkQueue::addAfter queues a key that came due before a later add() first") {
  auto clock = std::make_shared<FakeClock>();
  WorkQueue queue(clock, backoff());
  queue.addAfter("late", 10ms);
  clock->advance(15ms);
  queue.add("now");
  CHECK(getReady(queue) == "late");
  CHECK(getReady(queue) == "now");
}

TEST_CASE("WorkQueue::addAfter keeps the earlier ready time of a waiting key") {
  auto clock = std::make_shared<FakeClock>();
  WorkQueue queue(clock, backoff());
  queue.addAfter("x", 50ms);
  queue.addAfter("x", 20ms);
  queue.addAfter("x", 40ms);
  clock->advance(19ms);
  CHECK(queue.len() == 0);
  clock->advance(1ms);
  CHECK(queue.len() == 1);
  CHECK(getReady(queue) == "x");
  queue.done("x");
  clock->advance(100ms);
  CHECK(queue.len() == 0);
}

TEST_CASE("WorkQueue::addAfter with a delay of zero or less adds at once") {
  auto clock = std::make_shared<FakeClock>();
  WorkQueue queue(clock, backoff());
  queue.addAfter("a", 0ms);
  queue.addAfter("b", -5ms);
  CHECK(queue.len() == 2);
  CHECK(getReady(queue) == "a");
  CHECK(getReady(queue) == "b");
}

TEST_CASE("WorkQueue applies the dedup rules to a delayed key when it comes due") {
  auto clock = std::make_shared<FakeClock>();
  WorkQueue queue(clock, backoff());
  queue.add("a");
  queue.addAfter("a", 10ms);
  clock->advance(10ms);
  CHECK(queue.len() == 1);
  REQUIRE(getReady(queue) == "a");
  queue.addAfter("a", 5ms);
  clock->advance(5ms);
  CHECK(queue.len() == 0);
  queue.done("a");
  CHECK(queue.len() == 1);
  CHECK(getReady(queue) == "a");
}

TEST_CASE("WorkQueue::get blocks on the clock until the earliest delayed key is ready") {
  auto clock = std::make_shared<FakeClock>();
  const MonoTime start = clock->monotonicNow();
  WorkQueue queue(clock, backoff());
  queue.addAfter("late", 100ms);
  queue.addAfter("early", 10ms);

  std::atomic<bool> returned{false};
  std::optional<std::string> key;
  MonoTime returnedAt;
  std::thread worker([&] {
    key = queue.get();
    returnedAt = clock->monotonicNow();
    returned = true;
  });
  REQUIRE(eventually([&] { return clock->waiters() == 1; }));
  clock->advance(9ms);
  letOthersRun();
  CHECK_FALSE(returned.load());
  clock->advance(1ms);
  worker.join();
  CHECK(key == std::optional<std::string>("early"));
  CHECK(returnedAt - start == 10ms);
}

TEST_CASE("WorkQueue::get on a real clock wakes for an add and for an earlier delayed key") {
  WorkQueue queue(std::make_shared<RealClock>(), backoff());
  std::optional<std::string> first;
  std::optional<std::string> second;
  queue.addAfter("in-an-hour", 1h);
  std::thread worker([&] {
    first = queue.get();
    second = queue.get();
  });
  letOthersRun();
  queue.add("now");
  letOthersRun();
  // A get() parked until the hour is up must notice the earlier key.
  queue.addAfter("soon", 1ns);
  worker.join();
  CHECK(first == std::optional<std::string>("now"));
  CHECK(second == std::optional<std::string>("soon"));
}

TEST_CASE("WorkQueue::addRateLimited backs off per key and forget() starts over") {
  auto clock = std::make_shared<FakeClock>();
  WorkQueue queue(clock, backoff());
  queue.addRateLimited("a");
  CHECK(queue.numRequeues("a") == 1);
  clock->advance(4ms);
  CHECK(queue.len() == 0);
  clock->advance(1ms);
  CHECK(queue.len() == 1);
  REQUIRE(getReady(queue) == "a");
  queue.done("a");

  queue.addRateLimited("a");
  CHECK(queue.numRequeues("a") == 2);
  clock->advance(9ms);
  CHECK(queue.len() == 0);
  clock->advance(1ms);
  CHECK(queue.len() == 1);
  REQUIRE(getReady(queue) == "a");
  queue.done("a");

  queue.forget("a");
  CHECK(queue.numRequeues("a") == 0);
  queue.addRateLimited("a");
  clock->advance(4ms);
  CHECK(queue.len() == 0);
  clock->advance(1ms);
  CHECK(queue.len() == 1);
}

TEST_CASE("WorkQueue::shutDown releases every blocked get() with nullopt") {
  auto clock = std::make_shared<FakeClock>();
  WorkQueue queue(clock, backoff());
  constexpr int kWorkers = 3;
  std::array<std::optional<std::string>, kWorkers> got;
  got.fill("<not returned>");
  std::vector<std::thread> workers;
  for (int i = 0; i < kWorkers; ++i) {
    workers.emplace_back([&, i] { got[i] = queue.get(); });
  }
  REQUIRE(eventually([&] { return clock->waiters() == kWorkers; }));
  CHECK_FALSE(queue.shuttingDown());
  queue.shutDown();
  for (auto& w : workers) {
    w.join();
  }
  for (const auto& key : got) {
    CHECK_FALSE(key.has_value());
  }
  CHECK(queue.shuttingDown());
}

TEST_CASE("WorkQueue::shutDown drops queued and waiting keys and ignores new ones") {
  auto clock = std::make_shared<FakeClock>();
  WorkQueue queue(clock, backoff());
  queue.add("a");
  queue.add("b");
  queue.addAfter("c", 10ms);
  REQUIRE(getReady(queue) == "a");
  queue.add("a");
  queue.shutDown();
  CHECK(queue.len() == 0);
  CHECK(getReady(queue) == "<nullopt>");
  queue.done("a");
  queue.add("d");
  queue.addAfter("e", 0ms);
  queue.addRateLimited("f");
  clock->advance(1h);
  CHECK(queue.len() == 0);
  CHECK(getReady(queue) == "<nullopt>");
}

TEST_CASE("WorkQueue::shutDownWithDrain hands out the ready keys and waits for their done()") {
  auto clock = std::make_shared<FakeClock>();
  WorkQueue queue(clock, backoff());
  queue.add("a");
  queue.add("b");
  queue.add("c");
  REQUIRE(getReady(queue) == "a");
  queue.add("a");
  queue.addAfter("late", 10ms);

  std::atomic<bool> drained{false};
  std::thread stopper([&] {
    queue.shutDownWithDrain();
    drained = true;
  });
  REQUIRE(eventually([&] { return clock->waiters() == 1; }));
  CHECK(queue.shuttingDown());
  queue.add("ignored");
  CHECK(getReady(queue) == "b");
  CHECK(getReady(queue) == "c");
  queue.done("b");
  queue.done("c");
  letOthersRun();
  CHECK_FALSE(drained.load());

  // "a" was added while processing: done() queues it again and the drain hands it out. Nothing
  // is being processed now, but the drain is not over. (advance() wakes the stopper to re-check.)
  queue.done("a");
  clock->advance(10ms);
  letOthersRun();
  CHECK_FALSE(drained.load());
  CHECK(queue.len() == 1);  // "late" was dropped
  CHECK(getReady(queue) == "a");
  letOthersRun();
  CHECK_FALSE(drained.load());

  queue.done("a");
  stopper.join();
  CHECK(drained.load());
  CHECK(getReady(queue) == "<nullopt>");
}

TEST_CASE("WorkQueue::shutDownWithDrain returns at once when nothing is ready or processing") {
  auto clock = std::make_shared<FakeClock>();
  WorkQueue queue(clock, backoff());
  queue.addAfter("late", 10ms);
  queue.shutDownWithDrain();
  CHECK(queue.shuttingDown());
  clock->advance(10ms);
  CHECK(getReady(queue) == "<nullopt>");
}

TEST_CASE("WorkQueue::shutDown ends a pending shutDownWithDrain") {
  auto clock = std::make_shared<FakeClock>();
  WorkQueue queue(clock, backoff());
  queue.add("a");
  REQUIRE(getReady(queue) == "a");
  std::atomic<bool> drained{false};
  std::thread stopper([&] {
    queue.shutDownWithDrain();
    drained = true;
  });
  REQUIRE(eventually([&] { return clock->waiters() == 1; }));
  letOthersRun();
  CHECK_FALSE(drained.load());
  queue.shutDown();
  stopper.join();
  CHECK(drained.load());
  queue.done("a");
}

}  // namespace
}  // namespace bulkhead::kube
