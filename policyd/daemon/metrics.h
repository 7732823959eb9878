// Prometheus text exposition (format 0.0.4) helpers: just what /metrics needs.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sluice::daemon {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class Histogram {
 public:
  explicit Histogram(std::vector<double> upperBounds);
  void observe(double value);
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }
  const std::vector<double>& bounds() const { return bounds_; }
  const std::vector<uint64_t>& buckets() const { return buckets_; }  // not cumulative

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> buckets_;  // one per bound, plus +Inf
  uint64_t count_ = 0;
  double sum_ = 0;
};

// Latency buckets in seconds, 1 ms .. 10 s.
std::vector<double> latencyBuckets();

class MetricsWriter {
 public:
  // Starts a family: "# HELP" and "# TYPE" lines. type: counter, gauge, histogram.
  void family(const std::string& name, const std::string& type, const std::string& help);
  void sample(const std::string& name, const MetricLabels& labels, double value);
  void sample(const std::string& name, double value) { sample(name, {}, value); }
  void histogram(const std::string& name, const std::string& help, const Histogram& h);
  const std::string& text() const { return out_; }

  static std::string escapeLabel(const std::string& v);

 private:
  std::string out_;
};

}  // namespace sluice::daemon
