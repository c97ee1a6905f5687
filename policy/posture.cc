#include "policy/posture.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "policy/admission.h"
#include "policy/pod_facts.h"
#include "policy/pod_rules.h"

namespace bulkhead::policy {

using nlohmann::json;

namespace {

// Copies the members `keys` of `from` that exist into `to`.
void copyMembers(const json& from, json& to, std::initializer_list<const char*> keys) {
  for (const char* key : keys) {
    if (auto it = from.find(key); it != from.end()) {
      to[key] = *it;
    }
  }
}

json scannedContainer(const json& c) {
  if (!c.is_object()) {
    return c;  // left for the decoder to refuse
  }
  json out = json::object();
  copyMembers(c, out, {"name", "image", "command", "args", "restartPolicy", "securityContext"});
  if (auto ports = c.find("ports"); ports != c.end()) {
    if (!ports->is_array()) {
      out["ports"] = *ports;
    } else {
      json kept = json::array();
      for (const auto& p : *ports) {
        json port = json::object();
        if (p.is_object()) {
          copyMembers(p, port, {"hostPort"});
        }
        kept.push_back(std::move(port));  // kept in place: paths name the port's index
      }
      out["ports"] = std::move(kept);
    }
  }
  return out;
}

json scannedPodSpec(const json& spec) {
  if (!spec.is_object()) {
    return spec;
  }
  json out = json::object();
  copyMembers(spec, out, {"hostNetwork", "hostPID", "hostIPC", "securityContext"});
  for (const char* list : {"containers", "initContainers", "ephemeralContainers"}) {
    auto it = spec.find(list);
    if (it == spec.end()) {
      continue;
    }
    if (!it->is_array()) {
      out[list] = *it;
      continue;
    }
    json kept = json::array();
    for (const auto& c : *it) {
      kept.push_back(scannedContainer(c));
    }
    out[list] = std::move(kept);
  }
  return out;
}

// The annotations the rules read (the mesh's); other ones (checksums, tools' notes, kubectl's
// last-applied copy of the whole object) are often large.
json meshAnnotations(const json& annotations) {
  if (!annotations.is_object()) {
    return annotations;  // left for the decoder to refuse
  }
  json out = json::object();
  for (const auto& [key, value] : annotations.items()) {
    if (isMeshMetadataKey(key)) {
      out[key] = value;
    }
  }
  return out;
}

// Whether `object` is controlled by an object of a kind that is scanned in its place.
bool controlledByScannedOwner(const json& object) {
  const json& md = object.value("metadata", json::object());
  for (const auto& ref : md.value("ownerReferences", json::array())) {
    if (!ref.is_object() || !ref.value("controller", false)) {
      continue;
    }
    const std::string kind = ref.value("kind", "");
    const std::string api = ref.value("apiVersion", "");
    if ((kind == "Deployment" && api == "apps/v1") || (kind == "CronJob" && api == "batch/v1")) {
      return true;
    }
  }
  return false;
}

std::string apiVersionOf(std::string_view kind) {
  if (kind == "Pod" || kind == "ReplicationController") {
    return "v1";
  }
  if (kind == "Job" || kind == "CronJob") {
    return "batch/v1";
  }
  return "apps/v1";
}

// How bad breaking each rule is, for a report reader sorting by severity.
std::string severityOf(std::string_view rule) {
  if (rule == kForbidPrivileged || rule == kForbidHostNetwork || rule == kForbidHostPIDIPC ||
      rule == kForbiddenCapabilities) {
    return "high";
  }
  if (rule == kForbidHostPorts || rule == kRequireSidecar) {
    return "medium";
  }
  return "low";
}

}  // namespace

void keepScannedFields(json& object, std::string_view kind) {
  json kept = {{"kind", std::string(kind)}};
  json rules = {{"kind", std::string(kind)}};  // what decodePodFacts reads
  if (!object.is_object()) {
    object = std::move(kept);
    return;
  }
  if (auto md = object.find("metadata"); md != object.end() && md->is_object()) {
    json meta = json::object();
    copyMembers(*md, meta,
                {"name", "generateName", "namespace", "uid", "resourceVersion",
                 "deletionTimestamp"});
    json owners = json::array();
    for (const auto& ref : md->value("ownerReferences", json::array())) {
      if (ref.is_object() && ref.value("controller", false)) {
        json owner = json::object();
        copyMembers(ref, owner, {"apiVersion", "kind", "name", "controller"});
        owners.push_back(std::move(owner));
      }
    }
    if (!owners.empty()) {
      meta["ownerReferences"] = std::move(owners);
    }
    kept["metadata"] = std::move(meta);
    json ruleMeta = json::object();
    copyMembers(*md, ruleMeta, {"name", "generateName", "namespace", "labels"});
    if (auto ann = md->find("annotations"); ann != md->end()) {
      ruleMeta["annotations"] = meshAnnotations(*ann);
    }
    rules["metadata"] = std::move(ruleMeta);
  }
  // Down to the pod template, keeping the path's objects (and each template's metadata).
  std::optional<std::string_view> templatePath = podTemplatePath(kind);
  const json* from = &object;
  json* to = &rules;
  std::string_view rest = templatePath.value_or("");
  bool complete = templatePath.has_value();
  while (complete && !rest.empty()) {
    const size_t dot = rest.find('.');
    const std::string key(rest.substr(0, dot));
    rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
    auto it = from->find(key);
    if (it == from->end() || !it->is_object()) {
      if (it != from->end()) {
        (*to)[key] = *it;  // left for the decoder to refuse
      }
      complete = false;
      break;
    }
    from = &*it;
    to = &((*to)[key] = json::object());
  }
  if (complete) {
    if (to != &rules) {  // a template: its own metadata (a Pod's is above)
      if (auto md = from->find("metadata"); md != from->end()) {
        json meta = json::object();
        if (md->is_object()) {
          copyMembers(*md, meta, {"labels"});
          if (auto ann = md->find("annotations"); ann != md->end()) {
            meta["annotations"] = meshAnnotations(*ann);
          }
        } else {
          meta = *md;
        }
        (*to)["metadata"] = std::move(meta);
      }
    }
    if (auto spec = from->find("spec"); spec != from->end()) {
      (*to)["spec"] = scannedPodSpec(*spec);
    }
  }
  kept["scanned"] = rules.dump();
  object = std::move(kept);
}

Posture scanNamespace(const PostureInput& in) {
  Posture out;
  if (in.policy == nullptr) {
    return out;
  }
  const SegmentationPolicy& p = *in.policy;
  PodContext base;
  base.mtlsStrict = p.mtls == MtlsMode::kStrict && in.meshAvailable;
  base.ambient = in.namespaceLabels != nullptr && p.ambient(*in.namespaceLabels);
  if (in.namespaceLabels != nullptr) {
    base.injectionRequest = injectionRequest(in.ns, *in.namespaceLabels);
  }
  base.defaultDenyExists = true;
  base.exemptedRules.insert(std::string(kRequireSegmentedNamespace));

  for (const json* object : in.objects) {
    const std::string kind = object->value("kind", "");
    const bool isPod = kind == "Pod";
    if (!isPod && controlledByScannedOwner(*object)) {
      continue;
    }
    const json& md = object->value("metadata", json::object());
    if (md.contains("deletionTimestamp")) {
      continue;  // on its way out
    }
    (isPod ? out.pods : out.workloads) += 1;
    Finding ref{apiVersionOf(kind), kind, md.value("name", ""), md.value("uid", ""), "", ""};
    const json rules = json::parse(object->value("scanned", "{}"), nullptr, false);
    auto facts = decodePodFacts(rules);
    if (!facts.ok()) {
      ++out.unreadable;
      ref.message = "bulkhead: cannot read the " + kind + ": " + facts.status().message();
      out.findings.push_back(std::move(ref));
      continue;
    }
    facts->ns = in.ns;
    PodContext ctx = base;
    if (in.exceptions != nullptr) {
      for (auto& rule : exemptedRules(*in.exceptions, facts->labels.value, p, in.now)) {
        ctx.exemptedRules.insert(rule);
      }
    }
    const std::vector<Violation> violations = evaluatePod(*facts, p, ctx);
    if (violations.empty()) {
      continue;
    }
    (isPod ? out.violatingPods : out.violatingWorkloads) += 1;
    // One finding per rule, with the webhook's message for that rule's violations.
    for (size_t i = 0; i < violations.size();) {
      size_t j = i;
      while (j < violations.size() && violations[j].rule == violations[i].rule) {
        ++j;
      }
      std::vector<Violation> ofRule(violations.begin() + static_cast<std::ptrdiff_t>(i),
                                    violations.begin() + static_cast<std::ptrdiff_t>(j));
      Finding f = ref;
      f.rule = violations[i].rule;
      f.message = denialMessage(*facts, ofRule, p.name);
      out.findings.push_back(std::move(f));
      i = j;
    }
  }
  auto rank = [](const std::string& rule) {
    auto it = std::find(kPodRuleNames.begin(), kPodRuleNames.end(), rule);
    return it - kPodRuleNames.begin();  // "" (unreadable) ranks after every rule
  };
  std::stable_sort(out.findings.begin(), out.findings.end(),
                   [&](const Finding& a, const Finding& b) {
                     return std::make_tuple(a.kind, a.name, rank(a.rule)) <
                            std::make_tuple(b.kind, b.name, rank(b.rule));
                   });
  return out;
}

json postureReport(const std::string& ns, const SegmentationPolicy& policy,
                   const Posture& posture) {
  const std::string verdict = policy.mode == Mode::kWarn ? "warn" : "fail";
  json results = json::array();
  int64_t failed = 0, warned = 0, errors = 0;
  for (const auto& f : posture.findings) {
    const bool error = f.rule.empty();
    (error ? errors : verdict == "warn" ? warned : failed) += 1;
    if (results.size() >= kMaxReportResults) {
      continue;
    }
    json r = {{"source", "bulkhead"},
              {"policy", policy.name},
              {"category", "Segmentation"},
              {"result", error ? "error" : verdict},
              {"scored", true},
              {"message", f.message},
              {"resources",
               {{{"apiVersion", f.apiVersion},
                 {"kind", f.kind},
                 {"namespace", ns},
                 {"name", f.name},
                 {"uid", f.uid}}}},
              {"properties", {{"mode", std::string(modeName(policy.mode))}}}};
    if (!error) {
      r["rule"] = f.rule;
      r["severity"] = severityOf(f.rule);
    }
    results.push_back(std::move(r));
  }
  const int64_t scanned = posture.pods + posture.workloads;
  const int64_t violating = posture.violatingPods + posture.violatingWorkloads;
  json report = {
      {"apiVersion", kReportApiVersion},
      {"kind", "Report"},
      {"metadata",
       {{"name", kReportName},
        {"namespace", ns},
        {"labels", {{kManagedByLabel, kManagedByValue}, {kPolicyLabel, policy.name}}},
        {"annotations",
         {{"bulkhead.dev/violating-pods", std::to_string(posture.violatingPods)},
          {"bulkhead.dev/violating-workloads", std::to_string(posture.violatingWorkloads)},
          {"bulkhead.dev/listed-results",
           std::to_string(results.size()) + " of " + std::to_string(posture.findings.size())}}}}},
      {"scope", {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"name", ns}}},
      {"summary",
       {{"pass", scanned - violating - posture.unreadable},
        {"fail", failed},
        {"warn", warned},
        {"error", errors},
        {"skip", 0}}},
      {"results", std::move(results)}};
  return report;
}

}  // namespace bulkhead::policy
