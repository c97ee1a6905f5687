#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "policy/label_selector.h"

// The facts about a pod that the pod rules (SPEC 3.1) read, each with the field path it came from
// in the submitted object, so one rule engine serves Pods and every workload template, and every
// violation can name its field. Filled from a JSON DOM by decodePodFacts() (tests, controller) or
// by a streaming decoder on the webhook's hot path; both must produce the same struct.
namespace bulkhead::policy {

// A value read from the submitted object, and the field path it was read from
// ("spec.template.spec.hostNetwork"). For an absent field `value` holds the default and `path`
// still names where the field would be.
template <typename T>
struct Field {
  T value{};
  std::string path;
  bool operator==(const Field&) const = default;
};

struct ContainerFacts {
  enum class Kind { kRegular, kInit, kEphemeral };
  Kind kind = Kind::kRegular;
  std::string path;  // "spec.template.spec.initContainers[0]"
  std::string name;
  std::string image;
  std::vector<std::string> command;  // as written; empty: the image's entrypoint
  std::vector<std::string> args;
  // An init container's restartPolicy: "Always" makes it a native sidecar that runs beside the
  // regular containers.
  std::string restartPolicy;
  // Every ports[i].hostPort that is present, 0 included: "<path>.ports[1].hostPort".
  std::vector<Field<int64_t>> hostPorts;
  Field<bool> privileged;                               // <path>.securityContext.privileged
  Field<std::optional<bool>> allowPrivilegeEscalation;  // unset: the runtime's default
  Field<std::optional<int64_t>> runAsUser;              // unset: the pod's, then the image's
  Field<std::optional<int64_t>> runAsGroup;             // unset: the pod's, then the image's
  // securityContext.capabilities.add, as written ("cap_net_admin" stays as it is):
  // "<path>.securityContext.capabilities.add[1]".
  std::vector<Field<std::string>> addedCapabilities;
  bool operator==(const ContainerFacts&) const = default;
};

struct PodFacts {
  std::string kind;  // of the submitted object: "Pod", "Deployment", "CronJob", ...
  std::string name;  // metadata.name, or metadata.generateName while the name is not assigned
  // metadata.namespace. An admission handler should overwrite it with request.namespace, which
  // the API server fills in even when the object omits it.
  std::string ns;

  // The pod's metadata (for workloads, the template's). Map paths name the map itself
  // ("spec.template.metadata.labels"); a key's path is keyPath(labels.path, key).
  Field<Labels> labels;
  Field<Labels> annotations;

  Field<bool> hostNetwork;  // "spec.hostNetwork", "spec.template.spec.hostNetwork", ...
  Field<bool> hostPID;
  Field<bool> hostIPC;
  Field<std::optional<int64_t>> runAsUser;  // the pod-level spec.securityContext.runAsUser
  Field<std::optional<int64_t>> runAsGroup;  // the pod-level spec.securityContext.runAsGroup

  // containers, then initContainers, then ephemeralContainers, each in the object's order.
  std::vector<ContainerFacts> containers;

  bool operator==(const PodFacts&) const = default;
};

// Where the pod template of an object of `kind` is, as a field path prefix: "" for a Pod (the
// pod itself), "spec.template" for Deployment, StatefulSet, DaemonSet, ReplicaSet,
// ReplicationController and Job, "spec.jobTemplate.spec.template" for CronJob, "template" for a
// PodTemplate (which controllers and tools stamp pods from). Nullopt for kinds
// that carry no pod.
std::optional<std::string_view> podTemplatePath(std::string_view kind);

// The path of one key of a map field, in the API server's notation: "metadata.labels[app]".
std::string keyPath(std::string_view mapPath, std::string_view key);

// Reads the facts of a Pod or of a workload's pod template. Never throws. Invalid, naming the
// field path, for an unsupported kind, a missing pod spec, or a field of the wrong JSON type
// ("spec.template.spec.containers[0].ports[1].hostPort: must be an integer"). JSON null is
// treated as absent, as the API server does.
StatusOr<PodFacts> decodePodFacts(const nlohmann::json& object);

}  // namespace bulkhead::policy
