// Endpoint allow sets: the IR entries (direction, peer class, protocol, ports, rule) of one
// endpoint, from the rules of the policies selecting it and the classes those rules name.
#include <algorithm>
#include <variant>

#include "policyd/compiler/compiler_impl.h"
#include "policyd/engine/selection.h"

namespace sluice::compiler {

EndpointPolicy Compiler::Impl::buildEndpoint(const EndpointView& ev) {
  EndpointPolicy out;
  out.ingressIsolated = !ev.selecting[0].empty();
  out.egressIsolated = !ev.selecting[1].empty();
  out.audited = ev.audited;
  for (int d = 0; d < kDirs; ++d) {
    const Direction dir = static_cast<Direction>(d);
    for (const auto& key : ev.selecting[d]) {
      const NetworkPolicy& pol = policies.at(key);
      const auto& list = rulesOf(pol, dir);
      for (size_t i = 0; i < list.size(); ++i) {
        const model::Rule& rule = list[i];
        const RuleId rid = ruleIds.at(RuleOrigin{key, dir, static_cast<int>(i)});
        // Numeric (or protocol-only) ports; ingress named ports resolve here, against the
        // endpoint's own pod: "the port on the pods selected by this policy".
        std::vector<std::pair<uint8_t, PortRange>> numeric;
        std::vector<std::pair<std::string, Protocol>> named;
        for (const auto& ps : rule.ports) {
          const auto proto = static_cast<uint8_t>(ps.protocol);
          if (const auto* n = std::get_if<uint16_t>(&ps.port)) {
            numeric.emplace_back(proto, PortRange{*n, ps.endPort.value_or(*n)});
          } else if (const auto* name = std::get_if<std::string>(&ps.port)) {
            if (dir == Direction::Ingress) {
              if (auto p = engine::resolveNamedPort(ev.pod, *name, ps.protocol)) {
                numeric.emplace_back(proto, PortRange{*p, *p});
              }
            } else {
              named.emplace_back(*name, ps.protocol);
            }
          } else {
            numeric.emplace_back(proto, PortRange{});
          }
        }
        auto emit = [&](ClassId peer) {
          if (rule.ports.empty()) {
            // "If this field is empty or missing, this rule matches all ports."
            out.entries.insert(AllowEntry{dir, peer, kAnyProtocol, PortRange{}, rid});
            return;
          }
          for (const auto& [proto, range] : numeric) {
            out.entries.insert(AllowEntry{dir, peer, proto, range, rid});
          }
        };
        auto emitNamed = [&](ClassId peer, const Signature& s) {
          for (const auto& [name, proto] : named) {
            auto it = std::lower_bound(s.res.begin(), s.res.end(), NamedRes{name, proto, 0});
            if (it != s.res.end() && it->name == name && it->protocol == proto) {
              out.entries.insert(AllowEntry{dir, peer, static_cast<uint8_t>(proto),
                                            PortRange{it->port, it->port}, rid});
            }
          }
        };
        auto cit = ruleClasses.find(rid);
        if (rule.peers.empty()) {
          // "If this field is empty or missing, this rule matches all sources/destinations."
          emit(kAnyPeer);
          if (!named.empty() && cit != ruleClasses.end()) {
            for (ClassId c : cit->second) emitNamed(c, *classSig.at(c));
          }
          continue;
        }
        if (cit == ruleClasses.end()) continue;
        for (ClassId c : cit->second) {
          const Signature& s = *classSig.at(c);
          emit(c);
          // A named port resolves against the destination pod, so it never matches an address
          // that only an ipBlock peer admitted.
          if (!named.empty() && contains(s.sel, rid)) emitNamed(c, s);
        }
      }
    }
  }
  if (out.ingressIsolated) {
    for (ClassId h : hostClasses) {
      out.entries.insert(AllowEntry{Direction::Ingress, h, kAnyProtocol, PortRange{}, kHostRule});
    }
  }
  return out;
}

}  // namespace sluice::compiler
