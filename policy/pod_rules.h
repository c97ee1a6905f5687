#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "policy/mesh.h"
#include "policy/pod_facts.h"
#include "policy/segmentation_policy.h"

// The pod rules of SPEC 3.1, evaluated over PodFacts, and the denial messages of SPEC 3.2. Pure.
namespace bulkhead::policy {

inline constexpr std::string_view kRequiredLabels = "requiredLabels";
inline constexpr std::string_view kForbidHostNetwork = "forbidHostNetwork";
inline constexpr std::string_view kForbidHostPorts = "forbidHostPorts";
inline constexpr std::string_view kForbidHostPIDIPC = "forbidHostPIDIPC";
inline constexpr std::string_view kForbidPrivileged = "forbidPrivileged";
inline constexpr std::string_view kForbiddenCapabilities = "forbiddenCapabilities";
inline constexpr std::string_view kRequireSidecar = "requireSidecar";
inline constexpr std::string_view kRequireSegmentedNamespace = "requireSegmentedNamespace";

// Every rule name, in evaluation order (also the order of evaluatePod's result). These are the
// names a SegmentationException's spec.rules may list.
inline constexpr std::array<std::string_view, 8> kPodRuleNames = {
    kRequiredLabels,   kForbidHostNetwork,     kForbidHostPorts, kForbidHostPIDIPC,
    kForbidPrivileged, kForbiddenCapabilities, kRequireSidecar,  kRequireSegmentedNamespace};

// What the rules need to know beyond the pod and the policy. A default-constructed context
// applies every rule (fails closed); the webhook sets each field from its informer caches.
struct PodContext {
  // The namespace's mTLS is STRICT: the policy's mtls.mode is STRICT and the mesh is available.
  // requireSidecar only applies then.
  bool mtlsStrict = true;
  // The namespace is in Istio's ambient mode: pods without an injected sidecar are held to the
  // ambient opt-outs instead of the sidecar ones.
  bool ambient = false;
  // What asks Istio to inject the namespace's pods, as shown in a denial ("its label
  // istio-injection=enabled"); empty when the namespace does not. See injectionRequest().
  std::string injectionRequest;
  // The namespace's bulkhead-default-deny NetworkPolicy exists (requireSegmentedNamespace).
  bool defaultDenyExists = false;
  // Rule names exempted for this pod by active SegmentationExceptions.
  std::set<std::string, std::less<>> exemptedRules;
};

struct Violation {
  std::string rule;  // a name from kPodRuleNames
  std::string path;  // the offending field: "spec.template.spec.containers[0].ports[1].hostPort"
  // The evidence, as shown in the message's parenthesis: "<path>=<value>" (string values quoted
  // and cut at 64 bytes), "<path> is missing" for a required label, and for
  // requireSegmentedNamespace (path "metadata.namespace") "no NetworkPolicy
  // bulkhead-default-deny in namespace \"shop\" yet".
  std::string detail;
  // Why an allowance did not apply, shown before the fix: a container that takes the name of
  // one of the injector's but is not it says which part did not match.
  std::string note = {};
  bool operator==(const Violation&) const = default;
};

// How a namespace with these labels asks Istio to inject its pods, for PodContext: istio.io/rev
// (any revision) or istio-injection=enabled, as Istio's injector selects namespaces; "" if not.
std::string injectionRequest(const std::string& ns, const Labels& namespaceLabels);

// Whether a label or annotation key is one of the mesh's that the rules read (Istio's sidecar,
// traffic, ambient and proxy keys).
bool isMeshMetadataKey(std::string_view key);

// Do `a` and `b` agree on every label and annotation the rules of `policy` read (the required
// labels, and the mesh's sidecar, traffic, ambient and proxy keys)?
bool ruleMetadataEqual(const PodFacts& a, const PodFacts& b, const SegmentationPolicy& policy);

// The capability name as the container runtime reads it: upper-case, without "CAP_".
std::string normalizeCapability(std::string_view name);

// Every violation of `policy`'s pod rules by `pod`, skipping rules switched off in
// policy.podRules or exempted in `context`. Ordered by kPodRuleNames, then by path (numbers in
// paths compare as numbers, so containers[2] comes before containers[10]). Empty when allowed.
std::vector<Violation> evaluatePod(const PodFacts& pod, const SegmentationPolicy& policy,
                                   const PodContext& context);

// SPEC 3.2's denial message for one violation of policy `policyName`:
//   bulkhead: pod "web-1" in namespace "shop" violates forbidHostNetwork (spec.hostNetwork=true)
//   of SegmentationPolicy "baseline"; remove hostNetwork or request a SegmentationException
// (one line). A workload is named by its kind in lower case (deployment "web"). The fix hint
// after "; " is rule-specific and names the container where there is one.
std::string denialMessage(const PodFacts& pod, const Violation& violation,
                          const std::string& policyName);

// The message for all of `violations` (as returned by evaluatePod). One violation gives exactly
// the single form above. Several give one line (the single messages joined would repeat the
// subject and the policy each time) listing each violation with its evidence and fix, at most
// kMaxListedViolations of them, then "and N more":
//   bulkhead: pod "web-1" in namespace "shop" has 2 violations of SegmentationPolicy
//   "baseline": forbidHostNetwork (spec.hostNetwork=true): remove hostNetwork; forbidHostPorts
//   (spec.containers[0].ports[0].hostPort=8080): remove hostPort 8080 from container "web";
//   fix them or request a SegmentationException
// Empty when `violations` is empty.
inline constexpr size_t kMaxListedViolations = 10;
std::string denialMessage(const PodFacts& pod, const std::vector<Violation>& violations,
                          const std::string& policyName);

}  // namespace bulkhead::policy
