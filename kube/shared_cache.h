#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "common/clock.h"
#include "kube/client.h"
#include "kube/informer.h"

namespace bulkhead::kube {

// The process's informers: one per watch (resource, namespace, label and field selectors), shared
// by the webhook and the controllers, so that each watched object is listed, watched and cached
// once. An informer starts when it is first asked for and runs until it is dropped or the cache
// stops; informers outlive the controllers that asked for them (a replica that loses the Lease
// keeps its caches warm for the webhook and for the next time it leads). Thread-safe.
class SharedCache {
 public:
  SharedCache(ClientPtr client, ClockPtr clock);
  ~SharedCache();
  SharedCache(const SharedCache&) = delete;
  SharedCache& operator=(const SharedCache&) = delete;

  // Every informer on `type` gets `transform` instead of the default one. Call before the first
  // informer on the type is asked for: the informer that exists keeps the transform it has.
  void setTransform(const ResourceType& type, std::function<void(nlohmann::json&)> transform);

  // The running informer of the watch `options` describes, started on first use.
  std::shared_ptr<Informer> informer(const InformerOptions& options);
  std::shared_ptr<Informer> informer(const ResourceType& type,
                                     const std::string& labelSelector = "") {
    return informer(informerOptions(type, "", labelSelector));
  }

  // Stops and forgets every informer on `type` (its API is no longer served). Holders keep a
  // stopped informer: its handlers are not called again and its store no longer changes.
  void drop(const ResourceType& type);

  // Stops every informer. Idempotent.
  void stop();

 private:
  using Key = std::tuple<std::string, std::string, std::string, std::string, std::string>;
  static Key keyOf(const InformerOptions& options);

  ClientPtr client_;
  ClockPtr clock_;
  std::mutex mu_;
  bool stopped_ = false;                                                    // guarded by mu_
  std::map<Key, std::shared_ptr<Informer>> informers_;                      // guarded by mu_
  std::map<std::string, std::function<void(nlohmann::json&)>> transforms_;  // by group/resource
};

}  // namespace bulkhead::kube
