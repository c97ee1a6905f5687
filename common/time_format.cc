#include "common/time_format.h"

#include <cstdio>
#include <ctime>

namespace bulkhead {
namespace {

std::tm utc(WallTime t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return tm;
}

}  // namespace

std::string formatRfc3339(WallTime t) {
  std::tm tm = utc(t);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string formatMicroTime(WallTime t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  std::tm tm = utc(WallTime(std::chrono::seconds(us / 1'000'000)));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(us % 1'000'000));
  return buf;
}

std::optional<WallTime> parseRfc3339(std::string_view text) {
  std::string s(text);
  std::tm tm{};
  const char* rest = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == nullptr) {
    return std::nullopt;
  }
  WallTime t = std::chrono::system_clock::from_time_t(timegm(&tm));
  if (*rest == '.') {
    std::string frac;
    for (++rest; *rest >= '0' && *rest <= '9'; ++rest) {
      frac += *rest;
    }
    if (frac.empty()) {
      return std::nullopt;
    }
    frac = (frac + "000000000").substr(0, 9);
    t += std::chrono::duration_cast<WallTime::duration>(std::chrono::nanoseconds(std::stoll(frac)));
  }
  if (*rest == 'Z' || *rest == 'z') {
    return rest[1] == '\0' ? std::optional<WallTime>(t) : std::nullopt;
  }
  int hh = 0, mm = 0;
  char sign = *rest;
  if ((sign == '+' || sign == '-') && std::sscanf(rest + 1, "%2d:%2d", &hh, &mm) == 2 &&
      std::string_view(rest).size() == 6) {
    auto offset = std::chrono::hours(hh) + std::chrono::minutes(mm);
    return sign == '+' ? t - offset : t + offset;
  }
  return std::nullopt;
}

}  // namespace bulkhead
