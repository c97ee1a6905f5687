#include "controller/twin_reconciler.h"

#include <algorithm>

#include "policy/admission_twin.h"

namespace bulkhead::controller {

using nlohmann::json;

StatusOr<kube::Result> TwinReconciler::reconcile(const std::string& policyName) {
  const Caches& c = ctx_.caches;
  if (!c.admissionPolicies->hasSynced() || !c.admissionPolicyBindings->hasSynced()) {
    return kube::Result{kConflictRetry};
  }
  const std::string name = policy::twinName(policyName);
  auto all = ctx_.policies();
  auto it =
      std::find_if(all->begin(), all->end(), [&](const auto& p) { return p.name == policyName; });
  if (it == all->end() || it->deleting) {
    RETURN_IF_ERROR(ctx_.converge(c.admissionPolicyBindings, name, std::nullopt));
    RETURN_IF_ERROR(ctx_.converge(c.admissionPolicies, name, std::nullopt));
    return kube::Result{};
  }
  policy::TwinInput in;
  in.policy = &*it;
  in.meshAvailable = static_cast<bool>(ctx_.mesh());
  in.now = ctx_.clock->now();
  std::vector<policy::SegmentationException> exceptions;
  for (const auto& [ns, facts] : ctx_.namespaceFacts()) {
    const auto* gov = policy::governingPolicy(*all, facts, ctx_.options.installNamespace);
    if (gov == nullptr || gov->name != policyName) {
      continue;
    }
    in.namespaces.push_back(ns);
    for (const auto& e : c.exceptions->store().byNamespace(ns)) {
      if (auto decoded = policy::decodeSegmentationException(*e); decoded.ok()) {
        exceptions.push_back(std::move(*decoded));
      }
    }
  }
  in.exceptions = &exceptions;
  const policy::AdmissionTwin twin = policy::admissionTwin(in);
  // The policy first: a binding to a policy that does not exist yet is ignored until it does.
  RETURN_IF_ERROR(ctx_.converge(c.admissionPolicies, name, twin.policy));
  RETURN_IF_ERROR(ctx_.converge(c.admissionPolicyBindings, name, twin.binding));
  if (twin.nextChange.has_value()) {
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(*twin.nextChange - in.now);
    return kube::Result{std::max(wait, std::chrono::milliseconds(0)) +
                        std::chrono::milliseconds(10)};
  }
  return kube::Result{};
}

}  // namespace bulkhead::controller
