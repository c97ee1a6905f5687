#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/clock.h"

namespace bulkhead {

// "2026-11-29T04:00:00Z", as metav1.Time is written.
std::string formatRfc3339(WallTime t);
// "2026-11-29T04:00:00.123456Z", as metav1.MicroTime is written.
std::string formatMicroTime(WallTime t);
// Parses RFC 3339 exactly as the API server's date-time format accepts it: "T" or "t", optional
// fractional seconds, "Z"/"z" or a "+hh:mm"/"-hh:mm" offset; real calendar dates only; nullopt
// for anything else or for a time outside what WallTime can hold.
std::optional<WallTime> parseRfc3339(std::string_view text);

}  // namespace bulkhead
