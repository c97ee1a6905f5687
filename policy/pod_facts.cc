#include "policy/pod_facts.h"

#include <limits>
#include <nlohmann/json.hpp>

namespace bulkhead::policy {
namespace {

using nlohmann::json;

std::string join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string indexed(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// The member `key` of the JSON object `obj`; null when it is absent or JSON null.
const json* member(const json& obj, const std::string& key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return nullptr;
  }
  return &*it;
}

// The object at `obj[key]`: null when absent; Invalid when it is not an object, or when it is
// absent and `required`.
StatusOr<const json*> objectMember(const json& obj, const std::string& key, const std::string& path,
                                   bool required) {
  const json* j = member(obj, key);
  if (j == nullptr) {
    if (required) {
      return invalidError(path + ": required");
    }
    return static_cast<const json*>(nullptr);
  }
  if (!j->is_object()) {
    return invalidError(path + ": must be an object");
  }
  return j;
}

// The list at `obj[key]`: null when absent; Invalid when it is not a list.
StatusOr<const json*> listMember(const json& obj, const std::string& key, const std::string& path) {
  const json* j = member(obj, key);
  if (j != nullptr && !j->is_array()) {
    return invalidError(path + ": must be a list");
  }
  return j;
}

Status readString(const json& obj, const std::string& key, const std::string& path,
                  std::string* out) {
  const json* j = member(obj, key);
  if (j == nullptr) {
    return okStatus();
  }
  if (!j->is_string()) {
    return invalidError(path + ": must be a string");
  }
  *out = j->get<std::string>();
  return okStatus();
}

Status readBool(const json& obj, const std::string& key, const std::string& path,
                std::optional<bool>* out) {
  const json* j = member(obj, key);
  if (j == nullptr) {
    return okStatus();
  }
  if (!j->is_boolean()) {
    return invalidError(path + ": must be a boolean");
  }
  *out = j->get<bool>();
  return okStatus();
}

Status readInt(const json& obj, const std::string& key, const std::string& path,
               std::optional<int64_t>* out) {
  const json* j = member(obj, key);
  if (j == nullptr) {
    return okStatus();
  }
  if (!j->is_number_integer()) {
    return invalidError(path + ": must be an integer");
  }
  if (j->is_number_unsigned() &&
      j->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return invalidError(path + ": out of range");
  }
  *out = j->get<int64_t>();
  return okStatus();
}

// A Field<bool> whose absence means false.
Status readBoolField(const json& obj, const std::string& key, const std::string& parentPath,
                     Field<bool>* out) {
  out->path = join(parentPath, key);
  std::optional<bool> v;
  RETURN_IF_ERROR(readBool(obj, key, out->path, &v));
  out->value = v.value_or(false);
  return okStatus();
}

Status readStringMap(const json& obj, const std::string& key, const std::string& parentPath,
                     Field<Labels>* out) {
  out->path = join(parentPath, key);
  const json* j = member(obj, key);
  if (j == nullptr) {
    return okStatus();
  }
  if (!j->is_object()) {
    return invalidError(out->path + ": must be an object");
  }
  for (const auto& [k, v] : j->items()) {
    if (!v.is_string()) {
      return invalidError(keyPath(out->path, k) + ": must be a string");
    }
    out->value.emplace(k, v.get<std::string>());
  }
  return okStatus();
}

Status decodeSecurityContext(const json& container, ContainerFacts* c) {
  const std::string scPath = c->path + ".securityContext";
  c->privileged.path = scPath + ".privileged";
  c->allowPrivilegeEscalation.path = scPath + ".allowPrivilegeEscalation";
  c->runAsUser.path = scPath + ".runAsUser";
  ASSIGN_OR_RETURN(const json* sc, objectMember(container, "securityContext", scPath, false));
  if (sc == nullptr) {
    return okStatus();
  }
  std::optional<bool> privileged;
  RETURN_IF_ERROR(readBool(*sc, "privileged", c->privileged.path, &privileged));
  c->privileged.value = privileged.value_or(false);
  RETURN_IF_ERROR(readBool(*sc, "allowPrivilegeEscalation", c->allowPrivilegeEscalation.path,
                           &c->allowPrivilegeEscalation.value));
  RETURN_IF_ERROR(readInt(*sc, "runAsUser", c->runAsUser.path, &c->runAsUser.value));

  const std::string capsPath = scPath + ".capabilities";
  ASSIGN_OR_RETURN(const json* caps, objectMember(*sc, "capabilities", capsPath, false));
  if (caps == nullptr) {
    return okStatus();
  }
  const std::string addPath = capsPath + ".add";
  ASSIGN_OR_RETURN(const json* add, listMember(*caps, "add", addPath));
  if (add == nullptr) {
    return okStatus();
  }
  for (size_t i = 0; i < add->size(); ++i) {
    std::string at = indexed(addPath, i);
    if (!(*add)[i].is_string()) {
      return invalidError(at + ": must be a string");
    }
    c->addedCapabilities.push_back({(*add)[i].get<std::string>(), std::move(at)});
  }
  return okStatus();
}

StatusOr<ContainerFacts> decodeContainer(const json& j, ContainerFacts::Kind kind,
                                         std::string path) {
  ContainerFacts c;
  c.kind = kind;
  c.path = std::move(path);
  if (!j.is_object()) {
    return invalidError(c.path + ": must be an object");
  }
  RETURN_IF_ERROR(readString(j, "name", c.path + ".name", &c.name));
  RETURN_IF_ERROR(readString(j, "image", c.path + ".image", &c.image));

  const std::string portsPath = c.path + ".ports";
  ASSIGN_OR_RETURN(const json* ports, listMember(j, "ports", portsPath));
  if (ports != nullptr) {
    for (size_t i = 0; i < ports->size(); ++i) {
      std::string at = indexed(portsPath, i);
      const json& port = (*ports)[i];
      if (!port.is_object()) {
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

Status decodeContainers(const json& spec, const std::string& specPath, const std::string& key,
                        ContainerFacts::Kind kind, std::vector<ContainerFacts>* out) {
  const std::string listPath = join(specPath, key);
  ASSIGN_OR_RETURN(const json* list, listMember(spec, key, listPath));
  if (list == nullptr) {
    return okStatus();
  }
  for (size_t i = 0; i < list->size(); ++i) {
    ASSIGN_OR_RETURN(ContainerFacts c, decodeContainer((*list)[i], kind, indexed(listPath, i)));
    out->push_back(std::move(c));
  }
  return okStatus();
}

StatusOr<PodFacts> decode(const json& object) {
  PodFacts f;
  if (!object.is_object()) {
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

  ASSIGN_OR_RETURN(const json* metadata, objectMember(object, "metadata", "metadata", false));
  if (metadata != nullptr) {
    RETURN_IF_ERROR(readString(*metadata, "name", "metadata.name", &f.name));
    if (f.name.empty()) {
      RETURN_IF_ERROR(readString(*metadata, "generateName", "metadata.generateName", &f.name));
    }
    RETURN_IF_ERROR(readString(*metadata, "namespace", "metadata.namespace", &f.ns));
  }

  // Walk down to the pod template ("spec.jobTemplate.spec.template"); a Pod is its own template.
  const json* pod = &object;
  std::string podPath;
  std::string_view rest = *templatePath;
  while (!rest.empty()) {
    size_t dot = rest.find('.');
    std::string key(rest.substr(0, dot));
    rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
    podPath = join(podPath, key);
    ASSIGN_OR_RETURN(pod, objectMember(*pod, key, podPath, true));
  }

  const std::string metaPath = join(podPath, "metadata");
  ASSIGN_OR_RETURN(const json* podMeta, objectMember(*pod, "metadata", metaPath, false));
  static const json kEmpty = json::object();
  RETURN_IF_ERROR(readStringMap(podMeta ? *podMeta : kEmpty, "labels", metaPath, &f.labels));
  RETURN_IF_ERROR(
      readStringMap(podMeta ? *podMeta : kEmpty, "annotations", metaPath, &f.annotations));

  const std::string specPath = join(podPath, "spec");
  ASSIGN_OR_RETURN(const json* spec, objectMember(*pod, "spec", specPath, true));
  RETURN_IF_ERROR(readBoolField(*spec, "hostNetwork", specPath, &f.hostNetwork));
  RETURN_IF_ERROR(readBoolField(*spec, "hostPID", specPath, &f.hostPID));
  RETURN_IF_ERROR(readBoolField(*spec, "hostIPC", specPath, &f.hostIPC));
  const std::string scPath = specPath + ".securityContext";
  f.runAsUser.path = scPath + ".runAsUser";
  ASSIGN_OR_RETURN(const json* sc, objectMember(*spec, "securityContext", scPath, false));
  if (sc != nullptr) {
    RETURN_IF_ERROR(readInt(*sc, "runAsUser", f.runAsUser.path, &f.runAsUser.value));
  }

  using Kind = ContainerFacts::Kind;
  RETURN_IF_ERROR(decodeContainers(*spec, specPath, "containers", Kind::kRegular, &f.containers));
  RETURN_IF_ERROR(decodeContainers(*spec, specPath, "initContainers", Kind::kInit, &f.containers));
  RETURN_IF_ERROR(
      decodeContainers(*spec, specPath, "ephemeralContainers", Kind::kEphemeral, &f.containers));
  return f;
}

}  // namespace

std::optional<std::string_view> podTemplatePath(std::string_view kind) {
  if (kind == "Pod") {
    return std::string_view();
  }
  if (kind == "Deployment" || kind == "StatefulSet" || kind == "DaemonSet" ||
      kind == "ReplicaSet" || kind == "ReplicationController" || kind == "Job") {
    return std::string_view("spec.template");
  }
  if (kind == "CronJob") {
    return std::string_view("spec.jobTemplate.spec.template");
  }
  return std::nullopt;
}

std::string keyPath(std::string_view mapPath, std::string_view key) {
  std::string out;
  out.reserve(mapPath.size() + key.size() + 2);
  out.append(mapPath).append("[").append(key).append("]");
  return out;
}

StatusOr<PodFacts> decodePodFacts(const json& object) {
  // Every access above checks the JSON type first; this only keeps a library surprise from
  // crossing the interface (STYLE: nlohmann exceptions stay in the file that calls it).
  try {
    return decode(object);
  } catch (const json::exception& e) {
    return invalidError(std::string("malformed object: ") + e.what());
  }
}

}  // namespace bulkhead::policy
