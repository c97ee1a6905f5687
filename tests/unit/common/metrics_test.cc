#include "common/metrics.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace bulkhead::metrics {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The value printed for a single unlabeled gauge set to `value`.
std::string printed(double value) {
  Registry registry;
  registry.gauge("g", "G.").unlabeled().set(value);
  const std::string text = registry.exposition();
  const std::string prefix = "# HELP g G.\n# TYPE g gauge\ng ";
  REQUIRE(text.starts_with(prefix));
  REQUIRE(text.ends_with("\n"));
  return text.substr(prefix.size(), text.size() - prefix.size() - 1);
}

// Runs `fn` in a forked child. Returns what the child wrote to stderr if it died of SIGABRT, or
// a description of how else it ended.
std::string abortMessage(const std::function<void()>& fn) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  std::fflush(nullptr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], STDERR_FILENO);
    // doctest's crash handler would report the expected abort as a failure.
    std::signal(SIGABRT, SIG_DFL);
    fn();
    _exit(0);
  }
  close(fds[1]);
  std::string err;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) {
    err.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT) {
    return "did not abort (status " + std::to_string(status) + "): " + err;
  }
  return err;
}

TEST_CASE("a counter exposes one sample per label set, sorted by label values") {
  Registry registry;
  auto& requests = registry.counter("bulkhead_webhook_requests_total",
                                    "Admission requests handled.", {"webhook", "result"});
  requests.labels({"pods", "denied"}).inc();
  requests.labels({"pods", "allowed"}).inc(2);
  requests.labels({"pods", "denied"}).inc(0.5);
  CHECK(requests.labels({"pods", "denied"}).value() == 1.5);
  CHECK(registry.exposition() ==
        "# HELP bulkhead_webhook_requests_total Admission requests handled.\n"
        "# TYPE bulkhead_webhook_requests_total counter\n"
        "bulkhead_webhook_requests_total{webhook=\"pods\",result=\"allowed\"} 2\n"
        "bulkhead_webhook_requests_total{webhook=\"pods\",result=\"denied\"} 1.5\n");
}

TEST_CASE("families are sorted by name; unlabeled ones start at zero, labeled ones appear when "
          "a child exists") {
  Registry registry;
  auto& zeta = registry.counter("zeta_total", "Z.");
  registry.counter("beta_total", "B.", {"kind"});
  registry.gauge("alpha", "A.");
  CHECK(registry.exposition() ==
        "# HELP alpha A.\n# TYPE alpha gauge\nalpha 0\n"
        "# HELP zeta_total Z.\n# TYPE zeta_total counter\nzeta_total 0\n");
  zeta.unlabeled().inc(3);
  CHECK(&zeta.unlabeled() == &zeta.labels({}));
  registry.counter("beta_total", "B.", {"kind"}).labels({"x"});
  CHECK(registry.exposition() ==
        "# HELP alpha A.\n# TYPE alpha gauge\nalpha 0\n"
        "# HELP beta_total B.\n# TYPE beta_total counter\nbeta_total{kind=\"x\"} 0\n"
        "# HELP zeta_total Z.\n# TYPE zeta_total counter\nzeta_total 3\n");
}

TEST_CASE("a gauge is set, incremented and decremented") {
  Registry registry;
  auto& inflight = registry.gauge("bulkhead_inflight_requests", "Requests being served.");
  Gauge& g = inflight.unlabeled();
  g.set(3);
  g.inc();
  g.dec(0.5);
  CHECK(g.value() == 3.5);
  auto& queue = registry.gauge("bulkhead_queue_depth", "Keys waiting.", {"controller"});
  queue.labels({"namespaces"}).dec(2);
  queue.labels({"grants"}).inc();
  CHECK(registry.exposition() ==
        "# HELP bulkhead_inflight_requests Requests being served.\n"
        "# TYPE bulkhead_inflight_requests gauge\n"
        "bulkhead_inflight_requests 3.5\n"
        "# HELP bulkhead_queue_depth Keys waiting.\n"
        "# TYPE bulkhead_queue_depth gauge\n"
        "bulkhead_queue_depth{controller=\"grants\"} 1\n"
        "bulkhead_queue_depth{controller=\"namespaces\"} -2\n");
}

TEST_CASE("a histogram exposes cumulative buckets with inclusive bounds, +Inf, sum and count") {
  Registry registry;
  auto& latency = registry.histogram("bulkhead_request_duration_seconds", "Request latency.",
                                     {"handler"}, {0.25, 0.5, 1});
  Histogram& h = latency.labels({"validate"});
  for (double v : {0.125, 0.25, 0.375, 1.0, 7.0}) {
    h.observe(v);
  }
  latency.labels({"mutate"}).observe(0.5);
  CHECK(h.cumulativeCounts() == std::vector<std::uint64_t>{2, 3, 4, 5});
  CHECK(h.count() == 5);
  CHECK(h.sum() == 8.75);
  CHECK(registry.exposition() ==
        "# HELP bulkhead_request_duration_seconds Request latency.\n"
        "# TYPE bulkhead_request_duration_seconds histogram\n"
        "bulkhead_request_duration_seconds_bucket{handler=\"mutate\",le=\"0.25\"} 0\n"
        "bulkhead_request_duration_seconds_bucket{handler=\"mutate\",le=\"0.5\"} 1\n"
        "bulkhead_request_duration_seconds_bucket{handler=\"mutate\",le=\"1\"} 1\n"
        "bulkhead_request_duration_seconds_bucket{handler=\"mutate\",le=\"+Inf\"} 1\n"
        "bulkhead_request_duration_seconds_sum{handler=\"mutate\"} 0.5\n"
        "bulkhead_request_duration_seconds_count{handler=\"mutate\"} 1\n"
        "bulkhead_request_duration_seconds_bucket{handler=\"validate\",le=\"0.25\"} 2\n"
        "bulkhead_request_duration_seconds_bucket{handler=\"validate\",le=\"0.5\"} 3\n"
        "bulkhead_request_duration_seconds_bucket{handler=\"validate\",le=\"1\"} 4\n"
        "bulkhead_request_duration_seconds_bucket{handler=\"validate\",le=\"+Inf\"} 5\n"
        "bulkhead_request_duration_seconds_sum{handler=\"validate\"} 8.75\n"
        "bulkhead_request_duration_seconds_count{handler=\"validate\"} 5\n");
}

TEST_CASE("the default histogram buckets cover 0.5 ms to 10 s") {
  Registry registry;
  registry.histogram("reconcile_seconds", "Reconcile latency.").unlabeled().observe(0.003);
  CHECK(registry.exposition() ==
        "# HELP reconcile_seconds Reconcile latency.\n"
        "# TYPE reconcile_seconds histogram\n"
        "reconcile_seconds_bucket{le=\"0.0005\"} 0\n"
        "reconcile_seconds_bucket{le=\"0.001\"} 0\n"
        "reconcile_seconds_bucket{le=\"0.0025\"} 0\n"
        "reconcile_seconds_bucket{le=\"0.005\"} 1\n"
        "reconcile_seconds_bucket{le=\"0.01\"} 1\n"
        "reconcile_seconds_bucket{le=\"0.025\"} 1\n"
        "reconcile_seconds_bucket{le=\"0.05\"} 1\n"
        "reconcile_seconds_bucket{le=\"0.1\"} 1\n"
        "reconcile_seconds_bucket{le=\"0.25\"} 1\n"
        "reconcile_seconds_bucket{le=\"0.5\"} 1\n"
        "reconcile_seconds_bucket{le=\"1\"} 1\n"
        "reconcile_seconds_bucket{le=\"2.5\"} 1\n"
        "reconcile_seconds_bucket{le=\"5\"} 1\n"
        "reconcile_seconds_bucket{le=\"10\"} 1\n"
        "reconcile_seconds_bucket{le=\"+Inf\"} 1\n"
        "reconcile_seconds_sum 0.003\n"
        "reconcile_seconds_count 1\n");
}

TEST_CASE("a histogram counts NaN in +Inf only, and an explicit trailing +Inf bound is implied") {
  Registry registry;
  Histogram& h = registry.histogram("h", "H.", {}, {1, kInf}).unlabeled();
  h.observe(std::nan(""));
  h.observe(0.5);
  CHECK(h.bounds() == std::vector<double>{1});
  CHECK(registry.exposition() ==
        "# HELP h H.\n# TYPE h histogram\n"
        "h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum NaN\nh_count 2\n");
}

TEST_CASE("help escapes backslash and newline; label values also escape the double quote") {
  Registry registry;
  registry.counter("c_total", "Counts \"things\" in C:\\dir\nsecond line.", {"path"})
      .labels({"a\"b\\c\nd"})
      .inc();
  CHECK(registry.exposition() ==
        "# HELP c_total Counts \"things\" in C:\\\\dir\\nsecond line.\n"
        "# TYPE c_total counter\n"
        "c_total{path=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST_CASE("numbers print like the Prometheus clients: integers bare, others round-tripping") {
  CHECK(printed(0) == "0");
  CHECK(printed(3) == "3");
  CHECK(printed(-42) == "-42");
  CHECK(printed(1e6) == "1000000");
  CHECK(printed(123456789012.0) == "123456789012");
  CHECK(printed(1e15) == "1e+15");
  CHECK(printed(0.1) == "0.1");
  CHECK(printed(0.1 + 0.2) == "0.30000000000000004");
  CHECK(printed(-2.5) == "-2.5");
  CHECK(printed(1e-7) == "1e-07");
  CHECK(printed(kInf) == "+Inf");
  CHECK(printed(-kInf) == "-Inf");
  CHECK(printed(std::nan("")) == "NaN");
  for (double v : {1.0 / 3, 2.0 / 3 * 1e20, 6.02214076e23, 1.602176634e-19, 1234567.125,
                   std::numeric_limits<double>::max(), std::numeric_limits<double>::denorm_min()}) {
    CHECK(std::strtod(printed(v).c_str(), nullptr) == v);
  }
}

TEST_CASE("registering the same name again returns the same family") {
  Registry registry;
  auto& first = registry.counter("shared_total", "Shared.", {"kind"});
  first.labels({"a"}).inc();
  auto& second = registry.counter("shared_total", "Shared.", {"kind"});
  CHECK(&first == &second);
  CHECK(&first.labels({"a"}) == &second.labels({"a"}));
  CHECK(second.labels({"a"}).value() == 1);
  auto& h1 = registry.histogram("shared_seconds", "S.", {}, {0.1, 1});
  auto& h2 = registry.histogram("shared_seconds", "S.", {}, {0.1, 1, kInf});
  CHECK(&h1 == &h2);
  CHECK(&defaultRegistry() == &defaultRegistry());
}

TEST_CASE("a child keeps its address while other children are added") {
  Registry registry;
  auto& family = registry.counter("per_namespace_total", "P.", {"namespace"});
  Counter& first = family.labels({"first"});
  first.inc();
  for (int i = 0; i < 1000; ++i) {
    family.labels({"ns-" + std::to_string(i)}).inc();
  }
  CHECK(&family.labels({"first"}) == &first);
  CHECK(first.value() == 1);
}

TEST_CASE("misuse is a bug: it aborts with a message saying what was wrong") {
  Registry registry;
  auto& requests = registry.counter("requests_total", "Requests.", {"result"});
  registry.histogram("latency_seconds", "Latency.", {}, {0.1, 1});
  registry.gauge("depth_sum", "D.");
  CHECK(abortMessage([&] { registry.gauge("requests_total", "Requests.", {"result"}); }) ==
        "bulkhead::metrics: metric \"requests_total\" is already registered as counter [result] "
        "\"Requests.\"; cannot register it as gauge [result] \"Requests.\"\n");
  CHECK(abortMessage([&] { registry.counter("requests_total", "Requests.", {"code"}); }) ==
        "bulkhead::metrics: metric \"requests_total\" is already registered as counter [result] "
        "\"Requests.\"; cannot register it as counter [code] \"Requests.\"\n");
  CHECK(abortMessage([&] { registry.counter("requests_total", "Other help.", {"result"}); }) ==
        "bulkhead::metrics: metric \"requests_total\" is already registered as counter [result] "
        "\"Requests.\"; cannot register it as counter [result] \"Other help.\"\n");
  CHECK(abortMessage([&] { registry.histogram("latency_seconds", "Latency.", {}, {0.5}); }) ==
        "bulkhead::metrics: metric \"latency_seconds\" is already registered as histogram [] le "
        "[0.1, 1] \"Latency.\"; cannot register it as histogram [] le [0.5] \"Latency.\"\n");
  CHECK(abortMessage([&] { registry.counter("latency_seconds_count", "C."); }) ==
        "bulkhead::metrics: metric \"latency_seconds_count\" collides with histogram "
        "\"latency_seconds\"\n");
  CHECK(abortMessage([&] { registry.histogram("depth", "D."); }) ==
        "bulkhead::metrics: histogram \"depth\" collides with metric \"depth_sum\"\n");
  CHECK(abortMessage([&] { requests.labels({"ok", "extra"}); }) ==
        "bulkhead::metrics: metric \"requests_total\" has labels [result]; got 2 label values\n");
  CHECK(abortMessage([&] { registry.counter("1st_total", "F."); }) ==
        "bulkhead::metrics: invalid metric name \"1st_total\"\n");
  CHECK(abortMessage([&] { registry.counter("x_total", "X.", {"__name"}); }) ==
        "bulkhead::metrics: metric \"x_total\": invalid label name \"__name\"\n");
  CHECK(abortMessage([&] { registry.counter("x_total", "X.", {"a", "a"}); }) ==
        "bulkhead::metrics: metric \"x_total\": duplicate label name \"a\"\n");
  CHECK(abortMessage([&] { registry.histogram("x_seconds", "X.", {"le"}); }) ==
        "bulkhead::metrics: histogram \"x_seconds\": label name \"le\" is reserved\n");
  CHECK(abortMessage([&] { registry.histogram("x_seconds", "X.", {}, {1, 0.5}); }) ==
        "bulkhead::metrics: histogram \"x_seconds\": buckets must be finite and strictly "
        "increasing, got [1, 0.5]\n");
  CHECK(abortMessage([&] { requests.labels({"ok"}).inc(-1); }) ==
        "bulkhead::metrics: counter inc() by -1; counters only go up\n");
  CHECK(abortMessage([&] { requests.labels({"ok"}).inc(std::nan("")); }) ==
        "bulkhead::metrics: counter inc() by NaN; counters only go up\n");
  CHECK(abortMessage([] {}) == "did not abort (status 0): ");
}

TEST_CASE("concurrent increments of one cached child are all counted") {
  Registry registry;
  Counter& counter = registry.counter("hits_total", "Hits.", {"path"}).labels({"/validate"});
  Gauge& gauge = registry.gauge("level", "Level.").unlabeled();
  Histogram& histogram = registry.histogram("size", "Size.", {}, {1}).unlabeled();
  constexpr int kThreads = 4;
  constexpr int kIterations = 100'000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIterations; ++i) {
        counter.inc();
        if (t % 2 == 0) {
          gauge.inc(2);
        } else {
          gauge.dec();
        }
        histogram.observe(0.5);
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  CHECK(counter.value() == kThreads * kIterations);
  CHECK(gauge.value() == kIterations * (kThreads / 2));
  CHECK(histogram.count() == kThreads * kIterations);
  CHECK(histogram.sum() == 0.5 * kThreads * kIterations);
  CHECK(registry.exposition() ==
        "# HELP hits_total Hits.\n# TYPE hits_total counter\n"
        "hits_total{path=\"/validate\"} 400000\n"
        "# HELP level Level.\n# TYPE level gauge\nlevel 200000\n"
        "# HELP size Size.\n# TYPE size histogram\n"
        "size_bucket{le=\"1\"} 400000\nsize_bucket{le=\"+Inf\"} 400000\n"
        "size_sum 200000\nsize_count 400000\n");
}

TEST_CASE("lookups, registrations and expositions may run concurrently") {
  Registry registry;
  constexpr int kIterations = 2'000;
  constexpr int kLabels = 50;
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) {
      (void)registry.exposition();
      std::this_thread::yield();  // contend, but do not starve the writers
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < 2; ++t) {
    workers.emplace_back([&] {
      for (int i = 0; i < kIterations; ++i) {
        registry.counter("by_label_total", "B.", {"n"})
            .labels({std::to_string(i % kLabels)})
            .inc();
      }
    });
  }
  for (auto& worker : workers) {
    worker.join();
  }
  done.store(true);
  scraper.join();
  auto& family = registry.counter("by_label_total", "B.", {"n"});
  for (int n = 0; n < kLabels; ++n) {
    CHECK(family.labels({std::to_string(n)}).value() == 2 * kIterations / kLabels);
  }
}

}  // namespace
}  // namespace bulkhead::metrics
