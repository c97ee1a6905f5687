// Benchmark: the admission webhook's throughput, latency and memory under load, and the latency
// the API server itself records for it.
//
// Starts its own control plane, installs the chart with real Helm (its webhook configuration
// pointed at https://127.0.0.1:PORT/validate), creates a SegmentationPolicy selecting
// zero-trust=on (Enforce) and a namespace `shop` it segments, then runs the real `bulkhead` with
// the chart's Deployment args as the chart's ServiceAccount. Then, with a realistic ~3.5 KB pod
// AdmissionReview that is allowed (so every pod rule runs):
//   1. maximum throughput: wrk, 1 thread, 32 TLS 1.3 keep-alive connections, 15 s;
//   2. latency at a fixed rate (2,000/s): an open-loop generator in this program (a few
//      keep-alive connections, a fixed send schedule, latency counted from each request's
//      scheduled time, so a stall is not hidden), every response checked;
//   3. the process's RSS idle and its peak under load;
//   4. 1,000 pods created through the API server, and the API server's own
//      apiserver_admission_webhook_admission_duration_seconds for validate.bulkhead.dev.
//
//   webhook_load [--wrk-seconds 15] [--wrk-connections 32] [--rate 2000] [--rate-seconds 15]
//                [--rate-connections 8] [--pods 1000] [--pod-threads 8]
//
// Needs wrk (Debian package `wrk`); installs it with apt-get when it is missing.
#define DOCTEST_CONFIG_IMPLEMENT  // BulkheadProcess's REQUIREs; failures go to onAssert below
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "kube/client_impl.h"
#include "kube/config.h"
#include "tests/support/bench_util.h"
#include "tests/support/bulkhead_process.h"
#include "tests/support/control_plane.h"

namespace bulkhead {
namespace {

using nlohmann::json;
using testing::cpuSeconds;
using testing::freePort;
using testing::secondsSince;
using testing::statusKb;
using testing::Steady;

const char* const kUidPlaceholder = "00000000-0000-0000-0000-000000000000";

// ---------------------------------------------------------------------------------------------
// The request: what kube-apiserver sends for a ReplicaSet's pod (one that does not mount a
// ServiceAccount token), compact JSON: about 3.5 KB.

const char* const kReview = R"({
 "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
 "request": {
  "uid": "00000000-0000-0000-0000-000000000000",
  "kind": {"group": "", "version": "v1", "kind": "Pod"},
  "resource": {"group": "", "version": "v1", "resource": "pods"},
  "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
  "requestResource": {"group": "", "version": "v1", "resource": "pods"},
  "name": "checkout-7d9f8b6c5d-x2kqp", "namespace": "shop", "operation": "CREATE",
  "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
               "uid": "3c1f0f0e-4b7a-4c55-9d0b-2f5b8e6c1a77",
               "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                          "system:authenticated"]},
  "object": {
   "kind": "Pod", "apiVersion": "v1",
   "metadata": {
    "name": "checkout-7d9f8b6c5d-x2kqp", "generateName": "checkout-7d9f8b6c5d-",
    "namespace": "shop", "creationTimestamp": null,
    "labels": {"app.kubernetes.io/name": "checkout", "app.kubernetes.io/instance": "checkout-prod",
               "app.kubernetes.io/version": "2.14.1", "app.kubernetes.io/part-of": "shop",
               "app.kubernetes.io/component": "api", "pod-template-hash": "7d9f8b6c5d"},
    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                         "name": "checkout-7d9f8b6c5d",
                         "uid": "9a0e6b1d-77c2-4f0e-8c1b-5d3a2e9f4b10",
                         "controller": true, "blockOwnerDeletion": true}]},
   "spec": {
    "volumes": [
     {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
     {"name": "config", "configMap": {"name": "checkout-config", "defaultMode": 420}}],
    "containers": [
     {"name": "checkout", "image": "registry.example.com/shop/checkout:2.14.1",
      "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
      "env": [{"name": "LISTEN_ADDR", "value": ":8080"},
              {"name": "PAYMENTS_URL", "value": "http://payments.shop.svc.cluster.local:8080"},
              {"name": "CART_URL", "value": "http://cart.shop.svc.cluster.local:8080"},
              {"name": "DB_HOST", "value": "checkout-db.shop.svc.cluster.local"},
              {"name": "LOG_LEVEL", "value": "info"},
              {"name": "POD_NAME",
               "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}],
      "resources": {"limits": {"cpu": "500m", "memory": "512Mi"},
                    "requests": {"cpu": "250m", "memory": "256Mi"}},
      "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                       {"name": "config", "readOnly": true, "mountPath": "/etc/checkout"}],
      "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                        "periodSeconds": 10, "failureThreshold": 3},
      "imagePullPolicy": "IfNotPresent",
      "securityContext": {"capabilities": {"drop": ["ALL"]}, "runAsUser": 10001,
                          "runAsNonRoot": true, "readOnlyRootFilesystem": true,
                          "allowPrivilegeEscalation": false}},
     {"name": "log-shipper", "image": "registry.example.com/shop/fluent-bit:3.1.4",
      "env": [{"name": "FLUENT_OUTPUT", "value": "loki.observability.svc.cluster.local:3100"},
              {"name": "FLUENT_TAG", "value": "shop.checkout"}],
      "resources": {"limits": {"cpu": "100m", "memory": "64Mi"},
                    "requests": {"cpu": "20m", "memory": "32Mi"}},
      "volumeMounts": [{"name": "tmp", "readOnly": true, "mountPath": "/tmp"}],
      "imagePullPolicy": "IfNotPresent",
      "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}, "runAsUser": 10002,
                          "runAsNonRoot": true, "readOnlyRootFilesystem": true,
                          "allowPrivilegeEscalation": false}}],
    "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
    "serviceAccountName": "checkout", "serviceAccount": "checkout",
    "automountServiceAccountToken": false,
    "securityContext": {"runAsNonRoot": true, "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"}},
    "schedulerName": "default-scheduler",
    "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority"},
   "status": {}},
  "oldObject": null, "dryRun": false,
  "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}}})";

// The review as compact JSON; `*uidOffset` is where the request's 36-byte uid starts.
std::string compactReview(size_t* uidOffset) {
  std::string body = json::parse(kReview).dump();
  *uidOffset = body.find(kUidPlaceholder);
  return body;
}

std::string uidFor(uint64_t i) {
  char uid[40];
  std::snprintf(uid, sizeof uid, "6b1e2f00-0000-4000-8000-%012llu",
                static_cast<unsigned long long>(i));
  return uid;
}

// ---------------------------------------------------------------------------------------------
// A blocking HTTPS/1.1 keep-alive client connection (TLS 1.3, verifying the webhook's own CA).

class TlsConnection {
 public:
  TlsConnection(SSL_CTX* ctx, int port) : ctx_(ctx), port_(port) {}
  ~TlsConnection() { close(); }

  bool connect() {
    close();
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      close();
      return false;
    }
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{5, 0};  // a response slower than this is an error, not a hang
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), "127.0.0.1");
    if (SSL_connect(ssl_) != 1) {
      close();
      return false;
    }
    buf_.clear();
    return true;
  }

  void close() {
    if (ssl_ != nullptr) {
      SSL_free(ssl_);
      ssl_ = nullptr;
    }
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

  bool open() const { return ssl_ != nullptr; }
  std::string describe() const {
    return std::string(SSL_get_version(ssl_)) + " " + SSL_get_cipher_name(ssl_);
  }

  // Sends `request` and reads one response. False on an I/O or framing error (then closed).
  bool roundTrip(const std::string& request, int* status, std::string* body) {
    if (!writeAll(request)) {
      close();
      return false;
    }
    size_t headerEnd;
    while ((headerEnd = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!readMore()) {
        close();
        return false;
      }
    }
    std::string head = buf_.substr(0, headerEnd);
    if (head.rfind("HTTP/1.1 ", 0) != 0) {
      close();
      return false;
    }
    *status = std::atoi(head.c_str() + 9);
    std::string lower = head;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    size_t cl = lower.find("\r\ncontent-length:");
    if (cl == std::string::npos) {
      close();
      return false;
    }
    size_t length = std::strtoul(head.c_str() + cl + 17, nullptr, 10);
    bool closing = lower.find("\r\nconnection: close") != std::string::npos;
    while (buf_.size() < headerEnd + 4 + length) {
      if (!readMore()) {
        close();
        return false;
      }
    }
    body->assign(buf_, headerEnd + 4, length);
    buf_.erase(0, headerEnd + 4 + length);
    if (closing) {
      close();
    }
    return true;
  }

 private:
  bool writeAll(const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
      int n = SSL_write(ssl_, data.data() + done, static_cast<int>(data.size() - done));
      if (n <= 0) {
        return false;
      }
      done += static_cast<size_t>(n);
    }
    return true;
  }
  bool readMore() {
    char chunk[16384];
    int n = SSL_read(ssl_, chunk, sizeof chunk);
    if (n <= 0) {
      return false;
    }
    buf_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  SSL_CTX* ctx_;
  int port_;
  int fd_ = -1;
  SSL* ssl_ = nullptr;
  std::string buf_;
};

SSL_CTX* clientContext(const std::string& caFile) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_load_verify_locations(ctx, caFile.c_str(), nullptr) != 1) {
    ERR_print_errors_fp(stderr);
    return nullptr;
  }
  return ctx;
}

std::string httpRequest(int port, const std::string& body) {
  return "POST /validate?timeout=3s HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nUser-Agent: webhook_load\r\nAccept: application/json, */*\r\n"
         "Content-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

bool allowedFor(const std::string& body, const std::string& uid) {
  return body.find("\"allowed\":true") != std::string::npos &&
         body.find("\"uid\":\"" + uid + "\"") != std::string::npos;
}

// ---------------------------------------------------------------------------------------------
// Process and machine accounting.

// Whole-machine CPU: busy and total jiffies from /proc/stat.
struct MachineCpu {
  double busy = 0, total = 0;
  static MachineCpu now() {
    std::ifstream in("/proc/stat");
    std::string cpu;
    double v[10] = {};
    in >> cpu;
    for (double& x : v) {
      in >> x;
    }
    MachineCpu m;
    for (double x : v) {
      m.total += x;
    }
    m.busy = m.total - v[3] - v[4];  // minus idle and iowait
    return m;
  }
};

std::string loadavg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// Samples a process's VmRSS every 50 ms while alive; max() is the largest seen.
class RssSampler {
 public:
  explicit RssSampler(pid_t pid)
      : pid_(pid), thread_([this] {
          while (!stop_) {
            long kb = statusKb(pid_, "VmRSS");
            long prev = max_.load();
            while (kb > prev && !max_.compare_exchange_weak(prev, kb)) {
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
          }
        }) {}
  ~RssSampler() {
    stop_ = true;
    thread_.join();
  }
  long max() const { return max_; }

 private:
  pid_t pid_;
  std::atomic<bool> stop_{false};
  std::atomic<long> max_{0};
  std::thread thread_;
};

// What a phase cost: wall time, the webhook process's CPU, the whole machine's CPU.
struct Phase {
  pid_t pid;
  Steady::time_point start = Steady::now();
  double cpu0;
  MachineCpu m0 = MachineCpu::now();
  explicit Phase(pid_t p) : pid(p), cpu0(cpuSeconds(p)) {}
  std::string report(double requests) const {
    double wall = secondsSince(start);
    double cpu = cpuSeconds(pid) - cpu0;
    MachineCpu m1 = MachineCpu::now();
    double machine = (m1.busy - m0.busy) / std::max(1.0, m1.total - m0.total);
    char out[256];
    std::snprintf(out, sizeof out,
                  "bulkhead CPU %.1f s = %.2f cores, %.0f us CPU/request; machine %.0f%% busy "
                  "of %ld cores",
                  cpu, cpu / wall, requests > 0 ? cpu / requests * 1e6 : 0.0, machine * 100,
                  sysconf(_SC_NPROCESSORS_ONLN));
    return out;
  }
};

// wrk's CPU seconds from the last line of bash's `times` ("0m1.234s 0m0.567s").
std::string wrkCpu(const std::string& out) {
  std::string last = out.substr(out.find_last_of('\n', out.size() - 2) + 1);
  double total = 0;
  std::istringstream in(last);
  std::string t;
  while (in >> t) {
    size_t m = t.find('m');
    if (m == std::string::npos) {
      return "?";
    }
    total += std::stod(t.substr(0, m)) * 60 + std::stod(t.substr(m + 1));
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.1f s", total);
  return text;
}

double percentile(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) {
    return 0;
  }
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1) + 0.5);
  return static_cast<double>(sorted[std::min(i, sorted.size() - 1)]) / 1e3;  // microseconds
}

// ---------------------------------------------------------------------------------------------
// The open-loop run: request i is due at start + i/rate. Each connection thread takes the next
// due request, sleeps until it is due, sends it and waits for the answer; latency counts from the
// due time, so time spent waiting for a free connection (the server falling behind) is included.

struct OpenLoopResult {
  std::vector<int64_t> latencyNs;  // from the scheduled time
  std::vector<int64_t> serviceNs;  // from the actual send
  long ok = 0, badStatus = 0, notAllowed = 0, ioErrors = 0, lateStarts = 0;
  std::map<int, long> statuses;
  std::string firstBad;
  double seconds = 0;
};

OpenLoopResult openLoop(SSL_CTX* ctx, int port, double rate, double seconds, int connections) {
  size_t uidOffset;
  const std::string body = compactReview(&uidOffset);
  const std::string templ = httpRequest(port, body);
  const size_t reqUidOffset = templ.size() - body.size() + uidOffset;
  const long total = static_cast<long>(rate * seconds);
  const auto period = std::chrono::duration<double>(1.0 / rate);
  std::atomic<long> next{0};
  std::mutex mu;
  OpenLoopResult result;
  result.latencyNs.reserve(static_cast<size_t>(total));
  result.serviceNs.reserve(static_cast<size_t>(total));

  std::vector<std::unique_ptr<TlsConnection>> conns;
  for (int c = 0; c < connections; ++c) {
    conns.push_back(std::make_unique<TlsConnection>(ctx, port));
    conns.back()->connect();  // handshakes before the clock starts
  }
  const auto start = Steady::now() + std::chrono::milliseconds(50);
  std::vector<std::thread> threads;
  for (int c = 0; c < connections; ++c) {
    threads.emplace_back([&, c] {
      TlsConnection& conn = *conns[c];
      std::string request = templ;
      std::string response;
      std::vector<int64_t> lat, svc;
      long ok = 0, badStatus = 0, notAllowed = 0, ioErrors = 0, late = 0;
      std::map<int, long> statuses;
      std::string firstBad;
      for (long i = next++; i < total; i = next++) {
        auto due = start + std::chrono::duration_cast<Steady::duration>(period * i);
        std::this_thread::sleep_until(due);
        std::string uid = uidFor(static_cast<uint64_t>(i));
        std::memcpy(request.data() + reqUidOffset, uid.data(), uid.size());
        auto sent = Steady::now();
        if (sent - due > std::chrono::milliseconds(1)) {
          ++late;
        }
        if (!conn.open() && !conn.connect()) {
          ++ioErrors;
          continue;
        }
        int status = 0;
        if (!conn.roundTrip(request, &status, &response)) {
          ++ioErrors;
          continue;
        }
        auto done = Steady::now();
        ++statuses[status];
        if (status != 200) {
          ++badStatus;
          if (firstBad.empty()) firstBad = std::to_string(status) + " " + response.substr(0, 300);
        } else if (!allowedFor(response, uid)) {
          ++notAllowed;
          if (firstBad.empty()) firstBad = response.substr(0, 300);
        } else {
          ++ok;
        }
        lat.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(done - due).count());
        svc.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(done - sent).count());
      }
      std::lock_guard lock(mu);
      result.latencyNs.insert(result.latencyNs.end(), lat.begin(), lat.end());
      result.serviceNs.insert(result.serviceNs.end(), svc.begin(), svc.end());
      result.ok += ok;
      result.badStatus += badStatus;
      result.notAllowed += notAllowed;
      result.ioErrors += ioErrors;
      result.lateStarts += late;
      for (auto& [s, n] : statuses) result.statuses[s] += n;
      if (result.firstBad.empty()) result.firstBad = firstBad;
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  result.seconds = std::chrono::duration<double>(Steady::now() - start).count();
  std::sort(result.latencyNs.begin(), result.latencyNs.end());
  std::sort(result.serviceNs.begin(), result.serviceNs.end());
  return result;
}

// ---------------------------------------------------------------------------------------------

// The API server's histogram for our webhook: cumulative count by `le` (summed over its other
// labels), plus "sum" and "count".
std::map<std::string, double> webhookHistogram() {
  auto r = testing::ControlPlane::get().kubectl({"get", "--raw", "/metrics"});
  std::map<std::string, double> out;
  const std::string family = "apiserver_admission_webhook_admission_duration_seconds";
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(family, 0) != 0 ||
        line.find("name=\"validate.bulkhead.dev\"") == std::string::npos) {
      continue;
    }
    double v = std::stod(line.substr(line.rfind(' ') + 1));
    std::string rest = line.substr(family.size());
    if (rest.rfind("_bucket{", 0) == 0) {
      size_t le = line.find("le=\"");
      out[line.substr(le + 4, line.find('"', le + 4) - le - 4)] += v;
    } else if (rest.rfind("_sum{", 0) == 0) {
      out["sum"] += v;
    } else if (rest.rfind("_count{", 0) == 0) {
      out["count"] += v;
    }
  }
  return out;
}

void onAssert(const doctest::AssertData& ad) {
  std::cerr << "webhook_load: setup failed at " << ad.m_file << ":" << ad.m_line << ": "
            << ad.m_expr << " " << ad.m_decomp.c_str() << "\n";
  testing::ControlPlane::stop();
  std::exit(1);
}

bool eventually(int seconds, const std::function<bool()>& condition) {
  auto deadline = Steady::now() + std::chrono::seconds(seconds);
  while (Steady::now() < deadline) {
    if (condition()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return condition();
}

int fail(const std::string& message) {
  std::cerr << "webhook_load: " << message << "\n";
  return 1;
}

int bench(Steady::time_point setupStart, std::int64_t wrkSeconds, std::int64_t wrkConnections,
          double rate, double rateSeconds, std::int64_t rateConnections, std::int64_t pods,
          std::int64_t podThreads);

int run(int argc, char** argv) {
  std::int64_t wrkSeconds = 15, wrkConnections = 32, rateConnections = 8, pods = 1000,
               podThreads = 8;
  double rate = 2000, rateSeconds = 15;
  FlagSet flags("webhook_load", "Admission webhook throughput, latency and memory.");
  flags.addInt("wrk-seconds", &wrkSeconds, "duration of the maximum-throughput run (wrk)");
  flags.addInt("wrk-connections", &wrkConnections, "wrk's keep-alive connections (1 thread)");
  flags.addDouble("rate", &rate, "requests/s of the fixed-rate run");
  flags.addDouble("rate-seconds", &rateSeconds, "duration of the fixed-rate run");
  flags.addInt("rate-connections", &rateConnections, "connections of the fixed-rate run");
  flags.addInt("pods", &pods, "pods created through the API server");
  flags.addInt("pod-threads", &podThreads, "client threads creating them");
  if (auto parsed = flags.parse(argc, argv); !parsed.ok()) {
    std::cerr << parsed.status().message() << "\n" << flags.usage();
    return 2;
  }
  log::init(log::Level::kWarn);
  doctest::Context doctestContext;
  doctestContext.setAsDefaultForAssertsOutOfTestCases();
  doctestContext.setAssertHandler(onAssert);

  if (testing::shell("command -v wrk").exitCode != 0) {
    std::printf("wrk is missing: apt-get install -y wrk\n");
    auto r = testing::shell(
        "export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq wrk >/dev/null 2>&1 || "
        "(apt-get update -qq && apt-get install -y -qq wrk >/dev/null)");
    if (r.exitCode != 0) {
      std::cerr << "installing wrk failed:\n" << r.out << r.err;
      return 1;
    }
  }
  std::printf("machine: %ld cores, load average %s at start\n", sysconf(_SC_NPROCESSORS_ONLN),
              loadavg().c_str());
  auto setupStart = Steady::now();
  if (!testing::ControlPlane::start()) {
    return 1;
  }
  int rc = bench(setupStart, wrkSeconds, wrkConnections, rate, rateSeconds, rateConnections, pods,
                 podThreads);
  testing::ControlPlane::stop();
  return rc;
}

int bench(Steady::time_point setupStart, std::int64_t wrkSeconds, std::int64_t wrkConnections,
          double rate, double rateSeconds, std::int64_t rateConnections, std::int64_t pods,
          std::int64_t podThreads) {
  auto& cp = testing::ControlPlane::get();
  int port = freePort();
  testing::installChart(port);
  testing::serviceAccountDir();  // a token of the chart's ServiceAccount
  auto setup = cp.kubectl({"apply", "-f", "-"}, R"(
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: baseline}
spec:
  namespaceSelector: {matchLabels: {zero-trust: "on"}}
---
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {zero-trust: "on"}
)");
  if (setup.exitCode != 0) {
    return fail("creating the policy and namespace: " + setup.err);
  }

  const std::string url = "https://127.0.0.1:" + std::to_string(port) + "/validate";
  testing::BulkheadProcess webhook("webhook-load", testing::webhookArgs(port));
  if (!webhook.waitForLog("serving the admission webhook", 60)) {
    return fail("the webhook did not start; see " + webhook.logFile());
  }
  if (!eventually(60, [&] {
        return cp.kubectl({"get", "networkpolicy", "bulkhead-default-deny", "-n", "shop"})
                   .exitCode == 0;
      })) {
    return fail("namespace shop was not segmented");
  }
  // Its pid: the one child of ours serving on this port (the [-] keeps the pattern from matching
  // the shell running pgrep).
  auto pg = testing::shell("pgrep -P " + std::to_string(getpid()) +
                           " -f '[-]-webhook-bind-address 127.0.0.1:" + std::to_string(port) + "'");
  if (pg.exitCode != 0 || pg.out.find('\n') != pg.out.size() - 1) {
    return fail("cannot find the bulkhead process: " + pg.out + pg.err);
  }
  pid_t pid = std::stoi(pg.out);

  // The CA the leader made, from the webhook's Secret.
  std::string caFile = cp.dir() + "/webhook-ca.crt";
  auto ca = cp.shell(
      "kubectl get secret bulkhead-webhook-tls -n bulkhead-system "
      "-o jsonpath='{.data.ca\\.crt}' | base64 -d > '" +
      caFile + "'");
  if (ca.exitCode != 0) {
    return fail("cannot read the webhook CA: " + ca.err);
  }
  SSL_CTX* ctx = clientContext(caFile);
  if (ctx == nullptr) {
    return fail("cannot load " + caFile);
  }

  size_t uidOffset;
  const std::string body = compactReview(&uidOffset);
  std::string tls;
  // The webhook's caches must know the NetworkPolicy too (requireSegmentedNamespace) before the
  // review is allowed.
  std::string lastAnswer;
  if (!eventually(30, [&] {
        TlsConnection probe(ctx, port);
        int status = 0;
        std::string response;
        if (!probe.connect() || !probe.roundTrip(httpRequest(port, body), &status, &response)) {
          lastAnswer = "(no answer)";
          return false;
        }
        tls = probe.describe();
        lastAnswer = std::to_string(status) + " " + response;
        return status == 200 && allowedFor(response, kUidPlaceholder);
      })) {
    return fail("the review is not allowed: " + lastAnswer);
  }
  std::printf(
      "setup: control plane, CRDs, RBAC, policy, webhook registered and shop segmented "
      "in %.1f s\n",
      secondsSince(setupStart));
  std::printf(
      "request: %zu-byte pod AdmissionReview (2 containers, 8 env vars, resources, "
      "securityContexts), allowed; %s\n",
      body.size(), tls.c_str());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  long idleRss = statusKb(pid, "VmRSS"), startupHwm = statusKb(pid, "VmHWM");
  std::printf("bulkhead pid %d: idle RSS %.1f MiB (VmHWM so far %.1f MiB), %ld threads\n", pid,
              idleRss / 1024.0, startupHwm / 1024.0, statusKb(pid, "Threads"));

  // (a) Maximum throughput with wrk.
  std::string bodyFile = cp.dir() + "/review.json";
  std::ofstream(bodyFile) << body;
  double handlerSum0 = webhook.metric("bulkhead_admission_duration_seconds_sum");
  double handlerCount0 = webhook.metric("bulkhead_admission_duration_seconds_count");
  std::printf("\n(a) maximum throughput: wrk -t1 -c%lld -d%llds (load average %s)\n",
              static_cast<long long>(wrkConnections), static_cast<long long>(wrkSeconds),
              loadavg().c_str());
  std::fflush(stdout);
  std::string wrkReport;
  long wrkPeak = 0;
  {
    RssSampler sampler(pid);
    Phase phase(pid);
    // `times` prints the shell's, then its children's (wrk's) user and system CPU time.
    auto w = testing::shell(
        "wrk -t1 -c" + std::to_string(wrkConnections) + " -d" + std::to_string(wrkSeconds) +
        "s --timeout 5s -s " BULKHEAD_SOURCE_DIR "/tests/bench/webhook_load.lua " + url + " -- " +
        bodyFile + "; rc=$?; times; exit $rc");
    size_t at = w.out.find("WRK ");
    if (w.exitCode != 0 || at == std::string::npos) {
      return fail("wrk failed:\n" + w.out + w.err);
    }
    std::map<std::string, double> v;
    std::istringstream in(w.out.substr(at + 4, w.out.find('\n', at) - at - 4));
    std::string kv;
    while (in >> kv) {
      v[kv.substr(0, kv.find('='))] = std::stod(kv.substr(kv.find('=') + 1));
    }
    wrkReport = phase.report(v["requests"]) + "; wrk CPU " + wrkCpu(w.out);
    wrkPeak = sampler.max();
    std::printf(
        "    %.0f requests/s (%.0f requests in %.1f s); latency p50 %.2f ms, p90 %.2f ms, "
        "p99 %.2f ms, p99.9 %.2f ms, max %.1f ms\n",
        v["requests"] / (v["duration_us"] / 1e6), v["requests"], v["duration_us"] / 1e6,
        v["p50_us"] / 1e3, v["p90_us"] / 1e3, v["p99_us"] / 1e3, v["p999_us"] / 1e3,
        v["max_us"] / 1e3);
    std::printf("    errors: connect %.0f, read %.0f, write %.0f, non-2xx %.0f, timeout %.0f\n",
                v["connect"], v["read"], v["write"], v["status"], v["timeout"]);
  }
  std::printf("    %s\n", wrkReport.c_str());
  std::printf("    RSS: peak sampled %.1f MiB, VmHWM %.1f MiB, after %.1f MiB\n", wrkPeak / 1024.0,
              statusKb(pid, "VmHWM") / 1024.0, statusKb(pid, "VmRSS") / 1024.0);
  double handlerSum1 = webhook.metric("bulkhead_admission_duration_seconds_sum");
  double handlerCount1 = webhook.metric("bulkhead_admission_duration_seconds_count");
  std::printf(
      "    handler's own bulkhead_admission_duration_seconds: %.0f reviews, mean %.1f us "
      "(decode + decide + encode, without TLS and HTTP)\n",
      handlerCount1 - handlerCount0,
      (handlerSum1 - handlerSum0) / std::max(1.0, handlerCount1 - handlerCount0) * 1e6);

  // (b) Fixed rate, open loop.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  std::printf(
      "\n(b) fixed rate: %.0f requests/s for %.0f s over %lld keep-alive connections, "
      "open loop (load average %s)\n",
      rate, rateSeconds, static_cast<long long>(rateConnections), loadavg().c_str());
  std::fflush(stdout);
  OpenLoopResult fixed;
  std::string fixedReport;
  long fixedPeak = 0;
  {
    RssSampler sampler(pid);
    Phase phase(pid);
    fixed = openLoop(ctx, port, rate, rateSeconds, static_cast<int>(rateConnections));
    fixedReport = phase.report(static_cast<double>(fixed.latencyNs.size()));
    fixedPeak = sampler.max();
  }
  double handlerSum2 = webhook.metric("bulkhead_admission_duration_seconds_sum");
  double handlerCount2 = webhook.metric("bulkhead_admission_duration_seconds_count");
  const auto& L = fixed.latencyNs;
  const auto& S = fixed.serviceNs;
  std::printf(
      "    %zu answered in %.1f s = %.0f/s; latency from schedule p50 %.2f ms, p99 %.2f ms, "
      "p99.9 %.2f ms, max %.2f ms\n",
      L.size(), fixed.seconds, static_cast<double>(L.size()) / fixed.seconds,
      percentile(L, 50) / 1e3, percentile(L, 99) / 1e3, percentile(L, 99.9) / 1e3,
      L.empty() ? 0.0 : static_cast<double>(L.back()) / 1e6);
  std::printf(
      "    service time (from send) p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms; %ld sends "
      "started >1 ms late\n",
      percentile(S, 50) / 1e3, percentile(S, 99) / 1e3, percentile(S, 99.9) / 1e3,
      fixed.lateStarts);
  std::string statuses;
  for (auto& [s, n] : fixed.statuses) {
    statuses += " " + std::to_string(s) + "x" + std::to_string(n);
  }
  std::printf(
      "    checked: %ld HTTP 200 with \"allowed\":true and the request's uid; errors: %ld "
      "non-200, %ld not allowed, %ld I/O (statuses:%s)%s%s\n",
      fixed.ok, fixed.badStatus, fixed.notAllowed, fixed.ioErrors, statuses.c_str(),
      fixed.firstBad.empty() ? "" : "; first bad: ", fixed.firstBad.c_str());
  std::printf("    %s\n", fixedReport.c_str());
  std::printf("    RSS: peak sampled %.1f MiB, VmHWM %.1f MiB\n", fixedPeak / 1024.0,
              statusKb(pid, "VmHWM") / 1024.0);
  std::printf("    handler's own mean %.1f us over %.0f reviews\n",
              (handlerSum2 - handlerSum1) / std::max(1.0, handlerCount2 - handlerCount1) * 1e6,
              handlerCount2 - handlerCount1);

  // (c) Memory summary.
  std::printf("\n(c) bulkhead RSS: idle %.1f MiB; peak under load %.1f MiB (VmHWM %.1f MiB)\n",
              idleRss / 1024.0, std::max(wrkPeak, fixedPeak) / 1024.0,
              statusKb(pid, "VmHWM") / 1024.0);

  // (d) Pods through the API server.
  std::printf(
      "\n(d) %lld pods created through the API server with %lld client threads (load "
      "average %s)\n",
      static_cast<long long>(pods), static_cast<long long>(podThreads), loadavg().c_str());
  std::fflush(stdout);
  json pod = json::parse(kReview)["request"]["object"];
  pod["metadata"].erase("ownerReferences");
  pod["metadata"].erase("generateName");
  pod["metadata"].erase("creationTimestamp");
  pod.erase("status");
  auto before = webhookHistogram();
  double handlerSum3 = webhook.metric("bulkhead_admission_duration_seconds_sum");
  double handlerCount3 = webhook.metric("bulkhead_admission_duration_seconds_count");
  pid_t apiserverPid = std::stoi(cp.shell("echo $TESTENV_APISERVER_PID").out);
  double apiCpu0 = cpuSeconds(apiserverPid);
  std::vector<int64_t> createNs;
  std::atomic<long> created{0}, failed{0};
  std::string firstError;
  std::string podsReport;
  double podsSeconds;
  {
    Phase phase(pid);
    auto t0 = Steady::now();
    std::atomic<long> next{0};
    std::mutex mu;
    std::vector<std::thread> writers;
    for (int w = 0; w < podThreads; ++w) {
      writers.emplace_back([&] {
        auto c = testing::unthrottledClient(cp.kubeconfig());
        std::vector<int64_t> mine;
        json p = pod;
        for (long i = next++; i < pods; i = next++) {
          p["metadata"]["name"] = "load-" + std::to_string(i);
          auto s = Steady::now();
          auto r = c->create(kube::resources::kPods, p);
          mine.push_back(
              std::chrono::duration_cast<std::chrono::nanoseconds>(Steady::now() - s).count());
          if (r.ok()) {
            ++created;
          } else {
            ++failed;
            std::lock_guard lock(mu);
            if (firstError.empty()) firstError = r.status().message();
          }
        }
        std::lock_guard lock(mu);
        createNs.insert(createNs.end(), mine.begin(), mine.end());
      });
    }
    for (auto& t : writers) {
      t.join();
    }
    podsSeconds = secondsSince(t0);
    podsReport = phase.report(static_cast<double>(pods));
  }
  double apiCpu = cpuSeconds(apiserverPid) - apiCpu0;
  auto after = webhookHistogram();
  double handlerSum4 = webhook.metric("bulkhead_admission_duration_seconds_sum");
  double handlerCount4 = webhook.metric("bulkhead_admission_duration_seconds_count");
  std::sort(createNs.begin(), createNs.end());
  std::printf(
      "    %ld created, %ld failed in %.1f s = %.0f pods/s; client-side create latency "
      "p50 %.2f ms, p99 %.2f ms%s%s\n",
      created.load(), failed.load(), podsSeconds, static_cast<double>(pods) / podsSeconds,
      percentile(createNs, 50) / 1e3, percentile(createNs, 99) / 1e3,
      firstError.empty() ? "" : "; first error: ", firstError.c_str());
  std::printf("    %s; kube-apiserver CPU %.1f s (%.0f us/pod)\n", podsReport.c_str(), apiCpu,
              apiCpu / static_cast<double>(pods) * 1e6);
  double count = after["count"] - before["count"];
  std::printf(
      "    apiserver_admission_webhook_admission_duration_seconds{name=\"validate.bulkhead."
      "dev\"}: %.0f calls, mean %.2f ms\n",
      count, count > 0 ? (after["sum"] - before["sum"]) / count * 1e3 : 0.0);
  std::vector<std::pair<double, std::string>> les;
  for (auto& [k, v] : after) {
    if (k != "sum" && k != "count") {
      les.emplace_back(k == "+Inf" ? 1e300 : std::stod(k), k);
    }
  }
  std::sort(les.begin(), les.end());
  double prev = 0;
  for (auto& [num, le] : les) {
    double cumulative = after[le] - before[le];
    std::printf("      le=%-6s cumulative %5.0f (%5.1f%%)  in this bucket %5.0f\n", le.c_str(),
                cumulative, count > 0 ? cumulative / count * 100 : 0.0, cumulative - prev);
    prev = cumulative;
  }
  std::printf("    handler's own mean %.1f us over %.0f reviews\n",
              (handlerSum4 - handlerSum3) / std::max(1.0, handlerCount4 - handlerCount3) * 1e6,
              handlerCount4 - handlerCount3);
  std::printf("\nload average %s at the end; total %.1f s\n", loadavg().c_str(),
              secondsSince(setupStart));
  std::fflush(stdout);

  SSL_CTX_free(ctx);
  bool clean = fixed.badStatus == 0 && fixed.notAllowed == 0 && fixed.ioErrors == 0 &&
               failed == 0 && static_cast<long>(fixed.latencyNs.size()) == fixed.ok;
  return clean ? 0 : 1;
}

}  // namespace
}  // namespace bulkhead

int main(int argc, char** argv) { return bulkhead::run(argc, argv); }
