// Human-readable descriptions of policy parts, shared by explain, lint and diff output.
#pragma once

#include <string>

#include "policyd/engine/evaluator.h"
#include "policyd/model/types.h"

namespace sluice::ctl {

// "podSelector app=web", "namespaceSelector team=a + podSelector app=web", "ipBlock 10.0.0.0/8
// except 10.1.0.0/16".
std::string describePeer(const model::Peer& peer);
// "TCP/8080", "TCP/8000-8080", "TCP/http", "UDP (all ports)".
std::string describePort(const model::PortSpec& spec);
// "TCP/80, UDP/53" or "all ports".
std::string describePorts(const std::vector<model::PortSpec>& ports);
// "app=web,tier=db" or "no labels".
std::string describeLabels(const model::Labels& labels);
// "spec.ingress[2]" / "spec.egress[0].to[1]" style field paths.
std::string ruleField(engine::Direction dir, size_t rule);
std::string peerField(engine::Direction dir, size_t rule, size_t peer);
std::string portField(engine::Direction dir, size_t rule, size_t port);

// Why `peer` of `pol` does not match `other` (which it does not): one sentence fragment, e.g.
// "namespaceSelector team=ops does not match namespace dev (labels ...)".
std::string explainPeerMiss(const engine::Evaluator& ev, const model::NetworkPolicy& pol,
                            const model::Peer& peer, const engine::FlowEnd& other);

}  // namespace sluice::ctl
