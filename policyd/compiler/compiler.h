// Model -> IR. The daemon hands the compiler the whole current model on every change; the
// compiler works out what changed (objects are compared by key and content) and recomputes only
// the classes and endpoint allow sets the change affects, returning the Diff to apply.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/ip.h"
#include "policyd/compiler/ir.h"
#include "policyd/model/types.h"

namespace sluice::compiler {

// A pod interface on this node, as registered by the CNI plugin.
struct LocalEndpoint {
  EndpointId id = 0;
  std::string podNamespace;
  std::string podName;
  std::vector<IpAddr> ips;  // from registration; authoritative over status.podIPs
  bool operator==(const LocalEndpoint&) const = default;
};

struct NodeContext {
  std::vector<IpAddr> hostAddresses;  // traffic from these to local pods is always allowed
  std::vector<LocalEndpoint> endpoints;
  bool operator==(const NodeContext&) const = default;
};

struct UpdateStats {
  size_t classesRecomputed = 0;
  size_t endpointsRecomputed = 0;
  std::chrono::nanoseconds elapsed{0};
};

// Full, non-incremental compilation: the reference the incremental path is tested against.
// It runs the same pipeline as Compiler::update with every cache cold, so ids are dense and
// deterministic (rules in policy-key order, classes in address order).
//
// Conventions (details in compiler.cc):
//  - A local endpoint whose pod is not in the model yet is a pod with no labels in its
//    namespace: default-deny policies of the namespace isolate it from the first packet.
//  - Endpoint addresses come from the NodeContext; other pods' from status.podIPs; hostNetwork
//    pods claim no address (theirs are node addresses: ipBlocks only).
//  - Node addresses are kHostClass (ingress always allowed by the datapath) when their ipBlock
//    membership equals hostAddresses[0]'s; others get a class of their own plus an explicit
//    (class, any, kHostRule) ingress entry at every ingress-isolated endpoint.
//  - RuleIds and ClassIds live as long as their rule / signature; a freed id is reused only from
//    the next update on. A freed RuleId's State::rules slot becomes an empty RuleOrigin.
State compile(const model::Cluster& cluster, const NodeContext& node);

class Compiler {
 public:
  Compiler();
  ~Compiler();
  Compiler(const Compiler&) = delete;
  Compiler& operator=(const Compiler&) = delete;

  // Brings the compiled state up to date with (cluster, node) and returns what changed.
  // The first call returns the full state as a diff from empty.
  Diff update(const model::Cluster& cluster, const NodeContext& node);
  const State& state() const;
  const UpdateStats& lastStats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::compiler
