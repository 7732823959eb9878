// The backend-neutral IR the compiler produces and both datapaths lower (DESIGN.md §6).
//
// Addresses are grouped into peer classes: every address in a class is treated alike by every
// rule (same pod/namespace labels, same ipBlock membership, same named-port resolution). The
// datapath maps an address to its class with one longest-prefix lookup, then looks up
// (endpoint, direction, class, protocol, port) in the endpoint's allow set, so per-packet cost
// does not depend on the number of policies, rules or pods.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/ip.h"
#include "policyd/model/direction.h"

namespace sluice::compiler {

using ClassId = uint32_t;
using EndpointId = uint32_t;
using RuleId = uint32_t;

// Reserved classes.
inline constexpr ClassId kAnyPeer = 0;     // wildcard in allow entries: a rule with no peers
inline constexpr ClassId kHostClass = 1;   // this node's own addresses (always allowed in)
inline constexpr ClassId kWorldClass = 2;  // addresses no prefix classifies
inline constexpr ClassId kFirstDynamicClass = 16;

using Direction = model::Direction;  // relative to the pod; the values are the IR's

// IP protocol numbers; kAnyProtocol for rules without ports (any protocol, ICMP included).
inline constexpr uint8_t kAnyProtocol = 0;

struct PortRange {
  uint16_t first = 0;
  uint16_t last = 65535;
  bool all() const { return first == 0 && last == 65535; }
  auto operator<=>(const PortRange&) const = default;
};

// Where an allow entry came from, for counters, explain and drop logs.
struct RuleOrigin {
  std::string policy;  // "ns/name"
  Direction direction = Direction::Ingress;
  int rule = 0;  // index into the policy's ingress/egress list
  auto operator<=>(const RuleOrigin&) const = default;
};

struct AllowEntry {
  Direction direction = Direction::Ingress;
  ClassId peer = kAnyPeer;
  uint8_t protocol = kAnyProtocol;  // 6, 17, 132, or kAnyProtocol (then ports is all)
  PortRange ports;
  RuleId rule = 0;  // index into State::rules
  auto operator<=>(const AllowEntry&) const = default;
};

struct EndpointPolicy {
  bool ingressIsolated = false;
  bool egressIsolated = false;
  // Selected by a policy in audit mode (annotation sluice.io/enforcement: audit): the datapath
  // reports this endpoint's new flows so the daemon can log what that policy would deny.
  bool audited = false;
  std::set<AllowEntry> entries;
  bool operator==(const EndpointPolicy&) const = default;
};

// The whole desired datapath state for one node.
struct State {
  // Address -> class. Longest prefix wins. Host routes (/32, /128) for pods and node
  // addresses; shorter prefixes from ipBlocks; 0.0.0.0/0 and ::/0 map to kWorldClass.
  std::map<Prefix, ClassId> classes;
  std::map<EndpointId, EndpointPolicy> endpoints;
  std::vector<RuleOrigin> rules;  // RuleId -> origin; ids are stable across compilations
  // Bumped whenever any endpoint's allow set or the class map changes; established flows
  // tracked under an older revision are re-checked (--established=recheck).
  uint64_t revision = 0;
};

// What changed between two States; what a backend applies.
struct Diff {
  std::map<Prefix, ClassId> classesUpsert;
  std::vector<Prefix> classesRemove;
  struct EndpointChange {
    EndpointId endpoint = 0;
    bool removed = false;  // the endpoint has no policy state any more
    bool ingressIsolated = false;
    bool egressIsolated = false;
    bool audited = false;
    std::vector<AllowEntry> add;
    std::vector<AllowEntry> remove;
  };
  std::vector<EndpointChange> endpoints;
  std::vector<std::pair<RuleId, RuleOrigin>> rulesUpsert;
  uint64_t revision = 0;
  bool empty() const {
    return classesUpsert.empty() && classesRemove.empty() && endpoints.empty() &&
           rulesUpsert.empty();
  }
};

Diff computeDiff(const State& from, const State& to);

// Reference lookup over the IR with the datapath's algorithm (LPM then exact/any-peer
// lookups). Used by differential tests: IR lookup == engine verdict.
ClassId classOf(const State& s, const IpAddr& addr);
// Returns the matching rule, or nullopt when the direction is isolated and nothing allows it.
// `allowedIfNotIsolated` is signalled by returning a RuleId of UINT32_MAX.
std::optional<RuleId> lookup(const State& s, EndpointId ep, Direction dir, const IpAddr& peer,
                             uint8_t protocol, uint16_t port);
inline constexpr RuleId kNotIsolated = UINT32_MAX;
// Ingress from a kHostClass address: the node's own addresses always reach its pods (kubelet
// probes), whatever the policy says. The datapath checks this before the endpoint's isolation.
inline constexpr RuleId kHostRule = UINT32_MAX - 1;

}  // namespace sluice::compiler
