#include "kube/workqueue.h"

#include <cstdlib>
#include <iostream>

namespace bulkhead::kube {
namespace {

constexpr MonoTime kNever = MonoTime::max();

MonoTime saturatingAdd(MonoTime t, std::chrono::nanoseconds d) {
  if (d > std::chrono::nanoseconds(0) && t > kNever - d) {
    return kNever;
  }
  return t + d;
}

}  // namespace

WorkQueue::WorkQueue(ClockPtr clock, RateLimiterPtr&& limiter)
    : clock_(std::move(clock)), limiter_(std::move(limiter)) {}

void WorkQueue::add(const std::string& key) {
  std::lock_guard lock(mu_);
  if (shuttingDown_) {
    return;
  }
  // Keys whose time has come go first, as if they had been added at that time.
  promoteReadyLocked();
  addLocked(key);
}

void WorkQueue::addLocked(const std::string& key) {
  if (!dirty_.insert(key).second) {
    return;
  }
  if (processing_.contains(key)) {
    return;
  }
  queue_.push_back(key);
  cv_.notify_one();
}

void WorkQueue::promoteReadyLocked() {
  if (waiting_.empty()) {
    return;
  }
  const MonoTime now = clock_->monotonicNow();
  while (!waiting_.empty() && waiting_.begin()->first.first <= now) {
    auto node = waiting_.extract(waiting_.begin());
    waitingByKey_.erase(node.mapped());
    addLocked(node.mapped());
  }
}

std::optional<std::string> WorkQueue::get() {
  std::unique_lock lock(mu_);
  promoteReadyLocked();
  while (queue_.empty()) {
    if (shuttingDown_) {
      return std::nullopt;
    }
    const MonoTime deadline = waiting_.empty() ? kNever : waiting_.begin()->first.first;
    clock_->waitUntil(lock, cv_, deadline);
    promoteReadyLocked();
  }
  std::string key = std::move(queue_.front());
  queue_.pop_front();
  processing_.insert(key);
  dirty_.erase(key);
  return key;
}

void WorkQueue::done(const std::string& key) {
  std::lock_guard lock(mu_);
  if (processing_.erase(key) == 0) {
    std::cerr << "WorkQueue::done(\"" << key << "\") for a key that is not being processed\n";
    std::abort();
  }
  promoteReadyLocked();
  if (dirty_.contains(key)) {
    queue_.push_back(key);
    cv_.notify_one();
  } else if (shuttingDown_ && processing_.empty() && queue_.empty()) {
    drainCv_.notify_all();
  }
}

void WorkQueue::addAfter(const std::string& key, std::chrono::nanoseconds delay) {
  std::lock_guard lock(mu_);
  if (shuttingDown_) {
    return;
  }
  promoteReadyLocked();
  if (delay <= std::chrono::nanoseconds(0)) {
    addLocked(key);
    return;
  }
  const MonoTime readyAt = saturatingAdd(clock_->monotonicNow(), delay);
  auto known = waitingByKey_.find(key);
  if (known != waitingByKey_.end()) {
    if (known->second->first.first <= readyAt) {
      return;
    }
    waiting_.erase(known->second);
    waitingByKey_.erase(known);
  }
  auto pos = waiting_.emplace(std::pair(readyAt, nextWaitingSeq_++), key).first;
  waitingByKey_.emplace(key, pos);
  if (pos == waiting_.begin()) {
    // A get() parked until a later ready time must recompute its deadline.
    cv_.notify_one();
  }
}

void WorkQueue::addRateLimited(const std::string& key) { addAfter(key, limiter_->when(key)); }

void WorkQueue::forget(const std::string& key) { limiter_->forget(key); }

int WorkQueue::numRequeues(const std::string& key) { return limiter_->numRequeues(key); }

size_t WorkQueue::len() {
  std::lock_guard lock(mu_);
  promoteReadyLocked();
  return queue_.size();
}

void WorkQueue::shutDown() {
  std::lock_guard lock(mu_);
  shuttingDown_ = true;
  drain_ = false;
  queue_.clear();
  dirty_.clear();
  waiting_.clear();
  waitingByKey_.clear();
  cv_.notify_all();
  drainCv_.notify_all();
}

void WorkQueue::shutDownWithDrain() {
  std::unique_lock lock(mu_);
  shuttingDown_ = true;
  drain_ = true;
  waiting_.clear();
  waitingByKey_.clear();
  cv_.notify_all();
  while (drain_ && !(queue_.empty() && processing_.empty())) {
    clock_->waitUntil(lock, drainCv_, kNever);
  }
}

bool WorkQueue::shuttingDown() const {
  std::lock_guard lock(mu_);
  return shuttingDown_;
}

}  // namespace bulkhead::kube
