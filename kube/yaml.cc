#include "kube/yaml.h"

#include <yaml-cpp/yaml.h>

#include <regex>

namespace bulkhead::kube {
namespace {

using nlohmann::json;

json scalar(const YAML::Node& node) {
  const std::string& v = node.Scalar();
  if (node.Tag() == "!" || node.Tag() == "tag:yaml.org,2002:str") {
    return v;  // quoted, or tagged as a string
  }
  if (v.size() > 32) {
    return v;  // no boolean, null or number is that long (and regex recursion grows with it)
  }
  static const std::regex kTrue("y|Y|yes|Yes|YES|true|True|TRUE|on|On|ON");
  static const std::regex kFalse("n|N|no|No|NO|false|False|FALSE|off|Off|OFF");
  static const std::regex kNull("~|null|Null|NULL|");
  static const std::regex kInt("[-+]?(0|[1-9][0-9]*)");
  static const std::regex kHex("0x[0-9a-fA-F]+");
  static const std::regex kFloat(R"([-+]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?)");
  if (std::regex_match(v, kNull)) {
    return nullptr;
  }
  if (std::regex_match(v, kTrue)) {
    return true;
  }
  if (std::regex_match(v, kFalse)) {
    return false;
  }
  try {
    if (std::regex_match(v, kInt)) {
      return std::stoll(v);
    }
    if (std::regex_match(v, kHex)) {
      return std::stoll(v, nullptr, 16);
    }
    if (std::regex_match(v, kFloat)) {
      return std::stod(v);
    }
  } catch (const std::out_of_range&) {
    // Too large for an int64: kept as written.
  }
  return v;
}

json toJson(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return nullptr;
    case YAML::NodeType::Scalar:
      return scalar(node);
    case YAML::NodeType::Sequence: {
      json out = json::array();
      for (const auto& item : node) {
        out.push_back(toJson(item));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& entry : node) {
        out[entry.first.as<std::string>()] = toJson(entry.second);
      }
      return out;
    }
  }
  return nullptr;
}

}  // namespace

StatusOr<std::vector<json>> parseYamlDocuments(const std::string& text) {
  std::vector<YAML::Node> nodes;
  try {
    nodes = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    return invalidError("not YAML: line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  std::vector<json> out;
  for (size_t i = 0; i < nodes.size(); ++i) {
    try {
      json doc = toJson(nodes[i]);
      if (!doc.is_null()) {
        out.push_back(std::move(doc));
      }
    } catch (const YAML::Exception& e) {
      return invalidError("document " + std::to_string(i) + ": " + e.msg);
    }
  }
  return out;
}

}  // namespace bulkhead::kube
