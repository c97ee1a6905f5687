#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "common/clock.h"
#include "kube/rate_limiter.h"

namespace bulkhead::kube {

// The queue between event handlers and reconcile workers, with client-go's guarantees:
// - a key is handed to at most one worker at a time: from get() until done();
// - a key added while queued is not queued twice; a key added while being processed is queued
//   again when done() is called for it;
// - ready keys come out in the order they were queued;
// - delayed keys (addAfter, addRateLimited) become ready at their time as told by the clock.
// Workers loop on get() until it returns nullopt and call done() for every key they got.
// Thread-safe.
class WorkQueue {
 public:
  WorkQueue(ClockPtr clock, RateLimiterPtr&& limiter);
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Ignored once shutting down.
  void add(const std::string& key);

  // Blocks until a key is ready and hands it out. Returns nullopt once shut down; after
  // shutDownWithDrain(), only once no key is ready either.
  std::optional<std::string> get();

  // Ends the processing of a key returned by get(); queues it again if it was added meanwhile.
  // Calling it for a key that is not being processed is a bug and aborts.
  void done(const std::string& key);

  // Adds `key` once `delay` has passed (now when delay <= 0). A key already waiting keeps the
  // earlier of its two ready times. Ignored once shutting down.
  void addAfter(const std::string& key, std::chrono::nanoseconds delay);

  // addAfter(key, limiter.when(key)): the retry after a failure.
  void addRateLimited(const std::string& key);
  // The limiter's forget(): call when `key` was processed successfully.
  void forget(const std::string& key);
  int numRequeues(const std::string& key);

  // Keys ready to be handed out; keys waiting for their time or being processed do not count.
  size_t len();

  // Stops accepting keys, drops the queued and waiting ones, and makes every get() return nullopt
  // at once. Ends a pending shutDownWithDrain() without waiting for the workers.
  void shutDown();

  // Stops accepting keys and drops the waiting ones; get() keeps handing out the ready keys
  // (including keys queued again by done()). Blocks until none is left ready or being processed,
  // so workers must keep calling get() and done() until get() returns nullopt.
  void shutDownWithDrain();

  bool shuttingDown() const;

 private:
  // Ordered by ready time, then by the order of the addAfter() calls.
  using WaitingMap = std::map<std::pair<MonoTime, uint64_t>, std::string>;

  void addLocked(const std::string& key);
  // Adds the waiting keys whose ready time has come.
  void promoteReadyLocked();

  const ClockPtr clock_;
  const RateLimiterPtr limiter_;

  mutable std::mutex mu_;
  // get() waits on cv_; shutDownWithDrain() on drainCv_.
  std::condition_variable cv_;
  std::condition_variable drainCv_;
  // Keys handed out by get() and not yet done().
  std::unordered_set<std::string> processing_;
  // Keys that need processing: every key in queue_, plus keys added again while processing.
  std::unordered_set<std::string> dirty_;
  std::deque<std::string> queue_;
  WaitingMap waiting_;
  std::unordered_map<std::string, WaitingMap::iterator> waitingByKey_;
  uint64_t nextWaitingSeq_ = 0;
  bool shuttingDown_ = false;
  bool drain_ = false;
};

}  // namespace bulkhead::kube
