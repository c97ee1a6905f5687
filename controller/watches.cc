// Every mapping from a watched object to the reconcile keys it affects, in one place. The
// reconcilers never enqueue keys themselves: they return requeueAfter for their own key.
#include "common/log.h"
#include "controller/controllers.h"
#include "policy/grants.h"
#include "policy/segmentation.h"

namespace bulkhead::controller {

using nlohmann::json;
using std::chrono::milliseconds;

namespace {

std::string nameOf(const json& o) { return o["metadata"].value("name", ""); }
std::string namespaceOf(const json& o) { return o["metadata"].value("namespace", ""); }

// The same handler for add, update (new object) and delete.
kube::EventHandlers onAny(const std::function<void(const json&)>& f) {
  return {f, [f](const json&, const json& o) { f(o); }, f};
}

}  // namespace

void Controllers::watch() {
  const Caches& c = ctx_.caches;

  // Namespaces: their labels decide the governing policy, hence the namespace's objects, every
  // policy's status (which counts namespaces), and which policy rules its exceptions.
  // And what a grant opens into or out of them.
  on(c.namespaces,
     {[this](const json& o) {
        ctx_.setNamespaceFacts({nameOf(o), policy::labelsOf(o)});
        namespaces_.enqueue(nameOf(o));
        enqueueAdminTier(nameOf(o), milliseconds(0));
        enqueueAllPolicies(kStatusDelay);
        enqueueAllTwins(kStatusDelay);
        enqueueGrantsOf(nameOf(o));
        enqueuePosture(nameOf(o));
      },
      [this](const json& old, const json& o) {
        if (policy::labelsOf(old) != policy::labelsOf(o) ||
            policy::isTerminating(old) != policy::isTerminating(o)) {
          ctx_.setNamespaceFacts({nameOf(o), policy::labelsOf(o)});
          namespaces_.enqueue(nameOf(o));
          enqueueAdminTier(nameOf(o), milliseconds(0));
          enqueueAllPolicies(kStatusDelay);
          enqueueAllTwins(kStatusDelay);
          for (const auto& e : ctx_.caches.exceptions->store().byNamespace(nameOf(o))) {
            exceptions_.enqueue(kube::objectKey(*e));  // another policy may govern it now
          }
          enqueueGrantsOf(nameOf(o));
          enqueuePosture(nameOf(o));
        } else if (old["metadata"].value("managedFields", json()) !=
                   o["metadata"].value("managedFields", json())) {
          namespaces_.enqueue(nameOf(o));  // Bulkhead's hold on its Pod Security labels changed
        }
      },
      [this](const json& o) {
        ctx_.forgetNamespace(nameOf(o));
        enqueuePosture(nameOf(o));
        enqueueAdminTier(nameOf(o), milliseconds(0));
        enqueueAllPolicies(kStatusDelay);
        enqueueAllTwins(kStatusDelay);
        enqueueGrantsOf(nameOf(o));
      }});

  // SegmentationPolicies: a new spec, a deletion or a new policy changes every namespace and
  // every exception and grant (approverGroups decide Pending or Active). A status or finalizer
  // write (mostly the controller's own) changes nothing they depend on: only the policy itself is
  // looked at again, no sooner than any status recompute (at once, each status write would start
  // the next walk over every namespace while they converge: quadratic work).
  auto onPolicy = [this](const json& o) {
    ctx_.rebuildPolicies();
    policies_.enqueue(nameOf(o));
    enqueueAllNamespaces();
    enqueueAllExceptions();
    enqueueAllGrants();
    enqueueAllPostures();
    enqueueAllTwins(milliseconds(0));  // which policy governs a namespace may have changed
  };
  on(c.policies, {onPolicy,
                  [this, onPolicy](const json& old, const json& o) {
                    if (old["metadata"].value("generation", int64_t{0}) ==
                            o["metadata"].value("generation", int64_t{0}) &&
                        policy::isTerminating(old) == policy::isTerminating(o)) {
                      policies_.enqueueAfter(nameOf(o), kStatusDelay);
                      return;
                    }
                    onPolicy(o);
                  },
                  onPolicy});

  // Generated NetworkPolicies: drift of a namespace's or a grant's objects.
  on(c.networkPolicies, {[this](const json& o) { onGenerated(o, false); },
                         [this](const json&, const json& o) { onGenerated(o, false); },
                         [this](const json& o) { onGenerated(o, true); }});

  // Tenants' NetworkPolicies: reported on their namespace and in the status.
  on(c.tenantNetworkPolicies, onAny([this](const json& o) {
       namespaces_.enqueue(namespaceOf(o));
       enqueueAllPolicies(kStatusDelay);
     }));

  // The API server's endpoints: every namespace's egress allow to it.
  on(c.endpointSlices, onAny([this](const json&) { recomputeApiEndpoints(); }));

  // Exceptions: their phase, and what the scan exempts (one expiring writes its status).
  on(c.exceptions, onAny([this](const json& o) {
       exceptions_.enqueue(kube::objectKey(o));
       enqueuePosture(namespaceOf(o));
       enqueueAllTwins(milliseconds(0));  // the twin carries the Active ones
     }));

  // The admission twins: drift, and orphans of policies that are gone.
  for (const auto& inf : {c.admissionPolicies, c.admissionPolicyBindings}) {
    if (inf != nullptr) {
      on(inf, onAny([this](const json& o) {
           const policy::Labels labels = policy::labelsOf(o);
           if (auto it = labels.find(policy::kPolicyLabel); it != labels.end()) {
             twins_.enqueue(it->second);
             policies_.enqueueAfter(it->second, kStatusDelay);  // status.layers
           }
         }));
    }
  }
  on(c.grants, onAny([this](const json& o) { grants_.enqueue(kube::objectKey(o)); }));

  // Pods and workloads: their namespace's posture. Pods change often (their status, which the
  // cache does not keep): only a change to what the cache keeps counts.
  for (const auto& inf : c.scanned) {
    on(inf, {[this](const json& o) { enqueuePosture(namespaceOf(o)); },
             [this](const json& old, const json& o) {
               json a = old, b = o;
               a["metadata"].erase("resourceVersion");
               b["metadata"].erase("resourceVersion");
               if (a != b) {
                 enqueuePosture(namespaceOf(o));
               }
             },
             [this](const json& o) { enqueuePosture(namespaceOf(o)); }});
  }

  // A namespace reconcile (or scan) changed what status reads.
  ctx_.onNamespaceStateChanged = [this] { enqueueAllPolicies(kStatusDelay); };
}

void Controllers::watchMesh(const MeshCaches& mesh) {
  auto add = [this](const std::shared_ptr<kube::Informer>& inf, kube::EventHandlers handlers) {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      meshRegistrations_.emplace_back(inf, inf->addEventHandlers(std::move(handlers)));
    }
  };
  for (const auto& inf : {mesh.peerAuthentications, mesh.authorizationPolicies}) {
    add(inf, {[this](const json& o) { onGenerated(o, false); },
              [this](const json&, const json& o) { onGenerated(o, false); },
              [this](const json& o) { onGenerated(o, true); }});
  }
  for (const auto& inf : {mesh.tenantPeerAuthentications, mesh.tenantAuthorizationPolicies}) {
    add(inf, onAny([this](const json& o) {
          namespaces_.enqueue(namespaceOf(o));
          enqueueAllPolicies(kStatusDelay);
        }));
  }
}

void Controllers::onGenerated(const json& object, bool deleted) {
  // The admin tier passes on what the namespace's generated NetworkPolicies allow (a burst of
  // them while a namespace converges: one look at the end).
  if (object.value("kind", "") == "NetworkPolicy") {
    enqueueAdminTier(namespaceOf(object), kStatusDelay);
  }
  const policy::Labels labels = policy::labelsOf(object);
  auto grant = labels.find(policy::kGrantLabel);
  auto grantNs = labels.find(policy::kGrantNamespaceLabel);
  if (grant != labels.end() && grantNs != labels.end()) {
    grants_.enqueue(grantNs->second + "/" + grant->second);
    return;
  }
  onManagedObject(object, deleted);
}

void Controllers::onManagedObject(const json& object, bool deleted) {
  const std::string ns = namespaceOf(object);
  // Until the next reconcile has checked it, the namespace is not known to be segmented.
  ctx_.markUnconverged(ns, deleted ? object.value("kind", "") + "/" + nameOf(object) : "");
  namespaces_.enqueue(ns);
  enqueueAllPolicies(kStatusDelay);
}

void Controllers::recomputeApiEndpoints() {
  std::vector<json> slices;
  for (const auto& s : ctx_.caches.endpointSlices->store().list()) {
    slices.push_back(*s);
  }
  if (ctx_.setApiEndpoints(policy::apiEndpointsFromSlices(slices))) {
    enqueueAllNamespaces();
  }
}

void Controllers::enqueueAllNamespaces() {
  const bool adminTier = ctx_.clusterNetworkPolicies() != nullptr;
  for (const auto& key : ctx_.caches.namespaces->store().keys()) {
    namespaces_.enqueue(key);
    if (adminTier) {
      adminTiers_.enqueue(key);
    }
  }
}

void Controllers::enqueueAdminTier(const std::string& ns, milliseconds delay) {
  if (ctx_.clusterNetworkPolicies() != nullptr) {
    adminTiers_.enqueueAfter(ns, delay);
  }
}

void Controllers::enqueueAllExceptions() {
  for (const auto& key : ctx_.caches.exceptions->store().keys()) {
    exceptions_.enqueue(key);
  }
}

void Controllers::enqueueAllGrants() {
  for (const auto& key : ctx_.caches.grants->store().keys()) {
    grants_.enqueue(key);
  }
}

void Controllers::enqueueAllPostures() {
  if (!ctx_.options.backgroundScan) {
    return;
  }
  for (const auto& key : ctx_.caches.namespaces->store().keys()) {
    postures_.enqueue(key);
  }
}

void Controllers::enqueuePosture(const std::string& ns) {
  if (ctx_.options.backgroundScan) {
    postures_.enqueueAfter(ns, kStatusDelay);  // a rollout changes many pods at once
  }
}

void Controllers::enqueueGrantsOf(const std::string& ns) {
  for (const auto& g : ctx_.caches.grants->store().byNamespace(ns)) {
    grants_.enqueue(kube::objectKey(*g));
  }
  for (const auto& g : ctx_.caches.grants->store().byIndex(kSourceIndex, ns)) {
    grants_.enqueue(kube::objectKey(*g));
  }
}

void Controllers::enqueueAllTwins(milliseconds delay) {
  const Caches& c = ctx_.caches;
  if (c.admissionPolicies == nullptr) {
    return;
  }
  for (const auto& key : c.policies->store().keys()) {
    twins_.enqueueAfter(key, delay);
  }
  for (const auto& inf : {c.admissionPolicies, c.admissionPolicyBindings}) {
    for (const auto& o : inf->store().list()) {
      const policy::Labels labels = policy::labelsOf(*o);
      if (auto it = labels.find(policy::kPolicyLabel); it != labels.end()) {
        twins_.enqueueAfter(it->second, delay);
      }
    }
  }
}

void Controllers::enqueueAllPolicies(milliseconds delay) {
  for (const auto& key : ctx_.caches.policies->store().keys()) {
    policies_.enqueueAfter(key, delay);
  }
}

}  // namespace bulkhead::controller
