#include "kube/config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/base64.h"

namespace bulkhead::kube {
namespace {

namespace fs = std::filesystem;

StatusOr<std::string> readFile(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return invalidError("cannot read " + std::string(what) + " \"" + path + "\"");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// kubeconfig *-data fields: standard base64, which YAML may fold over several lines.
StatusOr<std::string> decodeData(std::string_view in, const std::string& what) {
  std::string compact;
  for (char c : in) {
    if (c != '\n' && c != '\r' && c != ' ') {
      compact += c;
    }
  }
  auto decoded = base64Decode(compact);
  if (!decoded) {
    return invalidError(what + " is not valid base64");
  }
  return *decoded;
}

std::string resolve(const std::string& path, const std::string& baseDir) {
  if (path.empty() || fs::path(path).is_absolute() || baseDir.empty()) {
    return path;
  }
  return (fs::path(baseDir) / path).string();
}

// Reads "<key>-data" (base64) or "<key>" (a file path) from `node` into `out`.
Status dataOrFile(const YAML::Node& node, const std::string& key, const std::string& baseDir,
                  std::string* out) {
  if (auto data = node[key + "-data"]; data && !data.as<std::string>().empty()) {
    ASSIGN_OR_RETURN(*out, decodeData(data.as<std::string>(), key + "-data"));
    return okStatus();
  }
  if (auto file = node[key]; file && !file.as<std::string>().empty()) {
    ASSIGN_OR_RETURN(*out, readFile(resolve(file.as<std::string>(), baseDir), key));
  }
  return okStatus();
}

YAML::Node findNamed(const YAML::Node& list, const std::string& name, const char* field) {
  if (!list || !list.IsSequence()) {
    return YAML::Node();
  }
  for (const auto& entry : list) {
    if (entry["name"] && entry["name"].as<std::string>() == name) {
      return entry[field];
    }
  }
  return YAML::Node();
}

StatusOr<RestConfig> parseKubeconfigNode(const YAML::Node& root, const std::string& baseDir,
                                         bool allowInsecure) {
  std::string context = root["current-context"] ? root["current-context"].as<std::string>() : "";
  if (context.empty()) {
    return invalidError("kubeconfig has no current-context");
  }
  YAML::Node ctx = findNamed(root["contexts"], context, "context");
  if (!ctx.IsMap()) {
    return invalidError("kubeconfig context \"" + context + "\" is not defined");
  }
  std::string clusterName = ctx["cluster"] ? ctx["cluster"].as<std::string>() : "";
  std::string userName = ctx["user"] ? ctx["user"].as<std::string>() : "";
  YAML::Node cluster = findNamed(root["clusters"], clusterName, "cluster");
  if (!cluster.IsMap()) {
    return invalidError("kubeconfig cluster \"" + clusterName + "\" of context \"" + context +
                        "\" is not defined");
  }
  RestConfig config;
  config.server = cluster["server"] ? cluster["server"].as<std::string>() : "";
  if (config.server.empty()) {
    return invalidError("kubeconfig cluster \"" + clusterName + "\" has no server");
  }
  if (!config.server.starts_with("https://")) {
    return invalidError("kubeconfig cluster \"" + clusterName + "\" server \"" + config.server +
                        "\" is not https://");
  }
  RETURN_IF_ERROR(dataOrFile(cluster, "certificate-authority", baseDir, &config.caPem));
  config.insecureSkipTlsVerify =
      cluster["insecure-skip-tls-verify"] && cluster["insecure-skip-tls-verify"].as<bool>();
  if (config.insecureSkipTlsVerify && !allowInsecure) {
    return invalidError("kubeconfig cluster \"" + clusterName +
                        "\" sets insecure-skip-tls-verify; refusing to talk to an unverified API "
                        "server (pass --allow-insecure-kubeconfig to accept)");
  }
  if (cluster["tls-server-name"] || cluster["proxy-url"]) {
    return invalidError("kubeconfig cluster \"" + clusterName +
                        "\" sets tls-server-name or proxy-url, which bulkhead does not support");
  }
  if (ctx["namespace"]) {
    config.defaultNamespace = ctx["namespace"].as<std::string>();
  }
  if (!userName.empty()) {
    YAML::Node user = findNamed(root["users"], userName, "user");
    if (!user.IsMap()) {
      return invalidError("kubeconfig user \"" + userName + "\" is not defined");
    }
    if (user["exec"] || user["auth-provider"]) {
      return invalidError("kubeconfig user \"" + userName +
                          "\" uses an exec or auth-provider plugin, which bulkhead does not run; "
                          "use a client certificate or a token");
    }
    RETURN_IF_ERROR(dataOrFile(user, "client-certificate", baseDir, &config.clientCertPem));
    RETURN_IF_ERROR(dataOrFile(user, "client-key", baseDir, &config.clientKeyPem));
    if (config.clientCertPem.empty() != config.clientKeyPem.empty()) {
      return invalidError("kubeconfig user \"" + userName +
                          "\" needs both a client certificate and a client key");
    }
    if (user["token"]) {
      config.bearerToken = user["token"].as<std::string>();
    }
    if (user["tokenFile"]) {
      config.tokenFile = resolve(user["tokenFile"].as<std::string>(), baseDir);
    }
  }
  return config;
}

}  // namespace

StatusOr<RestConfig> parseKubeconfig(const std::string& yaml, const std::string& baseDir,
                                     bool allowInsecure) {
  try {
    YAML::Node root = YAML::Load(yaml);
    if (!root.IsMap()) {
      return invalidError("kubeconfig is not a YAML mapping");
    }
    return parseKubeconfigNode(root, baseDir, allowInsecure);
  } catch (const YAML::Exception& e) {
    return invalidError(std::string("kubeconfig is not valid YAML: ") + e.what());
  }
}

StatusOr<RestConfig> inClusterConfig(const std::string& serviceAccountDir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || port == nullptr || *host == '\0' || *port == '\0') {
    return notFoundError("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set");
  }
  RestConfig config;
  std::string h = host;
  if (h.find(':') != std::string::npos) {
    h = "[" + h + "]";  // IPv6 literal
  }
  config.server = "https://" + h + ":" + port;
  config.tokenFile = serviceAccountDir + "/token";
  ASSIGN_OR_RETURN(config.caPem, readFile(serviceAccountDir + "/ca.crt", "service-account CA"));
  RETURN_IF_ERROR(currentBearerToken(config).status());
  if (auto ns = readFile(serviceAccountDir + "/namespace", "namespace"); ns.ok()) {
    std::string n = *ns;
    while (!n.empty() && (n.back() == '\n' || n.back() == ' ')) {
      n.pop_back();
    }
    if (!n.empty()) {
      config.defaultNamespace = n;
    }
  }
  config.source = "in-cluster service account (" + serviceAccountDir + ")";
  return config;
}

StatusOr<RestConfig> loadRestConfig(const LoadOptions& options) {
  auto fromFile = [&](const std::string& path) -> StatusOr<RestConfig> {
    ASSIGN_OR_RETURN(std::string yaml, readFile(path, "kubeconfig"));
    auto config = parseKubeconfig(yaml, fs::path(path).parent_path().string(),
                                  options.allowInsecure);
    if (!config.ok()) {
      return config.status().withContext(path);
    }
    config->source = "kubeconfig " + path;
    return config;
  };
  std::vector<std::string> tried;
  if (!options.kubeconfigFlag.empty()) {
    return fromFile(options.kubeconfigFlag);
  }
  if (const char* env = std::getenv("KUBECONFIG"); env != nullptr && *env != '\0') {
    std::stringstream list(env);
    std::string path;
    while (std::getline(list, path, ':')) {
      if (!path.empty() && fs::exists(path)) {
        return fromFile(path);
      }
    }
    tried.push_back("$KUBECONFIG (" + std::string(env) + ": no such file)");
  } else {
    tried.push_back("$KUBECONFIG (unset)");
  }
  auto inCluster = inClusterConfig(options.serviceAccountDir);
  if (inCluster.ok() || inCluster.status().code() != StatusCode::kNotFound) {
    return inCluster;
  }
  tried.push_back("in-cluster (" + inCluster.status().message() + ")");
  if (const char* home = std::getenv("HOME"); home != nullptr) {
    std::string path = std::string(home) + "/.kube/config";
    if (fs::exists(path)) {
      return fromFile(path);
    }
    tried.push_back(path + " (no such file)");
  }
  std::string msg = "no Kubernetes configuration found; tried --kubeconfig (unset)";
  for (const auto& t : tried) {
    msg += ", " + t;
  }
  return invalidError(msg);
}

StatusOr<std::string> currentBearerToken(const RestConfig& config) {
  if (config.tokenFile.empty()) {
    return config.bearerToken;
  }
  ASSIGN_OR_RETURN(std::string token, readFile(config.tokenFile, "token file"));
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
    token.pop_back();
  }
  if (token.empty()) {
    return Status(StatusCode::kUnauthorized, "token file \"" + config.tokenFile + "\" is empty");
  }
  return token;
}

}  // namespace bulkhead::kube
