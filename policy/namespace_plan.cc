#include "policy/namespace_plan.h"

#include <functional>

#include "policy/segmentation.h"

namespace bulkhead::policy {

std::string objectSlot(const nlohmann::json& object) {
  return object.value("kind", "") + "/" + object["metadata"].value("name", "");
}

size_t contentHash(const nlohmann::json& object) { return std::hash<std::string>{}(object.dump()); }

NamespacePlan planNamespace(const std::vector<nlohmann::json>& desired,
                            const std::vector<nlohmann::json>& current,
                            const std::map<std::string, size_t>& recentlyApplied,
                            bool wasSegmented) {
  std::map<std::string, const nlohmann::json*> have;
  for (const auto& c : current) {
    have[objectSlot(c)] = &c;
  }
  NamespacePlan plan;
  std::map<std::string, bool> wanted;
  for (const auto& want : desired) {
    const std::string slot = objectSlot(want);
    wanted[slot] = true;
    auto found = have.find(slot);
    if (found == have.end()) {
      const size_t hash = contentHash(want);
      if (auto p = recentlyApplied.find(slot); p != recentlyApplied.end() && p->second == hash) {
        plan.awaitingWatch[slot] = hash;
        continue;
      }
      plan.writes.push_back({want, false, wasSegmented});
      continue;
    }
    const nlohmann::json& cached = *found->second;
    if (matchesDesired(cached, want)) {
      continue;
    }
    nlohmann::json replacement = cached;
    replacement["spec"] = want["spec"];
    for (const auto& [k, v] : want["metadata"]["labels"].items()) {
      replacement["metadata"]["labels"][k] = v;
    }
    plan.writes.push_back({std::move(replacement), true, true});
  }
  for (const auto& c : current) {
    if (!wanted.contains(objectSlot(c))) {
      plan.deletes.push_back(c);
    }
  }
  return plan;
}

}  // namespace bulkhead::policy
