// Proves that the control plane the integration tests run against is real: the API server stores
// objects, enforces Istio's own CRD schemas, and calls an admission webhook over HTTPS by URL.
#include <doctest/doctest.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <mutex>
#include <vector>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/support/control_plane.h"

namespace bulkhead::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;

// A minimal HTTPS admission responder that denies everything it is asked about and counts the
// reviews it saw. Test scaffolding only; the product's webhook server lives in webhooks/.
class DenyAllResponder {
 public:
  explicit DenyAllResponder(const std::string& certDir) : ssl_(asio::ssl::context::tls_server) {
    ssl_.use_certificate_chain_file(certDir + "/tls.crt");
    ssl_.use_private_key_file(certDir + "/tls.key", asio::ssl::context::pem);
    acceptor_.open(tcp::v4());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    thread_ = std::thread([this] { acceptLoop(); });
  }
  ~DenyAllResponder() {
    // shutdown(2) wakes the threads blocked in accept() and read(); then all of them are joined.
    stopping_ = true;
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    thread_.join();
    std::lock_guard lock(mu_);
    for (int fd : fds_) {
      ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : connections_) {
      t.join();
    }
  }
  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  int reviews() const { return reviews_; }

 private:
  void acceptLoop() {
    while (!stopping_) {
      tcp::socket socket(io_);
      beast::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec) {
        return;
      }
      std::lock_guard lock(mu_);
      fds_.push_back(socket.native_handle());
      connections_.emplace_back([this, s = std::move(socket)]() mutable { serve(std::move(s)); });
    }
  }

  void serve(tcp::socket socket) {
    beast::ssl_stream<tcp::socket> stream(std::move(socket), ssl_);
    beast::error_code ec;
    stream.handshake(asio::ssl::stream_base::server, ec);
    beast::flat_buffer buffer;
    while (!ec) {
      http::request<http::string_body> req;
      http::read(stream, buffer, req, ec);
      if (ec) {
        return;
      }
      json review = json::parse(req.body(), nullptr, false);
      std::string uid = review.is_discarded() ? "" : review["request"].value("uid", "");
      ++reviews_;
      json out = {{"apiVersion", "admission.k8s.io/v1"},
                  {"kind", "AdmissionReview"},
                  {"response",
                   {{"uid", uid},
                    {"allowed", false},
                    {"status", {{"code", 403}, {"message", "denied by the test responder"}}}}}};
      http::response<http::string_body> res{http::status::ok, req.version()};
      res.set(http::field::content_type, "application/json");
      res.keep_alive(req.keep_alive());
      res.body() = out.dump();
      res.prepare_payload();
      http::write(stream, res, ec);
    }
  }

  asio::io_context io_;
  asio::ssl::context ssl_;
  tcp::acceptor acceptor_{io_};
  std::thread thread_;
  std::mutex mu_;
  std::vector<int> fds_;                   // guarded by mu_
  std::vector<std::thread> connections_;  // guarded by mu_
  std::atomic<bool> stopping_{false};
  std::atomic<int> reviews_{0};
};

TEST_CASE("the API server stores and returns a namespace and a NetworkPolicy") {
  auto& cp = ControlPlane::get();
  REQUIRE(cp.kubectl({"create", "namespace", "cp-store"}).exitCode == 0);
  const std::string policy = R"({
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "deny", "namespace": "cp-store"},
    "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}})";
  auto created = cp.kubectl({"create", "-f", "-"}, policy);
  REQUIRE_MESSAGE(created.exitCode == 0, created.err);

  auto got = cp.kubectl({"get", "networkpolicy", "deny", "-n", "cp-store", "-o", "json"});
  REQUIRE(got.exitCode == 0);
  json np = json::parse(got.out);
  CHECK(np["metadata"]["namespace"] == "cp-store");
  CHECK(np["spec"]["policyTypes"] == json::array({"Ingress", "Egress"}));
  CHECK(np["spec"]["podSelector"] == json::object());

  auto ns = json::parse(cp.kubectl({"get", "namespace", "cp-store", "-o", "json"}).out);
  // The API server itself sets this label; generated peers rely on it.
  CHECK(ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "cp-store");
}

TEST_CASE("Istio's own CRD schema accepts a valid PeerAuthentication and rejects an invalid one") {
  auto& cp = ControlPlane::get();
  auto applied = cp.kubectl({"apply", "--server-side", "-f", cp.istioCrds()});
  REQUIRE_MESSAGE(applied.exitCode == 0, applied.err);
  auto established = cp.kubectl({"wait", "--for", "condition=established", "--timeout=60s",
                                 "crd/peerauthentications.security.istio.io"});
  REQUIRE_MESSAGE(established.exitCode == 0, established.err);
  REQUIRE(cp.kubectl({"create", "namespace", "cp-istio"}).exitCode == 0);

  auto valid = cp.kubectl({"create", "-f", "-"}, R"({
    "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
    "metadata": {"name": "strict", "namespace": "cp-istio"},
    "spec": {"mtls": {"mode": "STRICT"}}})");
  CHECK_MESSAGE(valid.exitCode == 0, valid.err);

  auto invalid = cp.kubectl({"create", "-f", "-"}, R"({
    "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
    "metadata": {"name": "sometimes", "namespace": "cp-istio"},
    "spec": {"mtls": {"mode": "SOMETIMES"}}})");
  CHECK(invalid.exitCode != 0);
  CHECK(invalid.err.find("spec.mtls.mode: Unsupported value: \"SOMETIMES\"") != std::string::npos);
  CHECK(cp.kubectl({"get", "peerauthentication", "sometimes", "-n", "cp-istio"}).exitCode != 0);
}

TEST_CASE("the API server calls a webhook registered by URL and honours its denial") {
  auto& cp = ControlPlane::get();
  const std::string certDir = cp.dir() + "/responder";
  auto certs = shell("set -e; mkdir -p '" + certDir + "'; cd '" + certDir + "'\n"
                     "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                     "-subj /CN=responder -days 1 -addext subjectAltName=IP:127.0.0.1 "
                     "-keyout tls.key -out tls.crt 2>/dev/null");
  REQUIRE_MESSAGE(certs.exitCode == 0, certs.err);
  DenyAllResponder responder(certDir);

  std::string caBundle = shell("base64 -w0 '" + certDir + "/tls.crt'").out;
  json config = {
      {"apiVersion", "admissionregistration.k8s.io/v1"},
      {"kind", "ValidatingWebhookConfiguration"},
      {"metadata", {{"name", "cp-deny-pods"}}},
      {"webhooks",
       {{{"name", "deny.cp.bulkhead.dev"},
         {"clientConfig",
          {{"url", "https://127.0.0.1:" + std::to_string(responder.port()) + "/validate"},
           {"caBundle", caBundle}}},
         {"rules",
          {{{"apiGroups", {""}},
            {"apiVersions", {"v1"}},
            {"operations", {"CREATE"}},
            {"resources", {"pods"}}}}},
         {"namespaceSelector",
          {{"matchLabels", {{"kubernetes.io/metadata.name", "cp-webhook"}}}}},
         {"failurePolicy", "Fail"},
         {"sideEffects", "None"},
         {"admissionReviewVersions", {"v1"}},
         {"timeoutSeconds", 3}}}}};
  REQUIRE(cp.kubectl({"create", "namespace", "cp-webhook"}).exitCode == 0);
  auto registered = cp.kubectl({"create", "-f", "-"}, config.dump());
  REQUIRE_MESSAGE(registered.exitCode == 0, registered.err);

  const std::string pod = R"({"apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "p", "namespace": "cp-webhook"},
    "spec": {"containers": [{"name": "c", "image": "busybox"}]}})";
  // The API server picks up new webhook configurations after a short delay: probe, do not sleep.
  ProcessResult denied;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  do {
    denied = cp.kubectl({"create", "--dry-run=server", "-f", "-"}, pod);
  } while (denied.exitCode == 0 && std::chrono::steady_clock::now() < deadline);
  CHECK(denied.exitCode != 0);

  auto real = cp.kubectl({"create", "-f", "-"}, pod);
  CHECK(real.exitCode != 0);
  CHECK(real.err.find("admission webhook \"deny.cp.bulkhead.dev\" denied the request: denied by "
                      "the test responder") != std::string::npos);
  CHECK(cp.kubectl({"get", "pod", "p", "-n", "cp-webhook"}).exitCode != 0);
  CHECK(responder.reviews() >= 2);
  cp.kubectl({"delete", "validatingwebhookconfiguration", "cp-deny-pods"});
}

}  // namespace
}  // namespace bulkhead::testing
