#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "kube/client.h"
#include "kube/discovery.h"
#include "kube/leader_election.h"
#include "kube/shared_cache.h"

namespace bulkhead::kube {

// Something that runs only while this replica leads. start() may block until its caches have
// synced, and must return soon once stop() is called (stop() may even come first).
class LeaderRunnable {
 public:
  virtual ~LeaderRunnable() = default;
  virtual void start() = 0;
  virtual void stop() = 0;
};

struct ManagerOptions {
  // None: this replica leads from start() to stop() (a single replica, or tests).
  std::optional<LeaderElectionConfig> leaderElection;
  std::chrono::milliseconds discoveryInterval{10'000};
  // Logged when the Lease is lost (the process may say what keeps running).
  std::string lostLeadershipMessage = "lost leadership; controllers stopped, campaigning again";
};

// The process's controller runtime: the shared informer cache and API discovery (used by the
// webhook on every replica and by the controllers), and leader gating. Each time this replica
// gains the Lease, every registered factory makes a fresh runnable, each started on a thread of
// its own (their caches are warm, and each re-lists into its handlers, so a new leader starts
// with a full reconcile); when the Lease is lost they are stopped and destroyed before another
// replica can take over, and the replica campaigns again.
class Manager {
 public:
  Manager(ClientPtr client, ClockPtr clock, ManagerOptions options);
  ~Manager();

  SharedCache& cache() { return cache_; }
  ApiDiscovery& discovery() { return discovery_; }

  // Before start().
  void addLeaderRunnable(std::function<std::unique_ptr<LeaderRunnable>()> make);

  // Starts discovery and the election (or the runnables at once). Does not block.
  void start();
  // Stops the runnables and releases the Lease, leaving discovery and the informers running (a
  // terminating replica still answers admission requests from them). Idempotent.
  void resign();
  // resign(), then stops discovery and every informer. Idempotent.
  void stop();

 private:
  void startLeading();
  void stopLeading();

  ClientPtr client_;
  ClockPtr clock_;
  ManagerOptions options_;
  SharedCache cache_;
  ApiDiscovery discovery_;
  std::vector<std::function<std::unique_ptr<LeaderRunnable>()>> factories_;
  std::unique_ptr<LeaderElector> elector_;
  std::thread electing_;

  std::mutex mu_;  // guards the running runnables
  bool resigned_ = false;
  bool stopped_ = false;
  std::vector<std::pair<std::unique_ptr<LeaderRunnable>, std::thread>> running_;
};

}  // namespace bulkhead::kube
