#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/process.h"

namespace bulkhead::testing {

// One real etcd + kube-apiserver, started by scripts/testenv.sh, shared by every test case of an
// integration test binary. Started by the binary's main() before any test runs and stopped after
// the last; a watchdog in testenv.sh stops it too if the binary dies some other way.
class ControlPlane {
 public:
  // The instance of this binary. Precondition: integration_main started it.
  static ControlPlane& get();

  const std::string& dir() const { return dir_; }
  const std::string& kubeconfig() const { return kubeconfig_; }
  const std::string& url() const { return url_; }
  const std::string& caFile() const { return caFile_; }
  const std::string& istioCrds() const { return istioCrds_; }
  const std::string& scriptsDir() const { return scriptsDir_; }

  // Runs kubectl against this control plane (as system:masters).
  ProcessResult kubectl(const std::vector<std::string>& args, const std::string& input = "") const;
  // Runs a bash script with the control plane's env file sourced (KUBECONFIG, PATH, TESTENV_*).
  ProcessResult shell(const std::string& script, const std::string& input = "") const;

  // Stops or starts only the kube-apiserver (same port, same etcd data).
  void stopApiServer() const;
  void startApiServer() const;

  // Opt-in: starts a real kube-controller-manager against this control plane
  // (`testenv.sh kcm-start`), each controller acting as its own ServiceAccount
  // (system:serviceaccount:kube-system:namespace-controller, ...). `controllers` is its
  // --controllers list; empty means testenv.sh's default (namespace-controller, job-controller,
  // garbage-collector-controller): deleted namespaces really go, Jobs create pods and remove
  // their batch.kubernetes.io/job-tracking finalizers, ownerReferences cascade. Returns true once
  // it serves /healthz and has started the controllers; false (with its output on stderr) when it
  // did not. Stopped with the control plane.
  bool startControllerManager(const std::string& controllers = "") const;

  // Runs `fn` after the last test case, before the control plane stops (e.g. to stop a process
  // shared by several test cases).
  static void atTeardown(std::function<void()> fn);

  // For integration_main only.
  static bool start();
  static void stop();

 private:
  std::string dir_, kubeconfig_, url_, caFile_, istioCrds_, scriptsDir_, env_;
};

// Polls `condition` every 100 ms until it holds or `timeout` passes; returns whether it held.
// The API server is eventually consistent for a watcher: tests wait for outcomes, not for time.
bool eventually(std::chrono::seconds timeout, const std::function<bool()>& condition);

// kubectl against this binary's control plane (ControlPlane::get().kubectl).
ProcessResult kubectl(const std::vector<std::string>& args, const std::string& input = "");

// What Bulkhead's webhook said when it refused a kubectl request, from kubectl's stderr; a note
// saying so when it did not refuse.
inline constexpr std::string_view kWebhookDenied =
    "admission webhook \"validate.bulkhead.dev\" denied the request: ";
std::string denial(const ProcessResult& r);

// Creates namespace `name` with `labels` through kubectl; false (the error on stderr) if refused.
bool createNamespace(const std::string& name, const std::map<std::string, std::string>& labels);

}  // namespace bulkhead::testing
