#include "policy/admission_twin.h"

#include <algorithm>
#include <cstdio>
#include <set>

#include "policy/mesh.h"
#include "policy/segmentation.h"

namespace bulkhead::policy {
namespace {

using nlohmann::json;

// The CEL below reads the pod (or workload template) through these variables, in this order
// (a variable may read the ones before it).
//   tmpl         the Pod itself, or the workload's pod template
//   spec         its pod spec
//   labels       its labels, {} when none; annotations likewise
//   regular, init, ephemeral   its containers of each kind, [] when none
//   containers   all of them
//   subject      `pod "web" in namespace "shop"`, as the webhook's messages begin
//   specPath     where the pod spec is: "spec.", "spec.template.spec.", ...
//   waypoint, hasProxy, ambient, optedOut   the mesh's facts, as mesh.h and evaluatePod define
//   unchanged    an UPDATE that changes nothing a rule reads: allowed, as by the webhook

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    out += (i ? std::string(sep) : "") + parts[i];
  }
  return out;
}

std::string celList(const std::vector<std::string>& values) {
  std::vector<std::string> quoted;
  for (const auto& v : values) {
    quoted.push_back(celString(v));
  }
  return "[" + join(quoted, ", ") + "]";
}

// The pod template of `object` ("object" or "oldObject"), by the request's kind, as
// podTemplatePath() places it.
std::string templateOf(const std::string& object) {
  return "request.kind.kind == 'Pod' ? " + object + " : request.kind.kind == 'CronJob' ? " +
         object + ".spec.jobTemplate.spec.template : request.kind.kind == 'PodTemplate' ? " +
         object + ".template : " + object + ".spec.template";
}

// `m` (a map-valued field expression such as "x.metadata.labels") or {} when absent.
std::string mapOrEmpty(const std::string& owner, const std::string& field) {
  return "has(" + owner + "." + field + ") ? " + owner + "." + field + " : {}";
}

std::string listOrEmpty(const std::string& owner, const std::string& field) {
  return "has(" + owner + "." + field + ") ? " + owner + "." + field + " : []";
}

// Does map `m` hold `key` with a value `pred` accepts (pred reads the value as "v")?
std::string entry(const std::string& m, std::string_view key, const std::string& valueIs) {
  const std::string k = celString(key);
  return "(" + k + " in " + m + " && " + m + "[" + k + "]" + valueIs + ")";
}

// A bool field of `owner` that is present and true.
std::string isTrue(const std::string& owner, const std::string& field) {
  return "(has(" + owner + "." + field + ") && " + owner + "." + field + ")";
}

std::string selectorMatches(const LabelSelector& sel, const std::string& labels) {
  std::vector<std::string> terms;
  for (const auto& [k, v] : sel.matchLabels) {
    terms.push_back(entry(labels, k, " == " + celString(v)));
  }
  for (const auto& r : sel.matchExpressions) {
    const std::string has = "(" + celString(r.key) + " in " + labels + ")";
    const std::string in = entry(labels, r.key, " in " + celList(r.values));
    switch (r.op) {
      case LabelSelector::Requirement::Op::kIn:
        terms.push_back(in);
        break;
      case LabelSelector::Requirement::Op::kNotIn:
        terms.push_back("!" + in);
        break;
      case LabelSelector::Requirement::Op::kExists:
        terms.push_back(has);
        break;
      case LabelSelector::Requirement::Op::kDoesNotExist:
        terms.push_back("!" + has);
        break;
    }
  }
  return terms.empty() ? "true" : "(" + join(terms, " && ") + ")";
}

// Every image string imageRepository() resolves to one of `repositories`, without tag or
// digest: "istio/proxyv2", "docker.io/istio/proxyv2", "index.docker.io/istio/proxyv2".
std::vector<std::string> imageSpellings(const std::vector<std::string>& repositories) {
  std::set<std::string> out;
  for (const auto& repo : repositories) {
    std::vector<std::string> candidates = {repo};
    constexpr std::string_view kDocker = "docker.io/";
    if (repo.starts_with(kDocker)) {
      std::string rest = repo.substr(kDocker.size());
      candidates.push_back(rest);
      candidates.push_back("index.docker.io/" + rest);
      if (rest.starts_with("library/")) {
        candidates.push_back(rest.substr(8));
      }
    }
    for (const auto& c : candidates) {
      if (imageRepository(c) == repo) {
        out.insert(c);
      }
    }
  }
  return {out.begin(), out.end()};
}

// Is the image named by string expression `image` from one of the mesh's proxy images?
std::string proxyImage(const std::string& image, const MeshSettings& mesh) {
  const std::string noDigest = image + ".split('@')[0]";
  const std::string repo = "(" + noDigest + ".lastIndexOf(':') > " + noDigest +
                           ".lastIndexOf('/') ? " + noDigest + ".substring(0, " + noDigest +
                           ".lastIndexOf(':')) : " + noDigest + ")";
  return "(" + repo + " in " + celList(imageSpellings(mesh.proxyImages)) + ")";
}

// Container `c` as the injector writes it, whatever its name: a proxy image, the image's own
// entrypoint, and arguments starting with `args`.
std::string injectorShaped(const std::string& c, const MeshSettings& mesh,
                           const std::vector<std::string>& args) {
  std::string out = "(has(" + c + ".image) && " + proxyImage(c + ".image", mesh) + " && (!has(" +
                    c + ".command) || size(" + c + ".command) == 0) && has(" + c +
                    ".args) && size(" + c + ".args) >= " + std::to_string(args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    out += " && " + c + ".args[" + std::to_string(i) + "] == " + celString(args[i]);
  }
  return out + ")";
}

std::string nativeSidecar(const std::string& c) {
  return "(has(" + c + ".restartPolicy) && " + c + ".restartPolicy == 'Always')";
}

// meshContainer()'s roles, for a container of the list each role may be in.
std::string proxyRegular(const std::string& c, const MeshSettings& mesh) {
  return "(" + c + ".name == " + celString(kIstioProxyContainer) + " && " +
         injectorShaped(c, mesh, {"proxy", "sidecar"}) + ")";
}
std::string proxyNative(const std::string& c, const MeshSettings& mesh) {
  return "(" + nativeSidecar(c) + " && " + proxyRegular(c, mesh) + ")";
}
std::string initRole(const std::string& c, const MeshSettings& mesh) {
  return "(" + c + ".name == " + celString(kIstioInitContainer) + " && !" + nativeSidecar(c) +
         " && " + injectorShaped(c, mesh, {"istio-iptables"}) + ")";
}
std::string validationRole(const std::string& c, const MeshSettings& mesh) {
  return "(" + c + ".name == " + celString(kIstioValidationContainer) + " && !" + nativeSidecar(c) +
         " && " + injectorShaped(c, mesh, {"istio-iptables"}) + " && '--run-validation' in " + c +
         ".args)";
}

// injectOptOut() of string expression `v`.
std::string injectOptOut(const std::string& v) {
  return "!(" + v + ".lowerAscii() in ['', 'y', 'yes', 'true', 'on'])";
}

constexpr std::string_view kTrafficPrefix = "traffic.sidecar.istio.io/";
// Blanks as trafficAnnotationBypasses() trims them: spaces and tabs only.
constexpr std::string_view kBlanks = "[ \t]*";

// trafficAnnotationBypasses(name, v).
std::string trafficBypasses(const std::string& name, const std::string& v) {
  const std::string b(kBlanks);
  return "((" + name + " in ['includeOutboundIPRanges', 'includeInboundPorts'] && !" + v +
         ".matches(" + celString("^" + b + "[*]" + b + "$") + ")) || (" + name +
         " == 'excludeInboundPorts' && " + v + ".split(',').exists(p, !p.matches(" +
         celString("^" + b + "(15020|15021|15090)?" + b + "$") + "))) || (" + name +
         " != 'excludeInboundPorts' && " + name + ".startsWith('exclude') && !" + v + ".matches(" +
         celString("^" + b + "$") + ")))";
}

// proxyConfigBypasses(v): some interceptionMode key in it is set to neither REDIRECT nor
// TPROXY. Each piece after an occurrence of the word is looked at, as the webhook does; the
// leading "x" keeps the text before the first occurrence from counting as one.
std::string proxyConfigBypasses(const std::string& v) {
  const std::string q = "[\"' \t]*";
  return "('x' + " + v + ").split('interceptionMode').exists(s, s.matches(" +
         celString("^" + q + ":") + ") && !s.matches(" +
         celString("^" + q + ":" + q + "(REDIRECT|TPROXY)([^A-Za-z0-9]|$)") + "))";
}

// sidecarAnnotationBypasses(k, v).
std::string annotationBypasses(const std::string& k, const std::string& v,
                               const MeshSettings& mesh) {
  const std::string name = k + ".substring(" + std::to_string(kTrafficPrefix.size()) + ")";
  return "((" + k + ".startsWith(" + celString(kTrafficPrefix) + ") && " +
         trafficBypasses(name, v) + ") || (" + k + " == 'sidecar.istio.io/interceptionMode' && !(" +
         v + " in ['REDIRECT', 'TPROXY'])) || (" + k + " == 'proxy.istio.io/config' && " +
         proxyConfigBypasses(v) + ") || (" + k + " == 'sidecar.istio.io/proxyImage' && !" +
         proxyImage(v, mesh) + ") || (" + k + " == 'inject.istio.io/templates' && " + v +
         " != 'sidecar') || (" + k + " == 'sidecar.istio.io/inject' && " + injectOptOut(v) + "))";
}

// The run-as fields of security context holder `owner` that take the proxy's reserved IDs.
std::string takesProxyId(const std::string& owner) {
  const std::string sc = owner + ".securityContext";
  return "(has(" + sc + ") && ((has(" + sc + ".runAsUser) && " + sc +
         ".runAsUser == " + std::to_string(kIstioProxyUid) + ") || (has(" + sc +
         ".runAsGroup) && " + sc + ".runAsGroup == " + std::to_string(kIstioProxyGid) + ")))";
}

std::string addedCapabilities(const std::string& c) {
  const std::string caps = c + ".securityContext.capabilities";
  return "(has(" + c + ".securityContext) && has(" + caps + ") && has(" + caps + ".add) ? " + caps +
         ".add : [])";
}

// normalizeCapability() of string expression `x`, for a valid name.
std::string normalized(const std::string& x) {
  return "(" + x + ".upperAscii().startsWith('CAP_') ? " + x + ".upperAscii().substring(4) : " + x +
         ".upperAscii())";
}

struct Variable {
  std::string name;
  std::string expression;
};

std::vector<Variable> variables(const SegmentationPolicy& p) {
  const MeshSettings& mesh = p.mesh;
  std::vector<Variable> out = {
      {"tmpl", templateOf("object")},
      {"spec", "variables.tmpl.spec"},
      {"labels", "has(variables.tmpl.metadata) ? (" +
                     mapOrEmpty("variables.tmpl.metadata", "labels") + ") : {}"},
      {"annotations", "has(variables.tmpl.metadata) ? (" +
                          mapOrEmpty("variables.tmpl.metadata", "annotations") + ") : {}"},
      {"regular", listOrEmpty("variables.spec", "containers")},
      {"init", listOrEmpty("variables.spec", "initContainers")},
      {"ephemeral", listOrEmpty("variables.spec", "ephemeralContainers")},
      {"containers", "variables.regular + variables.init + variables.ephemeral"},
      {"subject",
       "request.kind.kind.lowerAscii() + ' \"' + (has(object.metadata.name) && "
       "object.metadata.name != '' ? object.metadata.name : "
       "(has(object.metadata.generateName) ? object.metadata.generateName : '')) + "
       "'\" in namespace \"' + request.namespace + '\"'"},
      {"specPath",
       "request.kind.kind == 'Pod' ? 'spec.' : request.kind.kind == 'CronJob' ? "
       "'spec.jobTemplate.spec.template.spec.' : request.kind.kind == 'PodTemplate' ? "
       "'template.spec.' : 'spec.template.spec.'"},
      {"waypoint",
       entry("variables.labels", kWaypointLabel, " == " + celString(kWaypointLabelValue)) +
           " && size(variables.containers) == 1 && size(variables.regular) == 1 && "
           "variables.regular[0].name == " +
           celString(kIstioProxyContainer) + " && " +
           injectorShaped("variables.regular[0]", mesh, {"proxy", "waypoint"})},
      {"hasProxy", "variables.regular.exists(c, " + proxyRegular("c", mesh) +
                       ") || variables.init.exists(c, " + proxyNative("c", mesh) + ")"},
  };
  switch (mesh.dataplaneMode) {
    case DataplaneMode::kSidecar:
      out.push_back({"ambient", "false"});
      break;
    case DataplaneMode::kAmbient:
      out.push_back({"ambient", "true"});
      break;
    case DataplaneMode::kFromNamespace:
      out.push_back(
          {"ambient",
           "namespaceObject != null && has(namespaceObject.metadata.labels) "
           "&& " +
               entry("namespaceObject.metadata.labels", kDataplaneModeLabel, " == 'ambient'")});
      break;
  }
  out.push_back({"optedOut", "('sidecar.istio.io/inject' in variables.labels && " +
                                 injectOptOut("variables.labels['sidecar.istio.io/inject']") +
                                 ") || variables.annotations.exists(k, " +
                                 annotationBypasses("k", "variables.annotations[k]", mesh) + ")"});

  // An UPDATE that leaves the pod spec and every label and annotation the rules read as they
  // were (ruleMetadataEqual): the webhook allows it without judging, so a legacy object can
  // still be relabelled or lose a finalizer.
  std::vector<std::string> required = p.podRules.requiredLabels;
  const std::string meshKey =
      "(k.startsWith('sidecar.istio.io/') || k.startsWith('traffic.sidecar.istio.io/') || "
      "k.startsWith('ambient.istio.io/') || k.startsWith('proxy.istio.io/') || "
      "k.startsWith('istio.io/'))";
  const std::string labelKey = "(" + meshKey + " || k in " + celList(required) + ")";
  auto same = [](const std::string& now, const std::string& was, const std::string& read) {
    return now + ".filter(k, " + read + ").all(k, k in " + was + " && " + was + "[k] == " + now +
           "[k]) && " + was + ".filter(k, " + read + ").all(k, k in " + now + ")";
  };
  out.push_back({"old", "request.operation == 'UPDATE' && oldObject != null ? (" +
                            templateOf("oldObject") + ") : {}"});
  out.push_back({"oldLabels", "has(variables.old.metadata) ? (" +
                                  mapOrEmpty("variables.old.metadata", "labels") + ") : {}"});
  out.push_back({"oldAnnotations", "has(variables.old.metadata) ? (" +
                                       mapOrEmpty("variables.old.metadata", "annotations") +
                                       ") : {}"});
  out.push_back(
      {"unchanged", "has(variables.old.spec) && variables.old.spec == variables.spec && " +
                        same("variables.labels", "variables.oldLabels", labelKey) + " && " +
                        same("variables.annotations", "variables.oldAnnotations", meshKey)});
  return out;
}

// One rule's CEL: `check` is true when the template passes the rule; `detail` (a CEL string
// expression, evaluated only on failure) is the evidence in the message's parenthesis; `fix`
// the hint after it.
struct RuleCel {
  std::string_view rule;
  std::string check;
  std::string detail;
  std::string fix;
  bool waypointExempt = false;
};

std::vector<RuleCel> ruleCels(const SegmentationPolicy& p, bool mtlsStrict) {
  const PodRules& r = p.podRules;
  const MeshSettings& mesh = p.mesh;
  std::vector<RuleCel> out;
  if (!r.requiredLabels.empty()) {
    const std::string keys = celList(r.requiredLabels);
    const std::string missing = keys + ".filter(k, !(k in variables.labels))[0]";
    out.push_back({kRequiredLabels, keys + ".all(k, k in variables.labels)",
                   "variables.specPath.substring(0, size(variables.specPath) - 5) + "
                   "'metadata.labels[' + " +
                       missing + " + '] is missing'",
                   "'add label ' + " + missing +
                       " + (request.kind.kind == 'Pod' ? '' : ' to the pod template')",
                   true});
  }
  if (r.forbidHostNetwork) {
    out.push_back({kForbidHostNetwork, "!" + isTrue("variables.spec", "hostNetwork"),
                   "variables.specPath + 'hostNetwork=true'", "'remove hostNetwork'"});
  }
  if (r.forbidHostPorts) {
    const std::string bad =
        "(has(c.ports) && c.ports.exists(q, has(q.hostPort) && q.hostPort != 0))";
    const std::string first = "variables.containers.filter(c, " + bad + ")[0]";
    out.push_back({kForbidHostPorts, "!variables.containers.exists(c, " + bad + ")",
                   "'hostPort=' + string(" + first +
                       ".ports.filter(q, has(q.hostPort) && q.hostPort != 0)[0].hostPort)",
                   "'remove the hostPort from container \"' + " + first + ".name + '\"'"});
  }
  if (r.forbidHostPIDIPC) {
    out.push_back(
        {kForbidHostPIDIPC,
         "!" + isTrue("variables.spec", "hostPID") + " && !" + isTrue("variables.spec", "hostIPC"),
         "variables.specPath + (" + isTrue("variables.spec", "hostPID") +
             " ? 'hostPID' : 'hostIPC') + '=true'",
         "(" + isTrue("variables.spec", "hostPID") + " ? 'remove hostPID' : 'remove hostIPC')"});
  }
  if (r.forbidPrivileged) {
    const std::string bad =
        "(has(c.securityContext) && " + isTrue("c.securityContext", "privileged") + ")";
    out.push_back({kForbidPrivileged, "!variables.containers.exists(c, " + bad + ")",
                   "'securityContext.privileged=true'",
                   "'remove privileged: true from container \"' + variables.containers.filter(c, " +
                       bad + ")[0].name + '\"'"});
  }
  if (!r.forbiddenCapabilities.empty()) {
    std::vector<std::string> forbidden;
    for (const auto& cap : r.forbiddenCapabilities) {
      forbidden.push_back(normalizeCapability(cap));
    }
    std::sort(forbidden.begin(), forbidden.end());
    forbidden.erase(std::unique(forbidden.begin(), forbidden.end()), forbidden.end());
    const bool any = std::find(forbidden.begin(), forbidden.end(), "ALL") != forbidden.end();
    const std::string invalid = "!x.matches('^[A-Za-z_]+$')";
    const std::string hit = any ? "true"
                                : "(" + normalized("x") + " == 'ALL' || " + normalized("x") +
                                      " in " + celList(forbidden) + ")";
    // istio-init sets up the pod's redirection with NET_ADMIN and NET_RAW, and no more.
    const std::string initAllowed =
        "(" + initRole("c", mesh) + " && " + normalized("x") + " in ['NET_ADMIN', 'NET_RAW'])";
    const std::string bad = "(" + invalid + " || " + hit + ")";
    const std::string badInit = "(" + invalid + " || (!" + initAllowed + " && " + hit + "))";
    auto listBad = [&](const std::string& list, const std::string& b) {
      return "variables." + list + ".exists(c, " + addedCapabilities("c") + ".exists(x, " + b +
             "))";
    };
    const std::string anyBad = listBad("regular", bad) + " || " + listBad("init", badInit) +
                               " || " + listBad("ephemeral", bad);
    auto firstBad = [&](const std::string& b, const std::string& list) {
      return "variables." + list + ".map(c, " + addedCapabilities("c") + ".filter(x, " + b +
             ").map(x, 'container \"' + c.name + '\" adds \"' + x + '\"'))";
    };
    out.push_back({kForbiddenCapabilities, "!(" + anyBad + ")",
                   "(" + firstBad(bad, "regular") + " + " + firstBad(badInit, "init") + " + " +
                       firstBad(bad, "ephemeral") + ").filter(l, size(l) > 0)[0][0]",
                   "'remove the capability from the container\\'s added capabilities'"});
  }
  if (r.requireSidecar && mtlsStrict) {
    const std::string ambientPass =
        "!" + entry("variables.labels", kDataplaneModeLabel, " == 'none'") + " && !" +
        entry("variables.annotations", "ambient.istio.io/bypass-inbound-capture",
              ".lowerAscii() == 'true'");
    const std::string nsLabels = "namespaceObject.metadata.labels";
    const std::string requested =
        "((namespaceObject != null && has(" + nsLabels + ") && ('istio.io/rev' in " + nsLabels +
        " || " + entry(nsLabels, "istio-injection", " == 'enabled'") +
        ")) || 'istio.io/rev' in variables.labels || " +
        entry("variables.labels", "sidecar.istio.io/inject", " == 'true'") + ")";
    const std::string missingProxy =
        "(request.kind.kind == 'Pod' && !variables.hasProxy && " + requested + ")";
    const std::string idsTaken =
        "(" + takesProxyId("variables.spec") + " || variables.regular.exists(c, !" +
        proxyRegular("c", mesh) + " && " + takesProxyId("c") + ") || variables.init.exists(c, !" +
        proxyNative("c", mesh) + " && !" + validationRole("c", mesh) + " && " + takesProxyId("c") +
        ") || variables.ephemeral.exists(c, " + takesProxyId("c") + "))";
    const std::string sidecarPass = "!variables.optedOut && !" + missingProxy + " && !" + idsTaken;
    const std::string isAmbient = "(variables.ambient && !variables.hasProxy)";
    out.push_back(
        {kRequireSidecar, "(" + isAmbient + " ? (" + ambientPass + ") : (" + sidecarPass + "))",
         "(" + isAmbient + " ? 'an ambient opt-out' : variables.optedOut ? 'a sidecar opt-out' : " +
             missingProxy + " ? 'no istio-proxy, though injection is requested' : 'runs as " +
             std::to_string(kIstioProxyUid) + ", the Istio proxy\\'s user or group')",
         "(" + isAmbient + " || variables.optedOut ? 'remove the opt-out' : " + missingProxy +
             " ? 'let Istio\\'s injector add its sidecar' : 'run as a user and group other than " +
             std::to_string(kIstioProxyUid) + "')",
         true});
  }
  return out;
}

std::string modeAction(Mode mode) {
  switch (mode) {
    case Mode::kEnforce:
      return "Deny";
    case Mode::kWarn:
      return "Warn";
    case Mode::kAudit:
      return "Audit";
  }
  return "Deny";
}

json resourceRules() {
  auto rule = [](std::string group, std::vector<std::string> resources) {
    return json{{"apiGroups", {std::move(group)}},
                {"apiVersions", {"v1"}},
                {"resources", std::move(resources)},
                {"operations", {"CREATE", "UPDATE"}},
                {"scope", "Namespaced"}};
  };
  return json::array(
      {rule("", {"pods", "pods/ephemeralcontainers", "replicationcontrollers", "podtemplates"}),
       rule("apps", {"deployments", "statefulsets", "daemonsets", "replicasets"}),
       rule("batch", {"jobs", "cronjobs"})});
}

}  // namespace

std::string celString(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\\' || c == '\'') {
      out += '\\';
      out += c;
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string twinName(const std::string& policyName) { return "bulkhead-" + policyName; }

AdmissionTwin admissionTwin(const TwinInput& in) {
  const SegmentationPolicy& p = *in.policy;
  const std::string name = twinName(p.name);
  const json labels = {{kManagedByLabel, kManagedByValue}, {kPolicyLabel, p.name}};
  // Owned by the policy, so that the garbage collector removes them with it even while no
  // Bulkhead replica runs.
  json metadata = {{"name", name}, {"labels", labels}};
  if (!p.uid.empty()) {
    metadata["ownerReferences"] = {{{"apiVersion", kApiVersion},
                                    {"kind", "SegmentationPolicy"},
                                    {"name", p.name},
                                    {"uid", p.uid},
                                    {"controller", true}}};
  }
  std::vector<std::string> namespaces = in.namespaces;
  std::sort(namespaces.begin(), namespaces.end());
  namespaces.erase(std::unique(namespaces.begin(), namespaces.end()), namespaces.end());
  const std::set<std::string> governed(namespaces.begin(), namespaces.end());

  AdmissionTwin out;
  // Each rule's exemptions: the Active exceptions listing it, by namespace and pod selector.
  std::map<std::string, std::vector<std::string>, std::less<>> exempt;
  if (in.exceptions != nullptr) {
    std::vector<const SegmentationException*> active;
    for (const auto& e : *in.exceptions) {
      if (governed.contains(e.ns) && phaseOf(e, p, in.now) == ExceptionPhase::kActive) {
        active.push_back(&e);
      }
    }
    std::sort(active.begin(), active.end(), [](const auto* a, const auto* b) {
      return std::tie(a->ns, a->name) < std::tie(b->ns, b->name);
    });
    for (const auto* e : active) {
      for (const auto& rule : e->rules) {
        // Until expiresAt, even if the controller is not there to rewrite the twin then: the
        // API server sets creationTimestamp to its own clock before admission on every create.
        // (An update is judged by when its object was created; the controller removes the
        // exception from the twin at expiresAt.)
        exempt[rule].push_back("(request.namespace == " + celString(e->ns) + " && " +
                               selectorMatches(e->podSelector, "variables.labels") +
                               " && timestamp(object.metadata.creationTimestamp) < timestamp(" +
                               celString(formatDateTime(e->expiresAt)) + "))");
      }
      if (!out.nextChange || e->expiresAt < *out.nextChange) {
        out.nextChange = e->expiresAt;
      }
    }
  }

  json vars = json::array();
  for (const auto& v : variables(p)) {
    vars.push_back({{"name", v.name}, {"expression", v.expression}});
  }
  json validations = json::array();
  const bool mtlsStrict = p.mtls == MtlsMode::kStrict && in.meshAvailable;
  for (const auto& rule : ruleCels(p, mtlsStrict)) {
    std::vector<std::string> passes = {"variables.unchanged"};
    if (rule.waypointExempt) {
      passes.push_back("variables.waypoint");
    }
    if (auto it = exempt.find(rule.rule); it != exempt.end()) {
      passes.insert(passes.end(), it->second.begin(), it->second.end());
    }
    passes.push_back(rule.check);
    validations.push_back(
        {{"expression", join(passes, " || ")},
         {"messageExpression", "'bulkhead: ' + variables.subject + ' violates " +
                                   std::string(rule.rule) + " (' + " + rule.detail +
                                   " + ') of SegmentationPolicy " + "\"" + p.name + "\"; ' + " +
                                   rule.fix + " + ' or request a SegmentationException'"},
         {"reason", "Forbidden"}});
  }
  out.policy = {{"apiVersion", "admissionregistration.k8s.io/v1"},
                {"kind", "ValidatingAdmissionPolicy"},
                {"metadata", metadata},
                {"spec",
                 {{"failurePolicy", "Fail"},
                  // The API server's defaults written out, so the stored spec equals this one.
                  {"matchConstraints",
                   {{"matchPolicy", "Equivalent"},
                    {"namespaceSelector", json::object()},
                    {"objectSelector", json::object()},
                    {"resourceRules", resourceRules()}}},
                  {"variables", std::move(vars)},
                  {"validations", std::move(validations)}}}};
  if (!namespaces.empty()) {
    out.binding = json{
        {"apiVersion", "admissionregistration.k8s.io/v1"},
        {"kind", "ValidatingAdmissionPolicyBinding"},
        {"metadata", metadata},
        {"spec",
         {{"policyName", name},
          {"validationActions", {modeAction(p.mode)}},
          {"matchResources",
           {{"matchPolicy", "Equivalent"},
            {"objectSelector", json::object()},
            {"namespaceSelector",
             {{"matchExpressions",
               {{{"key", kNamespaceNameLabel}, {"operator", "In"}, {"values", namespaces}}}}}}}}}}};
  }
  return out;
}

}  // namespace bulkhead::policy
