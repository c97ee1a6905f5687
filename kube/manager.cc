#include "kube/manager.h"

#include "common/log.h"

namespace bulkhead::kube {

Manager::Manager(ClientPtr client, ClockPtr clock, ManagerOptions options)
    : client_(client),
      clock_(clock),
      options_(std::move(options)),
      cache_(client, clock),
      discovery_(client, clock, options_.discoveryInterval) {}

Manager::~Manager() { stop(); }

void Manager::addLeaderRunnable(std::function<std::unique_ptr<LeaderRunnable>()> make) {
  factories_.push_back(std::move(make));
}

void Manager::start() {
  discovery_.start();
  if (!options_.leaderElection) {
    startLeading();
    return;
  }
  elector_ = std::make_unique<LeaderElector>(client_, clock_, *options_.leaderElection);
  electing_ = std::thread([this] {
    elector_->run([this] { startLeading(); },
                  [this] {
                    stopLeading();
                    std::lock_guard lock(mu_);
                    if (!stopped_) {
                      log::warn(options_.lostLeadershipMessage,
                                {{"identity", options_.leaderElection->identity}});
                    }
                  });
  });
}

void Manager::startLeading() {
  std::lock_guard lock(mu_);
  if (stopped_) {
    return;
  }
  for (const auto& make : factories_) {
    auto runnable = make();
    auto* r = runnable.get();
    running_.emplace_back(std::move(runnable), std::thread([r] { r->start(); }));
  }
}

// Last started, first stopped: the controllers before what they depend on.
void Manager::stopLeading() {
  std::vector<std::pair<std::unique_ptr<LeaderRunnable>, std::thread>> running;
  {
    std::lock_guard lock(mu_);
    running.swap(running_);
  }
  for (auto it = running.rbegin(); it != running.rend(); ++it) {
    it->first->stop();
    it->second.join();
  }
  if (!running.empty()) {
    log::info("controllers stopped");
  }
}

void Manager::resign() {
  {
    std::lock_guard lock(mu_);
    if (resigned_) {
      return;
    }
    resigned_ = true;
  }
  if (elector_) {
    elector_->stop();  // onStoppedLeading stops the runnables before the Lease is released
    electing_.join();
  }
  stopLeading();
}

void Manager::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopped_) {
      return;
    }
    stopped_ = true;
  }
  resign();
  discovery_.stop();
  cache_.stop();
}

}  // namespace bulkhead::kube
