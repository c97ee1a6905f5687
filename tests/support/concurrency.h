#pragma once

#include <thread>

// Helpers for hermetic concurrency tests: no sleeps, only yields with generous bounds.
namespace bulkhead::testing {

// Yields until `pred` holds or a generous bound runs out; returns whether it held.
template <typename Pred>
bool eventuallyYielding(Pred pred) {
  for (int i = 0; i < 5'000'000; ++i) {
    if (pred()) {
      return true;
    }
    std::this_thread::yield();
  }
  return pred();
}

// Gives other threads a chance to run (and to misbehave) before the test looks.
inline void letOthersRun() {
  for (int i = 0; i < 2000; ++i) {
    std::this_thread::yield();
  }
}

}  // namespace bulkhead::testing
