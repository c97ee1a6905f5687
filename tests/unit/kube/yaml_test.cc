#include "kube/yaml.h"

#include <doctest/doctest.h>

namespace bulkhead::kube {
namespace {

using nlohmann::json;

TEST_CASE("YAML documents read as kubectl reads manifests") {
  auto docs = parseYamlDocuments(R"(---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web, tier: "1", on: "on"}
spec:
  hostNetwork: yes
  hostPID: false
  containers:
  - name: c
    ports: [{containerPort: 8080, hostPort: 0x50}]
    env: [{name: A, value: "true"}, {name: B, value: ~}, {name: C, value: 1.5}]
---
---
{"kind": "List", "items": []}
)");
  REQUIRE(docs.ok());
  REQUIRE(docs->size() == 2);
  const json& pod = (*docs)[0];
  CHECK(pod["metadata"]["labels"] == json({{"app", "web"}, {"tier", "1"}, {"on", "on"}}));
  CHECK(pod["spec"]["hostNetwork"] == true);
  CHECK(pod["spec"]["hostPID"] == false);
  CHECK(pod["spec"]["containers"][0]["ports"][0] ==
        json({{"containerPort", 8080}, {"hostPort", 80}}));
  CHECK(pod["spec"]["containers"][0]["env"][0]["value"] == "true");
  CHECK(pod["spec"]["containers"][0]["env"][1]["value"].is_null());
  CHECK(pod["spec"]["containers"][0]["env"][2]["value"] == 1.5);
  CHECK((*docs)[1] == json({{"kind", "List"}, {"items", json::array()}}));
}

TEST_CASE("text that is not YAML says where") {
  auto docs = parseYamlDocuments("a: b\n  c: [d\n");
  REQUIRE_FALSE(docs.ok());
  CHECK(docs.status().message().find("line ") != std::string::npos);
}

}  // namespace
}  // namespace bulkhead::kube
