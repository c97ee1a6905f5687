// The bypasses a tenant with the stock edit role could use, each closed in the pure core: mesh
// opt-outs, capability names outside ASCII, injection that never happened, downgrades by
// relabelling a namespace, and tenant-written network and mesh policies.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "policy/admission.h"
#include "policy/pod_rules.h"
#include "policy/tenant_objects.h"

namespace bulkhead::policy {
namespace {

using nlohmann::json;
using Strings = std::vector<std::string>;

const std::string kTail = " of SegmentationPolicy \"baseline\"; ";

json compliantPod() {
  return json::parse(R"({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app.kubernetes.io/name": "web"}},
    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}})");
}

SegmentationPolicy named(const std::string& name) {
  SegmentationPolicy p;
  p.name = name;
  return p;
}

PodContext strict() {
  PodContext c;
  c.mtlsStrict = true;
  c.defaultDenyExists = true;
  return c;
}

Strings denials(const json& object, const PodContext& context = strict()) {
  auto f = decodePodFacts(object);
  REQUIRE_MESSAGE(f.ok(), f.status().toString());
  Strings out;
  for (const auto& v : evaluatePod(*f, named("baseline"), context)) {
    out.push_back(denialMessage(*f, v, "baseline"));
  }
  return out;
}

TEST_CASE("capability names outside ASCII letters and underscores are refused, not folded") {
  json pod = compliantPod();
  pod["spec"]["containers"][0]["securityContext"] = {
      {"capabilities", {{"add", {"net_adm\u0131n", "CHOWN", "NET-BIND"}}}}};
  auto f = decodePodFacts(pod);
  REQUIRE(f.ok());
  CHECK(denialMessage(*f, evaluatePod(*f, named("baseline"), strict()), "baseline") ==
        "bulkhead: pod \"web-1\" in namespace \"shop\" has 2 violations of SegmentationPolicy "
        "\"baseline\": forbiddenCapabilities "
        "(spec.containers[0].securityContext.capabilities.add[0]=\"net_adm\u0131n\"): "
        "capability names are ASCII letters and underscores, and a container runtime may read "
        "this one as another capability; remove \"net_adm\u0131n\" from the added capabilities of "
        "container \"web\"; forbiddenCapabilities "
        "(spec.containers[0].securityContext.capabilities.add[2]=\"NET-BIND\"): capability "
        "names are ASCII letters and underscores, and a container runtime may read this one as "
        "another capability; remove \"NET-BIND\" from the added capabilities of container \"web\"; "
        "fix them or request a SegmentationException");
}

TEST_CASE("mesh opt-outs in annotations: interception, proxy config, templates, proxy image") {
  for (const char* config : {"interceptionMode: NONE", "{\"interceptionMode\": \"NONE\"}",
                             "concurrency: 2\ninterceptionMode: 'NONE'\n"}) {
    CAPTURE(config);
    json pod = compliantPod();
    pod["metadata"]["annotations"] = {{"proxy.istio.io/config", config}};
    CHECK(denials(pod).size() == 1);
  }
  for (const char* config : {"interceptionMode: TPROXY", "concurrency: 2", ""}) {
    CAPTURE(config);
    json pod = compliantPod();
    pod["metadata"]["annotations"] = {{"proxy.istio.io/config", config}};
    CHECK(denials(pod).empty());
  }
  json pod = compliantPod();
  pod["metadata"]["annotations"] = {{"inject.istio.io/templates", "gateway"},
                                    {"sidecar.istio.io/proxyImage", "evil.example/proxy:1"}};
  CHECK(denials(pod) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
                "(metadata.annotations[inject.istio.io/templates]=\"gateway\")" +
                    kTail +
                    "remove the sidecar opt-out annotation inject.istio.io/templates or request "
                    "a SegmentationException",
                "bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
                "(metadata.annotations[sidecar.istio.io/proxyImage]=\"evil.example/proxy:1\")" +
                    kTail +
                    "remove the sidecar opt-out annotation sidecar.istio.io/proxyImage or "
                    "request a SegmentationException"});
  pod["metadata"]["annotations"] = {{"inject.istio.io/templates", "sidecar"},
                                    {"sidecar.istio.io/proxyImage", "istio/proxyv2:1.28.0"}};
  CHECK(denials(pod).empty());
}

TEST_CASE("a pod whose injection was requested but never happened is refused") {
  PodContext injecting = strict();
  injecting.injectionRequest = injectionRequest("shop", {{"istio-injection", "enabled"}});
  CHECK(injectionRequest("shop", {{"istio-injection", "disabled"}}).empty());
  CHECK(injectionRequest("shop", {{"istio.io/rev", "canary"}}) ==
        "namespace \"shop\"'s label istio.io/rev=canary");
  CHECK(denials(compliantPod(), injecting) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
                "(spec.containers has no istio-proxy, though injection is requested by namespace "
                "\"shop\"'s label istio-injection=enabled)" +
                kTail +
                "let Istio's injector add its sidecar: check that the revision exists and its "
                "injector is running, and create the pod again or request a "
                "SegmentationException"});
  // A revision that does not exist: the injector skipped the pod.
  json pod = compliantPod();
  pod["metadata"]["labels"]["istio.io/rev"] = "no-such-revision";
  CHECK(denials(pod).front().find("though injection is requested by its label "
                                  "istio.io/rev=no-such-revision") != std::string::npos);
  // Workload templates are never injected (the injector mutates pods), so they are not held to
  // it; nor is a pod that opts out (that is its own violation).
  json deployment = {{"apiVersion", "apps/v1"},
                     {"kind", "Deployment"},
                     {"metadata", {{"name", "web"}, {"namespace", "shop"}}},
                     {"spec", {{"template", {{"metadata", compliantPod()["metadata"]},
                                             {"spec", compliantPod()["spec"]}}}}}};
  CHECK(denials(deployment, injecting).empty());
  pod = compliantPod();
  pod["metadata"]["labels"]["sidecar.istio.io/inject"] = "false";
  CHECK(denials(pod, injecting).size() == 1);
  // Not in ambient mode, where no sidecar is injected.
  PodContext ambient = strict();
  ambient.ambient = true;
  CHECK(denials(compliantPod(), ambient).empty());
}

TEST_CASE("PodTemplates are read like workloads") {
  json tpl = {{"apiVersion", "v1"},
              {"kind", "PodTemplate"},
              {"metadata", {{"name", "runner"}, {"namespace", "shop"}}},
              {"template", {{"metadata", {{"labels", {{"app.kubernetes.io/name", "r"}}}}},
                            {"spec", {{"hostNetwork", true}, {"containers", json::array()}}}}}};
  CHECK(denials(tpl) ==
        Strings{"bulkhead: podtemplate \"runner\" in namespace \"shop\" violates "
                "forbidHostNetwork (template.spec.hostNetwork=true)" +
                kTail + "remove hostNetwork or request a SegmentationException"});
}

TEST_CASE("weakenings: what a policy loosens compared with another") {
  SegmentationPolicy strictPolicy = named("strict");
  SegmentationPolicy same = named("same");
  CHECK(weakenings(strictPolicy, same).empty());
  SegmentationPolicy loose = named("loose");
  loose.mode = Mode::kAudit;
  loose.mtls = MtlsMode::kPermissive;
  loose.podRules.forbidHostNetwork = false;
  loose.podRules.forbiddenCapabilities = {"SYS_ADMIN"};
  loose.network.tenantPolicies = TenantPolicies::kUnrestricted;
  CHECK(weakenings(strictPolicy, loose) ==
        Strings{"mode Enforce to Audit", "mTLS STRICT to PERMISSIVE",
                "network.tenantPolicies looser", "podRules.forbidHostNetwork off",
                "podRules.forbiddenCapabilities drops NET_ADMIN",
                "podRules.forbiddenCapabilities drops NET_RAW"});
  // Stricter is never a downgrade.
  CHECK(weakenings(loose, strictPolicy).empty());
  SegmentationPolicy all = named("all");
  all.podRules.forbiddenCapabilities = {"ALL"};
  CHECK(weakenings(strictPolicy, all).empty());
}

TEST_CASE("a label change that moves a namespace to a weaker policy needs an approver") {
  SegmentationPolicy enforce = named("enforce");
  enforce.namespaceSelector = {{{"zero-trust", "on"}}, {}};
  enforce.exceptions.approverGroups = {"security"};
  SegmentationPolicy audit = named("audit");
  audit.namespaceSelector = {{{"zero-trust", "audit"}}, {}};
  audit.mode = Mode::kAudit;
  audit.exceptions.approverGroups = {"security"};
  SegmentationPolicy enforce2 = named("enforce2");
  enforce2.namespaceSelector = {{{"zero-trust", "strict"}}, {}};
  enforce2.exceptions.approverGroups = {"security", "leads"};
  std::vector<SegmentationPolicy> all = {enforce, audit, enforce2};
  Labels on = {{"zero-trust", "on"}};
  Decision d = decideNamespaceLabels("shop", on, {{"zero-trust", "audit"}}, all,
                                     "bulkhead-system", {"mallory", {"dev"}});
  CHECK_FALSE(d.allowed);
  CHECK(d.message ==
        "bulkhead: this label change would move namespace \"shop\" from SegmentationPolicy "
        "\"enforce\" to the weaker \"audit\" (mode Enforce to Audit, rule namespaceSelection); "
        "only a member of its approver groups may do that");
  CHECK(decideNamespaceLabels("shop", on, {{"zero-trust", "audit"}}, all, "bulkhead-system",
                              {"sam", {"security"}})
            .allowed);
  // To an equally strict policy, or a stricter one: anyone.
  CHECK(decideNamespaceLabels("shop", on, {{"zero-trust", "strict"}}, all, "bulkhead-system",
                              {"mallory", {}})
            .allowed);
  CHECK(decideNamespaceLabels("shop", {{"zero-trust", "audit"}}, on, all, "bulkhead-system",
                              {"mallory", {}})
            .allowed);
}

TEST_CASE("the Pod Security labels Bulkhead sets are guarded like the selection") {
  SegmentationPolicy p = named("baseline");
  p.namespaceSelector = {{{"zero-trust", "on"}}, {}};
  p.exceptions.approverGroups = {"security"};
  std::vector<SegmentationPolicy> all = {p};
  Labels set = {{"zero-trust", "on"},
                {"pod-security.kubernetes.io/enforce", "baseline"},
                {"pod-security.kubernetes.io/enforce-version", "latest"}};
  Labels lowered = set;
  lowered["pod-security.kubernetes.io/enforce"] = "privileged";
  Decision d = decideNamespaceLabels("shop", set, lowered, all, "bulkhead-system", {"mallory", {}});
  CHECK(d.message ==
        "bulkhead: this label change would weaken namespace \"shop\" under SegmentationPolicy "
        "\"baseline\" (pod-security.kubernetes.io/enforce set to privileged, rule "
        "namespaceSelection); only a member of its approver groups may do that");
  Labels removed = set;
  removed.erase("pod-security.kubernetes.io/enforce-version");
  CHECK(decideNamespaceLabels("shop", set, removed, all, "bulkhead-system", {"mallory", {}})
            .message.find("pod-security.kubernetes.io/enforce-version removed") !=
        std::string::npos);
  CHECK(decideNamespaceLabels("shop", set, lowered, all, "bulkhead-system", {"sam", {"security"}})
            .allowed);
  // Labels not yet set, other labels, the warn and audit labels, a restore: anyone.
  Labels unset = {{"zero-trust", "on"}};
  CHECK(decideNamespaceLabels("shop", unset, {{"zero-trust", "on"}, {"team", "a"}}, all,
                              "bulkhead-system", {"mallory", {}})
            .allowed);
  Labels warn = set;
  warn["pod-security.kubernetes.io/warn"] = "restricted";
  CHECK(decideNamespaceLabels("shop", set, warn, all, "bulkhead-system", {"mallory", {}}).allowed);
  CHECK(
      decideNamespaceLabels("shop", lowered, set, all, "bulkhead-system", {"mallory", {}}).allowed);
}

json networkPolicy(const json& spec) {
  return {{"apiVersion", "networking.k8s.io/v1"},
          {"kind", "NetworkPolicy"},
          {"metadata", {{"name", "mine"}, {"namespace", "shop"}}},
          {"spec", spec}};
}

TEST_CASE("tenant NetworkPolicies stay inside their namespace") {
  SegmentationPolicy p = named("baseline");
  // Inside the namespace: admitted.
  json inside = networkPolicy(json::parse(R"({"podSelector": {"matchLabels": {"app": "api"}},
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                 "ports": [{"port": 8080}]}],
    "egress": [{"to": [{"podSelector": {}}]}], "policyTypes": ["Ingress", "Egress"]})"));
  CHECK(decideTenantObject("NetworkPolicy", "shop", "mine", inside, &p).allowed);
  // A deny-all written by the tenant: admitted.
  CHECK(decideTenantObject("NetworkPolicy", "shop", "mine",
                           networkPolicy({{"podSelector", json::object()},
                                          {"policyTypes", {"Ingress"}}}),
                           &p)
            .allowed);
  // Allow-all, other namespaces, addresses: refused, each peer named.
  json open = networkPolicy(json::parse(R"({"podSelector": {},
    "ingress": [{}, {"from": [{"namespaceSelector": {}, "podSelector": {}}]}],
    "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]})"));
  Decision d = decideTenantObject("NetworkPolicy", "shop", "allow-all", open, &p);
  CHECK_FALSE(d.allowed);
  CHECK(d.rules == Strings{"tenantPolicies"});
  CHECK(d.message ==
        "bulkhead: networkpolicy \"allow-all\" in namespace \"shop\" violates tenantPolicies "
        "(spec.ingress[0] has no from, which admits every source; "
        "spec.ingress[1].from[0].namespaceSelector reaches other namespaces; "
        "spec.egress[0].to[0].ipBlock reaches addresses outside the namespace) of "
        "SegmentationPolicy \"baseline\"; allow only pods of this namespace (podSelector "
        "peers); open flows from or to other namespaces with an AccessGrant or the policy's "
        "network.baselineAllows");
  p.network.tenantPolicies = TenantPolicies::kUnrestricted;
  CHECK(decideTenantObject("NetworkPolicy", "shop", "allow-all", open, &p).allowed);
  p.network.tenantPolicies = TenantPolicies::kForbidden;
  CHECK(decideTenantObject("NetworkPolicy", "shop", "mine", inside, &p).message.find(
            "(network.tenantPolicies is Forbidden)") != std::string::npos);
  // Warn admits with the message as a warning.
  p.network.tenantPolicies = TenantPolicies::kSameNamespace;
  p.mode = Mode::kWarn;
  Decision warned = decideTenantObject("NetworkPolicy", "shop", "allow-all", open, &p);
  CHECK(warned.allowed);
  REQUIRE(warned.warnings.size() == 1);
  CHECK(warned.warnings[0] == d.message);
  // Ungoverned namespaces: anything.
  CHECK(decideTenantObject("NetworkPolicy", "blog", "allow-all", open, nullptr).allowed);
}

TEST_CASE("tenant AuthorizationPolicies, PeerAuthentications, EnvoyFilters and Sidecars") {
  SegmentationPolicy p = named("baseline");
  p.authorizationDefaultDeny = true;
  auto authz = [](const std::string& spec) {
    return json{{"kind", "AuthorizationPolicy"}, {"spec", json::parse(spec)}};
  };
  CHECK(tenantObjectViolations(
            "AuthorizationPolicy", "shop",
            authz(R"({"rules": [{"from": [{"source": {"principals":
              ["cluster.local/ns/shop/sa/web"], "namespaces": ["shop"]}}],
              "to": [{"operation": {"methods": ["GET"]}}]}]})"),
            p)
            .empty());
  CHECK(tenantObjectViolations("AuthorizationPolicy", "shop", authz(R"({})"), p).empty());
  CHECK(tenantObjectViolations("AuthorizationPolicy", "shop",
                               authz(R"({"action": "DENY", "rules": [{}]})"), p)
            .empty());
  CHECK(tenantObjectViolations(
            "AuthorizationPolicy", "shop",
            authz(R"({"rules": [{}, {"from": [{"source": {"principals": ["*",
              "cluster.local/ns/other/sa/web", "cluster.local/ns/shop/sa/*"],
              "namespaces": ["other"], "ipBlocks": ["0.0.0.0/0"]}}]}]})"),
            p) == Strings{"spec.rules[0] has no from, which admits every source",
                          "spec.rules[1].from[0].source.ipBlocks reaches sources outside the "
                          "namespace",
                          "spec.rules[1].from[0].source.namespaces[0] reaches other namespaces",
                          "spec.rules[1].from[0].source.principals[0]=\"*\" is not a "
                          "ServiceAccount of namespace \"shop\"",
                          "spec.rules[1].from[0].source.principals[1]=\"cluster.local/ns/other/"
                          "sa/web\" is not a ServiceAccount of namespace \"shop\"",
                          "spec.rules[1].from[0].source.principals[2]=\"cluster.local/ns/shop/"
                          "sa/*\" is not a ServiceAccount of namespace \"shop\""});
  // Without authorization.defaultDeny there is no L7 default deny to undo.
  p.authorizationDefaultDeny = false;
  CHECK(tenantObjectViolations("AuthorizationPolicy", "shop", authz(R"({"rules": [{}]})"), p)
            .empty());

  auto peer = [](const std::string& spec) {
    return json{{"kind", "PeerAuthentication"}, {"spec", json::parse(spec)}};
  };
  CHECK(tenantObjectViolations("PeerAuthentication", "shop",
                               peer(R"({"mtls": {"mode": "STRICT"}})"), p)
            .empty());
  CHECK(tenantObjectViolations(
            "PeerAuthentication", "shop",
            peer(R"({"mtls": {"mode": "PERMISSIVE"}, "portLevelMtls": {"8080": {"mode": "DISABLE"},
              "9090": {"mode": "UNSET"}}})"),
            p) == Strings{"spec.mtls.mode=\"PERMISSIVE\" lowers the namespace's STRICT mTLS",
                          "spec.portLevelMtls[8080].mode=\"DISABLE\" lowers the namespace's "
                          "STRICT mTLS"});
  p.mtls = MtlsMode::kPermissive;
  CHECK(tenantObjectViolations("PeerAuthentication", "shop",
                               peer(R"({"mtls": {"mode": "DISABLE"}})"), p)
            .empty());

  Decision filter = decideTenantObject("EnvoyFilter", "shop", "bypass", json::object(), &p);
  CHECK(filter.message ==
        "bulkhead: envoyfilter \"bypass\" in namespace \"shop\" violates tenantMeshConfiguration "
        "(mesh.tenantConfiguration is Forbidden) of SegmentationPolicy \"baseline\"; ask for the "
        "mesh configuration to be made by the platform team, or set mesh.tenantConfiguration: "
        "Allowed in the SegmentationPolicy");
  CHECK_FALSE(decideTenantObject("Sidecar", "shop", "s", json::object(), &p).allowed);
  p.mesh.tenantConfiguration = true;
  CHECK(decideTenantObject("Sidecar", "shop", "s", json::object(), &p).allowed);
}

TEST_CASE("a policy that stops decoding keeps the spec it last decoded to") {
  json good = json::parse(R"({"metadata": {"name": "baseline", "uid": "u1", "generation": 1},
    "spec": {"mode": "Enforce", "namespaceSelector": {"matchLabels": {"zero-trust": "on"}}}})");
  json other = json::parse(R"({"metadata": {"name": "alpha", "uid": "u2"}, "spec": {}})");
  auto first = decodePolicies({&good, &other}, {});
  REQUIRE(first.size() == 2);
  CHECK(first[0].name == "alpha");  // sorted by name
  json broken = good;
  broken["metadata"]["generation"] = 2;
  broken["spec"]["mode"] = "Sometimes";
  auto second = decodePolicies({&broken, &other}, first);
  REQUIRE(second.size() == 2);
  CHECK(second[1].generation == 1);
  CHECK(second[1].mode == Mode::kEnforce);
  CHECK(second[1].namespaceSelector.matches({{"zero-trust", "on"}}));
  // Its deletion still counts.
  broken["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z";
  CHECK(decodePolicies({&broken}, second).at(0).deleting);
  // Never decoded, or a new object under the same name: it governs nothing.
  CHECK(decodePolicies({&broken}, {}).empty());
  broken["metadata"]["uid"] = "u3";
  CHECK(decodePolicies({&broken}, second).empty());
}

}  // namespace
}  // namespace bulkhead::policy
