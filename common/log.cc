#include "common/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <memory>

namespace bulkhead::log {
namespace {

spdlog::level::level_enum toSpdlog(Level level) {
  switch (level) {
    case Level::kTrace: return spdlog::level::trace;
    case Level::kDebug: return spdlog::level::debug;
    case Level::kInfo: return spdlog::level::info;
    case Level::kWarn: return spdlog::level::warn;
    case Level::kError: return spdlog::level::err;
    case Level::kOff: return spdlog::level::off;
  }
  std::abort();
}

void appendEscaped(std::string& out, std::string_view s) {
  out += '"';
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

std::shared_ptr<spdlog::logger> makeLogger() {
  auto logger = std::make_shared<spdlog::logger>(
      "bulkhead", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  // Every line is a JSON object; the body (%v) is already escaped JSON members.
  logger->set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v})", spdlog::pattern_time_type::utc);
  logger->flush_on(spdlog::level::trace);
  return logger;
}

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto l = makeLogger();
    l->set_level(spdlog::level::info);
    return l;
  }();
  return *instance;
}

}  // namespace

std::optional<Level> parseLevel(std::string_view name) {
  if (name == "trace") return Level::kTrace;
  if (name == "debug") return Level::kDebug;
  if (name == "info") return Level::kInfo;
  if (name == "warn" || name == "warning") return Level::kWarn;
  if (name == "error") return Level::kError;
  if (name == "off") return Level::kOff;
  return std::nullopt;
}

void init(Level level) { logger().set_level(toSpdlog(level)); }

bool enabled(Level level) { return logger().should_log(toSpdlog(level)); }

std::string formatBody(std::string_view msg, Fields fields) {
  std::string out = "\"msg\":";
  appendEscaped(out, msg);
  for (const Field& f : fields) {
    out += ',';
    appendEscaped(out, f.key);
    out += ':';
    if (const auto* s = std::get_if<std::string>(&f.value)) {
      appendEscaped(out, *s);
    } else if (const auto* i = std::get_if<std::int64_t>(&f.value)) {
      out += std::to_string(*i);
    } else if (const auto* d = std::get_if<double>(&f.value)) {
      if (std::isfinite(*d)) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.6g", *d);
        out += buf;
      } else {
        out += "null";
      }
    } else {
      out += std::get<bool>(f.value) ? "true" : "false";
    }
  }
  return out;
}

void write(Level level, std::string_view msg, Fields fields) {
  auto lvl = toSpdlog(level);
  if (!logger().should_log(lvl)) {
    return;
  }
  logger().log(lvl, "{}", formatBody(msg, fields));
}

}  // namespace bulkhead::log
