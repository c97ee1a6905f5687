// The Kubernetes REST client on cpprestsdk. The only file of the project that includes cpprestsdk.
#include "kube/client_impl.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>

#include <boost/asio/ssl.hpp>
#include <cpprest/http_client.h>
#include <pplx/threadpool.h>
#include <deque>
#include <mutex>
#include <thread>

#include "common/log.h"
#include "kube/api_status.h"
#include "kube/rate_limiter.h"

namespace bulkhead::kube {
namespace {

namespace http = web::http;
using http::client::http_client;
using http::client::http_client_config;

constexpr int kMaxRetriesOn429 = 5;
constexpr int kMaxTransportRetries = 3;
constexpr auto kMaxRetryAfter = std::chrono::seconds(30);

std::string encode(const std::string& s) { return web::uri::encode_data_string(s); }

void addParam(std::string& query, const std::string& key, const std::string& value) {
  if (value.empty()) {
    return;
  }
  query += query.empty() ? '?' : '&';
  query += key + "=" + encode(value);
}

// A string member of `obj`, "" when absent or not a string (the server's JSON is not trusted).
std::string stringField(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string metadataField(const json& object, const char* key) {
  auto md = object.is_object() ? object.find("metadata") : object.end();
  return md != object.end() && md->is_object() ? stringField(*md, key) : "";
}

std::string objectNamespace(const json& object) { return metadataField(object, "namespace"); }
std::string objectName(const json& object) { return metadataField(object, "name"); }

struct Response {
  int code = 0;
  std::string body;
};

// Loads the cluster CA as the only trusted roots (not the system's), and the client identity.
void configureTls(boost::asio::ssl::context& ctx, const RestConfig& config) {
  if (!config.caPem.empty()) {
    SSL_CTX_set_cert_store(ctx.native_handle(), X509_STORE_new());
    ctx.add_certificate_authority(boost::asio::buffer(config.caPem));
  }
  if (!config.clientCertPem.empty()) {
    ctx.use_certificate_chain(boost::asio::buffer(config.clientCertPem));
    ctx.use_private_key(boost::asio::buffer(config.clientKeyPem), boost::asio::ssl::context::pem);
  }
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
}

}  // namespace

void skipDefaultVerifyPaths(const RestConfig& config) {
  if (config.caPem.empty() || config.insecureSkipTlsVerify) {
    return;  // the system's roots are the ones in use
  }
  // A missing file and directory: OpenSSL skips them and clears the error. Whatever the
  // environment said (SSL_CERT_FILE, SSL_CERT_DIR) was only ever loaded to be discarded.
  setenv(X509_get_default_cert_file_env(), "/nonexistent/bulkhead-uses-the-cluster-ca", 1);
  setenv(X509_get_default_cert_dir_env(), "/nonexistent/bulkhead-uses-the-cluster-ca", 1);
}

namespace {

http_client_config makeClientConfig(const RestConfig& config, std::chrono::seconds timeout) {
  http_client_config c;
  c.set_timeout(timeout);
  c.set_validate_certificates(!config.insecureSkipTlsVerify);
  // cpprestsdk copies the client configuration, this callback included, for every request:
  // share the credentials instead of copying their PEM text each time.
  auto shared = std::make_shared<const RestConfig>(config);
  c.set_ssl_context_callback(
      [shared](boost::asio::ssl::context& ctx) { configureTls(ctx, *shared); });
  return c;
}

class WatchStreamImpl : public WatchStream {
 public:
  WatchStreamImpl(http::http_response response, pplx::cancellation_token_source cts,
                  std::string what, CancellationPtr external, int hook)
      : response_(std::move(response)),
        cts_(std::move(cts)),
        what_(std::move(what)),
        external_(std::move(external)),
        hook_(hook) {}
  ~WatchStreamImpl() override {
    if (external_) {
      external_->remove(hook_);
    }
    cancel();
  }

  StatusOr<std::optional<WatchEvent>> next() override {
    while (lines_.empty()) {
      if (eof_) {
        if (splitter_.pending() > 0) {
          return unavailableError(what_ + ": stream ended in the middle of an event");
        }
        return std::optional<WatchEvent>();
      }
      RETURN_IF_ERROR(readChunk());
    }
    std::string line = std::move(lines_.front());
    lines_.pop_front();
    auto event = parseWatchEvent(line);
    if (!event.ok()) {
      return event.status().withContext(what_);
    }
    return std::optional<WatchEvent>(std::move(*event));
  }

  void cancel() override { cts_.cancel(); }

 private:
  Status readChunk() {
    try {
      auto buf = response_.body().streambuf();
      // getn(1) completes as soon as any byte is there; then take whatever else has arrived.
      size_t n = buf.getn(chunk_, 1).get();
      if (n == 0) {
        eof_ = true;
        return okStatus();
      }
      size_t avail = buf.in_avail();
      if (avail > 0) {
        n += buf.getn(chunk_ + 1, std::min(avail, sizeof(chunk_) - 1)).get();
      }
      return splitter_.feed(
          std::string_view(reinterpret_cast<const char*>(chunk_), n),
          [this](std::string_view line) { lines_.emplace_back(line); });
    } catch (const std::exception& e) {
      eof_ = true;
      if (cts_.get_token().is_canceled()) {
        return cancelledError(what_ + ": cancelled");
      }
      return unavailableError(what_ + ": " + e.what());
    }
  }

  http::http_response response_;
  pplx::cancellation_token_source cts_;
  std::string what_;
  CancellationPtr external_;  // the caller's, which can also end this stream
  int hook_;
  LineSplitter splitter_;
  std::deque<std::string> lines_;
  bool eof_ = false;
  unsigned char chunk_[64 * 1024];
};

}  // namespace

class ClientImpl::Impl {
 public:
  Impl(RestConfig config, ClockPtr clock)
      : config_(std::move(config)),
        clock_(std::move(clock)),
        client_(config_.server, makeClientConfig(config_, std::chrono::seconds(60))),
        watchClient_(config_.server, makeClientConfig(config_, std::chrono::seconds(360))),
        limiter_(config_.qps, config_.burst, clock_) {}

  StatusOr<http::http_request> makeRequest(const std::string& method,
                                           const std::string& pathAndQuery,
                                           const std::string& body,
                                           const std::string& contentType) {
    http::http_request req(utility::conversions::to_string_t(method));
    req.set_request_uri(pathAndQuery);
    req.headers().add("Accept", "application/json");
    req.headers().add("User-Agent", config_.userAgent);
    ASSIGN_OR_RETURN(std::string token, currentBearerToken(config_));
    if (!token.empty()) {
      req.headers().add("Authorization", "Bearer " + token);
    }
    if (!body.empty()) {
      req.set_body(body, contentType);
    }
    return req;
  }

  StatusOr<Response> send(const std::string& method, const std::string& pathAndQuery,
                          const std::string& body, const std::string& contentType,
                          const CancellationPtr& cancel = nullptr) {
    pplx::cancellation_token_source cts;
    int hook = cancel ? cancel->onCancel([cts] { cts.cancel(); }) : 0;
    struct Unhook {
      const CancellationPtr& c;
      int id;
      ~Unhook() {
        if (c) {
          c->remove(id);
        }
      }
    } unhook{cancel, hook};
    int transportRetries = 0;
    for (int attempt = 0;; ++attempt) {
      limiter_.acquire();
      ASSIGN_OR_RETURN(auto req, makeRequest(method, pathAndQuery, body, contentType));
      Response out;
      std::chrono::seconds retryAfter{0};
      try {
        http::http_response res = client_.request(req, cts.get_token()).get();
        out.code = res.status_code();
        out.body = res.extract_utf8string(true).get();
        if (out.code == 429 && res.headers().has("Retry-After")) {
          retryAfter = std::chrono::seconds(std::atoi(res.headers()["Retry-After"].c_str()));
        }
      } catch (const std::exception& e) {
        if (cts.get_token().is_canceled()) {
          return cancelledError(method + " " + pathAndQuery + ": cancelled");
        }
        // Pooled keep-alive connections that the server has since closed fail on first use
        // (after an API server restart, every pooled one does); retrying on a fresh connection
        // is what every HTTP client does. A duplicate create would come back AlreadyExists,
        // never as a second object.
        if (transportRetries < kMaxTransportRetries) {
          ++transportRetries;
          --attempt;
          std::this_thread::sleep_for(std::chrono::milliseconds(20 * transportRetries));
          continue;
        }
        return unavailableError(method + " " + pathAndQuery + ": " + e.what());
      }
      if (out.code != 429 || attempt >= kMaxRetriesOn429) {
        return out;
      }
      retryAfter = std::clamp(retryAfter, std::chrono::seconds(1), kMaxRetryAfter);
      log::warn("API server asked to retry later", {{"method", method},
                                                    {"path", pathAndQuery},
                                                    {"retryAfterSeconds", retryAfter.count()},
                                                    {"attempt", attempt + 1}});
      auto until = std::chrono::steady_clock::now() + retryAfter;
      while (std::chrono::steady_clock::now() < until) {
        if (cts.get_token().is_canceled()) {
          return cancelledError(method + " " + pathAndQuery + ": cancelled");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }

  StatusOr<json> call(const std::string& method, const std::string& pathAndQuery,
                      const std::string& body = "",
                      const std::string& contentType = "application/json",
                      const CancellationPtr& cancel = nullptr) {
    ASSIGN_OR_RETURN(Response res, send(method, pathAndQuery, body, contentType, cancel));
    if (res.code < 200 || res.code >= 300) {
      return statusFromApi(res.code, res.body);
    }
    if (res.body.empty()) {
      return json();
    }
    json doc = json::parse(res.body, nullptr, false);
    if (doc.is_discarded()) {
      return internalError(method + " " + pathAndQuery + ": response is not JSON");
    }
    return doc;
  }

  StatusOr<WatchStreamPtr> watch(const ResourceType& type, const std::string& ns,
                                 const WatchOptions& options) {
    std::string query;
    addParam(query, "watch", "true");
    addParam(query, "labelSelector", options.labelSelector);
    addParam(query, "fieldSelector", options.fieldSelector);
    addParam(query, "resourceVersion", options.resourceVersion);
    addParam(query, "allowWatchBookmarks", options.allowBookmarks ? "true" : "");
    addParam(query, "timeoutSeconds", std::to_string(options.timeout.count()));
    std::string path = type.path(ns) + query;
    ASSIGN_OR_RETURN(auto req, makeRequest("GET", path, "", ""));
    pplx::cancellation_token_source cts;
    // The hook lives as long as the stream: cancelling later ends the stream too.
    int hook = options.cancel ? options.cancel->onCancel([cts] { cts.cancel(); }) : 0;
    try {
      http::http_response res = watchClient_.request(req, cts.get_token()).get();
      if (res.status_code() != 200) {
        if (options.cancel) {
          options.cancel->remove(hook);
        }
        std::string body = res.extract_utf8string(true).get();
        return statusFromApi(res.status_code(), body);
      }
      return WatchStreamPtr(std::make_unique<WatchStreamImpl>(
          std::move(res), std::move(cts), "watch " + path, options.cancel, hook));
    } catch (const std::exception& e) {
      if (options.cancel) {
        options.cancel->remove(hook);
      }
      if (cts.get_token().is_canceled()) {
        return cancelledError("watch " + path + ": cancelled");
      }
      return unavailableError("watch " + path + ": " + e.what());
    }
  }

  RestConfig config_;
  ClockPtr clock_;
  http_client client_;
  http_client watchClient_;
  TokenBucket limiter_;
};

StatusOr<std::shared_ptr<ClientImpl>> ClientImpl::create(RestConfig config, ClockPtr clock) {
  static std::once_flag poolOnce;
  std::call_once(poolOnce, [] {
    try {
      // One I/O thread. cpprestsdk runs every step of a request (write, status line, headers,
      // body, each continuation) as a separate handler on this pool; with several threads, each
      // step wakes another one and they contend for the pool's lock. Converging 1,000 namespaces
      // made 234,000 futex calls and 110,000 context switches with 4 threads, 56,000 and 44,000
      // with one. Callers block on their own threads, never on the pool's, so one cannot
      // deadlock it.
      crossplat::threadpool::initialize_with_threads(1);
    } catch (const std::exception&) {
      // Already initialised by an earlier user of the library: keep that pool.
    }
  });
  if (config.server.empty()) {
    return invalidError("no API server address");
  }
  // Fail early on unreadable credentials instead of on the first request.
  try {
    boost::asio::ssl::context probe(boost::asio::ssl::context::tls_client);
    configureTls(probe, config);
  } catch (const std::exception& e) {
    return invalidError(std::string("loading TLS credentials from ") + config.source + ": " +
                        e.what());
  }
  try {
    return std::shared_ptr<ClientImpl>(
        new ClientImpl(std::make_unique<Impl>(std::move(config), std::move(clock))));
  } catch (const std::exception& e) {
    return invalidError(std::string("creating the API client: ") + e.what());
  }
}

ClientImpl::ClientImpl(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ClientImpl::~ClientImpl() = default;

const RestConfig& ClientImpl::config() const { return impl_->config_; }

StatusOr<json> ClientImpl::get(const ResourceType& type, const std::string& ns,
                               const std::string& name) {
  return impl_->call("GET", type.path(ns, name));
}

StatusOr<ListResult> ClientImpl::list(const ResourceType& type, const std::string& ns,
                                      const ListOptions& options) {
  std::string query;
  addParam(query, "labelSelector", options.labelSelector);
  addParam(query, "fieldSelector", options.fieldSelector);
  addParam(query, "limit", options.limit > 0 ? std::to_string(options.limit) : "");
  addParam(query, "continue", options.continueToken);
  addParam(query, "resourceVersion", options.resourceVersion);
  ASSIGN_OR_RETURN(json doc, impl_->call("GET", type.path(ns) + query, "", "application/json",
                                          options.cancel));
  ListResult result;
  auto md = doc.is_object() ? doc.find("metadata") : doc.end();
  if (!doc.is_object() || md == doc.end() || !md->is_object()) {
    return internalError("list " + type.path(ns) + ": response has no metadata");
  }
  result.resourceVersion = stringField(*md, "resourceVersion");
  result.continueToken = stringField(*md, "continue");
  if (auto items = doc.find("items"); items != doc.end() && items->is_array()) {
    result.items.reserve(items->size());
    for (auto& item : *items) {
      if (!item.is_object()) {
        return internalError("list " + type.path(ns) + ": an item is not an object");
      }
      // Lists omit apiVersion/kind on items; restore them so items look like watched objects.
      item["apiVersion"] = type.apiVersion();
      item["kind"] = type.kind;
      result.items.push_back(std::move(item));
    }
  }
  return result;
}

StatusOr<json> ClientImpl::create(const ResourceType& type, const json& object) {
  return impl_->call("POST", type.path(objectNamespace(object)), object.dump());
}

StatusOr<json> ClientImpl::update(const ResourceType& type, const json& object) {
  return impl_->call("PUT", type.path(objectNamespace(object), objectName(object)), object.dump());
}

StatusOr<json> ClientImpl::updateStatus(const ResourceType& type, const json& object) {
  return impl_->call("PUT", type.path(objectNamespace(object), objectName(object), "status"),
                     object.dump());
}

Status ClientImpl::remove(const ResourceType& type, const std::string& ns,
                          const std::string& name, const DeleteOptions& options) {
  json body = {{"apiVersion", "v1"}, {"kind", "DeleteOptions"}};
  if (options.preconditionUid) {
    body["preconditions"]["uid"] = *options.preconditionUid;
  }
  if (options.preconditionResourceVersion) {
    body["preconditions"]["resourceVersion"] = *options.preconditionResourceVersion;
  }
  if (!options.propagationPolicy.empty()) {
    body["propagationPolicy"] = options.propagationPolicy;
  }
  return impl_->call("DELETE", type.path(ns, name), body.dump()).status();
}

StatusOr<json> ClientImpl::mergePatch(const ResourceType& type, const std::string& ns,
                                      const std::string& name, const json& patch,
                                      const std::string& subresource) {
  return impl_->call("PATCH", type.path(ns, name, subresource), patch.dump(),
                     "application/merge-patch+json");
}

StatusOr<json> ClientImpl::apply(const ResourceType& type, const json& object,
                                 const std::string& fieldManager, bool force,
                                 const std::string& subresource) {
  std::string query;
  addParam(query, "fieldManager", fieldManager);
  addParam(query, "force", force ? "true" : "");
  // JSON is YAML: the apply-patch body may be either.
  return impl_->call("PATCH",
                     type.path(objectNamespace(object), objectName(object), subresource) + query,
                     object.dump(), "application/apply-patch+yaml");
}

StatusOr<WatchStreamPtr> ClientImpl::watch(const ResourceType& type, const std::string& ns,
                                           const WatchOptions& options) {
  return impl_->watch(type, ns, options);
}

StatusOr<bool> ClientImpl::isServed(const std::string& group, const std::string& version,
                                    const std::string& resource) {
  ResourceType gv{group, version, "", "", false};
  auto doc = impl_->call("GET", gv.groupVersionPath());
  if (!doc.ok()) {
    if (doc.status().code() == StatusCode::kNotFound) {
      return false;
    }
    return doc.status();
  }
  auto list = doc->is_object() ? doc->find("resources") : doc->end();
  if (list == doc->end() || !list->is_array()) {
    return false;
  }
  for (const auto& r : *list) {
    if (r.is_object() && stringField(r, "name") == resource) {
      return true;
    }
  }
  return false;
}

StatusOr<json> ClientImpl::raw(const std::string& method, const std::string& pathAndQuery,
                               const std::string& body, const std::string& contentType) {
  return impl_->call(method, pathAndQuery, body, contentType);
}

}  // namespace bulkhead::kube
