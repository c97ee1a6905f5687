#pragma once

#include <string>
#include <string_view>

namespace bulkhead {

// `s` with ASCII letters lowered and every other byte kept: Kubernetes kinds, Istio enum values
// and the like, never case-folded with Unicode rules.
inline std::string asciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

}  // namespace bulkhead
