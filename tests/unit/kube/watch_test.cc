#include "kube/watch.h"

#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "kube/api_status.h"
#include "kube/store.h"

namespace bulkhead::kube {
namespace {

TEST_CASE("watch lines are reassembled across arbitrary chunk boundaries") {
  std::string stream;
  std::vector<std::string> expected;
  for (int i = 0; i < 200; ++i) {
    std::string line = R"({"type":"ADDED","object":{"n":)" + std::to_string(i) + ",\"pad\":\"" +
                       std::string(static_cast<size_t>(i * 7 % 300), 'x') + "\"}}";
    expected.push_back(line);
    stream += line + "\n";
  }
  std::mt19937 rng(42);
  for (int round = 0; round < 50; ++round) {
    LineSplitter splitter;
    std::vector<std::string> got;
    size_t pos = 0;
    std::uniform_int_distribution<size_t> size(1, round % 2 == 0 ? 7 : 4096);
    while (pos < stream.size()) {
      size_t n = std::min(size(rng), stream.size() - pos);
      REQUIRE(splitter
                  .feed(std::string_view(stream).substr(pos, n),
                        [&](std::string_view l) { got.emplace_back(l); })
                  .ok());
      pos += n;
    }
    CHECK(splitter.pending() == 0);
    REQUIRE(got == expected);
  }
}

TEST_CASE("a line cut at the end of the stream stays pending; an endless line is an error") {
  LineSplitter splitter(16);
  std::vector<std::string> got;
  auto sink = [&](std::string_view l) { got.emplace_back(l); };
  CHECK(splitter.feed("abc\n\n{\"half", sink).ok());
  CHECK(got == std::vector<std::string>{"abc"});
  CHECK(splitter.pending() == 6);
  Status tooLong = splitter.feed("xxxxxxxxxxxxxxxxxxxxxxxxxxx", sink);
  CHECK(tooLong.code() == StatusCode::kInvalid);
  CHECK(tooLong.message() == "watch line longer than 16 bytes");
}

TEST_CASE("watch events parse by type; bad lines are Invalid with context") {
  auto added = parseWatchEvent(R"({"type":"ADDED","object":{"metadata":{"name":"a"}}})");
  REQUIRE(added.ok());
  CHECK(added->type == WatchEvent::Type::kAdded);
  CHECK(added->object["metadata"]["name"] == "a");
  CHECK(parseWatchEvent(R"({"type":"BOOKMARK","object":{}})")->type ==
        WatchEvent::Type::kBookmark);
  CHECK(parseWatchEvent(R"({"type":"DELETED","object":{}})")->type == WatchEvent::Type::kDeleted);
  CHECK(parseWatchEvent("not json").status().message() ==
        "watch line is not a JSON object: not json");
  CHECK(parseWatchEvent(R"({"type":"ADDED"})").status().code() == StatusCode::kInvalid);
  CHECK(parseWatchEvent(R"({"type":"RENAMED","object":{}})").status().message() ==
        "watch event of unknown type \"RENAMED\"");

  auto gone = parseWatchEvent(
      R"({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure",)"
      R"x("message":"too old resource version: 5 (90)","reason":"Expired","code":410}})x");
  REQUIRE(gone.ok());
  CHECK(gone->type == WatchEvent::Type::kError);
  Status s = watchErrorStatus(gone->object);
  CHECK(s.code() == StatusCode::kGone);
  CHECK(s.message() == "too old resource version: 5 (90)");
}

TEST_CASE("API responses map to our Status codes with the API's message") {
  CHECK(statusFromApi(404, R"({"kind":"Status","message":"namespaces \"x\" not found",)"
                           R"("reason":"NotFound","code":404})") ==
        Status(StatusCode::kNotFound, "namespaces \"x\" not found"));
  CHECK(statusFromApi(409, R"({"kind":"Status","reason":"AlreadyExists","message":"m","code":409})")
            .code() == StatusCode::kAlreadyExists);
  CHECK(statusFromApi(409, R"({"kind":"Status","reason":"Conflict","message":"m","code":409})")
            .code() == StatusCode::kConflict);
  CHECK(statusFromApi(403, R"({"kind":"Status","reason":"Forbidden","message":"no","code":403})")
            .code() == StatusCode::kForbidden);
  CHECK(statusFromApi(429, "").code() == StatusCode::kTooManyRequests);
  CHECK(statusFromApi(503, "").code() == StatusCode::kUnavailable);
  CHECK(statusFromApi(422, "{}").code() == StatusCode::kInvalid);
  // A non-Status body (a proxy's HTML page) is quoted, not parsed.
  CHECK(statusFromApi(500, "<html>oops</html>") ==
        Status(StatusCode::kInternal, "HTTP 500: <html>oops</html>"));
  CHECK(statusFromApi(502, "") == Status(StatusCode::kUnavailable, "HTTP 502"));
}

TEST_CASE("the store indexes by namespace and by label and keeps indexes current") {
  Store store;
  store.addIndex("label:app", labelIndex("app"));
  auto obj = [](const std::string& ns, const std::string& name, const std::string& app) {
    nlohmann::json o = {{"metadata", {{"name", name}, {"namespace", ns}}}};
    if (!app.empty()) {
      o["metadata"]["labels"]["app"] = app;
    }
    return o;
  };
  CHECK(store.upsert(obj("a", "x", "web")) == nullptr);
  store.upsert(obj("a", "y", "api"));
  store.upsert(obj("b", "x", "web"));
  CHECK(store.size() == 3);
  CHECK(store.byNamespace("a").size() == 2);
  CHECK(store.byIndex("label:app", "web").size() == 2);
  auto old = store.upsert(obj("a", "x", "api"));  // relabel
  REQUIRE(old != nullptr);
  CHECK((*old)["metadata"]["labels"]["app"] == "web");
  CHECK(store.byIndex("label:app", "web").size() == 1);
  CHECK(store.byIndex("label:app", "api").size() == 2);
  CHECK(store.erase("a/y") != nullptr);
  CHECK(store.erase("a/y") == nullptr);
  CHECK(store.byIndex("label:app", "api").size() == 1);
  CHECK(store.byNamespace("a").size() == 1);
  CHECK(store.get("b/x") != nullptr);
  CHECK(objectKey(nlohmann::json{{"metadata", {{"name", "ns1"}}}}) == "ns1");
}

}  // namespace
}  // namespace bulkhead::kube
