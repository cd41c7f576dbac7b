// A small Prometheus registry: counters, gauges and histograms with labels, rendered in the text exposition format.
// Enough for the operator's /metrics; no dependency on a client library Debian does not ship.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace singleton::controller {

using Labels = std::map<std::string, std::string>;

class Registry;

// A counter only goes up; a gauge is set. Lock-free: inc/set sit on reconcile paths.
class Counter {
 public:
  void inc(double by = 1.0) { value_.fetch_add(by, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void set(double value) { value_.store(value, std::memory_order_relaxed); }
  void add(double by) { value_.fetch_add(by, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  std::uint64_t count() const;
  double sum() const;

 private:
  friend class Registry;
  mutable std::mutex mutex_;
  std::vector<double> bounds_;
  std::vector<std::uint64_t> buckets_;  // cumulative at render time
  std::uint64_t count_ = 0;
  double sum_ = 0;
};

// A family is one metric name with any number of label sets. Handles stay valid for the registry's lifetime.
class Registry {
 public:
  Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});
  Histogram& histogram(const std::string& name, const std::string& help, const std::vector<double>& bounds,
                       const Labels& labels = {});
  // Removes one label set (e.g. a deleted workload's gauge).
  void remove(const std::string& name, const Labels& labels);
  std::string render() const;

 private:
  enum class Kind { kCounter, kGauge, kHistogram };
  struct Family {
    Kind kind{};
    std::string help;
    std::map<Labels, std::unique_ptr<Counter>> counters;
    std::map<Labels, std::unique_ptr<Gauge>> gauges;
    std::map<Labels, std::unique_ptr<Histogram>> histograms;
  };
  Family& family(const std::string& name, Kind kind, const std::string& help);

  mutable std::mutex mutex_;
  std::map<std::string, Family> families_;
};

// Default latency buckets in seconds, from 1 ms to 10 s.
std::vector<double> latencyBuckets();

}  // namespace singleton::controller
