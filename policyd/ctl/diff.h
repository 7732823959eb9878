// `sluicectl diff`: which pod pairs change reachability between two sets of manifests.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "policyd/ctl/matrix.h"

namespace sluice::ctl {

struct PairChange {
  std::string from;
  std::string to;
  bool before = false;
  bool after = false;
};

struct DiffResult {
  PortQuery query;
  std::vector<PairChange> changes;  // sorted by from, then to
  size_t comparedPods = 0;          // pods present in both sets
  std::vector<std::string> onlyBefore;  // pods only in -f (not compared)
  std::vector<std::string> onlyAfter;   // pods only in --with (not compared)
};

// Compares the pairs of pods present in both matrices (matched by "ns/name").
DiffResult diffMatrices(const Matrix& before, const Matrix& after);

// Only the changed pairs, "from -> to: allowed -> denied", then a summary line.
void renderDiffText(std::ostream& out, const DiffResult& d);
// {"port":..,"protocol":..,"changes":[{"from":..,"to":..,"before":bool,"after":bool}]}
void renderDiffJson(std::ostream& out, const DiffResult& d);

}  // namespace sluice::ctl
