// Benchmark: how fast the segmentation controller converges a cluster of N pre-existing
// namespaces, how many writes it issues, and that a no-op resync writes nothing.
//
// Starts its own control plane with Bulkhead's and Istio's CRDs, creates N labelled namespaces
// and one SegmentationPolicy selecting them, then starts the real `bulkhead` binary and measures
// until the policy's status reports all N segmented.
//
//   convergence_bench [--namespaces 1000] [--kube-qps 500] [--kube-burst 1000] [--workers 8]
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

using testing::Steady;
using testing::secondsSince;
using testing::statusKb;
using testing::cpuSeconds;
using testing::freePort;
using nlohmann::json;

const kube::ResourceType kPolicies{"bulkhead.dev", "v1alpha1", "segmentationpolicies",
                                   "SegmentationPolicy", false};

// Sum of a counter family's samples on the controller's /metrics.
double scrape(int port, const std::string& family, const std::string& filter = "") {
  auto r = testing::shell("curl -fsS http://127.0.0.1:" + std::to_string(port) + "/metrics");
  double sum = 0;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(family, 0) == 0 && (line.size() > family.size()) &&
        (line[family.size()] == '{' || line[family.size()] == ' ') &&
        line.find(filter) != std::string::npos) {
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return sum;
}

int run(int argc, char** argv) {
  std::int64_t namespaces = 1000;
  double qps = 500;
  std::int64_t burst = 1000;
  std::int64_t workers = 8;
  FlagSet flags("convergence_bench", "Controller convergence time, writes, RSS and CPU.");
  flags.addInt("namespaces", &namespaces, "pre-existing namespaces selected by the policy");
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
      "kubectl apply --server-side -f " BULKHEAD_SOURCE_DIR "/crds/ -f \"$TESTENV_ISTIO_CRDS\" "
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
  auto start = Steady::now();
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(logFile.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(BULKHEAD_BINARY, "bulkhead", "--kubeconfig", cp.kubeconfig().c_str(), "--namespace",
          "default", "--metrics-bind-address", metricsAddr.c_str(), "--kube-qps", qpsText.c_str(),
          "--kube-burst", burstText.c_str(), "--workers", workersText.c_str(), "--resync-period",
          "1h", "--log-level", "warn", nullptr);
    _exit(127);
  }
  bool converged = false;
  while (secondsSince(start) < 900) {
    auto p = admin->get(kPolicies, "", "baseline");
    if (p.ok() && p->value("status", json::object()).value("segmentedNamespaces", -1) == namespaces) {
      converged = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  double took = secondsSince(start);
  double writes = scrape(metricsPort, "bulkhead_api_writes_total");
  std::printf("convergence: %s %lld namespaces in %.1f s (--kube-qps %.0f --kube-burst %lld "
              "--workers %lld)\n",
              converged ? "segmented" : "DID NOT CONVERGE", static_cast<long long>(namespaces),
              took, qps, static_cast<long long>(burst), static_cast<long long>(workers));
  std::printf("writes: %.0f generated-object writes, %.0f writes/s\n", writes, writes / took);

  // A full resync with nothing changed must write nothing. Touching an annotation of the policy
  // makes the controller reconcile every namespace, exactly as the periodic resync does.
  // Let the follow-up reconciles of the convergence settle first, so that only the resync's
  // reconciles are counted below.
  double reconcilesBefore = scrape(metricsPort, "bulkhead_reconcile_total", "controller=\"namespace\"");
  for (int i = 0; i < 60; ++i) {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    double now = scrape(metricsPort, "bulkhead_reconcile_total", "controller=\"namespace\"");
    if (now == reconcilesBefore) {
      break;
    }
    reconcilesBefore = now;
  }
  writes = scrape(metricsPort, "bulkhead_api_writes_total");
  (void)admin->mergePatch(kPolicies, "", "baseline",
                          {{"metadata", {{"annotations", {{"bench/touch", "1"}}}}}});
  auto resyncStart = Steady::now();
  while (scrape(metricsPort, "bulkhead_reconcile_total", "controller=\"namespace\"") <
             reconcilesBefore + static_cast<double>(namespaces) &&
         secondsSince(resyncStart) < 300) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  double writesAfter = scrape(metricsPort, "bulkhead_api_writes_total");
  std::printf("no-op resync: %lld namespaces reconciled again in %.1f s, %.0f writes\n",
              static_cast<long long>(namespaces), secondsSince(resyncStart), writesAfter - writes);
  std::printf("controller: peak RSS %.1f MiB, CPU %.1f s; kube-apiserver CPU %.1f s\n",
              statusKb(pid, "VmHWM") / 1024.0, cpuSeconds(pid),
              cpuSeconds(apiserverPid) - apiCpuBefore);
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  testing::ControlPlane::stop();
  return converged ? 0 : 1;
}

}  // namespace
}  // namespace bulkhead

int main(int argc, char** argv) { return bulkhead::run(argc, argv); }
