// Benchmark: N AccessGrants expiring in the same second. How late is each flow closed (the last
// of its generated objects deleted, as a watch sees it) after its expiresAt, and what does the
// expiry cost in API writes?
//
// Starts its own control plane with Bulkhead's and Istio's CRDs, one policy (no approval, Istio
// authorization default-deny, so each grant writes an ingress and an egress NetworkPolicy and an
// AuthorizationPolicy), the real `bulkhead` binary, and N grants from namespace grant-src to
// grant-dst all expiring at the same whole second. Phases, each of which must complete (the exit
// code says whether all did):
//   activation  until every grant's objects exist
//   expiry      until every grant's objects are gone: revoke lag p50/p99/max after expiresAt
//   status      until every grant says Expired
//
//   grant_expiry_bench [--grants 1000] [--kube-qps 500] [--kube-burst 1000] [--workers 8]
// scripts/test.sh runs it at a smoke size (ctest -L bench).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/flags.h"
#include "common/log.h"
#include "common/time_format.h"
#include "kube/client.h"
#include "tests/support/bench_util.h"
#include "tests/support/control_plane.h"

namespace bulkhead {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using testing::cpuSeconds;
using testing::freePort;
using testing::secondsSince;
using testing::Steady;

const kube::ResourceType& kPolicies = kube::resources::kSegmentationPolicies;
const kube::ResourceType& kGrants = kube::resources::kAccessGrants;
const kube::ResourceType& kAuthorizationPolicies = kube::resources::kAuthorizationPolicies;
constexpr const char* kGrantObjects = "app.kubernetes.io/managed-by=bulkhead,bulkhead.dev/grant";

// Counts each grant's live generated objects from a watch (ADDED +1, DELETED -1) and remembers
// when its count last reached zero.
class ObjectWatch {
 public:
  ObjectWatch(std::shared_ptr<kube::Client> client, const kube::ResourceType& type)
      : client_(std::move(client)), type_(type), thread_([this] { run(); }) {}
  ~ObjectWatch() {
    stopping_ = true;
    if (auto s = stream_.load()) {
      s->cancel();
    }
    thread_.join();
  }
  std::map<std::string, int> live() {
    std::lock_guard lock(mu_);
    return live_;
  }
  std::map<std::string, std::chrono::system_clock::time_point> closed() {
    std::lock_guard lock(mu_);
    return closed_;
  }

 private:
  void run() {
    std::string rv;
    while (!stopping_) {
      if (rv.empty()) {
        kube::ListOptions lo;
        lo.labelSelector = kGrantObjects;
        auto list = client_->list(type_, "", lo);
        if (!list.ok()) {
          std::this_thread::sleep_for(milliseconds(200));
          continue;
        }
        std::lock_guard lock(mu_);
        for (const auto& o : list->items) {
          ++live_[grantOf(o)];
        }
        rv = list->resourceVersion;
      }
      kube::WatchOptions wo;
      wo.labelSelector = kGrantObjects;
      wo.resourceVersion = rv;
      auto stream = client_->watch(type_, "", wo);
      if (!stream.ok()) {
        std::this_thread::sleep_for(milliseconds(200));
        continue;
      }
      stream_ = stream->get();
      while (!stopping_) {
        auto next = (*stream)->next();
        if (!next.ok() || !next->has_value()) {
          break;
        }
        const auto& event = **next;
        rv = event.object["metadata"].value("resourceVersion", rv);
        std::lock_guard lock(mu_);
        if (event.type == kube::WatchEvent::Type::kAdded) {
          ++live_[grantOf(event.object)];
        } else if (event.type == kube::WatchEvent::Type::kDeleted) {
          if (--live_[grantOf(event.object)] == 0) {
            closed_[grantOf(event.object)] = std::chrono::system_clock::now();
          }
        }
      }
      stream_ = nullptr;
    }
  }
  static std::string grantOf(const json& o) {
    return o["metadata"]["labels"].value("bulkhead.dev/grant", "");
  }

  std::shared_ptr<kube::Client> client_;
  kube::ResourceType type_;
  std::atomic<bool> stopping_{false};
  std::atomic<kube::WatchStream*> stream_{nullptr};
  std::mutex mu_;
  std::map<std::string, int> live_;
  std::map<std::string, std::chrono::system_clock::time_point> closed_;
  std::thread thread_;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

int run(int argc, char** argv) {
  std::int64_t grants = 1000;
  double qps = 500;
  std::int64_t burst = 1000;
  std::int64_t workers = 8;
  FlagSet flags("grant_expiry_bench", "Revoke lag and writes of AccessGrants expiring together.");
  flags.addInt("grants", &grants, "grants expiring in the same second");
  flags.addDouble("kube-qps", &qps, "the controller's --kube-qps");
  flags.addInt("kube-burst", &burst, "the controller's --kube-burst");
  flags.addInt("workers", &workers, "the controller's --workers");
  if (auto parsed = flags.parse(argc, argv); !parsed.ok()) {
    std::cerr << parsed.status().message() << "\n" << flags.usage();
    return 2;
  }
  log::init(log::Level::kWarn);
  if (!testing::ControlPlane::start()) {
    return 1;
  }
  auto& cp = testing::ControlPlane::get();
  auto setup = cp.shell(
      "kubectl apply --server-side -f " BULKHEAD_SOURCE_DIR
      "/crds/ -f \"$TESTENV_ISTIO_CRDS\" "
      ">/dev/null && kubectl wait --for condition=established --timeout=60s "
      "crd/accessgrants.bulkhead.dev crd/authorizationpolicies.security.istio.io >/dev/null && "
      "kubectl create namespace grant-src >/dev/null && kubectl create namespace grant-dst "
      ">/dev/null && kubectl label namespace grant-src grant-src grant-dst zero-trust=on "
      ">/dev/null");
  if (setup.exitCode != 0) {
    std::cerr << setup.err;
    return 1;
  }
  auto admin = testing::unthrottledClient(cp.kubeconfig());
  json policy = {{"apiVersion", "bulkhead.dev/v1alpha1"},
                 {"kind", "SegmentationPolicy"},
                 {"metadata", {{"name", "baseline"}}},
                 {"spec",
                  {{"namespaceSelector", {{"matchLabels", {{"zero-trust", "on"}}}}},
                   {"authorization", {{"defaultDeny", true}}}}}};
  (void)admin->create(kPolicies, policy);

  int metricsPort = freePort();
  std::string metricsAddr = "127.0.0.1:" + std::to_string(metricsPort);
  std::string qpsText = std::to_string(qps), burstText = std::to_string(burst),
              workersText = std::to_string(workers), logFile = cp.dir() + "/controller.log";
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(BULKHEAD_BINARY, "bulkhead", "--kubeconfig", cp.kubeconfig().c_str(), "--namespace",
          "default", "--metrics-bind-address", metricsAddr.c_str(), "--kube-qps", qpsText.c_str(),
          "--kube-burst", burstText.c_str(), "--workers", workersText.c_str(), "--resync-period",
          "1h", "--log-level", "warn", nullptr);
    _exit(127);
  }
  int failures = 0;
  auto phaseFailed = [&](const char* phase, const std::string& why) {
    std::printf("%s: FAILED: %s (log: %s)\n", phase, why.c_str(), logFile.c_str());
    ++failures;
  };
  ObjectWatch networkPolicies(admin, kube::resources::kNetworkPolicies);
  ObjectWatch authorizationPolicies(admin, kAuthorizationPolicies);

  // Every grant expires at the same whole second, far enough ahead for all to become Active.
  const auto expiresAt = std::chrono::ceil<std::chrono::seconds>(
      std::chrono::system_clock::now() + std::chrono::seconds(30) +
      milliseconds(static_cast<int64_t>(grants) * 60));
  const std::string expiresText = formatRfc3339(expiresAt);
  auto createStart = Steady::now();
  {
    std::atomic<int> next{0};
    std::vector<std::thread> writers;
    for (int w = 0; w < 8; ++w) {
      writers.emplace_back([&] {
        auto c = testing::unthrottledClient(cp.kubeconfig());
        for (int i = next++; i < grants; i = next++) {
          json g = {{"apiVersion", "bulkhead.dev/v1alpha1"},
                    {"kind", "AccessGrant"},
                    {"metadata", {{"name", "g" + std::to_string(i)}, {"namespace", "grant-dst"}}},
                    {"spec",
                     {{"from",
                       {{"namespace", "grant-src"},
                        {"podSelector", {{"matchLabels", {{"client", std::to_string(i)}}}}},
                        {"serviceAccount", "client-" + std::to_string(i)}}},
                      {"to",
                       {{"podSelector", {{"matchLabels", {{"app", "api"}}}}},
                        {"ports", {{{"port", 8080 + (i % 100)}, {"protocol", "TCP"}}}}}},
                      {"expiresAt", expiresText},
                      {"reason", "benchmark of simultaneous expiry"},
                      {"requestedBy", "bench"}}}};
          (void)c->create(kGrants, g);
        }
      });
    }
    for (auto& t : writers) {
      t.join();
    }
  }
  std::printf("setup: %lld grants created in %.1f s, all expiring at %s\n",
              static_cast<long long>(grants), secondsSince(createStart), expiresText.c_str());

  auto allLive = [&] {
    auto np = networkPolicies.live();
    auto ap = authorizationPolicies.live();
    for (int i = 0; i < grants; ++i) {
      const std::string g = "g" + std::to_string(i);
      if (np[g] != 2 || ap[g] != 1) {
        return false;
      }
    }
    return true;
  };
  while (!allLive() && std::chrono::system_clock::now() < expiresAt) {
    std::this_thread::sleep_for(milliseconds(100));
  }
  const bool activated = allLive();
  std::printf("activation: %s, %.1f s after the first create; controller CPU %.2f s\n",
              activated ? "every grant's 3 objects exist" : "NOT all grants active before expiry",
              secondsSince(createStart), cpuSeconds(pid));
  if (!activated) {
    phaseFailed("activation", "not every grant was Active before its expiresAt");
  }

  const double writesBefore = testing::scrapeMetric(metricsPort, "bulkhead_api_writes_total");
  const double cpuBefore = cpuSeconds(pid);
  auto allClosed = [&] {
    auto np = networkPolicies.live();
    auto ap = authorizationPolicies.live();
    for (int i = 0; i < grants; ++i) {
      const std::string g = "g" + std::to_string(i);
      if (np[g] != 0 || ap[g] != 0) {
        return false;
      }
    }
    return true;
  };
  while (!allClosed() && std::chrono::system_clock::now() < expiresAt + std::chrono::seconds(120)) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  auto np = networkPolicies.closed();
  auto ap = authorizationPolicies.closed();
  std::vector<double> lags;
  int revoked = 0;
  for (int i = 0; i < grants; ++i) {
    const std::string g = "g" + std::to_string(i);
    if (!np.contains(g) || !ap.contains(g)) {
      continue;
    }
    ++revoked;
    lags.push_back(std::chrono::duration<double>(std::max(np[g], ap[g]) - expiresAt).count() *
                   1000);
  }
  const double expiryWrites =
      testing::scrapeMetric(metricsPort, "bulkhead_api_writes_total") - writesBefore;
  std::printf(
      "expiry: %d of %lld grants revoked; lag after expiresAt p50 %.0f ms, p99 %.0f ms, max %.0f "
      "ms\n  %.0f generated-object writes (%.1f per grant), controller CPU %.2f s\n",
      revoked, static_cast<long long>(grants), percentile(lags, 0.5), percentile(lags, 0.99),
      lags.empty() ? 0.0 : *std::max_element(lags.begin(), lags.end()), expiryWrites,
      expiryWrites / static_cast<double>(std::max<int64_t>(grants, 1)),
      cpuSeconds(pid) - cpuBefore);
  if (revoked < grants) {
    phaseFailed("expiry", "not every grant's objects were removed within 120 s");
  }

  auto statusStart = Steady::now();
  int expired = 0;
  while (secondsSince(statusStart) < 120) {
    expired = 0;
    auto list = admin->list(kGrants, "grant-dst", {});
    if (list.ok()) {
      for (const auto& g : list->items) {
        expired += g.value("status", json::object()).value("phase", "") == "Expired" ? 1 : 0;
      }
    }
    if (expired == grants) {
      break;
    }
    std::this_thread::sleep_for(milliseconds(250));
  }
  std::printf("status: %d of %lld grants Expired %.1f s after the last object went\n", expired,
              static_cast<long long>(grants), secondsSince(statusStart));
  if (expired < grants) {
    phaseFailed("status", "not every grant said Expired within 120 s");
  }
  std::printf("controller: peak RSS %.1f MiB, CPU %.1f s\n",
              testing::statusKb(pid, "VmHWM") / 1024.0, cpuSeconds(pid));
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  testing::ControlPlane::stop();
  std::printf("%s\n", failures == 0 ? "all phases completed" : "SOME PHASES FAILED");
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace bulkhead

int main(int argc, char** argv) { return bulkhead::run(argc, argv); }
