#include "common/flags.h"

#include <doctest/doctest.h>

namespace bulkhead {
namespace {

TEST_CASE("Go-style durations parse and print") {
  CHECK(parseDuration("10m")->count() == 600'000);
  CHECK(parseDuration("1h30m")->count() == 5'400'000);
  CHECK(parseDuration("250ms")->count() == 250);
  CHECK(parseDuration("1.5s")->count() == 1500);
  CHECK(parseDuration("0")->count() == 0);
  CHECK(parseDuration("168h")->count() == 168LL * 3'600'000);
  CHECK_FALSE(parseDuration("").ok());
  CHECK_FALSE(parseDuration("10").ok());
  CHECK_FALSE(parseDuration("5d").ok());
  CHECK(parseDuration("abc").status().message() == "invalid duration \"abc\"");
  CHECK(formatDuration(std::chrono::milliseconds(5'400'250)) == "1h30m250ms");
  CHECK(formatDuration(std::chrono::milliseconds(0)) == "0s");
}

TEST_CASE("FlagSet parses every form and reports mistakes by flag name") {
  std::string kubeconfig;
  std::int64_t burst = 100;
  double qps = 50;
  bool leaderElect = false;
  std::chrono::milliseconds resync{600'000};
  FlagSet flags("bulkhead", "test");
  flags.addString("kubeconfig", &kubeconfig, "path");
  flags.addInt("kube-burst", &burst, "burst");
  flags.addDouble("kube-qps", &qps, "qps");
  flags.addBool("leader-elect", &leaderElect, "elect");
  flags.addDuration("resync-period", &resync, "resync");

  const char* argv[] = {"bulkhead", "--kubeconfig", "/k", "--kube-burst=7", "--kube-qps=2.5",
                        "--leader-elect", "--resync-period=1m", "extra"};
  auto positional = flags.parse(8, argv);
  REQUIRE(positional.ok());
  CHECK(*positional == std::vector<std::string>{"extra"});
  CHECK(kubeconfig == "/k");
  CHECK(burst == 7);
  CHECK(qps == 2.5);
  CHECK(leaderElect);
  CHECK(resync.count() == 60'000);

  const char* unknown[] = {"bulkhead", "--nope"};
  CHECK(flags.parse(2, unknown).status().message() == "unknown flag --nope (see --help)");
  const char* missing[] = {"bulkhead", "--kubeconfig"};
  CHECK(flags.parse(2, missing).status().message() == "flag --kubeconfig needs a value");
  const char* bad[] = {"bulkhead", "--kube-burst=many"};
  CHECK(flags.parse(2, bad).status().message() ==
        "invalid value \"many\" for flag --kube-burst");
  const char* badBool[] = {"bulkhead", "--leader-elect=yes"};
  CHECK_FALSE(flags.parse(2, badBool).ok());
  CHECK(flags.usage().find("--resync-period value\n      resync (default 10m)") !=
        std::string::npos);
}

}  // namespace
}  // namespace bulkhead
