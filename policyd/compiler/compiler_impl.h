// Internal to the compiler: the state behind Compiler (see compiler.cc for how addresses become
// classes and how an update proceeds) and the stages of an update, each defined in the file
// named for its job. Only the compiler's own sources include this.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "policyd/compiler/compiler.h"
#include "policyd/compiler/id_allocator.h"
#include "policyd/engine/selection.h"

namespace sluice::compiler {

using engine::rulesOf;
using model::Labels;
using model::NetworkPolicy;
using model::Pod;
using model::Protocol;

inline constexpr int kDirs = 2;
inline int dirIndex(Direction d) { return static_cast<int>(d); }

// How an egress rule's named port resolves at a pod.
struct NamedRes {
  std::string name;
  Protocol protocol = Protocol::TCP;
  uint16_t port = 0;
  auto operator<=>(const NamedRes&) const = default;
};

enum class Kind : uint8_t { Address = 0, HostPrimary = 1, Host = 2 };

// What the rules on this node can see of an address; equal signatures share a class.
struct Signature {
  Kind kind = Kind::Address;
  std::vector<RuleId> sel;  // sorted
  std::vector<RuleId> ip;   // sorted
  std::vector<NamedRes> res;
  auto operator<=>(const Signature&) const = default;
};

inline bool contains(const std::vector<RuleId>& v, RuleId r) {
  return std::binary_search(v.begin(), v.end(), r);
}

inline bool hasIpBlock(const model::Rule& r) {
  return std::any_of(r.peers.begin(), r.peers.end(), [](const auto& p) { return p.ipBlock; });
}

// ---- label groups (label_groups.cc) ----

struct GroupKey {
  std::string ns;
  Labels labels;
  std::vector<std::tuple<std::string, uint8_t, uint16_t>> ports;  // in pod order
  auto operator<=>(const GroupKey&) const = default;
};

GroupKey groupKeyOf(const Pod& pod);

// Pods that no selector and no named port can tell apart.
struct Group {
  Pod pod;  // a representative: namespace, labels and container ports only
  size_t claims = 0;
  std::vector<RuleId> sel;
  std::vector<NamedRes> res;
  std::set<IpAddr> owned;  // addresses this group is the owner of
};

// ---- address claims (address_claims.cc) ----

// Who claims an address: this node (priority 0), a local endpoint (1, authoritative over the
// pod's status), a pod (2). When two pods claim one address (a stale pod object), the one whose
// key sorts first owns it, whatever the order of the model.
using ClaimKey = std::pair<uint8_t, std::string>;

struct AddrEntry {
  std::map<ClaimKey, Group*> claims;  // host claims have no group
  bool owned = false;
  bool host = false;
  Group* owner = nullptr;
  ClassId cls = 0;  // valid when owned
};

// ---- rules and endpoints ----

struct RuleInfo {
  RuleOrigin origin;
  const NetworkPolicy* policy = nullptr;
  const model::Rule* rule = nullptr;
};

struct EndpointView {
  LocalEndpoint ep;
  Pod pod;  // from the cluster, or a stand-in with no labels when the pod is not known yet
  Group* group = nullptr;
  std::array<std::set<std::string>, kDirs> selecting;  // policy keys
  bool audited = false;  // an audited policy selects it (either direction)
};

// ---- classes (class_interning.cc) ----

// Partition prefixes whose class is to be recomputed: the new signature, or none.
using PendingPrefixes = std::map<Prefix, std::optional<Signature>>;

struct ClassInfo {
  ClassId id = 0;
  size_t refs = 0;
};

// Policies that changed in this update: the old version, or nullopt for a new policy.
using OldPolicies = std::map<std::string, std::optional<NetworkPolicy>>;

struct Compiler::Impl {
  // ---- inputs as last seen (change_detection.cc) ----
  std::map<std::string, Labels, std::less<>> namespaces;
  struct PodSnap {
    Pod pod;
    uint64_t seen = 0;  // generation of the update that last saw it
  };
  std::unordered_map<std::string, PodSnap> pods;
  // The model's pods in the order of the last update: the daemon hands over lists in a stable
  // order, so most pods are found by position without hashing their key.
  std::vector<PodSnap*> podOrder;
  uint64_t generation = 0;
  std::map<std::string, NetworkPolicy> policies;
  std::map<std::string, std::set<std::string>> policiesByNs;
  // Audited policies (sluice.io/enforcement: audit) are kept apart: they are not enforced, so
  // nothing but EndpointPolicy::audited ever sees them (docs/audit.md).
  std::map<std::string, NetworkPolicy> audited;
  std::map<std::string, std::set<std::string>> auditedByNs;
  NodeContext node;
  bool first = true;

  // ---- endpoint selection (endpoint_selection.cc) ----
  std::map<EndpointId, EndpointView> endpoints;
  std::map<std::string, std::set<EndpointId>> endpointsByNs;
  std::map<std::string, std::array<std::set<EndpointId>, kDirs>> policySel;

  // ---- rule table (rule_table.cc) ----
  std::map<std::string, std::array<bool, kDirs>> relevant;
  std::map<RuleOrigin, RuleId> ruleIds;
  std::map<RuleId, RuleInfo> rules;
  IdAllocator<RuleId> ruleIdAlloc{0};

  // ---- label groups and address claims ----
  std::map<GroupKey, std::unique_ptr<Group>> groups;
  std::map<std::string, std::set<Group*>> groupsByNs;
  std::unordered_map<IpAddr, AddrEntry> addrs;
  // The keys of addrs, ordered: the addresses inside a prefix are one range of it.
  std::set<IpAddr> addrIndex;

  // ---- ipBlock partition (ipblock_partition.cc) ----
  std::map<Prefix, std::vector<RuleId>> partition;
  std::map<Prefix, ClassId> partitionClass;
  std::array<std::vector<int>, 2> partitionLens;  // [v4, v6], descending

  // ---- class interning (class_interning.cc) ----
  std::map<Signature, ClassInfo> sigs;
  std::map<ClassId, const Signature*> classSig;
  std::map<RuleId, std::set<ClassId>> ruleClasses;  // classes whose sel or ip holds the rule
  std::set<ClassId> hostClasses;                    // Kind::Host classes (not kHostClass)
  IdAllocator<ClassId> classIdAlloc{kFirstDynamicClass};

  State state;
  UpdateStats stats;

  // ---- per-update scratch ----
  std::set<EndpointId> dirtyEndpoints;
  std::set<std::pair<std::string, int>> touchedSel;  // (policy, dir) whose selection changed
  std::set<IpAddr> dirtyAddrs;
  std::set<Group*> dirtyGroupsFull;
  std::set<RuleId> changedRules;
  std::set<RuleId> ruleIdsTouched;
  bool partitionDirty = false;
  std::set<Group*> deadGroups;
  std::set<std::string> auditNsDirty;  // namespaces whose audited policies changed

  Diff update(const model::Cluster& cluster, const NodeContext& nodeIn);
  Diff update(const ChangeSet& changes);
  // The stages after change detection, shared by both kinds of update.
  void beginUpdate();
  Diff finishUpdate(const NodeContext& nodeIn, const std::set<std::string>& changedPodKeys,
                    const OldPolicies& oldPolicies, std::chrono::steady_clock::time_point start);

  // change_detection.cc
  void detectNamespaces(const model::Cluster& cluster);
  void detectPods(const model::Cluster& cluster, std::set<std::string>& changedPodKeys);
  void detectPolicies(const model::Cluster& cluster, OldPolicies& oldPolicies);
  // The same from a change set: only the objects it names.
  void applyNamespaceChanges(const ChangeSet& changes);
  void applyPodChanges(const ChangeSet& changes, std::set<std::string>& changedPodKeys);
  void applyPolicyChanges(const ChangeSet& changes, OldPolicies& oldPolicies);
  void namespaceChanged(const std::string& name);
  void upsertPod(const Pod& pod, PodSnap* snap, std::set<std::string>& changedPodKeys);
  void upsertPolicy(const NetworkPolicy& pol, OldPolicies& oldPolicies);
  void deletePolicy(std::map<std::string, NetworkPolicy>::iterator it, OldPolicies& oldPolicies);
  void upsertAudited(const NetworkPolicy& pol);
  void deleteAudited(const std::string& key);

  // endpoint_selection.cc
  void refreshEndpoints(const NodeContext& nodeIn, const std::set<std::string>& changedPodKeys,
                        const OldPolicies& oldPolicies);
  void setSelected(EndpointId ep, const std::string& policy, Direction d, bool on);
  bool selects(const NetworkPolicy& pol, const EndpointView& ev, Direction d) const;
  // EndpointView::audited of the endpoints that changed or whose namespace's audited policies
  // did; marks those whose flag moved dirty.
  void refreshAudited();

  // rule_table.cc
  void updateRules(const OldPolicies& oldPolicies);

  // label_groups.cc
  const Labels& nsLabels(const std::string& ns);
  Group* acquireGroup(const Pod& pod);
  void releaseGroup(Group* g);
  bool selectorMatches(const NetworkPolicy& pol, const model::Peer& peer, const Group& g);
  bool groupMatches(const RuleInfo& info, const Group& g);
  std::vector<NamedRes> resolutions(const Group& g);
  void markGroupAddrs(const Group& g);
  void updateGroups();

  // address_claims.cc
  void addClaim(const IpAddr& ip, ClaimKey key, Group* g);
  void removeClaim(const IpAddr& ip, const ClaimKey& key);
  void claimPod(const Pod& pod);
  void unclaimPod(const Pod& pod);

  // ipblock_partition.cc
  const std::vector<RuleId>& lpmIpSet(const IpAddr& a);
  void updatePartition(PendingPrefixes& pendingPrefixes);

  // class_interning.cc
  void updateClasses(PendingPrefixes& pendingPrefixes, Diff& diff);

  // allow_sets.cc
  EndpointPolicy buildEndpoint(const EndpointView& ev);

  // endpoint_diffs.cc
  void emitEndpointChanges(Diff& diff);
  void emitRuleChanges(Diff& diff);
};

}  // namespace sluice::compiler
