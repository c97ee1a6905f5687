#include "cmd/explain.h"

#include <algorithm>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "kube/client_impl.h"
#include "kube/config.h"
#include "kube/yaml.h"
#include "policy/explain.h"
#include "policy/grants.h"

namespace bulkhead {
namespace {

using nlohmann::json;


// What the explanation reads, from the cluster or from files.
struct Inputs {
  std::vector<json> pods, networkPolicies, grants, meshPolicies;
  std::map<std::string, policy::Labels> namespaces;
};

void add(Inputs& in, json object) {
  const std::string kind = object.value("kind", "");
  if (kind.ends_with("List") && object.contains("items")) {
    for (auto& item : object["items"]) {
      add(in, std::move(item));
    }
  } else if (kind == "Pod") {
    in.pods.push_back(std::move(object));
  } else if (kind == "NetworkPolicy") {
    in.networkPolicies.push_back(std::move(object));
  } else if (kind == "Namespace") {
    in.namespaces[object["metadata"].value("name", "")] = policy::labelsOf(object);
  } else if (kind == "AccessGrant") {
    in.grants.push_back(std::move(object));
  } else if (kind == "PeerAuthentication" || kind == "AuthorizationPolicy") {
    in.meshPolicies.push_back(std::move(object));
  }
}

Status readFiles(const std::vector<std::string>& paths, Inputs& in) {
  ASSIGN_OR_RETURN(auto docs, kube::readManifests(paths));
  for (auto& d : docs) {
    add(in, std::move(d.object));
  }
  return okStatus();
}

Status readCluster(const std::string& kubeconfig, Inputs& in) {
  kube::LoadOptions load;
  load.kubeconfigFlag = kubeconfig;
  ASSIGN_OR_RETURN(auto config, kube::loadRestConfig(load));
  ASSIGN_OR_RETURN(auto client, kube::ClientImpl::create(config, std::make_shared<RealClock>()));
  ASSIGN_OR_RETURN(auto namespaces, client->list(kube::resources::kNamespaces, "", {}));
  for (auto& o : namespaces.items) {
    add(in, std::move(o));
  }
  for (const auto* type : {&kube::resources::kPods, &kube::resources::kNetworkPolicies}) {
    ASSIGN_OR_RETURN(auto list, client->list(*type, "", {}));
    for (auto& o : list.items) {
      o["kind"] = type->kind;
      add(in, std::move(o));
    }
  }
  // Optional APIs: absent is fine.
  for (const auto* type : {&kube::resources::kAccessGrants, &kube::resources::kPeerAuthentications, &kube::resources::kAuthorizationPolicies}) {
    if (auto list = client->list(*type, "", {}); list.ok()) {
      for (auto& o : list->items) {
        o["kind"] = type->kind;
        add(in, std::move(o));
      }
    }
  }
  return okStatus();
}

// "ns/name" of a pod in the inputs, or "ns/k=v,..." for a pod that need not exist.
StatusOr<policy::PodInfo> resolvePod(const std::string& ref, const Inputs& in) {
  const auto slash = ref.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == ref.size()) {
    return invalidError("\"" + ref + "\" is not NAMESPACE/POD or NAMESPACE/key=value,...");
  }
  const std::string ns = ref.substr(0, slash), rest = ref.substr(slash + 1);
  if (rest.find('=') != std::string::npos) {
    policy::PodInfo pod;
    pod.ns = ns;
    pod.name = "(" + rest + ")";
    std::stringstream s(rest);
    std::string item;
    while (std::getline(s, item, ',')) {
      auto eq = item.find('=');
      if (eq == std::string::npos) {
        return invalidError("\"" + item + "\" is not key=value");
      }
      pod.labels[item.substr(0, eq)] = item.substr(eq + 1);
    }
    return pod;
  }
  for (const auto& p : in.pods) {
    if (p["metadata"].value("namespace", "") == ns && p["metadata"].value("name", "") == rest) {
      return policy::podInfoOf(p);
    }
  }
  return notFoundError("pod " + ref + " is not in the inputs");
}

std::string grantOf(const std::string& ns, const std::string& name, const Inputs& in) {
  for (const auto& np : in.networkPolicies) {
    if (np["metadata"].value("namespace", "") != ns || np["metadata"].value("name", "") != name) {
      continue;
    }
    const auto labels = policy::labelsOf(np);
    auto g = labels.find(policy::kGrantLabel);
    auto gns = labels.find(policy::kGrantNamespaceLabel);
    if (g == labels.end() || gns == labels.end()) {
      return "";
    }
    std::string until;
    for (const auto& grant : in.grants) {
      if (grant["metadata"].value("namespace", "") == gns->second &&
          grant["metadata"].value("name", "") == g->second) {
        until = grant.value("status", json::object()).value("expiresAt", "");
      }
    }
    return "AccessGrant " + gns->second + "/" + g->second +
           (until.empty() ? "" : " (until " + until + ")");
  }
  return "";
}

void printDirection(const char* title, const policy::DirectionVerdict& d, const Inputs& in) {
  std::cout << "  " << title << ": " << (d.allowed ? "allowed" : "denied");
  if (!d.isolated) {
    std::cout << " (no NetworkPolicy selects the pod for this direction)\n";
    return;
  }
  std::cout << "\n";
  for (const auto& p : d.policies) {
    const std::string grant = p.allows ? grantOf(p.ns, p.name, in) : "";
    std::cout << "    NetworkPolicy " << p.ns << "/" << p.name << ": " << p.why
              << (grant.empty() ? "" : "; opened by " + grant) << "\n";
  }
}

}  // namespace

int runExplain(int argc, char** argv) {
  std::vector<std::string> files;
  std::string from, to, portText = "80/TCP", namespacesText, podsText, kubeconfig;
  bool matrix = false, help = false;
  FlagSet flags("bulkhead explain",
                "Whether a flow between two pods is allowed and which objects decide it, or the "
                "pod-to-pod matrix of namespaces (rows from, columns to, '.' allowed, 'X' "
                "denied), from the cluster or from files.");
  flags.addString("from", &from, "NAMESPACE/POD, or NAMESPACE/key=value,... for any such pod");
  flags.addString("to", &to, "NAMESPACE/POD, or NAMESPACE/key=value,...");
  flags.addString("port", &portText, "PORT/PROTOCOL (TCP, UDP or SCTP)");
  flags.addBool("matrix", &matrix, "print the matrix of the pods of --namespaces (or --pods)");
  flags.addString("namespaces", &namespacesText, "with --matrix: a,b,c (also -n)");
  flags.addString("n", &namespacesText, "short for --namespaces");
  flags.addString("pods", &podsText, "with --matrix: ns/pod,ns/pod,... in this order");
  flags.addStrings("filename", &files, "read objects from files instead of the cluster (also -f)");
  flags.addStrings("f", &files, "short for --filename");
  flags.addString("kubeconfig", &kubeconfig, "the kubeconfig, when reading the cluster");
  flags.addBool("help", &help, "print this help");
  auto positional = flags.parse(argc, argv);
  if (!positional.ok() || !positional->empty()) {
    std::cerr << "bulkhead explain: "
              << (positional.ok() ? "unexpected argument" : positional.status().message()) << "\n";
    return 2;
  }
  if (help) {
    std::cout << flags.usage();
    return 0;
  }
  auto port = policy::parsePortProtocol(portText);
  if (!port.ok()) {
    std::cerr << "bulkhead explain: --port: " << port.status().message() << "\n";
    return 2;
  }
  log::init(log::Level::kWarn);
  Inputs in;
  Status read = files.empty() ? readCluster(kubeconfig, in) : readFiles(files, in);
  if (!read.ok()) {
    std::cerr << "bulkhead explain: " << read.toString() << "\n";
    return 2;
  }
  if (matrix) {
    std::vector<std::string> refs;
    std::stringstream list(podsText.empty() ? namespacesText : podsText);
    std::string item;
    while (std::getline(list, item, ',')) {
      if (item.empty()) {
        continue;
      }
      if (!podsText.empty()) {
        refs.push_back(item);
        continue;
      }
      std::vector<std::string> names;
      for (const auto& p : in.pods) {
        if (p["metadata"].value("namespace", "") == item) {
          names.push_back(item + "/" + p["metadata"].value("name", ""));
        }
      }
      std::sort(names.begin(), names.end());
      refs.insert(refs.end(), names.begin(), names.end());
    }
    std::vector<policy::PodInfo> pods;
    for (const auto& r : refs) {
      auto pod = resolvePod(r, in);
      if (!pod.ok()) {
        std::cerr << "bulkhead explain: " << pod.status().message() << "\n";
        return 2;
      }
      pods.push_back(std::move(*pod));
    }
    // The format of the node tests' matrices (tests/node/lib.sh), after a title line.
    size_t w = 1;
    for (const auto& r : refs) {
      w = std::max(w, r.size());
    }
    auto cell = [w](const std::string& text) {
      return text + std::string(w - text.size() + 2, ' ');
    };
    std::cout << port->second << "/" << port->first << "\n" << cell("-");
    for (const auto& r : refs) {
      std::cout << cell(r);
    }
    std::cout << "\n";
    for (size_t i = 0; i < pods.size(); ++i) {
      std::cout << cell(refs[i]);
      for (size_t j = 0; j < pods.size(); ++j) {
        auto v = policy::explainFlow(pods[i], pods[j], port->first, port->second,
                                     in.networkPolicies, in.namespaces);
        std::cout << cell(v.allowed ? "." : "X");
      }
      std::cout << "\n";
    }
    return 0;
  }
  if (from.empty() || to.empty()) {
    std::cerr << "bulkhead explain: need --from and --to, or --matrix\n";
    return 2;
  }
  auto source = resolvePod(from, in);
  auto destination = resolvePod(to, in);
  for (const auto* r : {&source, &destination}) {
    if (!r->ok()) {
      std::cerr << "bulkhead explain: " << r->status().message() << "\n";
      return 2;
    }
  }
  auto v = policy::explainFlow(*source, *destination, port->first, port->second, in.networkPolicies,
                               in.namespaces);
  std::cout << from << " -> " << to << " " << port->first << "/" << port->second << ": "
            << (v.allowed ? "ALLOWED" : "DENIED") << "\n";
  std::cout << "  ClusterNetworkPolicy: none evaluated (the admin tier is not in these inputs)\n";
  printDirection(("egress of " + from).c_str(), v.egress, in);
  printDirection(("ingress of " + to).c_str(), v.ingress, in);
  for (const auto& m : in.meshPolicies) {
    if (m["metadata"].value("namespace", "") == destination->ns) {
      std::cout << "  " << m.value("kind", "") << " " << destination->ns << "/"
                << m["metadata"].value("name", "")
                << ": applies to meshed pods; Istio decides it after the NetworkPolicies\n";
    }
  }
  return 0;
}

}  // namespace bulkhead
