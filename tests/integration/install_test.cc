// The chart as platform teams meet it: `helm install` with real Helm into a real API server, then
// `bulkhead` running with the chart's Deployment args and its ServiceAccount's token (no kubelet
// here, so the process runs on loopback and the chart's webhook configuration points at it).
// Cases run in order and build on each other: install, RBAC failure and `helm upgrade`, an API
// server outage, certificate rotation under load with two replicas, `helm uninstall`.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>

#include "common/base64.h"
#include "tests/support/bench_util.h"
#include "tests/support/bulkhead_process.h"
#include "tests/support/control_plane.h"

namespace bulkhead::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const std::string kChart = BULKHEAD_SOURCE_DIR "/charts/bulkhead";


ProcessResult sh(const std::string& script) { return ControlPlane::get().shell(script); }

std::string pod(const std::string& name, const std::string& ns, const std::string& extraSpec) {
  return R"({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": ")" + name +
         R"(", "namespace": ")" + ns + R"(", "labels": {"app.kubernetes.io/name": "web"}},
    "spec": {)" + extraSpec + R"("containers": [{"name": "web", "image": "nginx"}]}})";
}

int countLines(const std::string& file, const std::string& text) {
  auto r = sh("grep -cF -- '" + text + "' '" + file + "' || true");
  return std::stoi(r.out.empty() ? "0" : r.out);
}

// The process serving the chart's webhook configuration, and its port.
struct Install {
  int port = freePort();
  std::unique_ptr<BulkheadProcess> process;
};

Install& install() {
  static Install* installed = [] {
    auto* i = new Install();
    ControlPlane::atTeardown([i] { delete i; });
    auto istio = sh("kubectl apply --server-side -f \"$TESTENV_ISTIO_CRDS\" >/dev/null");
    REQUIRE_MESSAGE(istio.exitCode == 0, istio.err);
    installChart(i->port);
    i->process = std::make_unique<BulkheadProcess>("install", webhookArgs(i->port));
    REQUIRE(i->process->waitForLog("serving the admission webhook", 60));
    return i;
  }();
  return *installed;
}

bool hostNetworkDenied(const std::string& ns) {
  auto r = kubectl({"create", "--dry-run=server", "-f", "-"},
                   pod("probe", ns, R"("hostNetwork": true,)"));
  return r.exitCode != 0 && r.err.find("violates forbidHostNetwork") != std::string::npos;
}

TEST_CASE("helm install; bulkhead as the chart's ServiceAccount does all its work, no Forbidden") {
  auto& i = install();
  // What Helm installed.
  auto release = sh("helm status bulkhead -n bulkhead-system -o json");
  REQUIRE(release.exitCode == 0);
  CHECK(release.out.find("\"status\":\"deployed\"") != std::string::npos);
  for (auto kind : {"deployment/bulkhead", "service/bulkhead", "poddisruptionbudget/bulkhead",
                    "serviceaccount/bulkhead"}) {
    CHECK_MESSAGE(kubectl({"get", kind, "-n", "bulkhead-system"}).exitCode == 0, kind);
  }
  // The leader made the certificate and wrote the CA into the chart's webhook configuration.
  REQUIRE(eventually(seconds(30), [] {
    return !kubectl({"get", "validatingwebhookconfiguration", "bulkhead", "-o",
                     "jsonpath={.webhooks[0].clientConfig.caBundle}"})
                .out.empty();
  }));
  auto secretType = kubectl({"get", "secret", "bulkhead-webhook-tls", "-n", "bulkhead-system",
                             "-o", "jsonpath={.type}"});
  CHECK(secretType.out == "kubernetes.io/tls");

  // The whole job: a policy, two selected namespaces, Istio present, generated objects, a Warn
  // namespace, an exception, events, status.
  auto applied = kubectl({"apply", "-f", "-"}, R"(
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: baseline}
spec:
  namespaceSelector: {matchLabels: {zero-trust: "on"}}
  podSecurity: {enforce: Unmanaged}  # probes Bulkhead's own denial: Pod Security would refuse first
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {zero-trust: "on"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: payments, labels: {zero-trust: "on"}}
)");
  REQUIRE_MESSAGE(applied.exitCode == 0, applied.err);
  REQUIRE(eventually(seconds(60), [] {
    return kubectl({"get", "segpol", "baseline", "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"})
               .out == "True";
  }));
  CHECK(kubectl({"get", "peerauthentication", "bulkhead-mtls", "-n", "payments"}).exitCode == 0);
  REQUIRE(eventually(seconds(30), [] { return hostNetworkDenied("shop"); }));
  auto admitted = kubectl({"create", "--dry-run=server", "-f", "-"}, pod("web", "shop", ""));
  CHECK_MESSAGE(admitted.exitCode == 0, admitted.err);
  auto guarded = kubectl({"delete", "networkpolicy", "bulkhead-default-deny", "-n", "shop",
                          "--dry-run=server"});
  CHECK(guarded.exitCode != 0);
  CHECK(guarded.err.find("is generated by Bulkhead") != std::string::npos);
  CHECK(kubectl({"get", "lease", "bulkhead", "-n", "bulkhead-system"}).exitCode == 0);
  CHECK(eventually(seconds(10), [] {
    return !kubectl({"get", "events", "-n", "shop", "--field-selector", "reason=Segmented", "-o",
                     "name"})
                .out.empty();
  }));

  const std::string log = i.process->logFile();
  CHECK_MESSAGE(countLines(log, "orbidden") == 0, "see " << log);
  CHECK(countLines(log, "\"level\":\"error\"") == 0);
  CHECK(countLines(log, "webhook certificates: bootstrap") == 1);
  CHECK(countLines(log, "webhook certificates: publish-bundle") == 1);
}

TEST_CASE("removing one RBAC rule shows in the log and the status; helm upgrade restores it") {
  auto& i = install();
  // Take networkpolicies away from the controller's ClusterRole.
  auto removed = sh(
      "kubectl get clusterrole bulkhead-controller -o json | python3 -c '"
      "import json,sys; r=json.load(sys.stdin); "
      "r[\"rules\"]=[x for x in r[\"rules\"] if \"networkpolicies\" not in x[\"resources\"]]; "
      "print(json.dumps(r))' | kubectl replace -f -");
  REQUIRE_MESSAGE(removed.exitCode == 0, removed.err);
  REQUIRE(kubectl({"create", "namespace", "orders"}).exitCode == 0);
  REQUIRE(kubectl({"label", "namespace", "orders", "zero-trust=on"}).exitCode == 0);
  const std::string log = i.process->logFile();
  CHECK(i.process->waitForLog(
      "Forbidden: writing NetworkPolicy orders/bulkhead-default-deny: networkpolicies", 60));
  std::string message;
  CHECK(eventually(seconds(60), [&] {
    message = kubectl({"get", "segpol", "baseline", "-o",
                       "jsonpath={.status.conditions[?(@.type==\"Ready\")].message}"})
                  .out;
    return message.find("forbidden") != std::string::npos;
  }));
  INFO("Ready message: " << message);
  CHECK(message.find("User \"system:serviceaccount:bulkhead-system:bulkhead\" cannot") !=
        std::string::npos);

  // helm upgrade puts the rule back (and must leave the caBundle bulkhead wrote alone).
  auto upgraded = sh("helm upgrade bulkhead '" + kChart +
                     "' -n bulkhead-system --reuse-values --set logLevel=debug --wait=false");
  REQUIRE_MESSAGE(upgraded.exitCode == 0, upgraded.err);
  CHECK(kubectl({"get", "validatingwebhookconfiguration", "bulkhead", "-o",
                 "jsonpath={.webhooks[0].clientConfig.caBundle}"})
            .out.size() > 100);
  CHECK(eventually(seconds(60), [] {
    return kubectl({"get", "networkpolicy", "bulkhead-default-deny", "-n", "orders"}).exitCode ==
           0;
  }));
  CHECK(eventually(seconds(60), [] {
    return kubectl({"get", "segpol", "baseline", "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"})
               .out == "True";
  }));
  CHECK(hostNetworkDenied("orders"));
  auto args = kubectl({"get", "deployment", "bulkhead", "-n", "bulkhead-system", "-o",
                       "jsonpath={.spec.template.spec.containers[0].args}"});
  CHECK(args.out.find("--log-level=debug") != std::string::npos);
}

std::string lease(const std::string& field) {
  return kubectl({"get", "lease", "bulkhead", "-n", "bulkhead-system", "-o",
                  "jsonpath={.spec." + field + "}"})
      .out;
}

std::string defaultDenyUid(const std::string& ns) {
  return kubectl({"get", "networkpolicy", "bulkhead-default-deny", "-n", ns, "-o",
                  "jsonpath={.metadata.uid}"})
      .out;
}

TEST_CASE(
    "an API server outage past the renew deadline: the webhook keeps serving, the Lease is "
    "won again and drift made meanwhile is repaired") {
  auto& i = install();
  // A short Lease, so that the 20 s outage is several renew deadlines long.
  i.process.reset();
  auto args = webhookArgs(i.port);
  args.insert(args.end(), {"--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline",
                           "3s", "--leader-elect-retry-period", "1s"});
  i.process = std::make_unique<BulkheadProcess>("outage", args);
  REQUIRE(i.process->waitForLog("segmentation controller started", 60));
  REQUIRE(eventually(seconds(30), [] { return hostNetworkDenied("shop"); }));
  const std::string uidBefore = defaultDenyUid("shop");
  REQUIRE(!uidBefore.empty());
  REQUIRE(lease("holderIdentity") == "bulkhead-under-test");
  const std::string renewedBefore = lease("renewTime");

  auto& cp = ControlPlane::get();
  cp.stopApiServer();
  const auto stoppedAt = std::chrono::steady_clock::now();
  CHECK(i.process->waitForLog(
      "lost leadership; controllers stopped, webhook keeps serving, campaigning again", 15));
  // Drift while nobody leads, straight in etcd: through the API the webhook refuses it.
  auto deleted = sh("curl -fsS -X POST \"$TESTENV_ETCD_URL/v3/kv/deleterange\" -d '{\"key\": \"" +
                    base64Encode("/registry/networkpolicies/shop/bulkhead-default-deny") + "\"}'");
  REQUIRE_MESSAGE(deleted.exitCode == 0, deleted.err);
  CHECK_MESSAGE(deleted.out.find(R"("deleted":"1")") != std::string::npos, deleted.out);
  std::this_thread::sleep_until(stoppedAt + seconds(20));
  cp.startApiServer();

  // The same process (its /metrics answers) judges admission from its caches, leads again and
  // recreates the deleted NetworkPolicy.
  CHECK(eventually(seconds(30), [] { return hostNetworkDenied("shop"); }));
  CHECK(eventually(seconds(30), [&] {
    return lease("holderIdentity") == "bulkhead-under-test" &&
           lease("renewTime") != renewedBefore && i.process->metric("bulkhead_leader") == 1;
  }));
  CHECK(eventually(seconds(30), [&] {
    const std::string uid = defaultDenyUid("shop");
    return !uid.empty() && uid != uidBefore;
  }));
  const std::string log = i.process->logFile();
  CHECK(countLines(log, "\"msg\":\"became leader\"") == 2);
  CHECK(countLines(log, "\"msg\":\"segmentation controller started\"") == 2);
}

// The API server's own count of calls to our webhook that failed (TLS, timeouts...).
double apiServerWebhookCallErrors() {
  auto r = sh("kubectl get --raw /metrics | grep '^apiserver_admission_webhook_rejection_count' | "
              "grep 'name=\"validate.bulkhead.dev\"' | grep 'calling_webhook_error' | "
              "awk '{s+=$NF} END {print s+0}'");
  REQUIRE(r.exitCode == 0);
  return std::stod(r.out);
}

TEST_CASE("certificates rotate under load, CA included: zero failed requests, both replicas "
          "reload") {
  auto& i = install();
  // Two replicas with very short validities: a serving certificate lives 20 s and is renewed
  // 10 s before it expires; a CA lives 50 s and is renewed 30 s before (20 + 10), so in 55 s
  // there are two CA rotations, the pruning of the first CA, and several serving renewals. The
  // first replica serves the chart's webhook
  // configuration; the second only has to keep up.
  i.process.reset();
  // Certificates are only renewed near their expiry, so the Secret goes: the webhook
  // configuration still trusts its CA, so the leader stages a new CA next to it (no bootstrap)
  // and the short validities below apply from the first new certificate.
  REQUIRE(kubectl({"delete", "secret", "bulkhead-webhook-tls", "-n", "bulkhead-system"})
              .exitCode == 0);
  std::vector<std::string> shortLived = {"--ca-validity", "50s", "--cert-validity", "20s",
                                         "--cert-renew-before", "10s"};
  auto args = webhookArgs(i.port);
  args.insert(args.end(), shortLived.begin(), shortLived.end());
  i.process = std::make_unique<BulkheadProcess>("rotation-1", args);
  REQUIRE(i.process->waitForLog("serving the admission webhook", 60));
  REQUIRE(eventually(seconds(30), [] { return hostNetworkDenied("shop"); }));
  const int otherPort = freePort();
  args = webhookArgs(otherPort);
  args.insert(args.end(), shortLived.begin(), shortLived.end());
  args.insert(args.end(), {"--leader-election-identity", "second-replica"});
  BulkheadProcess second("rotation-2", args);
  REQUIRE(second.waitForLog("serving the admission webhook", 60));

  const double errorsBefore = apiServerWebhookCallErrors();
  auto client = unthrottledClient(ControlPlane::get().kubeconfig());
  std::atomic<bool> done{false};
  std::atomic<int> allowed{0}, denied{0}, failed{0};
  std::mutex mu;
  std::string firstFailure;
  auto load = [&](int worker) {
    for (int n = 0; !done.load(); ++n) {
      const bool bad = (n + worker) % 2 == 1;
      auto r = client->raw("POST", "/api/v1/namespaces/shop/pods?dryRun=All",
                           pod("load-" + std::to_string(worker) + "-" + std::to_string(n), "shop",
                               bad ? R"("hostNetwork": true,)" : ""));
      if (!bad && r.ok()) {
        ++allowed;
      } else if (bad && !r.ok() &&
                 r.status().message().find("violates forbidHostNetwork") != std::string::npos) {
        ++denied;
      } else {
        ++failed;
        std::lock_guard lock(mu);
        if (firstFailure.empty()) {
          firstFailure = r.ok() ? "a hostNetwork pod was admitted" : r.status().toString();
        }
      }
    }
  };
  std::thread a(load, 0), b(load, 1);
  // Long enough for several serving rotations and at least one CA rotation with its overlap
  // and the pruning of the expired CA.
  const auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(seconds(25));
  // Someone deletes the Secret mid-flight: replicas keep serving what they have, the leader
  // stages a new CA next to the one the API servers trust, and nothing fails.
  REQUIRE(kubectl({"delete", "secret", "bulkhead-webhook-tls", "-n", "bulkhead-system"})
              .exitCode == 0);
  std::this_thread::sleep_until(start + seconds(60));
  done = true;
  a.join();
  b.join();

  MESSAGE("admission requests during rotation: " << allowed.load() << " allowed, "
                                                 << denied.load() << " denied, " << failed.load()
                                                 << " failed");
  CHECK_MESSAGE(failed == 0, firstFailure);
  CHECK(allowed + denied > 200);
  CHECK(apiServerWebhookCallErrors() == errorsBefore);
  // Whichever replica leads did both kinds of rotation; both replicas reloaded each time.
  const std::string logs = i.process->logFile() + "' '" + second.logFile();
  auto actions = [&](const std::string& action) {
    auto r = sh("cat '" + logs + "' | grep -cF 'webhook certificates: " + action + "' || true");
    return std::stoi(r.out);
  };
  CHECK(actions("bootstrap") == 0);
  CHECK(countLines(i.process->logFile(), "does not exist; staging a new CA next to the trusted") +
            countLines(second.logFile(),
                       "does not exist; staging a new CA next to the trusted") ==
        2);  // at the start and mid-flight
  CHECK(actions("stage-ca") >= 2);
  CHECK(actions("issue-serving") >= 4);
  CHECK(actions("prune-bundle") >= 1);
  CHECK(countLines(i.process->logFile(), "webhook certificate reloaded") >= 3);
  CHECK(countLines(second.logFile(), "webhook certificate reloaded") >= 3);
  CHECK(countLines(i.process->logFile(), "does not load") == 0);
  CHECK(countLines(second.logFile(), "does not load") == 0);
}

TEST_CASE("helm uninstall removes Bulkhead and its webhook; segmentation stays in place") {
  auto& i = install();
  i.process.reset();
  auto uninstalled = sh("helm uninstall bulkhead -n bulkhead-system --wait=false");
  REQUIRE_MESSAGE(uninstalled.exitCode == 0, uninstalled.err);
  for (auto kind : {"deployment/bulkhead", "service/bulkhead", "serviceaccount/bulkhead"}) {
    CHECK_MESSAGE(kubectl({"get", kind, "-n", "bulkhead-system"}).exitCode != 0, kind);
  }
  CHECK(kubectl({"get", "validatingwebhookconfiguration", "bulkhead"}).exitCode != 0);
  CHECK(kubectl({"get", "clusterrole", "bulkhead-controller"}).exitCode != 0);
  // No webhook: nothing is checked any more.
  CHECK(eventually(seconds(30), [] {
    return kubectl({"create", "--dry-run=server", "-f", "-"},
                   pod("free", "shop", R"("hostNetwork": true,)"))
               .exitCode == 0;
  }));
  // What Bulkhead generated, its CRDs and policies stay: uninstalling never opens the network.
  CHECK(kubectl({"get", "networkpolicy", "bulkhead-default-deny", "-n", "shop"}).exitCode == 0);
  CHECK(kubectl({"get", "peerauthentication", "bulkhead-mtls", "-n", "shop"}).exitCode == 0);
  CHECK(kubectl({"get", "crd", "segmentationpolicies.bulkhead.dev"}).exitCode == 0);
  CHECK(kubectl({"get", "segpol", "baseline"}).exitCode == 0);
  // The Secret Bulkhead made is not Helm's: the README says to delete it.
  CHECK(kubectl({"get", "secret", "bulkhead-webhook-tls", "-n", "bulkhead-system"}).exitCode ==
        0);
}

}  // namespace
}  // namespace bulkhead::testing
