#include "webhooks/internal/bind_address.h"

#include <charconv>

namespace bulkhead::webhooks::internal {

StatusOr<boost::asio::ip::tcp::endpoint> parseBindAddress(const std::string& bindAddress) {
  auto colon = bindAddress.rfind(':');
  if (colon == std::string::npos) {
    return invalidError("bind address \"" + bindAddress + "\" is not host:port");
  }
  std::string host = bindAddress.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string portText = bindAddress.substr(colon + 1);
  unsigned port = 0;
  auto [end, err] = std::from_chars(portText.data(), portText.data() + portText.size(), port);
  if (portText.empty() || err != std::errc() || end != portText.data() + portText.size() ||
      port > 65535) {
    return invalidError("bind address \"" + bindAddress + "\" has no valid port");
  }
  boost::system::error_code ec;
  boost::asio::ip::address addr =
      host.empty() ? boost::asio::ip::address(boost::asio::ip::address_v4::any())
                   : boost::asio::ip::make_address(host, ec);
  if (ec) {
    return invalidError("bind address \"" + bindAddress + "\": " + ec.message());
  }
  return boost::asio::ip::tcp::endpoint(addr, static_cast<unsigned short>(port));
}

}  // namespace bulkhead::webhooks::internal
