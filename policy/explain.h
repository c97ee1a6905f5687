#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "policy/label_selector.h"

// Which NetworkPolicies allow or deny one flow between two pods, with the semantics of the
// Kubernetes API reference for networking.k8s.io/v1 NetworkPolicy
// (https://kubernetes.io/docs/reference/kubernetes-api/policy-resources/network-policy-v1/):
// - a pod is isolated in a direction when a NetworkPolicy of its namespace selects it
//   (spec.podSelector, {} selects every pod) and lists that direction in spec.policyTypes;
//   policyTypes, when absent, is Ingress plus Egress if spec.egress has rules (the API server's
//   defaulting);
// - a flow is allowed in a direction when the pod is not isolated in it, or when some policy
//   that isolates it has a rule whose peers (from/to) and ports both match: absent or empty
//   from/to matches every peer, absent or empty ports every port;
// - a peer with podSelector alone selects pods of the policy's own namespace; with
//   namespaceSelector alone every pod of the selected namespaces; with both, the pods that match
//   in the namespaces that match; ipBlock matches the peer pod's IP when it is within cidr and
//   not within any except (the API reserves ipBlock for cluster-external addresses, and
//   implementations differ on pod IPs: kube-router matches them, as here);
// - a port matches by number and protocol (default TCP), a range [port, endPort] when endPort
//   is set, or by name: the destination pod's container port of that name and protocol;
// - a flow is allowed only when the source's egress and the destination's ingress both allow it;
//   traffic of a pod to itself never leaves it and is always allowed.
// Pure.
namespace bulkhead::policy {

struct PodPort {
  std::string name;
  int port = 0;
  std::string protocol = "TCP";
};

struct PodInfo {
  std::string ns;
  std::string name;
  Labels labels;
  std::string ip;              // empty when unknown: no ipBlock matches it
  std::vector<PodPort> ports;  // the containers' ports, for named ports
};

// What one NetworkPolicy does to the flow in one direction.
struct PolicyEffect {
  std::string ns;
  std::string name;
  bool allows = false;  // a rule matched the flow
  std::string why;      // "rule 0 allows it", "no rule allows it", ...
};

struct DirectionVerdict {
  bool isolated = false;  // some policy selects the pod for this direction
  bool allowed = true;
  std::vector<PolicyEffect> policies;  // the policies that select the pod, in name order
};

struct FlowVerdict {
  bool allowed = true;
  DirectionVerdict egress;   // of the source
  DirectionVerdict ingress;  // of the destination
};

// `policies`: NetworkPolicy objects (any namespaces; the relevant ones are picked);
// `namespaceLabels`: every namespace's labels, for namespaceSelector.
FlowVerdict explainFlow(const PodInfo& from, const PodInfo& to, int port,
                        const std::string& protocol, const std::vector<nlohmann::json>& policies,
                        const std::map<std::string, Labels>& namespaceLabels);

// A pod as the explanation needs it, from a Pod object (status.podIP, the containers' ports).
PodInfo podInfoOf(const nlohmann::json& pod);

// "8080/TCP" (protocol defaults to TCP) into a port and a protocol.
StatusOr<std::pair<int, std::string>> parsePortProtocol(const std::string& text);

// Is `ip` (IPv4 or IPv6) within `cidr`?
bool cidrContains(const std::string& cidr, const std::string& ip);

}  // namespace bulkhead::policy
