#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "kube/client.h"

namespace bulkhead::kube {

// Whether optional APIs (Istio's security API, the network-policy API's ClusterNetworkPolicy)
// are served, checked every `interval` so that one installed or removed later is noticed without
// a restart. One per process, shared by the webhook and the controllers. Thread-safe.
class ApiDiscovery {
 public:
  ApiDiscovery(ClientPtr client, ClockPtr clock, std::chrono::milliseconds interval);
  ~ApiDiscovery();
  ApiDiscovery(const ApiDiscovery&) = delete;
  ApiDiscovery& operator=(const ApiDiscovery&) = delete;

  // Adds `type` to what is checked, at once if running (served() is nullopt until then).
  void track(const ResourceType& type);
  // Checks once at once, then every interval on a thread of its own.
  void start();
  void stop();

  // Whether `type` was served at the last check; nullopt until a check has answered.
  std::optional<bool> served(const ResourceType& type) const;

  // Called on the discovery thread after each check that changed what is served, and once for
  // the first answer. Returns an id for unsubscribe; after unsubscribe returns, it is not called
  // again.
  int subscribe(std::function<void()> onChange);
  void unsubscribe(int id);

 private:
  void checkOnce();

  ClientPtr client_;
  ClockPtr clock_;
  std::chrono::milliseconds interval_;
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool checkNow_ = false;
  std::vector<ResourceType> tracked_;
  std::map<std::string, bool> served_;  // by group/version/resource
  std::mutex subscribersMu_;            // held while subscribers are called
  std::map<int, std::function<void()>> subscribers_;
  int nextId_ = 1;
};

}  // namespace bulkhead::kube
