#include "policy/label_selector.h"

#include <algorithm>

namespace bulkhead::policy {

bool LabelSelector::matches(const Labels& labels) const {
  for (const auto& [k, v] : matchLabels) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) {
      return false;
    }
  }
  for (const auto& r : matchExpressions) {
    auto it = labels.find(r.key);
    bool has = it != labels.end();
    bool in = has && std::find(r.values.begin(), r.values.end(), it->second) != r.values.end();
    switch (r.op) {
      case Requirement::Op::kIn:
        if (!in) return false;
        break;
      case Requirement::Op::kNotIn:
        if (in) return false;
        break;
      case Requirement::Op::kExists:
        if (!has) return false;
        break;
      case Requirement::Op::kDoesNotExist:
        if (has) return false;
        break;
    }
  }
  return true;
}

nlohmann::json LabelSelector::toJson() const {
  nlohmann::json out = nlohmann::json::object();
  if (!matchLabels.empty()) {
    out["matchLabels"] = matchLabels;
  }
  for (const auto& r : matchExpressions) {
    static constexpr const char* kOps[] = {"In", "NotIn", "Exists", "DoesNotExist"};
    nlohmann::json e = {{"key", r.key}, {"operator", kOps[static_cast<int>(r.op)]}};
    if (!r.values.empty()) {
      e["values"] = r.values;
    }
    out["matchExpressions"].push_back(e);
  }
  return out;
}

namespace {

StatusOr<LabelSelector> decodeUnchecked(const nlohmann::json& j, const std::string& path) {
  LabelSelector sel;
  if (j.is_null()) {
    return sel;
  }
  if (!j.is_object()) {
    return invalidError(path + ": must be an object");
  }
  if (auto ml = j.find("matchLabels"); ml != j.end() && !ml->is_null()) {
    if (!ml->is_object()) {
      return invalidError(path + ".matchLabels: must be a map of strings");
    }
    for (const auto& [k, v] : ml->items()) {
      if (!v.is_string()) {
        return invalidError(path + ".matchLabels." + k + ": must be a string");
      }
      sel.matchLabels[k] = v.get<std::string>();
    }
  }
  if (auto me = j.find("matchExpressions"); me != j.end() && !me->is_null()) {
    if (!me->is_array()) {
      return invalidError(path + ".matchExpressions: must be a list");
    }
    for (size_t i = 0; i < me->size(); ++i) {
      const auto& e = (*me)[i];
      std::string at = path + ".matchExpressions[" + std::to_string(i) + "]";
      if (!e.is_object() || !e.contains("key") || !e["key"].is_string()) {
        return invalidError(at + ".key: required");
      }
      LabelSelector::Requirement r;
      r.key = e["key"].get<std::string>();
      std::string op = e.value("operator", "");
      using Op = LabelSelector::Requirement::Op;
      if (op == "In") {
        r.op = Op::kIn;
      } else if (op == "NotIn") {
        r.op = Op::kNotIn;
      } else if (op == "Exists") {
        r.op = Op::kExists;
      } else if (op == "DoesNotExist") {
        r.op = Op::kDoesNotExist;
      } else {
        return invalidError(at + ".operator: \"" + op +
                            "\" is not one of In, NotIn, Exists, DoesNotExist");
      }
      if (auto vals = e.find("values"); vals != e.end() && !vals->is_null()) {
        if (!vals->is_array()) {
          return invalidError(at + ".values: must be a list of strings");
        }
        for (const auto& v : *vals) {
          if (!v.is_string()) {
            return invalidError(at + ".values: must be a list of strings");
          }
          r.values.push_back(v.get<std::string>());
        }
      }
      bool needsValues = r.op == Op::kIn || r.op == Op::kNotIn;
      if (needsValues && r.values.empty()) {
        return invalidError(at + ".values: must be non-empty for " + op);
      }
      if (!needsValues && !r.values.empty()) {
        return invalidError(at + ".values: must be empty for " + op);
      }
      sel.matchExpressions.push_back(std::move(r));
    }
  }
  return sel;
}

}  // namespace

StatusOr<LabelSelector> decodeLabelSelector(const nlohmann::json& j, const std::string& path) {
  try {
    return decodeUnchecked(j, path);
  } catch (const nlohmann::json::exception& e) {
    return invalidError(path + ": a field has the wrong type (" + e.what() + ")");
  }
}

bool isTerminating(const nlohmann::json& object) {
  auto md = object.find("metadata");
  if (md == object.end() || !md->is_object()) {
    return false;
  }
  auto ts = md->find("deletionTimestamp");
  return ts != md->end() && !ts->is_null();
}

Labels labelsOf(const nlohmann::json& object) {
  Labels out;
  auto md = object.find("metadata");
  if (md == object.end() || !md->is_object()) {
    return out;
  }
  auto labels = md->find("labels");
  if (labels == md->end() || !labels->is_object()) {
    return out;
  }
  for (const auto& [k, v] : labels->items()) {
    if (v.is_string()) {
      out[k] = v.get<std::string>();
    }
  }
  return out;
}

}  // namespace bulkhead::policy
