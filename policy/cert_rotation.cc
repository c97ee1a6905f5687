#include "policy/cert_rotation.h"

#include <algorithm>

namespace bulkhead::policy {

std::string validateCertRotationSettings(const CertRotationSettings& s) {
  if (s.renewBefore.count() <= 0 || s.servingValidity.count() <= 0 ||
      s.caValidity.count() <= 0) {
    return "certificate validities and the renewal margin must be positive";
  }
  if (s.renewBefore >= s.servingValidity) {
    return "the renewal margin must be shorter than the serving certificate's validity";
  }
  if (s.servingValidity + s.renewBefore >= s.caValidity) {
    return "the CA must be valid for longer than the serving certificate plus the renewal margin";
  }
  if (s.propagationDelay.count() < 0 || s.propagationDelay >= s.renewBefore) {
    return "the propagation delay must be shorter than the renewal margin";
  }
  return "";
}

CertPlan planCertificates(const CertFacts& f, const CertRotationSettings& s, TimePoint now) {
  if (!f.caUsable) {
    const std::string problem = f.problem.empty() ? "no CA yet" : f.problem;
    if (f.webhookTrustsSomeCa) {
      return {CertAction::kStageNewCa, problem + "; staging a new CA next to the trusted ones", now};
    }
    return {CertAction::kBootstrap, problem, now};
  }
  if (!f.bundleHasCurrentCa) {
    return {CertAction::kRepairBundle, "the CA bundle does not hold the current CA", now};
  }
  const TimePoint caRenewal = f.caNotAfter - s.servingValidity - s.renewBefore;
  if (now >= caRenewal) {
    return {CertAction::kStageNewCa,
            "the CA would not outlive a new serving certificate and its renewal margin", now};
  }
  // Renewing from a CA that is already in use needs no change of trust.
  if (f.servingFromCurrentCa && f.servingNotAfter - now <= s.renewBefore) {
    return {CertAction::kIssueServing,
            "the serving certificate expires within the renewal margin", now};
  }
  if (f.servingFromCurrentCa && !f.servingHostsMatch) {
    return {CertAction::kIssueServing, "the serving certificate's hosts changed", now};
  }
  if (!f.bundleTrustedSince) {
    return {CertAction::kPublishBundle, "the webhook configuration's caBundle is out of date", now};
  }
  if (!f.servingFromCurrentCa) {
    TimePoint trustedFrom = *f.bundleTrustedSince + s.propagationDelay;
    if (now < trustedFrom) {
      return {CertAction::kNone, "waiting for the API servers to trust the new CA", trustedFrom};
    }
    return {CertAction::kIssueServing, "no serving certificate from the current CA", now};
  }
  TimePoint next = std::min(caRenewal, f.servingNotAfter - s.renewBefore);
  for (TimePoint expiry : f.previousCaNotAfter) {
    if (expiry <= now) {
      return {CertAction::kPruneBundle, "a previous CA in the bundle has expired", now};
    }
    next = std::min(next, expiry);
  }
  return {CertAction::kNone, "", next};
}

const char* certActionName(CertAction action) {
  switch (action) {
    case CertAction::kNone:
      return "none";
    case CertAction::kBootstrap:
      return "bootstrap";
    case CertAction::kStageNewCa:
      return "stage-ca";
    case CertAction::kRepairBundle:
      return "repair-bundle";
    case CertAction::kIssueServing:
      return "issue-serving";
    case CertAction::kPruneBundle:
      return "prune-bundle";
    case CertAction::kPublishBundle:
      return "publish-bundle";
  }
  return "unknown";
}

std::chrono::seconds servingValidityAt(const CertRotationSettings& s, TimePoint now,
                                       TimePoint caNotAfter) {
  auto untilCa = std::chrono::duration_cast<std::chrono::seconds>(caNotAfter - now);
  return std::max(std::chrono::seconds(0), std::min(s.servingValidity, untilCa));
}

}  // namespace bulkhead::policy
