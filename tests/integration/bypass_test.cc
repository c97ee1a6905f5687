// The bypasses a tenant with the stock `edit` role had, each tried through the real API server
// with the chart installed and Bulkhead serving: tenant-written network and mesh policies, mesh
// opt-outs, capability names outside ASCII, label escapes through namespace subresources,
// downgrades to a weaker policy, and the kinds that were never sent to the webhook.
#include <doctest/doctest.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "tests/support/bulkhead_process.h"
#include "tests/support/control_plane.h"

namespace bulkhead::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

// A tenant: the stock `edit` ClusterRole, bound in the test namespaces.
const std::vector<std::string> kTenant = {"--as=tenant", "--as-group=tenants"};

// kubectl as the tenant.
ProcessResult tenantKubectl(std::vector<std::string> args, const std::string& input = "") {
  args.insert(args.end(), kTenant.begin(), kTenant.end());
  return kubectl(args, input);
}

ProcessResult tenantCreate(const json& object) {
  return tenantKubectl({"create", "-f", "-"}, object.dump());
}

// Bulkhead and two namespaces: "shop" (Enforce, STRICT, L7 default deny, approvers "security")
// and "sandbox" for moving namespaces between policies; the tenant may edit both.
void setUp() {
  static bool done = [] {
    servingBulkhead("bulkhead");
    // The stock edit role is an aggregated ClusterRole: the real aggregation controller fills it.
    REQUIRE(ControlPlane::get().startControllerManager("clusterrole-aggregation-controller"));
    REQUIRE(eventually(seconds(30), [] {
      return kubectl({"auth", "can-i", "create", "pods", "-n", "default", "--as=probe",
                      "--as-group=system:authenticated"})
                     .exitCode != 0 &&
             kubectl({"get", "clusterrole", "edit", "-o", "jsonpath={.rules[*].resources}"})
                     .out.find("pods") != std::string::npos;
    }));
    auto applied = kubectl({"apply", "-f", "-"}, R"(
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: baseline}
spec:
  namespaceSelector: {matchLabels: {zero-trust: "on"}}
  authorization: {defaultDeny: true}
  exceptions: {approverGroups: [security]}
  podSecurity: {enforce: Unmanaged}   # these cases are about Bulkhead's own rules
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: relaxed}
spec:
  mode: Audit
  namespaceSelector: {matchLabels: {zero-trust: "relaxed"}}
  authorization: {defaultDeny: true}
  exceptions: {approverGroups: [security]}
  podSecurity: {enforce: Unmanaged}
)");
    REQUIRE_MESSAGE(applied.exitCode == 0, applied.err);
    for (const char* ns : {"shop", "sandbox"}) {
      REQUIRE(kubectl({"create", "namespace", ns}).exitCode == 0);
      REQUIRE(kubectl({"label", "namespace", ns, "zero-trust=on"}).exitCode == 0);
      REQUIRE(kubectl({"create", "rolebinding", "tenant-edit", "--clusterrole=edit",
                       "--group=tenants", "-n", ns})
                  .exitCode == 0);
      REQUIRE(eventually(seconds(30), [&] {
        return kubectl({"get", "networkpolicy", "bulkhead-default-deny", "-n", ns}).exitCode == 0;
      }));
    }
    // The tenant may also label its namespaces, as a namespace admin often may.
    REQUIRE(kubectl({"apply", "-f", "-"}, R"(
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: namespace-labeller}
rules:
- {apiGroups: [""], resources: [namespaces, namespaces/status, namespaces/finalize],
   verbs: [get, list, patch, update]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: tenant-namespace-labeller}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: namespace-labeller}
subjects: [{kind: Group, name: tenants, apiGroup: rbac.authorization.k8s.io}]
---
# Istio's configuration aggregated into the stock edit role, as many clusters do.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: istio-config-edit
  labels: {rbac.authorization.k8s.io/aggregate-to-edit: "true"}
rules:
- {apiGroups: [security.istio.io, networking.istio.io], resources: ["*"],
   verbs: [get, list, watch, create, update, patch, delete]}
)")
                .exitCode == 0);
    json probe = {
        {"apiVersion", "v1"},
        {"kind", "Pod"},
        {"metadata", {{"name", "probe"}, {"namespace", "shop"}}},
        {"spec", {{"hostNetwork", true}, {"containers", {{{"name", "c"}, {"image", "x"}}}}}}};
    REQUIRE(eventually(seconds(30), [&] {
      return kubectl({"create", "--dry-run=server", "-f", "-"}, probe.dump()).exitCode != 0;
    }));
    return true;
  }();
  (void)done;
}

json networkPolicy(const std::string& name, const json& spec) {
  return {{"apiVersion", "networking.k8s.io/v1"},
          {"kind", "NetworkPolicy"},
          {"metadata", {{"name", name}, {"namespace", "shop"}}},
          {"spec", spec}};
}

TEST_CASE("a tenant's NetworkPolicy may allow its own namespace, and nothing else") {
  setUp();
  auto inside = tenantCreate(networkPolicy("web-to-api", json::parse(R"({
    "podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                 "ports": [{"port": 8080}]}]})")));
  CHECK_MESSAGE(inside.exitCode == 0, inside.err);
  auto allowAll = tenantCreate(networkPolicy("allow-all", json::parse(R"({
    "podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{}], "egress": [{}]})")));
  CHECK(denial(allowAll) ==
        "bulkhead: networkpolicy \"allow-all\" in namespace \"shop\" violates tenantPolicies "
        "(spec.ingress[0] has no from, which admits every source; spec.egress[0] has no to, "
        "which reaches every destination) of SegmentationPolicy \"baseline\"; allow only pods "
        "of this namespace (podSelector peers); open flows from or to other namespaces with an "
        "AccessGrant or the policy's network.baselineAllows\n");
  auto otherNamespace = tenantCreate(networkPolicy("from-lab", json::parse(R"({
    "podSelector": {}, "ingress": [{"from": [{"namespaceSelector":
      {"matchLabels": {"kubernetes.io/metadata.name": "lab"}}}]}]})")));
  CHECK(denial(otherNamespace)
            .find("(spec.ingress[0].from[0].namespaceSelector reaches other "
                  "namespaces)") != std::string::npos);
  // Widening the admitted one later is judged the same way.
  auto widened = tenantKubectl(
      {"patch", "networkpolicy", "web-to-api", "-n", "shop", "--type=json", "-p",
       R"([{"op": "add", "path": "/spec/ingress/0/from/-",
            "value": {"ipBlock": {"cidr": "0.0.0.0/0"}}}])"});
  CHECK(denial(widened).find("spec.ingress[0].from[1].ipBlock reaches addresses outside the "
                             "namespace") != std::string::npos);
  // The policy still counts the namespace as segmented: nothing undid its default deny.
  CHECK(kubectl({"get", "networkpolicy", "allow-all", "-n", "shop"}).exitCode != 0);
  tenantKubectl({"delete", "networkpolicy", "web-to-api", "-n", "shop"});
}

TEST_CASE("a tenant's Istio policies may not undo the mesh's defaults") {
  setUp();
  auto allowAll = tenantCreate(json::parse(R"({"apiVersion": "security.istio.io/v1",
    "kind": "AuthorizationPolicy", "metadata": {"name": "allow-all", "namespace": "shop"},
    "spec": {"action": "ALLOW", "rules": [{}]}})"));
  CHECK(denial(allowAll) ==
        "bulkhead: authorizationpolicy \"allow-all\" in namespace \"shop\" violates "
        "tenantPolicies (spec.rules[0] has no from, which admits every source) of "
        "SegmentationPolicy \"baseline\"; allow only ServiceAccounts of this namespace; open "
        "flows from other namespaces with an AccessGrant\n");
  auto ownServiceAccount = tenantCreate(json::parse(R"({"apiVersion": "security.istio.io/v1",
    "kind": "AuthorizationPolicy", "metadata": {"name": "web-to-api", "namespace": "shop"},
    "spec": {"selector": {"matchLabels": {"app": "api"}},
             "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/web"]}}]}]}})"));
  CHECK_MESSAGE(ownServiceAccount.exitCode == 0, ownServiceAccount.err);
  for (const char* mode : {"PERMISSIVE", "DISABLE"}) {
    auto peer = tenantCreate({{"apiVersion", "security.istio.io/v1"},
                              {"kind", "PeerAuthentication"},
                              {"metadata", {{"name", "relax"}, {"namespace", "shop"}}},
                              {"spec", {{"mtls", {{"mode", mode}}}}}});
    CHECK(denial(peer).find("violates tenantPolicies (spec.mtls.mode=\"" + std::string(mode) +
                            "\" lowers the namespace's STRICT mTLS)") != std::string::npos);
  }
  auto envoyFilter = tenantCreate(json::parse(R"({"apiVersion": "networking.istio.io/v1alpha3",
    "kind": "EnvoyFilter", "metadata": {"name": "bypass", "namespace": "shop"},
    "spec": {"configPatches": []}})"));
  CHECK(denial(envoyFilter)
            .find("violates tenantMeshConfiguration (mesh.tenantConfiguration is "
                  "Forbidden)") != std::string::npos);
  auto sidecar = tenantCreate(json::parse(R"({"apiVersion": "networking.istio.io/v1",
    "kind": "Sidecar", "metadata": {"name": "default", "namespace": "shop"},
    "spec": {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}})"));
  CHECK(denial(sidecar).find("violates tenantMeshConfiguration") != std::string::npos);
  tenantKubectl({"delete", "authorizationpolicy", "web-to-api", "-n", "shop"});
}

json pod(const json& metadataExtra, const json& containerExtra) {
  json p = {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata",
       {{"name", "web-1"}, {"namespace", "shop"}, {"labels", {{"app.kubernetes.io/name", "web"}}}}},
      {"spec", {{"containers", {{{"name", "web"}, {"image", "nginx:1.27"}}}}}}};
  p["metadata"].update(metadataExtra, true);
  p["spec"]["containers"][0].update(containerExtra, true);
  return p;
}

TEST_CASE("mesh opt-outs and non-ASCII capability names are refused") {
  setUp();
  struct Case {
    json pod;
    std::string evidence;
  };
  std::vector<Case> cases = {
      {pod(json::object(), {{"securityContext", {{"runAsGroup", 1337}}}}),
       "requireSidecar (spec.containers[0].securityContext.runAsGroup=1337)"},
      {pod({{"annotations", {{"sidecar.istio.io/interceptionMode", "NONE"}}}}, json::object()),
       "requireSidecar (metadata.annotations[sidecar.istio.io/interceptionMode]=\"NONE\")"},
      {pod({{"annotations", {{"proxy.istio.io/config", "interceptionMode: NONE\n"}}}},
           json::object()),
       "requireSidecar (metadata.annotations[proxy.istio.io/config]="},
      {pod({{"annotations", {{"inject.istio.io/templates", "gateway"}}}}, json::object()),
       "requireSidecar (metadata.annotations[inject.istio.io/templates]=\"gateway\")"},
      {pod({{"annotations", {{"sidecar.istio.io/proxyImage", "registry.example/any:1"}}}},
           json::object()),
       "requireSidecar "
       "(metadata.annotations[sidecar.istio.io/proxyImage]=\"registry.example/any:1\")"},
      {pod({{"labels", {{"app.kubernetes.io/name", "web"}, {"istio.io/rev", "no-such-rev"}}}},
           json::object()),
       "requireSidecar (spec.containers has no istio-proxy, though injection is requested by "
       "its label istio.io/rev=no-such-rev)"},
      {pod(json::object(),
           {{"securityContext", {{"capabilities", {{"add", {"net_adm\u0131n"}}}}}}}),
       "forbiddenCapabilities (spec.containers[0].securityContext.capabilities.add[0]="
       "\"net_adm\u0131n\") of SegmentationPolicy \"baseline\"; capability names are ASCII "
       "letters and underscores"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.evidence);
    auto r = tenantKubectl({"create", "--dry-run=server", "-f", "-"}, c.pod.dump());
    std::string d = denial(r);
    CHECK_MESSAGE(d.find(c.evidence) != std::string::npos, d);
  }
  // What is stored as written: the API server keeps the dotless i, so only a refusal helps.
  CHECK(tenantKubectl({"create", "--dry-run=server", "-f", "-"},
                      pod(json::object(), json::object()).dump())
            .exitCode == 0);
}

TEST_CASE("ReplicationControllers and PodTemplates are checked like other workloads") {
  setUp();
  const json tpl = {
      {"metadata", {{"labels", {{"app.kubernetes.io/name", "legacy"}}}}},
      {"spec", {{"hostNetwork", true}, {"containers", {{{"name", "c"}, {"image", "busybox"}}}}}}};
  auto rc = tenantCreate(
      {{"apiVersion", "v1"},
       {"kind", "ReplicationController"},
       {"metadata", {{"name", "legacy"}, {"namespace", "shop"}}},
       {"spec", {{"selector", {{"app.kubernetes.io/name", "legacy"}}}, {"template", tpl}}}});
  CHECK(denial(rc).find("bulkhead: replicationcontroller \"legacy\" in namespace \"shop\" "
                        "violates forbidHostNetwork (spec.template.spec.hostNetwork=true)") == 0);
  // The edit role does not reach PodTemplates; whoever may write one is checked.
  auto podTemplate = kubectl({"create", "-f", "-"},
                             json({{"apiVersion", "v1"},
                                   {"kind", "PodTemplate"},
                                   {"metadata", {{"name", "legacy"}, {"namespace", "shop"}}},
                                   {"template", tpl}})
                                 .dump());
  CHECK_MESSAGE(denial(podTemplate)
                        .find("bulkhead: podtemplate \"legacy\" in namespace \"shop\" violates "
                              "forbidHostNetwork (template.spec.hostNetwork=true)") == 0,
                denial(podTemplate));
}

TEST_CASE("namespace labels: no escape through status or finalize, no silent downgrade") {
  setUp();
  // Through the status subresource, which stores label changes too.
  auto status = tenantKubectl({"patch", "namespace", "sandbox", "--subresource=status",
                               "--type=merge", "-p",
                               R"({"metadata": {"labels": {"zero-trust": null}}})"});
  CHECK(denial(status).find("would take namespace \"sandbox\" out of every SegmentationPolicy") !=
        std::string::npos);
  // Through finalize, which kubectl reaches only raw.
  auto ns = kubectl({"get", "namespace", "sandbox", "-o", "json"});
  REQUIRE(ns.exitCode == 0);
  json object = json::parse(ns.out);
  object["metadata"]["labels"].erase("zero-trust");
  auto finalize = tenantKubectl(
      {"replace", "--raw", "/api/v1/namespaces/sandbox/finalize", "-f", "-"}, object.dump());
  CHECK(finalize.exitCode != 0);
  CHECK(finalize.err.find("out of every SegmentationPolicy") != std::string::npos);
  CHECK(kubectl({"get", "namespace", "sandbox", "-o", "jsonpath={.metadata.labels.zero-trust}"})
            .out == "on");
  // To a weaker policy: an approver's decision, not a tenant's.
  auto downgrade =
      tenantKubectl({"label", "namespace", "sandbox", "zero-trust=relaxed", "--overwrite"});
  CHECK(denial(downgrade) ==
        "bulkhead: this label change would move namespace \"sandbox\" from SegmentationPolicy "
        "\"baseline\" to the weaker \"relaxed\" (mode Enforce to Audit, rule "
        "namespaceSelection); only a member of its approver groups may do that\n");
  auto approved = kubectl({"label", "namespace", "sandbox", "zero-trust=relaxed", "--overwrite",
                           "--as=sam", "--as-group=security", "--as-group=system:masters"});
  CHECK_MESSAGE(approved.exitCode == 0, approved.err);
  // Back to the stricter policy: anyone who may label it.
  auto upgrade =
      tenantKubectl({"label", "namespace", "sandbox", "zero-trust=on", "--overwrite"});
  CHECK_MESSAGE(upgrade.exitCode == 0, upgrade.err);
}

TEST_CASE("tenant NetworkPolicies made before selection are reported and left in place") {
  setUp();
  REQUIRE(kubectl({"create", "namespace", "legacy"}).exitCode == 0);
  auto allowAll = kubectl({"create", "-f", "-"}, R"({"apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy", "metadata": {"name": "allow-all", "namespace": "legacy"},
    "spec": {"podSelector": {}, "ingress": [{}]}})");
  REQUIRE_MESSAGE(allowAll.exitCode == 0, allowAll.err);
  auto permissive = kubectl({"create", "-f", "-"}, R"({"apiVersion": "security.istio.io/v1",
    "kind": "PeerAuthentication", "metadata": {"name": "relaxed", "namespace": "legacy"},
    "spec": {"mtls": {"mode": "PERMISSIVE"}}})");
  REQUIRE_MESSAGE(permissive.exitCode == 0, permissive.err);
  REQUIRE(kubectl({"label", "namespace", "legacy", "zero-trust=on"}).exitCode == 0);
  const std::string lines =
      "legacy: networkpolicy \"allow-all\" reaches outside the namespace (spec.ingress[0] has no "
      "from, which admits every source); legacy: peerauthentication \"relaxed\" reaches outside "
      "the namespace (spec.mtls.mode=\"PERMISSIVE\" lowers the namespace's STRICT mTLS)";
  CHECK(eventually(seconds(30), [&] {
    auto status = kubectl({"get", "segmentationpolicy", "baseline", "-o",
                           "jsonpath={.status.tenantPolicyViolations} "
                           "{.status.conditions[?(@.type==\"TenantPolicies\")].message}"});
    return status.out ==
           "2 2 tenant policies reach outside their namespace (left in place): " + lines;
  }));
  CHECK(eventually(seconds(30), [] {
    return kubectl({"get", "events", "-n", "legacy", "--field-selector",
                    "reason=TenantPolicyViolation", "-o", "jsonpath={.items[*].message}"})
               .out.find("networkpolicy \"allow-all\" reaches outside the namespace") !=
           std::string::npos;
  }));
  CHECK(kubectl({"get", "networkpolicy", "allow-all", "-n", "legacy"}).exitCode == 0);
  // Removed by their owner, they are no longer reported.
  REQUIRE(kubectl({"delete", "networkpolicy", "allow-all", "-n", "legacy"}).exitCode == 0);
  REQUIRE(kubectl({"delete", "peerauthentication", "relaxed", "-n", "legacy"}).exitCode == 0);
  CHECK(eventually(seconds(30), [] {
    return kubectl({"get", "segmentationpolicy", "baseline", "-o",
                    "jsonpath={.status.tenantPolicyViolations}"})
               .out == "0";
  }));
}

// Last: it loosens the CRD's schema for the rest of this binary.
TEST_CASE("a policy that stops decoding keeps its last good spec and says why") {
  setUp();
  // A CRD upgrade or an edit past the schema: here the schema stops checking spec.mode.
  auto loosened = kubectl(
      {"patch", "crd", "segmentationpolicies.bulkhead.dev", "--type=json", "-p",
       R"([{"op": "remove", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/mode/enum"}])"});
  REQUIRE_MESSAGE(loosened.exitCode == 0, loosened.err);
  REQUIRE(eventually(seconds(30), [] {
    return kubectl({"patch", "segmentationpolicy", "baseline", "--type=merge", "-p",
                    R"({"spec": {"mode": "Sometimes"}})"})
               .exitCode == 0;
  }));
  CHECK(eventually(seconds(30), [] {
    auto ready = kubectl({"get", "segmentationpolicy", "baseline", "-o",
                          "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason} "
                          "{.status.conditions[?(@.type==\"Ready\")].message}"});
    return ready.out.find(
               "InvalidSpec spec.mode: \"Sometimes\" is not Enforce, Warn or Audit; "
               "its namespaces keep the last spec that decoded") == 0;
  }));
  // Its namespaces stay segmented and guarded as before.
  CHECK(kubectl({"get", "networkpolicy", "bulkhead-default-deny", "-n", "shop"}).exitCode == 0);
  json hostNetwork = {
      {"apiVersion", "v1"},
      {"kind", "Pod"},
      {"metadata",
       {{"name", "web-1"}, {"namespace", "shop"}, {"labels", {{"app.kubernetes.io/name", "web"}}}}},
      {"spec", {{"hostNetwork", true}, {"containers", {{{"name", "web"}, {"image", "nginx"}}}}}}};
  CHECK(denial(tenantKubectl({"create", "--dry-run=server", "-f", "-"}, hostNetwork.dump()))
            .find("violates forbidHostNetwork") != std::string::npos);
  CHECK(kubectl({"patch", "segmentationpolicy", "baseline", "--type=merge", "-p",
                 R"({"spec": {"mode": "Enforce"}})"})
            .exitCode == 0);
}

}  // namespace
}  // namespace bulkhead::testing
