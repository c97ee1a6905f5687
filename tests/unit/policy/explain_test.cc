// NetworkPolicy semantics of `bulkhead explain`, case by case, against expected verdicts written
// out here from the Kubernetes API reference (see policy/explain.h).
#include "policy/explain.h"

#include <doctest/doctest.h>

namespace bulkhead::policy {
namespace {

using nlohmann::json;

const std::map<std::string, Labels> kNamespaces = {
    {"a", {{"team", "a"}}}, {"b", {{"team", "b"}}}, {"c", {}}};

const PodInfo ax{"a", "x", {{"app", "x"}}, "10.0.0.1", {{"http", 80, "TCP"}}};
const PodInfo ay{"a",
                 "y",
                 {{"app", "y"}, {"tier", "db"}},
                 "10.0.0.2",
                 {{"http", 8080, "TCP"}, {"dns", 53, "UDP"}}};
const PodInfo bx{"b", "x", {{"app", "x"}}, "10.0.1.1", {}};
const PodInfo cz{"c", "z", {{"app", "z"}}, "10.0.2.1", {}};
const PodInfo noIp{"c", "w", {{"app", "w"}}, "", {}};
const PodInfo v6{"c", "v", {{"app", "v"}}, "fd00::5", {}};

json np(const std::string& ns, const std::string& name, const json& spec) {
  return {{"apiVersion", "networking.k8s.io/v1"},
          {"kind", "NetworkPolicy"},
          {"metadata", {{"namespace", ns}, {"name", name}}},
          {"spec", spec}};
}

bool allowed(const std::vector<json>& policies, const PodInfo& from, const PodInfo& to,
             int port = 80, const std::string& protocol = "TCP") {
  return explainFlow(from, to, port, protocol, policies, kNamespaces).allowed;
}

const json kDenyIngress = np("a", "deny-in", json::parse(R"({"podSelector": {}})"));
const json kDenyEgressA =
    np("a", "deny-out", json::parse(R"({"podSelector": {}, "policyTypes": ["Egress"]})"));

json ingressTo(const std::string& name, const json& rules,
               const json& podSelector = json::object()) {
  return np("a", name,
            {{"podSelector", podSelector}, {"policyTypes", {"Ingress"}}, {"ingress", rules}});
}

TEST_CASE("no policy: everything flows; a pod to itself always flows") {
  CHECK(allowed({}, bx, ay));
  CHECK(allowed({kDenyIngress, kDenyEgressA}, ay, ay));
}

TEST_CASE("policyTypes default: Ingress, plus Egress only when egress rules exist") {
  CHECK_FALSE(allowed({kDenyIngress}, bx, ay));
  CHECK(allowed({kDenyIngress}, ay, bx));  // egress not isolated
  json egressRules = np("a", "out", json::parse(R"({"podSelector": {},
      "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "x"}}}]}]})"));
  CHECK_FALSE(allowed({egressRules}, ay, bx));  // isolated for egress: b/x is not in a
  // a/y's egress to a/x is allowed, but the same policy isolates a/x for ingress (policyTypes
  // defaults to Ingress too) with no ingress rules.
  auto v = explainFlow(ay, ax, 80, "TCP", {egressRules}, kNamespaces);
  CHECK(v.egress.allowed);
  CHECK_FALSE(v.ingress.allowed);
  CHECK_FALSE(v.allowed);
  CHECK_FALSE(allowed({egressRules}, bx, ay));  // also isolated for ingress, no ingress rules
}

TEST_CASE("an explicit policyTypes without rules denies that direction") {
  CHECK_FALSE(allowed({kDenyEgressA}, ay, bx));
  CHECK(allowed({kDenyEgressA}, bx, ay));  // ingress not isolated
  json both =
      np("a", "both", json::parse(R"({"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
      "ingress": [{}]})"));
  CHECK(allowed({both}, bx, ay));
  CHECK_FALSE(allowed({both}, ay, bx));
  json emptyList = ingressTo("empty", json::array());
  CHECK_FALSE(allowed({emptyList}, bx, ay));
}

TEST_CASE("an empty rule, and a rule without from or ports, allow everything") {
  CHECK(allowed({ingressTo("all", json::parse(R"([{}])"))}, cz, ay, 9999, "UDP"));
  CHECK(allowed({ingressTo("all", json::parse(R"([{"from": [], "ports": []}])"))}, cz, ay));
}

TEST_CASE("podSelector alone: pods of the policy's own namespace") {
  json same = ingressTo("same", json::parse(R"([{"from": [{"podSelector": {}}]}])"));
  CHECK(allowed({same}, ax, ay));
  CHECK_FALSE(allowed({same}, bx, ay));
  json byLabel = ingressTo(
      "x", json::parse(R"([{"from": [{"podSelector": {"matchLabels": {"app": "x"}}}]}])"));
  CHECK(allowed({byLabel}, ax, ay));
  CHECK_FALSE(allowed({byLabel}, bx, ay));  // app=x, but in b
}

TEST_CASE("namespaceSelector alone: every pod of the selected namespaces") {
  CHECK(allowed({ingressTo("any", json::parse(R"([{"from": [{"namespaceSelector": {}}]}])"))}, cz,
                ay));
  json teamB = ingressTo(
      "b", json::parse(R"([{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}])"));
  CHECK(allowed({teamB}, bx, ay));
  CHECK_FALSE(allowed({teamB}, cz, ay));
  CHECK_FALSE(allowed({teamB}, ax, ay));  // its own namespace is not team=b
  json byName = ingressTo(
      "c",
      json::parse(
          R"([{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "c"}}}]}])"));
  CHECK(allowed({byName}, cz, ay));  // the name label is always there
}

TEST_CASE("namespaceSelector and podSelector in one peer: both must match") {
  json both = ingressTo(
      "both", json::parse(R"([{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}},
      "podSelector": {"matchLabels": {"app": "x"}}}]}])"));
  CHECK(allowed({both}, bx, ay));
  CHECK_FALSE(allowed({both}, ax, ay));
  json anyNs = ingressTo("anyns", json::parse(R"([{"from": [{"namespaceSelector": {},
      "podSelector": {"matchLabels": {"app": "x"}}}]}])"));
  CHECK(allowed({anyNs}, bx, ay));
  CHECK(allowed({anyNs}, ax, ay));
  CHECK_FALSE(allowed({anyNs}, cz, ay));
}

TEST_CASE("two peers in one rule are alternatives") {
  json either = ingressTo("either", json::parse(R"([{"from": [
      {"namespaceSelector": {"matchLabels": {"team": "b"}}},
      {"podSelector": {"matchLabels": {"app": "x"}}}]}])"));
  CHECK(allowed({either}, ax, ay));
  CHECK(allowed({either}, bx, ay));
  CHECK_FALSE(allowed({either}, cz, ay));
}

TEST_CASE("numbered ports, protocols and the TCP default") {
  json p8080 = ingressTo("p", json::parse(R"([{"ports": [{"port": 8080, "protocol": "TCP"}]}])"));
  CHECK(allowed({p8080}, bx, ay, 8080));
  CHECK_FALSE(allowed({p8080}, bx, ay, 80));
  json udp53 = ingressTo("dns", json::parse(R"([{"ports": [{"port": 53, "protocol": "UDP"}]}])"));
  CHECK(allowed({udp53}, bx, ay, 53, "UDP"));
  CHECK_FALSE(allowed({udp53}, bx, ay, 53, "TCP"));
  json noProto = ingressTo("np", json::parse(R"([{"ports": [{"port": 8080}]}])"));
  CHECK(allowed({noProto}, bx, ay, 8080, "TCP"));
  CHECK_FALSE(allowed({noProto}, bx, ay, 8080, "UDP"));
  json sctp =
      ingressTo("sctp", json::parse(R"([{"ports": [{"port": 9000, "protocol": "SCTP"}]}])"));
  CHECK(allowed({sctp}, bx, ay, 9000, "SCTP"));
  CHECK_FALSE(allowed({sctp}, bx, ay, 9000, "TCP"));
}

TEST_CASE("a port without a number: every port of its protocol") {
  json anyUdp = ingressTo("udp", json::parse(R"([{"ports": [{"protocol": "UDP"}]}])"));
  CHECK(allowed({anyUdp}, bx, ay, 12345, "UDP"));
  CHECK_FALSE(allowed({anyUdp}, bx, ay, 12345, "TCP"));
}

TEST_CASE("endPort: a range, both ends included") {
  json range = ingressTo("range", json::parse(R"([{"ports": [{"port": 8000, "endPort": 8100}]}])"));
  CHECK(allowed({range}, bx, ay, 8000));
  CHECK(allowed({range}, bx, ay, 8080));
  CHECK(allowed({range}, bx, ay, 8100));
  CHECK_FALSE(allowed({range}, bx, ay, 8101));
  CHECK_FALSE(allowed({range}, bx, ay, 7999));
}

TEST_CASE("named ports: the destination pod's port of that name and protocol") {
  json http = ingressTo("named", json::parse(R"([{"ports": [{"port": "http"}]}])"));
  CHECK(allowed({http}, bx, ay, 8080));  // a/y names 8080 http
  CHECK_FALSE(allowed({http}, bx, ay, 80));
  json dnsTcp =
      ingressTo("dnstcp", json::parse(R"([{"ports": [{"port": "dns", "protocol": "TCP"}]}])"));
  CHECK_FALSE(allowed({dnsTcp}, bx, ay, 53, "TCP"));  // dns is UDP on a/y
  json dnsUdp =
      ingressTo("dnsudp", json::parse(R"([{"ports": [{"port": "dns", "protocol": "UDP"}]}])"));
  CHECK(allowed({dnsUdp}, bx, ay, 53, "UDP"));
  // In an egress rule the name is the destination's port too.
  json out = np("a", "named-out", json::parse(R"({"podSelector": {"matchLabels": {"app": "x"}},
      "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "http"}]}]})"));
  CHECK(allowed({out}, ax, ay, 8080));
  CHECK_FALSE(allowed({out}, ax, ay, 80));  // 80 is a/x's http, not a/y's
  CHECK_FALSE(allowed({out}, ax, bx, 80));  // b/x names no port
}

TEST_CASE("ipBlock: within cidr and outside every except") {
  json block =
      ingressTo("block", json::parse(R"([{"from": [{"ipBlock": {"cidr": "10.0.1.0/24"}}]}])"));
  CHECK(allowed({block}, bx, ay));
  CHECK_FALSE(allowed({block}, cz, ay));
  json except = ingressTo(
      "except",
      json::parse(
          R"([{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.1.1/32"]}}]}])"));
  CHECK_FALSE(allowed({except}, bx, ay));
  CHECK(allowed({except}, cz, ay));
  json world = ingressTo(
      "world",
      json::parse(
          R"([{"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/16"]}}]}])"));
  CHECK_FALSE(allowed({world}, cz, ay));
  CHECK_FALSE(allowed({world}, noIp, ay));  // no IP: no ipBlock matches it
  json six = ingressTo("six", json::parse(R"([{"from": [{"ipBlock": {"cidr": "fd00::/64"}}]}])"));
  CHECK(allowed({six}, v6, ay));
  CHECK_FALSE(allowed({six}, cz, ay));  // IPv4 never in an IPv6 block
}

TEST_CASE("the policy's podSelector decides which pods it isolates") {
  json onlyDb = ingressTo("db", json::array(), json::parse(R"({"matchExpressions": [
      {"key": "tier", "operator": "In", "values": ["db"]}]})"));
  CHECK_FALSE(allowed({onlyDb}, bx, ay));
  CHECK(allowed({onlyDb}, bx, ax));
  json notDb = ingressTo("notdb", json::array(), json::parse(R"({"matchExpressions": [
      {"key": "tier", "operator": "NotIn", "values": ["db"]}]})"));
  CHECK(allowed({notDb}, bx, ay));
  CHECK_FALSE(allowed({notDb}, bx, ax));
  json noTier = ingressTo("notier", json::array(), json::parse(R"({"matchExpressions": [
      {"key": "tier", "operator": "DoesNotExist"}]})"));
  CHECK_FALSE(allowed({noTier}, bx, ax));
  CHECK(allowed({noTier}, bx, ay));
  json invalid = ingressTo("bad", json::array(), json::parse(R"({"matchExpressions": [
      {"key": "tier", "operator": "Near"}]})"));
  CHECK(allowed({invalid}, bx, ay));  // a selector the API would refuse selects nothing
}

TEST_CASE("policies add up, and only those of the pod's namespace count") {
  json allowB = ingressTo(
      "allow-b",
      json::parse(R"([{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}])"));
  CHECK(allowed({kDenyIngress, allowB}, bx, ay));
  CHECK_FALSE(allowed({kDenyIngress, allowB}, cz, ay));
  json elsewhere = np("b", "deny-in", json::parse(R"({"podSelector": {}})"));
  CHECK(allowed({elsewhere}, cz, ay));
}

TEST_CASE("both ends must allow: the source's egress and the destination's ingress") {
  json bDenyOut =
      np("b", "deny-out", json::parse(R"({"podSelector": {}, "policyTypes": ["Egress"]})"));
  json bToA = np("b", "to-a", json::parse(R"({"podSelector": {}, "policyTypes": ["Egress"],
      "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}]})"));
  json aFromB = ingressTo(
      "from-b",
      json::parse(R"([{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}])"));
  CHECK_FALSE(allowed({bDenyOut, aFromB}, bx, ay));
  CHECK_FALSE(allowed({bToA, kDenyIngress}, bx, ay));
  CHECK(allowed({bDenyOut, bToA, kDenyIngress, aFromB}, bx, ay));
}

TEST_CASE("the verdict names the deciding policies and why, in name order") {
  json allowB = ingressTo(
      "allow-b",
      json::parse(R"([{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}])"));
  auto v = explainFlow(bx, ay, 80, "TCP", {kDenyIngress, allowB}, kNamespaces);
  CHECK(v.allowed);
  CHECK_FALSE(v.egress.isolated);
  REQUIRE(v.ingress.policies.size() == 2);
  CHECK(v.ingress.policies[0].name == "allow-b");
  CHECK(v.ingress.policies[0].allows);
  CHECK(v.ingress.policies[0].why == "ingress rule 0 allows it");
  CHECK(v.ingress.policies[1].name == "deny-in");
  CHECK(v.ingress.policies[1].why == "selects the pod and allows nothing (deny)");
}

TEST_CASE("ports and protocols as written on the command line") {
  CHECK(parsePortProtocol("8080/TCP").value() == std::make_pair(8080, std::string("TCP")));
  CHECK(parsePortProtocol("53/udp").value() == std::make_pair(53, std::string("UDP")));
  CHECK(parsePortProtocol("443").value() == std::make_pair(443, std::string("TCP")));
  CHECK_FALSE(parsePortProtocol("0/TCP").ok());
  CHECK_FALSE(parsePortProtocol("70000").ok());
  CHECK_FALSE(parsePortProtocol("80/ICMP").ok());
  CHECK_FALSE(parsePortProtocol("http").ok());
}

}  // namespace
}  // namespace bulkhead::policy
