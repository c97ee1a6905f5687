#include "controller/grant_reconciler.h"

#include <algorithm>

#include "common/log.h"
#include "controller/metrics.h"
#include "policy/grants.h"
#include "policy/namespace_plan.h"

namespace bulkhead::controller {

using nlohmann::json;
using std::chrono::milliseconds;

void GrantReconciler::setPhase(const std::string& key, const std::string& phase) {
  std::lock_guard lock(mu_);
  if (phase.empty()) {
    phases_.erase(key);
  } else {
    phases_[key] = phase;
  }
  for (auto p : {policy::GrantPhase::kPending, policy::GrantPhase::kActive,
                 policy::GrantPhase::kExpired, policy::GrantPhase::kRevoked}) {
    const auto name = policy::grantPhaseName(p);
    grantsGauge(name).set(static_cast<double>(std::count_if(
        phases_.begin(), phases_.end(), [&](const auto& e) { return e.second == name; })));
  }
}

std::vector<json> GrantReconciler::currentObjects(const std::string& key) const {
  std::vector<kube::ObjectPtr> objects =
      ctx_.caches.networkPolicies->store().byIndex(kGrantIndex, key);
  if (auto mesh = ctx_.mesh()) {
    auto more = mesh.authorizationPolicies->store().byIndex(kGrantIndex, key);
    objects.insert(objects.end(), more.begin(), more.end());
  }
  std::vector<json> out;
  for (const auto& o : objects) {
    out.push_back(*o);
  }
  return out;
}

Status GrantReconciler::removeAll(const std::vector<json>& objects) {
  for (const auto& have : objects) {
    RETURN_IF_ERROR(ctx_.remove(have));
  }
  return okStatus();
}

StatusOr<bool> GrantReconciler::setFinalizer(json& object, bool present) {
  json finalizers = json::array();
  for (const auto& f : object["metadata"].value("finalizers", json::array())) {
    if (f != policy::kGrantFinalizer) {
      finalizers.push_back(f);
    }
  }
  if (present) {
    finalizers.push_back(policy::kGrantFinalizer);
  }
  // Guarded by the resourceVersion: the list is replaced whole.
  json patch = {
      {"metadata",
       {{"finalizers", finalizers}, {"resourceVersion", object["metadata"]["resourceVersion"]}}}};
  auto patched =
      ctx_.client->mergePatch(resources::kAccessGrants, object["metadata"].value("namespace", ""),
                              object["metadata"].value("name", ""), patch, "");
  if (!patched.ok()) {
    if (patched.status().code() == StatusCode::kNotFound) {
      return false;
    }
    return patched.status().withContext(present ? "adding the finalizer"
                                                : "removing the finalizer");
  }
  object = std::move(*patched);
  return true;
}

void GrantReconciler::forget(const std::string& key) {
  std::lock_guard lock(mu_);
  for (auto it = pending_.lower_bound(key + "|");
       it != pending_.end() && it->first.rfind(key + "|", 0) == 0;) {
    it = pending_.erase(it);
  }
}

bool GrantReconciler::applying(const std::string& key) {
  const MonoTime now = ctx_.clock->monotonicNow();
  std::lock_guard lock(mu_);
  for (auto it = pending_.lower_bound(key + "|");
       it != pending_.end() && it->first.rfind(key + "|", 0) == 0; ++it) {
    if (now - it->second.second < kPendingWindow) {
      return true;
    }
  }
  return false;
}

void GrantReconciler::recordEvents(const json& object, const policy::AccessGrant& grant,
                                   std::optional<policy::GrantPhase> from, policy::GrantPhase to) {
  for (auto event : policy::grantEvents(from, to, grant)) {
    const std::string message = policy::grantEventMessage(event, grant);
    const std::string reason(policy::grantEventReason(event));
    ctx_.events->record(kube::referenceTo(object), kube::EventRecorder::Type::kNormal, reason,
                        message);
    if (grant.from.ns != grant.ns) {
      ctx_.events->record({"v1", "Namespace", grant.from.ns, grant.from.ns, ""},
                          kube::EventRecorder::Type::kNormal, reason, message);
    }
  }
}

StatusOr<kube::Result> GrantReconciler::reconcile(const std::string& key) {
  kube::ObjectPtr cached = ctx_.caches.grants->store().get(key);
  const std::vector<json> current = currentObjects(key);
  if (cached == nullptr) {
    // Gone without passing its finalizer (removed by hand): nothing may stay open.
    setPhase(key, "");
    RETURN_IF_ERROR(removeAll(current));
    forget(key);
    return kube::Result{};
  }
  json object = *cached;  // the latest version: each patch below returns the next one
  auto decoded = policy::decodeAccessGrant(object);
  if (!decoded.ok()) {
    // The CRD's schema and the webhook refuse such objects; one that slips through opens nothing.
    log::warn("ignoring an invalid AccessGrant",
              {{"key", key}, {"error", decoded.status().message()}});
    setPhase(key, "");
    RETURN_IF_ERROR(removeAll(current));
    if (policy::isTerminating(object)) {
      RETURN_IF_ERROR(setFinalizer(object, false).status());
    }
    return kube::Result{};
  }
  policy::AccessGrant grant = std::move(*decoded);
  auto all = ctx_.policies();
  const policy::SegmentationPolicy* dest = ctx_.governing(*all, grant.ns);
  const policy::SegmentationPolicy* source = ctx_.governing(*all, grant.from.ns);
  const WallTime now = ctx_.clock->now();
  const json oldStatus = object.value("status", json::object());
  const auto oldPhase = policy::parseGrantPhase(oldStatus.value("phase", ""));
  const policy::GrantPhase phase = policy::phaseOf(grant, dest, source, now);

  if (grant.deleting) {
    RETURN_IF_ERROR(removeAll(current));
    if (applying(key)) {
      // An object applied moments ago may not be in the cache yet: look again once it is.
      return kube::Result{kPendingWindow};
    }
    setPhase(key, "");
    if (grant.hasFinalizer) {
      ASSIGN_OR_RETURN(bool present, setFinalizer(object, false));
      if (present && oldPhase == policy::GrantPhase::kActive) {
        recordEvents(object, grant, oldPhase, policy::GrantPhase::kRevoked);
        log::info("AccessGrant revoked", {{"key", key}});
      }
    }
    forget(key);
    return kube::Result{};
  }
  // The finalizer is held while the flow may be open, so that deleting the grant revokes it.
  if (phase == policy::GrantPhase::kActive && !grant.hasFinalizer) {
    ASSIGN_OR_RETURN(bool present, setFinalizer(object, true));
    if (!present) {
      return kube::Result{};  // deleted meanwhile: its delete event comes next
    }
  }

  json status = policy::grantStatus(oldStatus, phase, grant, now);
  if (auto activated = status.find("activatedAt"); activated != status.end()) {
    if (auto t = policy::parseDateTime(activated->get<std::string>(), "status.activatedAt");
        t.ok()) {
      grant.activatedAt = *t;
    }
  }

  // The flow opens before the status says Active, and closes before it says Expired.
  std::vector<json> desired;
  if (phase == policy::GrantPhase::kActive) {
    const policy::NamespaceFacts destFacts{grant.ns, ctx_.namespaceLabels(grant.ns)};
    const policy::NamespaceFacts sourceFacts{grant.from.ns, ctx_.namespaceLabels(grant.from.ns)};
    desired = policy::grantObjects(
        grant, policy::grantContextFor(dest, destFacts, source, sourceFacts, ctx_.facts()));
  }
  const MonoTime mono = ctx_.clock->monotonicNow();
  std::map<std::string, size_t> recentlyApplied;
  {
    std::lock_guard lock(mu_);
    for (auto it = pending_.lower_bound(key + "|");
         it != pending_.end() && it->first.rfind(key + "|", 0) == 0;) {
      if (mono - it->second.second < kPendingWindow) {
        recentlyApplied[it->first.substr(key.size() + 1)] = it->second.first;
        ++it;
      } else {
        it = pending_.erase(it);
      }
    }
  }
  const policy::NamespacePlan plan = policy::planNamespace(desired, current, recentlyApplied,
                                                           oldPhase == policy::GrantPhase::kActive);
  for (const auto& write : plan.writes) {
    RETURN_IF_ERROR(
        ctx_.write(write.object, write.replace, write.repair).withContext("AccessGrant " + key));
    if (!write.replace) {
      std::lock_guard lock(mu_);
      pending_[key + "|" + policy::objectSlot(write.object)] = {policy::contentHash(write.object),
                                                                mono};
    }
  }
  RETURN_IF_ERROR(removeAll(plan.deletes));

  if (status != oldStatus) {
    // Guarded by the resourceVersion the status was computed from: a reconcile running on a
    // cache that has not yet seen this controller's last write gets a conflict, and looks again
    // (no second status, no second set of Events).
    auto patched = ctx_.client->mergePatch(
        resources::kAccessGrants, grant.ns, grant.name,
        {{"metadata", {{"resourceVersion", object["metadata"]["resourceVersion"]}}},
         {"status", status}},
        "status");
    if (!patched.ok()) {
      if (patched.status().code() == StatusCode::kNotFound) {
        return kube::Result{};  // deleted meanwhile: its delete event comes next
      }
      if (patched.status().code() == StatusCode::kConflict) {
        return kube::Result{kConflictRetry};
      }
      return patched.status().withContext("writing the status of AccessGrant " + key);
    }
    object = std::move(*patched);
    recordEvents(object, grant, oldPhase, phase);
    if (oldPhase != phase) {
      log::info("AccessGrant phase",
                {{"key", key}, {"phase", std::string(policy::grantPhaseName(phase))}});
    }
  }
  setPhase(key, std::string(policy::grantPhaseName(phase)));
  if (phase != policy::GrantPhase::kActive && grant.hasFinalizer) {
    auto removed = setFinalizer(object, false);  // its objects are gone
    if (!removed.ok() && removed.status().code() == StatusCode::kConflict) {
      return kube::Result{kConflictRetry};
    }
    RETURN_IF_ERROR(removed.status());
  }

  milliseconds requeue{0};
  if (!plan.awaitingWatch.empty()) {
    requeue = kPendingWindow;
  }
  if (phase != policy::GrantPhase::kExpired) {
    if (auto expiry = policy::effectiveExpiry(grant)) {
      // At the expiry itself (the API server's times are whole seconds; ours are not).
      auto until = std::chrono::duration_cast<milliseconds>(*expiry - now) + milliseconds(1);
      requeue = requeue.count() > 0 ? std::min(requeue, until) : until;
    }
  }
  return kube::Result{std::max(requeue, milliseconds(requeue.count() > 0 ? 1 : 0))};
}

}  // namespace bulkhead::controller
