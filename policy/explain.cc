#include "policy/explain.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace bulkhead::policy {
namespace {

using nlohmann::json;

// A selector as written; absent is not the same as empty for peers, so callers check presence.
bool selectorMatches(const json& selector, const Labels& labels) {
  auto decoded = decodeLabelSelector(selector, "selector");
  return decoded.ok() && decoded->matches(labels);  // an invalid selector matches nothing
}

std::vector<std::string> policyTypes(const json& spec) {
  std::vector<std::string> types;
  if (auto t = spec.find("policyTypes"); t != spec.end() && t->is_array() && !t->empty()) {
    for (const auto& v : *t) {
      if (v.is_string()) {
        types.push_back(v.get<std::string>());
      }
    }
    return types;
  }
  types.push_back("Ingress");
  if (auto e = spec.find("egress"); e != spec.end() && e->is_array() && !e->empty()) {
    types.push_back("Egress");
  }
  return types;
}

bool peerMatches(const json& peer, const std::string& policyNs, const PodInfo& pod,
                 const std::map<std::string, Labels>& namespaceLabels) {
  if (!peer.is_object()) {
    return false;
  }
  if (auto block = peer.find("ipBlock"); block != peer.end() && block->is_object()) {
    if (pod.ip.empty() || !cidrContains(block->value("cidr", ""), pod.ip)) {
      return false;
    }
    for (const auto& except : block->value("except", json::array())) {
      if (except.is_string() && cidrContains(except.get<std::string>(), pod.ip)) {
        return false;
      }
    }
    return true;
  }
  auto podSel = peer.find("podSelector");
  auto nsSel = peer.find("namespaceSelector");
  const bool hasPod = podSel != peer.end() && podSel->is_object();
  const bool hasNs = nsSel != peer.end() && nsSel->is_object();
  if (!hasPod && !hasNs) {
    return false;  // the API server refuses such a peer
  }
  if (hasNs) {
    auto labels = namespaceLabels.find(pod.ns);
    Labels nsLabels = labels == namespaceLabels.end() ? Labels{} : labels->second;
    nsLabels.emplace("kubernetes.io/metadata.name", pod.ns);
    if (!selectorMatches(*nsSel, nsLabels)) {
      return false;
    }
  } else if (pod.ns != policyNs) {
    return false;  // podSelector alone: the policy's own namespace
  }
  return !hasPod || selectorMatches(*podSel, pod.labels);
}

bool portMatches(const json& rulePort, int port, const std::string& protocol,
                 const PodInfo& destination) {
  if (!rulePort.is_object()) {
    return false;
  }
  const std::string proto = rulePort.value("protocol", "TCP");
  if (proto != protocol) {
    return false;
  }
  auto p = rulePort.find("port");
  if (p == rulePort.end() || p->is_null()) {
    return true;  // every port of that protocol
  }
  if (p->is_string()) {
    const std::string name = p->get<std::string>();
    return std::any_of(destination.ports.begin(), destination.ports.end(), [&](const PodPort& pp) {
      return pp.name == name && pp.protocol == protocol && pp.port == port;
    });
  }
  if (!p->is_number_integer()) {
    return false;
  }
  const int from = p->get<int>();
  if (auto end = rulePort.find("endPort"); end != rulePort.end() && end->is_number_integer()) {
    return port >= from && port <= end->get<int>();
  }
  return port == from;
}

// Does `rule` (an ingress or egress rule) admit `peer` on the port?
bool ruleMatches(const json& rule, const char* peersKey, const std::string& policyNs,
                 const PodInfo& peer, int port, const std::string& protocol,
                 const PodInfo& destination, const std::map<std::string, Labels>& namespaceLabels) {
  if (!rule.is_object()) {
    return false;
  }
  auto peers = rule.find(peersKey);
  if (peers != rule.end() && peers->is_array() && !peers->empty()) {
    bool any = false;
    for (const auto& p : *peers) {
      any = any || peerMatches(p, policyNs, peer, namespaceLabels);
    }
    if (!any) {
      return false;
    }
  }
  auto ports = rule.find("ports");
  if (ports != rule.end() && ports->is_array() && !ports->empty()) {
    return std::any_of(ports->begin(), ports->end(),
                       [&](const json& p) { return portMatches(p, port, protocol, destination); });
  }
  return true;
}

DirectionVerdict direction(const PodInfo& subject, const PodInfo& peer, const PodInfo& destination,
                           bool ingress, int port, const std::string& protocol,
                           const std::vector<json>& policies,
                           const std::map<std::string, Labels>& namespaceLabels) {
  DirectionVerdict out;
  std::vector<const json*> selecting;
  for (const auto& np : policies) {
    const json md = np.value("metadata", json::object());
    if (!md.is_object() || md.value("namespace", "") != subject.ns) {
      continue;
    }
    const json spec = np.value("spec", json::object());
    const auto types = policyTypes(spec);
    if (std::find(types.begin(), types.end(), ingress ? "Ingress" : "Egress") == types.end()) {
      continue;
    }
    if (!selectorMatches(spec.value("podSelector", json::object()), subject.labels)) {
      continue;
    }
    selecting.push_back(&np);
  }
  std::sort(selecting.begin(), selecting.end(), [](const json* a, const json* b) {
    return (*a)["metadata"].value("name", "") < (*b)["metadata"].value("name", "");
  });
  out.isolated = !selecting.empty();
  out.allowed = !out.isolated;
  for (const json* np : selecting) {
    PolicyEffect effect{subject.ns, (*np)["metadata"].value("name", ""), false, ""};
    const json spec = np->value("spec", json::object());
    const json rules = spec.value(ingress ? "ingress" : "egress", json::array());
    for (size_t i = 0; rules.is_array() && i < rules.size(); ++i) {
      if (ruleMatches(rules[i], ingress ? "from" : "to", subject.ns, peer, port, protocol,
                      destination, namespaceLabels)) {
        effect.allows = true;
        effect.why = std::string(ingress ? "ingress" : "egress") + " rule " + std::to_string(i) +
                     " allows it";
        break;
      }
    }
    if (!effect.allows) {
      effect.why = rules.empty() ? "selects the pod and allows nothing (deny)"
                                 : "selects the pod; none of its rules matches";
    }
    out.allowed = out.allowed || effect.allows;
    out.policies.push_back(std::move(effect));
  }
  return out;
}

}  // namespace

FlowVerdict explainFlow(const PodInfo& from, const PodInfo& to, int port,
                        const std::string& protocol, const std::vector<json>& policies,
                        const std::map<std::string, Labels>& namespaceLabels) {
  FlowVerdict v;
  if (from.ns == to.ns && from.name == to.name && !from.name.empty()) {
    return v;  // loopback
  }
  v.egress = direction(from, to, to, false, port, protocol, policies, namespaceLabels);
  v.ingress = direction(to, from, to, true, port, protocol, policies, namespaceLabels);
  v.allowed = v.egress.allowed && v.ingress.allowed;
  return v;
}

PodInfo podInfoOf(const json& pod) {
  PodInfo out;
  const json md = pod.value("metadata", json::object());
  out.ns = md.value("namespace", "");
  out.name = md.value("name", "");
  out.labels = labelsOf(pod);
  out.ip = pod.value("status", json::object()).value("podIP", "");
  const json spec = pod.value("spec", json::object());
  for (const auto* list : {"containers", "initContainers"}) {
    for (const auto& c : spec.value(list, json::array())) {
      for (const auto& p : c.value("ports", json::array())) {
        if (p.is_object() && p.contains("containerPort") && p["containerPort"].is_number()) {
          out.ports.push_back(
              {p.value("name", ""), p["containerPort"].get<int>(), p.value("protocol", "TCP")});
        }
      }
    }
  }
  return out;
}

StatusOr<std::pair<int, std::string>> parsePortProtocol(const std::string& text) {
  const auto slash = text.find('/');
  const std::string number = text.substr(0, slash);
  std::string protocol = slash == std::string::npos ? "TCP" : text.substr(slash + 1);
  std::transform(protocol.begin(), protocol.end(), protocol.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  int port = 0;
  for (char c : number) {
    if (c < '0' || c > '9' || port > 65535) {
      return invalidError("\"" + text + "\" is not a port like 8080/TCP");
    }
    port = port * 10 + (c - '0');
  }
  if (number.empty() || port < 1 || port > 65535 ||
      (protocol != "TCP" && protocol != "UDP" && protocol != "SCTP")) {
    return invalidError("\"" + text + "\" is not a port like 8080/TCP");
  }
  return std::make_pair(port, protocol);
}

bool cidrContains(const std::string& cidr, const std::string& ip) {
  const auto slash = cidr.find('/');
  if (slash == std::string::npos) {
    return false;
  }
  const std::string net = cidr.substr(0, slash);
  int bits = 0;
  try {
    bits = std::stoi(cidr.substr(slash + 1));
  } catch (const std::exception&) {
    return false;
  }
  std::array<unsigned char, 16> a{}, b{};
  int family = net.find(':') == std::string::npos ? AF_INET : AF_INET6;
  if ((ip.find(':') == std::string::npos ? AF_INET : AF_INET6) != family ||
      inet_pton(family, net.c_str(), a.data()) != 1 ||
      inet_pton(family, ip.c_str(), b.data()) != 1) {
    return false;
  }
  const int max = family == AF_INET ? 32 : 128;
  if (bits < 0 || bits > max) {
    return false;
  }
  for (int i = 0; i < bits; ++i) {
    const int mask = 0x80 >> (i % 8);
    if ((a[static_cast<size_t>(i / 8)] & mask) != (b[static_cast<size_t>(i / 8)] & mask)) {
      return false;
    }
  }
  return true;
}

}  // namespace bulkhead::policy
