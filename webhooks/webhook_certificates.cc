#include "webhooks/webhook_certificates.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "common/base64.h"
#include "common/log.h"
#include "common/metrics.h"
#include "webhooks/certs.h"

namespace bulkhead::webhooks {
namespace {

using nlohmann::json;
using policy::CertAction;

metrics::Gauge& servingNotAfter() {
  return metrics::defaultRegistry()
      .gauge("bulkhead_webhook_certificate_expiry_timestamp_seconds",
             "When the serving certificate this replica uses expires (Unix time).", {})
      .labels({});
}

metrics::Counter& certificateActions(const char* action) {
  return metrics::defaultRegistry()
      .counter("bulkhead_webhook_certificate_actions_total",
               "Changes the leader made to the webhook's certificates, by action.", {"action"})
      .labels({action});
}

double unixSeconds(policy::TimePoint t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

// Writes `content` to `path` through a temporary file and a rename.
Status replaceFile(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out.flush()) {
      return internalError("cannot write " + tmp);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return internalError("cannot rename " + tmp + " to " + path);
  }
  return okStatus();
}

// A Secret's data values, decoded; a missing or undecodable key is absent from the map.
std::map<std::string, std::string> secretData(const json& secret) {
  std::map<std::string, std::string> out;
  const auto data = secret.find("data");
  if (data == secret.end() || !data->is_object()) {
    return out;
  }
  for (const auto& [key, value] : data->items()) {
    if (value.is_string()) {
      if (auto decoded = base64Decode(value.get<std::string>())) {
        out[key] = std::move(*decoded);
      }
    }
  }
  return out;
}

std::string joined(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    out += p;
  }
  return out;
}

// An informer on the one object `ns`/`name` of `type` (RBAC allows list and watch by name when
// the request selects that name).
kube::InformerOptions oneObject(const kube::ResourceType& type, const std::string& ns,
                                const std::string& name) {
  return kube::informerOptions(type, ns, "", "metadata.name=" + name);
}

}  // namespace

// --- ServingCertificateFiles ---------------------------------------------------------------

ServingCertificateFiles::ServingCertificateFiles(kube::SharedCache& cache, std::string ns,
                                                 std::string secretName, std::string dir)
    : ns_(std::move(ns)),
      name_(std::move(secretName)),
      dir_(std::move(dir)),
      informer_(cache.informer(oneObject(kube::resources::kSecrets, ns_, name_))) {
  handlers_ = kube::EventHandlers({
      .onAdd = [this](const json& s) { onSecret(s); },
      .onUpdate = [this](const json&, const json& s) { onSecret(s); },
      .onDelete =
          [this](const json&) {
            log::warn("the webhook certificate Secret was deleted; serving the last pair",
                      {{"secret", ns_ + "/" + name_}});
          },
  });
}

ServingCertificateFiles::~ServingCertificateFiles() { stop(); }

void ServingCertificateFiles::start() { handlerId_ = informer_->addEventHandlers(handlers_); }

void ServingCertificateFiles::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (handlerId_ != 0) {
    informer_->removeEventHandlers(handlerId_);
    handlerId_ = 0;
  }
}

bool ServingCertificateFiles::waitForPair(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [this] { return stopping_ || !writtenCert_.empty(); });
  return !writtenCert_.empty();
}

void ServingCertificateFiles::onSecret(const json& secret) {
  auto data = secretData(secret);
  const auto cert = data.find(kTlsCert);
  const auto key = data.find(kTlsKey);
  if (cert == data.end() || key == data.end() || cert->second.empty() || key->second.empty()) {
    log::warn("the webhook certificate Secret has no tls.crt/tls.key yet",
              {{"secret", ns_ + "/" + name_}});
    return;
  }
  std::unique_lock lock(mu_);
  if (cert->second == writtenCert_) {
    return;
  }
  // The key first: until the certificate follows, the server keeps its previous pair.
  Status s = replaceFile(keyFile(), key->second);
  if (s.ok()) {
    s = replaceFile(certFile(), cert->second);
  }
  if (!s.ok()) {
    log::error("cannot write the webhook certificate", {{"error", s.toString()}});
    return;
  }
  writtenCert_ = cert->second;
  lock.unlock();
  cv_.notify_all();
  if (auto notAfter = certificateNotAfter(cert->second); notAfter.ok()) {
    servingNotAfter().set(unixSeconds(*notAfter));
  }
  log::info("webhook certificate updated from its Secret",
            {{"secret", ns_ + "/" + name_},
             {"resourceVersion",
              secret.value(nlohmann::json::json_pointer("/metadata/resourceVersion"), "")}});
}

// --- CertificateRotator --------------------------------------------------------------------

namespace {

// At most this many changes to the certificates or the webhook configuration in a minute: more
// means something undoes them (another writer of caBundle, say), and the rotator backs off
// instead of fighting. A full CA rotation is four changes.
constexpr size_t kMaxChangesPerMinute = 30;

// The CA certificates of a PEM bundle that are still valid at `now`.
std::vector<std::string> unexpiredCas(const std::string& bundle, policy::TimePoint now) {
  std::vector<std::string> out;
  for (auto& ca : splitPemCertificates(bundle)) {
    if (auto expiry = certificateNotAfter(ca); expiry.ok() && *expiry > now) {
      out.push_back(std::move(ca));
    }
  }
  return out;
}

// The caBundle of every webhook of a configuration, decoded; nullopt when the object does not
// have the shape the API server guarantees.
std::optional<std::vector<std::string>> caBundles(const json& configuration) {
  const auto webhooks = configuration.find("webhooks");
  if (webhooks == configuration.end() || !webhooks->is_array()) {
    return std::nullopt;
  }
  std::vector<std::string> out;
  for (const auto& w : *webhooks) {
    const auto clientConfig = w.is_object() ? w.find("clientConfig") : w.end();
    if (!w.is_object() || clientConfig == w.end() || !clientConfig->is_object()) {
      return std::nullopt;
    }
    const auto caBundle = clientConfig->find("caBundle");
    std::optional<std::string> decoded = caBundle != clientConfig->end() && caBundle->is_string()
                                             ? base64Decode(caBundle->get<std::string>())
                                             : std::optional<std::string>("");
    out.push_back(decoded.value_or(""));
  }
  return out;
}

// A Forbidden from the API server, with what to check.
Status explained(Status status, const std::string& doing, const std::string& rbacHint) {
  if (status.code() == StatusCode::kForbidden) {
    return status.withContext(doing + " (check the chart's RBAC: " + rbacHint + ")");
  }
  return status.withContext(doing);
}

}  // namespace

CertificateRotator::CertificateRotator(kube::ClientPtr client, ClockPtr clock,
                                       kube::SharedCache& cache, CertificateRotatorOptions options)
    : client_(std::move(client)), clock_(std::move(clock)), options_(std::move(options)) {
  // cmd/ validated the hosts with the same function: an error here is a bug, and aborts.
  hosts_ = canonicalHosts(options_.hosts).value();
  for (const auto& host : hosts_) {
    (isIpAddress(host) ? ipAddresses_ : dnsNames_).push_back(host);
  }
  watches_.emplace_back(cache.informer(oneObject(kube::resources::kValidatingWebhookConfigurations,
                                                 "", options_.webhookConfiguration)),
                        0);
  watches_.emplace_back(
      cache.informer(oneObject(kube::resources::kSecrets, options_.ns, options_.secretName)), 0);
}

CertificateRotator::~CertificateRotator() { stop(); }

void CertificateRotator::start() {
  std::lock_guard watchLock(watchMu_);
  if (watchesStopped_) {
    return;
  }
  for (auto& [informer, id] : watches_) {
    id = informer->addEventHandlers({
        .onAdd = [this](const json&) { wake(); },
        .onUpdate = [this](const json&, const json&) { wake(); },
        .onDelete = [this](const json&) { wake(); },
    });
  }
  thread_ = std::thread([this] { run(); });
}

void CertificateRotator::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  std::lock_guard watchLock(watchMu_);
  watchesStopped_ = true;
  for (auto& [informer, id] : watches_) {
    if (id != 0) {
      informer->removeEventHandlers(id);
      id = 0;
    }
  }
  if (thread_.joinable()) {
    thread_.join();
  }
}

void CertificateRotator::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void CertificateRotator::run() {
  std::chrono::milliseconds backoff{500};
  while (true) {
    StatusOr<policy::TimePoint> next = internalError("not run");
    try {
      next = reconcileOnce();
    } catch (const std::exception& e) {
      next = internalError(std::string("unexpected: ") + e.what());
    }
    std::chrono::milliseconds wait = options_.maxCheckInterval;
    if (next.ok()) {
      backoff = std::chrono::milliseconds(500);
      auto until = std::chrono::duration_cast<std::chrono::milliseconds>(*next - clock_->now());
      wait = std::clamp(until, std::chrono::milliseconds(0), options_.maxCheckInterval);
    } else {
      log::error("managing the webhook certificates failed; retrying",
                 {{"error", next.status().toString()},
                  {"secret", options_.ns + "/" + options_.secretName},
                  {"webhookConfiguration", options_.webhookConfiguration},
                  {"retryInMs", static_cast<int64_t>(backoff.count())}});
      wait = backoff;
      backoff = std::min(backoff * 2, std::chrono::milliseconds(30'000));
    }
    std::unique_lock lock(mu_);
    const auto deadline = clock_->monotonicNow() + wait;
    // A wake-up (the configuration or the Secret changed) cuts a wait short, but not a backoff.
    while (!stopping_ && !(woken_ && next.ok()) && clock_->monotonicNow() < deadline) {
      clock_->waitUntil(lock, cv_, deadline);
    }
    if (stopping_) {
      return;
    }
    woken_ = false;
  }
}

Status CertificateRotator::writeSecret(const std::optional<json>& existing,
                                       const std::map<std::string, std::string>& data) {
  json encoded = json::object();
  for (const auto& [key, value] : data) {
    encoded[key] = base64Encode(value);
  }
  const std::string ref = options_.ns + "/" + options_.secretName;
  const std::string hint = "create, update on secrets in " + options_.ns;
  if (!existing) {
    json secret = {{"apiVersion", "v1"},
                   {"kind", "Secret"},
                   {"type", "kubernetes.io/tls"},
                   {"metadata",
                    {{"name", options_.secretName},
                     {"namespace", options_.ns},
                     {"labels",
                      {{"app.kubernetes.io/name", "bulkhead"},
                       {"app.kubernetes.io/component", "webhook"},
                       {"app.kubernetes.io/managed-by", "bulkhead"}}}}},
                   {"data", encoded}};
    return explained(client_->create(kube::resources::kSecrets, secret).status(),
                     "creating Secret " + ref, hint);
  }
  json secret = *existing;
  secret["data"] = encoded;
  return explained(client_->update(kube::resources::kSecrets, secret).status(),
                   "updating Secret " + ref, hint);
}

StatusOr<policy::TimePoint> CertificateRotator::reconcileOnce() {
  const auto now = clock_->now();
  const std::string secretRef = options_.ns + "/" + options_.secretName;
  const std::string vwcRef = "ValidatingWebhookConfiguration " + options_.webhookConfiguration;
  std::optional<json> secret;
  if (auto got = client_->get(kube::resources::kSecrets, options_.ns, options_.secretName);
      got.ok()) {
    secret = std::move(*got);
  } else if (got.status().code() != StatusCode::kNotFound) {
    return explained(got.status(), "reading Secret " + secretRef,
                     "get on secrets/" + options_.secretName + " in " + options_.ns);
  }
  // An unreadable webhook configuration does not stop renewals that need no change of trust.
  Status webhookProblem;
  std::optional<std::vector<std::string>> webhookBundles;
  auto webhook = client_->get(kube::resources::kValidatingWebhookConfigurations, "",
                              options_.webhookConfiguration);
  if (!webhook.ok()) {
    webhookProblem = webhook.status().code() == StatusCode::kNotFound
                         ? notFoundError(vwcRef +
                                         " not found: the chart installs it; `helm upgrade` "
                                         "restores it")
                         : explained(webhook.status(), "reading " + vwcRef,
                                     "get, update on validatingwebhookconfigurations/" +
                                         options_.webhookConfiguration);
  } else if (webhookBundles = caBundles(*webhook); !webhookBundles) {
    webhookProblem = invalidError(vwcRef + " has no webhooks with a clientConfig");
  }

  // What the Secret and the webhook configuration hold.
  auto data = secret ? secretData(*secret) : std::map<std::string, std::string>{};
  policy::CertFacts facts;
  std::vector<std::string> webhookCas;
  for (const auto& bundle : webhookBundles.value_or(std::vector<std::string>{})) {
    for (auto& ca : unexpiredCas(bundle, now)) {
      if (std::find(webhookCas.begin(), webhookCas.end(), ca) == webhookCas.end()) {
        webhookCas.push_back(std::move(ca));
      }
    }
  }
  facts.webhookTrustsSomeCa = !webhookCas.empty();
  const auto currentCas = splitPemCertificates(data[kCaCert]);
  const std::string currentCa = currentCas.empty() ? "" : currentCas.front();
  const auto caNotAfter = certificateNotAfter(currentCa);
  const Status caKey = verifyKeyPair(currentCa, data[kCaKey]);
  if (!secret) {
    facts.problem = "Secret " + secretRef + " does not exist";
  } else if (!caNotAfter.ok()) {
    facts.problem = "Secret " + secretRef + " holds no CA certificate";
  } else if (!caKey.ok()) {
    facts.problem = "the CA key in Secret " + secretRef + " is unusable: " + caKey.message();
  }
  const std::vector<std::string> bundle = splitPemCertificates(data[kCaBundle]);
  const std::string bundlePem = joined(bundle);
  facts.caUsable = facts.problem.empty();
  if (facts.caUsable) {
    facts.caNotAfter = *caNotAfter;
    facts.servingFromCurrentCa =
        verifyServingCertificate(data[kTlsCert], data[kTlsKey], currentCa, std::nullopt).ok();
    if (facts.servingFromCurrentCa) {
      facts.servingNotAfter = certificateNotAfter(data[kTlsCert]).value();
      auto hosts = certificateHosts(data[kTlsCert]);
      facts.servingHostsMatch = hosts.ok() && *hosts == hosts_;
    }
    for (const auto& ca : bundle) {
      if (ca == currentCa) {
        facts.bundleHasCurrentCa = true;
      } else if (auto expiry = certificateNotAfter(ca); expiry.ok()) {
        facts.previousCaNotAfter.push_back(*expiry);
      } else {
        facts.previousCaNotAfter.push_back(now);  // unreadable: prune it
      }
    }
  }
  const bool webhookTrustsBundle =
      webhookBundles && !webhookBundles->empty() && !bundlePem.empty() &&
      std::all_of(webhookBundles->begin(), webhookBundles->end(),
                  [&](const std::string& b) { return b == bundlePem; });
  if (!webhookTrustsBundle) {
    trustedBundle_.clear();
  } else {
    if (trustedBundle_ != bundlePem) {  // first seen by this process: counts from now
      trustedBundle_ = bundlePem;
      trustedSince_ = now;
    }
    facts.bundleTrustedSince = trustedSince_;
  }

  const auto plan = planCertificates(facts, options_.settings, now);
  if (plan.action == CertAction::kNone) {
    return plan.nextCheck;
  }
  if (plan.action == CertAction::kPublishBundle && !webhookProblem.ok()) {
    return webhookProblem;
  }
  const auto monotonic = clock_->monotonicNow();
  while (!recentChanges_.empty() && monotonic - recentChanges_.front() > std::chrono::minutes(1)) {
    recentChanges_.pop_front();
  }
  if (recentChanges_.size() >= kMaxChangesPerMinute) {
    return internalError(std::to_string(recentChanges_.size()) +
                         " certificate changes in the last minute, the last one " +
                         policy::certActionName(plan.action) + " (" + plan.reason +
                         "): is another writer undoing them?");
  }
  recentChanges_.push_back(monotonic);
  log::info("webhook certificates: " + std::string(policy::certActionName(plan.action)),
            {{"reason", plan.reason}, {"secret", secretRef}});

  const auto& settings = options_.settings;
  auto issueServing = [&](const KeyPair& ca, policy::TimePoint caExpiry) -> Status {
    ASSIGN_OR_RETURN(auto serving,
                     issueServingCertificate(ca, dnsNames_, ipAddresses_, now,
                                             policy::servingValidityAt(settings, now, caExpiry)));
    // What the planner will check next time must hold, or the same action would follow.
    RETURN_IF_ERROR(
        verifyServingCertificate(serving.certPem, serving.keyPem, ca.certPem, std::nullopt));
    if (certificateHosts(serving.certPem).value() != hosts_) {
      return internalError("a new serving certificate does not carry the wanted hosts");
    }
    data[kTlsCert] = serving.certPem;
    data[kTlsKey] = serving.keyPem;
    return okStatus();
  };
  switch (plan.action) {
    case CertAction::kNone:
      break;
    case CertAction::kBootstrap: {
      ASSIGN_OR_RETURN(auto ca, makeCa("bulkhead-webhook-ca", now, settings.caValidity));
      data = {{kCaCert, ca.certPem}, {kCaKey, ca.keyPem}, {kCaBundle, ca.certPem}};
      RETURN_IF_ERROR(issueServing(ca, now + settings.caValidity));
      break;
    }
    case CertAction::kStageNewCa: {
      // Everything still trusted stays trusted: the Secret's bundle and, when the CA was lost,
      // whatever the webhook configuration trusts (replicas may serve a certificate from it).
      std::vector<std::string> keep = unexpiredCas(bundlePem, now);
      for (const auto& ca : webhookCas) {
        if (std::find(keep.begin(), keep.end(), ca) == keep.end()) {
          keep.push_back(ca);
        }
      }
      ASSIGN_OR_RETURN(auto ca, makeCa("bulkhead-webhook-ca", now, settings.caValidity));
      data[kCaCert] = ca.certPem;
      data[kCaKey] = ca.keyPem;
      data[kCaBundle] = joined(keep) + ca.certPem;
      data[kTlsCert];  // a kubernetes.io/tls Secret has both keys, if only empty ones
      data[kTlsKey];
      break;
    }
    case CertAction::kRepairBundle:
      data[kCaBundle] = bundlePem + currentCa;
      break;
    case CertAction::kIssueServing:
      RETURN_IF_ERROR(issueServing({currentCa, data[kCaKey]}, facts.caNotAfter));
      break;
    case CertAction::kPruneBundle:
      data[kCaBundle] = joined(unexpiredCas(bundlePem, now));
      if (data[kCaBundle].find(currentCa) == std::string::npos) {
        data[kCaBundle] += currentCa;
      }
      break;
    case CertAction::kPublishBundle: {
      // webhookProblem is OK here, so `webhook` was read and has the expected shape.
      json updated = std::move(*webhook);
      for (auto& w : updated["webhooks"]) {
        w["clientConfig"]["caBundle"] = base64Encode(bundlePem);
      }
      RETURN_IF_ERROR(explained(
          client_->update(kube::resources::kValidatingWebhookConfigurations, updated).status(),
          "writing the caBundle of " + vwcRef,
          "get, update on validatingwebhookconfigurations/" + options_.webhookConfiguration));
      // The propagation delay counts from when the API server has it.
      trustedBundle_ = bundlePem;
      trustedSince_ = clock_->now();
      certificateActions(policy::certActionName(plan.action)).inc();
      return trustedSince_;
    }
  }
  RETURN_IF_ERROR(writeSecret(secret, data));
  certificateActions(policy::certActionName(plan.action)).inc();
  return now;  // look again at once: one change often leads to the next
}

}  // namespace bulkhead::webhooks
