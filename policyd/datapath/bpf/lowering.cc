#include "policyd/datapath/bpf/lowering.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <set>

namespace sluice::datapath::bpf {

using compiler::AllowEntry;
using compiler::ClassId;
using compiler::Direction;
using compiler::EndpointId;
using compiler::EndpointPolicy;
using compiler::RuleId;

std::vector<PortBlock> decomposePortRange(compiler::PortRange range) {
  std::vector<PortBlock> blocks;
  if (range.first > range.last) return blocks;
  // Greedy from the low end: the largest block that starts at `next` (aligned) and does not
  // pass `last`. 32-bit arithmetic so 65535 + 1 does not wrap.
  uint32_t next = range.first;
  const uint32_t last = range.last;
  while (next <= last) {
    int size = 16;  // log2 of the block size
    while (size > 0 && ((next & ((1u << size) - 1)) != 0 || next + (1u << size) - 1 > last)) {
      --size;
    }
    blocks.push_back(PortBlock{static_cast<uint16_t>(next), static_cast<uint8_t>(16 - size)});
    next += 1u << size;
  }
  return blocks;
}

ClassKey classKey(const Prefix& prefix) {
  ClassKey key;
  const bool v4 = prefix.addr().isV4();
  key.raw.prefixlen = static_cast<uint32_t>(SLUICE_CLASS_PREFIX_FAMILY + prefix.len());
  key.raw.family = v4 ? 4 : 6;
  // Prefix already masks host bits; an IPv4 address fills the first 4 bytes.
  std::memcpy(key.raw.addr, prefix.addr().bytes().data(), v4 ? 4 : 16);
  return key;
}

PolicyKey policyKey(EndpointId endpoint, Direction direction, ClassId peer, uint8_t protocol,
                    PortBlock block) {
  PolicyKey key;
  key.raw.endpoint = htonl(endpoint);
  key.raw.direction = static_cast<uint8_t>(direction);
  key.raw.peer_class = htonl(peer);
  if (protocol == compiler::kAnyProtocol) {
    key.raw.prefixlen = SLUICE_POLICY_PREFIX_PEER;
    return key;
  }
  key.raw.protocol = protocol;
  if (block.bits == 0) {
    key.raw.prefixlen = SLUICE_POLICY_PREFIX_PROTO;
    return key;
  }
  const uint16_t mask = static_cast<uint16_t>(0xffffu << (16 - block.bits));
  key.raw.port = htons(static_cast<uint16_t>(block.first & mask));
  key.raw.prefixlen = SLUICE_POLICY_PREFIX_PORT + block.bits;
  return key;
}

EndpointId policyKeyEndpoint(const PolicyKey& key) { return ntohl(key.raw.endpoint); }

std::string toString(const ClassKey& key) {
  const int len = static_cast<int>(key.raw.prefixlen) - SLUICE_CLASS_PREFIX_FAMILY;
  if (key.raw.family == 4) {
    const uint8_t* b = key.raw.addr;
    uint32_t v4 = (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
    return IpAddr::v4(v4).toString() + "/" + std::to_string(len);
  }
  std::array<uint8_t, 16> bytes;
  std::memcpy(bytes.data(), key.raw.addr, 16);
  return IpAddr::v6(bytes).toString() + "/" + std::to_string(len);
}

std::string toString(const PolicyKey& key) {
  std::string s = "endpoint=" + std::to_string(ntohl(key.raw.endpoint)) +
                  " direction=" + (key.raw.direction == SLUICE_DIR_INGRESS ? "ingress" : "egress") +
                  " class=" + std::to_string(ntohl(key.raw.peer_class));
  if (key.raw.prefixlen <= SLUICE_POLICY_PREFIX_PEER) return s + " protocol=any";
  s += " protocol=" + std::to_string(key.raw.protocol);
  if (key.raw.prefixlen <= SLUICE_POLICY_PREFIX_PORT) return s + " ports=all";
  const unsigned bits = key.raw.prefixlen - SLUICE_POLICY_PREFIX_PORT;
  const PortBlock block{ntohs(key.raw.port), static_cast<uint8_t>(bits)};
  return s + " ports=" + std::to_string(block.first) + "-" + std::to_string(block.last());
}

uint32_t endpointFlags(bool ingressIsolated, bool egressIsolated, bool audited) {
  return SLUICE_EP_POLICY_READY | (ingressIsolated ? SLUICE_EP_INGRESS_ISOLATED : 0u) |
         (egressIsolated ? SLUICE_EP_EGRESS_ISOLATED : 0u) | (audited ? SLUICE_EP_AUDITED : 0u);
}

namespace {

void insertCredit(PolicyEntries& out, const PolicyKey& key, RuleId rule) {
  auto [it, inserted] = out.emplace(key, rule);
  if (!inserted && rule < it->second) it->second = rule;
}

constexpr uint8_t kPortProtocols[] = {6, 17, 132};  // TCP, UDP, SCTP

void lowerEntry(PolicyEntries& out, EndpointId id, const AllowEntry& e) {
  if (e.protocol == compiler::kAnyProtocol && e.ports.all()) {
    insertCredit(out, policyKey(id, e.direction, e.peer, compiler::kAnyProtocol, {}), e.rule);
    return;
  }
  const auto blocks = decomposePortRange(e.ports);
  auto emit = [&](uint8_t protocol) {
    for (const PortBlock& b : blocks)
      insertCredit(out, policyKey(id, e.direction, e.peer, protocol, b), e.rule);
  };
  if (e.protocol == compiler::kAnyProtocol) {
    for (uint8_t p : kPortProtocols) emit(p);
  } else {
    emit(e.protocol);
  }
}

PolicyKey endpointLowerBound(EndpointId id) {
  PolicyKey k;
  k.raw.endpoint = htonl(id);
  return k;
}

template <typename K, typename V>
void reconcileTable(const std::map<K, V>& have, const std::map<K, V>& want, TableOps<K, V>& ops) {
  for (const auto& [k, v] : want) {
    auto it = have.find(k);
    if (it == have.end() || it->second != v) ops.upsert.emplace_back(k, v);
  }
  for (const auto& [k, v] : have) {
    if (!want.contains(k)) ops.remove.push_back(k);
  }
}

}  // namespace

PolicyEntries lowerEndpoint(EndpointId id, const EndpointPolicy& policy) {
  PolicyEntries out;
  for (const AllowEntry& e : policy.entries) lowerEntry(out, id, e);
  return out;
}

LoweredState lower(const compiler::State& state) {
  LoweredState out;
  for (const auto& [prefix, cls] : state.classes) out.classes[classKey(prefix)] = cls;
  for (const auto& [id, ep] : state.endpoints) {
    out.endpointFlags[id] = endpointFlags(ep.ingressIsolated, ep.egressIsolated, ep.audited);
    out.policy.merge(lowerEndpoint(id, ep));
  }
  return out;
}

MapOps reconcile(const LoweredState& have, const LoweredState& want) {
  MapOps ops;
  reconcileTable(have.classes, want.classes, ops.classes);
  reconcileTable(have.policy, want.policy, ops.policy);
  for (const auto& [id, flags] : want.endpointFlags) {
    auto it = have.endpointFlags.find(id);
    if (it == have.endpointFlags.end() || it->second != flags) ops.endpointFlags[id] = flags;
  }
  for (const auto& [id, flags] : have.endpointFlags) {
    if (!want.endpointFlags.contains(id)) ops.endpointFlags[id] = 0;
  }
  return ops;
}

void applyDiff(compiler::State& state, const compiler::Diff& diff) {
  for (const Prefix& p : diff.classesRemove) state.classes.erase(p);
  for (const auto& [p, cls] : diff.classesUpsert) state.classes[p] = cls;
  for (const auto& change : diff.endpoints) {
    if (change.removed) {
      state.endpoints.erase(change.endpoint);
      continue;
    }
    EndpointPolicy& ep = state.endpoints[change.endpoint];
    ep.ingressIsolated = change.ingressIsolated;
    ep.egressIsolated = change.egressIsolated;
    ep.audited = change.audited;
    for (const AllowEntry& e : change.remove) ep.entries.erase(e);
    for (const AllowEntry& e : change.add) ep.entries.insert(e);
  }
  for (const auto& [id, origin] : diff.rulesUpsert) {
    if (id >= state.rules.size()) state.rules.resize(id + 1);
    state.rules[id] = origin;
  }
  state.revision = diff.revision;
}

MapOps lowerDiff(const LoweredState& have, compiler::State& state, const compiler::Diff& diff) {
  applyDiff(state, diff);
  MapOps ops;

  std::set<Prefix> prefixes(diff.classesRemove.begin(), diff.classesRemove.end());
  for (const auto& [p, cls] : diff.classesUpsert) prefixes.insert(p);
  for (const Prefix& p : prefixes) {
    const ClassKey key = classKey(p);
    auto want = state.classes.find(p);
    auto cur = have.classes.find(key);
    if (want != state.classes.end()) {
      if (cur == have.classes.end() || cur->second != want->second) {
        ops.classes.upsert.emplace_back(key, want->second);
      }
    } else if (cur != have.classes.end()) {
      ops.classes.remove.push_back(key);
    }
  }

  std::set<EndpointId> touched;
  for (const auto& change : diff.endpoints) touched.insert(change.endpoint);
  for (EndpointId id : touched) {
    PolicyEntries want;
    uint32_t flags = 0;
    if (auto it = state.endpoints.find(id); it != state.endpoints.end()) {
      want = lowerEndpoint(id, it->second);
      flags =
          endpointFlags(it->second.ingressIsolated, it->second.egressIsolated, it->second.audited);
    }
    for (const auto& [k, rule] : want) {
      auto cur = have.policy.find(k);
      if (cur == have.policy.end() || cur->second != rule) ops.policy.upsert.emplace_back(k, rule);
    }
    for (auto it = have.policy.lower_bound(endpointLowerBound(id));
         it != have.policy.end() && policyKeyEndpoint(it->first) == id; ++it) {
      if (!want.contains(it->first)) ops.policy.remove.push_back(it->first);
    }
    auto cur = have.endpointFlags.find(id);
    const uint32_t curFlags = cur == have.endpointFlags.end() ? 0 : cur->second;
    if (curFlags != flags) ops.endpointFlags[id] = flags;
  }
  return ops;
}

void applyOps(LoweredState& have, const MapOps& ops) {
  for (const auto& [k, v] : ops.classes.upsert) have.classes[k] = v;
  for (const auto& k : ops.classes.remove) have.classes.erase(k);
  for (const auto& [k, v] : ops.policy.upsert) have.policy[k] = v;
  for (const auto& k : ops.policy.remove) have.policy.erase(k);
  for (const auto& [id, flags] : ops.endpointFlags) {
    if (flags == 0) {
      have.endpointFlags.erase(id);
    } else {
      have.endpointFlags[id] = flags;
    }
  }
}

}  // namespace sluice::datapath::bpf
