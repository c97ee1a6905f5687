#include "common/log.h"

#include <doctest/doctest.h>

#include "common/clock.h"

namespace bulkhead {
namespace {

TEST_CASE("log lines are JSON members with escaped strings and typed values") {
  CHECK(log::formatBody("watch restarted", {{"resource", "pods"}, {"attempt", 3}}) ==
        R"("msg":"watch restarted","resource":"pods","attempt":3)");
  CHECK(log::formatBody("a \"quoted\"\nline", {{"ok", true}, {"ratio", 0.5}}) ==
        R"("msg":"a \"quoted\"\nline","ok":true,"ratio":0.5)");
  CHECK(log::formatBody("ctl", {{"c", std::string("\x01")}}) == R"("msg":"ctl","c":"\u0001")");
}

TEST_CASE("log levels parse and gate output") {
  CHECK(log::parseLevel("debug") == log::Level::kDebug);
  CHECK(log::parseLevel("warning") == log::Level::kWarn);
  CHECK_FALSE(log::parseLevel("loud").has_value());
  log::init(log::Level::kWarn);
  CHECK_FALSE(log::enabled(log::Level::kInfo));
  CHECK(log::enabled(log::Level::kError));
  log::init(log::Level::kInfo);
  CHECK(log::enabled(log::Level::kInfo));
}

TEST_CASE("the fake clock moves only when advanced, wall and monotonic together") {
  FakeClock clock;
  auto w = clock.now();
  auto m = clock.monotonicNow();
  CHECK(clock.now() == w);
  clock.advance(std::chrono::seconds(90));
  CHECK(clock.now() - w == std::chrono::seconds(90));
  CHECK(clock.monotonicNow() - m == std::chrono::seconds(90));
}

}  // namespace
}  // namespace bulkhead
