// Selection and rule matching of networking.k8s.io/v1 NetworkPolicy, written once (DESIGN.md
// §5). The reference evaluator, the compiler and `sluicectl lint` all ask these functions which
// pods a policy selects, which pods and addresses a peer matches and which ports a rule
// allows, so the enforced answer, the dry run and the warnings cannot drift apart.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "common/ip.h"
#include "policyd/model/direction.h"
#include "policyd/model/types.h"

namespace sluice::engine {

using model::Direction;
using model::directionName;
using model::kDirections;

// spec.ingress or spec.egress.
const std::vector<model::Rule>& rulesOf(const model::NetworkPolicy& pol, Direction dir);
// Whether spec.policyTypes (as defaulted by the decoder) lists the direction.
bool affects(const model::NetworkPolicy& pol, Direction dir);

// Whether the policy's podSelector picks the pod, whatever its policyTypes: "a policy only
// selects pods in its own namespace", and hostNetwork pods are not policy endpoints.
bool podSelectorMatches(const model::NetworkPolicy& pol, const model::Pod& pod);
// Whether the policy isolates the pod for the direction (selects it and affects it).
bool selects(const model::NetworkPolicy& pol, const model::Pod& pod, Direction dir);

// The namespace half of a selector peer: whether pods of namespace `ns` (labels `nsLabels`, read
// only for a namespaceSelector) can match. Always false for an ipBlock peer.
bool peerCoversNamespace(const model::NetworkPolicy& pol, const model::Peer& peer,
                         std::string_view ns, const model::Labels& nsLabels);
// Whether a selector peer of `pol` matches a (non-hostNetwork) pod of namespace `ns` with
// `podLabels`. Always false for an ipBlock peer: an ipBlock matches addresses, see below.
// `nsLabels` is read only when the peer has a namespaceSelector, so hot callers may pass any
// labels otherwise instead of looking them up.
bool peerSelectsPod(const model::NetworkPolicy& pol, const model::Peer& peer, std::string_view ns,
                    const model::Labels& podLabels, const model::Labels& nsLabels);

// ipBlock membership is model::IPBlock::contains (an address, or every address of a prefix).

// A named port against a pod's container ports (name and protocol).
std::optional<uint16_t> resolveNamedPort(const model::Pod& pod, std::string_view name,
                                         model::Protocol protocol);
// The pod a rule's named ports resolve against: "the port on the pods selected by this policy"
// for ingress (the destination, which is the selected pod); the destination pod for egress,
// except when the peer that matched is an ipBlock: a named port never matches an address.
const model::Pod* namedPortPod(Direction dir, bool viaIpBlock, const model::Pod* dst);
// Whether a port spec allows (protocol, port); named ports resolve against `namedPod`
// (nullptr, or a hostNetwork pod: a named port matches nothing).
bool portMatches(const model::PortSpec& spec, model::Protocol protocol, uint16_t port,
                 const model::Pod* namedPod);
// The index of the first port of `rule` that allows (protocol, port) towards `dst`; -1 when
// the rule has no ports (all ports and protocols); nullopt when none does.
std::optional<int> matchingPort(const model::Rule& rule, Direction dir, bool viaIpBlock,
                                model::Protocol protocol, uint16_t port, const model::Pod* dst);

}  // namespace sluice::engine
