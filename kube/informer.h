#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "kube/client.h"
#include "kube/store.h"

namespace bulkhead::metrics {
class Counter;
}

namespace bulkhead::kube {

// bulkhead_watch_restarts_total{resource}.
metrics::Counter& watchRestarts(const std::string& resource);

struct InformerOptions {
  ResourceType type;
  std::string ns;  // "" = all namespaces
  std::string labelSelector;
  std::string fieldSelector;
  // Applied to every object before it is cached. The default drops managedFields and the
  // last-applied-configuration annotation, which nothing reads and which dominate object size.
  std::function<void(nlohmann::json&)> transform;
  int64_t pageSize = 500;
  std::chrono::seconds watchTimeout{300};
  std::chrono::milliseconds initialBackoff{800};
  std::chrono::milliseconds maxBackoff{30'000};
};

// Options for an informer on `type`, in namespace `ns` ("" = all) and narrowed by the selectors,
// with every other field at its default. A function rather than designated initializers, which
// would have to name every field to stay free of -Wmissing-field-initializers.
inline InformerOptions informerOptions(const ResourceType& type, std::string ns = "",
                                       std::string labelSelector = "",
                                       std::string fieldSelector = "") {
  InformerOptions options;
  options.type = type;
  options.ns = std::move(ns);
  options.labelSelector = std::move(labelSelector);
  options.fieldSelector = std::move(fieldSelector);
  return options;
}

// The default transform: strips managedFields and kubectl's last-applied annotation.
void dropUnreadFields(nlohmann::json& object);

// Callbacks of an informer; they run on the informer's thread and must only enqueue work.
struct EventHandlers {
  std::function<void(const nlohmann::json&)> onAdd;
  std::function<void(const nlohmann::json& oldObj, const nlohmann::json& newObj)> onUpdate;
  std::function<void(const nlohmann::json&)> onDelete;
};

// List-then-watch cache of one resource type, kept current by a reflector thread: a paged list
// replaces the store, then a watch from the list's resourceVersion (with bookmarks) applies
// changes. A 410 Gone or an ERROR event relists; a broken stream reconnects from the last
// resourceVersion with jittered exponential backoff. Restarts are counted in
// bulkhead_watch_restarts_total{resource}.
class Informer {
 public:
  Informer(ClientPtr client, ClockPtr clock, InformerOptions options);
  ~Informer();
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  // Adds handlers, before or after start(). Added after, they are first called with onAdd for
  // every object already cached, so they see each object exactly once before its changes. The
  // handlers must not add or remove handlers themselves. Returns an id for removeEventHandlers.
  int addEventHandlers(EventHandlers handlers);
  // After it returns, the handlers are not called again.
  void removeEventHandlers(int id);
  Store& store() { return store_; }
  const Store& store() const { return store_; }

  void start();
  // Cancels the watch and joins the thread. Idempotent.
  void stop();

  // True once the first list has been applied to the store.
  bool hasSynced() const { return synced_.load(); }
  // Blocks until synced, stopped, or `timeout` passes (real time). Returns hasSynced().
  bool waitForSync(std::chrono::milliseconds timeout);
  std::string lastResourceVersion() const;
  const InformerOptions& options() const { return options_; }

 private:
  void run();
  // One list + replace. Returns the list's resourceVersion.
  StatusOr<std::string> listAndReplace();
  // Watches from `rv` until the stream ends. Returns OK on a normal end (reconnect from the
  // returned rv), Gone when a relist is needed, another error for a broken stream.
  Status watchOnce(std::string& rv);
  void apply(WatchEvent::Type type, nlohmann::json&& object);
  void notify(const std::function<void(const EventHandlers&)>& call);
  // Waits `d` or until stop(); returns false when stopping.
  bool sleepFor(std::chrono::milliseconds d);
  std::chrono::milliseconds nextBackoff();
  void countRestart(const std::string& why, const Status& status);

  ClientPtr client_;
  ClockPtr clock_;
  InformerOptions options_;
  Store store_;
  // Held while the store changes and handlers are called, so that handlers added meanwhile
  // neither miss nor repeat a change.
  std::mutex handlersMu_;
  std::vector<std::pair<int, EventHandlers>> handlers_;  // guarded by handlersMu_
  int nextHandlerId_ = 1;                                // guarded by handlersMu_
  std::thread thread_;
  std::atomic<bool> synced_{false};
  std::atomic<bool> stopping_{false};
  CancellationPtr cancel_ = std::make_shared<Cancellation>();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string lastRv_;  // guarded by mu_
  std::chrono::milliseconds backoff_{0};
};

}  // namespace bulkhead::kube
