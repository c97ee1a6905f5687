#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"

namespace bulkhead::webhooks {

// One HTTP request as the handler sees it. The strings belong to the connection and are reused
// for its next request: a handler that wants to keep any of them must copy it.
struct HttpRequest {
  std::string method;       // as sent, e.g. "POST"
  std::string target;       // path and query, as sent
  std::string contentType;  // the Content-Type header's value, empty when absent
  std::string body;
};

struct HttpResponse {
  int status = 200;  // 200-599 (1xx is not a final status and becomes a 500)
  std::string contentType = "application/json";
  std::string body;
};

// Answers one request. Called on the server's pool threads, for different connections at the same
// time, so it must be thread-safe; it should be quick (a slow handler holds one pool thread). An
// exception it throws becomes a 500 and is logged; it never reaches the connection or the server.
using Handler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpsServerOptions {
  // "host:port", ":port" (all IPv4 interfaces) or "[v6addr]:port"; port 0 picks a free port.
  std::string bindAddress = ":8443";
  // PEM files: the certificate chain (leaf first) and its private key. Reloaded when they change.
  std::string certFile;
  std::string keyFile;
  // "1.3" or "1.2": the oldest TLS version accepted. Nothing older is ever accepted.
  std::string tlsMinVersion = "1.3";
  // A larger body is answered 413 and the connection closed (3 MiB, like the API server's limit).
  size_t maxBodyBytes = 3 << 20;
  // Request line plus header fields; larger is answered 431 and the connection closed.
  size_t maxHeaderBytes = 16 << 10;
  // The whole request, from its first byte (or from accept, TLS handshake included, for a
  // connection's first request) to its last, must arrive within this; else 408 and close. Writing
  // a response gets the same allowance.
  std::chrono::milliseconds readTimeout{10'000};
  // A keep-alive connection with no request in progress is closed after this long.
  std::chrono::milliseconds idleTimeout{60'000};
  // Connections (in any state) beyond this many are closed as soon as they are accepted.
  size_t maxConnections = 1024;
  // Threads running the event loop and the handler; 0 means std::thread::hardware_concurrency().
  int threads = 0;
  // How often the certificate and key files are checked (inode, size, mtime) for a change;
  // zero or less turns reloading off.
  std::chrono::milliseconds certCheckInterval{2'000};
};

// The admission webhook's HTTPS/1.1 server: TLS 1.3 (or 1.2 by option) with modern, server-
// preferred ciphers; HTTP/1.1 only (ALPN offers nothing but "http/1.1"), keep-alive and
// pipelining; limits, timeouts and a connection cap that keep memory flat whatever clients do.
// A TLS handshake that fails (an old protocol version, plain HTTP on the TLS port) only closes
// that connection and is logged at debug.
//
// The certificate and key are reloaded when their files change: the new pair goes into a new TLS
// context used by connections accepted from then on, while open connections keep theirs. A pair
// that does not load (unreadable, malformed, a key that does not match) is logged and the
// previous one kept.
//
// Boost.Asio, Boost.Beast and OpenSSL stay behind the pimpl. All methods are thread-safe.
class HttpsServer {
 public:
  // Loads the certificate, binds, listens and starts the threads. Invalid options, a pair that
  // does not load or an address that cannot be bound is an Invalid error.
  static StatusOr<std::unique_ptr<HttpsServer>> start(HttpsServerOptions options, Handler handler);
  // Stops with no drain time if stop() was not called.
  ~HttpsServer();
  HttpsServer(const HttpsServer&) = delete;
  HttpsServer& operator=(const HttpsServer&) = delete;

  // The port bound (useful with port 0). Stays valid after stop().
  int port() const;

  // From now on every response carries "Connection: close" and ends its connection; accepting and
  // serving go on. Called on SIGTERM, before stop(): while the Service stops routing to this
  // replica, clients leave its kept-alive connections after an answer, instead of sending a
  // request just as stop() closes an idle one (which they see as EOF, a failed admission).
  void closeConnectionsAfterResponses();

  // Stops accepting, closes idle keep-alive connections, lets requests in progress finish and
  // their responses go out (each with "Connection: close") for up to `drain`, then closes what is
  // left and joins the threads. A handler call already running is waited for even past `drain`
  // (it cannot be interrupted). Idempotent; must not be called from the handler.
  void stop(std::chrono::milliseconds drain);

  // 0 for the pair loaded by start(); one more for each successful reload.
  uint64_t certificateGeneration() const;

 private:
  class Impl;  // asio, beast and OpenSSL, kept out of this header
  explicit HttpsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulkhead::webhooks
