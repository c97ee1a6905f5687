#include "policy/admin_tier.h"

#include <algorithm>

namespace bulkhead::policy {
namespace {

using nlohmann::json;

constexpr size_t kMaxRules = 25;  // per direction, and peers per rule
const char* const kNameLabel = kNamespaceNameLabel;

// A NetworkPolicy port as ClusterNetworkPolicy protocols matching: the protocol's port, named
// port or range.
json protocolOf(const json& port) {
  const std::string protocol = port.value("protocol", "TCP");
  std::string key = protocol == "UDP" ? "udp" : protocol == "SCTP" ? "sctp" : "tcp";
  const json number = port.value("port", json());
  if (number.is_string()) {
    return {{"destinationNamedPort", number}};
  }
  json match = json::object();
  if (number.is_number_integer()) {
    if (port.contains("endPort")) {
      match["destinationPort"] = {{"range", {{"start", number}, {"end", port["endPort"]}}}};
    } else {
      match["destinationPort"] = {{"number", number}};
    }
  }
  return {{key, match}};
}

// One NetworkPolicy rule's peers in other namespaces (and, for egress, its address blocks) as
// ClusterNetworkPolicy peers; `all` when the rule has no peers (everyone).
json crossPeers(const json& peers, bool egress, bool& any) {
  json out = json::array();
  if (!peers.is_array() || peers.empty()) {
    any = true;
    out.push_back({{"namespaces", json::object()}});
    if (egress) {
      out.push_back({{"networks", {"0.0.0.0/0", "::/0"}}});
    }
    return out;
  }
  for (const auto& peer : peers) {
    if (peer.contains("namespaceSelector")) {
      if (peer.contains("podSelector")) {
        out.push_back({{"pods",
                        {{"namespaceSelector", peer["namespaceSelector"]},
                         {"podSelector", peer["podSelector"]}}}});
      } else {
        out.push_back({{"namespaces", peer["namespaceSelector"]}});
      }
    } else if (egress && peer.contains("ipBlock")) {
      // Its `except` stays the NetworkPolicy's to apply: this only passes the block on.
      out.push_back({{"networks", {peer["ipBlock"].value("cidr", "")}}});
    }
    // A pod selector alone is this namespace, passed on as a whole; ingress from an address
    // block (a node's probes) is no pod's, and the tier denies only pods.
  }
  return out;
}

struct Rule {
  json peers;
  json protocols;  // empty: every protocol
  bool operator==(const Rule&) const = default;
};

// The Pass rules for one direction of the generated NetworkPolicies.
std::vector<Rule> passRules(const std::vector<json>& generated, bool egress) {
  const std::string type = egress ? "Egress" : "Ingress";
  const std::string field = egress ? "egress" : "ingress";
  const std::string peersField = egress ? "to" : "from";
  std::vector<Rule> out;
  for (const auto& np : generated) {
    const json& spec = np.value("spec", json::object());
    const json types = spec.value("policyTypes", json::array());
    if (std::find(types.begin(), types.end(), type) == types.end()) {
      continue;
    }
    for (const auto& rule : spec.value(field, json::array())) {
      bool any = false;
      json peers = crossPeers(rule.value(peersField, json()), egress, any);
      if (peers.empty()) {
        continue;
      }
      json protocols = json::array();
      bool named = false;
      for (const auto& port : rule.value("ports", json::array())) {
        protocols.push_back(protocolOf(port));
        named |= protocols.back().contains("destinationNamedPort");
      }
      const bool networks = std::any_of(peers.begin(), peers.end(),
                                        [](const json& p) { return p.contains("networks"); });
      if (named && networks) {
        protocols = json::array();  // the API allows no named port with networks
      }
      Rule r{std::move(peers), std::move(protocols)};
      if (std::find(out.begin(), out.end(), r) == out.end()) {
        out.push_back(std::move(r));
      }
    }
  }
  return out;
}

json ruleJson(const std::string& name, const std::string& action, const std::string& peersField,
              const json& peers, const json& protocols) {
  json r = {{"name", name}, {"action", action}, {peersField, peers}};
  if (!protocols.empty()) {
    r["protocols"] = protocols;
  }
  return r;
}

StatusOr<json> direction(const std::string& ns, const std::vector<json>& generated, bool egress) {
  const std::string peersField = egress ? "to" : "from";
  const json own = {{"namespaces", {{"matchLabels", {{kNameLabel, ns}}}}}};
  std::vector<Rule> passes = passRules(generated, egress);
  if (passes.size() + 2 > kMaxRules) {
    // Merged without ports: Pass hands them to the NetworkPolicies, which check the ports.
    json all = json::array();
    for (const auto& r : passes) {
      for (const auto& p : r.peers) {
        if (std::find(all.begin(), all.end(), p) == all.end()) {
          all.push_back(p);
        }
      }
    }
    passes.clear();
    for (size_t i = 0; i < all.size(); i += kMaxRules) {
      json chunk(all.begin() + static_cast<ptrdiff_t>(i),
                 all.begin() + static_cast<ptrdiff_t>(std::min(all.size(), i + kMaxRules)));
      passes.push_back({std::move(chunk), json::array()});
    }
    if (passes.size() + 2 > kMaxRules) {
      return invalidError("the allowed " + std::string(egress ? "egress" : "ingress") +
                          " peers of namespace " + ns + " (" + std::to_string(all.size()) +
                          ") do not fit in one ClusterNetworkPolicy");
    }
  }
  json rules = json::array();
  rules.push_back(
      ruleJson("same-namespace", "Pass", peersField, json::array({own}), json::array()));
  for (size_t i = 0; i < passes.size(); ++i) {
    rules.push_back(ruleJson("allowed-" + std::to_string(i + 1), "Pass", peersField,
                             passes[i].peers, passes[i].protocols));
  }
  rules.push_back(ruleJson("other-namespaces", "Deny", peersField,
                           {{{"namespaces", json::object()}}}, json::array()));
  return rules;
}

}  // namespace

std::string adminTierName(const std::string& ns) { return "bulkhead-" + ns; }

StatusOr<std::optional<json>> adminTierPolicy(const SegmentationPolicy& policy,
                                              const std::string& ns,
                                              const std::vector<json>& cached) {
  if (!policy.network.denyIngress && !policy.network.denyEgress) {
    return std::optional<json>();
  }
  std::vector<json> generated = cached;  // in name order, whatever the cache's
  std::sort(generated.begin(), generated.end(), [](const json& a, const json& b) {
    return a["metadata"].value("name", "") < b["metadata"].value("name", "");
  });
  json spec = {{"tier", "Admin"},
               {"priority", kAdminTierPriority},
               {"subject", {{"namespaces", {{"matchLabels", {{kNameLabel, ns}}}}}}}};
  if (policy.network.denyIngress) {
    auto rules = direction(ns, generated, false);
    if (!rules.ok()) {
      return rules.status();
    }
    spec["ingress"] = std::move(*rules);
  }
  if (policy.network.denyEgress) {
    auto rules = direction(ns, generated, true);
    if (!rules.ok()) {
      return rules.status();
    }
    spec["egress"] = std::move(*rules);
  }
  return std::optional<json>(json{{"apiVersion", "policy.networking.k8s.io/v1alpha2"},
                                  {"kind", "ClusterNetworkPolicy"},
                                  {"metadata",
                                   {{"name", adminTierName(ns)},
                                    {"labels",
                                     {{kManagedByLabel, kManagedByValue},
                                      {kPolicyLabel, policy.name},
                                      {kAdminTierNamespaceLabel, ns}}}}},
                                  {"spec", std::move(spec)}});
}

}  // namespace bulkhead::policy
