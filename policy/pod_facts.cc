#include "policy/pod_facts.h"

#include <limits>
#include <nlohmann/json.hpp>

#include "policy/pod_facts_decoder.h"

namespace bulkhead::policy {
namespace {

using nlohmann::json;

// pod_facts_decoder.h's Node over nlohmann::json.
class JsonNode {
 public:
  explicit JsonNode(const json* j) : j_(j) {}
  bool isObject() const { return j_->is_object(); }
  bool isArray() const { return j_->is_array(); }
  bool isString() const { return j_->is_string(); }
  bool isBool() const { return j_->is_boolean(); }
  bool isInteger() const { return j_->is_number_integer(); }
  std::optional<JsonNode> member(std::string_view key) const {
    auto it = j_->find(key);
    if (it == j_->end() || it->is_null()) {
      return std::nullopt;
    }
    return JsonNode(&*it);
  }
  size_t size() const { return j_->size(); }
  JsonNode at(size_t i) const { return JsonNode(&(*j_)[i]); }
  std::string string() const { return j_->get<std::string>(); }
  bool boolean() const { return j_->get<bool>(); }
  std::optional<int64_t> int64() const {
    if (j_->is_number_unsigned() &&
        j_->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return std::nullopt;
    }
    return j_->get<int64_t>();
  }
  template <class F>
  void forEachMember(F f) const {
    for (const auto& [k, v] : j_->items()) {
      f(std::string_view(k), JsonNode(&v));
    }
  }

 private:
  const json* j_;
};

}  // namespace

std::optional<std::string_view> podTemplatePath(std::string_view kind) {
  if (kind == "Pod") {
    return std::string_view();
  }
  if (kind == "Deployment" || kind == "StatefulSet" || kind == "DaemonSet" ||
      kind == "ReplicaSet" || kind == "ReplicationController" || kind == "Job") {
    return std::string_view("spec.template");
  }
  if (kind == "PodTemplate") {
    return std::string_view("template");
  }
  if (kind == "CronJob") {
    return std::string_view("spec.jobTemplate.spec.template");
  }
  return std::nullopt;
}

std::string keyPath(std::string_view mapPath, std::string_view key) {
  std::string out;
  out.reserve(mapPath.size() + key.size() + 2);
  out.append(mapPath).append("[").append(key).append("]");
  return out;
}

StatusOr<PodFacts> decodePodFacts(const json& object) {
  // Every access above checks the JSON type first; this only keeps a library surprise from
  // crossing the interface (STYLE: nlohmann exceptions stay in the file that calls it).
  try {
    return podfacts::decode(JsonNode(&object));
  } catch (const json::exception& e) {
    return invalidError(std::string("malformed object: ") + e.what());
  }
}

}  // namespace bulkhead::policy
