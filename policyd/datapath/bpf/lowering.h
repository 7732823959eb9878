// Pure lowering of the compiler IR to the BPF maps' contents (bpf/sluice_abi.h). No libbpf, no
// syscalls: everything here is a function of its arguments, so it is unit-tested without root.
//
// The kernel writer keeps a mirror of what the maps hold (a LoweredState, read back when the
// maps are reused after a restart) and asks this module for the operations that take the
// mirror to the desired contents: `reconcile` for a whole State (sync), `lowerDiff` for the
// endpoints and prefixes one Diff touches (apply).
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "bpf/sluice_abi.h"
#include "common/ip.h"
#include "policyd/compiler/ir.h"

namespace sluice::datapath::bpf {

static_assert(sizeof(sluice_class_key) == 24);
static_assert(sizeof(sluice_endpoint) == 32);
static_assert(sizeof(sluice_policy_key) == 20);
static_assert(sizeof(sluice_policy_value) == 4);
static_assert(sizeof(sluice_ct_key) == 44);
static_assert(sizeof(sluice_ct_value) == 24);
static_assert(sizeof(sluice_frag_key) == 44);
static_assert(sizeof(sluice_frag_value) == 8);
static_assert(sizeof(sluice_counter) == 16);
static_assert(sizeof(sluice_drop_event) == 72);
static_assert(sizeof(sluice_endpoint_drop_key) == 8);
static_assert(sizeof(sluice_config) == 40);
static_assert(SLUICE_CLASS_ANY == compiler::kAnyPeer);
static_assert(SLUICE_CLASS_HOST == compiler::kHostClass);
static_assert(SLUICE_CLASS_WORLD == compiler::kWorldClass);
static_assert(SLUICE_DIR_INGRESS == static_cast<int>(compiler::Direction::Ingress));
static_assert(SLUICE_DIR_EGRESS == static_cast<int>(compiler::Direction::Egress));
static_assert(SLUICE_RULE_NOT_ISOLATED == compiler::kNotIsolated);
static_assert(SLUICE_RULE_HOST == compiler::kHostRule);

// An aligned block of ports: the 2^(16 - bits) ports that share their top `bits` bits with
// `first`. bits == 16 is a single port, bits == 0 every port.
struct PortBlock {
  uint16_t first = 0;
  uint8_t bits = 16;
  uint16_t last() const { return static_cast<uint16_t>(first + ((1u << (16 - bits)) - 1)); }
  auto operator<=>(const PortBlock&) const = default;
};

// Splits [first, last] into the fewest aligned blocks, in ascending order (at most 30 for a
// 16-bit range: each side of the range contributes at most one block per bit).
std::vector<PortBlock> decomposePortRange(compiler::PortRange range);

// LPM map keys (both start with the host-order prefixlen) as values that can key a std::map and
// round-trip through the kernel unchanged. Ordered by data bytes, then prefixlen, so all keys
// of one endpoint (the first data field of a policy key) are adjacent. Keys are always built
// masked (bits past the prefix zero): the trie stores the bytes it was given and returns them
// when the map is read back.
template <typename Raw>
struct LpmKey {
  static_assert(offsetof(Raw, prefixlen) == 0 && sizeof(Raw::prefixlen) == 4);
  Raw raw{};
  friend bool operator==(const LpmKey& a, const LpmKey& b) {
    return std::memcmp(&a.raw, &b.raw, sizeof(Raw)) == 0;
  }
  friend std::strong_ordering operator<=>(const LpmKey& a, const LpmKey& b) {
    const auto* pa = reinterpret_cast<const unsigned char*>(&a.raw);
    const auto* pb = reinterpret_cast<const unsigned char*>(&b.raw);
    if (int c = std::memcmp(pa + 4, pb + 4, sizeof(Raw) - 4); c != 0) {
      return c < 0 ? std::strong_ordering::less : std::strong_ordering::greater;
    }
    return a.raw.prefixlen <=> b.raw.prefixlen;
  }
};
using ClassKey = LpmKey<sluice_class_key>;
using PolicyKey = LpmKey<sluice_policy_key>;

// One trie for both families, keyed by family first (sluice_abi.h): IPv4 a.b.c.d/n and the IPv6
// prefix ::ffff:a.b.c.d/(96 + n) are different keys, as they are different prefixes to the
// engine and to Kubernetes.
ClassKey classKey(const Prefix& prefix);
// protocol == kAnyProtocol: matches every protocol and port; block.bits == 0: every port of
// `protocol`; otherwise the ports of `block`.
PolicyKey policyKey(compiler::EndpointId endpoint, compiler::Direction direction,
                    compiler::ClassId peer, uint8_t protocol, PortBlock block);
compiler::EndpointId policyKeyEndpoint(const PolicyKey& key);
std::string toString(const ClassKey& key);
std::string toString(const PolicyKey& key);

// SLUICE_EP_* flags for an endpoint with applied policy (POLICY_READY always set). `audited`:
// an audit-mode policy selects it, so the datapath reports its new flows to the flow log.
uint32_t endpointFlags(bool ingressIsolated, bool egressIsolated, bool audited = false);

using PolicyEntries = std::map<PolicyKey, compiler::RuleId>;

// One endpoint's allow set as trie entries. Entries that lower to the same key (two rules
// allowing the same thing) become one; the smallest RuleId is credited. An entry with
// kAnyProtocol and ports other than "all" is read as "these ports of TCP, UDP and SCTP", the
// only protocols that have ports.
PolicyEntries lowerEndpoint(compiler::EndpointId id, const compiler::EndpointPolicy& policy);

// Everything the maps hold that the writer owns (conntrack, counters and events are the
// program's).
struct LoweredState {
  std::map<ClassKey, compiler::ClassId> classes;
  std::map<compiler::EndpointId, uint32_t> endpointFlags;  // endpoints with applied policy
  PolicyEntries policy;
  bool operator==(const LoweredState&) const = default;
};

LoweredState lower(const compiler::State& state);

template <typename K, typename V>
struct TableOps {
  std::vector<std::pair<K, V>> upsert;
  std::vector<K> remove;
  bool empty() const { return upsert.empty() && remove.empty(); }
};

// Operations to apply in this order: classes, policy upserts, endpoint flags, policy removals
// (make before break: an allow being replaced never disappears first).
struct MapOps {
  TableOps<ClassKey, compiler::ClassId> classes;
  TableOps<PolicyKey, compiler::RuleId> policy;
  // New flags of each changed endpoint id; 0 = no policy any more (packets are dropped).
  std::map<compiler::EndpointId, uint32_t> endpointFlags;
  bool empty() const { return classes.empty() && policy.empty() && endpointFlags.empty(); }
};

// What takes `have` to exactly `want`.
MapOps reconcile(const LoweredState& have, const LoweredState& want);

// Applies `diff` to `state` (the IR as last applied) and returns what takes `have` (the maps'
// contents) to the lowered result, looking only at the prefixes and endpoints the diff names.
MapOps lowerDiff(const LoweredState& have, compiler::State& state, const compiler::Diff& diff);

// The IR with `diff` applied.
void applyDiff(compiler::State& state, const compiler::Diff& diff);

// Updates `have` as if `ops` were written to the maps.
void applyOps(LoweredState& have, const MapOps& ops);

}  // namespace sluice::datapath::bpf
