#include "policyd/ctl/lint.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "policyd/ctl/describe.h"

namespace sluice::ctl {

using engine::affects;
using engine::Direction;
using engine::kDirections;
using engine::rulesOf;
using model::NetworkPolicy;
using model::Peer;
using model::Pod;
using model::PortSpec;
using model::Protocol;
using model::Rule;

namespace {

constexpr uint16_t kDnsPort = 53;
constexpr size_t kExamples = 3;  // pods named in a message before "and N more"

std::string podList(const std::vector<const Pod*>& pods) {
  std::string s;
  for (size_t i = 0; i < pods.size() && i < kExamples; ++i) s += (i ? ", " : "") + pods[i]->key();
  if (pods.size() > kExamples) s += " and " + std::to_string(pods.size() - kExamples) + " more";
  return s;
}

// Sorted policies, so findings come out in a stable order.
std::vector<const NetworkPolicy*> sortedPolicies(const model::Cluster& c) {
  std::vector<const NetworkPolicy*> out;
  for (const auto& p : c.policies) out.push_back(&p);
  std::sort(out.begin(), out.end(), [](const NetworkPolicy* a, const NetworkPolicy* b) {
    return a->namespace_ != b->namespace_ ? a->namespace_ < b->namespace_ : a->name < b->name;
  });
  return out;
}

}  // namespace

LintContext::LintContext(const engine::Evaluator& ev) : ev_(ev) {
  std::set<std::string> names;
  for (const auto& ns : cluster().namespaces) names.insert(ns.name);
  for (const auto& pod : cluster().pods) {
    names.insert(pod.namespace_);
    if (pod.hostNetwork) continue;
    podsByNs_[pod.namespace_].push_back(&pod);
    for (const auto& ip : pod.ips) addrs_.emplace_back(ip, &pod);
    for (const auto& cp : pod.ports) {
      if (cp.port == kDnsPort && !cp.name.empty()) dnsNames_.emplace(cp.name, cp.protocol);
    }
  }
  namespaces_.assign(names.begin(), names.end());
  for (auto& [ns, pods] : podsByNs_) {
    std::sort(pods.begin(), pods.end(),
              [](const Pod* a, const Pod* b) { return a->name < b->name; });
  }
  std::sort(addrs_.begin(), addrs_.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second->key() < b.second->key();
  });
  for (const auto& pol : cluster().policies) {
    auto& sel = selected_[&pol];
    for (const auto* pod : podsIn(pol.namespace_)) {
      if (engine::podSelectorMatches(pol, *pod)) sel.push_back(pod);
    }
  }
}

const std::vector<const Pod*>& LintContext::podsIn(const std::string& ns) const {
  auto it = podsByNs_.find(ns);
  return it == podsByNs_.end() ? none_ : it->second;
}

const std::vector<const Pod*>& LintContext::selected(const NetworkPolicy& pol) const {
  auto it = selected_.find(&pol);
  return it == selected_.end() ? none_ : it->second;
}

const std::vector<std::string>& LintContext::namespacesMatching(
    const model::LabelSelector& sel) const {
  auto [it, inserted] = nsBySelector_.try_emplace(sel.toString());
  if (inserted) {
    for (const auto& ns : namespaces_) {
      if (sel.matches(ev_.namespaceLabels(ns))) it->second.push_back(ns);
    }
  }
  return it->second;
}

bool LintContext::anyPeerPod(const NetworkPolicy& pol, const Peer& peer,
                             const std::function<bool(const Pod&)>& pred) const {
  if (peer.ipBlock) return false;
  auto visit = [&](const std::string& ns) {
    const model::Labels& nsLabels = ev_.namespaceLabels(ns);
    for (const auto* pod : podsIn(ns)) {
      if (engine::peerSelectsPod(pol, peer, ns, pod->labels, nsLabels) && pred(*pod)) return true;
    }
    return false;
  };
  if (!peer.namespaceSelector) return visit(pol.namespace_);
  for (const auto& ns : namespacesMatching(*peer.namespaceSelector)) {
    if (visit(ns)) return true;
  }
  return false;
}

std::vector<const Pod*> LintContext::peerPods(const NetworkPolicy& pol, const Peer& peer) const {
  std::vector<const Pod*> out;
  (void)anyPeerPod(pol, peer, [&](const Pod& pod) {
    out.push_back(&pod);
    return false;
  });
  return out;
}

bool LintContext::namedPortIsDns(const std::string& name, Protocol protocol) const {
  return dnsNames_.count({name, protocol}) != 0;
}

// --- policy-selects-nothing ---------------------------------------------------------------

void checkPolicySelectsNothing(const LintContext& ctx, std::vector<Finding>& out) {
  for (const auto* pol : sortedPolicies(ctx.cluster())) {
    if (!ctx.selected(*pol).empty()) continue;
    const size_t podCount = ctx.podsIn(pol->namespace_).size();
    std::string msg = "podSelector " + pol->podSelector.toString() + " selects no pod";
    msg += podCount == 0 ? " (namespace " + pol->namespace_ + " has no pods)"
                         : " among the " + std::to_string(podCount) + " pod(s) of namespace " +
                               pol->namespace_;
    out.push_back({kPolicySelectsNothing, pol->key(), "spec.podSelector", msg,
                   "a policy only selects pods in its own namespace; compare the selector with "
                   "`kubectl get pods -n " +
                       pol->namespace_ + " --show-labels`"});
  }
}

// --- peer-selects-nothing -----------------------------------------------------------------

void checkPeerSelectsNothing(const LintContext& ctx, std::vector<Finding>& out) {
  for (const auto* pol : sortedPolicies(ctx.cluster())) {
    for (Direction dir : kDirections) {
      const auto& rules = rulesOf(*pol, dir);
      for (size_t r = 0; r < rules.size(); ++r) {
        for (size_t p = 0; p < rules[r].peers.size(); ++p) {
          const Peer& peer = rules[r].peers[p];
          if (peer.ipBlock) continue;
          const std::string field = peerField(dir, r, p);
          if (peer.namespaceSelector) {
            if (ctx.namespacesMatching(*peer.namespaceSelector).empty()) {
              out.push_back({kPeerSelectsNothing, pol->key(), field + ".namespaceSelector",
                             "namespaceSelector " + peer.namespaceSelector->toString() +
                                 " matches no namespace",
                             "namespaceSelector matches Namespace labels, not names; every "
                             "namespace carries kubernetes.io/metadata.name=<name>"});
              continue;
            }
          }
          if (!peer.podSelector || peer.podSelector->empty()) continue;
          if (ctx.anyPeerPod(*pol, peer, [](const Pod&) { return true; })) continue;
          std::string where = peer.namespaceSelector
                                  ? "the namespaces matching " + peer.namespaceSelector->toString()
                                  : "namespace " + pol->namespace_;
          out.push_back(
              {kPeerSelectsNothing, pol->key(), field + ".podSelector",
               "podSelector " + peer.podSelector->toString() + " matches no pod in " + where,
               peer.namespaceSelector
                   ? "check the pod labels in the selected namespaces"
                   : "without a namespaceSelector, a podSelector peer only selects pods in the "
                     "policy's own namespace; add a namespaceSelector for pods elsewhere"});
        }
      }
    }
  }
}

// --- egress-without-dns -------------------------------------------------------------------

bool ruleAllowsDns(const LintContext& ctx, const Rule& rule) {
  if (rule.ports.empty()) return true;
  for (const auto& spec : rule.ports) {
    if (spec.protocol != Protocol::UDP && spec.protocol != Protocol::TCP) continue;
    if (!spec.hasPort()) return true;
    if (const auto* n = std::get_if<uint16_t>(&spec.port)) {
      if (*n <= kDnsPort && kDnsPort <= spec.endPort.value_or(*n)) return true;
      continue;
    }
    // A named port allows DNS when some pod (the DNS server) defines it as port 53.
    if (ctx.namedPortIsDns(std::get<std::string>(spec.port), spec.protocol)) return true;
  }
  return false;
}

void checkEgressWithoutDns(const LintContext& ctx, std::vector<Finding>& out) {
  // Pods isolated for egress, grouped by their set of egress policies (the union decides).
  std::map<std::vector<const NetworkPolicy*>, bool> allowsDns;
  std::map<const NetworkPolicy*, std::vector<const Pod*>> byPolicy;  // first policy of the set
  std::vector<const Pod*> pods;
  for (const auto& pod : ctx.cluster().pods) pods.push_back(&pod);
  std::sort(pods.begin(), pods.end(),
            [](const Pod* a, const Pod* b) { return a->key() < b->key(); });
  for (const auto* pod : pods) {
    auto policies = ctx.ev().selectingPolicies(*pod, Direction::Egress);
    if (policies.empty()) continue;
    auto [it, inserted] = allowsDns.try_emplace(policies, false);
    if (inserted) {
      for (const auto* pol : policies) {
        for (const auto& rule : pol->egress) it->second = it->second || ruleAllowsDns(ctx, rule);
      }
    }
    if (!it->second) byPolicy[policies.front()].push_back(pod);
  }
  for (const auto* pol : sortedPolicies(ctx.cluster())) {
    auto it = byPolicy.find(pol);
    if (it == byPolicy.end()) continue;
    const auto& affected = it->second;
    out.push_back({kEgressWithoutDns, pol->key(),
                   pol->egress.empty() ? "spec.policyTypes" : "spec.egress",
                   "isolates " + std::to_string(affected.size()) + " pod(s) for egress (" +
                       podList(affected) +
                       ") and no egress rule selecting them allows DNS (UDP or TCP port 53)",
                   "name lookups will time out; add an egress rule to the cluster DNS, e.g. to: "
                   "namespaceSelector kubernetes.io/metadata.name=kube-system + podSelector "
                   "k8s-app=kube-dns, ports UDP/53 and TCP/53"});
  }
}

// --- unknown-named-port -------------------------------------------------------------------

namespace {

// Which of `pods` define `name` for `protocol`, or for another protocol.
struct NameUse {
  bool defined = false;
  std::string otherProtocol;  // "prod/web defines http as UDP"
};

NameUse findName(const std::vector<const Pod*>& pods, const std::string& name, Protocol proto) {
  NameUse use;
  for (const auto* pod : pods) {
    for (const auto& cp : pod->ports) {
      if (cp.name != name) continue;
      if (cp.protocol == proto) {
        use.defined = true;
        return use;
      }
      if (use.otherProtocol.empty()) {
        use.otherProtocol =
            pod->key() + " defines " + name + " as " + model::protocolName(cp.protocol);
      }
    }
  }
  return use;
}

}  // namespace

void checkUnknownNamedPorts(const LintContext& ctx, std::vector<Finding>& out) {
  std::vector<const Pod*> allPods;
  for (const auto& ns : ctx.namespaces()) {
    const auto& pods = ctx.podsIn(ns);
    allPods.insert(allPods.end(), pods.begin(), pods.end());
  }
  for (const auto* pol : sortedPolicies(ctx.cluster())) {
    for (Direction dir : kDirections) {
      const auto& rules = rulesOf(*pol, dir);
      for (size_t r = 0; r < rules.size(); ++r) {
        const Rule& rule = rules[r];
        bool hasNamed = std::any_of(rule.ports.begin(), rule.ports.end(),
                                    [](const PortSpec& s) { return s.isNamed(); });
        if (!hasNamed) continue;
        // The pods a named port resolves against: for ingress the selected pods; for egress the
        // destination pods the rule's peers select (every pod when it has no peers).
        bool onlyIpBlocks = dir == Direction::Egress && !rule.peers.empty() &&
                            std::all_of(rule.peers.begin(), rule.peers.end(),
                                        [](const Peer& p) { return p.ipBlock.has_value(); });
        auto defines = [&](const std::string& name, Protocol proto) {
          auto has = [&](const Pod& pod) {
            return engine::resolveNamedPort(pod, name, proto).has_value();
          };
          if (dir == Direction::Ingress) {
            const auto& sel = ctx.selected(*pol);
            return std::any_of(sel.begin(), sel.end(), [&](const Pod* p) { return has(*p); });
          }
          if (rule.peers.empty()) {
            return std::any_of(allPods.begin(), allPods.end(),
                               [&](const Pod* p) { return has(*p); });
          }
          return std::any_of(rule.peers.begin(), rule.peers.end(),
                             [&](const Peer& peer) { return ctx.anyPeerPod(*pol, peer, has); });
        };
        // Only built for a finding: the full target list, for the message.
        auto targetsOf = [&]() {
          if (dir == Direction::Ingress) return ctx.selected(*pol);
          if (rule.peers.empty()) return allPods;
          std::vector<const Pod*> targets;
          std::set<const Pod*> seen;
          for (const auto& peer : rule.peers) {
            for (const auto* pod : ctx.peerPods(*pol, peer)) {
              if (seen.insert(pod).second) targets.push_back(pod);
            }
          }
          return targets;
        };
        for (size_t p = 0; p < rule.ports.size(); ++p) {
          const PortSpec& spec = rule.ports[p];
          if (!spec.isNamed()) continue;
          const auto& name = std::get<std::string>(spec.port);
          const std::string field = portField(dir, r, p) + ".port";
          const std::string proto = model::protocolName(spec.protocol);
          if (onlyIpBlocks) {
            out.push_back({kUnknownNamedPort, pol->key(), field,
                           "named port " + name +
                               " never matches: all peers of the rule are "
                               "ipBlocks, and a named port only resolves "
                               "against pods",
                           "use the port number for ipBlock destinations"});
            continue;
          }
          if (defines(name, spec.protocol)) continue;
          auto targets = targetsOf();
          if (targets.empty()) continue;  // reported as a selector that selects nothing
          auto use = findName(targets, name, spec.protocol);
          if (use.defined) continue;
          std::string whose = dir == Direction::Ingress
                                  ? "the pods this policy selects (" + podList(targets) + ")"
                                  : "the destination pods of this rule (" + podList(targets) + ")";
          out.push_back({kUnknownNamedPort, pol->key(), field,
                         "no " + proto + " container port named " + name + " on " + whose,
                         use.otherProtocol.empty()
                             ? "the name must match spec.containers[].ports[].name of the "
                               "destination pods; check the spelling or use the number"
                             : use.otherProtocol + "; set the rule's protocol to match"});
        }
      }
    }
  }
}

// --- ipblock-covers-pods ------------------------------------------------------------------

void checkIpBlockCoversPods(const LintContext& ctx, std::vector<Finding>& out) {
  const auto& addrs = ctx.addresses();
  for (const auto* pol : sortedPolicies(ctx.cluster())) {
    for (Direction dir : kDirections) {
      const auto& rules = rulesOf(*pol, dir);
      for (size_t r = 0; r < rules.size(); ++r) {
        for (size_t p = 0; p < rules[r].peers.size(); ++p) {
          const auto& block = rules[r].peers[p].ipBlock;
          if (!block) continue;
          // Addresses sort by family then bytes: a prefix's addresses are one contiguous run,
          // found by binary search; the covered count is the block's run minus its excepts'.
          auto run = [&](const Prefix& p) {
            auto lo = std::lower_bound(addrs.begin(), addrs.end(), p.addr(),
                                       [](const std::pair<IpAddr, const Pod*>& a, const IpAddr& b) {
                                         return a.first < b;
                                       });
            auto hi = std::partition_point(
                lo, addrs.end(),
                [&](const std::pair<IpAddr, const Pod*>& a) { return p.contains(a.first); });
            return std::make_pair(lo, hi);
          };
          auto [lo, hi] = run(block->cidr);
          auto count = static_cast<size_t>(hi - lo);
          for (size_t e = 0; e < block->except.size(); ++e) {
            const Prefix& ex = block->except[e];
            bool nested = false;  // inside another except: already subtracted
            for (size_t o = 0; o < block->except.size() && !nested; ++o) {
              nested = o != e && block->except[o].contains(ex) && (block->except[o] != ex || o < e);
            }
            if (nested) continue;
            auto [elo, ehi] = run(ex);
            count -= static_cast<size_t>(ehi - elo);
          }
          if (count == 0) continue;
          auto example =
              std::find_if(lo, hi, [&](const auto& a) { return block->contains(a.first); });
          std::string msg = "ipBlock " + block->cidr.toString() + " covers " +
                            std::to_string(count) + " pod address(es) (e.g. " +
                            example->second->key() + " " + example->first.toString() + ")";
          std::string hint =
              block->cidr.len() == 0
                  ? "a catch-all block also matches pods; add the pod CIDR to except if "
                    "you meant traffic leaving the cluster, and select pods with "
                    "podSelector/namespaceSelector"
                  : "pod addresses change when pods are rescheduled; select pods with "
                    "podSelector/namespaceSelector instead";
          out.push_back(
              {kIpBlockCoversPods, pol->key(), peerField(dir, r, p) + ".ipBlock", msg, hint});
        }
      }
    }
  }
}

// --- shadowed-rule ------------------------------------------------------------------------

namespace {

bool peerCovers(const Peer& a, const Peer& b) {
  if (a.ipBlock || b.ipBlock) {
    if (!a.ipBlock || !b.ipBlock) return false;
    if (!a.ipBlock->cidr.contains(b.ipBlock->cidr)) return false;
    // Prefixes nest or are disjoint: an except of a inside b's block must be excepted by b too.
    for (const auto& e : a.ipBlock->except) {
      if (!e.overlaps(b.ipBlock->cidr)) continue;
      if (e.contains(b.ipBlock->cidr)) return false;
      if (std::none_of(b.ipBlock->except.begin(), b.ipBlock->except.end(),
                       [&](const Prefix& be) { return be.contains(e); })) {
        return false;
      }
    }
    return true;
  }
  // namespaceSelector {} without podSelector: every pod in every namespace.
  if (a.namespaceSelector && a.namespaceSelector->empty() &&
      (!a.podSelector || a.podSelector->empty())) {
    return true;
  }
  // Same namespaces (both absent = the policy's own), and a's pods include b's.
  if (a.namespaceSelector != b.namespaceSelector) return false;
  if (!a.podSelector || a.podSelector->empty()) return true;
  return b.podSelector && *a.podSelector == *b.podSelector;
}

bool portCovers(const PortSpec& a, const PortSpec& b) {
  if (a.protocol != b.protocol) return false;
  if (!a.hasPort()) return true;
  if (a.isNamed() || b.isNamed()) return a.port == b.port;
  if (!b.hasPort()) return false;
  uint16_t aLo = std::get<uint16_t>(a.port), bLo = std::get<uint16_t>(b.port);
  return aLo <= bLo && b.endPort.value_or(bLo) <= a.endPort.value_or(aLo);
}

}  // namespace

bool ruleCovers(const Rule& a, const Rule& b) {
  bool peersOk =
      a.peers.empty() ||
      (!b.peers.empty() && std::all_of(b.peers.begin(), b.peers.end(), [&](const Peer& bp) {
        return std::any_of(a.peers.begin(), a.peers.end(),
                           [&](const Peer& ap) { return peerCovers(ap, bp); });
      }));
  if (!peersOk) return false;
  return a.ports.empty() ||
         (!b.ports.empty() && std::all_of(b.ports.begin(), b.ports.end(), [&](const PortSpec& bp) {
           return std::any_of(a.ports.begin(), a.ports.end(),
                              [&](const PortSpec& ap) { return portCovers(ap, bp); });
         }));
}

void checkShadowedRules(const LintContext& ctx, std::vector<Finding>& out) {
  auto policies = sortedPolicies(ctx.cluster());
  // Group by namespace: a policy only selects pods in its own.
  std::map<std::string, std::vector<const NetworkPolicy*>> byNs;
  for (const auto* p : policies) byNs[p->namespace_].push_back(p);
  for (const auto& [ns, list] : byNs) {
    for (const auto* b : list) {
      const auto& bPods = ctx.selected(*b);
      if (bPods.empty()) continue;
      for (Direction dir : kDirections) {
        if (!affects(*b, dir)) continue;
        const auto& bRules = rulesOf(*b, dir);
        for (size_t br = 0; br < bRules.size(); ++br) {
          // The first rule, in (policy, index) order, that covers this one. When two rules
          // cover each other (duplicates), only the later one is reported.
          for (const auto* a : list) {
            if (!affects(*a, dir)) continue;
            const auto& aPods = ctx.selected(*a);
            if (!std::includes(aPods.begin(), aPods.end(), bPods.begin(), bPods.end(),
                               [](const Pod* x, const Pod* y) { return x->name < y->name; })) {
              continue;
            }
            const auto& aRules = rulesOf(*a, dir);
            std::optional<size_t> by;
            for (size_t ar = 0; ar < aRules.size() && !by; ++ar) {
              if (a == b && ar == br) continue;
              if (!ruleCovers(aRules[ar], bRules[br])) continue;
              bool mutual = ruleCovers(bRules[br], aRules[ar]) && aPods.size() == bPods.size();
              bool aFirst = a->name < b->name || (a == b && ar < br);
              if (mutual && !aFirst) continue;
              by = ar;
            }
            if (!by) continue;
            const auto& ar = aRules[*by];
            std::string what = ar.peers.empty() && ar.ports.empty()
                                   ? "allows every peer on every port"
                                   : "allows all this rule does";
            out.push_back({kShadowedRule, b->key(), ruleField(dir, br),
                           "shadowed by " +
                               (a == b ? std::string("this policy's ") : a->key() + " ") +
                               ruleField(dir, *by) + ", which " + what + " for " +
                               (a == b ? "the same pods" : "every pod this policy selects") +
                               "; this rule adds nothing",
                           "remove the redundant rule, or narrow the broader one if it was "
                           "meant to be more specific"});
            break;
          }
        }
      }
    }
  }
}

// --- ignored-rules ------------------------------------------------------------------------

void checkIgnoredRules(const LintContext& ctx, std::vector<Finding>& out) {
  for (const auto* pol : sortedPolicies(ctx.cluster())) {
    for (Direction dir : kDirections) {
      if (affects(*pol, dir) || rulesOf(*pol, dir).empty()) continue;
      const std::string name = dir == Direction::Ingress ? "Ingress" : "Egress";
      out.push_back({kIgnoredRules, pol->key(), std::string("spec.") + engine::directionName(dir),
                     "has " + std::to_string(rulesOf(*pol, dir).size()) + " " +
                         engine::directionName(dir) +
                         " rule(s), but spec.policyTypes does not "
                         "list " +
                         name + ": they are ignored",
                     "add " + name + " to spec.policyTypes, or remove the rules"});
    }
  }
}

// --- or-peers -----------------------------------------------------------------------------

void checkOrPeers(const LintContext& ctx, std::vector<Finding>& out) {
  // `- namespaceSelector: ...` and `- podSelector: ...` as two list elements are two peers
  // (OR), which is rarely what was meant: one element with both keys is the AND.
  for (const auto* pol : sortedPolicies(ctx.cluster())) {
    for (Direction dir : kDirections) {
      const auto& rules = rulesOf(*pol, dir);
      for (size_t r = 0; r < rules.size(); ++r) {
        const auto& peers = rules[r].peers;
        for (size_t p = 0; p + 1 < peers.size(); ++p) {
          const Peer& x = peers[p];
          const Peer& y = peers[p + 1];
          bool nsOnlyX = x.namespaceSelector && !x.podSelector && !x.ipBlock;
          bool podOnlyX = x.podSelector && !x.namespaceSelector && !x.ipBlock;
          bool nsOnlyY = y.namespaceSelector && !y.podSelector && !y.ipBlock;
          bool podOnlyY = y.podSelector && !y.namespaceSelector && !y.ipBlock;
          if (!((nsOnlyX && podOnlyY) || (podOnlyX && nsOnlyY))) continue;
          const Peer& ns = nsOnlyX ? x : y;
          const Peer& pod = nsOnlyX ? y : x;
          if (ns.namespaceSelector->empty() || pod.podSelector->empty()) continue;
          out.push_back(
              {kOrPeers, pol->key(), peerField(dir, r, p),
               "two peers: " + describePeer(x) + " OR " + describePeer(y) + "; this allows all " +
                   "pods of the namespaces matching " + ns.namespaceSelector->toString() +
                   ", and the pods matching " + pod.podSelector->toString() + " in " +
                   pol->namespace_,
               "if you meant pods matching " + pod.podSelector->toString() +
                   " in those namespaces, put namespaceSelector and podSelector in one list "
                   "element (no '-' before podSelector)"});
        }
      }
    }
  }
}

// --- ipblock-host-bits --------------------------------------------------------------------

void checkIpBlockHostBits(const LintContext& ctx, std::vector<Finding>& out) {
  for (const auto* pol : sortedPolicies(ctx.cluster())) {
    for (Direction dir : kDirections) {
      const auto& rules = rulesOf(*pol, dir);
      for (size_t r = 0; r < rules.size(); ++r) {
        for (size_t p = 0; p < rules[r].peers.size(); ++p) {
          const auto& block = rules[r].peers[p].ipBlock;
          if (!block) continue;
          for (const auto& [field, written] : block->hostBitsSet) {
            auto parsed = Prefix::parse(written, /*allowHostBits=*/true);
            if (!parsed.ok()) continue;  // not from the decoder, which only records valid CIDRs
            const Prefix& network = *parsed;
            // Its address part is what was meant when the author wanted one host.
            const std::string host =
                written.substr(0, written.find('/')) + "/" + std::to_string(network.addr().bits());
            out.push_back({kIpBlockHostBits, pol->key(), peerField(dir, r, p) + ".ipBlock." + field,
                           "\"" + written + "\" has host bits set; it means the whole network " +
                               network.toString(),
                           "write " + network.toString() + " for the network, or " + host +
                               " for the one address"});
          }
        }
      }
    }
  }
}

// --- ipblock-ipv4-mapped ------------------------------------------------------------------

namespace {

// ::ffff:0:0/96, where IPv4-mapped IPv6 addresses live.
bool isIpv4Mapped(const Prefix& p) {
  static const Prefix kMapped = *Prefix::parse("::ffff:0:0/96");
  return kMapped.contains(p);
}

// The IPv4 prefix an IPv4-mapped one was probably meant to be.
std::string ipv4Meaning(const Prefix& p) {
  const auto& b = p.addr().bytes();
  IpAddr v4 = IpAddr::v4((uint32_t{b[12]} << 24) | (uint32_t{b[13]} << 16) |
                         (uint32_t{b[14]} << 8) | b[15]);
  return Prefix(v4, p.len() - 96).toString();
}

}  // namespace

void checkIpBlockIpv4Mapped(const LintContext& ctx, std::vector<Finding>& out) {
  for (const auto* pol : sortedPolicies(ctx.cluster())) {
    for (Direction dir : kDirections) {
      const auto& rules = rulesOf(*pol, dir);
      for (size_t r = 0; r < rules.size(); ++r) {
        for (size_t p = 0; p < rules[r].peers.size(); ++p) {
          const auto& block = rules[r].peers[p].ipBlock;
          if (!block) continue;
          auto check = [&](const Prefix& prefix, const std::string& field) {
            if (!isIpv4Mapped(prefix)) return;
            out.push_back(
                {kIpBlockIpv4Mapped, pol->key(), peerField(dir, r, p) + ".ipBlock." + field,
                 prefix.toString() +
                     " is an IPv4-mapped IPv6 prefix: Kubernetes treats it as IPv6, so it never "
                     "matches IPv4 traffic (pods and nodes send IPv4 as IPv4)",
                 "for IPv4 peers write " + ipv4Meaning(prefix)});
          };
          check(block->cidr, "cidr");
          for (size_t e = 0; e < block->except.size(); ++e) {
            check(block->except[e], "except[" + std::to_string(e) + "]");
          }
        }
      }
    }
  }
}

// --- duplicate-key ------------------------------------------------------------------------

void checkDuplicateKeys(const LintContext& ctx, std::vector<Finding>& out) {
  for (const auto* pol : sortedPolicies(ctx.cluster())) {
    for (const auto& field : pol->duplicateKeys) {
      out.push_back({kDuplicateKey, pol->key(), field,
                     "given more than once; the last value is used, as the API server does",
                     "remove the earlier one: other YAML tools may keep the first, and the "
                     "policy would mean something else to them"});
    }
  }
}

// --- unknown-enforcement -----------------------------------------------------------------

void checkEnforcementAnnotation(const LintContext& ctx, std::vector<Finding>& out) {
  for (const auto* pol : sortedPolicies(ctx.cluster())) {
    const std::string& v = pol->enforcementText;
    if (v.empty() || v == "audit" || v == "enforce") continue;
    out.push_back({kUnknownEnforcement, pol->key(),
                   std::string("metadata.annotations[") + model::kEnforcementAnnotation + "]",
                   "unknown value \"" + v + "\": the policy is enforced",
                   "use \"audit\" to evaluate the policy without enforcing it, or remove the "
                   "annotation"});
  }
}

// --- all ----------------------------------------------------------------------------------

std::vector<Finding> lint(const engine::Evaluator& ev) {
  LintContext ctx(ev);
  std::vector<Finding> out;
  checkPolicySelectsNothing(ctx, out);
  checkPeerSelectsNothing(ctx, out);
  checkEgressWithoutDns(ctx, out);
  checkUnknownNamedPorts(ctx, out);
  checkIpBlockCoversPods(ctx, out);
  checkShadowedRules(ctx, out);
  checkIgnoredRules(ctx, out);
  checkOrPeers(ctx, out);
  checkIpBlockHostBits(ctx, out);
  checkIpBlockIpv4Mapped(ctx, out);
  checkDuplicateKeys(ctx, out);
  checkEnforcementAnnotation(ctx, out);
  std::stable_sort(out.begin(), out.end(), [](const Finding& a, const Finding& b) {
    return std::tie(a.object, a.field, a.kind) < std::tie(b.object, b.field, b.kind);
  });
  return out;
}

void renderLintText(std::ostream& out, const std::vector<Finding>& findings) {
  for (const auto& f : findings) {
    out << "WARN " << f.kind << " " << f.object << " " << f.field << ": " << f.message
        << " (hint: " << f.hint << ")\n";
  }
}

void renderLintJson(std::ostream& out, const std::vector<Finding>& findings) {
  nlohmann::ordered_json j;
  j["findings"] = nlohmann::ordered_json::array();
  for (const auto& f : findings) {
    j["findings"].push_back({{"kind", f.kind},
                             {"object", f.object},
                             {"field", f.field},
                             {"message", f.message},
                             {"hint", f.hint}});
  }
  out << j.dump() << "\n";
}

}  // namespace sluice::ctl
