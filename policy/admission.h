#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "policy/exceptions.h"
#include "policy/pod_facts.h"
#include "policy/segmentation_policy.h"

// What the admission webhook decides (SPEC 3), as functions of the request's facts and a snapshot
// of the cluster. Pure: the webhook decodes and looks things up, then asks here.
namespace bulkhead::policy {

struct Decision {
  bool allowed = true;
  int code = 200;       // 403 on denial
  std::string message;  // the denial
  std::vector<std::string> warnings;                    // Warn mode
  std::map<std::string, std::string> auditAnnotations;  // Audit mode (and Warn)
  std::vector<std::string> rules;  // the rules violated, for metrics ("" when none)

  static Decision allow() { return {}; }
  static Decision deny(std::string message, std::vector<std::string> rules) {
    Decision d;
    d.allowed = false;
    d.code = 403;
    d.message = std::move(message);
    d.rules = std::move(rules);
    return d;
  }
};

inline constexpr const char* kAuditAnnotationKey = "violations";

// `message` (for `rules`) in `mode`: Enforce denies with it; Warn allows with the warnings
// `perViolation`; Audit (and Warn) allow and record it in an audit annotation.
Decision applyMode(Mode mode, std::string message, std::vector<std::string> rules,
                   std::vector<std::string> perViolation);

// A Pod or a workload's pod template in a namespace governed by `governing` (null: none governs,
// always allowed). Applies the policy's mode: Enforce denies; Warn allows with one warning per
// violation; Audit allows and records the violations in an audit annotation.
//
// An UPDATE is judged on what changed: when the pod spec (a workload's pod template spec) is
// unchanged and so are the labels and annotations the rules read (see ruleMetadataEqual), the
// update is admitted without evaluating the rules, so finalizers, ownerReferences, other labels
// and status keep working on objects admitted before a rule was tightened.
struct PodReview {
  const PodFacts* pod = nullptr;
  const SegmentationPolicy* governing = nullptr;
  bool meshAvailable = false;
  bool defaultDenyExists = false;
  const std::vector<SegmentationException>* exceptions = nullptr;  // in the pod's namespace
  WallTime now;
  const Labels* namespaceLabels = nullptr;  // the pod's namespace's (ambient mode); null: none
  const PodFacts* oldPod = nullptr;         // UPDATE: the object before it
  bool podSpecChanged = true;               // UPDATE: the pod (template) spec differs from old
};
Decision decidePod(const PodReview& review);

// UPDATE or DELETE of an object Bulkhead generated (it carries the managed-by label): only the
// controller's own user may do it.
// In a namespace being deleted (`namespaceTerminating`), deletes are admitted from anyone: the
// namespace controller removes everything in it, and nothing can run there any more.
Decision decideGeneratedObjectChange(const std::string& operation, const std::string& kind,
                                     const std::string& ns, const std::string& name,
                                     const Labels& oldLabels, const std::string& username,
                                     const std::string& controllerUsername,
                                     bool namespaceTerminating);

// A namespace's labels changing from `oldLabels` to `newLabels` (through the namespace or its
// status or finalize subresource): refused when it leaves every policy's selection, or moves to a
// policy weaker than the one that governed it (see weakenings()), or changes a Pod Security label
// the controller sets for its policy away from that policy's value, unless the user is in the
// approver groups of the policy that governed it.
Decision decideNamespaceLabels(const std::string& ns, const Labels& oldLabels,
                               const Labels& newLabels,
                               const std::vector<SegmentationPolicy>& policies,
                               const std::string& installNamespace, const UserInfo& user);

// A Service in a namespace governed by `governing`: externalIPs always refused (CVE-2020-8554);
// NodePort and LoadBalancer only with an exemption (`exposureAllowed`).
struct ServiceFacts {
  std::string name;
  std::string ns;
  std::string type = "ClusterIP";
  bool hasExternalIPs = false;
};
Decision decideService(const ServiceFacts& service, const SegmentationPolicy* governing,
                       bool exposureAllowed);

}  // namespace bulkhead::policy
