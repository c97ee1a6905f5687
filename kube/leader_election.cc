#include "kube/leader_election.h"

#include <optional>
#include <random>
#include <string>

#include "common/log.h"
#include "common/time_format.h"
#include "common/metrics.h"

namespace bulkhead::kube {
namespace {

metrics::Gauge& leaderGauge() {
  static auto& g = metrics::defaultRegistry()
                       .gauge("bulkhead_leader", "1 while this replica holds the leader Lease.", {})
                       .labels({});
  return g;
}

}  // namespace

LeaderElector::LeaderElector(ClientPtr client, ClockPtr clock, LeaderElectionConfig config)
    : client_(std::move(client)), clock_(std::move(clock)), config_(std::move(config)) {
  leaderGauge().set(0);
}

void LeaderElector::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
}

bool LeaderElector::sleepFor(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  auto deadline = clock_->monotonicNow() + d;
  while (!stopping_ && clock_->monotonicNow() < deadline) {
    clock_->waitUntil(lock, cv_, deadline);
  }
  return !stopping_;
}

Status LeaderElector::tryAcquireOrRenew() {
  const ResourceType& leases = resources::kLeases;
  std::string now = formatMicroTime(clock_->now());
  int leaseSeconds = static_cast<int>(
      std::chrono::duration_cast<std::chrono::seconds>(config_.leaseDuration).count());
  auto current = client_->get(leases, config_.leaseNamespace, config_.leaseName);
  if (!current.ok()) {
    if (current.status().code() != StatusCode::kNotFound) {
      return current.status();
    }
    json lease = {{"apiVersion", "coordination.k8s.io/v1"},
                  {"kind", "Lease"},
                  {"metadata", {{"name", config_.leaseName}, {"namespace", config_.leaseNamespace}}},
                  {"spec",
                   {{"holderIdentity", config_.identity},
                    {"leaseDurationSeconds", leaseSeconds},
                    {"acquireTime", now},
                    {"renewTime", now},
                    {"leaseTransitions", 0}}}};
    RETURN_IF_ERROR(client_->create(leases, lease).status());
    observedHolder_ = config_.identity;
    observedRenewTime_ = now;
    observedAt_ = clock_->monotonicNow();
    return okStatus();
  }
  json lease = std::move(*current);
  json& spec = lease["spec"];
  std::string holder = spec.value("holderIdentity", "");
  std::string renewTime = spec.value("renewTime", "");
  auto duration = std::chrono::seconds(spec.value("leaseDurationSeconds", leaseSeconds));
  if (holder != observedHolder_ || renewTime != observedRenewTime_) {
    observedHolder_ = holder;
    observedRenewTime_ = renewTime;
    // Expiry counts from when this replica saw the record change, so clock skew between replicas
    // cannot make it expire early. The record's own renewTime may credit up to one retry period
    // of the polling delay (never more, so a skewed leader still renews long before expiry).
    auto age = std::chrono::duration_cast<std::chrono::milliseconds>(
        clock_->now() - parseRfc3339(renewTime).value_or(clock_->now()));
    observedAt_ = clock_->monotonicNow() - std::clamp(age, std::chrono::milliseconds(0), config_.retryPeriod);
  }
  observedDuration_ = duration;
  bool held = !holder.empty() && holder != config_.identity;
  if (held && clock_->monotonicNow() < observedAt_ + duration) {
    return conflictError("lease held by " + holder);
  }
  if (holder != config_.identity) {
    spec["acquireTime"] = now;
    spec["leaseTransitions"] = spec.value("leaseTransitions", 0) + 1;
  }
  spec["holderIdentity"] = config_.identity;
  spec["leaseDurationSeconds"] = leaseSeconds;
  spec["renewTime"] = now;
  // The update carries the resourceVersion we read: a concurrent writer makes it fail.
  ASSIGN_OR_RETURN(json updated, client_->update(leases, lease));
  observedHolder_ = config_.identity;
  observedRenewTime_ = now;
  observedAt_ = clock_->monotonicNow();
  return okStatus();
}

Status LeaderElector::release() {
  auto current = client_->get(resources::kLeases, config_.leaseNamespace, config_.leaseName);
  if (!current.ok()) {
    return current.status();
  }
  json lease = std::move(*current);
  if (lease["spec"].value("holderIdentity", "") != config_.identity) {
    return okStatus();
  }
  lease["spec"]["holderIdentity"] = "";
  lease["spec"]["leaseDurationSeconds"] = 1;
  lease["spec"]["renewTime"] = formatMicroTime(clock_->now());
  return client_->update(resources::kLeases, lease).status();
}

bool LeaderElector::acquire() {
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(1.0, 1.2);
  auto retry = [&] {
    return std::chrono::milliseconds(
        static_cast<int64_t>(config_.retryPeriod.count() * jitter(rng)));
  };
  log::info("campaigning for leadership", {{"lease", config_.leaseNamespace + "/" +
                                                         config_.leaseName},
                                           {"identity", config_.identity}});
  while (!stopping_) {
    Status s = tryAcquireOrRenew();
    if (s.ok()) {
      return !stopping_;
    }
    if (s.code() != StatusCode::kConflict) {
      log::warn("acquiring the leader lease failed", {{"error", s.toString()}});
    }
    // Retry at the next period, or right when the current holder's Lease runs out if sooner.
    auto wait = retry();
    if (!observedHolder_.empty() && observedHolder_ != config_.identity) {
      auto untilExpiry = std::chrono::duration_cast<std::chrono::milliseconds>(
          observedAt_ + observedDuration_ - clock_->monotonicNow());
      wait = std::clamp(untilExpiry + std::chrono::milliseconds(20), std::chrono::milliseconds(20),
                        wait);
    }
    if (!sleepFor(wait)) {
      return false;
    }
  }
  return false;
}

bool LeaderElector::renewUntilLost() {
  MonoTime lastRenew = clock_->monotonicNow();
  while (sleepFor(config_.retryPeriod)) {
    Status s = tryAcquireOrRenew();
    if (s.ok()) {
      lastRenew = clock_->monotonicNow();
      continue;
    }
    log::warn("renewing the leader lease failed", {{"error", s.toString()}});
    bool takenOver = !observedHolder_.empty() && observedHolder_ != config_.identity;
    if (takenOver || clock_->monotonicNow() - lastRenew >= config_.renewDeadline) {
      return true;
    }
  }
  return false;
}

void LeaderElector::run(const std::function<void()>& onStartedLeading,
                        const std::function<void()>& onStoppedLeading) {
  while (acquire()) {
    leaderGauge().set(1);
    log::info("became leader", {{"identity", config_.identity}});
    onStartedLeading();
    const bool lost = renewUntilLost();
    leaderGauge().set(0);
    onStoppedLeading();
    if (!lost) {
      // stop() while leading: hand over at once instead of making the others wait out the lease.
      if (Status s = release(); !s.ok()) {
        log::warn("releasing the leader lease failed", {{"error", s.toString()}});
      } else {
        log::info("released the leader lease", {{"identity", config_.identity}});
      }
      return;
    }
  }
}

}  // namespace bulkhead::kube
