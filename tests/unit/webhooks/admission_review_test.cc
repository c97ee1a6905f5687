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
  // Pods are decoded straight into facts; this object has no spec.
  REQUIRE(req->pod.has_value());
  CHECK(req->pod->status().message() == "spec: required");
  CHECK(req->object.is_null());
  // Other resources keep their objects as DOMs.
  review["request"]["resource"]["resource"] = "services";
  review["request"]["subResource"] = "";
  auto svc = decodeAdmissionReview(review.dump());
  REQUIRE(svc.ok());
  CHECK_FALSE(svc->pod.has_value());
  CHECK(svc->oldObject["old"] == true);
  CHECK(svc->object == json{{"kind", "Pod"}});

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

TEST_CASE("the hot path decodes exactly the facts the DOM decoder does") {
  json pod = {{"apiVersion", "v1"},
              {"kind", "Pod"},
              {"metadata",
               {{"name", "web-1"},
                {"namespace", "shop"},
                {"labels", {{"app.kubernetes.io/name", "web"}, {"dup", "first"}}},
                {"annotations", {{"sidecar.istio.io/inject", "false"}}}}},
              {"spec",
               {{"hostNetwork", true},
                {"hostPID", nullptr},
                {"securityContext", {{"runAsUser", 1337}}},
                {"initContainers",
                 {{{"name", "init"},
                   {"image", "busybox"},
                   {"securityContext",
                    {{"privileged", true}, {"capabilities", {{"add", {"cap_net_admin", "CHOWN"}}}}}}}}},
                {"containers",
                 {{{"name", "web"},
                   {"image", "nginx"},
                   {"ports", {{{"containerPort", 80}, {"hostPort", 8080}}, {{"containerPort", 81}}}},
                   {"env", {{{"name", "A"}, {"value", "b"}}}},
                   {"securityContext",
                    {{"allowPrivilegeEscalation", false}, {"runAsUser", 1000}}}}}},
                {"ephemeralContainers",
                 {{{"name", "debug"},
                   {"image", "busybox"},
                   {"securityContext", {{"capabilities", {{"add", {"NET_RAW"}}}}}}}}}}}};
  auto reviewOf = [](const json& object, const std::string& resource) {
    return json{{"apiVersion", "admission.k8s.io/v1"},
                {"kind", "AdmissionReview"},
                {"request",
                 {{"uid", "u"},
                  {"resource", {{"resource", resource}}},
                  {"operation", "CREATE"},
                  {"object", object}}}};
  };
  auto fast = decodeAdmissionReview(reviewOf(pod, "pods").dump());
  REQUIRE(fast.ok());
  REQUIRE(fast->pod.has_value());
  REQUIRE(fast->pod->ok());
  auto dom = policy::decodePodFacts(pod);
  REQUIRE(dom.ok());
  CHECK(**fast->pod == *dom);

  json cron = {{"apiVersion", "batch/v1"},
               {"kind", "CronJob"},
               {"metadata", {{"name", "c"}}},
               {"spec",
                {{"jobTemplate",
                  {{"spec", {{"template", {{"spec", pod["spec"]}, {"metadata", pod["metadata"]}}}}}}}}}};
  auto fastCron = decodeAdmissionReview(reviewOf(cron, "cronjobs").dump());
  REQUIRE(fastCron.ok());
  CHECK(**fastCron->pod == *policy::decodePodFacts(cron));

  // Wrong types give the same errors.
  pod["spec"]["containers"][0]["ports"][0]["hostPort"] = "8080";
  auto bad = decodeAdmissionReview(reviewOf(pod, "pods").dump());
  REQUIRE(bad.ok());
  CHECK(bad->pod->status() == policy::decodePodFacts(pod).status());
  CHECK(bad->pod->status().message() == "spec.containers[0].ports[0].hostPort: must be an integer");

  // Duplicate keys: the last one counts, as in the API server's decoder.
  std::string dup = R"({"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":
    {"uid":"u","resource":{"resource":"pods"},"operation":"CREATE","object":{"kind":"Pod",
    "metadata":{"name":"p"},"spec":{"hostNetwork":false,"hostNetwork":true,"containers":[]}}}})";
  auto dupReq = decodeAdmissionReview(dup);
  REQUIRE(dupReq.ok());
  CHECK((*dupReq->pod)->hostNetwork.value);
}

TEST_CASE("an UPDATE of a workload carries the old facts and whether its pod template changed") {
  json deployment = json::parse(R"({"apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "api", "namespace": "shop", "labels": {"team": "blue"}},
    "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app.kubernetes.io/name": "api"}},
      "spec": {"hostNetwork": true, "containers": [{"name": "api", "image": "api:1"}]}}}})");
  auto review = [](const json& object, const json& old) {
    json r = {{"apiVersion", "admission.k8s.io/v1"},
              {"kind", "AdmissionReview"},
              {"request",
               {{"uid", "u"},
                {"kind", {{"kind", "Deployment"}}},
                {"resource", {{"resource", "deployments"}}},
                {"operation", "UPDATE"},
                {"object", object},
                {"oldObject", old}}}};
    auto req = decodeAdmissionReview(r.dump());
    REQUIRE(req.ok());
    return *req;
  };
  json relabelled = deployment;
  relabelled["metadata"]["labels"]["team"] = "green";
  relabelled["spec"]["replicas"] = 5;  // outside the template
  relabelled["status"] = {{"replicas", 5}};
  AdmissionRequest req = review(relabelled, deployment);
  REQUIRE(req.pod.has_value());
  REQUIRE(req.oldPod.has_value());
  REQUIRE(req.oldPod->ok());
  CHECK(req.oldPod->value().hostNetwork.value);
  CHECK_FALSE(req.podSpecChanged);
  json newImage = deployment;
  newImage["spec"]["template"]["spec"]["containers"][0]["image"] = "api:2";
  CHECK(review(newImage, deployment).podSpecChanged);
  // An old object without a pod template (or none at all) counts as changed.
  CHECK(review(deployment, json::object()).podSpecChanged);
  json cronJob = json::parse(R"({"kind": "CronJob", "metadata": {"name": "n"},
    "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}})");
  json suspended = cronJob;
  suspended["spec"]["suspend"] = true;
  CHECK_FALSE(review(suspended, cronJob).podSpecChanged);
}

}  // namespace
}  // namespace bulkhead::webhooks
