#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "kube/client.h"
#include "kube/discovery.h"
#include "kube/events.h"
#include "kube/informer.h"
#include "kube/shared_cache.h"
#include "policy/admission.h"
#include "webhooks/admission_review.h"
#include "webhooks/https_server.h"

namespace bulkhead::webhooks {

struct AdmissionOptions {
  std::string installNamespace;
  // The controller's own user: the only one allowed to change generated objects.
  std::string controllerUsername;
};

// The /validate endpoint: decodes the AdmissionReview, finds the resource's decider in the one
// table of checked resources (admission_rules.h), looks the cluster up in the process's shared
// informer cache (no API call on the request path), asks policy/ for the decision and encodes
// the response. Runs on every replica. Thread-safe: handle() is called from the server's threads.
class AdmissionHandler {
 public:
  // Istio's security API is looked up in `discovery` (requireSidecar depends on it).
  AdmissionHandler(kube::ClientPtr client, ClockPtr clock, kube::SharedCache& cache,
                   kube::ApiDiscovery& discovery, AdmissionOptions options);
  ~AdmissionHandler();

  // Registers its handlers; the informers run already.
  void start();
  void stop();
  // True once the caches every decision needs have synced.
  bool ready() const;

  HttpResponse handle(const HttpRequest& request);
  // The decision for a decoded request (exposed for tests).
  policy::Decision decide(const AdmissionRequest& request);

 private:
  std::shared_ptr<const std::vector<policy::SegmentationPolicy>> policies() const;
  void rebuildPolicies();
  const policy::SegmentationPolicy* governing(const std::vector<policy::SegmentationPolicy>& all,
                                              const std::string& ns) const;
  // The deciders of admission_rules.h.
  policy::Decision decidePod(const AdmissionRequest& req,
                             const std::vector<policy::SegmentationPolicy>& all) const;
  policy::Decision decideNetworkObject(const AdmissionRequest& req,
                                       const std::vector<policy::SegmentationPolicy>& all) const;
  // A NetworkPolicy, Istio policy or mesh configuration written by anyone but the controller.
  policy::Decision decideTenantObject(const AdmissionRequest& req,
                                      const std::vector<policy::SegmentationPolicy>& all) const;
  policy::Decision decideService(const AdmissionRequest& req,
                                 const std::vector<policy::SegmentationPolicy>& all) const;

  kube::ClientPtr client_;
  ClockPtr clock_;
  kube::ApiDiscovery& discovery_;
  AdmissionOptions options_;
  std::shared_ptr<kube::Informer> namespaces_;
  std::shared_ptr<kube::Informer> policies_;
  std::shared_ptr<kube::Informer> networkPolicies_;
  std::shared_ptr<kube::Informer> exceptions_;
  int policyHandlers_ = 0;
  // Audit mode records each violation as an Event on the namespace (never for dry runs).
  std::unique_ptr<kube::EventRecorder> events_;

  mutable std::mutex mu_;
  std::shared_ptr<const std::vector<policy::SegmentationPolicy>> decoded_;  // guarded by mu_
};

}  // namespace bulkhead::webhooks
