#include "webhooks/webhook_certificates.h"

#include <arpa/inet.h>
#include <unistd.h>

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

bool isIpAddress(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::string joined(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    out += p;
  }
  return out;
}

kube::InformerOptions informerOptions(const kube::ResourceType& type, const std::string& ns,
                                      const std::string& name) {
  kube::InformerOptions options;
  options.type = type;
  options.ns = ns;
  options.fieldSelector = "metadata.name=" + name;
  return options;
}

}  // namespace

// --- ServingCertificateFiles ---------------------------------------------------------------

ServingCertificateFiles::ServingCertificateFiles(kube::ClientPtr client, ClockPtr clock,
                                                 std::string ns, std::string secretName,
                                                 std::string dir)
    : ns_(std::move(ns)),
      name_(std::move(secretName)),
      dir_(std::move(dir)),
      informer_(std::move(client), std::move(clock), informerOptions(kube::resources::kSecrets, ns_, name_)) {
  informer_.addEventHandlers({
      .onAdd = [this](const json& s) { onSecret(s); },
      .onUpdate = [this](const json&, const json& s) { onSecret(s); },
      .onDelete = [this](const json&) {
        log::warn("the webhook certificate Secret was deleted; serving the last pair",
                  {{"secret", ns_ + "/" + name_}});
      },
  });
}

ServingCertificateFiles::~ServingCertificateFiles() { stop(); }

void ServingCertificateFiles::start() { informer_.start(); }

void ServingCertificateFiles::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  informer_.stop();
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
             {"resourceVersion", secret["metadata"].value("resourceVersion", "")}});
}

// --- CertificateRotator --------------------------------------------------------------------

CertificateRotator::CertificateRotator(kube::ClientPtr client, ClockPtr clock,
                                       CertificateRotatorOptions options)
    : client_(std::move(client)),
      clock_(std::move(clock)),
      options_(std::move(options)),
      webhookConfiguration_(client_, clock_,
                            informerOptions(kube::resources::kValidatingWebhookConfigurations, "",
                                            options_.webhookConfiguration)) {
  for (const auto& host : options_.hosts) {
    (isIpAddress(host) ? ipAddresses_ : dnsNames_).push_back(host);
  }
  webhookConfiguration_.addEventHandlers({
      .onAdd = [this](const json&) { wake(); },
      .onUpdate = [this](const json&, const json&) { wake(); },
      .onDelete = [this](const json&) { wake(); },
  });
}

CertificateRotator::~CertificateRotator() { stop(); }

void CertificateRotator::start() {
  webhookConfiguration_.start();
  thread_ = std::thread([this] { run(); });
}

void CertificateRotator::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  webhookConfiguration_.stop();
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
    auto next = reconcileOnce();
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
    while (!stopping_ && !woken_ && clock_->monotonicNow() < deadline) {
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
    return client_->create(kube::resources::kSecrets, secret).status().withContext(
        "creating Secret " + options_.ns + "/" + options_.secretName);
  }
  json secret = *existing;
  secret["data"] = encoded;
  return client_->update(kube::resources::kSecrets, secret).status().withContext(
      "updating Secret " + options_.ns + "/" + options_.secretName);
}

StatusOr<policy::TimePoint> CertificateRotator::reconcileOnce() {
  const auto now = clock_->now();
  const std::string secretRef = options_.ns + "/" + options_.secretName;
  std::optional<json> secret;
  if (auto got = client_->get(kube::resources::kSecrets, options_.ns, options_.secretName);
      got.ok()) {
    secret = std::move(*got);
  } else if (got.status().code() != StatusCode::kNotFound) {
    return got.status().withContext("reading Secret " + secretRef);
  }
  auto webhook = client_->get(kube::resources::kValidatingWebhookConfigurations, "",
                              options_.webhookConfiguration);
  if (!webhook.ok() && webhook.status().code() != StatusCode::kNotFound) {
    return webhook.status().withContext("reading ValidatingWebhookConfiguration " +
                                        options_.webhookConfiguration);
  }

  // What the Secret and the webhook configuration hold.
  auto data = secret ? secretData(*secret) : std::map<std::string, std::string>{};
  policy::CertFacts facts;
  std::vector<std::string> bundle = splitPemCertificates(data[kCaBundle]);
  auto caNotAfter = certificateNotAfter(data[kCaCert]);
  auto servingNotAfter = certificateNotAfter(data[kTlsCert]);
  auto hosts = certificateHosts(data[kTlsCert]);
  const auto currentCa = splitPemCertificates(data[kCaCert]);
  const std::string currentCaPem = currentCa.empty() ? "" : currentCa.front();
  if (!secret) {
    facts.problem = "Secret " + secretRef + " does not exist";
  } else if (!caNotAfter.ok() || currentCaPem.empty() || data[kCaKey].empty() || bundle.empty()) {
    facts.problem = "Secret " + secretRef + " holds no usable CA";
  } else if (!servingNotAfter.ok() || !hosts.ok()) {
    facts.problem = "Secret " + secretRef + " holds no usable serving certificate";
  } else {
    facts.usable = true;
    facts.caNotAfter = *caNotAfter;
    facts.servingNotAfter = *servingNotAfter;
    facts.servingFromCurrentCa =
        verifyServingCertificate(data[kTlsCert], data[kTlsKey], data[kCaCert], now).ok();
    auto wanted = options_.hosts;
    std::sort(wanted.begin(), wanted.end());
    facts.servingHostsMatch = *hosts == wanted;
    for (const auto& ca : bundle) {
      if (ca == currentCaPem) {
        facts.bundleHasCurrentCa = true;
      } else if (auto expiry = certificateNotAfter(ca); expiry.ok()) {
        facts.previousCaNotAfter.push_back(*expiry);
      } else {
        facts.previousCaNotAfter.push_back(now);  // unreadable: prune it
      }
    }
  }
  const std::string bundlePem = joined(bundle);
  bool webhookTrustsBundle = webhook.ok() && !bundlePem.empty();
  if (webhook.ok()) {
    for (const auto& w : webhook->value("webhooks", json::array())) {
      const std::string caBundle = w.value("clientConfig", json::object()).value("caBundle", "");
      webhookTrustsBundle = webhookTrustsBundle && base64Decode(caBundle) == bundlePem;
    }
  }
  if (webhookTrustsBundle) {
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
  log::info("webhook certificates: " + std::string(policy::certActionName(plan.action)),
            {{"reason", plan.reason}, {"secret", secretRef}});
  const auto& settings = options_.settings;
  auto issueServing = [&](const KeyPair& ca, policy::TimePoint caExpiry) -> Status {
    ASSIGN_OR_RETURN(auto serving,
                     issueServingCertificate(ca, dnsNames_, ipAddresses_, now,
                                             policy::servingValidityAt(settings, now, caExpiry)));
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
      ASSIGN_OR_RETURN(auto ca, makeCa("bulkhead-webhook-ca", now, settings.caValidity));
      data[kCaCert] = ca.certPem;
      data[kCaKey] = ca.keyPem;
      data[kCaBundle] = bundlePem + ca.certPem;
      break;
    }
    case CertAction::kRepairBundle:
      data[kCaBundle] = bundlePem + currentCaPem;
      break;
    case CertAction::kIssueServing:
      RETURN_IF_ERROR(issueServing({data[kCaCert], data[kCaKey]}, facts.caNotAfter));
      break;
    case CertAction::kPruneBundle: {
      std::string kept;
      for (const auto& ca : bundle) {
        auto expiry = certificateNotAfter(ca);
        if (ca == currentCaPem || (expiry.ok() && *expiry > now)) {
          kept += ca;
        }
      }
      data[kCaBundle] = kept;
      break;
    }
    case CertAction::kPublishBundle: {
      if (!webhook.ok()) {
        return notFoundError("ValidatingWebhookConfiguration " + options_.webhookConfiguration +
                             " not found: the chart installs it; `helm upgrade` restores it");
      }
      json updated = *webhook;
      for (auto& w : updated["webhooks"]) {
        w["clientConfig"]["caBundle"] = base64Encode(bundlePem);
      }
      RETURN_IF_ERROR(
          client_->update(kube::resources::kValidatingWebhookConfigurations, updated)
              .status()
              .withContext("writing the caBundle of ValidatingWebhookConfiguration " +
                           options_.webhookConfiguration));
      trustedBundle_ = bundlePem;
      trustedSince_ = now;
      certificateActions(policy::certActionName(plan.action)).inc();
      return now;
    }
  }
  RETURN_IF_ERROR(writeSecret(secret, data));
  certificateActions(policy::certActionName(plan.action)).inc();
  return now;  // look again at once: one change often leads to the next
}

}  // namespace bulkhead::webhooks
