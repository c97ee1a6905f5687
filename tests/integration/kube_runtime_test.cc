// The Kubernetes client and controller runtime against a real kube-apiserver + etcd.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "common/metrics.h"
#include "kube/client_impl.h"
#include "kube/config.h"
#include "kube/events.h"
#include "kube/informer.h"
#include "tests/support/bench_util.h"
#include "tests/support/control_plane.h"

namespace bulkhead::kube {
namespace {

using testing::ControlPlane;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Steady = std::chrono::steady_clock;

std::shared_ptr<Client> adminClient() {
  return testing::unthrottledClient(ControlPlane::get().kubeconfig());
}

json namespaceObject(const std::string& name) {
  return {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", name}}}};
}

json configMap(const std::string& ns, const std::string& name, const std::string& value) {
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata", {{"name", name}, {"namespace", ns}, {"labels", {{"test", "runtime"}}}}},
          {"data", {{"v", value}}}};
}

// key -> resourceVersion, from the server and from a store.
std::map<std::string, std::string> serverState(Client& client, const ResourceType& type,
                                               const std::string& ns,
                                               const std::string& labelSelector) {
  ListOptions opts;
  opts.labelSelector = labelSelector;
  opts.limit = 100;
  auto all = listAll(client, type, ns, opts);
  REQUIRE_MESSAGE(all.ok(), all.status().toString());
  std::map<std::string, std::string> out;
  for (const auto& o : all->items) {
    out[objectKey(o)] = o["metadata"]["resourceVersion"];
  }
  return out;
}

std::map<std::string, std::string> storeState(const Store& store) {
  std::map<std::string, std::string> out;
  for (const auto& o : store.list()) {
    out[objectKey(*o)] = (*o)["metadata"]["resourceVersion"];
  }
  return out;
}

// Polls until the store equals the server (the informer is eventually consistent).
bool eventuallyEqual(Client& client, const Informer& informer, seconds timeout,
                     const std::string& labelSelector = "") {
  auto deadline = Steady::now() + timeout;
  while (Steady::now() < deadline) {
    if (storeState(informer.store()) ==
        serverState(client, informer.options().type, informer.options().ns, labelSelector)) {
      return true;
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  return false;
}

double restarts(const std::string& resource) {
  return watchRestarts(resource).value();
}

TEST_CASE("the store equals the server after 500 random creates, updates and deletes") {
  auto client = adminClient();
  InformerOptions nsOpts = informerOptions(resources::kNamespaces);
  nsOpts.labelSelector = "test=random";
  Informer namespaces(client, std::make_shared<RealClock>(), nsOpts);
  InformerOptions cmOpts = informerOptions(resources::kConfigMaps);
  cmOpts.labelSelector = "test=runtime";
  cmOpts.pageSize = 7;  // exercise paging
  Informer configMaps(client, std::make_shared<RealClock>(), cmOpts);
  int adds = 0, updates = 0, deletes = 0;
  configMaps.addEventHandlers({[&](const json&) { ++adds; },
                               [&](const json&, const json&) { ++updates; },
                               [&](const json&) { ++deletes; }});
  namespaces.start();
  configMaps.start();
  REQUIRE(namespaces.waitForSync(milliseconds(10'000)));
  REQUIRE(configMaps.waitForSync(milliseconds(10'000)));

  std::mt19937 rng(7);
  std::vector<std::string> nsNames;
  std::set<std::string> live;  // "ns/name" of config maps
  for (int op = 0; op < 500; ++op) {
    int dice = static_cast<int>(rng() % 100);
    if (nsNames.size() < 3 || dice < 5) {
      std::string name = "rand-" + std::to_string(nsNames.size());
      json ns = namespaceObject(name);
      ns["metadata"]["labels"]["test"] = "random";
      REQUIRE(client->create(resources::kNamespaces, ns).ok());
      nsNames.push_back(name);
    } else if (dice < 10) {
      // Namespaces can be relabelled (a namespace delete never finishes without the
      // namespace controller, so this is how one leaves the selection).
      std::string name = nsNames[rng() % nsNames.size()];
      auto ns = client->mergePatch(resources::kNamespaces, "", name,
                                   {{"metadata", {{"annotations", {{"op", std::to_string(op)}}}}}});
      REQUIRE(ns.ok());
    } else if (live.empty() || dice < 50) {
      std::string ns = nsNames[rng() % nsNames.size()];
      std::string name = "cm-" + std::to_string(op);
      REQUIRE(client->create(resources::kConfigMaps, configMap(ns, name, "0")).ok());
      live.insert(ns + "/" + name);
    } else {
      auto it = live.begin();
      std::advance(it, static_cast<long>(rng() % live.size()));
      std::string key = *it;
      std::string ns = key.substr(0, key.find('/'));
      std::string name = key.substr(key.find('/') + 1);
      if (dice < 80) {
        auto updated = client->mergePatch(resources::kConfigMaps, ns, name,
                                          {{"data", {{"v", std::to_string(op)}}}});
        REQUIRE_MESSAGE(updated.ok(), updated.status().toString());
      } else {
        REQUIRE(client->remove(resources::kConfigMaps, ns, name).ok());
        live.erase(it);
      }
    }
  }
  CHECK(eventuallyEqual(*client, configMaps, seconds(20), "test=runtime"));
  CHECK(eventuallyEqual(*client, namespaces, seconds(20), "test=random"));
  CHECK(configMaps.store().size() == live.size());
  CHECK(adds > 0);
  CHECK(updates > 0);
  CHECK(deletes > 0);
  // managedFields never reach the cache.
  for (const auto& o : configMaps.store().list()) {
    REQUIRE_FALSE((*o)["metadata"].contains("managedFields"));
  }
  // The namespace index answers from the cache.
  size_t indexed = 0;
  for (const auto& ns : nsNames) {
    indexed += configMaps.store().byNamespace(ns).size();
  }
  CHECK(indexed == live.size());
  configMaps.stop();
  namespaces.stop();
}

TEST_CASE("the informer survives a kube-apiserver restart and sees changes made after it") {
  auto& cp = ControlPlane::get();
  auto client = adminClient();
  REQUIRE(client->create(resources::kNamespaces, namespaceObject("restart")).ok());
  InformerOptions opts = informerOptions(resources::kConfigMaps, "restart");
  opts.initialBackoff = milliseconds(200);
  opts.maxBackoff = milliseconds(1000);
  Informer informer(client, std::make_shared<RealClock>(), opts);
  informer.start();
  REQUIRE(informer.waitForSync(milliseconds(10'000)));
  REQUIRE(client->create(resources::kConfigMaps, configMap("restart", "before", "1")).ok());
  REQUIRE(eventuallyEqual(*client, informer, seconds(10)));

  double restartsBefore = restarts("configmaps");
  cp.stopApiServer();
  // The watch notices the broken stream and starts reconnecting.
  auto deadline = Steady::now() + seconds(20);
  while (restarts("configmaps") == restartsBefore && Steady::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(50));
  }
  CHECK(restarts("configmaps") > restartsBefore);
  cp.startApiServer();

  REQUIRE(client->create(resources::kConfigMaps, configMap("restart", "after", "2")).ok());
  REQUIRE(client->remove(resources::kConfigMaps, "restart", "before").ok());
  CHECK(eventuallyEqual(*client, informer, seconds(30)));
  CHECK(informer.store().get("restart/after") != nullptr);
  CHECK(informer.store().get("restart/before") == nullptr);
  informer.stop();
}

std::string etcdCall(const std::string& path, const std::string& body) {
  auto r = ControlPlane::get().shell("curl -fsS -X POST \"$TESTENV_ETCD_URL" + path + "\" -d '" +
                                     body + "'");
  REQUIRE_MESSAGE(r.exitCode == 0, r.err);
  return r.out;
}

TEST_CASE("compacting etcd past the watch's resourceVersion makes the informer relist") {
  auto& cp = ControlPlane::get();
  auto client = adminClient();
  REQUIRE(client->create(resources::kNamespaces, namespaceObject("compact")).ok());
  REQUIRE(client->create(resources::kConfigMaps, configMap("compact", "a", "1")).ok());
  InformerOptions opts = informerOptions(resources::kConfigMaps, "compact");
  // Reconnect slowly, so that the compaction below surely happens while the watch is down.
  opts.initialBackoff = milliseconds(4000);
  opts.maxBackoff = milliseconds(4000);
  Informer informer(client, std::make_shared<RealClock>(), opts);
  informer.start();
  REQUIRE(informer.waitForSync(milliseconds(10'000)));
  REQUIRE(eventuallyEqual(*client, informer, seconds(10)));
  std::string staleRv = informer.lastResourceVersion();

  double restartsBefore = restarts("configmaps");
  cp.stopApiServer();
  auto deadline = Steady::now() + seconds(20);
  while (restarts("configmaps") == restartsBefore && Steady::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  cp.startApiServer();
  for (int i = 0; i < 20; ++i) {
    auto created = client->create(resources::kConfigMaps,
                                  configMap("compact", "later-" + std::to_string(i), "x"));
    REQUIRE_MESSAGE(created.ok(), created.status().toString());
  }
  REQUIRE(client->remove(resources::kConfigMaps, "compact", "a").ok());
  json range = json::parse(etcdCall("/v3/kv/range", R"({"key":"AA=="})"));
  std::string revision = range["header"]["revision"];
  etcdCall("/v3/kv/compaction", R"({"revision":")" + revision + R"(","physical":true})");

  // A watch from before the compaction is refused with 410 Gone...
  WatchOptions wo;
  wo.resourceVersion = staleRv;
  wo.timeout = seconds(5);
  auto stale = client->watch(resources::kConfigMaps, "compact", wo);
  Status seen = stale.status();
  if (stale.ok()) {
    auto ev = (*stale)->next();
    seen = !ev.ok() ? ev.status()
           : ev->has_value() && (*ev)->type == WatchEvent::Type::kError
               ? watchErrorStatus((*ev)->object)
               : okStatus();
  }
  CHECK_MESSAGE(seen.code() == StatusCode::kGone, seen.toString());
  // ...and the informer relists and converges.
  CHECK(eventuallyEqual(*client, informer, seconds(30)));
  CHECK(informer.store().size() == 20);
  CHECK(informer.store().get("compact/a") == nullptr);
  informer.stop();
}

TEST_CASE("server-side apply of the same object twice changes nothing the second time") {
  auto client = adminClient();
  REQUIRE(client->create(resources::kNamespaces, namespaceObject("ssa")).ok());
  json np = {{"apiVersion", "networking.k8s.io/v1"},
             {"kind", "NetworkPolicy"},
             {"metadata",
              {{"name", "bulkhead-default-deny"},
               {"namespace", "ssa"},
               {"labels", {{"app.kubernetes.io/managed-by", "bulkhead"}}}}},
             {"spec", {{"podSelector", json::object()}, {"policyTypes", {"Ingress", "Egress"}}}}};
  auto first = client->apply(resources::kNetworkPolicies, np, "bulkhead", true, "");
  REQUIRE_MESSAGE(first.ok(), first.status().toString());
  auto second = client->apply(resources::kNetworkPolicies, np, "bulkhead", true, "");
  REQUIRE(second.ok());
  CHECK((*first)["metadata"]["resourceVersion"] == (*second)["metadata"]["resourceVersion"]);
  CHECK((*second)["metadata"]["managedFields"][0]["manager"] == "bulkhead");
  CHECK((*second)["metadata"]["managedFields"][0]["operation"] == "Apply");
  np["spec"]["policyTypes"] = {"Ingress"};
  auto third = client->apply(resources::kNetworkPolicies, np, "bulkhead", true, "");
  REQUIRE(third.ok());
  CHECK((*third)["metadata"]["resourceVersion"] != (*second)["metadata"]["resourceVersion"]);
  CHECK((*third)["spec"]["policyTypes"] == json::array({"Ingress"}));
}

TEST_CASE("typed calls: get, create conflict, update precondition, delete precondition, status") {
  auto client = adminClient();
  REQUIRE(client->create(resources::kNamespaces, namespaceObject("typed")).ok());
  auto created = client->create(resources::kConfigMaps, configMap("typed", "c", "1"));
  REQUIRE(created.ok());
  auto again = client->create(resources::kConfigMaps, configMap("typed", "c", "1"));
  CHECK(again.status() ==
        Status(StatusCode::kAlreadyExists, "configmaps \"c\" already exists"));
  auto missing = client->get(resources::kConfigMaps, "typed", "nope");
  CHECK(missing.status() == Status(StatusCode::kNotFound, "configmaps \"nope\" not found"));

  json stale = *created;
  auto bumped = client->mergePatch(resources::kConfigMaps, "typed", "c", {{"data", {{"v", "2"}}}});
  REQUIRE(bumped.ok());
  stale["data"]["v"] = "3";
  CHECK(client->update(resources::kConfigMaps, stale).status().code() == StatusCode::kConflict);
  DeleteOptions wrongRv;
  wrongRv.preconditionResourceVersion = (*created)["metadata"]["resourceVersion"];
  CHECK(client->remove(resources::kConfigMaps, "typed", "c", wrongRv).code() ==
        StatusCode::kConflict);
  DeleteOptions rightUid;
  rightUid.preconditionUid = (*created)["metadata"]["uid"];
  CHECK(client->remove(resources::kConfigMaps, "typed", "c", rightUid).ok());

  CHECK(*client->isServed("networking.k8s.io", "v1", "networkpolicies"));
  CHECK_FALSE(*client->isServed("networking.k8s.io", "v1", "nothings"));
  CHECK_FALSE(*client->isServed("security.nope.io", "v1", "peerauthentications"));

  ListOptions page;
  page.limit = 1;
  auto first = client->list(resources::kNamespaces, "", page);
  REQUIRE(first.ok());
  CHECK(first->items.size() == 1);
  CHECK_FALSE(first->continueToken.empty());
  CHECK(first->items[0]["kind"] == "Namespace");

  // Status subresource of a Namespace.
  auto ns = client->get(resources::kNamespaces, "", "typed");
  REQUIRE(ns.ok());
  (*ns)["status"]["phase"] = "Active";
  CHECK(client->updateStatus(resources::kNamespaces, *ns).ok());
}

TEST_CASE("a narrow ServiceAccount token: Forbidden with the API's message; rotation is read") {
  auto& cp = ControlPlane::get();
  auto setup = cp.shell(R"(set -e
    kubectl create namespace narrow >/dev/null
    kubectl create serviceaccount reader -n narrow >/dev/null
    kubectl create serviceaccount lister -n narrow >/dev/null
    kubectl create role read-cm -n narrow --verb=get,list --resource=configmaps >/dev/null
    kubectl create rolebinding lister-read -n narrow --role=read-cm --serviceaccount=narrow:lister >/dev/null
    mkdir -p "$TESTENV_DIR/sa"
    cp "$TESTENV_CA" "$TESTENV_DIR/sa/ca.crt"
    echo narrow > "$TESTENV_DIR/sa/namespace"
    kubectl create token reader -n narrow > "$TESTENV_DIR/sa/token"
    kubectl create token lister -n narrow > "$TESTENV_DIR/sa/lister-token")");
  REQUIRE_MESSAGE(setup.exitCode == 0, setup.err);
  std::string saDir = cp.dir() + "/sa";

  std::string port = cp.url().substr(cp.url().rfind(':') + 1);
  setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", port.c_str(), 1);
  auto config = inClusterConfig(saDir);
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
  REQUIRE_MESSAGE(config.ok(), config.status().toString());
  CHECK(config->defaultNamespace == "narrow");
  auto created = ClientImpl::create(*config, std::make_shared<RealClock>());
  REQUIRE(created.ok());
  std::shared_ptr<Client> client = *created;

  auto denied = client->list(resources::kConfigMaps, "narrow", {});
  CHECK(denied.status() ==
        Status(StatusCode::kForbidden,
               "configmaps is forbidden: User \"system:serviceaccount:narrow:reader\" cannot list "
               "resource \"configmaps\" in API group \"\" in the namespace \"narrow\""));

  // Rotation: the next request reads the new token from disk.
  std::filesystem::rename(saDir + "/lister-token", saDir + "/token");
  CHECK(client->list(resources::kConfigMaps, "narrow", {}).ok());
  std::ofstream(saDir + "/token") << "not-a-token";
  CHECK(client->list(resources::kConfigMaps, "narrow", {}).status().code() ==
        StatusCode::kUnauthorized);
}

TEST_CASE("repeated events are aggregated into one Event with a count") {
  auto client = adminClient();
  REQUIRE(client->create(resources::kNamespaces, namespaceObject("events")).ok());
  auto cm = client->create(resources::kConfigMaps, configMap("events", "subject", "1"));
  REQUIRE(cm.ok());
  EventRecorder recorder(client, std::make_shared<RealClock>(), "bulkhead", "test-instance");
  for (int i = 0; i < 5; ++i) {
    recorder.record(referenceTo(*cm), EventRecorder::Type::kNormal, "Repaired",
                    "restored NetworkPolicy bulkhead-default-deny");
  }
  recorder.record(referenceTo(*cm), EventRecorder::Type::kWarning, "Failed", "something else");
  recorder.flush();
  auto events = client->list(resources::kEvents, "events", {});
  REQUIRE(events.ok());
  REQUIRE(events->items.size() == 2);
  std::map<std::string, json> byReason;
  for (auto& e : events->items) {
    byReason[e["reason"]] = e;
  }
  CHECK(byReason["Repaired"]["count"] == 5);
  CHECK(byReason["Repaired"]["type"] == "Normal");
  CHECK(byReason["Repaired"]["involvedObject"]["name"] == "subject");
  CHECK(byReason["Repaired"]["involvedObject"]["uid"] == (*cm)["metadata"]["uid"]);
  CHECK(byReason["Repaired"]["source"]["component"] == "bulkhead");
  CHECK(byReason["Failed"]["count"] == 1);
  CHECK(byReason["Failed"]["type"] == "Warning");
}

// --- leader election between two real bulkhead processes -------------------------------------

pid_t startBulkhead(const std::string& identity, const std::string& logFile) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int fd = ::open(logFile.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    dup2(fd, 1);
    std::string kc = ControlPlane::get().kubeconfig();
    execl(BULKHEAD_BINARY, "bulkhead", "--kubeconfig", kc.c_str(), "--leader-elect",
          "--namespace", "leader", "--leader-election-identity", identity.c_str(),
          "--metrics-bind-address", "127.0.0.1:0", nullptr);
    _exit(127);
  }
  return pid;
}

std::string holder(Client& client) {
  auto lease = client.get(resources::kLeases, "leader", "bulkhead");
  return lease.ok() ? (*lease)["spec"].value("holderIdentity", "") : "";
}

// Waits until the Lease is held by one of `candidates`; returns it and the time it took.
std::pair<std::string, double> waitForHolder(Client& client, const std::set<std::string>& candidates,
                                             seconds timeout) {
  auto start = Steady::now();
  while (Steady::now() - start < timeout) {
    std::string h = holder(client);
    if (candidates.contains(h)) {
      return {h, std::chrono::duration<double>(Steady::now() - start).count()};
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  return {"", -1};
}

TEST_CASE("leader election: one leader; kill -9 hands over within 17 s, SIGTERM within 3 s") {
  auto& cp = ControlPlane::get();
  auto client = adminClient();
  REQUIRE(client->create(resources::kNamespaces, namespaceObject("leader")).ok());
  std::map<std::string, pid_t> pids;
  for (const char* id : {"replica-a", "replica-b"}) {
    pids[id] = startBulkhead(id, cp.dir() + "/" + id + ".log");
  }
  auto [first, t0] = waitForHolder(*client, {"replica-a", "replica-b"}, seconds(20));
  REQUIRE_MESSAGE(!first.empty(), "no replica became leader");
  std::string second = first == "replica-a" ? "replica-b" : "replica-a";
  // Exactly one leads, and keeps leading while it lives.
  for (int i = 0; i < 10; ++i) {
    std::this_thread::sleep_for(milliseconds(300));
    REQUIRE(holder(*client) == first);
  }

  kill(pids[first], SIGKILL);
  waitpid(pids[first], nullptr, 0);
  auto [next, handover] = waitForHolder(*client, {second}, seconds(25));
  CHECK(next == second);
  MESSAGE("kill -9 handover took " << handover << " s");
  CHECK(handover <= 17.0);

  // A fresh replica joins; SIGTERM of the leader releases the Lease at once.
  pids["replica-c"] = startBulkhead("replica-c", cp.dir() + "/replica-c.log");
  std::this_thread::sleep_for(seconds(3));  // let replica-c start campaigning
  REQUIRE(holder(*client) == second);
  auto termAt = Steady::now();
  kill(pids[second], SIGTERM);
  int status = 0;
  waitpid(pids[second], &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  auto [third, unused] = waitForHolder(*client, {"replica-c"}, seconds(10));
  double termHandover = std::chrono::duration<double>(Steady::now() - termAt).count();
  CHECK(third == "replica-c");
  MESSAGE("SIGTERM handover took " << termHandover << " s");
  CHECK(termHandover <= 3.0);
  kill(pids["replica-c"], SIGTERM);
  waitpid(pids["replica-c"], nullptr, 0);
}

}  // namespace
}  // namespace bulkhead::kube
