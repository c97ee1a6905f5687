#pragma once

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "kube/cancellation.h"
#include "kube/resource.h"
#include "kube/watch.h"

namespace bulkhead::kube {

using nlohmann::json;

struct ListOptions {
  std::string labelSelector;
  std::string fieldSelector;
  int64_t limit = 0;  // page size; 0 = no paging
  std::string continueToken;
  std::string resourceVersion;  // "" = most recent (quorum read)
  CancellationPtr cancel;       // optional: aborts the request
};

struct ListResult {
  std::vector<json> items;
  std::string resourceVersion;
  std::string continueToken;
};

struct WatchOptions {
  std::string labelSelector;
  std::string fieldSelector;
  std::string resourceVersion;
  bool allowBookmarks = true;
  std::chrono::seconds timeout{300};  // the server ends the stream after this
  CancellationPtr cancel;             // optional: aborts the request and, later, the stream
};

struct DeleteOptions {
  std::optional<std::string> preconditionUid;
  std::optional<std::string> preconditionResourceVersion;
  std::string propagationPolicy;  // "", "Background", "Foreground", "Orphan"
};

// An open watch stream. Not thread-safe except cancel(), which may be called from any thread to
// end a blocked next().
class WatchStream {
 public:
  virtual ~WatchStream() = default;
  // The next event; nullopt when the server ended the stream normally (timeout). A broken
  // connection is Unavailable; a corrupt stream is Invalid (the caller reconnects).
  virtual StatusOr<std::optional<WatchEvent>> next() = 0;
  virtual void cancel() = 0;
};
using WatchStreamPtr = std::unique_ptr<WatchStream>;

// A Kubernetes REST client. Every method is thread-safe and blocking. Errors carry the API
// server's Status (reason and message) mapped to our codes. Client-side QPS/burst limits apply to
// every request but watches.
class Client {
 public:
  virtual ~Client() = default;

  virtual StatusOr<json> get(const ResourceType& type, const std::string& ns,
                             const std::string& name) = 0;
  // One page. Use listAll() to follow continue tokens.
  virtual StatusOr<ListResult> list(const ResourceType& type, const std::string& ns,
                                    const ListOptions& options) = 0;
  virtual StatusOr<json> create(const ResourceType& type, const json& object) = 0;
  // PUT; the object's metadata.resourceVersion is the optimistic-concurrency precondition.
  virtual StatusOr<json> update(const ResourceType& type, const json& object) = 0;
  virtual StatusOr<json> updateStatus(const ResourceType& type, const json& object) = 0;
  virtual Status remove(const ResourceType& type, const std::string& ns, const std::string& name,
                        const DeleteOptions& options = {}) = 0;
  // JSON merge patch (RFC 7386), optionally of a subresource ("status").
  virtual StatusOr<json> mergePatch(const ResourceType& type, const std::string& ns,
                                    const std::string& name, const json& patch,
                                    const std::string& subresource = "") = 0;
  // Server-side apply of `object` (which carries apiVersion, kind and metadata.name/namespace)
  // under `fieldManager`, forcing ownership of conflicting fields when `force`.
  virtual StatusOr<json> apply(const ResourceType& type, const json& object,
                               const std::string& fieldManager, bool force = true,
                               const std::string& subresource = "") = 0;
  virtual StatusOr<WatchStreamPtr> watch(const ResourceType& type, const std::string& ns,
                                         const WatchOptions& options) = 0;
  // Discovery: is this group/version/resource served right now? (Not cached.)
  virtual StatusOr<bool> isServed(const std::string& group, const std::string& version,
                                  const std::string& resource) = 0;
  // A raw request, for what the typed calls do not cover; returns the parsed JSON body.
  virtual StatusOr<json> raw(const std::string& method, const std::string& pathAndQuery,
                             const std::string& body = "",
                             const std::string& contentType = "application/json") = 0;
};
using ClientPtr = std::shared_ptr<Client>;

// Follows continue tokens until the whole collection is read.
StatusOr<ListResult> listAll(Client& client, const ResourceType& type, const std::string& ns,
                             ListOptions options);

}  // namespace bulkhead::kube
