#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "kube/client.h"
#include "kube/informer.h"
#include "kube/manager.h"
#include "kube/shared_cache.h"
#include "policy/cert_rotation.h"

// The webhook's certificates as a Kubernetes Secret (`tls.crt`, `tls.key`, `ca.crt`; SPEC 4):
// every replica serves the pair the Secret holds, and with self-managed certificates the leader
// makes, rotates and publishes it. With cert-manager, cert-manager writes the same Secret.
namespace bulkhead::webhooks {

// Keys of the Secret. `ca.crt`/`ca.key` are the current CA; `ca-bundle.crt` holds every CA the
// webhook configuration must trust (the current one and, during a rotation, the previous one).
inline constexpr const char* kTlsCert = "tls.crt";
inline constexpr const char* kTlsKey = "tls.key";
inline constexpr const char* kCaCert = "ca.crt";
inline constexpr const char* kCaKey = "ca.key";
inline constexpr const char* kCaBundle = "ca-bundle.crt";

// Runs on every replica: watches the Secret and writes its `tls.crt`/`tls.key` into `dir` (files
// replaced by rename, so the HTTPS server's reload never sees half a pair) whenever they change.
// A Secret that is missing or lacks either key leaves the files as they are.
class ServingCertificateFiles {
 public:
  ServingCertificateFiles(kube::SharedCache& cache, std::string ns, std::string secretName,
                          std::string dir);
  ~ServingCertificateFiles();
  ServingCertificateFiles(const ServingCertificateFiles&) = delete;
  ServingCertificateFiles& operator=(const ServingCertificateFiles&) = delete;

  void start();
  void stop();
  // Blocks until a pair has been written, stop() is called, or `timeout` passes.
  bool waitForPair(std::chrono::milliseconds timeout);
  std::string certFile() const { return dir_ + "/tls.crt"; }
  std::string keyFile() const { return dir_ + "/tls.key"; }

 private:
  void onSecret(const nlohmann::json& secret);

  std::string ns_;
  std::string name_;
  std::string dir_;
  std::shared_ptr<kube::Informer> informer_;  // from the shared cache
  kube::EventHandlers handlers_;
  int handlerId_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string writtenCert_;  // guarded by mu_
  bool stopping_ = false;    // guarded by mu_
};

struct CertificateRotatorOptions {
  std::string ns;
  std::string secretName;
  std::string webhookConfiguration;
  // Subject alternative names of the serving certificate: DNS names and IP addresses, valid for
  // canonicalHosts().
  std::vector<std::string> hosts;
  policy::CertRotationSettings settings;
  // The longest wait between two looks at the Secret and the webhook configuration, so a
  // caBundle that someone (or `helm upgrade`) reset is repaired.
  std::chrono::milliseconds maxCheckInterval{60'000};
};

// Runs on the leader: makes the CA and serving certificate when missing, rotates them before
// they expire (policy::planCertificates decides what and when) and keeps the webhook
// configuration's caBundle equal to the Secret's bundle. It watches both, so a configuration
// recreated without caBundle or a Secret edited or deleted is repaired at once. Failures (a
// Forbidden, a missing webhook configuration, another writer undoing its changes) are logged
// with what to check and retried with backoff.
class CertificateRotator : public kube::LeaderRunnable {
 public:
  CertificateRotator(kube::ClientPtr client, ClockPtr clock, kube::SharedCache& cache,
                     CertificateRotatorOptions options);
  ~CertificateRotator() override;
  CertificateRotator(const CertificateRotator&) = delete;
  CertificateRotator& operator=(const CertificateRotator&) = delete;

  void start() override;
  void stop() override;

  // One look and at most one action. Returns when to look again.
  StatusOr<policy::TimePoint> reconcileOnce();

 private:
  void run();
  void wake();
  Status writeSecret(const std::optional<nlohmann::json>& existing,
                     const std::map<std::string, std::string>& data);

  kube::ClientPtr client_;
  ClockPtr clock_;
  CertificateRotatorOptions options_;
  std::vector<std::string> hosts_;  // canonical
  std::vector<std::string> dnsNames_;
  std::vector<std::string> ipAddresses_;
  std::deque<MonoTime> recentChanges_;  // when the last changes were made, oldest first
  // The bundle last seen in (or written to) the webhook configuration, and since when.
  std::string trustedBundle_;
  policy::TimePoint trustedSince_;
  // From the shared cache; both only wake the loop. Their handler ids are guarded by watchMu_,
  // which start() and stop() (on different threads) take; the handlers never do.
  std::mutex watchMu_;
  bool watchesStopped_ = false;
  std::vector<std::pair<std::shared_ptr<kube::Informer>, int>> watches_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  bool woken_ = false;     // guarded by mu_
};

}  // namespace bulkhead::webhooks
