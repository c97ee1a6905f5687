#pragma once

#include <cstddef>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

// What one namespace reconcile writes and deletes, given what the governing policy wants and
// what the cache holds. Pure.
namespace bulkhead::policy {

// "Kind/name": how an applied object is remembered until the watch shows it.
std::string objectSlot(const nlohmann::json& object);
// A hash of an object's content, to tell whether what was applied is what is wanted now.
size_t contentHash(const nlohmann::json& object);

struct NamespacePlan {
  struct Write {
    nlohmann::json object;
    // False: a server-side apply of a missing object. True: `object` is the cached one with the
    // wanted spec and labels, written back as an update guarded by its resourceVersion (apply
    // cannot take away fields another manager added, an allow-all rule say).
    bool replace = false;
    // The object had been deleted or edited: a drift repair, reported as such.
    bool repair = false;
  };
  std::vector<Write> writes;
  std::vector<nlohmann::json> deletes;  // cached objects no longer wanted
  // Objects applied moments ago that the watch has not shown yet: not written again, and the
  // reconcile looks once more when the watch had time. "Kind/name" -> contentHash.
  std::map<std::string, size_t> awaitingWatch;
};

// `desired`: the objects the governing policy wants (none when no policy governs); `current`:
// the namespace's generated objects in the cache (those of the namespace's policy, not those of
// AccessGrants); `recentlyApplied`: "Kind/name" -> contentHash of what this process applied
// within the pending window; `wasSegmented`: the namespace was already governed by the same
// policy at the last reconcile, so a missing object was deleted by someone (a repair).
NamespacePlan planNamespace(const std::vector<nlohmann::json>& desired,
                            const std::vector<nlohmann::json>& current,
                            const std::map<std::string, size_t>& recentlyApplied,
                            bool wasSegmented);

}  // namespace bulkhead::policy
