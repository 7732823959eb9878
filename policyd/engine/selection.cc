#include "policyd/engine/selection.h"

#include <variant>

namespace sluice::engine {

using model::NetworkPolicy;
using model::Peer;
using model::Pod;

const std::vector<model::Rule>& rulesOf(const NetworkPolicy& pol, Direction dir) {
  return dir == Direction::Ingress ? pol.ingress : pol.egress;
}

bool affects(const NetworkPolicy& pol, Direction dir) {
  return dir == Direction::Ingress ? pol.affectsIngress : pol.affectsEgress;
}

bool podSelectorMatches(const NetworkPolicy& pol, const Pod& pod) {
  return !pod.hostNetwork && pod.namespace_ == pol.namespace_ &&
         pol.podSelector.matches(pod.labels);
}

bool selects(const NetworkPolicy& pol, const Pod& pod, Direction dir) {
  // "isolated for ingress/egress once any policy in its namespace selects it and lists the
  // direction in policyTypes".
  return affects(pol, dir) && podSelectorMatches(pol, pod);
}

bool peerCoversNamespace(const NetworkPolicy& pol, const Peer& peer, std::string_view ns,
                         const model::Labels& nsLabels) {
  if (peer.ipBlock) return false;
  if (peer.namespaceSelector) {
    // "If namespaceSelector is also set, then the NetworkPolicyPeer as a whole selects the pods
    // matching podSelector in the Namespaces selected by NamespaceSelector."
    return peer.namespaceSelector->matches(nsLabels);
  }
  // "Otherwise it selects the pods matching podSelector in the policy's own namespace."
  return ns == pol.namespace_;
}

bool peerSelectsPod(const NetworkPolicy& pol, const Peer& peer, std::string_view ns,
                    const model::Labels& podLabels, const model::Labels& nsLabels) {
  if (!peerCoversNamespace(pol, peer, ns, nsLabels)) return false;
  return !peer.podSelector || peer.podSelector->matches(podLabels);
}

std::optional<uint16_t> resolveNamedPort(const Pod& pod, std::string_view name,
                                         model::Protocol protocol) {
  for (const auto& cp : pod.ports) {
    if (cp.name == name && cp.protocol == protocol) return cp.port;
  }
  return std::nullopt;
}

const Pod* namedPortPod(Direction dir, bool viaIpBlock, const Pod* dst) {
  return (dir == Direction::Egress && viaIpBlock) ? nullptr : dst;
}

bool portMatches(const model::PortSpec& spec, model::Protocol protocol, uint16_t port,
                 const Pod* namedPod) {
  if (spec.protocol != protocol) return false;
  if (const auto* num = std::get_if<uint16_t>(&spec.port)) {
    uint16_t last = spec.endPort.value_or(*num);
    return port >= *num && port <= last;
  }
  if (const auto* name = std::get_if<std::string>(&spec.port)) {
    if (!namedPod || namedPod->hostNetwork) return false;
    auto resolved = resolveNamedPort(*namedPod, *name, protocol);
    return resolved && *resolved == port;
  }
  return true;  // protocol only: all ports
}

std::optional<int> matchingPort(const model::Rule& rule, Direction dir, bool viaIpBlock,
                                model::Protocol protocol, uint16_t port, const Pod* dst) {
  // "If this field is empty or missing, this rule matches all ports."
  if (rule.ports.empty()) return -1;
  const Pod* named = namedPortPod(dir, viaIpBlock, dst);
  for (size_t p = 0; p < rule.ports.size(); ++p) {
    if (portMatches(rule.ports[p], protocol, port, named)) return static_cast<int>(p);
  }
  return std::nullopt;
}

}  // namespace sluice::engine
