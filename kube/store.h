#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace bulkhead::kube {

using ObjectPtr = std::shared_ptr<const nlohmann::json>;

// "namespace/name" for namespaced objects, "name" for cluster-scoped ones.
std::string objectKey(const nlohmann::json& object);
std::string objectKey(const std::string& ns, const std::string& name);

// An informer's cache: objects by key, plus secondary indexes. Thread-safe.
//
// Objects are held as compact JSON text, not as a DOM: a parsed nlohmann::json costs about five
// times its text in memory, and 50,000 cached objects must fit in well under 128 MiB. Every read
// parses the objects it returns (microseconds for a typical object); readers own what they get.
class Store {
 public:
  using IndexFunc = std::function<std::vector<std::string>(const nlohmann::json&)>;

  Store();
  // Adds a secondary index, indexing what is already stored. An index of that name already
  // there is kept as it is.
  void addIndex(const std::string& name, IndexFunc fn);

  ObjectPtr get(const std::string& key) const;
  std::vector<ObjectPtr> list() const;
  std::vector<std::string> keys() const;
  size_t size() const;
  // Objects whose index function returned `value` for index `name`.
  std::vector<ObjectPtr> byIndex(const std::string& name, const std::string& value) const;
  std::vector<ObjectPtr> byNamespace(const std::string& ns) const;

  // Mutations, for the informer. Each returns the previous object for `key` (or null).
  ObjectPtr upsert(const nlohmann::json& object);
  ObjectPtr erase(const std::string& key);
  bool contains(const std::string& key) const;

 private:
  struct Index {
    IndexFunc fn;
    std::unordered_map<std::string, std::set<std::string>> keysByValue;
  };
  void indexLocked(const std::string& key, const nlohmann::json* oldObj,
                   const nlohmann::json* newObj);

  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, std::string> items_;  // key -> compact JSON
  std::map<std::string, Index> indexes_;
};

// Index function for the value of label `labelKey` (index values: the label's values).
Store::IndexFunc labelIndex(const std::string& labelKey);
inline constexpr const char* kNamespaceIndex = "namespace";

}  // namespace bulkhead::kube
