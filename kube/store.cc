#include "kube/store.h"

namespace bulkhead::kube {
namespace {

ObjectPtr parse(const std::string& text) {
  return std::make_shared<const nlohmann::json>(nlohmann::json::parse(text));
}

}  // namespace

std::string objectKey(const std::string& ns, const std::string& name) {
  return ns.empty() ? name : ns + "/" + name;
}

std::string objectKey(const nlohmann::json& object) {
  auto md = object.is_object() ? object.find("metadata") : object.end();
  if (md == object.end() || !md->is_object()) {
    return "";
  }
  auto ns = md->find("namespace");
  auto name = md->find("name");
  if (name == md->end() || !name->is_string() || (ns != md->end() && !ns->is_string())) {
    return "";
  }
  return objectKey(ns == md->end() ? "" : ns->get<std::string>(), name->get<std::string>());
}

Store::Store() {
  addIndex(kNamespaceIndex, [](const nlohmann::json& o) -> std::vector<std::string> {
    auto md = o.find("metadata");
    if (md == o.end() || !md->is_object()) {
      return {};
    }
    auto ns = md->find("namespace");
    if (ns == md->end() || !ns->is_string() || ns->get_ref<const std::string&>().empty()) {
      return {};
    }
    return {ns->get<std::string>()};
  });
}

void Store::addIndex(const std::string& name, IndexFunc fn) {
  std::unique_lock lock(mu_);
  if (indexes_.contains(name)) {
    return;  // the cache is shared: whoever adds an index by a name adds the same one
  }
  Index& index = indexes_[name];
  index.fn = std::move(fn);
  for (const auto& [key, text] : items_) {
    auto object = parse(text);
    for (auto& value : index.fn(*object)) {
      index.keysByValue[value].insert(key);
    }
  }
}

ObjectPtr Store::get(const std::string& key) const {
  std::shared_lock lock(mu_);
  auto it = items_.find(key);
  return it == items_.end() ? nullptr : parse(it->second);
}

bool Store::contains(const std::string& key) const {
  std::shared_lock lock(mu_);
  return items_.contains(key);
}

std::vector<ObjectPtr> Store::list() const {
  std::shared_lock lock(mu_);
  std::vector<ObjectPtr> out;
  out.reserve(items_.size());
  for (const auto& [k, v] : items_) {
    out.push_back(parse(v));
  }
  return out;
}

std::vector<std::string> Store::keys() const {
  std::shared_lock lock(mu_);
  std::vector<std::string> out;
  out.reserve(items_.size());
  for (const auto& [k, v] : items_) {
    out.push_back(k);
  }
  return out;
}

size_t Store::size() const {
  std::shared_lock lock(mu_);
  return items_.size();
}

std::vector<ObjectPtr> Store::byIndex(const std::string& name, const std::string& value) const {
  std::shared_lock lock(mu_);
  std::vector<ObjectPtr> out;
  auto idx = indexes_.find(name);
  if (idx == indexes_.end()) {
    return out;
  }
  auto keys = idx->second.keysByValue.find(value);
  if (keys == idx->second.keysByValue.end()) {
    return out;
  }
  for (const auto& k : keys->second) {
    out.push_back(parse(items_.at(k)));
  }
  return out;
}

std::vector<ObjectPtr> Store::byNamespace(const std::string& ns) const {
  return byIndex(kNamespaceIndex, ns);
}

void Store::indexLocked(const std::string& key, const nlohmann::json* oldObj,
                        const nlohmann::json* newObj) {
  for (auto& [name, index] : indexes_) {
    if (oldObj != nullptr) {
      for (const auto& v : index.fn(*oldObj)) {
        auto it = index.keysByValue.find(v);
        if (it != index.keysByValue.end()) {
          it->second.erase(key);
          if (it->second.empty()) {
            index.keysByValue.erase(it);
          }
        }
      }
    }
    if (newObj != nullptr) {
      for (const auto& v : index.fn(*newObj)) {
        index.keysByValue[v].insert(key);
      }
    }
  }
}

ObjectPtr Store::upsert(const nlohmann::json& object) {
  std::string key = objectKey(object);
  std::string text = object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::unique_lock lock(mu_);
  std::string& slot = items_[key];
  ObjectPtr old = slot.empty() ? nullptr : parse(slot);
  indexLocked(key, old.get(), &object);
  slot = std::move(text);
  slot.shrink_to_fit();
  return old;
}

ObjectPtr Store::erase(const std::string& key) {
  std::unique_lock lock(mu_);
  auto it = items_.find(key);
  if (it == items_.end()) {
    return nullptr;
  }
  ObjectPtr old = parse(it->second);
  items_.erase(it);
  indexLocked(key, old.get(), nullptr);
  return old;
}

Store::IndexFunc labelIndex(const std::string& labelKey) {
  return [labelKey](const nlohmann::json& o) -> std::vector<std::string> {
    auto md = o.find("metadata");
    if (md == o.end() || !md->is_object()) {
      return {};
    }
    auto labels = md->find("labels");
    if (labels == md->end() || !labels->is_object()) {
      return {};
    }
    auto v = labels->find(labelKey);
    if (v == labels->end() || !v->is_string()) {
      return {};
    }
    return {v->get<std::string>()};
  };
}

}  // namespace bulkhead::kube
