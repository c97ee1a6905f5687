// The admin tier against the real API server with the network-policy API's ClusterNetworkPolicy
// CRD from the sigs.k8s.io/network-policy-api module (scripts/testenv.sh): discovered without a
// restart, written for each selected namespace with the content the test spells out, accepted by
// the CRD's own schema and CEL rules, repaired, removed with the namespace, and given up when the
// API goes. No CNI here implements the API: the data plane is not tested (README says which do).
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "kube/client.h"
#include "kube/resource.h"
#include "tests/support/bench_util.h"
#include "tests/support/bulkhead_process.h"
#include "tests/support/control_plane.h"

namespace bulkhead::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

std::shared_ptr<kube::Client> admin() {
  static std::shared_ptr<kube::Client> client = unthrottledClient(ControlPlane::get().kubeconfig());
  return client;
}

json adminTier(const std::string& ns) {
  auto o = admin()->get(kube::resources::kClusterNetworkPolicies, "", "bulkhead-" + ns);
  return o.ok() ? *o : json();
}

json layers(const std::string& policy) {
  auto o = admin()->get(kube::resources::kSegmentationPolicies, "", policy);
  return o.ok() ? o->value("status", json::object()).value("layers", json()) : json();
}

TEST_CASE("an admin-tier ClusterNetworkPolicy per selected namespace, while the API is served") {
  const int port = freePort();
  installChart(port);
  BulkheadProcess bulkhead("tier", webhookArgs(port));
  REQUIRE(bulkhead.waitForLog("serving the admission webhook", 60));
  auto applied = kubectl({"apply", "-f", "-"}, R"(
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: tiered}
spec:
  namespaceSelector: {matchLabels: {tier: "on"}}
  network:
    baselineAllows:
      - name: from-clients
        direction: Ingress
        podSelector: {matchLabels: {app: web}}
        peers: [{namespace: tier-clients, podSelector: {matchLabels: {app: client}}}]
        ports: [{port: 8080}]
)");
  REQUIRE_MESSAGE(applied.exitCode == 0, applied.err);
  REQUIRE(createNamespace("tier-a", {{"tier", "on"}}));
  REQUIRE(eventually(seconds(30), [] { return layers("tiered") == json{"NetworkPolicy"}; }));

  // The API appears: no restart needed.
  auto crd = ControlPlane::get().shell(
      "kubectl apply --server-side -f \"$TESTENV_CLUSTER_NETWORK_POLICY_CRD\" >/dev/null && "
      "kubectl wait --for condition=established --timeout=60s "
      "crd/clusternetworkpolicies.policy.networking.k8s.io >/dev/null");
  REQUIRE_MESSAGE(crd.exitCode == 0, crd.err);
  REQUIRE(eventually(seconds(30), [] { return !adminTier("tier-a").is_null(); }));
  const json expected = json::parse(R"({
    "tier": "Admin",
    "priority": 100,
    "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "tier-a"}}},
    "ingress": [
      {"name": "same-namespace", "action": "Pass",
       "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "tier-a"}}}]},
      {"name": "allowed-1", "action": "Pass",
       "from": [{"pods": {"namespaceSelector": {"matchLabels":
                              {"kubernetes.io/metadata.name": "tier-clients"}},
                          "podSelector": {"matchLabels": {"app": "client"}}}}],
       "protocols": [{"tcp": {"destinationPort": {"number": 8080}}}]},
      {"name": "other-namespaces", "action": "Deny", "from": [{"namespaces": {}}]}],
    "egress": [
      {"name": "same-namespace", "action": "Pass",
       "to": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "tier-a"}}}]},
      {"name": "allowed-1", "action": "Pass",
       "to": [{"pods": {"namespaceSelector": {"matchLabels":
                            {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}}],
       "protocols": [{"udp": {"destinationPort": {"number": 53}}},
                     {"tcp": {"destinationPort": {"number": 53}}}]},
      {"name": "allowed-2", "action": "Pass",
       "to": [{"pods": {"namespaceSelector": {"matchLabels":
                            {"kubernetes.io/metadata.name": "istio-system"}},
                        "podSelector": {"matchLabels": {"app": "istiod"}}}}],
       "protocols": [{"tcp": {"destinationPort": {"number": 15010}}},
                     {"tcp": {"destinationPort": {"number": 15012}}},
                     {"tcp": {"destinationPort": {"number": 15014}}}]},
      {"name": "other-namespaces", "action": "Deny", "to": [{"namespaces": {}}]}]})");
  CHECK_MESSAGE(eventually(seconds(30), [&] { return adminTier("tier-a")["spec"] == expected; }),
                adminTier("tier-a")["spec"].dump());
  CHECK(adminTier("tier-a")["metadata"]["labels"] ==
        json{{"app.kubernetes.io/managed-by", "bulkhead"},
             {"bulkhead.dev/policy", "tiered"},
             {"bulkhead.dev/namespace", "tier-a"}});
  CHECK(eventually(seconds(30), [] {
    return layers("tiered") == json{"NetworkPolicy", "ClusterNetworkPolicy"};
  }));

  // Drift: deleted, it comes back; an Accept-all written into it is taken out.
  REQUIRE(kubectl({"delete", "clusternetworkpolicy", "bulkhead-tier-a"}).exitCode == 0);
  CHECK(eventually(seconds(30), [&] { return adminTier("tier-a")["spec"] == expected; }));
  REQUIRE(kubectl({"patch", "clusternetworkpolicy", "bulkhead-tier-a", "--type=json", "-p",
                   R"([{"op": "replace", "path": "/spec/ingress/2/action", "value": "Accept"}])"})
              .exitCode == 0);
  CHECK(eventually(seconds(30), [&] { return adminTier("tier-a")["spec"] == expected; }));

  // A namespace joining gets one; one going loses it.
  REQUIRE(createNamespace("tier-b", {{"tier", "on"}}));
  CHECK(eventually(seconds(30), [] { return !adminTier("tier-b").is_null(); }));
  REQUIRE(kubectl({"delete", "namespace", "tier-b", "--wait=false"}).exitCode == 0);
  CHECK(eventually(seconds(30), [] { return adminTier("tier-b").is_null(); }));

  // The API goes: the layer is no longer claimed.
  REQUIRE(kubectl({"delete", "crd", "clusternetworkpolicies.policy.networking.k8s.io"}).exitCode ==
          0);
  CHECK(bulkhead.waitForLog("the network-policy API is no longer served", 30));
  CHECK(eventually(seconds(30), [] { return layers("tiered") == json{"NetworkPolicy"}; }));
}

}  // namespace
}  // namespace bulkhead::testing
