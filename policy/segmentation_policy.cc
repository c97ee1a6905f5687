#include "policy/segmentation_policy.h"

#include <regex>

#include "common/flags.h"
#include "policy/mesh.h"

namespace bulkhead::policy {
namespace {

using nlohmann::json;

// Reads an optional field of `obj` into `out`, checking its JSON type.
template <typename T>
Status optionalField(const json& obj, const char* key, const std::string& path, T* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return okStatus();
  }
  if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) {
      return invalidError(path + "." + key + ": must be a boolean");
    }
  } else if constexpr (std::is_integral_v<T>) {
    if (!it->is_number_integer()) {
      return invalidError(path + "." + key + ": must be an integer");
    }
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) {
      return invalidError(path + "." + key + ": must be a string");
    }
  } else {
    if (!it->is_array()) {
      return invalidError(path + "." + key + ": must be a list of strings");
    }
    for (const auto& v : *it) {
      if (!v.is_string()) {
        return invalidError(path + "." + key + ": must be a list of strings");
      }
    }
  }
  *out = it->get<T>();
  return okStatus();
}

const json& objectOrEmpty(const json& parent, const char* key) {
  static const json kEmpty = json::object();
  auto it = parent.find(key);
  return it == parent.end() || !it->is_object() ? kEmpty : *it;
}

// The CRD's pattern (so a policy decodes alike with or without its schema), then the value as
// the flags read durations.
StatusOr<std::chrono::seconds> decodeDuration(const std::string& text, const std::string& path) {
  static const std::regex kDuration(R"(^(([0-9]+(\.[0-9]+)?)(h|m|s|ms))+$)");
  auto value = std::regex_match(text, kDuration) ? parseDuration(text)
                                                 : StatusOr<std::chrono::milliseconds>(
                                                       invalidError("not a duration"));
  if (!value.ok()) {
    return invalidError(path + ": \"" + text + "\" is not a duration like 168h or 30m");
  }
  return std::chrono::duration_cast<std::chrono::seconds>(*value);
}

StatusOr<std::vector<Port>> decodePorts(const json& j, const std::string& path) {
  std::vector<Port> ports;
  if (j.is_null()) {
    return ports;
  }
  if (!j.is_array()) {
    return invalidError(path + ": must be a list");
  }
  for (size_t i = 0; i < j.size(); ++i) {
    std::string at = path + "[" + std::to_string(i) + "]";
    const json& p = j[i];
    if (!p.is_object() || !p.contains("port") || !p["port"].is_number_integer()) {
      return invalidError(at + ".port: required integer");
    }
    Port port;
    port.port = p["port"].get<int>();
    if (port.port < 1 || port.port > 65535) {
      return invalidError(at + ".port: " + std::to_string(port.port) + " is not in 1-65535");
    }
    port.protocol = p.value("protocol", "TCP");
    if (port.protocol != "TCP" && port.protocol != "UDP" && port.protocol != "SCTP") {
      return invalidError(at + ".protocol: \"" + port.protocol + "\" is not TCP, UDP or SCTP");
    }
    ports.push_back(port);
  }
  return ports;
}

StatusOr<BaselineAllow> decodeBaselineAllow(const json& j, const std::string& at) {
  static const std::regex kName("^[a-z0-9]([-a-z0-9]{0,42}[a-z0-9])?$");
  BaselineAllow a;
  if (!j.is_object()) {
    return invalidError(at + ": must be an object");
  }
  a.name = j.value("name", "");
  if (!std::regex_match(a.name, kName)) {
    return invalidError(at + ".name: \"" + a.name +
                        "\" must be a lower-case DNS label of at most 44 characters");
  }
  std::string dir = j.value("direction", "Ingress");
  if (dir == "Ingress") {
    a.direction = Direction::kIngress;
  } else if (dir == "Egress") {
    a.direction = Direction::kEgress;
  } else {
    return invalidError(at + ".direction: \"" + dir + "\" is not Ingress or Egress");
  }
  ASSIGN_OR_RETURN(a.podSelector,
                   decodeLabelSelector(j.value("podSelector", json()), at + ".podSelector"));
  const json& peers = j.contains("peers") ? j["peers"] : json::array();
  if (!peers.is_array()) {
    return invalidError(at + ".peers: must be a list");
  }
  for (size_t i = 0; i < peers.size(); ++i) {
    std::string pat = at + ".peers[" + std::to_string(i) + "]";
    Peer peer;
    if (!peers[i].is_object() || !peers[i].contains("namespace") ||
        !peers[i]["namespace"].is_string() || peers[i]["namespace"].get<std::string>().empty()) {
      return invalidError(pat + ".namespace: required");
    }
    peer.ns = peers[i]["namespace"].get<std::string>();
    ASSIGN_OR_RETURN(peer.podSelector, decodeLabelSelector(peers[i].value("podSelector", json()),
                                                           pat + ".podSelector"));
    a.peers.push_back(std::move(peer));
  }
  ASSIGN_OR_RETURN(a.ports, decodePorts(j.value("ports", json()), at + ".ports"));
  return a;
}

StatusOr<SegmentationPolicy> decodeSegmentationPolicyUnchecked(const json& object);

}  // namespace

std::string_view mtlsModeName(MtlsMode mode) {
  switch (mode) {
    case MtlsMode::kStrict: return "STRICT";
    case MtlsMode::kPermissive: return "PERMISSIVE";
    case MtlsMode::kDisable: return "DISABLE";
    case MtlsMode::kUnmanaged: return "Unmanaged";
  }
  std::abort();
}

bool SegmentationPolicy::ambient(const Labels& namespaceLabels) const {
  switch (mesh.dataplaneMode) {
    case DataplaneMode::kSidecar:
      return false;
    case DataplaneMode::kAmbient:
      return true;
    case DataplaneMode::kFromNamespace: {
      auto it = namespaceLabels.find(kDataplaneModeLabel);
      return it != namespaceLabels.end() && it->second == "ambient";
    }
  }
  std::abort();
}

std::vector<SegmentationPolicy> decodePolicies(const std::vector<const json*>& objects,
                                               const std::vector<SegmentationPolicy>& previous) {
  std::vector<SegmentationPolicy> out;
  for (const json* o : objects) {
    if (auto p = decodeSegmentationPolicy(*o); p.ok()) {
      out.push_back(std::move(*p));
      continue;
    }
    const json& md = objectOrEmpty(*o, "metadata");
    const std::string uid = md.value("uid", "");
    for (const auto& last : previous) {
      if (!uid.empty() && last.uid == uid) {
        out.push_back(last);
        out.back().deleting |= isTerminating(*o);
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

std::string_view modeName(Mode mode) {
  switch (mode) {
    case Mode::kEnforce: return "Enforce";
    case Mode::kWarn: return "Warn";
    case Mode::kAudit: return "Audit";
  }
  std::abort();
}

std::vector<std::string> weakenings(const SegmentationPolicy& from, const SegmentationPolicy& to) {
  std::vector<std::string> out;
  // Strictness ranks: a higher number protects more.
  auto modeRank = [](Mode m) { return m == Mode::kEnforce ? 2 : m == Mode::kWarn ? 1 : 0; };
  auto mtlsRank = [](MtlsMode m) {
    return m == MtlsMode::kStrict ? 3 : m == MtlsMode::kPermissive ? 2 : m == MtlsMode::kDisable ? 1 : 0;
  };
  if (modeRank(to.mode) < modeRank(from.mode)) {
    out.push_back("mode " + std::string(modeName(from.mode)) + " to " +
                  std::string(modeName(to.mode)));
  }
  if (mtlsRank(to.mtls) < mtlsRank(from.mtls)) {
    out.push_back("mTLS " + std::string(mtlsModeName(from.mtls)) + " to " +
                  std::string(mtlsModeName(to.mtls)));
  }
  if (from.authorizationDefaultDeny && !to.authorizationDefaultDeny) {
    out.push_back("authorization.defaultDeny off");
  }
  auto off = [&](const char* what, bool was, bool is) {
    if (was && !is) {
      out.push_back(std::string(what) + " off");
    }
  };
  auto on = [&](const char* what, bool was, bool is) {
    if (!was && is) {
      out.push_back(std::string(what) + " on");
    }
  };
  const NetworkSettings& a = from.network;
  const NetworkSettings& b = to.network;
  off("network.defaultDeny.ingress", a.denyIngress, b.denyIngress);
  off("network.defaultDeny.egress", a.denyEgress, b.denyEgress);
  on("network.allowSameNamespace", a.allowSameNamespace, b.allowSameNamespace);
  auto tenantRank = [](TenantPolicies t) {
    return t == TenantPolicies::kForbidden ? 2 : t == TenantPolicies::kSameNamespace ? 1 : 0;
  };
  if (tenantRank(b.tenantPolicies) < tenantRank(a.tenantPolicies)) {
    out.push_back("network.tenantPolicies looser");
  }
  on("mesh.tenantConfiguration", from.mesh.tenantConfiguration, to.mesh.tenantConfiguration);
  if (b.kubeApiPods && (!a.kubeApiPods || !(*a.kubeApiPods == *b.kubeApiPods))) {
    out.push_back("network.allowKubeAPI opens the API server to other pods");
  }
  for (const auto& allow : b.baselineAllows) {
    if (std::find(a.baselineAllows.begin(), a.baselineAllows.end(), allow) ==
        a.baselineAllows.end()) {
      out.push_back("network.baselineAllows adds or widens " + allow.name);
    }
  }
  const PodRules& r = from.podRules;
  const PodRules& t = to.podRules;
  for (const auto& label : r.requiredLabels) {
    if (std::find(t.requiredLabels.begin(), t.requiredLabels.end(), label) ==
        t.requiredLabels.end()) {
      out.push_back("podRules.requiredLabels drops " + label);
    }
  }
  off("podRules.forbidHostNetwork", r.forbidHostNetwork, t.forbidHostNetwork);
  off("podRules.forbidHostPorts", r.forbidHostPorts, t.forbidHostPorts);
  off("podRules.forbidHostPIDIPC", r.forbidHostPIDIPC, t.forbidHostPIDIPC);
  off("podRules.forbidPrivileged", r.forbidPrivileged, t.forbidPrivileged);
  off("podRules.requireSidecar", r.requireSidecar, t.requireSidecar);
  off("podRules.requireSegmentedNamespace", r.requireSegmentedNamespace,
      t.requireSegmentedNamespace);
  for (const auto& cap : r.forbiddenCapabilities) {
    if (std::find(t.forbiddenCapabilities.begin(), t.forbiddenCapabilities.end(), cap) ==
            t.forbiddenCapabilities.end() &&
        std::find(t.forbiddenCapabilities.begin(), t.forbiddenCapabilities.end(), "ALL") ==
            t.forbiddenCapabilities.end()) {
      out.push_back("podRules.forbiddenCapabilities drops " + cap);
    }
  }
  for (const auto& image : to.mesh.proxyImages) {
    if (std::find(from.mesh.proxyImages.begin(), from.mesh.proxyImages.end(), image) ==
        from.mesh.proxyImages.end()) {
      out.push_back("mesh.proxyImages trusts " + image);
    }
  }
  // Pod Security: Unmanaged leaves the namespace's labels to its owners, so it ranks lowest.
  auto podSecurityRank = [](PodSecurityLevel l) {
    return l == PodSecurityLevel::kRestricted ? 3
           : l == PodSecurityLevel::kBaseline ? 2
           : l == PodSecurityLevel::kPrivileged ? 1
                                                 : 0;
  };
  if (podSecurityRank(to.podSecurity.enforce) < podSecurityRank(from.podSecurity.enforce)) {
    out.push_back("podSecurity.enforce lower");
  }
  if (to.exceptions.maxDuration > from.exceptions.maxDuration) {
    out.push_back("exceptions.maxDuration longer");
  }
  if (!from.exceptions.approverGroups.empty() && to.exceptions.approverGroups.empty()) {
    out.push_back("exceptions need no approval");
  }
  return out;
}

StatusOr<SegmentationPolicy> decodeSegmentationPolicy(const json& object) {
  // The object comes from the API server or a user; a field of an unexpected JSON type makes
  // nlohmann throw, which must end as an Invalid error here, never cross this function.
  try {
    return decodeSegmentationPolicyUnchecked(object);
  } catch (const json::exception& e) {
    return invalidError(std::string("SegmentationPolicy has a field of the wrong type: ") +
                        e.what());
  }
}

namespace {

StatusOr<SegmentationPolicy> decodeSegmentationPolicyUnchecked(const json& object) {
  SegmentationPolicy p;
  if (!object.is_object()) {
    return invalidError("SegmentationPolicy: not an object");
  }
  const json& md = objectOrEmpty(object, "metadata");
  p.name = md.value("name", "");
  if (p.name.empty()) {
    return invalidError("metadata.name: required");
  }
  p.uid = md.value("uid", "");
  p.generation = md.value("generation", int64_t{0});
  p.deleting = isTerminating(object);
  if (auto f = md.find("finalizers"); f != md.end() && f->is_array()) {
    for (const auto& v : *f) {
      p.hasFinalizer |= v == kFinalizer;
    }
  }

  const json& spec = objectOrEmpty(object, "spec");
  ASSIGN_OR_RETURN(p.namespaceSelector, decodeLabelSelector(spec.value("namespaceSelector", json()),
                                                            "spec.namespaceSelector"));
  RETURN_IF_ERROR(optionalField(spec, "excludedNamespaces", "spec", &p.excludedNamespaces));
  RETURN_IF_ERROR(optionalField(spec, "priority", "spec", &p.priority));
  std::string mode = spec.value("mode", "Enforce");
  if (mode == "Enforce") {
    p.mode = Mode::kEnforce;
  } else if (mode == "Warn") {
    p.mode = Mode::kWarn;
  } else if (mode == "Audit") {
    p.mode = Mode::kAudit;
  } else {
    return invalidError("spec.mode: \"" + mode + "\" is not Enforce, Warn or Audit");
  }

  const json& net = objectOrEmpty(spec, "network");
  const json& deny = objectOrEmpty(net, "defaultDeny");
  RETURN_IF_ERROR(optionalField(deny, "ingress", "spec.network.defaultDeny", &p.network.denyIngress));
  RETURN_IF_ERROR(optionalField(deny, "egress", "spec.network.defaultDeny", &p.network.denyEgress));
  RETURN_IF_ERROR(optionalField(net, "allowDNS", "spec.network", &p.network.allowDNS));
  RETURN_IF_ERROR(
      optionalField(net, "allowSameNamespace", "spec.network", &p.network.allowSameNamespace));
  RETURN_IF_ERROR(optionalField(net, "allowMeshControlPlane", "spec.network",
                                &p.network.allowMeshControlPlane));
  if (auto api = net.find("allowKubeAPI"); api != net.end() && api->is_object()) {
    ASSIGN_OR_RETURN(p.network.kubeApiPods,
                     decodeLabelSelector(api->value("podSelector", json::object()),
                                         "spec.network.allowKubeAPI.podSelector"));
  }
  if (auto allows = net.find("baselineAllows"); allows != net.end() && !allows->is_null()) {
    if (!allows->is_array()) {
      return invalidError("spec.network.baselineAllows: must be a list");
    }
    for (size_t i = 0; i < allows->size(); ++i) {
      ASSIGN_OR_RETURN(auto a, decodeBaselineAllow((*allows)[i], "spec.network.baselineAllows[" +
                                                                     std::to_string(i) + "]"));
      for (const auto& seen : p.network.baselineAllows) {
        if (seen.name == a.name) {
          return invalidError("spec.network.baselineAllows[" + std::to_string(i) + "].name: \"" +
                              a.name + "\" is used twice");
        }
      }
      p.network.baselineAllows.push_back(std::move(a));
    }
  }

  std::string tenant = net.value("tenantPolicies", "SameNamespace");
  if (tenant == "SameNamespace") {
    p.network.tenantPolicies = TenantPolicies::kSameNamespace;
  } else if (tenant == "Unrestricted") {
    p.network.tenantPolicies = TenantPolicies::kUnrestricted;
  } else if (tenant == "Forbidden") {
    p.network.tenantPolicies = TenantPolicies::kForbidden;
  } else {
    return invalidError("spec.network.tenantPolicies: \"" + tenant +
                        "\" is not SameNamespace, Unrestricted or Forbidden");
  }

  std::string mtls = objectOrEmpty(spec, "mtls").value("mode", "STRICT");
  if (mtls == "STRICT") {
    p.mtls = MtlsMode::kStrict;
  } else if (mtls == "PERMISSIVE") {
    p.mtls = MtlsMode::kPermissive;
  } else if (mtls == "DISABLE") {
    p.mtls = MtlsMode::kDisable;
  } else if (mtls == "Unmanaged") {
    p.mtls = MtlsMode::kUnmanaged;
  } else {
    return invalidError("spec.mtls.mode: \"" + mtls +
                        "\" is not STRICT, PERMISSIVE, DISABLE or Unmanaged");
  }
  RETURN_IF_ERROR(optionalField(objectOrEmpty(spec, "authorization"), "defaultDeny",
                                "spec.authorization", &p.authorizationDefaultDeny));

  const json& mesh = objectOrEmpty(spec, "mesh");
  std::string dataplane = mesh.value("dataplaneMode", "FromNamespace");
  if (dataplane == "FromNamespace") {
    p.mesh.dataplaneMode = DataplaneMode::kFromNamespace;
  } else if (dataplane == "Sidecar") {
    p.mesh.dataplaneMode = DataplaneMode::kSidecar;
  } else if (dataplane == "Ambient") {
    p.mesh.dataplaneMode = DataplaneMode::kAmbient;
  } else {
    return invalidError("spec.mesh.dataplaneMode: \"" + dataplane +
                        "\" is not FromNamespace, Sidecar or Ambient");
  }
  RETURN_IF_ERROR(optionalField(mesh, "proxyImages", "spec.mesh", &p.mesh.proxyImages));
  for (auto& image : p.mesh.proxyImages) {
    image = imageRepository(image);  // compared as containers' images are: "istio/x" is docker.io's
  }
  RETURN_IF_ERROR(optionalField(mesh, "waypoints", "spec.mesh", &p.mesh.waypoints));
  std::string tenantConfig = mesh.value("tenantConfiguration", "Forbidden");
  if (tenantConfig != "Forbidden" && tenantConfig != "Allowed") {
    return invalidError("spec.mesh.tenantConfiguration: \"" + tenantConfig +
                        "\" is not Forbidden or Allowed");
  }
  p.mesh.tenantConfiguration = tenantConfig == "Allowed";

  const json& podSecurity = objectOrEmpty(spec, "podSecurity");
  std::string level = podSecurity.value("enforce", "baseline");
  if (level == "baseline") {
    p.podSecurity.enforce = PodSecurityLevel::kBaseline;
  } else if (level == "restricted") {
    p.podSecurity.enforce = PodSecurityLevel::kRestricted;
  } else if (level == "privileged") {
    p.podSecurity.enforce = PodSecurityLevel::kPrivileged;
  } else if (level == "Unmanaged") {
    p.podSecurity.enforce = PodSecurityLevel::kUnmanaged;
  } else {
    return invalidError("spec.podSecurity.enforce: \"" + level +
                        "\" is not baseline, restricted, privileged or Unmanaged");
  }
  RETURN_IF_ERROR(
      optionalField(podSecurity, "version", "spec.podSecurity", &p.podSecurity.version));
  static const std::regex kPodSecurityVersion(R"(^(latest|v1\.[0-9]+)$)");
  if (!std::regex_match(p.podSecurity.version, kPodSecurityVersion)) {
    return invalidError("spec.podSecurity.version: \"" + p.podSecurity.version +
                        "\" is not latest or v1.<minor>");
  }

  const json& rules = objectOrEmpty(spec, "podRules");
  const std::string rp = "spec.podRules";
  RETURN_IF_ERROR(optionalField(rules, "requiredLabels", rp, &p.podRules.requiredLabels));
  RETURN_IF_ERROR(optionalField(rules, "forbidHostNetwork", rp, &p.podRules.forbidHostNetwork));
  RETURN_IF_ERROR(optionalField(rules, "forbidHostPorts", rp, &p.podRules.forbidHostPorts));
  RETURN_IF_ERROR(optionalField(rules, "forbidHostPIDIPC", rp, &p.podRules.forbidHostPIDIPC));
  RETURN_IF_ERROR(optionalField(rules, "forbidPrivileged", rp, &p.podRules.forbidPrivileged));
  RETURN_IF_ERROR(
      optionalField(rules, "forbiddenCapabilities", rp, &p.podRules.forbiddenCapabilities));
  RETURN_IF_ERROR(optionalField(rules, "requireSidecar", rp, &p.podRules.requireSidecar));
  RETURN_IF_ERROR(optionalField(rules, "requireSegmentedNamespace", rp,
                                &p.podRules.requireSegmentedNamespace));

  const json& ex = objectOrEmpty(spec, "exceptions");
  std::string maxDuration = ex.value("maxDuration", "168h");
  ASSIGN_OR_RETURN(p.exceptions.maxDuration,
                   decodeDuration(maxDuration, "spec.exceptions.maxDuration"));
  RETURN_IF_ERROR(
      optionalField(ex, "approverGroups", "spec.exceptions", &p.exceptions.approverGroups));
  return p;
}

}  // namespace

}  // namespace bulkhead::policy
