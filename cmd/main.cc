// bulkhead: zero-trust segmentation for Kubernetes. Flags, wiring and signals; nothing else.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/shutdown.h"
#include "common/version.h"
#include "kube/client_impl.h"
#include "kube/config.h"
#include "kube/events.h"
#include "kube/leader_election.h"
#include "controller/segmentation_controller.h"
#include "webhooks/admission_handler.h"
#include "webhooks/certs.h"
#include "webhooks/https_server.h"
#include "webhooks/metrics_server.h"
#include "webhooks/registration.h"

namespace bulkhead {
namespace {

struct Options {
  bool version = false;
  bool help = false;
  std::string logLevel = "info";
  std::string kubeconfig;
  std::string serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";
  bool allowInsecureKubeconfig = false;
  double kubeQps = 50;
  std::int64_t kubeBurst = 100;
  std::string ns;
  bool leaderElect = false;
  std::string leaderElectionNamespace;
  std::string leaderElectionId = "bulkhead";
  std::string leaderElectionIdentity;
  std::chrono::milliseconds shutdownTimeout{10'000};
  std::chrono::milliseconds resyncPeriod{600'000};
  std::chrono::milliseconds meshDiscoveryInterval{10'000};
  std::int64_t workers = 4;
  std::string metricsBindAddress = ":8080";
  std::string webhookUrl;
  std::string webhookBindAddress;
  std::string certDir;
  std::string tlsMinVersion = "1.3";
  std::string controllerUsername;
};

// The webhook: its HTTPS server, handler and (with --webhook-url) its own certificate and
// registration. Runs on every replica.
struct Webhook {
  std::unique_ptr<webhooks::AdmissionHandler> handler;
  std::unique_ptr<webhooks::HttpsServer> server;
  std::string generatedCertDir;  // removed on shutdown

  void stop() {
    server->stop(std::chrono::seconds(5));
    handler->stop();
    if (!generatedCertDir.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(generatedCertDir, ignored);
    }
  }
};

bool writeFile(const std::string& path, const std::string& content) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    return false;
  }
  bool ok = std::fwrite(content.data(), 1, content.size(), f) == content.size();
  return std::fclose(f) == 0 && ok;
}

StatusOr<Webhook> startWebhook(const Options& opts, kube::ClientPtr client, ClockPtr clock,
                               const std::string& ns) {
  std::string url = opts.webhookUrl;
  auto scheme = url.find("://");
  auto hostStart = scheme == std::string::npos ? 0 : scheme + 3;
  auto pathStart = url.find('/', hostStart);
  std::string hostPort = url.substr(hostStart, pathStart - hostStart);
  auto colon = hostPort.rfind(':');
  if (!url.starts_with("https://") || colon == std::string::npos) {
    return invalidError("--webhook-url must look like https://HOST:PORT/validate");
  }
  std::string host = hostPort.substr(0, colon);
  std::string certDir = opts.certDir;
  std::string caPem;
  std::string generatedCertDir;
  if (certDir.empty()) {
    // No certificates given: make a CA and a serving certificate for the URL's host.
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/bulkhead-webhook.XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      return internalError("cannot create a directory for the webhook certificate");
    }
    certDir = tmpl;
    auto now = clock->now();
    ASSIGN_OR_RETURN(auto ca, webhooks::makeCa("bulkhead-webhook-ca", now, std::chrono::hours(24 * 365)));
    bool isIp = !host.empty() && (std::isdigit(static_cast<unsigned char>(host[0])) || host[0] == '[');
    std::string bare = host.front() == '[' ? host.substr(1, host.size() - 2) : host;
    ASSIGN_OR_RETURN(auto serving, webhooks::issueServingCertificate(
                                       ca, isIp ? std::vector<std::string>{} : std::vector{bare},
                                       isIp ? std::vector{bare} : std::vector<std::string>{}, now,
                                       std::chrono::hours(24 * 90)));
    if (!writeFile(certDir + "/tls.crt", serving.certPem) ||
        !writeFile(certDir + "/tls.key", serving.keyPem) ||
        !writeFile(certDir + "/ca.crt", ca.certPem)) {
      return internalError("cannot write the webhook certificate to " + certDir);
    }
    caPem = ca.certPem;
    generatedCertDir = certDir;
    log::info("made a webhook CA and serving certificate", {{"dir", certDir}, {"host", bare}});
  } else {
    std::ifstream in(certDir + "/ca.crt");
    std::stringstream ss;
    ss << in.rdbuf();
    caPem = ss.str();
  }
  Webhook w;
  w.generatedCertDir = generatedCertDir;
  webhooks::AdmissionOptions aopts;
  aopts.installNamespace = ns;
  aopts.controllerUsername = opts.controllerUsername.empty()
                                 ? "system:serviceaccount:" + ns + ":bulkhead"
                                 : opts.controllerUsername;
  w.handler = std::make_unique<webhooks::AdmissionHandler>(client, clock, aopts);
  w.handler->start();
  webhooks::HttpsServerOptions sopts;
  sopts.bindAddress = opts.webhookBindAddress.empty() ? hostPort : opts.webhookBindAddress;
  sopts.certFile = certDir + "/tls.crt";
  sopts.keyFile = certDir + "/tls.key";
  sopts.tlsMinVersion = opts.tlsMinVersion;
  auto* handler = w.handler.get();
  ASSIGN_OR_RETURN(w.server, webhooks::HttpsServer::start(
                                 sopts, [handler](const webhooks::HttpRequest& r) {
                                   return handler->handle(r);
                                 }));
  log::info("serving the admission webhook", {{"address", sopts.bindAddress},
                                              {"port", w.server->port()}});
  if (caPem.empty()) {
    log::warn("no ca.crt in --cert-dir: the webhook configuration is not registered");
    return w;
  }
  // Register only once the caches are ready, so that no request is answered blind.
  for (int i = 0; i < 600 && !handler->ready() && !Shutdown::requested(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  RETURN_IF_ERROR(webhooks::registerWebhook(*client, webhooks::webhookConfiguration(url, caPem, ns))
                      .withContext("registering the ValidatingWebhookConfiguration"));
  log::info("registered the ValidatingWebhookConfiguration bulkhead", {{"url", url}});
  return w;
}

std::string defaultIdentity() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::random_device rd;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%08x", rd());
  return std::string(host) + "_" + suffix;
}

// After SIGTERM, in-flight work gets `timeout` to finish; then the process exits regardless, so
// a stuck API call cannot hold a terminating pod past its grace period.
void boundShutdown(std::chrono::milliseconds timeout) {
  std::thread([timeout] {
    std::this_thread::sleep_for(timeout);
    log::error("graceful shutdown did not finish in time; exiting",
               {{"timeoutMs", static_cast<int64_t>(timeout.count())}});
    std::_Exit(1);
  }).detach();
}

int serve(const Options& opts) {
  kube::LoadOptions load;
  load.kubeconfigFlag = opts.kubeconfig;
  load.serviceAccountDir = opts.serviceAccountDir;
  load.allowInsecure = opts.allowInsecureKubeconfig;
  auto config = kube::loadRestConfig(load);
  if (!config.ok()) {
    log::error("cannot configure the Kubernetes client", {{"error", config.status().toString()}});
    return 1;
  }
  config->qps = opts.kubeQps;
  config->burst = static_cast<int>(opts.kubeBurst);
  config->userAgent = std::string("bulkhead/") + kVersion;
  std::string ns = opts.ns.empty() ? config->defaultNamespace : opts.ns;
  auto clock = std::make_shared<RealClock>();
  auto client = kube::ClientImpl::create(*config, clock);
  if (!client.ok()) {
    log::error("cannot create the Kubernetes client", {{"error", client.status().toString()}});
    return 1;
  }
  auto version = (*client)->raw("GET", "/version", "", "");
  if (!version.ok()) {
    log::error("cannot reach the API server", {{"server", config->server},
                                               {"error", version.status().toString()}});
    return 1;
  }
  log::info("connected to the API server", {{"server", config->server},
                                             {"version", version->value("gitVersion", "")},
                                             {"config", config->source},
                                             {"namespace", ns}});

  std::string identity =
      opts.leaderElectionIdentity.empty() ? defaultIdentity() : opts.leaderElectionIdentity;
  auto events = std::make_shared<kube::EventRecorder>(*client, clock, "bulkhead", identity);
  controller::ControllerOptions copts;
  copts.installNamespace = ns;
  copts.resyncPeriod = opts.resyncPeriod;
  copts.meshDiscoveryInterval = opts.meshDiscoveryInterval;
  copts.namespaceWorkers = static_cast<int>(opts.workers);

  std::optional<Webhook> webhook;
  if (!opts.webhookUrl.empty()) {
    auto started = startWebhook(opts, *client, clock, ns);
    if (!started.ok()) {
      log::error("cannot start the webhook", {{"error", started.status().toString()}});
      return 1;
    }
    webhook = std::move(*started);
  }
  auto* admission = webhook ? webhook->handler.get() : nullptr;
  auto metricsServer = webhooks::MetricsServer::start(
      opts.metricsBindAddress, [admission] { return admission == nullptr || admission->ready(); });
  if (!metricsServer.ok()) {
    log::error("cannot start the metrics server", {{"error", metricsServer.status().toString()}});
    return 1;
  }
  log::info("serving metrics", {{"address", opts.metricsBindAddress},
                                {"port", (*metricsServer)->port()}});

  // The controller runs only while leading; start() blocks until its caches sync, so it runs on
  // a thread of its own.
  std::mutex controllerMu;
  std::unique_ptr<controller::SegmentationController> segmentation;
  std::thread controllerThread;
  auto startControllers = [&] {
    std::lock_guard lock(controllerMu);
    segmentation = std::make_unique<controller::SegmentationController>(*client, clock, events,
                                                                         copts);
    controllerThread = std::thread([c = segmentation.get()] { c->start(); });
  };
  auto stopControllers = [&] {
    std::lock_guard lock(controllerMu);
    if (segmentation) {
      segmentation->stop();
      controllerThread.join();
      segmentation.reset();
      log::info("controllers stopped");
    }
  };

  if (!opts.leaderElect) {
    startControllers();
    Shutdown::wait();
    boundShutdown(opts.shutdownTimeout);
    if (webhook) {
      webhook->stop();
    }
    stopControllers();
    events->stop();
    return 0;
  }
  kube::LeaderElectionConfig le;
  le.leaseNamespace = opts.leaderElectionNamespace.empty() ? ns : opts.leaderElectionNamespace;
  le.leaseName = opts.leaderElectionId;
  le.identity = identity;
  kube::LeaderElector elector(*client, clock, le);
  bool lost = false;
  std::thread electing([&] {
    elector.run(startControllers, [&] {
      stopControllers();
      if (!Shutdown::requested()) {
        lost = true;
        Shutdown::request();  // a replica that lost the Lease restarts clean
      }
    });
  });
  Shutdown::wait();
  boundShutdown(opts.shutdownTimeout);
  if (webhook) {
    webhook->stop();
  }
  elector.stop();
  electing.join();
  events->stop();
  return lost ? 1 : 0;
}

int run(int argc, char** argv) {
  Options opts;
  FlagSet flags("bulkhead",
                "Zero-trust segmentation for Kubernetes: a controller that gives every selected\n"
                "namespace default-deny NetworkPolicies and Istio mutual TLS, and a validating\n"
                "admission webhook that rejects what would break segmentation.");
  flags.addBool("version", &opts.version, "print the version and exit");
  flags.addBool("help", &opts.help, "print this help and exit");
  flags.addString("log-level", &opts.logLevel, "trace, debug, info, warn, error or off");
  flags.addString("kubeconfig", &opts.kubeconfig,
                  "path to a kubeconfig; else $KUBECONFIG, in-cluster, ~/.kube/config");
  flags.addString("service-account-dir", &opts.serviceAccountDir,
                  "where in-cluster service-account credentials are read from");
  flags.addBool("allow-insecure-kubeconfig", &opts.allowInsecureKubeconfig,
                "accept insecure-skip-tls-verify in a kubeconfig");
  flags.addDouble("kube-qps", &opts.kubeQps, "client-side limit of API requests per second");
  flags.addInt("kube-burst", &opts.kubeBurst, "client-side burst of API requests");
  flags.addString("namespace", &opts.ns,
                  "the namespace Bulkhead is installed in (default: from the configuration)");
  flags.addBool("leader-elect", &opts.leaderElect,
                "run the controllers only while holding the leader Lease");
  flags.addString("leader-election-namespace", &opts.leaderElectionNamespace,
                  "namespace of the leader Lease (default: --namespace)");
  flags.addString("leader-election-id", &opts.leaderElectionId, "name of the leader Lease");
  flags.addString("leader-election-identity", &opts.leaderElectionIdentity,
                  "this replica's identity in the Lease (default: hostname_random)");
  flags.addDuration("shutdown-timeout", &opts.shutdownTimeout,
                    "how long in-flight work may take after SIGTERM");
  flags.addDuration("resync-period", &opts.resyncPeriod,
                    "how often every namespace is reconciled even without events");
  flags.addDuration("mesh-discovery-interval", &opts.meshDiscoveryInterval,
                    "how often to check whether Istio's security API is served");
  flags.addInt("workers", &opts.workers, "concurrent namespace reconciles");
  flags.addString("metrics-bind-address", &opts.metricsBindAddress,
                  "host:port of /metrics, /healthz and /readyz (plain HTTP)");
  flags.addString("webhook-url", &opts.webhookUrl,
                  "serve the admission webhook and register it at this URL "
                  "(https://HOST:PORT/validate); makes its own certificate unless --cert-dir");
  flags.addString("webhook-bind-address", &opts.webhookBindAddress,
                  "host:port the webhook listens on (default: the --webhook-url's)");
  flags.addString("cert-dir", &opts.certDir,
                  "directory with tls.crt, tls.key (reloaded on change) and ca.crt");
  flags.addString("tls-min-version", &opts.tlsMinVersion, "1.3 or 1.2");
  flags.addString("controller-username", &opts.controllerUsername,
                  "the only user allowed to change generated objects "
                  "(default system:serviceaccount:NAMESPACE:bulkhead)");

  auto positional = flags.parse(argc, argv);
  if (!positional.ok()) {
    std::cerr << "bulkhead: " << positional.status().message() << "\n";
    return 2;
  }
  if (opts.help) {
    std::cout << flags.usage();
    return 0;
  }
  if (opts.version) {
    std::cout << "bulkhead " << kVersion << " (" << kGitCommit << ")\n";
    return 0;
  }
  if (!positional->empty()) {
    std::cerr << "bulkhead: unexpected argument \"" << positional->front() << "\"\n";
    return 2;
  }
  auto level = log::parseLevel(opts.logLevel);
  if (!level) {
    std::cerr << "bulkhead: invalid --log-level \"" << opts.logLevel << "\"\n";
    return 2;
  }
  log::init(*level);
  Shutdown::install();
  return serve(opts);
}

}  // namespace
}  // namespace bulkhead

int main(int argc, char** argv) { return bulkhead::run(argc, argv); }
