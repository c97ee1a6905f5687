#include "policy/mesh.h"

#include <algorithm>

#include "policy/segmentation.h"

namespace bulkhead::policy {
namespace {

constexpr std::string_view kWaypointManagedLabel = kWaypointLabel;
constexpr std::string_view kWaypointManagedValue = kWaypointLabelValue;

std::string inQuotes(std::string_view s) { return "\"" + std::string(s) + "\""; }

bool hasArg(const std::vector<std::string>& args, std::string_view arg) {
  return std::find(args.begin(), args.end(), arg) != args.end();
}

// Why `c`, which bears a reserved name, is not the injector's container of that name; "" if it is.
std::string mismatchOf(const ContainerFacts& c, const MeshSettings& mesh, bool wantInit,
                       std::string_view wantArgs) {
  const bool nativeSidecar = c.kind == ContainerFacts::Kind::kInit && c.restartPolicy == "Always";
  if (c.kind == ContainerFacts::Kind::kEphemeral) {
    return "it is an ephemeral container, which the injector never adds";
  }
  if (wantInit && (c.kind != ContainerFacts::Kind::kInit || nativeSidecar)) {
    return "the injector adds it as an init container that runs to completion";
  }
  if (!wantInit && c.kind == ContainerFacts::Kind::kInit && !nativeSidecar) {
    return "the injector adds it as a regular container or a native sidecar "
           "(restartPolicy: Always)";
  }
  std::string repo = imageRepository(c.image);
  if (std::find(mesh.proxyImages.begin(), mesh.proxyImages.end(), repo) == mesh.proxyImages.end()) {
    return "its image " + inQuotes(c.image) + " is not one of spec.mesh.proxyImages";
  }
  if (!c.command.empty()) {
    return "it sets a command, where the injector runs the proxy image's own entrypoint";
  }
  // The injector's arguments start with these words.
  size_t i = 0;
  for (size_t start = 0; start < wantArgs.size(); ++i) {
    size_t space = std::min(wantArgs.find(' ', start), wantArgs.size());
    if (i >= c.args.size() || c.args[i] != wantArgs.substr(start, space - start)) {
      return "its args do not start with " + inQuotes(wantArgs) + " as the injector's do";
    }
    start = space + 1;
  }
  return "";
}

}  // namespace

std::string imageRepository(std::string_view image) {
  if (size_t at = image.find('@'); at != std::string_view::npos) {
    image = image.substr(0, at);
  }
  size_t slash = image.rfind('/');
  size_t colon = image.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    image = image.substr(0, colon);
  }
  std::string repo(image);
  size_t first = repo.find('/');
  if (first == std::string::npos) {
    return "docker.io/library/" + repo;
  }
  std::string_view domain = std::string_view(repo).substr(0, first);
  bool isRegistry = domain.find('.') != std::string_view::npos ||
                    domain.find(':') != std::string_view::npos || domain == "localhost";
  if (!isRegistry) {
    return "docker.io/" + repo;
  }
  if (domain == "index.docker.io") {
    return "docker.io" + repo.substr(first);
  }
  return repo;
}

MeshContainer meshContainer(const ContainerFacts& c, const MeshSettings& mesh) {
  MeshContainer out;
  MeshRole role = MeshRole::kNone;
  std::string mismatch;
  if (c.name == kIstioProxyContainer) {
    role = MeshRole::kProxy;
    mismatch = mismatchOf(c, mesh, false, "proxy sidecar");
  } else if (c.name == kIstioInitContainer) {
    role = MeshRole::kInit;
    mismatch = mismatchOf(c, mesh, true, "istio-iptables");
  } else if (c.name == kIstioValidationContainer) {
    role = MeshRole::kValidation;
    mismatch = mismatchOf(c, mesh, true, "istio-iptables");
    if (mismatch.empty() && !hasArg(c.args, "--run-validation")) {
      mismatch = "its args lack --run-validation, so it is not Istio CNI's validation";
    }
  } else {
    return out;
  }
  if (mismatch.empty()) {
    out.role = role;
  } else {
    out.mismatch = std::move(mismatch);
  }
  return out;
}

bool isWaypointPod(const PodFacts& pod, const MeshSettings& mesh) {
  auto managed = pod.labels.value.find(std::string(kWaypointManagedLabel));
  if (managed == pod.labels.value.end() || managed->second != kWaypointManagedValue) {
    return false;
  }
  if (pod.containers.size() != 1) {
    return false;
  }
  const ContainerFacts& c = pod.containers.front();
  return c.kind == ContainerFacts::Kind::kRegular && c.name == kIstioProxyContainer &&
         mismatchOf(c, mesh, false, "proxy waypoint").empty();
}

bool trafficAnnotationBypasses(std::string_view name, std::string_view value) {
  auto trim = [](std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
      s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
      s.remove_suffix(1);
    }
    return s;
  };
  value = trim(value);
  if (name == "includeOutboundIPRanges" || name == "includeInboundPorts") {
    return value != "*";
  }
  if (name == "excludeInboundPorts") {
    // The proxy's own ports (status and merged metrics, health, Envoy's Prometheus endpoint)
    // never reach the application, so leaving them out of the capture bypasses nothing.
    while (!value.empty()) {
      size_t comma = value.find(',');
      std::string_view port = trim(value.substr(0, comma));
      if (!port.empty() && port != "15020" && port != "15021" && port != "15090") {
        return true;
      }
      value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
    }
    return false;
  }
  if (name.starts_with("exclude")) {
    return !value.empty();
  }
  return false;
}

}  // namespace bulkhead::policy
