#include "policy/grants.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace bulkhead::policy {
namespace {

using nlohmann::json;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

WallTime at(const std::string& text) {
  auto t = parseDateTime(text, "test");
  REQUIRE_MESSAGE(t.ok(), t.status().toString());
  return *t;
}

// 2026-11-29T12:00:00Z (built without at(): doctest asserts cannot run during static init).
const WallTime kNow =
    WallTime(std::chrono::sys_days(std::chrono::year(2026) / std::chrono::November / 29)) +
    hours(12);
const std::string kPrefix = "bulkhead: AccessGrant \"debug-api\" in namespace \"payments\"";

// A valid grant in payments, requested by alice, from shop's web pods (ServiceAccount web) to
// payments' api pods on 8080/TCP, expiring two hours after kNow; `patch` is merged into it
// (RFC 7386: null removes a field, objects merge).
json grantObject(const json& patch = json::object()) {
  json object = {
      {"apiVersion", "bulkhead.dev/v1alpha1"},
      {"kind", "AccessGrant"},
      {"metadata",
       {{"name", "debug-api"}, {"namespace", "payments"}, {"uid", "u-1"}, {"generation", 1}}},
      {"spec",
       {{"from",
         {{"namespace", "shop"},
          {"podSelector", {{"matchLabels", {{"app", "web"}}}}},
          {"serviceAccount", "web"}}},
        {"to",
         {{"podSelector", {{"matchLabels", {{"app", "api"}}}}},
          {"ports", {{{"port", 8080}, {"protocol", "TCP"}}}}}},
        {"expiresAt", "2026-11-29T14:00:00Z"},
        {"reason", "TICKET-7 debug checkout latency"},
        {"requestedBy", "alice"}}}};
  object.merge_patch(patch);
  return object;
}

json specPatch(const json& spec) { return {{"spec", spec}}; }

// The same grant for a duration of 2h instead of an expiresAt.
json durationGrant(const json& patch = json::object()) {
  json object = grantObject(specPatch({{"expiresAt", nullptr}, {"duration", "2h"}}));
  object.merge_patch(patch);
  return object;
}

// `object` with spec.to.ports replaced (merge patches cannot replace a list element).
json withPorts(json object, const json& ports) {
  object["spec"]["to"]["ports"] = ports;
  return object;
}

json approvedBy(json object, const std::string& approver) {
  object["spec"]["approvedBy"] = approver;
  return object;
}

AccessGrant decode(const json& object) {
  auto g = decodeAccessGrant(object);
  REQUIRE_MESSAGE(g.ok(), g.status().toString());
  return *g;
}

std::string decodeError(const json& object) {
  auto g = decodeAccessGrant(object);
  REQUIRE_FALSE(g.ok());
  CHECK(g.status().code() == StatusCode::kInvalid);
  return g.status().message();
}

// payments' policy: approval by security-admins, grants at most 4 hours.
SegmentationPolicy paymentsPolicy(bool approval = true) {
  SegmentationPolicy p;
  p.name = "payments-baseline";
  p.exceptions.maxDuration = hours(4);
  if (approval) {
    p.exceptions.approverGroups = {"security-admins"};
  }
  return p;
}

// shop's policy: approval by shop-leads, grants at most 3 hours.
SegmentationPolicy shopPolicy(bool approval = true) {
  SegmentationPolicy p;
  p.name = "shop-baseline";
  p.exceptions.maxDuration = hours(3);
  if (approval) {
    p.exceptions.approverGroups = {"shop-leads"};
  }
  return p;
}

const UserInfo kAlice{"alice", {"developers", "system:authenticated"}};
const UserInfo kBob{"bob", {"security-admins", "system:authenticated"}};
const UserInfo kCarol{"carol", {"developers", "system:authenticated"}};
const UserInfo kDave{"dave", {"security-admins", "shop-leads", "system:authenticated"}};
const UserInfo kErin{"erin", {"shop-leads", "system:authenticated"}};

ExceptionReview createReview(const json& object, const UserInfo& user) {
  return {"CREATE", object, std::nullopt, user};
}

ExceptionReview updateReview(const json& old, const json& updated, const UserInfo& user) {
  return {"UPDATE", updated, old, user};
}

// ---------------------------------------------------------------------------------------------
// Decoding

TEST_CASE("a complete AccessGrant decodes field by field") {
  json object = approvedBy(grantObject(), "bob");
  object["metadata"]["deletionTimestamp"] = "2026-11-29T12:30:00Z";
  object["metadata"]["finalizers"] = {"other.example/x", "bulkhead.dev/access-grant"};
  object["status"] = {{"phase", "Active"}, {"activatedAt", "2026-11-29T12:01:00Z"}};
  AccessGrant g = decode(object);
  CHECK(g.name == "debug-api");
  CHECK(g.ns == "payments");
  CHECK(g.uid == "u-1");
  CHECK(g.generation == 1);
  CHECK(g.deleting);
  CHECK(g.hasFinalizer);
  CHECK(g.from.ns == "shop");
  CHECK(g.from.podSelector == LabelSelector{{{"app", "web"}}, {}});
  CHECK(g.from.serviceAccount == "web");
  CHECK(g.to.matchLabels == Labels{{"app", "api"}});
  CHECK(g.to.ports == std::vector<Port>{{8080, "TCP"}});
  CHECK(g.expiresAt == kNow + hours(2));
  CHECK(g.duration == std::nullopt);
  CHECK(g.reason == "TICKET-7 debug checkout latency");
  CHECK(g.requestedBy == "alice");
  CHECK(g.approvedBy == "bob");
  CHECK(g.activatedAt == kNow + minutes(1));
  CHECK(effectiveExpiry(g) == kNow + hours(2));
}

TEST_CASE("optional fields: source pods, ServiceAccount, protocol, approver, status") {
  json object =
      grantObject(specPatch({{"from", {{"podSelector", nullptr}, {"serviceAccount", nullptr}}}}));
  object = withPorts(object, {{{"port", 53}, {"protocol", "UDP"}}, {{"port", 9090}}});
  AccessGrant g = decode(object);
  CHECK(g.from.podSelector.empty());
  CHECK(g.from.serviceAccount.empty());
  CHECK(g.to.ports == std::vector<Port>{{53, "UDP"}, {9090, "TCP"}});
  CHECK(g.approvedBy.empty());
  CHECK_FALSE(g.deleting);
  CHECK_FALSE(g.hasFinalizer);
  CHECK(g.activatedAt == std::nullopt);
}

TEST_CASE("a duration grant expires its duration after activation") {
  AccessGrant g = decode(durationGrant());
  CHECK(g.expiresAt == std::nullopt);
  CHECK(g.duration == hours(2));
  CHECK(effectiveExpiry(g) == std::nullopt);
  g.activatedAt = kNow;
  CHECK(effectiveExpiry(g) == kNow + hours(2));
  CHECK(decode(durationGrant(specPatch({{"duration", "1h30m"}}))).duration == minutes(90));
  CHECK(decode(durationGrant(specPatch({{"duration", "1.5h"}}))).duration == minutes(90));
  CHECK(decode(durationGrant(specPatch({{"duration", "500ms"}}))).duration ==
        std::chrono::milliseconds(500));
  CHECK(decode(durationGrant(specPatch({{"duration", "87600h"}}))).duration == hours(87600));
  // The effective expiry saturates rather than overflow.
  g.duration = hours(87600);
  g.activatedAt = at("2262-01-01T00:00:00Z");
  CHECK(effectiveExpiry(g) == WallTime::max());
}

TEST_CASE("decoding errors name the field path") {
  CHECK(decodeError(json::array()) == "AccessGrant: not an object");
  CHECK(decodeError(grantObject({{"metadata", nullptr}})) == "metadata: required");
  CHECK(decodeError(grantObject({{"metadata", {{"name", "Debug_API"}}}})) ==
        "metadata.name: \"Debug_API\" is not a DNS label (at most 63 lowercase letters, digits "
        "and '-'): the objects a grant generates carry its name as a label value");
  CHECK(decodeError(grantObject({{"metadata", {{"name", std::string(64, 'a')}}}})) ==
        "metadata.name: \"" + std::string(64, 'a') +
            "\" is not a DNS label (at most 63 lowercase letters, digits and '-'): the objects a "
            "grant generates carry its name as a label value");
  CHECK(decode(grantObject({{"metadata", {{"name", std::string(63, 'a')}}}})).name ==
        std::string(63, 'a'));
  CHECK(decodeError(grantObject({{"metadata", {{"namespace", nullptr}}}})) ==
        "metadata.namespace: required");
  CHECK(decodeError(grantObject({{"spec", nullptr}})) == "spec: required");
  CHECK(decodeError(grantObject({{"spec", "x"}})) == "spec: must be an object");

  // spec.from
  CHECK(decodeError(grantObject(specPatch({{"from", nullptr}}))) == "spec.from: required");
  CHECK(decodeError(grantObject(specPatch({{"from", {{"namespace", nullptr}}}}))) ==
        "spec.from.namespace: required");
  CHECK(decodeError(grantObject(specPatch({{"from", {{"namespace", "Shop"}}}}))) ==
        "spec.from.namespace: \"Shop\" is not a namespace name");
  CHECK(decodeError(grantObject(specPatch(
            {{"from",
              {{"podSelector",
                {{"matchExpressions", {{{"key", "tier"}, {"operator", "Near"}}}}}}}}}))) ==
        "spec.from.podSelector.matchExpressions[0].operator: \"Near\" is not one of In, NotIn, "
        "Exists, DoesNotExist");
  CHECK(decodeError(grantObject(specPatch(
            {{"from", {{"podSelector", {{"matchLabels", {{"app", "web server"}}}}}}}}))) ==
        "spec.from.podSelector.matchLabels.app: \"web server\" is not a valid label value (at "
        "most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit)");
  CHECK(decodeError(grantObject(specPatch(
            {{"from",
              {{"podSelector",
                {{"matchExpressions", {{{"key", "-tier"}, {"operator", "Exists"}}}}}}}}}))) ==
        "spec.from.podSelector.matchExpressions[0].key: \"-tier\" is not a valid label key");
  CHECK(decodeError(grantObject(specPatch({{"from", {{"serviceAccount", "Web!"}}}}))) ==
        "spec.from.serviceAccount: \"Web!\" is not a ServiceAccount name");
  CHECK(decodeError(grantObject(specPatch({{"from", {{"serviceAccount", 7}}}}))) ==
        "spec.from.serviceAccount: must be a string");

  // spec.to
  CHECK(decodeError(grantObject(specPatch({{"to", nullptr}}))) == "spec.to: required");
  CHECK(decodeError(grantObject(specPatch({{"to", {{"podSelector", nullptr}}}}))) ==
        "spec.to.podSelector: required");
  CHECK(decodeError(grantObject(specPatch(
            {{"to",
              {{"podSelector",
                {{"matchExpressions", {{{"key", "app"}, {"operator", "Exists"}}}}}}}}}))) ==
        "spec.to.podSelector.matchExpressions: not supported; select the pods with matchLabels "
        "only (Istio AuthorizationPolicy selectors only support matchLabels)");
  CHECK(decodeError(
            grantObject(specPatch({{"to", {{"podSelector", {{"matchLabels", nullptr}}}}}}))) ==
        "spec.to.podSelector.matchLabels: required, with at least one label: a grant opens a "
        "flow to some pods, not to the whole namespace");
  CHECK(decodeError(grantObject(
            specPatch({{"to", {{"podSelector", {{"matchLabels", {{"example.com/", "x"}}}}}}}}))) ==
        "spec.to.podSelector.matchLabels: \"example.com/\" is not a valid label key");
  CHECK(decodeError(
            grantObject(specPatch({{"to", {{"podSelector", {{"matchLabels", {{"app", 3}}}}}}}}))) ==
        "spec.to.podSelector.matchLabels.app: must be a string");
  CHECK(decodeError(grantObject(specPatch({{"to", {{"ports", nullptr}}}}))) ==
        "spec.to.ports: required");
  CHECK(decodeError(withPorts(grantObject(), json::array())) ==
        "spec.to.ports: must list 1 to 16 ports");
  json seventeen = json::array();
  for (int p = 1; p <= 17; ++p) {
    seventeen.push_back({{"port", p}});
  }
  CHECK(decodeError(withPorts(grantObject(), seventeen)) ==
        "spec.to.ports: must list 1 to 16 ports");
  seventeen.erase(16);
  CHECK(decode(withPorts(grantObject(), seventeen)).to.ports.size() == 16);
  CHECK(decodeError(withPorts(grantObject(), {8080})) ==
        "spec.to.ports[0]: must be an object with port and protocol");
  CHECK(decodeError(withPorts(grantObject(), {{{"protocol", "TCP"}}})) ==
        "spec.to.ports[0].port: required");
  CHECK(decodeError(withPorts(grantObject(), {{{"port", "8080"}}})) ==
        "spec.to.ports[0].port: must be an integer");
  CHECK(decodeError(withPorts(grantObject(), {{{"port", 80}}, {{"port", 0}}})) ==
        "spec.to.ports[1].port: 0 is not in 1-65535");
  CHECK(decodeError(withPorts(grantObject(), {{{"port", 65536}}})) ==
        "spec.to.ports[0].port: 65536 is not in 1-65535");
  CHECK(decodeError(withPorts(grantObject(), {{{"port", -1}}})) ==
        "spec.to.ports[0].port: -1 is not in 1-65535");
  CHECK(decodeError(withPorts(grantObject(), {{{"port", 8080}, {"protocol", "ICMP"}}})) ==
        "spec.to.ports[0].protocol: \"ICMP\" is not one of TCP, UDP, SCTP");
  CHECK(decodeError(withPorts(grantObject(), {{{"port", 8080}},
                                              {{"port", 8080}, {"protocol", "UDP"}},
                                              {{"port", 8080}, {"protocol", "TCP"}}})) ==
        "spec.to.ports[2]: 8080/TCP is listed twice");

  // The time bound
  CHECK(decodeError(grantObject(specPatch({{"duration", "2h"}}))) ==
        "spec: set exactly one of expiresAt (an RFC 3339 time) and duration (like 2h, counted "
        "from activation)");
  CHECK(decodeError(grantObject(specPatch({{"expiresAt", nullptr}}))) ==
        "spec: set exactly one of expiresAt (an RFC 3339 time) and duration (like 2h, counted "
        "from activation)");
  CHECK(decodeError(grantObject(specPatch({{"expiresAt", "2026-11-29 14:00"}}))) ==
        "spec.expiresAt: \"2026-11-29 14:00\" is not an RFC 3339 time like 2026-12-01T00:00:00Z");
  CHECK(decodeError(durationGrant(specPatch({{"duration", "2 hours"}}))) ==
        "spec.duration: \"2 hours\" is not a duration like 2h or 90m");
  CHECK(decodeError(durationGrant(specPatch({{"duration", "2d"}}))) ==
        "spec.duration: \"2d\" is not a duration like 2h or 90m");
  CHECK(decodeError(durationGrant(specPatch({{"duration", 7200}}))) ==
        "spec.duration: must be a string");
  CHECK(decodeError(durationGrant(specPatch({{"duration", "0s"}}))) ==
        "spec.duration: must be greater than zero");
  CHECK(decodeError(durationGrant(specPatch({{"duration", "87600h1s"}}))) ==
        "spec.duration: \"87600h1s\" is longer than 87600h, the longest any grant can last");
  CHECK(decodeError(durationGrant(specPatch({{"duration", "9999999999999h"}}))) ==
        "spec.duration: \"9999999999999h\" is longer than 12 characters");

  // Who and why
  CHECK(decodeError(grantObject(specPatch({{"reason", nullptr}}))) == "spec.reason: required");
  CHECK(decodeError(grantObject(specPatch({{"reason", ""}}))) == "spec.reason: required");
  CHECK(decode(grantObject(specPatch({{"reason", std::string(1024, 'x')}}))).reason.size() == 1024);
  CHECK(decodeError(grantObject(specPatch({{"reason", std::string(1025, 'x')}}))) ==
        "spec.reason: must be at most 1024 characters");
  CHECK(decodeError(grantObject(specPatch({{"requestedBy", nullptr}}))) ==
        "spec.requestedBy: required");
  CHECK(decodeError(grantObject(specPatch({{"approvedBy", 1}}))) ==
        "spec.approvedBy: must be a string");
  CHECK(decodeError(grantObject({{"status", {{"activatedAt", "yesterday"}}}})) ==
        "status.activatedAt: \"yesterday\" is not an RFC 3339 time like 2026-12-01T00:00:00Z");
}

TEST_CASE("the source namespace is read from objects that may not decode") {
  CHECK(grantSourceNamespace(grantObject()) == "shop");
  CHECK(grantSourceNamespace(grantObject(specPatch({{"reason", nullptr}}))) == "shop");
  CHECK(grantSourceNamespace(grantObject(specPatch({{"from", nullptr}}))).empty());
  CHECK(grantSourceNamespace(grantObject(specPatch({{"from", {{"namespace", 3}}}}))).empty());
  CHECK(grantSourceNamespace(grantObject(specPatch({{"from", "shop"}}))).empty());
  CHECK(grantSourceNamespace(json("x")).empty());
}

// ---------------------------------------------------------------------------------------------
// Phase

TEST_CASE("phase names round-trip") {
  for (auto phase :
       {GrantPhase::kPending, GrantPhase::kActive, GrantPhase::kExpired, GrantPhase::kRevoked}) {
    CHECK(parseGrantPhase(grantPhaseName(phase)) == phase);
  }
  CHECK(grantPhaseName(GrantPhase::kRevoked) == "Revoked");
  CHECK(parseGrantPhase("active") == std::nullopt);
}

TEST_CASE("phase: Active without approval rules, Expired at expiresAt") {
  AccessGrant g = decode(grantObject());
  SegmentationPolicy payments = paymentsPolicy(false);
  SegmentationPolicy shop = shopPolicy(false);
  CHECK(phaseOf(g, nullptr, nullptr, kNow) == GrantPhase::kActive);
  CHECK(phaseOf(g, &payments, &shop, kNow) == GrantPhase::kActive);
  CHECK(phaseOf(g, &payments, &shop, kNow + hours(2) - seconds(1)) == GrantPhase::kActive);
  CHECK(phaseOf(g, &payments, &shop, kNow + hours(2)) == GrantPhase::kExpired);
}

TEST_CASE("phase: Pending while either policy requires approval and there is none") {
  AccessGrant g = decode(grantObject());
  SegmentationPolicy gatedPayments = paymentsPolicy();
  SegmentationPolicy gatedShop = shopPolicy();
  SegmentationPolicy openShop = shopPolicy(false);
  SegmentationPolicy openPayments = paymentsPolicy(false);
  CHECK_FALSE(grantNeedsApproval(nullptr, nullptr));
  CHECK_FALSE(grantNeedsApproval(&openPayments, &openShop));
  CHECK(grantNeedsApproval(&gatedPayments, nullptr));
  CHECK(grantNeedsApproval(nullptr, &gatedShop));
  CHECK(phaseOf(g, &gatedPayments, nullptr, kNow) == GrantPhase::kPending);
  CHECK(phaseOf(g, &gatedPayments, &openShop, kNow) == GrantPhase::kPending);
  CHECK(phaseOf(g, &openPayments, &gatedShop, kNow) == GrantPhase::kPending);
  CHECK(phaseOf(g, nullptr, &gatedShop, kNow) == GrantPhase::kPending);
  // Unapproved past its expiry: Expired.
  CHECK(phaseOf(g, &gatedPayments, &gatedShop, kNow + hours(2)) == GrantPhase::kExpired);
  g.approvedBy = "dave";
  CHECK(phaseOf(g, &gatedPayments, &gatedShop, kNow) == GrantPhase::kActive);
  CHECK(phaseOf(g, &gatedPayments, &gatedShop, kNow + hours(2)) == GrantPhase::kExpired);
}

TEST_CASE("phase of a duration grant: it counts from activation") {
  AccessGrant g = decode(durationGrant());
  SegmentationPolicy gated = paymentsPolicy();
  // Pending does not count down: no expiry until it is Active.
  CHECK(phaseOf(g, &gated, nullptr, kNow + hours(100)) == GrantPhase::kPending);
  // Without approval rules it is Active at once, before the controller records activatedAt.
  CHECK(phaseOf(g, nullptr, nullptr, kNow) == GrantPhase::kActive);
  g.approvedBy = "bob";
  CHECK(phaseOf(g, &gated, nullptr, kNow + hours(100)) == GrantPhase::kActive);
  g.activatedAt = kNow + hours(100);
  CHECK(phaseOf(g, &gated, nullptr, kNow + hours(101)) == GrantPhase::kActive);
  CHECK(phaseOf(g, &gated, nullptr, kNow + hours(102)) == GrantPhase::kExpired);
}

TEST_CASE("phase: Revoked when an Active grant is being deleted") {
  AccessGrant g = decode(grantObject());
  g.deleting = true;
  SegmentationPolicy gated = paymentsPolicy();
  CHECK(phaseOf(g, nullptr, nullptr, kNow) == GrantPhase::kRevoked);
  // One that was never Active stays Pending, one past its expiry stays Expired.
  CHECK(phaseOf(g, &gated, nullptr, kNow) == GrantPhase::kPending);
  CHECK(phaseOf(g, nullptr, nullptr, kNow + hours(2)) == GrantPhase::kExpired);
  g.approvedBy = "bob";
  CHECK(phaseOf(g, &gated, nullptr, kNow) == GrantPhase::kRevoked);
  AccessGrant d = decode(durationGrant());
  d.deleting = true;
  d.activatedAt = kNow;
  CHECK(phaseOf(d, nullptr, nullptr, kNow + hours(1)) == GrantPhase::kRevoked);
  CHECK(phaseOf(d, nullptr, nullptr, kNow + hours(2)) == GrantPhase::kExpired);
}

// ---------------------------------------------------------------------------------------------
// Admission: CREATE

TEST_CASE("create: the requester asks, for a time within every governing policy's maxDuration") {
  SegmentationPolicy payments = paymentsPolicy();
  SegmentationPolicy shop = shopPolicy();
  CHECK(checkGrantRequest(createReview(grantObject(), kAlice), nullptr, nullptr, kNow) ==
        std::nullopt);
  CHECK(checkGrantRequest(createReview(grantObject(), kAlice), &payments, &shop, kNow) ==
        std::nullopt);
  CHECK(checkGrantRequest(createReview(grantObject(), kCarol), &payments, &shop, kNow) ==
        kPrefix +
            " has spec.requestedBy \"alice\" but is created by \"carol\"; set spec.requestedBy "
            "to your own user name \"carol\"");
  CHECK(checkGrantRequest(createReview(approvedBy(grantObject(), "bob"), kAlice), &payments, &shop,
                          kNow) ==
        kPrefix +
            " is created with spec.approvedBy \"bob\"; remove it: approval is a separate update, "
            "made by the approver after creation");
  CHECK(checkGrantRequest(
            createReview(grantObject(specPatch({{"expiresAt", "2026-11-29T11:00:00Z"}})), kAlice),
            &payments, &shop, kNow) ==
        kPrefix +
            " has spec.expiresAt 2026-11-29T11:00:00Z, which is not in the future (now "
            "2026-11-29T12:00:00Z); set a later spec.expiresAt, at most 4h ahead");
}

TEST_CASE("create: expiresAt within the destination's and the source's maxDuration") {
  SegmentationPolicy payments = paymentsPolicy();  // 4h
  SegmentationPolicy shop = shopPolicy();          // 3h
  json in3h30 = grantObject(specPatch({{"expiresAt", "2026-11-29T15:30:00Z"}}));
  json in5h = grantObject(specPatch({{"expiresAt", "2026-11-29T17:00:00Z"}}));
  // The destination refuses first, naming itself.
  CHECK(checkGrantRequest(createReview(in5h, kAlice), &payments, &shop, kNow) ==
        kPrefix +
            " has spec.expiresAt 2026-11-29T17:00:00Z, more than the maxDuration 4h of "
            "SegmentationPolicy \"payments-baseline\" ahead (now 2026-11-29T12:00:00Z); set "
            "spec.expiresAt to 2026-11-29T16:00:00Z or earlier");
  // Within the destination's 4h, beyond the source's 3h: the source refuses.
  CHECK(checkGrantRequest(createReview(in3h30, kAlice), &payments, &shop, kNow) ==
        kPrefix +
            " has spec.expiresAt 2026-11-29T15:30:00Z, more than the maxDuration 3h of "
            "SegmentationPolicy \"shop-baseline\" ahead (now 2026-11-29T12:00:00Z); set "
            "spec.expiresAt to 2026-11-29T15:00:00Z or earlier");
  // A source no policy governs adds no rule.
  CHECK(checkGrantRequest(createReview(in3h30, kAlice), &payments, nullptr, kNow) == std::nullopt);
  // No policy for the destination: the defaults (168h), and still the source's.
  CHECK(checkGrantRequest(createReview(in3h30, kAlice), nullptr, &shop, kNow) ==
        kPrefix +
            " has spec.expiresAt 2026-11-29T15:30:00Z, more than the maxDuration 3h of "
            "SegmentationPolicy \"shop-baseline\" ahead (now 2026-11-29T12:00:00Z); set "
            "spec.expiresAt to 2026-11-29T15:00:00Z or earlier");
  // The same policy governing both namespaces applies once.
  SegmentationPolicy both = paymentsPolicy();
  CHECK(checkGrantRequest(createReview(in3h30, kAlice), &payments, &both, kNow) == std::nullopt);
}

TEST_CASE("create: a duration within the destination's and the source's maxDuration") {
  SegmentationPolicy payments = paymentsPolicy();  // 4h
  SegmentationPolicy shop = shopPolicy();          // 3h
  auto withDuration = [](const std::string& d) {
    return durationGrant(specPatch({{"duration", d}}));
  };
  CHECK(checkGrantRequest(createReview(withDuration("3h"), kAlice), &payments, &shop, kNow) ==
        std::nullopt);
  CHECK(checkGrantRequest(createReview(withDuration("4h30m"), kAlice), &payments, &shop, kNow) ==
        kPrefix +
            " has spec.duration 4h30m, longer than the maxDuration 4h of SegmentationPolicy "
            "\"payments-baseline\"; set spec.duration to 4h or less");
  CHECK(checkGrantRequest(createReview(withDuration("3h0m1s"), kAlice), &payments, &shop, kNow) ==
        kPrefix +
            " has spec.duration 3h1s, longer than the maxDuration 3h of SegmentationPolicy "
            "\"shop-baseline\"; set spec.duration to 3h or less");
  CHECK(checkGrantRequest(createReview(withDuration("3h0m1s"), kAlice), &payments, nullptr, kNow) ==
        std::nullopt);
  CHECK(checkGrantRequest(createReview(withDuration("169h"), kAlice), nullptr, nullptr, kNow) ==
        kPrefix +
            " has spec.duration 169h, longer than the default maxDuration 168h; set "
            "spec.duration to 168h or less");
  // The identity checks come first, as for expiresAt.
  CHECK(checkGrantRequest(createReview(withDuration("169h"), kCarol), &payments, &shop, kNow) ==
        kPrefix +
            " has spec.requestedBy \"alice\" but is created by \"carol\"; set spec.requestedBy "
            "to your own user name \"carol\"");
}

// ---------------------------------------------------------------------------------------------
// Admission: approval

TEST_CASE("approval: by a member of the destination's approver groups, not the requester") {
  SegmentationPolicy payments = paymentsPolicy();
  json old = grantObject();
  CHECK(checkGrantRequest(updateReview(old, approvedBy(old, "bob"), kBob), &payments, nullptr,
                          kNow) == std::nullopt);
  // The source's policy, without approver groups, adds nothing to the approval.
  SegmentationPolicy openShop = shopPolicy(false);
  CHECK(checkGrantRequest(updateReview(old, approvedBy(old, "bob"), kBob), &payments, &openShop,
                          kNow) == std::nullopt);
  // The requester cannot approve, even as a member of an approver group.
  UserInfo aliceAdmin{"alice", {"security-admins"}};
  CHECK(checkGrantRequest(updateReview(old, approvedBy(old, "alice"), aliceAdmin), &payments,
                          nullptr, kNow) ==
        kPrefix +
            " cannot be approved by its requester \"alice\"; ask a member of an approver group "
            "(security-admins) of SegmentationPolicy \"payments-baseline\" to approve it");
  CHECK(checkGrantRequest(updateReview(old, approvedBy(old, "carol"), kCarol), &payments, nullptr,
                          kNow) ==
        kPrefix +
            " cannot be approved by \"carol\", who is in no approver group (security-admins) of "
            "SegmentationPolicy \"payments-baseline\"; ask a member of one of these groups to "
            "approve it");
  CHECK(checkGrantRequest(updateReview(old, approvedBy(old, "dave"), kBob), &payments, nullptr,
                          kNow) ==
        kPrefix +
            " cannot be approved on behalf of \"dave\" by \"bob\"; approvers approve as "
            "themselves: set spec.approvedBy to \"bob\"");
  // Approval is the sole change.
  json wider = approvedBy(grantObject(specPatch({{"reason", "wider reason, same ticket"}})), "bob");
  CHECK(checkGrantRequest(updateReview(old, wider, kBob), &payments, nullptr, kNow) ==
        kPrefix +
            " cannot be approved in the same update that changes spec.reason; approve it as it "
            "is, in an update that only sets spec.approvedBy");
}

TEST_CASE("approval: a source policy with approver groups must accept the approver too") {
  SegmentationPolicy payments = paymentsPolicy();
  SegmentationPolicy shop = shopPolicy();
  json old = grantObject();
  // bob is an approver of payments only: shop's policy refuses, naming itself.
  CHECK(
      checkGrantRequest(updateReview(old, approvedBy(old, "bob"), kBob), &payments, &shop, kNow) ==
      kPrefix +
          " cannot be approved by \"bob\", who is in no approver group (shop-leads) of "
          "SegmentationPolicy \"shop-baseline\"; ask a member of one of these groups to "
          "approve it");
  // erin is an approver of shop only: payments' policy refuses.
  CHECK(checkGrantRequest(updateReview(old, approvedBy(old, "erin"), kErin), &payments, &shop,
                          kNow) ==
        kPrefix +
            " cannot be approved by \"erin\", who is in no approver group (security-admins) of "
            "SegmentationPolicy \"payments-baseline\"; ask a member of one of these groups to "
            "approve it");
  // dave is in both.
  CHECK(checkGrantRequest(updateReview(old, approvedBy(old, "dave"), kDave), &payments, &shop,
                          kNow) == std::nullopt);
  // Only the source requires approval: its approvers approve.
  SegmentationPolicy openPayments = paymentsPolicy(false);
  CHECK(checkGrantRequest(updateReview(old, approvedBy(old, "erin"), kErin), &openPayments, &shop,
                          kNow) == std::nullopt);
  CHECK(checkGrantRequest(updateReview(old, approvedBy(old, "erin"), kErin), nullptr, &shop,
                          kNow) == std::nullopt);
  CHECK(checkGrantRequest(updateReview(old, approvedBy(old, "bob"), kBob), &openPayments, &shop,
                          kNow) ==
        kPrefix +
            " cannot be approved by \"bob\", who is in no approver group (shop-leads) of "
            "SegmentationPolicy \"shop-baseline\"; ask a member of one of these groups to "
            "approve it");
}

TEST_CASE("approval: refused when no policy requires it") {
  json old = grantObject();
  SegmentationPolicy openPayments = paymentsPolicy(false);
  SegmentationPolicy openShop = shopPolicy(false);
  CHECK(checkGrantRequest(updateReview(old, approvedBy(old, "bob"), kBob), &openPayments, &openShop,
                          kNow) ==
        kPrefix +
            " cannot be approved: SegmentationPolicy \"payments-baseline\" does not require "
            "approval (its spec.exceptions.approverGroups is empty); remove spec.approvedBy");
  CHECK(
      checkGrantRequest(updateReview(old, approvedBy(old, "bob"), kBob), nullptr, nullptr, kNow) ==
      kPrefix +
          " cannot be approved: no SegmentationPolicy governs namespace \"payments\", so no "
          "approval is required; remove spec.approvedBy");
}

// ---------------------------------------------------------------------------------------------
// Admission: other updates

TEST_CASE("update: once approved, spec is fixed except expiresAt moving earlier") {
  SegmentationPolicy payments = paymentsPolicy();
  SegmentationPolicy shop = shopPolicy();
  json approved = approvedBy(grantObject(), "dave");
  auto check = [&](const json& updated, const UserInfo& user) {
    return checkGrantRequest(updateReview(approved, updated, user), &payments, &shop, kNow);
  };
  json earlier =
      approvedBy(grantObject(specPatch({{"expiresAt", "2026-11-29T13:00:00Z"}})), "dave");
  CHECK(check(earlier, kAlice) == std::nullopt);
  CHECK(check(earlier, kCarol) == std::nullopt);  // giving up access needs no approval
  json later = approvedBy(grantObject(specPatch({{"expiresAt", "2026-11-29T14:30:00Z"}})), "dave");
  CHECK(check(later, kAlice) ==
        kPrefix +
            " was approved by \"dave\"; spec.expiresAt can only move earlier after approval, not "
            "from 2026-11-29T14:00:00Z to 2026-11-29T14:30:00Z: request a new one for a longer "
            "time");
  json otherPort = withPorts(approved, {{{"port", 22}}});
  CHECK(check(otherPort, kAlice) ==
        kPrefix +
            " was approved by \"dave\"; spec.to cannot change after approval (only "
            "spec.expiresAt can move earlier): delete it and request a new one");
  json otherSource = approvedBy(grantObject(specPatch({{"from", {{"namespace", "ops"}}}})), "dave");
  CHECK(check(otherSource, kAlice) ==
        kPrefix +
            " was approved by \"dave\"; spec.from cannot change after approval (only "
            "spec.expiresAt can move earlier): delete it and request a new one");
  json unapproved = grantObject();
  CHECK(check(unapproved, kAlice) ==
        kPrefix +
            " was approved by \"dave\"; spec.approvedBy cannot be changed or removed: delete it "
            "and request a new one");
  // The order of the ports is not a change.
  json twoPorts = withPorts(approved, {{{"port", 8080}}, {{"port", 9090}}});
  json swapped = withPorts(approved, {{{"port", 9090}, {"protocol", "TCP"}}, {{"port", 8080}}});
  CHECK(checkGrantRequest(updateReview(twoPorts, swapped, kCarol), &payments, &shop, kNow) ==
        std::nullopt);
  // A metadata-only update is allowed, even after expiry.
  json labelled = approved;
  labelled["metadata"]["labels"] = {{"team", "checkout"}};
  CHECK(checkGrantRequest(updateReview(approved, labelled, kCarol), &payments, &shop,
                          kNow + hours(10)) == std::nullopt);
}

TEST_CASE("update: an approved duration grant cannot change its duration") {
  SegmentationPolicy payments = paymentsPolicy();
  json approved = approvedBy(durationGrant(), "bob");
  json shorter = approvedBy(durationGrant(specPatch({{"duration", "1h"}})), "bob");
  CHECK(checkGrantRequest(updateReview(approved, shorter, kAlice), &payments, nullptr, kNow) ==
        kPrefix +
            " was approved by \"bob\"; spec.duration cannot change after approval (only "
            "spec.expiresAt can move earlier): delete it and request a new one");
  json toExpiresAt =
      approvedBy(grantObject(specPatch({{"expiresAt", "2026-11-29T12:30:00Z"}})), "bob");
  CHECK(checkGrantRequest(updateReview(approved, toExpiresAt, kAlice), &payments, nullptr, kNow) ==
        kPrefix +
            " was approved by \"bob\"; spec.duration cannot change after approval (only "
            "spec.expiresAt can move earlier): delete it and request a new one");
  // Approving a duration grant.
  CHECK(checkGrantRequest(updateReview(durationGrant(), approved, kBob), &payments, nullptr,
                          kNow) == std::nullopt);
}

TEST_CASE("update: before approval only the requester changes spec, within the bounds") {
  SegmentationPolicy payments = paymentsPolicy();  // 4h
  SegmentationPolicy shop = shopPolicy();          // 3h
  SegmentationPolicy ops;
  ops.name = "ops-baseline";
  ops.exceptions.maxDuration = hours(1);
  json old = grantObject();  // until 14:00, 2h ahead
  json reworded = grantObject(specPatch({{"reason", "TICKET-8 the real reason"}}));
  CHECK(checkGrantRequest(updateReview(old, reworded, kAlice), &payments, &shop, kNow) ==
        std::nullopt);
  CHECK(checkGrantRequest(updateReview(old, reworded, kCarol), &payments, &shop, kNow) ==
        kPrefix +
            " was requested by \"alice\"; only \"alice\" can change spec.reason, not \"carol\": "
            "ask \"alice\" to change it, or request one of your own");
  // A new source is a new request: its policy's maxDuration applies (ops allows 1h).
  json fromOps = grantObject(specPatch({{"from", {{"namespace", "ops"}}}}));
  CHECK(checkGrantRequest(updateReview(old, fromOps, kAlice), &payments, &ops, kNow) ==
        kPrefix +
            " has spec.expiresAt 2026-11-29T14:00:00Z, more than the maxDuration 1h of "
            "SegmentationPolicy \"ops-baseline\" ahead (now 2026-11-29T12:00:00Z); set "
            "spec.expiresAt to 2026-11-29T13:00:00Z or earlier");
  CHECK(checkGrantRequest(updateReview(old, fromOps, kAlice), &payments, nullptr, kNow) ==
        std::nullopt);
  // A new expiresAt is checked against both policies.
  json later = grantObject(specPatch({{"expiresAt", "2026-11-29T15:30:00Z"}}));
  CHECK(checkGrantRequest(updateReview(old, later, kAlice), &payments, &shop, kNow) ==
        kPrefix +
            " has spec.expiresAt 2026-11-29T15:30:00Z, more than the maxDuration 3h of "
            "SegmentationPolicy \"shop-baseline\" ahead (now 2026-11-29T12:00:00Z); set "
            "spec.expiresAt to 2026-11-29T15:00:00Z or earlier");
  // A new duration too, and switching between expiresAt and duration.
  json toDuration = durationGrant(specPatch({{"duration", "3h30m"}}));
  CHECK(checkGrantRequest(updateReview(old, toDuration, kAlice), &payments, &shop, kNow) ==
        kPrefix +
            " has spec.duration 3h30m, longer than the maxDuration 3h of SegmentationPolicy "
            "\"shop-baseline\"; set spec.duration to 3h or less");
  CHECK(checkGrantRequest(updateReview(durationGrant(), toDuration, kAlice), &payments, nullptr,
                          kNow) == std::nullopt);
  CHECK(checkGrantRequest(updateReview(durationGrant(), toDuration, kCarol), &payments, nullptr,
                          kNow) ==
        kPrefix +
            " was requested by \"alice\"; only \"alice\" can change spec.duration, not \"carol\": "
            "ask \"alice\" to change it, or request one of your own");
  CHECK(checkGrantRequest(updateReview(toDuration, old, kAlice), &payments, &shop, kNow) ==
        std::nullopt);
  // requestedBy never changes.
  json stolen = grantObject(specPatch({{"requestedBy", "carol"}}));
  CHECK(checkGrantRequest(updateReview(old, stolen, kCarol), &payments, &shop, kNow) ==
        kPrefix +
            " cannot change spec.requestedBy from \"alice\" to \"carol\"; create a new one under "
            "your own name instead");
}

TEST_CASE("deletion is always allowed; malformed requests fail closed") {
  SegmentationPolicy payments = paymentsPolicy();
  CHECK(checkGrantRequest({"DELETE", std::nullopt, grantObject(), kCarol}, &payments, nullptr,
                          kNow) == std::nullopt);
  CHECK(checkGrantRequest({"DELETE", std::nullopt, std::nullopt, kCarol}, &payments, nullptr,
                          kNow) == std::nullopt);
  CHECK(checkGrantRequest({"CONNECT", std::nullopt, std::nullopt, kCarol}, &payments, nullptr,
                          kNow) == std::nullopt);
  CHECK(
      checkGrantRequest({"PATCH", grantObject(), std::nullopt, kAlice}, &payments, nullptr, kNow) ==
      "bulkhead: unknown admission operation \"PATCH\" on an AccessGrant");
  CHECK(
      checkGrantRequest({"CREATE", std::nullopt, std::nullopt, kAlice}, &payments, nullptr, kNow) ==
      "bulkhead: CREATE of an AccessGrant without the object; the request cannot be checked");
  CHECK(checkGrantRequest({"UPDATE", grantObject(), std::nullopt, kAlice}, &payments, nullptr,
                          kNow) ==
        "bulkhead: UPDATE of AccessGrant \"debug-api\" in namespace \"payments\" without the old "
        "object; the request cannot be checked");
  json broken = withPorts(grantObject(), {{{"port", 0}}});
  CHECK(checkGrantRequest(createReview(broken, kAlice), &payments, nullptr, kNow) ==
        kPrefix + " is invalid: spec.to.ports[0].port: 0 is not in 1-65535");
  CHECK(checkGrantRequest(updateReview(broken, grantObject(), kAlice), &payments, nullptr, kNow) ==
        kPrefix +
            " is stored with an invalid spec (spec.to.ports[0].port: 0 is not in 1-65535) and "
            "cannot be updated; delete it and create a new one");
  CHECK(checkGrantRequest(createReview(json("grant"), kAlice), &payments, nullptr, kNow) ==
        "bulkhead: AccessGrant \"\" in namespace \"\" is invalid: AccessGrant: not an object");
  // A field of a type nlohmann cannot convert ends as a denial, not an exception.
  json weird = grantObject();
  weird["spec"]["from"]["podSelector"]["matchExpressions"] = {{{"key", "a"}, {"operator", 3}}};
  auto denial = checkGrantRequest(createReview(weird, kAlice), &payments, nullptr, kNow);
  REQUIRE(denial.has_value());
  CHECK(denial->starts_with(kPrefix + " is invalid: "));
}

// ---------------------------------------------------------------------------------------------
// Generated objects

const std::string kIngressPolicy = R"({
  "apiVersion": "networking.k8s.io/v1",
  "kind": "NetworkPolicy",
  "metadata": {
    "name": "bulkhead-grant-debug-api",
    "namespace": "payments",
    "labels": {
      "app.kubernetes.io/managed-by": "bulkhead",
      "bulkhead.dev/grant": "debug-api",
      "bulkhead.dev/grant-namespace": "payments"
    },
    "annotations": {
      "bulkhead.dev/grant-expires-at": "2026-11-29T14:00:00Z",
      "bulkhead.dev/grant-reason": "TICKET-7 debug checkout latency"
    }
  },
  "spec": {
    "podSelector": {"matchLabels": {"app": "api"}},
    "policyTypes": ["Ingress"],
    "ingress": [{
      "from": [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}},
        "podSelector": {"matchLabels": {"app": "web"}}
      }],
      "ports": [{"port": 8080, "protocol": "TCP"}]
    }]
  }
})";

const std::string kEgressPolicy = R"({
  "apiVersion": "networking.k8s.io/v1",
  "kind": "NetworkPolicy",
  "metadata": {
    "name": "bulkhead-grant-payments.debug-api",
    "namespace": "shop",
    "labels": {
      "app.kubernetes.io/managed-by": "bulkhead",
      "bulkhead.dev/grant": "debug-api",
      "bulkhead.dev/grant-namespace": "payments"
    },
    "annotations": {
      "bulkhead.dev/grant-expires-at": "2026-11-29T14:00:00Z",
      "bulkhead.dev/grant-reason": "TICKET-7 debug checkout latency"
    }
  },
  "spec": {
    "podSelector": {"matchLabels": {"app": "web"}},
    "policyTypes": ["Egress"],
    "egress": [{
      "to": [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "payments"}},
        "podSelector": {"matchLabels": {"app": "api"}}
      }],
      "ports": [{"port": 8080, "protocol": "TCP"}]
    }]
  }
})";

const std::string kPrincipalAllow = R"({
  "apiVersion": "security.istio.io/v1",
  "kind": "AuthorizationPolicy",
  "metadata": {
    "name": "bulkhead-grant-debug-api",
    "namespace": "payments",
    "labels": {
      "app.kubernetes.io/managed-by": "bulkhead",
      "bulkhead.dev/grant": "debug-api",
      "bulkhead.dev/grant-namespace": "payments"
    },
    "annotations": {
      "bulkhead.dev/grant-expires-at": "2026-11-29T14:00:00Z",
      "bulkhead.dev/grant-reason": "TICKET-7 debug checkout latency"
    }
  },
  "spec": {
    "selector": {"matchLabels": {"app": "api"}},
    "action": "ALLOW",
    "rules": [{
      "from": [{"source": {"principals": ["cluster.local/ns/shop/sa/web"]}}],
      "to": [{"operation": {"ports": ["8080"]}}]
    }]
  }
})";

const GrantContext kDenyAll{.destinationDeniesIngress = true,
                            .destinationMeshDefaultDeny = true,
                            .sourceDeniesEgress = true};

TEST_CASE("objects: only the ingress NetworkPolicy when the source is not segmented") {
  AccessGrant g = decode(grantObject());
  std::vector<json> objects = grantObjects(g, {.destinationDeniesIngress = true});
  REQUIRE(objects.size() == 1);
  CHECK(objects[0] == json::parse(kIngressPolicy));
  CHECK(grantObjectName(g) == "bulkhead-grant-debug-api");
  CHECK(grantEgressObjectName(g) == "bulkhead-grant-payments.debug-api");
}

TEST_CASE("objects: ingress, egress and the AuthorizationPolicy from the ServiceAccount") {
  AccessGrant g = decode(grantObject());
  std::vector<json> objects = grantObjects(g, kDenyAll);
  REQUIRE(objects.size() == 3);
  CHECK(objects[0] == json::parse(kIngressPolicy));
  CHECK(objects[1] == json::parse(kEgressPolicy));
  CHECK(objects[2] == json::parse(kPrincipalAllow));
  // Deterministic, byte for byte.
  std::vector<json> again = grantObjects(g, kDenyAll);
  for (size_t i = 0; i < objects.size(); ++i) {
    CHECK(objects[i].dump() == again[i].dump());
  }
  // Nothing is written where nothing denies: an allow there would isolate the pods instead.
  CHECK(grantObjects(g, {}).empty());
  std::vector<json> egressOnly = grantObjects(g, {.sourceDeniesEgress = true});
  REQUIRE(egressOnly.size() == 1);
  CHECK(egressOnly[0] == json::parse(kEgressPolicy));
  std::vector<json> meshOnly = grantObjects(g, {.destinationMeshDefaultDeny = true});
  REQUIRE(meshOnly.size() == 1);
  CHECK(meshOnly[0] == json::parse(kPrincipalAllow));
}

TEST_CASE("objects: from a whole namespace without a ServiceAccount, in ambient namespaces") {
  json object =
      grantObject(specPatch({{"from", {{"podSelector", nullptr}, {"serviceAccount", nullptr}}}}));
  object = withPorts(object, {{{"port", 8080}}, {{"port", 8125}, {"protocol", "UDP"}}});
  object["spec"]["expiresAt"] = nullptr;
  object["spec"]["duration"] = "90m";
  object["status"] = {{"activatedAt", "2026-11-29T12:00:30Z"}};
  AccessGrant g = decode(object);
  GrantContext context = kDenyAll;
  context.destinationAmbient = true;
  context.sourceAmbient = true;
  std::vector<json> objects = grantObjects(g, context);
  REQUIRE(objects.size() == 3);
  CHECK(objects[0] == json::parse(R"({
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {
      "name": "bulkhead-grant-debug-api",
      "namespace": "payments",
      "labels": {
        "app.kubernetes.io/managed-by": "bulkhead",
        "bulkhead.dev/grant": "debug-api",
        "bulkhead.dev/grant-namespace": "payments"
      },
      "annotations": {
        "bulkhead.dev/grant-expires-at": "2026-11-29T13:30:30Z",
        "bulkhead.dev/grant-reason": "TICKET-7 debug checkout latency"
      }
    },
    "spec": {
      "podSelector": {"matchLabels": {"app": "api"}},
      "policyTypes": ["Ingress"],
      "ingress": [{
        "from": [{
          "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}},
          "podSelector": {}
        }],
        "ports": [
          {"port": 8080, "protocol": "TCP"},
          {"port": 8125, "protocol": "UDP"},
          {"port": 15008, "protocol": "TCP"}
        ]
      }]
    }
  })"));
  CHECK(objects[1] == json::parse(R"({
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {
      "name": "bulkhead-grant-payments.debug-api",
      "namespace": "shop",
      "labels": {
        "app.kubernetes.io/managed-by": "bulkhead",
        "bulkhead.dev/grant": "debug-api",
        "bulkhead.dev/grant-namespace": "payments"
      },
      "annotations": {
        "bulkhead.dev/grant-expires-at": "2026-11-29T13:30:30Z",
        "bulkhead.dev/grant-reason": "TICKET-7 debug checkout latency"
      }
    },
    "spec": {
      "podSelector": {},
      "policyTypes": ["Egress"],
      "egress": [{
        "to": [{
          "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "payments"}},
          "podSelector": {"matchLabels": {"app": "api"}}
        }],
        "ports": [
          {"port": 8080, "protocol": "TCP"},
          {"port": 8125, "protocol": "UDP"},
          {"port": 15008, "protocol": "TCP"}
        ]
      }]
    }
  })"));
  // The mesh authorizes TCP only: the UDP port is the NetworkPolicies' alone.
  CHECK(objects[2] == json::parse(R"({
    "apiVersion": "security.istio.io/v1",
    "kind": "AuthorizationPolicy",
    "metadata": {
      "name": "bulkhead-grant-debug-api",
      "namespace": "payments",
      "labels": {
        "app.kubernetes.io/managed-by": "bulkhead",
        "bulkhead.dev/grant": "debug-api",
        "bulkhead.dev/grant-namespace": "payments"
      },
      "annotations": {
        "bulkhead.dev/grant-expires-at": "2026-11-29T13:30:30Z",
        "bulkhead.dev/grant-reason": "TICKET-7 debug checkout latency"
      }
    },
    "spec": {
      "selector": {"matchLabels": {"app": "api"}},
      "action": "ALLOW",
      "rules": [{
        "from": [{"source": {"namespaces": ["shop"]}}],
        "to": [{"operation": {"ports": ["8080"]}}]
      }]
    }
  })"));
}

TEST_CASE("objects: details of ports and annotations") {
  // UDP only: no AuthorizationPolicy; 15008 already listed is not repeated.
  AccessGrant udp = decode(withPorts(grantObject(), {{{"port", 53}, {"protocol", "UDP"}}}));
  CHECK(grantObjects(udp, {.destinationMeshDefaultDeny = true}).empty());
  AccessGrant hbone = decode(withPorts(grantObject(), {{{"port", 15008}}}));
  std::vector<json> objects =
      grantObjects(hbone, {.destinationDeniesIngress = true, .destinationAmbient = true});
  REQUIRE(objects.size() == 1);
  CHECK(objects[0]["spec"]["ingress"][0]["ports"] ==
        json::parse(R"([{"port": 15008, "protocol": "TCP"}])"));
  // A duration grant the controller has not activated yet says so instead of a time.
  AccessGrant pending = decode(durationGrant());
  objects = grantObjects(pending, {.destinationDeniesIngress = true});
  REQUIRE(objects.size() == 1);
  CHECK(objects[0]["metadata"]["annotations"][kGrantExpiresAnnotation] == "2h after activation");
  CHECK(std::string(kGrantSelector) == std::string(kManagedBySelector) + "," + kGrantLabel);
}

TEST_CASE("the context follows the governing policies") {
  SegmentationPolicy payments;
  payments.name = "payments-baseline";
  payments.authorizationDefaultDeny = true;
  SegmentationPolicy shop;
  shop.name = "shop-baseline";
  shop.network.denyEgress = false;
  shop.mesh.dataplaneMode = DataplaneMode::kAmbient;
  NamespaceFacts paymentsNs{"payments", {{kDataplaneModeLabel, "ambient"}}};
  NamespaceFacts shopNs{"shop", {}};
  ClusterFacts withMesh;
  withMesh.meshAvailable = true;
  CHECK(grantContextFor(&payments, paymentsNs, &shop, shopNs, withMesh) ==
        GrantContext{.destinationDeniesIngress = true,
                     .destinationAmbient = true,
                     .destinationMeshDefaultDeny = true,
                     .sourceDeniesEgress = false,
                     .sourceAmbient = true});
  ClusterFacts noMesh;
  CHECK(grantContextFor(&payments, paymentsNs, nullptr, shopNs, noMesh) ==
        GrantContext{.destinationDeniesIngress = true, .destinationAmbient = true});
  CHECK(grantContextFor(nullptr, paymentsNs, nullptr, shopNs, withMesh) == GrantContext{});
  SegmentationPolicy defaults;
  CHECK(grantContextFor(nullptr, paymentsNs, &defaults, shopNs, withMesh) ==
        GrantContext{.sourceDeniesEgress = true});
}

// ---------------------------------------------------------------------------------------------
// Status and events

TEST_CASE("status: requested, approved, expired, with history") {
  AccessGrant g = decode(durationGrant());
  g.generation = 2;
  json s1 =
      grantStatus(json::object(), GrantPhase::kPending, g, kNow + std::chrono::milliseconds(400));
  CHECK(s1 == json::parse(R"({
    "phase": "Pending",
    "observedGeneration": 2,
    "conditions": [{
      "type": "Ready", "status": "False", "reason": "AwaitingApproval",
      "message": "requested by alice; awaiting approval",
      "lastTransitionTime": "2026-11-29T12:00:00Z", "observedGeneration": 2
    }],
    "history": [
      {"phase": "Pending", "time": "2026-11-29T12:00:00Z",
       "message": "requested by alice; awaiting approval"}
    ]
  })"));

  // Unchanged a minute later.
  CHECK(grantStatus(s1, GrantPhase::kPending, g, kNow + minutes(1)) == s1);

  // Approved ten minutes later: activatedAt is set, the duration counts from it.
  g.approvedBy = "bob";
  json s2 = grantStatus(s1, GrantPhase::kActive, g, kNow + minutes(10));
  CHECK(s2 == json::parse(R"({
    "phase": "Active",
    "observedGeneration": 2,
    "activatedAt": "2026-11-29T12:10:00Z",
    "expiresAt": "2026-11-29T14:10:00Z",
    "conditions": [{
      "type": "Ready", "status": "True", "reason": "Active",
      "message": "approved by bob; active until 2026-11-29T14:10:00Z",
      "lastTransitionTime": "2026-11-29T12:10:00Z", "observedGeneration": 2
    }],
    "history": [
      {"phase": "Pending", "time": "2026-11-29T12:00:00Z",
       "message": "requested by alice; awaiting approval"},
      {"phase": "Active", "time": "2026-11-29T12:10:00Z",
       "message": "approved by bob; active until 2026-11-29T14:10:00Z"}
    ]
  })"));

  // The next reconcile reads activatedAt back: nothing changes.
  json stored = durationGrant();
  stored["spec"]["approvedBy"] = "bob";
  stored["metadata"]["generation"] = 2;
  stored["status"] = s2;
  AccessGrant active = decode(stored);
  CHECK(active.activatedAt == kNow + minutes(10));
  CHECK(grantStatus(s2, GrantPhase::kActive, active, kNow + hours(1)) == s2);

  // Expired: Ready turns False, the history says when.
  json s3 = grantStatus(s2, GrantPhase::kExpired, active, kNow + hours(2) + minutes(10));
  CHECK(s3["phase"] == "Expired");
  CHECK(s3["activatedAt"] == "2026-11-29T12:10:00Z");
  CHECK(s3["expiresAt"] == "2026-11-29T14:10:00Z");
  CHECK(s3["conditions"] == json::parse(R"([{
      "type": "Ready", "status": "False", "reason": "Expired",
      "message": "expired at 2026-11-29T14:10:00Z",
      "lastTransitionTime": "2026-11-29T14:10:00Z", "observedGeneration": 2
    }])"));
  REQUIRE(s3["history"].size() == 3);
  CHECK(s3["history"][2] == json::parse(R"({"phase": "Expired", "time": "2026-11-29T14:10:00Z",
                                            "message": "expired at 2026-11-29T14:10:00Z"})"));
}

TEST_CASE("status: without approval, revoked, an expired request, the history's bound") {
  AccessGrant g = decode(grantObject());
  json active = grantStatus(json::object(), GrantPhase::kActive, g, kNow);
  CHECK(active["activatedAt"] == "2026-11-29T12:00:00Z");
  CHECK(active["expiresAt"] == "2026-11-29T14:00:00Z");
  CHECK(active["history"] ==
        json::array({{{"phase", "Active"},
                      {"time", "2026-11-29T12:00:00Z"},
                      {"message",
                       "requested by alice, no approval required; active until "
                       "2026-11-29T14:00:00Z"}}}));
  g.activatedAt = kNow;
  json revoked = grantStatus(active, GrantPhase::kRevoked, g, kNow + minutes(5));
  CHECK(revoked["conditions"][0]["reason"] == "Revoked");
  CHECK(revoked["history"][1] == json::parse(R"j({"phase": "Revoked",
      "time": "2026-11-29T12:05:00Z",
      "message": "revoked: deleted while active (it was active until 2026-11-29T14:00:00Z)"})j"));

  // Never approved: Pending, then Expired, keeping the False condition's transition time and
  // never recording an activation.
  AccessGrant unapproved = decode(grantObject());
  json pending = grantStatus(json::object(), GrantPhase::kPending, unapproved, kNow);
  json expired = grantStatus(pending, GrantPhase::kExpired, unapproved, kNow + hours(2));
  CHECK_FALSE(expired.contains("activatedAt"));
  CHECK(expired["expiresAt"] == "2026-11-29T14:00:00Z");
  CHECK(expired["conditions"][0]["lastTransitionTime"] == "2026-11-29T12:00:00Z");
  CHECK(expired["conditions"][0]["reason"] == "Expired");

  // The last kGrantHistoryLimit entries are kept.
  json old = {{"phase", "Pending"}, {"history", json::array()}};
  for (int i = 0; i < 20; ++i) {
    old["history"].push_back({{"phase", "Pending"}, {"time", "t"}, {"message", std::to_string(i)}});
  }
  json bounded = grantStatus(old, GrantPhase::kActive, g, kNow);
  REQUIRE(bounded["history"].size() == kGrantHistoryLimit);
  CHECK(bounded["history"][0]["message"] == "1");
  CHECK(bounded["history"][19]["phase"] == "Active");
  // A status of an unexpected shape is replaced, not trusted.
  json fresh = grantStatus(json("garbage"), GrantPhase::kActive, g, kNow);
  CHECK(fresh["history"].size() == 1);
}

TEST_CASE("events: one per step of the grant's life") {
  AccessGrant g = decode(grantObject());
  using E = std::vector<GrantEvent>;
  CHECK(grantEvents(std::nullopt, GrantPhase::kPending, g) == E{GrantEvent::kRequested});
  CHECK(grantEvents(std::nullopt, GrantPhase::kActive, g) ==
        E{GrantEvent::kRequested, GrantEvent::kActivated});
  CHECK(grantEvents(GrantPhase::kPending, GrantPhase::kPending, g).empty());
  CHECK(grantEvents(GrantPhase::kActive, GrantPhase::kExpired, g) == E{GrantEvent::kExpired});
  CHECK(grantEvents(GrantPhase::kPending, GrantPhase::kExpired, g) == E{GrantEvent::kExpired});
  CHECK(grantEvents(GrantPhase::kActive, GrantPhase::kRevoked, g) == E{GrantEvent::kRevoked});
  CHECK(grantEvents(GrantPhase::kActive, GrantPhase::kPending, g) == E{GrantEvent::kSuspended});
  g.approvedBy = "bob";
  CHECK(grantEvents(GrantPhase::kPending, GrantPhase::kActive, g) ==
        E{GrantEvent::kApproved, GrantEvent::kActivated});
  CHECK(grantEvents(std::nullopt, GrantPhase::kActive, g) ==
        E{GrantEvent::kRequested, GrantEvent::kApproved, GrantEvent::kActivated});
  CHECK(grantEventReason(GrantEvent::kRequested) == "GrantRequested");
  CHECK(grantEventReason(GrantEvent::kApproved) == "GrantApproved");
  CHECK(grantEventReason(GrantEvent::kActivated) == "GrantActivated");
  CHECK(grantEventReason(GrantEvent::kExpired) == "GrantExpired");
  CHECK(grantEventReason(GrantEvent::kRevoked) == "GrantRevoked");
  CHECK(grantEventReason(GrantEvent::kSuspended) == "GrantSuspended");
}

TEST_CASE("event messages say who, what, why and until when") {
  AccessGrant g = decode(durationGrant());
  const std::string grant = "AccessGrant \"debug-api\" in namespace \"payments\": ";
  const std::string flow =
      "from shop (pods app=web, ServiceAccount web) to payments (pods app=api) on 8080/TCP";
  const std::string why = "; reason: \"TICKET-7 debug checkout latency\"";
  CHECK(grantEventMessage(GrantEvent::kRequested, g) ==
        grant + "requested by alice: " + flow + " for 2h once active" + why);
  g.approvedBy = "bob";
  CHECK(grantEventMessage(GrantEvent::kApproved, g) ==
        grant + "approved by bob (requested by alice): " + flow + " for 2h once active" + why);
  g.activatedAt = kNow;
  CHECK(grantEventMessage(GrantEvent::kActivated, g) ==
        grant + "access open (requested by alice, approved by bob): " + flow +
            " until 2026-11-29T14:00:00Z" + why);
  CHECK(grantEventMessage(GrantEvent::kExpired, g) ==
        grant +
            "access closed, expired at 2026-11-29T14:00:00Z (requested by alice, approved "
            "by bob): " +
            flow + why);
  CHECK(grantEventMessage(GrantEvent::kRevoked, g) ==
        grant +
            "access closed, revoked by deletion before 2026-11-29T14:00:00Z (requested by "
            "alice, approved by bob): " +
            flow + why);

  // Selectors as kubectl writes them; several ports; no approval.
  json object =
      grantObject(specPatch({{"from",
                              {{"serviceAccount", nullptr},
                               {"podSelector",
                                {{"matchLabels", {{"app", "web"}}},
                                 {"matchExpressions",
                                  {{{"key", "tier"}, {"operator", "In"}, {"values", {"a", "b"}}},
                                   {{"key", "canary"}, {"operator", "DoesNotExist"}},
                                   {{"key", "zone"}, {"operator", "NotIn"}, {"values", {"x"}}},
                                   {{"key", "team"}, {"operator", "Exists"}}}}}}}}}));
  object = withPorts(object, {{{"port", 8080}}, {{"port", 53}, {"protocol", "UDP"}}});
  AccessGrant wide = decode(object);
  CHECK(grantEventMessage(GrantEvent::kActivated, wide) ==
        grant +
            "access open (requested by alice, no approval): from shop (pods app=web,tier in "
            "(a,b),!canary,zone notin (x),team) to payments (pods app=api) on 8080/TCP, 53/UDP "
            "until 2026-11-29T14:00:00Z" +
            why);
  AccessGrant all = decode(grantObject(specPatch({{"from", {{"podSelector", nullptr}}}})));
  CHECK(grantEventMessage(GrantEvent::kSuspended, all) ==
        grant +
            "access closed until approved: a governing SegmentationPolicy now requires approval "
            "(requested by alice, no approval): from shop (all pods, ServiceAccount web) to "
            "payments (pods app=api) on 8080/TCP until 2026-11-29T14:00:00Z" +
            why);
}

}  // namespace
}  // namespace bulkhead::policy
