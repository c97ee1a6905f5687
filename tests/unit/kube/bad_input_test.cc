// How the client and the informer cope with a misbehaving API server: error pages, throttling,
// watch streams that split, garble or cut events, 410 Gone. The server is scripted and local.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "kube/client_impl.h"
#include "kube/informer.h"
#include "tests/support/scripted_server.h"

namespace bulkhead::kube {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::Chunk;
using testing::RecordedRequest;
using testing::ScriptedResponse;
using testing::ScriptedServer;
using testing::StreamEnd;
using Params = std::map<std::string, std::string>;
using Clock = std::chrono::steady_clock;

constexpr const char* kCollection = "/api/v1/namespaces/ns/configmaps";

std::shared_ptr<ClientImpl> clientFor(const ScriptedServer& server) {
  RestConfig config;
  config.server = server.url();
  config.caPem = server.caPem();
  config.bearerToken = "scripted-token";
  config.source = "bad_input_test";
  auto client = ClientImpl::create(config, std::make_shared<RealClock>());
  REQUIRE_MESSAGE(client.ok(), client.status().toString());
  return *client;
}

// Polls `done` every few milliseconds until it holds or `timeout` passes; returns done().
bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = 5s) {
  auto deadline = Clock::now() + timeout;
  while (!done()) {
    if (Clock::now() >= deadline) {
      return done();
    }
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

json configMap(const std::string& name, const std::string& rv, const std::string& value) {
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata", {{"name", name}, {"namespace", "ns"}, {"resourceVersion", rv}}},
          {"data", {{"value", value}}}};
}

std::string eventLine(const std::string& type, const json& object) {
  return json{{"type", type}, {"object", object}}.dump() + "\n";
}

// A ConfigMapList as the API server sends it: items without apiVersion and kind.
ScriptedResponse listResponse(const std::string& rv, const std::vector<json>& items) {
  json list = {{"apiVersion", "v1"},
               {"kind", "ConfigMapList"},
               {"metadata", {{"resourceVersion", rv}}},
               {"items", json::array()}};
  for (json item : items) {
    item.erase("apiVersion");
    item.erase("kind");
    list["items"].push_back(item);
  }
  return ScriptedResponse::json(200, list.dump());
}

json goneStatus(const std::string& message) {
  return {{"apiVersion", "v1"}, {"kind", "Status"},    {"metadata", json::object()},
          {"status", "Failure"}, {"message", message}, {"reason", "Expired"},
          {"code", 410}};
}

Params watchParams(const std::string& rv) {
  return {{"watch", "true"},
          {"resourceVersion", rv},
          {"allowWatchBookmarks", "true"},
          {"timeoutSeconds", "300"}};
}

std::string watchTarget(const std::string& rv) {
  return std::string(kCollection) + "?watch=true&resourceVersion=" + rv +
         "&allowWatchBookmarks=true&timeoutSeconds=300";
}

double configMapRestarts() { return watchRestarts("configmaps").value(); }

// The API side of an informer: list requests get `lists` in order and watch requests get
// `watches` in order; when a queue runs dry, a list gets a 500 and a watch is held open with no
// events. Every request is noted with the informer's store and the restart counter as they were
// when it arrived: the informer is blocked waiting for the answer, so both are stable then.
class FakeApi {
 public:
  struct Seen {
    std::string path;
    Params params;
    double restarts = 0;                    // bulkhead_watch_restarts_total{configmaps}
    std::map<std::string, std::string> rvs;  // the store: object key -> resourceVersion
  };

  FakeApi(std::vector<ScriptedResponse> lists, std::vector<ScriptedResponse> watches)
      : lists_(lists.begin(), lists.end()), watches_(watches.begin(), watches.end()) {}

  void observe(Informer* informer) { informer_ = informer; }

  ScriptedResponse answer(const RecordedRequest& request) {
    Seen seen{request.path(), request.params(), configMapRestarts(), {}};
    if (Informer* informer = informer_.load()) {
      for (const auto& object : informer->store().list()) {
        seen.rvs[objectKey(*object)] = object->at("metadata").value("resourceVersion", "");
      }
    }
    bool watch = seen.params.count("watch") > 0;
    std::lock_guard lock(mu_);
    seen_.push_back(std::move(seen));
    auto& queue = watch ? watches_ : lists_;
    if (queue.empty()) {
      return watch ? ScriptedResponse::stream({}, StreamEnd::kHold)
                   : ScriptedResponse::json(500, "no more lists scripted");
    }
    ScriptedResponse next = std::move(queue.front());
    queue.pop_front();
    return next;
  }

  std::vector<Seen> seen() const {
    std::lock_guard lock(mu_);
    return seen_;
  }

 private:
  std::atomic<Informer*> informer_{nullptr};
  mutable std::mutex mu_;
  std::deque<ScriptedResponse> lists_;    // guarded by mu_
  std::deque<ScriptedResponse> watches_;  // guarded by mu_
  std::vector<Seen> seen_;                // guarded by mu_
};

InformerOptions configMapsInNs() {
  InformerOptions options;
  options.type = resources::kConfigMaps;
  options.ns = "ns";
  options.initialBackoff = 10ms;
  options.maxBackoff = 50ms;
  return options;
}

std::map<std::string, json> storeContents(const Informer& informer) {
  std::map<std::string, json> out;
  for (const auto& object : informer.store().list()) {
    out[objectKey(*object)] = *object;
  }
  return out;
}

TEST_CASE("an HTTP 500 with an HTML page is Internal and quotes the page's first 200 bytes") {
  const std::string page =
      "<html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server "
      "Error</h1><p>" +
      std::string(300, 'x') + "</p></body></html>";
  ScriptedServer server([&](const RecordedRequest&) {
    ScriptedResponse r = ScriptedResponse::json(500, page);
    r.headers = {{"Content-Type", "text/html"}};
    return r;
  });
  auto client = clientFor(server);

  auto got = client->get(resources::kConfigMaps, "ns", "cm");

  REQUIRE_FALSE(got.ok());
  CHECK(got.status().code() == StatusCode::kInternal);
  CHECK(got.status().message() == "HTTP 500: " + page.substr(0, 200));
  auto requests = server.requests();
  REQUIRE(requests.size() == 1);  // a 500 is not retried
  CHECK(requests[0].method == "GET");
  CHECK(requests[0].target == std::string(kCollection) + "/cm");
  CHECK(requests[0].headers["authorization"] == "Bearer scripted-token");
  CHECK(requests[0].headers["accept"] == "application/json");
}

TEST_CASE("a 200 whose body is not JSON is Internal") {
  ScriptedServer server([](const RecordedRequest&) {
    ScriptedResponse r = ScriptedResponse::json(200, "<html>maintenance</html>");
    r.headers = {{"Content-Type", "text/html"}};
    return r;
  });
  auto client = clientFor(server);

  auto got = client->get(resources::kConfigMaps, "ns", "cm");

  REQUIRE_FALSE(got.ok());
  CHECK(got.status().code() == StatusCode::kInternal);
  CHECK(got.status().message() ==
        "GET " + std::string(kCollection) + "/cm: response is not JSON");
}

TEST_CASE("a 429 with Retry-After: 1 is retried a second later and the retry's answer returned") {
  const json cm = configMap("cm", "7", "v");
  std::atomic<int> calls{0};
  ScriptedServer server([&](const RecordedRequest&) {
    if (calls++ == 0) {
      ScriptedResponse r = ScriptedResponse::json(
          429, json{{"apiVersion", "v1"}, {"kind", "Status"}, {"status", "Failure"},
                    {"message", "too many requests"}, {"reason", "TooManyRequests"},
                    {"code", 429}}.dump());
      r.headers.emplace_back("Retry-After", "1");
      return r;
    }
    return ScriptedResponse::json(200, cm.dump());
  });
  auto client = clientFor(server);

  auto start = Clock::now();
  auto got = client->get(resources::kConfigMaps, "ns", "cm");
  auto elapsed = Clock::now() - start;

  REQUIRE_MESSAGE(got.ok(), got.status().toString());
  CHECK(*got == cm);
  CHECK(elapsed >= 1s);
  CHECK(elapsed < 5s);
  auto requests = server.requests();
  REQUIRE(requests.size() == 2);
  CHECK(requests[0].target == std::string(kCollection) + "/cm");
  CHECK(requests[1].target == std::string(kCollection) + "/cm");
  CHECK(requests[1].received - requests[0].received >= 1s);
}

TEST_CASE("a watch stream reassembles a split event and reports each kind of bad line") {
  const json a = configMap("a", "101", "one");
  const std::string addedA = eventLine("ADDED", a);
  const std::string teleported =
      R"({"type":"TELEPORTED","object":)" + configMap("c", "103", "x").dump() + "}\n";
  // One scripted response per watch request, in order.
  std::vector<ScriptedResponse> script = {
      ScriptedResponse::stream({{addedA.substr(0, 9)},
                                {addedA.substr(9, 40), 20ms},
                                {addedA.substr(49), 20ms},
                                {"this is not json\n", 20ms}},
                               StreamEnd::kHold),
      ScriptedResponse::stream({{teleported}}, StreamEnd::kHold),
      ScriptedResponse::stream({{addedA}, {R"({"type":"ADDED","object":{"meta)", 20ms}},
                               StreamEnd::kAbort),
      ScriptedResponse::stream({{addedA}}, StreamEnd::kComplete),
  };
  std::atomic<size_t> calls{0};
  ScriptedServer server([&](const RecordedRequest&) {
    size_t i = calls++;
    return i < script.size() ? script[i] : ScriptedResponse::json(500, "unscripted");
  });
  auto client = clientFor(server);
  WatchOptions options;
  options.resourceVersion = "100";
  const std::string what = "watch " + watchTarget("100");

  {
    // A line split over three chunks, then one that is not JSON.
    auto stream = client->watch(resources::kConfigMaps, "ns", options);
    REQUIRE_MESSAGE(stream.ok(), stream.status().toString());
    auto event = (*stream)->next();
    REQUIRE_MESSAGE(event.ok(), event.status().toString());
    REQUIRE(event->has_value());
    CHECK((*event)->type == WatchEvent::Type::kAdded);
    CHECK((*event)->object == a);
    auto garbage = (*stream)->next();
    CHECK(garbage.status() ==
          Status(StatusCode::kInvalid,
                 what + ": watch line is not a JSON object: this is not json"));
  }
  {
    // An event type the client does not know.
    auto stream = client->watch(resources::kConfigMaps, "ns", options);
    REQUIRE_MESSAGE(stream.ok(), stream.status().toString());
    auto unknown = (*stream)->next();
    CHECK(unknown.status() ==
          Status(StatusCode::kInvalid, what + ": watch event of unknown type \"TELEPORTED\""));
  }
  {
    // The connection closes in the middle of the second line.
    auto stream = client->watch(resources::kConfigMaps, "ns", options);
    REQUIRE_MESSAGE(stream.ok(), stream.status().toString());
    auto first = (*stream)->next();
    REQUIRE_MESSAGE(first.ok(), first.status().toString());
    REQUIRE(first->has_value());
    CHECK((*first)->object == a);
    auto cut = (*stream)->next();
    CHECK(cut.status().code() == StatusCode::kUnavailable);
    CHECK(cut.status().message().rfind(what + ": ", 0) == 0);
  }
  {
    // Control: a stream the server ends properly is a normal end, not an error.
    auto stream = client->watch(resources::kConfigMaps, "ns", options);
    REQUIRE_MESSAGE(stream.ok(), stream.status().toString());
    auto first = (*stream)->next();
    REQUIRE_MESSAGE(first.ok(), first.status().toString());
    REQUIRE(first->has_value());
    auto end = (*stream)->next();
    REQUIRE_MESSAGE(end.ok(), end.status().toString());
    CHECK_FALSE(end->has_value());
  }
  auto requests = server.requests();
  REQUIRE(requests.size() == 4);
  for (const auto& r : requests) {
    CHECK(r.target == watchTarget("100"));
  }
}

TEST_CASE("a watch answered with HTTP 410 is Gone with the server's message") {
  ScriptedServer server([](const RecordedRequest&) {
    return ScriptedResponse::json(410, goneStatus("too old resource version: 10 (20)").dump());
  });
  auto client = clientFor(server);
  WatchOptions options;
  options.resourceVersion = "10";

  auto stream = client->watch(resources::kConfigMaps, "ns", options);

  CHECK(stream.status() == Status(StatusCode::kGone, "too old resource version: 10 (20)"));
}

TEST_CASE("the informer survives garbled, unknown, cut and expired watch events") {
  const json listed = configMap("listed", "100", "l");
  const json a101 = configMap("a", "101", "one");
  const json b102 = configMap("b", "102", "two");
  const json a290 = configMap("a", "290", "two-ninety");
  const json d295 = configMap("d", "295", "dee");
  const json a301 = configMap("a", "301", "three");
  const json d302 = configMap("d", "302", "dee");
  const json e303 = configMap("e", "303", "ee");
  const std::string addedA = eventLine("ADDED", a101);
  const json bookmark = {{"apiVersion", "v1"},
                         {"kind", "ConfigMap"},
                         {"metadata", {{"resourceVersion", "150"}}}};

  FakeApi api(
      {listResponse("100", {listed}), listResponse("300", {a290, d295})},
      {
          // 1: an event split over three chunks, then a line that is not JSON.
          ScriptedResponse::stream({{addedA.substr(0, 9)},
                                    {addedA.substr(9, 40), 20ms},
                                    {addedA.substr(49), 20ms},
                                    {"this is not json\n", 20ms}},
                                   StreamEnd::kHold),
          // 2: a good event, then one of a type nobody knows (its object must not be cached).
          ScriptedResponse::stream(
              {{eventLine("ADDED", b102)},
               {R"({"type":"TELEPORTED","object":)" + configMap("c", "103", "x").dump() + "}\n"}},
              StreamEnd::kHold),
          // 3: a bookmark with a newer resourceVersion, then the connection drops mid-line.
          ScriptedResponse::stream(
              {{eventLine("BOOKMARK", bookmark)},
               {R"({"type":"ADDED","object":{"metadata":{"name":"c","namespace":"ns")", 20ms}},
              StreamEnd::kAbort),
          // 4: the resourceVersion has expired.
          ScriptedResponse::stream(
              {{eventLine("ERROR", goneStatus("too old resource version: 150 (250)"))}},
              StreamEnd::kHold),
          // 5: after the relist, healthy events; then the stream stays open.
          ScriptedResponse::stream({{eventLine("MODIFIED", a301)},
                                    {eventLine("DELETED", d302)},
                                    {eventLine("ADDED", e303)}},
                                   StreamEnd::kHold),
      });
  ScriptedServer server([&](const RecordedRequest& r) { return api.answer(r); });
  const double before = configMapRestarts();
  Informer informer(clientFor(server), std::make_shared<RealClock>(), configMapsInNs());
  api.observe(&informer);

  informer.start();
  bool settled = eventually([&] { return informer.lastResourceVersion() == "303"; });
  auto seen = api.seen();
  auto store = storeContents(informer);
  const double restarts = configMapRestarts() - before;
  informer.stop();

  REQUIRE_MESSAGE(settled, "last resourceVersion: ", informer.lastResourceVersion());
  // Exactly the objects the well-formed events and the second list carry.
  CHECK(store == std::map<std::string, json>{{"ns/a", a301}, {"ns/e", e303}});
  CHECK(restarts == 4);
  REQUIRE(seen.size() == 7);
  using Rvs = std::map<std::string, std::string>;
  const Rvs afterFirstList = {{"ns/listed", "100"}};
  const Rvs withA = {{"ns/listed", "100"}, {"ns/a", "101"}};
  const Rvs withAB = {{"ns/listed", "100"}, {"ns/a", "101"}, {"ns/b", "102"}};
  for (const auto& s : seen) {
    CHECK(s.path == kCollection);
  }
  // The first list.
  CHECK(seen[0].params == Params{{"limit", "500"}});
  CHECK(seen[0].restarts - before == 0);
  CHECK(seen[0].rvs == Rvs{});
  // Watch from the list's resourceVersion.
  CHECK(seen[1].params == watchParams("100"));
  CHECK(seen[1].restarts - before == 0);
  CHECK(seen[1].rvs == afterFirstList);
  // The line that is not JSON: a restart, resumed from the split event's resourceVersion.
  CHECK(seen[2].params == watchParams("101"));
  CHECK(seen[2].restarts - before == 1);
  CHECK(seen[2].rvs == withA);
  // The unknown event type: a restart, resumed from b's resourceVersion; c was not cached.
  CHECK(seen[3].params == watchParams("102"));
  CHECK(seen[3].restarts - before == 2);
  CHECK(seen[3].rvs == withAB);
  // The cut stream: a restart, resumed from the bookmark's resourceVersion; no half object.
  CHECK(seen[4].params == watchParams("150"));
  CHECK(seen[4].restarts - before == 3);
  CHECK(seen[4].rvs == withAB);
  // The ERROR 410 event: a restart and a relist.
  CHECK(seen[5].params == Params{{"limit", "500"}});
  CHECK(seen[5].restarts - before == 4);
  CHECK(seen[5].rvs == withAB);
  // The relist replaced the store (listed and b are gone); watch from its resourceVersion.
  CHECK(seen[6].params == watchParams("300"));
  CHECK(seen[6].restarts - before == 4);
  CHECK(seen[6].rvs == Rvs{{"ns/a", "290"}, {"ns/d", "295"}});
  CHECK(server.requestCount() == 7);
}

TEST_CASE("the informer relists when a watch is answered with HTTP 410") {
  const json x = configMap("x", "5", "ex");
  const json y = configMap("y", "15", "why");
  const std::string gone = goneStatus("too old resource version: 10 (20)").dump();
  FakeApi api({listResponse("10", {x}), listResponse("20", {y})},
              {ScriptedResponse::json(410, gone)});
  ScriptedServer server([&](const RecordedRequest& r) { return api.answer(r); });
  const double before = configMapRestarts();
  Informer informer(clientFor(server), std::make_shared<RealClock>(), configMapsInNs());
  api.observe(&informer);

  informer.start();
  bool settled = eventually([&] { return api.seen().size() >= 4 && server.holding() == 1; });
  auto seen = api.seen();
  auto store = storeContents(informer);
  const double restarts = configMapRestarts() - before;
  informer.stop();

  REQUIRE(settled);
  REQUIRE(seen.size() == 4);
  CHECK(seen[0].params == Params{{"limit", "500"}});
  CHECK(seen[1].params == watchParams("10"));
  CHECK(seen[1].restarts - before == 0);
  CHECK(seen[1].rvs == std::map<std::string, std::string>{{"ns/x", "5"}});
  CHECK(seen[2].params == Params{{"limit", "500"}});
  CHECK(seen[2].restarts - before == 1);
  CHECK(seen[3].params == watchParams("20"));
  CHECK(seen[3].rvs == std::map<std::string, std::string>{{"ns/y", "15"}});
  CHECK(store == std::map<std::string, json>{{"ns/y", y}});
  CHECK(restarts == 1);
}

TEST_CASE("valid JSON of the wrong shape is an error, never a crash") {
  const json y = configMap("y", "15", "why");
  // A list whose resourceVersion is a number, a Status whose code is a string, then a watch
  // carrying an object without a usable name and an ERROR whose code is a string.
  FakeApi api({ScriptedResponse::json(200, R"({"kind":"ConfigMapList","metadata":{"resourceVersion":1},"items":[1]})"),
               ScriptedResponse::json(500, R"({"kind":"Status","code":"500","message":42})"),
               listResponse("20", {y})},
              {ScriptedResponse::stream({{R"({"type":"ADDED","object":{"metadata":{"name":5}}})" "\n"}},
                                        StreamEnd::kComplete),
               ScriptedResponse::stream({{R"({"type":"ERROR","object":{"code":"410"}})" "\n"}},
                                        StreamEnd::kComplete)});
  ScriptedServer server([&](const RecordedRequest& r) { return api.answer(r); });
  auto client = clientFor(server);
  auto direct = client->list(resources::kConfigMaps, "ns", {});
  CHECK(direct.status() == Status(StatusCode::kInternal,
                                  "list /api/v1/namespaces/ns/configmaps: an item is not an object"));
  auto status = client->list(resources::kConfigMaps, "ns", {});
  CHECK(status.status() == Status(StatusCode::kInternal, "HTTP 500: {\"kind\":\"Status\",\"code\":\"500\",\"message\":42}"));

  const double before = configMapRestarts();
  auto informerOptions = configMapsInNs();
  Informer informer(client, std::make_shared<RealClock>(), informerOptions);
  informer.start();
  CHECK(eventually([&] { return configMapRestarts() - before >= 2; }));
  auto store = storeContents(informer);
  informer.stop();
  CHECK(store == std::map<std::string, json>{{"ns/y", y}});
  CHECK(informer.hasSynced());
}

TEST_CASE("stop() returns promptly while the informer's watch waits for events") {
  FakeApi api({listResponse("1", {})}, {ScriptedResponse::stream({}, StreamEnd::kHold)});
  ScriptedServer server([&](const RecordedRequest& r) { return api.answer(r); });
  const double before = configMapRestarts();
  Informer informer(clientFor(server), std::make_shared<RealClock>(), configMapsInNs());
  informer.start();
  REQUIRE(eventually([&] { return server.holding() == 1; }));
  REQUIRE(informer.hasSynced());

  auto start = Clock::now();
  informer.stop();
  auto elapsed = Clock::now() - start;

  CHECK(elapsed < 2s);
  // The stream was really given up: the client closed its connection.
  CHECK(eventually([&] { return server.clientHangUps() == 1; }));
  CHECK(server.requestCount() == 2);
  CHECK(configMapRestarts() - before == 0);
}

// stop() cancels a watch request whose response headers have not arrived yet (a stalled or
// overloaded API server), instead of waiting for the server or the 360 s watch timeout.
TEST_CASE("stop() returns promptly while the informer's watch waits for response headers" *
          doctest::timeout(10)) {
  ScriptedResponse stalled = ScriptedResponse::stream({}, StreamEnd::kHold);
  stalled.delay = 60s;  // interrupted by server.stop()
  FakeApi api({listResponse("1", {})}, {stalled});
  ScriptedServer server([&](const RecordedRequest& r) { return api.answer(r); });
  Informer informer(clientFor(server), std::make_shared<RealClock>(), configMapsInNs());
  informer.start();
  REQUIRE(server.waitForRequests(2, 5s));

  auto start = Clock::now();
  auto stopped = std::async(std::launch::async, [&] { informer.stop(); });
  bool prompt = stopped.wait_for(2s) == std::future_status::ready;
  auto elapsed = Clock::now() - start;
  // Unblock a stop() that is still waiting, so the test ends either way.
  server.stop();
  stopped.get();

  CHECK_MESSAGE(prompt, "stop() took ", std::chrono::duration<double>(elapsed).count(), " s");
}

}  // namespace
}  // namespace bulkhead::kube
