// Model -> IR. Either the caller hands the compiler the whole current model and the compiler
// works out what changed (objects are compared by key and content), or the caller names what
// changed in a ChangeSet; either way only the classes and endpoint allow sets the change
// affects are recomputed, and the Diff to apply is returned.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
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

// What changed since the previous update, as named by the caller (a cluster store that tracks
// per-object upserts and deletes): upserts carry the whole new object, deletes its key
// ("ns/name"; a namespace's name). A key should appear in one list at most; if it is in both,
// the delete applies first. Upserting an unchanged object is allowed and costs a comparison.
struct ChangeSet {
  std::vector<model::Namespace> namespaceUpserts;
  std::vector<std::string> namespaceDeletes;
  std::vector<model::Pod> podUpserts;
  std::vector<std::string> podDeletes;
  std::vector<model::NetworkPolicy> policyUpserts;
  std::vector<std::string> policyDeletes;
  std::optional<NodeContext> node;  // set when this node's endpoints or addresses changed

  bool empty() const {
    return namespaceUpserts.empty() && namespaceDeletes.empty() && podUpserts.empty() &&
           podDeletes.empty() && policyUpserts.empty() && policyDeletes.empty() && !node;
  }
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
  // Applies a change set to the model the compiler holds (everything earlier updates gave it)
  // and returns what changed. Costs O(change), not O(cluster): no pod or policy that the set
  // does not name is looked at. Snapshot and change-set updates may be mixed.
  Diff update(const ChangeSet& changes);
  const State& state() const;
  const UpdateStats& lastStats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::compiler
