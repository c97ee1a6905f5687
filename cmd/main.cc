// bulkhead: zero-trust segmentation for Kubernetes. Flags, wiring and signals; nothing else.
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cmd/check.h"
#include "cmd/explain.h"
#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/shutdown.h"
#include "common/version.h"
#include "controller/controllers.h"
#include "kube/client_impl.h"
#include "kube/config.h"
#include "kube/events.h"
#include "kube/leader_election.h"
#include "kube/manager.h"
#include "policy/cert_rotation.h"
#include "webhooks/admission_handler.h"
#include "webhooks/certs.h"
#include "webhooks/https_server.h"
#include "webhooks/metrics_server.h"
#include "webhooks/webhook_certificates.h"

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
  std::chrono::milliseconds leaseDuration{15'000};
  std::chrono::milliseconds renewDeadline{10'000};
  std::chrono::milliseconds retryPeriod{2'000};
  std::chrono::milliseconds shutdownTimeout{10'000};
  std::chrono::milliseconds shutdownDelay{3'000};
  std::chrono::milliseconds resyncPeriod{600'000};
  std::chrono::milliseconds meshDiscoveryInterval{10'000};
  std::int64_t workers = 4;
  bool backgroundScan = true;
  bool validatingAdmissionPolicy = false;
  std::string metricsBindAddress = ":8080";
  std::string webhookBindAddress;
  std::string webhookCertSecret = "bulkhead-webhook-tls";
  std::string webhookConfiguration = "bulkhead";
  bool manageWebhookCerts = false;
  std::string webhookCertHosts;
  std::chrono::milliseconds caValidity{std::chrono::hours(24 * 365)};
  std::chrono::milliseconds certValidity{std::chrono::hours(24 * 90)};
  std::chrono::milliseconds certRenewBefore{std::chrono::hours(24 * 30)};
  std::string tlsMinVersion = "1.3";
  std::string controllerUsername;
};

// The webhook: its handler, the serving certificate from its Secret, and (once the Secret holds a
// pair) its HTTPS server. Runs on every replica.
struct Webhook {
  std::unique_ptr<webhooks::AdmissionHandler> handler;
  std::unique_ptr<webhooks::ServingCertificateFiles> certificate;
  std::unique_ptr<webhooks::HttpsServer> server;
  std::string certDir;  // private, removed on shutdown

  void stop() {
    if (server) {
      server->stop(std::chrono::seconds(5));
    }
    certificate->stop();
    handler->stop();
    std::error_code ignored;
    std::filesystem::remove_all(certDir, ignored);
  }
};

StatusOr<std::unique_ptr<Webhook>> prepareWebhook(const Options& opts, kube::ClientPtr client,
                                                  ClockPtr clock, kube::Manager& manager,
                                                  const std::string& ns) {
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = std::string(tmp ? tmp : "/tmp") + "/bulkhead-webhook.XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) {
    return internalError("cannot create a directory for the webhook certificate under " +
                         std::string(tmp ? tmp : "/tmp"));
  }
  auto w = std::make_unique<Webhook>();
  w->certDir = dir;
  webhooks::AdmissionOptions aopts;
  aopts.installNamespace = ns;
  aopts.controllerUsername = opts.controllerUsername.empty()
                                 ? "system:serviceaccount:" + ns + ":bulkhead"
                                 : opts.controllerUsername;
  w->handler = std::make_unique<webhooks::AdmissionHandler>(client, clock, manager.cache(),
                                                            manager.discovery(), aopts);
  w->handler->start();
  w->certificate = std::make_unique<webhooks::ServingCertificateFiles>(manager.cache(), ns,
                                                                       opts.webhookCertSecret, dir);
  w->certificate->start();
  return w;
}

// Waits for the Secret's first pair (the leader makes it with --manage-webhook-certs), then
// serves. False when shutdown came first or the server cannot start.
bool serveWebhook(const Options& opts, Webhook& w, const std::string& ns) {
  bool waitLogged = false;
  while (!w.certificate->waitForPair(std::chrono::seconds(1))) {
    if (Shutdown::requested()) {
      return false;
    }
    if (!waitLogged) {
      log::info("waiting for the webhook certificate Secret",
                {{"secret", ns + "/" + opts.webhookCertSecret}});
      waitLogged = true;
    }
  }
  webhooks::HttpsServerOptions sopts;
  sopts.bindAddress = opts.webhookBindAddress;
  sopts.certFile = w.certificate->certFile();
  sopts.keyFile = w.certificate->keyFile();
  sopts.tlsMinVersion = opts.tlsMinVersion;
  auto* handler = w.handler.get();
  auto server = webhooks::HttpsServer::start(
      sopts, [handler](const webhooks::HttpRequest& r) { return handler->handle(r); });
  if (!server.ok()) {
    log::error("cannot start the webhook server", {{"error", server.status().toString()}});
    return false;
  }
  w.server = std::move(*server);
  log::info("serving the admission webhook",
            {{"address", sopts.bindAddress}, {"port", w.server->port()}});
  return true;
}

std::vector<std::string> splitList(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) {
      out.push_back(item);
    }
  }
  return out;
}

// The self-managed certificates' lifetimes. The API servers get a quarter of the renewal margin,
// at most 30 s, to pick up a new CA before a certificate from it is served.
policy::CertRotationSettings rotationSettings(const Options& opts) {
  auto seconds = [](std::chrono::milliseconds d) {
    return std::chrono::duration_cast<std::chrono::seconds>(d);
  };
  policy::CertRotationSettings settings;
  settings.caValidity = seconds(opts.caValidity);
  settings.servingValidity = seconds(opts.certValidity);
  settings.renewBefore = seconds(opts.certRenewBefore);
  settings.propagationDelay =
      std::min<std::chrono::seconds>(std::chrono::seconds(30), settings.renewBefore / 4);
  return settings;
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
  kube::skipDefaultVerifyPaths(*config);  // before any thread starts
  // glibc gives each thread that allocates an arena of its own, up to 8 per core, and memory
  // freed in one is not reused by another: two arenas took 2.6 MiB off the peak RSS of a
  // 10,000-namespace convergence (convergence_bench), at the same CPU.
  mallopt(M_ARENA_MAX, 2);
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
    log::error("cannot reach the API server",
               {{"server", config->server}, {"error", version.status().toString()}});
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
  copts.namespaceWorkers = static_cast<int>(opts.workers);
  copts.backgroundScan = opts.backgroundScan;
  copts.admissionTwin = opts.validatingAdmissionPolicy;

  kube::ManagerOptions mopts;
  mopts.discoveryInterval = opts.meshDiscoveryInterval;
  if (!opts.webhookBindAddress.empty()) {
    mopts.lostLeadershipMessage =
        "lost leadership; controllers stopped, webhook keeps serving, campaigning again";
  }
  if (opts.leaderElect) {
    kube::LeaderElectionConfig le;
    le.leaseNamespace = opts.leaderElectionNamespace.empty() ? ns : opts.leaderElectionNamespace;
    le.leaseName = opts.leaderElectionId;
    le.identity = identity;
    le.leaseDuration = opts.leaseDuration;
    le.renewDeadline = opts.renewDeadline;
    le.retryPeriod = opts.retryPeriod;
    mopts.leaderElection = le;
  }
  kube::Manager manager(*client, clock, mopts);
  controller::configureCache(manager.cache(), copts);

  std::unique_ptr<Webhook> webhook;
  if (!opts.webhookBindAddress.empty()) {
    auto prepared = prepareWebhook(opts, *client, clock, manager, ns);
    if (!prepared.ok()) {
      log::error("cannot start the webhook", {{"error", prepared.status().toString()}});
      return 1;
    }
    webhook = std::move(*prepared);
  }
  std::atomic<bool> webhookServing{false};
  auto* admission = webhook.get();
  auto metricsServer =
      webhooks::MetricsServer::start(opts.metricsBindAddress, [admission, &webhookServing] {
        return admission == nullptr || (webhookServing.load() && admission->handler->ready());
      });
  if (!metricsServer.ok()) {
    log::error("cannot start the metrics server", {{"error", metricsServer.status().toString()}});
    return 1;
  }
  log::info("serving metrics",
            {{"address", opts.metricsBindAddress}, {"port", (*metricsServer)->port()}});

  // What runs only on the leader: with --manage-webhook-certs the certificate rotator, and the
  // controllers (stopped first when the Lease is lost). A lost Lease (an API server outage longer
  // than the renew deadline, say) stops only those: admission is answered from the shared caches,
  // which resync by themselves.
  if (opts.manageWebhookCerts) {
    webhooks::CertificateRotatorOptions rotation;
    rotation.ns = ns;
    rotation.secretName = opts.webhookCertSecret;
    rotation.webhookConfiguration = opts.webhookConfiguration;
    rotation.hosts = splitList(opts.webhookCertHosts);
    rotation.settings = rotationSettings(opts);
    rotation.maxCheckInterval =
        std::min<std::chrono::milliseconds>(std::chrono::minutes(1), opts.certRenewBefore / 4);
    manager.addLeaderRunnable([&manager, client = *client, clock, rotation] {
      return std::make_unique<webhooks::CertificateRotator>(client, clock, manager.cache(),
                                                            rotation);
    });
  }
  manager.addLeaderRunnable([&manager, client = *client, clock, events, copts] {
    return std::make_unique<controller::Controllers>(client, clock, manager.cache(),
                                                     manager.discovery(), events, copts);
  });
  manager.start();

  bool webhookFailed = false;
  if (webhook) {
    if (serveWebhook(opts, *webhook, ns)) {
      webhookServing = true;
    } else if (!Shutdown::requested()) {
      webhookFailed = true;  // exit non-zero, so the kubelet restarts the pod
      Shutdown::request();
    }
  }
  Shutdown::wait();
  const auto terminating = std::chrono::steady_clock::now();
  boundShutdown(opts.shutdownTimeout);
  const bool wasServing = webhookServing.exchange(false);  // not ready: leave the Service
  if (wasServing) {
    webhook->server->closeConnectionsAfterResponses();
  }
  manager.resign();  // another replica takes the Lease now, not after the delay
  if (wasServing) {
    std::this_thread::sleep_until(terminating + opts.shutdownDelay);
  }
  if (webhook) {
    webhook->stop();
  }
  manager.stop();
  events->stop();
  return webhookFailed ? 1 : 0;
}

// Flag combinations that cannot work, as a message; empty when fine.
std::string checkOptions(const Options& opts) {
  // As client-go requires, and in whole seconds: the Lease records the duration in seconds, and
  // rounding it down would let other replicas take over before this one gives up.
  if (opts.retryPeriod <= std::chrono::milliseconds(0) || opts.renewDeadline <= opts.retryPeriod ||
      opts.leaseDuration <= opts.renewDeadline) {
    return "--leader-elect-lease-duration must exceed --leader-elect-renew-deadline, which must "
           "exceed --leader-elect-retry-period (> 0)";
  }
  if (opts.leaseDuration % std::chrono::seconds(1) != std::chrono::milliseconds(0)) {
    return "--leader-elect-lease-duration must be a whole number of seconds";
  }
  if (opts.shutdownDelay < std::chrono::milliseconds(0) ||
      opts.shutdownDelay >= opts.shutdownTimeout) {
    return "--shutdown-delay must be at least 0 and less than --shutdown-timeout";
  }
  if (opts.webhookBindAddress.empty()) {
    return opts.manageWebhookCerts ? "--manage-webhook-certs needs --webhook-bind-address" : "";
  }
  if (opts.webhookCertSecret.empty()) {
    return "--webhook-cert-secret must name the Secret holding the webhook certificate";
  }
  if (!opts.manageWebhookCerts) {
    return "";
  }
  const auto hosts = splitList(opts.webhookCertHosts);
  if (hosts.empty()) {
    return "--manage-webhook-certs needs --webhook-cert-hosts (the webhook Service's DNS names)";
  }
  if (auto canonical = webhooks::canonicalHosts(hosts); !canonical.ok()) {
    return "--webhook-cert-hosts: " + canonical.status().message();
  }
  if (opts.webhookConfiguration.empty()) {
    return "--manage-webhook-certs needs --webhook-configuration";
  }
  std::string problem = policy::validateCertRotationSettings(rotationSettings(opts));
  return problem.empty() ? "" : "--ca-validity, --cert-validity, --cert-renew-before: " + problem;
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
  flags.addDuration("leader-elect-lease-duration", &opts.leaseDuration,
                    "how long the other replicas wait before taking over a Lease not renewed "
                    "(whole seconds)");
  flags.addDuration("leader-elect-renew-deadline", &opts.renewDeadline,
                    "how long the leader keeps trying to renew before it stops its controllers "
                    "and campaigns again");
  flags.addDuration("leader-elect-retry-period", &opts.retryPeriod,
                    "how often the Lease is renewed, or tried for");
  flags.addDuration("shutdown-timeout", &opts.shutdownTimeout,
                    "how long in-flight work may take after SIGTERM");
  flags.addDuration("shutdown-delay", &opts.shutdownDelay,
                    "how long after SIGTERM the webhook goes on answering, closing each "
                    "connection after its answer, while the Service stops routing to this "
                    "replica (part of --shutdown-timeout)");
  flags.addDuration("resync-period", &opts.resyncPeriod,
                    "how often every namespace is reconciled (and scanned) even without events");
  flags.addDuration("mesh-discovery-interval", &opts.meshDiscoveryInterval,
                    "how often to check whether the optional APIs (Istio's security API, "
                    "AccessGrant, OpenReports) are served");
  flags.addInt("workers", &opts.workers, "concurrent namespace reconciles");
  flags.addBool("background-scan", &opts.backgroundScan,
                "judge existing Pods and workloads in selected namespaces by their policy: "
                "counts on the policy status, and a Report per namespace where the OpenReports "
                "API is served (caches every Pod and workload, only the fields the rules read)");
  flags.addBool("validating-admission-policy", &opts.validatingAdmissionPolicy,
                "write for each SegmentationPolicy a ValidatingAdmissionPolicy and binding with "
                "which the API server itself enforces the pod rules that need no cluster state, "
                "so they hold while the webhook is unreachable");
  flags.addString("metrics-bind-address", &opts.metricsBindAddress,
                  "host:port of /metrics, /healthz and /readyz (plain HTTP)");
  flags.addString("webhook-bind-address", &opts.webhookBindAddress,
                  "serve the admission webhook (HTTPS) on this host:port; empty: no webhook");
  flags.addString("webhook-cert-secret", &opts.webhookCertSecret,
                  "Secret in --namespace whose tls.crt/tls.key the webhook serves (watched: "
                  "a new pair is used without a restart)");
  flags.addBool("manage-webhook-certs", &opts.manageWebhookCerts,
                "the leader makes the CA and serving certificate in --webhook-cert-secret, "
                "rotates them and writes the CA bundle into --webhook-configuration");
  flags.addString("webhook-configuration", &opts.webhookConfiguration,
                  "the ValidatingWebhookConfiguration whose caBundle is kept current");
  flags.addString("webhook-cert-hosts", &opts.webhookCertHosts,
                  "comma-separated DNS names and IP addresses of the serving certificate");
  flags.addDuration("ca-validity", &opts.caValidity, "validity of a self-managed CA");
  flags.addDuration("cert-validity", &opts.certValidity,
                    "validity of a self-managed serving certificate");
  flags.addDuration("cert-renew-before", &opts.certRenewBefore,
                    "renew self-managed certificates this long before they expire");
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
  if (auto problem = checkOptions(opts); !problem.empty()) {
    std::cerr << "bulkhead: " << problem << "\n";
    return 2;
  }
  log::init(*level);
  Shutdown::install();
  return serve(opts);
}

}  // namespace
}  // namespace bulkhead

// `bulkhead check ...` and `bulkhead explain ...` (also `kubectl bulkhead ...`, the binary
// installed as kubectl-bulkhead) are commands of their own; anything else serves.
int main(int argc, char** argv) {
  const std::string self = std::filesystem::path(argv[0]).filename().string();
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "check" || command == "explain") {
    try {
      return command == "check" ? bulkhead::runCheck(argc - 1, argv + 1)
                                : bulkhead::runExplain(argc - 1, argv + 1);
    } catch (const std::exception& e) {
      // An object of an unexpected shape (`name: y`, which YAML 1.1 reads as a boolean), a
      // directory that cannot be read, ...
      std::cerr << "bulkhead " << command << ": unusable input: " << e.what() << "\n";
      return 2;
    }
  }
  if (self == "kubectl-bulkhead") {
    std::cerr << "usage: kubectl bulkhead check|explain ... (--help for each)\n";
    return argc > 1 && std::string(argv[1]) == "--help" ? 0 : 2;
  }
  return bulkhead::run(argc, argv);
}
