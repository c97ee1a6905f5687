#include "kube/shared_cache.h"

namespace bulkhead::kube {
namespace {

std::string typeKey(const ResourceType& type) { return type.group + "/" + type.resource; }

}  // namespace

SharedCache::SharedCache(ClientPtr client, ClockPtr clock)
    : client_(std::move(client)), clock_(std::move(clock)) {}

SharedCache::~SharedCache() { stop(); }

SharedCache::Key SharedCache::keyOf(const InformerOptions& options) {
  return {typeKey(options.type), options.type.version, options.ns, options.labelSelector,
          options.fieldSelector};
}

void SharedCache::setTransform(const ResourceType& type,
                               std::function<void(nlohmann::json&)> transform) {
  std::lock_guard lock(mu_);
  transforms_[typeKey(type)] = std::move(transform);
}

std::shared_ptr<Informer> SharedCache::informer(const InformerOptions& options) {
  std::lock_guard lock(mu_);
  auto& slot = informers_[keyOf(options)];
  if (slot == nullptr) {
    InformerOptions o = options;
    if (auto t = transforms_.find(typeKey(options.type)); t != transforms_.end()) {
      o.transform = t->second;
    }
    slot = std::make_shared<Informer>(client_, clock_, std::move(o));
    if (!stopped_) {
      slot->start();
    }
  }
  return slot;
}

void SharedCache::drop(const ResourceType& type) {
  std::vector<std::shared_ptr<Informer>> dropped;
  {
    std::lock_guard lock(mu_);
    for (auto it = informers_.begin(); it != informers_.end();) {
      if (std::get<0>(it->first) == typeKey(type)) {
        dropped.push_back(std::move(it->second));
        it = informers_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& inf : dropped) {
    inf->stop();
  }
}

void SharedCache::stop() {
  std::vector<std::shared_ptr<Informer>> all;
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
    for (auto& [key, inf] : informers_) {
      all.push_back(inf);
    }
  }
  for (auto& inf : all) {
    inf->stop();
  }
}

}  // namespace bulkhead::kube
