#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "kube/client.h"
#include "kube/events.h"
#include "kube/informer.h"
#include "policy/admission.h"
#include "webhooks/admission_review.h"
#include "webhooks/https_server.h"

namespace bulkhead::webhooks {

struct AdmissionOptions {
  std::string installNamespace;
  // The controller's own user: the only one allowed to change generated objects.
  std::string controllerUsername;
  // How often to check whether Istio's security API is served (requireSidecar depends on it).
  std::chrono::milliseconds meshDiscoveryInterval{10'000};
};

// The /validate endpoint (SPEC 3): decodes the AdmissionReview, looks the cluster up in its own
// informer caches (no API call on the request path), asks policy/ for the decision and encodes
// the response. Runs on every replica. Thread-safe: handle() is called from the server's threads.
class AdmissionHandler {
 public:
  AdmissionHandler(kube::ClientPtr client, ClockPtr clock, AdmissionOptions options);
  ~AdmissionHandler();

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
  // A NetworkPolicy, Istio policy or mesh configuration written by anyone but the controller.
  policy::Decision decideTenantObject(const AdmissionRequest& req,
                                      const std::vector<policy::SegmentationPolicy>& all) const;

  kube::ClientPtr client_;
  ClockPtr clock_;
  AdmissionOptions options_;
  std::unique_ptr<kube::Informer> namespaces_;
  std::unique_ptr<kube::Informer> policies_;
  std::unique_ptr<kube::Informer> networkPolicies_;
  std::unique_ptr<kube::Informer> exceptions_;
  // Audit mode records each violation as an Event on the namespace (never for dry runs).
  std::unique_ptr<kube::EventRecorder> events_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<const std::vector<policy::SegmentationPolicy>> decoded_;  // guarded by mu_
  bool meshAvailable_ = false;                                               // guarded by mu_
  bool meshKnown_ = false;  // discovery answered once; guarded by mu_
  bool stopping_ = false;   // guarded by mu_
  std::thread discovery_;  // re-checks whether Istio is served (it may be installed later)
};

}  // namespace bulkhead::webhooks
