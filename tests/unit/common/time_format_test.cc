#include "common/time_format.h"

#include <doctest/doctest.h>

namespace bulkhead {
namespace {

using namespace std::chrono;

TEST_CASE("RFC 3339 times format and parse as the API server writes them") {
  WallTime t = system_clock::from_time_t(1'800'000'000) + microseconds(123'456);
  CHECK(formatRfc3339(t) == "2027-01-15T08:00:00Z");
  CHECK(formatMicroTime(t) == "2027-01-15T08:00:00.123456Z");
  CHECK(parseRfc3339("2027-01-15T08:00:00Z") == system_clock::from_time_t(1'800'000'000));
  CHECK(parseRfc3339("2027-01-15T08:00:00.123456Z") == t);
  CHECK(parseRfc3339("2027-01-15T10:00:00+02:00") == system_clock::from_time_t(1'800'000'000));
  CHECK(parseRfc3339("2027-01-15T07:30:00-00:30") == system_clock::from_time_t(1'800'000'000));
  CHECK_FALSE(parseRfc3339("2027-01-15").has_value());
  CHECK_FALSE(parseRfc3339("2027-01-15T08:00:00").has_value());
  CHECK_FALSE(parseRfc3339("2027-01-15T08:00:00.Z").has_value());
  CHECK_FALSE(parseRfc3339("2027-01-15T08:00:00Zjunk").has_value());
  CHECK_FALSE(parseRfc3339("tomorrow").has_value());
  CHECK(parseRfc3339("2027-01-15t08:00:00z") == system_clock::from_time_t(1'800'000'000));
  CHECK_FALSE(parseRfc3339("2026-02-30T00:00:00Z").has_value());  // no such day
  CHECK_FALSE(parseRfc3339("2026-01-01T00:00:60Z").has_value());
  CHECK_FALSE(parseRfc3339("2026-01-01T00:00:00+0200").has_value());
  CHECK_FALSE(parseRfc3339("9999-12-31T00:00:00Z").has_value());  // beyond WallTime
}

}  // namespace
}  // namespace bulkhead
