// Model -> IR, incrementally.
//
// How addresses become classes. A class must hold addresses that every rule on this node treats
// alike, so an address's class is interned from a signature of exactly what the rules can see:
//   - `sel`: the relevant rules (rules of policies selecting a local endpoint) that one of their
//     pod/namespace selector peers matches for the address's pod; for egress rules without peers
//     that carry named ports, the rules whose named ports resolve at the pod;
//   - `ip`: the relevant rules whose ipBlock (cidr minus except) contains the address;
//   - `res`: how the named ports of the egress rules in `sel` resolve at the pod;
//   - `kind`: address, or one of this node's own addresses (see "Host addresses" below).
// Two pods with equal labels (in one namespace, with equal container ports) therefore share a
// class, and so do pods that no rule tells apart.
//
// ipBlocks are classified by an LPM partition: every cidr and except of a relevant rule is a
// prefix of the class map; for an address whose longest matching prefix in that set is P, block
// B contains the address iff B.cidr contains P and no except of B contains P, so the `ip` part
// of a prefix's signature is exact for every address it is the longest match of. Pod and host
// addresses get /32 (/128) entries, whose `ip` part is that of their longest matching prefix.
// 0.0.0.0/0 and ::/0 are always in the set; the signature with nothing in it is kWorldClass.
//
// Host addresses (NodeContext::hostAddresses). The datapath lets every packet from a kHostClass
// address into a local pod (kubelet probes: "traffic from the node's own addresses to its local
// pods is always allowed"). Egress towards a host address is policy like any other: a host
// address is not a pod (hostNetwork pods are not endpoints), so only ipBlock rules and rules
// without peers can allow it. One class id cannot carry two different ipBlock memberships, so:
// the host addresses whose `ip` part equals that of hostAddresses[0] get kHostClass, and egress
// entries are emitted for kHostClass wherever an ipBlock rule contains them; any other host
// address (say the node's IPv6 address when an ipBlock holds only its IPv4 one) gets a class of
// its own kind, egress entries by the same rule, and an explicit ingress entry
// (class, any protocol, kHostRule) at every ingress-isolated endpoint, so ingress from it is
// allowed as the datapath allows kHostClass.
//
// Endpoint allow sets. For a rule R of a policy selecting endpoint E:
//   - no peers: entries for kAnyPeer; for egress named ports, one entry per class whose `sel`
//     holds R (the resolution differs per destination pod);
//   - peers: entries for each class whose `sel` or `ip` holds R; egress named ports only for the
//     classes in `sel` ("named ports never match an ipBlock peer");
//   - ingress named ports resolve against E's own pod, so they become numeric ports of E.
// Rule ids are allocated per (policy, direction, index) while the rule is relevant, and a freed
// id (and a freed class id) is reused only from the update after the one that freed it, so a
// Diff never re-purposes an id it also removes.
//
// Incremental updates. The daemon hands over the whole model; objects are compared by key and
// content, and each change marks what it affects: a pod change re-claims its addresses (and
// creates its label group if new), a namespace change re-matches the groups of the namespace, a
// policy change re-selects endpoints of its namespace and re-matches its rules against every
// group (a few selector matches per group, never pods x rules), and re-partitions the ipBlocks
// only if the old or new policy has one. Addresses whose signature changed move class; classes
// that appear or disappear mark the endpoints whose rules they name, and only those endpoints'
// allow sets are rebuilt.
//
// The jobs live in their own files, all working on the state in compiler_impl.h:
//   change_detection.cc    what changed in the model since the last update
//   endpoint_selection.cc  which policies select each local endpoint
//   rule_table.cc          the relevant rules and their RuleIds
//   label_groups.cc        label groups and the rules whose selectors match them
//   address_claims.cc      who owns each address
//   ipblock_partition.cc   the LPM partition of ipBlock prefixes
//   class_interning.cc     signatures -> ClassIds, and the class map
//   allow_sets.cc          per-endpoint allow sets
//   endpoint_diffs.cc      what changed, as a Diff
//   id_allocator.h         RuleId and ClassId allocation with quarantine
// Selection semantics (which pods a policy or peer selects, ports) are engine/selection.h.
#include "policyd/compiler/compiler.h"

#include <chrono>

#include "policyd/compiler/compiler_impl.h"

namespace sluice::compiler {

void Compiler::Impl::beginUpdate() {
  ruleIdAlloc.startUpdate();
  classIdAlloc.startUpdate();
  dirtyEndpoints.clear();
  touchedSel.clear();
  dirtyAddrs.clear();
  dirtyGroupsFull.clear();
  changedRules.clear();
  ruleIdsTouched.clear();
  deadGroups.clear();
  auditNsDirty.clear();
  partitionDirty = first;
  ++generation;
}

Diff Compiler::Impl::update(const model::Cluster& cluster, const NodeContext& nodeIn) {
  const auto start = std::chrono::steady_clock::now();
  beginUpdate();
  std::set<std::string> changedPodKeys;
  OldPolicies oldPolicies;
  detectNamespaces(cluster);
  detectPods(cluster, changedPodKeys);
  detectPolicies(cluster, oldPolicies);
  return finishUpdate(nodeIn, changedPodKeys, oldPolicies, start);
}

Diff Compiler::Impl::update(const ChangeSet& changes) {
  const auto start = std::chrono::steady_clock::now();
  beginUpdate();
  std::set<std::string> changedPodKeys;
  OldPolicies oldPolicies;
  applyNamespaceChanges(changes);
  applyPodChanges(changes, changedPodKeys);
  applyPolicyChanges(changes, oldPolicies);
  // A copy: refreshEndpoints replaces `node` with what it is given.
  const NodeContext nodeIn = changes.node ? *changes.node : node;
  return finishUpdate(nodeIn, changedPodKeys, oldPolicies, start);
}

Diff Compiler::Impl::finishUpdate(const NodeContext& nodeIn,
                                  const std::set<std::string>& changedPodKeys,
                                  const OldPolicies& oldPolicies,
                                  std::chrono::steady_clock::time_point start) {
  Diff diff;
  refreshEndpoints(nodeIn, changedPodKeys, oldPolicies);
  refreshAudited();
  updateRules(oldPolicies);
  updateGroups();
  PendingPrefixes pendingPrefixes;
  updatePartition(pendingPrefixes);
  updateClasses(pendingPrefixes, diff);
  for (Group* g : deadGroups) {
    if (g->claims != 0) continue;  // re-acquired in the same update
    groupsByNs[g->pod.namespace_].erase(g);
    groups.erase(groupKeyOf(g->pod));
  }

  emitEndpointChanges(diff);
  emitRuleChanges(diff);
  if (!diff.classesUpsert.empty() || !diff.classesRemove.empty() || !diff.endpoints.empty()) {
    state.revision++;
  }
  diff.revision = state.revision;
  first = false;
  stats.endpointsRecomputed = dirtyEndpoints.size();
  stats.elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::steady_clock::now() - start);
  return diff;
}

State compile(const model::Cluster& cluster, const NodeContext& node) {
  // The same pipeline with every cache cold: everything is "changed" against an empty model.
  Compiler c;
  c.update(cluster, node);
  return c.state();
}

Compiler::Compiler() : impl_(std::make_unique<Impl>()) {}
Compiler::~Compiler() = default;

Diff Compiler::update(const model::Cluster& cluster, const NodeContext& node) {
  return impl_->update(cluster, node);
}

Diff Compiler::update(const ChangeSet& changes) { return impl_->update(changes); }

const State& Compiler::state() const { return impl_->state; }
const UpdateStats& Compiler::lastStats() const { return impl_->stats; }

}  // namespace sluice::compiler
