#include "policyd/ctl/describe.h"

namespace sluice::ctl {

using engine::Direction;

std::string describePeer(const model::Peer& peer) {
  if (peer.ipBlock) {
    std::string s = "ipBlock " + peer.ipBlock->cidr.toString();
    if (!peer.ipBlock->except.empty()) {
      s += " except ";
      for (size_t i = 0; i < peer.ipBlock->except.size(); ++i) {
        s += (i ? "," : "") + peer.ipBlock->except[i].toString();
      }
    }
    return s;
  }
  std::string s;
  if (peer.namespaceSelector) s = "namespaceSelector " + peer.namespaceSelector->toString();
  if (peer.podSelector) {
    if (!s.empty()) s += " + ";
    s += "podSelector " + peer.podSelector->toString();
  }
  return s;
}

std::string describePort(const model::PortSpec& spec) {
  std::string proto = model::protocolName(spec.protocol);
  if (const auto* n = std::get_if<uint16_t>(&spec.port)) {
    std::string s = proto + "/" + std::to_string(*n);
    if (spec.endPort && *spec.endPort != *n) s += "-" + std::to_string(*spec.endPort);
    return s;
  }
  if (const auto* name = std::get_if<std::string>(&spec.port)) return proto + "/" + *name;
  return proto + " (all ports)";
}

std::string describePorts(const std::vector<model::PortSpec>& ports) {
  if (ports.empty()) return "all ports";
  std::string s;
  for (size_t i = 0; i < ports.size(); ++i) s += (i ? ", " : "") + describePort(ports[i]);
  return s;
}

std::string describeLabels(const model::Labels& labels) {
  if (labels.empty()) return "no labels";
  std::string s;
  for (const auto& [k, v] : labels) s += (s.empty() ? "" : ",") + k + "=" + v;
  return s;
}

std::string ruleField(Direction dir, size_t rule) {
  return std::string("spec.") + engine::directionName(dir) + "[" + std::to_string(rule) + "]";
}

std::string peerField(Direction dir, size_t rule, size_t peer) {
  return ruleField(dir, rule) + (dir == Direction::Ingress ? ".from[" : ".to[") +
         std::to_string(peer) + "]";
}

std::string portField(Direction dir, size_t rule, size_t port) {
  return ruleField(dir, rule) + ".ports[" + std::to_string(port) + "]";
}

std::string explainPeerMiss(const engine::Evaluator& ev, const model::NetworkPolicy& pol,
                            const model::Peer& peer, const engine::FlowEnd& other) {
  if (peer.ipBlock) {
    if (!other.ip) return describePeer(peer) + ": the peer has no address";
    if (!peer.ipBlock->cidr.contains(*other.ip)) {
      return describePeer(peer) + " does not contain " + other.ip->toString();
    }
    for (const auto& e : peer.ipBlock->except) {
      if (e.contains(*other.ip)) {
        return describePeer(peer) + ": " + other.ip->toString() + " is excepted by " +
               e.toString();
      }
    }
    return describePeer(peer) + " matches";  // not reached for a real miss
  }
  const std::string what = describePeer(peer);
  if (!other.pod) {
    return what + " selects pods, but " + (other.ip ? other.ip->toString() : "the peer") +
           " is not a pod address (use an ipBlock)";
  }
  const model::Pod& pod = *other.pod;
  if (pod.hostNetwork) {
    return what + ": " + pod.key() + " is a hostNetwork pod, which selectors never match";
  }
  if (peer.namespaceSelector) {
    const auto& nsLabels = ev.namespaceLabels(pod.namespace_);
    if (!peer.namespaceSelector->matches(nsLabels)) {
      return what + ": namespace " + pod.namespace_ + " (" + describeLabels(nsLabels) +
             ") does not match the namespaceSelector";
    }
  } else if (pod.namespace_ != pol.namespace_) {
    return what + " selects pods in namespace " + pol.namespace_ + " only, but " + pod.key() +
           " is in " + pod.namespace_ + " (add a namespaceSelector)";
  }
  if (peer.podSelector && !peer.podSelector->matches(pod.labels)) {
    return what + ": " + pod.key() + " (" + describeLabels(pod.labels) +
           ") does not match the podSelector";
  }
  return what + " matches";
}

}  // namespace sluice::ctl
