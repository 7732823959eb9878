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
#include "policyd/compiler/compiler.h"

#include <algorithm>
#include <array>
#include <iterator>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <variant>

#include "policyd/engine/selection.h"

namespace sluice::compiler {

namespace {

using engine::rulesOf;
using model::Labels;
using model::NetworkPolicy;
using model::Pod;
using model::Protocol;

constexpr int kDirs = 2;
int dirIndex(Direction d) { return static_cast<int>(d); }

struct NamedRes {
  std::string name;
  Protocol protocol = Protocol::TCP;
  uint16_t port = 0;
  auto operator<=>(const NamedRes&) const = default;
};

enum class Kind : uint8_t { Address = 0, HostPrimary = 1, Host = 2 };

struct Signature {
  Kind kind = Kind::Address;
  std::vector<RuleId> sel;  // sorted
  std::vector<RuleId> ip;   // sorted
  std::vector<NamedRes> res;
  auto operator<=>(const Signature&) const = default;
};

bool contains(const std::vector<RuleId>& v, RuleId r) {
  return std::binary_search(v.begin(), v.end(), r);
}

// ---- model comparisons (by content; Origin is ignored) ----

bool samePortSpec(const model::PortSpec& a, const model::PortSpec& b) {
  return a.protocol == b.protocol && a.port == b.port && a.endPort == b.endPort;
}

bool samePeer(const model::Peer& a, const model::Peer& b) {
  if (a.podSelector != b.podSelector || a.namespaceSelector != b.namespaceSelector) return false;
  if (a.ipBlock.has_value() != b.ipBlock.has_value()) return false;
  return !a.ipBlock ||
         (a.ipBlock->cidr == b.ipBlock->cidr && a.ipBlock->except == b.ipBlock->except);
}

bool sameRule(const model::Rule& a, const model::Rule& b) {
  return std::equal(a.peers.begin(), a.peers.end(), b.peers.begin(), b.peers.end(), samePeer) &&
         std::equal(a.ports.begin(), a.ports.end(), b.ports.begin(), b.ports.end(), samePortSpec);
}

bool samePolicy(const NetworkPolicy& a, const NetworkPolicy& b) {
  return a.podSelector == b.podSelector && a.affectsIngress == b.affectsIngress &&
         a.affectsEgress == b.affectsEgress &&
         std::equal(a.ingress.begin(), a.ingress.end(), b.ingress.begin(), b.ingress.end(),
                    sameRule) &&
         std::equal(a.egress.begin(), a.egress.end(), b.egress.begin(), b.egress.end(), sameRule);
}

bool samePorts(const std::vector<model::ContainerPort>& a,
               const std::vector<model::ContainerPort>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.name == y.name && x.port == y.port && x.protocol == y.protocol;
  });
}

bool samePod(const Pod& a, const Pod& b) {
  return a.labels == b.labels && a.ips == b.ips && a.hostNetwork == b.hostNetwork &&
         samePorts(a.ports, b.ports);
}

bool hasIpBlock(const model::Rule& r) {
  return std::any_of(r.peers.begin(), r.peers.end(), [](const auto& p) { return p.ipBlock; });
}

// ---- label groups ----

struct GroupKey {
  std::string ns;
  Labels labels;
  std::vector<std::tuple<std::string, uint8_t, uint16_t>> ports;  // in pod order
  auto operator<=>(const GroupKey&) const = default;
};

GroupKey groupKeyOf(const Pod& pod) {
  GroupKey k{pod.namespace_, pod.labels, {}};
  for (const auto& cp : pod.ports) {
    k.ports.emplace_back(cp.name, static_cast<uint8_t>(cp.protocol), cp.port);
  }
  return k;
}

// Pods that no selector and no named port can tell apart.
struct Group {
  Pod pod;  // a representative: namespace, labels and container ports only
  size_t claims = 0;
  std::vector<RuleId> sel;
  std::vector<NamedRes> res;
  std::set<IpAddr> owned;  // addresses this group is the owner of
};

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
};

// Partition prefixes whose class is to be recomputed: the new signature, or none.
using PendingPrefixes = std::map<Prefix, std::optional<Signature>>;

struct ClassInfo {
  ClassId id = 0;
  size_t refs = 0;
};

}  // namespace

struct Compiler::Impl {
  // Inputs as last seen.
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
  NodeContext node;
  bool first = true;

  // Derived.
  std::map<EndpointId, EndpointView> endpoints;
  std::map<std::string, std::set<EndpointId>> endpointsByNs;
  std::map<std::string, std::array<std::set<EndpointId>, kDirs>> policySel;
  std::map<std::string, std::array<bool, kDirs>> relevant;
  std::map<RuleOrigin, RuleId> ruleIds;
  std::map<RuleId, RuleInfo> rules;
  std::vector<RuleId> freeRuleIds, quarantinedRuleIds;
  RuleId nextRuleId = 0;

  std::map<GroupKey, std::unique_ptr<Group>> groups;
  std::map<std::string, std::set<Group*>> groupsByNs;
  std::unordered_map<IpAddr, AddrEntry> addrs;

  std::map<Prefix, std::vector<RuleId>> partition;
  std::map<Prefix, ClassId> partitionClass;
  std::array<std::vector<int>, 2> partitionLens;  // [v4, v6], descending

  std::map<Signature, ClassInfo> sigs;
  std::map<ClassId, const Signature*> classSig;
  std::map<RuleId, std::set<ClassId>> ruleClasses;  // classes whose sel or ip holds the rule
  std::set<ClassId> hostClasses;                    // Kind::Host classes (not kHostClass)
  std::vector<ClassId> freeClassIds, quarantinedClassIds;
  ClassId nextClassId = kFirstDynamicClass;

  State state;
  UpdateStats stats;

  // Per-update scratch.
  std::set<EndpointId> dirtyEndpoints;
  std::set<std::pair<std::string, int>> touchedSel;  // (policy, dir) whose selection changed
  std::set<IpAddr> dirtyAddrs;
  std::set<Group*> dirtyGroupsFull;
  std::set<RuleId> changedRules;
  std::set<RuleId> ruleIdsTouched;
  bool partitionDirty = false;
  std::set<Group*> deadGroups;

  // ---- helpers ----

  const Labels& nsLabels(const std::string& ns) {
    auto it = namespaces.find(ns);
    if (it != namespaces.end()) return it->second;
    // The API server sets kubernetes.io/metadata.name on every namespace; a namespace whose
    // object we have not seen yet still carries it.
    static thread_local Labels implicit;
    implicit = Labels{{"kubernetes.io/metadata.name", ns}};
    return implicit;
  }

  Group* acquireGroup(const Pod& pod) {
    GroupKey key = groupKeyOf(pod);
    auto it = groups.find(key);
    if (it == groups.end()) {
      auto g = std::make_unique<Group>();
      g->pod.namespace_ = pod.namespace_;
      g->pod.labels = pod.labels;
      g->pod.ports = pod.ports;
      it = groups.emplace(std::move(key), std::move(g)).first;
      groupsByNs[pod.namespace_].insert(it->second.get());
      dirtyGroupsFull.insert(it->second.get());
    }
    it->second->claims++;
    return it->second.get();
  }

  void releaseGroup(Group* g) {
    if (--g->claims == 0) deadGroups.insert(g);
  }

  void addClaim(const IpAddr& ip, ClaimKey key, Group* g) {
    addrs[ip].claims[std::move(key)] = g;
    dirtyAddrs.insert(ip);
  }

  void removeClaim(const IpAddr& ip, const ClaimKey& key) {
    auto it = addrs.find(ip);
    if (it == addrs.end()) return;
    it->second.claims.erase(key);
    dirtyAddrs.insert(ip);
  }

  // Pod claims: the pod's status addresses, unless the pod shares the node's network namespace
  // ("hostNetwork pods are not policy endpoints"; their addresses are the node's).
  void claimPod(const Pod& pod) {
    if (pod.hostNetwork || pod.ips.empty()) return;
    Group* g = acquireGroup(pod);
    for (const auto& ip : pod.ips) addClaim(ip, {2, pod.key()}, g);
  }
  void unclaimPod(const Pod& pod) {
    if (pod.hostNetwork || pod.ips.empty()) return;
    Group* g = groups.at(groupKeyOf(pod)).get();
    for (const auto& ip : pod.ips) removeClaim(ip, {2, pod.key()});
    releaseGroup(g);
  }

  void setSelected(EndpointId ep, const std::string& policy, Direction d, bool on) {
    auto& epSet = endpoints.at(ep).selecting[dirIndex(d)];
    auto& polSet = policySel[policy][dirIndex(d)];
    bool changed = on ? epSet.insert(policy).second : epSet.erase(policy) > 0;
    if (on) {
      polSet.insert(ep);
    } else {
      polSet.erase(ep);
    }
    if (changed) {
      dirtyEndpoints.insert(ep);
      touchedSel.emplace(policy, dirIndex(d));
    }
  }

  // "isolated for ingress/egress once any policy in its namespace selects it and lists the
  // direction in policyTypes"; hostNetwork pods are not endpoints.
  bool selects(const NetworkPolicy& pol, const EndpointView& ev, Direction d) const {
    return engine::selects(pol, ev.pod, d);
  }

  // A selector peer against a label group (ipBlocks are classified by the partition).
  bool selectorMatches(const NetworkPolicy& pol, const model::Peer& peer, const Group& g) {
    return engine::peerSelectsPod(pol, peer, g.pod.namespace_, g.pod.labels,
                                  nsLabels(g.pod.namespace_));
  }

  bool groupMatches(const RuleInfo& info, const Group& g) {
    const model::Rule& rule = *info.rule;
    if (rule.peers.empty()) {
      // A rule without peers is a kAnyPeer entry; only its egress named ports need per-class
      // entries, since they resolve per destination pod.
      if (info.origin.direction != Direction::Egress) return false;
      for (const auto& ps : rule.ports) {
        if (const auto* name = std::get_if<std::string>(&ps.port)) {
          if (engine::resolveNamedPort(g.pod, *name, ps.protocol)) return true;
        }
      }
      return false;
    }
    for (const auto& peer : rule.peers) {
      if (selectorMatches(*info.policy, peer, g)) return true;
    }
    return false;
  }

  // Resolutions of the egress named ports of the rules in sel.
  std::vector<NamedRes> resolutions(const Group& g) {
    std::set<NamedRes> out;
    for (RuleId r : g.sel) {
      const RuleInfo& info = rules.at(r);
      if (info.origin.direction != Direction::Egress) continue;
      for (const auto& ps : info.rule->ports) {
        if (const auto* name = std::get_if<std::string>(&ps.port)) {
          if (auto p = engine::resolveNamedPort(g.pod, *name, ps.protocol)) {
            out.insert(NamedRes{*name, ps.protocol, *p});
          }
        }
      }
    }
    return {out.begin(), out.end()};
  }

  void markGroupAddrs(const Group& g) { dirtyAddrs.insert(g.owned.begin(), g.owned.end()); }

  RuleId allocRuleId() {
    if (!freeRuleIds.empty()) {
      RuleId id = freeRuleIds.back();
      freeRuleIds.pop_back();
      return id;
    }
    return nextRuleId++;
  }

  ClassId allocClassId() {
    if (!freeClassIds.empty()) {
      ClassId id = freeClassIds.back();
      freeClassIds.pop_back();
      return id;
    }
    return nextClassId++;
  }

  const std::vector<RuleId>& lpmIpSet(const IpAddr& a) {
    for (int len : partitionLens[a.isV4() ? 0 : 1]) {
      auto it = partition.find(Prefix(a, len));
      if (it != partition.end()) return it->second;
    }
    static const std::vector<RuleId> kNone;
    return kNone;  // unreachable: 0.0.0.0/0 and ::/0 are always in the partition
  }

  Diff update(const model::Cluster& cluster, const NodeContext& nodeIn);
  void detectNamespaces(const model::Cluster& cluster);
  void detectPods(const model::Cluster& cluster, std::set<std::string>& changedPodKeys);
  void detectPolicies(const model::Cluster& cluster,
                      std::map<std::string, std::optional<NetworkPolicy>>& oldPolicies);
  void refreshEndpoints(const NodeContext& nodeIn, const std::set<std::string>& changedPodKeys,
                        const std::map<std::string, std::optional<NetworkPolicy>>& oldPolicies);
  void updateRules(const std::map<std::string, std::optional<NetworkPolicy>>& oldPolicies);
  void updateGroups();
  void updatePartition(PendingPrefixes& pendingPrefixes);
  void updateClasses(PendingPrefixes& pendingPrefixes, Diff& diff);
  EndpointPolicy buildEndpoint(const EndpointView& ev);
};

void Compiler::Impl::detectNamespaces(const model::Cluster& cluster) {
  std::map<std::string, Labels, std::less<>> next;
  for (const auto& ns : cluster.namespaces) next.emplace(ns.name, ns.labels);
  std::set<std::string> changed;
  for (const auto& [name, labels] : next) {
    auto it = namespaces.find(name);
    if (it == namespaces.end() || it->second != labels) changed.insert(name);
  }
  for (const auto& [name, labels] : namespaces) {
    if (!next.contains(name)) changed.insert(name);
  }
  namespaces = std::move(next);
  // Namespace labels only feed namespaceSelectors: re-match the groups of the namespace.
  for (const auto& name : changed) {
    auto it = groupsByNs.find(name);
    if (it == groupsByNs.end()) continue;
    dirtyGroupsFull.insert(it->second.begin(), it->second.end());
  }
}

void Compiler::Impl::detectPods(const model::Cluster& cluster,
                                std::set<std::string>& changedPodKeys) {
  ++generation;
  std::vector<PodSnap*> order;
  order.reserve(cluster.pods.size());
  size_t seen = 0;
  std::string key;
  for (size_t i = 0; i < cluster.pods.size(); ++i) {
    const Pod& pod = cluster.pods[i];
    PodSnap* snap = nullptr;
    if (i < podOrder.size() && podOrder[i] && podOrder[i]->pod.name == pod.name &&
        podOrder[i]->pod.namespace_ == pod.namespace_) {
      snap = podOrder[i];
    } else {
      key.assign(pod.namespace_).append("/").append(pod.name);
      auto it = pods.find(key);
      if (it != pods.end()) snap = &it->second;
    }
    if (snap && snap->seen == generation) {  // duplicate key: the first wins
      order.push_back(nullptr);
      continue;
    }
    ++seen;
    if (snap && samePod(snap->pod, pod)) {
      snap->seen = generation;
      order.push_back(snap);
      continue;
    }
    if (snap) {
      unclaimPod(snap->pod);
      snap->pod = pod;
    } else {
      snap = &pods.emplace(pod.key(), PodSnap{pod, 0}).first->second;
    }
    snap->seen = generation;
    claimPod(snap->pod);
    changedPodKeys.insert(pod.key());
    order.push_back(snap);
  }
  if (seen != pods.size()) {
    for (auto it = pods.begin(); it != pods.end();) {
      if (it->second.seen == generation) {
        ++it;
        continue;
      }
      unclaimPod(it->second.pod);
      changedPodKeys.insert(it->first);
      it = pods.erase(it);
    }
  }
  podOrder = std::move(order);
}

void Compiler::Impl::detectPolicies(
    const model::Cluster& cluster,
    std::map<std::string, std::optional<NetworkPolicy>>& oldPolicies) {
  std::set<std::string> seen;
  for (const auto& pol : cluster.policies) {
    std::string key = pol.key();
    if (!seen.insert(key).second) continue;
    auto it = policies.find(key);
    if (it != policies.end() && samePolicy(it->second, pol)) continue;
    if (it != policies.end()) {
      oldPolicies.emplace(key, std::move(it->second));
      it->second = pol;
    } else {
      oldPolicies.emplace(key, std::nullopt);
      policies.emplace(key, pol);
      policiesByNs[pol.namespace_].insert(key);
    }
  }
  for (auto it = policies.begin(); it != policies.end();) {
    if (seen.contains(it->first)) {
      ++it;
      continue;
    }
    policiesByNs[it->second.namespace_].erase(it->first);
    oldPolicies.emplace(it->first, std::move(it->second));
    it = policies.erase(it);
  }
}

void Compiler::Impl::refreshEndpoints(
    const NodeContext& nodeIn, const std::set<std::string>& changedPodKeys,
    const std::map<std::string, std::optional<NetworkPolicy>>& oldPolicies) {
  std::map<EndpointId, const LocalEndpoint*> next;
  for (const auto& ep : nodeIn.endpoints) next.emplace(ep.id, &ep);

  auto dropEndpoint = [&](EndpointId id) {
    EndpointView& ev = endpoints.at(id);
    for (int d = 0; d < kDirs; ++d) {
      for (const auto& pol : std::set<std::string>(ev.selecting[d])) {
        setSelected(id, pol, static_cast<Direction>(d), false);
      }
    }
    if (ev.group) {
      for (const auto& ip : ev.ep.ips) removeClaim(ip, {1, std::to_string(id)});
      releaseGroup(ev.group);
      ev.group = nullptr;
    }
    endpointsByNs[ev.pod.namespace_].erase(id);
  };

  std::set<EndpointId> refresh;
  for (auto it = endpoints.begin(); it != endpoints.end();) {
    auto n = next.find(it->first);
    if (n == next.end()) {
      dropEndpoint(it->first);
      dirtyEndpoints.insert(it->first);
      it = endpoints.erase(it);
      continue;
    }
    const std::string key = it->second.ep.podNamespace + "/" + it->second.ep.podName;
    if (!(it->second.ep == *n->second) || changedPodKeys.contains(key)) refresh.insert(it->first);
    ++it;
  }
  for (const auto& [id, ep] : next) {
    if (!endpoints.contains(id)) refresh.insert(id);
  }

  for (EndpointId id : refresh) {
    if (endpoints.contains(id)) dropEndpoint(id);
    EndpointView& ev = endpoints[id];
    ev.ep = *next.at(id);
    auto pit = pods.find(ev.ep.podNamespace + "/" + ev.ep.podName);
    if (pit != pods.end()) {
      ev.pod = pit->second.pod;
    } else {
      // Not in the model yet (the CNI registers before the informer sees the pod): a pod with
      // no labels in its namespace, so policies selecting every pod of the namespace (default
      // deny) already isolate it.
      ev.pod = Pod{};
      ev.pod.namespace_ = ev.ep.podNamespace;
      ev.pod.name = ev.ep.podName;
    }
    endpointsByNs[ev.pod.namespace_].insert(id);
    dirtyEndpoints.insert(id);
    if (!ev.pod.hostNetwork) {
      ev.group = acquireGroup(ev.pod);
      for (const auto& ip : ev.ep.ips) addClaim(ip, {1, std::to_string(id)}, ev.group);
    }
    auto nsIt = policiesByNs.find(ev.pod.namespace_);
    if (nsIt == policiesByNs.end()) continue;
    for (const auto& key : nsIt->second) {
      const NetworkPolicy& pol = policies.at(key);
      for (int d = 0; d < kDirs; ++d) {
        if (selects(pol, ev, static_cast<Direction>(d))) {
          setSelected(id, key, static_cast<Direction>(d), true);
        }
      }
    }
  }

  // Changed policies re-select the endpoints of their namespace.
  for (const auto& [key, old] : oldPolicies) {
    auto pit = policies.find(key);
    for (int d = 0; d < kDirs; ++d) {
      auto& sel = policySel[key][d];
      std::set<EndpointId> want;
      if (pit != policies.end()) {
        auto eit = endpointsByNs.find(pit->second.namespace_);
        if (eit != endpointsByNs.end()) {
          for (EndpointId id : eit->second) {
            if (selects(pit->second, endpoints.at(id), static_cast<Direction>(d))) want.insert(id);
          }
        }
      }
      for (EndpointId id : std::set<EndpointId>(sel)) {
        if (!want.contains(id)) setSelected(id, key, static_cast<Direction>(d), false);
      }
      for (EndpointId id : want) setSelected(id, key, static_cast<Direction>(d), true);
      // Same selection, new rules: the endpoints' allow sets change all the same.
      dirtyEndpoints.insert(want.begin(), want.end());
    }
  }

  // Host addresses: few, so re-claimed on every update (their class depends on hostAddresses[0]).
  for (const auto& ip : node.hostAddresses) removeClaim(ip, {0, ""});
  for (const auto& ip : nodeIn.hostAddresses) addClaim(ip, {0, ""}, nullptr);
  node = nodeIn;
}

void Compiler::Impl::updateRules(
    const std::map<std::string, std::optional<NetworkPolicy>>& oldPolicies) {
  std::set<std::string> touched;
  for (const auto& [key, old] : oldPolicies) touched.insert(key);
  for (const auto& [key, d] : touchedSel) touched.insert(key);

  for (const auto& key : touched) {
    auto pit = policies.find(key);
    const NetworkPolicy* now = pit == policies.end() ? nullptr : &pit->second;
    auto oit = oldPolicies.find(key);
    const bool changed = oit != oldPolicies.end();
    const NetworkPolicy* before = changed ? (oit->second ? &*oit->second : nullptr) : now;
    auto& rel = relevant[key];
    for (int d = 0; d < kDirs; ++d) {
      const Direction dir = static_cast<Direction>(d);
      const bool oldRel = rel[d];
      auto sit = policySel.find(key);
      const bool newRel = now && sit != policySel.end() && !sit->second[d].empty();
      rel[d] = newRel;
      if (!oldRel && !newRel) continue;
      const size_t oldN = oldRel && before ? rulesOf(*before, dir).size() : 0;
      const size_t newN = newRel ? rulesOf(*now, dir).size() : 0;
      for (size_t i = 0; i < std::max(oldN, newN); ++i) {
        const bool oldHas = i < oldN, newHas = i < newN;
        RuleOrigin origin{key, dir, static_cast<int>(i)};
        if (oldHas && newHas && !changed) continue;
        if (oldHas && hasIpBlock(rulesOf(*before, dir)[i])) partitionDirty = true;
        if (newHas) {
          auto [it, inserted] = ruleIds.try_emplace(origin, 0);
          if (inserted) {
            it->second = allocRuleId();
            ruleIdsTouched.insert(it->second);
          }
          rules[it->second] = RuleInfo{origin, now, &rulesOf(*now, dir)[i]};
          changedRules.insert(it->second);
          if (hasIpBlock(rulesOf(*now, dir)[i])) partitionDirty = true;
        } else {
          auto it = ruleIds.find(origin);
          RuleId id = it->second;
          ruleIds.erase(it);
          rules.erase(id);
          quarantinedRuleIds.push_back(id);
          ruleIdsTouched.insert(id);
          changedRules.insert(id);
        }
      }
      if (newRel) {
        // The policy object may have been replaced: refresh pointers of unchanged rules too.
        for (size_t i = 0; i < newN; ++i) {
          RuleId id = ruleIds.at(RuleOrigin{key, dir, static_cast<int>(i)});
          rules[id].policy = now;
          rules[id].rule = &rulesOf(*now, dir)[i];
        }
        // New or changed rules change these endpoints' allow sets.
        if (changed || !oldRel) {
          const auto& eps = policySel[key][d];
          dirtyEndpoints.insert(eps.begin(), eps.end());
        }
      }
    }
    if (!now && pit == policies.end()) {
      policySel.erase(key);
      relevant.erase(key);
    }
  }
}

void Compiler::Impl::updateGroups() {
  // Dead groups first: nothing may match them any more.
  for (Group* g : dirtyGroupsFull) {
    if (g->claims == 0) continue;
    std::vector<RuleId> sel;
    for (const auto& [id, info] : rules) {
      if (groupMatches(info, *g)) sel.push_back(id);
    }
    g->sel = std::move(sel);
    auto res = resolutions(*g);
    g->res = std::move(res);
    markGroupAddrs(*g);
  }
  if (changedRules.empty()) return;
  for (auto& [key, gp] : groups) {
    Group& g = *gp;
    if (g.claims == 0 || dirtyGroupsFull.contains(&g)) continue;
    bool changed = false, resDirty = false;
    for (RuleId r : changedRules) {
      auto it = rules.find(r);
      const bool want = it != rules.end() && groupMatches(it->second, g);
      auto pos = std::lower_bound(g.sel.begin(), g.sel.end(), r);
      const bool have = pos != g.sel.end() && *pos == r;
      if (want && !have) {
        g.sel.insert(pos, r);
        changed = true;
      } else if (!want && have) {
        g.sel.erase(pos);
        changed = true;
      } else if (want) {
        resDirty = true;  // same membership, but the rule's named ports may have changed
      }
    }
    if (changed || resDirty) {
      auto res = resolutions(g);
      if (res != g.res) {
        g.res = std::move(res);
        changed = true;
      }
    }
    if (changed) markGroupAddrs(g);
  }
}

void Compiler::Impl::updatePartition(PendingPrefixes& pendingPrefixes) {
  if (!partitionDirty) return;
  std::map<Prefix, std::vector<RuleId>> next;
  next.emplace(Prefix(IpAddr::v4(0), 0), std::vector<RuleId>{});
  next.emplace(Prefix(IpAddr::v6({}), 0), std::vector<RuleId>{});
  std::vector<std::pair<RuleId, const model::IPBlock*>> blocks;
  for (const auto& [id, info] : rules) {
    for (const auto& peer : info.rule->peers) {
      if (!peer.ipBlock) continue;
      blocks.emplace_back(id, &*peer.ipBlock);
      next.try_emplace(peer.ipBlock->cidr);
      for (const auto& e : peer.ipBlock->except) next.try_emplace(e);
    }
  }
  std::array<std::set<int, std::greater<>>, 2> lens;
  for (auto& [prefix, ip] : next) {
    lens[prefix.family() == Family::V4 ? 0 : 1].insert(prefix.len());
    for (const auto& [id, block] : blocks) {
      // Exact: every except of the block is itself a prefix of the partition.
      if (block->contains(prefix)) ip.push_back(id);
    }
    std::sort(ip.begin(), ip.end());
    ip.erase(std::unique(ip.begin(), ip.end()), ip.end());
  }
  for (const auto& [prefix, ip] : partition) {
    if (!next.contains(prefix)) pendingPrefixes[prefix] = std::nullopt;
  }
  for (const auto& [prefix, ip] : next) {
    auto it = partition.find(prefix);
    if (it == partition.end() || it->second != ip) {
      pendingPrefixes[prefix] = Signature{Kind::Address, {}, ip, {}};
    }
  }
  partition = std::move(next);
  for (int f = 0; f < 2; ++f) partitionLens[f].assign(lens[f].begin(), lens[f].end());
  // Any address may have a new longest match.
  for (const auto& [ip, entry] : addrs) dirtyAddrs.insert(ip);
}

void Compiler::Impl::updateClasses(PendingPrefixes& pendingPrefixes, Diff& diff) {
  // Host addresses are always re-signed (their kind depends on hostAddresses[0]).
  for (const auto& ip : node.hostAddresses) dirtyAddrs.insert(ip);
  const std::vector<RuleId>* primaryIp =
      node.hostAddresses.empty() ? nullptr : &lpmIpSet(node.hostAddresses.front());

  struct PendingAddr {
    IpAddr ip;
    std::optional<Signature> sig;
  };
  std::vector<PendingAddr> pendingAddrs;
  pendingAddrs.reserve(dirtyAddrs.size());
  for (const auto& ip : dirtyAddrs) {
    auto it = addrs.find(ip);
    if (it == addrs.end()) continue;
    AddrEntry& e = it->second;
    Group* owner = nullptr;
    bool host = false, owned = !e.claims.empty();
    if (owned) {
      host = e.claims.begin()->first.first == 0;
      owner = e.claims.begin()->second;
    }
    if (e.owner != owner) {
      if (e.owner) e.owner->owned.erase(ip);
      if (owner) owner->owned.insert(ip);
      e.owner = owner;
    }
    e.host = host;
    std::optional<Signature> sig;
    if (owned) {
      sig.emplace();
      sig->ip = lpmIpSet(ip);
      if (host) {
        sig->kind = (primaryIp && sig->ip == *primaryIp) ? Kind::HostPrimary : Kind::Host;
      } else if (owner) {
        sig->sel = owner->sel;
        sig->res = owner->res;
      }
    }
    pendingAddrs.push_back({ip, std::move(sig)});
  }
  // A full-length partition prefix (an ipBlock of one address) is shadowed by the address's own
  // entry while something claims the address; it only needs a class of its own when nothing
  // does, so no class exists that no address maps to.
  auto shadowCheck = [&](const Prefix& p) {
    if (p.len() != p.addr().bits()) return;
    auto part = partition.find(p);
    auto a = addrs.find(p.addr());
    if (part == partition.end() || (a != addrs.end() && !a->second.claims.empty())) {
      pendingPrefixes[p] = std::nullopt;
    } else {
      pendingPrefixes[p] = Signature{Kind::Address, {}, part->second, {}};
    }
  };
  for (const auto& entry : pendingPrefixes) shadowCheck(entry.first);
  for (const auto& p : pendingAddrs) {
    if (partition.contains(Prefix::host(p.ip))) shadowCheck(Prefix::host(p.ip));
  }
  stats.classesRecomputed = pendingAddrs.size() + pendingPrefixes.size();

  // Two phases, so a class whose members all move keeps its id when another member takes the
  // same signature in this update.
  std::vector<ClassId> released;
  auto release = [&](ClassId id) {
    const Signature* s = classSig.at(id);
    sigs.at(*s).refs--;
    released.push_back(id);
  };
  std::vector<std::pair<ClassId, Signature>> destroyed;
  std::vector<ClassId> created;
  auto destroy = [&](ClassId id) {
    const Signature* s = classSig.at(id);
    destroyed.emplace_back(id, *s);
    classSig.erase(id);
    sigs.erase(*s);
    if (id >= kFirstDynamicClass) quarantinedClassIds.push_back(id);
  };
  auto acquire = [&](const Signature& s) -> ClassId {
    auto it = sigs.find(s);
    if (it != sigs.end()) {
      it->second.refs++;
      return it->second.id;
    }
    ClassId id;
    if (s.kind == Kind::HostPrimary) {
      // Only one signature holds kHostClass: the previous one has no members left, since every
      // host address was released above.
      if (classSig.contains(kHostClass)) destroy(kHostClass);
      id = kHostClass;
    } else if (s.kind == Kind::Address && s.sel.empty() && s.ip.empty() && s.res.empty()) {
      id = kWorldClass;
    } else {
      id = allocClassId();
    }
    it = sigs.emplace(s, ClassInfo{id, 1}).first;
    classSig[id] = &it->first;
    created.push_back(id);
    return id;
  };

  for (const auto& p : pendingAddrs) {
    const AddrEntry& e = addrs.at(p.ip);
    if (e.cls != 0) release(e.cls);
  }
  for (const auto& [prefix, sig] : pendingPrefixes) {
    auto it = partitionClass.find(prefix);
    if (it != partitionClass.end()) release(it->second);
  }
  std::set<Prefix> touchedKeys;
  for (auto& p : pendingAddrs) {
    AddrEntry& e = addrs.at(p.ip);
    e.cls = p.sig ? acquire(*p.sig) : 0;
    e.owned = p.sig.has_value();
    touchedKeys.insert(Prefix::host(p.ip));
  }
  for (auto& [prefix, sig] : pendingPrefixes) {
    if (sig) {
      partitionClass[prefix] = acquire(*sig);
    } else {
      partitionClass.erase(prefix);
    }
    touchedKeys.insert(prefix);
  }
  for (ClassId id : released) {
    if (!classSig.contains(id)) continue;  // already destroyed (kHostClass handover)
    if (sigs.at(*classSig.at(id)).refs == 0) destroy(id);
  }
  // Addresses nobody claims any more.
  for (const auto& p : pendingAddrs) {
    auto it = addrs.find(p.ip);
    if (it != addrs.end() && it->second.claims.empty()) addrs.erase(it);
  }

  // The class map: an address's own entry beats a partition prefix of the same length.
  for (const Prefix& key : touchedKeys) {
    std::optional<ClassId> want;
    if (key.len() == key.addr().bits()) {
      auto it = addrs.find(key.addr());
      if (it != addrs.end() && it->second.owned) want = it->second.cls;
    }
    if (!want) {
      auto it = partitionClass.find(key);
      if (it != partitionClass.end()) want = it->second;
    }
    auto cur = state.classes.find(key);
    if (want) {
      if (cur == state.classes.end() || cur->second != *want) {
        state.classes[key] = *want;
        diff.classesUpsert[key] = *want;
      }
    } else if (cur != state.classes.end()) {
      state.classes.erase(cur);
      diff.classesRemove.push_back(key);
    }
  }

  // Classes that appeared or disappeared change the allow sets of the endpoints whose rules
  // name them.
  auto markRules = [&](const Signature& s) {
    for (const auto* v : {&s.sel, &s.ip}) {
      for (RuleId r : *v) {
        auto it = rules.find(r);
        if (it == rules.end()) continue;  // freed: its endpoints are dirty already
        const auto& eps =
            policySel[it->second.origin.policy][dirIndex(it->second.origin.direction)];
        dirtyEndpoints.insert(eps.begin(), eps.end());
      }
    }
    if (s.kind == Kind::Host) {
      for (const auto& [id, ev] : endpoints) dirtyEndpoints.insert(id);
    }
  };
  for (const auto& [id, s] : destroyed) {
    for (const auto* v : {&s.sel, &s.ip}) {
      for (RuleId r : *v) {
        auto it = ruleClasses.find(r);
        if (it == ruleClasses.end()) continue;
        it->second.erase(id);
        if (it->second.empty()) ruleClasses.erase(it);
      }
    }
    if (s.kind == Kind::Host) hostClasses.erase(id);
    markRules(s);
  }
  for (ClassId id : created) {
    if (!classSig.contains(id)) continue;  // created and destroyed again (kHostClass)
    const Signature& s = *classSig.at(id);
    for (const auto* v : {&s.sel, &s.ip}) {
      for (RuleId r : *v) ruleClasses[r].insert(id);
    }
    if (s.kind == Kind::Host) hostClasses.insert(id);
    markRules(s);
  }
}

EndpointPolicy Compiler::Impl::buildEndpoint(const EndpointView& ev) {
  EndpointPolicy out;
  out.ingressIsolated = !ev.selecting[0].empty();
  out.egressIsolated = !ev.selecting[1].empty();
  for (int d = 0; d < kDirs; ++d) {
    const Direction dir = static_cast<Direction>(d);
    for (const auto& key : ev.selecting[d]) {
      const NetworkPolicy& pol = policies.at(key);
      const auto& list = rulesOf(pol, dir);
      for (size_t i = 0; i < list.size(); ++i) {
        const model::Rule& rule = list[i];
        const RuleId rid = ruleIds.at(RuleOrigin{key, dir, static_cast<int>(i)});
        // Numeric (or protocol-only) ports; ingress named ports resolve here, against the
        // endpoint's own pod: "the port on the pods selected by this policy".
        std::vector<std::pair<uint8_t, PortRange>> numeric;
        std::vector<std::pair<std::string, Protocol>> named;
        for (const auto& ps : rule.ports) {
          const auto proto = static_cast<uint8_t>(ps.protocol);
          if (const auto* n = std::get_if<uint16_t>(&ps.port)) {
            numeric.emplace_back(proto, PortRange{*n, ps.endPort.value_or(*n)});
          } else if (const auto* name = std::get_if<std::string>(&ps.port)) {
            if (dir == Direction::Ingress) {
              if (auto p = engine::resolveNamedPort(ev.pod, *name, ps.protocol)) {
                numeric.emplace_back(proto, PortRange{*p, *p});
              }
            } else {
              named.emplace_back(*name, ps.protocol);
            }
          } else {
            numeric.emplace_back(proto, PortRange{});
          }
        }
        auto emit = [&](ClassId peer) {
          if (rule.ports.empty()) {
            // "If this field is empty or missing, this rule matches all ports."
            out.entries.insert(AllowEntry{dir, peer, kAnyProtocol, PortRange{}, rid});
            return;
          }
          for (const auto& [proto, range] : numeric) {
            out.entries.insert(AllowEntry{dir, peer, proto, range, rid});
          }
        };
        auto emitNamed = [&](ClassId peer, const Signature& s) {
          for (const auto& [name, proto] : named) {
            auto it = std::lower_bound(s.res.begin(), s.res.end(), NamedRes{name, proto, 0});
            if (it != s.res.end() && it->name == name && it->protocol == proto) {
              out.entries.insert(AllowEntry{dir, peer, static_cast<uint8_t>(proto),
                                            PortRange{it->port, it->port}, rid});
            }
          }
        };
        auto cit = ruleClasses.find(rid);
        if (rule.peers.empty()) {
          // "If this field is empty or missing, this rule matches all sources/destinations."
          emit(kAnyPeer);
          if (!named.empty() && cit != ruleClasses.end()) {
            for (ClassId c : cit->second) emitNamed(c, *classSig.at(c));
          }
          continue;
        }
        if (cit == ruleClasses.end()) continue;
        for (ClassId c : cit->second) {
          const Signature& s = *classSig.at(c);
          emit(c);
          // A named port resolves against the destination pod, so it never matches an address
          // that only an ipBlock peer admitted.
          if (!named.empty() && contains(s.sel, rid)) emitNamed(c, s);
        }
      }
    }
  }
  if (out.ingressIsolated) {
    for (ClassId h : hostClasses) {
      out.entries.insert(AllowEntry{Direction::Ingress, h, kAnyProtocol, PortRange{}, kHostRule});
    }
  }
  return out;
}

Diff Compiler::Impl::update(const model::Cluster& cluster, const NodeContext& nodeIn) {
  const auto start = std::chrono::steady_clock::now();
  freeRuleIds.insert(freeRuleIds.end(), quarantinedRuleIds.begin(), quarantinedRuleIds.end());
  quarantinedRuleIds.clear();
  // Lowest ids first, so tables stay dense.
  std::sort(freeRuleIds.begin(), freeRuleIds.end(), std::greater<>());
  freeClassIds.insert(freeClassIds.end(), quarantinedClassIds.begin(), quarantinedClassIds.end());
  quarantinedClassIds.clear();
  std::sort(freeClassIds.begin(), freeClassIds.end(), std::greater<>());
  dirtyEndpoints.clear();
  touchedSel.clear();
  dirtyAddrs.clear();
  dirtyGroupsFull.clear();
  changedRules.clear();
  ruleIdsTouched.clear();
  deadGroups.clear();
  partitionDirty = first;

  Diff diff;
  std::set<std::string> changedPodKeys;
  std::map<std::string, std::optional<NetworkPolicy>> oldPolicies;
  detectNamespaces(cluster);
  detectPods(cluster, changedPodKeys);
  detectPolicies(cluster, oldPolicies);
  refreshEndpoints(nodeIn, changedPodKeys, oldPolicies);
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

  static const EndpointPolicy kEmpty;
  for (EndpointId id : dirtyEndpoints) {
    auto eit = endpoints.find(id);
    auto sit = state.endpoints.find(id);
    if (eit == endpoints.end()) {
      if (sit == state.endpoints.end()) continue;
      Diff::EndpointChange c;
      c.endpoint = id;
      c.removed = true;
      c.remove.assign(sit->second.entries.begin(), sit->second.entries.end());
      diff.endpoints.push_back(std::move(c));
      state.endpoints.erase(sit);
      continue;
    }
    EndpointPolicy next = buildEndpoint(eit->second);
    const bool existed = sit != state.endpoints.end();
    const EndpointPolicy& old = existed ? sit->second : kEmpty;
    if (existed && old == next) continue;
    Diff::EndpointChange c;
    c.endpoint = id;
    c.ingressIsolated = next.ingressIsolated;
    c.egressIsolated = next.egressIsolated;
    std::set_difference(next.entries.begin(), next.entries.end(), old.entries.begin(),
                        old.entries.end(), std::back_inserter(c.add));
    std::set_difference(old.entries.begin(), old.entries.end(), next.entries.begin(),
                        next.entries.end(), std::back_inserter(c.remove));
    diff.endpoints.push_back(std::move(c));
    state.endpoints[id] = std::move(next);
  }

  for (RuleId id : ruleIdsTouched) {
    if (id >= state.rules.size()) state.rules.resize(id + 1);
    auto it = rules.find(id);
    RuleOrigin origin = it == rules.end() ? RuleOrigin{} : it->second.origin;
    if (state.rules[id] != origin) {
      state.rules[id] = origin;
      diff.rulesUpsert.emplace_back(id, origin);
    }
  }
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

const State& Compiler::state() const { return impl_->state; }
const UpdateStats& Compiler::lastStats() const { return impl_->stats; }

}  // namespace sluice::compiler
