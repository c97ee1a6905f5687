#include "policy/mesh.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "policy/admission.h"
#include "policy/pod_rules.h"
#include "policy/segmentation.h"

// The mesh's own work recognised by the rules: the containers and annotations of Istio's sidecar
// injector, ambient mode and istiod's waypoints, updates judged on what changed, and the objects
// an ambient namespace gets. The injector's real output is the input of the integration test
// (tests/integration/istio_injection_test.cc); these cases pin each decision down.
namespace bulkhead::policy {
namespace {

using nlohmann::json;
using Strings = std::vector<std::string>;

const std::string kProxyImage = "docker.io/istio/proxyv2:1.28.0";

// A pod shaped as Istio's injector leaves it without Istio CNI (istio-init sets up iptables).
json injectedPod() {
  json pod = json::parse(R"({
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "shop",
      "labels": {"app.kubernetes.io/name": "web", "security.istio.io/tlsMode": "istio",
                 "service.istio.io/canonical-name": "web"},
      "annotations": {"sidecar.istio.io/status": "{\"initContainers\":[\"istio-init\"]}",
                      "kubectl.kubernetes.io/default-container": "web"}},
    "spec": {
      "initContainers": [{"name": "istio-init", "image": "",
        "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT"],
        "securityContext": {"allowPrivilegeEscalation": false, "privileged": false,
          "runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": false,
          "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}}}],
      "containers": [
        {"name": "web", "image": "nginx:1.27"},
        {"name": "istio-proxy", "image": "",
         "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
         "securityContext": {"allowPrivilegeEscalation": false, "privileged": false,
           "runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": true,
           "capabilities": {"drop": ["ALL"]}}}]}
  })");
  pod["spec"]["initContainers"][0]["image"] = kProxyImage;
  pod["spec"]["containers"][1]["image"] = kProxyImage;
  return pod;
}

// The same with Istio CNI: istio-validation checks the redirection, as the proxy's user.
json injectedPodWithCni() {
  json pod = injectedPod();
  pod["spec"]["initContainers"][0] = {
      {"name", "istio-validation"},
      {"image", kProxyImage},
      {"args", {"istio-iptables", "-p", "15001", "--run-validation", "--skip-rule-apply"}},
      {"securityContext",
       {{"runAsUser", 1337}, {"runAsGroup", 1337}, {"capabilities", {{"drop", {"ALL"}}}}}}};
  pod["metadata"]["annotations"]["sidecar.istio.io/interceptionMode"] = "REDIRECT";
  pod["metadata"]["annotations"]["traffic.sidecar.istio.io/includeOutboundIPRanges"] = "*";
  pod["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeOutboundIPRanges"] = "";
  pod["metadata"]["annotations"]["traffic.sidecar.istio.io/includeInboundPorts"] = "*";
  pod["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeInboundPorts"] = "15020";
  return pod;
}

// The waypoint istiod runs for a Gateway of class istio-waypoint.
json waypointPod() {
  json pod = json::parse(R"({
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "waypoint-7d9f", "namespace": "shop",
      "labels": {"gateway.istio.io/managed": "istio.io-mesh-controller",
                 "gateway.networking.k8s.io/gateway-name": "waypoint",
                 "istio.io/dataplane-mode": "none", "sidecar.istio.io/inject": "false"}},
    "spec": {"containers": [{"name": "istio-proxy", "image": "",
      "args": ["proxy", "waypoint", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
      "securityContext": {"runAsUser": 1337, "runAsGroup": 1337}}]}
  })");
  pod["spec"]["containers"][0]["image"] = kProxyImage;
  return pod;
}

SegmentationPolicy baseline() {
  SegmentationPolicy p;
  p.name = "baseline";
  return p;
}

PodContext strictSegmented(bool ambient = false) {
  PodContext c;
  c.mtlsStrict = true;
  c.defaultDenyExists = true;
  c.ambient = ambient;
  return c;
}

PodFacts facts(const json& object) {
  auto f = decodePodFacts(object);
  REQUIRE_MESSAGE(f.ok(), f.status().toString());
  return *f;
}

Strings denials(const json& object, const PodContext& context = strictSegmented()) {
  PodFacts f = facts(object);
  Strings out;
  for (const auto& v : evaluatePod(f, baseline(), context)) {
    out.push_back(denialMessage(f, v, "baseline"));
  }
  return out;
}

const std::string kTail = " of SegmentationPolicy \"baseline\"; ";

TEST_CASE("image repositories are compared as the runtime resolves them") {
  CHECK(imageRepository("docker.io/istio/proxyv2:1.28.0") == "docker.io/istio/proxyv2");
  CHECK(imageRepository("istio/proxyv2:1.28.0-distroless") == "docker.io/istio/proxyv2");
  CHECK(imageRepository("index.docker.io/istio/proxyv2") == "docker.io/istio/proxyv2");
  CHECK(imageRepository("gcr.io/istio-release/proxyv2@sha256:abcd") ==
        "gcr.io/istio-release/proxyv2");
  CHECK(imageRepository("localhost:5000/istio/proxyv2:1.28.0") == "localhost:5000/istio/proxyv2");
  CHECK(imageRepository("proxyv2") == "docker.io/library/proxyv2");
  CHECK(imageRepository("evil.example/istio/proxyv2:1.28.0") == "evil.example/istio/proxyv2");
}

TEST_CASE("the injector's containers are admitted, with and without Istio CNI, native or not") {
  CHECK(denials(injectedPod()).empty());
  CHECK(denials(injectedPodWithCni()).empty());
  // Native sidecars: istio-proxy is an init container that keeps running.
  for (json pod : {injectedPod(), injectedPodWithCni()}) {
    json proxy = pod["spec"]["containers"][1];
    proxy["restartPolicy"] = "Always";
    pod["spec"]["containers"].erase(1);
    pod["spec"]["initContainers"].push_back(proxy);
    CHECK(denials(pod).empty());
  }
  // Istio's release hub and a digest instead of a tag are the same image.
  json pod = injectedPod();
  pod["spec"]["initContainers"][0]["image"] = "gcr.io/istio-release/proxyv2@sha256:0123";
  CHECK(denials(pod).empty());
}

TEST_CASE("a container borrowing an injector container's name gets none of its allowances") {
  json pod = injectedPod();
  pod["spec"]["initContainers"][0]["image"] = "evil.example/istio/proxyv2:1.28.0";
  PodFacts f = facts(pod);
  CHECK(denialMessage(f, evaluatePod(f, baseline(), strictSegmented()), "baseline") ==
        "bulkhead: pod \"web-1\" in namespace \"shop\" has 2 violations of SegmentationPolicy "
        "\"baseline\": forbiddenCapabilities "
        "(spec.initContainers[0].securityContext.capabilities.add[0]=\"NET_ADMIN\"): init "
        "container \"istio-init\" is not the one Istio's injector adds: its image "
        "\"evil.example/istio/proxyv2:1.28.0\" is not one of spec.mesh.proxyImages; remove "
        "NET_ADMIN from the added capabilities of init container \"istio-init\"; "
        "forbiddenCapabilities "
        "(spec.initContainers[0].securityContext.capabilities.add[1]=\"NET_RAW\"): init "
        "container \"istio-init\" is not the one Istio's injector adds: its image "
        "\"evil.example/istio/proxyv2:1.28.0\" is not one of spec.mesh.proxyImages; remove "
        "NET_RAW from the added capabilities of init container \"istio-init\"; fix them or "
        "request a SegmentationException");

  // A command of its own, the wrong arguments, the wrong kind of container: each named.
  pod = injectedPod();
  pod["spec"]["initContainers"][0]["command"] = {"/bin/sh", "-c", "iptables -F"};
  CHECK(denials(pod).front() ==
        "bulkhead: pod \"web-1\" in namespace \"shop\" violates forbiddenCapabilities "
        "(spec.initContainers[0].securityContext.capabilities.add[0]=\"NET_ADMIN\")" +
            kTail +
            "init container \"istio-init\" is not the one Istio's injector adds: it sets a "
            "command, where the injector runs the proxy image's own entrypoint; remove NET_ADMIN "
            "from the added capabilities of init container \"istio-init\" or request a "
            "SegmentationException");
  pod = injectedPod();
  pod["spec"]["initContainers"][0]["args"] = {"sleep", "infinity"};
  CHECK(denials(pod).size() == 2);
  CHECK(denials(pod).front().find("its args do not start with \"istio-iptables\" as the "
                                  "injector's do") != std::string::npos);
  pod = injectedPod();
  pod["spec"]["containers"].push_back(pod["spec"]["initContainers"][0]);
  pod["spec"]["initContainers"] = json::array();
  CHECK(denials(pod).front().find("container \"istio-init\" is not the one Istio's injector "
                                  "adds: the injector adds it as an init container that runs "
                                  "to completion") != std::string::npos);

  // The proxy's user: a tenant image under the proxy's name.
  pod = injectedPod();
  pod["spec"]["containers"][1]["image"] = "busybox";
  CHECK(denials(pod) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
                "(spec.containers[1].securityContext.runAsGroup=1337)" +
                    kTail +
                    "container \"istio-proxy\" is not the one Istio's injector adds: its image "
                    "\"busybox\" is not one of spec.mesh.proxyImages; run container "
                    "\"istio-proxy\" as a group other than 1337 (reserved for the Istio proxy) "
                    "or request a SegmentationException",
                "bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
                "(spec.containers[1].securityContext.runAsUser=1337)" +
                    kTail +
                    "container \"istio-proxy\" is not the one Istio's injector adds: its image "
                    "\"busybox\" is not one of spec.mesh.proxyImages; run container "
                    "\"istio-proxy\" as a user other than 1337 (reserved for the Istio proxy) "
                    "or request a SegmentationException"});

  // istio-validation without --run-validation is not Istio CNI's check.
  pod = injectedPodWithCni();
  pod["spec"]["initContainers"][0]["args"] = {"istio-iptables", "-p", "15001"};
  CHECK(denials(pod).size() == 2);
  CHECK(denials(pod).front().find("its args lack --run-validation") != std::string::npos);

  // Only NET_ADMIN and NET_RAW go with istio-init.
  pod = injectedPod();
  pod["spec"]["initContainers"][0]["securityContext"]["capabilities"]["add"].push_back("SYS_ADMIN");
  CHECK(denials(pod) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates forbiddenCapabilities "
                "(spec.initContainers[0].securityContext.capabilities.add[2]=\"SYS_ADMIN\")" +
                kTail +
                "remove SYS_ADMIN from the added capabilities of init container \"istio-init\" "
                "or request a SegmentationException"});
}

TEST_CASE("a policy names its own proxy images") {
  json pod = injectedPod();
  pod["spec"]["initContainers"][0]["image"] = "registry.corp.example/mesh/proxyv2:1.28.0";
  pod["spec"]["containers"][1]["image"] = "registry.corp.example/mesh/proxyv2:1.28.0";
  SegmentationPolicy p = baseline();
  CHECK(evaluatePod(facts(pod), p, strictSegmented()).size() == 4);
  p.mesh.proxyImages = {"registry.corp.example/mesh/proxyv2"};
  CHECK(evaluatePod(facts(pod), p, strictSegmented()).empty());
}

TEST_CASE("the injector's annotation values keep traffic in the mesh; others take it out") {
  CHECK(!trafficAnnotationBypasses("includeOutboundIPRanges", "*"));
  CHECK(!trafficAnnotationBypasses("includeInboundPorts", " * "));
  CHECK(!trafficAnnotationBypasses("excludeInboundPorts", "15020"));
  CHECK(!trafficAnnotationBypasses("excludeInboundPorts", "15020,15021, 15090"));
  CHECK(!trafficAnnotationBypasses("excludeInboundPorts", ""));
  CHECK(!trafficAnnotationBypasses("excludeOutboundIPRanges", ""));
  CHECK(!trafficAnnotationBypasses("excludeOutboundPorts", " "));
  CHECK(!trafficAnnotationBypasses("excludeInterfaces", ""));
  CHECK(!trafficAnnotationBypasses("kubevirtInterfaces", "net1"));
  CHECK(trafficAnnotationBypasses("includeOutboundIPRanges", "10.0.0.0/8"));
  CHECK(trafficAnnotationBypasses("includeOutboundIPRanges", ""));
  CHECK(trafficAnnotationBypasses("includeInboundPorts", "8080"));
  CHECK(trafficAnnotationBypasses("excludeInboundPorts", "15020,8080"));
  CHECK(trafficAnnotationBypasses("excludeOutboundIPRanges", "0.0.0.0/0"));
  CHECK(trafficAnnotationBypasses("excludeOutboundPorts", "5432"));
  CHECK(trafficAnnotationBypasses("excludeInterfaces", "eth1"));

  json pod = injectedPodWithCni();
  pod["metadata"]["annotations"]["sidecar.istio.io/interceptionMode"] = "NONE";
  CHECK(denials(pod) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
                "(metadata.annotations[sidecar.istio.io/interceptionMode]=\"NONE\")" +
                kTail +
                "remove the sidecar opt-out annotation sidecar.istio.io/interceptionMode or "
                "request a SegmentationException"});
  pod["metadata"]["annotations"]["sidecar.istio.io/interceptionMode"] = "TPROXY";
  CHECK(denials(pod).empty());
}

TEST_CASE("the proxy's group is reserved like its user") {
  json pod = injectedPod();
  pod["spec"]["securityContext"] = {{"runAsGroup", 1337}};
  pod["spec"]["containers"][0]["securityContext"] = {{"runAsGroup", 1337}};
  CHECK(denials(pod) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
                "(spec.containers[0].securityContext.runAsGroup=1337)" +
                    kTail +
                    "run container \"web\" as a group other than 1337 (reserved for the Istio "
                    "proxy) or request a SegmentationException",
                "bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
                "(spec.securityContext.runAsGroup=1337)" +
                    kTail +
                    "run the pod as a group other than 1337 (reserved for the Istio proxy) or "
                    "request a SegmentationException"});
}

TEST_CASE("ambient namespaces: the ambient opt-outs, not the sidecar ones") {
  json pod = json::parse(R"({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "shop",
                 "labels": {"app.kubernetes.io/name": "web", "sidecar.istio.io/inject": "false"}},
    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}})");
  // No sidecar is needed in ambient mode.
  CHECK(denials(pod, strictSegmented(true)).empty());
  CHECK(denials(pod, strictSegmented(false)).size() == 1);

  pod["metadata"]["labels"]["istio.io/dataplane-mode"] = "none";
  pod["metadata"]["annotations"] = {{"ambient.istio.io/bypass-inbound-capture", "true"}};
  CHECK(denials(pod, strictSegmented(true)) ==
        Strings{"bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
                "(metadata.annotations[ambient.istio.io/bypass-inbound-capture]=\"true\")" +
                    kTail +
                    "remove the ambient opt-out annotation "
                    "ambient.istio.io/bypass-inbound-capture or request a SegmentationException",
                "bulkhead: pod \"web-1\" in namespace \"shop\" violates requireSidecar "
                "(metadata.labels[istio.io/dataplane-mode]=\"none\")" +
                    kTail +
                    "remove the ambient opt-out label istio.io/dataplane-mode or request a "
                    "SegmentationException"});

  // A pod that has a sidecar in an ambient namespace is held to the sidecar's rules.
  json injected = injectedPod();
  injected["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeOutboundPorts"] = "5432";
  CHECK(denials(injected, strictSegmented(true)).size() == 1);
}

TEST_CASE("istiod's waypoints are the mesh's own; a look-alike is not") {
  CHECK(denials(waypointPod(), strictSegmented(true)).empty());
  CHECK(denials(waypointPod(), strictSegmented(false)).empty());
  json fake = waypointPod();
  fake["spec"]["containers"][0]["image"] = "busybox";
  // In ambient mode its dataplane-mode=none label opts it out; in sidecar mode its inject=false
  // label does, and it runs as the proxy's user and group.
  // It has no app.kubernetes.io/name either: istiod does not set one.
  CHECK(denials(fake, strictSegmented(true)).size() == 2);
  CHECK(denials(fake, strictSegmented(false)).size() == 4);
  fake = waypointPod();
  fake["spec"]["containers"].push_back({{"name", "shell"}, {"image", "busybox"}});
  CHECK(denials(fake, strictSegmented(false)).size() == 4);
  fake = waypointPod();
  fake["metadata"]["labels"].erase("gateway.istio.io/managed");
  CHECK(denials(fake, strictSegmented(false)).size() == 4);
}

TEST_CASE("updates are judged on what changed") {
  SegmentationPolicy p = baseline();
  json before = json::parse(R"({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "job-x", "namespace": "shop", "finalizers": ["batch.kubernetes.io/job-tracking"],
                 "labels": {"app.kubernetes.io/name": "job"}},
    "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "busybox"}]}})");
  json after = before;
  after["metadata"].erase("finalizers");
  after["metadata"]["labels"]["team"] = "blue";
  after["metadata"]["annotations"] = {{"note", "x"}};
  PodFacts oldFacts = facts(before);
  PodFacts newFacts = facts(after);
  PodReview review{&newFacts, &p, true, true, nullptr, WallTime{}};
  CHECK_FALSE(decidePod(review).allowed);  // a CREATE of it is refused
  review.oldPod = &oldFacts;
  review.podSpecChanged = false;
  CHECK(decidePod(review).allowed);  // metadata nobody reads: admitted
  review.podSpecChanged = true;
  CHECK_FALSE(decidePod(review).allowed);  // the spec changed: judged in full
  // A label or annotation a rule reads changed: judged in full.
  review.podSpecChanged = false;
  for (auto [where, key, value] :
       {std::tuple{"labels", "app.kubernetes.io/name", "other"},
        std::tuple{"labels", "sidecar.istio.io/inject", "false"},
        std::tuple{"annotations", "traffic.sidecar.istio.io/excludeOutboundPorts", "1"},
        std::tuple{"labels", "istio.io/dataplane-mode", "none"}}) {
    CAPTURE(key);
    json changed = after;
    changed["metadata"][where][key] = value;
    PodFacts changedFacts = facts(changed);
    review.pod = &changedFacts;
    CHECK_FALSE(decidePod(review).allowed);
  }
}

TEST_CASE("a namespace's dataplane mode: its label, or the policy's") {
  SegmentationPolicy p = baseline();
  CHECK_FALSE(p.ambient({}));
  CHECK(p.ambient({{"istio.io/dataplane-mode", "ambient"}}));
  CHECK_FALSE(p.ambient({{"istio.io/dataplane-mode", "none"}}));
  p.mesh.dataplaneMode = DataplaneMode::kAmbient;
  CHECK(p.ambient({}));
  p.mesh.dataplaneMode = DataplaneMode::kSidecar;
  CHECK_FALSE(p.ambient({{"istio.io/dataplane-mode", "ambient"}}));

  // Through decidePod: the namespace's labels choose the opt-outs.
  json pod = json::parse(R"({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "shop",
                 "labels": {"app.kubernetes.io/name": "web", "sidecar.istio.io/inject": "false"}},
    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}})");
  PodFacts f = facts(pod);
  SegmentationPolicy fromNs = baseline();
  Labels ambientNs = {{"istio.io/dataplane-mode", "ambient"}};
  PodReview review{&f, &fromNs, true, true, nullptr, WallTime{}};
  CHECK_FALSE(decidePod(review).allowed);
  review.namespaceLabels = &ambientNs;
  CHECK(decidePod(review).allowed);
}

TEST_CASE("an ambient namespace's generated objects") {
  SegmentationPolicy p = baseline();
  p.authorizationDefaultDeny = true;
  p.network.baselineAllows = {
      {"from-ingress", Direction::kIngress, {}, {{"ingress-nginx", {}}}, {{8080, "TCP"}}}};
  ClusterFacts facts{"bulkhead-system", true, {}};
  auto sidecar = desiredObjects(p, {"shop", {}}, facts);
  auto ambient = desiredObjects(p, {"shop", {{"istio.io/dataplane-mode", "ambient"}}}, facts);
  REQUIRE(ambient.size() == sidecar.size() + 4);
  // Everything the sidecar namespace gets, with HBONE beside every allowed port...
  json fromIngress = json::parse(R"({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "bulkhead-baseline-from-ingress", "namespace": "shop",
      "labels": {"app.kubernetes.io/managed-by": "bulkhead", "bulkhead.dev/policy": "baseline"}},
    "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
      "ingress": [{"from": [{"namespaceSelector": {"matchLabels":
                                {"kubernetes.io/metadata.name": "ingress-nginx"}},
                             "podSelector": {}}],
                   "ports": [{"port": 8080, "protocol": "TCP"}, {"port": 15008, "protocol": "TCP"}]}]}})");
  for (size_t i = 0; i < sidecar.size(); ++i) {
    CAPTURE(sidecar[i]["metadata"]["name"]);
    CHECK(ambient[i] == (sidecar[i]["metadata"]["name"] == "bulkhead-baseline-from-ingress"
                             ? fromIngress
                             : sidecar[i]));
  }
  // ...then the ambient allows, written out in full.
  const json labels = {{"app.kubernetes.io/managed-by", "bulkhead"},
                       {"bulkhead.dev/policy", "baseline"}};
  json expected = json::parse(R"([
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "bulkhead-allow-ambient", "namespace": "shop"},
     "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
       "ingress": [{"from": [{"ipBlock": {"cidr": "169.254.7.127/32"}}]},
                   {"from": [{"podSelector": {"matchLabels":
                                {"gateway.istio.io/managed": "istio.io-mesh-controller"}}}],
                    "ports": [{"port": 15008, "protocol": "TCP"}]}],
       "egress": [{"to": [{"podSelector": {"matchLabels":
                              {"gateway.istio.io/managed": "istio.io-mesh-controller"}}}],
                   "ports": [{"port": 15008, "protocol": "TCP"}]}]}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "bulkhead-allow-waypoint", "namespace": "shop"},
     "spec": {"podSelector": {"matchLabels": {"gateway.istio.io/managed": "istio.io-mesh-controller"}},
       "policyTypes": ["Ingress", "Egress"],
       "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 15008, "protocol": "TCP"}]}],
       "egress": [{"to": [{"podSelector": {}}], "ports": [{"port": 15008, "protocol": "TCP"}]}]}},
    {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
     "metadata": {"name": "bulkhead-allow-waypoints", "namespace": "shop"},
     "spec": {"action": "ALLOW",
              "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/waypoint"]}}]}]}},
    {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
     "metadata": {"name": "bulkhead-waypoint-allow-nothing", "namespace": "shop"},
     "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                              "name": "waypoint"}]}}
  ])");
  for (auto& o : expected) {
    o["metadata"]["labels"] = labels;
  }
  CHECK(json(std::vector<json>(ambient.end() - 4, ambient.end())) == expected);

  // The policy can say so for every namespace it selects, and name the waypoints.
  p.mesh.dataplaneMode = DataplaneMode::kAmbient;
  p.mesh.waypoints = {"waypoint", "reviews-waypoint"};
  auto forced = desiredObjects(p, {"shop", {}}, facts);
  REQUIRE(forced.size() == ambient.size());
  CHECK(forced[forced.size() - 2]["spec"]["rules"][0]["from"][0]["source"]["principals"] ==
        json{"cluster.local/ns/shop/sa/waypoint", "cluster.local/ns/shop/sa/reviews-waypoint"});
  CHECK(forced.back()["spec"]["targetRefs"].size() == 2);
  // Without authorization.defaultDeny, no AuthorizationPolicies.
  p.authorizationDefaultDeny = false;
  CHECK(desiredObjects(p, {"shop", {}}, facts).size() == ambient.size() - 3);
}

}  // namespace
}  // namespace bulkhead::policy
