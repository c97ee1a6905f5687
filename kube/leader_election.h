#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>

#include "common/clock.h"
#include "kube/client.h"

namespace bulkhead::kube {

struct LeaderElectionConfig {
  std::string leaseNamespace;
  std::string leaseName = "bulkhead";
  std::string identity;  // unique per replica, e.g. pod name + random suffix
  std::chrono::milliseconds leaseDuration{15'000};
  std::chrono::milliseconds renewDeadline{10'000};
  std::chrono::milliseconds retryPeriod{2'000};
};

// Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: a candidate takes the
// Lease when it is free, released, or not renewed for leaseDuration as observed locally (so clock
// skew between replicas does not matter); the leader renews every retryPeriod and gives up if it
// cannot renew within renewDeadline. Sets the bulkhead_leader gauge.
class LeaderElector {
 public:
  LeaderElector(ClientPtr client, ClockPtr clock, LeaderElectionConfig config);

  // Blocks until stop(): campaigns until leading, calls onStartedLeading (which must not block),
  // renews until leadership is lost or stop() is called, then calls onStoppedLeading. After a
  // loss it campaigns again, so the two callbacks alternate for as long as the process lives;
  // onStoppedLeading must have stopped everything leader-only when it returns, since another
  // replica may take over once the Lease expires. On stop() while leading, the Lease is released
  // so another replica takes over at its next retry.
  void run(const std::function<void()>& onStartedLeading,
           const std::function<void()>& onStoppedLeading);
  void stop();
  const LeaderElectionConfig& config() const { return config_; }

 private:
  // One attempt to acquire or renew. OK when we hold the Lease afterwards.
  Status tryAcquireOrRenew();
  Status release();
  // Campaigns until this replica holds the Lease (true) or stop() is called (false).
  bool acquire();
  // Renews every retryPeriod until the Lease is lost (true: taken over, or not renewed within
  // renewDeadline) or stop() is called (false).
  bool renewUntilLost();
  bool sleepFor(std::chrono::milliseconds d);

  ClientPtr client_;
  ClockPtr clock_;
  LeaderElectionConfig config_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  // The last Lease record seen and when it was first seen changed (local monotonic time).
  std::string observedHolder_;
  std::string observedRenewTime_;
  MonoTime observedAt_{};
  std::chrono::milliseconds observedDuration_{0};
};

}  // namespace bulkhead::kube
