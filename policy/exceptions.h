#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "policy/label_selector.h"
#include "policy/segmentation_policy.h"

// SegmentationException (SPEC 1.3): decoding, phase, which rules it exempts a pod from, and the
// admission checks of the identity and duration of who asks for and who approves it. Pure: the
// current time is always a parameter.
namespace bulkhead::policy {

// The same type as bulkhead::WallTime (common/clock.h), named here without pulling the clock into
// the pure core.
using WallTime = std::chrono::system_clock::time_point;

struct SegmentationException {
  std::string name;
  std::string ns;
  std::string uid;
  LabelSelector podSelector;
  std::vector<std::string> rules;  // names from kPodRuleNames, no duplicates, as written
  std::string reason;
  WallTime expiresAt;
  std::string requestedBy;
  std::string approvedBy;  // empty when not approved
  bool operator==(const SegmentationException&) const = default;
};

// Decodes a SegmentationException object as read from the API server or an admission request.
// Checks what the CRD's schema checks (required fields, rule names, reason length, RFC 3339
// expiresAt), so an object that reaches the webhook or the controller without that schema is
// still decoded safely. Invalid errors name the field path ("spec.rules[1]: ...").
StatusOr<SegmentationException> decodeSegmentationException(const nlohmann::json& object);

enum class ExceptionPhase { kPending, kActive, kExpired };

// "Pending", "Active", "Expired": the values of status.phase.
std::string_view exceptionPhaseName(ExceptionPhase phase);

// Expired at and after expiresAt; otherwise Pending while `governing` requires approval
// (exceptions.approverGroups is set) and approvedBy is empty; otherwise Active. Whether the
// approver was entitled to approve is checked at admission (checkExceptionRequest), not here.
ExceptionPhase phaseOf(const SegmentationException& exception, const SegmentationPolicy& governing,
                       WallTime now);

// The rule names that the Active exceptions among `inNamespace` (the exceptions of the pod's
// namespace) whose podSelector matches `podLabels` exempt the pod from: the union of their rules.
// The set type is PodContext::exemptedRules' so the result can be assigned to it as it is.
std::set<std::string, std::less<>> exemptedRules(
    const std::vector<SegmentationException>& inNamespace, const Labels& podLabels,
    const SegmentationPolicy& governing, WallTime now);

// ---------------------------------------------------------------------------------------------
// Admission (SPEC 1.3 and 3.1 "SegmentationException and AccessGrant")

// The authenticated user of an admission request (AdmissionReview request.userInfo).
struct UserInfo {
  std::string username;
  std::vector<std::string> groups;
};

// The parts of an AdmissionReview request that the checks read.
struct ExceptionReview {
  std::string operation;  // CREATE | UPDATE | DELETE | CONNECT
  std::optional<nlohmann::json> object;
  std::optional<nlohmann::json> oldObject;
  UserInfo user;
};

// Decides a request on a SegmentationException: std::nullopt to allow, or the denial message.
// `governing` is the SegmentationPolicy that governs the exception's namespace; null when none
// does (then approval is not required and maxDuration is 168h).
//
// CREATE
//   - spec.requestedBy equals the requesting user's name;
//   - spec.approvedBy is not set (approval is a separate update by the approver);
//   - spec.expiresAt is after `now` and at most the policy's exceptions.maxDuration after it.
// UPDATE (an update that leaves spec as it is, e.g. of metadata, is always allowed, even after
// expiry)
//   - spec.requestedBy never changes;
//   - spec.approvedBy, once set, never changes and is never removed;
//   - setting spec.approvedBy is an approval: allowed only when the policy requires approval
//     (approverGroups is set; otherwise an approvedBy no approver group stands behind would
//     become a forged approval the day approverGroups is set), only with the approving user's own
//     name, never by the requester, only by a member of an approver group, and only as the sole
//     change to spec;
//   - before approval, only the requester may change spec (podSelector, rules, reason,
//     expiresAt), and a changed expiresAt must pass the CREATE duration check again (the same as
//     deleting and re-creating it, which the requester could do anyway);
//   - after approval, spec may only be narrowed in time: expiresAt may move earlier (by anyone
//     allowed to update; giving up access needs no approval), nothing else may change.
// DELETE and CONNECT are always allowed: removing an exception only takes access away.
// A request without the objects its operation needs, or with an object that does not decode, is
// denied (fails closed).
std::optional<std::string> checkExceptionRequest(const ExceptionReview& review,
                                                 const SegmentationPolicy* governing, WallTime now);

// ---------------------------------------------------------------------------------------------
// Identity and duration checks shared by every requested, approved, time-bound object
// (SegmentationException, AccessGrant). Each returns std::nullopt to allow or the full denial
// message, which starts with `bulkhead: <kind> "<name>" in namespace "<ns>" ` and says how to fix.

// Names the object in messages.
struct ObjectRef {
  std::string kind;  // "SegmentationException"
  std::string name;
  std::string ns;
};

// `SegmentationException "legacy-agent" in namespace "shop"`
std::string describeObject(const ObjectRef& ref);

// What the governing policy says about approval and duration.
struct ApprovalRules {
  std::string policyName;  // empty when no policy governs
  std::chrono::seconds maxDuration{168 * 3600};
  std::vector<std::string> approverGroups;  // empty: approval not required
};

// The governing policy's rules, or the defaults when `governing` is null.
ApprovalRules approvalRulesOf(const SegmentationPolicy* governing);

// The fields the shared checks read.
struct TimeBoundFields {
  std::string requestedBy;
  std::string approvedBy;
  WallTime expiresAt;
};

// The CREATE checks above.
std::optional<std::string> checkTimeBoundCreate(const ObjectRef& ref, const TimeBoundFields& fields,
                                                const UserInfo& user, const ApprovalRules& rules,
                                                WallTime now);

// The UPDATE checks above. `otherChanges` names the spec fields other than requestedBy,
// approvedBy and expiresAt that differ between the old and the new object ("spec.rules"); the
// caller compares those, as they depend on the kind.
std::optional<std::string> checkTimeBoundUpdate(const ObjectRef& ref, const TimeBoundFields& old,
                                                const TimeBoundFields& updated,
                                                const std::vector<std::string>& otherChanges,
                                                const UserInfo& user, const ApprovalRules& rules,
                                                WallTime now);

// A user-supplied string as a quoted, escaped JSON string, so a name cannot break a message.
std::string quote(const std::string& s);
// Unicode code points in UTF-8 text (what a CRD schema's minLength and maxLength count).
size_t codePoints(const std::string& s);
// The name and namespace of an object of `kind` for messages, read leniently (the object may not
// decode).
ObjectRef objectRefOf(const nlohmann::json& object, const std::string& kind);
// "the maxDuration 1h of SegmentationPolicy "baseline"" or "the default maxDuration 168h".
std::string maxDurationPhrase(const ApprovalRules& rules);

// ---------------------------------------------------------------------------------------------
// Time formats of user-written times. Not common/time_format's parseRfc3339/formatRfc3339: those
// serve times the API server wrote, while these validate untrusted input exactly as the CRD
// schema's date-time format does (the lenient strptime there turns 2026-02-30 into March 2nd and
// wraps years past 2262), and messages must show the time to the nanosecond as it was written.

// Parses an RFC 3339 date-time as the API server's date-time format accepts it:
// "2026-12-01T00:00:00Z", "2026-12-01t00:00:00.123456789+02:00" (T and Z in either case, any
// number of fractional digits, kept to the nanosecond, offsets +hh:mm or -hh:mm). Invalid,
// naming `path`, for anything else: no time zone, an impossible date, second 60, a year past
// what WallTime holds (2262).
StatusOr<WallTime> parseDateTime(std::string_view text, const std::string& path);

// UTC, with the fractional seconds only when there are some (Go's RFC3339Nano):
// "2026-12-01T00:00:00Z", "2026-12-01T00:00:00.5Z".
std::string formatDateTime(WallTime time);

// Like Go's time.Duration.String() without the zero units: "168h", "1h30m", "45s", "0s".
std::string formatDuration(std::chrono::seconds duration);

}  // namespace bulkhead::policy
