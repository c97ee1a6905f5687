#include "controller/segmentation_controller.h"

#include <algorithm>
#include <set>

#include "common/log.h"
#include "common/metrics.h"
#include "common/strings.h"
#include "common/time_format.h"
#include "kube/rate_limiter.h"
#include "policy/exceptions.h"
#include "policy/tenant_objects.h"

namespace bulkhead::controller {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

constexpr const char* kNamespaceController = "namespace";
constexpr const char* kPolicyController = "segmentationpolicy";
constexpr const char* kExceptionController = "segmentationexception";
// Index of the generated objects' caches: the bulkhead.dev/policy label.
constexpr const char* kPolicyIndex = "policy";
// Status is recomputed at most this often while namespaces change: it walks every namespace.
constexpr milliseconds kStatusDelay{1000};
// How long an applied object may be missing from the informer before it is applied again.
constexpr milliseconds kPendingWindow{2000};

metrics::Registry& registry() { return metrics::defaultRegistry(); }

metrics::Counter& reconcileTotal(const char* controller, const char* result) {
  return registry()
      .counter("bulkhead_reconcile_total", "Reconciles by controller and result.",
               {"controller", "result"})
      .labels({controller, result});
}

metrics::Histogram& reconcileDuration(const char* controller) {
  return registry()
      .histogram("bulkhead_reconcile_duration_seconds", "Time spent in one reconcile.",
                 {"controller"})
      .labels({controller});
}

metrics::Counter& driftRepairs(const std::string& kind) {
  return registry()
      .counter("bulkhead_drift_repairs_total",
               "Generated objects restored after they were deleted or edited.", {"kind"})
      .labels({kind});
}

metrics::Counter& apiWrites(const std::string& kind, const char* verb) {
  return registry()
      .counter("bulkhead_api_writes_total", "Writes of generated objects to the API server.",
               {"kind", "verb"})
      .labels({kind, verb});
}

metrics::Gauge& generatedObjects(const std::string& kind) {
  return registry()
      .gauge("bulkhead_generated_objects", "Generated objects present, by kind.", {"kind"})
      .labels({kind});
}

metrics::Gauge& exceptionsGauge(std::string_view phase) {
  return registry()
      .gauge("bulkhead_exceptions", "SegmentationExceptions by phase.", {"phase"})
      .labels({std::string(phase)});
}

metrics::Gauge& namespacesGauge(const char* state) {
  return registry()
      .gauge("bulkhead_namespaces", "Namespaces by segmentation state.", {"state"})
      .labels({state});
}


std::string nameOf(const json& o) { return o["metadata"].value("name", ""); }
std::string namespaceOf(const json& o) { return o["metadata"].value("namespace", ""); }

policy::NamespaceFacts namespaceFacts(const json& ns) {
  return {nameOf(ns), policy::labelsOf(ns)};
}

// The namespace informer's transform: the default one (no managedFields, no last-applied
// annotation), except that the Apply entry of `manager` stays, without its timestamp, so that
// the cache tells whether the Pod Security labels are Bulkhead's. Other managers' entries would
// only cost memory.
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

// A condition in metav1.Condition shape; keeps lastTransitionTime when the status is unchanged.
json condition(const json& previous, const std::string& type, bool status,
               const std::string& reason, const std::string& message, int64_t generation,
               WallTime now) {
  std::string s = status ? "True" : "False";
  std::string since = formatRfc3339(now);
  for (const auto& c : previous) {
    if (c.value("type", "") == type && c.value("status", "") == s) {
      since = c.value("lastTransitionTime", since);
    }
  }
  return {{"type", type},
          {"status", s},
          {"reason", reason},
          {"message", message},
          {"lastTransitionTime", since},
          {"observedGeneration", generation}};
}

// Runs a reconcile; an object from the API server of an unexpected shape (nlohmann throws on a
// wrong type) fails that reconcile, not the process.
Status guarded(const std::function<Status()>& reconcile) {
  try {
    return reconcile();
  } catch (const json::exception& e) {
    return internalError(std::string("malformed object: ") + e.what());
  }
}

}  // namespace

SegmentationController::SegmentationController(kube::ClientPtr client, ClockPtr clock,
                                               std::shared_ptr<kube::EventRecorder> events,
                                               ControllerOptions options)
    : client_(std::move(client)),
      clock_(std::move(clock)),
      events_(std::move(events)),
      options_(std::move(options)),
      namespaceQueue_(clock_, kube::makeDefaultControllerRateLimiter(clock_)),
      policyQueue_(clock_, kube::makeDefaultControllerRateLimiter(clock_)),
      exceptionQueue_(clock_, kube::makeDefaultControllerRateLimiter(clock_)) {
  const std::string managed = policy::kManagedBySelector;
  auto namespaceOptions = kube::informerOptions(kube::resources::kNamespaces);
  namespaceOptions.transform = [manager = options_.podSecurityFieldManager](json& ns) {
    keepOwnManagedFields(ns, manager);
  };
  namespaces_ = std::make_unique<kube::Informer>(client_, clock_, std::move(namespaceOptions));
  policies_ = std::make_unique<kube::Informer>(
      client_, clock_, kube::informerOptions(resources::kSegmentationPolicies));
  networkPolicies_ = std::make_unique<kube::Informer>(
      client_, clock_, kube::informerOptions(kube::resources::kNetworkPolicies, "", managed));
  networkPolicies_->store().addIndex(kPolicyIndex, kube::labelIndex(policy::kPolicyLabel));
  tenantNetworkPolicies_ = std::make_unique<kube::Informer>(
      client_, clock_,
      kube::informerOptions(kube::resources::kNetworkPolicies, "", policy::kNotManagedBySelector));
  auto onTenantPolicy = [this](const json& o) {
    namespaceQueue_.add(o["metadata"].value("namespace", ""));
    enqueueAllPolicies(kStatusDelay);
  };
  tenantNetworkPolicies_->addEventHandlers(
      {onTenantPolicy, [onTenantPolicy](const json&, const json& o) { onTenantPolicy(o); },
       onTenantPolicy});
  endpointSlices_ = std::make_unique<kube::Informer>(
      client_, clock_,
      kube::informerOptions(kube::resources::kEndpointSlices, "default",
                            "kubernetes.io/service-name=kubernetes"));
  exceptions_ = std::make_unique<kube::Informer>(
      client_, clock_, kube::informerOptions(resources::kSegmentationExceptions));
  auto onException = [this](const json& o) { exceptionQueue_.add(kube::objectKey(o)); };
  exceptions_->addEventHandlers(
      {onException, [onException](const json&, const json& o) { onException(o); },
       onException});

  namespaces_->addEventHandlers(
      {[this](const json& o) {
         {
           std::lock_guard lock(mu_);
           namespaceFacts_[nameOf(o)] = namespaceFacts(o);
         }
         namespaceQueue_.add(nameOf(o));
         enqueueAllPolicies(kStatusDelay);
       },
       [this](const json& old, const json& o) {
         if (policy::labelsOf(old) != policy::labelsOf(o) ||
             policy::isTerminating(old) != policy::isTerminating(o)) {
           {
             std::lock_guard lock(mu_);
             namespaceFacts_[nameOf(o)] = namespaceFacts(o);
           }
           namespaceQueue_.add(nameOf(o));
           enqueueAllPolicies(kStatusDelay);
           for (const auto& e : exceptions_->store().byNamespace(nameOf(o))) {
             exceptionQueue_.add(kube::objectKey(*e));  // another policy may govern it now
           }
         } else if (old["metadata"].value("managedFields", json()) !=
                    o["metadata"].value("managedFields", json())) {
           namespaceQueue_.add(nameOf(o));  // Bulkhead's hold on its Pod Security labels changed
         }
       },
       [this](const json& o) {
         {
           std::lock_guard lock(mu_);
           namespaceStates_.erase(nameOf(o));
           namespaceFacts_.erase(nameOf(o));
         }
         enqueueAllPolicies(kStatusDelay);
       }});
  auto onPolicy = [this](const json& o) {
    rebuildPolicies();
    policyQueue_.add(nameOf(o));
    enqueueAllNamespaces();
    enqueueAllExceptions();  // approverGroups decide Pending or Active
  };
  policies_->addEventHandlers(
      {onPolicy,
       [this, onPolicy](const json& old, const json& o) {
         // A status or finalizer write (mostly the controller's own) changes nothing that
         // namespaces or exceptions depend on: only the policy itself is looked at again, no
         // sooner than any status recompute. (At once, each status write would trigger the next
         // walk over every namespace while they converge: quadratic work.)
         if (old["metadata"].value("generation", int64_t{0}) ==
                 o["metadata"].value("generation", int64_t{0}) &&
             policy::isTerminating(old) == policy::isTerminating(o)) {
           policyQueue_.addAfter(nameOf(o), kStatusDelay);
           return;
         }
         onPolicy(o);
       },
       onPolicy});
  auto onManaged = [this](const json& o) { onManagedObjectEvent(o, false); };
  networkPolicies_->addEventHandlers(
      {onManaged, [onManaged](const json&, const json& o) { onManaged(o); },
       [this](const json& o) { onManagedObjectEvent(o, true); }});
  auto onSlices = [this](const json&) { recomputeApiEndpoints(); };
  endpointSlices_->addEventHandlers(
      {onSlices, [onSlices](const json&, const json& o) { onSlices(o); }, onSlices});
}

SegmentationController::~SegmentationController() { stop(); }

void SegmentationController::onManagedObjectEvent(const json& object, bool deleted) {
  std::string ns = namespaceOf(object);
  {
    // Until the next reconcile has checked it, the namespace is not known to be segmented.
    std::lock_guard lock(mu_);
    auto it = namespaceStates_.find(ns);
    if (it != namespaceStates_.end()) {
      it->second.converged = false;
      if (deleted) {
        it->second.pending.erase(object.value("kind", "") + "/" + nameOf(object));
      }
    }
  }
  namespaceQueue_.add(ns);
  enqueueAllPolicies(kStatusDelay);
}

void SegmentationController::rebuildPolicies() {
  // A policy that stops decoding keeps its last good spec; its reconcile reports why.
  auto objects = policies_->store().list();
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

void SegmentationController::recomputeApiEndpoints() {
  std::vector<json> slices;
  for (const auto& s : endpointSlices_->store().list()) {
    slices.push_back(*s);
  }
  auto endpoints = policy::apiEndpointsFromSlices(slices);
  {
    std::lock_guard lock(mu_);
    if (endpoints == apiEndpoints_) {
      return;
    }
    apiEndpoints_ = std::move(endpoints);
    ++factsVersion_;
  }
  enqueueAllNamespaces();
}

std::shared_ptr<const std::vector<policy::SegmentationPolicy>> SegmentationController::policies()
    const {
  std::lock_guard lock(mu_);
  return decodedPolicies_;
}

policy::ClusterFacts SegmentationController::facts() const {
  std::lock_guard lock(mu_);
  return {options_.installNamespace, meshAvailable_, apiEndpoints_};
}

void SegmentationController::enqueueAllNamespaces() {
  for (const auto& key : namespaces_->store().keys()) {
    namespaceQueue_.add(key);
  }
}

void SegmentationController::enqueueAllExceptions() {
  for (const auto& key : exceptions_->store().keys()) {
    exceptionQueue_.add(key);
  }
}

void SegmentationController::enqueueAllPolicies(milliseconds delay) {
  for (const auto& key : policies_->store().keys()) {
    policyQueue_.addAfter(key, delay);
  }
}

bool SegmentationController::sleepFor(milliseconds d) {
  std::unique_lock lock(mu_);
  auto deadline = clock_->monotonicNow() + d;
  while (!stopping_ && clock_->monotonicNow() < deadline) {
    clock_->waitUntil(lock, cv_, deadline);
  }
  return !stopping_;
}

void SegmentationController::start() {
  // stop() may come at any moment, even first (leadership lost at once): under mu_, either it has
  // and nothing starts, or everything it stops was started before it looks.
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      return;
    }
    namespaces_->start();
    policies_->start();
    networkPolicies_->start();
    tenantNetworkPolicies_->start();
    endpointSlices_->start();
    exceptions_->start();
  }
  // Mesh discovery first, so that the first reconciles already know whether Istio is there.
  auto served = client_->isServed("security.istio.io", "v1", "peerauthentications");
  if (served.ok() && *served) {
    startIstioInformers();
  }
  // Reconciling against a partial cache would delete objects that are merely not listed yet:
  // no worker starts before every informer has synced.
  auto lastLog = clock_->monotonicNow();
  while (!stopping_) {
    bool synced = namespaces_->hasSynced() && policies_->hasSynced() &&
                  networkPolicies_->hasSynced() && tenantNetworkPolicies_->hasSynced() &&
                  endpointSlices_->hasSynced() &&
                  exceptions_->hasSynced();
    {
      std::lock_guard lock(mu_);
      if (peerAuthentications_) {
        synced = synced && peerAuthentications_->hasSynced() &&
                 authorizationPolicies_->hasSynced();
      }
    }
    if (synced) {
      break;
    }
    if (clock_->monotonicNow() - lastLog > std::chrono::seconds(10)) {
      lastLog = clock_->monotonicNow();
      log::warn("waiting for caches to sync",
                {{"namespaces", namespaces_->hasSynced()},
                 {"segmentationpolicies", policies_->hasSynced()},
                 {"networkpolicies", networkPolicies_->hasSynced()},
                 {"tenant networkpolicies", tenantNetworkPolicies_->hasSynced()},
                 {"endpointslices", endpointSlices_->hasSynced()},
                 {"segmentationexceptions", exceptions_->hasSynced()}});
    }
    sleepFor(milliseconds(20));
  }
  if (stopping_) {
    return;
  }
  {
    // Istio's caches are synced with the others: the first reconciles must already write the
    // mesh objects, or a restart (a new leader) would delete every PeerAuthentication as
    // unwanted until the discovery loop's first pass.
    std::lock_guard lock(mu_);
    if (peerAuthentications_ && !meshAvailable_) {
      meshAvailable_ = true;
      ++factsVersion_;
    }
  }
  rebuildPolicies();
  recomputeApiEndpoints();
  enqueueAllNamespaces();
  enqueueAllPolicies(milliseconds(0));
  enqueueAllExceptions();
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      return;
    }
    running_ = true;
    for (int i = 0; i < options_.namespaceWorkers; ++i) {
      threads_.emplace_back([this] { namespaceWorker(); });
    }
    threads_.emplace_back([this] { policyWorker(); });
    threads_.emplace_back([this] { exceptionWorker(); });
    threads_.emplace_back([this] { meshDiscoveryLoop(); });
    threads_.emplace_back([this] { resyncLoop(); });
  }
  log::info("segmentation controller started",
            {{"namespaces", static_cast<int64_t>(namespaces_->store().size())},
             {"policies", static_cast<int64_t>(policies_->store().size())},
             {"workers", options_.namespaceWorkers}});
}

void SegmentationController::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      return;
    }
    stopping_ = true;
  }
  cv_.notify_all();
  // In-flight reconciles finish; queued keys are abandoned (the next leader relists anyway).
  namespaceQueue_.shutDown();
  policyQueue_.shutDown();
  exceptionQueue_.shutDown();
  for (auto& t : threads_) {
    t.join();
  }
  threads_.clear();
  namespaces_->stop();
  policies_->stop();
  networkPolicies_->stop();
  tenantNetworkPolicies_->stop();
  endpointSlices_->stop();
  exceptions_->stop();
  stopIstioInformers();
  running_ = false;
}

void SegmentationController::startIstioInformers() {
  const std::string managed = policy::kManagedBySelector;
  auto pa = std::make_unique<kube::Informer>(
      client_, clock_, kube::informerOptions(resources::kPeerAuthentications, "", managed));
  auto ap = std::make_unique<kube::Informer>(
      client_, clock_, kube::informerOptions(resources::kAuthorizationPolicies, "", managed));
  auto onManaged = [this](const json& o) { onManagedObjectEvent(o, false); };
  for (auto* inf : {pa.get(), ap.get()}) {
    inf->store().addIndex(kPolicyIndex, kube::labelIndex(policy::kPolicyLabel));
    inf->addEventHandlers({onManaged, [onManaged](const json&, const json& o) { onManaged(o); },
                           [this](const json& o) { onManagedObjectEvent(o, true); }});
    inf->start();
  }
  const std::string tenant = policy::kNotManagedBySelector;
  auto tenantPa = std::make_unique<kube::Informer>(
      client_, clock_, kube::informerOptions(resources::kPeerAuthentications, "", tenant));
  auto tenantAp = std::make_unique<kube::Informer>(
      client_, clock_, kube::informerOptions(resources::kAuthorizationPolicies, "", tenant));
  auto onTenant = [this](const json& o) {
    namespaceQueue_.add(o["metadata"].value("namespace", ""));
    enqueueAllPolicies(kStatusDelay);
  };
  for (auto* inf : {tenantPa.get(), tenantAp.get()}) {
    inf->addEventHandlers(
        {onTenant, [onTenant](const json&, const json& o) { onTenant(o); }, onTenant});
    inf->start();
  }
  std::lock_guard lock(mu_);
  if (stopping_) {
    return;  // stop() has taken the informers already: these stop as they go out of scope
  }
  peerAuthentications_ = std::move(pa);
  authorizationPolicies_ = std::move(ap);
  tenantPeerAuthentications_ = std::move(tenantPa);
  tenantAuthorizationPolicies_ = std::move(tenantAp);
}

void SegmentationController::stopIstioInformers() {
  std::vector<std::unique_ptr<kube::Informer>> informers;
  {
    std::lock_guard lock(mu_);
    informers.push_back(std::move(peerAuthentications_));
    informers.push_back(std::move(authorizationPolicies_));
    informers.push_back(std::move(tenantPeerAuthentications_));
    informers.push_back(std::move(tenantAuthorizationPolicies_));
  }
  for (auto& inf : informers) {
    if (inf) {
      inf->stop();
    }
  }
}

void SegmentationController::meshDiscoveryLoop() {
  bool first = true;
  while (first || sleepFor(options_.meshDiscoveryInterval)) {
    first = false;
    auto served = client_->isServed("security.istio.io", "v1", "peerauthentications");
    if (!served.ok()) {
      log::warn("Istio discovery failed", {{"error", served.status().toString()}});
      continue;
    }
    bool available;
    bool haveInformers;
    {
      std::lock_guard lock(mu_);
      available = meshAvailable_;
      haveInformers = peerAuthentications_ != nullptr;
    }
    if (*served && !haveInformers) {
      startIstioInformers();
    }
    if (*served && !available) {
      // Only once the new caches are synced, so that reconciles see the existing objects.
      bool synced = false;
      {
        std::lock_guard lock(mu_);
        synced = peerAuthentications_ != nullptr && peerAuthentications_->hasSynced() &&
                 authorizationPolicies_->hasSynced();
      }
      if (!synced) {
        if (!sleepFor(milliseconds(100))) {
          return;
        }
        first = true;  // check again soon
        continue;
      }
      log::info("Istio security API is served; managing PeerAuthentications");
      {
        std::lock_guard lock(mu_);
        meshAvailable_ = true;
        ++factsVersion_;
      }
      enqueueAllNamespaces();
      enqueueAllPolicies(milliseconds(0));
    } else if (!*served && (available || haveInformers)) {
      log::warn("Istio security API is no longer served");
      stopIstioInformers();
      {
        std::lock_guard lock(mu_);
        meshAvailable_ = false;
        ++factsVersion_;
      }
      enqueueAllNamespaces();
      enqueueAllPolicies(milliseconds(0));
    }
  }
}

void SegmentationController::resyncLoop() {
  while (sleepFor(options_.resyncPeriod)) {
    log::debug("periodic resync");
    enqueueAllNamespaces();
    enqueueAllPolicies(milliseconds(0));
  }
}

void SegmentationController::runWorker(kube::WorkQueue& queue, const char* controller,
                                       const std::function<Status(const std::string&)>& reconcile,
                                       const std::function<void(const std::string&,
                                                                const Status&)>& onError) {
  while (auto key = queue.get()) {
    auto start = clock_->monotonicNow();
    Status s = guarded([&] { return reconcile(*key); });
    reconcileDuration(controller)
        .observe(std::chrono::duration<double>(clock_->monotonicNow() - start).count());
    if (s.ok()) {
      reconcileTotal(controller, "success").inc();
      queue.forget(*key);
    } else {
      reconcileTotal(controller, "error").inc();
      log::warn("reconcile failed", {{"controller", controller}, {"key", *key},
                                     {"error", s.toString()}});
      onError(*key, s);
      queue.addRateLimited(*key);
    }
    queue.done(*key);
  }
}

void SegmentationController::namespaceWorker() {
  runWorker(
      namespaceQueue_, kNamespaceController,
      [this](const std::string& ns) { return reconcileNamespace(ns); },
      [this](const std::string& ns, const Status& s) {
        {
          std::lock_guard lock(mu_);
          auto& state = namespaceStates_[ns];
          state.converged = false;
          state.error = s.toString();
        }
        enqueueAllPolicies(kStatusDelay);  // the failure shows in the policy's Ready condition
      });
}

void SegmentationController::policyWorker() {
  runWorker(
      policyQueue_, kPolicyController,
      [this](const std::string& name) { return reconcilePolicy(name); },
      [](const std::string&, const Status&) {});
}

void SegmentationController::exceptionWorker() {
  runWorker(
      exceptionQueue_, kExceptionController,
      [this](const std::string& key) { return reconcileException(key); },
      [](const std::string&, const Status&) {});
}

Status SegmentationController::reconcileException(const std::string& key) {
  auto setPhase = [&](const std::string& phase) {
    std::lock_guard lock(mu_);
    if (phase.empty()) {
      exceptionPhases_.erase(key);
    } else {
      exceptionPhases_[key] = phase;
    }
    for (auto p : {policy::ExceptionPhase::kPending, policy::ExceptionPhase::kActive,
                   policy::ExceptionPhase::kExpired}) {
      const auto name = policy::exceptionPhaseName(p);
      exceptionsGauge(name).set(static_cast<double>(
          std::count_if(exceptionPhases_.begin(), exceptionPhases_.end(),
                        [&](const auto& e) { return e.second == name; })));
    }
  };
  kube::ObjectPtr object = exceptions_->store().get(key);
  if (object == nullptr) {
    setPhase("");
    return okStatus();
  }
  auto exception = policy::decodeSegmentationException(*object);
  if (!exception.ok()) {
    // The CRD's schema makes this rare; the webhook refuses such objects. Nothing to compute.
    log::warn("ignoring an invalid SegmentationException",
              {{"key", key}, {"error", exception.status().message()}});
    setPhase("");
    return okStatus();
  }
  // The policy governing the exception's namespace decides whether approval is needed.
  policy::SegmentationPolicy ungoverned;
  const policy::SegmentationPolicy* governing = &ungoverned;
  auto all = policies();
  if (kube::ObjectPtr ns = namespaces_->store().get(exception->ns); ns != nullptr) {
    if (auto* p = policy::governingPolicy(*all, namespaceFacts(*ns), options_.installNamespace)) {
      governing = p;
    }
  }
  const WallTime now = clock_->now();
  const auto phase = policy::phaseOf(*exception, *governing, now);
  const std::string phaseName(policy::exceptionPhaseName(phase));
  const json status = object->value("status", json::object());
  const int64_t generation = (*object)["metadata"].value("generation", int64_t{0});
  if (status.value("phase", "") != phaseName ||
      status.value("observedGeneration", int64_t{-1}) != generation) {
    json updated = *object;
    updated["status"]["phase"] = phaseName;
    updated["status"]["observedGeneration"] = generation;
    RETURN_IF_ERROR(client_->updateStatus(resources::kSegmentationExceptions, updated)
                        .status()
                        .withContext("writing the status of SegmentationException " + key));
    if (phase == policy::ExceptionPhase::kExpired && status.value("phase", "") != phaseName) {
      events_->record(kube::referenceTo(*object), kube::EventRecorder::Type::kNormal, "Expired",
                      "expired at " + formatRfc3339(exception->expiresAt) +
                          "; its pods are checked by every rule again");
    }
    log::info("SegmentationException phase",
              {{"key", key},
               {"phase", phaseName},
               {"expiresAt", formatRfc3339(exception->expiresAt)}});
  }
  setPhase(phaseName);
  if (phase != policy::ExceptionPhase::kExpired) {
    // The webhook stops honouring it at expiresAt on its own; the status follows at that moment.
    exceptionQueue_.addAfter(key, exception->expiresAt - now + milliseconds(50));
  }
  return okStatus();
}

std::vector<json> SegmentationController::managedObjects(const std::string& ns) const {
  std::vector<json> out;
  for (const auto& o : networkPolicies_->store().byNamespace(ns)) {
    out.push_back(*o);
  }
  std::lock_guard lock(mu_);
  for (const auto* inf : {peerAuthentications_.get(), authorizationPolicies_.get()}) {
    if (inf != nullptr) {
      for (const auto& o : inf->store().byNamespace(ns)) {
        out.push_back(*o);
      }
    }
  }
  return out;
}

const kube::ResourceType& SegmentationController::typeOf(const json& object) const {
  std::string kind = object.value("kind", "");
  if (kind == "PeerAuthentication") {
    return resources::kPeerAuthentications;
  }
  if (kind == "AuthorizationPolicy") {
    return resources::kAuthorizationPolicies;
  }
  return kube::resources::kNetworkPolicies;
}

Status SegmentationController::reconcileNamespace(const std::string& nsName) {
  kube::ObjectPtr ns = namespaces_->store().get(nsName);
  if (ns == nullptr || policy::isTerminating(*ns)) {
    return okStatus();  // its objects go with it
  }
  auto all = policies();
  auto clusterFacts = facts();
  const policy::SegmentationPolicy* governing =
      policy::governingPolicy(*all, namespaceFacts(*ns), options_.installNamespace);
  std::vector<json> desired;
  if (governing != nullptr) {
    desired = policy::desiredObjects(*governing, namespaceFacts(*ns), clusterFacts);
  }
  std::vector<json> current = managedObjects(nsName);
  auto find = [&](const json& want) -> const json* {
    for (const auto& c : current) {
      if (c.value("kind", "") == want.value("kind", "") && nameOf(c) == nameOf(want)) {
        return &c;
      }
    }
    return nullptr;
  };

  NamespaceState before;
  uint64_t factsVersion;
  {
    std::lock_guard lock(mu_);
    before = namespaceStates_[nsName];
    factsVersion = factsVersion_;
  }
  bool wasSegmented = governing != nullptr && before.policy == governing->name &&
                      !before.policy.empty();
  // Events about a namespace are kept in that namespace, where `kubectl get events -n` shows them.
  kube::ObjectReference nsRef{"v1", "Namespace", nsName, nsName,
                              (*ns)["metadata"].value("uid", "")};
  int writes = 0;
  std::map<std::string, std::pair<size_t, MonoTime>> pending;
  bool awaitingWatch = false;
  for (const auto& want : desired) {
    const json* have = find(want);
    std::string kind = want["kind"];
    std::string pendingKey = kind + "/" + nameOf(want);
    if (have != nullptr && policy::matchesDesired(*have, want)) {
      continue;
    }
    size_t content = std::hash<std::string>{}(want.dump());
    if (have == nullptr) {
      auto p = before.pending.find(pendingKey);
      if (p != before.pending.end() && p->second.first == content &&
          clock_->monotonicNow() - p->second.second < kPendingWindow) {
        pending[pendingKey] = p->second;  // applied moments ago; the watch will show it
        awaitingWatch = true;
        continue;
      }
    }
    StatusOr<json> written = json();
    if (have == nullptr) {
      written = client_->apply(typeOf(want), want, options_.fieldManager, true, "");
      apiWrites(kind, "apply").inc();
    } else {
      // Apply cannot take away fields that another manager added (an allow-all rule, say):
      // drift is reverted by replacing the spec, guarded by the cached resourceVersion.
      json replacement = *have;
      replacement["spec"] = want["spec"];
      for (const auto& [k, v] : want["metadata"]["labels"].items()) {
        replacement["metadata"]["labels"][k] = v;
      }
      written = client_->update(typeOf(want), replacement);
      apiWrites(kind, "update").inc();
    }
    if (!written.ok()) {
      return written.status().withContext("writing " + kind + " " + nsName + "/" + nameOf(want));
    }
    ++writes;
    if (have == nullptr) {
      pending[pendingKey] = {content, clock_->monotonicNow()};
    }
    if (have != nullptr || wasSegmented) {
      driftRepairs(kind).inc();
      events_->record(nsRef, kube::EventRecorder::Type::kWarning, "Repaired",
                      "restored " + kind + " " + nameOf(want) + (have ? " (it had been edited)"
                                                                      : " (it had been deleted)"));
    }
  }
  int removed = 0;
  for (const auto& have : current) {
    bool wanted = false;
    for (const auto& want : desired) {
      wanted |= want.value("kind", "") == have.value("kind", "") && nameOf(want) == nameOf(have);
    }
    if (wanted) {
      continue;
    }
    kube::DeleteOptions opts;
    opts.preconditionUid = have["metadata"].value("uid", "");
    Status s = client_->remove(typeOf(have), nsName, nameOf(have), opts);
    apiWrites(have.value("kind", ""), "delete").inc();
    if (!s.ok() && s.code() != StatusCode::kNotFound) {
      return s.withContext("deleting " + have.value("kind", "") + " " + nsName + "/" +
                           nameOf(have));
    }
    ++removed;
  }

  // Pod Security: the governing policy's labels, or none (which takes Bulkhead's away).
  ASSIGN_OR_RETURN(auto podSecurity,
                   reconcilePodSecurity(*ns,
                                        governing != nullptr ? policy::podSecurityLabels(*governing)
                                                             : policy::Labels{},
                                        before, pending));
  writes += podSecurity == PodSecurityOutcome::kApplied ? 1 : 0;
  awaitingWatch |= podSecurity == PodSecurityOutcome::kAwaitingWatch;

  // Tenant NetworkPolicies that were there before the namespace was selected (or before a
  // policy narrowed network.tenantPolicies) are reported, never removed.
  std::string tenantViolations;
  if (governing != nullptr) {
    for (const auto& line : tenantPolicyViolations(*governing, nsName)) {
      tenantViolations += (tenantViolations.empty() ? "" : "; ") + line;
    }
  }
  if (!tenantViolations.empty() && tenantViolations != before.tenantViolations) {
    events_->record(nsRef, kube::EventRecorder::Type::kWarning, "TenantPolicyViolation",
                    tenantViolations + ", under SegmentationPolicy \"" + governing->name +
                        "\"; left in place: keep it to this namespace's pods, or open the flow "
                        "with an AccessGrant or baselineAllows");
  }

  NamespaceState after;
  after.tenantViolations = tenantViolations;
  after.policy = governing ? governing->name : "";
  after.generation = governing ? governing->generation : 0;
  after.factsVersion = factsVersion;
  after.converged = true;
  after.pending = std::move(pending);
  {
    std::lock_guard lock(mu_);
    namespaceStates_[nsName] = std::move(after);
  }
  if (awaitingWatch) {
    namespaceQueue_.addAfter(nsName, kPendingWindow);  // check once the watch had time
  }
  if (governing != nullptr && !wasSegmented) {
    events_->record(nsRef, kube::EventRecorder::Type::kNormal, "Segmented",
                    "segmented by SegmentationPolicy \"" + governing->name + "\" (" +
                        std::to_string(desired.size()) + " objects)");
  } else if (governing == nullptr && removed > 0) {
    events_->record(nsRef, kube::EventRecorder::Type::kNormal, "Unsegmented",
                    "removed " + std::to_string(removed) +
                        " generated objects: no SegmentationPolicy selects this namespace");
  }
  if (writes + removed > 0 || before.policy != (governing ? governing->name : "") ||
      !before.converged) {
    enqueueAllPolicies(kStatusDelay);
  }
  return okStatus();
}

StatusOr<SegmentationController::PodSecurityOutcome> SegmentationController::reconcilePodSecurity(
    const json& ns, const policy::Labels& desired, const NamespaceState& before,
    std::map<std::string, std::pair<size_t, MonoTime>>& pending) {
  const std::string& manager = options_.podSecurityFieldManager;
  if (policy::podSecurityLabelsInPlace(ns, desired, manager)) {
    return PodSecurityOutcome::kInPlace;
  }
  const std::string name = nameOf(ns);
  json object = policy::podSecurityApplyObject(name, ns["metadata"].value("uid", ""), desired);
  const std::string pendingKey = "Namespace/" + name;
  size_t content = std::hash<std::string>{}(object.dump());
  if (auto p = before.pending.find(pendingKey);
      p != before.pending.end() && p->second.first == content &&
      clock_->monotonicNow() - p->second.second < kPendingWindow) {
    pending[pendingKey] = p->second;  // applied moments ago; the watch will show it
    return PodSecurityOutcome::kAwaitingWatch;
  }
  // Forced: the policy is the authority over a selected namespace's Pod Security level, so a
  // value someone else set is taken over (and leaves with the policy). Without create on
  // namespaces, an apply to a namespace deleted meanwhile fails rather than recreating it; the
  // uid in the body refuses one recreated under the same name.
  auto written = client_->apply(kube::resources::kNamespaces, object, manager, true, "");
  apiWrites("Namespace", "apply").inc();
  if (!written.ok()) {
    return written.status().withContext("applying the Pod Security labels of namespace " + name);
  }
  log::debug("Pod Security labels applied",
             {{"namespace", name}, {"labels", json(desired).dump()}});
  pending[pendingKey] = {content, clock_->monotonicNow()};
  return PodSecurityOutcome::kApplied;
}

std::vector<std::string> SegmentationController::tenantPolicyViolations(
    const policy::SegmentationPolicy& p, const std::string& ns) const {
  std::vector<std::pair<std::string, kube::ObjectPtr>> objects;
  for (auto& o : tenantNetworkPolicies_->store().byNamespace(ns)) {
    objects.emplace_back("NetworkPolicy", std::move(o));
  }
  {
    std::lock_guard lock(mu_);
    for (const auto& [kind, inf] :
         {std::pair{"PeerAuthentication", tenantPeerAuthentications_.get()},
          std::pair{"AuthorizationPolicy", tenantAuthorizationPolicies_.get()}}) {
      if (inf != nullptr) {
        for (auto& o : inf->store().byNamespace(ns)) {
          objects.emplace_back(kind, std::move(o));
        }
      }
    }
  }
  std::vector<std::string> out;
  for (const auto& [kind, o] : objects) {
    auto found = policy::tenantObjectViolations(kind, ns, *o, p);
    if (!found.empty()) {
      out.push_back(asciiLower(kind) + " \"" + nameOf(*o) + "\" reaches outside the namespace (" +
                    found.front() + (found.size() > 1 ? ", ..." : "") + ")");
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status SegmentationController::reconcilePolicy(const std::string& name) {
  kube::ObjectPtr object = policies_->store().get(name);
  if (object == nullptr) {
    return okStatus();
  }
  auto decoded = policy::decodeSegmentationPolicy(*object);
  if (!decoded.ok()) {
    // Still governing with the last spec that decoded, if there was one (rebuildPolicies).
    auto all = policies();
    const std::string uid = (*object)["metadata"].value("uid", "");
    for (const auto& last : *all) {
      if (last.name == name && last.uid == uid && !uid.empty()) {
        if (last.deleting) {
          return cleanUpDeletedPolicy(last, *object);
        }
        return updateStatus(last, *object,
                            decoded.status().message() +
                                "; its namespaces keep the last spec that decoded (generation " +
                                std::to_string(last.generation) + ")");
      }
    }
    policy::SegmentationPolicy shell;
    shell.name = name;
    shell.generation = (*object)["metadata"].value("generation", int64_t{0});
    return updateStatus(shell, *object, decoded.status().message());
  }
  const policy::SegmentationPolicy& p = *decoded;
  if (p.deleting) {
    return cleanUpDeletedPolicy(p, *object);
  }
  if (!p.hasFinalizer) {
    json finalizers = (*object)["metadata"].value("finalizers", json::array());
    finalizers.push_back(policy::kFinalizer);
    json patch = {{"metadata",
                   {{"finalizers", finalizers},
                    {"resourceVersion", (*object)["metadata"]["resourceVersion"]}}}};
    auto patched =
        client_->mergePatch(resources::kSegmentationPolicies, "", name, patch, "");
    if (!patched.ok()) {
      return patched.status().withContext("adding the finalizer");
    }
  }
  return updateStatus(p, *object, "");
}

Status SegmentationController::cleanUpDeletedPolicy(const policy::SegmentationPolicy& p,
                                                    const json& object) {
  // Every namespace still holding this policy's objects is reconciled (the policy no longer
  // selects anything, so they are removed or handed to another policy); the finalizer goes once
  // none is left in the caches.
  std::set<std::string> namespaces;
  std::vector<kube::Informer*> informers = {networkPolicies_.get()};
  {
    std::lock_guard lock(mu_);
    if (peerAuthentications_) {
      informers.push_back(peerAuthentications_.get());
      informers.push_back(authorizationPolicies_.get());
    }
  }
  for (auto* inf : informers) {
    for (const auto& o : inf->store().byIndex(kPolicyIndex, p.name)) {
      namespaces.insert(namespaceOf(*o));
    }
  }
  // Pod Security labels Bulkhead set are not indexed by policy: any namespace still carrying
  // some that no policy wants any more (this one selects nothing now) waits for its reconcile.
  auto all = policies();
  for (const auto& ns : namespaces_->store().list()) {
    if (policy::isTerminating(*ns) ||
        policy::labelsAppliedBy(*ns, options_.podSecurityFieldManager).empty()) {
      continue;
    }
    const auto* gov = policy::governingPolicy(*all, namespaceFacts(*ns), options_.installNamespace);
    if (gov == nullptr || policy::podSecurityLabels(*gov).empty()) {
      namespaces.insert(nameOf(*ns));
    }
  }
  if (!namespaces.empty()) {
    for (const auto& ns : namespaces) {
      namespaceQueue_.add(ns);
    }
    policyQueue_.addAfter(p.name, milliseconds(500));
    return okStatus();
  }
  if (!p.hasFinalizer) {
    return okStatus();
  }
  json finalizers = json::array();
  for (const auto& f : object["metadata"].value("finalizers", json::array())) {
    if (f != policy::kFinalizer) {
      finalizers.push_back(f);
    }
  }
  json patch = {{"metadata",
                 {{"finalizers", finalizers},
                  {"resourceVersion", object["metadata"]["resourceVersion"]}}}};
  auto patched = client_->mergePatch(resources::kSegmentationPolicies, "", p.name, patch, "");
  if (!patched.ok() && patched.status().code() != StatusCode::kNotFound) {
    return patched.status().withContext("removing the finalizer");
  }
  log::info("SegmentationPolicy deleted; its generated objects are gone", {{"policy", p.name}});
  return okStatus();
}

Status SegmentationController::updateStatus(const policy::SegmentationPolicy& p,
                                            const json& object, const std::string& invalidSpec) {
  auto all = policies();
  int64_t selected = 0, governed = 0, segmented = 0;
  std::vector<std::string> conflicting;
  std::vector<std::string> tenantViolations;
  std::string firstError;
  int64_t totalSelected = 0, totalSegmented = 0;
  bool mesh;
  {
    std::lock_guard lock(mu_);
    mesh = meshAvailable_;
  }
  std::map<std::string, policy::NamespaceFacts> allFacts;
  {
    std::lock_guard lock(mu_);
    allFacts = namespaceFacts_;
  }
  for (const auto& [name, facts] : allFacts) {
    const auto* gov = policy::governingPolicy(*all, facts, options_.installNamespace);
    NamespaceState state;
    uint64_t factsVersion;
    {
      std::lock_guard lock(mu_);
      auto it = namespaceStates_.find(facts.name);
      if (it != namespaceStates_.end()) {
        state = it->second;
      }
      factsVersion = factsVersion_;
    }
    bool isSegmented = gov != nullptr && state.converged && state.policy == gov->name &&
                       state.generation == gov->generation && state.factsVersion == factsVersion;
    if (gov != nullptr) {
      ++totalSelected;
      totalSegmented += isSegmented ? 1 : 0;
    }
    // A policy that never decoded selects nothing; one that stopped decoding still governs
    // with its last good spec (it has the uid that spec was decoded with).
    if ((!invalidSpec.empty() && p.uid.empty()) ||
        !policy::selects(p, facts, options_.installNamespace)) {
      continue;
    }
    ++selected;
    if (gov == nullptr || gov->name != p.name) {
      conflicting.push_back(facts.name + " (by " + (gov ? gov->name : "?") + ")");
      continue;
    }
    ++governed;
    for (const auto& line : tenantPolicyViolations(p, facts.name)) {
      tenantViolations.push_back(facts.name + ": " + line);
    }
    if (isSegmented) {
      ++segmented;
    } else if (!state.error.empty() && firstError.empty()) {
      firstError = facts.name + ": " + state.error;
    }
  }
  namespacesGauge("selected").set(static_cast<double>(totalSelected));
  namespacesGauge("segmented").set(static_cast<double>(totalSegmented));
  namespacesGauge("unsegmented").set(static_cast<double>(totalSelected - totalSegmented));
  generatedObjects("NetworkPolicy").set(static_cast<double>(networkPolicies_->store().size()));
  {
    std::lock_guard lock(mu_);
    generatedObjects("PeerAuthentication")
        .set(peerAuthentications_ ? static_cast<double>(peerAuthentications_->store().size()) : 0);
    generatedObjects("AuthorizationPolicy")
        .set(authorizationPolicies_ ? static_cast<double>(authorizationPolicies_->store().size())
                                    : 0);
  }

  const json& old = object.value("status", json::object());
  const json oldConditions = old.value("conditions", json::array());
  WallTime now = clock_->now();
  json conditions = json::array();
  if (!invalidSpec.empty()) {
    conditions.push_back(condition(oldConditions, "Ready", false, "InvalidSpec", invalidSpec,
                                   p.generation, now));
  } else if (segmented == governed) {
    conditions.push_back(condition(oldConditions, "Ready", true, "Segmented",
                                   std::to_string(segmented) + " of " + std::to_string(governed) +
                                       " namespaces segmented",
                                   p.generation, now));
  } else {
    std::string msg = std::to_string(segmented) + " of " + std::to_string(governed) +
                      " namespaces segmented";
    if (!firstError.empty()) {
      msg += "; failing: " + firstError;
    }
    conditions.push_back(condition(oldConditions, "Ready", false,
                                   firstError.empty() ? "Progressing" : "ReconcileError", msg,
                                   p.generation, now));
  }
  std::sort(conflicting.begin(), conflicting.end());
  if (conflicting.empty()) {
    conditions.push_back(condition(oldConditions, "Conflict", false, "NoConflict",
                                   "no selected namespace is governed by another policy",
                                   p.generation, now));
  } else {
    std::string msg = "namespaces governed by a policy of higher priority: ";
    for (size_t i = 0; i < conflicting.size() && i < 20; ++i) {
      msg += (i ? ", " : "") + conflicting[i];
    }
    if (conflicting.size() > 20) {
      msg += " and " + std::to_string(conflicting.size() - 20) + " more";
    }
    conditions.push_back(
        condition(oldConditions, "Conflict", true, "Overridden", msg, p.generation, now));
  }
  if (tenantViolations.empty()) {
    conditions.push_back(condition(oldConditions, "TenantPolicies", true, "Contained",
                                   "no tenant NetworkPolicy or Istio policy reaches outside its namespace",
                                   p.generation, now));
  } else {
    std::string msg = std::to_string(tenantViolations.size()) +
                      " tenant policies reach outside their namespace (left in place): ";
    for (size_t i = 0; i < tenantViolations.size() && i < 10; ++i) {
      msg += (i ? "; " : "") + tenantViolations[i];
    }
    if (tenantViolations.size() > 10) {
      msg += "; and " + std::to_string(tenantViolations.size() - 10) + " more";
    }
    conditions.push_back(
        condition(oldConditions, "TenantPolicies", false, "Violations", msg, p.generation, now));
  }
  conditions.push_back(condition(
      oldConditions, "MeshAvailable", mesh, mesh ? "IstioServed" : "IstioNotInstalled",
      mesh ? "security.istio.io/v1 is served"
           : "security.istio.io/v1 is not served: only NetworkPolicies are written",
      p.generation, now));
  json conflictNames = json::array();
  for (const auto& c : conflicting) {
    conflictNames.push_back(c.substr(0, c.find(' ')));
  }
  json status = {{"observedGeneration", p.generation},
                 {"selectedNamespaces", selected},
                 {"segmentedNamespaces", segmented},
                 {"conflictingNamespaces", conflictNames},
                 {"tenantPolicyViolations", static_cast<int64_t>(tenantViolations.size())},
                 {"meshAvailable", mesh},
                 {"conditions", conditions}};
  if (status == old) {
    return okStatus();
  }
  auto patched = client_->mergePatch(resources::kSegmentationPolicies, "", p.name,
                                     {{"status", status}}, "status");
  if (!patched.ok() && patched.status().code() != StatusCode::kNotFound) {
    return patched.status().withContext("updating status");
  }
  return okStatus();
}

}  // namespace bulkhead::controller
