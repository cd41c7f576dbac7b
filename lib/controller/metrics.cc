#include "controller/metrics.h"

#include <cassert>
#include <cmath>
#include <sstream>

namespace singleton::controller {
namespace {

std::string escapeLabel(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string formatLabels(const Labels& labels, const std::string& extra_key = "", const std::string& extra = "") {
  if (labels.empty() && extra_key.empty()) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    out += (first ? "" : ",") + k + "=\"" + escapeLabel(v) + "\"";
    first = false;
  }
  if (!extra_key.empty()) out += (first ? "" : ",") + extra_key + "=\"" + extra + "\"";
  return out + "}";
}

std::string formatNumber(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  std::ostringstream s;
  s.precision(15);
  s << v;
  return s.str();
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), buckets_(bounds_.size(), 0) {}

void Histogram::observe(double value) {
  std::lock_guard g(mutex_);
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    if (value <= bounds_[i]) {
      ++buckets_[i];
      break;
    }
  }
  ++count_;
  sum_ += value;
}
std::uint64_t Histogram::count() const {
  std::lock_guard g(mutex_);
  return count_;
}
double Histogram::sum() const {
  std::lock_guard g(mutex_);
  return sum_;
}

Registry::Family& Registry::family(const std::string& name, Kind kind, const std::string& help) {
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    it->second.kind = kind;
    it->second.help = help;
  }
  assert(it->second.kind == kind && "a metric name is registered with one type");
  return it->second;
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard g(mutex_);
  auto& slot = family(name, Kind::kCounter, help).counters[labels];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard g(mutex_);
  auto& slot = family(name, Kind::kGauge, help).gauges[labels];
  if (!slot) slot = std::make_unique<Gauge>();
  return *slot;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help, const std::vector<double>& bounds,
                               const Labels& labels) {
  std::lock_guard g(mutex_);
  auto& slot = family(name, Kind::kHistogram, help).histograms[labels];
  if (!slot) slot = std::make_unique<Histogram>(bounds);
  return *slot;
}

void Registry::remove(const std::string& name, const Labels& labels) {
  std::lock_guard g(mutex_);
  auto it = families_.find(name);
  if (it == families_.end()) return;
  // Only gauges are removed in practice; a removed handle must not be used again.
  it->second.gauges.erase(labels);
  it->second.counters.erase(labels);
  it->second.histograms.erase(labels);
}

std::string Registry::render() const {
  std::lock_guard g(mutex_);
  std::string out;
  for (const auto& [name, f] : families_) {
    const char* type = f.kind == Kind::kCounter ? "counter" : f.kind == Kind::kGauge ? "gauge" : "histogram";
    out += "# HELP " + name + " " + f.help + "\n# TYPE " + name + " " + type + "\n";
    for (const auto& [labels, c] : f.counters)
      out += name + formatLabels(labels) + " " + formatNumber(c->value()) + "\n";
    for (const auto& [labels, gauge] : f.gauges) {
      out += name + formatLabels(labels) + " " + formatNumber(gauge->value()) + "\n";
    }
    for (const auto& [labels, h] : f.histograms) {
      std::lock_guard hg(h->mutex_);
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < h->bounds_.size(); ++i) {
        cumulative += h->buckets_[i];
        out += name + "_bucket" + formatLabels(labels, "le", formatNumber(h->bounds_[i])) + " " +
               std::to_string(cumulative) + "\n";
      }
      out += name + "_bucket" + formatLabels(labels, "le", "+Inf") + " " + std::to_string(h->count_) + "\n";
      out += name + "_sum" + formatLabels(labels) + " " + formatNumber(h->sum_) + "\n";
      out += name + "_count" + formatLabels(labels) + " " + std::to_string(h->count_) + "\n";
    }
  }
  return out;
}

std::vector<double> latencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

}  // namespace singleton::controller
