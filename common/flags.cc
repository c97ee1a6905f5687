#include "common/flags.h"

#include <charconv>
#include <optional>
#include <sstream>

namespace bulkhead {
namespace {

template <typename T>
Status parseNumber(std::string_view name, std::string_view text, T* out) {
  T value{};
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) {
    return invalidError("invalid value \"" + std::string(text) + "\" for flag --" +
                        std::string(name));
  }
  *out = value;
  return okStatus();
}

}  // namespace

StatusOr<std::chrono::milliseconds> parseDuration(std::string_view text) {
  if (text == "0") {
    return std::chrono::milliseconds(0);
  }
  if (text.empty()) {
    return invalidError("empty duration");
  }
  double totalMs = 0;
  std::string_view rest = text;
  while (!rest.empty()) {
    double number = 0;
    auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), number);
    if (ec != std::errc() || number < 0) {
      return invalidError("invalid duration \"" + std::string(text) + "\"");
    }
    rest.remove_prefix(static_cast<size_t>(ptr - rest.data()));
    double unitMs = 0;
    if (rest.starts_with("ms")) {
      unitMs = 1, rest.remove_prefix(2);
    } else if (rest.starts_with("h")) {
      unitMs = 3'600'000, rest.remove_prefix(1);
    } else if (rest.starts_with("m")) {
      unitMs = 60'000, rest.remove_prefix(1);
    } else if (rest.starts_with("s")) {
      unitMs = 1000, rest.remove_prefix(1);
    } else {
      return invalidError("invalid duration \"" + std::string(text) + "\" (units are h, m, s, ms)");
    }
    totalMs += number * unitMs;
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(totalMs));
}

std::string formatDuration(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms == 0) {
    return "0s";
  }
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  if (ms >= 3'600'000) {
    out += std::to_string(ms / 3'600'000) + "h";
    ms %= 3'600'000;
  }
  if (ms >= 60'000) {
    out += std::to_string(ms / 60'000) + "m";
    ms %= 60'000;
  }
  if (ms >= 1000) {
    out += std::to_string(ms / 1000) + "s";
    ms %= 1000;
  }
  if (ms > 0) {
    out += std::to_string(ms) + "ms";
  }
  return out;
}

void FlagSet::addString(std::string name, std::string* target, std::string help) {
  std::string def = target->empty() ? "" : "\"" + *target + "\"";
  flags_.push_back({name, std::move(help), def, false, [target](std::string_view v) {
                      *target = std::string(v);
                      return okStatus();
                    }});
}

void FlagSet::addInt(std::string name, std::int64_t* target, std::string help) {
  flags_.push_back({name, std::move(help), std::to_string(*target), false,
                    [name, target](std::string_view v) { return parseNumber(name, v, target); }});
}

void FlagSet::addDouble(std::string name, double* target, std::string help) {
  std::ostringstream def;
  def << *target;
  flags_.push_back({name, std::move(help), def.str(), false,
                    [name, target](std::string_view v) { return parseNumber(name, v, target); }});
}

void FlagSet::addStrings(std::string name, std::vector<std::string>* target, std::string help) {
  flags_.push_back({name, std::move(help), "", false, [target](std::string_view v) {
                      target->emplace_back(v);
                      return okStatus();
                    }});
}

void FlagSet::addBool(std::string name, bool* target, std::string help) {
  flags_.push_back(
      {name, std::move(help), *target ? "true" : "false", true, [name, target](std::string_view v) {
         if (v == "true" || v == "1") {
           *target = true;
         } else if (v == "false" || v == "0") {
           *target = false;
         } else {
           return invalidError("invalid value \"" + std::string(v) + "\" for flag --" + name +
                               " (want true or false)");
         }
         return okStatus();
       }});
}

void FlagSet::addDuration(std::string name, std::chrono::milliseconds* target, std::string help) {
  flags_.push_back(
      {name, std::move(help), formatDuration(*target), false, [name, target](std::string_view v) {
         auto d = parseDuration(v);
         if (!d.ok()) {
           return d.status().withContext("flag --" + name);
         }
         *target = *d;
         return okStatus();
       }});
}

const FlagSet::Flag* FlagSet::find(std::string_view name) const {
  for (const auto& f : flags_) {
    if (f.name == name) {
      return &f;
    }
  }
  return nullptr;
}

StatusOr<std::vector<std::string>> FlagSet::parse(int argc, const char* const* argv) {
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) {
        positional.emplace_back(argv[i]);
      }
      break;
    }
    if (!arg.starts_with("-") || arg == "-") {
      positional.emplace_back(arg);
      continue;
    }
    arg.remove_prefix(arg.starts_with("--") ? 2 : 1);
    std::string_view name = arg;
    std::optional<std::string_view> value;
    if (auto eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    }
    const Flag* flag = find(name);
    if (flag == nullptr) {
      return invalidError("unknown flag --" + std::string(name) + " (see --help)");
    }
    if (!value) {
      if (flag->isBool) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return invalidError("flag --" + std::string(name) + " needs a value");
      }
    }
    RETURN_IF_ERROR(flag->set(*value));
  }
  return positional;
}

std::string FlagSet::usage() const {
  std::ostringstream out;
  out << "Usage: " << program_ << " [flags]\n\n" << summary_ << "\n\nFlags:\n";
  for (const auto& f : flags_) {
    out << "  --" << f.name << (f.isBool ? "" : " value") << "\n      " << f.help;
    if (!f.defaultText.empty()) {
      out << " (default " << f.defaultText << ")";
    }
    out << "\n";
  }
  return out.str();
}

}  // namespace bulkhead
