#pragma once

// The one pod-facts decoder, written once over any JSON library. A `Node` is a small handle to a
// JSON value with:
//   bool isObject() const, isArray() const, isString() const, isBool() const, isInteger() const;
//   std::optional<Node> member(std::string_view key) const;  // nullopt: absent or JSON null
//   size_t size() const; Node at(size_t i) const;              // arrays
//   std::string string() const; bool boolean() const;
//   std::optional<int64_t> int64() const;                      // nullopt: outside int64
//   void forEachMember(F f) const;                              // objects: f(key, Node)
// decodePodFacts() instantiates it over nlohmann (the DOM everything else uses); the webhook's
// hot path instantiates it over simdjson. Include only from those two places.

#include <optional>
#include <string>
#include <string_view>

#include "policy/pod_facts.h"

namespace bulkhead::policy::podfacts {

inline std::string join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

inline std::string indexed(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// The object at `obj[key]`: nullopt when absent; Invalid when not an object, or absent and
// `required`.
template <class Node>
StatusOr<std::optional<Node>> objectMember(const Node& obj, std::string_view key,
                                           const std::string& path, bool required) {
  std::optional<Node> j = obj.member(key);
  if (!j) {
    if (required) {
      return invalidError(path + ": required");
    }
    return std::optional<Node>();
  }
  if (!j->isObject()) {
    return invalidError(path + ": must be an object");
  }
  return j;
}

template <class Node>
StatusOr<std::optional<Node>> listMember(const Node& obj, std::string_view key,
                                         const std::string& path) {
  std::optional<Node> j = obj.member(key);
  if (j && !j->isArray()) {
    return invalidError(path + ": must be a list");
  }
  return j;
}

template <class Node>
Status readString(const Node& obj, std::string_view key, const std::string& path,
                  std::string* out) {
  std::optional<Node> j = obj.member(key);
  if (!j) {
    return okStatus();
  }
  if (!j->isString()) {
    return invalidError(path + ": must be a string");
  }
  *out = j->string();
  return okStatus();
}

template <class Node>
Status readBool(const Node& obj, std::string_view key, const std::string& path,
                std::optional<bool>* out) {
  std::optional<Node> j = obj.member(key);
  if (!j) {
    return okStatus();
  }
  if (!j->isBool()) {
    return invalidError(path + ": must be a boolean");
  }
  *out = j->boolean();
  return okStatus();
}

template <class Node>
Status readInt(const Node& obj, std::string_view key, const std::string& path,
               std::optional<int64_t>* out) {
  std::optional<Node> j = obj.member(key);
  if (!j) {
    return okStatus();
  }
  if (!j->isInteger()) {
    return invalidError(path + ": must be an integer");
  }
  std::optional<int64_t> v = j->int64();
  if (!v) {
    return invalidError(path + ": out of range");
  }
  *out = *v;
  return okStatus();
}

// A Field<bool> whose absence means false.
template <class Node>
Status readBoolField(const Node& obj, std::string_view key, const std::string& parentPath,
                     Field<bool>* out) {
  out->path = join(parentPath, key);
  std::optional<bool> v;
  RETURN_IF_ERROR(readBool(obj, key, out->path, &v));
  out->value = v.value_or(false);
  return okStatus();
}

template <class Node>
Status readStringMap(const std::optional<Node>& obj, std::string_view key,
                     const std::string& parentPath, Field<Labels>* out) {
  out->path = join(parentPath, key);
  if (!obj) {
    return okStatus();
  }
  std::optional<Node> j = obj->member(key);
  if (!j) {
    return okStatus();
  }
  if (!j->isObject()) {
    return invalidError(out->path + ": must be an object");
  }
  Status status;
  j->forEachMember([&](std::string_view k, const Node& v) {
    if (!status.ok()) {
      return;
    }
    if (!v.isString()) {
      status = invalidError(keyPath(out->path, k) + ": must be a string");
      return;
    }
    out->value.emplace(std::string(k), v.string());
  });
  return status;
}

template <class Node>
Status decodeSecurityContext(const Node& container, ContainerFacts* c) {
  const std::string scPath = c->path + ".securityContext";
  c->privileged.path = scPath + ".privileged";
  c->allowPrivilegeEscalation.path = scPath + ".allowPrivilegeEscalation";
  c->runAsUser.path = scPath + ".runAsUser";
  c->runAsGroup.path = scPath + ".runAsGroup";
  ASSIGN_OR_RETURN(std::optional<Node> sc, objectMember(container, "securityContext", scPath, false));
  if (!sc) {
    return okStatus();
  }
  std::optional<bool> privileged;
  RETURN_IF_ERROR(readBool(*sc, "privileged", c->privileged.path, &privileged));
  c->privileged.value = privileged.value_or(false);
  RETURN_IF_ERROR(readBool(*sc, "allowPrivilegeEscalation", c->allowPrivilegeEscalation.path,
                           &c->allowPrivilegeEscalation.value));
  RETURN_IF_ERROR(readInt(*sc, "runAsUser", c->runAsUser.path, &c->runAsUser.value));
  RETURN_IF_ERROR(readInt(*sc, "runAsGroup", c->runAsGroup.path, &c->runAsGroup.value));
  const std::string capsPath = scPath + ".capabilities";
  ASSIGN_OR_RETURN(std::optional<Node> caps, objectMember(*sc, "capabilities", capsPath, false));
  if (!caps) {
    return okStatus();
  }
  const std::string addPath = capsPath + ".add";
  ASSIGN_OR_RETURN(std::optional<Node> add, listMember(*caps, "add", addPath));
  if (!add) {
    return okStatus();
  }
  for (size_t i = 0; i < add->size(); ++i) {
    std::string at = indexed(addPath, i);
    Node cap = add->at(i);
    if (!cap.isString()) {
      return invalidError(at + ": must be a string");
    }
    c->addedCapabilities.push_back({cap.string(), std::move(at)});
  }
  return okStatus();
}

template <class Node>
Status readStringList(const Node& obj, std::string_view key, const std::string& path,
                      std::vector<std::string>* out) {
  ASSIGN_OR_RETURN(std::optional<Node> list, listMember(obj, key, path));
  if (!list) {
    return okStatus();
  }
  for (size_t i = 0; i < list->size(); ++i) {
    Node item = list->at(i);
    if (!item.isString()) {
      return invalidError(indexed(path, i) + ": must be a string");
    }
    out->push_back(item.string());
  }
  return okStatus();
}

template <class Node>
StatusOr<ContainerFacts> decodeContainer(const Node& j, ContainerFacts::Kind kind,
                                         std::string path) {
  ContainerFacts c;
  c.kind = kind;
  c.path = std::move(path);
  if (!j.isObject()) {
    return invalidError(c.path + ": must be an object");
  }
  RETURN_IF_ERROR(readString(j, "name", c.path + ".name", &c.name));
  RETURN_IF_ERROR(readString(j, "image", c.path + ".image", &c.image));
  RETURN_IF_ERROR(readStringList(j, "command", c.path + ".command", &c.command));
  RETURN_IF_ERROR(readStringList(j, "args", c.path + ".args", &c.args));
  RETURN_IF_ERROR(readString(j, "restartPolicy", c.path + ".restartPolicy", &c.restartPolicy));
  const std::string portsPath = c.path + ".ports";
  ASSIGN_OR_RETURN(std::optional<Node> ports, listMember(j, "ports", portsPath));
  if (ports) {
    for (size_t i = 0; i < ports->size(); ++i) {
      std::string at = indexed(portsPath, i);
      Node port = ports->at(i);
      if (!port.isObject()) {
        return invalidError(at + ": must be an object");
      }
      std::string hostPortPath = at + ".hostPort";
      std::optional<int64_t> hostPort;
      RETURN_IF_ERROR(readInt(port, "hostPort", hostPortPath, &hostPort));
      if (hostPort.has_value()) {
        c.hostPorts.push_back({*hostPort, std::move(hostPortPath)});
      }
    }
  }
  RETURN_IF_ERROR(decodeSecurityContext(j, &c));
  return c;
}

template <class Node>
Status decodeContainers(const Node& spec, const std::string& specPath, std::string_view key,
                        ContainerFacts::Kind kind, std::vector<ContainerFacts>* out) {
  const std::string listPath = join(specPath, key);
  ASSIGN_OR_RETURN(std::optional<Node> list, listMember(spec, key, listPath));
  if (!list) {
    return okStatus();
  }
  for (size_t i = 0; i < list->size(); ++i) {
    ASSIGN_OR_RETURN(ContainerFacts c, decodeContainer(list->at(i), kind, indexed(listPath, i)));
    out->push_back(std::move(c));
  }
  return okStatus();
}

// Decodes the facts of a Pod or of a workload's pod template (see decodePodFacts).
template <class Node>
StatusOr<PodFacts> decode(const Node& object) {
  PodFacts f;
  if (!object.isObject()) {
    return invalidError("object: must be a JSON object");
  }
  RETURN_IF_ERROR(readString(object, "kind", "kind", &f.kind));
  if (f.kind.empty()) {
    return invalidError("kind: required");
  }
  std::optional<std::string_view> templatePath = podTemplatePath(f.kind);
  if (!templatePath.has_value()) {
    return invalidError("kind: \"" + f.kind + "\" has no pod template");
  }
  ASSIGN_OR_RETURN(std::optional<Node> metadata, objectMember(object, "metadata", "metadata", false));
  if (metadata) {
    RETURN_IF_ERROR(readString(*metadata, "name", "metadata.name", &f.name));
    if (f.name.empty()) {
      RETURN_IF_ERROR(readString(*metadata, "generateName", "metadata.generateName", &f.name));
    }
    RETURN_IF_ERROR(readString(*metadata, "namespace", "metadata.namespace", &f.ns));
  }
  // Walk down to the pod template ("spec.jobTemplate.spec.template"); a Pod is its own template.
  Node pod = object;
  std::string podPath;
  std::string_view rest = *templatePath;
  while (!rest.empty()) {
    size_t dot = rest.find('.');
    std::string_view key = rest.substr(0, dot);
    rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
    podPath = join(podPath, key);
    ASSIGN_OR_RETURN(std::optional<Node> next, objectMember(pod, key, podPath, true));
    pod = *next;
  }
  const std::string metaPath = join(podPath, "metadata");
  ASSIGN_OR_RETURN(std::optional<Node> podMeta, objectMember(pod, "metadata", metaPath, false));
  RETURN_IF_ERROR(readStringMap(podMeta, "labels", metaPath, &f.labels));
  RETURN_IF_ERROR(readStringMap(podMeta, "annotations", metaPath, &f.annotations));
  const std::string specPath = join(podPath, "spec");
  ASSIGN_OR_RETURN(std::optional<Node> spec, objectMember(pod, "spec", specPath, true));
  RETURN_IF_ERROR(readBoolField(*spec, "hostNetwork", specPath, &f.hostNetwork));
  RETURN_IF_ERROR(readBoolField(*spec, "hostPID", specPath, &f.hostPID));
  RETURN_IF_ERROR(readBoolField(*spec, "hostIPC", specPath, &f.hostIPC));
  const std::string scPath = specPath + ".securityContext";
  f.runAsUser.path = scPath + ".runAsUser";
  f.runAsGroup.path = scPath + ".runAsGroup";
  ASSIGN_OR_RETURN(std::optional<Node> sc, objectMember(*spec, "securityContext", scPath, false));
  if (sc) {
    RETURN_IF_ERROR(readInt(*sc, "runAsUser", f.runAsUser.path, &f.runAsUser.value));
    RETURN_IF_ERROR(readInt(*sc, "runAsGroup", f.runAsGroup.path, &f.runAsGroup.value));
  }
  using Kind = ContainerFacts::Kind;
  RETURN_IF_ERROR(decodeContainers(*spec, specPath, "containers", Kind::kRegular, &f.containers));
  RETURN_IF_ERROR(decodeContainers(*spec, specPath, "initContainers", Kind::kInit, &f.containers));
  RETURN_IF_ERROR(
      decodeContainers(*spec, specPath, "ephemeralContainers", Kind::kEphemeral, &f.containers));
  return f;
}

}  // namespace bulkhead::policy::podfacts
