#include "webhooks/certs.h"

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <memory>

#include "webhooks/internal/openssl_error.h"

namespace bulkhead::webhooks {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;

Status opensslError(const std::string& what) {
  return internalError(what + ": " + internal::takeOpenSslError());
}

std::string toPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string toPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

X509Ptr readCert(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

PkeyPtr readKey(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return PkeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

Status addExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) {
    return opensslError("certificate extension " + value);
  }
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return okStatus();
}

// A new certificate for `key`, with a random serial and the validity window, not yet signed.
StatusOr<X509Ptr> newCertificate(EVP_PKEY* key, const std::string& commonName, TimePoint now,
                                 std::chrono::seconds validity) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) {
    return opensslError("random serial");
  }
  serial[0] &= 0x7F;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  std::time_t start = std::chrono::system_clock::to_time_t(now - std::chrono::hours(1));
  std::time_t end = std::chrono::system_clock::to_time_t(now + validity);
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), start);
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), end);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(commonName.c_str()), -1, -1, 0);
  return cert;
}

StatusOr<PkeyPtr> newKey() {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) {
    return opensslError("generating an ECDSA P-256 key");
  }
  return key;
}

}  // namespace

StatusOr<KeyPair> makeCa(const std::string& commonName, TimePoint now,
                         std::chrono::seconds validity) {
  ASSIGN_OR_RETURN(PkeyPtr key, newKey());
  ASSIGN_OR_RETURN(X509Ptr cert, newCertificate(key.get(), commonName, now, validity));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  RETURN_IF_ERROR(addExtension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE"));
  RETURN_IF_ERROR(addExtension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
  RETURN_IF_ERROR(addExtension(cert.get(), cert.get(), NID_subject_key_identifier, "hash"));
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) {
    return opensslError("signing the CA certificate");
  }
  return KeyPair{toPem(cert.get()), toPem(key.get())};
}

StatusOr<KeyPair> issueServingCertificate(const KeyPair& ca, const std::vector<std::string>& dnsNames,
                                          const std::vector<std::string>& ipAddresses,
                                          TimePoint now, std::chrono::seconds validity) {
  if (dnsNames.empty() && ipAddresses.empty()) {
    return invalidError("a serving certificate needs at least one DNS name or IP address");
  }
  X509Ptr caCert = readCert(ca.certPem);
  PkeyPtr caKey = readKey(ca.keyPem);
  if (!caCert || !caKey) {
    return opensslError("reading the CA");
  }
  ASSIGN_OR_RETURN(PkeyPtr key, newKey());
  std::string cn = dnsNames.empty() ? ipAddresses.front() : dnsNames.front();
  ASSIGN_OR_RETURN(X509Ptr cert, newCertificate(key.get(), cn, now, validity));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(caCert.get()));
  std::string san;
  for (const auto& d : dnsNames) {
    san += (san.empty() ? "DNS:" : ",DNS:") + d;
  }
  for (const auto& ip : ipAddresses) {
    san += (san.empty() ? "IP:" : ",IP:") + ip;
  }
  RETURN_IF_ERROR(addExtension(cert.get(), caCert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  RETURN_IF_ERROR(
      addExtension(cert.get(), caCert.get(), NID_key_usage, "critical,digitalSignature"));
  RETURN_IF_ERROR(addExtension(cert.get(), caCert.get(), NID_ext_key_usage, "serverAuth"));
  RETURN_IF_ERROR(addExtension(cert.get(), caCert.get(), NID_subject_alt_name, san));
  RETURN_IF_ERROR(addExtension(cert.get(), caCert.get(), NID_authority_key_identifier,
                               "keyid:always"));
  if (X509_sign(cert.get(), caKey.get(), EVP_sha256()) == 0) {
    return opensslError("signing the serving certificate");
  }
  return KeyPair{toPem(cert.get()), toPem(key.get())};
}

StatusOr<TimePoint> certificateNotAfter(const std::string& pem) {
  X509Ptr cert = readCert(pem);
  if (!cert) {
    ERR_clear_error();
    return invalidError("not a PEM certificate");
  }
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert.get()), &tm) != 1) {
    return opensslError("reading notAfter");
  }
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

StatusOr<std::vector<std::string>> certificateHosts(const std::string& pem) {
  X509Ptr cert = readCert(pem);
  if (!cert) {
    ERR_clear_error();
    return invalidError("not a PEM certificate");
  }
  std::vector<std::string> hosts;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type == GEN_DNS) {
      const ASN1_IA5STRING* dns = name->d.dNSName;
      hosts.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                         static_cast<size_t>(ASN1_STRING_length(dns)));
    } else if (name->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = name->d.iPAddress;
      char text[INET6_ADDRSTRLEN] = {};
      const int family = ASN1_STRING_length(ip) == 4 ? AF_INET : AF_INET6;
      if (inet_ntop(family, ASN1_STRING_get0_data(ip), text, sizeof text) != nullptr) {
        hosts.emplace_back(text);
      }
    }
  }
  GENERAL_NAMES_free(names);
  std::sort(hosts.begin(), hosts.end());
  return hosts;
}

std::vector<std::string> splitPemCertificates(const std::string& bundle) {
  static constexpr std::string_view kBegin = "-----BEGIN CERTIFICATE-----";
  static constexpr std::string_view kEnd = "-----END CERTIFICATE-----";
  std::vector<std::string> blocks;
  size_t at = 0;
  while ((at = bundle.find(kBegin, at)) != std::string::npos) {
    const size_t end = bundle.find(kEnd, at);
    if (end == std::string::npos) {
      break;
    }
    blocks.push_back(bundle.substr(at, end + kEnd.size() - at) + "\n");
    at = end + kEnd.size();
  }
  return blocks;
}

Status verifyKeyPair(const std::string& certPem, const std::string& keyPem) {
  X509Ptr cert = readCert(certPem);
  PkeyPtr key = readKey(keyPem);
  if (!cert || !key) {
    ERR_clear_error();
    return invalidError("unreadable certificate or key");
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return invalidError("the key does not belong to the certificate");
  }
  return okStatus();
}

bool isIpAddress(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

StatusOr<std::vector<std::string>> canonicalHosts(const std::vector<std::string>& hosts) {
  std::vector<std::string> out;
  for (const auto& raw : hosts) {
    const auto first = raw.find_first_not_of(" \t");
    const auto last = raw.find_last_not_of(" \t");
    std::string host = first == std::string::npos ? "" : raw.substr(first, last - first + 1);
    unsigned char buf[16];
    char text[INET6_ADDRSTRLEN] = {};
    if (inet_pton(AF_INET, host.c_str(), buf) == 1) {
      out.emplace_back(inet_ntop(AF_INET, buf, text, sizeof text));
      continue;
    }
    if (inet_pton(AF_INET6, host.c_str(), buf) == 1) {
      out.emplace_back(inet_ntop(AF_INET6, buf, text, sizeof text));
      continue;
    }
    std::transform(host.begin(), host.end(), host.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    const bool dnsName =
        !host.empty() && host.size() <= 253 && host.front() != '.' && host.back() != '.' &&
        host.find("..") == std::string::npos &&
        std::all_of(host.begin(), host.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '*';
        });
    if (!dnsName) {
      return invalidError("\"" + raw + "\" is neither a DNS name nor an IP address");
    }
    out.push_back(std::move(host));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Status verifyServingCertificate(const std::string& certPem, const std::string& keyPem,
                                const std::string& caBundlePem, std::optional<TimePoint> now) {
  RETURN_IF_ERROR(verifyKeyPair(certPem, keyPem));
  X509Ptr cert = readCert(certPem);
  StorePtr store(X509_STORE_new());
  BioPtr bio(BIO_new_mem_buf(caBundlePem.data(), static_cast<int>(caBundlePem.size())));
  int cas = 0;
  while (X509* ca = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(store.get(), ca);
    X509_free(ca);
    ++cas;
  }
  ERR_clear_error();
  if (cas == 0) {
    return invalidError("the CA bundle holds no certificate");
  }
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr);
  if (now) {
    X509_STORE_CTX_set_time(ctx.get(), 0, std::chrono::system_clock::to_time_t(*now));
  } else {
    X509_STORE_CTX_set_flags(ctx.get(), X509_V_FLAG_NO_CHECK_TIME);
  }
  if (X509_verify_cert(ctx.get()) != 1) {
    return invalidError(std::string("certificate does not verify: ") +
                        X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())));
  }
  return okStatus();
}

}  // namespace bulkhead::webhooks
