#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/status.h"

namespace bulkhead::kube {

// One event of a watch stream (a line of `{"type": ..., "object": ...}`).
struct WatchEvent {
  enum class Type { kAdded, kModified, kDeleted, kBookmark, kError };
  Type type = Type::kAdded;
  nlohmann::json object;
};

std::string_view watchEventTypeName(WatchEvent::Type type);

// Parses one line of a watch stream. Invalid for malformed JSON, a missing object or an unknown
// event type. An ERROR event's object is the API's Status (e.g. 410 Gone); it parses fine.
StatusOr<WatchEvent> parseWatchEvent(std::string_view line);

// The Status an ERROR event carries, mapped to our codes (410 -> Gone).
Status watchErrorStatus(const nlohmann::json& statusObject);

// Splits a byte stream that arrives in arbitrary chunks into newline-terminated lines. Not
// thread-safe; one per stream. Lines longer than `maxLine` are an error (the stream is corrupt).
class LineSplitter {
 public:
  explicit LineSplitter(size_t maxLine = 64 << 20) : maxLine_(maxLine) {}
  // Calls `onLine` for every complete line in `chunk` (without the '\n'; empty lines skipped).
  Status feed(std::string_view chunk, const std::function<void(std::string_view)>& onLine);
  // Bytes of an unfinished line held back.
  size_t pending() const { return partial_.size(); }

 private:
  size_t maxLine_;
  std::string partial_;
};

}  // namespace bulkhead::kube
