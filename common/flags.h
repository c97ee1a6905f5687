#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace bulkhead {

// A small command-line flag set: `--name=value`, `--name value`, and `--flag` for booleans.
// Each flag writes into a variable owned by the caller, which holds its default.
class FlagSet {
 public:
  explicit FlagSet(std::string program, std::string summary)
      : program_(std::move(program)), summary_(std::move(summary)) {}

  void addString(std::string name, std::string* target, std::string help);
  // Repeatable: each occurrence appends its value.
  void addStrings(std::string name, std::vector<std::string>* target, std::string help);
  void addInt(std::string name, std::int64_t* target, std::string help);
  void addDouble(std::string name, double* target, std::string help);
  void addBool(std::string name, bool* target, std::string help);
  // Durations as Go/Kubernetes write them: "10m", "1h30m", "500ms", "15s".
  void addDuration(std::string name, std::chrono::milliseconds* target, std::string help);

  // Parses argv[1..]. Positional arguments are returned in order. Unknown flags, missing values
  // and malformed values are Invalid errors naming the flag.
  StatusOr<std::vector<std::string>> parse(int argc, const char* const* argv);

  std::string usage() const;

 private:
  struct Flag {
    std::string name;
    std::string help;
    std::string defaultText;
    bool isBool = false;
    std::function<Status(std::string_view)> set;
  };
  const Flag* find(std::string_view name) const;

  std::string program_;
  std::string summary_;
  std::vector<Flag> flags_;
};

// Parses a Go-style duration ("1h30m", "250ms", "2s", "0"). Invalid on anything else.
StatusOr<std::chrono::milliseconds> parseDuration(std::string_view text);
std::string formatDuration(std::chrono::milliseconds d);

}  // namespace bulkhead
