// bulkhead: zero-trust segmentation for Kubernetes. Flags, wiring and signals; nothing else.
#include <iostream>
#include <string>

#include "common/flags.h"
#include "common/log.h"
#include "common/version.h"

namespace bulkhead {
namespace {

struct Options {
  bool version = false;
  bool help = false;
  std::string logLevel = "info";
};

int run(int argc, char** argv) {
  Options opts;
  FlagSet flags("bulkhead",
                "Zero-trust segmentation for Kubernetes: a controller that gives every selected\n"
                "namespace default-deny NetworkPolicies and Istio mutual TLS, and a validating\n"
                "admission webhook that rejects what would break segmentation.");
  flags.addBool("version", &opts.version, "print the version and exit");
  flags.addBool("help", &opts.help, "print this help and exit");
  flags.addString("log-level", &opts.logLevel, "trace, debug, info, warn, error or off");

  auto positional = flags.parse(argc, argv);
  if (!positional.ok()) {
    std::cerr << "bulkhead: " << positional.status().message() << "\n";
    return 2;
  }
  if (opts.help) {
    std::cout << flags.usage();
    return 0;
  }
  if (opts.version) {
    std::cout << "bulkhead " << kVersion << " (" << kGitCommit << ")\n";
    return 0;
  }
  if (!positional->empty()) {
    std::cerr << "bulkhead: unexpected argument \"" << positional->front() << "\"\n";
    return 2;
  }
  auto level = log::parseLevel(opts.logLevel);
  if (!level) {
    std::cerr << "bulkhead: invalid --log-level \"" << opts.logLevel << "\"\n";
    return 2;
  }
  log::init(*level);
  log::error("nothing to run: this build has neither the controllers nor the webhook yet");
  return 1;
}

}  // namespace
}  // namespace bulkhead

int main(int argc, char** argv) { return bulkhead::run(argc, argv); }
