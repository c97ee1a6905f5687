#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace bulkhead::policy {

using Labels = std::map<std::string, std::string>;

// A Kubernetes LabelSelector (metav1.LabelSelector) with the API server's semantics: every
// matchLabels entry and every matchExpressions requirement must hold; an empty selector
// matches everything.
struct LabelSelector {
  struct Requirement {
    enum class Op { kIn, kNotIn, kExists, kDoesNotExist };
    std::string key;
    Op op = Op::kExists;
    std::vector<std::string> values;
    bool operator==(const Requirement&) const = default;
  };

  Labels matchLabels;
  std::vector<Requirement> matchExpressions;

  bool empty() const { return matchLabels.empty() && matchExpressions.empty(); }
  bool matches(const Labels& labels) const;
  // The canonical JSON form, {} when empty.
  nlohmann::json toJson() const;
  bool operator==(const LabelSelector&) const = default;
};

// Decodes a LabelSelector; `path` names the field in error messages. Invalid for unknown
// operators, values given with Exists/DoesNotExist, or missing values with In/NotIn.
StatusOr<LabelSelector> decodeLabelSelector(const nlohmann::json& j, const std::string& path);

// metadata.labels of an object, {} when absent.
Labels labelsOf(const nlohmann::json& object);

// Is the object being deleted (metadata.deletionTimestamp set)?
bool isTerminating(const nlohmann::json& object);

}  // namespace bulkhead::policy
