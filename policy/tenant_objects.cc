#include "policy/tenant_objects.h"

#include <algorithm>

#include "common/strings.h"
#include "policy/segmentation.h"

namespace bulkhead::policy {
namespace {

using nlohmann::json;

constexpr size_t kMaxListed = 10;

std::string at(const std::string& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }

const json* member(const json& obj, const char* key) {
  if (!obj.is_object()) {
    return nullptr;
  }
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

// Ingress `from` or egress `to` peers of a NetworkPolicy.
void networkPolicyRules(const json& spec, const char* direction, const char* peersKey,
                        std::vector<std::string>& out) {
  const json* rules = member(spec, direction);
  if (rules == nullptr || !rules->is_array()) {
    return;
  }
  const std::string path = std::string("spec.") + direction;
  for (size_t i = 0; i < rules->size(); ++i) {
    const std::string rulePath = at(path, i);
    const json* peers = member((*rules)[i], peersKey);
    if (peers == nullptr || !peers->is_array() || peers->empty()) {
      out.push_back(rulePath + " has no " + peersKey + ", which " +
                    (std::string(direction) == "ingress" ? "admits every source"
                                                         : "reaches every destination"));
      continue;
    }
    for (size_t j = 0; j < peers->size(); ++j) {
      const std::string peerPath = at(rulePath + "." + peersKey, j);
      const json& peer = (*peers)[j];
      if (member(peer, "namespaceSelector") != nullptr) {
        out.push_back(peerPath + ".namespaceSelector reaches other namespaces");
      }
      if (member(peer, "ipBlock") != nullptr) {
        out.push_back(peerPath + ".ipBlock reaches addresses outside the namespace");
      }
      if (member(peer, "podSelector") == nullptr && member(peer, "namespaceSelector") == nullptr &&
          member(peer, "ipBlock") == nullptr) {
        out.push_back(peerPath + " selects nothing this check can bound");
      }
    }
  }
}

// An Istio source that stays in `ns`: only principals of its ServiceAccounts and the namespace
// itself. Anything else (ipBlocks, requestPrincipals, not* lists, other namespaces) reaches out.
void authorizationSource(const json& source, const std::string& path, const std::string& ns,
                         std::vector<std::string>& out) {
  if (!source.is_object() || source.empty()) {
    out.push_back(path + " is empty, which admits every source");
    return;
  }
  const std::string principalPrefix = std::string(kTrustDomain) + "/ns/" + ns + "/sa/";
  for (const auto& [key, value] : source.items()) {
    const std::string keyPath = path + "." + key;
    if (key == "principals" && value.is_array()) {
      for (size_t i = 0; i < value.size(); ++i) {
        const json& p = value[i];
        std::string text = p.is_string() ? p.get<std::string>() : "";
        std::string sa = text.starts_with(principalPrefix) ? text.substr(principalPrefix.size()) : "";
        if (sa.empty() || sa.find_first_of("*/") != std::string::npos) {
          out.push_back(at(keyPath, i) + "=\"" + text + "\" is not a ServiceAccount of namespace \"" +
                        ns + "\"");
        }
      }
    } else if (key == "namespaces" && value.is_array()) {
      for (size_t i = 0; i < value.size(); ++i) {
        if (value[i] != ns) {
          out.push_back(at(keyPath, i) + " reaches other namespaces");
        }
      }
    } else {
      out.push_back(keyPath + " reaches sources outside the namespace");
    }
  }
}

void authorizationPolicy(const json& spec, const std::string& ns, std::vector<std::string>& out) {
  const json* action = member(spec, "action");
  if (action != nullptr && *action != "ALLOW") {
    return;  // DENY, AUDIT and CUSTOM open nothing
  }
  const json* rules = member(spec, "rules");
  if (rules == nullptr || !rules->is_array()) {
    return;  // ALLOW without rules allows nothing
  }
  for (size_t i = 0; i < rules->size(); ++i) {
    const std::string rulePath = at("spec.rules", i);
    const json* from = member((*rules)[i], "from");
    if (from == nullptr || !from->is_array() || from->empty()) {
      out.push_back(rulePath + " has no from, which admits every source");
      continue;
    }
    for (size_t j = 0; j < from->size(); ++j) {
      const json* source = member((*from)[j], "source");
      authorizationSource(source == nullptr ? json::object() : *source,
                          at(rulePath + ".from", j) + ".source", ns, out);
    }
  }
}

void peerAuthentication(const json& spec, std::vector<std::string>& out) {
  auto check = [&](const json* mtls, const std::string& path) {
    const json* mode = mtls == nullptr ? nullptr : member(*mtls, "mode");
    if (mode != nullptr && *mode != "STRICT" && *mode != "UNSET") {
      out.push_back(path + ".mode=" + mode->dump() + " lowers the namespace's STRICT mTLS");
    }
  };
  check(member(spec, "mtls"), "spec.mtls");
  if (const json* ports = member(spec, "portLevelMtls"); ports != nullptr && ports->is_object()) {
    for (const auto& [port, mtls] : ports->items()) {
      check(&mtls, "spec.portLevelMtls[" + port + "]");
    }
  }
}

std::string hintFor(const std::string& kind) {
  if (kind == "NetworkPolicy") {
    return "allow only pods of this namespace (podSelector peers); open flows from or to other "
           "namespaces with an AccessGrant or the policy's network.baselineAllows";
  }
  if (kind == "AuthorizationPolicy") {
    return "allow only ServiceAccounts of this namespace; open flows from other namespaces with "
           "an AccessGrant";
  }
  if (kind == "PeerAuthentication") {
    return "leave mTLS STRICT (or UNSET)";
  }
  return "ask for the mesh configuration to be made by the platform team, or set "
         "mesh.tenantConfiguration: Allowed in the SegmentationPolicy";
}

}  // namespace

std::vector<std::string> tenantObjectViolations(const std::string& kind, const std::string& ns,
                                                const json& object,
                                                const SegmentationPolicy& policy) {
  std::vector<std::string> out;
  const json* specPtr = member(object, "spec");
  const json spec = specPtr == nullptr ? json::object() : *specPtr;
  if (kind == "NetworkPolicy") {
    if (policy.network.tenantPolicies == TenantPolicies::kForbidden) {
      out.push_back("network.tenantPolicies is Forbidden");
    } else if (policy.network.tenantPolicies == TenantPolicies::kSameNamespace) {
      networkPolicyRules(spec, "ingress", "from", out);
      networkPolicyRules(spec, "egress", "to", out);
    }
  } else if (kind == "AuthorizationPolicy") {
    if (policy.authorizationDefaultDeny) {
      authorizationPolicy(spec, ns, out);
    }
  } else if (kind == "PeerAuthentication") {
    if (policy.mtls == MtlsMode::kStrict) {
      peerAuthentication(spec, out);
    }
  } else if (kind == "EnvoyFilter" || kind == "Sidecar") {
    if (!policy.mesh.tenantConfiguration) {
      out.push_back("mesh.tenantConfiguration is Forbidden");
    }
  }
  return out;
}

Decision decideTenantObject(const std::string& kind, const std::string& ns, const std::string& name,
                            const json& object, const SegmentationPolicy* governing) {
  if (governing == nullptr) {
    return Decision::allow();
  }
  std::vector<std::string> found = tenantObjectViolations(kind, ns, object, *governing);
  if (found.empty()) {
    return Decision::allow();
  }
  const char* rule = kind == "EnvoyFilter" || kind == "Sidecar" ? kTenantMeshConfigurationRule
                                                                  : kTenantPoliciesRule;
  std::string evidence;
  for (size_t i = 0; i < std::min(found.size(), kMaxListed); ++i) {
    evidence += (i == 0 ? "" : "; ") + found[i];
  }
  if (found.size() > kMaxListed) {
    evidence += "; and " + std::to_string(found.size() - kMaxListed) + " more";
  }
  std::string message = "bulkhead: " + asciiLower(kind) + " \"" + name + "\" in namespace \"" + ns +
                        "\" violates " + rule + " (" + evidence + ") of SegmentationPolicy \"" +
                        governing->name + "\"; " + hintFor(kind);
  return applyMode(governing->mode, message, {rule}, {message});
}

}  // namespace bulkhead::policy
