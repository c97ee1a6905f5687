#include "kube/informer.h"

#include <malloc.h>

#include <random>
#include <unordered_set>

#include "common/log.h"
#include "common/metrics.h"

namespace bulkhead::kube {
namespace {

std::string resourceVersionOf(const nlohmann::json& o) {
  auto md = o.is_object() ? o.find("metadata") : o.end();
  if (md == o.end() || !md->is_object()) {
    return "";
  }
  auto rv = md->find("resourceVersion");
  return rv != md->end() && rv->is_string() ? rv->get<std::string>() : "";
}

}  // namespace

metrics::Counter& watchRestarts(const std::string& resource) {
  static auto& family = metrics::defaultRegistry().counter(
      "bulkhead_watch_restarts_total",
      "Watch streams re-established after an error, a 410 Gone or a broken connection.",
      {"resource"});
  return family.labels({resource});
}

void dropUnreadFields(nlohmann::json& object) {
  auto md = object.find("metadata");
  if (md == object.end() || !md->is_object()) {
    return;
  }
  md->erase("managedFields");
  if (auto ann = md->find("annotations"); ann != md->end() && ann->is_object()) {
    ann->erase("kubectl.kubernetes.io/last-applied-configuration");
    if (ann->empty()) {
      md->erase(ann);
    }
  }
}

Informer::Informer(ClientPtr client, ClockPtr clock, InformerOptions options)
    : client_(std::move(client)), clock_(std::move(clock)), options_(std::move(options)) {
  if (!options_.transform) {
    options_.transform = dropUnreadFields;
  }
}

Informer::~Informer() { stop(); }

int Informer::addEventHandlers(EventHandlers handlers) {
  std::lock_guard lock(handlersMu_);
  const int id = nextHandlerId_++;
  if (handlers.onAdd) {
    for (const auto& o : store_.list()) {
      try {
        handlers.onAdd(*o);
      } catch (const std::exception& e) {
        log::error("event handler failed",
                   {{"resource", options_.type.resource}, {"error", e.what()}});
      }
    }
  }
  handlers_.emplace_back(id, std::move(handlers));
  return id;
}

void Informer::removeEventHandlers(int id) {
  std::lock_guard lock(handlersMu_);
  std::erase_if(handlers_, [id](const auto& h) { return h.first == id; });
}

void Informer::start() {
  thread_ = std::thread([this] { run(); });
}

void Informer::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  // Ends a blocked list, a watch waiting for headers, and an open stream alike.
  cancel_->cancel();
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

bool Informer::waitForSync(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!synced_ && !stopping_ && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return synced_;
}

std::string Informer::lastResourceVersion() const {
  std::lock_guard lock(mu_);
  return lastRv_;
}

bool Informer::sleepFor(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  auto deadline = clock_->monotonicNow() + d;
  while (!stopping_ && clock_->monotonicNow() < deadline) {
    clock_->waitUntil(lock, cv_, deadline);
  }
  return !stopping_;
}

std::chrono::milliseconds Informer::nextBackoff() {
  backoff_ =
      backoff_.count() == 0 ? options_.initialBackoff : std::min(backoff_ * 2, options_.maxBackoff);
  // Jitter of up to +25% so that many informers do not reconnect in lockstep.
  static thread_local std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(1.0, 1.25);
  return std::chrono::milliseconds(static_cast<int64_t>(backoff_.count() * jitter(rng)));
}

void Informer::countRestart(const std::string& why, const Status& status) {
  watchRestarts(options_.type.resource).inc();
  log::warn("watch restarting", {{"resource", options_.type.resource},
                                 {"namespace", options_.ns},
                                 {"reason", why},
                                 {"error", status.toString()}});
}

void Informer::run() {
  while (!stopping_) {
    auto rv = listAndReplace();
    if (!rv.ok()) {
      if (stopping_) {
        return;
      }
      countRestart("list failed", rv.status());
      sleepFor(nextBackoff());
      continue;
    }
    std::string current = *rv;
    while (!stopping_) {
      Status s = watchOnce(current);
      if (stopping_) {
        return;
      }
      if (s.ok()) {
        continue;  // the server ended the stream after its timeout: resume
      }
      if (s.code() == StatusCode::kGone) {
        countRestart("resourceVersion too old; relisting", s);
        break;
      }
      countRestart("watch failed", s);
      if (!sleepFor(nextBackoff())) {
        return;
      }
      if (s.code() == StatusCode::kInternal) {
        break;  // an ERROR event other than Gone: start over from a fresh list
      }
    }
  }
}

StatusOr<std::string> Informer::listAndReplace() {
  ListOptions opts;
  opts.labelSelector = options_.labelSelector;
  opts.fieldSelector = options_.fieldSelector;
  opts.limit = options_.pageSize;
  opts.cancel = cancel_;
  std::unordered_set<std::string> seen;
  std::string rv;
  // Page by page, so that at most one page of raw JSON is held at a time.
  do {
    ASSIGN_OR_RETURN(ListResult page, client_->list(options_.type, options_.ns, opts));
    for (auto& item : page.items) {
      std::string key = objectKey(item);
      if (key.empty()) {
        log::warn("list returned an object without a name; skipped",
                  {{"resource", options_.type.resource}});
        continue;
      }
      seen.insert(key);
      apply(WatchEvent::Type::kAdded, std::move(item));
    }
    rv = page.resourceVersion;
    opts.continueToken = page.continueToken;
  } while (!opts.continueToken.empty() && !stopping_);
  std::lock_guard lock(handlersMu_);
  for (const auto& key : store_.keys()) {
    if (!seen.contains(key)) {
      if (ObjectPtr old = store_.erase(key)) {
        notify([&](const EventHandlers& h) {
          if (h.onDelete) {
            h.onDelete(*old);
          }
        });
      }
    }
  }
  {
    std::lock_guard rvLock(mu_);
    lastRv_ = rv;
  }
  synced_ = true;
  // The pages were parsed whole, and the cached objects (transformed, much smaller) were
  // allocated among them: hand the pages' freed memory back to the system, or a large first list
  // stays in the process's RSS for good.
  malloc_trim(0);
  return rv;
}

void Informer::notify(const std::function<void(const EventHandlers&)>& call) {
  for (const auto& [id, h] : handlers_) {
    try {
      call(h);
    } catch (const std::exception& e) {
      // A handler choking on a malformed object must not take the informer down with it.
      log::error("event handler failed",
                 {{"resource", options_.type.resource}, {"error", e.what()}});
    }
  }
}

void Informer::apply(WatchEvent::Type type, nlohmann::json&& object) {
  options_.transform(object);
  std::lock_guard lock(handlersMu_);
  if (type == WatchEvent::Type::kDeleted) {
    ObjectPtr old = store_.erase(objectKey(object));
    notify([&](const EventHandlers& h) {
      if (h.onDelete) {
        h.onDelete(old ? *old : object);
      }
    });
    return;
  }
  ObjectPtr old = store_.upsert(object);
  notify([&](const EventHandlers& h) {
    if (old) {
      if (h.onUpdate && resourceVersionOf(*old) != resourceVersionOf(object)) {
        h.onUpdate(*old, object);
      }
    } else if (h.onAdd) {
      h.onAdd(object);
    }
  });
}

Status Informer::watchOnce(std::string& rv) {
  WatchOptions wo;
  wo.labelSelector = options_.labelSelector;
  wo.fieldSelector = options_.fieldSelector;
  wo.resourceVersion = rv;
  wo.timeout = options_.watchTimeout;
  wo.cancel = cancel_;
  ASSIGN_OR_RETURN(WatchStreamPtr stream, client_->watch(options_.type, options_.ns, wo));
  while (true) {
    auto next = stream->next();
    if (!next.ok()) {
      return next.status();
    }
    if (!next->has_value()) {
      return okStatus();
    }
    WatchEvent& event = **next;
    if (event.type == WatchEvent::Type::kError) {
      Status s = watchErrorStatus(event.object);
      // Anything but Gone is reported as Internal so run() relists after a backoff.
      return s.code() == StatusCode::kGone ? s : internalError(s.message());
    }
    std::string eventRv = resourceVersionOf(event.object);
    if (event.type != WatchEvent::Type::kBookmark) {
      if (objectKey(event.object).empty()) {
        return invalidError("watch " + options_.type.resource + ": " +
                            std::string(watchEventTypeName(event.type)) +
                            " event for an object without metadata.name");
      }
      apply(event.type, std::move(event.object));
    }
    if (!eventRv.empty()) {
      rv = eventRv;
      std::lock_guard lock(mu_);
      lastRv_ = rv;
    }
    backoff_ = std::chrono::milliseconds(0);  // a healthy stream resets the backoff
  }
}

}  // namespace bulkhead::kube
