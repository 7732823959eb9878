// `sluicectl explain --node`: the same flow answered by this node's realized datapath (its
// pinned maps, read back the way the datapath looks them up) beside the engine's answer. A
// side whose two answers differ is a bug and is reported loudly (exit kExitMismatch).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>

#include "common/ip.h"
#include "common/result.h"
#include "policyd/ctl/explain.h"

namespace sluice::ctl {

inline constexpr int kExitMismatch = 3;

struct NodeSide {
  bool local = false;  // this end is an endpoint of this node
  uint32_t endpoint = 0;
  bool ready = false;
  bool isolated = false;
  uint32_t peerClass = 0;
  bool allowed = false;
  uint32_t rule = 0;
};
struct NodeVerdict {
  NodeSide egress;
  NodeSide ingress;
};

inline constexpr uint32_t kNodeRuleNotIsolated = 0xffffffffu;
inline constexpr uint32_t kNodeRuleHost = 0xfffffffeu;
inline constexpr uint32_t kNodeClassHost = 1;  // compiler::kHostClass: the node's own addresses

// Reads the datapath (the binary wires the bpf reader; ctl stays kernel-free).
using ReadDatapath =
    std::function<Result<NodeVerdict>(const std::string& pinDir, const IpAddr& src,
                                      const IpAddr& dst, uint8_t protocol, uint16_t port)>;

// RuleId -> "ns/policy spec.ingress[i]" (from the daemon's admin socket; may be empty).
using RuleNames = std::map<uint32_t, std::string>;

struct NodeComparison {
  NodeVerdict node;
  bool agree = true;
  std::vector<std::string> mismatches;
};

// Compares each local side with the engine. The engine's sides are the report's; traffic from
// the node's own addresses into a local pod is always allowed (kubelet probes), as the datapath
// does, so such an ingress side is expected allowed whatever the policies say.
NodeComparison compareWithNode(const ExplainReport& r, const NodeVerdict& v);

void renderNodeText(std::ostream& out, const ExplainReport& r, const NodeComparison& c,
                    const RuleNames& names, const std::string& pinDir);
nlohmann::ordered_json nodeJson(const NodeComparison& c, const RuleNames& names);

}  // namespace sluice::ctl
