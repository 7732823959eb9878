#include "tests/compiler/canonical.h"

#include <sstream>

namespace sluice::compiler::testing {

namespace {

std::string originName(const State& s, RuleId r) {
  if (r == kHostRule) return "(host)";
  if (r >= s.rules.size()) return "(unknown rule " + std::to_string(r) + ")";
  const RuleOrigin& o = s.rules[r];
  return o.policy + (o.direction == Direction::Ingress ? "/ingress/" : "/egress/") +
         std::to_string(o.rule);
}

}  // namespace

CanonicalState canonical(const State& s) {
  std::map<ClassId, std::string> names{{kAnyPeer, "any"}, {kHostClass, "host"}, {kWorldClass, "world"}};
  for (const auto& [prefix, cls] : s.classes) {
    if (cls < kFirstDynamicClass) continue;
    // std::map iterates prefixes in order, so the first one seen is the smallest.
    names.try_emplace(cls, "class[" + prefix.toString() + "]");
  }
  auto name = [&](ClassId c) {
    auto it = names.find(c);
    return it == names.end() ? "(dangling class " + std::to_string(c) + ")" : it->second;
  };
  CanonicalState out;
  for (const auto& [prefix, cls] : s.classes) out.classes[prefix.toString()] = name(cls);
  for (const auto& [id, ep] : s.endpoints) {
    CanonicalEndpoint& c = out.endpoints[id];
    c.ingressIsolated = ep.ingressIsolated;
    c.egressIsolated = ep.egressIsolated;
    c.audited = ep.audited;
    for (const auto& e : ep.entries) {
      c.entries.emplace(static_cast<int>(e.direction), name(e.peer), e.protocol, e.ports.first,
                        e.ports.last, originName(s, e.rule));
    }
  }
  return out;
}

std::string toString(const CanonicalState& s) {
  std::ostringstream o;
  for (const auto& [p, c] : s.classes) o << p << " -> " << c << "\n";
  for (const auto& [id, ep] : s.endpoints) {
    o << "endpoint " << id << " ingressIsolated=" << ep.ingressIsolated
      << " egressIsolated=" << ep.egressIsolated << (ep.audited ? " audited" : "") << "\n";
    for (const auto& [d, peer, proto, first, last, rule] : ep.entries) {
      o << "  " << (d == 0 ? "ingress" : "egress") << " " << peer << " proto=" << proto << " "
        << first << "-" << last << " " << rule << "\n";
    }
  }
  return o.str();
}

void applyDiff(State& s, const Diff& d) {
  for (const Prefix& p : d.classesRemove) s.classes.erase(p);
  for (const auto& [p, c] : d.classesUpsert) s.classes[p] = c;
  for (const auto& c : d.endpoints) {
    if (c.removed) {
      s.endpoints.erase(c.endpoint);
      continue;
    }
    EndpointPolicy& ep = s.endpoints[c.endpoint];
    ep.ingressIsolated = c.ingressIsolated;
    ep.egressIsolated = c.egressIsolated;
    ep.audited = c.audited;
    for (const auto& e : c.remove) ep.entries.erase(e);
    for (const auto& e : c.add) ep.entries.insert(e);
  }
  for (const auto& [id, origin] : d.rulesUpsert) {
    if (id >= s.rules.size()) s.rules.resize(id + 1);
    s.rules[id] = origin;
  }
  s.revision = d.revision;
}

}  // namespace sluice::compiler::testing
