#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "policy/exceptions.h"
#include "policy/label_selector.h"
#include "policy/segmentation.h"
#include "policy/segmentation_policy.h"

// AccessGrant (bulkhead.dev/v1alpha1; the contract is the descriptions of
// crds/bulkhead.dev_accessgrants.yaml): just-in-time access that opens one network flow, from
// some pods of a source namespace to some pods of the grant's own (destination) namespace on some
// ports, for a bounded time. Decoding, phase, the objects an Active grant generates, its status
// and audit messages, and the admission checks of who requests and approves it. Pure: the current
// time is always a parameter.
//
// Approval and duration follow the rules of SegmentationException (policy/exceptions.h, the
// README's "exception" refusal), applied once per governing policy: the destination namespace's
// governing SegmentationPolicy, then the source namespace's when another policy governs it. A
// grant opens a hole in both namespaces' segmentation, so both policies must accept it: its
// lifetime is within both exceptions.maxDuration, and when either sets exceptions.approverGroups
// it needs an approver who satisfies every policy that does (a member of both policies' groups
// when both set them). A source namespace no policy governs adds no rule.
namespace bulkhead::policy {

inline constexpr const char* kGrantKind = "AccessGrant";
// Held by the controller while a grant's generated objects may exist, so that deleting an Active
// grant closes its flow (phase Revoked) before the grant goes away.
inline constexpr const char* kGrantFinalizer = "bulkhead.dev/access-grant";
// Labels of every object a grant generates (besides kManagedByLabel; never kPolicyLabel, which
// marks the objects of a namespace's SegmentationPolicy): the grant's name and namespace.
inline constexpr const char* kGrantLabel = "bulkhead.dev/grant";
inline constexpr const char* kGrantNamespaceLabel = "bulkhead.dev/grant-namespace";
// The label selector of every object generated for a grant.
inline constexpr const char* kGrantSelector =
    "app.kubernetes.io/managed-by=bulkhead,bulkhead.dev/grant";
// Annotations of every generated object: the grant's effective expiry and its reason.
inline constexpr const char* kGrantExpiresAnnotation = "bulkhead.dev/grant-expires-at";
inline constexpr const char* kGrantReasonAnnotation = "bulkhead.dev/grant-reason";
// status.history keeps the last this many phase changes.
inline constexpr size_t kGrantHistoryLimit = 20;
// The longest spec.duration the schema accepts, whatever the policies say (they bound it further).
inline constexpr std::chrono::hours kGrantMaxDuration{87600};

struct GrantSource {
  std::string ns;              // spec.from.namespace
  LabelSelector podSelector;   // empty: every pod of the source namespace
  std::string serviceAccount;  // empty: any; else the Istio principal of that ServiceAccount
  bool operator==(const GrantSource&) const = default;
};

struct GrantDestination {
  // spec.to.podSelector.matchLabels, never empty (Istio AuthorizationPolicy selectors only
  // support matchLabels, so neither does a grant).
  Labels matchLabels;
  std::vector<Port> ports;  // 1 to 16, no (port, protocol) twice, as written
  bool operator==(const GrantDestination&) const = default;
};

struct AccessGrant {
  std::string name;  // a DNS label: it is a label value of the generated objects
  std::string ns;    // the destination namespace
  std::string uid;
  int64_t generation = 0;
  bool deleting = false;      // metadata.deletionTimestamp is set
  bool hasFinalizer = false;  // metadata.finalizers holds kGrantFinalizer

  GrantSource from;
  GrantDestination to;
  // Exactly one of the two is set.
  std::optional<WallTime> expiresAt;
  std::optional<std::chrono::milliseconds> duration;  // from activation; positive
  std::string reason;
  std::string requestedBy;
  std::string approvedBy;  // empty when not approved

  // status.activatedAt: when the controller first made the grant Active. What a duration counts
  // from: the flow opens when the controller writes its objects, so that is when access starts.
  std::optional<WallTime> activatedAt;

  bool operator==(const AccessGrant&) const = default;
};

// Decodes an AccessGrant as read from the API server or an admission request. Checks what the
// CRD's schema checks (required fields, name and namespace syntax, label syntax, matchLabels only
// in spec.to, ports, exactly one of expiresAt and duration, reason length) and reads
// status.activatedAt, so an object that reaches the webhook or the controller without that schema
// is still decoded safely. Invalid errors name the field path ("spec.to.ports[0].port: ...").
StatusOr<AccessGrant> decodeAccessGrant(const nlohmann::json& object);

// spec.from.namespace of an object that may not decode, "" when there is none: the webhook finds
// the source namespace's governing policy with it before calling checkGrantRequest.
std::string grantSourceNamespace(const nlohmann::json& object);

// When the grant stops: spec.expiresAt, or activatedAt + duration; std::nullopt for a duration
// grant that was never Active.
std::optional<WallTime> effectiveExpiry(const AccessGrant& grant);

// ---------------------------------------------------------------------------------------------
// Phase

enum class GrantPhase { kPending, kActive, kExpired, kRevoked };

// "Pending", "Active", "Expired", "Revoked": the values of status.phase.
std::string_view grantPhaseName(GrantPhase phase);
// The inverse; std::nullopt for anything else.
std::optional<GrantPhase> parseGrantPhase(std::string_view name);

// Does the grant need approval: does the destination's or the source's governing policy (null when
// none governs) set exceptions.approverGroups?
bool grantNeedsApproval(const SegmentationPolicy* destGoverning,
                        const SegmentationPolicy* sourceGoverning);

// Expired at and after the effective expiry; otherwise Pending while the grant needs approval
// (grantNeedsApproval) and approvedBy is empty; otherwise Active, or Revoked when the grant is
// being deleted (an Active grant being deleted is Revoked; the controller then removes its objects
// and its finalizer). Whether the approver was entitled to approve is checked at admission
// (checkGrantRequest), not here. Objects are generated only while Active. A duration grant has no
// expiry before it is Active: unapproved, it stays Pending until it is approved or deleted.
GrantPhase phaseOf(const AccessGrant& grant, const SegmentationPolicy* destGoverning,
                   const SegmentationPolicy* sourceGoverning, WallTime now);

// ---------------------------------------------------------------------------------------------
// Generated objects

// What the namespaces' own segmentation denies, which decides what the grant must open. An allow
// is written only where the flow is denied: a NetworkPolicy selecting pods for ingress (egress)
// isolates them for every other flow in that direction, and an ALLOW AuthorizationPolicy turns a
// workload's every other request into a denial, so writing either where nothing denies would take
// access away instead of granting it.
struct GrantContext {
  bool destinationDeniesIngress = false;    // its policy's network.denyIngress
  bool destinationAmbient = false;          // in Istio's ambient mode: allows also TCP 15008
  bool destinationMeshDefaultDeny = false;  // authorization.defaultDeny, security.istio.io served
  bool sourceDeniesEgress = false;          // its policy's network.denyEgress
  bool sourceAmbient = false;
  bool operator==(const GrantContext&) const = default;
};

// The context from the governing policies (null when none governs) and the namespaces.
GrantContext grantContextFor(const SegmentationPolicy* destGoverning, const NamespaceFacts& dest,
                             const SegmentationPolicy* sourceGoverning,
                             const NamespaceFacts& source, const ClusterFacts& facts);

// "bulkhead-grant-<grant>" in the destination (NetworkPolicy and AuthorizationPolicy), and
// "bulkhead-grant-<destination namespace>.<grant>" in the source (NetworkPolicy). Grant names are
// DNS labels, so the dot keeps the two forms from ever naming the same object, and both stay
// within the 253 characters of a name.
std::string grantObjectName(const AccessGrant& grant);
std::string grantEgressObjectName(const AccessGrant& grant);

// The objects an Active grant needs, complete (apiVersion, kind, metadata with labels and
// annotations, spec), in this order, each only when `context` says the flow is denied there:
//  1. NetworkPolicy grantObjectName() in the destination: ingress to to.podSelector from
//     from.podSelector of the source namespace on the ports;
//  2. NetworkPolicy grantEgressObjectName() in the source: egress from from.podSelector to
//     to.podSelector of the destination on the ports;
//  3. AuthorizationPolicy grantObjectName() in the destination: ALLOW to the pods of
//     to.podSelector, from the principal cluster.local/ns/<source>/sa/<serviceAccount> when set,
//     else from the source namespace, on the TCP ports (the mesh authorizes TCP only; none is
//     written when there is no TCP port). An AuthorizationPolicy cannot select source pods by
//     label: without a serviceAccount the NetworkPolicies alone narrow the source to its pods.
// Deterministic: the same inputs give byte-identical output. The controller writes them while
// phaseOf() is Active and deletes every object of kGrantSelector for the grant otherwise.
std::vector<nlohmann::json> grantObjects(const AccessGrant& grant, const GrantContext& context);

// ---------------------------------------------------------------------------------------------
// Status and audit

// The new status object, from the grant's current one (`oldStatus`, {} when none) and the phase
// now: phase; activatedAt, set once, the first time the grant is Active (to `now`, in whole
// seconds); expiresAt, the effective expiry once known; observedGeneration; a Ready condition
// (True only while Active; reasons Active, AwaitingApproval, Expired, Revoked); and history, one
// {phase, time, message} entry appended per phase change, the last kGrantHistoryLimit kept.
nlohmann::json grantStatus(const nlohmann::json& oldStatus, GrantPhase phase,
                           const AccessGrant& grant, WallTime now);

// Suspended: an Active grant went back to Pending because a governing policy now requires
// approval; its flow closes until someone approves it.
enum class GrantEvent { kRequested, kApproved, kActivated, kExpired, kRevoked, kSuspended };

// The audit events of a phase change, in order: `from` is the phase status.phase had,
// std::nullopt for a grant without status (just created). Requested for a new grant, Approved
// when it turns Active with an approver after Pending (or at once), Activated, Expired, Revoked,
// Suspended; none without a change.
std::vector<GrantEvent> grantEvents(std::optional<GrantPhase> from, GrantPhase to,
                                    const AccessGrant& grant);

// The Event reason: "GrantRequested", "GrantApproved", "GrantActivated", "GrantExpired",
// "GrantRevoked", "GrantSuspended".
std::string_view grantEventReason(GrantEvent event);

// The Event message: the grant, who, the flow, until when and why. It names both namespaces, so
// the controller records the same message in the destination and in the source namespace.
// `grant` should carry the activatedAt of its new status (to say until when a duration runs).
// AccessGrant "debug-api" in namespace "payments": approved by "bob" (requested by "alice"):
// from shop (pods app=web, ServiceAccount web) to payments (pods app=api) on 8080/TCP until
// 2026-12-01T10:00:00Z; reason: "TICKET-1 debugging the checkout"
std::string grantEventMessage(GrantEvent event, const AccessGrant& grant);

// ---------------------------------------------------------------------------------------------
// Admission

// Decides a request on an AccessGrant: std::nullopt to allow, or the denial message.
// `destGoverning` governs the grant's namespace, `sourceGoverning` the new object's
// spec.from.namespace (grantSourceNamespace); null when no policy does. The shared checks of
// policy/exceptions.h run once for the destination's rules (approvalRulesOf; the defaults when
// none governs) and once more for the source's policy when another one governs it, so the denial
// names the policy that refused:
// CREATE as checkTimeBoundCreate; with duration instead of expiresAt, the duration must be at
//   most each policy's maxDuration.
// UPDATE as checkTimeBoundUpdate, where spec.from, spec.to, spec.reason and spec.duration are the
//   kind's other fields: approval is the sole change to spec, made in the approver's own name,
//   not by the requester, by a member of the approver groups of every policy that sets them
//   (approving a grant no policy requires approval for is refused); before approval only the
//   requester changes spec, and a changed time bound or source is checked as on CREATE; after
//   approval spec is fixed except spec.expiresAt moving earlier (spec.duration cannot change:
//   delete the grant to end it early).
// DELETE and CONNECT are always allowed: removing a grant only takes access away.
// A request without the objects its operation needs, or with an object that does not decode, is
// denied (fails closed).
std::optional<std::string> checkGrantRequest(const ExceptionReview& review,
                                             const SegmentationPolicy* destGoverning,
                                             const SegmentationPolicy* sourceGoverning,
                                             WallTime now);

}  // namespace bulkhead::policy
