#include "common/metrics.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <system_error>
#include <type_traits>
#include <utility>

namespace bulkhead::metrics {

// The hot path promises lock-free updates; fail the build rather than silently take a lock.
static_assert(std::atomic<double>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

namespace {

[[noreturn]] void die(const std::string& message) {
  std::cerr << "bulkhead::metrics: " << message << "\n";
  std::abort();
}

template <typename T>
constexpr std::string_view typeName() {
  if constexpr (std::is_same_v<T, Counter>) {
    return "counter";
  } else if constexpr (std::is_same_v<T, Gauge>) {
    return "gauge";
  } else {
    static_assert(std::is_same_v<T, Histogram>);
    return "histogram";
  }
}

// Integers print without a decimal point or exponent below 1e15 (exact, and what counters hold);
// everything else prints in the shortest %g-style form that parses back to the same double.
std::string formatValue(double value) {
  if (std::isnan(value)) {
    return "NaN";
  }
  if (std::isinf(value)) {
    return value > 0 ? "+Inf" : "-Inf";
  }
  const bool integral = std::trunc(value) == value && std::abs(value) < 1e15;
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value,
                                 integral ? std::chars_format::fixed : std::chars_format::general);
  if (ec != std::errc()) {
    die("cannot format a double");
  }
  return std::string(buf, end);
}

// Help text escapes backslash and newline; label values also escape the double quote.
void appendEscaped(std::string& out, std::string_view s, bool escapeQuote) {
  for (char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '"': out += escapeQuote ? "\\\"" : "\""; break;
      default: out += c;
    }
  }
}

std::string joined(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    out += i == 0 ? "" : ", ";
    out += items[i];
  }
  return out + "]";
}

std::string joined(const std::vector<double>& bounds) {
  std::vector<std::string> items;
  for (double b : bounds) {
    items.push_back(formatValue(b));
  }
  return joined(items);
}

// `counter [a, b] "help"`, or `histogram [a] le [0.1, 1] "help"`.
std::string describe(std::string_view type, const std::vector<std::string>& labelNames,
                     const std::vector<double>& bounds, std::string_view help) {
  std::string out = std::string(type) + " " + joined(labelNames);
  if (type == "histogram") {
    out += " le " + joined(bounds);
  }
  return out + " \"" + std::string(help) + "\"";
}

bool isValidName(std::string_view name, bool allowColon) {
  if (name.empty()) {
    return false;
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                    (allowColon && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) {
      return false;
    }
  }
  return true;
}

void validateNames(std::string_view name, const std::vector<std::string>& labelNames,
                   bool isHistogram) {
  if (!isValidName(name, /*allowColon=*/true)) {
    die("invalid metric name \"" + std::string(name) + "\"");
  }
  for (size_t i = 0; i < labelNames.size(); ++i) {
    const std::string& label = labelNames[i];
    if (!isValidName(label, /*allowColon=*/false) || label.starts_with("__")) {
      die("metric \"" + std::string(name) + "\": invalid label name \"" + label + "\"");
    }
    if (isHistogram && label == "le") {
      die("histogram \"" + std::string(name) + "\": label name \"le\" is reserved");
    }
    if (std::find(labelNames.begin(), labelNames.begin() + i, label) != labelNames.begin() + i) {
      die("metric \"" + std::string(name) + "\": duplicate label name \"" + label + "\"");
    }
  }
}

constexpr std::string_view kHistogramSuffixes[] = {"_bucket", "_sum", "_count"};

// Appends `name{pairs} value`, without braces when there are no label pairs.
void appendSample(std::string& out, std::string_view name, std::string_view suffix,
                  std::string_view pairs, std::string_view value) {
  out += name;
  out += suffix;
  if (!pairs.empty()) {
    out += '{';
    out += pairs;
    out += '}';
  }
  out += ' ';
  out += value;
  out += '\n';
}

}  // namespace

namespace internal {
void dieNegativeIncrement(double delta) {
  die("counter inc() by " + formatValue(delta) + "; counters only go up");
}
}  // namespace internal

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds.begin(), bounds.end()), counts_(bounds.size() + 1) {}

void Histogram::observe(double value) {
  const size_t bucket =
      std::isnan(value)
          ? bounds_.size()
          : static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) -
                                bounds_.begin());
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

std::vector<std::uint64_t> Histogram::cumulativeCounts() const {
  std::vector<std::uint64_t> out;
  out.reserve(counts_.size());
  std::uint64_t total = 0;
  for (const auto& c : counts_) {
    total += c.load(std::memory_order_relaxed);
    out.push_back(total);
  }
  return out;
}

std::uint64_t Histogram::count() const { return cumulativeCounts().back(); }

template <typename T>
Family<T>::Family(std::string name, std::string help, std::vector<std::string> labelNames,
                  std::vector<double> bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      labelNames_(std::move(labelNames)),
      bounds_(std::move(bounds)) {
  if (labelNames_.empty()) {
    std::lock_guard lock(mu_);
    emplaceLocked({});
  }
}

template <typename T>
T& Family<T>::labels(std::initializer_list<std::string_view> values) {
  if (values.size() != labelNames_.size()) {
    die("metric \"" + name_ + "\" has labels " + joined(labelNames_) + "; got " +
        std::to_string(values.size()) + " label values");
  }
  std::lock_guard lock(mu_);
  if (auto it = children_.find(values); it != children_.end()) {
    return it->second;
  }
  return emplaceLocked(std::vector<std::string>(values.begin(), values.end()));
}

template <typename T>
T& Family<T>::emplaceLocked(std::vector<std::string> values) {
  if constexpr (std::is_same_v<T, Histogram>) {
    return children_.try_emplace(std::move(values), bounds_).first->second;
  } else {
    return children_.try_emplace(std::move(values)).first->second;
  }
}

template <typename T>
void Family<T>::appendExposition(std::string& out) const {
  std::lock_guard lock(mu_);
  if (children_.empty()) {
    return;
  }
  out += "# HELP ";
  out += name_;
  out += ' ';
  appendEscaped(out, help_, /*escapeQuote=*/false);
  out += "\n# TYPE ";
  out += name_;
  out += ' ';
  out += typeName<T>();
  out += '\n';
  for (const auto& [values, child] : children_) {
    std::string pairs;
    for (size_t i = 0; i < values.size(); ++i) {
      pairs += i == 0 ? "" : ",";
      pairs += labelNames_[i];
      pairs += "=\"";
      appendEscaped(pairs, values[i], /*escapeQuote=*/true);
      pairs += '"';
    }
    if constexpr (std::is_same_v<T, Histogram>) {
      const std::vector<std::uint64_t> counts = child.cumulativeCounts();
      for (size_t i = 0; i < counts.size(); ++i) {
        const std::string le = i < bounds_.size() ? formatValue(bounds_[i]) : "+Inf";
        const std::string bucketPairs = pairs + (pairs.empty() ? "" : ",") + "le=\"" + le + "\"";
        appendSample(out, name_, "_bucket", bucketPairs, std::to_string(counts[i]));
      }
      appendSample(out, name_, "_sum", pairs, formatValue(child.sum()));
      appendSample(out, name_, "_count", pairs, std::to_string(counts.back()));
    } else {
      appendSample(out, name_, "", pairs, formatValue(child.value()));
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

std::vector<double> defaultLatencyBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

template <typename T>
Family<T>& Registry::add(std::string_view name, std::string_view help,
                         std::vector<std::string> labelNames, std::vector<double> bounds) {
  constexpr bool kIsHistogram = std::is_same_v<T, Histogram>;
  validateNames(name, labelNames, kIsHistogram);
  std::lock_guard lock(mu_);
  if (auto it = families_.find(name); it != families_.end()) {
    auto* same = std::get_if<std::unique_ptr<Family<T>>>(&it->second);
    if (same != nullptr && (*same)->help_ == help && (*same)->labelNames_ == labelNames &&
        (*same)->bounds_ == bounds) {
      return **same;
    }
    const std::string existing = std::visit(
        [](const auto& f) {
          using Child = typename std::remove_reference_t<decltype(*f)>::Child;
          return describe(typeName<Child>(), f->labelNames_, f->bounds_, f->help_);
        },
        it->second);
    die("metric \"" + std::string(name) + "\" is already registered as " + existing +
        "; cannot register it as " + describe(typeName<T>(), labelNames, bounds, help));
  }
  for (std::string_view suffix : kHistogramSuffixes) {
    if (kIsHistogram && families_.contains(std::string(name) + std::string(suffix))) {
      die("histogram \"" + std::string(name) + "\" collides with metric \"" + std::string(name) +
          std::string(suffix) + "\"");
    }
    if (name.ends_with(suffix)) {
      auto stem = families_.find(name.substr(0, name.size() - suffix.size()));
      if (stem != families_.end() &&
          std::holds_alternative<std::unique_ptr<HistogramFamily>>(stem->second)) {
        die("metric \"" + std::string(name) + "\" collides with histogram \"" + stem->first +
            "\"");
      }
    }
  }
  auto family = std::unique_ptr<Family<T>>(
      new Family<T>(std::string(name), std::string(help), std::move(labelNames),
                    std::move(bounds)));
  Family<T>& result = *family;
  families_.emplace(std::string(name), std::move(family));
  return result;
}

CounterFamily& Registry::counter(std::string_view name, std::string_view help,
                                 std::vector<std::string> labelNames) {
  return add<Counter>(name, help, std::move(labelNames), {});
}

GaugeFamily& Registry::gauge(std::string_view name, std::string_view help,
                             std::vector<std::string> labelNames) {
  return add<Gauge>(name, help, std::move(labelNames), {});
}

HistogramFamily& Registry::histogram(std::string_view name, std::string_view help,
                                     std::vector<std::string> labelNames,
                                     std::vector<double> buckets) {
  if (!buckets.empty() && std::isinf(buckets.back()) && buckets.back() > 0) {
    buckets.pop_back();
  }
  for (size_t i = 0; i < buckets.size(); ++i) {
    if (!std::isfinite(buckets[i]) || (i > 0 && !(buckets[i - 1] < buckets[i]))) {
      die("histogram \"" + std::string(name) +
          "\": buckets must be finite and strictly increasing, got " + joined(buckets));
    }
  }
  return add<Histogram>(name, help, std::move(labelNames), std::move(buckets));
}

std::string Registry::exposition() const {
  std::string out;
  std::lock_guard lock(mu_);
  for (const auto& [name, family] : families_) {
    std::visit([&out](const auto& f) { f->appendExposition(out); }, family);
  }
  return out;
}

Registry& defaultRegistry() {
  // Leaked on purpose: threads still running during static destruction may hold children.
  static Registry* const registry = new Registry();
  return *registry;
}

}  // namespace bulkhead::metrics
