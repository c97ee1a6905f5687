// Benchmark: how fast the segmentation controller converges a cluster of N pre-existing
// namespaces, what it costs (writes, CPU per generated object, peak RSS), whether it is idle when
// there is nothing to do, and that a full resync of an unchanged cluster writes nothing.
//
// Starts its own control plane with Bulkhead's and Istio's CRDs, creates N labelled namespaces
// and one SegmentationPolicy selecting them, then runs the real `bulkhead` binary through three
// phases, each of which must complete (the exit code says whether all did):
//   convergence   until the policy's status reports all N segmented
//   idle          --idle-seconds with nothing changing: the controller's CPU, reconciles, RSS
//   no-op resync  the controller restarted (a fresh start reconciles every namespace, as the
//                 periodic resync does): until N namespace reconciles, which must write nothing
// and last, for scale, the HTTP client library's own CPU per request (sequential GETs from this
// process), next to what the controller spent per write.
//
//   convergence_bench [--namespaces 1000] [--idle-seconds 60] [--kube-qps 500]
//                     [--kube-burst 1000] [--workers 8]
// scripts/test.sh runs it at a smoke size (ctest -L bench).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "kube/client_impl.h"
#include "kube/config.h"
#include "tests/support/bench_util.h"
#include "tests/support/control_plane.h"

namespace bulkhead {
namespace {

using nlohmann::json;
using testing::cpuSeconds;
using testing::freePort;
using testing::secondsSince;
using testing::statusKb;
using testing::Steady;

const kube::ResourceType& kPolicies = kube::resources::kSegmentationPolicies;

// The samples of a family on the controller's /metrics that are not zero, one per line.
std::string nonZero(int port, const std::string& family) {
  auto r = testing::shell("curl -fsS http://127.0.0.1:" + std::to_string(port) + "/metrics");
  std::string out;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(family + "{", 0) == 0 && line.substr(line.rfind(' ') + 1) != "0") {
      out += "    " + line + "\n";
    }
  }
  return out;
}

int run(int argc, char** argv) {
  std::int64_t namespaces = 1000;
  double qps = 500;
  std::int64_t burst = 1000;
  std::int64_t workers = 8;
  std::int64_t idleSeconds = 60;
  FlagSet flags("convergence_bench", "Controller convergence time, writes, RSS and CPU.");
  flags.addInt("namespaces", &namespaces, "pre-existing namespaces selected by the policy");
  flags.addDouble("kube-qps", &qps, "the controller's --kube-qps");
  flags.addInt("kube-burst", &burst, "the controller's --kube-burst");
  flags.addInt("workers", &workers, "the controller's --workers");
  flags.addInt("idle-seconds", &idleSeconds, "how long the idle phase measures");
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
      "crd/segmentationpolicies.bulkhead.dev crd/peerauthentications.security.istio.io >/dev/null");
  if (setup.exitCode != 0) {
    std::cerr << setup.err;
    return 1;
  }
  auto admin = testing::unthrottledClient(cp.kubeconfig());
  auto populateStart = Steady::now();
  {
    std::atomic<int> next{0};
    std::vector<std::thread> writers;
    for (int w = 0; w < 8; ++w) {
      writers.emplace_back([&] {
        auto c = testing::unthrottledClient(cp.kubeconfig());
        for (int i = next++; i < namespaces; i = next++) {
          json ns = {{"apiVersion", "v1"},
                     {"kind", "Namespace"},
                     {"metadata",
                      {{"name", "conv-" + std::to_string(i)}, {"labels", {{"zero-trust", "on"}}}}}};
          (void)c->create(kube::resources::kNamespaces, ns);
        }
      });
    }
    for (auto& t : writers) {
      t.join();
    }
  }
  std::printf("setup: %lld namespaces created in %.1f s\n", static_cast<long long>(namespaces),
              secondsSince(populateStart));
  json policy = {{"apiVersion", "bulkhead.dev/v1alpha1"},
                 {"kind", "SegmentationPolicy"},
                 {"metadata", {{"name", "baseline"}}},
                 {"spec", {{"namespaceSelector", {{"matchLabels", {{"zero-trust", "on"}}}}}}}};
  (void)admin->create(kPolicies, policy);

  pid_t apiserverPid = std::stoi(cp.shell("echo $TESTENV_APISERVER_PID").out);
  double apiCpuBefore = cpuSeconds(apiserverPid);
  int metricsPort = freePort();
  std::string metricsAddr = "127.0.0.1:" + std::to_string(metricsPort);
  std::string qpsText = std::to_string(qps), burstText = std::to_string(burst),
              workersText = std::to_string(workers), logFile = cp.dir() + "/controller.log";
  // The controller, its output appended to logFile; no periodic resync during the run.
  auto startController = [&] {
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
    return pid;
  };
  auto namespaceReconciles = [&] {
    return testing::scrapeMetric(metricsPort, "bulkhead_reconcile_total",
                                 "controller=\"namespace\"");
  };
  auto writes = [&] { return testing::scrapeMetric(metricsPort, "bulkhead_api_writes_total"); };
  int failures = 0;
  auto phaseFailed = [&](const char* phase, const std::string& why) {
    std::printf("%s: FAILED: %s (log: %s)\n", phase, why.c_str(), logFile.c_str());
    ++failures;
  };

  auto start = Steady::now();
  pid_t pid = startController();
  bool converged = false;
  while (secondsSince(start) < 900) {
    auto p = admin->get(kPolicies, "", "baseline");
    if (p.ok() &&
        p->value("status", json::object()).value("segmentedNamespaces", -1) == namespaces) {
      converged = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  double took = secondsSince(start);
  double convergenceWrites = writes();
  double generated = testing::scrapeMetric(metricsPort, "bulkhead_generated_objects");
  double convergenceCpu = cpuSeconds(pid);
  double convergenceReconciles = namespaceReconciles();
  double policyReconciles = testing::scrapeMetric(metricsPort, "bulkhead_reconcile_total",
                                                  "controller=\"segmentationpolicy\"");
  if (!converged) {
    phaseFailed("convergence", "not all namespaces segmented in 900 s");
  }
  std::printf(
      "convergence: %lld namespaces in %.1f s (--kube-qps %.0f --kube-burst %lld "
      "--workers %lld)\n",
      static_cast<long long>(namespaces), took, qps, static_cast<long long>(burst),
      static_cast<long long>(workers));
  std::printf("  writes: %.0f generated-object writes, %.0f writes/s; %.0f generated objects\n%s",
              convergenceWrites, convergenceWrites / took, generated,
              nonZero(metricsPort, "bulkhead_api_writes_total").c_str());
  std::printf("  reconciles: %.0f of namespaces, %.0f of the policy\n", convergenceReconciles,
              policyReconciles);
  std::printf("  controller CPU %.2f s: %.0f us per generated object, %.0f us per namespace\n",
              convergenceCpu, generated > 0 ? convergenceCpu / generated * 1e6 : 0.0,
              convergenceCpu / static_cast<double>(namespaces) * 1e6);

  // Idle: let the follow-ups of the convergence settle (no reconcile for 3 s), then measure a
  // window in which nothing changes.
  double reconcilesBefore = namespaceReconciles();
  for (int i = 0; i < 60; ++i) {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    double now = namespaceReconciles();
    if (now == reconcilesBefore) {
      break;
    }
    reconcilesBefore = now;
  }
  double idleCpuBefore = cpuSeconds(pid), idleWritesBefore = writes();
  double idleReconcilesBefore = namespaceReconciles();
  std::this_thread::sleep_for(std::chrono::seconds(idleSeconds));
  double idleCpu = cpuSeconds(pid) - idleCpuBefore;
  double idleWrites = writes() - idleWritesBefore;
  double idleReconciles = namespaceReconciles() - idleReconcilesBefore;
  std::printf(
      "idle: %lld s with nothing changing: controller CPU %.3f s (%.1f ms/s), %.0f "
      "reconciles, %.0f writes, RSS %.1f MiB\n",
      static_cast<long long>(idleSeconds), idleCpu,
      idleCpu / static_cast<double>(idleSeconds) * 1000, idleReconciles, idleWrites,
      statusKb(pid, "VmRSS") / 1024.0);
  if (idleWrites > 0) {
    phaseFailed("idle", "the controller wrote while nothing changed");
  }
  double peakRssMiB = statusKb(pid, "VmHWM") / 1024.0;
  double totalCpu = cpuSeconds(pid);

  // No-op resync: a restarted controller reconciles every namespace; with nothing changed, it
  // must write nothing.
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  auto resyncStart = Steady::now();
  pid = startController();
  double reconciled = 0;
  while (secondsSince(resyncStart) < 300) {
    reconciled = namespaceReconciles();
    if (reconciled >= static_cast<double>(namespaces)) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  double resyncWrites = writes();
  std::printf(
      "no-op resync (restart): %.0f of %lld namespaces reconciled in %.1f s, %.0f "
      "writes, controller CPU %.2f s\n",
      reconciled, static_cast<long long>(namespaces), secondsSince(resyncStart), resyncWrites,
      cpuSeconds(pid));
  if (reconciled < static_cast<double>(namespaces)) {
    phaseFailed("no-op resync", "not every namespace was reconciled in 300 s");
  }
  if (resyncWrites > 0) {
    phaseFailed("no-op resync", "it wrote to an unchanged cluster:\n" +
                                    nonZero(metricsPort, "bulkhead_api_writes_total"));
  }
  std::printf("controller (first run): peak RSS %.1f MiB, CPU %.1f s; kube-apiserver CPU %.1f s\n",
              peakRssMiB, totalCpu, cpuSeconds(apiserverPid) - apiCpuBefore);
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);

  // The HTTP client's own cost, for scale: sequential GETs of one generated NetworkPolicy (a
  // response of the size the controller's applies get back) through the same client library,
  // measured as this process's CPU (its I/O thread included).
  constexpr int kProbeRequests = 1000;
  double probeCpuBefore = cpuSeconds(getpid());
  int probeFailures = 0;
  for (int i = 0; i < kProbeRequests; ++i) {
    if (!admin->get(kube::resources::kNetworkPolicies, "conv-0", "bulkhead-default-deny").ok()) {
      ++probeFailures;
    }
  }
  double perRequestUs = (cpuSeconds(getpid()) - probeCpuBefore) / kProbeRequests * 1e6;
  std::printf(
      "client floor: %d sequential GETs of a NetworkPolicy, %.0f us of client CPU each; the "
      "controller spent %.0f us per write\n",
      kProbeRequests, perRequestUs,
      convergenceWrites > 0 ? convergenceCpu / convergenceWrites * 1e6 : 0.0);
  if (probeFailures > 0) {
    phaseFailed("client floor", std::to_string(probeFailures) + " GETs failed");
  }
  testing::ControlPlane::stop();
  std::printf("%s\n", failures == 0 ? "all phases completed" : "SOME PHASES FAILED");
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace bulkhead

int main(int argc, char** argv) { return bulkhead::run(argc, argv); }
