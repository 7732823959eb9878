// metav1.LabelSelector, validated at decode time so matching never fails open.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace sluice::model {

using Labels = std::map<std::string, std::string, std::less<>>;

enum class SelectorOp { In, NotIn, Exists, DoesNotExist };

struct SelectorRequirement {
  std::string key;
  SelectorOp op = SelectorOp::In;
  std::vector<std::string> values;  // sorted, for In/NotIn
};

struct LabelSelector {
  Labels matchLabels;
  std::vector<SelectorRequirement> matchExpressions;

  // `{}` selects everything.
  bool empty() const { return matchLabels.empty() && matchExpressions.empty(); }
  bool matches(const Labels& labels) const;
  std::string toString() const;  // kubectl-style: "app=web,tier in (a,b),!debug"
  bool operator==(const LabelSelector&) const = default;
};

bool operator==(const SelectorRequirement& a, const SelectorRequirement& b);

// Kubernetes label syntax checks. Return a message describing the problem, or empty.
std::string validateLabelKey(std::string_view key);
std::string validateLabelValue(std::string_view value);

}  // namespace sluice::model
