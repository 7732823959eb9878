// `sluicectl matrix`: reachability between every pair of pods for one port.
//
// Every pair goes through the same decisions as engine::Evaluator::evaluate (the engine's
// peerMatches and portMatches decide each peer and port), but the per-pair work is only the
// rule loop: each pod's selecting policies per direction are found once, and each selector
// peer's members are computed once, as a bitset over the matrix's pods. A test checks the result
// against the reference evaluator pair by pair.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "policyd/ctl/args.h"
#include "policyd/ctl/matrix_render.h"
#include "policyd/engine/evaluator.h"

namespace sluice::ctl {

struct Matrix {
  PortQuery query;
  // Non-hostNetwork pods sorted by "ns/name" (hostNetwork pods are not policy endpoints).
  std::vector<const model::Pod*> pods;
  std::vector<std::string> keys;
  // Row-major: allowed[i * n + j] = pods[i] may open a connection to pods[j]. A pod to itself
  // is evaluated like any other pair (traffic to its own address passes its own egress and
  // ingress policy). With a named port, a pair whose destination does not define the name (for
  // the protocol) is not allowed.
  std::vector<uint8_t> allowed;
  // Audit mode (docs/audit.md): the same matrix with the audited policies enforced too, and
  // their keys. Both empty when the cluster has no audited policy.
  std::vector<uint8_t> onceEnforced;
  std::vector<std::string> auditedPolicies;

  size_t size() const { return pods.size(); }
  bool at(size_t i, size_t j) const { return allowed[i * pods.size() + j] != 0; }
  bool hasAudit() const { return !onceEnforced.empty(); }
  bool atOnceEnforced(size_t i, size_t j) const {
    return hasAudit() ? onceEnforced[i * pods.size() + j] != 0 : at(i, j);
  }
  // The cell in the one matrix convention: allowed, denied, or (audit) allowed now and denied
  // once enforced, or the reverse.
  Mark mark(size_t i, size_t j) const;
  MarkGrid grid() const;
  // Pods that do not define the query's named port (empty for a numeric port).
  std::vector<std::string> podsWithoutPort() const;
};

Matrix computeMatrix(const engine::Evaluator& ev, const PortQuery& query);

// The port as JSON: a number, or the name string.
std::string portJson(const PortQuery& query);

// {"port":..,"protocol":..,"pods":[...],"allowed":[[...],...]}; with audited policies also
// "auditedPolicies":[...] and "allowedOnceEnforced":[[...],...] (the matrix were they enforced).
void renderMatrixJson(std::ostream& out, const Matrix& m);
// An aligned truth table: rows are sources, columns destinations, with an index of the pods
// and a legend line (matrix_render.h).
void renderMatrixText(std::ostream& out, const Matrix& m);
// A picture grouped by namespace (matrix_render.h).
void renderMatrixSvg(std::ostream& out, const Matrix& m);

}  // namespace sluice::ctl
