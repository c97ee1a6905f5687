#include "tests/support/scripted_server.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <condition_variable>
#include <functional>
#include <list>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

namespace bulkhead::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using SslStream = beast::ssl_stream<tcp::socket>;

void check(bool ok, const std::string& what) {
  if (!ok) {
    throw std::runtime_error("scripted server: " + what);
  }
}

std::string toPem(const std::function<int(BIO*)>& write) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  check(bio != nullptr && write(bio.get()) == 1, "writing PEM");
  std::string pem(BIO_ctrl_pending(bio.get()), '\0');
  int n = BIO_read(bio.get(), pem.data(), static_cast<int>(pem.size()));
  check(n == static_cast<int>(pem.size()), "reading PEM");
  return pem;
}

void addExtension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx{};
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  check(ext != nullptr, std::string("making extension ") + value);
  int added = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  check(added == 1, std::string("adding extension ") + value);
}

// A P-256 key and a self-signed certificate for IP:127.0.0.1, valid for a day, as PEM.
std::pair<std::string, std::string> makeSelfSignedCertificate() {
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> kctx(
      EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr), EVP_PKEY_CTX_free);
  check(kctx != nullptr && EVP_PKEY_keygen_init(kctx.get()) == 1 &&
            EVP_PKEY_CTX_set_ec_paramgen_curve_nid(kctx.get(), NID_X9_62_prime256v1) == 1,
        "setting up key generation");
  EVP_PKEY* rawKey = nullptr;
  check(EVP_PKEY_keygen(kctx.get(), &rawKey) == 1, "generating a key");
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(rawKey, EVP_PKEY_free);

  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  check(cert != nullptr, "allocating a certificate");
  std::random_device random;
  check(X509_set_version(cert.get(), 2) == 1 &&
            ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), (random() & 0x7fffffff) | 1) == 1 &&
            X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr &&
            X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600) != nullptr &&
            X509_set_pubkey(cert.get(), key.get()) == 1,
        "filling in the certificate");
  X509_NAME* name = X509_get_subject_name(cert.get());
  const std::string cn = "bulkhead scripted test server";
  check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                   0) == 1 &&
            X509_set_issuer_name(cert.get(), name) == 1,
        "naming the certificate");
  addExtension(cert.get(), NID_basic_constraints, "critical,CA:TRUE");
  addExtension(cert.get(), NID_key_usage, "critical,digitalSignature,keyCertSign");
  addExtension(cert.get(), NID_subject_key_identifier, "hash");
  addExtension(cert.get(), NID_subject_alt_name, "IP:127.0.0.1");
  check(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0, "signing the certificate");

  std::string certPem = toPem([&](BIO* bio) { return PEM_write_bio_X509(bio, cert.get()); });
  std::string keyPem = toPem([&](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  });
  return {certPem, keyPem};
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return -1;
}

// %XX escapes only: clients of the Kubernetes API do not send '+' for a space.
std::string percentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = hexValue(s[i + 1]);
      int lo = hexValue(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}

// What a connection does after a response.
enum class After { kKeepAlive, kClose };

}  // namespace

std::string RecordedRequest::path() const { return target.substr(0, target.find('?')); }

std::map<std::string, std::string> RecordedRequest::params() const {
  std::map<std::string, std::string> out;
  auto q = target.find('?');
  if (q == std::string::npos) {
    return out;
  }
  std::string_view query = std::string_view(target).substr(q + 1);
  while (!query.empty()) {
    std::string_view pair = query.substr(0, query.find('&'));
    query.remove_prefix(std::min(query.size(), pair.size() + 1));
    if (pair.empty()) {
      continue;
    }
    auto eq = pair.find('=');
    std::string key = percentDecode(pair.substr(0, eq));
    out[key] = eq == std::string_view::npos ? "" : percentDecode(pair.substr(eq + 1));
  }
  return out;
}

ScriptedResponse ScriptedResponse::json(int status, std::string body) {
  ScriptedResponse r;
  r.status = status;
  r.headers = {{"Content-Type", "application/json"}};
  r.body = std::move(body);
  return r;
}

ScriptedResponse ScriptedResponse::stream(std::vector<Chunk> chunks, StreamEnd end) {
  ScriptedResponse r;
  r.headers = {{"Content-Type", "application/json"}};
  r.chunked = true;
  r.chunks = std::move(chunks);
  r.end = end;
  return r;
}

class ScriptedServer::Impl {
 public:
  explicit Impl(ScriptedHandler handler) : handler_(std::move(handler)) {
    std::tie(certPem_, keyPem_) = makeSelfSignedCertificate();
    ssl_.use_certificate_chain(asio::buffer(certPem_));
    ssl_.use_private_key(asio::buffer(keyPem_), asio::ssl::context::pem);
    acceptor_.open(tcp::v4());
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    acceptThread_ = std::thread([this] { acceptLoop(); });
  }
  ~Impl() { stop(); }

  void stop() {
    {
      std::lock_guard lock(mu_);
      if (stopping_) {
        return;
      }
      stopping_ = true;
    }
    cv_.notify_all();
    // shutdown(2) wakes a thread blocked in accept() or read(); a connection's fd is only
    // touched while it is open (under mu_), since a closed fd number may already be reused.
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    acceptThread_.join();
    {
      std::lock_guard lock(mu_);
      for (auto& c : connections_) {
        if (c.open) {
          ::shutdown(c.fd, SHUT_RDWR);
        }
      }
    }
    // The list no longer changes: only the joined accept thread added to it.
    for (auto& c : connections_) {
      c.thread.join();
    }
    beast::error_code ec;
    acceptor_.close(ec);
  }

  std::vector<RecordedRequest> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

  size_t requestCount() const {
    std::lock_guard lock(mu_);
    return requests_.size();
  }

  bool waitForRequests(size_t n, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
  }

  std::string certPem_;
  std::string keyPem_;
  unsigned short port_ = 0;
  std::atomic<int> holding_{0};
  std::atomic<int> clientHangUps_{0};

 private:
  struct Connection {
    int fd = -1;
    bool open = true;  // guarded by mu_; once false, `fd` may belong to another socket
    std::thread thread;
  };

  void acceptLoop() {
    while (!stopping_) {
      tcp::socket socket(io_);
      beast::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec == asio::error::connection_aborted) {
        continue;
      }
      if (ec) {
        return;
      }
      std::lock_guard lock(mu_);
      if (stopping_) {
        return;
      }
      Connection& c = connections_.emplace_back();
      c.fd = socket.native_handle();
      c.thread = std::thread(
          [this, &c, s = std::move(socket)]() mutable { serve(c, std::move(s)); });
    }
  }

  void serve(Connection& connection, tcp::socket socket) {
    beast::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    SslStream stream(std::move(socket), ssl_);
    stream.handshake(asio::ssl::stream_base::server, ec);
    beast::flat_buffer buffer;
    while (!ec) {
      http::request<http::string_body> req;
      http::read(stream, buffer, req, ec);
      if (ec) {
        break;
      }
      RecordedRequest rec;
      rec.method = std::string(req.method_string());
      rec.target = std::string(req.target());
      for (const auto& field : req) {
        std::string name(field.name_string());
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
        rec.headers[name] = std::string(field.value());
      }
      rec.body = req.body();
      rec.received = std::chrono::steady_clock::now();
      {
        std::lock_guard lock(mu_);
        requests_.push_back(rec);
      }
      cv_.notify_all();
      if (respond(stream, req, answer(rec)) != After::kKeepAlive) {
        break;
      }
    }
    // No TLS close_notify: a normal end never gets here but on error, stop or a scripted abort.
    std::lock_guard lock(mu_);
    connection.open = false;
    stream.next_layer().close(ec);
  }

  // A handler that throws (a failed REQUIRE, say) must not take the process down with it.
  ScriptedResponse answer(const RecordedRequest& rec) {
    try {
      return handler_(rec);
    } catch (const std::exception& e) {
      return ScriptedResponse::json(500, std::string("scripted handler threw: ") + e.what());
    } catch (...) {
      return ScriptedResponse::json(500, "scripted handler threw");
    }
  }

  // Writes `res`; returns kClose when the connection must end (an error, an abort, stopping).
  After respond(SslStream& stream, const http::request<http::string_body>& req,
                const ScriptedResponse& res) {
    beast::error_code ec;
    if (!pause(res.delay)) {
      return After::kClose;
    }
    if (!res.chunked) {
      http::response<http::string_body> out;
      out.version(req.version());
      out.result(static_cast<unsigned>(res.status));
      for (const auto& [name, value] : res.headers) {
        out.set(name, value);
      }
      out.keep_alive(req.keep_alive());
      out.body() = res.body;
      out.prepare_payload();
      http::write(stream, out, ec);
      return ec || !req.keep_alive() ? After::kClose : After::kKeepAlive;
    }
    http::response<http::empty_body> out;
    out.version(req.version());
    out.result(static_cast<unsigned>(res.status));
    for (const auto& [name, value] : res.headers) {
      out.set(name, value);
    }
    out.keep_alive(req.keep_alive());
    out.chunked(true);
    http::response_serializer<http::empty_body> serializer(out);
    http::write_header(stream, serializer, ec);
    for (const auto& chunk : res.chunks) {
      if (ec || !pause(chunk.pauseBefore)) {
        return After::kClose;
      }
      asio::write(stream, http::make_chunk(asio::buffer(chunk.data)), ec);
    }
    if (ec) {
      return After::kClose;
    }
    switch (res.end) {
      case StreamEnd::kComplete:
        asio::write(stream, http::make_chunk_last(), ec);
        return ec || !req.keep_alive() ? After::kClose : After::kKeepAlive;
      case StreamEnd::kAbort:
        return After::kClose;
      case StreamEnd::kHold:
        hold(stream);
        return After::kClose;
    }
    return After::kClose;
  }

  // Reads (and drops) whatever comes until the client hangs up or stop() shuts the socket down.
  void hold(SslStream& stream) {
    ++holding_;
    char sink[512];
    beast::error_code ec;
    while (!ec) {
      stream.read_some(asio::buffer(sink), ec);
    }
    --holding_;
    if (!stopping_) {
      ++clientHangUps_;
    }
  }

  bool pause(std::chrono::milliseconds d) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, d, [&] { return stopping_.load(); });
    return !stopping_;
  }

  ScriptedHandler handler_;
  asio::io_context io_;
  asio::ssl::context ssl_{asio::ssl::context::tls_server};
  tcp::acceptor acceptor_{io_};
  std::thread acceptThread_;
  std::atomic<bool> stopping_{false};  // written under mu_

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;     // requests_ grew, or stopping_
  std::list<Connection> connections_;      // guarded by mu_ (structure and `open`)
  std::vector<RecordedRequest> requests_;  // guarded by mu_
};

ScriptedServer::ScriptedServer(ScriptedHandler handler)
    : impl_(std::make_unique<Impl>(std::move(handler))) {}
ScriptedServer::~ScriptedServer() = default;

void ScriptedServer::stop() { impl_->stop(); }
unsigned short ScriptedServer::port() const { return impl_->port_; }
std::string ScriptedServer::url() const { return "https://127.0.0.1:" + std::to_string(port()); }
const std::string& ScriptedServer::caPem() const { return impl_->certPem_; }
std::vector<RecordedRequest> ScriptedServer::requests() const { return impl_->requests(); }
size_t ScriptedServer::requestCount() const { return impl_->requestCount(); }
bool ScriptedServer::waitForRequests(size_t n, std::chrono::milliseconds timeout) const {
  return impl_->waitForRequests(n, timeout);
}
int ScriptedServer::holding() const { return impl_->holding_.load(); }
int ScriptedServer::clientHangUps() const { return impl_->clientHangUps_.load(); }

}  // namespace bulkhead::testing
