#pragma once

#include <string>

// Private to webhooks/.
namespace bulkhead::webhooks::internal {

// The first OpenSSL error on this thread's queue as text ("unknown OpenSSL error" when the queue
// is empty), and clears the queue so a later failure does not report this one.
std::string takeOpenSslError();

}  // namespace bulkhead::webhooks::internal
