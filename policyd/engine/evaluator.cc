#include "policyd/engine/evaluator.h"

#include <algorithm>

namespace sluice::engine {

using model::NetworkPolicy;
using model::Peer;
using model::Pod;
using model::PortSpec;
using model::Protocol;

const char* directionName(Direction d) { return d == Direction::Ingress ? "ingress" : "egress"; }

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
  for (const auto& pol : cluster_.policies) policiesByNs_[pol.namespace_].push_back(&pol);
  // Policies are evaluated in a stable order so the explanation names the same rule every time.
  for (auto& [ns, list] : policiesByNs_) {
    std::sort(list.begin(), list.end(),
              [](const NetworkPolicy* a, const NetworkPolicy* b) { return a->name < b->name; });
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

std::optional<uint16_t> Evaluator::resolveNamedPort(const Pod& pod, std::string_view name,
                                                    Protocol protocol) {
  for (const auto& cp : pod.ports) {
    if (cp.name == name && cp.protocol == protocol) return cp.port;
  }
  return std::nullopt;
}

std::vector<const NetworkPolicy*> Evaluator::selectingPolicies(const Pod& pod,
                                                               Direction dir) const {
  std::vector<const NetworkPolicy*> out;
  if (pod.hostNetwork) return out;  // hostNetwork pods are not policy endpoints
  auto it = policiesByNs_.find(pod.namespace_);
  if (it == policiesByNs_.end()) return out;
  for (const auto* pol : it->second) {
    bool affects = dir == Direction::Ingress ? pol->affectsIngress : pol->affectsEgress;
    if (affects && pol->podSelector.matches(pod.labels)) out.push_back(pol);
  }
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
  if (peer.namespaceSelector) {
    // "If namespaceSelector is also set, then the NetworkPolicyPeer as a whole selects the pods
    // matching podSelector in the Namespaces selected by NamespaceSelector."
    if (!peer.namespaceSelector->matches(namespaceLabels(pod.namespace_))) return false;
  } else if (pod.namespace_ != pol.namespace_) {
    // "Otherwise it selects the pods matching podSelector in the policy's own namespace."
    return false;
  }
  return !peer.podSelector || peer.podSelector->matches(pod.labels);
}

bool Evaluator::portMatches(const PortSpec& spec, Protocol protocol, uint16_t port,
                            const Pod* dst) {
  if (spec.protocol != protocol) return false;
  if (const auto* num = std::get_if<uint16_t>(&spec.port)) {
    uint16_t last = spec.endPort.value_or(*num);
    return port >= *num && port <= last;
  }
  if (const auto* name = std::get_if<std::string>(&spec.port)) {
    if (!dst || dst->hostNetwork) return false;
    auto resolved = resolveNamedPort(*dst, *name, protocol);
    return resolved && *resolved == port;
  }
  return true;  // protocol only: all ports
}

SideExplanation Evaluator::evaluateSide(const Pod& pod, Direction dir, const Flow& flow) const {
  SideExplanation side;
  side.applies = true;
  auto policies = selectingPolicies(pod, dir);
  side.isolated = !policies.empty();
  for (const auto* pol : policies) side.selectingPolicies.push_back(pol->key());
  if (!side.isolated) {
    side.allowed = true;
    return side;
  }
  const FlowEnd& other = dir == Direction::Ingress ? flow.src : flow.dst;
  for (const auto* pol : policies) {
    const auto& rules = dir == Direction::Ingress ? pol->ingress : pol->egress;
    for (size_t r = 0; r < rules.size(); ++r) {
      const auto& rule = rules[r];
      // Which pod a named port resolves against: for ingress the selected pod itself; for
      // egress the destination pod, and never when the peer that matched is an ipBlock.
      auto matchPorts = [&](bool viaIpBlock) -> std::optional<int> {
        if (rule.ports.empty()) return -1;
        const Pod* named = (dir == Direction::Egress && viaIpBlock) ? nullptr : flow.dst.pod;
        for (size_t p = 0; p < rule.ports.size(); ++p) {
          if (portMatches(rule.ports[p], flow.protocol, flow.port, named)) {
            return static_cast<int>(p);
          }
        }
        return std::nullopt;
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

Verdict Evaluator::evaluate(const Flow& flow) const {
  Verdict v;
  if (flow.src.pod && !flow.src.pod->hostNetwork) {
    v.egress = evaluateSide(*flow.src.pod, Direction::Egress, flow);
  } else {
    v.egress.allowed = true;
  }
  if (flow.dst.pod && !flow.dst.pod->hostNetwork) {
    v.ingress = evaluateSide(*flow.dst.pod, Direction::Ingress, flow);
  } else {
    v.ingress.allowed = true;
  }
  v.allowed = v.egress.allowed && v.ingress.allowed;
  return v;
}

}  // namespace sluice::engine
