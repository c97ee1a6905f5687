#pragma once

#include <memory>

#include "common/clock.h"
#include "kube/client.h"
#include "kube/config.h"

namespace bulkhead::kube {

// cpprestsdk prepares every new connection's TLS context with OpenSSL's default verify paths
// (the system's CA bundle, ~140 certificates parsed: tens of milliseconds of CPU per connection)
// before the context callback replaces that store with the cluster's CA. When `config` has a
// cluster CA, this points OpenSSL's defaults at nothing, so the discarded load costs nothing.
// Process-wide (it sets SSL_CERT_FILE and SSL_CERT_DIR): call it once at startup, before any
// thread starts, and only in a process whose TLS clients all bring their own CA.
void skipDefaultVerifyPaths(const RestConfig& config);

// The Client over HTTPS (cpprestsdk behind a pimpl: its headers stay in client_impl.cc).
class ClientImpl : public Client {
 public:
  // Fails when the configuration's certificates or keys cannot be loaded.
  static StatusOr<std::shared_ptr<ClientImpl>> create(RestConfig config, ClockPtr clock);
  ~ClientImpl() override;

  StatusOr<json> get(const ResourceType& type, const std::string& ns,
                     const std::string& name) override;
  StatusOr<ListResult> list(const ResourceType& type, const std::string& ns,
                            const ListOptions& options) override;
  StatusOr<json> create(const ResourceType& type, const json& object) override;
  StatusOr<json> update(const ResourceType& type, const json& object) override;
  StatusOr<json> updateStatus(const ResourceType& type, const json& object) override;
  Status remove(const ResourceType& type, const std::string& ns, const std::string& name,
                const DeleteOptions& options) override;
  StatusOr<json> mergePatch(const ResourceType& type, const std::string& ns,
                            const std::string& name, const json& patch,
                            const std::string& subresource) override;
  StatusOr<json> apply(const ResourceType& type, const json& object,
                       const std::string& fieldManager, bool force,
                       const std::string& subresource) override;
  StatusOr<WatchStreamPtr> watch(const ResourceType& type, const std::string& ns,
                                 const WatchOptions& options) override;
  StatusOr<bool> isServed(const std::string& group, const std::string& version,
                          const std::string& resource) override;
  StatusOr<json> raw(const std::string& method, const std::string& pathAndQuery,
                     const std::string& body, const std::string& contentType) override;

  const RestConfig& config() const;

 private:
  class Impl;
  explicit ClientImpl(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace bulkhead::kube
