#include "kube/discovery.h"

#include "common/log.h"

namespace bulkhead::kube {
namespace {

std::string keyOf(const ResourceType& type) {
  return type.group + "/" + type.version + "/" + type.resource;
}

}  // namespace

ApiDiscovery::ApiDiscovery(ClientPtr client, ClockPtr clock, std::chrono::milliseconds interval)
    : client_(std::move(client)), clock_(std::move(clock)), interval_(interval) {}

ApiDiscovery::~ApiDiscovery() { stop(); }

void ApiDiscovery::track(const ResourceType& type) {
  {
    std::lock_guard lock(mu_);
    for (const auto& t : tracked_) {
      if (keyOf(t) == keyOf(type)) {
        return;
      }
    }
    tracked_.push_back(type);
    checkNow_ = true;
  }
  cv_.notify_all();
}

void ApiDiscovery::start() {
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      lock.unlock();
      checkOnce();
      lock.lock();
      auto deadline = clock_->monotonicNow() + interval_;
      while (!stopping_ && !checkNow_ && clock_->monotonicNow() < deadline) {
        clock_->waitUntil(lock, cv_, deadline);
      }
    }
  });
}

void ApiDiscovery::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void ApiDiscovery::checkOnce() {
  std::vector<ResourceType> tracked;
  {
    std::lock_guard lock(mu_);
    tracked = tracked_;
    checkNow_ = false;
  }
  bool changed = false;
  for (const auto& type : tracked) {
    auto served = client_->isServed(type.group, type.version, type.resource);
    if (!served.ok()) {
      log::warn("API discovery failed",
                {{"api", keyOf(type)}, {"error", served.status().toString()}});
      continue;  // keeps the last answer
    }
    std::lock_guard lock(mu_);
    auto [it, inserted] = served_.try_emplace(keyOf(type), *served);
    if (inserted || it->second != *served) {
      if (!inserted) {
        log::info(*served ? "API is now served" : "API is no longer served",
                  {{"api", keyOf(type)}});
      }
      it->second = *served;
      changed = true;
    }
  }
  if (changed) {
    std::lock_guard lock(subscribersMu_);
    for (const auto& [id, onChange] : subscribers_) {
      onChange();
    }
  }
}

std::optional<bool> ApiDiscovery::served(const ResourceType& type) const {
  std::lock_guard lock(mu_);
  auto it = served_.find(keyOf(type));
  return it == served_.end() ? std::nullopt : std::optional<bool>(it->second);
}

int ApiDiscovery::subscribe(std::function<void()> onChange) {
  std::lock_guard lock(subscribersMu_);
  int id = nextId_++;
  subscribers_[id] = std::move(onChange);
  return id;
}

void ApiDiscovery::unsubscribe(int id) {
  std::lock_guard lock(subscribersMu_);
  subscribers_.erase(id);
}

}  // namespace bulkhead::kube
