#include "webhooks/certs.h"

#include <doctest/doctest.h>

namespace bulkhead::webhooks {
namespace {

using std::chrono::days;
using std::chrono::hours;

const TimePoint kNow = std::chrono::system_clock::from_time_t(1'800'000'000);

TEST_CASE("a CA signs a serving certificate that verifies for its lifetime only") {
  auto ca = makeCa("bulkhead-ca", kNow, days(365));
  REQUIRE_MESSAGE(ca.ok(), ca.status().toString());
  auto serving = issueServingCertificate(*ca, {"bulkhead.bulkhead-system.svc"}, {"127.0.0.1"},
                                         kNow, days(90));
  REQUIRE_MESSAGE(serving.ok(), serving.status().toString());
  CHECK(serving->certPem.starts_with("-----BEGIN CERTIFICATE-----"));
  CHECK(serving->keyPem.starts_with("-----BEGIN PRIVATE KEY-----"));
  CHECK(*certificateNotAfter(serving->certPem) == kNow + days(90));
  CHECK(*certificateNotAfter(ca->certPem) == kNow + days(365));
  CHECK(verifyServingCertificate(serving->certPem, serving->keyPem, ca->certPem, kNow + hours(1))
            .ok());
  CHECK(verifyServingCertificate(serving->certPem, serving->keyPem, ca->certPem, kNow + days(91))
            .message() == "certificate does not verify: certificate has expired");
}

TEST_CASE("verification needs the right CA and the matching key; a bundle may hold several CAs") {
  auto ca = makeCa("old-ca", kNow, days(365));
  auto other = makeCa("new-ca", kNow, days(365));
  REQUIRE(ca.ok());
  REQUIRE(other.ok());
  auto serving = issueServingCertificate(*ca, {"svc"}, {}, kNow, days(90));
  auto otherServing = issueServingCertificate(*other, {"svc"}, {}, kNow, days(90));
  REQUIRE(serving.ok());
  REQUIRE(otherServing.ok());
  CHECK(verifyServingCertificate(serving->certPem, serving->keyPem, other->certPem, kNow)
            .message()
            .starts_with("certificate does not verify"));
  CHECK(verifyServingCertificate(serving->certPem, otherServing->keyPem, ca->certPem, kNow)
            .message() == "the key does not belong to the certificate");
  // During a rotation both CAs are trusted: certificates of either verify.
  std::string bundle = ca->certPem + other->certPem;
  CHECK(verifyServingCertificate(serving->certPem, serving->keyPem, bundle, kNow).ok());
  CHECK(verifyServingCertificate(otherServing->certPem, otherServing->keyPem, bundle, kNow).ok());
  CHECK(issueServingCertificate(*ca, {}, {}, kNow, days(1)).status().code() ==
        StatusCode::kInvalid);
  CHECK(certificateNotAfter("garbage").status().code() == StatusCode::kInvalid);
}

}  // namespace
}  // namespace bulkhead::webhooks

namespace bulkhead::webhooks {
namespace {

TEST_CASE("a serving certificate's hosts are read back sorted; a bundle splits into its CAs") {
  auto ca = makeCa("ca", kNow, std::chrono::days(365));
  auto other = makeCa("other", kNow, std::chrono::days(365));
  REQUIRE(ca.ok());
  REQUIRE(other.ok());
  auto serving = issueServingCertificate(*ca, {"svc.ns.svc", "svc"}, {"127.0.0.1", "::1"}, kNow,
                                         std::chrono::days(90));
  REQUIRE(serving.ok());
  auto hosts = certificateHosts(serving->certPem);
  REQUIRE(hosts.ok());
  CHECK(*hosts == std::vector<std::string>{"127.0.0.1", "::1", "svc", "svc.ns.svc"});
  CHECK(certificateHosts("not a certificate").status().message() == "not a PEM certificate");

  auto blocks = splitPemCertificates("junk\n" + ca->certPem + "\n\n" + other->certPem);
  REQUIRE(blocks.size() == 2);
  CHECK(blocks[0] == ca->certPem);
  CHECK(blocks[1] == other->certPem);
  CHECK(splitPemCertificates("").empty());
  CHECK(splitPemCertificates("-----BEGIN CERTIFICATE-----\nMIIB").empty());
}

}  // namespace
}  // namespace bulkhead::webhooks

namespace bulkhead::webhooks {
namespace {

TEST_CASE("hosts are canonical: trimmed, lowercased, IPs as OpenSSL prints them, deduplicated") {
  auto hosts = canonicalHosts({" Bulkhead.NS.svc ", "0:0:0:0:0:0:0:1", "127.0.0.1", "::1",
                               "2001:DB8::1", "bulkhead"});
  REQUIRE(hosts.ok());
  CHECK(*hosts == std::vector<std::string>{"127.0.0.1", "2001:db8::1", "::1", "bulkhead",
                                           "bulkhead.ns.svc"});
  CHECK(canonicalHosts({""}).status().message() ==
        "\"\" is neither a DNS name nor an IP address");
  CHECK(!canonicalHosts({"a b"}).ok());
  CHECK(!canonicalHosts({"svc..ns"}).ok());
  // What a certificate issued for the canonical hosts reads back is exactly them.
  auto ca = makeCa("ca", kNow, std::chrono::days(365));
  REQUIRE(ca.ok());
  auto serving = issueServingCertificate(*ca, {"bulkhead", "bulkhead.ns.svc"},
                                         {"127.0.0.1", "2001:db8::1", "::1"}, kNow,
                                         std::chrono::days(90));
  REQUIRE(serving.ok());
  CHECK(*certificateHosts(serving->certPem) == *hosts);
}

TEST_CASE("a key pair check, and a chain check that leaves validity times aside") {
  auto ca = makeCa("ca", kNow, std::chrono::days(365));
  auto other = makeCa("other", kNow, std::chrono::days(365));
  REQUIRE(ca.ok());
  REQUIRE(other.ok());
  CHECK(verifyKeyPair(ca->certPem, ca->keyPem).ok());
  CHECK(verifyKeyPair(ca->certPem, other->keyPem).message() ==
        "the key does not belong to the certificate");
  CHECK(verifyKeyPair("", ca->keyPem).message() == "unreadable certificate or key");
  auto serving = issueServingCertificate(*ca, {"svc"}, {}, kNow, std::chrono::days(90));
  REQUIRE(serving.ok());
  // Before notBefore (a leader whose clock lags by more than the backdating) and after expiry.
  CHECK(!verifyServingCertificate(serving->certPem, serving->keyPem, ca->certPem,
                                  kNow - std::chrono::hours(2))
             .ok());
  CHECK(verifyServingCertificate(serving->certPem, serving->keyPem, ca->certPem, std::nullopt)
            .ok());
  CHECK(!verifyServingCertificate(serving->certPem, serving->keyPem, other->certPem, std::nullopt)
             .ok());
}

}  // namespace
}  // namespace bulkhead::webhooks
