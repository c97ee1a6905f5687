#include "webhooks/https_server.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/status.hpp>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <list>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/metrics.h"
#include "webhooks/internal/bind_address.h"
#include "webhooks/internal/openssl_error.h"

namespace bulkhead::webhooks {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// Bytes asked of the TLS stream per read: one TLS record's worth.
constexpr size_t kReadChunk = 16 << 10;
// A request's strings and the response buffer keep up to this much capacity between requests;
// more (after a large body) is given back, so idle connections stay small.
constexpr size_t kRetainedCapacity = 64 << 10;
// The most a request body reserves before its bytes arrive.
constexpr size_t kReserveLimit = 64 << 10;
// How long a closing connection waits for the client to read the last response and hang up
// before it is cut (closing with unread input would reset the connection and could destroy the
// response in the client's receive buffer).
constexpr std::chrono::milliseconds kLinger{1000};
// After an accept error (out of file descriptors, say), wait this long before accepting again.
constexpr std::chrono::milliseconds kAcceptRetry{100};
// A cancelled read that has not completed after this long (the cancel raced with the TLS
// stream's own steps and missed) is settled by closing the connection.
constexpr std::chrono::milliseconds kCancelGrace{1000};
// Larger certificate or key files are refused.
constexpr std::streamsize kMaxPemBytes = 1 << 20;

// Mozilla "intermediate" TLS 1.2 suites (forward secret AEAD only) and every TLS 1.3 suite,
// strongest first; the server's order wins.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr const char* kTls13Suites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
constexpr const char* kGroups = "X25519:P-256:P-384";

// Counters for what the server itself does; the handler's own metrics are its business. Only
// per-connection and error paths touch them, never a successful request.
struct ServerMetrics {
  ServerMetrics()
      : connections(metrics::defaultRegistry()
                        .gauge("bulkhead_webhook_server_connections",
                               "Open connections to the admission webhook's HTTPS server.")
                        .unlabeled()),
        rejectedConnections(
            metrics::defaultRegistry()
                .counter("bulkhead_webhook_server_connections_rejected_total",
                         "Connections closed on accept because maxConnections were open.")
                .unlabeled()),
        handshakeErrors(metrics::defaultRegistry()
                            .counter("bulkhead_webhook_server_tls_handshake_errors_total",
                                     "TLS handshakes that failed or timed out.")
                            .unlabeled()),
        errorResponses(metrics::defaultRegistry().counter(
            "bulkhead_webhook_server_error_responses_total",
            "Requests the server answered with an error itself, by status code (500: the handler "
            "threw or returned an invalid response).",
            {"code"})),
        certificateReloads(metrics::defaultRegistry().counter(
            "bulkhead_webhook_server_certificate_reloads_total",
            "Attempts to load a changed certificate and key, by result (success or error).",
            {"result"})) {}

  metrics::Gauge& connections;
  metrics::Counter& rejectedConnections;
  metrics::Counter& handshakeErrors;
  metrics::CounterFamily& errorResponses;
  metrics::CounterFamily& certificateReloads;
};

ServerMetrics& globalServerMetrics() {
  static ServerMetrics instance;
  return instance;
}

// What identifies one version of a file: a replaced file (new inode, a Kubernetes secret volume's
// symlink swap) or one rewritten in place (size, mtime, ctime) both change it.
struct FileStamp {
  int error = 0;  // errno of stat(), 0 when the file is there
  uint64_t device = 0;
  uint64_t inode = 0;
  int64_t size = 0;
  int64_t mtimeSec = 0;
  int64_t mtimeNsec = 0;
  int64_t ctimeSec = 0;
  int64_t ctimeNsec = 0;

  bool operator==(const FileStamp&) const = default;
};

FileStamp stampOf(const std::string& path) {
  struct stat st {};
  FileStamp stamp;
  if (::stat(path.c_str(), &st) != 0) {
    stamp.error = errno;
    return stamp;
  }
  stamp.device = st.st_dev;
  stamp.inode = st.st_ino;
  stamp.size = st.st_size;
  stamp.mtimeSec = st.st_mtim.tv_sec;
  stamp.mtimeNsec = st.st_mtim.tv_nsec;
  stamp.ctimeSec = st.st_ctim.tv_sec;
  stamp.ctimeNsec = st.st_ctim.tv_nsec;
  return stamp;
}

struct PairStamp {
  FileStamp cert;
  FileStamp key;

  bool operator==(const PairStamp&) const = default;
};

PairStamp stampOf(const HttpsServerOptions& options) {
  return {stampOf(options.certFile), stampOf(options.keyFile)};
}

StatusOr<std::string> readPem(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return invalidError("cannot open " + path + ": " + std::strerror(errno));
  }
  std::string data(static_cast<size_t>(kMaxPemBytes) + 1, '\0');
  in.read(data.data(), kMaxPemBytes + 1);
  if (in.bad()) {
    return invalidError("cannot read " + path);
  }
  if (in.gcount() > kMaxPemBytes) {
    return invalidError(path + " is larger than 1 MiB");
  }
  data.resize(static_cast<size_t>(in.gcount()));
  return data;
}

// Why a pending read was cancelled.
enum class CancelReason { kNone, kIdleTimeout, kReadTimeout, kStop };

// Selects "http/1.1" when the client offers it; anything else (h2 alone, say) gets no ALPN
// answer at all, which leaves the client on HTTP/1.1 or makes it give up. Never HTTP/2.
int selectAlpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen,
               const unsigned char* in, unsigned int inlen, void* /*arg*/) {
  constexpr std::string_view kHttp11 = "http/1.1";
  unsigned int i = 0;
  while (i < inlen) {
    const unsigned int len = in[i];
    if (i + 1 + len > inlen) {
      break;
    }
    if (std::string_view(reinterpret_cast<const char*>(in + i + 1), len) == kHttp11) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// A fresh server context holding the pair in `certFile`/`keyFile`.
StatusOr<std::shared_ptr<ssl::context>> loadContext(const HttpsServerOptions& options) {
  auto certPem = readPem(options.certFile);
  if (!certPem.ok()) {
    return certPem.status();
  }
  auto keyPem = readPem(options.keyFile);
  if (!keyPem.ok()) {
    return keyPem.status();
  }
  struct Cleanse {
    std::string& s;
    ~Cleanse() { OPENSSL_cleanse(s.data(), s.size()); }
  } cleanse{*keyPem};

  ERR_clear_error();
  std::shared_ptr<ssl::context> ctx;
  try {
    ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  } catch (const std::exception& e) {
    return internalError(std::string("creating a TLS context: ") + e.what());
  }
  SSL_CTX* native = ctx->native_handle();
  const int minVersion = options.tlsMinVersion == "1.2" ? TLS1_2_VERSION : TLS1_3_VERSION;
  if (SSL_CTX_set_min_proto_version(native, minVersion) != 1 ||
      SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1 ||
      SSL_CTX_set_ciphersuites(native, kTls13Suites) != 1 ||
      SSL_CTX_set1_groups_list(native, kGroups) != 1 || SSL_CTX_set_num_tickets(native, 0) != 1) {
    return internalError("configuring TLS: " + internal::takeOpenSslError());
  }
  // No compression (CRIME), no renegotiation, the server's cipher order, and no resumption:
  // clients keep their connections alive, and tickets would outlive a certificate rotation.
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                  SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_alpn_select_cb(native, selectAlpn, nullptr);

  boost::system::error_code ec;
  ctx->use_certificate_chain(asio::buffer(*certPem), ec);
  if (ec) {
    return invalidError("loading certificate " + options.certFile + ": " + ec.message());
  }
  ctx->use_private_key(asio::buffer(*keyPem), ssl::context::pem, ec);
  if (ec) {
    return invalidError("loading private key " + options.keyFile + ": " + ec.message());
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    return invalidError("private key " + options.keyFile + " does not match certificate " +
                        options.certFile + ": " + internal::takeOpenSslError());
  }
  return ctx;
}

Status validate(const HttpsServerOptions& o) {
  if (o.certFile.empty() || o.keyFile.empty()) {
    return invalidError("certFile and keyFile are required");
  }
  if (o.tlsMinVersion != "1.2" && o.tlsMinVersion != "1.3") {
    return invalidError("tlsMinVersion must be \"1.2\" or \"1.3\", not \"" + o.tlsMinVersion +
                        "\"");
  }
  if (o.maxBodyBytes == 0) {
    return invalidError("maxBodyBytes must be positive");
  }
  if (o.maxHeaderBytes < 256 || o.maxHeaderBytes > (1u << 30)) {
    return invalidError("maxHeaderBytes must be between 256 and 1 GiB");
  }
  if (o.readTimeout.count() <= 0 || o.idleTimeout.count() <= 0) {
    return invalidError("readTimeout and idleTimeout must be positive");
  }
  if (o.maxConnections == 0) {
    return invalidError("maxConnections must be positive");
  }
  if (o.threads < 0) {
    return invalidError("threads must not be negative");
  }
  return okStatus();
}

// Parses one request straight into the connection's reusable HttpRequest: no header map, no
// per-request allocation once the strings have grown to the connection's usual request.
class RequestParser final : public http::basic_parser<true> {
 public:
  explicit RequestParser(HttpRequest& request) : request_(request) {}

  int httpVersion() const { return httpVersion_; }
  bool isHead() const { return isHead_; }
  bool expectsContinue() const { return expectsContinue_; }

 private:
  void on_request_impl(http::verb method, beast::string_view methodText, beast::string_view target,
                       int httpVersion, beast::error_code& ec) override {
    if (httpVersion != 10 && httpVersion != 11) {
      ec = http::error::bad_version;
      return;
    }
    request_.method.assign(methodText.data(), methodText.size());
    request_.target.assign(target.data(), target.size());
    httpVersion_ = httpVersion;
    isHead_ = method == http::verb::head;
  }

  void on_response_impl(int /*code*/, beast::string_view /*reason*/, int /*httpVersion*/,
                        beast::error_code& ec) override {
    ec = http::error::bad_method;  // never called for a request parser
  }

  void on_field_impl(http::field name, beast::string_view /*nameText*/, beast::string_view value,
                     beast::error_code& ec) override {
    if (name == http::field::content_type) {
      if (sawContentType_) {
        ec = http::error::bad_value;  // two Content-Types: ambiguous, refuse
        return;
      }
      sawContentType_ = true;
      request_.contentType.assign(value.data(), value.size());
    } else if (name == http::field::expect) {
      expectsContinue_ = beast::iequals(value, "100-continue");
    }
  }

  void on_header_impl(beast::error_code& /*ec*/) override {}

  void on_body_init_impl(const boost::optional<std::uint64_t>& contentLength,
                         beast::error_code& /*ec*/) override {
    // The parser has already checked the length against the body limit. Reserve no more than
    // kReserveLimit up front: memory follows the bytes that arrive, not the ones announced.
    if (contentLength) {
      request_.body.reserve(
          static_cast<size_t>(std::min<std::uint64_t>(*contentLength, kReserveLimit)));
    }
  }

  size_t on_body_impl(beast::string_view body, beast::error_code& /*ec*/) override {
    request_.body.append(body.data(), body.size());
    return body.size();
  }

  void on_chunk_header_impl(std::uint64_t /*size*/, beast::string_view /*extensions*/,
                            beast::error_code& /*ec*/) override {}

  size_t on_chunk_body_impl(std::uint64_t /*remain*/, beast::string_view body,
                            beast::error_code& /*ec*/) override {
    request_.body.append(body.data(), body.size());
    return body.size();
  }

  void on_finish_impl(beast::error_code& /*ec*/) override {}

  HttpRequest& request_;
  int httpVersion_ = 11;
  bool isHead_ = false;
  bool expectsContinue_ = false;
  bool sawContentType_ = false;
};

void appendNumber(std::string& out, uint64_t n) {
  char buf[24];
  auto [end, err] = std::to_chars(buf, buf + sizeof buf, n);
  out.append(buf, end);
}

// A header value we are willing to send: no CR, LF or other control characters.
bool isSafeHeaderValue(std::string_view v) {
  return std::none_of(v.begin(), v.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

std::string remoteAddress(const tcp::socket& socket) {
  boost::system::error_code ec;
  auto endpoint = socket.remote_endpoint(ec);
  if (ec) {
    return "unknown";
  }
  return endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
}

}  // namespace

class HttpsServer::Impl {
 public:
  class Session;

  Impl(HttpsServerOptions options, Handler handler, std::shared_ptr<ssl::context> context,
       PairStamp stamp)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        metrics_(globalServerMetrics()),
        context_(std::move(context)),
        loadedStamp_(stamp),
        io_(threadCount()),
        work_(asio::make_work_guard(io_)),
        acceptor_(asio::make_strand(io_)),
        acceptRetry_(acceptor_.get_executor()),
        certTimer_(asio::make_strand(io_)) {}

  ~Impl() { stop(std::chrono::milliseconds(0)); }

  Status listen(const tcp::endpoint& endpoint) {
    boost::system::error_code ec;
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) {
      acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    }
    if (!ec) {
      acceptor_.bind(endpoint, ec);
    }
    if (!ec) {
      acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
      return invalidError("cannot listen on " + options_.bindAddress + ": " + ec.message());
    }
    auto local = acceptor_.local_endpoint(ec);
    if (ec) {
      return internalError("reading the bound address: " + ec.message());
    }
    port_ = local.port();
    return okStatus();
  }

  void run() {
    accept();
    scheduleCertificateCheck();
    const int n = threadCount();
    threads_.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this] { io_.run(); });
    }
  }

  void stop(std::chrono::milliseconds drain);

  int port() const { return port_; }
  uint64_t certificateGeneration() const { return generation_.load(std::memory_order_acquire); }

  // For sessions.
  const HttpsServerOptions& options() const { return options_; }
  const Handler& handler() const { return handler_; }
  ServerMetrics& serverMetrics() { return metrics_; }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  bool closingAfterResponses() const {
    return closeAfterResponses_.load(std::memory_order_acquire);
  }
  void closeConnectionsAfterResponses() {
    closeAfterResponses_.store(true, std::memory_order_release);
  }
  void unregister(std::list<std::weak_ptr<Session>>::iterator it) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      sessions_.erase(it);
    }
    drained_.notify_all();
  }

 private:
  int threadCount() const {
    if (options_.threads > 0) {
      return options_.threads;
    }
    return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }

  void accept();
  void onAccept(const boost::system::error_code& ec, tcp::socket socket);
  void scheduleCertificateCheck();
  void checkCertificate();

  // Everything sessions touch while they are destroyed is declared before io_, so it outlives
  // the handlers (and the sessions they own) that io_'s destructor frees.
  const HttpsServerOptions options_;
  const Handler handler_;
  ServerMetrics& metrics_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> closeAfterResponses_{false};
  std::atomic<uint64_t> generation_{0};
  int port_ = 0;

  std::mutex mu_;
  std::condition_variable drained_;
  std::list<std::weak_ptr<Session>> sessions_;  // guarded by mu_
  std::shared_ptr<ssl::context> context_;       // guarded by mu_; for new connections

  // Only the certificate strand touches these.
  PairStamp loadedStamp_;
  std::optional<PairStamp> failedStamp_;
  std::optional<PairStamp> keyOnlyStamp_;  // a new key seen once beside the loaded certificate

  std::mutex stopMu_;
  bool stopped_ = false;  // guarded by stopMu_

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  asio::steady_timer acceptRetry_;  // on the acceptor's strand
  Clock::time_point lastAcceptErrorLog_{};
  asio::steady_timer certTimer_;
  std::vector<std::thread> threads_;
};

// One TLS connection. Every member is touched only on the connection's strand (the executor of
// its socket and timer), except through the thread-safe Impl. Owned by the shared_ptrs held by
// its pending operations: when the last one completes without starting another, it is gone.
class HttpsServer::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(HttpsServer::Impl& server, tcp::socket socket, std::shared_ptr<ssl::context> context)
      : server_(server),
        options_(server.options()),
        context_(std::move(context)),
        stream_(std::move(socket), *context_),
        timer_(stream_.get_executor()),
        buffer_(options_.maxHeaderBytes + kReadChunk + 1) {
    server_.serverMetrics().connections.inc();
  }

  ~Session() {
    server_.serverMetrics().connections.dec();
    if (registered_) {
      server_.unregister(registration_);
    }
  }

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Called once by the acceptor, under the server's mutex, before start().
  void setRegistration(std::list<std::weak_ptr<Session>>::iterator it) {
    registration_ = it;
    registered_ = true;
  }

  asio::any_io_executor executor() { return stream_.get_executor(); }

  // On the strand: the TLS handshake, then requests until the connection ends.
  void start() {
    if (server_.stopping()) {
      closeNow();
      return;
    }
    phase_ = Phase::kHandshake;
    setDeadline(options_.readTimeout);
    stream_.async_handshake(ssl::stream_base::server,
                            [self = shared_from_this()](const boost::system::error_code& ec) {
                              self->onHandshake(ec);
                            });
  }

  // On the strand, when the server stops: a connection between requests is closed now; one
  // with a request in progress finishes it and then closes.
  void shutdownIfIdle() {
    if (phase_ == Phase::kHandshake) {
      closeNow();
    } else if (phase_ == Phase::kIdle) {
      cancelRead(CancelReason::kStop);
      setDeadline(kCancelGrace);
    }
  }

  // Only when no thread runs the event loop any more: drops the connection at once.
  void forceClose() { closeNow(); }

 private:
  enum class Phase { kHandshake, kIdle, kReading, kHandling, kWriting, kClosing, kClosed };

  void onHandshake(const boost::system::error_code& ec) {
    if (phase_ == Phase::kClosed) {
      return;
    }
    if (ec) {
      server_.serverMetrics().handshakeErrors.inc();
      if (log::enabled(log::Level::kDebug)) {
        log::debug("webhook TLS handshake failed",
                   {{"remote", remoteAddress(stream_.next_layer())}, {"error", ec.message()}});
      }
      closeNow();
      return;
    }
    startRequest();
  }

  // Waits for the next request (the first one still under the deadline set at accept).
  void startRequest() {
    if (server_.stopping()) {
      gracefulClose();
      return;
    }
    request_.method.clear();
    request_.target.clear();
    request_.contentType.clear();
    request_.body.clear();
    parser_.emplace(request_);
    parser_->eager(true);
    parser_->header_limit(static_cast<std::uint32_t>(options_.maxHeaderBytes));
    parser_->body_limit(static_cast<std::uint64_t>(options_.maxBodyBytes));
    continueSent_ = false;
    phase_ = Phase::kIdle;
    if (!firstRequest_) {
      setDeadline(options_.idleTimeout);
    }
    if (buffer_.size() > 0) {  // pipelined: the next request is already here
      beginReading();
      parse();
    } else {
      readSome();
    }
  }

  void beginReading() {
    phase_ = Phase::kReading;
    if (firstRequest_) {
      firstRequest_ = false;  // keeps the deadline from accept
    } else {
      setDeadline(options_.readTimeout);
    }
  }

  void readSome() {
    const size_t room = buffer_.max_size() - buffer_.size();
    if (room == 0) {  // cannot happen: the parser's header limit is below the buffer's size
      respondError(431, "request header too large\n");
      return;
    }
    stream_.async_read_some(buffer_.prepare(std::min(room, kReadChunk)),
                            [self = shared_from_this()](const boost::system::error_code& ec,
                                                        size_t n) { self->onRead(ec, n); });
  }

  void onRead(const boost::system::error_code& ec, size_t n) {
    if (phase_ == Phase::kClosed) {
      return;
    }
    const CancelReason reason = cancelReason_;
    cancelReason_ = CancelReason::kNone;
    if (reason == CancelReason::kReadTimeout) {
      // Even if bytes arrived just now: the deadline passed, and the cancel may have cut the TLS
      // stream's read, so the request is answered 408 and the connection closed.
      respondError(408, "request timeout\n");
      return;
    }
    if (ec) {
      if (reason != CancelReason::kNone && ec == asio::error::operation_aborted) {
        gracefulClose();  // idle timeout or server stop between requests
      } else {
        // The client hung up (eof, reset, truncated TLS) or the TLS stream broke: nobody to
        // answer.
        if (log::enabled(log::Level::kDebug) && phase_ == Phase::kReading) {
          log::debug("webhook connection ended in the middle of a request",
                     {{"remote", remoteAddress(stream_.next_layer())}, {"error", ec.message()}});
        }
        closeNow();
      }
      return;
    }
    // Bytes arrived: a request is in progress, whatever the idle timer or stop() meant to do.
    buffer_.commit(n);
    if (phase_ == Phase::kIdle) {
      beginReading();
    }
    parse();
  }

  void parse() {
    beast::error_code ec;
    while (buffer_.size() > 0 && !parser_->is_done()) {
      const size_t used = parser_->put(buffer_.data(), ec);
      buffer_.consume(used);
      if (ec == http::error::need_more) {
        ec = {};
        break;
      }
      if (ec || used == 0) {
        break;
      }
    }
    if (ec == http::error::body_limit) {
      respondError(413, "request body too large\n");
    } else if (ec == http::error::header_limit) {
      respondError(431, "request header too large\n");
    } else if (ec) {
      respondError(400, "bad request\n");
    } else if (parser_->is_done()) {
      handle();
    } else if (parser_->is_header_done() && parser_->expectsContinue() && !continueSent_) {
      continueSent_ = true;
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                        [self = shared_from_this()](const boost::system::error_code& wec, size_t) {
                          if (self->phase_ == Phase::kClosed) {
                            return;
                          }
                          if (wec) {
                            self->closeNow();  // a cut write leaves the TLS stream unusable
                            return;
                          }
                          self->readSome();
                        });
    } else {
      readSome();
    }
  }

  void handle() {
    phase_ = Phase::kHandling;
    deadline_ = Clock::time_point::max();  // the handler is trusted code; nothing to time out
    std::optional<HttpResponse> response;
    bool failed = false;
    try {
      response.emplace(server_.handler()(request_));
    } catch (const std::exception& e) {
      log::error("webhook handler threw; answering 500",
                 {{"target", request_.target}, {"error", e.what()}});
      failed = true;
    } catch (...) {
      log::error("webhook handler threw a non-exception; answering 500",
                 {{"target", request_.target}});
      failed = true;
    }
    if (!failed && (response->status < 200 || response->status > 599 ||
                    !isSafeHeaderValue(response->contentType))) {
      log::error("webhook handler returned an invalid response; answering 500",
                 {{"target", request_.target}, {"status", response->status}});
      failed = true;
    }
    const bool keepAlive =
        parser_->keep_alive() && !server_.stopping() && !server_.closingAfterResponses();
    if (failed) {
      server_.serverMetrics().errorResponses.labels({"500"}).inc();
      writeResponse(500, "text/plain; charset=utf-8", "internal server error\n", keepAlive);
    } else {
      writeResponse(response->status, response->contentType, response->body, keepAlive);
    }
  }

  // Answers the current request with `status` from the server itself and closes the connection.
  void respondError(int status, std::string_view text) {
    server_.serverMetrics().errorResponses.labels({std::to_string(status)}).inc();
    if (log::enabled(log::Level::kDebug)) {
      log::debug("webhook request refused",
                 {{"remote", remoteAddress(stream_.next_layer())}, {"status", status}});
    }
    writeResponse(status, "text/plain; charset=utf-8", text, false);
  }

  void writeResponse(int status, std::string_view contentType, std::string_view body,
                     bool keepAlive) {
    const bool noBody = status == 204 || status == 304;
    out_.clear();
    out_ += "HTTP/1.1 ";
    appendNumber(out_, static_cast<uint64_t>(status));
    out_ += ' ';
    const beast::string_view reason =
        http::obsolete_reason(http::int_to_status(static_cast<unsigned>(status)));
    if (!reason.empty() && reason.front() != '<') {  // "<unknown-status>": send no phrase
      out_.append(reason.data(), reason.size());
    }
    out_ += "\r\n";
    if (!contentType.empty() && !noBody) {
      out_ += "Content-Type: ";
      out_ += contentType;
      out_ += "\r\n";
    }
    if (!noBody) {
      out_ += "Content-Length: ";
      appendNumber(out_, body.size());
      out_ += "\r\n";
    }
    if (!keepAlive) {
      out_ += "Connection: close\r\n";
    } else if (parser_ && parser_->httpVersion() == 10) {
      out_ += "Connection: keep-alive\r\n";
    }
    out_ += "\r\n";
    if (!noBody && !(parser_ && parser_->isHead())) {
      out_ += body;
    }
    closeAfterWrite_ = !keepAlive;
    phase_ = Phase::kWriting;
    setDeadline(options_.readTimeout);
    asio::async_write(stream_, asio::buffer(out_),
                      [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
                        self->onWrite(ec);
                      });
  }

  void onWrite(const boost::system::error_code& ec) {
    if (phase_ == Phase::kClosed) {
      return;
    }
    if (ec) {
      closeNow();
      return;
    }
    if (out_.capacity() > kRetainedCapacity) {
      std::string().swap(out_);
    }
    if (request_.body.capacity() > kRetainedCapacity) {
      std::string().swap(request_.body);
    }
    if (closeAfterWrite_) {
      gracefulClose();
    } else {
      startRequest();
    }
  }

  // Sends close_notify, then half-closes TCP and drains what the client still sends until it
  // hangs up or kLinger passes, so that the last response reaches it rather than a reset.
  void gracefulClose() {
    phase_ = Phase::kClosing;
    setDeadline(std::min<Clock::duration>(kLinger, options_.readTimeout));
    stream_.async_shutdown([self = shared_from_this()](const boost::system::error_code&) {
      // Whatever the result (the client's close_notify, its FIN, or application data that makes
      // OpenSSL give up), go on with the TCP half of the close.
      if (self->phase_ == Phase::kClosed) {
        return;
      }
      boost::system::error_code ignored;
      self->stream_.next_layer().shutdown(tcp::socket::shutdown_send, ignored);
      self->drain();
    });
  }

  void drain() {
    buffer_.clear();
    stream_.next_layer().async_read_some(
        buffer_.prepare(std::min(buffer_.max_size(), kReadChunk)),
        [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
          if (self->phase_ == Phase::kClosed) {
            return;
          }
          if (ec) {
            self->closeNow();
            return;
          }
          self->drain();
        });
  }

  void closeNow() {
    if (phase_ == Phase::kClosed) {
      return;
    }
    phase_ = Phase::kClosed;
    boost::system::error_code ignored;
    stream_.next_layer().close(ignored);
    timer_.cancel();
  }

  void cancelRead(CancelReason reason) {
    cancelReason_ = reason;
    boost::system::error_code ignored;
    stream_.next_layer().cancel(ignored);
  }

  // Deadlines are kept lazily: the timer is only moved when a deadline comes earlier than the
  // time it is set for, and when it fires early it is set again for the current deadline. A
  // keep-alive connection under load thus touches its timer about once per readTimeout, not
  // several times per request.
  void setDeadline(Clock::duration d) {
    deadline_ = Clock::now() + d;
    if (deadline_ < timerExpiry_) {
      armTimer(deadline_);
    }
  }

  void armTimer(Clock::time_point at) {
    timerExpiry_ = at;
    const uint64_t seq = ++timerSeq_;
    timer_.expires_at(at);
    timer_.async_wait([weak = weak_from_this(), seq](const boost::system::error_code& ec) {
      if (ec) {
        return;  // moved or cancelled
      }
      if (auto self = weak.lock()) {
        self->onTimer(seq);
      }
    });
  }

  void onTimer(uint64_t seq) {
    if (seq != timerSeq_ || phase_ == Phase::kClosed) {
      return;  // a newer wait is pending
    }
    timerExpiry_ = Clock::time_point::max();
    if (deadline_ == Clock::time_point::max()) {
      return;
    }
    if (Clock::now() < deadline_) {
      armTimer(deadline_);
      return;
    }
    if (cancelReason_ != CancelReason::kNone) {
      closeNow();  // the read was cancelled a grace period ago and has still not completed
      return;
    }
    switch (phase_) {
      case Phase::kIdle:
        cancelRead(CancelReason::kIdleTimeout);
        setDeadline(kCancelGrace);
        break;
      case Phase::kReading:
        if (log::enabled(log::Level::kDebug)) {
          log::debug("webhook request not received in time",
                     {{"remote", remoteAddress(stream_.next_layer())}});
        }
        cancelRead(CancelReason::kReadTimeout);
        setDeadline(kCancelGrace);
        break;
      case Phase::kHandshake:
        if (log::enabled(log::Level::kDebug)) {
          log::debug("webhook TLS handshake timed out",
                     {{"remote", remoteAddress(stream_.next_layer())}});
        }
        closeNow();
        break;
      case Phase::kHandling:  // no deadline while handling
      case Phase::kWriting:   // the client does not read its response
      case Phase::kClosing:   // nor hang up
      case Phase::kClosed:
        closeNow();
        break;
    }
  }

  HttpsServer::Impl& server_;
  const HttpsServerOptions& options_;
  // The context this connection was accepted with; a reload does not touch it.
  std::shared_ptr<ssl::context> context_;
  ssl::stream<tcp::socket> stream_;
  asio::steady_timer timer_;
  Clock::time_point deadline_ = Clock::time_point::max();
  Clock::time_point timerExpiry_ = Clock::time_point::max();  // max: no wait pending
  uint64_t timerSeq_ = 0;
  Phase phase_ = Phase::kHandshake;
  CancelReason cancelReason_ = CancelReason::kNone;
  bool firstRequest_ = true;
  bool continueSent_ = false;
  bool closeAfterWrite_ = false;
  beast::flat_buffer buffer_;  // bounded: header limit plus one read
  HttpRequest request_;
  std::optional<RequestParser> parser_;
  std::string out_;  // the response being written
  std::list<std::weak_ptr<Session>>::iterator registration_;
  bool registered_ = false;
};

void HttpsServer::Impl::accept() {
  acceptor_.async_accept(asio::make_strand(io_),
                         [this](const boost::system::error_code& ec, tcp::socket socket) {
                           onAccept(ec, std::move(socket));
                         });
}

void HttpsServer::Impl::onAccept(const boost::system::error_code& ec, tcp::socket socket) {
  if (ec) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) {
      return;
    }
    // Out of file descriptors, say: log at most once a second, and do not spin.
    const auto now = Clock::now();
    if (now - lastAcceptErrorLog_ >= std::chrono::seconds(1)) {
      lastAcceptErrorLog_ = now;
      log::warn("webhook server cannot accept a connection", {{"error", ec.message()}});
    }
    acceptRetry_.expires_after(kAcceptRetry);
    acceptRetry_.async_wait([this](const boost::system::error_code& wec) {
      if (!wec && acceptor_.is_open()) {
        accept();
      }
    });
    return;
  }
  accept();

  boost::system::error_code ignored;
  std::shared_ptr<ssl::context> context;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (sessions_.size() < options_.maxConnections) {
      context = context_;
    }
  }
  if (!context) {
    metrics_.rejectedConnections.inc();
    if (log::enabled(log::Level::kDebug)) {
      log::debug("webhook connection refused: too many connections",
                 {{"remote", remoteAddress(socket)},
                  {"maxConnections", static_cast<int64_t>(options_.maxConnections)}});
    }
    socket.close(ignored);
    return;
  }
  socket.set_option(tcp::no_delay(true), ignored);
  auto session = std::make_shared<Session>(*this, std::move(socket), std::move(context));
  {
    std::lock_guard<std::mutex> lock(mu_);
    session->setRegistration(sessions_.insert(sessions_.end(), session));
  }
  // start() looks at stopping_ after the registration: either stop() sees this session, or
  // the session sees that the server is stopping.
  asio::post(session->executor(), [session] { session->start(); });
}

void HttpsServer::Impl::scheduleCertificateCheck() {
  if (options_.certCheckInterval.count() <= 0) {
    return;
  }
  certTimer_.expires_after(options_.certCheckInterval);
  certTimer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopping()) {
      return;
    }
    checkCertificate();
    scheduleCertificateCheck();
  });
}

void HttpsServer::Impl::checkCertificate() {
  const PairStamp stamp = stampOf(options_);
  if (stamp == loadedStamp_ || stamp == failedStamp_) {
    return;
  }
  // A new key beside the certificate already loaded is, most likely, a pair being replaced (the
  // key first, then its certificate: ServingCertificateFiles): look again at the next check
  // rather than report a mismatch. A key that stays alone is loaded (and reported) then.
  if (stamp.cert == loadedStamp_.cert && stamp != keyOnlyStamp_) {
    keyOnlyStamp_ = stamp;
    return;
  }
  auto context = loadContext(options_);
  if (!context.ok()) {
    failedStamp_ = stamp;
    metrics_.certificateReloads.labels({"error"}).inc();
    log::warn("webhook certificate changed but does not load; keeping the previous one",
              {{"error", context.status().message()}});
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    context_ = std::move(context).value();
  }
  loadedStamp_ = stamp;
  failedStamp_.reset();
  const uint64_t generation = generation_.fetch_add(1, std::memory_order_acq_rel) + 1;
  metrics_.certificateReloads.labels({"success"}).inc();
  log::info("webhook certificate reloaded",
            {{"certFile", options_.certFile}, {"generation", static_cast<int64_t>(generation)}});
}

void HttpsServer::Impl::stop(std::chrono::milliseconds drain) {
  std::lock_guard<std::mutex> stopLock(stopMu_);
  if (stopped_) {
    return;
  }
  stopped_ = true;
  const auto deadline = Clock::now() + drain;
  stopping_.store(true, std::memory_order_release);

  asio::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    acceptRetry_.cancel();
  });
  asio::post(certTimer_.get_executor(), [this] { certTimer_.cancel(); });

  auto liveSessions = [this] {
    std::vector<std::shared_ptr<Session>> live;
    std::lock_guard<std::mutex> lock(mu_);
    live.reserve(sessions_.size());
    for (const auto& weak : sessions_) {
      if (auto session = weak.lock()) {
        live.push_back(std::move(session));
      }
    }
    return live;
  };
  // The shared_ptrs are released outside mu_: dropping the last one runs ~Session, which takes
  // mu_.
  for (auto& session : liveSessions()) {
    asio::post(session->executor(), [session] { session->shutdownIfIdle(); });
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    drained_.wait_until(lock, deadline, [this] { return sessions_.empty(); });
  }

  work_.reset();
  io_.stop();
  for (auto& thread : threads_) {
    if (thread.joinable()) {
      thread.join();
    }
  }
  // No thread runs the loop now, so what is left can be touched from here: close the listening
  // socket (if the posted close never ran) and every remaining connection. The sessions
  // themselves go with io_'s pending handlers.
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  acceptRetry_.cancel();
  certTimer_.cancel();
  for (auto& session : liveSessions()) {
    session->forceClose();
  }
}

HttpsServer::HttpsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpsServer::~HttpsServer() = default;
int HttpsServer::port() const { return impl_->port(); }
void HttpsServer::stop(std::chrono::milliseconds drain) { impl_->stop(drain); }

void HttpsServer::closeConnectionsAfterResponses() { impl_->closeConnectionsAfterResponses(); }
uint64_t HttpsServer::certificateGeneration() const { return impl_->certificateGeneration(); }

StatusOr<std::unique_ptr<HttpsServer>> HttpsServer::start(HttpsServerOptions options,
                                                          Handler handler) {
  RETURN_IF_ERROR(validate(options));
  if (!handler) {
    return invalidError("a handler is required");
  }
  ASSIGN_OR_RETURN(tcp::endpoint endpoint, internal::parseBindAddress(options.bindAddress));
  const PairStamp stamp = stampOf(options);
  ASSIGN_OR_RETURN(std::shared_ptr<ssl::context> context, loadContext(options));
  try {
    auto impl =
        std::make_unique<Impl>(std::move(options), std::move(handler), std::move(context), stamp);
    RETURN_IF_ERROR(impl->listen(endpoint));
    impl->run();
    return std::unique_ptr<HttpsServer>(new HttpsServer(std::move(impl)));
  } catch (const std::exception& e) {
    return internalError(std::string("starting the webhook server: ") + e.what());
  }
}

}  // namespace bulkhead::webhooks
