#pragma once

#include <string>
#include <string_view>

#include "policy/pod_facts.h"
#include "policy/segmentation_policy.h"

// Recognising the mesh's own work in a pod: the containers Istio's sidecar injector adds, the
// annotations it writes, and the waypoint pods istiod creates. The injector's containers get
// allowances no tenant container gets (the proxy's UID and GID, the capabilities to set up
// iptables), so each is recognised by everything the injector sets, never by its name alone.
// Pure.
namespace bulkhead::policy {

// The user and group the Istio proxy runs as: Istio's iptables rules let traffic from either
// bypass the redirection to the proxy.
inline constexpr int64_t kIstioProxyUid = 1337;
inline constexpr int64_t kIstioProxyGid = 1337;

inline constexpr std::string_view kIstioProxyContainer = "istio-proxy";
inline constexpr std::string_view kIstioInitContainer = "istio-init";
inline constexpr std::string_view kIstioValidationContainer = "istio-validation";

// What a container is to the mesh.
enum class MeshRole {
  kNone,        // a workload container
  kProxy,       // the injected istio-proxy sidecar (regular, or a native sidecar)
  kInit,        // istio-init: sets up the pod's iptables redirection (no Istio CNI)
  kValidation,  // istio-validation: checks Istio CNI's redirection
};

struct MeshContainer {
  MeshRole role = MeshRole::kNone;
  // Set when the container takes a name reserved for the injector's containers but is not one:
  // which part did not match, e.g. `its image "x/proxy:1" is not one of spec.mesh.proxyImages`.
  std::string mismatch;
};

// The image's repository, as a container runtime resolves it: without tag or digest, with the
// default registry ("istio/proxyv2:1.28.0" is "docker.io/istio/proxyv2").
std::string imageRepository(std::string_view image);

// Is `c` one of the injector's containers? Each role wants its name, an image whose repository
// is in `mesh.proxyImages`, no command (the image's own entrypoint, pilot-agent), and the
// injector's arguments: "proxy sidecar ..." for istio-proxy, "istio-iptables ..." for istio-init,
// "istio-iptables ... --run-validation ..." for istio-validation. istio-init and
// istio-validation are init containers; istio-proxy is a regular container or a native sidecar.
MeshContainer meshContainer(const ContainerFacts& c, const MeshSettings& mesh);

// Is the pod one istiod itself runs as a waypoint (from a Gateway of class istio-waypoint)?
// istiod labels it gateway.istio.io/managed=istio.io-mesh-controller and runs one container,
// istio-proxy, from a proxy image with "proxy waypoint ..." arguments. Its sidecar and ambient
// opt-outs are the mesh's own.
bool isWaypointPod(const PodFacts& pod, const MeshSettings& mesh);

// Does a traffic.sidecar.istio.io/ annotation (the key without that prefix) take traffic around
// the proxy? The values the injector writes itself keep every flow in the mesh and are not opt-
// outs: includeOutboundIPRanges and includeInboundPorts "*"; excludeInboundPorts listing only
// the proxy's own ports (15020, 15021, 15090); empty exclude lists.
bool trafficAnnotationBypasses(std::string_view name, std::string_view value);

}  // namespace bulkhead::policy
