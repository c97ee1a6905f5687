#include "tests/support/bench_util.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common/clock.h"
#include "kube/client_impl.h"
#include "kube/config.h"
#include "tests/support/process.h"

namespace bulkhead::testing {

double secondsSince(Steady::time_point t) {
  return std::chrono::duration<double>(Steady::now() - t).count();
}

std::shared_ptr<kube::Client> unthrottledClient(const std::string& kubeconfig) {
  kube::LoadOptions load;
  load.kubeconfigFlag = kubeconfig;
  auto config = kube::loadRestConfig(load);
  if (!config.ok()) {
    std::cerr << config.status() << "\n";
    std::exit(1);
  }
  config->qps = 0;
  auto c = kube::ClientImpl::create(*config, std::make_shared<RealClock>());
  if (!c.ok()) {
    std::cerr << c.status() << "\n";
    std::exit(1);
  }
  return *c;
}

long statusKb(pid_t pid, const std::string& field) {
  std::ifstream in(pid == 0 ? std::string("/proc/self/status")
                            : "/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      return std::stol(line.substr(field.size() + 1));
    }
  }
  return -1;
}

double cpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (stat.empty()) {
    return 0;
  }
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14 || i == 15) {
      ticks += std::stod(field);
    }
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

int freePort() {
  auto r = shell(
      "python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); "
      "print(s.getsockname()[1])'");
  return std::stoi(r.out);
}

double scrapeMetric(int port, const std::string& family, const std::string& filter) {
  auto r = shell("curl -fsS http://127.0.0.1:" + std::to_string(port) + "/metrics");
  double sum = 0;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(family, 0) == 0 && line.size() > family.size() &&
        (line[family.size()] == '{' || line[family.size()] == ' ') &&
        line.find(filter) != std::string::npos) {
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return sum;
}

}  // namespace bulkhead::testing
