#include "common/time_format.h"

#include <chrono>
#include <cstdint>
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

// Reads exactly `count` digits at `pos`.
bool readDigits(std::string_view text, size_t& pos, size_t count, int* out) {
  if (pos + count > text.size()) {
    return false;
  }
  int value = 0;
  for (size_t i = 0; i < count; ++i) {
    char c = text[pos + i];
    if (c < '0' || c > '9') {
      return false;
    }
    value = value * 10 + (c - '0');
  }
  pos += count;
  *out = value;
  return true;
}

bool readChar(std::string_view text, size_t& pos, char lower, char upper) {
  if (pos < text.size() && (text[pos] == lower || text[pos] == upper)) {
    ++pos;
    return true;
  }
  return false;
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
  using namespace std::chrono;
  auto malformed = [] { return std::optional<WallTime>(); };
  size_t pos = 0;
  int y = 0;
  int mo = 0;
  int d = 0;
  int h = 0;
  int mi = 0;
  int s = 0;
  if (!readDigits(text, pos, 4, &y) || !readChar(text, pos, '-', '-') ||
      !readDigits(text, pos, 2, &mo) || !readChar(text, pos, '-', '-') ||
      !readDigits(text, pos, 2, &d) || !readChar(text, pos, 't', 'T') ||
      !readDigits(text, pos, 2, &h) || !readChar(text, pos, ':', ':') ||
      !readDigits(text, pos, 2, &mi) || !readChar(text, pos, ':', ':') ||
      !readDigits(text, pos, 2, &s)) {
    return malformed();
  }
  year_month_day date{year(y), month(static_cast<unsigned>(mo)), day(static_cast<unsigned>(d))};
  if (!date.ok() || h > 23 || mi > 59 || s > 59) {
    return malformed();
  }
  int64_t nanos = 0;
  if (readChar(text, pos, '.', '.')) {
    size_t digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (digits < 9) {
        nanos = nanos * 10 + (text[pos] - '0');
      }
      ++digits;
      ++pos;
    }
    if (digits == 0) {
      return malformed();
    }
    for (size_t i = digits; i < 9; ++i) {
      nanos *= 10;
    }
  }
  int64_t offset = 0;
  if (!readChar(text, pos, 'z', 'Z')) {
    if (pos >= text.size() || (text[pos] != '+' && text[pos] != '-')) {
      return malformed();
    }
    int sign = text[pos] == '-' ? -1 : 1;
    ++pos;
    int oh = 0;
    int om = 0;
    if (!readDigits(text, pos, 2, &oh) || !readChar(text, pos, ':', ':') ||
        !readDigits(text, pos, 2, &om) || oh > 23 || om > 59) {
      return malformed();
    }
    offset = sign * (int64_t{oh} * 3600 + om * 60);
  }
  if (pos != text.size()) {
    return malformed();
  }
  int64_t secs = int64_t{sys_days(date).time_since_epoch().count()} * 86400 + int64_t{h} * 3600 +
                 mi * 60 + s - offset;
  // WallTime counts nanoseconds in an int64 on Linux: years 1677 to 2262. Keep a second of room
  // for the fraction.
  const int64_t maxSecs = duration_cast<seconds>(WallTime::duration::max()).count() - 1;
  const int64_t minSecs = duration_cast<seconds>(WallTime::duration::min()).count() + 1;
  if (secs > maxSecs || secs < minSecs) {
    return std::nullopt;
  }
  return WallTime(duration_cast<WallTime::duration>(seconds(secs))) +
         duration_cast<WallTime::duration>(nanoseconds(nanos));
}


}  // namespace bulkhead
