#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace bulkhead::kube {

// The documents of a YAML stream (`---`-separated, as kubectl and `helm template` write them) as
// JSON, typed the way kubectl reads manifests (sigs.k8s.io/yaml, YAML 1.1): unquoted true/false,
// yes/no, on/off, y/n (any of their usual casings) are booleans, unquoted numbers are numbers,
// ~ and null are null, quoted scalars are always strings. Empty documents are skipped. A JSON
// document is YAML too. Invalid, saying which document and line, when the text is not YAML.
StatusOr<std::vector<nlohmann::json>> parseYamlDocuments(const std::string& text);

// One object read from a manifest.
struct ManifestDocument {
  std::string source;  // the file, or "-" for stdin
  std::string where;   // the document's index, "3", or "3.items[1]" inside a List
  nlohmann::json object;
};

// The objects of manifests as kubectl -f takes them: files, directories (their *.yaml, *.yml
// and *.json files, recursively, in name order) and "-" for stdin; Lists are flattened. Invalid,
// naming the file (and the document), for a missing file, text that is not YAML, or a document
// that is not an object.
StatusOr<std::vector<ManifestDocument>> readManifests(const std::vector<std::string>& paths);

}  // namespace bulkhead::kube
