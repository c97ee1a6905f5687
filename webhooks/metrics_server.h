#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/status.h"

namespace bulkhead::webhooks {

// The plain-HTTP operations endpoint: /metrics (Prometheus text from the default registry),
// /healthz (alive) and /readyz (ready() says whether to take traffic). Boost.Beast behind a
// pimpl. One thread; each request is small and answered from memory.
class MetricsServer {
 public:
  // `bindAddress` is "host:port" or ":port" (all interfaces); port 0 picks a free port.
  static StatusOr<std::unique_ptr<MetricsServer>> start(const std::string& bindAddress,
                                                         std::function<bool()> ready);
  ~MetricsServer();
  int port() const;
  void stop();

 private:
  class Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulkhead::webhooks
