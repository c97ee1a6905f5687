#pragma once

#include <string>
#include <vector>

namespace bulkhead::testing {

struct ProcessResult {
  int exitCode = -1;  // 128+signal when killed by a signal
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up in PATH) to completion, feeding `input` to its stdin and capturing
// stdout and stderr. Aborts the test binary only if the process cannot be spawned at all.
ProcessResult run(const std::vector<std::string>& argv, const std::string& input = "");

// Runs `script` with bash -c.
ProcessResult shell(const std::string& script, const std::string& input = "");

}  // namespace bulkhead::testing
