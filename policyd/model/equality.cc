#include "policyd/model/equality.h"

#include <algorithm>

namespace sluice::model {

namespace {

bool samePorts(const std::vector<ContainerPort>& a, const std::vector<ContainerPort>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.name == y.name && x.port == y.port && x.protocol == y.protocol;
  });
}

bool samePortSpec(const PortSpec& a, const PortSpec& b) {
  return a.protocol == b.protocol && a.port == b.port && a.endPort == b.endPort;
}

bool sameIpBlock(const IPBlock& a, const IPBlock& b) {
  return a.cidr == b.cidr && a.except == b.except && a.hostBitsSet == b.hostBitsSet;
}

bool samePeer(const Peer& a, const Peer& b) {
  if (a.podSelector != b.podSelector || a.namespaceSelector != b.namespaceSelector) return false;
  if (a.ipBlock.has_value() != b.ipBlock.has_value()) return false;
  return !a.ipBlock || sameIpBlock(*a.ipBlock, *b.ipBlock);
}

bool sameRule(const Rule& a, const Rule& b) {
  return std::equal(a.peers.begin(), a.peers.end(), b.peers.begin(), b.peers.end(), samePeer) &&
         std::equal(a.ports.begin(), a.ports.end(), b.ports.begin(), b.ports.end(), samePortSpec);
}

}  // namespace

bool sameNamespace(const Namespace& a, const Namespace& b) {
  return a.name == b.name && a.labels == b.labels;
}

bool samePod(const Pod& a, const Pod& b) {
  return a.namespace_ == b.namespace_ && a.name == b.name && a.labels == b.labels &&
         a.ips == b.ips && a.hostNetwork == b.hostNetwork && a.nodeName == b.nodeName &&
         samePorts(a.ports, b.ports);
}

bool samePolicy(const NetworkPolicy& a, const NetworkPolicy& b) {
  return a.namespace_ == b.namespace_ && a.name == b.name && a.podSelector == b.podSelector &&
         a.affectsIngress == b.affectsIngress && a.affectsEgress == b.affectsEgress &&
         std::equal(a.ingress.begin(), a.ingress.end(), b.ingress.begin(), b.ingress.end(),
                    sameRule) &&
         std::equal(a.egress.begin(), a.egress.end(), b.egress.begin(), b.egress.end(), sameRule) &&
         a.enforcement == b.enforcement && a.enforcementText == b.enforcementText &&
         a.duplicateKeys == b.duplicateKeys;
}

}  // namespace sluice::model
