#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "controller/context.h"
#include "kube/controller.h"
#include "policy/grants.h"

namespace bulkhead::controller {

// Keyed by "namespace/name" of an AccessGrant: while it is Active, its NetworkPolicies (ingress in
// the destination, egress in the source) and Istio AuthorizationPolicy exist exactly as
// policy::grantObjects says; otherwise none does. While Active it holds a finalizer, so that
// deleting the grant revokes it (objects removed, Events recorded) before the grant goes. The
// status (phase, activatedAt, expiresAt, history) follows policy::grantStatus, audit Events go to
// both namespaces, and the key is requeued for the second of expiry, so the flow closes on time
// without waiting for a resync. Keeps bulkhead_grants{phase}.
class GrantReconciler {
 public:
  explicit GrantReconciler(ControllerContext& ctx) : ctx_(ctx) {}
  StatusOr<kube::Result> reconcile(const std::string& key);

 private:
  // The generated objects of grant `key` in the caches.
  std::vector<nlohmann::json> currentObjects(const std::string& key) const;
  Status removeAll(const std::vector<nlohmann::json>& objects);
  // Adds or removes the finalizer on `object`, which becomes the patched version. False when the
  // grant is gone.
  StatusOr<bool> setFinalizer(nlohmann::json& object, bool present);
  // The audit Events of a phase change, on the grant and in the source namespace.
  void recordEvents(const nlohmann::json& object, const policy::AccessGrant& grant,
                    std::optional<policy::GrantPhase> from, policy::GrantPhase to);
  // Whether an object of grant `key` was applied within the pending window; forget() drops
  // what is remembered of its applies.
  bool applying(const std::string& key);
  void forget(const std::string& key);
  void setPhase(const std::string& key, const std::string& phase);

  ControllerContext& ctx_;
  std::mutex mu_;
  std::map<std::string, std::string> phases_;  // key -> phase, for the metric
  // Objects applied but not yet in the cache ("ns/Kind/name" -> content hash, when).
  std::map<std::string, std::pair<size_t, MonoTime>> pending_;
};

}  // namespace bulkhead::controller
