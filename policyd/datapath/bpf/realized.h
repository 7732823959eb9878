// The verdict the bpf datapath of this node would give a flow, read back from its pinned maps
// (endpoint map, class LPM trie, policy LPM trie) the way the tc program looks them up, not from
// the compiler's in-memory state: `sluicectl explain --node` compares it with the engine.
#pragma once

#include <cstdint>
#include <string>

#include "common/ip.h"
#include "common/result.h"

namespace sluice::datapath::bpf {

struct RealizedSide {
  bool local = false;  // the pod owning this end's address is an endpoint of this node
  uint32_t endpoint = 0;
  bool ready = false;  // its policy is applied (else everything is dropped)
  bool isolated = false;
  uint32_t peerClass = 0;
  bool allowed = false;
  uint32_t rule = 0;  // the credited RuleId, or SLUICE_RULE_NOT_ISOLATED / SLUICE_RULE_HOST
};

struct RealizedVerdict {
  RealizedSide egress;   // the source's egress, when the source is local
  RealizedSide ingress;  // the destination's ingress, when the destination is local
};

inline constexpr uint32_t kRealizedRuleNotIsolated = 0xffffffffu;
inline constexpr uint32_t kRealizedRuleHost = 0xfffffffeu;

// Opens the maps pinned under `pinDir` (read only) and evaluates a new flow src -> dst
// (protocol number, destination port) for each side that is a local endpoint.
Result<RealizedVerdict> queryRealized(const std::string& pinDir, const IpAddr& src,
                                      const IpAddr& dst, uint8_t protocol, uint16_t port);

}  // namespace sluice::datapath::bpf
