#include "kube/config.h"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace bulkhead::kube {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/bulkhead-config-test.XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string& name, const std::string& content) const {
    std::string p = path + "/" + name;
    std::ofstream(p) << content;
    return p;
  }
  std::string path;
};

// "hello" and "world" in base64.
constexpr const char* kHello64 = "aGVsbG8=";
constexpr const char* kWorld64 = "d29ybGQ=";

std::string kubeconfig(const std::string& cluster, const std::string& user,
                       const std::string& context = "{cluster: c1, user: u1}") {
  return "apiVersion: v1\nkind: Config\ncurrent-context: ctx\n"
         "contexts:\n- name: other\n  context: {cluster: nope, user: nope}\n"
         "- name: ctx\n  context: " + context + "\n"
         "clusters:\n- name: c1\n  cluster:\n" + cluster +
         "users:\n- name: u1\n  user:\n" + user;
}

TEST_CASE("kubeconfig: inline data, current context, namespace") {
  auto c = parseKubeconfig(
      kubeconfig("    server: https://10.0.0.1:6443\n    certificate-authority-data: " +
                     std::string(kHello64) + "\n",
                 "    client-certificate-data: " + std::string(kHello64) +
                     "\n    client-key-data: " + kWorld64 + "\n",
                 "{cluster: c1, user: u1, namespace: shop}"),
      "", false);
  REQUIRE_MESSAGE(c.ok(), c.status().toString());
  CHECK(c->server == "https://10.0.0.1:6443");
  CHECK(c->caPem == "hello");
  CHECK(c->clientCertPem == "hello");
  CHECK(c->clientKeyPem == "world");
  CHECK(c->defaultNamespace == "shop");
  CHECK(c->bearerToken.empty());
}

TEST_CASE("kubeconfig: files relative to the kubeconfig's directory, token and tokenFile") {
  TempDir dir;
  dir.write("ca.crt", "CA");
  dir.write("token", "file-token\n");
  auto c = parseKubeconfig(kubeconfig("    server: https://h:443\n    certificate-authority: ca.crt\n",
                                      "    token: static\n    tokenFile: token\n"),
                           dir.path, false);
  REQUIRE_MESSAGE(c.ok(), c.status().toString());
  CHECK(c->caPem == "CA");
  CHECK(c->bearerToken == "static");
  CHECK(c->tokenFile == dir.path + "/token");
  CHECK(*currentBearerToken(*c) == "file-token");
  // A rotated token is read on the next call.
  dir.write("token", "rotated");
  CHECK(*currentBearerToken(*c) == "rotated");
  CHECK(c->defaultNamespace == "default");
}

TEST_CASE("kubeconfig: mistakes are clear errors") {
  auto server = std::string("    server: https://h:443\n");
  CHECK(parseKubeconfig("[1, 2]", "", false).status().message() ==
        "kubeconfig is not a YAML mapping");
  CHECK(parseKubeconfig("a: [", "", false).status().message().starts_with(
      "kubeconfig is not valid YAML"));
  CHECK(parseKubeconfig("apiVersion: v1\n", "", false).status().message() ==
        "kubeconfig has no current-context");
  CHECK(parseKubeconfig(kubeconfig(server, "    token: t\n", "{cluster: zz, user: u1}"), "", false)
            .status()
            .message() == "kubeconfig cluster \"zz\" of context \"ctx\" is not defined");
  CHECK(parseKubeconfig(kubeconfig("    server: http://h:80\n", "    token: t\n"), "", false)
            .status()
            .message() == "kubeconfig cluster \"c1\" server \"http://h:80\" is not https://");
  CHECK(parseKubeconfig(kubeconfig(server, "    client-certificate-data: " +
                                               std::string(kHello64) + "\n"),
                        "", false)
            .status()
            .message() == "kubeconfig user \"u1\" needs both a client certificate and a client key");
  CHECK(parseKubeconfig(kubeconfig(server, "    exec: {command: aws}\n"), "", false)
            .status()
            .message()
            .find("exec or auth-provider plugin") != std::string::npos);
  CHECK(parseKubeconfig(kubeconfig(server, "    client-key: /nonexistent/key\n"), "", false)
            .status()
            .message() == "cannot read client-key \"/nonexistent/key\"");
  CHECK(parseKubeconfig(kubeconfig(server + "    certificate-authority-data: '***'\n", "    token: t\n"),
                        "", false)
            .status()
            .message() == "certificate-authority-data is not valid base64");
}

TEST_CASE("kubeconfig: insecure-skip-tls-verify is refused unless allowed") {
  auto yaml = kubeconfig("    server: https://h:443\n    insecure-skip-tls-verify: true\n",
                         "    token: t\n");
  auto refused = parseKubeconfig(yaml, "", false);
  CHECK(refused.status().code() == StatusCode::kInvalid);
  CHECK(refused.status().message().find("insecure-skip-tls-verify") != std::string::npos);
  auto allowed = parseKubeconfig(yaml, "", true);
  REQUIRE(allowed.ok());
  CHECK(allowed->insecureSkipTlsVerify);
}

TEST_CASE("in-cluster configuration from the environment and the service-account directory") {
  TempDir dir;
  dir.write("ca.crt", "CA");
  dir.write("token", "sa-token\n");
  dir.write("namespace", "bulkhead-system\n");
  unsetenv("KUBERNETES_SERVICE_HOST");
  CHECK(inClusterConfig(dir.path).status().code() == StatusCode::kNotFound);
  setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto c = inClusterConfig(dir.path);
  REQUIRE_MESSAGE(c.ok(), c.status().toString());
  CHECK(c->server == "https://10.96.0.1:443");
  CHECK(c->caPem == "CA");
  CHECK(c->tokenFile == dir.path + "/token");
  CHECK(*currentBearerToken(*c) == "sa-token");
  CHECK(c->defaultNamespace == "bulkhead-system");
  setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  CHECK(inClusterConfig(dir.path)->server == "https://[fd00::1]:443");
  dir.write("token", "");
  CHECK(currentBearerToken(*c).status().code() == StatusCode::kUnauthorized);
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
}

TEST_CASE("loading order: flag, then KUBECONFIG, then in-cluster, then ~/.kube/config") {
  TempDir dir;
  auto yaml = [](const std::string& server) {
    return kubeconfig("    server: " + server + "\n", "    token: t\n");
  };
  std::string flagPath = dir.write("flag", yaml("https://flag:1"));
  std::string envPath = dir.write("env", yaml("https://env:1"));
  fs::create_directories(dir.path + "/home/.kube");
  dir.write("home/.kube/config", yaml("https://home:1"));
  dir.write("ca.crt", "CA");
  dir.write("token", "t");
  std::string oldHome = getenv("HOME") ? getenv("HOME") : "";
  setenv("HOME", (dir.path + "/home").c_str(), 1);
  setenv("KUBECONFIG", (dir.path + "/missing:" + envPath).c_str(), 1);
  LoadOptions opts;
  opts.serviceAccountDir = dir.path;

  opts.kubeconfigFlag = flagPath;
  CHECK(loadRestConfig(opts)->server == "https://flag:1");
  CHECK(loadRestConfig(opts)->source == "kubeconfig " + flagPath);
  opts.kubeconfigFlag.clear();
  CHECK(loadRestConfig(opts)->server == "https://env:1");
  unsetenv("KUBECONFIG");
  setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  CHECK(loadRestConfig(opts)->server == "https://10.0.0.1:443");
  unsetenv("KUBERNETES_SERVICE_HOST");
  CHECK(loadRestConfig(opts)->server == "https://home:1");
  fs::remove(dir.path + "/home/.kube/config");
  auto none = loadRestConfig(opts);
  CHECK(none.status().code() == StatusCode::kInvalid);
  CHECK(none.status().message().starts_with("no Kubernetes configuration found; tried"));
  unsetenv("KUBERNETES_SERVICE_PORT");
  setenv("HOME", oldHome.c_str(), 1);
}

}  // namespace
}  // namespace bulkhead::kube
