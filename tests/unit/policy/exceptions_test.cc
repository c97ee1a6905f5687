#include "policy/exceptions.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace bulkhead::policy {
namespace {

using nlohmann::json;
using std::chrono::hours;
using std::chrono::nanoseconds;
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
const std::string kPrefix =
    "bulkhead: SegmentationException \"legacy-agent\" in namespace \"shop\"";

// A valid exception requested by alice, expiring one hour after kNow; `patch` is merged into it
// (RFC 7386: null removes a field, objects merge; see withSelector() to replace podSelector).
json exceptionObject(const json& patch = json::object()) {
  json object = {{"apiVersion", "bulkhead.dev/v1alpha1"},
                 {"kind", "SegmentationException"},
                 {"metadata", {{"name", "legacy-agent"}, {"namespace", "shop"}, {"uid", "u-1"}}},
                 {"spec",
                  {{"podSelector", {{"matchLabels", {{"app", "legacy-agent"}}}}},
                   {"rules", {"forbidHostNetwork"}},
                   {"reason", "vendor agent needs host network until v5 (TICKET-123)"},
                   {"expiresAt", "2026-11-29T13:00:00Z"},
                   {"requestedBy", "alice"}}}};
  object.merge_patch(patch);
  return object;
}

json specPatch(const json& spec) { return {{"spec", spec}}; }

json withSelector(json object, const json& selector) {
  object["spec"]["podSelector"] = selector;
  return object;
}

SegmentationException decode(const json& object) {
  auto e = decodeSegmentationException(object);
  REQUIRE_MESSAGE(e.ok(), e.status().toString());
  return *e;
}

std::string decodeError(const json& object) {
  auto e = decodeSegmentationException(object);
  REQUIRE_FALSE(e.ok());
  CHECK(e.status().code() == StatusCode::kInvalid);
  return e.status().message();
}

// No approval required, exceptions at most one hour long.
SegmentationPolicy openPolicy() {
  SegmentationPolicy p;
  p.name = "baseline";
  p.exceptions.maxDuration = hours(1);
  return p;
}

// Approval by a member of security-admins or platform-leads required; the default 168h.
SegmentationPolicy gatedPolicy() {
  SegmentationPolicy p;
  p.name = "baseline";
  p.exceptions.approverGroups = {"security-admins", "platform-leads"};
  return p;
}

const UserInfo kAlice{"alice", {"developers", "system:authenticated"}};
const UserInfo kBob{"bob", {"security-admins", "system:authenticated"}};
const UserInfo kCarol{"carol", {"developers", "system:authenticated"}};

ExceptionReview createReview(const json& object, const UserInfo& user) {
  return {"CREATE", object, std::nullopt, user};
}

ExceptionReview updateReview(const json& old, const json& updated, const UserInfo& user) {
  return {"UPDATE", updated, old, user};
}

// The stored form of exceptionObject(patch) once bob approved it.
json approved(const json& patch = json::object()) {
  json object = exceptionObject(patch);
  object["spec"]["approvedBy"] = "bob";
  return object;
}

// ---------------------------------------------------------------------------------------------
// Decoding

TEST_CASE("a complete SegmentationException decodes field by field") {
  SegmentationException e = decode(exceptionObject(
      specPatch({{"rules", {"forbidHostPorts", "forbidHostNetwork"}}, {"approvedBy", "bob"}})));
  CHECK(e.name == "legacy-agent");
  CHECK(e.ns == "shop");
  CHECK(e.uid == "u-1");
  CHECK(e.podSelector.matchLabels == Labels{{"app", "legacy-agent"}});
  CHECK(e.podSelector.matchExpressions.empty());
  CHECK(e.rules == std::vector<std::string>{"forbidHostPorts", "forbidHostNetwork"});
  CHECK(e.reason == "vendor agent needs host network until v5 (TICKET-123)");
  CHECK(e.expiresAt == kNow + hours(1));
  CHECK(formatDateTime(kNow) == "2026-11-29T12:00:00Z");
  CHECK(e.requestedBy == "alice");
  CHECK(e.approvedBy == "bob");
}

TEST_CASE("approvedBy is optional and podSelector {} selects every pod") {
  SegmentationException e = decode(withSelector(exceptionObject(), json::object()));
  CHECK(e.approvedBy.empty());
  CHECK(e.podSelector.empty());
  CHECK(e.podSelector.matches({{"any", "pod"}}));
}

TEST_CASE("expiresAt is RFC 3339 with fractional seconds and offsets") {
  const WallTime midnight = at("2026-12-01T00:00:00Z");
  CHECK(at("2026-12-01T02:00:00+02:00") == midnight);
  CHECK(at("2026-11-30T19:00:00-05:00") == midnight);
  CHECK(at("2026-11-30T18:30:00-05:30") == midnight);
  CHECK(at("2026-12-01t00:00:00z") == midnight);
  CHECK(at("2026-12-01T00:00:00+00:00") == midnight);
  CHECK(at("2026-12-01T00:00:00.5Z") == midnight + std::chrono::milliseconds(500));
  CHECK(at("2026-12-01T02:00:00.123456+02:00") == midnight + std::chrono::microseconds(123456));
  CHECK(at("2026-12-01T00:00:00.000000001Z") == midnight + nanoseconds(1));
  // Digits past the nanosecond are dropped, like Go's time.Parse.
  CHECK(at("2026-12-01T00:00:00.123456789999Z") == midnight + nanoseconds(123456789));
  CHECK(at("2028-02-29T00:00:00Z") - at("2028-02-28T00:00:00Z") == hours(24));
  CHECK(at("1970-01-01T00:00:00Z") == WallTime());
  CHECK(decode(exceptionObject(specPatch({{"expiresAt", "2026-12-01T02:00:00.25+02:00"}})))
            .expiresAt == midnight + std::chrono::milliseconds(250));
}

TEST_CASE("times format as UTC RFC 3339 and durations like Go's") {
  CHECK(formatDateTime(at("2026-12-01T02:00:00+02:00")) == "2026-12-01T00:00:00Z");
  CHECK(formatDateTime(at("2026-12-01T00:00:00.5Z")) == "2026-12-01T00:00:00.5Z");
  CHECK(formatDateTime(at("2026-12-01T00:00:00.000000001Z")) == "2026-12-01T00:00:00.000000001Z");
  CHECK(formatDateTime(at("1999-12-31T23:59:59-00:01")) == "2000-01-01T00:00:59Z");
  CHECK(formatDuration(hours(168)) == "168h");
  CHECK(formatDuration(seconds(5400)) == "1h30m");
  CHECK(formatDuration(seconds(3601)) == "1h1s");
  CHECK(formatDuration(seconds(45)) == "45s");
  CHECK(formatDuration(seconds(0)) == "0s");
  CHECK(formatDuration(seconds(-90)) == "-1m30s");
}

TEST_CASE("malformed times are rejected with the field path") {
  const std::string suffix = " is not an RFC 3339 time like 2026-12-01T00:00:00Z";
  for (const std::string bad : {"tomorrow",
                                "",
                                "2026-12-01",
                                "2026-12-01T00:00:00",
                                "2026-12-01 00:00:00Z",
                                "2026-12-01T00:00:00+0200",
                                "2026-12-01T00:00:00+02",
                                "2026-12-01T00:00Z",
                                "2026-02-30T00:00:00Z",
                                "2026-13-01T00:00:00Z",
                                "2026-00-10T00:00:00Z",
                                "2026-12-01T24:00:00Z",
                                "2026-12-01T00:60:00Z",
                                "2026-12-01T00:00:60Z",
                                "2026-12-01T00:00:00.Z",
                                "2026-12-01T00:00:00+24:00",
                                "2026-12-01T00:00:00Z ",
                                "+2026-12-01T00:00:00Z",
                                "2026-1-01T00:00:00Z",
                                "2026-12-01T00:00:00ZZ"}) {
    CAPTURE(bad);
    auto t = parseDateTime(bad, "spec.expiresAt");
    REQUIRE_FALSE(t.ok());
    CHECK(t.status().message() == "spec.expiresAt: \"" + bad + "\"" + suffix);
  }
  // Representable: years 1678 to 2261 (an int64 of nanoseconds).
  CHECK(parseDateTime("9999-12-31T23:59:59Z", "spec.expiresAt").status().message() ==
        "spec.expiresAt: \"9999-12-31T23:59:59Z\" is not an RFC 3339 time like "
        "2026-12-01T00:00:00Z");
  CHECK(parseDateTime("2261-12-31T23:59:59.999999999Z", "spec.expiresAt").ok());
}

TEST_CASE("invalid SegmentationExceptions are rejected with exact messages") {
  CHECK(decodeError(json::array()) == "SegmentationException: not an object");
  CHECK(decodeError(exceptionObject({{"metadata", nullptr}})) == "metadata: required");
  CHECK(decodeError(exceptionObject({{"metadata", {{"name", nullptr}}}})) ==
        "metadata.name: required");
  CHECK(decodeError(exceptionObject({{"metadata", {{"namespace", ""}}}})) ==
        "metadata.namespace: required");
  CHECK(decodeError(exceptionObject({{"metadata", {{"namespace", 7}}}})) ==
        "metadata.namespace: must be a string");
  CHECK(decodeError(exceptionObject({{"spec", nullptr}})) == "spec: required");
  CHECK(decodeError(exceptionObject({{"spec", "x"}})) == "spec: must be an object");
  CHECK(decodeError(exceptionObject(specPatch({{"podSelector", nullptr}}))) ==
        "spec.podSelector: required (use {} to select every pod of the namespace)");
  CHECK(decodeError(exceptionObject(specPatch(
            {{"podSelector", {{"matchExpressions", {{{"key", "a"}, {"operator", "Is"}}}}}}}))) ==
        "spec.podSelector.matchExpressions[0].operator: \"Is\" is not one of In, NotIn, Exists, "
        "DoesNotExist");
  CHECK(decodeError(exceptionObject(specPatch({{"rules", nullptr}}))) == "spec.rules: required");
  CHECK(decodeError(exceptionObject(specPatch({{"rules", "forbidHostNetwork"}}))) ==
        "spec.rules: must be a list of rule names");
  CHECK(decodeError(exceptionObject(specPatch({{"rules", json::array()}}))) ==
        "spec.rules: must name at least one rule");
  CHECK(decodeError(exceptionObject(specPatch({{"rules", {"forbidHostNetwork", 3}}}))) ==
        "spec.rules[1]: must be a string");
  CHECK(
      decodeError(exceptionObject(specPatch({{"rules", {"forbidHostNetwork", "hostNetwork"}}}))) ==
      "spec.rules[1]: \"hostNetwork\" is not a pod rule (one of requiredLabels, "
      "forbidHostNetwork, forbidHostPorts, forbidHostPIDIPC, forbidPrivileged, "
      "forbiddenCapabilities, requireSidecar, requireSegmentedNamespace)");
  CHECK(decodeError(exceptionObject(
            specPatch({{"rules", {"forbidHostPorts", "forbidHostNetwork", "forbidHostPorts"}}}))) ==
        "spec.rules[2]: \"forbidHostPorts\" is listed twice");
  CHECK(decodeError(exceptionObject(specPatch({{"reason", nullptr}}))) == "spec.reason: required");
  CHECK(decodeError(exceptionObject(specPatch({{"reason", "too short"}}))) ==
        "spec.reason: must be at least 10 characters, a justification such as \"vendor agent "
        "needs host network until v5 (TICKET-123)\"");
  CHECK(decodeError(exceptionObject(specPatch({{"reason", std::string(1025, 'x')}}))) ==
        "spec.reason: must be at most 1024 characters");
  CHECK(decodeError(exceptionObject(specPatch({{"expiresAt", nullptr}}))) ==
        "spec.expiresAt: required");
  CHECK(decodeError(exceptionObject(specPatch({{"expiresAt", 1798761600}}))) ==
        "spec.expiresAt: must be a string");
  CHECK(decodeError(exceptionObject(specPatch({{"expiresAt", "2026-12-01T00:00:00"}}))) ==
        "spec.expiresAt: \"2026-12-01T00:00:00\" is not an RFC 3339 time like "
        "2026-12-01T00:00:00Z");
  CHECK(decodeError(exceptionObject(specPatch({{"requestedBy", nullptr}}))) ==
        "spec.requestedBy: required");
  CHECK(decodeError(exceptionObject(specPatch({{"requestedBy", ""}}))) ==
        "spec.requestedBy: required");
  CHECK(decodeError(exceptionObject(specPatch({{"approvedBy", true}}))) ==
        "spec.approvedBy: must be a string");
}

TEST_CASE("reason length counts characters, not bytes, like the schema") {
  // Ten characters, twenty bytes: accepted. 1024 three-byte characters: accepted.
  CHECK(decode(exceptionObject(specPatch({{"reason", "ééééééééé\xc3\xa9"}}))).reason.size() == 20);
  std::string longest;
  for (int i = 0; i < 1024; ++i) {
    longest += "\xe2\x82\xac";  // the euro sign
  }
  CHECK(decode(exceptionObject(specPatch({{"reason", longest}}))).reason == longest);
  CHECK(decodeError(exceptionObject(specPatch({{"reason", longest + "x"}}))) ==
        "spec.reason: must be at most 1024 characters");
}

// ---------------------------------------------------------------------------------------------
// Phases

TEST_CASE("an exception is Active until expiresAt and Expired from then on") {
  SegmentationException e = decode(exceptionObject());  // expires 13:00
  const WallTime expiry = at("2026-11-29T13:00:00Z");
  SegmentationPolicy open = openPolicy();
  CHECK(phaseOf(e, open, kNow) == ExceptionPhase::kActive);
  CHECK(phaseOf(e, open, expiry - nanoseconds(1)) == ExceptionPhase::kActive);
  CHECK(phaseOf(e, open, expiry) == ExceptionPhase::kExpired);
  CHECK(phaseOf(e, open, expiry + nanoseconds(1)) == ExceptionPhase::kExpired);
  CHECK(phaseOf(e, open, expiry + hours(24 * 365)) == ExceptionPhase::kExpired);
  CHECK(exceptionPhaseName(ExceptionPhase::kPending) == "Pending");
  CHECK(exceptionPhaseName(ExceptionPhase::kActive) == "Active");
  CHECK(exceptionPhaseName(ExceptionPhase::kExpired) == "Expired");
}

TEST_CASE("with approverGroups an exception is Pending until approved") {
  SegmentationPolicy gated = gatedPolicy();
  SegmentationException pending = decode(exceptionObject());
  SegmentationException approvedOne = decode(approved());
  const WallTime expiry = at("2026-11-29T13:00:00Z");
  CHECK(phaseOf(pending, gated, kNow) == ExceptionPhase::kPending);
  CHECK(phaseOf(pending, gated, expiry - nanoseconds(1)) == ExceptionPhase::kPending);
  CHECK(phaseOf(pending, gated, expiry) == ExceptionPhase::kExpired);
  CHECK(phaseOf(approvedOne, gated, kNow) == ExceptionPhase::kActive);
  CHECK(phaseOf(approvedOne, gated, expiry - nanoseconds(1)) == ExceptionPhase::kActive);
  CHECK(phaseOf(approvedOne, gated, expiry) == ExceptionPhase::kExpired);
  // Without approverGroups an approvedBy changes nothing.
  CHECK(phaseOf(approvedOne, openPolicy(), kNow) == ExceptionPhase::kActive);
}

// ---------------------------------------------------------------------------------------------
// Exempted rules

TEST_CASE("exemptedRules is the union of the matching Active exceptions' rules") {
  auto named = [](const std::string& name, json spec) {
    json object = exceptionObject({{"metadata", {{"name", name}}}});
    object["spec"].update(spec);  // replaces whole fields, podSelector included
    return decode(object);
  };
  const Labels agent{{"app", "legacy-agent"}, {"tier", "node"}};
  std::vector<SegmentationException> all = {
      named("host-network", {{"rules", {"forbidHostNetwork"}}}),
      named("host-ports",
            {{"rules", {"forbidHostPorts", "forbidHostNetwork"}},
             {"podSelector",
              {{"matchExpressions",
                {{{"key", "tier"}, {"operator", "In"}, {"values", {"node", "edge"}}}}}}}}),
      named("other-app", {{"rules", {"forbidPrivileged"}},
                          {"podSelector", {{"matchLabels", {{"app", "other"}}}}}}),
      named("expired", {{"rules", {"requireSidecar"}}, {"expiresAt", "2026-11-29T11:59:59Z"}}),
      named("later", {{"rules", {"forbiddenCapabilities"}}, {"expiresAt", "2026-11-29T12:30:00Z"}}),
  };
  SegmentationPolicy open = openPolicy();
  using RuleSet = std::set<std::string, std::less<>>;
  CHECK(exemptedRules(all, agent, open, kNow) ==
        RuleSet{"forbidHostNetwork", "forbidHostPorts", "forbiddenCapabilities"});
  // At the second "later" expires it stops applying; the others still do.
  CHECK(exemptedRules(all, agent, open, at("2026-11-29T12:30:00Z")) ==
        RuleSet{"forbidHostNetwork", "forbidHostPorts"});
  CHECK(exemptedRules(all, agent, open, at("2026-11-29T12:29:59.999999999Z")) ==
        RuleSet{"forbidHostNetwork", "forbidHostPorts", "forbiddenCapabilities"});
  // Everything expired at 13:00.
  CHECK(exemptedRules(all, agent, open, at("2026-11-29T13:00:00Z")).empty());
  // A pod only the second selector matches would not match the first one.
  CHECK(exemptedRules(all, {{"app", "other"}}, open, kNow) == RuleSet{"forbidPrivileged"});
  CHECK(exemptedRules(all, {{"tier", "edge"}}, open, kNow) ==
        RuleSet{"forbidHostPorts", "forbidHostNetwork"});
  CHECK(exemptedRules(all, {}, open, kNow).empty());
  CHECK(exemptedRules({}, agent, open, kNow).empty());
}

TEST_CASE("exemptedRules skips exceptions still Pending approval") {
  std::vector<SegmentationException> all = {
      decode(exceptionObject()),  // forbidHostNetwork, not approved
      decode(approved(
          {{"metadata", {{"name", "ports"}}}, {"spec", {{"rules", {"forbidHostPorts"}}}}})),
  };
  const Labels agent{{"app", "legacy-agent"}};
  using RuleSet = std::set<std::string, std::less<>>;
  CHECK(exemptedRules(all, agent, gatedPolicy(), kNow) == RuleSet{"forbidHostPorts"});
  CHECK(exemptedRules(all, agent, openPolicy(), kNow) ==
        RuleSet{"forbidHostNetwork", "forbidHostPorts"});
}

// ---------------------------------------------------------------------------------------------
// Admission: CREATE

TEST_CASE("a valid create by the requester is allowed") {
  SegmentationPolicy open = openPolicy();
  SegmentationPolicy gated = gatedPolicy();
  CHECK(checkExceptionRequest(createReview(exceptionObject(), kAlice), &open, kNow) ==
        std::nullopt);
  CHECK(checkExceptionRequest(createReview(exceptionObject(), kAlice), &gated, kNow) ==
        std::nullopt);
  CHECK(checkExceptionRequest(createReview(exceptionObject(), kAlice), nullptr, kNow) ==
        std::nullopt);
}

TEST_CASE("create: requestedBy must be the requesting user") {
  SegmentationPolicy open = openPolicy();
  CHECK(checkExceptionRequest(createReview(exceptionObject(), kCarol), &open, kNow) ==
        kPrefix +
            " has spec.requestedBy \"alice\" but is created by \"carol\"; set spec.requestedBy "
            "to your own user name \"carol\"");
}

TEST_CASE("create: approvedBy must not be set") {
  SegmentationPolicy gated = gatedPolicy();
  CHECK(checkExceptionRequest(createReview(approved(), kAlice), &gated, kNow) ==
        kPrefix +
            " is created with spec.approvedBy \"bob\"; remove it: approval is a separate "
            "update, made by the approver after creation");
  // Not even by an approver creating an exception in their own name for someone else.
  json byBob = exceptionObject(specPatch({{"requestedBy", "bob"}, {"approvedBy", "carol"}}));
  CHECK(checkExceptionRequest(createReview(byBob, kBob), &gated, kNow) ==
        kPrefix +
            " is created with spec.approvedBy \"carol\"; remove it: approval is a separate "
            "update, made by the approver after creation");
}

TEST_CASE("create: expiresAt must be in the future") {
  SegmentationPolicy open = openPolicy();
  const std::string expired = kPrefix +
                              " has spec.expiresAt 2026-11-29T11:00:00Z, which is not in the "
                              "future (now 2026-11-29T12:00:00Z); set a later spec.expiresAt, at "
                              "most 1h ahead";
  CHECK(
      checkExceptionRequest(
          createReview(exceptionObject(specPatch({{"expiresAt", "2026-11-29T11:00:00Z"}})), kAlice),
          &open, kNow) == expired);
  // Expiring right now is expired already.
  CHECK(checkExceptionRequest(
            createReview(exceptionObject(specPatch({{"expiresAt", "2026-11-29T14:00:00+02:00"}})),
                         kAlice),
            &open, kNow) ==
        kPrefix +
            " has spec.expiresAt 2026-11-29T12:00:00Z, which is not in the future (now "
            "2026-11-29T12:00:00Z); set a later spec.expiresAt, at most 1h ahead");
  CHECK(checkExceptionRequest(
            createReview(exceptionObject(specPatch({{"expiresAt", "2026-11-29T12:00:00.001Z"}})),
                         kAlice),
            &open, kNow) == std::nullopt);
}

TEST_CASE("create: expiresAt at most maxDuration ahead") {
  SegmentationPolicy open = openPolicy();  // maxDuration 1h
  auto createExpiring = [&](const std::string& expiresAt, const SegmentationPolicy* policy) {
    return checkExceptionRequest(
        createReview(exceptionObject(specPatch({{"expiresAt", expiresAt}})), kAlice), policy, kNow);
  };
  CHECK(createExpiring("2026-11-29T13:00:00Z", &open) == std::nullopt);
  CHECK(createExpiring("2026-11-29T15:00:00+02:00", &open) == std::nullopt);
  CHECK(createExpiring("2026-11-29T14:00:00Z", &open) ==
        kPrefix +
            " has spec.expiresAt 2026-11-29T14:00:00Z, more than the maxDuration 1h of "
            "SegmentationPolicy \"baseline\" ahead (now 2026-11-29T12:00:00Z); set "
            "spec.expiresAt to 2026-11-29T13:00:00Z or earlier");
  CHECK(createExpiring("2026-11-29T13:00:00.000000001Z", &open) ==
        kPrefix +
            " has spec.expiresAt 2026-11-29T13:00:00.000000001Z, more than the maxDuration 1h of "
            "SegmentationPolicy \"baseline\" ahead (now 2026-11-29T12:00:00Z); set "
            "spec.expiresAt to 2026-11-29T13:00:00Z or earlier");
  // maxDuration 1h30m: 2h ahead is still too long.
  SegmentationPolicy ninety = openPolicy();
  ninety.exceptions.maxDuration = seconds(5400);
  CHECK(createExpiring("2026-11-29T14:00:00Z", &ninety) ==
        kPrefix +
            " has spec.expiresAt 2026-11-29T14:00:00Z, more than the maxDuration 1h30m of "
            "SegmentationPolicy \"baseline\" ahead (now 2026-11-29T12:00:00Z); set "
            "spec.expiresAt to 2026-11-29T13:30:00Z or earlier");
  // No governing policy: the default 168h.
  CHECK(createExpiring("2026-12-06T12:00:00Z", nullptr) == std::nullopt);
  CHECK(createExpiring("2026-12-06T12:00:01Z", nullptr) ==
        kPrefix +
            " has spec.expiresAt 2026-12-06T12:00:01Z, more than the default maxDuration 168h "
            "ahead (now 2026-11-29T12:00:00Z); set spec.expiresAt to 2026-12-06T12:00:00Z or "
            "earlier");
}

TEST_CASE("create: an object that does not decode is denied") {
  SegmentationPolicy open = openPolicy();
  CHECK(checkExceptionRequest(
            createReview(exceptionObject(specPatch({{"rules", {"hostNetwork"}}})), kAlice), &open,
            kNow) == kPrefix +
                         " is invalid: spec.rules[0]: \"hostNetwork\" is not a pod rule (one of "
                         "requiredLabels, forbidHostNetwork, forbidHostPorts, forbidHostPIDIPC, "
                         "forbidPrivileged, forbiddenCapabilities, requireSidecar, "
                         "requireSegmentedNamespace)");
  CHECK(checkExceptionRequest({"CREATE", std::nullopt, std::nullopt, kAlice}, &open, kNow) ==
        "bulkhead: CREATE of a SegmentationException without the object; the request cannot "
        "be checked");
  CHECK(checkExceptionRequest({"PATCH", exceptionObject(), std::nullopt, kAlice}, &open, kNow) ==
        "bulkhead: unknown admission operation \"PATCH\" on a SegmentationException");
}

TEST_CASE("user names are quoted as JSON strings in messages") {
  SegmentationPolicy open = openPolicy();
  UserInfo odd{"eve\" approved by \"bob", {}};
  CHECK(checkExceptionRequest(createReview(exceptionObject(), odd), &open, kNow) ==
        kPrefix +
            " has spec.requestedBy \"alice\" but is created by \"eve\\\" approved by \\\"bob\"; "
            "set spec.requestedBy to your own user name \"eve\\\" approved by \\\"bob\"");
}

// ---------------------------------------------------------------------------------------------
// Admission: DELETE and updates that leave spec alone

TEST_CASE("delete is always allowed") {
  SegmentationPolicy gated = gatedPolicy();
  CHECK(checkExceptionRequest({"DELETE", std::nullopt, approved(), kCarol}, &gated, kNow) ==
        std::nullopt);
  CHECK(checkExceptionRequest({"DELETE", std::nullopt, std::nullopt, kCarol}, nullptr, kNow) ==
        std::nullopt);
}

TEST_CASE("an update that leaves spec alone is allowed, even by others and after expiry") {
  SegmentationPolicy gated = gatedPolicy();
  json old = approved();
  json labelled = old;
  labelled["metadata"]["labels"] = {{"team", "infra"}};
  CHECK(checkExceptionRequest(updateReview(old, labelled, kCarol), &gated,
                              at("2026-12-24T00:00:00Z")) == std::nullopt);
  // Reordering rules is no change: spec.rules is a set.
  json two = exceptionObject(specPatch({{"rules", {"forbidHostNetwork", "forbidHostPorts"}}}));
  json reordered =
      exceptionObject(specPatch({{"rules", {"forbidHostPorts", "forbidHostNetwork"}}}));
  CHECK(checkExceptionRequest(updateReview(two, reordered, kCarol), &gated, kNow) == std::nullopt);
}

TEST_CASE("update: requestedBy never changes") {
  SegmentationPolicy open = openPolicy();
  json old = exceptionObject();
  json taken = exceptionObject(specPatch({{"requestedBy", "carol"}}));
  CHECK(checkExceptionRequest(updateReview(old, taken, kCarol), &open, kNow) ==
        kPrefix +
            " cannot change spec.requestedBy from \"alice\" to \"carol\"; create a new one under "
            "your own name instead");
}

// ---------------------------------------------------------------------------------------------
// Admission: approval

TEST_CASE("a valid approval is allowed") {
  SegmentationPolicy gated = gatedPolicy();
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), approved(), kBob), &gated, kNow) ==
        std::nullopt);
  // Membership of any one approver group is enough.
  UserInfo dana{"dana", {"platform-leads"}};
  json byDana = exceptionObject(specPatch({{"approvedBy", "dana"}}));
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), byDana, dana), &gated, kNow) ==
        std::nullopt);
}

TEST_CASE("approval: no self-approval") {
  SegmentationPolicy gated = gatedPolicy();
  UserInfo aliceAdmin{"alice", {"security-admins"}};
  json self = exceptionObject(specPatch({{"approvedBy", "alice"}}));
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), self, aliceAdmin), &gated, kNow) ==
        kPrefix +
            " cannot be approved by its requester \"alice\"; ask a member of an approver group "
            "(security-admins, platform-leads) of SegmentationPolicy \"baseline\" to approve it");
}

TEST_CASE("approval: the approver must be in an approver group") {
  SegmentationPolicy gated = gatedPolicy();
  json byCarol = exceptionObject(specPatch({{"approvedBy", "carol"}}));
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), byCarol, kCarol), &gated, kNow) ==
        kPrefix +
            " cannot be approved by \"carol\", who is in no approver group (security-admins, "
            "platform-leads) of SegmentationPolicy \"baseline\"; ask a member of one of these "
            "groups to approve it");
}

TEST_CASE("approval: only in the approver's own name") {
  SegmentationPolicy gated = gatedPolicy();
  // Carol (no approver) writes bob's name; bob (an approver) writes dana's name.
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), approved(), kCarol), &gated, kNow) ==
        kPrefix +
            " cannot be approved on behalf of \"bob\" by \"carol\"; approvers approve as "
            "themselves: set spec.approvedBy to \"carol\"");
  json forDana = exceptionObject(specPatch({{"approvedBy", "dana"}}));
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), forDana, kBob), &gated, kNow) ==
        kPrefix +
            " cannot be approved on behalf of \"dana\" by \"bob\"; approvers approve as "
            "themselves: set spec.approvedBy to \"bob\"");
  // The requester writing an approver's name is the same forgery.
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), approved(), kAlice), &gated, kNow) ==
        kPrefix +
            " cannot be approved on behalf of \"bob\" by \"alice\"; approvers approve as "
            "themselves: set spec.approvedBy to \"alice\"");
}

TEST_CASE("approval: refused when the policy does not require it") {
  SegmentationPolicy open = openPolicy();
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), approved(), kBob), &open, kNow) ==
        kPrefix +
            " cannot be approved: SegmentationPolicy \"baseline\" does not require approval (its "
            "spec.exceptions.approverGroups is empty); remove spec.approvedBy");
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), approved(), kBob), nullptr, kNow) ==
        kPrefix +
            " cannot be approved: no SegmentationPolicy governs namespace \"shop\", so no "
            "approval is required; remove spec.approvedBy");
}

TEST_CASE("approval: must be the only change") {
  SegmentationPolicy gated = gatedPolicy();
  json widened = approved(specPatch({{"rules", {"forbidHostNetwork", "forbidPrivileged"}}}));
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), widened, kBob), &gated, kNow) ==
        kPrefix +
            " cannot be approved in the same update that changes spec.rules; approve it as it "
            "is, in an update that only sets spec.approvedBy");
  json shortened = approved(specPatch({{"expiresAt", "2026-11-29T12:30:00Z"}}));
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), shortened, kBob), &gated, kNow) ==
        kPrefix +
            " cannot be approved in the same update that changes spec.expiresAt; approve it as "
            "it is, in an update that only sets spec.approvedBy");
}

TEST_CASE("approval: approvedBy never changes and is never removed") {
  SegmentationPolicy gated = gatedPolicy();
  const std::string fixed = kPrefix +
                            " was approved by \"bob\"; spec.approvedBy cannot be changed or "
                            "removed: delete it and request a new one";
  UserInfo dana{"dana", {"security-admins"}};
  json byDana = exceptionObject(specPatch({{"approvedBy", "dana"}}));
  CHECK(checkExceptionRequest(updateReview(approved(), byDana, dana), &gated, kNow) == fixed);
  CHECK(checkExceptionRequest(updateReview(approved(), exceptionObject(), kBob), &gated, kNow) ==
        fixed);
}

// ---------------------------------------------------------------------------------------------
// Admission: changing spec

TEST_CASE("after approval nothing but an earlier expiresAt may change") {
  SegmentationPolicy gated = gatedPolicy();
  json widened = approved(specPatch({{"rules", {"forbidHostNetwork", "forbidPrivileged"}}}));
  CHECK(checkExceptionRequest(updateReview(approved(), widened, kAlice), &gated, kNow) ==
        kPrefix +
            " was approved by \"bob\"; spec.rules cannot change after approval (only "
            "spec.expiresAt can move earlier): delete it and request a new one");
  json moved = withSelector(approved(specPatch({{"reason", "a new reason!"}})), json::object());
  CHECK(checkExceptionRequest(updateReview(approved(), moved, kAlice), &gated, kNow) ==
        kPrefix +
            " was approved by \"bob\"; spec.podSelector, spec.reason cannot change after "
            "approval (only spec.expiresAt can move earlier): delete it and request a new one");
  json extended = approved(specPatch({{"expiresAt", "2026-11-29T13:00:01Z"}}));
  CHECK(checkExceptionRequest(updateReview(approved(), extended, kAlice), &gated, kNow) ==
        kPrefix +
            " was approved by \"bob\"; spec.expiresAt can only move earlier after approval, not "
            "from 2026-11-29T13:00:00Z to 2026-11-29T13:00:01Z: request a new one for a longer "
            "time");
  // Shortening gives access up: allowed for anyone, even into the past.
  json shortened = approved(specPatch({{"expiresAt", "2026-11-29T12:15:00Z"}}));
  CHECK(checkExceptionRequest(updateReview(approved(), shortened, kCarol), &gated, kNow) ==
        std::nullopt);
  json ended = approved(specPatch({{"expiresAt", "2026-11-29T11:00:00Z"}}));
  CHECK(checkExceptionRequest(updateReview(approved(), ended, kBob), &gated, kNow) == std::nullopt);
}

TEST_CASE("before approval only the requester changes spec, within maxDuration") {
  SegmentationPolicy open = openPolicy();
  json widened = exceptionObject(specPatch({{"rules", {"forbidHostNetwork", "forbidPrivileged"}}}));
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), widened, kAlice), &open, kNow) ==
        std::nullopt);
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), widened, kBob), &open, kNow) ==
        kPrefix +
            " was requested by \"alice\"; only \"alice\" can change spec.rules, not \"bob\": ask "
            "\"alice\" to change it, or request one of your own");
  json renewed = exceptionObject(specPatch({{"expiresAt", "2026-11-29T12:45:00Z"}}));
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), renewed, kCarol), &open, kNow) ==
        kPrefix +
            " was requested by \"alice\"; only \"alice\" can change spec.expiresAt, not "
            "\"carol\": ask \"alice\" to change it, or request one of your own");
  // The requester renewing an active exception: like re-creating it, bounded by maxDuration from
  // now.
  const WallTime later = at("2026-11-29T12:40:00Z");
  json renewedOk = exceptionObject(specPatch({{"expiresAt", "2026-11-29T13:40:00Z"}}));
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), renewedOk, kAlice), &open, later) ==
        std::nullopt);
  json tooFar = exceptionObject(specPatch({{"expiresAt", "2026-11-29T14:00:00Z"}}));
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), tooFar, kAlice), &open, later) ==
        kPrefix +
            " has spec.expiresAt 2026-11-29T14:00:00Z, more than the maxDuration 1h of "
            "SegmentationPolicy \"baseline\" ahead (now 2026-11-29T12:40:00Z); set "
            "spec.expiresAt to 2026-11-29T13:40:00Z or earlier");
  json past = exceptionObject(specPatch({{"expiresAt", "2026-11-29T12:30:00Z"}}));
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), past, kAlice), &open, later) ==
        kPrefix +
            " has spec.expiresAt 2026-11-29T12:30:00Z, which is not in the future (now "
            "2026-11-29T12:40:00Z); set a later spec.expiresAt, at most 1h ahead");
  // Several changes are all named, expiresAt last.
  json both = exceptionObject(
      specPatch({{"reason", "another reason"}, {"expiresAt", "2026-11-29T12:45:00Z"}}));
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), both, kCarol), &open, kNow) ==
        kPrefix +
            " was requested by \"alice\"; only \"alice\" can change spec.reason, spec.expiresAt, "
            "not \"carol\": ask \"alice\" to change it, or request one of your own");
}

TEST_CASE("update: missing or undecodable objects are denied") {
  SegmentationPolicy open = openPolicy();
  CHECK(checkExceptionRequest({"UPDATE", exceptionObject(), std::nullopt, kAlice}, &open, kNow) ==
        "bulkhead: UPDATE of " + kPrefix.substr(10) +
            " without the old object; the request cannot be checked");
  json broken = exceptionObject(specPatch({{"reason", "short"}}));
  CHECK(checkExceptionRequest(updateReview(broken, exceptionObject(), kAlice), &open, kNow) ==
        kPrefix +
            " is stored with an invalid spec (spec.reason: must be at least 10 characters, a "
            "justification such as \"vendor agent needs host network until v5 (TICKET-123)\") "
            "and cannot be updated; delete it and create a new one");
  CHECK(checkExceptionRequest(updateReview(exceptionObject(), broken, kAlice), &open, kNow) ==
        kPrefix +
            " is invalid: spec.reason: must be at least 10 characters, a justification such as "
            "\"vendor agent needs host network until v5 (TICKET-123)\"");
}

// ---------------------------------------------------------------------------------------------
// The shared checks, as AccessGrant will call them

TEST_CASE("the time-bound checks name any kind") {
  ObjectRef grant{"AccessGrant", "debug-api", "payments"};
  CHECK(describeObject(grant) == "AccessGrant \"debug-api\" in namespace \"payments\"");
  ApprovalRules rules = approvalRulesOf(nullptr);
  CHECK(rules.policyName.empty());
  CHECK(rules.maxDuration == hours(168));
  CHECK(rules.approverGroups.empty());
  SegmentationPolicy gated = gatedPolicy();
  rules = approvalRulesOf(&gated);
  CHECK(rules.policyName == "baseline");
  CHECK(rules.approverGroups == std::vector<std::string>{"security-admins", "platform-leads"});

  TimeBoundFields fields{"alice", "", kNow + hours(2)};
  CHECK(checkTimeBoundCreate(grant, fields, kAlice, rules, kNow) == std::nullopt);
  CHECK(checkTimeBoundCreate(grant, fields, kBob, rules, kNow) ==
        "bulkhead: AccessGrant \"debug-api\" in namespace \"payments\" has spec.requestedBy "
        "\"alice\" but is created by \"bob\"; set spec.requestedBy to your own user name \"bob\"");
  TimeBoundFields approvedFields = fields;
  approvedFields.approvedBy = "bob";
  CHECK(checkTimeBoundUpdate(grant, fields, approvedFields, {}, kBob, rules, kNow) == std::nullopt);
  CHECK(checkTimeBoundUpdate(grant, approvedFields, approvedFields, {"spec.to"}, kAlice, rules,
                             kNow) ==
        "bulkhead: AccessGrant \"debug-api\" in namespace \"payments\" was approved by \"bob\"; "
        "spec.to cannot change after approval (only spec.expiresAt can move earlier): delete it "
        "and request a new one");
}

}  // namespace
}  // namespace bulkhead::policy
