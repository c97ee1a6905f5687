#pragma once

#include <condition_variable>
#include <deque>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "common/clock.h"
#include "kube/client.h"

namespace bulkhead::kube {

struct ObjectReference {
  std::string apiVersion;
  std::string kind;
  std::string ns;
  std::string name;
  std::string uid;
};

// Makes a reference to a Kubernetes object (apiVersion, kind and metadata of `object`).
ObjectReference referenceTo(const nlohmann::json& object);

// Writes core/v1 Events asynchronously, aggregating repeats: the same object, type, reason and
// message within `aggregationWindow` bumps count and lastTimestamp of the existing Event instead
// of creating another. Thread-safe; record() never blocks on the API server.
class EventRecorder {
 public:
  enum class Type { kNormal, kWarning };

  EventRecorder(ClientPtr client, ClockPtr clock, std::string component, std::string instance,
                std::chrono::minutes aggregationWindow = std::chrono::minutes(10));
  ~EventRecorder();

  void record(const ObjectReference& object, Type type, const std::string& reason,
              const std::string& message);
  // Blocks until everything recorded so far was written (or failed). For tests and shutdown.
  void flush();
  void stop();

 private:
  struct Pending {
    ObjectReference object;
    Type type;
    std::string reason;
    std::string message;
    WallTime at;
  };
  struct Written {
    std::string ns;
    std::string name;
    int count = 0;
    WallTime last;
    std::list<std::string>::iterator lru;
  };
  void run();
  void write(const Pending& p);

  ClientPtr client_;
  ClockPtr clock_;
  std::string component_;
  std::string instance_;
  std::chrono::minutes window_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;  // guarded by mu_
  bool busy_ = false;          // guarded by mu_
  bool stopping_ = false;      // guarded by mu_
  // Aggregation cache, touched only by the writer thread; bounded LRU.
  std::unordered_map<std::string, Written> written_;
  std::list<std::string> lru_;
  std::thread thread_;
};

}  // namespace bulkhead::kube
