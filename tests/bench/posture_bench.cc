// Benchmark: the background scan on a cluster full of pods. What it costs the controller to cache
// every Pod (only the fields the rules read), how long until every namespace's Report and the
// policy's counts are right, and how fast a fix shows.
//
// Starts its own control plane with Bulkhead's and the OpenReports CRDs, creates --namespaces
// namespaces selected by one Audit policy and --pods realistic pods (about 3 KB each as the API
// server stores them, one in ten breaking a rule) spread over them, then runs the real `bulkhead`
// binary through these phases, each of which must complete (the exit code says whether all did):
//   scan      until the policy's status counts every violating pod and every namespace's Report
//             lists them: time, Report writes, the controller's CPU and peak RSS
//   fix       the violating pods of one namespace deleted: until its Report shows none
//   no scan   the same cluster with --background-scan=false: the controller's peak RSS, so that
//             the scan's own memory per pod shows
//
//   posture_bench [--pods 10000] [--namespaces 100]
// scripts/test.sh runs it at a smoke size (ctest -L bench).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "common/flags.h"
#include "common/log.h"
#include "kube/client.h"
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
const kube::ResourceType& kReports = kube::resources::kReports;

std::string nsName(int64_t i) { return "scan-" + std::to_string(i); }

// A pod like a real application's: labels, annotations, two containers with env, resources,
// probes and mounts. Every tenth runs with hostNetwork.
json appPod(int64_t i, const std::string& ns) {
  json env = json::array();
  for (int e = 0; e < 12; ++e) {
    env.push_back({{"name", "SETTING_" + std::to_string(e)},
                   {"value", "value-of-a-typical-configuration-setting-" + std::to_string(e)}});
  }
  json app = {
      {"name", "app"},
      {"image", "registry.example/shop/checkout:1.42.7"},
      {"args", {"--port=8080", "--log-format=json", "--tracing-endpoint=otel-collector:4317"}},
      {"ports",
       {{{"name", "http"}, {"containerPort", 8080}},
        {{"name", "metrics"}, {"containerPort", 9090}}}},
      {"env", env},
      {"resources",
       {{"requests", {{"cpu", "100m"}, {"memory", "128Mi"}}}, {"limits", {{"memory", "256Mi"}}}}},
      {"readinessProbe",
       {{"httpGet", {{"path", "/ready"}, {"port", "http"}}}, {"periodSeconds", 5}}},
      {"livenessProbe",
       {{"httpGet", {{"path", "/healthz"}, {"port", "http"}}}, {"periodSeconds", 10}}},
      {"volumeMounts",
       {{{"name", "config"}, {"mountPath", "/etc/checkout"}},
        {{"name", "tmp"}, {"mountPath", "/tmp"}}}},
      {"securityContext",
       {{"runAsNonRoot", true},
        {"allowPrivilegeEscalation", false},
        {"readOnlyRootFilesystem", true},
        {"capabilities", {{"drop", {"ALL"}}}}}}};
  json sidecar = {{"name", "log-shipper"},
                  {"image", "registry.example/platform/log-shipper:3.1.0"},
                  {"args", {"--input=/var/log/app", "--output=stdout"}},
                  {"resources", {{"requests", {{"cpu", "10m"}, {"memory", "32Mi"}}}}},
                  {"volumeMounts", {{{"name", "tmp"}, {"mountPath", "/var/log/app"}}}}};
  json pod = {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata",
       {{"name", "checkout-" + std::to_string(i)},
        {"namespace", ns},
        {"labels",
         {{"app.kubernetes.io/name", "checkout"},
          {"app.kubernetes.io/instance", "checkout-" + std::to_string(i % 7)},
          {"app.kubernetes.io/version", "1.42.7"},
          {"app.kubernetes.io/part-of", "shop"},
          {"team", "payments"}}},
        {"annotations",
         {{"prometheus.io/scrape", "true"},
          {"prometheus.io/port", "9090"},
          {"checksum/config",
           "4f1c8d2b9a7e6f3c1d0b8a9e7f6c5d4b3a2e1f0c9d8b7a6e5f4c3d2b1a0f9e8d"}}}}},
      {"spec",
       {{"serviceAccountName", "default"},
        {"terminationGracePeriodSeconds", 30},
        {"securityContext", {{"runAsUser", 10001}, {"fsGroup", 10001}}},
        {"containers", {app, sidecar}},
        {"volumes",
         {{{"name", "config"}, {"configMap", {{"name", "checkout-config"}}}},
          {{"name", "tmp"}, {"emptyDir", json::object()}}}}}}};
  if (i % 10 == 0) {
    pod["spec"]["hostNetwork"] = true;
  }
  return pod;
}

int run(int argc, char** argv) {
  std::int64_t pods = 10000;
  std::int64_t namespaces = 100;
  FlagSet flags("posture_bench", "The background scan's memory, time and writes with many pods.");
  flags.addInt("pods", &pods, "pods created before the controller starts");
  flags.addInt("namespaces", &namespaces, "namespaces they are spread over, all selected");
  if (auto parsed = flags.parse(argc, argv); !parsed.ok() || namespaces < 1) {
    std::cerr << (parsed.ok() ? "--namespaces must be positive" : parsed.status().message())
              << "\n" << flags.usage();
    return 2;
  }
  log::init(log::Level::kWarn);
  if (!testing::ControlPlane::start()) {
    return 1;
  }
  auto& cp = testing::ControlPlane::get();
  auto setup = cp.shell(
      "kubectl apply --server-side -f " BULKHEAD_SOURCE_DIR
      "/crds/ -f \"$TESTENV_OPENREPORTS_CRD\" >/dev/null && kubectl wait --for "
      "condition=established --timeout=60s crd/segmentationpolicies.bulkhead.dev "
      "crd/reports.openreports.io >/dev/null");
  if (setup.exitCode != 0) {
    std::cerr << setup.err;
    return 1;
  }
  auto admin = testing::unthrottledClient(cp.kubeconfig());
  json policy = {{"apiVersion", "bulkhead.dev/v1alpha1"},
                 {"kind", "SegmentationPolicy"},
                 {"metadata", {{"name", "scanned"}}},
                 {"spec",
                  {{"mode", "Audit"},
                   {"podSecurity", {{"enforce", "Unmanaged"}}},
                   {"namespaceSelector", {{"matchLabels", {{"scan", "on"}}}}}}}};
  (void)admin->create(kPolicies, policy);
  auto populateStart = Steady::now();
  std::atomic<int64_t> created{0};
  {
    std::atomic<int64_t> next{0};
    std::vector<std::thread> writers;
    for (int w = 0; w < 8; ++w) {
      writers.emplace_back([&] {
        auto c = testing::unthrottledClient(cp.kubeconfig());
        for (int64_t i = next++; i < namespaces; i = next++) {
          json ns = {{"apiVersion", "v1"},
                     {"kind", "Namespace"},
                     {"metadata", {{"name", nsName(i)}, {"labels", {{"scan", "on"}}}}}};
          (void)c->create(kube::resources::kNamespaces, ns);
        }
      });
    }
    for (auto& t : writers) {
      t.join();
    }
    writers.clear();
    next = 0;
    for (int w = 0; w < 8; ++w) {
      writers.emplace_back([&] {
        auto c = testing::unthrottledClient(cp.kubeconfig());
        for (int64_t i = next++; i < pods; i = next++) {
          if (c->create(kube::resources::kPods, appPod(i, nsName(i % namespaces))).ok()) {
            ++created;
          }
        }
      });
    }
    for (auto& t : writers) {
      t.join();
    }
  }
  const int64_t violating = (pods + 9) / 10;  // i % 10 == 0
  std::printf("setup: %lld namespaces, %lld of %lld pods created in %.1f s (%lld with "
              "hostNetwork)\n",
              static_cast<long long>(namespaces), static_cast<long long>(created.load()),
              static_cast<long long>(pods), secondsSince(populateStart),
              static_cast<long long>(violating));
  if (created.load() != pods) {
    std::printf("setup: FAILED: not every pod was created\n");
    return 1;
  }

  int metricsPort = freePort();
  std::string metricsAddr = "127.0.0.1:" + std::to_string(metricsPort);
  std::string logFile = cp.dir() + "/controller.log";
  auto startController = [&](bool scan) {
    pid_t pid = fork();
    if (pid == 0) {
      int fd = ::open(logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      execl(BULKHEAD_BINARY, "bulkhead", "--kubeconfig", cp.kubeconfig().c_str(), "--namespace",
            "default", "--metrics-bind-address", metricsAddr.c_str(), "--kube-qps", "500",
            "--kube-burst", "1000", "--resync-period", "1h", "--log-level", "warn",
            scan ? "--background-scan=true" : "--background-scan=false", nullptr);
      _exit(127);
    }
    return pid;
  };
  int failures = 0;
  auto phaseFailed = [&](const char* phase, const std::string& why) {
    std::printf("%s: FAILED: %s (log: %s)\n", phase, why.c_str(), logFile.c_str());
    ++failures;
  };
  // The violating pods over every namespace's Report, and how many Reports there are. (A
  // hostNetwork pod also breaks forbidHostPorts: the API server defaults hostPort to
  // containerPort. So the results are twice the pods.)
  auto reported = [&]() -> std::pair<int64_t, int64_t> {
    auto list = admin->list(kReports, "", {});
    if (!list.ok()) {
      std::fprintf(stderr, "listing Reports: %s\n", list.status().message().c_str());
      return {-1, -1};
    }
    int64_t fails = 0;
    for (const auto& r : list->items) {
      fails += std::stoll(r["metadata"]["annotations"].value("bulkhead.dev/violating-pods", "0"));
    }
    return {fails, static_cast<int64_t>(list->items.size())};
  };
  auto statusCount = [&] {
    auto p = admin->get(kPolicies, "", "scanned");
    return p.ok() ? p->value("status", json::object()).value("violatingPods", int64_t{-1}) : -1;
  };

  // Scan: from start until the counts and every Report are right.
  auto start = Steady::now();
  pid_t pid = startController(true);
  bool done = false;
  while (secondsSince(start) < 900 && !done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    auto [fails, reports] = reported();
    done = fails == violating && reports == namespaces && statusCount() == violating;
  }
  const double took = secondsSince(start);
  if (!done) {
    phaseFailed("scan", "the Reports and the status did not count every violating pod in 900 s");
  }
  const double reportWrites = testing::scrapeMetric(metricsPort, "bulkhead_api_writes_total",
                                                    "kind=\"Report\"");
  std::printf("scan: %lld pods in %lld namespaces judged and reported in %.1f s: %.0f Report "
              "writes, controller CPU %.2f s (%.0f us per pod)\n",
              static_cast<long long>(pods), static_cast<long long>(namespaces), took, reportWrites,
              cpuSeconds(pid), cpuSeconds(pid) / static_cast<double>(pods) * 1e6);

  // Fix: one namespace's violating pods go; its Report follows.
  const std::string fixed = nsName(0);
  int64_t deleted = 0;
  for (int64_t i = 0; i < pods; i += 10) {
    if (i % namespaces == 0) {
      deleted += admin->remove(kube::resources::kPods, fixed, appPod(i, fixed)["metadata"]["name"])
                         .ok()
                     ? 1
                     : 0;
    }
  }
  auto fixStart = Steady::now();
  bool fixedShown = false;
  while (secondsSince(fixStart) < 120 && !fixedShown) {
    auto r = admin->get(kReports, fixed, "bulkhead");
    fixedShown = r.ok() && r->value("summary", json::object()).value("fail", -1) == 0;
    if (!fixedShown) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  if (!fixedShown) {
    phaseFailed("fix", "the Report of " + fixed + " still lists deleted pods after 120 s");
  }
  std::printf("fix: %lld violating pods deleted in %s: its Report shows none %.2f s later\n",
              static_cast<long long>(deleted), fixed.c_str(), secondsSince(fixStart));
  const double scanRssMiB = statusKb(pid, "VmHWM") / 1024.0;
  const double scanNowMiB = statusKb(pid, "VmRSS") / 1024.0;
  const double scanCpu = cpuSeconds(pid);
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);

  // No scan: the same cluster, the controller without the Pod and workload caches.
  auto plainStart = Steady::now();
  pid = startController(false);
  bool segmented = false;
  while (secondsSince(plainStart) < 300 && !segmented) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    auto p = admin->get(kPolicies, "", "scanned");
    segmented =
        p.ok() && p->value("status", json::object()).value("segmentedNamespaces", -1) == namespaces;
  }
  if (!segmented) {
    phaseFailed("no scan", "the namespaces were not all segmented in 300 s");
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double plainRssMiB = statusKb(pid, "VmHWM") / 1024.0;
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  std::printf("memory: controller peak RSS %.1f MiB with the scan (%.1f MiB at its end), %.1f MiB "
              "without: %.2f KiB per pod cached; scan run CPU %.1f s\n",
              scanRssMiB, scanNowMiB, plainRssMiB,
              (scanRssMiB - plainRssMiB) * 1024.0 / static_cast<double>(pods), scanCpu);
  testing::ControlPlane::stop();
  std::printf("%s\n", failures == 0 ? "all phases completed" : "SOME PHASES FAILED");
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace bulkhead

int main(int argc, char** argv) { return bulkhead::run(argc, argv); }
