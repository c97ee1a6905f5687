#include "policy/cert_rotation.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <set>

namespace bulkhead::policy {
namespace {

using std::chrono::days;
using std::chrono::seconds;

const TimePoint kNow = std::chrono::system_clock::from_time_t(1'800'000'000);

CertFacts healthy() {
  CertFacts f;
  f.usable = true;
  f.caNotAfter = kNow + days(300);
  f.servingNotAfter = kNow + days(60);
  f.servingFromCurrentCa = true;
  f.servingHostsMatch = true;
  f.bundleHasCurrentCa = true;
  f.bundleTrustedSince = kNow - days(1);
  return f;
}

TEST_CASE("settings: margins shorter than validities, serving no longer than the CA") {
  CertRotationSettings s;
  CHECK(validateCertRotationSettings(s).empty());
  s.renewBefore = s.servingValidity;
  CHECK(validateCertRotationSettings(s) ==
        "the renewal margin must be shorter than the serving certificate's validity");
  s = {};
  s.servingValidity = s.caValidity - s.renewBefore;
  CHECK(validateCertRotationSettings(s) ==
        "the CA must be valid for longer than the serving certificate plus the renewal margin");
  s = {};
  s.propagationDelay = s.renewBefore;
  CHECK(validateCertRotationSettings(s) ==
        "the propagation delay must be shorter than the renewal margin");
}

TEST_CASE("each state leads to one action, in order of urgency") {
  CertRotationSettings s;
  CertFacts f = healthy();
  CHECK(planCertificates(f, s, kNow).action == CertAction::kNone);
  CHECK(planCertificates(f, s, kNow).nextCheck == kNow + days(30));
  f.caNotAfter = kNow + days(130);
  CHECK(planCertificates(f, s, kNow).nextCheck == kNow + days(10));  // the CA's renewal first
  f = healthy();

  CertFacts missing;
  missing.problem = "secret bulkhead-system/bulkhead-webhook-tls not found";
  auto plan = planCertificates(missing, s, kNow);
  CHECK(plan.action == CertAction::kBootstrap);
  CHECK(plan.reason == missing.problem);

  f = healthy();
  f.bundleHasCurrentCa = false;
  CHECK(planCertificates(f, s, kNow).action == CertAction::kRepairBundle);

  f = healthy();
  f.caNotAfter = kNow + days(120);  // 90 days of serving validity + 30 days of margin
  CHECK(planCertificates(f, s, kNow).action == CertAction::kStageNewCa);
  CHECK(planCertificates(f, s, kNow - days(1)).action == CertAction::kNone);
  CHECK(planCertificates(f, s, kNow - days(1)).nextCheck == kNow);

  f = healthy();
  f.bundleTrustedSince.reset();
  CHECK(planCertificates(f, s, kNow).action == CertAction::kPublishBundle);

  f = healthy();
  f.servingNotAfter = kNow + days(29);
  CHECK(planCertificates(f, s, kNow).action == CertAction::kIssueServing);

  f = healthy();
  f.servingHostsMatch = false;
  CHECK(planCertificates(f, s, kNow).action == CertAction::kIssueServing);

  f = healthy();
  f.previousCaNotAfter = {kNow + days(2)};
  plan = planCertificates(f, s, kNow);
  CHECK(plan.action == CertAction::kNone);
  CHECK(plan.nextCheck == kNow + days(2));
  CHECK(planCertificates(f, s, kNow + days(2)).action == CertAction::kPruneBundle);
}

TEST_CASE("a serving certificate from a new CA waits until the API servers trust that CA") {
  CertRotationSettings s;
  CertFacts f = healthy();
  f.servingFromCurrentCa = false;
  f.bundleTrustedSince = kNow;
  auto plan = planCertificates(f, s, kNow + seconds(5));
  CHECK(plan.action == CertAction::kNone);
  CHECK(plan.nextCheck == kNow + s.propagationDelay);
  CHECK(planCertificates(f, s, kNow + s.propagationDelay).action == CertAction::kIssueServing);
}

TEST_CASE("a serving certificate never outlives its CA") {
  CertRotationSettings s;
  CHECK(servingValidityAt(s, kNow, kNow + days(365)) == s.servingValidity);
  CHECK(servingValidityAt(s, kNow, kNow + days(40)) == days(40));
  CHECK(servingValidityAt(s, kNow, kNow - days(1)) == seconds(0));
}

// Two years of operation, second by second, in a scaled model of the real system: the planner
// drives a Secret and a webhook configuration; API servers see the configuration and replicas
// serve the Secret's certificate each with a lag. At every second the certificate served must be
// unexpired and signed by an unexpired CA that the API servers trust.
TEST_CASE("simulated rotations never leave a served certificate untrusted") {
  CertRotationSettings s;
  s.caValidity = seconds(3650);
  s.servingValidity = seconds(900);
  s.renewBefore = seconds(300);
  s.propagationDelay = seconds(30);
  REQUIRE(validateCertRotationSettings(s).empty());
  const seconds apiServerLag{10};  // shorter than the propagation delay
  const seconds replicaLag{90};    // replicas may be slower: the old CA stays trusted

  struct Serving {
    int ca = 0;
    TimePoint notAfter;
  };
  struct Secret {
    int currentCa = 0;
    Serving serving;
    std::set<int> bundle;
  };
  std::map<int, TimePoint> caNotAfter;
  std::optional<Secret> secret;
  std::set<int> webhookBundle;
  std::optional<TimePoint> trustedSince;
  std::deque<std::set<int>> webhookHistory;     // one entry per second
  std::deque<std::optional<Serving>> servedHistory;
  int nextCa = 1;
  std::map<CertAction, int> actions;

  const TimePoint start = kNow;
  const int total = 2 * 365 * 24 * 3600 / 1000;  // ~63,000 simulated seconds
  for (int i = 0; i < total; ++i) {
    const TimePoint now = start + seconds(i);
    CertFacts f;
    if (secret) {
      f.usable = true;
      f.caNotAfter = caNotAfter[secret->currentCa];
      f.servingNotAfter = secret->serving.notAfter;
      f.servingFromCurrentCa = secret->serving.ca == secret->currentCa;
      f.servingHostsMatch = true;
      f.bundleHasCurrentCa = secret->bundle.contains(secret->currentCa);
      for (int ca : secret->bundle) {
        if (ca != secret->currentCa) {
          f.previousCaNotAfter.push_back(caNotAfter[ca]);
        }
      }
      f.bundleTrustedSince = webhookBundle == secret->bundle ? trustedSince : std::nullopt;
    }
    auto plan = planCertificates(f, s, now);
    ++actions[plan.action];
    auto issue = [&](int ca) {
      secret->serving = {ca, now + servingValidityAt(s, now, caNotAfter[ca])};
    };
    switch (plan.action) {
      case CertAction::kNone:
        break;
      case CertAction::kBootstrap:
        caNotAfter[nextCa] = now + s.caValidity;
        secret = Secret{nextCa, {}, {nextCa}};
        issue(nextCa++);
        break;
      case CertAction::kStageNewCa:
        caNotAfter[nextCa] = now + s.caValidity;
        secret->currentCa = nextCa;
        secret->bundle.insert(nextCa++);
        break;
      case CertAction::kRepairBundle:
        secret->bundle.insert(secret->currentCa);
        break;
      case CertAction::kIssueServing:
        issue(secret->currentCa);
        break;
      case CertAction::kPruneBundle:
        std::erase_if(secret->bundle, [&](int ca) {
          return ca != secret->currentCa && caNotAfter[ca] <= now;
        });
        break;
      case CertAction::kPublishBundle:
        webhookBundle = secret->bundle;
        trustedSince = now;
        break;
    }
    webhookHistory.push_back(webhookBundle);
    servedHistory.push_back(secret ? std::optional(secret->serving) : std::nullopt);
    if (webhookHistory.size() > static_cast<size_t>(apiServerLag.count()) + 1) {
      webhookHistory.pop_front();
    }
    if (servedHistory.size() > static_cast<size_t>(replicaLag.count()) + 1) {
      servedHistory.pop_front();
    }
    // Serving starts once the first certificate reached the replicas and the API servers.
    if (i < replicaLag.count() + apiServerLag.count() + 2) {
      continue;
    }
    const auto& trusted = webhookHistory.front();
    const auto& served = servedHistory.front();
    REQUIRE(served);
    INFO("second " << i << ", serving from CA " << served->ca);
    REQUIRE(served->notAfter > now);
    REQUIRE(caNotAfter[served->ca] > now);
    REQUIRE(trusted.contains(served->ca));
  }
  // Both kinds of rotation happened, many times.
  CHECK(actions[CertAction::kBootstrap] == 1);
  CHECK(actions[CertAction::kStageNewCa] >= 20);
  CHECK(actions[CertAction::kIssueServing] >= 60);
  CHECK(actions[CertAction::kPruneBundle] >= 15);
  CHECK(actions[CertAction::kRepairBundle] == 0);
}

}  // namespace
}  // namespace bulkhead::policy
