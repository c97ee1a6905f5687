#include "webhooks/admission_handler.h"

#include <algorithm>

#include "common/log.h"
#include "common/metrics.h"
#include "policy/grants.h"
#include "policy/segmentation.h"
#include "policy/tenant_objects.h"
#include "webhooks/admission_rules.h"

namespace bulkhead::webhooks {
namespace {

using nlohmann::json;


metrics::Counter& requestsTotal(const std::string& rule, const char* decision,
                                const std::string& mode) {
  // On every request: the family is looked up in the registry once.
  static auto& family = metrics::defaultRegistry().counter(
      "bulkhead_admission_requests_total", "Admission reviews by rule, decision and mode.",
      {"rule", "decision", "mode"});
  return family.labels({rule, decision, mode});
}

metrics::Histogram& duration() {
  static auto& h = metrics::defaultRegistry()
                       .histogram("bulkhead_admission_duration_seconds",
                                  "Time to decide one admission review.", {})
                       .labels({});
  return h;
}

// The API server admits nothing into a namespace that does not exist, so a namespace missing
// from the cache means the cache is merely behind (the namespace was created a moment ago). Its
// labels decide everything: refuse, retryably, rather than guess.
policy::Decision namespaceUnknown(const std::string& ns) {
  return policy::Decision::deny(
      "bulkhead: namespace \"" + ns + "\" is not in the webhook's cache yet; retry in a moment",
      {"namespaceUnknown"});
}

// What the checks of requested, time-bound objects (exceptions, grants) read of a request.
policy::ExceptionReview timeBoundReview(const AdmissionRequest& req) {
  policy::ExceptionReview review;
  review.operation = req.operation;
  if (!req.object.is_null()) {
    review.object = req.object;
  }
  if (!req.oldObject.is_null()) {
    review.oldObject = req.oldObject;
  }
  review.user = req.user;
  return review;
}

HttpResponse text(int status, std::string message) {
  return {status, "text/plain; charset=utf-8", std::move(message) + "\n"};
}

}  // namespace

AdmissionHandler::AdmissionHandler(kube::ClientPtr client, ClockPtr clock, kube::SharedCache& cache,
                                   kube::ApiDiscovery& discovery, AdmissionOptions options)
    : client_(std::move(client)),
      clock_(std::move(clock)),
      discovery_(discovery),
      options_(std::move(options)),
      namespaces_(cache.informer(kube::resources::kNamespaces)),
      policies_(cache.informer(kube::resources::kSegmentationPolicies)),
      networkPolicies_(
          cache.informer(kube::resources::kNetworkPolicies, policy::kManagedBySelector)),
      exceptions_(cache.informer(kube::resources::kSegmentationExceptions)),
      events_(
          std::make_unique<kube::EventRecorder>(client_, clock_, "bulkhead-webhook", "webhook")),
      decoded_(std::make_shared<const std::vector<policy::SegmentationPolicy>>()) {
  discovery_.track(kube::resources::kPeerAuthentications);
}

AdmissionHandler::~AdmissionHandler() { stop(); }

void AdmissionHandler::start() {
  auto rebuild = [this](const json&) { rebuildPolicies(); };
  policyHandlers_ = policies_->addEventHandlers(
      {rebuild, [rebuild](const json&, const json& o) { rebuild(o); }, rebuild});
}

void AdmissionHandler::stop() {
  if (policyHandlers_ != 0) {
    policies_->removeEventHandlers(policyHandlers_);
    policyHandlers_ = 0;
  }
  events_->stop();
}

bool AdmissionHandler::ready() const {
  if (!discovery_.served(kube::resources::kPeerAuthentications).has_value()) {
    return false;  // requireSidecar depends on it
  }
  return namespaces_->hasSynced() && policies_->hasSynced() && networkPolicies_->hasSynced() &&
         exceptions_->hasSynced();  // decisions read all four
}

void AdmissionHandler::rebuildPolicies() {
  auto objects = policies_->store().list();
  std::vector<const nlohmann::json*> pointers;
  for (const auto& o : objects) {
    pointers.push_back(o.get());
  }
  auto previous = policies();
  auto decoded = std::make_shared<const std::vector<policy::SegmentationPolicy>>(
      policy::decodePolicies(pointers, *previous));
  std::lock_guard lock(mu_);
  decoded_ = std::move(decoded);
}

std::shared_ptr<const std::vector<policy::SegmentationPolicy>> AdmissionHandler::policies() const {
  std::lock_guard lock(mu_);
  return decoded_;  // an immutable snapshot: no copy on the request path
}

const policy::SegmentationPolicy* AdmissionHandler::governing(
    const std::vector<policy::SegmentationPolicy>& all, const std::string& ns) const {
  kube::ObjectPtr nsObj = namespaces_->store().get(ns);
  if (!nsObj) {
    return nullptr;  // callers that must not guess check the cache first
  }
  policy::NamespaceFacts facts{ns, policy::labelsOf(*nsObj)};
  return policy::governingPolicy(all, facts, options_.installNamespace);
}

policy::Decision AdmissionHandler::decideTenantObject(
    const AdmissionRequest& req, const std::vector<policy::SegmentationPolicy>& all) const {
  if (req.user.username == options_.controllerUsername) {
    return policy::Decision::allow();
  }
  if (!namespaces_->store().contains(req.ns)) {
    return namespaceUnknown(req.ns);
  }
  return policy::decideTenantObject(req.kind, req.ns, req.name, req.object, governing(all, req.ns));
}

policy::Decision AdmissionHandler::decidePod(
    const AdmissionRequest& req, const std::vector<policy::SegmentationPolicy>& all) const {
  auto facts = *req.pod;
  if (!facts.ok()) {
    return policy::Decision::deny(
        "bulkhead: cannot read the " + req.kind + ": " + facts.status().message(), {"malformed"});
  }
  facts->ns = req.ns;
  if (facts->name.empty()) {
    facts->name = req.name;
  }
  kube::ObjectPtr nsObj = namespaces_->store().get(req.ns);
  if (nsObj == nullptr) {
    return namespaceUnknown(req.ns);
  }
  const policy::Labels nsLabels = policy::labelsOf(*nsObj);
  std::vector<policy::SegmentationException> exceptions;
  for (const auto& o : exceptions_->store().byNamespace(req.ns)) {
    if (auto ex = policy::decodeSegmentationException(*o); ex.ok()) {
      exceptions.push_back(std::move(*ex));
    }
  }
  policy::PodReview review;
  review.pod = &*facts;
  review.governing = policy::governingPolicy(all, {req.ns, nsLabels}, options_.installNamespace);
  review.namespaceLabels = &nsLabels;
  review.meshAvailable = discovery_.served(kube::resources::kPeerAuthentications).value_or(false);
  review.defaultDenyExists =
      networkPolicies_->store().contains(req.ns + "/" + policy::kDefaultDenyName);
  review.exceptions = &exceptions;
  review.now = clock_->now();
  if (req.operation == "UPDATE" && req.oldPod.has_value() && req.oldPod->ok()) {
    review.oldPod = &**req.oldPod;  // an unreadable old object: judged in full
    review.podSpecChanged = req.podSpecChanged;
  }
  return policy::decidePod(review);
}

policy::Decision AdmissionHandler::decideNetworkObject(
    const AdmissionRequest& req, const std::vector<policy::SegmentationPolicy>& all) const {
  if (req.operation == "CREATE") {
    return decideTenantObject(req, all);
  }
  const policy::Labels oldLabels = policy::labelsOf(req.oldObject);
  if (req.operation == "UPDATE" && !policy::isGenerated(oldLabels)) {
    return decideTenantObject(req, all);  // a tenant's own object
  }
  kube::ObjectPtr nsObj = namespaces_->store().get(req.ns);
  return policy::decideGeneratedObjectChange(req.operation, req.kind, req.ns, req.name, oldLabels,
                                             req.user.username, options_.controllerUsername,
                                             nsObj != nullptr && policy::isTerminating(*nsObj));
}

policy::Decision AdmissionHandler::decideService(
    const AdmissionRequest& req, const std::vector<policy::SegmentationPolicy>& all) const {
  if (!namespaces_->store().contains(req.ns)) {
    return namespaceUnknown(req.ns);  // externalIPs are refused in selected namespaces
  }
  policy::ServiceFacts svc;
  svc.name = req.name;
  svc.ns = req.ns;
  if (auto spec = req.object.find("spec"); spec != req.object.end() && spec->is_object()) {
    if (auto t = spec->find("type"); t != spec->end() && t->is_string()) {
      svc.type = t->get<std::string>();
    }
    if (auto ips = spec->find("externalIPs"); ips != spec->end() && ips->is_array()) {
      svc.hasExternalIPs = !ips->empty();
    }
  }
  return policy::decideService(svc, governing(all, req.ns), false);
}

policy::Decision AdmissionHandler::decide(const AdmissionRequest& req) {
  const AdmissionRule* rule = findAdmissionRule(req.resource, req.subResource);
  if (rule == nullptr || std::find(rule->operations.begin(), rule->operations.end(),
                                   req.operation) == rule->operations.end()) {
    return policy::Decision::allow();  // not a request the webhook is registered for
  }
  auto snapshot = policies();
  const std::vector<policy::SegmentationPolicy>& all = *snapshot;
  switch (rule->decider) {
    case Decider::kPod:
      if (!req.pod.has_value()) {
        return policy::Decision::deny("bulkhead: the request carries no " + req.kind,
                                      {"malformed"});
      }
      return decidePod(req, all);
    case Decider::kService:
      return decideService(req, all);
    case Decider::kNamespaceLabels:
      if (req.user.username == options_.controllerUsername) {
        return policy::Decision::allow();  // it sets and repairs the Pod Security labels
      }
      return policy::decideNamespaceLabels(req.name, policy::labelsOf(req.oldObject),
                                           policy::labelsOf(req.object), all,
                                           options_.installNamespace, req.user);
    case Decider::kNetworkObject:
      return decideNetworkObject(req, all);
    case Decider::kTenantMeshObject:
      return decideTenantObject(req, all);
    case Decider::kException: {
      auto denial = policy::checkExceptionRequest(timeBoundReview(req), governing(all, req.ns),
                                                  clock_->now());
      return denial ? policy::Decision::deny(*denial, {"exception"}) : policy::Decision::allow();
    }
    case Decider::kGrant: {
      // The namespaces' labels decide which policies' approvers count: refuse rather than guess.
      const std::string source = policy::grantSourceNamespace(req.object);
      for (const auto& ns : {req.ns, source}) {
        if (!ns.empty() && !namespaces_->store().contains(ns) && req.operation != "DELETE") {
          if (ns == source && ns != req.ns) {
            // A source namespace that does not exist (yet) has no policy: only the
            // destination's rules apply.
            continue;
          }
          return namespaceUnknown(ns);
        }
      }
      auto denial = policy::checkGrantRequest(timeBoundReview(req), governing(all, req.ns),
                                              source.empty() ? nullptr : governing(all, source),
                                              clock_->now());
      return denial ? policy::Decision::deny(*denial, {"grant"}) : policy::Decision::allow();
    }
  }
  return policy::Decision::deny("bulkhead: internal error: no decider", {"internal"});
}

HttpResponse AdmissionHandler::handle(const HttpRequest& request) {
  std::string path = request.target.substr(0, request.target.find('?'));
  if (path != "/validate") {
    return text(404, "not found");
  }
  if (request.method != "POST") {
    return text(405, "method not allowed: POST an AdmissionReview");
  }
  if (request.contentType.rfind("application/json", 0) != 0) {
    return text(415, "Content-Type must be application/json");
  }
  if (!ready()) {
    // Deciding from empty caches would allow everything; the API server's failurePolicy Fail
    // turns this into a denial instead.
    return text(503, "bulkhead: caches not synced yet");
  }
  auto start = clock_->monotonicNow();
  auto req = decodeAdmissionReview(request.body);
  if (!req.ok()) {
    log::warn("bad admission request", {{"error", req.status().message()}});
    return text(400, req.status().message());
  }
  policy::Decision decision;
  try {
    decision = decide(*req);
  } catch (const std::exception& e) {
    // Never allow by accident: an unexpected failure denies.
    log::error("admission decision failed", {{"uid", req->uid}, {"error", e.what()}});
    decision =
        policy::Decision::deny(std::string("bulkhead: internal error: ") + e.what(), {"internal"});
  }
  const char* verdict = !decision.allowed            ? "deny"
                        : !decision.warnings.empty() ? "warn"
                        : !decision.rules.empty()    ? "audit"
                                                     : "allow";
  std::string mode = decision.rules.empty() ? "" : (decision.allowed ? verdict : "enforce");
  if (decision.rules.empty()) {
    requestsTotal("", verdict, mode).inc();
  }
  for (const auto& rule : decision.rules) {
    requestsTotal(rule, verdict, mode).inc();
  }
  if (std::string_view(verdict) == "audit" && !req->dryRun && !req->ns.empty()) {
    events_->record({"v1", "Namespace", req->ns, req->ns, ""}, kube::EventRecorder::Type::kWarning,
                    "PolicyViolation", decision.auditAnnotations[policy::kAuditAnnotationKey]);
  }
  if (!decision.rules.empty()) {
    log::info("admission", {{"uid", req->uid},
                            {"resource", req->resource},
                            {"namespace", req->ns},
                            {"name", req->name},
                            {"user", req->user.username},
                            {"decision", verdict},
                            {"dryRun", req->dryRun}});
  }
  duration().observe(std::chrono::duration<double>(clock_->monotonicNow() - start).count());
  return {200, "application/json", encodeAdmissionReview(req->uid, decision)};
}

}  // namespace bulkhead::webhooks
