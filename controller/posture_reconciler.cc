#include "controller/posture_reconciler.h"

#include "controller/metrics.h"
#include "policy/posture.h"

namespace bulkhead::controller {

using nlohmann::json;

namespace {

// Whether the cached Report says what `desired` says (the API server adds metadata of its own).
bool sameReport(const json& cached, const json& desired) {
  for (const char* field : {"scope", "summary", "results"}) {
    if (cached.value(field, json()) != desired[field]) {
      return false;
    }
  }
  const json& md = cached.value("metadata", json::object());
  for (const char* map : {"labels", "annotations"}) {
    const json have = md.value(map, json::object());
    for (const auto& [key, value] : desired["metadata"][map].items()) {
      if (have.value(key, json()) != value) {
        return false;
      }
    }
  }
  return true;
}

}  // namespace

StatusOr<kube::Result> PostureReconciler::reconcile(const std::string& ns) {
  kube::ObjectPtr nsObject = ctx_.caches.namespaces->store().get(ns);
  if (nsObject == nullptr || policy::isTerminating(*nsObject)) {
    ctx_.setPosture(ns, std::nullopt);  // its Report goes with it
    std::lock_guard lock(mu_);
    pending_.erase(ns);
    return kube::Result{};
  }
  auto all = ctx_.policies();
  const policy::SegmentationPolicy* p = ctx_.governing(*all, ns);
  std::shared_ptr<kube::Informer> reports = ctx_.reports();
  if (reports != nullptr && !reports->hasSynced()) {
    return kube::Result{kConflictRetry};  // do not write what may exist already
  }
  if (p == nullptr) {
    ctx_.setPosture(ns, std::nullopt);
    RETURN_IF_ERROR(unpublish(ns));
    return kube::Result{};
  }

  policy::PostureInput in;
  in.ns = ns;
  in.policy = p;
  const policy::Labels labels = policy::labelsOf(*nsObject);
  in.namespaceLabels = &labels;
  in.meshAvailable = static_cast<bool>(ctx_.mesh());
  in.now = ctx_.clock->now();
  std::vector<policy::SegmentationException> exceptions;
  for (const auto& e : ctx_.caches.exceptions->store().byNamespace(ns)) {
    if (auto decoded = policy::decodeSegmentationException(*e); decoded.ok()) {
      exceptions.push_back(std::move(*decoded));
    }
  }
  in.exceptions = &exceptions;
  std::vector<kube::ObjectPtr> held;  // keeps the objects alive while scanned
  for (const auto& informer : ctx_.caches.scanned) {
    for (auto& o : informer->store().byNamespace(ns)) {
      in.objects.push_back(o.get());
      held.push_back(std::move(o));
    }
  }
  const policy::Posture posture = policy::scanNamespace(in);
  ctx_.setPosture(ns, NamespacePosture{p->name, posture.violatingPods, posture.violatingWorkloads});
  RETURN_IF_ERROR(publish(ns, policy::postureReport(ns, *p, posture)));
  return kube::Result{};
}

Status PostureReconciler::publish(const std::string& ns, const json& report) {
  std::shared_ptr<kube::Informer> reports = ctx_.reports();
  if (reports == nullptr) {
    return okStatus();
  }
  kube::ObjectPtr cached = reports->store().get(ns + "/" + policy::kReportName);
  std::string content = report.dump();
  const MonoTime now = ctx_.clock->monotonicNow();
  {
    std::lock_guard lock(mu_);
    if (cached != nullptr && sameReport(*cached, report)) {
      pending_.erase(ns);
      return okStatus();
    }
    // Applied already and not yet seen by the watch: writing it again would change nothing.
    auto it = pending_.find(ns);
    if (it != pending_.end() && it->second.first == content &&
        now - it->second.second < kPendingWindow) {
      return okStatus();
    }
  }
  auto written =
      ctx_.client->apply(resources::kReports, report, ctx_.options.fieldManager, true, "");
  apiWrites("Report", "apply").inc();
  if (!written.ok()) {
    return written.status().withContext("writing the Report of namespace " + ns);
  }
  std::lock_guard lock(mu_);
  pending_[ns] = {std::move(content), now};
  return okStatus();
}

Status PostureReconciler::unpublish(const std::string& ns) {
  {
    std::lock_guard lock(mu_);
    pending_.erase(ns);
  }
  std::shared_ptr<kube::Informer> reports = ctx_.reports();
  kube::ObjectPtr cached =
      reports == nullptr ? nullptr : reports->store().get(ns + "/" + policy::kReportName);
  if (cached == nullptr) {
    return okStatus();
  }
  kube::DeleteOptions opts;
  opts.preconditionUid = (*cached)["metadata"].value("uid", "");
  Status s = ctx_.client->remove(resources::kReports, ns, policy::kReportName, opts);
  apiWrites("Report", "delete").inc();
  if (!s.ok() && s.code() != StatusCode::kNotFound) {
    return s.withContext("deleting the Report of namespace " + ns);
  }
  return okStatus();
}

}  // namespace bulkhead::controller
