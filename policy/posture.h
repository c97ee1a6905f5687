#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "policy/exceptions.h"
#include "policy/segmentation_policy.h"

// A namespace's posture: its existing Pods and workloads judged by the pod rules of the policy
// that governs it, with the webhook's messages, whatever the policy's mode (objects admitted under
// Audit or Warn, or before a rule was tightened, are exactly what switching to Enforce would
// break). Published as an OpenReports Report (openreports.io/v1alpha1, the format Kyverno and
// Kubewarden also write) and counted on the policy's status. Pure.
namespace bulkhead::policy {

// The scanned kinds besides Pod: every workload kind the webhook checks that runs pods (a
// PodTemplate runs nothing).
inline constexpr std::string_view kScannedWorkloadKinds[] = {
    "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job",
    "CronJob"};

// The report's name in each namespace, and its API.
inline constexpr const char* kReportName = "bulkhead";
inline constexpr const char* kReportApiVersion = "openreports.io/v1alpha1";
// At most this many results are listed (the summary counts them all): a Report is one object,
// and etcd refuses objects above about 1.5 MB.
inline constexpr size_t kMaxReportResults = 1000;

// What a cache keeps of a Pod or workload for the scan, in little memory: `kind` (which list
// items lack), metadata's name, namespace, uid, resourceVersion, deletionTimestamp and controller
// ownerReferences as they are, and under "scanned" one string: the JSON of exactly what the pod
// rules read (see decodePodFacts: the pod's or template's labels and annotations, host
// namespaces, security contexts, and each container's name, image, command, args, restartPolicy,
// hostPorts and securityContext). Everything else (status, resources, env, volumes...) goes: it
// is most of a pod's size, and a parsed JSON object costs several times its text.
void keepScannedFields(nlohmann::json& object, std::string_view kind);

struct PostureInput {
  std::string ns;
  const SegmentationPolicy* policy = nullptr;  // governing the namespace; null: nothing to scan
  const Labels* namespaceLabels = nullptr;     // for the ambient data plane and injection
  bool meshAvailable = false;
  const std::vector<SegmentationException>* exceptions = nullptr;  // in the namespace
  WallTime now;
  // The namespace's Pods and workloads, as keepScannedFields leaves them, in any order.
  std::vector<const nlohmann::json*> objects;
};

// One rule one object violates.
struct Finding {
  std::string apiVersion;
  std::string kind;
  std::string name;
  std::string uid;
  std::string rule;
  std::string message;  // the webhook's message for this rule's violations by the object
  bool operator==(const Finding&) const = default;
};

struct Posture {
  int64_t pods = 0;  // scanned
  int64_t workloads = 0;
  int64_t violatingPods = 0;
  int64_t violatingWorkloads = 0;
  int64_t unreadable = 0;  // objects whose pod spec does not decode (reported as errors)
  // By kind, name, then rule order. Unreadable objects have rule "" and the decode error.
  std::vector<Finding> findings;
  bool operator==(const Posture&) const = default;
};

// Scans the namespace. A ReplicaSet controlled by a Deployment, a Job by a CronJob, is judged as
// part of its owner and not counted again; Pods always count on their own (they run). Exempted
// rules (active SegmentationExceptions) are not findings. requireSegmentedNamespace is about when
// a pod is created, not about the pod, and is not scanned.
Posture scanNamespace(const PostureInput& in);

// The namespace's Report: one result per finding (at most kMaxReportResults), result "fail" (or
// "warn" under a Warn policy), "error" for an unreadable object; summary.pass counts the objects
// without findings. Labelled as generated for `policyName`. No timestamps, so that an unchanged
// posture is an unchanged object and nothing is written.
nlohmann::json postureReport(const std::string& ns, const SegmentationPolicy& policy,
                             const Posture& posture);

}  // namespace bulkhead::policy
