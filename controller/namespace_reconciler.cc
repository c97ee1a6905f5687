#include "controller/namespace_reconciler.h"

#include "common/log.h"
#include "controller/metrics.h"
#include "policy/namespace_plan.h"

namespace bulkhead::controller {

using nlohmann::json;

void NamespaceReconciler::recordError(const std::string& ns, const Status& error) {
  NamespaceState state = ctx_.namespaceState(ns);
  state.converged = false;
  state.error = error.toString();
  ctx_.setNamespaceState(ns, std::move(state));
}

StatusOr<kube::Result> NamespaceReconciler::reconcile(const std::string& nsName) {
  kube::ObjectPtr ns = ctx_.caches.namespaces->store().get(nsName);
  if (ns == nullptr || policy::isTerminating(*ns)) {
    return kube::Result{};  // its objects go with it
  }
  auto all = ctx_.policies();
  const policy::NamespaceFacts facts{nsName, policy::labelsOf(*ns)};
  const policy::SegmentationPolicy* governing =
      policy::governingPolicy(*all, facts, ctx_.options.installNamespace);
  std::vector<json> desired;
  if (governing != nullptr) {
    desired = policy::desiredObjects(*governing, facts, ctx_.facts());
  }
  const uint64_t factsVersion = ctx_.factsVersion();
  const NamespaceState before = ctx_.namespaceState(nsName);
  const bool wasSegmented =
      governing != nullptr && !before.policy.empty() && before.policy == governing->name;
  const MonoTime now = ctx_.clock->monotonicNow();
  std::map<std::string, size_t> recentlyApplied;
  for (const auto& [slot, applied] : before.pending) {
    if (now - applied.second < kPendingWindow) {
      recentlyApplied[slot] = applied.first;
    }
  }
  const policy::NamespacePlan plan =
      policy::planNamespace(desired, ctx_.managedObjects(nsName), recentlyApplied, wasSegmented);

  // Events about a namespace are kept in that namespace, where `kubectl get events -n` shows them.
  const kube::ObjectReference nsRef{"v1", "Namespace", nsName, nsName,
                                    (*ns)["metadata"].value("uid", "")};
  std::map<std::string, std::pair<size_t, MonoTime>> pending;
  for (const auto& [slot, hash] : plan.awaitingWatch) {
    pending[slot] = before.pending.at(slot);
  }
  for (const auto& write : plan.writes) {
    RETURN_IF_ERROR(ctx_.write(write.object, write.replace, write.repair));
    if (!write.replace) {
      pending[policy::objectSlot(write.object)] = {policy::contentHash(write.object), now};
    }
    if (write.repair) {
      ctx_.events->record(nsRef, kube::EventRecorder::Type::kWarning, "Repaired",
                          "restored " + write.object.value("kind", "") + " " +
                              write.object["metadata"].value("name", "") +
                              (write.replace ? " (it had been edited)" : " (it had been deleted)"));
    }
  }
  for (const auto& have : plan.deletes) {
    RETURN_IF_ERROR(ctx_.remove(have));
  }

  // Pod Security: the governing policy's labels, or none (which takes Bulkhead's away).
  ASSIGN_OR_RETURN(
      auto podSecurity,
      reconcilePodSecurity(
          *ns, governing != nullptr ? policy::podSecurityLabels(*governing) : policy::Labels{},
          before, pending));

  // Tenant policies that were there before the namespace was selected (or before a policy
  // narrowed network.tenantPolicies) are reported, never removed.
  std::string tenantViolations;
  if (governing != nullptr) {
    for (const auto& line : ctx_.tenantPolicyViolations(*governing, nsName)) {
      tenantViolations += (tenantViolations.empty() ? "" : "; ") + line;
    }
  }
  if (!tenantViolations.empty() && tenantViolations != before.tenantViolations) {
    ctx_.events->record(nsRef, kube::EventRecorder::Type::kWarning, "TenantPolicyViolation",
                        tenantViolations + ", under SegmentationPolicy \"" + governing->name +
                            "\"; left in place: keep it to this namespace's pods, or open the "
                            "flow with an AccessGrant or baselineAllows");
  }

  NamespaceState after;
  after.tenantViolations = tenantViolations;
  after.policy = governing ? governing->name : "";
  after.generation = governing ? governing->generation : 0;
  after.factsVersion = factsVersion;
  after.converged = true;
  after.pending = std::move(pending);
  ctx_.setNamespaceState(nsName, std::move(after));
  if (governing != nullptr && !wasSegmented) {
    ctx_.events->record(nsRef, kube::EventRecorder::Type::kNormal, "Segmented",
                        "segmented by SegmentationPolicy \"" + governing->name + "\" (" +
                            std::to_string(desired.size()) + " objects)");
  } else if (governing == nullptr && !plan.deletes.empty()) {
    ctx_.events->record(nsRef, kube::EventRecorder::Type::kNormal, "Unsegmented",
                        "removed " + std::to_string(plan.deletes.size()) +
                            " generated objects: no SegmentationPolicy selects this namespace");
  }
  if (!plan.awaitingWatch.empty() || podSecurity == PodSecurityOutcome::kAwaitingWatch) {
    return kube::Result{kPendingWindow};  // check once the watch had time
  }
  return kube::Result{};
}

StatusOr<NamespaceReconciler::PodSecurityOutcome> NamespaceReconciler::reconcilePodSecurity(
    const json& ns, const policy::Labels& desired, const NamespaceState& before,
    std::map<std::string, std::pair<size_t, MonoTime>>& pending) {
  const std::string& manager = ctx_.options.podSecurityFieldManager;
  if (policy::podSecurityLabelsInPlace(ns, desired, manager)) {
    return PodSecurityOutcome::kInPlace;
  }
  const std::string name = ns["metadata"].value("name", "");
  json object = policy::podSecurityApplyObject(name, ns["metadata"].value("uid", ""), desired);
  const std::string pendingKey = "Namespace/" + name;
  const size_t content = policy::contentHash(object);
  if (auto p = before.pending.find(pendingKey);
      p != before.pending.end() && p->second.first == content &&
      ctx_.clock->monotonicNow() - p->second.second < kPendingWindow) {
    pending[pendingKey] = p->second;  // applied moments ago; the watch will show it
    return PodSecurityOutcome::kAwaitingWatch;
  }
  // Forced: the policy is the authority over a selected namespace's Pod Security level, so a
  // value someone else set is taken over (and leaves with the policy). Without create on
  // namespaces, an apply to a namespace deleted meanwhile fails rather than recreating it; the
  // uid in the body refuses one recreated under the same name.
  auto written = ctx_.client->apply(kube::resources::kNamespaces, object, manager, true, "");
  apiWrites("Namespace", "apply").inc();
  if (!written.ok()) {
    return written.status().withContext("applying the Pod Security labels of namespace " + name);
  }
  log::debug("Pod Security labels applied",
             {{"namespace", name}, {"labels", json(desired).dump()}});
  pending[pendingKey] = {content, ctx_.clock->monotonicNow()};
  return PodSecurityOutcome::kApplied;
}

}  // namespace bulkhead::controller
