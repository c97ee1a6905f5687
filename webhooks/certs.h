#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

// Certificates for the webhook's own TLS: a private CA and serving certificates it signs
// (ECDSA P-256, SHA-256). Time is a parameter, so rotation logic is testable.
namespace bulkhead::webhooks {

using TimePoint = std::chrono::system_clock::time_point;

struct KeyPair {
  std::string certPem;
  std::string keyPem;
};

// A self-signed CA certificate valid from `now` (minus an hour for clocks that lag) until
// `now + validity`. Certificates below are backdated the same way.
StatusOr<KeyPair> makeCa(const std::string& commonName, TimePoint now,
                         std::chrono::seconds validity);

// A serving certificate signed by `ca` for the given DNS names and IP addresses (at least one),
// with extendedKeyUsage serverAuth.
StatusOr<KeyPair> issueServingCertificate(const KeyPair& ca, const std::vector<std::string>& dnsNames,
                                          const std::vector<std::string>& ipAddresses,
                                          TimePoint now, std::chrono::seconds validity);

// The notAfter time of the first certificate in `pem`.
StatusOr<TimePoint> certificateNotAfter(const std::string& pem);

// The subject alternative names (DNS names and IP addresses, as text) of the first certificate in
// `pem`, sorted.
StatusOr<std::vector<std::string>> certificateHosts(const std::string& pem);

// The PEM certificates in a bundle, each as its own PEM block ending in a newline; anything
// between blocks is dropped.
std::vector<std::string> splitPemCertificates(const std::string& bundle);

// Does `certPem` chain to one of the CA certificates in `caBundlePem` and match `keyPem`, at
// `now`? Without a time, validity periods are not checked.
Status verifyServingCertificate(const std::string& certPem, const std::string& keyPem,
                                const std::string& caBundlePem, std::optional<TimePoint> now);

// Does the private key in `keyPem` belong to the certificate in `certPem`?
Status verifyKeyPair(const std::string& certPem, const std::string& keyPem);

// Host names and IP addresses as a certificate holds them: trimmed, DNS names lowercased, IP
// addresses in canonical text (IPv6 compressed), sorted, without duplicates. An empty entry or
// one that is neither a DNS name nor an IP address is an Invalid error.
StatusOr<std::vector<std::string>> canonicalHosts(const std::vector<std::string>& hosts);

bool isIpAddress(const std::string& host);

}  // namespace bulkhead::webhooks
