#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

// Structured JSON logging, one line per event on stderr:
//   {"ts":"2026-11-29T04:00:00.123Z","level":"info","msg":"watch restarted","resource":"pods"}
// The logger itself (spdlog) stays behind this header. Thread-safe.
namespace bulkhead::log {

enum class Level { kTrace, kDebug, kInfo, kWarn, kError, kOff };

// Parses "trace|debug|info|warn|error|off".
std::optional<Level> parseLevel(std::string_view name);

// Installs the JSON logger at `level`. Safe to call again to change the level.
void init(Level level);
bool enabled(Level level);

// One key/value of a log line.
struct Field {
  using Value = std::variant<std::string, std::int64_t, double, bool>;

  template <typename T>
    requires std::is_integral_v<T> && (!std::is_same_v<T, bool>)
  Field(std::string_view k, T v) : key(k), value(static_cast<std::int64_t>(v)) {}
  Field(std::string_view k, bool v) : key(k), value(v) {}
  Field(std::string_view k, double v) : key(k), value(v) {}
  Field(std::string_view k, std::string_view v) : key(k), value(std::string(v)) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(std::string(v)) {}

  std::string_view key;
  Value value;
};
using Fields = std::initializer_list<Field>;

void write(Level level, std::string_view msg, Fields fields);

inline void trace(std::string_view msg, Fields f = {}) { write(Level::kTrace, msg, f); }
inline void debug(std::string_view msg, Fields f = {}) { write(Level::kDebug, msg, f); }
inline void info(std::string_view msg, Fields f = {}) { write(Level::kInfo, msg, f); }
inline void warn(std::string_view msg, Fields f = {}) { write(Level::kWarn, msg, f); }
inline void error(std::string_view msg, Fields f = {}) { write(Level::kError, msg, f); }

// The JSON body of a line without the timestamp and level, exposed for tests:
// "msg":"...","key":value,...
std::string formatBody(std::string_view msg, Fields fields);

}  // namespace bulkhead::log
