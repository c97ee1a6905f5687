#include "controller/policy_reconciler.h"

#include <set>

#include "common/log.h"
#include "controller/metrics.h"
#include "policy/admission_twin.h"
#include "policy/policy_status.h"

namespace bulkhead::controller {

using nlohmann::json;
using std::chrono::milliseconds;

StatusOr<kube::Result> PolicyReconciler::reconcile(const std::string& name) {
  kube::ObjectPtr object = ctx_.caches.policies->store().get(name);
  if (object == nullptr) {
    return kube::Result{};
  }
  auto decoded = policy::decodeSegmentationPolicy(*object);
  if (!decoded.ok()) {
    // Still governing with the last spec that decoded, if there was one (rebuildPolicies).
    auto all = ctx_.policies();
    const std::string uid = (*object)["metadata"].value("uid", "");
    for (const auto& last : *all) {
      if (last.name == name && last.uid == uid && !uid.empty()) {
        if (last.deleting) {
          return cleanUpDeleted(last, *object);
        }
        RETURN_IF_ERROR(updateStatus(last, *object,
                                     decoded.status().message() +
                                         "; its namespaces keep the last spec that decoded "
                                         "(generation " +
                                         std::to_string(last.generation) + ")"));
        return kube::Result{};
      }
    }
    policy::SegmentationPolicy shell;
    shell.name = name;
    shell.generation = (*object)["metadata"].value("generation", int64_t{0});
    RETURN_IF_ERROR(updateStatus(shell, *object, decoded.status().message()));
    return kube::Result{};
  }
  const policy::SegmentationPolicy& p = *decoded;
  if (p.deleting) {
    return cleanUpDeleted(p, *object);
  }
  if (!p.hasFinalizer) {
    json finalizers = (*object)["metadata"].value("finalizers", json::array());
    finalizers.push_back(policy::kFinalizer);
    RETURN_IF_ERROR(
        patchFinalizers(name, *object, std::move(finalizers)).withContext("adding the finalizer"));
  }
  RETURN_IF_ERROR(updateStatus(p, *object, ""));
  return kube::Result{};
}

Status PolicyReconciler::patchFinalizers(const std::string& name, const json& object,
                                         json finalizers) {
  json patch = {{"metadata",
                 {{"finalizers", std::move(finalizers)},
                  {"resourceVersion", object["metadata"]["resourceVersion"]}}}};
  auto patched = ctx_.client->mergePatch(resources::kSegmentationPolicies, "", name, patch, "");
  return patched.ok() || patched.status().code() == StatusCode::kNotFound ? okStatus()
                                                                          : patched.status();
}

StatusOr<kube::Result> PolicyReconciler::cleanUpDeleted(const policy::SegmentationPolicy& p,
                                                        const json& object) {
  // The policy's deletion made every namespace reconcile (it selects nothing now, so they drop
  // its objects or pass to another policy); the finalizer goes once none holds any of them.
  std::set<std::string> waiting;
  std::vector<kube::Informer*> informers = {ctx_.caches.networkPolicies.get()};
  const MeshCaches mesh = ctx_.mesh();
  if (mesh) {
    informers.push_back(mesh.peerAuthentications.get());
    informers.push_back(mesh.authorizationPolicies.get());
  }
  for (auto* inf : informers) {
    for (const auto& o : inf->store().byIndex(kPolicyIndex, p.name)) {
      waiting.insert((*o)["metadata"].value("namespace", ""));
    }
  }
  // Pod Security labels Bulkhead set are not indexed by policy: any namespace still carrying
  // some that no policy wants any more (this one selects nothing now) waits for its reconcile.
  auto all = ctx_.policies();
  for (const auto& ns : ctx_.caches.namespaces->store().list()) {
    if (policy::isTerminating(*ns) ||
        policy::labelsAppliedBy(*ns, ctx_.options.podSecurityFieldManager).empty()) {
      continue;
    }
    const std::string name = (*ns)["metadata"].value("name", "");
    const auto* gov =
        policy::governingPolicy(*all, {name, policy::labelsOf(*ns)}, ctx_.options.installNamespace);
    if (gov == nullptr || policy::podSecurityLabels(*gov).empty()) {
      waiting.insert(name);
    }
  }
  if (!waiting.empty()) {
    return kube::Result{milliseconds(500)};
  }
  if (!p.hasFinalizer) {
    return kube::Result{};
  }
  json finalizers = json::array();
  for (const auto& f : object["metadata"].value("finalizers", json::array())) {
    if (f != policy::kFinalizer) {
      finalizers.push_back(f);
    }
  }
  RETURN_IF_ERROR(
      patchFinalizers(p.name, object, std::move(finalizers)).withContext("removing the finalizer"));
  log::info("SegmentationPolicy deleted; its generated objects are gone", {{"policy", p.name}});
  return kube::Result{};
}

Status PolicyReconciler::updateStatus(const policy::SegmentationPolicy& p, const json& object,
                                      const std::string& invalidSpec) {
  auto all = ctx_.policies();
  const uint64_t factsVersion = ctx_.factsVersion();
  const std::string& installNs = ctx_.options.installNamespace;
  policy::PolicyStatusInput in;
  in.policy = &p;
  in.invalidSpec = invalidSpec;
  in.meshAvailable = static_cast<bool>(ctx_.mesh());
  in.backgroundScan = ctx_.options.backgroundScan;
  in.adminTier = ctx_.clusterNetworkPolicies() != nullptr;
  in.admissionTwin = ctx_.caches.admissionPolicyBindings != nullptr &&
                     ctx_.caches.admissionPolicyBindings->store().get(
                         policy::twinName(p.name)) != nullptr;
  in.oldStatus = object.value("status", json::object());
  in.now = ctx_.clock->now();
  int64_t totalSelected = 0, totalSegmented = 0;
  for (const auto& [name, facts] : ctx_.namespaceFacts()) {
    const auto* gov = policy::governingPolicy(*all, facts, installNs);
    const NamespaceState state = ctx_.namespaceState(name);
    const bool segmented = gov != nullptr && state.converged && state.policy == gov->name &&
                           state.generation == gov->generation &&
                           state.factsVersion == factsVersion;
    if (gov != nullptr) {
      ++totalSelected;
      totalSegmented += segmented ? 1 : 0;
    }
    // A policy that never decoded selects nothing; one that stopped decoding still governs
    // with its last good spec (it has the uid that spec was decoded with).
    if ((!invalidSpec.empty() && p.uid.empty()) || !policy::selects(p, facts, installNs)) {
      continue;
    }
    policy::SelectedNamespace row{name, gov ? gov->name : "", segmented, state.error, {}, {}};
    if (gov != nullptr && gov->name == p.name) {
      row.tenantViolations = ctx_.tenantPolicyViolations(p, name);
      if (auto posture = ctx_.posture(name); posture.has_value() && posture->policy == p.name) {
        row.violatingPodsAndWorkloads = {posture->violatingPods, posture->violatingWorkloads};
      }
    }
    in.selected.push_back(std::move(row));
  }
  namespacesGauge("selected").set(static_cast<double>(totalSelected));
  namespacesGauge("segmented").set(static_cast<double>(totalSegmented));
  namespacesGauge("unsegmented").set(static_cast<double>(totalSelected - totalSegmented));
  generatedObjects("NetworkPolicy")
      .set(static_cast<double>(ctx_.caches.networkPolicies->store().size()));
  const MeshCaches mesh = ctx_.mesh();
  generatedObjects("PeerAuthentication")
      .set(mesh ? static_cast<double>(mesh.peerAuthentications->store().size()) : 0);
  generatedObjects("AuthorizationPolicy")
      .set(mesh ? static_cast<double>(mesh.authorizationPolicies->store().size()) : 0);

  const json status = policy::policyStatus(in);
  if (status == in.oldStatus) {
    return okStatus();
  }
  auto patched = ctx_.client->mergePatch(resources::kSegmentationPolicies, "", p.name,
                                         {{"status", status}}, "status");
  if (!patched.ok() && patched.status().code() != StatusCode::kNotFound) {
    return patched.status().withContext("updating status");
  }
  return okStatus();
}

}  // namespace bulkhead::controller
