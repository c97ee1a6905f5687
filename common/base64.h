#pragma once

#include <optional>
#include <string>
#include <string_view>

// Standard base64 (RFC 4648, with padding), as Kubernetes uses for Secret data and caBundle.
namespace bulkhead {

std::string base64Encode(std::string_view in);

// nullopt for anything that is not padded base64 of the standard alphabet (no whitespace).
std::optional<std::string> base64Decode(std::string_view in);

}  // namespace bulkhead
