#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace bulkhead::testing {

// Installs Bulkhead's CRDs and the chart's ServiceAccount + RBAC (rendered by real Helm) into the
// control plane once, and lays out a real token of that ServiceAccount like
// /var/run/secrets/kubernetes.io/serviceaccount. Returns that directory.
const std::string& serviceAccountDir();

// The `bulkhead` binary as a child process, in-cluster style (the ServiceAccount token above),
// leader elected, with `extraArgs`. Logs to DIR/<logName>.log ($BULKHEAD_TEST_LOG_DIR keeps
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

}  // namespace bulkhead::testing
