#include "kube/events.h"

#include <cstdio>

#include "common/log.h"
#include "common/time_format.h"

namespace bulkhead::kube {
namespace {

constexpr size_t kMaxCached = 4096;


}  // namespace

ObjectReference referenceTo(const nlohmann::json& object) {
  const auto& md = object.value("metadata", nlohmann::json::object());
  return {object.value("apiVersion", ""), object.value("kind", ""), md.value("namespace", ""),
          md.value("name", ""), md.value("uid", "")};
}

EventRecorder::EventRecorder(ClientPtr client, ClockPtr clock, std::string component,
                             std::string instance, std::chrono::minutes aggregationWindow)
    : client_(std::move(client)),
      clock_(std::move(clock)),
      component_(std::move(component)),
      instance_(std::move(instance)),
      window_(aggregationWindow),
      thread_([this] { run(); }) {}

EventRecorder::~EventRecorder() { stop(); }

void EventRecorder::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void EventRecorder::record(const ObjectReference& object, Type type, const std::string& reason,
                           const std::string& message) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queue_.size() >= 10'000) {
      return;  // shutting down, or the API server is far behind: drop rather than grow
    }
    queue_.push_back({object, type, reason, message, clock_->now()});
  }
  cv_.notify_all();
}

void EventRecorder::flush() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return (queue_.empty() && !busy_) || stopping_; });
}

void EventRecorder::run() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) {
      return;  // stopping, and everything already recorded was written
    }
    Pending p = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    write(p);
    lock.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

void EventRecorder::write(const Pending& p) {
  std::string type = p.type == Type::kWarning ? "Warning" : "Normal";
  std::string key = p.object.kind + "/" + p.object.ns + "/" + p.object.name + "/" + p.object.uid +
                    "/" + type + "/" + p.reason + "/" + p.message;
  std::string ns = p.object.ns.empty() ? "default" : p.object.ns;
  auto it = written_.find(key);
  if (it != written_.end() && p.at - it->second.last < window_) {
    Written& w = it->second;
    nlohmann::json patch = {{"count", w.count + 1}, {"lastTimestamp", formatRfc3339(p.at)}};
    auto patched = client_->mergePatch(resources::kEvents, w.ns, w.name, patch);
    if (patched.ok()) {
      w.count++;
      w.last = p.at;
      lru_.splice(lru_.begin(), lru_, w.lru);
      return;
    }
    if (patched.status().code() != StatusCode::kNotFound) {
      log::warn("updating an event failed", {{"event", w.name}, {"error", patched.status().toString()}});
      return;
    }
    lru_.erase(w.lru);
    written_.erase(it);  // the Event was deleted (TTL): write a new one
  }
  auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(p.at.time_since_epoch()).count();
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, ".%llx", static_cast<unsigned long long>(nanos));
  std::string name = p.object.name + suffix;
  nlohmann::json event = {
      {"apiVersion", "v1"},
      {"kind", "Event"},
      {"metadata", {{"name", name}, {"namespace", ns}}},
      {"involvedObject",
       {{"apiVersion", p.object.apiVersion},
        {"kind", p.object.kind},
        {"namespace", p.object.ns},
        {"name", p.object.name},
        {"uid", p.object.uid}}},
      {"reason", p.reason},
      {"message", p.message},
      {"type", type},
      {"count", 1},
      {"firstTimestamp", formatRfc3339(p.at)},
      {"lastTimestamp", formatRfc3339(p.at)},
      {"source", {{"component", component_}}},
      {"reportingComponent", component_},
      {"reportingInstance", instance_}};
  auto created = client_->create(resources::kEvents, event);
  if (!created.ok()) {
    log::warn("writing an event failed", {{"reason", p.reason},
                                          {"object", p.object.kind + " " + p.object.name},
                                          {"error", created.status().toString()}});
    return;
  }
  lru_.push_front(key);
  written_[key] = Written{ns, name, 1, p.at, lru_.begin()};
  if (written_.size() > kMaxCached) {
    written_.erase(lru_.back());
    lru_.pop_back();
  }
}

}  // namespace bulkhead::kube
