#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <string>

#include "common/status.h"

// Private to webhooks/: Boost.Asio stays out of the component's public headers.
namespace bulkhead::webhooks::internal {

// "host:port", ":port" (all IPv4 interfaces) or "[v6addr]:port" as a TCP endpoint; port 0 asks
// for a free one. Anything else, a port out of range included, is an Invalid error.
StatusOr<boost::asio::ip::tcp::endpoint> parseBindAddress(const std::string& bindAddress);

}  // namespace bulkhead::webhooks::internal
