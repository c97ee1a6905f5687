#include "kube/api_status.h"

#include <nlohmann/json.hpp>

namespace bulkhead::kube {

Status statusFromApi(int httpCode, std::string_view body) {
  std::string reason;
  std::string message;
  nlohmann::json doc = nlohmann::json::parse(body, nullptr, false);
  auto str = [&](const char* key) {
    auto it = doc.find(key);
    return it != doc.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (!doc.is_discarded() && doc.is_object() && str("kind") == "Status") {
    reason = str("reason");
    message = str("message");
    if (auto c = doc.find("code"); c != doc.end() && c->is_number_integer()) {
      httpCode = c->get<int>();
    }
  }
  if (message.empty()) {
    std::string snippet(body.substr(0, 200));
    message = "HTTP " + std::to_string(httpCode) +
              (snippet.empty() ? std::string() : ": " + snippet);
  }
  StatusCode code;
  switch (httpCode) {
    case 400:
    case 422: code = StatusCode::kInvalid; break;
    case 401: code = StatusCode::kUnauthorized; break;
    case 403: code = StatusCode::kForbidden; break;
    case 404: code = StatusCode::kNotFound; break;
    case 409:
      code = reason == "AlreadyExists" ? StatusCode::kAlreadyExists : StatusCode::kConflict;
      break;
    case 410: code = StatusCode::kGone; break;
    case 413: code = StatusCode::kTooLarge; break;
    case 429: code = StatusCode::kTooManyRequests; break;
    case 408:
    case 504: code = StatusCode::kTimeout; break;
    case 502:
    case 503: code = StatusCode::kUnavailable; break;
    default: code = httpCode >= 500 ? StatusCode::kInternal : StatusCode::kInvalid;
  }
  return Status(code, message);
}

}  // namespace bulkhead::kube
