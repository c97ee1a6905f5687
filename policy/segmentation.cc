#include "policy/segmentation.h"

#include <algorithm>

namespace bulkhead::policy {
namespace {

using nlohmann::json;

json metadataFor(const std::string& name, const std::string& ns, const SegmentationPolicy& p) {
  return {{"name", name},
          {"namespace", ns},
          {"labels", {{kManagedByLabel, kManagedByValue}, {kPolicyLabel, p.name}}}};
}

json networkPolicy(const std::string& name, const std::string& ns, const SegmentationPolicy& p,
                   json spec) {
  return {{"apiVersion", "networking.k8s.io/v1"},
          {"kind", "NetworkPolicy"},
          {"metadata", metadataFor(name, ns, p)},
          {"spec", std::move(spec)}};
}

json namespacePeer(const std::string& ns, const LabelSelector& pods) {
  return {{"namespaceSelector", {{"matchLabels", {{kNamespaceNameLabel, ns}}}}},
          {"podSelector", pods.toJson()}};
}

json portsJson(const std::vector<Port>& ports) {
  json out = json::array();
  for (const auto& p : ports) {
    out.push_back({{"port", p.port}, {"protocol", p.protocol}});
  }
  return out;
}

void appendEndpoints(const json& slice, std::vector<ApiEndpoint>& out);

const Port kHbone{kHbonePort, "TCP"};

// What a namespace in Istio's ambient mode needs besides the default deny, following Istio's
// "Ambient and Kubernetes NetworkPolicy" (istio.io/latest/docs/ambient/usage/networkpolicy/) and
// its waypoint and L4 authorization docs (istio.io/latest/docs/ambient/usage/waypoint/,
// .../usage/l4-policy/):
//  - NetworkPolicy is enforced outside the pod, where ambient traffic between pods is HBONE to
//    port 15008: every generated allow with ports also allows 15008 (in desiredObjects).
//  - kubelet probes reach ambient pods SNATed to 169.254.7.127 by the node's ztunnel
//    redirection; that source is only ever the local kubelet, so it may reach every port.
//  - Traffic to a service with a waypoint goes client -> waypoint:15008 -> server:15008. Inside
//    the namespace, pods may reach its waypoints on 15008 and the waypoints may reach pods on
//    15008 (bulkhead-allow-ambient, bulkhead-allow-waypoint).
//  - With authorization.defaultDeny, the allow-nothing policy is enforced by ztunnel at each
//    pod, where a request that went through a waypoint arrives with the waypoint's identity. So
//    the pods allow the namespace's waypoints' identities (bulkhead-allow-waypoints), and the
//    default deny moves to the waypoints themselves: an allow-nothing bound to them with
//    targetRefs (bulkhead-waypoint-allow-nothing). Traffic through a waypoint then still works,
//    and is still denied until an ALLOW policy bound to the waypoint opens it.
void ambientObjects(const SegmentationPolicy& p, const std::string& ns, const ClusterFacts& facts,
                    const json& policyTypes, std::vector<json>& out) {
  const json waypoints = {
      {"podSelector", {{"matchLabels", {{kWaypointLabel, kWaypointLabelValue}}}}}};
  const json samePods = {{"podSelector", json::object()}};
  const json hbone = portsJson({kHbone});
  if (!policyTypes.empty()) {
    json workloads = {{"podSelector", json::object()}, {"policyTypes", policyTypes}};
    json waypoint = {{"podSelector", waypoints["podSelector"]}, {"policyTypes", policyTypes}};
    if (p.network.denyIngress) {
      workloads["ingress"] = {{{"from", {{{"ipBlock", {{"cidr", kAmbientProbeSource}}}}}}},
                              {{"from", {waypoints}}, {"ports", hbone}}};
      waypoint["ingress"] = {{{"from", {samePods}}, {"ports", hbone}}};
    }
    if (p.network.denyEgress) {
      workloads["egress"] = {{{"to", {waypoints}}, {"ports", hbone}}};
      waypoint["egress"] = {{{"to", {samePods}}, {"ports", hbone}}};
    }
    out.push_back(networkPolicy("bulkhead-allow-ambient", ns, p, std::move(workloads)));
    out.push_back(networkPolicy("bulkhead-allow-waypoint", ns, p, std::move(waypoint)));
  }
  if (facts.meshAvailable && p.authorizationDefaultDeny && !p.mesh.waypoints.empty()) {
    json principals = json::array();
    json targetRefs = json::array();
    for (const auto& w : p.mesh.waypoints) {
      principals.push_back(std::string(kTrustDomain) + "/ns/" + ns + "/sa/" + w);
      targetRefs.push_back(
          {{"group", "gateway.networking.k8s.io"}, {"kind", "Gateway"}, {"name", w}});
    }
    out.push_back({{"apiVersion", "security.istio.io/v1"},
                   {"kind", "AuthorizationPolicy"},
                   {"metadata", metadataFor("bulkhead-allow-waypoints", ns, p)},
                   {"spec",
                    {{"action", "ALLOW"},
                     {"rules", {{{"from", {{{"source", {{"principals", principals}}}}}}}}}}}});
    out.push_back({{"apiVersion", "security.istio.io/v1"},
                   {"kind", "AuthorizationPolicy"},
                   {"metadata", metadataFor("bulkhead-waypoint-allow-nothing", ns, p)},
                   {"spec", {{"targetRefs", targetRefs}}}});
  }
}

}  // namespace

bool selects(const SegmentationPolicy& policy, const NamespaceFacts& ns,
             const std::string& installNamespace) {
  if (policy.deleting || ns.name == installNamespace) {
    return false;
  }
  if (std::find(policy.excludedNamespaces.begin(), policy.excludedNamespaces.end(), ns.name) !=
      policy.excludedNamespaces.end()) {
    return false;
  }
  return policy.namespaceSelector.matches(ns.labels);
}

const SegmentationPolicy* governingPolicy(const std::vector<SegmentationPolicy>& policies,
                                          const NamespaceFacts& ns,
                                          const std::string& installNamespace) {
  const SegmentationPolicy* best = nullptr;
  for (const auto& p : policies) {
    if (!selects(p, ns, installNamespace)) {
      continue;
    }
    if (best == nullptr || p.priority > best->priority ||
        (p.priority == best->priority && p.name < best->name)) {
      best = &p;
    }
  }
  return best;
}

std::vector<json> desiredObjects(const SegmentationPolicy& p, const NamespaceFacts& nsFacts,
                                 const ClusterFacts& facts) {
  std::vector<json> out;
  const std::string& ns = nsFacts.name;
  const NetworkSettings& net = p.network;
  const bool ambient = p.ambient(nsFacts.labels);
  json policyTypes = json::array();
  if (net.denyIngress) {
    policyTypes.push_back("Ingress");
  }
  if (net.denyEgress) {
    policyTypes.push_back("Egress");
  }
  if (!policyTypes.empty()) {
    out.push_back(networkPolicy(kDefaultDenyName, ns, p,
                                {{"podSelector", json::object()}, {"policyTypes", policyTypes}}));
  }
  // An allow rule is written only in a direction that is denied by default: a NetworkPolicy of
  // type Egress that allows only DNS would otherwise *restrict* pods whose egress is open.
  if (net.allowDNS && net.denyEgress) {
    json dns = namespacePeer("kube-system", LabelSelector{{{"k8s-app", "kube-dns"}}, {}});
    out.push_back(networkPolicy(
        "bulkhead-allow-dns", ns, p,
        {{"podSelector", json::object()},
         {"policyTypes", {"Egress"}},
         {"egress",
          {{{"to", {dns}},
            {"ports", portsJson({{53, "UDP"}, {53, "TCP"}})}}}}}));
  }
  if (net.allowSameNamespace && !policyTypes.empty()) {
    json same = {{"podSelector", json::object()}};
    json spec = {{"podSelector", json::object()}, {"policyTypes", policyTypes}};
    if (net.denyIngress) {
      spec["ingress"] = {{{"from", {same}}}};
    }
    if (net.denyEgress) {
      spec["egress"] = {{{"to", {same}}}};
    }
    out.push_back(networkPolicy("bulkhead-allow-same-namespace", ns, p, std::move(spec)));
  }
  if (net.allowMeshControlPlane && p.mtlsManaged() && net.denyEgress) {
    json istiod = namespacePeer("istio-system", LabelSelector{{{"app", "istiod"}}, {}});
    out.push_back(networkPolicy(
        "bulkhead-allow-mesh", ns, p,
        {{"podSelector", json::object()},
         {"policyTypes", {"Egress"}},
         {"egress",
          {{{"to", {istiod}},
            {"ports", portsJson({{15010, "TCP"}, {15012, "TCP"}, {15014, "TCP"}})}}}}}));
  }
  if (net.kubeApiPods && net.denyEgress && !facts.apiServerEndpoints.empty()) {
    json to = json::array();
    std::vector<Port> ports;
    for (const auto& e : facts.apiServerEndpoints) {
      bool v6 = e.ip.find(':') != std::string::npos;
      json block = {{"ipBlock", {{"cidr", e.ip + (v6 ? "/128" : "/32")}}}};
      if (std::find(to.begin(), to.end(), block) == to.end()) {
        to.push_back(block);
      }
      Port port{e.port, e.protocol};
      if (std::find(ports.begin(), ports.end(), port) == ports.end()) {
        ports.push_back(port);
      }
    }
    out.push_back(networkPolicy("bulkhead-allow-kube-api", ns, p,
                                {{"podSelector", net.kubeApiPods->toJson()},
                                 {"policyTypes", {"Egress"}},
                                 {"egress", {{{"to", to}, {"ports", portsJson(ports)}}}}}));
  }
  for (const auto& a : net.baselineAllows) {
    json peers = json::array();
    for (const auto& peer : a.peers) {
      peers.push_back(namespacePeer(peer.ns, peer.podSelector));
    }
    bool ingress = a.direction == Direction::kIngress;
    if (ingress ? !net.denyIngress : !net.denyEgress) {
      continue;
    }
    json rule = {{ingress ? "from" : "to", peers}};
    if (!a.ports.empty()) {
      std::vector<Port> ports = a.ports;
      if (ambient && std::find(ports.begin(), ports.end(), kHbone) == ports.end()) {
        ports.push_back(kHbone);  // the flow arrives tunnelled (see ambientObjects)
      }
      rule["ports"] = portsJson(ports);
    }
    out.push_back(networkPolicy("bulkhead-baseline-" + a.name, ns, p,
                                {{"podSelector", a.podSelector.toJson()},
                                 {"policyTypes", {ingress ? "Ingress" : "Egress"}},
                                 {ingress ? "ingress" : "egress", {rule}}}));
  }
  if (facts.meshAvailable && p.mtlsManaged()) {
    out.push_back({{"apiVersion", "security.istio.io/v1"},
                   {"kind", "PeerAuthentication"},
                   {"metadata", metadataFor("bulkhead-mtls", ns, p)},
                   {"spec", {{"mtls", {{"mode", mtlsModeName(p.mtls)}}}}}});
  }
  if (facts.meshAvailable && p.authorizationDefaultDeny) {
    out.push_back({{"apiVersion", "security.istio.io/v1"},
                   {"kind", "AuthorizationPolicy"},
                   {"metadata", metadataFor("bulkhead-allow-nothing", ns, p)},
                   {"spec", json::object()}});
  }
  if (ambient) {
    ambientObjects(p, ns, facts, policyTypes, out);
  }
  return out;
}

bool matchesDesired(const json& current, const json& desired) {
  Labels have = labelsOf(current);
  for (const auto& [k, v] : labelsOf(desired)) {
    auto it = have.find(k);
    if (it == have.end() || it->second != v) {
      return false;
    }
  }
  auto spec = current.find("spec");
  const json& want = desired["spec"];
  if (spec == current.end()) {
    return want.empty();
  }
  return *spec == want;
}

std::vector<ApiEndpoint> apiEndpointsFromSlices(const std::vector<json>& slices) {
  std::vector<ApiEndpoint> out;
  for (const auto& s : slices) {
    try {
      appendEndpoints(s, out);
    } catch (const json::exception&) {
      // A slice of an unexpected shape contributes nothing.
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

namespace {

void appendEndpoints(const json& s, std::vector<ApiEndpoint>& out) {
  {
    std::vector<std::pair<int, std::string>> ports;
    for (const auto& p : s.value("ports", json::array())) {
      ports.emplace_back(p.value("port", 0), p.value("protocol", "TCP"));
    }
    for (const auto& e : s.value("endpoints", json::array())) {
      const json& cond = e.value("conditions", json::object());
      if (cond.contains("ready") && cond["ready"].is_boolean() && !cond["ready"].get<bool>()) {
        continue;
      }
      for (const auto& addr : e.value("addresses", json::array())) {
        if (!addr.is_string()) {
          continue;
        }
        for (const auto& [port, proto] : ports) {
          if (port > 0) {
            out.push_back({addr.get<std::string>(), port, proto});
          }
        }
      }
    }
  }
}

}  // namespace

}  // namespace bulkhead::policy
