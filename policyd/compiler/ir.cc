#include "policyd/compiler/ir.h"

#include <algorithm>
#include <iterator>

namespace sluice::compiler {

namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr uint8_t kSctp = 132;

bool hasPorts(uint8_t protocol) {
  return protocol == kTcp || protocol == kUdp || protocol == kSctp;
}

// Does one allow entry admit (protocol, port)? Mirrors the lowering (datapath/bpf/lowering.h):
// kAnyProtocol with all ports admits every protocol; kAnyProtocol with a narrower range means
// "these ports of TCP, UDP and SCTP" (the only protocols with ports); protocols without ports
// are looked up with port 0.
bool entryAdmits(const AllowEntry& e, uint8_t protocol, uint16_t port) {
  if (e.protocol == kAnyProtocol && e.ports.all()) return true;
  if (e.protocol == kAnyProtocol) {
    if (!hasPorts(protocol)) return false;
  } else if (e.protocol != protocol) {
    return false;
  }
  const uint16_t p = hasPorts(protocol) ? port : 0;
  return p >= e.ports.first && p <= e.ports.last;
}

// The smallest rule among the entries of (direction, peer) admitting the packet. Entries are
// ordered by (direction, peer, ...) so this is one range of the set.
std::optional<RuleId> searchEntries(const EndpointPolicy& ep, Direction dir, ClassId peer,
                                    uint8_t protocol, uint16_t port) {
  AllowEntry lo;
  lo.direction = dir;
  lo.peer = peer;
  lo.protocol = 0;
  lo.ports = {0, 0};
  lo.rule = 0;
  std::optional<RuleId> best;
  for (auto it = ep.entries.lower_bound(lo);
       it != ep.entries.end() && it->direction == dir && it->peer == peer; ++it) {
    if (entryAdmits(*it, protocol, port) && (!best || it->rule < *best)) best = it->rule;
  }
  return best;
}

}  // namespace

Diff computeDiff(const State& from, const State& to) {
  Diff d;
  for (const auto& [prefix, cls] : to.classes) {
    auto it = from.classes.find(prefix);
    if (it == from.classes.end() || it->second != cls) d.classesUpsert.emplace(prefix, cls);
  }
  for (const auto& [prefix, cls] : from.classes) {
    if (!to.classes.contains(prefix)) d.classesRemove.push_back(prefix);
  }
  static const EndpointPolicy kEmpty;
  for (const auto& [id, ep] : to.endpoints) {
    auto it = from.endpoints.find(id);
    const bool existed = it != from.endpoints.end();
    const EndpointPolicy& old = existed ? it->second : kEmpty;
    if (existed && old == ep) continue;
    Diff::EndpointChange c;
    c.endpoint = id;
    c.ingressIsolated = ep.ingressIsolated;
    c.egressIsolated = ep.egressIsolated;
    c.audited = ep.audited;
    std::set_difference(ep.entries.begin(), ep.entries.end(), old.entries.begin(),
                        old.entries.end(), std::back_inserter(c.add));
    std::set_difference(old.entries.begin(), old.entries.end(), ep.entries.begin(),
                        ep.entries.end(), std::back_inserter(c.remove));
    d.endpoints.push_back(std::move(c));
  }
  for (const auto& [id, ep] : from.endpoints) {
    if (to.endpoints.contains(id)) continue;
    Diff::EndpointChange c;
    c.endpoint = id;
    c.removed = true;
    c.remove.assign(ep.entries.begin(), ep.entries.end());
    d.endpoints.push_back(std::move(c));
  }
  std::sort(d.endpoints.begin(), d.endpoints.end(),
            [](const auto& a, const auto& b) { return a.endpoint < b.endpoint; });
  for (size_t i = 0; i < to.rules.size(); ++i) {
    if (i >= from.rules.size() || from.rules[i] != to.rules[i]) {
      d.rulesUpsert.emplace_back(static_cast<RuleId>(i), to.rules[i]);
    }
  }
  d.revision = to.revision;
  return d;
}

ClassId classOf(const State& s, const IpAddr& addr) {
  // Longest prefix first; the class map holds few distinct lengths, but a reference lookup
  // only needs to be right, not fast.
  for (int len = addr.bits(); len >= 0; --len) {
    auto it = s.classes.find(Prefix(addr, len));
    if (it != s.classes.end()) return it->second;
  }
  return kWorldClass;  // what the datapath assumes when nothing covers the address
}

std::optional<RuleId> lookup(const State& s, EndpointId ep, Direction dir, const IpAddr& peer,
                             uint8_t protocol, uint16_t port) {
  auto it = s.endpoints.find(ep);
  if (it == s.endpoints.end()) return std::nullopt;  // no policy applied yet: fail closed
  const ClassId cls = classOf(s, peer);
  // Checked before isolation, as the datapath does: kubelet probes must reach every pod.
  if (dir == Direction::Ingress && cls == kHostClass) return kHostRule;
  const bool isolated =
      dir == Direction::Ingress ? it->second.ingressIsolated : it->second.egressIsolated;
  if (!isolated) return kNotIsolated;
  if (auto r = searchEntries(it->second, dir, cls, protocol, port)) return r;
  return searchEntries(it->second, dir, kAnyPeer, protocol, port);
}

}  // namespace sluice::compiler
