#include "tests/support/bulkhead_process.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/support/bench_util.h"
#include "tests/support/control_plane.h"

namespace bulkhead::testing {
namespace {

void run(const std::string& script) {
  auto r = ControlPlane::get().shell(script);
  REQUIRE_MESSAGE(r.exitCode == 0, script << "\n" << r.out << r.err);
}

bool chartInstalled = false;
std::vector<std::string> deploymentArgs;

}  // namespace

void installChart(int webhookPort, const std::vector<std::string>& helmArgs) {
  REQUIRE_MESSAGE(!chartInstalled, "installChart() runs once per test binary");
  std::string command = "helm install bulkhead " BULKHEAD_SOURCE_DIR
                        "/charts/bulkhead --namespace bulkhead-system --create-namespace "
                        "--wait=false --set webhook.url=https://127.0.0.1:" +
                        std::to_string(webhookPort) + "/validate";
  for (const auto& a : helmArgs) {
    command += " '" + a + "'";
  }
  run(command + " >/dev/null");
  auto args = ControlPlane::get().kubectl(
      {"get", "deployment", "bulkhead", "-n", "bulkhead-system", "-o",
       "jsonpath={.spec.template.spec.containers[0].args}"});
  REQUIRE_MESSAGE(args.exitCode == 0, args.err);
  deploymentArgs = nlohmann::json::parse(args.out).get<std::vector<std::string>>();
  chartInstalled = true;
}

std::vector<std::string> webhookArgs(int port) {
  return {"--webhook-bind-address", "127.0.0.1:" + std::to_string(port), "--webhook-cert-hosts",
          "127.0.0.1"};
}

const std::string& serviceAccountDir() {
  static std::string dir = [] {
    auto& cp = ControlPlane::get();
    if (!chartInstalled) {
      run("kubectl apply --server-side -f " BULKHEAD_SOURCE_DIR "/crds/ >/dev/null");
      run("kubectl create namespace bulkhead-system >/dev/null && "
          "helm template bulkhead " BULKHEAD_SOURCE_DIR "/charts/bulkhead "
          "--namespace bulkhead-system --kube-version 1.35.4 "
          "--show-only templates/serviceaccount.yaml --show-only templates/rbac.yaml | "
          "kubectl apply -f - >/dev/null");
    }
    run("kubectl wait --for condition=established --timeout=60s "
        "crd/segmentationpolicies.bulkhead.dev crd/segmentationexceptions.bulkhead.dev "
        ">/dev/null");
    std::string d = cp.dir() + "/bulkhead-sa";
    run("mkdir -p " + d + " && cp \"$TESTENV_CA\" " + d + "/ca.crt && echo bulkhead-system > " + d +
        "/namespace && kubectl create token bulkhead -n bulkhead-system --duration 6h > " + d +
        "/token");
    return d;
  }();
  return dir;
}

BulkheadProcess& servingBulkhead(const std::string& logName) {
  run("kubectl apply --server-side -f \"$TESTENV_ISTIO_CRDS\" >/dev/null && kubectl wait "
      "--for condition=established --timeout=60s crd/peerauthentications.security.istio.io "
      ">/dev/null");
  const int port = freePort();
  installChart(port);
  auto* p = new BulkheadProcess(logName, webhookArgs(port));
  ControlPlane::atTeardown([p] { delete p; });
  REQUIRE(p->waitForLog("serving the admission webhook", 60));
  return *p;
}

BulkheadProcess::BulkheadProcess(const std::string& logName,
                                 const std::vector<std::string>& extraArgs) {
  auto& cp = ControlPlane::get();
  std::string saDir = serviceAccountDir();
  std::string port = cp.url().substr(cp.url().rfind(':') + 1);
  const char* logDir = std::getenv("BULKHEAD_TEST_LOG_DIR");
  log_ = (logDir ? std::string(logDir) : cp.dir()) + "/" + logName + ".log";
  std::vector<std::string> args = {BULKHEAD_BINARY};
  args.insert(args.end(), deploymentArgs.begin(), deploymentArgs.end());
  std::vector<std::string> local = {"--service-account-dir",
                                   saDir,
                                   "--leader-elect",
                                   "--leader-election-identity",
                                   "bulkhead-under-test",
                                   "--metrics-bind-address",
                                   "127.0.0.1:0",
                                   "--mesh-discovery-interval",
                                   "500ms",
                                   "--kube-qps",
                                   "200",
                                   "--kube-burst",
                                   "400"};
  args.insert(args.end(), local.begin(), local.end());
  args.insert(args.end(), extraArgs.begin(), extraArgs.end());
  pid_ = fork();
  REQUIRE(pid_ >= 0);
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlive the test binary
    int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", port.c_str(), 1);
    unsetenv("KUBECONFIG");
    setenv("TMPDIR", ControlPlane::get().dir().c_str(), 1);  // anything it leaves goes with it
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
}

void BulkheadProcess::stop(int signal) {
  if (pid_ > 0) {
    kill(pid_, signal);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
}

double BulkheadProcess::metric(const std::string& family) const {
  // A bare family name sums all its samples; "name{label=\"v\"" sums the samples it prefixes.
  std::string prefix = family.find('{') == std::string::npos ? family + "{" : family;
  std::string bare = family.find('{') == std::string::npos ? family + " " : family;
  auto r = ControlPlane::get().shell(
      "set -o pipefail; port=$(grep -o '\"msg\":\"serving metrics\".*\"port\":[0-9]*' '" +
      log_ +
      "' | grep -o '[0-9]*$'); curl -fsS http://127.0.0.1:$port/metrics | "
      "P='" + prefix + "' B='" + bare + "' awk 'index($0, ENVIRON[\"P\"]) == 1 || "
      "index($0, ENVIRON[\"B\"]) == 1 {s+=$NF} END {print s+0}'");
  REQUIRE_MESSAGE(r.exitCode == 0, r.err);
  return std::stod(r.out);
}

bool BulkheadProcess::waitForLog(const std::string& text, int timeoutSeconds) const {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeoutSeconds);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(log_);
    std::string line;
    while (std::getline(in, line)) {
      if (line.find(text) != std::string::npos) {
        return true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

}  // namespace bulkhead::testing
