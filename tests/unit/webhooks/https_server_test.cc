#include "webhooks/https_server.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics.h"

namespace bulkhead::webhooks {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Every wait in these tests is bounded by this, so a broken server fails a test instead of
// hanging it.
constexpr auto kPatience = 5s;

std::chrono::milliseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "bulkhead-https-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

void writeFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  REQUIRE(out.good());
}

struct PemPair {
  std::string cert;
  std::string key;
};

template <typename Write>
std::string toPem(Write write) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  REQUIRE(write(bio.get()) == 1);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// A throwaway self-signed P-256 certificate for CN=`commonName` with serial number `serial`.
PemPair makeCertificate(long serial, const std::string& commonName) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), EVP_PKEY_free);
  REQUIRE(key != nullptr);
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  REQUIRE(cert != nullptr);
  REQUIRE(X509_set_version(cert.get(), 2) == 1);
  REQUIRE(ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial) == 1);
  REQUIRE(X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr);
  REQUIRE(X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600) != nullptr);
  REQUIRE(X509_set_pubkey(cert.get(), key.get()) == 1);
  X509_NAME* name = X509_get_subject_name(cert.get());
  REQUIRE(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                     reinterpret_cast<const unsigned char*>(commonName.c_str()), -1,
                                     -1, 0) == 1);
  REQUIRE(X509_set_issuer_name(cert.get(), name) == 1);
  REQUIRE(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0);
  PemPair pair;
  pair.cert = toPem([&](BIO* bio) { return PEM_write_bio_X509(bio, cert.get()); });
  pair.key = toPem([&](BIO* bio) {
    return PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  });
  return pair;
}

void ignoreSigpipe() {
  static const bool once = [] {
    std::signal(SIGPIPE, SIG_IGN);
    return true;
  }();
  (void)once;
}

// A blocking TCP connection to 127.0.0.1:`port`, or -1.
int connectTcp(int port) {
  ignoreSigpipe();
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

void setReceiveTimeout(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

struct ClientOptions {
  int minVersion = 0;        // e.g. TLS1_2_VERSION; 0: OpenSSL's default
  int maxVersion = 0;        // 0: the newest
  std::string tls12Ciphers;  // empty: OpenSSL's default
  std::string alpn;          // wire format, e.g. "\x02h2\x08http/1.1"; empty: no ALPN
};

// A TLS client on raw OpenSSL and a blocking socket whose reads time out, so that every call
// returns within kPatience.
class Client {
 public:
  explicit Client(int port, const ClientOptions& options = {}) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    REQUIRE(ctx_ != nullptr);
    if (options.minVersion != 0) {
      REQUIRE(SSL_CTX_set_min_proto_version(ctx_, options.minVersion) == 1);
    }
    if (options.maxVersion != 0) {
      REQUIRE(SSL_CTX_set_max_proto_version(ctx_, options.maxVersion) == 1);
    }
    if (!options.tls12Ciphers.empty()) {
      REQUIRE(SSL_CTX_set_cipher_list(ctx_, options.tls12Ciphers.c_str()) == 1);
    }
    if (!options.alpn.empty()) {
      REQUIRE(SSL_CTX_set_alpn_protos(ctx_,
                                      reinterpret_cast<const unsigned char*>(options.alpn.data()),
                                      static_cast<unsigned>(options.alpn.size())) == 0);
    }
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);  // self-signed; tests read the cert
    fd_ = connectTcp(port);
    if (fd_ < 0) {
      return;
    }
    setReceiveTimeout(fd_, kPatience);
    ssl_ = SSL_new(ctx_);
    REQUIRE(ssl_ != nullptr);
    SSL_set_fd(ssl_, fd_);
    handshakeOk_ = SSL_connect(ssl_) == 1;
    ERR_clear_error();
  }

  ~Client() {
    if (ssl_ != nullptr) {
      SSL_free(ssl_);
    }
    if (fd_ >= 0) {
      ::close(fd_);
    }
    SSL_CTX_free(ctx_);
  }

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Whether the TCP connection and the TLS handshake both succeeded.
  bool ok() const { return handshakeOk_; }

  bool send(std::string_view data) {
    while (!data.empty()) {
      int n = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
      if (n <= 0) {
        ERR_clear_error();
        return false;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  enum class Read { kData, kClosed, kTimeout };

  // Reads what is there (waiting up to `timeout`) into the input buffer.
  Read readMore(std::chrono::milliseconds timeout) {
    setReceiveTimeout(fd_, timeout);
    char buf[16384];
    errno = 0;
    int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) {
      in_.append(buf, static_cast<size_t>(n));
      return Read::kData;
    }
    int err = SSL_get_error(ssl_, n);
    int savedErrno = errno;
    ERR_clear_error();
    if (err == SSL_ERROR_WANT_READ ||
        (err == SSL_ERROR_SYSCALL && (savedErrno == EAGAIN || savedErrno == EWOULDBLOCK))) {
      return Read::kTimeout;
    }
    return Read::kClosed;
  }

  // The next response (a 100 Continue too unless `skipInterim`), or nothing if the connection
  // closed or kPatience passed first.
  std::optional<Response> readResponse(bool skipInterim = true) {
    const auto deadline = Clock::now() + kPatience;
    while (true) {
      size_t end;
      while ((end = in_.find("\r\n\r\n")) == std::string::npos) {
        if (Clock::now() >= deadline || readMore(100ms) == Read::kClosed) {
          return std::nullopt;
        }
      }
      Response response;
      std::string head = in_.substr(0, end);
      size_t lineEnd = head.find("\r\n");
      std::string statusLine = head.substr(0, lineEnd);
      REQUIRE(statusLine.rfind("HTTP/1.1 ", 0) == 0);
      response.status = std::atoi(statusLine.c_str() + 9);
      while (lineEnd != std::string::npos) {
        size_t next = head.find("\r\n", lineEnd + 2);
        std::string line = head.substr(
            lineEnd + 2, next == std::string::npos ? std::string::npos : next - lineEnd - 2);
        size_t colon = line.find(':');
        REQUIRE(colon != std::string::npos);
        std::string name = line.substr(0, colon);
        for (char& c : name) {
          c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        size_t valueStart = line.find_first_not_of(' ', colon + 1);
        response.headers[name] = valueStart == std::string::npos ? "" : line.substr(valueStart);
        lineEnd = next;
      }
      in_.erase(0, end + 4);
      if (response.status == 100) {
        if (skipInterim) {
          continue;
        }
        return response;
      }
      size_t length = static_cast<size_t>(std::atoll(response.header("content-length").c_str()));
      while (in_.size() < length) {
        if (Clock::now() >= deadline || readMore(100ms) == Read::kClosed) {
          return std::nullopt;
        }
      }
      response.body = in_.substr(0, length);
      in_.erase(0, length);
      return response;
    }
  }

  // Waits until the server closes the connection (close_notify, FIN or reset); false if it is
  // still open after `timeout`. Data read meanwhile is kept.
  bool waitClosed(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (readMore(std::max(left, 1ms)) == Read::kClosed) {
        return true;
      }
    }
    return false;
  }

  // Whether the server has sent something (or closed) within `timeout`.
  bool readable(std::chrono::milliseconds timeout) {
    if (SSL_pending(ssl_) > 0 || !in_.empty()) {
      return true;
    }
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
  }

  long peerSerial() const {
    X509* cert = SSL_get1_peer_certificate(ssl_);
    REQUIRE(cert != nullptr);
    long serial = ASN1_INTEGER_get(X509_get_serialNumber(cert));
    X509_free(cert);
    return serial;
  }

  int version() const { return SSL_version(ssl_); }
  std::string cipher() const { return SSL_get_cipher_name(ssl_); }
  std::string alpn() const {
    const unsigned char* data = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(ssl_, &data, &len);
    return std::string(reinterpret_cast<const char*>(data), len);
  }

  void close() {
    if (fd_ >= 0) {
      ::shutdown(fd_, SHUT_RDWR);
    }
  }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  bool handshakeOk_ = false;
  std::string in_;
};

ClientOptions versions(int minVersion, int maxVersion) {
  ClientOptions o;
  o.minVersion = minVersion;
  o.maxVersion = maxVersion;
  return o;
}

ClientOptions offering(std::string alpn) {
  ClientOptions o;
  o.alpn = std::move(alpn);
  return o;
}

HttpResponse plainResponse(int status, std::string contentType, std::string body) {
  HttpResponse res;
  res.status = status;
  res.contentType = std::move(contentType);
  res.body = std::move(body);
  return res;
}

std::string request(const std::string& target, const std::string& body = "",
                    const std::string& extraHeaders = "") {
  return "POST " + target +
         " HTTP/1.1\r\nHost: webhook.test\r\nContent-Type: application/json\r\n" +
         "Content-Length: " + std::to_string(body.size()) + "\r\n" + extraHeaders + "\r\n" + body;
}

// One request on `client`, its response.
std::optional<Response> roundTrip(Client& client, const std::string& target,
                                  const std::string& body = "") {
  if (!client.send(request(target, body))) {
    return std::nullopt;
  }
  return client.readResponse();
}

HttpResponse echo(const HttpRequest& req) {
  HttpResponse res;
  res.contentType = "text/plain";
  res.body = req.method + " " + req.target + " " + req.contentType + "\n" + req.body;
  return res;
}

// A server on 127.0.0.1:0 with a throwaway certificate (serial 1) in a temporary directory.
class Fixture {
 public:
  Fixture() {
    PemPair pair = makeCertificate(1, "webhook-1");
    writeFile(certFile(), pair.cert);
    writeFile(keyFile(), pair.key);
  }
  ~Fixture() {
    if (server_) {
      server_->stop(0ms);
    }
  }

  std::string certFile() const { return dir_.file("tls.crt"); }
  std::string keyFile() const { return dir_.file("tls.key"); }

  HttpsServerOptions options() const {
    HttpsServerOptions o;
    o.bindAddress = "127.0.0.1:0";
    o.certFile = certFile();
    o.keyFile = keyFile();
    o.threads = 2;
    return o;
  }

  HttpsServer& start(const HttpsServerOptions& o, Handler handler = echo) {
    auto server = HttpsServer::start(o, std::move(handler));
    REQUIRE_MESSAGE(server.ok(), server.status().toString());
    server_ = std::move(server).value();
    return *server_;
  }

  HttpsServer& server() { return *server_; }
  int port() const { return server_->port(); }

 private:
  TempDir dir_;
  std::unique_ptr<HttpsServer> server_;
};

double gaugeValue(const std::string& name) {
  const std::string text = metrics::defaultRegistry().exposition();
  const std::string prefix = "\n" + name + " ";
  size_t at = text.find(prefix);
  REQUIRE(at != std::string::npos);
  return std::atof(text.c_str() + at + prefix.size());
}

TEST_CASE("HttpsServer: echo round trips on one keep-alive connection") {
  Fixture f;
  f.start(f.options());
  Client client(f.port());
  REQUIRE(client.ok());
  CHECK(client.version() == TLS1_3_VERSION);

  auto first = roundTrip(client, "/validate?timeout=10s", R"({"a":1})");
  REQUIRE(first);
  CHECK(first->status == 200);
  CHECK(first->header("content-type") == "text/plain");
  CHECK(first->header("connection") == "");
  CHECK(first->body == "POST /validate?timeout=10s application/json\n{\"a\":1}");

  auto second = roundTrip(client, "/healthz");
  REQUIRE(second);
  CHECK(second->status == 200);
  CHECK(second->body == "POST /healthz application/json\n");
}

TEST_CASE("HttpsServer: pipelined requests, chunked bodies and 100-continue") {
  Fixture f;
  f.start(f.options());
  Client client(f.port());
  REQUIRE(client.ok());

  REQUIRE(client.send(request("/one", "1") + request("/two", "22")));
  auto one = client.readResponse();
  auto two = client.readResponse();
  REQUIRE(one);
  REQUIRE(two);
  CHECK(one->body == "POST /one application/json\n1");
  CHECK(two->body == "POST /two application/json\n22");

  REQUIRE(
      client.send("POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"));
  auto chunked = client.readResponse();
  REQUIRE(chunked);
  CHECK(chunked->body == "POST /chunked \nabcde");

  REQUIRE(client.send(
      "PUT /continue HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"));
  auto interim = client.readResponse(/*skipInterim=*/false);
  REQUIRE(interim);
  CHECK(interim->status == 100);
  REQUIRE(client.send("body"));
  auto final = client.readResponse();
  REQUIRE(final);
  CHECK(final->status == 200);
  CHECK(final->body == "PUT /continue \nbody");
}

TEST_CASE("HttpsServer: HTTP/1.1 only, whatever ALPN offers") {
  Fixture f;
  f.start(f.options());
  {
    Client client(f.port(), offering(std::string("\x02h2\x08http/1.1", 12)));
    REQUIRE(client.ok());
    CHECK(client.alpn() == "http/1.1");
    auto res = roundTrip(client, "/x");
    REQUIRE(res);
    CHECK(res->status == 200);
  }
  {
    Client client(f.port(), offering(std::string("\x02h2", 3)));
    REQUIRE(client.ok());
    CHECK(client.alpn() == "");
    auto res = roundTrip(client, "/x");
    REQUIRE(res);
    CHECK(res->status == 200);
  }
}

TEST_CASE("HttpsServer: a body over maxBodyBytes is 413 and the connection closes") {
  Fixture f;
  auto o = f.options();
  o.maxBodyBytes = 1024;
  f.start(o);

  SUBCASE("with a Content-Length") {
    Client client(f.port());
    REQUIRE(client.ok());
    client.send(request("/validate", std::string(10 * 1024, 'x')));
    auto res = client.readResponse();
    REQUIRE(res);
    CHECK(res->status == 413);
    CHECK(res->header("connection") == "close");
    CHECK(res->body == "request body too large\n");
    CHECK(client.waitClosed(kPatience));
  }
  SUBCASE("chunked") {
    Client client(f.port());
    REQUIRE(client.ok());
    std::string chunk(512, 'y');
    std::string req = "POST /validate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 20; ++i) {
      req += "200\r\n" + chunk + "\r\n";
    }
    req += "0\r\n\r\n";
    client.send(req);
    auto res = client.readResponse();
    REQUIRE(res);
    CHECK(res->status == 413);
    CHECK(client.waitClosed(kPatience));
  }

  // A body at the limit is fine, and the server serves others.
  Client other(f.port());
  REQUIRE(other.ok());
  auto res = roundTrip(other, "/validate", std::string(1024, 'z'));
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->body.size() == std::string("POST /validate application/json\n").size() + 1024);
}

TEST_CASE("HttpsServer: a header over maxHeaderBytes is 431 and the connection closes") {
  Fixture f;
  f.start(f.options());  // 16 KiB

  Client small(f.port());
  REQUIRE(small.ok());
  auto fine = roundTrip(small, "/x", "");
  REQUIRE(fine);
  REQUIRE(small.send(request("/x", "", "X-Padding: " + std::string(8 * 1024, 'p') + "\r\n")));
  auto padded = small.readResponse();
  REQUIRE(padded);
  CHECK(padded->status == 200);

  Client big(f.port());
  REQUIRE(big.ok());
  big.send(request("/x", "", "X-Padding: " + std::string(20 * 1024, 'p') + "\r\n"));
  auto res = big.readResponse();
  REQUIRE(res);
  CHECK(res->status == 431);
  CHECK(res->header("connection") == "close");
  CHECK(big.waitClosed(kPatience));
}

TEST_CASE("HttpsServer: malformed requests are 400") {
  Fixture f;
  f.start(f.options());
  Client client(f.port());
  REQUIRE(client.ok());
  client.send("this is not http\r\n\r\n");
  auto res = client.readResponse();
  REQUIRE(res);
  CHECK(res->status == 400);
  CHECK(client.waitClosed(kPatience));

  // Both a length and chunking: the request smuggling pattern.
  Client smuggler(f.port());
  REQUIRE(smuggler.ok());
  smuggler.send(
      "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\n");
  auto smuggled = smuggler.readResponse();
  REQUIRE(smuggled);
  CHECK(smuggled->status == 400);

  Client h2(f.port());
  REQUIRE(h2.ok());
  h2.send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  auto prior = h2.readResponse();
  REQUIRE(prior);
  CHECK(prior->status == 400);
}

TEST_CASE("HttpsServer: a request that trickles in is cut at readTimeout") {
  Fixture f;
  auto o = f.options();
  o.readTimeout = 500ms;
  f.start(o);
  Client client(f.port());
  REQUIRE(client.ok());

  SUBCASE("the first request, timed from accept") {}
  SUBCASE("a later request, timed from its first byte") {
    auto res = roundTrip(client, "/quick");
    REQUIRE(res);
    REQUIRE(res->status == 200);
    std::this_thread::sleep_for(600ms);  // idle longer than readTimeout: idle is not reading
  }

  const std::string slow = request("/slow", std::string(100, 'b'));
  const auto start = Clock::now();
  size_t sent = 0;
  bool answered = false;
  while (sent < slow.size() && since(start) < kPatience) {
    if (!client.send(slow.substr(sent, 1))) {
      break;
    }
    ++sent;
    if (client.readable(200ms)) {
      answered = true;
      break;
    }
  }
  const auto elapsed = since(start);
  CHECK(answered);
  CHECK(sent < slow.size());
  CHECK(elapsed >= 300ms);
  CHECK(elapsed <= 1500ms);
  auto res = client.readResponse();
  REQUIRE(res);
  CHECK(res->status == 408);
  CHECK(client.waitClosed(kPatience));
}

TEST_CASE("HttpsServer: an idle keep-alive connection is closed after idleTimeout") {
  Fixture f;
  auto o = f.options();
  o.idleTimeout = 300ms;
  f.start(o);
  Client client(f.port());
  REQUIRE(client.ok());
  auto res = roundTrip(client, "/x");
  REQUIRE(res);
  const auto start = Clock::now();
  CHECK(client.waitClosed(kPatience));
  CHECK(since(start) >= 200ms);
  CHECK(since(start) <= 1500ms);
}

TEST_CASE("HttpsServer: TLS 1.3 by default, 1.2 only when asked, nothing older") {
  Fixture f;
  const ClientOptions tls12 = versions(TLS1_2_VERSION, TLS1_2_VERSION);

  SUBCASE("minimum 1.3") {
    f.start(f.options());
    Client old(f.port(), tls12);
    CHECK_FALSE(old.ok());

    Client modern(f.port(), versions(TLS1_3_VERSION, 0));
    REQUIRE(modern.ok());
    CHECK(modern.version() == TLS1_3_VERSION);
    auto res = roundTrip(modern, "/x");
    REQUIRE(res);
    CHECK(res->status == 200);
  }
  SUBCASE("minimum 1.2") {
    auto o = f.options();
    o.tlsMinVersion = "1.2";
    f.start(o);
    Client client(f.port(), tls12);
    REQUIRE(client.ok());
    CHECK(client.version() == TLS1_2_VERSION);
    auto res = roundTrip(client, "/x");
    REQUIRE(res);
    CHECK(res->status == 200);

    // The server's cipher order wins, and only forward-secret AEAD suites are on offer.
    ClientOptions prefers256 = tls12;
    prefers256.tls12Ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256";
    Client preferring(f.port(), prefers256);
    REQUIRE(preferring.ok());
    CHECK(preferring.cipher() == "ECDHE-ECDSA-AES128-GCM-SHA256");

    ClientOptions cbcOnly = tls12;
    cbcOnly.tls12Ciphers = "ECDHE-ECDSA-AES128-SHA";
    Client weak(f.port(), cbcOnly);
    CHECK_FALSE(weak.ok());

    Client modern(f.port());
    REQUIRE(modern.ok());
    CHECK(modern.version() == TLS1_3_VERSION);
  }
}

TEST_CASE("HttpsServer: plain HTTP to the TLS port is closed and the server carries on") {
  Fixture f;
  f.start(f.options());
  int fd = connectTcp(f.port());
  REQUIRE(fd >= 0);
  setReceiveTimeout(fd, kPatience);
  const std::string plain = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(::send(fd, plain.data(), plain.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(plain.size()));
  const auto start = Clock::now();
  std::string received;
  char buf[1024];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) {
    received.append(buf, static_cast<size_t>(n));
  }
  const int savedErrno = errno;
  ::close(fd);
  CHECK((n == 0 || savedErrno == ECONNRESET));  // closed, not timed out
  CHECK(since(start) < 2s);
  CHECK(received.find("200") == std::string::npos);

  Client client(f.port());
  REQUIRE(client.ok());
  auto res = roundTrip(client, "/x");
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("HttpsServer: connections beyond maxConnections are closed at once") {
  Fixture f;
  auto o = f.options();
  o.maxConnections = 2;
  f.start(o);

  auto a = std::make_unique<Client>(f.port());
  Client b(f.port());
  REQUIRE(a->ok());
  REQUIRE(b.ok());
  REQUIRE(roundTrip(*a, "/a"));
  REQUIRE(roundTrip(b, "/b"));

  const auto start = Clock::now();
  Client c(f.port());
  CHECK_FALSE(c.ok());
  CHECK(since(start) < 2s);

  // Once a connection goes, there is room again.
  a.reset();
  bool admitted = false;
  while (!admitted && since(start) < kPatience) {
    Client d(f.port());
    if (d.ok()) {
      auto res = roundTrip(d, "/d");
      admitted = res && res->status == 200;
    }
    if (!admitted) {
      std::this_thread::sleep_for(20ms);
    }
  }
  CHECK(admitted);
  auto still = roundTrip(b, "/b");
  REQUIRE(still);
  CHECK(still->status == 200);
}

TEST_CASE("HttpsServer: a changed certificate is used for new connections") {
  Fixture f;
  auto o = f.options();
  o.certCheckInterval = 50ms;
  HttpsServer& server = f.start(o);
  CHECK(server.certificateGeneration() == 0);

  Client before(f.port());
  REQUIRE(before.ok());
  CHECK(before.peerSerial() == 1);
  REQUIRE(roundTrip(before, "/before"));

  auto waitForGeneration = [&](uint64_t generation) {
    const auto start = Clock::now();
    while (server.certificateGeneration() < generation && since(start) < kPatience) {
      std::this_thread::sleep_for(10ms);
    }
    return server.certificateGeneration() == generation;
  };

  // Rewritten in place, certificate first: the server may see the new certificate with the old
  // key for a moment, which must not stop it from loading the pair once both are written.
  PemPair second = makeCertificate(2, "webhook-2");
  writeFile(f.certFile(), second.cert);
  writeFile(f.keyFile(), second.key);
  REQUIRE(waitForGeneration(1));

  Client after(f.port());
  REQUIRE(after.ok());
  CHECK(after.peerSerial() == 2);
  auto res = roundTrip(after, "/after");
  REQUIRE(res);
  CHECK(res->status == 200);

  // The connection from before the reload keeps working.
  auto old = roundTrip(before, "/before-again");
  REQUIRE(old);
  CHECK(old->status == 200);
  CHECK(before.peerSerial() == 1);

  // A broken replacement is refused and the last good pair stays.
  writeFile(f.certFile(), "-----BEGIN CERTIFICATE-----\nnot a certificate\n");
  std::this_thread::sleep_for(10 * o.certCheckInterval);  // several checks
  CHECK(server.certificateGeneration() == 1);
  Client during(f.port());
  REQUIRE(during.ok());
  CHECK(during.peerSerial() == 2);

  // A key that does not match the certificate is refused too.
  PemPair third = makeCertificate(3, "webhook-3");
  writeFile(f.certFile(), third.cert);
  std::this_thread::sleep_for(10 * o.certCheckInterval);
  CHECK(server.certificateGeneration() == 1);
  Client mismatched(f.port());
  REQUIRE(mismatched.ok());
  CHECK(mismatched.peerSerial() == 2);

  // And a good pair after a bad one loads.
  writeFile(f.keyFile(), third.key);
  REQUIRE(waitForGeneration(2));
  Client last(f.port());
  REQUIRE(last.ok());
  CHECK(last.peerSerial() == 3);
}

TEST_CASE("HttpsServer: a handler that throws is a 500 and the connection lives on") {
  Fixture f;
  f.start(f.options(), [](const HttpRequest& req) -> HttpResponse {
    if (req.target == "/throw") {
      throw std::runtime_error("handler bug");
    }
    if (req.target == "/bad-status") {
      return plainResponse(42, "text/plain", "");
    }
    if (req.target == "/header-injection") {
      return plainResponse(200, "text/plain\r\nSet-Cookie: x=y", "");
    }
    return echo(req);
  });
  Client client(f.port());
  REQUIRE(client.ok());
  for (const char* target : {"/throw", "/bad-status", "/header-injection"}) {
    CAPTURE(target);
    auto res = roundTrip(client, target);
    REQUIRE(res);
    CHECK(res->status == 500);
    CHECK(res->body == "internal server error\n");
    CHECK(res->header("set-cookie") == "");
  }
  auto ok = roundTrip(client, "/fine");
  REQUIRE(ok);
  CHECK(ok->status == 200);
}

TEST_CASE("HttpsServer: stop() lets a request in progress finish and closes idle connections") {
  Fixture f;
  std::atomic<bool> entered{false};
  f.start(f.options(), [&](const HttpRequest& req) {
    if (req.target == "/slow") {
      entered = true;
      std::this_thread::sleep_for(300ms);
      return plainResponse(200, "text/plain", "done");
    }
    return echo(req);
  });
  const int port = f.port();

  Client idle(port);
  REQUIRE(idle.ok());
  REQUIRE(roundTrip(idle, "/warm-up"));

  Client busy(port);
  REQUIRE(busy.ok());
  REQUIRE(busy.send(request("/slow")));
  const auto waitStart = Clock::now();
  while (!entered && since(waitStart) < kPatience) {
    std::this_thread::sleep_for(1ms);
  }
  REQUIRE(entered);

  std::chrono::milliseconds stopTook{0};
  std::thread stopper([&] {
    const auto start = Clock::now();
    f.server().stop(10s);
    stopTook = since(start);
  });

  CHECK(idle.waitClosed(kPatience));
  idle.close();
  auto res = busy.readResponse();
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->body == "done");
  CHECK(res->header("connection") == "close");
  CHECK(busy.waitClosed(kPatience));
  busy.close();
  stopper.join();
  CHECK(stopTook < 3s);

  Client refused(port);
  CHECK_FALSE(refused.ok());
}

TEST_CASE("HttpsServer: after closeConnectionsAfterResponses() each answer ends its connection") {
  Fixture f;
  f.start(f.options());
  const int port = f.port();
  // A kept-alive connection, idle when the replica starts terminating.
  Client kept(port);
  REQUIRE(kept.ok());
  REQUIRE(roundTrip(kept, "/warm-up"));

  f.server().closeConnectionsAfterResponses();

  // It is not closed under the client: its next request is answered, and then it closes.
  auto res = roundTrip(kept, "/validate", R"({"late":true})");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->body == "POST /validate application/json\n{\"late\":true}");
  CHECK(res->header("connection") == "close");
  CHECK(kept.waitClosed(kPatience));
  kept.close();

  // New connections are still accepted and answered, each one request long.
  Client fresh(port);
  REQUIRE(fresh.ok());
  auto again = roundTrip(fresh, "/validate");
  REQUIRE(again);
  CHECK(again->status == 200);
  CHECK(again->header("connection") == "close");
  CHECK(fresh.waitClosed(kPatience));
  fresh.close();
}

TEST_CASE("HttpsServer: stop() does not wait past drain for a connection that lingers") {
  Fixture f;
  auto o = f.options();
  o.readTimeout = 30s;
  f.start(o);
  // A request half sent: in progress, so stop() waits for it, but only for `drain`.
  Client partial(f.port());
  REQUIRE(partial.ok());
  REQUIRE(partial.send("POST /x HTTP/1.1\r\nHost: x\r\n"));
  std::this_thread::sleep_for(50ms);
  const auto start = Clock::now();
  f.server().stop(200ms);
  CHECK(since(start) >= 150ms);
  CHECK(since(start) < 2s);
  CHECK(partial.waitClosed(kPatience));
}

TEST_CASE("HttpsServer: abuse leaves no connection behind") {
  Fixture f;
  auto o = f.options();
  o.maxBodyBytes = 1024;
  o.maxHeaderBytes = 1024;
  f.start(o);
  for (int i = 0; i < 20; ++i) {
    {
      Client big(f.port());
      REQUIRE(big.ok());
      big.send(request("/x", std::string(4096, 'x')));
    }
    {
      Client headers(f.port());
      REQUIRE(headers.ok());
      headers.send(request("/x", "", "X-Padding: " + std::string(4096, 'p') + "\r\n"));
    }
    {
      int fd = connectTcp(f.port());
      REQUIRE(fd >= 0);
      (void)::send(fd, "GET / HTTP/1.1\r\n\r\n", 18, MSG_NOSIGNAL);
      ::close(fd);
    }
    {
      Client abandoned(f.port());
      REQUIRE(abandoned.ok());
      abandoned.send("POST /x HTTP/1.1\r\n");
    }
  }
  Client client(f.port());
  REQUIRE(client.ok());
  auto res = roundTrip(client, "/x");
  REQUIRE(res);
  CHECK(res->status == 200);
  client.close();

  const auto start = Clock::now();
  while (gaugeValue("bulkhead_webhook_server_connections") != 0 && since(start) < kPatience) {
    std::this_thread::sleep_for(10ms);
  }
  CHECK(gaugeValue("bulkhead_webhook_server_connections") == 0);
}

TEST_CASE("HttpsServer: start() refuses bad options and a certificate that does not load") {
  Fixture f;
  auto o = f.options();
  o.tlsMinVersion = "1.1";
  CHECK(HttpsServer::start(o, echo).status().code() == StatusCode::kInvalid);

  o = f.options();
  o.keyFile = f.certFile();
  auto mismatched = HttpsServer::start(o, echo);
  CHECK(mismatched.status().code() == StatusCode::kInvalid);

  o = f.options();
  o.certFile = f.certFile() + ".missing";
  CHECK(HttpsServer::start(o, echo).status().code() == StatusCode::kInvalid);

  o = f.options();
  o.bindAddress = "127.0.0.1:99999";
  CHECK(HttpsServer::start(o, echo).status().code() == StatusCode::kInvalid);

  o = f.options();
  CHECK(HttpsServer::start(o, Handler()).status().code() == StatusCode::kInvalid);

  HttpsServer& running = f.start(f.options());
  o = f.options();
  o.bindAddress = "127.0.0.1:" + std::to_string(running.port());
  auto taken = HttpsServer::start(o, echo);
  CHECK(taken.status().code() == StatusCode::kInvalid);
  CHECK(taken.status().message().find("cannot listen") != std::string::npos);
}

}  // namespace
}  // namespace bulkhead::webhooks
