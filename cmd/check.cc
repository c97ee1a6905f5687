#include "cmd/check.h"

#include <algorithm>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "kube/client_impl.h"
#include "kube/config.h"
#include "kube/yaml.h"
#include "policy/admission.h"
#include "policy/exceptions.h"
#include "policy/pod_facts.h"
#include "policy/segmentation.h"

namespace bulkhead {
namespace {

using nlohmann::json;


using Document = kube::ManifestDocument;

struct Result {
  const Document* doc = nullptr;
  std::string kind, ns, name;
  std::string verdict;  // admitted | refused | warned | audited
  std::string message;
  std::vector<std::string> rules;
};

// The cluster as far as the check needs it.
struct World {
  std::vector<json> policyObjects;
  std::vector<policy::SegmentationException> exceptions;
  std::map<std::string, policy::Labels> namespaceLabels;
  bool meshAvailable = true;
};

StatusOr<policy::Labels> parseLabels(const std::string& text) {
  policy::Labels out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) {
      continue;
    }
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return invalidError("--namespace-labels: \"" + item + "\" is not key=value");
    }
    out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return out;
}

Status readCluster(const std::string& kubeconfig, World& world) {
  kube::LoadOptions load;
  load.kubeconfigFlag = kubeconfig;
  ASSIGN_OR_RETURN(auto config, kube::loadRestConfig(load));
  ASSIGN_OR_RETURN(auto client, kube::ClientImpl::create(config, std::make_shared<RealClock>()));
  ASSIGN_OR_RETURN(auto policies, client->list(kube::resources::kSegmentationPolicies, "", {}));
  world.policyObjects = policies.items;
  ASSIGN_OR_RETURN(auto namespaces, client->list(kube::resources::kNamespaces, "", {}));
  for (const auto& ns : namespaces.items) {
    world.namespaceLabels[ns["metadata"].value("name", "")] = policy::labelsOf(ns);
  }
  auto exceptions = client->list(kube::resources::kSegmentationExceptions, "", {});
  if (exceptions.ok()) {
    for (const auto& e : exceptions->items) {
      if (auto ex = policy::decodeSegmentationException(e); ex.ok()) {
        world.exceptions.push_back(std::move(*ex));
      }
    }
  }
  ASSIGN_OR_RETURN(world.meshAvailable,
                   client->isServed("security.istio.io", "v1", "peerauthentications"));
  return okStatus();
}

Result check(const Document& doc, const std::vector<policy::SegmentationPolicy>& policies,
             const World& world, const std::string& defaultNs, const policy::Labels& nsLabels) {
  Result r;
  r.doc = &doc;
  r.kind = doc.object.value("kind", "");
  const json metadata = doc.object.value("metadata", json::object());
  r.name = metadata.is_object() ? metadata.value("name", "") : "";
  r.ns = metadata.is_object() ? metadata.value("namespace", defaultNs) : defaultNs;
  policy::Labels labels = nsLabels;
  if (auto it = world.namespaceLabels.find(r.ns); it != world.namespaceLabels.end()) {
    labels = it->second;
  }
  labels["kubernetes.io/metadata.name"] = r.ns;
  const policy::SegmentationPolicy* governing =
      policy::governingPolicy(policies, {r.ns, labels}, "");
  policy::Decision decision;
  if (policy::podTemplatePath(r.kind).has_value()) {
    auto facts = policy::decodePodFacts(doc.object);
    if (!facts.ok()) {
      decision = policy::Decision::deny(
          "bulkhead: cannot read the " + r.kind + ": " + facts.status().message(), {"malformed"});
    } else {
      facts->ns = r.ns;
      std::vector<policy::SegmentationException> exceptions;
      for (const auto& e : world.exceptions) {
        if (e.ns == r.ns) {
          exceptions.push_back(e);
        }
      }
      policy::PodReview review;
      review.pod = &*facts;
      review.governing = governing;
      review.namespaceLabels = &labels;
      review.meshAvailable = world.meshAvailable;
      review.defaultDenyExists = true;  // about the workload, not about when it is created
      review.exceptions = &exceptions;
      review.now = std::chrono::system_clock::now();
      decision = policy::decidePod(review);
    }
  } else if (r.kind == "Service") {
    policy::ServiceFacts svc;
    svc.name = r.name;
    svc.ns = r.ns;
    const json spec = doc.object.value("spec", json::object());
    if (spec.is_object()) {
      svc.type = spec.value("type", svc.type);
      svc.hasExternalIPs = spec.contains("externalIPs") && spec["externalIPs"].is_array() &&
                           !spec["externalIPs"].empty();
    }
    decision = policy::decideService(svc, governing, false);
  } else {
    r.verdict = "not checked";
    return r;
  }
  r.rules = decision.rules;
  if (!decision.allowed) {
    r.verdict = "refused";
    r.message = decision.message;
  } else if (!decision.warnings.empty()) {
    r.verdict = "warned";
    for (const auto& w : decision.warnings) {
      r.message += (r.message.empty() ? "" : "; ") + w;
    }
  } else if (!decision.rules.empty()) {
    r.verdict = "audited";
    r.message = decision.auditAnnotations[policy::kAuditAnnotationKey];
  } else {
    r.verdict = "admitted";
  }
  return r;
}

json resultJson(const Result& r) {
  return {{"file", r.doc->source}, {"document", r.doc->where}, {"kind", r.kind},
          {"namespace", r.ns},     {"name", r.name},           {"verdict", r.verdict},
          {"message", r.message},  {"rules", r.rules}};
}

// SARIF 2.1.0, for code-scanning UIs: one result per violated rule of each object.
json sarif(const std::vector<Result>& results) {
  std::vector<std::string> ruleIds;
  json out = json::array();
  for (const auto& r : results) {
    if (r.verdict == "admitted" || r.verdict == "not checked") {
      continue;
    }
    for (const auto& rule : r.rules) {
      if (std::find(ruleIds.begin(), ruleIds.end(), rule) == ruleIds.end()) {
        ruleIds.push_back(rule);
      }
      out.push_back({{"ruleId", rule},
                     {"level", r.verdict == "refused" ? "error" : "warning"},
                     {"message", {{"text", r.message}}},
                     {"locations",
                      {{{"physicalLocation", {{"artifactLocation", {{"uri", r.doc->source}}}}},
                        {"logicalLocations",
                         {{{"fullyQualifiedName", r.kind + "/" + r.ns + "/" + r.name},
                           {"kind", "object"}}}}}}}});
    }
  }
  json rules = json::array();
  for (const auto& id : ruleIds) {
    rules.push_back({{"id", id}, {"name", id}});
  }
  return {{"version", "2.1.0"},
          {"$schema", "https://json.schemastore.org/sarif-2.1.0.json"},
          {"runs",
           {{{"tool", {{"driver", {{"name", "bulkhead"}, {"rules", rules}}}}}, {"results", out}}}}};
}

}  // namespace

int runCheck(int argc, char** argv) {
  std::vector<std::string> files, policyFiles;
  std::string ns = "default", nsLabelsText, output = "text", kubeconfig;
  bool cluster = false, mesh = true, help = false;
  FlagSet flags("bulkhead check",
                "Applies the webhook's rules to manifests (multi-document YAML, Lists, JSON, `-` "
                "for stdin, directories), with the same messages. Exit code 0: all admitted; 1: "
                "something would be refused; 2: unusable input.");
  flags.addStrings("filename", &files, "a manifest file, directory or - (repeatable; also -f)");
  flags.addStrings("f", &files, "short for --filename");
  flags.addStrings("policy", &policyFiles,
                   "a file of SegmentationPolicies and SegmentationExceptions (repeatable)");
  flags.addString("namespace", &ns, "the namespace of objects that name none");
  flags.addString("namespace-labels", &nsLabelsText,
                  "labels of the namespace(s), k=v,... (what selects them)");
  flags.addBool("mesh", &mesh, "Istio's security API is served (requireSidecar applies)");
  flags.addBool("cluster", &cluster,
                "read policies, namespaces, exceptions and Istio from the cluster");
  flags.addString("kubeconfig", &kubeconfig, "with --cluster: the kubeconfig to use");
  flags.addString("output", &output, "text, json or sarif (also -o)");
  flags.addString("o", &output, "short for --output");
  flags.addBool("help", &help, "print this help");
  auto positional = flags.parse(argc, argv);
  if (!positional.ok()) {
    std::cerr << "bulkhead check: " << positional.status().message() << "\n";
    return 2;
  }
  if (help) {
    std::cout << flags.usage();
    return 0;
  }
  for (const auto& p : *positional) {
    files.push_back(p);
  }
  if (files.empty() || (output != "text" && output != "json" && output != "sarif")) {
    std::cerr << "bulkhead check: need -f FILE|DIR|- and -o text|json|sarif\n";
    return 2;
  }
  log::init(log::Level::kWarn);
  auto nsLabels = parseLabels(nsLabelsText);
  if (!nsLabels.ok()) {
    std::cerr << "bulkhead check: " << nsLabels.status().message() << "\n";
    return 2;
  }
  World world;
  world.meshAvailable = mesh;
  if (cluster) {
    if (Status s = readCluster(kubeconfig, world); !s.ok()) {
      std::cerr << "bulkhead check: reading the cluster: " << s.toString() << "\n";
      return 2;
    }
  }
  std::vector<Document> policyDocs, docs;
  if (auto read = kube::readManifests(policyFiles); read.ok()) {
    policyDocs = std::move(*read);
  } else {
    std::cerr << "bulkhead check: --policy " << read.status().message() << "\n";
    return 2;
  }
  for (const auto& d : policyDocs) {
    const std::string kind = d.object.value("kind", "");
    if (kind == "SegmentationPolicy") {
      if (auto p = policy::decodeSegmentationPolicy(d.object); !p.ok()) {
        std::cerr << "bulkhead check: " << d.source << " document " << d.where << ": "
                  << p.status().message() << "\n";
        return 2;
      }
      world.policyObjects.push_back(d.object);
    } else if (kind == "SegmentationException") {
      auto e = policy::decodeSegmentationException(d.object);
      if (!e.ok()) {
        std::cerr << "bulkhead check: " << d.source << " document " << d.where << ": "
                  << e.status().message() << "\n";
        return 2;
      }
      world.exceptions.push_back(std::move(*e));
    }
  }
  if (world.policyObjects.empty()) {
    std::cerr << "bulkhead check: no SegmentationPolicy (--policy FILE, or --cluster)\n";
    return 2;
  }
  if (auto read = kube::readManifests(files); read.ok()) {
    docs = std::move(*read);
  } else {
    std::cerr << "bulkhead check: " << read.status().message() << "\n";
    return 2;
  }
  // Namespaces among the manifests (a chart's own, say) carry the labels that select them.
  for (const auto& d : docs) {
    if (d.object.value("kind", "") == "Namespace" && d.object.contains("metadata")) {
      world.namespaceLabels[d.object["metadata"].value("name", "")] = policy::labelsOf(d.object);
    }
  }
  std::vector<const json*> pointers;
  for (const auto& o : world.policyObjects) {
    pointers.push_back(&o);
  }
  const auto policies = policy::decodePolicies(pointers, {});
  std::vector<Result> results;
  int refused = 0, admitted = 0, skipped = 0;
  for (const auto& d : docs) {
    results.push_back(check(d, policies, world, ns, *nsLabels));
    const auto& v = results.back().verdict;
    refused += v == "refused" ? 1 : 0;
    skipped += v == "not checked" ? 1 : 0;
    admitted += v != "refused" && v != "not checked" ? 1 : 0;
  }
  if (output == "json") {
    json all = json::array();
    for (const auto& r : results) {
      all.push_back(resultJson(r));
    }
    std::cout << json({{"results", all},
                       {"summary",
                        {{"checked", refused + admitted},
                         {"admitted", admitted},
                         {"refused", refused},
                         {"notChecked", skipped}}}})
                     .dump(2)
              << "\n";
  } else if (output == "sarif") {
    std::cout << sarif(results).dump(2) << "\n";
  } else {
    for (const auto& r : results) {
      if (r.verdict == "not checked") {
        continue;
      }
      std::cout << r.doc->source << "#" << r.doc->where << " " << r.kind << " " << r.ns << "/"
                << r.name << ": " << r.verdict << (r.message.empty() ? "" : ": " + r.message)
                << "\n";
    }
    std::cout << refused + admitted << " objects checked: " << admitted << " admitted, " << refused
              << " refused (" << skipped << " of other kinds not checked)\n";
  }
  return refused > 0 ? 1 : 0;
}

}  // namespace bulkhead
