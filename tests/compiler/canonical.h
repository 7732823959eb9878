// A State with its numbering taken out, to compare two compilations of one model: class ids are
// replaced by the smallest prefix of the class (reserved ids by their names), rule ids by their
// RuleOrigin. Two States that a datapath would enforce identically have equal canonical forms.
#pragma once

#include <map>
#include <set>
#include <string>
#include <tuple>

#include "policyd/compiler/ir.h"

namespace sluice::compiler::testing {

struct CanonicalEndpoint {
  bool ingressIsolated = false;
  bool egressIsolated = false;
  bool audited = false;
  // (direction, peer class, protocol, first port, last port, rule origin)
  std::set<std::tuple<int, std::string, int, int, int, std::string>> entries;
  bool operator==(const CanonicalEndpoint&) const = default;
};

struct CanonicalState {
  std::map<std::string, std::string> classes;  // prefix -> class name
  std::map<EndpointId, CanonicalEndpoint> endpoints;
  bool operator==(const CanonicalState&) const = default;
};

CanonicalState canonical(const State& s);
std::string toString(const CanonicalState& s);
// Applies a Diff as a backend would (upserts after removes, endpoints replaced wholesale when
// removed).
void applyDiff(State& s, const Diff& d);

}  // namespace sluice::compiler::testing
