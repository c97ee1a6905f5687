#include "policy/pod_rules.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "common/strings.h"

namespace bulkhead::policy {
namespace {

constexpr std::string_view kInjectKey = "sidecar.istio.io/inject";
constexpr std::string_view kTrafficPrefix = "traffic.sidecar.istio.io/";
constexpr std::string_view kInterceptionModeKey = "sidecar.istio.io/interceptionMode";
constexpr std::string_view kProxyConfigKey = "proxy.istio.io/config";
constexpr std::string_view kProxyImageKey = "sidecar.istio.io/proxyImage";
constexpr std::string_view kInjectTemplatesKey = "inject.istio.io/templates";
// A pod label naming the control-plane revision whose injector should inject it.
constexpr std::string_view kRevisionKey = "istio.io/rev";
// Ambient opt-outs: a pod labelled out of ambient, or one whose inbound traffic skips ztunnel.
constexpr std::string_view kAmbientOptOutValue = "none";
constexpr std::string_view kBypassInboundKey = "ambient.istio.io/bypass-inbound-capture";
constexpr size_t kMaxShownValue = 64;

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// Path order with numbers compared as numbers: "containers[2]" < "containers[10]".
bool pathLess(std::string_view a, std::string_view b) {
  size_t i = 0;
  size_t j = 0;
  while (i < a.size() && j < b.size()) {
    if (isDigit(a[i]) && isDigit(b[j])) {
      size_t ie = i;
      size_t je = j;
      while (ie < a.size() && isDigit(a[ie])) {
        ++ie;
      }
      while (je < b.size() && isDigit(b[je])) {
        ++je;
      }
      std::string_view na = a.substr(i, ie - i);
      std::string_view nb = b.substr(j, je - j);
      while (na.size() > 1 && na.front() == '0') {
        na.remove_prefix(1);
      }
      while (nb.size() > 1 && nb.front() == '0') {
        nb.remove_prefix(1);
      }
      if (na.size() != nb.size()) {
        return na.size() < nb.size();
      }
      if (na != nb) {
        return na < nb;
      }
      i = ie;
      j = je;
      continue;
    }
    if (a[i] != b[j]) {
      return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]);
    }
    ++i;
    ++j;
  }
  return a.size() - i < b.size() - j;
}

// A string value as shown in a message: double-quoted, escaped, and cut at kMaxShownValue bytes
// (on a UTF-8 character boundary) so a huge annotation cannot flood the response.
std::string displayValue(std::string_view s) {
  bool cut = false;
  if (s.size() > kMaxShownValue) {
    size_t n = kMaxShownValue;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) {
      --n;
    }
    s = s.substr(0, n);
    cut = true;
  }
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  out += cut ? "...\"" : "\"";
  return out;
}

// Would Istio's injector skip a pod with this sidecar.istio.io/inject value? It injects only
// for "y", "yes", "true", "on" (any case) and applies the namespace default for ""; every other
// value, not just "false", opts the pod out.
bool injectOptOut(std::string_view value) {
  std::string v = asciiLower(value);
  return !(v.empty() || v == "y" || v == "yes" || v == "true" || v == "on");
}

// Does a proxy.istio.io/config override (ProxyConfig as YAML or JSON) set an interception mode
// other than REDIRECT or TPROXY? Read without a YAML parser, failing closed: every
// "interceptionMode" key in it counts, whatever its nesting.
bool proxyConfigBypasses(std::string_view config) {
  constexpr std::string_view kKey = "interceptionMode";
  for (size_t at = config.find(kKey); at != std::string_view::npos;
       at = config.find(kKey, at + kKey.size())) {
    size_t i = at + kKey.size();
    auto skip = [&](std::string_view chars) {
      while (i < config.size() && chars.find(config[i]) != std::string_view::npos) {
        ++i;
      }
    };
    skip("\"' \t");
    if (i >= config.size() || config[i] != ':') {
      continue;  // the word, not a key
    }
    ++i;
    skip("\"' \t");
    size_t end = i;
    while (end < config.size() && std::isalnum(static_cast<unsigned char>(config[end]))) {
      ++end;
    }
    std::string_view mode = config.substr(i, end - i);
    if (mode != "REDIRECT" && mode != "TPROXY") {
      return true;
    }
  }
  return false;
}

// Capability names are ASCII letters and underscores. Anything else is refused rather than
// folded: a runtime that upper-cases with Unicode rules reads "net_admın" (dotless i) as
// NET_ADMIN.
bool validCapabilityName(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
  });
}

// Does this annotation take the pod's traffic around its sidecar, or keep the sidecar from
// capturing it? See trafficAnnotationBypasses for the traffic.sidecar.istio.io/ ones. An
// interception mode other than REDIRECT or TPROXY (NONE), also inside a proxy.istio.io/config
// override, leaves traffic uncaptured; a proxy image that is not the mesh's may capture nothing;
// an injection template other than "sidecar" (a gateway, proxyless gRPC) injects no capturing
// sidecar.
bool sidecarAnnotationBypasses(std::string_view key, std::string_view value,
                               const MeshSettings& mesh) {
  if (key.starts_with(kTrafficPrefix)) {
    return trafficAnnotationBypasses(key.substr(kTrafficPrefix.size()), value);
  }
  if (key == kInterceptionModeKey) {
    return value != "REDIRECT" && value != "TPROXY";
  }
  if (key == kProxyConfigKey) {
    return proxyConfigBypasses(value);
  }
  if (key == kProxyImageKey) {
    return std::find(mesh.proxyImages.begin(), mesh.proxyImages.end(), imageRepository(value)) ==
           mesh.proxyImages.end();
  }
  if (key == kInjectTemplatesKey) {
    return value != "sidecar";
  }
  return key == kInjectKey && injectOptOut(value);
}

const ContainerFacts* containerAt(const PodFacts& pod, std::string_view path) {
  for (const auto& c : pod.containers) {
    if (path.size() > c.path.size() && path.starts_with(c.path) && path[c.path.size()] == '.') {
      return &c;
    }
  }
  return nullptr;
}

// "container \"web\"", "init container \"setup\"", "ephemeral container \"debugger\"".
std::string describe(const ContainerFacts& c) {
  std::string out;
  switch (c.kind) {
    case ContainerFacts::Kind::kRegular:
      out = "container ";
      break;
    case ContainerFacts::Kind::kInit:
      out = "init container ";
      break;
    case ContainerFacts::Kind::kEphemeral:
      out = "ephemeral container ";
      break;
  }
  return out + (c.name.empty() ? c.path : "\"" + c.name + "\"");
}

std::string describeContainerAt(const PodFacts& pod, std::string_view path) {
  const ContainerFacts* c = containerAt(pod, path);
  return c == nullptr ? std::string("its container") : describe(*c);
}

// The key of a map-entry path "metadata.labels[key]" under `mapPath`, or "" if it is not one.
std::string_view keyOf(std::string_view path, std::string_view mapPath) {
  if (path.size() < mapPath.size() + 2 || !path.starts_with(mapPath) ||
      path[mapPath.size()] != '[' || path.back() != ']') {
    return {};
  }
  return path.substr(mapPath.size() + 1, path.size() - mapPath.size() - 2);
}

std::string optOutKind(std::string_view key) {
  return key == kDataplaneModeLabel || key == kBypassInboundKey ? "ambient" : "sidecar";
}

// How to fix `v`, without the common " or request a SegmentationException".
std::string fixHint(const PodFacts& pod, const Violation& v) {
  const std::string_view rule = v.rule;
  if (rule == kRequiredLabels) {
    std::string hint = "add label " + std::string(keyOf(v.path, pod.labels.path));
    return pod.kind == "Pod" ? hint : hint + " to the pod template";
  }
  if (rule == kForbidHostNetwork) {
    return "remove hostNetwork";
  }
  if (rule == kForbidHostPorts) {
    std::string port;
    if (const ContainerFacts* c = containerAt(pod, v.path)) {
      for (const auto& hp : c->hostPorts) {
        if (hp.path == v.path) {
          port = " " + std::to_string(hp.value);
        }
      }
    }
    return "remove hostPort" + port + " from " + describeContainerAt(pod, v.path);
  }
  if (rule == kForbidHostPIDIPC) {
    return v.path == pod.hostPID.path ? "remove hostPID" : "remove hostIPC";
  }
  if (rule == kForbidPrivileged) {
    return "remove privileged: true from " + describeContainerAt(pod, v.path);
  }
  if (rule == kForbiddenCapabilities) {
    std::string cap = "the capability";
    if (const ContainerFacts* c = containerAt(pod, v.path)) {
      for (const auto& added : c->addedCapabilities) {
        if (added.path == v.path) {
          cap = validCapabilityName(added.value) ? normalizeCapability(added.value)
                                                 : displayValue(added.value);
        }
      }
    }
    return "remove " + cap + " from the added capabilities of " + describeContainerAt(pod, v.path);
  }
  if (rule == kRequireSidecar) {
    if (std::string_view key = keyOf(v.path, pod.labels.path); !key.empty()) {
      return "remove the " + optOutKind(key) + " opt-out label " + std::string(key);
    }
    if (std::string_view key = keyOf(v.path, pod.annotations.path); !key.empty()) {
      return "remove the " + optOutKind(key) + " opt-out annotation " + std::string(key);
    }
    if (v.path.ends_with(".containers") || v.path == "spec.containers") {
      return "let Istio's injector add its sidecar: check that the revision exists and its "
             "injector is running, and create the pod again";
    }
    const bool podLevel = v.path == pod.runAsUser.path || v.path == pod.runAsGroup.path;
    const bool group = v.path.ends_with(".runAsGroup");
    std::string who = podLevel ? std::string("the pod") : describeContainerAt(pod, v.path);
    return "run " + who + " as a " + (group ? "group" : "user") + " other than " +
           std::to_string(group ? kIstioProxyGid : kIstioProxyUid) +
           " (reserved for the Istio proxy)";
  }
  if (rule == kRequireSegmentedNamespace) {
    return "wait for the namespace to be segmented and retry";
  }
  return "fix it";
}

// The note for a violation by `c`: set when `c` takes the name of one of the injector's
// containers without being it.
std::string mismatchNote(const ContainerFacts& c, const MeshContainer& mesh) {
  if (mesh.mismatch.empty()) {
    return "";
  }
  return describe(c) + " is not the one Istio's injector adds: " + mesh.mismatch;
}

// The fix shown for `v`: its note first, when it has one.
std::string fixFor(const PodFacts& pod, const Violation& v) {
  std::string fix = fixHint(pod, v);
  return v.note.empty() ? fix : v.note + "; " + fix;
}

std::string subject(const PodFacts& pod) {
  return "bulkhead: " + asciiLower(pod.kind) + " \"" + pod.name + "\" in namespace \"" + pod.ns +
         "\"";
}

}  // namespace

std::string normalizeCapability(std::string_view name) {
  if (name.size() >= 4 && asciiLower(name.substr(0, 4)) == "cap_") {
    name.remove_prefix(4);
  }
  std::string out(name);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') {
      c = static_cast<char>(c - 'a' + 'A');
    }
  }
  return out;
}

std::string injectionRequest(const std::string& ns, const Labels& namespaceLabels) {
  const std::string who = "namespace \"" + ns + "\"'s label ";
  if (auto rev = namespaceLabels.find(std::string(kRevisionKey)); rev != namespaceLabels.end()) {
    return who + std::string(kRevisionKey) + "=" + rev->second;
  }
  if (auto it = namespaceLabels.find("istio-injection");
      it != namespaceLabels.end() && it->second == "enabled") {
    return who + "istio-injection=enabled";
  }
  return "";
}

bool isMeshMetadataKey(std::string_view k) {
  return k.starts_with("sidecar.istio.io/") || k.starts_with(kTrafficPrefix) ||
         k.starts_with("ambient.istio.io/") || k.starts_with("proxy.istio.io/") ||
         k.starts_with("istio.io/");
}

bool ruleMetadataEqual(const PodFacts& a, const PodFacts& b, const SegmentationPolicy& policy) {
  auto read = [&](const Labels& labels, bool isLabels) {
    Labels out;
    for (const auto& [k, v] : labels) {
      bool ruleReads = isMeshMetadataKey(k);
      if (isLabels) {
        const auto& req = policy.podRules.requiredLabels;
        ruleReads |= std::find(req.begin(), req.end(), k) != req.end();
      }
      if (ruleReads) {
        out.emplace(k, v);
      }
    }
    return out;
  };
  return read(a.labels.value, true) == read(b.labels.value, true) &&
         read(a.annotations.value, false) == read(b.annotations.value, false);
}

std::vector<Violation> evaluatePod(const PodFacts& pod, const SegmentationPolicy& policy,
                                   const PodContext& context) {
  const PodRules& rules = policy.podRules;
  std::vector<Violation> out;
  auto applies = [&](std::string_view rule, bool on) {
    return on && !context.exemptedRules.contains(rule);
  };
  // Appends a rule's violations in path order.
  auto emit = [&](std::vector<Violation> found) {
    std::sort(found.begin(), found.end(),
              [](const Violation& a, const Violation& b) { return pathLess(a.path, b.path); });
    out.insert(out.end(), std::make_move_iterator(found.begin()),
               std::make_move_iterator(found.end()));
  };
  auto flag = [](std::string_view rule, const Field<bool>& f) {
    return Violation{std::string(rule), f.path, f.path + "=true"};
  };

  // istiod's own waypoints carry its labels, not a tenant's identity labels, and opt out of
  // sidecars and ambient capture because they are the mesh's proxy.
  const bool waypoint = isWaypointPod(pod, policy.mesh);

  if (applies(kRequiredLabels, !rules.requiredLabels.empty()) && !waypoint) {
    std::vector<Violation> found;
    std::set<std::string> seen;
    for (const auto& key : rules.requiredLabels) {
      if (!pod.labels.value.contains(key) && seen.insert(key).second) {
        std::string path = keyPath(pod.labels.path, key);
        found.push_back({std::string(kRequiredLabels), path, path + " is missing"});
      }
    }
    emit(std::move(found));
  }

  if (applies(kForbidHostNetwork, rules.forbidHostNetwork) && pod.hostNetwork.value) {
    emit({flag(kForbidHostNetwork, pod.hostNetwork)});
  }

  if (applies(kForbidHostPorts, rules.forbidHostPorts)) {
    std::vector<Violation> found;
    for (const auto& c : pod.containers) {
      for (const auto& hp : c.hostPorts) {
        if (hp.value != 0) {
          found.push_back(
              {std::string(kForbidHostPorts), hp.path, hp.path + "=" + std::to_string(hp.value)});
        }
      }
    }
    emit(std::move(found));
  }

  if (applies(kForbidHostPIDIPC, rules.forbidHostPIDIPC)) {
    std::vector<Violation> found;
    if (pod.hostPID.value) {
      found.push_back(flag(kForbidHostPIDIPC, pod.hostPID));
    }
    if (pod.hostIPC.value) {
      found.push_back(flag(kForbidHostPIDIPC, pod.hostIPC));
    }
    emit(std::move(found));
  }

  // "allowPrivilegeEscalation with privileged" (SPEC 3.1) is a privileged container too, so
  // each privileged container is one violation, at its privileged field; allowPrivilegeEscalation
  // alone is allowed.
  if (applies(kForbidPrivileged, rules.forbidPrivileged)) {
    std::vector<Violation> found;
    for (const auto& c : pod.containers) {
      if (c.privileged.value) {
        found.push_back(flag(kForbidPrivileged, c.privileged));
      }
    }
    emit(std::move(found));
  }

  if (applies(kForbiddenCapabilities, !rules.forbiddenCapabilities.empty())) {
    std::set<std::string, std::less<>> forbidden;
    for (const auto& cap : rules.forbiddenCapabilities) {
      forbidden.insert(normalizeCapability(cap));
    }
    // Adding ALL adds every forbidden capability; forbidding ALL forbids adding any.
    const bool anyForbidden = forbidden.contains("ALL");
    std::vector<Violation> found;
    for (const auto& c : pod.containers) {
      const MeshContainer mesh = meshContainer(c, policy.mesh);
      for (const auto& added : c.addedCapabilities) {
        if (!validCapabilityName(added.value)) {
          found.push_back({std::string(kForbiddenCapabilities), added.path,
                           added.path + "=" + displayValue(added.value),
                           "capability names are ASCII letters and underscores, and a container "
                           "runtime may read this one as another capability"});
          continue;
        }
        std::string cap = normalizeCapability(added.value);
        // istio-init sets up the pod's iptables redirection: that takes these two, no more.
        if (mesh.role == MeshRole::kInit && (cap == "NET_ADMIN" || cap == "NET_RAW")) {
          continue;
        }
        if (anyForbidden || cap == "ALL" || forbidden.contains(cap)) {
          found.push_back({std::string(kForbiddenCapabilities), added.path,
                           added.path + "=" + displayValue(added.value), mismatchNote(c, mesh)});
        }
      }
    }
    emit(std::move(found));
  }

  if (applies(kRequireSidecar, rules.requireSidecar) && context.mtlsStrict && !waypoint) {
    std::vector<Violation> found;
    auto optOut = [&](const Field<Labels>& map, std::string_view key, std::string_view value) {
      std::string path = keyPath(map.path, key);
      found.push_back({std::string(kRequireSidecar), path, path + "=" + displayValue(value)});
    };
    bool hasProxy = false;
    for (const auto& c : pod.containers) {
      hasProxy |= meshContainer(c, policy.mesh).role == MeshRole::kProxy;
    }
    if (context.ambient && !hasProxy) {
      // In ambient mode ztunnel captures the pod's traffic from outside it: the opt-outs are a
      // pod labelled out of ambient and inbound capture bypassed.
      if (auto it = pod.labels.value.find(kDataplaneModeLabel);
          it != pod.labels.value.end() && it->second == kAmbientOptOutValue) {
        optOut(pod.labels, it->first, it->second);
      }
      if (auto it = pod.annotations.value.find(std::string(kBypassInboundKey));
          it != pod.annotations.value.end() && asciiLower(it->second) == "true") {
        optOut(pod.annotations, it->first, it->second);
      }
    } else {
      if (auto it = pod.labels.value.find(std::string(kInjectKey));
          it != pod.labels.value.end() && injectOptOut(it->second)) {
        optOut(pod.labels, it->first, it->second);
      }
      for (const auto& [key, value] : pod.annotations.value) {
        if (sidecarAnnotationBypasses(key, value, policy.mesh)) {
          optOut(pod.annotations, key, value);
        }
      }
      // Injection was asked for (by the namespace or the pod) but the pod arrived without the
      // injector's proxy: the injector was bypassed, failed, or knows no such revision. Only a
      // Pod can tell: the injector mutates pods, never workload templates.
      const bool optedOut = !found.empty();
      std::string request = context.injectionRequest;
      if (auto it = pod.labels.value.find(std::string(kRevisionKey));
          it != pod.labels.value.end()) {
        request = "its label " + std::string(kRevisionKey) + "=" + it->second;
      } else if (auto inject = pod.labels.value.find(std::string(kInjectKey));
                 request.empty() && inject != pod.labels.value.end() && inject->second == "true") {
        // Istio's injector webhook selects pods by this label being exactly "true".
        request = "its label " + std::string(kInjectKey) + "=" + inject->second;
      }
      if (pod.kind == "Pod" && !hasProxy && !optedOut && !request.empty()) {
        std::string path = (pod.containers.empty() ? std::string("spec") : pod.containers[0].path);
        path = path.substr(0, path.rfind('.')) + ".containers";
        found.push_back({std::string(kRequireSidecar), path,
                         path + " has no istio-proxy, though injection is requested by " + request,
                         ""});
      }
      auto proxyId = [&](const Field<std::optional<int64_t>>& id, int64_t reserved,
                         std::string note) {
        if (id.value == reserved) {
          found.push_back({std::string(kRequireSidecar), id.path,
                           id.path + "=" + std::to_string(reserved), std::move(note)});
        }
      };
      proxyId(pod.runAsUser, kIstioProxyUid, "");
      proxyId(pod.runAsGroup, kIstioProxyGid, "");
      for (const auto& c : pod.containers) {
        const MeshContainer mesh = meshContainer(c, policy.mesh);
        if (mesh.role != MeshRole::kProxy && mesh.role != MeshRole::kValidation) {
          proxyId(c.runAsUser, kIstioProxyUid, mismatchNote(c, mesh));
          proxyId(c.runAsGroup, kIstioProxyGid, mismatchNote(c, mesh));
        }
      }
    }
    emit(std::move(found));
  }

  if (applies(kRequireSegmentedNamespace, rules.requireSegmentedNamespace) &&
      !context.defaultDenyExists) {
    emit({Violation{std::string(kRequireSegmentedNamespace), "metadata.namespace",
                    "no NetworkPolicy " + std::string(kDefaultDenyName) + " in namespace \"" +
                        pod.ns + "\" yet"}});
  }
  return out;
}

std::string denialMessage(const PodFacts& pod, const Violation& violation,
                          const std::string& policyName) {
  return subject(pod) + " violates " + violation.rule + " (" + violation.detail +
         ") of SegmentationPolicy \"" + policyName + "\"; " + fixFor(pod, violation) +
         " or request a SegmentationException";
}

std::string denialMessage(const PodFacts& pod, const std::vector<Violation>& violations,
                          const std::string& policyName) {
  if (violations.empty()) {
    return "";
  }
  if (violations.size() == 1) {
    return denialMessage(pod, violations.front(), policyName);
  }
  std::string out = subject(pod) + " has " + std::to_string(violations.size()) +
                    " violations of SegmentationPolicy \"" + policyName + "\": ";
  size_t shown = std::min(violations.size(), kMaxListedViolations);
  for (size_t i = 0; i < shown; ++i) {
    const Violation& v = violations[i];
    out += v.rule + " (" + v.detail + "): " + fixFor(pod, v) + "; ";
  }
  if (shown < violations.size()) {
    out += "and " + std::to_string(violations.size() - shown) + " more; ";
  }
  return out + "fix them or request a SegmentationException";
}

}  // namespace bulkhead::policy
