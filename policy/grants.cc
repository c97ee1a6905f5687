#include "policy/grants.h"

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <regex>
#include <set>
#include <utility>

#include "common/flags.h"
#include "policy/policy_status.h"

namespace bulkhead::policy {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

// "2h", "1h30m", "500ms": a spec.duration as Go writes it (policy's formatDuration stops at
// seconds).
std::string durationText(milliseconds d) { return bulkhead::formatDuration(d); }

// The syntax the API server checks, and the CRD's patterns repeat.
const char* const kDnsLabel = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const char* const kLabelName = "[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?";

bool isDnsLabel(const std::string& s) {
  static const std::regex re(kDnsLabel);
  return s.size() <= 63 && std::regex_match(s, re);
}

bool isDnsSubdomain(const std::string& s) {
  static const std::regex re(std::string(kDnsLabel) + "(\\." + kDnsLabel + ")*");
  return s.size() <= 253 && std::regex_match(s, re);
}

// A label key: an optional DNS subdomain prefix and '/', then a name of at most 63 characters.
bool isLabelKey(const std::string& key) {
  static const std::regex name(kLabelName);
  std::string_view rest = key;
  if (auto slash = key.find('/'); slash != std::string::npos) {
    if (!isDnsSubdomain(key.substr(0, slash))) {
      return false;
    }
    rest = std::string_view(key).substr(slash + 1);
  }
  return rest.size() <= 63 && std::regex_match(rest.begin(), rest.end(), name);
}

bool isLabelValue(const std::string& value) {
  static const std::regex re(kLabelName);
  return value.empty() || (value.size() <= 63 && std::regex_match(value, re));
}

Status checkLabels(const Labels& labels, const std::string& path) {
  for (const auto& [k, v] : labels) {
    if (!isLabelKey(k)) {
      return invalidError(path + ": " + quote(k) + " is not a valid label key");
    }
    if (!isLabelValue(v)) {
      return invalidError(path + "." + k + ": " + quote(v) +
                          " is not a valid label value (at most 63 letters, digits, '-', '_' "
                          "and '.', starting and ending with a letter or digit)");
    }
  }
  return okStatus();
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

// The object at `key`: required, or null when optional and absent.
StatusOr<const json*> objectField(const json& obj, const char* key, const std::string& path,
                                  bool required) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) {
      return invalidError(path + ": required");
    }
    return static_cast<const json*>(nullptr);
  }
  if (!it->is_object()) {
    return invalidError(path + ": must be an object");
  }
  return &*it;
}

StatusOr<GrantSource> decodeSource(const json& spec) {
  ASSIGN_OR_RETURN(const json* from, objectField(spec, "from", "spec.from", true));
  GrantSource source;
  ASSIGN_OR_RETURN(source.ns, requiredString(*from, "namespace", "spec.from.namespace"));
  if (!isDnsLabel(source.ns)) {
    return invalidError("spec.from.namespace: " + quote(source.ns) + " is not a namespace name");
  }
  if (auto s = from->find("podSelector"); s != from->end()) {
    ASSIGN_OR_RETURN(source.podSelector, decodeLabelSelector(*s, "spec.from.podSelector"));
    RETURN_IF_ERROR(
        checkLabels(source.podSelector.matchLabels, "spec.from.podSelector.matchLabels"));
    for (size_t i = 0; i < source.podSelector.matchExpressions.size(); ++i) {
      const auto& r = source.podSelector.matchExpressions[i];
      std::string at = "spec.from.podSelector.matchExpressions[" + std::to_string(i) + "]";
      if (!isLabelKey(r.key)) {
        return invalidError(at + ".key: " + quote(r.key) + " is not a valid label key");
      }
      for (const auto& v : r.values) {
        if (!isLabelValue(v)) {
          return invalidError(at + ".values: " + quote(v) + " is not a valid label value");
        }
      }
    }
  }
  if (auto sa = from->find("serviceAccount"); sa != from->end() && !sa->is_null()) {
    if (!sa->is_string()) {
      return invalidError("spec.from.serviceAccount: must be a string");
    }
    source.serviceAccount = sa->get<std::string>();
    if (!isDnsSubdomain(source.serviceAccount)) {
      return invalidError("spec.from.serviceAccount: " + quote(source.serviceAccount) +
                          " is not a ServiceAccount name");
    }
  }
  return source;
}

StatusOr<std::vector<Port>> decodePorts(const json& to) {
  auto it = to.find("ports");
  if (it == to.end() || it->is_null()) {
    return invalidError("spec.to.ports: required");
  }
  if (!it->is_array()) {
    return invalidError("spec.to.ports: must be a list of {port, protocol}");
  }
  if (it->empty() || it->size() > 16) {
    return invalidError("spec.to.ports: must list 1 to 16 ports");
  }
  std::vector<Port> ports;
  for (size_t i = 0; i < it->size(); ++i) {
    std::string at = "spec.to.ports[" + std::to_string(i) + "]";
    const json& p = (*it)[i];
    if (!p.is_object()) {
      return invalidError(at + ": must be an object with port and protocol");
    }
    auto number = p.find("port");
    if (number == p.end() || number->is_null()) {
      return invalidError(at + ".port: required");
    }
    if (!number->is_number_integer()) {
      return invalidError(at + ".port: must be an integer");
    }
    if (number->is_number_unsigned()
            ? number->get<uint64_t>() > 65535
            : (number->get<int64_t>() < 1 || number->get<int64_t>() > 65535)) {
      return invalidError(at + ".port: " + number->dump() + " is not in 1-65535");
    }
    Port port{number->get<int>(), "TCP"};
    if (auto proto = p.find("protocol"); proto != p.end() && !proto->is_null()) {
      if (!proto->is_string()) {
        return invalidError(at + ".protocol: must be a string");
      }
      port.protocol = proto->get<std::string>();
      if (port.protocol != "TCP" && port.protocol != "UDP" && port.protocol != "SCTP") {
        return invalidError(at + ".protocol: " + quote(port.protocol) +
                            " is not one of TCP, UDP, SCTP");
      }
    }
    if (std::find(ports.begin(), ports.end(), port) != ports.end()) {
      return invalidError(at + ": " + std::to_string(port.port) + "/" + port.protocol +
                          " is listed twice");
    }
    ports.push_back(std::move(port));
  }
  return ports;
}

StatusOr<GrantDestination> decodeDestination(const json& spec) {
  ASSIGN_OR_RETURN(const json* to, objectField(spec, "to", "spec.to", true));
  ASSIGN_OR_RETURN(const json* selector,
                   objectField(*to, "podSelector", "spec.to.podSelector", true));
  if (auto me = selector->find("matchExpressions"); me != selector->end() && !me->is_null()) {
    return invalidError(
        "spec.to.podSelector.matchExpressions: not supported; select the pods with matchLabels "
        "only (Istio AuthorizationPolicy selectors only support matchLabels)");
  }
  GrantDestination dest;
  ASSIGN_OR_RETURN(LabelSelector decoded, decodeLabelSelector(*selector, "spec.to.podSelector"));
  dest.matchLabels = std::move(decoded.matchLabels);
  if (dest.matchLabels.empty()) {
    return invalidError(
        "spec.to.podSelector.matchLabels: required, with at least one label: a grant opens a "
        "flow to some pods, not to the whole namespace");
  }
  RETURN_IF_ERROR(checkLabels(dest.matchLabels, "spec.to.podSelector.matchLabels"));
  ASSIGN_OR_RETURN(dest.ports, decodePorts(*to));
  return dest;
}

// spec.duration: a Go duration of at most 12 characters (so that parsing cannot overflow), in
// h, m, s and ms units, positive and at most kGrantMaxDuration.
StatusOr<milliseconds> decodeGrantDuration(const json& value) {
  if (!value.is_string()) {
    return invalidError("spec.duration: must be a string");
  }
  std::string text = value.get<std::string>();
  static const std::regex kDuration(R"(^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$)");
  if (text.size() > 12) {
    return invalidError("spec.duration: " + quote(text) + " is longer than 12 characters");
  }
  auto parsed = std::regex_match(text, kDuration) ? parseDuration(text)
                                                  : StatusOr<milliseconds>(invalidError(""));
  if (!parsed.ok()) {
    return invalidError("spec.duration: " + quote(text) + " is not a duration like 2h or 90m");
  }
  if (*parsed <= milliseconds(0)) {
    return invalidError("spec.duration: must be greater than zero");
  }
  if (*parsed > kGrantMaxDuration) {
    return invalidError("spec.duration: " + quote(text) + " is longer than " +
                        formatDuration(kGrantMaxDuration) + ", the longest any grant can last");
  }
  return *parsed;
}

StatusOr<AccessGrant> decodeUnchecked(const json& object) {
  if (!object.is_object()) {
    return invalidError("AccessGrant: not an object");
  }
  auto md = object.find("metadata");
  if (md == object.end() || !md->is_object()) {
    return invalidError("metadata: required");
  }
  AccessGrant g;
  ASSIGN_OR_RETURN(g.name, requiredString(*md, "name", "metadata.name"));
  if (!isDnsLabel(g.name)) {
    return invalidError("metadata.name: " + quote(g.name) +
                        " is not a DNS label (at most 63 lowercase letters, digits and '-'): the "
                        "objects a grant generates carry its name as a label value");
  }
  ASSIGN_OR_RETURN(g.ns, requiredString(*md, "namespace", "metadata.namespace"));
  if (auto uid = md->find("uid"); uid != md->end() && uid->is_string()) {
    g.uid = uid->get<std::string>();
  }
  if (auto gen = md->find("generation"); gen != md->end() && gen->is_number_integer()) {
    g.generation = gen->get<int64_t>();
  }
  g.deleting = isTerminating(object);
  if (auto f = md->find("finalizers"); f != md->end() && f->is_array()) {
    g.hasFinalizer = std::find(f->begin(), f->end(), json(kGrantFinalizer)) != f->end();
  }

  auto spec = object.find("spec");
  if (spec == object.end() || spec->is_null()) {
    return invalidError("spec: required");
  }
  if (!spec->is_object()) {
    return invalidError("spec: must be an object");
  }
  ASSIGN_OR_RETURN(g.from, decodeSource(*spec));
  ASSIGN_OR_RETURN(g.to, decodeDestination(*spec));

  auto expires = spec->find("expiresAt");
  auto duration = spec->find("duration");
  bool hasExpires = expires != spec->end() && !expires->is_null();
  bool hasDuration = duration != spec->end() && !duration->is_null();
  if (hasExpires == hasDuration) {
    return invalidError(
        "spec: set exactly one of expiresAt (an RFC 3339 time) and duration (like 2h, counted "
        "from activation)");
  }
  if (hasExpires) {
    if (!expires->is_string()) {
      return invalidError("spec.expiresAt: must be a string");
    }
    ASSIGN_OR_RETURN(g.expiresAt, parseDateTime(expires->get<std::string>(), "spec.expiresAt"));
  } else {
    ASSIGN_OR_RETURN(g.duration, decodeGrantDuration(*duration));
  }

  ASSIGN_OR_RETURN(g.reason, requiredString(*spec, "reason", "spec.reason"));
  if (codePoints(g.reason) > 1024) {
    return invalidError("spec.reason: must be at most 1024 characters");
  }
  ASSIGN_OR_RETURN(g.requestedBy, requiredString(*spec, "requestedBy", "spec.requestedBy"));
  if (auto a = spec->find("approvedBy"); a != spec->end() && !a->is_null()) {
    if (!a->is_string()) {
      return invalidError("spec.approvedBy: must be a string");
    }
    g.approvedBy = a->get<std::string>();
  }

  if (auto status = object.find("status"); status != object.end() && status->is_object()) {
    if (auto at = status->find("activatedAt"); at != status->end() && !at->is_null()) {
      if (!at->is_string()) {
        return invalidError("status.activatedAt: must be a string");
      }
      ASSIGN_OR_RETURN(g.activatedAt, parseDateTime(at->get<std::string>(), "status.activatedAt"));
    }
  }
  return g;
}

// ---------------------------------------------------------------------------------------------
// Text

// "app=web,tier in (a,b),!legacy", as kubectl writes selectors.
std::string selectorText(const LabelSelector& selector) {
  std::string out;
  auto add = [&](const std::string& part) { out += (out.empty() ? "" : ",") + part; };
  for (const auto& [k, v] : selector.matchLabels) {
    add(k + "=" + v);
  }
  for (const auto& r : selector.matchExpressions) {
    std::string values;
    for (const auto& v : r.values) {
      values += (values.empty() ? "" : ",") + v;
    }
    switch (r.op) {
      case LabelSelector::Requirement::Op::kIn:
        add(r.key + " in (" + values + ")");
        break;
      case LabelSelector::Requirement::Op::kNotIn:
        add(r.key + " notin (" + values + ")");
        break;
      case LabelSelector::Requirement::Op::kExists:
        add(r.key);
        break;
      case LabelSelector::Requirement::Op::kDoesNotExist:
        add("!" + r.key);
        break;
    }
  }
  return out;
}

std::string podsText(const LabelSelector& selector) {
  return selector.empty() ? "all pods" : "pods " + selectorText(selector);
}

// "from shop (pods app=web, ServiceAccount web) to payments (pods app=api) on 8080/TCP, 53/UDP"
std::string flowText(const AccessGrant& g) {
  std::string out = "from " + g.from.ns + " (" + podsText(g.from.podSelector);
  if (!g.from.serviceAccount.empty()) {
    out += ", ServiceAccount " + g.from.serviceAccount;
  }
  out += ") to " + g.ns + " (" + podsText(LabelSelector{g.to.matchLabels, {}}) + ") on ";
  for (size_t i = 0; i < g.to.ports.size(); ++i) {
    out += (i ? ", " : "") + std::to_string(g.to.ports[i].port) + "/" + g.to.ports[i].protocol;
  }
  return out;
}

// "until 2026-12-01T10:00:00Z", or "for 2h once active" for a duration not yet counting.
std::string untilText(const AccessGrant& g) {
  if (auto expiry = effectiveExpiry(g)) {
    return "until " + formatDateTime(*expiry);
  }
  return "for " + durationText(*g.duration) + " once active";
}

// "requested by alice, approved by bob" or "requested by alice, no approval".
std::string whoText(const AccessGrant& g) {
  return "requested by " + g.requestedBy +
         (g.approvedBy.empty() ? ", no approval" : ", approved by " + g.approvedBy);
}

// ---------------------------------------------------------------------------------------------
// Generated objects

json metadataFor(const std::string& name, const std::string& ns, const AccessGrant& g) {
  auto expiry = effectiveExpiry(g);
  return {
      {"name", name},
      {"namespace", ns},
      {"labels",
       {{kManagedByLabel, kManagedByValue}, {kGrantLabel, g.name}, {kGrantNamespaceLabel, g.ns}}},
      {"annotations",
       {{kGrantExpiresAnnotation,
         expiry ? formatDateTime(*expiry) : durationText(*g.duration) + " after activation"},
        {kGrantReasonAnnotation, g.reason}}}};
}

json namespacePeer(const std::string& ns, const LabelSelector& pods) {
  return {{"namespaceSelector", {{"matchLabels", {{kNamespaceNameLabel, ns}}}}},
          {"podSelector", pods.toJson()}};
}

// The ports, and in an ambient namespace TCP 15008 too: ambient traffic between pods arrives
// tunnelled (HBONE) on it, as for every generated allow there (policy/segmentation.cc).
json portsJson(const std::vector<Port>& ports, bool ambient) {
  json out = json::array();
  bool hbone = false;
  for (const auto& p : ports) {
    out.push_back({{"port", p.port}, {"protocol", p.protocol}});
    hbone = hbone || (p.port == kHbonePort && p.protocol == "TCP");
  }
  if (ambient && !hbone) {
    out.push_back({{"port", kHbonePort}, {"protocol", "TCP"}});
  }
  return out;
}

json networkPolicy(const std::string& name, const std::string& ns, const AccessGrant& g,
                   json spec) {
  return {{"apiVersion", "networking.k8s.io/v1"},
          {"kind", "NetworkPolicy"},
          {"metadata", metadataFor(name, ns, g)},
          {"spec", std::move(spec)}};
}

// ---------------------------------------------------------------------------------------------
// Status

std::string conditionReason(GrantPhase phase) {
  switch (phase) {
    case GrantPhase::kPending:
      return "AwaitingApproval";
    case GrantPhase::kActive:
      return "Active";
    case GrantPhase::kExpired:
      return "Expired";
    case GrantPhase::kRevoked:
      return "Revoked";
  }
  std::abort();
}

// What the phase means for this grant, for the Ready condition and the history.
std::string phaseMessage(GrantPhase phase, const AccessGrant& g) {
  auto expiry = effectiveExpiry(g);
  switch (phase) {
    case GrantPhase::kPending:
      return "requested by " + g.requestedBy + "; awaiting approval";
    case GrantPhase::kActive:
      return (g.approvedBy.empty() ? "requested by " + g.requestedBy + ", no approval required"
                                   : "approved by " + g.approvedBy) +
             "; active " + untilText(g);
    case GrantPhase::kExpired:
      return "expired at " + formatDateTime(*expiry);
    case GrantPhase::kRevoked:
      return "revoked: deleted while active" +
             (expiry ? " (it was active until " + formatDateTime(*expiry) + ")" : std::string());
  }
  std::abort();
}

// ---------------------------------------------------------------------------------------------
// Admission

// The rules of the destination's policy (the defaults when none governs), then of the source's
// when another policy governs it.
std::vector<ApprovalRules> rulesOf(const SegmentationPolicy* dest,
                                   const SegmentationPolicy* source) {
  std::vector<ApprovalRules> out{approvalRulesOf(dest)};
  if (source != nullptr && (dest == nullptr || source->name != dest->name)) {
    out.push_back(approvalRulesOf(source));
  }
  return out;
}

// The fields the shared checks read. A duration grant has no expiresAt while it is not Active;
// its bound is checkDuration's, and the shared checks get an expiry that their own duration check
// accepts (rules.maxDuration from now; the policy schema makes maxDuration positive), the same for
// the old and the new object so that it never reads as a change of spec.expiresAt.
TimeBoundFields fieldsFor(const AccessGrant& g, const ApprovalRules& rules, WallTime now) {
  return {g.requestedBy, g.approvedBy, g.expiresAt ? *g.expiresAt : now + rules.maxDuration};
}

// The time bound of a grant being requested (or changed before approval, which is the same as
// re-requesting it): spec.duration within maxDuration, or spec.expiresAt through the shared
// CREATE check (whose identity part holds here: the requester asks, nothing is approved).
std::optional<std::string> checkBound(const ObjectRef& ref, const AccessGrant& g,
                                      const ApprovalRules& rules, WallTime now) {
  if (g.duration) {
    if (*g.duration <= rules.maxDuration) {
      return std::nullopt;
    }
    return "bulkhead: " + describeObject(ref) + " has spec.duration " + durationText(*g.duration) +
           ", longer than " + maxDurationPhrase(rules) + "; set spec.duration to " +
           formatDuration(rules.maxDuration) + " or less";
  }
  return checkTimeBoundCreate(ref, {g.requestedBy, "", *g.expiresAt}, {g.requestedBy, {}}, rules,
                              now);
}

std::set<std::pair<int, std::string>> portSet(const std::vector<Port>& ports) {
  std::set<std::pair<int, std::string>> out;
  for (const auto& p : ports) {
    out.emplace(p.port, p.protocol);
  }
  return out;
}

}  // namespace

StatusOr<AccessGrant> decodeAccessGrant(const json& object) {
  // The object comes from the API server or a user; a field of an unexpected JSON type must end
  // as an Invalid error here, never as an exception crossing this function.
  try {
    return decodeUnchecked(object);
  } catch (const json::exception& e) {
    return invalidError(std::string("AccessGrant has a field of the wrong type: ") + e.what());
  }
}

std::string grantSourceNamespace(const json& object) {
  const json* at = &object;
  for (const char* key : {"spec", "from", "namespace"}) {
    if (!at->is_object()) {
      return "";
    }
    auto it = at->find(key);
    if (it == at->end()) {
      return "";
    }
    at = &*it;
  }
  return at->is_string() ? at->get<std::string>() : "";
}

std::optional<WallTime> effectiveExpiry(const AccessGrant& grant) {
  if (grant.expiresAt) {
    return grant.expiresAt;
  }
  if (!grant.duration || !grant.activatedAt) {
    return std::nullopt;
  }
  auto d = std::chrono::duration_cast<WallTime::duration>(*grant.duration);
  if (*grant.activatedAt > WallTime::max() - d) {
    return WallTime::max();
  }
  return *grant.activatedAt + d;
}

std::string_view grantPhaseName(GrantPhase phase) {
  switch (phase) {
    case GrantPhase::kPending:
      return "Pending";
    case GrantPhase::kActive:
      return "Active";
    case GrantPhase::kExpired:
      return "Expired";
    case GrantPhase::kRevoked:
      return "Revoked";
  }
  std::abort();
}

std::optional<GrantPhase> parseGrantPhase(std::string_view name) {
  for (auto phase :
       {GrantPhase::kPending, GrantPhase::kActive, GrantPhase::kExpired, GrantPhase::kRevoked}) {
    if (grantPhaseName(phase) == name) {
      return phase;
    }
  }
  return std::nullopt;
}

bool grantNeedsApproval(const SegmentationPolicy* destGoverning,
                        const SegmentationPolicy* sourceGoverning) {
  auto approvers = [](const SegmentationPolicy* p) {
    return p != nullptr && !p->exceptions.approverGroups.empty();
  };
  return approvers(destGoverning) || approvers(sourceGoverning);
}

GrantPhase phaseOf(const AccessGrant& grant, const SegmentationPolicy* destGoverning,
                   const SegmentationPolicy* sourceGoverning, WallTime now) {
  if (auto expiry = effectiveExpiry(grant); expiry && now >= *expiry) {
    return GrantPhase::kExpired;
  }
  if (grantNeedsApproval(destGoverning, sourceGoverning) && grant.approvedBy.empty()) {
    return GrantPhase::kPending;
  }
  return grant.deleting ? GrantPhase::kRevoked : GrantPhase::kActive;
}

GrantContext grantContextFor(const SegmentationPolicy* destGoverning, const NamespaceFacts& dest,
                             const SegmentationPolicy* sourceGoverning,
                             const NamespaceFacts& source, const ClusterFacts& facts) {
  GrantContext c;
  if (destGoverning != nullptr) {
    c.destinationDeniesIngress = destGoverning->network.denyIngress;
    c.destinationAmbient = destGoverning->ambient(dest.labels);
    // As desiredObjects writes bulkhead-allow-nothing.
    c.destinationMeshDefaultDeny = facts.meshAvailable && destGoverning->authorizationDefaultDeny;
  }
  if (sourceGoverning != nullptr) {
    c.sourceDeniesEgress = sourceGoverning->network.denyEgress;
    c.sourceAmbient = sourceGoverning->ambient(source.labels);
  }
  return c;
}

std::string grantObjectName(const AccessGrant& grant) { return "bulkhead-grant-" + grant.name; }

std::string grantEgressObjectName(const AccessGrant& grant) {
  return "bulkhead-grant-" + grant.ns + "." + grant.name;
}

std::vector<json> grantObjects(const AccessGrant& g, const GrantContext& context) {
  std::vector<json> out;
  const LabelSelector toPods{g.to.matchLabels, {}};
  if (context.destinationDeniesIngress) {
    out.push_back(
        networkPolicy(grantObjectName(g), g.ns, g,
                      {{"podSelector", toPods.toJson()},
                       {"policyTypes", {"Ingress"}},
                       {"ingress",
                        {{{"from", {namespacePeer(g.from.ns, g.from.podSelector)}},
                          {"ports", portsJson(g.to.ports, context.destinationAmbient)}}}}}));
  }
  if (context.sourceDeniesEgress) {
    out.push_back(networkPolicy(grantEgressObjectName(g), g.from.ns, g,
                                {{"podSelector", g.from.podSelector.toJson()},
                                 {"policyTypes", {"Egress"}},
                                 {"egress",
                                  {{{"to", {namespacePeer(g.ns, toPods)}},
                                    {"ports", portsJson(g.to.ports, context.sourceAmbient)}}}}}));
  }
  json tcpPorts = json::array();
  for (const auto& p : g.to.ports) {
    if (p.protocol == "TCP") {
      tcpPorts.push_back(std::to_string(p.port));
    }
  }
  if (context.destinationMeshDefaultDeny && !tcpPorts.empty()) {
    json source = g.from.serviceAccount.empty()
                      ? json{{"namespaces", {g.from.ns}}}
                      : json{{"principals",
                              {std::string(kTrustDomain) + "/ns/" + g.from.ns + "/sa/" +
                               g.from.serviceAccount}}};
    out.push_back({{"apiVersion", "security.istio.io/v1"},
                   {"kind", "AuthorizationPolicy"},
                   {"metadata", metadataFor(grantObjectName(g), g.ns, g)},
                   {"spec",
                    {{"selector", {{"matchLabels", g.to.matchLabels}}},
                     {"action", "ALLOW"},
                     {"rules",
                      {{{"from", {{{"source", source}}}},
                        {"to", {{{"operation", {{"ports", tcpPorts}}}}}}}}}}}});
  }
  return out;
}

json grantStatus(const json& oldStatus, GrantPhase phase, const AccessGrant& grant, WallTime now) {
  const json old = oldStatus.is_object() ? oldStatus : json::object();
  const WallTime second = std::chrono::floor<std::chrono::seconds>(now);
  AccessGrant g = grant;
  if (!g.activatedAt && phase == GrantPhase::kActive) {
    g.activatedAt = second;
  }
  json status = {{"phase", grantPhaseName(phase)}, {"observedGeneration", g.generation}};
  if (g.activatedAt) {
    status["activatedAt"] = formatDateTime(*g.activatedAt);
  }
  if (auto expiry = effectiveExpiry(g)) {
    status["expiresAt"] = formatDateTime(*expiry);
  }

  const std::string message = phaseMessage(phase, g);
  status["conditions"] = {condition(old.value("conditions", json::array()), "Ready",
                                    phase == GrantPhase::kActive, conditionReason(phase), message,
                                    g.generation, second)};

  json history = json::array();
  if (auto h = old.find("history"); h != old.end() && h->is_array()) {
    history = *h;
  }
  auto oldPhase = old.value("phase", json()).is_string()
                      ? parseGrantPhase(old["phase"].get<std::string>())
                      : std::nullopt;
  if (oldPhase != phase) {
    history.push_back(
        {{"phase", grantPhaseName(phase)}, {"time", formatDateTime(second)}, {"message", message}});
  }
  if (history.size() > kGrantHistoryLimit) {
    history.erase(history.begin(), history.begin() + static_cast<std::ptrdiff_t>(
                                                         history.size() - kGrantHistoryLimit));
  }
  status["history"] = std::move(history);
  return status;
}

std::vector<GrantEvent> grantEvents(std::optional<GrantPhase> from, GrantPhase to,
                                    const AccessGrant& grant) {
  std::vector<GrantEvent> out;
  if (from == to) {
    return out;
  }
  if (!from) {
    out.push_back(GrantEvent::kRequested);
  }
  switch (to) {
    case GrantPhase::kPending:
      if (from == GrantPhase::kActive) {
        out.push_back(GrantEvent::kSuspended);
      }
      break;
    case GrantPhase::kActive:
      if (!grant.approvedBy.empty() && (!from || *from == GrantPhase::kPending)) {
        out.push_back(GrantEvent::kApproved);
      }
      out.push_back(GrantEvent::kActivated);
      break;
    case GrantPhase::kExpired:
      out.push_back(GrantEvent::kExpired);
      break;
    case GrantPhase::kRevoked:
      out.push_back(GrantEvent::kRevoked);
      break;
  }
  return out;
}

std::string_view grantEventReason(GrantEvent event) {
  switch (event) {
    case GrantEvent::kRequested:
      return "GrantRequested";
    case GrantEvent::kApproved:
      return "GrantApproved";
    case GrantEvent::kActivated:
      return "GrantActivated";
    case GrantEvent::kExpired:
      return "GrantExpired";
    case GrantEvent::kRevoked:
      return "GrantRevoked";
    case GrantEvent::kSuspended:
      return "GrantSuspended";
  }
  std::abort();
}

std::string grantEventMessage(GrantEvent event, const AccessGrant& g) {
  std::string what;
  std::string flow = flowText(g);
  auto expiry = effectiveExpiry(g);
  switch (event) {
    case GrantEvent::kRequested:
      what = "requested by " + g.requestedBy + ": " + flow + " " + untilText(g);
      break;
    case GrantEvent::kApproved:
      what = "approved by " + g.approvedBy + " (requested by " + g.requestedBy + "): " + flow +
             " " + untilText(g);
      break;
    case GrantEvent::kActivated:
      what = "access open (" + whoText(g) + "): " + flow + " " + untilText(g);
      break;
    case GrantEvent::kExpired:
      what =
          "access closed, expired at " + formatDateTime(*expiry) + " (" + whoText(g) + "): " + flow;
      break;
    case GrantEvent::kRevoked:
      what = "access closed, revoked by deletion" +
             (expiry ? " before " + formatDateTime(*expiry) : std::string()) + " (" + whoText(g) +
             "): " + flow;
      break;
    case GrantEvent::kSuspended:
      what =
          "access closed until approved: a governing SegmentationPolicy now requires "
          "approval (" +
          whoText(g) + "): " + flow + " " + untilText(g);
      break;
  }
  return describeObject({kGrantKind, g.name, g.ns}) + ": " + what + "; reason: " + quote(g.reason);
}

std::optional<std::string> checkGrantRequest(const ExceptionReview& review,
                                             const SegmentationPolicy* destGoverning,
                                             const SegmentationPolicy* sourceGoverning,
                                             WallTime now) {
  const std::string& op = review.operation;
  if (op == "DELETE" || op == "CONNECT") {
    return std::nullopt;
  }
  if (op != "CREATE" && op != "UPDATE") {
    return "bulkhead: unknown admission operation " + quote(op) + " on an AccessGrant";
  }
  if (!review.object) {
    return "bulkhead: " + op +
           " of an AccessGrant without the object; the request cannot be "
           "checked";
  }
  ObjectRef ref = objectRefOf(*review.object, kGrantKind);
  auto updated = decodeAccessGrant(*review.object);
  if (!updated.ok()) {
    return "bulkhead: " + describeObject(ref) + " is invalid: " + updated.status().message();
  }
  const std::vector<ApprovalRules> all = rulesOf(destGoverning, sourceGoverning);

  if (op == "CREATE") {
    for (const auto& rules : all) {
      if (auto denial =
              checkTimeBoundCreate(ref, fieldsFor(*updated, rules, now), review.user, rules, now)) {
        return denial;
      }
      if (auto denial = checkBound(ref, *updated, rules, now)) {
        return denial;
      }
    }
    return std::nullopt;
  }

  if (!review.oldObject) {
    return "bulkhead: UPDATE of " + describeObject(ref) +
           " without the old object; the request cannot be checked";
  }
  auto old = decodeAccessGrant(*review.oldObject);
  if (!old.ok()) {
    return "bulkhead: " + describeObject(ref) + " is stored with an invalid spec (" +
           old.status().message() + ") and cannot be updated; delete it and create a new one";
  }
  std::vector<std::string> otherChanges;
  bool fromChanged = updated->from != old->from;
  bool durationChanged = updated->duration != old->duration;
  if (fromChanged) {
    otherChanges.push_back("spec.from");
  }
  if (updated->to.matchLabels != old->to.matchLabels ||
      portSet(updated->to.ports) != portSet(old->to.ports)) {  // the order carries no meaning
    otherChanges.push_back("spec.to");
  }
  if (updated->reason != old->reason) {
    otherChanges.push_back("spec.reason");
  }
  if (durationChanged) {
    otherChanges.push_back("spec.duration");
  }

  // An approval is checked against every policy that requires one; when none does, against all
  // of them, which refuse it.
  std::vector<ApprovalRules> checked = all;
  if (old->approvedBy.empty() && !updated->approvedBy.empty()) {
    std::vector<ApprovalRules> requiring;
    std::copy_if(all.begin(), all.end(), std::back_inserter(requiring),
                 [](const ApprovalRules& r) { return !r.approverGroups.empty(); });
    if (!requiring.empty()) {
      checked = std::move(requiring);
    }
  }
  bool rerequested =
      old->approvedBy.empty() && updated->approvedBy.empty() && (fromChanged || durationChanged);
  for (const auto& rules : checked) {
    if (auto denial =
            checkTimeBoundUpdate(ref, fieldsFor(*old, rules, now), fieldsFor(*updated, rules, now),
                                 otherChanges, review.user, rules, now)) {
      return denial;
    }
    if (rerequested) {
      if (auto denial = checkBound(ref, *updated, rules, now)) {
        return denial;
      }
    }
  }
  return std::nullopt;
}

}  // namespace bulkhead::policy
