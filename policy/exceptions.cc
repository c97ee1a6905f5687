#include "policy/exceptions.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "common/flags.h"
#include "common/time_format.h"
#include "policy/pod_rules.h"

namespace bulkhead::policy {
namespace {

using nlohmann::json;

constexpr const char* kExceptionKind = "SegmentationException";

// A user-supplied string as a quoted, escaped JSON string, so a name cannot break the message.
std::string joinList(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    out += (out.empty() ? "" : ", ") + item;
  }
  return out;
}

bool isPodRuleName(const std::string& name) {
  return std::find(kPodRuleNames.begin(), kPodRuleNames.end(), name) != kPodRuleNames.end();
}

std::string podRuleNameList() {
  std::string out;
  for (auto name : kPodRuleNames) {
    out += (out.empty() ? "" : ", ") + std::string(name);
  }
  return out;
}

// A string field that must be present and non-empty.
StatusOr<std::string> requiredString(const json& obj, const char* key, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return invalidError(path + ": required");
  }
  if (!it->is_string()) {
    return invalidError(path + ": must be a string");
  }
  std::string value = it->get<std::string>();
  if (value.empty()) {
    return invalidError(path + ": required");
  }
  return value;
}

StatusOr<std::vector<std::string>> decodeRules(const json& spec) {
  auto it = spec.find("rules");
  if (it == spec.end() || it->is_null()) {
    return invalidError("spec.rules: required");
  }
  if (!it->is_array()) {
    return invalidError("spec.rules: must be a list of rule names");
  }
  if (it->empty()) {
    return invalidError("spec.rules: must name at least one rule");
  }
  std::vector<std::string> rules;
  for (size_t i = 0; i < it->size(); ++i) {
    std::string at = "spec.rules[" + std::to_string(i) + "]";
    const json& rule = (*it)[i];
    if (!rule.is_string()) {
      return invalidError(at + ": must be a string");
    }
    std::string name = rule.get<std::string>();
    if (!isPodRuleName(name)) {
      return invalidError(at + ": " + quote(name) + " is not a pod rule (one of " +
                          podRuleNameList() + ")");
    }
    if (std::find(rules.begin(), rules.end(), name) != rules.end()) {
      return invalidError(at + ": " + quote(name) + " is listed twice");
    }
    rules.push_back(std::move(name));
  }
  return rules;
}

// The object's name and namespace for messages, read leniently (the object may not decode).
TimeBoundFields timeBoundFieldsOf(const SegmentationException& e) {
  return {e.requestedBy, e.approvedBy, e.expiresAt};
}

std::set<std::string> asSet(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

// "the maxDuration 1h of SegmentationPolicy "baseline"" or "the default maxDuration 168h".
std::string approverGroupsPhrase(const ApprovalRules& rules) {
  return "(" + joinList(rules.approverGroups) + ") of SegmentationPolicy " +
         quote(rules.policyName);
}

// spec.expiresAt must be after `now` and at most rules.maxDuration after it.
std::optional<std::string> checkExpiry(const ObjectRef& ref, WallTime expiresAt,
                                       const ApprovalRules& rules, WallTime now) {
  if (expiresAt <= now) {
    return "bulkhead: " + describeObject(ref) + " has spec.expiresAt " + formatDateTime(expiresAt) +
           ", which is not in the future (now " + formatDateTime(now) +
           "); set a later spec.expiresAt, at most " + formatDuration(rules.maxDuration) + " ahead";
  }
  WallTime latest = now + rules.maxDuration;
  if (expiresAt > latest) {
    return "bulkhead: " + describeObject(ref) + " has spec.expiresAt " + formatDateTime(expiresAt) +
           ", more than " + maxDurationPhrase(rules) + " ahead (now " + formatDateTime(now) +
           "); set spec.expiresAt to " + formatDateTime(latest) + " or earlier";
  }
  return std::nullopt;
}

// Setting approvedBy on an object that had none.
std::optional<std::string> checkApproval(const ObjectRef& ref, const TimeBoundFields& updated,
                                         const std::vector<std::string>& changed,
                                         const UserInfo& user, const ApprovalRules& rules) {
  std::string subject = "bulkhead: " + describeObject(ref);
  if (rules.approverGroups.empty()) {
    if (rules.policyName.empty()) {
      return subject + " cannot be approved: no SegmentationPolicy governs namespace " +
             quote(ref.ns) + ", so no approval is required; remove spec.approvedBy";
    }
    return subject + " cannot be approved: SegmentationPolicy " + quote(rules.policyName) +
           " does not require approval (its spec.exceptions.approverGroups is empty); remove "
           "spec.approvedBy";
  }
  if (!changed.empty()) {
    return subject + " cannot be approved in the same update that changes " + joinList(changed) +
           "; approve it as it is, in an update that only sets spec.approvedBy";
  }
  if (updated.approvedBy != user.username) {
    return subject + " cannot be approved on behalf of " + quote(updated.approvedBy) + " by " +
           quote(user.username) + "; approvers approve as themselves: set spec.approvedBy to " +
           quote(user.username);
  }
  if (updated.approvedBy == updated.requestedBy) {
    return subject + " cannot be approved by its requester " + quote(updated.requestedBy) +
           "; ask a member of an approver group " + approverGroupsPhrase(rules) + " to approve it";
  }
  bool member = std::any_of(user.groups.begin(), user.groups.end(), [&](const std::string& g) {
    return std::find(rules.approverGroups.begin(), rules.approverGroups.end(), g) !=
           rules.approverGroups.end();
  });
  if (!member) {
    return subject + " cannot be approved by " + quote(user.username) +
           ", who is in no approver group " + approverGroupsPhrase(rules) +
           "; ask a member of one of these groups to approve it";
  }
  return std::nullopt;
}

// Reads the digits of a fixed-width decimal field; false if any is not a digit.
}  // namespace

// ---------------------------------------------------------------------------------------------
// Shared by the kinds of requested, time-bound objects

std::string quote(const std::string& s) {
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

ObjectRef objectRefOf(const json& object, const std::string& kind) {
  ObjectRef ref{kind, "", ""};
  if (!object.is_object()) {
    return ref;
  }
  auto md = object.find("metadata");
  if (md == object.end() || !md->is_object()) {
    return ref;
  }
  if (auto n = md->find("name"); n != md->end() && n->is_string()) {
    ref.name = n->get<std::string>();
  }
  if (auto n = md->find("namespace"); n != md->end() && n->is_string()) {
    ref.ns = n->get<std::string>();
  }
  return ref;
}

std::string maxDurationPhrase(const ApprovalRules& rules) {
  if (rules.policyName.empty()) {
    return "the default maxDuration " + formatDuration(rules.maxDuration);
  }
  return "the maxDuration " + formatDuration(rules.maxDuration) + " of SegmentationPolicy " +
         quote(rules.policyName);
}

size_t codePoints(const std::string& s) {
  return static_cast<size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

StatusOr<WallTime> parseDateTime(std::string_view text, const std::string& path) {
  auto t = parseRfc3339(text);
  if (!t) {
    return invalidError(path + ": " + quote(std::string(text)) +
                        " is not an RFC 3339 time like 2026-12-01T00:00:00Z");
  }
  return *t;
}

std::string formatDateTime(WallTime time) {
  using namespace std::chrono;
  auto midnight = floor<days>(time);
  year_month_day date(midnight);
  hh_mm_ss<nanoseconds> tod(duration_cast<nanoseconds>(time - midnight));
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02u-%02uT%02d:%02d:%02d", static_cast<int>(date.year()),
                static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                static_cast<int>(tod.hours().count()), static_cast<int>(tod.minutes().count()),
                static_cast<int>(tod.seconds().count()));
  std::string out = buf;
  if (int64_t ns = tod.subseconds().count(); ns != 0) {
    std::snprintf(buf, sizeof(buf), ".%09lld", static_cast<long long>(ns));
    std::string frac = buf;
    frac.erase(frac.find_last_not_of('0') + 1);
    out += frac;
  }
  return out + "Z";
}

std::string formatDuration(std::chrono::seconds duration) {
  return bulkhead::formatDuration(std::chrono::duration_cast<std::chrono::milliseconds>(duration));
}

StatusOr<SegmentationException> decodeSegmentationException(const json& object) {
  if (!object.is_object()) {
    return invalidError("SegmentationException: not an object");
  }
  auto md = object.find("metadata");
  if (md == object.end() || !md->is_object()) {
    return invalidError("metadata: required");
  }
  SegmentationException e;
  ASSIGN_OR_RETURN(e.name, requiredString(*md, "name", "metadata.name"));
  ASSIGN_OR_RETURN(e.ns, requiredString(*md, "namespace", "metadata.namespace"));
  if (auto uid = md->find("uid"); uid != md->end() && uid->is_string()) {
    e.uid = uid->get<std::string>();
  }

  auto spec = object.find("spec");
  if (spec == object.end() || spec->is_null()) {
    return invalidError("spec: required");
  }
  if (!spec->is_object()) {
    return invalidError("spec: must be an object");
  }
  auto selector = spec->find("podSelector");
  if (selector == spec->end() || selector->is_null()) {
    return invalidError("spec.podSelector: required (use {} to select every pod of the namespace)");
  }
  ASSIGN_OR_RETURN(e.podSelector, decodeLabelSelector(*selector, "spec.podSelector"));
  ASSIGN_OR_RETURN(e.rules, decodeRules(*spec));
  ASSIGN_OR_RETURN(e.reason, requiredString(*spec, "reason", "spec.reason"));
  if (size_t n = codePoints(e.reason); n < 10) {
    return invalidError(
        "spec.reason: must be at least 10 characters, a justification such as "
        "\"vendor agent needs host network until v5 (TICKET-123)\"");
  } else if (n > 1024) {
    return invalidError("spec.reason: must be at most 1024 characters");
  }
  ASSIGN_OR_RETURN(std::string expiresAt, requiredString(*spec, "expiresAt", "spec.expiresAt"));
  ASSIGN_OR_RETURN(e.expiresAt, parseDateTime(expiresAt, "spec.expiresAt"));
  ASSIGN_OR_RETURN(e.requestedBy, requiredString(*spec, "requestedBy", "spec.requestedBy"));
  if (auto a = spec->find("approvedBy"); a != spec->end() && !a->is_null()) {
    if (!a->is_string()) {
      return invalidError("spec.approvedBy: must be a string");
    }
    e.approvedBy = a->get<std::string>();
  }
  return e;
}

std::string_view exceptionPhaseName(ExceptionPhase phase) {
  switch (phase) {
    case ExceptionPhase::kPending:
      return "Pending";
    case ExceptionPhase::kActive:
      return "Active";
    case ExceptionPhase::kExpired:
      return "Expired";
  }
  std::abort();
}

ExceptionPhase phaseOf(const SegmentationException& exception, const SegmentationPolicy& governing,
                       WallTime now) {
  if (now >= exception.expiresAt) {
    return ExceptionPhase::kExpired;
  }
  if (!governing.exceptions.approverGroups.empty() && exception.approvedBy.empty()) {
    return ExceptionPhase::kPending;
  }
  return ExceptionPhase::kActive;
}

std::set<std::string, std::less<>> exemptedRules(
    const std::vector<SegmentationException>& inNamespace, const Labels& podLabels,
    const SegmentationPolicy& governing, WallTime now) {
  std::set<std::string, std::less<>> out;
  for (const auto& e : inNamespace) {
    if (phaseOf(e, governing, now) == ExceptionPhase::kActive && e.podSelector.matches(podLabels)) {
      out.insert(e.rules.begin(), e.rules.end());
    }
  }
  return out;
}

std::string describeObject(const ObjectRef& ref) {
  return ref.kind + " " + quote(ref.name) + " in namespace " + quote(ref.ns);
}

ApprovalRules approvalRulesOf(const SegmentationPolicy* governing) {
  ApprovalRules rules;
  if (governing != nullptr) {
    rules.policyName = governing->name;
    rules.maxDuration = governing->exceptions.maxDuration;
    rules.approverGroups = governing->exceptions.approverGroups;
  }
  return rules;
}

std::optional<std::string> checkTimeBoundCreate(const ObjectRef& ref, const TimeBoundFields& fields,
                                                const UserInfo& user, const ApprovalRules& rules,
                                                WallTime now) {
  if (fields.requestedBy != user.username) {
    return "bulkhead: " + describeObject(ref) + " has spec.requestedBy " +
           quote(fields.requestedBy) + " but is created by " + quote(user.username) +
           "; set spec.requestedBy to your own user name " + quote(user.username);
  }
  if (!fields.approvedBy.empty()) {
    return "bulkhead: " + describeObject(ref) + " is created with spec.approvedBy " +
           quote(fields.approvedBy) +
           "; remove it: approval is a separate update, made by the approver after creation";
  }
  return checkExpiry(ref, fields.expiresAt, rules, now);
}

std::optional<std::string> checkTimeBoundUpdate(const ObjectRef& ref, const TimeBoundFields& old,
                                                const TimeBoundFields& updated,
                                                const std::vector<std::string>& otherChanges,
                                                const UserInfo& user, const ApprovalRules& rules,
                                                WallTime now) {
  std::string subject = "bulkhead: " + describeObject(ref);
  if (updated.requestedBy != old.requestedBy) {
    return subject + " cannot change spec.requestedBy from " + quote(old.requestedBy) + " to " +
           quote(updated.requestedBy) + "; create a new one under your own name instead";
  }
  if (!old.approvedBy.empty()) {
    if (updated.approvedBy != old.approvedBy) {
      return subject + " was approved by " + quote(old.approvedBy) +
             "; spec.approvedBy cannot be changed or removed: delete it and request a new one";
    }
    if (!otherChanges.empty()) {
      return subject + " was approved by " + quote(old.approvedBy) + "; " + joinList(otherChanges) +
             " cannot change after approval (only spec.expiresAt can move earlier): delete it "
             "and request a new one";
    }
    if (updated.expiresAt > old.expiresAt) {
      return subject + " was approved by " + quote(old.approvedBy) +
             "; spec.expiresAt can only move earlier after approval, not from " +
             formatDateTime(old.expiresAt) + " to " + formatDateTime(updated.expiresAt) +
             ": request a new one for a longer time";
    }
    return std::nullopt;
  }

  std::vector<std::string> changed = otherChanges;
  bool expiryChanged = updated.expiresAt != old.expiresAt;
  if (expiryChanged) {
    changed.push_back("spec.expiresAt");
  }
  if (!updated.approvedBy.empty()) {
    return checkApproval(ref, updated, changed, user, rules);
  }
  if (changed.empty()) {
    return std::nullopt;
  }
  if (user.username != old.requestedBy) {
    return subject + " was requested by " + quote(old.requestedBy) + "; only " +
           quote(old.requestedBy) + " can change " + joinList(changed) + ", not " +
           quote(user.username) + ": ask " + quote(old.requestedBy) +
           " to change it, or request one of your own";
  }
  if (expiryChanged) {
    return checkExpiry(ref, updated.expiresAt, rules, now);
  }
  return std::nullopt;
}

std::optional<std::string> checkExceptionRequest(const ExceptionReview& review,
                                                 const SegmentationPolicy* governing,
                                                 WallTime now) {
  const std::string& op = review.operation;
  if (op == "DELETE" || op == "CONNECT") {
    return std::nullopt;
  }
  if (op != "CREATE" && op != "UPDATE") {
    return "bulkhead: unknown admission operation " + quote(op) + " on a SegmentationException";
  }
  if (!review.object) {
    return "bulkhead: " + op +
           " of a SegmentationException without the object; the request "
           "cannot be checked";
  }
  ObjectRef ref = objectRefOf(*review.object, kExceptionKind);
  auto updated = decodeSegmentationException(*review.object);
  if (!updated.ok()) {
    return "bulkhead: " + describeObject(ref) + " is invalid: " + updated.status().message();
  }
  ApprovalRules rules = approvalRulesOf(governing);
  if (op == "CREATE") {
    return checkTimeBoundCreate(ref, timeBoundFieldsOf(*updated), review.user, rules, now);
  }

  if (!review.oldObject) {
    return "bulkhead: UPDATE of " + describeObject(ref) +
           " without the old object; the request cannot be checked";
  }
  auto old = decodeSegmentationException(*review.oldObject);
  if (!old.ok()) {
    return "bulkhead: " + describeObject(ref) + " is stored with an invalid spec (" +
           old.status().message() + ") and cannot be updated; delete it and create a new one";
  }
  std::vector<std::string> otherChanges;
  if (updated->podSelector != old->podSelector) {
    otherChanges.push_back("spec.podSelector");
  }
  if (asSet(updated->rules) != asSet(old->rules)) {  // a set: the order carries no meaning
    otherChanges.push_back("spec.rules");
  }
  if (updated->reason != old->reason) {
    otherChanges.push_back("spec.reason");
  }
  return checkTimeBoundUpdate(ref, timeBoundFieldsOf(*old), timeBoundFieldsOf(*updated),
                              otherChanges, review.user, rules, now);
}

}  // namespace bulkhead::policy
