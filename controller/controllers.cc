#include "controller/controllers.h"

#include "common/log.h"
#include "policy/admin_tier.h"
#include "policy/grants.h"
#include "policy/posture.h"

namespace bulkhead::controller {

using nlohmann::json;
using std::chrono::milliseconds;

namespace {

// The namespace informer's transform: the default one (no managedFields, no last-applied
// annotation), except that the Apply entry of `manager` stays, without its timestamp. Other
// managers' entries would only cost memory.
void keepOwnManagedFields(json& ns, const std::string& manager) {
  json own = json::array();
  if (auto md = ns.find("metadata"); md != ns.end() && md->is_object()) {
    if (auto mf = md->find("managedFields"); mf != md->end() && mf->is_array()) {
      for (auto& e : *mf) {
        if (e.is_object() && e.value("manager", json()) == manager &&
            e.value("operation", json()) == "Apply") {
          e.erase("time");
          own.push_back(std::move(e));
        }
      }
    }
  }
  kube::dropUnreadFields(ns);
  if (!own.empty()) {
    ns["metadata"]["managedFields"] = std::move(own);
  }
}

// "namespace/name" of the AccessGrant that generated an object.
std::vector<std::string> grantOf(const json& object) {
  const policy::Labels labels = policy::labelsOf(object);
  auto ns = labels.find(policy::kGrantNamespaceLabel);
  auto name = labels.find(policy::kGrantLabel);
  if (ns == labels.end() || name == labels.end()) {
    return {};
  }
  return {ns->second + "/" + name->second};
}

Caches cachesFrom(kube::SharedCache& cache, const ControllerOptions& options) {
  Caches c;
  c.namespaces = cache.informer(kube::resources::kNamespaces);
  c.policies = cache.informer(resources::kSegmentationPolicies);
  c.networkPolicies = cache.informer(kube::resources::kNetworkPolicies, policy::kManagedBySelector);
  c.networkPolicies->store().addIndex(kPolicyIndex, kube::labelIndex(policy::kPolicyLabel));
  c.networkPolicies->store().addIndex(kGrantIndex, grantOf);
  c.tenantNetworkPolicies =
      cache.informer(kube::resources::kNetworkPolicies, policy::kNotManagedBySelector);
  c.endpointSlices = cache.informer(kube::informerOptions(
      kube::resources::kEndpointSlices, "default", "kubernetes.io/service-name=kubernetes"));
  c.exceptions = cache.informer(resources::kSegmentationExceptions);
  c.grants = cache.informer(resources::kAccessGrants);
  c.grants->store().addIndex(kSourceIndex, [](const json& o) -> std::vector<std::string> {
    std::string source = policy::grantSourceNamespace(o);
    return source.empty() ? std::vector<std::string>{} : std::vector<std::string>{source};
  });
  if (options.backgroundScan) {
    for (const auto& type : kScannedTypes) {
      c.scanned.push_back(cache.informer(type));
    }
  }
  if (options.admissionTwin) {
    c.admissionPolicies =
        cache.informer(kube::resources::kValidatingAdmissionPolicies, policy::kManagedBySelector);
    c.admissionPolicyBindings = cache.informer(kube::resources::kValidatingAdmissionPolicyBindings,
                                               policy::kManagedBySelector);
  }
  return c;
}

}  // namespace

void configureCache(kube::SharedCache& cache, const ControllerOptions& options) {
  cache.setTransform(
      kube::resources::kNamespaces,
      [manager = options.podSecurityFieldManager](json& ns) { keepOwnManagedFields(ns, manager); });
  // The background scan caches every Pod and workload: only what the rules read.
  for (const auto& type : kScannedTypes) {
    cache.setTransform(type, [kind = type.kind](json& o) { policy::keepScannedFields(o, kind); });
  }
}

Controllers::Controllers(kube::ClientPtr client, ClockPtr clock, kube::SharedCache& cache,
                         kube::ApiDiscovery& discovery, std::shared_ptr<kube::EventRecorder> events,
                         ControllerOptions options)
    : cache_(cache),
      discovery_(discovery),
      ctx_(std::move(client), clock, std::move(events), options, cachesFrom(cache, options)),
      namespaceReconciler_(ctx_),
      policyReconciler_(ctx_),
      exceptionReconciler_(ctx_),
      grantReconciler_(ctx_),
      postureReconciler_(ctx_),
      twinReconciler_(ctx_),
      adminTierReconciler_(ctx_),
      namespaces_(
          "namespace", clock, options.namespaceWorkers,
          [this](const std::string& ns) { return namespaceReconciler_.reconcile(ns); },
          [this](const std::string& ns, const Status& s) {
            namespaceReconciler_.recordError(ns, s);
          }),
      policies_("segmentationpolicy", clock, 1,
                [this](const std::string& name) { return policyReconciler_.reconcile(name); }),
      exceptions_("segmentationexception", clock, 1,
                  [this](const std::string& key) { return exceptionReconciler_.reconcile(key); }),
      grants_("accessgrant", clock, options.namespaceWorkers,
              [this](const std::string& key) { return grantReconciler_.reconcile(key); }),
      postures_("posture", clock, 1,
                [this](const std::string& ns) { return postureReconciler_.reconcile(ns); }),
      twins_("admissiontwin", clock, 1,
             [this](const std::string& name) { return twinReconciler_.reconcile(name); }),
      adminTiers_("admintier", clock, options.namespaceWorkers,
                  [this](const std::string& ns) { return adminTierReconciler_.reconcile(ns); }) {}

Controllers::~Controllers() { stop(); }

void Controllers::on(const std::shared_ptr<kube::Informer>& informer,
                     kube::EventHandlers handlers) {
  std::lock_guard lock(mu_);
  if (!stopping_) {
    registrations_.emplace_back(informer, informer->addEventHandlers(std::move(handlers)));
  }
}

bool Controllers::sleepFor(milliseconds d, bool wakeOnMeshChange) {
  std::unique_lock lock(mu_);
  auto deadline = ctx_.clock->monotonicNow() + d;
  while (!stopping_ && !(wakeOnMeshChange && meshCheck_) && ctx_.clock->monotonicNow() < deadline) {
    ctx_.clock->waitUntil(lock, cv_, deadline);
  }
  return !stopping_;
}

bool Controllers::meshSynced(const MeshCaches& mesh) const {
  return mesh.peerAuthentications->hasSynced() && mesh.authorizationPolicies->hasSynced() &&
         mesh.tenantPeerAuthentications->hasSynced() &&
         mesh.tenantAuthorizationPolicies->hasSynced();
}

void Controllers::updateMesh() {
  const bool served = discovery_.served(resources::kPeerAuthentications).value_or(false);
  const MeshCaches current = ctx_.mesh();
  if (served && !current) {
    MeshCaches m;
    const std::string managed = policy::kManagedBySelector;
    const std::string tenant = policy::kNotManagedBySelector;
    m.peerAuthentications = cache_.informer(resources::kPeerAuthentications, managed);
    m.authorizationPolicies = cache_.informer(resources::kAuthorizationPolicies, managed);
    m.tenantPeerAuthentications = cache_.informer(resources::kPeerAuthentications, tenant);
    m.tenantAuthorizationPolicies = cache_.informer(resources::kAuthorizationPolicies, tenant);
    for (const auto& inf : {m.peerAuthentications, m.authorizationPolicies}) {
      auto& store = inf->store();
      store.addIndex(kPolicyIndex, kube::labelIndex(policy::kPolicyLabel));
      store.addIndex(kGrantIndex, grantOf);
    }
    // Only once the caches are synced, so that reconciles see the existing objects; unless the
    // API goes again meanwhile (an aborted install).
    while (!meshSynced(m)) {
      if (!sleepFor(milliseconds(50), false)) {
        return;
      }
      if (!discovery_.served(resources::kPeerAuthentications).value_or(false)) {
        cache_.drop(resources::kPeerAuthentications);
        cache_.drop(resources::kAuthorizationPolicies);
        return;
      }
    }
    watchMesh(m);
    log::info("Istio security API is served; managing PeerAuthentications");
    ctx_.setMesh(std::move(m));
  } else if (!served && current) {
    log::warn("Istio security API is no longer served");
    std::vector<std::pair<std::shared_ptr<kube::Informer>, int>> registrations;
    {
      std::lock_guard lock(mu_);
      registrations.swap(meshRegistrations_);
    }
    for (auto& [inf, id] : registrations) {
      inf->removeEventHandlers(id);
    }
    ctx_.setMesh({});
    cache_.drop(resources::kPeerAuthentications);
    cache_.drop(resources::kAuthorizationPolicies);
  } else {
    return;
  }
  enqueueAllNamespaces();
  enqueueAllPolicies(milliseconds(0));
  enqueueAllGrants();
  enqueueAllPostures();  // requireSidecar applies only with the mesh
  enqueueAllTwins(milliseconds(0));
}

std::optional<std::shared_ptr<kube::Informer>> Controllers::followOptionalApi(
    const kube::ResourceType& type, bool following,
    std::pair<std::shared_ptr<kube::Informer>, int>& registration,
    const std::function<void(const json&)>& onObject) {
  const bool served = discovery_.served(type).value_or(false);
  if (served && !following) {
    auto informer = cache_.informer(type, policy::kManagedBySelector);
    std::lock_guard lock(mu_);
    if (stopping_) {
      return std::nullopt;  // stop() has removed the handlers it knew of
    }
    registration = {
        informer,
        informer->addEventHandlers(
            {onObject, [onObject](const json&, const json& o) { onObject(o); }, onObject})};
    return informer;
  }
  if (!served && following) {
    std::pair<std::shared_ptr<kube::Informer>, int> current;
    {
      std::lock_guard lock(mu_);
      current.swap(registration);
    }
    if (current.first != nullptr) {
      current.first->removeEventHandlers(current.second);
    }
    return std::shared_ptr<kube::Informer>();
  }
  return std::nullopt;
}

void Controllers::updateReports() {
  if (!ctx_.options.backgroundScan) {
    return;
  }
  // Someone else's change to a Report (or its deletion) is drift: the namespace is scanned again.
  auto changed = followOptionalApi(
      resources::kReports, ctx_.reports() != nullptr, reportsRegistration_,
      [this](const json& o) { postures_.enqueue(o["metadata"].value("namespace", "")); });
  if (!changed.has_value()) {
    return;
  }
  ctx_.setReports(*changed);
  if (*changed != nullptr) {
    log::info("OpenReports API is served; publishing a Report per selected namespace");
  } else {
    cache_.drop(resources::kReports);
    log::warn("OpenReports API is no longer served; Reports are not published");
  }
  enqueueAllPostures();
}

void Controllers::updateAdminTier() {
  // Someone else's change to one (or its deletion) is drift: its namespace is looked at again.
  auto changed = followOptionalApi(
      resources::kClusterNetworkPolicies, ctx_.clusterNetworkPolicies() != nullptr,
      adminTierRegistration_, [this](const json& o) {
        const policy::Labels labels = policy::labelsOf(o);
        if (auto it = labels.find(policy::kAdminTierNamespaceLabel); it != labels.end()) {
          adminTiers_.enqueue(it->second);
        }
      });
  if (!changed.has_value()) {
    return;
  }
  ctx_.setClusterNetworkPolicies(*changed);
  if (*changed != nullptr) {
    log::info(
        "the network-policy API is served; writing an admin-tier ClusterNetworkPolicy per "
        "selected namespace");
  } else {
    cache_.drop(resources::kClusterNetworkPolicies);
    log::warn("the network-policy API is no longer served; no admin tier");
  }
  for (const auto& key : ctx_.caches.namespaces->store().keys()) {
    adminTiers_.enqueue(key);
  }
  enqueueAllPolicies(kStatusDelay);  // status.layers
}

void Controllers::start() {
  discovery_.track(resources::kPeerAuthentications);
  discovery_.track(resources::kAccessGrants);
  discovery_.track(resources::kClusterNetworkPolicies);
  if (ctx_.options.backgroundScan) {
    discovery_.track(resources::kReports);
  }
  // The callback runs under discovery's subscriber lock and takes mu_; so subscribing (which
  // takes that lock) happens without mu_ held, and stop() unsubscribes without it too.
  const int subscription = discovery_.subscribe([this] {
    std::lock_guard lock(mu_);
    meshCheck_ = true;
    cv_.notify_all();
  });
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      discoverySubscription_ = subscription;
    }
  }
  if (discoverySubscription_ == 0) {
    discovery_.unsubscribe(subscription);  // stop() came first
    return;
  }
  watch();
  // Reconciling against a partial cache would delete objects that are merely not listed yet:
  // no worker starts before every informer has synced, nor before discovery has said whether
  // Istio is served (a new leader must not delete every PeerAuthentication as unwanted).
  const Caches& c = ctx_.caches;
  auto lastLog = ctx_.clock->monotonicNow();
  bool grantsMissingLogged = false;
  while (true) {
    const auto grantsServed = discovery_.served(resources::kAccessGrants);
    const bool known =
        discovery_.served(resources::kPeerAuthentications).has_value() &&
        grantsServed.has_value() &&
        discovery_.served(resources::kClusterNetworkPolicies).has_value() &&
        (!ctx_.options.backgroundScan || discovery_.served(resources::kReports).has_value());
    // Helm installs CRDs but never upgrades them: an upgraded release may lack AccessGrant's.
    // Everything else still runs; grants are reconciled once the CRD is applied.
    if (known && !*grantsServed && !grantsMissingLogged) {
      grantsMissingLogged = true;
      log::warn(
          "the AccessGrant CRD is not installed; grants are not reconciled until it is "
          "(helm does not upgrade CRDs: apply the chart's crds/ directory)");
    }
    if (known) {
      {
        std::lock_guard lock(mu_);
        meshCheck_ = false;
      }
      updateMesh();
      updateReports();
      updateAdminTier();
    }
    bool scannedSynced = true;
    for (const auto& inf : c.scanned) {
      scannedSynced = scannedSynced && inf->hasSynced();
    }
    if (c.admissionPolicies != nullptr) {
      scannedSynced = scannedSynced && c.admissionPolicies->hasSynced() &&
                      c.admissionPolicyBindings->hasSynced();
    }
    const bool synced = known && c.namespaces->hasSynced() && c.policies->hasSynced() &&
                        c.networkPolicies->hasSynced() && c.tenantNetworkPolicies->hasSynced() &&
                        c.endpointSlices->hasSynced() && c.exceptions->hasSynced() &&
                        (c.grants->hasSynced() || !*grantsServed) && scannedSynced;
    if (synced) {
      break;
    }
    if (ctx_.clock->monotonicNow() - lastLog > std::chrono::seconds(10)) {
      lastLog = ctx_.clock->monotonicNow();
      log::warn("waiting for caches to sync",
                {{"namespaces", c.namespaces->hasSynced()},
                 {"segmentationpolicies", c.policies->hasSynced()},
                 {"networkpolicies", c.networkPolicies->hasSynced()},
                 {"tenant networkpolicies", c.tenantNetworkPolicies->hasSynced()},
                 {"endpointslices", c.endpointSlices->hasSynced()},
                 {"segmentationexceptions", c.exceptions->hasSynced()},
                 {"accessgrants", c.grants->hasSynced()},
                 {"pods and workloads", scannedSynced},
                 {"istio discovered", known}});
    }
    if (!sleepFor(milliseconds(20))) {
      return;
    }
  }
  ctx_.rebuildPolicies();
  recomputeApiEndpoints();
  enqueueAllNamespaces();
  enqueueAllPolicies(milliseconds(0));
  enqueueAllExceptions();
  enqueueAllGrants();
  enqueueAllPostures();
  enqueueAllTwins(milliseconds(0));
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      return;
    }
    namespaces_.start();
    policies_.start();
    exceptions_.start();
    grants_.start();
    postures_.start();
    twins_.start();
    adminTiers_.start();
    loop_ = std::thread([this] { loop(); });
  }
  log::info("segmentation controller started",
            {{"namespaces", static_cast<int64_t>(c.namespaces->store().size())},
             {"policies", static_cast<int64_t>(c.policies->store().size())},
             {"workers", ctx_.options.namespaceWorkers}});
}

// The periodic resync, and Istio's API coming or going.
void Controllers::loop() {
  auto nextResync = ctx_.clock->monotonicNow() + ctx_.options.resyncPeriod;
  while (true) {
    auto wait = std::chrono::duration_cast<milliseconds>(nextResync - ctx_.clock->monotonicNow());
    if (!sleepFor(std::max(wait, milliseconds(0)))) {
      return;
    }
    bool meshCheck;
    {
      std::lock_guard lock(mu_);
      meshCheck = meshCheck_;
      meshCheck_ = false;
    }
    if (meshCheck) {
      updateMesh();
      updateReports();
      updateAdminTier();
    }
    if (ctx_.clock->monotonicNow() >= nextResync) {
      log::debug("periodic resync");
      enqueueAllNamespaces();
      enqueueAllPolicies(milliseconds(0));
      enqueueAllPostures();
      enqueueAllTwins(milliseconds(0));
      nextResync = ctx_.clock->monotonicNow() + ctx_.options.resyncPeriod;
    }
  }
}

void Controllers::stop() {
  std::vector<std::pair<std::shared_ptr<kube::Informer>, int>> registrations;
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      return;
    }
    stopping_ = true;
    registrations.swap(registrations_);
    registrations.insert(registrations.end(), meshRegistrations_.begin(), meshRegistrations_.end());
    meshRegistrations_.clear();
    if (reportsRegistration_.first != nullptr) {
      registrations.push_back(reportsRegistration_);
      reportsRegistration_ = {};
    }
    if (adminTierRegistration_.first != nullptr) {
      registrations.push_back(adminTierRegistration_);
      adminTierRegistration_ = {};
    }
  }
  cv_.notify_all();
  int subscription;
  {
    std::lock_guard lock(mu_);
    subscription = discoverySubscription_;
  }
  if (subscription != 0) {
    discovery_.unsubscribe(subscription);
  }
  for (auto& [inf, id] : registrations) {
    inf->removeEventHandlers(id);
  }
  // In-flight reconciles finish; queued keys are abandoned (the next leader relists anyway).
  namespaces_.stop();
  policies_.stop();
  exceptions_.stop();
  grants_.stop();
  postures_.stop();
  twins_.stop();
  adminTiers_.stop();
  if (loop_.joinable()) {
    loop_.join();
  }
  // Istio's informers serve only the controllers: a later term starts them afresh rather than
  // trusting caches nobody watched over (Istio may have gone and come back meanwhile).
  if (ctx_.mesh()) {
    ctx_.setMesh({});
    cache_.drop(resources::kPeerAuthentications);
    cache_.drop(resources::kAuthorizationPolicies);
  }
  if (ctx_.reports() != nullptr) {
    ctx_.setReports(nullptr);
    cache_.drop(resources::kReports);
  }
  if (ctx_.clusterNetworkPolicies() != nullptr) {
    ctx_.setClusterNetworkPolicies(nullptr);
    cache_.drop(resources::kClusterNetworkPolicies);
  }
  // Only the leader scans: a replica that no longer leads does not keep every pod in memory.
  if (ctx_.options.backgroundScan) {
    for (const auto& type : kScannedTypes) {
      cache_.drop(type);
    }
  }
}

}  // namespace bulkhead::controller
