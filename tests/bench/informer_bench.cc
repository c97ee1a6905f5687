// Benchmark: how long informers take to sync a large cluster, and their memory.
//
// Starts its own control plane (scripts/testenv.sh), fills it with N namespaces and M
// NetworkPolicies per namespace, then runs a fresh process that starts a namespace informer and a
// NetworkPolicy informer (the controller's two largest caches) and reports the time from start to
// synced and that process's peak RSS.
//
//   informer_bench [--namespaces 10000] [--policies-per-namespace 4] [--writers 8]
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "kube/client_impl.h"
#include "kube/config.h"
#include "kube/informer.h"
#include "tests/support/bench_util.h"
#include "tests/support/control_plane.h"

namespace bulkhead {
namespace {

using testing::secondsSince;
using testing::statusKb;
using testing::Steady;

nlohmann::json networkPolicy(const std::string& ns, int i) {
  // Shaped like what the controller writes: labels, a selector, ports.
  return {{"apiVersion", "networking.k8s.io/v1"},
          {"kind", "NetworkPolicy"},
          {"metadata",
           {{"name", "bench-" + std::to_string(i)},
            {"namespace", ns},
            {"labels",
             {{"app.kubernetes.io/managed-by", "bulkhead"}, {"bulkhead.dev/policy", "baseline"}}}}},
          {"spec",
           {{"podSelector", nlohmann::json::object()},
            {"policyTypes", {"Egress"}},
            {"egress",
             {{{"to",
                {{{"namespaceSelector",
                   {{"matchLabels", {{"kubernetes.io/metadata.name", "kube-system"}}}}},
                  {"podSelector", {{"matchLabels", {{"k8s-app", "kube-dns"}}}}}}}},
               {"ports",
                {{{"port", 53}, {"protocol", "UDP"}}, {{"port", 53}, {"protocol", "TCP"}}}}}}}}}};
}

void populate(const std::string& kubeconfig, int namespaces, int perNs, int writers) {
  auto start = Steady::now();
  std::atomic<int> next{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&] {
      auto c = testing::unthrottledClient(kubeconfig);
      for (int i = next++; i < namespaces; i = next++) {
        std::string ns = "bench-" + std::to_string(i);
        nlohmann::json obj = {{"apiVersion", "v1"},
                              {"kind", "Namespace"},
                              {"metadata", {{"name", ns}, {"labels", {{"zero-trust", "on"}}}}}};
        if (!c->create(kube::resources::kNamespaces, obj).ok()) {
          ++failures;
        }
        for (int p = 0; p < perNs; ++p) {
          if (!c->create(kube::resources::kNetworkPolicies, networkPolicy(ns, p)).ok()) {
            ++failures;
          }
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  double took = secondsSince(start);
  int objects = namespaces * (1 + perNs);
  std::printf(
      "populate: %d namespaces + %d NetworkPolicies in %.1f s (%.0f creates/s, %d failed)\n",
      namespaces, namespaces * perNs, took, objects / took, failures.load());
}

// Runs in a fresh child process so that its RSS is the informers' alone.
int measure(const std::string& kubeconfig) {
  log::init(log::Level::kWarn);
  long rssBefore = statusKb(0, "VmRSS");
  auto c = testing::unthrottledClient(kubeconfig);
  auto clock = std::make_shared<RealClock>();
  auto start = Steady::now();
  kube::InformerOptions nsOpts;
  nsOpts.type = kube::resources::kNamespaces;
  kube::InformerOptions npOpts;
  npOpts.type = kube::resources::kNetworkPolicies;
  kube::Informer namespaces(c, clock, nsOpts);
  kube::Informer policies(c, clock, npOpts);
  namespaces.start();
  policies.start();
  bool synced = namespaces.waitForSync(std::chrono::minutes(5)) &&
                policies.waitForSync(std::chrono::minutes(5));
  double took = secondsSince(start);
  std::printf("informers: %s %zu namespaces and %zu NetworkPolicies in %.2f s\n",
              synced ? "synced" : "FAILED to sync", namespaces.store().size(),
              policies.store().size(), took);
  std::printf("informer process RSS: %.1f MiB before start, %.1f MiB peak, %.1f MiB after sync\n",
              rssBefore / 1024.0, statusKb(0, "VmHWM") / 1024.0, statusKb(0, "VmRSS") / 1024.0);
  namespaces.stop();
  policies.stop();
  return synced ? 0 : 1;
}

int run(int argc, char** argv) {
  std::int64_t namespaces = 10'000;
  std::int64_t perNs = 4;
  std::int64_t writers = 8;
  std::string measureKubeconfig;
  FlagSet flags("informer_bench", "Time to sync and peak RSS of informers on a large cluster.");
  flags.addInt("namespaces", &namespaces, "namespaces to create");
  flags.addInt("policies-per-namespace", &perNs, "NetworkPolicies per namespace");
  flags.addInt("writers", &writers, "concurrent writers while populating");
  flags.addString("measure", &measureKubeconfig, "(internal) measure against this kubeconfig");
  auto parsed = flags.parse(argc, argv);
  if (!parsed.ok()) {
    std::cerr << parsed.status().message() << "\n" << flags.usage();
    return 2;
  }
  if (!measureKubeconfig.empty()) {
    return measure(measureKubeconfig);
  }
  log::init(log::Level::kWarn);
  if (!testing::ControlPlane::start()) {
    return 1;
  }
  auto& cp = testing::ControlPlane::get();
  populate(cp.kubeconfig(), static_cast<int>(namespaces), static_cast<int>(perNs),
           static_cast<int>(writers));
  std::fflush(stdout);
  auto result = testing::run({argv[0], "--measure", cp.kubeconfig()});
  std::cout << result.out << result.err;
  testing::ControlPlane::stop();
  return result.exitCode;
}

}  // namespace
}  // namespace bulkhead

int main(int argc, char** argv) { return bulkhead::run(argc, argv); }
