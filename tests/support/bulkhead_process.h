#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace bulkhead::testing {

// `helm install bulkhead charts/bulkhead -n bulkhead-system` (real Helm, the whole chart, CRDs
// included) with the chart's ValidatingWebhookConfiguration pointed at
// https://127.0.0.1:<webhookPort>/validate, plus `helmArgs`. From then on every BulkheadProcess of
// this binary runs with the args of the chart's Deployment (read back from the API server), made
// local by the few flags webhookArgs() adds. Call it before anything uses serviceAccountDir();
// once per binary, since the webhook configuration is cluster-wide.
void installChart(int webhookPort, const std::vector<std::string>& helmArgs = {});
// The flags that make the chart's Deployment args serve on loopback: the webhook on `port`, its
// certificate for 127.0.0.1.
std::vector<std::string> webhookArgs(int port);

// Bulkhead's CRDs and the chart's ServiceAccount + RBAC (rendered by real Helm, or installed by
// installChart()) in the control plane, once, and a real token of that ServiceAccount laid out
// like /var/run/secrets/kubernetes.io/serviceaccount. Returns that directory.
const std::string& serviceAccountDir();

// The `bulkhead` binary as a child process, in-cluster style (the ServiceAccount token above),
// leader elected, with the chart's Deployment args if installChart() ran, then `extraArgs`. Logs to DIR/<logName>.log ($BULKHEAD_TEST_LOG_DIR keeps
// them). Stopped with SIGTERM when destroyed.
class BulkheadProcess {
 public:
  BulkheadProcess(const std::string& logName, const std::vector<std::string>& extraArgs = {});
  ~BulkheadProcess() { stop(15); }
  BulkheadProcess(const BulkheadProcess&) = delete;
  BulkheadProcess& operator=(const BulkheadProcess&) = delete;

  void stop(int signal);
  // A metric family's total from the process's /metrics (its port is read from the log).
  double metric(const std::string& family) const;
  // Blocks until the log has a line containing `text` (or `timeoutSeconds` pass).
  bool waitForLog(const std::string& text, int timeoutSeconds) const;
  const std::string& logFile() const { return log_; }

 private:
  pid_t pid_ = -1;
  std::string log_;
};

// The deployment the admission tests need, once per binary: Istio's CRDs established (so STRICT
// mTLS, and requireSidecar, apply), the chart installed with its webhook on a free loopback port,
// and one BulkheadProcess (webhook and leader-elected controllers) serving it, stopped at
// teardown. Logs to <logName>.log.
BulkheadProcess& servingBulkhead(const std::string& logName);

}  // namespace bulkhead::testing
