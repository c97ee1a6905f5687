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

}  // namespace bulkhead::kube
