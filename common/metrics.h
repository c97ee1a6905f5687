#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

// Prometheus metrics: a registry of counter, gauge and histogram families and their text
// exposition (format 0.0.4). Everything here is thread-safe. Updating a child (inc, set, observe)
// is lock-free; looking a child up by label values takes a mutex, so hot paths look it up once
// and keep the reference, which stays valid for the life of the registry.
namespace bulkhead::metrics {

namespace internal {
[[noreturn]] void dieNegativeIncrement(double delta);
}  // namespace internal

// A value that only goes up.
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // Precondition: delta >= 0. A negative or NaN delta is a bug and aborts.
  void inc(double delta = 1) {
    if (!(delta >= 0)) {
      internal::dieNegativeIncrement(delta);
    }
    value_.fetch_add(delta, std::memory_order_relaxed);
  }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void set(double value) { value_.store(value, std::memory_order_relaxed); }
  void inc(double delta = 1) { value_.fetch_add(delta, std::memory_order_relaxed); }
  void dec(double delta = 1) { value_.fetch_sub(delta, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Counts observations into buckets with fixed, inclusive upper bounds ("le") plus +Inf, and sums
// them. A reader sees each bucket and the sum up to date on its own, not all of them at one
// instant; the count is derived from the buckets, so it always equals the +Inf bucket.
class Histogram {
 public:
  // Precondition: `bounds` are finite and strictly increasing (Registry::histogram checks).
  explicit Histogram(std::span<const double> bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // NaN is counted in the +Inf bucket only (and makes the sum NaN), as the Go client does.
  void observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // One entry per bound, then the +Inf bucket (which is the count).
  std::vector<std::uint64_t> cumulativeCounts() const;
  std::uint64_t count() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double> bounds_;
  std::vector<std::atomic<std::uint64_t>> counts_;  // per bucket, not cumulative; last is +Inf
  std::atomic<double> sum_{0};
};

class Registry;

// All children of one metric name, one per combination of label values. Created and owned by a
// Registry.
template <typename T>
class Family {
 public:
  using Child = T;

  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;

  // The child for `values` (one per label name, in order), created on first use. Passing the
  // wrong number of values is a bug and aborts.
  T& labels(std::initializer_list<std::string_view> values);
  // The only child of a family declared without labels; it exists (at zero) from registration.
  T& unlabeled() { return labels({}); }

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& labelNames() const { return labelNames_; }

 private:
  friend class Registry;

  // Orders label-value lists lexicographically (bytewise), and lets a lookup compare them
  // against the caller's string_views without building a key.
  struct LabelValuesLess {
    using is_transparent = void;
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return std::lexicographical_compare(
          a.begin(), a.end(), b.begin(), b.end(),
          [](std::string_view x, std::string_view y) { return x < y; });
    }
  };

  Family(std::string name, std::string help, std::vector<std::string> labelNames,
         std::vector<double> bounds);
  T& emplaceLocked(std::vector<std::string> values);
  void appendExposition(std::string& out) const;

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> labelNames_;
  const std::vector<double> bounds_;  // histograms only

  mutable std::mutex mu_;
  // Map nodes never move, which is what keeps the references handed out stable.
  std::map<std::vector<std::string>, T, LabelValuesLess> children_;  // guarded by mu_
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

// 0.5 ms to 10 s: request and reconcile latencies, in seconds.
std::vector<double> defaultLatencyBuckets();

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Each registers a family, or returns the one already registered under `name` when its type,
  // help, label names (and buckets) are the same, so independent components can declare a shared
  // metric. Any difference, an invalid metric or label name, a name that collides with a
  // histogram's _bucket/_sum/_count series, or invalid buckets is a bug and aborts.
  CounterFamily& counter(std::string_view name, std::string_view help,
                         std::vector<std::string> labelNames = {});
  GaugeFamily& gauge(std::string_view name, std::string_view help,
                     std::vector<std::string> labelNames = {});
  // `buckets`: finite, strictly increasing upper bounds; a trailing +Inf is implied and may be
  // given.
  HistogramFamily& histogram(std::string_view name, std::string_view help,
                             std::vector<std::string> labelNames = {},
                             std::vector<double> buckets = defaultLatencyBuckets());

  // Prometheus text format 0.0.4, families sorted by name and children by label values. A family
  // with labels but no children yet is left out, as the Go client does.
  std::string exposition() const;

 private:
  using AnyFamily = std::variant<std::unique_ptr<CounterFamily>, std::unique_ptr<GaugeFamily>,
                                 std::unique_ptr<HistogramFamily>>;

  template <typename T>
  Family<T>& add(std::string_view name, std::string_view help,
                 std::vector<std::string> labelNames, std::vector<double> bounds);

  mutable std::mutex mu_;
  std::map<std::string, AnyFamily, std::less<>> families_;  // guarded by mu_
};

// The process-wide registry that /metrics serves. Never destroyed.
Registry& defaultRegistry();

}  // namespace bulkhead::metrics
