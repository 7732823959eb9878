#include "policyd/datapath/nft/lowering.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "policyd/datapath/bpf/lowering.h"  // applyDiff, until it moves to the IR (issue 9)
#include "policyd/datapath/nft/nflog.h"

namespace sluice::datapath::nft {

namespace {

using compiler::AllowEntry;
using compiler::ClassId;
using compiler::Direction;
using compiler::EndpointId;
using compiler::PortRange;
using compiler::RuleId;

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr uint8_t kSctp = 132;
constexpr uint8_t kPortProtocols[] = {kTcp, kUdp, kSctp};

U128 maxOf(Family f) { return f == Family::V4 ? U128{0xffffffffu} : ~U128{0}; }

// Longest prefix wins: prefixes either nest or are disjoint, so one sorted sweep with a stack
// of the enclosing prefixes assigns every address the class of the innermost prefix.
void flattenFamily(const std::map<Prefix, ClassId>& classes, Family f,
                   std::map<ClassId, std::vector<AddrInterval>>& out) {
  struct P {
    U128 first, last;
    int len;
    ClassId cls;
  };
  std::vector<P> ps;
  const int bits = f == Family::V4 ? 32 : 128;
  for (const auto& [prefix, cls] : classes) {
    if (prefix.family() != f) continue;
    const U128 first = toU128(prefix.addr());
    const int hostBits = bits - prefix.len();
    const U128 span = hostBits >= 128 ? ~U128{0} : ((U128{1} << hostBits) - 1);
    ps.push_back({first, first + span, prefix.len(), cls});
  }
  std::sort(ps.begin(), ps.end(), [](const P& a, const P& b) {
    return a.first != b.first ? a.first < b.first : a.len < b.len;
  });

  std::vector<std::pair<U128, ClassId>> raw;  // (first, class) of consecutive segments
  std::vector<std::pair<U128, ClassId>> stack{{maxOf(f), compiler::kWorldClass}};
  U128 cur = 0;
  bool done = false;  // cur passed the end of the address space
  auto emitUpTo = [&](U128 last, ClassId cls) {
    if (done || last < cur) return;
    raw.emplace_back(cur, cls);
    if (last == maxOf(f)) {
      done = true;
    } else {
      cur = last + 1;
    }
  };
  for (const P& p : ps) {
    while (stack.back().first < p.first) {
      emitUpTo(stack.back().first, stack.back().second);
      stack.pop_back();
    }
    if (p.first > 0) emitUpTo(p.first - 1, stack.back().second);
    stack.emplace_back(p.last, p.cls);
  }
  while (!stack.empty()) {
    emitUpTo(stack.back().first, stack.back().second);
    stack.pop_back();
  }
  // Merge neighbours of the same class, then hand out [first, next.first - 1].
  std::vector<std::pair<U128, ClassId>> merged;
  for (const auto& seg : raw) {
    if (merged.empty() || merged.back().second != seg.second) merged.push_back(seg);
  }
  for (size_t i = 0; i < merged.size(); ++i) {
    const U128 last = i + 1 < merged.size() ? merged[i + 1].first - 1 : maxOf(f);
    out[merged[i].second].push_back({fromU128(f, merged[i].first), fromU128(f, last)});
  }
}

const char* protoName(uint8_t p) {
  switch (p) {
    case kTcp:
      return "tcp";
    case kUdp:
      return "udp";
    default:
      return "sctp";
  }
}

std::string range(const std::string& a, const std::string& b) { return a == b ? a : a + "-" + b; }

std::string addrRange(const AddrInterval& i) {
  return range(i.first.toString(), i.last.toString());
}

std::string portRange(const PortRange& r) {
  return range(std::to_string(r.first), std::to_string(r.last));
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

const char* dirName(Direction d) { return d == Direction::Ingress ? "ingress" : "egress"; }

std::string epChain(EndpointId id, const char* suffix) {
  return "ep_" + std::to_string(id) + "_" + suffix;
}

std::string epSet(EndpointId id, Direction d, const char* suffix) {
  return "ep_" + std::to_string(id) + "_" + (d == Direction::Ingress ? "in" : "out") + "_" + suffix;
}

std::string dropChain(const std::string& reason) {
  std::string n = "drop_" + reason;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

// The allow entries of one peer (a class or kAnyPeer) in one direction, as what the maps hold.
struct PeerAllows {
  std::optional<RuleId> anyProtocol;                // smallest any-protocol, all-ports rule
  std::map<uint8_t, std::vector<PortPiece>> ports;  // protocol -> disjoint pieces
};

PeerAllows peerAllows(const std::vector<const AllowEntry*>& entries) {
  PeerAllows out;
  std::map<uint8_t, std::vector<PortPiece>> ranges;
  for (const AllowEntry* e : entries) {
    if (e->protocol == compiler::kAnyProtocol && e->ports.all()) {
      if (!out.anyProtocol || e->rule < *out.anyProtocol) out.anyProtocol = e->rule;
    } else if (e->protocol == compiler::kAnyProtocol) {
      for (uint8_t p : kPortProtocols) ranges[p].push_back({e->ports, e->rule});
    } else {
      ranges[e->protocol].push_back({e->ports, e->rule});
    }
  }
  // The any-protocol rule also admits every port of every port protocol: folded in so a TCP
  // packet is credited to the smallest rule among all that admit it, as the IR does.
  if (out.anyProtocol) {
    for (uint8_t p : kPortProtocols) ranges[p].push_back({PortRange{}, *out.anyProtocol});
  }
  for (auto& [p, rs] : ranges) out.ports[p] = splitPorts(rs);
  return out;
}

enum class ClassMap { Ports, Any };  // ep_<id>_<dir>_ports4/6 or ep_<id>_<dir>_any4/6

// The elements one address interval of a peer class puts in an endpoint direction's maps.
template <typename Emit>
void intervalElements(const PeerAllows& a, const AddrInterval& iv, Emit emit) {
  const std::string addr = addrRange(iv);
  for (const auto& [p, pieces] : a.ports) {
    for (const PortPiece& pc : pieces) {
      emit(ClassMap::Ports, Element{addr + " . " + protoName(p) + " . " + portRange(pc.ports),
                                    quoted(ruleCounterName(pc.rule))});
    }
  }
  if (a.anyProtocol) emit(ClassMap::Any, Element{addr, quoted(ruleCounterName(*a.anyProtocol))});
}

struct Lowering {
  const compiler::State& state;
  const Attachments& attachments;
  const NftOptions& opts;
  std::map<ClassId, std::vector<AddrInterval>> intervals;
  Table t;
  // Partial lowering (lowerDiffInPlace): the endpoint objects of these endpoints only; the
  // global objects are always lowered whole. Null: everything.
  const std::set<EndpointId>* only = nullptr;

  bool wanted(EndpointId id) const { return only == nullptr || only->contains(id); }

  // Logs (rate limited; over the limit the rule does not match) and drops. The log rule sits
  // where the endpoint and direction are known, so its prefix names them for the flow log.
  void logAndDrop(Chain& c, const std::string& reason, Direction d, EndpointId id) const {
    c.rules.push_back("limit name \"drop_log\" log prefix " +
                      quoted(formatLogPrefix(reason, d, id)) + " group " +
                      std::to_string(opts.logGroup));
    c.rules.push_back("goto " + dropChain(reason));
  }

  void dropChains() {
    for (const std::string& reason : dropReasons()) {
      const std::string counter = dropChain(reason);
      t.counters.insert(counter);
      t.chains[counter] = Chain{"", {"counter name " + quoted(counter) + " drop"}};
    }
    // No endpoint owns the interface: the base chains know only which side it is on.
    for (Direction d : {Direction::Ingress, Direction::Egress}) {
      Chain c;
      logAndDrop(c, "no-endpoint", d, 0);
      t.chains[dropChain("no-endpoint") + "_" + dirName(d)] = std::move(c);
    }
  }

  void globals() {
    Set rev{"mark", false, {{std::to_string(state.revision & 0xffffffffu), ""}}};
    t.sets["revision"] = rev;
    const std::string r = std::to_string(state.revision & 0xffffffffu);
    t.sets["revision_mark"] = Set{"nf_proto : mark", false, {{"ipv4", r}, {"ipv6", r}}};
    Set host4{"ipv4_addr", true, {}}, host6{"ipv6_addr", true, {}};
    if (auto it = intervals.find(compiler::kHostClass); it != intervals.end()) {
      for (const AddrInterval& i : it->second) {
        (i.first.isV4() ? host4 : host6).elements.insert({addrRange(i), ""});
      }
    }
    t.sets["host4"] = std::move(host4);
    t.sets["host6"] = std::move(host6);
    Set from{"ifname : verdict", false, {}}, to{"ifname : verdict", false, {}};
    Set pods{"ifname", false, {}};
    Set src4{"ifname . ipv4_addr", false, {}}, src6{"ifname . ipv6_addr", false, {}};
    for (const auto& [id, att] : attachments) {
      // Always the endpoint's chains: readiness changes a chain, not the dispatch element, and
      // the element names the endpoint id (read back by endpoints()).
      from.elements.insert({quoted(att.ifname), "jump " + epChain(id, "from")});
      to.elements.insert({quoted(att.ifname), "jump " + epChain(id, "to")});
      pods.elements.insert({quoted(att.ifname), ""});
      for (const IpAddr& a : att.ips) {
        (a.isV4() ? src4 : src6).elements.insert({quoted(att.ifname) + " . " + a.toString(), ""});
      }
      if (!state.endpoints.contains(id) && wanted(id)) {
        // Attached before its policy is applied: fail closed.
        Chain from, to;
        logAndDrop(from, "not-ready", Direction::Egress, id);
        logAndDrop(to, "not-ready", Direction::Ingress, id);
        t.chains[epChain(id, "from")] = std::move(from);
        t.chains[epChain(id, "to")] = std::move(to);
      }
    }
    t.sets["pod_src4"] = std::move(src4);
    t.sets["pod_src6"] = std::move(src6);
    t.sets["from_pod"] = std::move(from);
    t.sets["to_pod"] = std::move(to);
    t.sets["pod_ifaces"] = std::move(pods);

    for (const char* hook : {"forward", "input", "output"}) {
      Chain c;
      c.base = std::string("type filter hook ") + hook + " priority filter; policy accept;";
      const bool from = std::string(hook) != "output";
      const bool to = std::string(hook) != "input";
      // Neighbour discovery the pod needs in any state, on its own link only (as the bpf
      // program's nd_valid): hop limit 255, a type the direction may carry, link-scope
      // addresses. A forwarded packet is never on-link, so the forward chain bypasses nothing;
      // every other ND-typed message reaches the endpoint chains, which drop it as nd-invalid.
      const std::string onLink = "{ fe80::/10, ff02::1, ff02::2, ff02::1:ff00:0/104 }";
      if (std::string(hook) == "input") {
        const std::string nd =
            "iifname @pod_ifaces icmpv6 type { nd-router-solicit, nd-neighbor-solicit, "
            "nd-neighbor-advert } ip6 hoplimit 255 ";
        c.rules.push_back(nd + "ip6 saddr { ::, fe80::/10 } ip6 daddr " + onLink + " accept");
        c.rules.push_back(nd + "iifname . ip6 saddr @pod_src6 ip6 daddr " + onLink + " accept");
      }
      if (std::string(hook) == "output") {
        const std::string nd =
            "oifname @pod_ifaces icmpv6 type { nd-router-advert, nd-neighbor-solicit, "
            "nd-neighbor-advert, nd-redirect } ip6 hoplimit 255 ";
        c.rules.push_back(nd + "ip6 daddr " + onLink + " accept");
        c.rules.push_back(nd + "oifname . ip6 daddr @pod_src6 accept");
      }
      if (from) c.rules.push_back("iifname vmap @from_pod");
      if (to) c.rules.push_back("oifname vmap @to_pod");
      if (!opts.podIfPrefix.empty()) {
        // Reached by known pods too (their chains return): only interfaces no endpoint owns.
        const std::string pattern = quoted(opts.podIfPrefix + "*");
        if (from) {
          c.rules.push_back("iifname " + pattern +
                            " iifname != @pod_ifaces goto drop_no_endpoint_egress");
        }
        if (to) {
          c.rules.push_back("oifname " + pattern +
                            " oifname != @pod_ifaces goto drop_no_endpoint_ingress");
        }
      }
      if (from)
        c.rules.push_back("iifname @pod_ifaces ct mark set meta nfproto map @revision_mark");
      if (to) c.rules.push_back("oifname @pod_ifaces ct mark set meta nfproto map @revision_mark");
      t.chains[hook] = std::move(c);
    }
  }

  void counters() {
    for (size_t i = 0; i < state.rules.size(); ++i) {
      t.counters.insert(ruleCounterName(static_cast<RuleId>(i)));
    }
    for (const auto& [id, ep] : state.endpoints) {
      for (const AllowEntry& e : ep.entries) t.counters.insert(ruleCounterName(e.rule));
    }
  }

  std::string established() const {
    return opts.established == EstablishedMode::Keep
               ? "ct state established,related return"
               : "ct state established,related ct mark @revision return";
  }

  void endpoint(EndpointId id, const compiler::EndpointPolicy& ep) {
    Chain from, to;
    // ND-typed messages the base chains did not pass as on-link (see globals()).
    const std::string ndTypes =
        "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, "
        "nd-neighbor-advert, nd-redirect } goto ";
    from.rules.push_back(ndTypes + epChain(id, "nd_from"));
    to.rules.push_back(ndTypes + epChain(id, "nd_to"));
    Chain ndFrom, ndTo;
    logAndDrop(ndFrom, "nd-invalid", Direction::Egress, id);
    logAndDrop(ndTo, "nd-invalid", Direction::Ingress, id);
    t.chains[epChain(id, "nd_from")] = std::move(ndFrom);
    t.chains[epChain(id, "nd_to")] = std::move(ndTo);
    if (auto it = attachments.find(id); it != attachments.end() && !it->second.ips.empty()) {
      // Only the pod's own source addresses (pod_src4/6); a family it has no address in is
      // spoofed too.
      const std::string spoofed = epChain(id, "spoofed");
      from.rules.push_back("meta nfproto ipv4 iifname . ip saddr != @pod_src4 goto " + spoofed);
      from.rules.push_back("meta nfproto ipv6 iifname . ip6 saddr != @pod_src6 goto " + spoofed);
      Chain drop;
      logAndDrop(drop, "spoofed", Direction::Egress, id);
      t.chains[spoofed] = std::move(drop);
    }
    if (auto it = attachments.find(id); it != attachments.end() && !it->second.ips.empty()) {
      // An ICMP error the pod sends quotes a packet sent to it (the bpf program: the error's
      // source is the quoted packet's destination). Conntrack relates an error to a flow by the
      // quoted tuple alone, so without this a third pod could reset or probe another pod's flow
      // by quoting it; the source is already known to be the pod's own (spoof check above).
      const std::string icmp4 =
          "ct state related icmp type { destination-unreachable, time-exceeded, "
          "parameter-problem } iifname . ct original ip saddr != @pod_src4 iifname . ct original "
          "ip daddr != @pod_src4 goto ";
      const std::string icmp6 =
          "ct state related icmpv6 type { destination-unreachable, packet-too-big, "
          "time-exceeded, parameter-problem } iifname . ct original ip6 saddr != @pod_src6 "
          "iifname . ct original ip6 daddr != @pod_src6 goto ";
      from.rules.push_back(icmp4 + epChain(id, "icmp_from"));
      from.rules.push_back(icmp6 + epChain(id, "icmp_from"));
    }
    for (Chain* c : {&from, &to}) c->rules.push_back(established());
    // ICMP errors pass only as related to a tracked flow (conntrack matched the quoted header);
    // a related one whose flow is marked with an older revision is re-checked below like its
    // flow. Anything else is dropped as icmp-unrelated whatever the policy, so errors cannot
    // probe or reset others' connections (the bpf program's rule).
    const std::string icmpErrors =
        "ct state != related icmp type { destination-unreachable, "
        "time-exceeded, parameter-problem } goto ";
    const std::string icmp6Errors =
        "ct state != related icmpv6 type { destination-unreachable, packet-too-big, "
        "time-exceeded, parameter-problem } goto ";
    from.rules.push_back(icmpErrors + epChain(id, "icmp_from"));
    from.rules.push_back(icmp6Errors + epChain(id, "icmp_from"));
    to.rules.push_back(icmpErrors + epChain(id, "icmp_to"));
    to.rules.push_back(icmp6Errors + epChain(id, "icmp_to"));
    Chain icmpFrom, icmpTo;
    logAndDrop(icmpFrom, "icmp-unrelated", Direction::Egress, id);
    logAndDrop(icmpTo, "icmp-unrelated", Direction::Ingress, id);
    t.chains[epChain(id, "icmp_from")] = std::move(icmpFrom);
    t.chains[epChain(id, "icmp_to")] = std::move(icmpTo);
    from.rules.push_back("ct direction original goto " + epChain(id, "egress"));
    from.rules.push_back("goto " + epChain(id, "ingress"));
    to.rules.push_back("ct direction original goto " + epChain(id, "ingress"));
    to.rules.push_back("goto " + epChain(id, "egress"));
    t.chains[epChain(id, "from")] = std::move(from);
    t.chains[epChain(id, "to")] = std::move(to);
    direction(id, ep, Direction::Ingress, ep.ingressIsolated);
    direction(id, ep, Direction::Egress, ep.egressIsolated);
  }

  void direction(EndpointId id, const compiler::EndpointPolicy& ep, Direction d, bool isolated) {
    Chain c;
    const std::string chainName = epChain(id, dirName(d));
    if (!isolated) {
      t.chains[chainName] = std::move(c);  // empty: returns, everything allowed
      return;
    }
    const std::string ports4 = epSet(id, d, "ports4"), ports6 = epSet(id, d, "ports6");
    const std::string any4 = epSet(id, d, "any4"), any6 = epSet(id, d, "any6");
    const std::string anyPeer = epSet(id, d, "anypeer"), anyAll = epSet(id, d, "anyall");
    Set sPorts4{"ipv4_addr . inet_proto . inet_service : counter", true, {}};
    Set sPorts6{"ipv6_addr . inet_proto . inet_service : counter", true, {}};
    Set sAny4{"ipv4_addr : counter", true, {}}, sAny6{"ipv6_addr : counter", true, {}};
    Set sAnyPeer{"inet_proto . inet_service : counter", true, {}};
    Set sAnyAll{"nf_proto : counter", false, {}};

    std::map<ClassId, std::vector<const AllowEntry*>> byPeer;
    for (const AllowEntry& e : ep.entries) {
      if (e.direction == d) byPeer[e.peer].push_back(&e);
    }
    for (const auto& [peer, entries] : byPeer) {
      const PeerAllows a = peerAllows(entries);
      if (peer == compiler::kAnyPeer) {
        for (const auto& [p, pieces] : a.ports) {
          for (const PortPiece& pc : pieces) {
            sAnyPeer.elements.insert({std::string(protoName(p)) + " . " + portRange(pc.ports),
                                      quoted(ruleCounterName(pc.rule))});
          }
        }
        if (a.anyProtocol) {
          for (const char* f : {"ipv4", "ipv6"}) {
            sAnyAll.elements.insert({f, quoted(ruleCounterName(*a.anyProtocol))});
          }
        }
        continue;
      }
      auto it = intervals.find(peer);
      if (it == intervals.end()) continue;  // a class with no addresses matches nothing
      for (const AddrInterval& iv : it->second) {
        intervalElements(a, iv, [&](ClassMap m, Element e) {
          Set& target = m == ClassMap::Ports ? (iv.first.isV4() ? sPorts4 : sPorts6)
                                             : (iv.first.isV4() ? sAny4 : sAny6);
          target.elements.insert(std::move(e));
        });
      }
    }
    const char* peerField = d == Direction::Ingress ? "saddr" : "daddr";
    const std::string v4 = std::string("ct original ip ") + peerField;
    const std::string v6 = std::string("ct original ip6 ") + peerField;
    const std::string l4 = "meta l4proto { tcp, udp, sctp } ";
    if (d == Direction::Ingress) {
      // The node's own addresses always reach its pods (kubelet probes): before isolation.
      c.rules.push_back(v4 + " @host4 return");
      c.rules.push_back(v6 + " @host6 return");
    }
    c.rules.push_back(l4 + "counter name " + v4 + " . meta l4proto . ct original proto-dst map @" +
                      ports4 + " return");
    c.rules.push_back(l4 + "counter name " + v6 + " . meta l4proto . ct original proto-dst map @" +
                      ports6 + " return");
    c.rules.push_back("counter name " + v4 + " map @" + any4 + " return");
    c.rules.push_back("counter name " + v6 + " map @" + any6 + " return");
    c.rules.push_back(l4 + "counter name meta l4proto . ct original proto-dst map @" + anyPeer +
                      " return");
    c.rules.push_back("counter name meta nfproto map @" + anyAll + " return");
    logAndDrop(c, "policy", d, id);
    t.chains[chainName] = std::move(c);
    t.sets[ports4] = std::move(sPorts4);
    t.sets[ports6] = std::move(sPorts6);
    t.sets[any4] = std::move(sAny4);
    t.sets[any6] = std::move(sAny6);
    t.sets[anyPeer] = std::move(sAnyPeer);
    t.sets[anyAll] = std::move(sAnyAll);
  }
};

template <typename K, typename V>
void diffKeys(const std::map<K, V>& have, const std::map<K, V>& want, std::set<K>& removed,
              std::map<K, V>& added) {
  for (const auto& [k, v] : want) {
    if (!have.contains(k)) added.emplace(k, v);
  }
  for (const auto& [k, v] : have) {
    if (!want.contains(k)) removed.insert(k);
  }
}

}  // namespace

std::string ruleCounterName(RuleId rule) { return "rule_" + std::to_string(rule); }

const std::vector<std::string>& dropReasons() {
  static const std::vector<std::string> kReasons = {"policy",  "not-ready",  "no-endpoint",
                                                    "spoofed", "nd-invalid", "icmp-unrelated"};
  return kReasons;
}

std::map<ClassId, std::vector<AddrInterval>> flattenClasses(
    const std::map<Prefix, ClassId>& classes) {
  std::map<ClassId, std::vector<AddrInterval>> out;
  flattenFamily(classes, Family::V4, out);
  flattenFamily(classes, Family::V6, out);
  return out;
}

std::vector<PortPiece> splitPorts(const std::vector<PortPiece>& ranges) {
  // Boundaries where coverage can change; each elementary segment gets the smallest rule.
  std::set<uint32_t> cuts;
  for (const PortPiece& r : ranges) {
    cuts.insert(r.ports.first);
    cuts.insert(static_cast<uint32_t>(r.ports.last) + 1);
  }
  std::vector<PortPiece> out;
  for (auto it = cuts.begin(); it != cuts.end() && std::next(it) != cuts.end(); ++it) {
    const uint32_t first = *it, last = *std::next(it) - 1;
    std::optional<RuleId> best;
    for (const PortPiece& r : ranges) {
      if (r.ports.first <= first && last <= r.ports.last && (!best || r.rule < *best)) {
        best = r.rule;
      }
    }
    if (!best) continue;
    if (!out.empty() && out.back().rule == *best &&
        static_cast<uint32_t>(out.back().ports.last) + 1 == first) {
      out.back().ports.last = static_cast<uint16_t>(last);
    } else {
      out.push_back({{static_cast<uint16_t>(first), static_cast<uint16_t>(last)}, *best});
    }
  }
  return out;
}

Table lower(const compiler::State& state, const Attachments& attachments, const NftOptions& opts) {
  Lowering l{state, attachments, opts, flattenClasses(state.classes), {}};
  l.dropChains();
  l.globals();
  l.counters();
  for (const auto& [id, ep] : state.endpoints) l.endpoint(id, ep);
  return std::move(l.t);
}

namespace {

std::string endpointPrefix(EndpointId id) { return "ep_" + std::to_string(id) + "_"; }

// The objects of `t` named ep_<id>_... ("ep_1_" is not a prefix of "ep_10_...": the id ends at
// the underscore).
template <typename V>
void copyEndpointObjects(const std::map<std::string, V>& from, EndpointId id,
                         std::map<std::string, V>& to) {
  const std::string p = endpointPrefix(id);
  for (auto it = from.lower_bound(p); it != from.end() && it->first.starts_with(p); ++it) {
    to.insert(*it);
  }
}

template <typename V>
void copyGlobalObjects(const std::map<std::string, V>& from, std::map<std::string, V>& to) {
  for (const auto& [name, v] : from) {
    if (!name.starts_with("ep_")) to.emplace(name, v);
  }
}

}  // namespace

Table scopedTable(const Table& t, const std::set<EndpointId>& endpoints) {
  Table out;
  out.counters = t.counters;
  copyGlobalObjects(t.sets, out.sets);
  copyGlobalObjects(t.chains, out.chains);
  for (EndpointId id : endpoints) {
    copyEndpointObjects(t.sets, id, out.sets);
    copyEndpointObjects(t.chains, id, out.chains);
  }
  return out;
}

Table lowerEndpoints(const compiler::State& state, const Attachments& attachments,
                     const NftOptions& opts, const std::set<EndpointId>& endpoints) {
  Lowering l{state, attachments, opts, flattenClasses(state.classes), {}, &endpoints};
  l.dropChains();
  l.globals();
  l.counters();
  for (EndpointId id : endpoints) {
    if (auto it = state.endpoints.find(id); it != state.endpoints.end()) l.endpoint(id, it->second);
  }
  return std::move(l.t);
}

void applyOps(Table& t, const TableOps& ops) {
  for (const std::string& c : ops.deleteCounters) t.counters.erase(c);
  t.counters.insert(ops.addCounters.begin(), ops.addCounters.end());
  for (const auto& [name, set] : ops.deleteSets) t.sets.erase(name);
  for (const auto& [name, set] : ops.addSets) t.sets[name] = set;
  for (const auto& [name, es] : ops.deleteElements) {
    Set& set = t.sets.at(name);
    for (const Element& e : es) set.elements.erase(e);
  }
  for (const auto& [name, es] : ops.addElements) {
    t.sets.at(name).elements.insert(es.begin(), es.end());
  }
  for (const std::string& name : ops.deleteChains) t.chains.erase(name);
  for (const auto& [name, c] : ops.addChains) t.chains[name] = c;
  for (const auto& [name, c] : ops.rewriteChains) t.chains[name] = c;
}

namespace {

void mergeOps(TableOps& into, TableOps&& from) {
  into.addCounters.merge(from.addCounters);
  into.deleteCounters.merge(from.deleteCounters);
  into.addSets.merge(from.addSets);
  into.deleteSets.merge(from.deleteSets);
  for (auto& [name, es] : from.addElements) {
    auto& v = into.addElements[name];
    v.insert(v.end(), es.begin(), es.end());
  }
  for (auto& [name, es] : from.deleteElements) {
    auto& v = into.deleteElements[name];
    v.insert(v.end(), es.begin(), es.end());
  }
  into.addChains.merge(from.addChains);
  into.rewriteChains.merge(from.rewriteChains);
  into.deleteChains.merge(from.deleteChains);
}

// Per-pod churn on endpoints the diff does not name: a class's address intervals changed, so
// every endpoint direction with entries for that class swaps the elements of the intervals that
// went for those of the intervals that came, with the same ports and counters. No other object
// of the endpoint can change.
TableOps classDeltas(const compiler::State& state,
                     const std::map<ClassId, std::vector<AddrInterval>>& was,
                     const std::map<ClassId, std::vector<AddrInterval>>& is,
                     const std::set<EndpointId>& skip) {
  static const std::vector<AddrInterval> kNone;
  struct Delta {
    std::vector<AddrInterval> gone, came;
  };
  std::map<ClassId, Delta> deltas;
  auto at = [](const auto& m, ClassId c) -> const std::vector<AddrInterval>& {
    auto it = m.find(c);
    return it == m.end() ? kNone : it->second;
  };
  std::set<ClassId> classes;
  for (const auto& [c, ivs] : was) classes.insert(c);
  for (const auto& [c, ivs] : is) classes.insert(c);
  for (ClassId c : classes) {
    if (at(was, c) == at(is, c)) continue;
    // Sorted by the intervals' own order (flattening orders by family, then address).
    std::vector<AddrInterval> a = at(was, c), b = at(is, c);
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    Delta d;
    std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(d.gone));
    std::set_difference(b.begin(), b.end(), a.begin(), a.end(), std::back_inserter(d.came));
    deltas.emplace(c, std::move(d));
  }
  TableOps ops;
  if (deltas.empty()) return ops;
  for (const auto& [id, ep] : state.endpoints) {
    if (skip.contains(id)) continue;
    for (Direction dir : {Direction::Ingress, Direction::Egress}) {
      if (!(dir == Direction::Ingress ? ep.ingressIsolated : ep.egressIsolated)) continue;
      std::map<ClassId, std::vector<const AllowEntry*>> byPeer;
      for (const AllowEntry& e : ep.entries) {
        if (e.direction == dir && deltas.contains(e.peer)) byPeer[e.peer].push_back(&e);
      }
      for (const auto& [peer, entries] : byPeer) {
        const PeerAllows a = peerAllows(entries);
        const Delta& d = deltas.at(peer);
        auto emitTo = [&](std::map<std::string, std::vector<Element>>& out,
                          const AddrInterval& iv) {
          const bool v4 = iv.first.isV4();
          intervalElements(a, iv, [&](ClassMap m, Element e) {
            const char* suffix =
                m == ClassMap::Ports ? (v4 ? "ports4" : "ports6") : (v4 ? "any4" : "any6");
            out[epSet(id, dir, suffix)].push_back(std::move(e));
          });
        };
        for (const AddrInterval& iv : d.gone) emitTo(ops.deleteElements, iv);
        for (const AddrInterval& iv : d.came) emitTo(ops.addElements, iv);
      }
    }
  }
  return ops;
}

}  // namespace

TableOps lowerDiffInPlace(Table& table, compiler::State& state, const Attachments& attachments,
                          const compiler::Diff& diff, const NftOptions& opts) {
  const bool classesChange = !diff.classesUpsert.empty() || !diff.classesRemove.empty();
  std::map<ClassId, std::vector<AddrInterval>> was;
  if (classesChange) was = flattenClasses(state.classes);
  bpf::applyDiff(state, diff);
  // Endpoints the diff names are lowered again whole (their allow sets or isolation changed);
  // the others see only the class deltas.
  std::set<EndpointId> named;
  for (const auto& change : diff.endpoints) named.insert(change.endpoint);
  Lowering l{state, attachments, opts, flattenClasses(state.classes), {}, &named};
  TableOps ops;
  if (classesChange) ops = classDeltas(state, was, l.intervals, named);
  l.dropChains();
  l.globals();
  l.counters();
  for (EndpointId id : named) {
    if (auto it = state.endpoints.find(id); it != state.endpoints.end()) l.endpoint(id, it->second);
  }
  mergeOps(ops, diffTables(scopedTable(table, named), l.t));
  applyOps(table, ops);
  return ops;
}

TableOps lowerDiff(const Table& have, compiler::State& state, const Attachments& attachments,
                   const compiler::Diff& diff, const NftOptions& opts, Table* lowered) {
  Table next = have;
  TableOps ops = lowerDiffInPlace(next, state, attachments, diff, opts);
  if (lowered) *lowered = std::move(next);
  return ops;
}

TableOps diffTables(const Table& have, const Table& want) {
  TableOps ops;
  for (const auto& c : want.counters) {
    if (!have.counters.contains(c)) ops.addCounters.insert(c);
  }
  for (const auto& c : have.counters) {
    if (!want.counters.contains(c)) ops.deleteCounters.insert(c);
  }
  std::set<std::string> goneSets;
  diffKeys(have.sets, want.sets, goneSets, ops.addSets);
  for (const std::string& name : goneSets) ops.deleteSets.emplace(name, have.sets.at(name));
  for (const auto& [name, w] : want.sets) {
    auto it = have.sets.find(name);
    if (it == have.sets.end()) continue;
    const Set& h = it->second;
    std::vector<Element> add, del;
    std::set_difference(w.elements.begin(), w.elements.end(), h.elements.begin(), h.elements.end(),
                        std::back_inserter(add));
    std::set_difference(h.elements.begin(), h.elements.end(), w.elements.begin(), w.elements.end(),
                        std::back_inserter(del));
    // A map key whose value changes is deleted and added (nft has no element update).
    if (!add.empty()) ops.addElements[name] = std::move(add);
    if (!del.empty()) ops.deleteElements[name] = std::move(del);
  }
  diffKeys(have.chains, want.chains, ops.deleteChains, ops.addChains);
  for (const auto& [name, w] : want.chains) {
    auto it = have.chains.find(name);
    if (it != have.chains.end() && it->second != w) ops.rewriteChains[name] = w;
  }
  return ops;
}

}  // namespace sluice::datapath::nft
