#include "kube/watch.h"

#include "kube/api_status.h"

namespace bulkhead::kube {

std::string_view watchEventTypeName(WatchEvent::Type type) {
  switch (type) {
    case WatchEvent::Type::kAdded: return "ADDED";
    case WatchEvent::Type::kModified: return "MODIFIED";
    case WatchEvent::Type::kDeleted: return "DELETED";
    case WatchEvent::Type::kBookmark: return "BOOKMARK";
    case WatchEvent::Type::kError: return "ERROR";
  }
  std::abort();
}

StatusOr<WatchEvent> parseWatchEvent(std::string_view line) {
  nlohmann::json doc = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return invalidError("watch line is not a JSON object: " +
                        std::string(line.substr(0, 120)));
  }
  auto type = doc.find("type");
  auto object = doc.find("object");
  if (type == doc.end() || !type->is_string() || object == doc.end() || !object->is_object()) {
    return invalidError("watch event without type or object: " + std::string(line.substr(0, 120)));
  }
  WatchEvent event;
  const auto& t = type->get_ref<const std::string&>();
  if (t == "ADDED") {
    event.type = WatchEvent::Type::kAdded;
  } else if (t == "MODIFIED") {
    event.type = WatchEvent::Type::kModified;
  } else if (t == "DELETED") {
    event.type = WatchEvent::Type::kDeleted;
  } else if (t == "BOOKMARK") {
    event.type = WatchEvent::Type::kBookmark;
  } else if (t == "ERROR") {
    event.type = WatchEvent::Type::kError;
  } else {
    return invalidError("watch event of unknown type \"" + t + "\"");
  }
  event.object = std::move(*object);
  return event;
}

Status watchErrorStatus(const nlohmann::json& statusObject) {
  auto c = statusObject.find("code");
  int code = c != statusObject.end() && c->is_number_integer() ? c->get<int>() : 500;
  return statusFromApi(code, statusObject.dump(-1, ' ', false,
                                               nlohmann::json::error_handler_t::replace));
}

Status LineSplitter::feed(std::string_view chunk,
                          const std::function<void(std::string_view)>& onLine) {
  while (!chunk.empty()) {
    auto nl = chunk.find('\n');
    if (nl == std::string_view::npos) {
      if (partial_.size() + chunk.size() > maxLine_) {
        partial_.clear();
        return invalidError("watch line longer than " + std::to_string(maxLine_) + " bytes");
      }
      partial_.append(chunk);
      return okStatus();
    }
    std::string_view piece = chunk.substr(0, nl);
    chunk.remove_prefix(nl + 1);
    if (partial_.empty()) {
      if (!piece.empty()) {
        onLine(piece);
      }
    } else {
      partial_.append(piece);
      std::string line = std::move(partial_);
      partial_.clear();
      onLine(line);
    }
  }
  return okStatus();
}

}  // namespace bulkhead::kube
