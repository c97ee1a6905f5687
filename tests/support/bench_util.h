#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

#include "kube/client.h"

// Small helpers shared by the benchmark programs under tests/bench/.
namespace bulkhead::testing {

using Steady = std::chrono::steady_clock;

double secondsSince(Steady::time_point t);
// An unthrottled client for `kubeconfig` (exits the program if it cannot be made).
std::shared_ptr<kube::Client> unthrottledClient(const std::string& kubeconfig);
// A /proc/<pid>/status field in KiB ("VmRSS", "VmHWM"); pid 0 is this process. -1 if absent.
long statusKb(pid_t pid, const std::string& field);
// User + system CPU seconds of a process so far.
double cpuSeconds(pid_t pid);
// A loopback port that was free a moment ago.
int freePort();
// The sum of a metric family's samples on http://127.0.0.1:<port>/metrics, counting only lines
// that contain `filter`.
double scrapeMetric(int port, const std::string& family, const std::string& filter = "");

}  // namespace bulkhead::testing
