#include "controller/context.h"

#include <algorithm>

#include "common/strings.h"
#include "controller/metrics.h"
#include "policy/tenant_objects.h"

namespace bulkhead::controller {

using nlohmann::json;

ControllerContext::ControllerContext(kube::ClientPtr client_, ClockPtr clock_,
                                     std::shared_ptr<kube::EventRecorder> events_,
                                     ControllerOptions options_, Caches caches_)
    : client(std::move(client_)),
      clock(std::move(clock_)),
      events(std::move(events_)),
      options(std::move(options_)),
      caches(std::move(caches_)) {}

std::shared_ptr<const std::vector<policy::SegmentationPolicy>> ControllerContext::policies() const {
  std::lock_guard lock(mu_);
  return decodedPolicies_;
}

void ControllerContext::rebuildPolicies() {
  auto objects = caches.policies->store().list();
  std::vector<const json*> pointers;
  for (const auto& o : objects) {
    pointers.push_back(o.get());
  }
  auto previous = policies();
  auto snapshot = std::make_shared<const std::vector<policy::SegmentationPolicy>>(
      policy::decodePolicies(pointers, *previous));
  std::lock_guard lock(mu_);
  decodedPolicies_ = std::move(snapshot);
}

const policy::SegmentationPolicy* ControllerContext::governing(
    const std::vector<policy::SegmentationPolicy>& all, const std::string& ns) const {
  std::lock_guard lock(mu_);
  auto it = namespaceFacts_.find(ns);
  if (it == namespaceFacts_.end()) {
    return nullptr;
  }
  return policy::governingPolicy(all, it->second, options.installNamespace);
}

policy::ClusterFacts ControllerContext::facts() const {
  std::lock_guard lock(mu_);
  return {options.installNamespace, static_cast<bool>(mesh_), apiEndpoints_};
}

uint64_t ControllerContext::factsVersion() const {
  std::lock_guard lock(mu_);
  return factsVersion_;
}

bool ControllerContext::setApiEndpoints(std::vector<policy::ApiEndpoint> endpoints) {
  std::lock_guard lock(mu_);
  if (endpoints == apiEndpoints_) {
    return false;
  }
  apiEndpoints_ = std::move(endpoints);
  ++factsVersion_;
  return true;
}

bool ControllerContext::setMesh(MeshCaches mesh) {
  std::lock_guard lock(mu_);
  const bool changed = static_cast<bool>(mesh) != static_cast<bool>(mesh_);
  mesh_ = std::move(mesh);
  factsVersion_ += changed ? 1 : 0;
  return changed;
}

MeshCaches ControllerContext::mesh() const {
  std::lock_guard lock(mu_);
  return mesh_;
}

void ControllerContext::setNamespaceFacts(const policy::NamespaceFacts& facts) {
  std::lock_guard lock(mu_);
  namespaceFacts_[facts.name] = facts;
}

void ControllerContext::forgetNamespace(const std::string& name) {
  std::lock_guard lock(mu_);
  namespaceFacts_.erase(name);
  namespaceStates_.erase(name);
  postures_.erase(name);
}

std::map<std::string, policy::NamespaceFacts> ControllerContext::namespaceFacts() const {
  std::lock_guard lock(mu_);
  return namespaceFacts_;
}

policy::Labels ControllerContext::namespaceLabels(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = namespaceFacts_.find(name);
  return it == namespaceFacts_.end() ? policy::Labels{} : it->second.labels;
}

NamespaceState ControllerContext::namespaceState(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = namespaceStates_.find(name);
  return it == namespaceStates_.end() ? NamespaceState{} : it->second;
}

void ControllerContext::setNamespaceState(const std::string& name, NamespaceState state) {
  bool changed;
  {
    std::lock_guard lock(mu_);
    NamespaceState& old = namespaceStates_[name];
    changed = old.policy != state.policy || old.generation != state.generation ||
              old.factsVersion != state.factsVersion || old.converged != state.converged ||
              old.error != state.error;
    old = std::move(state);
  }
  if (changed && onNamespaceStateChanged) {
    onNamespaceStateChanged();
  }
}

void ControllerContext::markUnconverged(const std::string& name, const std::string& deletedSlot) {
  std::lock_guard lock(mu_);
  auto it = namespaceStates_.find(name);
  if (it != namespaceStates_.end()) {
    it->second.converged = false;
    if (!deletedSlot.empty()) {
      it->second.pending.erase(deletedSlot);
    }
  }
}

std::vector<json> ControllerContext::managedObjects(const std::string& ns) const {
  std::vector<kube::ObjectPtr> objects = caches.networkPolicies->store().byNamespace(ns);
  if (auto m = mesh()) {
    for (const auto* inf : {m.peerAuthentications.get(), m.authorizationPolicies.get()}) {
      auto more = inf->store().byNamespace(ns);
      objects.insert(objects.end(), more.begin(), more.end());
    }
  }
  std::vector<json> out;
  for (const auto& o : objects) {
    if (policy::labelsOf(*o).contains(policy::kPolicyLabel)) {
      out.push_back(*o);
    }
  }
  return out;
}

std::vector<std::string> ControllerContext::tenantPolicyViolations(
    const policy::SegmentationPolicy& p, const std::string& ns) const {
  std::vector<std::pair<std::string, kube::ObjectPtr>> objects;
  for (auto& o : caches.tenantNetworkPolicies->store().byNamespace(ns)) {
    objects.emplace_back("NetworkPolicy", std::move(o));
  }
  if (auto m = mesh()) {
    for (auto& o : m.tenantPeerAuthentications->store().byNamespace(ns)) {
      objects.emplace_back("PeerAuthentication", std::move(o));
    }
    for (auto& o : m.tenantAuthorizationPolicies->store().byNamespace(ns)) {
      objects.emplace_back("AuthorizationPolicy", std::move(o));
    }
  }
  std::vector<std::string> out;
  for (const auto& [kind, o] : objects) {
    auto found = policy::tenantObjectViolations(kind, ns, *o, p);
    if (!found.empty()) {
      out.push_back(asciiLower(kind) + " \"" + (*o)["metadata"].value("name", "") +
                    "\" reaches outside the namespace (" + found.front() +
                    (found.size() > 1 ? ", ..." : "") + ")");
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status ControllerContext::write(const json& object, bool replace, bool repair) const {
  const std::string kind = object.value("kind", "");
  StatusOr<json> written =
      replace ? client->update(typeOf(object), object)
              : client->apply(typeOf(object), object, options.fieldManager, true, "");
  apiWrites(kind, replace ? "update" : "apply").inc();
  if (!written.ok()) {
    return written.status().withContext("writing " + kind + " " +
                                        object["metadata"].value("namespace", "") + "/" +
                                        object["metadata"].value("name", ""));
  }
  if (repair) {
    driftRepairs(kind).inc();
  }
  return okStatus();
}

Status ControllerContext::remove(const json& cached) const {
  kube::DeleteOptions opts;
  opts.preconditionUid = cached["metadata"].value("uid", "");
  const std::string kind = cached.value("kind", "");
  const std::string ns = cached["metadata"].value("namespace", "");
  const std::string name = cached["metadata"].value("name", "");
  Status s = client->remove(typeOf(cached), ns, name, opts);
  apiWrites(kind, "delete").inc();
  if (!s.ok() && s.code() != StatusCode::kNotFound) {
    return s.withContext("deleting " + kind + " " + ns + "/" + name);
  }
  return okStatus();
}

std::optional<NamespacePosture> ControllerContext::posture(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = postures_.find(name);
  if (it == postures_.end()) {
    return std::nullopt;
  }
  return it->second;
}

void ControllerContext::setPosture(const std::string& name,
                                   std::optional<NamespacePosture> posture) {
  {
    std::lock_guard lock(mu_);
    auto it = postures_.find(name);
    if (it == postures_.end() ? !posture.has_value() : posture == it->second) {
      return;
    }
    if (posture.has_value()) {
      postures_[name] = std::move(*posture);
    } else {
      postures_.erase(it);
    }
  }
  if (onNamespaceStateChanged) {
    onNamespaceStateChanged();
  }
}

std::shared_ptr<kube::Informer> ControllerContext::reports() const {
  std::lock_guard lock(mu_);
  return reports_;
}

void ControllerContext::setReports(std::shared_ptr<kube::Informer> reports) {
  std::lock_guard lock(mu_);
  reports_ = std::move(reports);
}

Status ControllerContext::converge(const std::shared_ptr<kube::Informer>& cache,
                                   const std::string& name,
                                   const std::optional<json>& desired) const {
  kube::ObjectPtr cached = cache->store().get(name);
  if (!desired.has_value()) {
    return cached == nullptr ? okStatus() : remove(*cached);
  }
  if (cached == nullptr) {
    return write(*desired, false, false);
  }
  if (policy::matchesDesired(*cached, *desired) &&
      (*cached)["metadata"].value("ownerReferences", json()) ==
          (*desired)["metadata"].value("ownerReferences", json())) {
    return okStatus();
  }
  json updated = *cached;
  updated["spec"] = (*desired)["spec"];
  for (const auto& [key, value] : (*desired)["metadata"]["labels"].items()) {
    updated["metadata"]["labels"][key] = value;
  }
  if (desired->at("metadata").contains("ownerReferences")) {
    updated["metadata"]["ownerReferences"] = (*desired)["metadata"]["ownerReferences"];
  } else {
    updated["metadata"].erase("ownerReferences");
  }
  Status s = write(updated, true, false);
  return s.code() == StatusCode::kConflict ? okStatus() : s;  // the watch brings the newer one
}

std::shared_ptr<kube::Informer> ControllerContext::clusterNetworkPolicies() const {
  std::lock_guard lock(mu_);
  return clusterNetworkPolicies_;
}

void ControllerContext::setClusterNetworkPolicies(std::shared_ptr<kube::Informer> informer) {
  std::lock_guard lock(mu_);
  clusterNetworkPolicies_ = std::move(informer);
}

const kube::ResourceType& ControllerContext::typeOf(const json& object) {
  const std::string kind = object.value("kind", "");
  if (kind == "PeerAuthentication") {
    return resources::kPeerAuthentications;
  }
  if (kind == "AuthorizationPolicy") {
    return resources::kAuthorizationPolicies;
  }
  if (kind == "ClusterNetworkPolicy") {
    return kube::resources::kClusterNetworkPolicies;
  }
  if (kind == "ValidatingAdmissionPolicy") {
    return kube::resources::kValidatingAdmissionPolicies;
  }
  if (kind == "ValidatingAdmissionPolicyBinding") {
    return kube::resources::kValidatingAdmissionPolicyBindings;
  }
  return kube::resources::kNetworkPolicies;
}

}  // namespace bulkhead::controller
