// Pure lowering of the compiler IR to `table inet sluice` (DESIGN.md §6). No syscalls: the
// result is a Table value, rendered as `nft -f` text (render.h) and written by the backend.
//
// The table:
//
//   base chains   forward (pod<->pod, pod<->off-node), input (pod -> node), output
//                 (node -> pod), all `type filter ... policy accept`: traffic that touches no
//                 pod interface is not ours. input and output start with the IPv6 neighbour
//                 discovery bypass, as the bpf program's nd_valid: hop limit 255, a type the
//                 direction may carry (from the pod RS/NS/NA, to it RA/NS/NA/redirect),
//                 link-scope addresses or the pod's own; forward bypasses nothing (a routed
//                 packet is never on-link). The endpoint chains drop every other ND-typed
//                 message as nd-invalid (ep_<id>_nd_from/_nd_to), whatever the policy. Then
//                     iifname vmap @from_pod      packets the pod sends (its egress)
//                     oifname vmap @to_pod        packets delivered to the pod (its ingress)
//                 An attached endpoint without applied policy maps to `not_ready` (drop); an
//                 interface named like a pod veth (NftOptions::podIfPrefix) that is in neither
//                 map is dropped as `no-endpoint`: fail closed before attach and after detach.
//                 After both dispatches returned (allowed), the flow's ct mark is set to the
//                 policy revision (`ct mark set meta nfproto map @revision_mark`).
//   ep_<id>_from  the pod's sending side: spoof check (source must be one of the pod's
//                 addresses), then established flows, then by conntrack direction:
//                 original -> goto ep_<id>_egress, reply -> goto ep_<id>_ingress.
//   ep_<id>_to    the same for packets delivered to the pod (original -> ingress).
//   ep_<id>_ingress / ep_<id>_egress
//                 the policy check, always on the flow's *original* tuple (`ct original ip
//                 saddr`, `ct original proto-dst`), so a reply re-checked after a policy change
//                 is checked as its first packet was. Empty (returns) when the direction is not
//                 isolated. Isolated: host addresses (ingress only, before everything, as the
//                 IR's kHostRule), then four objref-map lookups, each `counter name <key> map
//                 @m return` (the map's value is the rule's named counter, so a match both
//                 credits the rule and allows; a miss breaks the rule):
//                   ep_<id>_<dir>_ports4/6   peer address interval . l4proto . port interval
//                   ep_<id>_<dir>_any4/6     peer address interval (any protocol)
//                   ep_<id>_<dir>_anypeer    l4proto . port interval (kAnyPeer)
//                   ep_<id>_<dir>_anyall     nfproto (kAnyPeer, any protocol)
//                 and finally the policy drop (logged, then `goto drop_policy`). Per-packet cost is
//                 a fixed number of set lookups whatever the number of rules, classes or pods.
//
// Peer classes are not a runtime lookup: the address->class LPM map is flattened into disjoint
// address intervals per class (longest prefix wins, gaps are kWorldClass, as
// compiler::classOf), and an allow entry for class C becomes one element per interval of C.
// Within one (endpoint, direction, class, protocol) the port ranges are split into disjoint
// pieces credited to the smallest RuleId covering them (the IR's attribution; set elements of
// a concatenated interval set must not overlap). The exact-class maps come before the any-peer
// maps, so the credited rule is the IR's: an exact-class match wins over any-peer. An entry with
// kAnyProtocol and a narrower port range means those ports of TCP, UDP and SCTP (ir.cc).
//
// Established flows. keep: `ct state established,related return`. recheck: the same only when
// the flow's ct mark equals the current revision (`ct mark @revision`); a flow marked with an
// older revision is re-checked on its original tuple, in the direction of its first packet,
// and dropped if policy no longer allows it (a new deny cuts open connections, as the bpf
// backend). The backend owns the ct mark of flows through pod interfaces. A revision change is
// one element swap in `revision` and `revision_mark`.
//
// Fragments: conntrack reassembles before the forward/input/output hooks, so a datagram is
// checked whole (later fragments cannot bypass policy, as in the bpf backend).
//
// Drops: chains drop_<reason> count into named counters drop_<reason> and drop. Every jump to
// one is preceded, where the endpoint and direction are known, by a log rule to nflog group
// NftOptions::logGroup with prefix "sluice:<reason>:<ingress|egress>:<endpoint id>: " (nflog.h
// parses it back) under one shared rate limit (`limit drop_log`), for the flow log: the policy
// drop at the end of ep_<id>_<dir>, ep_<id>_spoofed, the not-ready endpoint chains, and
// drop_no_endpoint_<dir> (endpoint 0) from the base chains. Reasons: policy, not-ready,
// no-endpoint, spoofed, nd-invalid.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "policyd/compiler/ir.h"
#include "policyd/datapath/backend.h"

namespace sluice::datapath::nft {

inline constexpr const char* kTableFamily = "inet";
inline constexpr const char* kTableName = "sluice";

struct NftOptions {
  EstablishedMode established = EstablishedMode::Recheck;
  uint16_t logGroup = 7;         // nflog group for dropped packets
  uint32_t logRatePerSec = 100;  // shared by all drop log rules
  uint32_t logBurst = 20;
  // Host veths are named "<prefix>..." (cni/wiring.cc: "sl" + hash); such an interface that no
  // endpoint owns is dropped. Empty: only attached interfaces are policed.
  std::string podIfPrefix = "sl";
  std::string nftBinary = "nft";
  // Element-only changes go straight to the kernel as a libnftnl batch (element_writer.h);
  // false: everything through nft.
  bool netlinkElements = true;
};

struct Element {
  std::string key;
  std::string value;  // empty for plain sets
  auto operator<=>(const Element&) const = default;
};

struct Set {
  std::string type;  // "ipv4_addr . inet_proto . inet_service : counter"
  bool interval = false;
  std::set<Element> elements;
  bool operator==(const Set&) const = default;
};

struct Chain {
  std::string base;  // "type filter hook forward priority filter; policy accept;" or empty
  std::vector<std::string> rules;
  bool operator==(const Chain&) const = default;
};

struct Table {
  std::set<std::string> counters;
  std::map<std::string, Set> sets;  // sets and maps
  std::map<std::string, Chain> chains;
  bool operator==(const Table&) const = default;
};

// Attached endpoints by id (ifname, addresses).
using Attachments = std::map<compiler::EndpointId, EndpointAttachment>;

std::string ruleCounterName(compiler::RuleId rule);  // "rule_<id>"
// Drop reasons as DropCount::reason and in counter/chain names ("-" becomes "_").
const std::vector<std::string>& dropReasons();

// A disjoint address interval [first, last] (inclusive) in one family.
struct AddrInterval {
  IpAddr first;
  IpAddr last;
  auto operator<=>(const AddrInterval&) const = default;
};
// The class map flattened: for every class, its disjoint, merged intervals per family, in
// ascending order. Every address of both families is in exactly one interval.
std::map<compiler::ClassId, std::vector<AddrInterval>> flattenClasses(
    const std::map<Prefix, compiler::ClassId>& classes);

// A port range credited to one rule.
struct PortPiece {
  compiler::PortRange ports;
  compiler::RuleId rule = 0;
  auto operator<=>(const PortPiece&) const = default;
};
// Splits overlapping (range, rule) pairs into disjoint pieces, each credited to the smallest
// rule covering it; adjacent pieces of the same rule are merged.
std::vector<PortPiece> splitPorts(const std::vector<PortPiece>& ranges);

Table lower(const compiler::State& state, const Attachments& attachments, const NftOptions& opts);

// What takes the kernel's table from `have` to `want`: element adds/deletes for sets whose
// definition is unchanged, whole-object adds/deletes otherwise, and chain rewrites (flush +
// rules) for chains whose rules changed. Rendered as one nft transaction (renderOps).
struct TableOps {
  std::set<std::string> addCounters, deleteCounters;
  std::map<std::string, Set> addSets;     // new (a set's name determines its type)
  std::map<std::string, Set> deleteSets;  // as they were (a map is deleted as a map)
  std::map<std::string, std::vector<Element>> addElements, deleteElements;
  std::map<std::string, Chain> addChains;      // new chains
  std::map<std::string, Chain> rewriteChains;  // existing chains whose rules change
  std::set<std::string> deleteChains;
  bool empty() const {
    return addCounters.empty() && deleteCounters.empty() && addSets.empty() && deleteSets.empty() &&
           addElements.empty() && deleteElements.empty() && addChains.empty() &&
           rewriteChains.empty() && deleteChains.empty();
  }
};
TableOps diffTables(const Table& have, const Table& want);

// Applies `diff` to `state` (the IR as last applied) and returns what takes `table` (the table
// as last written, lowered from `state` and `attachments`) to the lowering of the new state,
// updating `table` to it. Only what the diff can change is lowered again: the global objects
// (dispatch maps, host sets, revision, counters) and the objects of the endpoints the diff names.
// A class whose addresses changed (a pod added, removed or relabelled) becomes element deletes
// and adds for the intervals that went and came, in the maps of every endpoint with entries for
// that class. Per-pod churn thus costs O(entries + classes' intervals), not a lowering of every
// endpoint, and reaches the kernel as element changes, not a table rewrite. Equal to
// diffTables(table, lower(new state)) (tested on random churn).
TableOps lowerDiffInPlace(Table& table, compiler::State& state, const Attachments& attachments,
                          const compiler::Diff& diff, const NftOptions& opts);
// The same on a copy: `lowered`, when given, receives the updated table.
TableOps lowerDiff(const Table& have, compiler::State& state, const Attachments& attachments,
                   const compiler::Diff& diff, const NftOptions& opts, Table* lowered = nullptr);

// Partial lowering, for lowerDiffInPlace and the backend's attach/detach: the global objects
// whole plus the objects of `endpoints` (ep_<id>_...); scopedTable cuts the same part out of a
// whole table, so diffTables of the two is the change to those objects.
Table lowerEndpoints(const compiler::State& state, const Attachments& attachments,
                     const NftOptions& opts, const std::set<compiler::EndpointId>& endpoints);
Table scopedTable(const Table& t, const std::set<compiler::EndpointId>& endpoints);
// Updates `t` by `ops` (the mirror of what a transaction did to the kernel's table).
void applyOps(Table& t, const TableOps& ops);

}  // namespace sluice::datapath::nft
