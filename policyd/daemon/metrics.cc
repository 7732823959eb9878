#include "policyd/daemon/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace sluice::daemon {

namespace {

std::string formatValue(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

}  // namespace

Histogram::Histogram(std::vector<double> upperBounds)
    : bounds_(std::move(upperBounds)), buckets_(bounds_.size() + 1, 0) {
  std::sort(bounds_.begin(), bounds_.end());
}

void Histogram::observe(double value) {
  auto it = std::lower_bound(bounds_.begin(), bounds_.end(), value);
  ++buckets_[static_cast<size_t>(it - bounds_.begin())];
  ++count_;
  sum_ += value;
}

std::vector<double> latencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::string MetricsWriter::escapeLabel(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void MetricsWriter::family(const std::string& name, const std::string& type,
                           const std::string& help) {
  out_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void MetricsWriter::sample(const std::string& name, const MetricLabels& labels, double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i) out_ += ',';
      out_ += labels[i].first + "=\"" + escapeLabel(labels[i].second) + "\"";
    }
    out_ += '}';
  }
  out_ += ' ' + formatValue(value) + '\n';
}

void MetricsWriter::histogram(const std::string& name, const std::string& help,
                              const Histogram& h) {
  family(name, "histogram", help);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.bounds().size(); ++i) {
    cumulative += h.buckets()[i];
    sample(name + "_bucket", {{"le", formatValue(h.bounds()[i])}},
           static_cast<double>(cumulative));
  }
  cumulative += h.buckets().back();
  sample(name + "_bucket", {{"le", "+Inf"}}, static_cast<double>(cumulative));
  sample(name + "_sum", h.sum());
  sample(name + "_count", static_cast<double>(h.count()));
}

}  // namespace sluice::daemon
