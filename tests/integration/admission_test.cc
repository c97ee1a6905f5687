// The admission webhook through the real API server: the chart installed with real Helm, its
// ValidatingWebhookConfiguration pointed at a `bulkhead` on loopback that runs with the chart's
// Deployment args; the leader makes the certificate and writes the caBundle, and the API server
// calls the webhook for every guarded request.
#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <tuple>

#include "tests/support/bulkhead_process.h"
#include "tests/support/control_plane.h"
#include "webhooks/admission_rules.h"

namespace bulkhead::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string pod(const std::string& name, const std::string& ns, const std::string& extraSpec,
                const std::string& labels = R"({"app.kubernetes.io/name": "web"})") {
  return R"({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": ")" + name +
         R"(", "namespace": ")" + ns + R"(", "labels": )" + labels + R"(},
    "spec": {)" +
         extraSpec + R"("containers": [{"name": "web", "image": "nginx"}]}})";
}

// One webhook process for the whole binary (its registration is cluster-wide).
BulkheadProcess& webhook() {
  static BulkheadProcess* process = [] {
    BulkheadProcess* p = &servingBulkhead("webhook");
    auto policies = kubectl({"apply", "-f", "-"}, R"(
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: baseline}
spec:
  namespaceSelector: {matchLabels: {zero-trust: "on"}}
  podSecurity: {enforce: Unmanaged}  # Bulkhead's own denials: Pod Security would refuse first
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: lenient}
spec:
  mode: Warn
  namespaceSelector: {matchLabels: {zero-trust: "warn"}}
  podSecurity: {enforce: Unmanaged}  # Bulkhead's own warnings: Pod Security would refuse first
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: guarded}
spec:
  namespaceSelector: {matchLabels: {zero-trust: "guarded"}}
  exceptions: {approverGroups: [security]}
---
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: watching}
spec:
  mode: Audit
  namespaceSelector: {matchLabels: {zero-trust: "audit"}}
  podSecurity: {enforce: Unmanaged}  # Bulkhead's own audit: Pod Security would refuse first
)");
    REQUIRE_MESSAGE(policies.exitCode == 0, policies.err);
    REQUIRE(kubectl({"create", "namespace", "shop"}).exitCode == 0);
    REQUIRE(kubectl({"label", "namespace", "shop", "zero-trust=on"}).exitCode == 0);
    REQUIRE(kubectl({"create", "namespace", "lab"}).exitCode == 0);
    REQUIRE(kubectl({"label", "namespace", "lab", "zero-trust=warn"}).exitCode == 0);
    REQUIRE(kubectl({"create", "namespace", "vault"}).exitCode == 0);
    REQUIRE(kubectl({"label", "namespace", "vault", "zero-trust=guarded"}).exitCode == 0);
    REQUIRE(kubectl({"create", "namespace", "watched"}).exitCode == 0);
    REQUIRE(kubectl({"label", "namespace", "watched", "zero-trust=audit"}).exitCode == 0);
    // Wait until the namespace is segmented and the webhook's caches know the policies: a pod
    // on the host network is then refused.
    REQUIRE(eventually(seconds(30), [] {
      return kubectl({"get", "networkpolicy", "bulkhead-default-deny", "-n", "shop"}).exitCode == 0;
    }));
    REQUIRE(eventually(seconds(30), [] {
      return kubectl({"create", "--dry-run=server", "-f", "-"},
                     pod("probe", "shop", R"("hostNetwork": true,)"))
                 .exitCode != 0;
    }));
    return p;
  }();
  return *process;
}

// The chart's webhook rules are the handler's table (webhooks/admission_rules.h), rule for
// rule: a resource the chart sends but no decider checks would be allowed unread, and one the
// handler checks but the chart never sends would not be guarded at all.
TEST_CASE("the chart's webhook rules equal the handler's table of checked resources") {
  using Rule = std::tuple<std::string, std::string, std::string, std::string>;
  auto rendered = ControlPlane::get().shell(
      "helm template bulkhead '" BULKHEAD_SOURCE_DIR
      "/charts/bulkhead' -n bulkhead-system "
      "--show-only templates/validatingwebhookconfiguration.yaml | python3 -c "
      "'import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))'");
  REQUIRE_MESSAGE(rendered.exitCode == 0, rendered.err);
  const auto config = nlohmann::json::parse(rendered.out);
  std::set<Rule> chart;
  for (const auto& webhook : config["webhooks"]) {
    for (const auto& rule : webhook["rules"]) {
      for (const auto& group : rule["apiGroups"]) {
        for (const auto& version : rule["apiVersions"]) {
          for (const auto& resource : rule["resources"]) {
            for (const auto& op : rule["operations"]) {
              chart.insert({group.get<std::string>(), version.get<std::string>(),
                            resource.get<std::string>(), op.get<std::string>()});
            }
          }
        }
      }
    }
  }
  std::set<Rule> table;
  for (const auto& rule : webhooks::admissionRules()) {
    for (const auto& version : rule.versions) {
      for (const auto& op : rule.operations) {
        table.insert({rule.group, version, rule.resource, op});
      }
    }
  }
  for (const auto& [g, v, r, o] : chart) {
    CHECK_MESSAGE(table.contains({g, v, r, o}), "the chart sends "
                                                    << o << " " << g << "/" << v << " " << r
                                                    << " but the handler has no decider for it");
  }
  for (const auto& [g, v, r, o] : table) {
    CHECK_MESSAGE(chart.contains({g, v, r, o}), "the handler checks "
                                                    << o << " " << g << "/" << v << " " << r
                                                    << " but the chart never sends it");
  }
}

TEST_CASE("a pod on the host network is denied with the exact message; the fix is admitted") {
  webhook();
  auto denied = kubectl({"create", "-f", "-"}, pod("web-1", "shop", R"("hostNetwork": true,)"));
  CHECK(denied.exitCode != 0);
  CHECK_MESSAGE(denied.err.find(std::string(kWebhookDenied) +
                                "bulkhead: pod \"web-1\" in namespace \"shop\" violates "
                                "forbidHostNetwork (spec.hostNetwork=true) of SegmentationPolicy "
                                "\"baseline\"; remove hostNetwork or request a "
                                "SegmentationException") != std::string::npos,
                denied.err);
  CHECK(kubectl({"get", "pod", "web-1", "-n", "shop"}).exitCode != 0);
  auto fixed = kubectl({"create", "-f", "-"}, pod("web-1", "shop", ""));
  CHECK_MESSAGE(fixed.exitCode == 0, fixed.err);
  kubectl({"delete", "pod", "web-1", "-n", "shop", "--wait=false"});
}

TEST_CASE("a missing identity label and a privileged init container of a Deployment are denied") {
  webhook();
  auto unlabelled = kubectl({"create", "-f", "-"}, pod("anon", "shop", "", "{}"));
  CHECK(unlabelled.exitCode != 0);
  CHECK(unlabelled.err.find("violates requiredLabels") != std::string::npos);
  const std::string deployment = R"({"apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "api", "namespace": "shop"},
    "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "api"}},
      "template": {"metadata": {"labels": {"app.kubernetes.io/name": "api"}},
        "spec": {"initContainers": [{"name": "setup", "image": "busybox",
                                     "securityContext": {"privileged": true}}],
                 "containers": [{"name": "api", "image": "api"}]}}}})";
  auto denied = kubectl({"create", "-f", "-"}, deployment);
  CHECK(denied.exitCode != 0);
  CHECK_MESSAGE(denied.err.find("deployment \"api\" in namespace \"shop\" violates "
                                "forbidPrivileged (spec.template.spec.initContainers[0]."
                                "securityContext.privileged=true)") != std::string::npos,
                denied.err);
}

TEST_CASE("each rule's minimal fix is admitted") {
  webhook();
  const std::vector<std::string> fixed = {
      pod("fix-hostnet", "shop", R"("hostNetwork": false,)"),
      pod("fix-pid", "shop", R"("hostPID": false, "hostIPC": false,)"),
      R"({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "fix-port", "namespace": "shop", "labels": {"app.kubernetes.io/name": "w"}},
        "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
          "securityContext": {"privileged": false, "capabilities": {"add": ["CHOWN"], "drop": ["ALL"]}}}]}})",
      R"({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "fix-sidecar", "namespace": "shop",
                     "labels": {"app.kubernetes.io/name": "w"},
                     "annotations": {"sidecar.istio.io/inject": "true"}},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]}})",
  };
  for (const auto& manifest : fixed) {
    auto r = kubectl({"create", "--dry-run=server", "-f", "-"}, manifest);
    CHECK_MESSAGE(r.exitCode == 0, r.err);
  }
}

TEST_CASE("Warn mode admits and kubectl prints the warning") {
  webhook();
  auto warned = kubectl({"create", "-f", "-"}, pod("tool", "lab", R"("hostNetwork": true,)"));
  CHECK_MESSAGE(warned.exitCode == 0, warned.err);
  CHECK(warned.err.find("Warning: bulkhead: pod \"tool\" in namespace \"lab\" violates "
                        "forbidHostNetwork") != std::string::npos);
  kubectl({"delete", "pod", "tool", "-n", "lab", "--wait=false"});
}

TEST_CASE("--dry-run=server writes nothing; excluded namespaces are untouched") {
  webhook();
  auto dry = kubectl({"create", "--dry-run=server", "-f", "-"}, pod("dry", "shop", ""));
  CHECK_MESSAGE(dry.exitCode == 0, dry.err);
  CHECK(kubectl({"get", "pod", "dry", "-n", "shop"}).err.find("NotFound") != std::string::npos);
  // Even while a policy selects kube-system, the webhook configuration never sends its requests:
  // a pod there that breaks two of the policy's rules is admitted.
  REQUIRE(kubectl({"label", "namespace", "kube-system", "zero-trust=on"}).exitCode == 0);
  auto system = kubectl({"create", "--dry-run=server", "-f", "-"},
                        pod("sys", "kube-system", R"("hostNetwork": true,)", "{}"));
  CHECK_MESSAGE(system.exitCode == 0, system.err);
  CHECK(kubectl({"label", "namespace", "kube-system", "zero-trust-"}).exitCode == 0);
}

TEST_CASE("generated objects: a user may not delete them; the controller restores its own") {
  webhook();
  auto denied = kubectl({"delete", "networkpolicy", "bulkhead-default-deny", "-n", "shop"});
  CHECK(denied.exitCode != 0);
  CHECK(denied.err.find("bulkhead: networkpolicy \"bulkhead-default-deny\" in namespace \"shop\" "
                        "is generated by Bulkhead for SegmentationPolicy \"baseline\" (rule "
                        "generatedObject); \"admin\" may not delete it") != std::string::npos);
  CHECK(kubectl({"get", "networkpolicy", "bulkhead-default-deny", "-n", "shop"}).exitCode == 0);
}

TEST_CASE("Services: externalIPs are refused in segmented namespaces") {
  webhook();
  auto denied = kubectl({"create", "-f", "-"}, R"({"apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "leak", "namespace": "shop"},
    "spec": {"ports": [{"port": 80}], "externalIPs": ["203.0.113.7"]}})");
  CHECK(denied.exitCode != 0);
  CHECK(denial(denied).find(
            "bulkhead: service \"leak\" in namespace \"shop\" violates externalIPs "
            "(spec.externalIPs is set) of SegmentationPolicy \"baseline\": segmented namespaces "
            "never allow it, whatever the mode (CVE-2020-8554); remove spec.externalIPs") == 0);
}

TEST_CASE("host ports, host PID, added capabilities and sidecar opt-outs are denied by path") {
  webhook();
  auto hostPort = kubectl({"create", "-f", "-"},
                          R"({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "hp", "namespace": "shop", "labels": {"app.kubernetes.io/name": "hp"}},
    "spec": {"containers": [{"name": "web", "image": "nginx",
                             "ports": [{"containerPort": 80, "hostPort": 8080}]}]}})");
  CHECK(denial(hostPort).find("violates forbidHostPorts "
                              "(spec.containers[0].ports[0].hostPort=8080)") != std::string::npos);
  auto hostPid = kubectl({"create", "-f", "-"}, pod("pid", "shop", R"("hostPID": true,)"));
  CHECK(denial(hostPid).find("violates forbidHostPIDIPC (spec.hostPID=true)") != std::string::npos);
  auto caps = kubectl({"create", "-f", "-"}, R"({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "caps", "namespace": "shop", "labels": {"app.kubernetes.io/name": "c"}},
    "spec": {"containers": [{"name": "web", "image": "nginx",
      "securityContext": {"capabilities": {"add": ["CHOWN", "cap_net_admin"]}}}]}})");
  CHECK(denial(caps).find("violates forbiddenCapabilities "
                          "(spec.containers[0].securityContext.capabilities.add[1]=") !=
        std::string::npos);
  // Istio is served and the policy is STRICT: opting out of the sidecar is refused.
  auto optOut = kubectl({"create", "-f", "-"}, R"({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "nosidecar", "namespace": "shop",
                 "labels": {"app.kubernetes.io/name": "n", "sidecar.istio.io/inject": "false"}},
    "spec": {"containers": [{"name": "web", "image": "nginx"}]}})");
  CHECK(denial(optOut).find("violates requireSidecar") != std::string::npos);
}

TEST_CASE("an ephemeral container added through pods/ephemeralcontainers is checked too") {
  webhook();
  REQUIRE(kubectl({"create", "-f", "-"}, pod("debug-me", "shop", "")).exitCode == 0);
  auto current = kubectl({"get", "pod", "debug-me", "-n", "shop", "-o", "json"});
  REQUIRE(current.exitCode == 0);
  auto withDebug = ControlPlane::get().shell(
      "python3 -c 'import json,sys; p=json.load(sys.stdin); p[\"spec\"][\"ephemeralContainers\"]="
      "[{\"name\":\"debug\",\"image\":\"busybox\",\"securityContext\":{\"capabilities\":"
      "{\"add\":[\"NET_RAW\"]}}}]; print(json.dumps(p))' | kubectl replace --raw "
      "/api/v1/namespaces/shop/pods/debug-me/ephemeralcontainers -f -",
      current.out);
  CHECK(withDebug.exitCode != 0);
  CHECK_MESSAGE(withDebug.err.find("violates forbiddenCapabilities "
                                   "(spec.ephemeralContainers[0].securityContext.capabilities."
                                   "add[0]=") != std::string::npos,
                withDebug.err);
  kubectl({"delete", "pod", "debug-me", "-n", "shop", "--wait=false"});
}

TEST_CASE("a SegmentationException: identity is checked, and an active one exempts its pods") {
  webhook();
  const std::string exception = R"({"apiVersion": "bulkhead.dev/v1alpha1",
    "kind": "SegmentationException", "metadata": {"name": "agent", "namespace": "shop"},
    "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "agent"}},
             "rules": ["forbidHostNetwork"], "reason": "vendor agent needs the host network",
             "expiresAt": "EXPIRES", "requestedBy": "REQUESTER"}})";
  auto fill = [&](const std::string& requester, int hours) {
    std::string e = exception;
    e.replace(e.find("REQUESTER"), 9, requester);
    auto expires =
        shell("date -u -d '+" + std::to_string(hours) + " hours' +%Y-%m-%dT%H:%M:%SZ").out;
    e.replace(e.find("EXPIRES"), 7, expires.substr(0, expires.size() - 1));
    return e;
  };
  auto mismatch = kubectl({"create", "-f", "-"}, fill("mallory", 2));
  CHECK(denial(mismatch).find("bulkhead: SegmentationException \"agent\" in namespace \"shop\" "
                              "has spec.requestedBy \"mallory\" but is created by \"admin\"") !=
        std::string::npos);
  auto tooLong = kubectl({"create", "-f", "-"}, fill("admin", 200));
  CHECK(denial(tooLong).find("more than the maxDuration 168h of SegmentationPolicy \"baseline\" "
                             "ahead") != std::string::npos);
  auto agent =
      pod("agent-1", "shop", R"("hostNetwork": true,)", R"({"app.kubernetes.io/name": "agent"})");
  CHECK(kubectl({"create", "--dry-run=server", "-f", "-"}, agent).exitCode != 0);
  auto valid = kubectl({"create", "-f", "-"}, fill("admin", 2));
  REQUIRE_MESSAGE(valid.exitCode == 0, valid.err);
  CHECK(eventually(seconds(10), [&] {
    return kubectl({"create", "--dry-run=server", "-f", "-"}, agent).exitCode == 0;
  }));
  kubectl({"delete", "segmentationexception", "agent", "-n", "shop"});
}

TEST_CASE("every workload kind's pod template is checked") {
  webhook();
  const std::string spec = R"({"hostNetwork": true, "restartPolicy": "RESTART",
      "containers": [{"name": "c", "image": "busybox"}]})";
  const std::string labels = R"({"app.kubernetes.io/name": "w"})";
  auto withRestart = [&](const std::string& policy) {
    std::string s = spec;
    s.replace(s.find("RESTART"), 7, policy);
    return s;
  };
  auto templ = [&](const std::string& restart) {
    return R"({"metadata": {"labels": )" + labels + R"(}, "spec": )" + withRestart(restart) + "}";
  };
  std::string selector = R"("selector": {"matchLabels": )" + labels + "}";
  std::vector<std::pair<std::string, std::string>> workloads = {
      {"deployment", R"({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
        "spec": {)" + selector +
                         R"(, "template": )" + templ("Always") + "}}"},
      {"statefulset", R"({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "w"},
        "spec": {"serviceName": "w", )" +
                          selector + R"(, "template": )" + templ("Always") + "}}"},
      {"daemonset", R"({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "w"},
        "spec": {)" + selector +
                        R"(, "template": )" + templ("Always") + "}}"},
      {"replicaset", R"({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "w"},
        "spec": {)" + selector +
                         R"(, "template": )" + templ("Always") + "}}"},
      {"job", R"({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "w"},
        "spec": {"template": )" +
                  templ("Never") + "}}"},
      {"cronjob", R"({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "w"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": )" +
                      templ("Never") + "}}}}"},
  };
  for (const auto& [kind, manifest] : workloads) {
    auto denied = kubectl({"create", "-n", "shop", "--dry-run=server", "-f", "-"}, manifest);
    std::string path = kind == "cronjob" ? "spec.jobTemplate.spec.template.spec.hostNetwork"
                                         : "spec.template.spec.hostNetwork";
    CHECK_MESSAGE(denial(denied).find(kind +
                                      " \"w\" in namespace \"shop\" violates "
                                      "forbidHostNetwork (" +
                                      path + "=true)") != std::string::npos,
                  kind << ": " << denied.err);
  }
}

TEST_CASE("the controller's own ServiceAccount may delete a generated object") {
  webhook();
  auto asController = ControlPlane::get().shell(
      "KUBECONFIG=/dev/null kubectl --server \"$TESTENV_APISERVER_URL\" --certificate-authority "
      "\"$TESTENV_CA\" --token \"$(cat " +
      serviceAccountDir() +
      "/token)\" "
      "delete networkpolicy bulkhead-allow-dns -n shop");
  CHECK_MESSAGE(asController.exitCode == 0, asController.err);
  // ...and it comes straight back.
  CHECK(eventually(seconds(10), [] {
    return kubectl({"get", "networkpolicy", "bulkhead-allow-dns", "-n", "shop"}).exitCode == 0;
  }));
}

TEST_CASE("a label change that takes a namespace out of every policy needs an approver") {
  webhook();
  auto denied = kubectl({"label", "namespace", "vault", "zero-trust-"});
  CHECK(denial(denied) ==
        "bulkhead: this label change would take namespace \"vault\" out of every "
        "SegmentationPolicy (it is governed by \"guarded\", rule namespaceSelection); only a "
        "member of its approver groups "
        "may do that\n");
  CHECK(kubectl({"label", "namespace", "vault", "zero-trust-", "--as=bob", "--as-group=security",
                 "--as-group=system:masters"})
            .exitCode == 0);
  CHECK(kubectl({"label", "namespace", "vault", "zero-trust=guarded"}).exitCode == 0);
  // Relabelling within the selection is fine.
  CHECK(kubectl({"label", "namespace", "shop", "team=checkout"}).exitCode == 0);
}

TEST_CASE("approving an exception: only someone else, in the approver group, in their own name") {
  webhook();
  auto expires = shell("date -u -d '+2 hours' +%Y-%m-%dT%H:%M:%SZ").out;
  expires.pop_back();
  const std::string exception = R"({"apiVersion": "bulkhead.dev/v1alpha1",
    "kind": "SegmentationException", "metadata": {"name": "legacy", "namespace": "vault"},
    "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "legacy"}},
             "rules": ["forbidHostNetwork"], "reason": "vendor agent until v5, TICKET-123",
             "expiresAt": ")" + expires +
                                R"(", "requestedBy": "alice"}})";
  std::vector<std::string> asAlice = {"--as=alice", "--as-group=system:masters"};
  auto created = kubectl({"create", "-f", "-", asAlice[0], asAlice[1]}, exception);
  REQUIRE_MESSAGE(created.exitCode == 0, created.err);
  auto approve = [&](const std::vector<std::string>& as, const std::string& approver) {
    std::vector<std::string> args = {"patch",  "segmentationexception",
                                     "legacy", "-n",
                                     "vault",  "--type=merge",
                                     "-p",     R"({"spec":{"approvedBy":")" + approver + R"("}})"};
    args.insert(args.end(), as.begin(), as.end());
    return kubectl(args);
  };
  // Self-approval: refused (the CRD's own validation rule already catches it, before the webhook).
  auto self = approve(asAlice, "alice");
  CHECK(self.exitCode != 0);
  CHECK(self.err.find("approvedBy") != std::string::npos);
  auto outsider = denial(approve({"--as=carol", "--as-group=system:masters"}, "carol"));
  CHECK(outsider.find("bulkhead: SegmentationException \"legacy\"") == 0);
  CHECK(outsider.find("cannot be approved by \"carol\", who is in no approver group") !=
        std::string::npos);
  auto onBehalf =
      denial(approve({"--as=bob", "--as-group=security", "--as-group=system:masters"}, "dave"));
  CHECK(onBehalf.find("bulkhead: SegmentationException \"legacy\"") == 0);
  CHECK(onBehalf.find("cannot be approved on behalf of \"dave\" by \"bob\"") != std::string::npos);
  auto approved = approve({"--as=bob", "--as-group=security", "--as-group=system:masters"}, "bob");
  CHECK_MESSAGE(approved.exitCode == 0, approved.err);
}

TEST_CASE("Audit mode admits, counts the violation and records an Event") {
  auto& process = webhook();
  double before = process.metric(
      "bulkhead_admission_requests_total{rule=\"forbidHostNetwork\","
      "decision=\"audit\"");
  auto audited = kubectl({"create", "--dry-run=server", "-f", "-"},
                         pod("audited", "watched", R"("hostNetwork": true,)"));
  CHECK_MESSAGE(audited.exitCode == 0, audited.err);
  CHECK(audited.err.find("Warning") == std::string::npos);
  CHECK(process.metric("bulkhead_admission_requests_total{rule=\"forbidHostNetwork\","
                       "decision=\"audit\"") == before + 1);
  // A dry run records nothing; a real create records a PolicyViolation Event.
  CHECK(kubectl({"create", "-f", "-"}, pod("audited", "watched", R"("hostNetwork": true,)"))
            .exitCode == 0);
  CHECK(eventually(seconds(10), [] {
    auto events = kubectl({"get", "events", "-n", "watched", "--field-selector",
                           "reason=PolicyViolation", "-o", "jsonpath={.items[*].message}"});
    return events.out.find(
               "pod \"audited\" in namespace \"watched\" violates "
               "forbidHostNetwork") != std::string::npos &&
           events.out.find("audited") == events.out.rfind("audited");  // exactly one
  }));
  // One Event, not an aggregated one: the dry run above counted as nothing.
  CHECK(kubectl({"get", "events", "-n", "watched", "--field-selector", "reason=PolicyViolation",
                 "-o", "jsonpath={.items[*].count}"})
            .out == "1");
  kubectl({"delete", "pod", "audited", "-n", "watched", "--wait=false"});
}

}  // namespace
}  // namespace bulkhead::testing
