#include "kube/yaml.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>

namespace bulkhead::kube {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

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

Status readManifest(const std::string& path, std::vector<ManifestDocument>& out) {
  std::vector<std::string> files;
  if (path == "-") {
    files.push_back("-");
  } else if (fs::is_directory(path)) {
    for (const auto& e : fs::recursive_directory_iterator(path)) {
      const auto ext = e.path().extension();
      if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json")) {
        files.push_back(e.path().string());
      }
    }
    std::sort(files.begin(), files.end());
  } else if (fs::exists(path)) {
    files.push_back(path);
  } else {
    return invalidError(path + ": no such file or directory");
  }
  for (const auto& file : files) {
    std::stringstream text;
    if (file == "-") {
      text << std::cin.rdbuf();
    } else {
      std::ifstream in(file);
      if (!in) {
        return invalidError(file + ": cannot be read");
      }
      text << in.rdbuf();
    }
    auto docs = parseYamlDocuments(text.str());
    if (!docs.ok()) {
      return invalidError(file + ": " + docs.status().message());
    }
    for (size_t i = 0; i < docs->size(); ++i) {
      json& doc = (*docs)[i];
      if (!doc.is_object()) {
        return invalidError(file + ": document " + std::to_string(i) + " is not an object");
      }
      const std::string kind = doc.value("kind", "");
      if (kind.ends_with("List") && doc.contains("items")) {
        const json& items = doc["items"];
        for (size_t j = 0; items.is_array() && j < items.size(); ++j) {
          out.push_back({file, std::to_string(i) + ".items[" + std::to_string(j) + "]", items[j]});
        }
        continue;
      }
      out.push_back({file, std::to_string(i), std::move(doc)});
    }
  }
  return okStatus();
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

StatusOr<std::vector<ManifestDocument>> readManifests(const std::vector<std::string>& paths) {
  std::vector<ManifestDocument> out;
  for (const auto& path : paths) {
    RETURN_IF_ERROR(readManifest(path, out));
  }
  return out;
}

}  // namespace bulkhead::kube
