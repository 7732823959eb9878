// Label groups: pods that no selector and no named port can tell apart (same namespace, labels
// and container ports) share one group, and rules are matched against groups, never against
// pods: a policy change costs a few selector matches per group.
#include <algorithm>
#include <set>
#include <variant>

#include "policyd/compiler/compiler_impl.h"
#include "policyd/engine/selection.h"

namespace sluice::compiler {

GroupKey groupKeyOf(const Pod& pod) {
  GroupKey k{pod.namespace_, pod.labels, {}};
  for (const auto& cp : pod.ports) {
    k.ports.emplace_back(cp.name, static_cast<uint8_t>(cp.protocol), cp.port);
  }
  return k;
}

const Labels& Compiler::Impl::nsLabels(const std::string& ns) {
  auto it = namespaces.find(ns);
  if (it != namespaces.end()) return it->second;
  // The API server sets kubernetes.io/metadata.name on every namespace; a namespace whose
  // object we have not seen yet still carries it.
  static thread_local Labels implicit;
  implicit = Labels{{"kubernetes.io/metadata.name", ns}};
  return implicit;
}

Group* Compiler::Impl::acquireGroup(const Pod& pod) {
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

void Compiler::Impl::releaseGroup(Group* g) {
  if (--g->claims == 0) deadGroups.insert(g);
}

// A selector peer against a label group (ipBlocks are classified by the partition).
bool Compiler::Impl::selectorMatches(const NetworkPolicy& pol, const model::Peer& peer,
                                     const Group& g) {
  // Namespace labels are only read for a namespaceSelector; the lookup is skipped otherwise,
  // as this runs for every group against every changed rule.
  static const Labels kUnread;
  return engine::peerSelectsPod(pol, peer, g.pod.namespace_, g.pod.labels,
                                peer.namespaceSelector ? nsLabels(g.pod.namespace_) : kUnread);
}

bool Compiler::Impl::groupMatches(const RuleInfo& info, const Group& g) {
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
std::vector<NamedRes> Compiler::Impl::resolutions(const Group& g) {
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

void Compiler::Impl::markGroupAddrs(const Group& g) {
  dirtyAddrs.insert(g.owned.begin(), g.owned.end());
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

}  // namespace sluice::compiler
