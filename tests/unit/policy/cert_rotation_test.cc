#include "policy/cert_rotation.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <set>

namespace bulkhead::policy {
namespace {

using std::chrono::days;
using std::chrono::seconds;

const TimePoint kNow = std::chrono::system_clock::from_time_t(1'800'000'000);

CertFacts healthy() {
  CertFacts f;
  f.caUsable = true;
  f.webhookTrustsSomeCa = true;
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
  missing.problem = "Secret bulkhead-system/bulkhead-webhook-tls does not exist";
  auto plan = planCertificates(missing, s, kNow);
  CHECK(plan.action == CertAction::kBootstrap);
  CHECK(plan.reason == missing.problem);
  // A CA lost (Secret deleted, key broken) while the API servers trust one: replicas may still
  // serve a certificate from it, so a new CA is staged next to it, never bootstrapped.
  missing.webhookTrustsSomeCa = true;
  plan = planCertificates(missing, s, kNow);
  CHECK(plan.action == CertAction::kStageNewCa);
  CHECK(plan.reason == missing.problem + "; staging a new CA next to the trusted ones");

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

  // Renewing from the CA in use goes first: it needs no trust change, so a webhook
  // configuration that cannot be written does not let the serving certificate expire.
  f = healthy();
  f.servingNotAfter = kNow + days(29);
  f.bundleTrustedSince.reset();
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
// serve the Secret's certificate each with a lag (and keep their last one while the Secret has
// none). `disturb` may break the Secret at any second. At every second the certificate served
// must be unexpired and signed by an unexpired CA that the API servers trust.
struct Simulation {
  struct Serving {
    int ca = 0;  // 0: none
    TimePoint notAfter;
  };
  struct Secret {
    int currentCa = 0;  // 0: the CA is unusable
    Serving serving;
    std::set<int> bundle;
  };

  std::map<CertAction, int> run(const std::function<void(int, std::optional<Secret>&)>& disturb) {
    CertRotationSettings s;
    s.caValidity = seconds(3650);
    s.servingValidity = seconds(900);
    s.renewBefore = seconds(300);
    s.propagationDelay = seconds(30);
    REQUIRE(validateCertRotationSettings(s).empty());
    const seconds apiServerLag{10};  // shorter than the propagation delay
    const seconds replicaLag{90};    // replicas may be slower: the old CA stays trusted

    std::map<int, TimePoint> caNotAfter;
    std::optional<Secret> secret;
    std::set<int> webhookBundle;
    std::optional<TimePoint> trustedSince;
    Serving replicas;  // what the replicas got from the Secret last
    std::deque<std::set<int>> webhookHistory;  // one entry per second
    std::deque<Serving> servedHistory;
    int nextCa = 1;
    std::map<CertAction, int> actions;
    const int total = 2 * 365 * 24 * 3600 / 1000;  // ~63,000 simulated seconds
    for (int i = 0; i < total; ++i) {
      const TimePoint now = kNow + seconds(i);
      disturb(i, secret);
      auto unexpired = [&](int ca) { return caNotAfter[ca] > now; };
      CertFacts f;
      f.webhookTrustsSomeCa = std::any_of(webhookBundle.begin(), webhookBundle.end(), unexpired);
      if (secret && secret->currentCa != 0) {
        f.caUsable = true;
        f.caNotAfter = caNotAfter[secret->currentCa];
        f.servingFromCurrentCa = secret->serving.ca == secret->currentCa;
        f.servingNotAfter = secret->serving.notAfter;
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
        case CertAction::kStageNewCa: {
          if (!secret) {
            secret = Secret{};
          }
          std::set<int> bundle;
          for (int ca : secret->bundle) {
            if (unexpired(ca)) {
              bundle.insert(ca);
            }
          }
          for (int ca : webhookBundle) {
            if (unexpired(ca)) {
              bundle.insert(ca);
            }
          }
          caNotAfter[nextCa] = now + s.caValidity;
          bundle.insert(nextCa);
          secret->bundle = bundle;
          secret->currentCa = nextCa++;
          break;
        }
        case CertAction::kRepairBundle:
          secret->bundle.insert(secret->currentCa);
          break;
        case CertAction::kIssueServing:
          issue(secret->currentCa);
          break;
        case CertAction::kPruneBundle:
          std::erase_if(secret->bundle,
                        [&](int ca) { return ca != secret->currentCa && !unexpired(ca); });
          break;
        case CertAction::kPublishBundle:
          webhookBundle = secret->bundle;
          trustedSince = now;
          break;
      }
      if (secret && secret->serving.ca != 0) {
        replicas = secret->serving;
      }
      webhookHistory.push_back(webhookBundle);
      servedHistory.push_back(replicas);
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
      INFO("second " << i << ", serving from CA " << served.ca);
      REQUIRE(served.ca != 0);
      REQUIRE(served.notAfter > now);
      REQUIRE(caNotAfter[served.ca] > now);
      REQUIRE(trusted.contains(served.ca));
    }
    return actions;
  }
};

TEST_CASE("simulated rotations never leave a served certificate untrusted") {
  auto actions = Simulation().run([](int, auto&) {});
  // Both kinds of rotation happened, many times.
  CHECK(actions[CertAction::kBootstrap] == 1);
  CHECK(actions[CertAction::kStageNewCa] >= 20);
  CHECK(actions[CertAction::kIssueServing] >= 60);
  CHECK(actions[CertAction::kPruneBundle] >= 15);
  CHECK(actions[CertAction::kRepairBundle] == 0);
}

TEST_CASE("simulated: a deleted Secret or a broken CA is replaced without a failed request") {
  auto actions = Simulation().run([](int i, std::optional<Simulation::Secret>& secret) {
    if (i == 20'000 || i == 41'111) {
      secret.reset();  // kubectl delete secret
    }
    if (i == 30'000 && secret) {
      secret->currentCa = 0;  // ca.key no longer matches ca.crt
    }
    if (i == 50'000 && secret) {
      secret->bundle.clear();  // ca-bundle.crt emptied
    }
  });
  CHECK(actions[CertAction::kBootstrap] == 1);  // only the very first time
  CHECK(actions[CertAction::kRepairBundle] == 1);
  CHECK(actions[CertAction::kStageNewCa] >= 23);
}

}  // namespace
}  // namespace bulkhead::policy
