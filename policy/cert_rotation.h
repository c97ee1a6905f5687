#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

// When the webhook's self-managed certificates are made, rotated and trusted (SPEC 4): a private
// CA and a serving certificate it signs, kept in a Secret; the CAs the webhook configuration's
// caBundle trusts. Pure: the certificates' facts and the time are inputs.
//
// The CA is renewed while it still has a whole serving certificate's validity plus the renewal
// margin left, so every serving certificate gets its full validity and is renewed before its CA
// goes. A rotation never breaks a request: a new CA is first added to the trusted bundle next to the
// old one ("staged"); only once the webhook configuration has trusted the new bundle for a
// propagation delay is a serving certificate issued from the new CA; the old CA leaves the bundle
// when it expires (every certificate it signed expires with it: a serving certificate never
// outlives its CA).
namespace bulkhead::policy {

using TimePoint = std::chrono::system_clock::time_point;

struct CertRotationSettings {
  std::chrono::seconds caValidity{std::chrono::hours(24 * 365)};
  std::chrono::seconds servingValidity{std::chrono::hours(24 * 90)};
  // Renew a serving certificate this long before it expires (a CA this long plus the serving
  // validity before it expires).
  std::chrono::seconds renewBefore{std::chrono::hours(24 * 30)};
  // How long the webhook configuration must have trusted a new CA before a serving certificate
  // from it is used: the API servers' time to pick up the configuration.
  std::chrono::seconds propagationDelay{std::chrono::seconds(30)};
};

// An empty string when the settings are usable, else why not.
std::string validateCertRotationSettings(const CertRotationSettings& settings);

// What the Secret and the webhook configuration hold now.
struct CertFacts {
  // The Secret holds a CA certificate and the key that belongs to it; else `problem` says why.
  bool caUsable = false;
  std::string problem;
  // The webhook configuration's caBundle holds an unexpired CA: the API servers trust something
  // that replicas may be serving, so even a lost CA is replaced by staging, never from scratch.
  bool webhookTrustsSomeCa = false;
  TimePoint caNotAfter;
  // The serving certificate chains to the current CA and matches its key (validity times aside;
  // those are servingNotAfter's business). False when there is none.
  bool servingFromCurrentCa = false;
  TimePoint servingNotAfter;
  // Its subject alternative names are exactly the wanted hosts.
  bool servingHostsMatch = false;
  // The expiry of every CA in the Secret's bundle that is not the current CA.
  std::vector<TimePoint> previousCaNotAfter;
  // The bundle holds the current CA.
  bool bundleHasCurrentCa = false;
  // Since when the webhook configuration's caBundle has equalled the Secret's bundle, as far as
  // this process knows; nullopt while it differs.
  std::optional<TimePoint> bundleTrustedSince;
};

enum class CertAction {
  kNone,
  kBootstrap,         // nothing is trusted yet: new CA and serving certificate, bundle = the CA
  kStageNewCa,        // new CA, added to the bundle (with every unexpired CA the webhook
                      // configuration trusts); the serving certificate is left alone
  kRepairBundle,      // add the current CA to a bundle that lost it
  kIssueServing,      // new serving certificate from the current CA
  kPruneBundle,       // drop expired CAs from the bundle
  kPublishBundle,     // write the Secret's bundle into the webhook configuration
};

struct CertPlan {
  CertAction action = CertAction::kNone;
  std::string reason;
  // When to look again if nothing changes.
  TimePoint nextCheck;
};

CertPlan planCertificates(const CertFacts& facts, const CertRotationSettings& settings,
                          TimePoint now);

const char* certActionName(CertAction action);

// The serving certificate's validity when issued at `now` from a CA expiring at `caNotAfter`:
// never past the CA.
std::chrono::seconds servingValidityAt(const CertRotationSettings& settings, TimePoint now,
                                       TimePoint caNotAfter);

}  // namespace bulkhead::policy
