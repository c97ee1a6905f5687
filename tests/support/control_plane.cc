#include "tests/support/control_plane.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <thread>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <memory>

namespace bulkhead::testing {
namespace {

std::unique_ptr<ControlPlane> gInstance;
std::vector<std::function<void()>> gTeardown;
// Copies of the paths as C strings, for the signal handler (which must not allocate).
char gScript[4096];
char gDir[4096];

std::string envValue(const std::string& envFile, const std::string& key) {
  std::ifstream in(envFile);
  std::string line;
  std::string prefix = "export " + key + "=";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) {
      std::string v = line.substr(prefix.size());
      if (v.size() >= 2 && v.front() == '\'' && v.back() == '\'') {
        v = v.substr(1, v.size() - 2);
      }
      return v;
    }
  }
  return "";
}

extern "C" void onSignal(int sig) {
  // Async-signal-safe: fork + exec the stop script, wait for it, then die by the same signal.
  pid_t pid = fork();
  if (pid == 0) {
    char* argv[] = {const_cast<char*>("bash"), gScript, const_cast<char*>("stop"), gDir, nullptr};
    execvp("bash", argv);
    _exit(127);
  }
  if (pid > 0) {
    int status;
    waitpid(pid, &status, 0);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

}  // namespace

ControlPlane& ControlPlane::get() {
  if (!gInstance) {
    std::fprintf(stderr, "ControlPlane::get() before ControlPlane::start()\n");
    std::abort();
  }
  return *gInstance;
}

bool ControlPlane::start() {
  auto cp = std::make_unique<ControlPlane>();
  cp->scriptsDir_ = BULKHEAD_SOURCE_DIR "/scripts";
  const char* tmp = std::getenv("TMPDIR");
  std::string base = std::string(tmp ? tmp : "/tmp") + "/bulkhead-testenv.XXXXXX";
  std::vector<char> buf(base.begin(), base.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    std::perror("mkdtemp");
    return false;
  }
  cp->dir_ = buf.data();
  std::snprintf(gScript, sizeof gScript, "%s/testenv.sh", cp->scriptsDir_.c_str());
  std::snprintf(gDir, sizeof gDir, "%s", cp->dir_.c_str());
  signal(SIGINT, onSignal);
  signal(SIGTERM, onSignal);
  signal(SIGHUP, onSignal);

  auto r = run({cp->scriptsDir_ + "/testenv.sh", "start", cp->dir_, "--owner",
                std::to_string(getpid())});
  if (r.exitCode != 0) {
    std::cerr << "starting the control plane failed:\n" << r.out << r.err;
    return false;
  }
  cp->env_ = cp->dir_ + "/env";
  cp->kubeconfig_ = envValue(cp->env_, "KUBECONFIG");
  cp->url_ = envValue(cp->env_, "TESTENV_APISERVER_URL");
  cp->caFile_ = envValue(cp->env_, "TESTENV_CA");
  cp->istioCrds_ = envValue(cp->env_, "TESTENV_ISTIO_CRDS");
  gInstance = std::move(cp);
  return true;
}

void ControlPlane::atTeardown(std::function<void()> fn) { gTeardown.push_back(std::move(fn)); }

void ControlPlane::stop() {
  for (auto it = gTeardown.rbegin(); it != gTeardown.rend(); ++it) {
    (*it)();
  }
  gTeardown.clear();
  if (gInstance) {
    run({gInstance->scriptsDir_ + "/testenv.sh", "stop", gInstance->dir_});
    gInstance.reset();
  }
}

ProcessResult ControlPlane::shell(const std::string& script, const std::string& input) const {
  return testing::shell("source '" + env_ + "' && " + script, input);
}

ProcessResult ControlPlane::kubectl(const std::vector<std::string>& args,
                                    const std::string& input) const {
  std::string cmd = "kubectl";
  for (const auto& a : args) {
    std::string quoted = "'";
    for (char c : a) {
      if (c == '\'') {
        quoted += "'\\''";
      } else {
        quoted += c;
      }
    }
    cmd += " " + quoted + "'";
  }
  return shell(cmd, input);
}

void ControlPlane::stopApiServer() const {
  run({scriptsDir_ + "/testenv.sh", "apiserver-stop", dir_});
}

void ControlPlane::startApiServer() const {
  auto r = run({scriptsDir_ + "/testenv.sh", "apiserver-start", dir_});
  if (r.exitCode != 0) {
    std::cerr << "restarting kube-apiserver failed:\n" << r.out << r.err;
    std::abort();
  }
}

bool ControlPlane::startControllerManager(const std::string& controllers) const {
  std::vector<std::string> args = {scriptsDir_ + "/testenv.sh", "kcm-start", dir_};
  if (!controllers.empty()) {
    args.push_back("--controllers");
    args.push_back(controllers);
  }
  auto r = run(args);
  if (r.exitCode != 0) {
    // Not doctest's REQUIRE: this library is linked into benchmarks too, without doctest's main.
    std::cerr << "starting kube-controller-manager failed:\n" << r.out << r.err;
  }
  return r.exitCode == 0;
}

bool eventually(std::chrono::seconds timeout, const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return condition();
}

ProcessResult kubectl(const std::vector<std::string>& args, const std::string& input) {
  return ControlPlane::get().kubectl(args, input);
}

std::string denial(const ProcessResult& r) {
  auto at = r.err.find(kWebhookDenied);
  return at == std::string::npos ? "(admitted or other error: " + r.err + ")"
                                 : r.err.substr(at + kWebhookDenied.size());
}

bool createNamespace(const std::string& name, const std::map<std::string, std::string>& labels) {
  nlohmann::json ns = {{"apiVersion", "v1"},
                       {"kind", "Namespace"},
                       {"metadata", {{"name", name}, {"labels", labels}}}};
  ProcessResult r = kubectl({"create", "-f", "-"}, ns.dump());
  if (r.exitCode != 0) {
    std::cerr << "creating namespace " << name << ": " << r.err;
  }
  return r.exitCode == 0;
}

}  // namespace bulkhead::testing
