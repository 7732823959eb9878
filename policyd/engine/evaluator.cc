#include "policyd/engine/evaluator.h"

#include <algorithm>

namespace sluice::engine {

using model::NetworkPolicy;
using model::Peer;
using model::Pod;
using model::PortSpec;
using model::Protocol;

namespace {

bool byName(const NetworkPolicy* a, const NetworkPolicy* b) { return a->name < b->name; }

}  // namespace

Evaluator::Evaluator(const model::Cluster& cluster) : cluster_(cluster) {
  for (const auto& ns : cluster_.namespaces) namespaces_.emplace(ns.name, &ns);
  for (const auto& pod : cluster_.pods) {
    podsByKey_.emplace(pod.key(), &pod);
    // hostNetwork pods share the node's address; an address names a pod only when the pod has
    // its own network namespace.
    if (!pod.hostNetwork) {
      for (const auto& ip : pod.ips) podsByIp_.emplace(ip, &pod);
    }
    if (!namespaces_.count(pod.namespace_)) {
      implicitNsLabels_.try_emplace(pod.namespace_,
                                    model::Labels{{"kubernetes.io/metadata.name", pod.namespace_}});
    }
  }
  for (const auto& pol : cluster_.policies) {
    (pol.audited() ? auditedByNs_ : policiesByNs_)[pol.namespace_].push_back(&pol);
  }
  // Policies are evaluated in a stable order so the explanation names the same rule every time.
  for (auto* byNs : {&policiesByNs_, &auditedByNs_}) {
    for (auto& [ns, list] : *byNs) std::sort(list.begin(), list.end(), byName);
  }
}

const Pod* Evaluator::findPod(std::string_view ns, std::string_view name) const {
  std::string key;
  key.reserve(ns.size() + name.size() + 1);
  key.append(ns).append("/").append(name);
  auto it = podsByKey_.find(key);
  return it == podsByKey_.end() ? nullptr : it->second;
}

const Pod* Evaluator::podByIp(const IpAddr& ip) const {
  auto it = podsByIp_.find(ip);
  return it == podsByIp_.end() ? nullptr : it->second;
}

const model::Namespace* Evaluator::findNamespace(std::string_view name) const {
  auto it = namespaces_.find(std::string(name));
  return it == namespaces_.end() ? nullptr : it->second;
}

const model::Labels& Evaluator::namespaceLabels(std::string_view name) const {
  if (const auto* ns = findNamespace(name)) return ns->labels;
  auto it = implicitNsLabels_.find(std::string(name));
  return it == implicitNsLabels_.end() ? emptyLabels_ : it->second;
}

void Evaluator::appendSelecting(
    const std::unordered_map<std::string, std::vector<const NetworkPolicy*>>& byNs, const Pod& pod,
    Direction dir, std::vector<const NetworkPolicy*>& out) {
  if (pod.hostNetwork) return;  // hostNetwork pods are not policy endpoints
  auto it = byNs.find(pod.namespace_);
  if (it == byNs.end()) return;
  for (const auto* pol : it->second) {
    if (selects(*pol, pod, dir)) out.push_back(pol);
  }
}

std::vector<const NetworkPolicy*> Evaluator::selectingPolicies(const Pod& pod, Direction dir,
                                                               View view) const {
  std::vector<const NetworkPolicy*> out;
  appendSelecting(policiesByNs_, pod, dir, out);
  if (view == View::OnceEnforced) {
    const size_t enforced = out.size();
    appendSelecting(auditedByNs_, pod, dir, out);
    std::inplace_merge(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(enforced), out.end(),
                       byName);
  }
  return out;
}

std::vector<const NetworkPolicy*> Evaluator::auditedPolicies(const Pod& pod, Direction dir) const {
  std::vector<const NetworkPolicy*> out;
  appendSelecting(auditedByNs_, pod, dir, out);
  return out;
}

bool Evaluator::peerMatches(const NetworkPolicy& pol, const Peer& peer,
                            const FlowEnd& other) const {
  if (peer.ipBlock) {
    // "ipBlock defines policy on a particular IPBlock": matched against the address itself, so a
    // pod's address inside the block matches too.
    return other.ip && peer.ipBlock->contains(*other.ip);
  }
  if (!other.pod || other.pod->hostNetwork) return false;
  const Pod& pod = *other.pod;
  // Namespace labels are only read for a namespaceSelector.
  return peerSelectsPod(pol, peer, pod.namespace_, pod.labels,
                        peer.namespaceSelector ? namespaceLabels(pod.namespace_) : emptyLabels_);
}

SideExplanation Evaluator::evaluateSide(const Pod& pod, Direction dir, const Flow& flow,
                                        View view) const {
  SideExplanation side;
  side.applies = true;
  auto policies = selectingPolicies(pod, dir, view);
  side.isolated = !policies.empty();
  for (const auto* pol : policies) side.selectingPolicies.push_back(pol->key());
  for (const auto* pol : auditedPolicies(pod, dir)) side.auditedPolicies.push_back(pol->key());
  if (!side.isolated) {
    side.allowed = true;
    return side;
  }
  const FlowEnd& other = dir == Direction::Ingress ? flow.src : flow.dst;
  for (const auto* pol : policies) {
    const auto& rules = rulesOf(*pol, dir);
    for (size_t r = 0; r < rules.size(); ++r) {
      const auto& rule = rules[r];
      auto matchPorts = [&](bool viaIpBlock) {
        return matchingPort(rule, dir, viaIpBlock, flow.protocol, flow.port, flow.dst.pod);
      };
      std::optional<RuleRef> hit;
      if (rule.peers.empty()) {
        if (auto p = matchPorts(false)) hit = RuleRef{pol->key(), static_cast<int>(r), -1, *p};
      } else {
        for (size_t i = 0; i < rule.peers.size() && !hit; ++i) {
          const auto& peer = rule.peers[i];
          if (!peerMatches(*pol, peer, other)) continue;
          if (auto p = matchPorts(peer.ipBlock.has_value())) {
            hit = RuleRef{pol->key(), static_cast<int>(r), static_cast<int>(i), *p};
          }
        }
      }
      if (hit) {
        side.allowed = true;
        side.allowedBy = std::move(hit);
        return side;
      }
    }
  }
  return side;
}

Verdict Evaluator::evaluate(const Flow& flow, View view) const {
  Verdict v;
  if (flow.src.pod && !flow.src.pod->hostNetwork) {
    v.egress = evaluateSide(*flow.src.pod, Direction::Egress, flow, view);
  } else {
    v.egress.allowed = true;
  }
  if (flow.dst.pod && !flow.dst.pod->hostNetwork) {
    v.ingress = evaluateSide(*flow.dst.pod, Direction::Ingress, flow, view);
  } else {
    v.ingress.allowed = true;
  }
  v.allowed = v.egress.allowed && v.ingress.allowed;
  return v;
}

}  // namespace sluice::engine
