#include "webhooks/metrics_server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <thread>

#include "common/log.h"
#include "common/metrics.h"
#include "webhooks/internal/bind_address.h"

namespace bulkhead::webhooks {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

}  // namespace

class MetricsServer::Impl {
 public:
  Impl(tcp::endpoint endpoint, std::function<bool()> ready)
      : acceptor_(io_), ready_(std::move(ready)) {
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen();
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~Impl() { stop(); }

  void stop() {
    asio::post(io_, [this] {
      beast::error_code ec;
      acceptor_.close(ec);
      io_.stop();
    });
    if (thread_.joinable()) {
      thread_.join();
    }
  }

  int port() const { return acceptor_.local_endpoint().port(); }

 private:
  struct Session : std::enable_shared_from_this<Session> {
    Session(tcp::socket s, Impl* o) : stream(std::move(s)), owner(o) {}
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    http::response<http::string_body> res;
    Impl* owner;

    void read() {
      req = {};
      stream.expires_after(std::chrono::seconds(10));
      http::async_read(stream, buffer, req,
                       [self = shared_from_this()](beast::error_code ec, size_t) {
                         if (!ec) {
                           self->respond();
                         }
                       });
    }
    void respond() {
      res = {};
      res.version(req.version());
      res.keep_alive(req.keep_alive());
      std::string target(req.target());
      target = target.substr(0, target.find('?'));
      if (req.method() != http::verb::get && req.method() != http::verb::head) {
        res.result(http::status::method_not_allowed);
        res.body() = "method not allowed\n";
      } else if (target == "/metrics") {
        res.result(http::status::ok);
        res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        res.body() = metrics::defaultRegistry().exposition();
      } else if (target == "/healthz" || target == "/livez") {
        res.result(http::status::ok);
        res.body() = "ok\n";
      } else if (target == "/readyz") {
        bool ready = owner->ready_ ? owner->ready_() : true;
        res.result(ready ? http::status::ok : http::status::service_unavailable);
        res.body() = ready ? "ok\n" : "not ready\n";
      } else {
        res.result(http::status::not_found);
        res.body() = "not found\n";
      }
      if (res.find(http::field::content_type) == res.end()) {
        res.set(http::field::content_type, "text/plain; charset=utf-8");
      }
      res.prepare_payload();
      http::async_write(stream, res, [self = shared_from_this()](beast::error_code ec, size_t) {
        if (ec || !self->res.keep_alive()) {
          beast::error_code ignored;
          self->stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
          return;
        }
        self->read();
      });
    }
  };

  void accept() {
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec != asio::error::operation_aborted) {
          log::warn("metrics server accept failed", {{"error", ec.message()}});
          accept();
        }
        return;
      }
      std::make_shared<Session>(std::move(socket), this)->read();
      accept();
    });
  }

  asio::io_context io_{1};
  tcp::acceptor acceptor_;
  std::function<bool()> ready_;
  std::thread thread_;
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MetricsServer::~MetricsServer() = default;
int MetricsServer::port() const { return impl_->port(); }
void MetricsServer::stop() { impl_->stop(); }

StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& bindAddress,
                                                               std::function<bool()> ready) {
  ASSIGN_OR_RETURN(tcp::endpoint endpoint, internal::parseBindAddress(bindAddress));
  try {
    auto impl = std::make_unique<Impl>(endpoint, std::move(ready));
    return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
  } catch (const std::exception& e) {
    return invalidError("cannot listen on " + bindAddress + ": " + e.what());
  }
}

}  // namespace bulkhead::webhooks
