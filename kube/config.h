#pragma once

#include <string>

#include "common/status.h"

namespace bulkhead::kube {

// How to reach and authenticate to one API server. Credentials are held as PEM text; a token
// file is kept as a path and re-read for every request, so rotated tokens keep working.
struct RestConfig {
  std::string server;  // "https://10.0.0.1:443"
  std::string caPem;   // trusted roots; empty means the system's
  std::string clientCertPem;
  std::string clientKeyPem;
  std::string bearerToken;  // a static token
  std::string tokenFile;    // read before each request; wins over bearerToken
  bool insecureSkipTlsVerify = false;
  std::string defaultNamespace = "default";
  std::string source;  // where the configuration came from, for messages
  double qps = 50;
  int burst = 100;
  std::string userAgent = "bulkhead";
};

struct LoadOptions {
  std::string kubeconfigFlag;  // --kubeconfig
  // Where the in-cluster service-account files live (token, ca.crt, namespace).
  std::string serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";
  // `insecure-skip-tls-verify: true` in a kubeconfig is refused unless this is set.
  bool allowInsecure = false;
};

// Finds the configuration the way kubectl and client-go do, first match wins: the --kubeconfig
// flag, $KUBECONFIG (first existing file of the list), in-cluster service-account credentials
// ($KUBERNETES_SERVICE_HOST/PORT), ~/.kube/config. A clear Invalid error names everything tried.
StatusOr<RestConfig> loadRestConfig(const LoadOptions& options);

// Parses a kubeconfig's current context. Relative file paths resolve against `baseDir`.
// Exec and auth-provider plugins are refused with a clear error.
StatusOr<RestConfig> parseKubeconfig(const std::string& yaml, const std::string& baseDir,
                                     bool allowInsecure);

// In-cluster configuration from the environment and `serviceAccountDir`.
StatusOr<RestConfig> inClusterConfig(const std::string& serviceAccountDir);

// The token to send now: the token file's current content when set, else the static token.
StatusOr<std::string> currentBearerToken(const RestConfig& config);

}  // namespace bulkhead::kube
