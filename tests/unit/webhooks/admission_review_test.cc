#include "webhooks/admission_review.h"

#include <doctest/doctest.h>

namespace bulkhead::webhooks {
namespace {

using nlohmann::json;

TEST_CASE("bad AdmissionReview bodies get a clear error, never a decision") {
  CHECK(decodeAdmissionReview("").status().message() ==
        "empty request body; expected an admission.k8s.io/v1 AdmissionReview");
  CHECK(decodeAdmissionReview("{not json").status().message() == "request body is not valid JSON");
  CHECK(decodeAdmissionReview(R"({"apiVersion":"v1","kind":"Pod"})").status().message() ==
        "request body is not an admission.k8s.io/v1 AdmissionReview");
  CHECK(decodeAdmissionReview(
            R"({"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}})")
            .status()
            .message() == "request body is not an admission.k8s.io/v1 AdmissionReview");
  CHECK(decodeAdmissionReview(R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"})")
            .status()
            .message() == "AdmissionReview has no request");
  CHECK(decodeAdmissionReview(
            R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}})")
            .status()
            .message() == "AdmissionReview request.uid is missing");
  // 100,000 levels deep: refused before parsing, so the stack is never at risk.
  std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
  CHECK(decodeAdmissionReview(deep).status().message() ==
        "request body is nested more than 100 levels deep");
  // Brackets inside strings do not count.
  json ok = {{"apiVersion", "admission.k8s.io/v1"},
             {"kind", "AdmissionReview"},
             {"request", {{"uid", "u1"}, {"name", std::string(500, '[')}}}};
  CHECK(decodeAdmissionReview(ok.dump()).ok());
}

TEST_CASE("a request decodes to what the handlers read; a response echoes the uid") {
  json review = {{"apiVersion", "admission.k8s.io/v1"},
                 {"kind", "AdmissionReview"},
                 {"request",
                  {{"uid", "705ab4f5"},
                   {"kind", {{"group", ""}, {"version", "v1"}, {"kind", "Pod"}}},
                   {"resource", {{"group", ""}, {"version", "v1"}, {"resource", "pods"}}},
                   {"subResource", "ephemeralcontainers"},
                   {"namespace", "shop"},
                   {"name", "web-1"},
                   {"operation", "UPDATE"},
                   {"userInfo", {{"username", "alice"}, {"groups", {"dev", 5}}}},
                   {"dryRun", true},
                   {"object", {{"kind", "Pod"}}},
                   {"oldObject", {{"kind", "Pod"}, {"old", true}}}}}};
  auto req = decodeAdmissionReview(review.dump());
  REQUIRE(req.ok());
  CHECK(req->uid == "705ab4f5");
  CHECK(req->kind == "Pod");
  CHECK(req->resource == "pods");
  CHECK(req->subResource == "ephemeralcontainers");
  CHECK(req->ns == "shop");
  CHECK(req->name == "web-1");
  CHECK(req->operation == "UPDATE");
  CHECK(req->user.username == "alice");
  CHECK(req->user.groups == std::vector<std::string>{"dev"});
  CHECK(req->dryRun);
  CHECK(req->oldObject["old"] == true);

  auto denial = policy::Decision::deny("bulkhead: no", {"forbidHostNetwork"});
  CHECK(json::parse(encodeAdmissionReview("705ab4f5", denial)) ==
        json{{"apiVersion", "admission.k8s.io/v1"},
             {"kind", "AdmissionReview"},
             {"response",
              {{"uid", "705ab4f5"},
               {"allowed", false},
               {"status", {{"code", 403}, {"reason", "Forbidden"}, {"message", "bulkhead: no"}}}}}});
  policy::Decision warn;
  warn.warnings = {"careful"};
  warn.auditAnnotations["violations"] = "careful";
  CHECK(json::parse(encodeAdmissionReview("u", warn))["response"] ==
        json{{"uid", "u"},
             {"allowed", true},
             {"warnings", {"careful"}},
             {"auditAnnotations", {{"violations", "careful"}}}});
}

}  // namespace
}  // namespace bulkhead::webhooks
