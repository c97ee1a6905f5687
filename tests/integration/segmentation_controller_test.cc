// The segmentation controller, run as the real `bulkhead` binary with the chart's ServiceAccount
// and RBAC, against a real kube-apiserver with Bulkhead's and Istio's real CRDs.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <thread>

#include "common/clock.h"
#include "common/time_format.h"
#include "kube/client_impl.h"
#include "kube/config.h"
#include "policy/segmentation.h"
#include "tests/support/bench_util.h"
#include "tests/support/bulkhead_process.h"
#include "tests/support/control_plane.h"

namespace bulkhead {
namespace {

using testing::BulkheadProcess;
using testing::ControlPlane;
using testing::createNamespace;
using testing::eventually;
using testing::serviceAccountDir;
using kube::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Steady = std::chrono::steady_clock;

const kube::ResourceType& kPolicies = kube::resources::kSegmentationPolicies;
const kube::ResourceType& kPeerAuths = kube::resources::kPeerAuthentications;
constexpr const char* kManaged = "app.kubernetes.io/managed-by=bulkhead";

std::shared_ptr<kube::Client> admin() {
  static std::shared_ptr<kube::Client> client =
      testing::unthrottledClient(ControlPlane::get().kubeconfig());
  return client;
}


void run(const std::string& script) {
  auto r = ControlPlane::get().shell(script);
  REQUIRE_MESSAGE(r.exitCode == 0, script << "\n" << r.out << r.err);
}


json policyObject(const std::string& name, json spec) {
  return {{"apiVersion", "bulkhead.dev/v1alpha1"},
          {"kind", "SegmentationPolicy"},
          {"metadata", {{"name", name}}},
          {"spec", std::move(spec)}};
}

// kind/name -> object, of the generated objects in `ns`.
std::map<std::string, json> generated(const std::string& ns, bool withIstio) {
  std::map<std::string, json> out;
  kube::ListOptions opts;
  opts.labelSelector = kManaged;
  std::vector<kube::ResourceType> types = {kube::resources::kNetworkPolicies};
  if (withIstio) {
    types.push_back(kPeerAuths);
    types.push_back({"security.istio.io", "v1", "authorizationpolicies", "AuthorizationPolicy",
                     true});
  }
  for (const auto& t : types) {
    auto list = admin()->list(t, ns, opts);
    REQUIRE_MESSAGE(list.ok(), list.status().toString());
    for (auto& o : list->items) {
      out[t.kind + "/" + o["metadata"]["name"].get<std::string>()] = o;
    }
  }
  return out;
}

// Do the generated objects in `ns` equal exactly what the pure core wants for `policyName`?
bool segmentedExactly(const std::string& ns, const json& policyObj, bool mesh) {
  auto p = policy::decodeSegmentationPolicy(policyObj);
  REQUIRE(p.ok());
  auto want = policy::desiredObjects(*p, {ns, {}}, {"bulkhead-system", mesh, {}});
  auto have = generated(ns, mesh);
  if (have.size() != want.size()) {
    return false;
  }
  for (const auto& w : want) {
    auto it = have.find(w["kind"].get<std::string>() + "/" + w["metadata"]["name"].get<std::string>());
    if (it == have.end() || !policy::matchesDesired(it->second, w)) {
      return false;
    }
  }
  return true;
}

json status(const std::string& policyName) {
  auto p = admin()->get(kPolicies, "", policyName);
  return p.ok() ? p->value("status", json::object()) : json::object();
}

std::string conditionStatus(const json& st, const std::string& type) {
  for (const auto& c : st.value("conditions", json::array())) {
    if (c["type"] == type) {
      return c["status"];
    }
  }
  return "";
}

std::string conditionMessage(const json& st, const std::string& type) {
  for (const auto& c : st.value("conditions", json::array())) {
    if (c["type"] == type) {
      return c["message"];
    }
  }
  return "";
}

TEST_CASE("SegmentationPolicy end to end: select, segment, repair, conflict, unselect, delete") {
  serviceAccountDir();
  BulkheadProcess controller("controller-main");
  json zeroTrust = policyObject("zero-trust",
                                {{"namespaceSelector", {{"matchLabels", {{"zero-trust", "on"}}}}}});
  REQUIRE(admin()->create(kPolicies, zeroTrust).ok());
  for (int i = 0; i < 20; ++i) {
    std::map<std::string, std::string> labels;
    if (i % 2 == 0) {
      labels["zero-trust"] = "on";
    }
    REQUIRE(createNamespace("seg-" + std::to_string(i), labels));
  }
  auto selected = [](int i) { return i % 2 == 0; };

  // 1. Without Istio: exactly the NetworkPolicies in the 10 labelled namespaces, nothing else.
  CHECK(eventually(seconds(30), [&] {
    for (int i = 0; i < 20; ++i) {
      std::string ns = "seg-" + std::to_string(i);
      if (selected(i) ? !segmentedExactly(ns, zeroTrust, false) : !generated(ns, false).empty()) {
        return false;
      }
    }
    return true;
  }));
  CHECK(eventually(seconds(10), [&] {
    json st = status("zero-trust");
    return st.value("selectedNamespaces", -1) == 10 && st.value("segmentedNamespaces", -1) == 10 &&
           conditionStatus(st, "Ready") == "True" &&
           conditionStatus(st, "MeshAvailable") == "False" &&
           conditionStatus(st, "Conflict") == "False";
  }));
  json st = status("zero-trust");
  CHECK(conditionMessage(st, "Ready") == "10 of 10 namespaces segmented");
  CHECK(st["observedGeneration"] == 1);
  auto finalizers = admin()->get(kPolicies, "", "zero-trust")->at("metadata")["finalizers"];
  CHECK(finalizers == json::array({"bulkhead.dev/cleanup"}));
  // Events on the namespace.
  auto events = admin()->list(kube::resources::kEvents, "seg-0", {});
  REQUIRE(events.ok());
  bool segmentedEvent = false;
  for (const auto& e : events->items) {
    segmentedEvent |= e["reason"] == "Segmented" &&
                      e["message"] == "segmented by SegmentationPolicy \"zero-trust\" (3 objects)";
  }
  CHECK(segmentedEvent);

  // 2. Istio's CRDs arrive later: PeerAuthentications follow without a restart, and the API
  // server accepts them against Istio's own schema.
  run("kubectl apply --server-side -f \"$TESTENV_ISTIO_CRDS\" >/dev/null && kubectl wait --for "
      "condition=established --timeout=60s crd/peerauthentications.security.istio.io >/dev/null");
  CHECK(eventually(seconds(30), [&] {
    for (int i = 0; i < 20; i += 2) {
      if (!segmentedExactly("seg-" + std::to_string(i), zeroTrust, true)) {
        return false;
      }
    }
    return true;
  }));
  CHECK(eventually(seconds(10), [&] {
    json s = status("zero-trust");
    return conditionStatus(s, "MeshAvailable") == "True" && s.value("segmentedNamespaces", -1) == 10;
  }));

  // A full reconcile of everything with nothing changed writes nothing. (A change of the
  // policy's spec enqueues every namespace, as the periodic resync does; this one excludes a
  // namespace that does not exist, so no namespace's objects change.)
  double writes = controller.metric("bulkhead_api_writes_total");
  double reconciles = controller.metric("bulkhead_reconcile_total");
  REQUIRE(admin()->mergePatch(kPolicies, "", "zero-trust",
                              {{"spec", {{"excludedNamespaces", {"no-such-namespace"}}}}}).ok());
  CHECK(eventually(seconds(10), [&] {
    return controller.metric("bulkhead_reconcile_total") >= reconciles + 20;
  }));
  CHECK(controller.metric("bulkhead_api_writes_total") == writes);
  // 10 namespaces x (3 NetworkPolicies + 1 PeerAuthentication + 1 apply of the namespace's Pod
  // Security labels)
  CHECK(writes == 50);

  // A metadata-only change (as the controller's own status and finalizer writes are) looks at
  // the policy again but at no namespace: the same update handler runs before both.
  const std::string namespaceReconciles = "bulkhead_reconcile_total{controller=\"namespace\"";
  const std::string policyReconciles =
      "bulkhead_reconcile_total{controller=\"segmentationpolicy\"";
  CHECK(eventually(seconds(10), [&] {
    return controller.metric("bulkhead_reconcile_total") >= reconciles + 20;  // settled
  }));
  double namespacesBefore = controller.metric(namespaceReconciles);
  double policiesBefore = controller.metric(policyReconciles);
  REQUIRE(admin()->mergePatch(kPolicies, "", "zero-trust",
                              {{"metadata", {{"annotations", {{"touched", "yes"}}}}}}).ok());
  CHECK(eventually(seconds(10),
                   [&] { return controller.metric(policyReconciles) > policiesBefore; }));
  CHECK(controller.metric(namespaceReconciles) == namespacesBefore);

  // 3. Drift is repaired; a user's own NetworkPolicy is never touched.
  json userNp = {{"apiVersion", "networking.k8s.io/v1"},
                 {"kind", "NetworkPolicy"},
                 {"metadata", {{"name", "allow-web"}, {"namespace", "seg-0"}}},
                 {"spec",
                  {{"podSelector", {{"matchLabels", {{"app", "web"}}}}},
                   {"ingress", {json::object()}}}}};
  auto user = admin()->create(kube::resources::kNetworkPolicies, userNp);
  REQUIRE(user.ok());
  REQUIRE(admin()->remove(kube::resources::kNetworkPolicies, "seg-0", "bulkhead-default-deny").ok());
  auto deletedAt = Steady::now();
  CHECK(eventually(seconds(2), [&] { return segmentedExactly("seg-0", zeroTrust, true); }));
  MESSAGE("deleted default-deny restored after "
          << std::chrono::duration<double>(Steady::now() - deletedAt).count() << " s");
  auto allowAll = admin()->mergePatch(kube::resources::kNetworkPolicies, "seg-2",
                                      "bulkhead-default-deny",
                                      {{"spec", {{"ingress", {json::object()}}}}});
  REQUIRE(allowAll.ok());
  CHECK(eventually(seconds(5), [&] { return segmentedExactly("seg-2", zeroTrust, true); }));
  REQUIRE(admin()->mergePatch(kPeerAuths, "seg-4", "bulkhead-mtls",
                              {{"spec", {{"mtls", {{"mode", "PERMISSIVE"}}}}}}).ok());
  CHECK(eventually(seconds(5), [&] {
    auto pa = admin()->get(kPeerAuths, "seg-4", "bulkhead-mtls");
    return pa.ok() && (*pa)["spec"]["mtls"]["mode"] == "STRICT";
  }));
  auto userNow = admin()->get(kube::resources::kNetworkPolicies, "seg-0", "allow-web");
  REQUIRE(userNow.ok());
  CHECK((*userNow)["metadata"]["resourceVersion"] == (*user)["metadata"]["resourceVersion"]);
  bool repairedEvent = false;
  auto seg0Events = admin()->list(kube::resources::kEvents, "seg-0", {});
  REQUIRE(seg0Events.ok());
  for (const auto& e : seg0Events->items) {
    repairedEvent |= e["reason"] == "Repaired" &&
                     e["message"] == "restored NetworkPolicy bulkhead-default-deny (it had been "
                                     "deleted)";
  }
  CHECK(repairedEvent);

  // 4. A second policy of higher priority wins where both select; the loser reports Conflict.
  json critical = policyObject("critical", {{"priority", 10},
                                            {"namespaceSelector",
                                             {{"matchLabels", {{"tier", "critical"}}}}},
                                            {"network", {{"allowSameNamespace", true}}}});
  REQUIRE(admin()->create(kPolicies, critical).ok());
  REQUIRE(admin()->mergePatch(kube::resources::kNamespaces, "", "seg-6",
                              {{"metadata", {{"labels", {{"tier", "critical"}}}}}}).ok());
  CHECK(eventually(seconds(10), [&] { return segmentedExactly("seg-6", critical, true); }));
  CHECK(eventually(seconds(10), [&] {
    json s = status("zero-trust");
    return conditionStatus(s, "Conflict") == "True" &&
           s["conflictingNamespaces"] == json::array({"seg-6"}) &&
           s.value("selectedNamespaces", -1) == 10 && s.value("segmentedNamespaces", -1) == 9;
  }));
  CHECK(conditionMessage(status("zero-trust"), "Conflict") ==
        "namespaces governed by a policy of higher priority: seg-6 (by critical)");
  CHECK(eventually(seconds(10), [&] {
    json s = status("critical");
    return s.value("selectedNamespaces", -1) == 1 && s.value("segmentedNamespaces", -1) == 1 &&
           conditionStatus(s, "Conflict") == "False" && conditionStatus(s, "Ready") == "True";
  }));

  // 5. Deleting the winner hands the namespace back; its finalizer goes after its objects.
  REQUIRE(admin()->remove(kPolicies, "", "critical").ok());
  CHECK(eventually(seconds(10), [&] {
    return admin()->get(kPolicies, "", "critical").status().code() == StatusCode::kNotFound;
  }));
  CHECK(eventually(seconds(10), [&] { return segmentedExactly("seg-6", zeroTrust, true); }));

  // 6. Removing the label removes the generated objects.
  REQUIRE(admin()->mergePatch(kube::resources::kNamespaces, "", "seg-8",
                              {{"metadata", {{"labels", {{"zero-trust", nullptr}}}}}}).ok());
  CHECK(eventually(seconds(10), [&] { return generated("seg-8", true).empty(); }));
  CHECK(eventually(seconds(10), [&] {
    json s = status("zero-trust");
    return s.value("selectedNamespaces", -1) == 9 && s.value("segmentedNamespaces", -1) == 9 &&
           conditionStatus(s, "Conflict") == "False";
  }));

  // 7. Deleting the policy removes all of its objects, then its finalizer.
  REQUIRE(admin()->remove(kPolicies, "", "zero-trust").ok());
  CHECK(eventually(seconds(15), [&] {
    return admin()->get(kPolicies, "", "zero-trust").status().code() == StatusCode::kNotFound;
  }));
  for (int i = 0; i < 20; ++i) {
    CHECK(generated("seg-" + std::to_string(i), true).empty());
  }
  CHECK(admin()->get(kube::resources::kNetworkPolicies, "seg-0", "allow-web").ok());
}

TEST_CASE("SegmentationException status: Pending, Active on approval, Expired at expiresAt") {
  serviceAccountDir();
  BulkheadProcess controller("controller-exceptions");
  json guarded = policyObject("guarded", {{"namespaceSelector", {{"matchLabels", {{"vault", "on"}}}}},
                                          {"exceptions", {{"approverGroups", {"security"}}}}});
  REQUIRE(admin()->create(kPolicies, guarded).ok());
  REQUIRE(createNamespace("vault", {{"vault", "on"}}));
  REQUIRE(createNamespace("open-ns", {}));
  const kube::ResourceType& kExceptions = kube::resources::kSegmentationExceptions;
  auto exception = [](const std::string& name, const std::string& ns, seconds lifetime) {
    return json{{"apiVersion", "bulkhead.dev/v1alpha1"},
                {"kind", "SegmentationException"},
                {"metadata", {{"name", name}, {"namespace", ns}}},
                {"spec",
                 {{"podSelector", {{"matchLabels", {{"app", "agent"}}}}},
                  {"rules", {"forbidHostNetwork"}},
                  {"reason", "vendor agent needs the host network (TICKET-1)"},
                  {"expiresAt", formatRfc3339(std::chrono::system_clock::now() + lifetime)},
                  {"requestedBy", "alice"}}}};
  };
  auto phase = [&](const std::string& ns, const std::string& name) {
    auto got = admin()->get(kExceptions, ns, name);
    return got.ok() ? got->value("status", json::object()).value("phase", "") : "";
  };
  // Needs approval in vault: Pending until approvedBy is set, then Active.
  REQUIRE(admin()->create(kExceptions, exception("agent", "vault", seconds(3600))).ok());
  CHECK(eventually(seconds(15), [&] { return phase("vault", "agent") == "Pending"; }));
  auto approved = admin()->get(kExceptions, "vault", "agent");
  REQUIRE(approved.ok());
  (*approved)["spec"]["approvedBy"] = "bob";
  REQUIRE(admin()->update(kExceptions, *approved).ok());
  CHECK(eventually(seconds(15), [&] { return phase("vault", "agent") == "Active"; }));

  // No approval needed where no policy asks for it; Expired at expiresAt, with an Event.
  REQUIRE(admin()->create(kExceptions, exception("short", "open-ns", seconds(4))).ok());
  CHECK(eventually(seconds(15), [&] { return phase("open-ns", "short") == "Active"; }));
  const auto expiring = Steady::now();
  CHECK(eventually(seconds(15), [&] { return phase("open-ns", "short") == "Expired"; }));
  CHECK(Steady::now() - expiring < seconds(7));
  CHECK(eventually(seconds(10), [&] {
    auto events = ControlPlane::get().kubectl(
        {"get", "events", "-n", "open-ns", "--field-selector",
         "reason=Expired,involvedObject.name=short", "-o", "jsonpath={.items[*].message}"});
    return events.out.find("its pods are checked by every rule again") != std::string::npos;
  }));
  CHECK(controller.metric("bulkhead_exceptions{phase=\"Expired\"") == 1);
  CHECK(controller.metric("bulkhead_exceptions{phase=\"Active\"") == 1);
  CHECK(admin()->remove(kExceptions, "vault", "agent").ok());
  CHECK(admin()->remove(kExceptions, "open-ns", "short").ok());
  REQUIRE(admin()->remove(kPolicies, "", "guarded").ok());
}

TEST_CASE("kill -9 while converging 200 namespaces, then restart: converged, nothing stray") {
  serviceAccountDir();
  json policy = policyObject("bulk", {{"namespaceSelector", {{"matchLabels", {{"bulk", "yes"}}}}}});
  REQUIRE(admin()->create(kPolicies, policy).ok());
  for (int i = 0; i < 200; ++i) {
    // Through the client, not kubectl: fast enough to be converging while they come.
    json ns = {{"apiVersion", "v1"},
               {"kind", "Namespace"},
               {"metadata", {{"name", "bulk-" + std::to_string(i)}, {"labels", {{"bulk", "yes"}}}}}};
    REQUIRE(admin()->create(kube::resources::kNamespaces, ns).ok());
  }
  bool mesh = *admin()->isServed("security.istio.io", "v1", "peerauthentications");
  {
    BulkheadProcess first("controller-kill");
    // Kill it part-way: once some, but not all, namespaces have their objects.
    CHECK(eventually(seconds(30), [&] { return !generated("bulk-0", mesh).empty() ||
                                                !generated("bulk-199", mesh).empty(); }));
    first.stop(SIGKILL);
  }
  BulkheadProcess second("controller-restart");
  CHECK(eventually(seconds(60), [&] {
    json s = status("bulk");
    return s.value("segmentedNamespaces", -1) == 200 && conditionStatus(s, "Ready") == "True";
  }));
  for (int i = 0; i < 200; ++i) {
    REQUIRE(segmentedExactly("bulk-" + std::to_string(i), policy, mesh));
  }
  // Nothing generated anywhere else.
  kube::ListOptions opts;
  opts.labelSelector = kManaged;
  auto all = kube::listAll(*admin(), kube::resources::kNetworkPolicies, "", opts);
  REQUIRE(all.ok());
  for (const auto& o : all->items) {
    CHECK(o["metadata"]["namespace"].get<std::string>().rfind("bulk-", 0) == 0);
  }
  auto decoded = policy::decodeSegmentationPolicy(policy);
  REQUIRE(decoded.ok());
  size_t perNamespace = 0;
  for (const auto& o :
       policy::desiredObjects(*decoded, {"bulk-0", {}}, {"bulkhead-system", mesh, {}})) {
    perNamespace += o["kind"] == "NetworkPolicy" ? 1 : 0;
  }
  CHECK(all->items.size() == 200 * perNamespace);
  REQUIRE(admin()->remove(kPolicies, "", "bulk").ok());
  CHECK(eventually(seconds(60), [&] {
    return admin()->get(kPolicies, "", "bulk").status().code() == StatusCode::kNotFound;
  }));
}

}  // namespace
}  // namespace bulkhead
