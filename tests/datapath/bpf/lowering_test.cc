#include "policyd/datapath/bpf/lowering.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <optional>
#include <random>

namespace sluice::datapath::bpf {
namespace {

using compiler::AllowEntry;
using compiler::Direction;
using compiler::EndpointPolicy;
using compiler::PortRange;

Prefix P(const char* text) { return Prefix::parse(text).value(); }

// ---- port ranges ---------------------------------------------------------------------------

void expectExactCover(PortRange r) {
  const auto blocks = decomposePortRange(r);
  ASSERT_FALSE(blocks.empty());
  EXPECT_LE(blocks.size(), 2u * 16u) << r.first << "-" << r.last;
  uint32_t next = r.first;
  for (const PortBlock& b : blocks) {
    ASSERT_LE(b.bits, 16);
    const uint32_t size = 1u << (16 - b.bits);
    EXPECT_EQ(b.first % size, 0u) << "block not aligned: " << b.first << "/" << int(b.bits);
    // Ascending and contiguous: no gap, no overlap.
    EXPECT_EQ(b.first, next) << r.first << "-" << r.last;
    next = uint32_t{b.first} + size;
  }
  EXPECT_EQ(next, uint32_t{r.last} + 1) << r.first << "-" << r.last;
}

TEST(PortRangeTest, SinglePortIsOneFullLengthBlock) {
  auto blocks = decomposePortRange({80, 80});
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0], (PortBlock{80, 16}));
}

TEST(PortRangeTest, AllPortsIsOneZeroLengthBlock) {
  auto blocks = decomposePortRange({0, 65535});
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0], (PortBlock{0, 0}));
}

TEST(PortRangeTest, WorstCaseIsThirtyBlocks) {
  EXPECT_EQ(decomposePortRange({1, 65534}).size(), 30u);
  expectExactCover({1, 65534});
}

TEST(PortRangeTest, EdgesOfThePortSpace) {
  for (PortRange r :
       {PortRange{0, 0}, PortRange{65535, 65535}, PortRange{0, 1}, PortRange{65534, 65535},
        PortRange{1024, 65535}, PortRange{0, 1023}, PortRange{32768, 32768}}) {
    expectExactCover(r);
  }
}

TEST(PortRangeTest, RandomRangesAreCoveredExactlyWithoutOverlap) {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> port(0, 65535);
  for (int i = 0; i < 20000; ++i) {
    int a = port(rng), b = port(rng);
    if (i % 3 == 0) b = std::min(65535, a + port(rng) % 64);  // many short ranges too
    if (a > b) std::swap(a, b);
    expectExactCover({static_cast<uint16_t>(a), static_cast<uint16_t>(b)});
  }
}

TEST(PortRangeTest, EmptyRangeGivesNoBlocks) { EXPECT_TRUE(decomposePortRange({10, 9}).empty()); }

// ---- keys -----------------------------------------------------------------------------------

TEST(ClassKeyTest, Ipv4IsItsOwnFamilyWithPrefixPlus8) {
  ClassKey k = classKey(P("10.1.0.0/16"));
  EXPECT_EQ(k.raw.prefixlen, 24u);
  EXPECT_EQ(k.raw.family, 4);
  const uint8_t want[16] = {10, 1, 0, 0};
  EXPECT_EQ(std::memcmp(k.raw.addr, want, 16), 0);
  EXPECT_EQ(toString(k), "10.1.0.0/16");
  EXPECT_EQ(classKey(P("0.0.0.0/0")).raw.prefixlen, 8u);
  EXPECT_EQ(classKey(P("10.1.2.3/32")).raw.prefixlen, 40u);
}

TEST(ClassKeyTest, Ipv6IsItself) {
  ClassKey k = classKey(P("fd00:10::/32"));
  EXPECT_EQ(k.raw.prefixlen, 40u);
  EXPECT_EQ(k.raw.family, 6);
  EXPECT_EQ(k.raw.addr[0], 0xfd);
  EXPECT_EQ(k.raw.addr[3], 0x10);
  EXPECT_EQ(toString(k), "fd00:10::/32");
  EXPECT_EQ(classKey(P("::/0")).raw.prefixlen, 8u);
}

// Kubernetes and the engine treat ::ffff:a.b.c.d/n as an IPv6 prefix: it must never share a
// key (or a trie path) with the IPv4 prefix a.b.c.d/(n - 96).
TEST(ClassKeyTest, V4MappedIpv6PrefixesStayIpv6) {
  const ClassKey mapped = classKey(P("::ffff:192.168.77.0/120"));
  const ClassKey v4 = classKey(P("192.168.77.0/24"));
  EXPECT_EQ(mapped.raw.family, 6);
  EXPECT_EQ(v4.raw.family, 4);
  EXPECT_NE(mapped, v4);
  EXPECT_EQ(toString(mapped), "::ffff:192.168.77.0/120");
  EXPECT_NE(classKey(P("::ffff:0:0/96")), classKey(P("0.0.0.0/0")));
  compiler::State s;
  s.classes[P("::ffff:0:0/96")] = 7;
  s.classes[P("0.0.0.0/0")] = compiler::kWorldClass;
  EXPECT_EQ(lower(s).classes.size(), 2u);
}

TEST(PolicyKeyTest, FieldsAreBigEndianAndPrefixStopsWhereTheRuleDoes) {
  PolicyKey any = policyKey(0x01020304, Direction::Egress, 0x11223344, compiler::kAnyProtocol, {});
  EXPECT_EQ(any.raw.prefixlen, 96u);
  const auto* b = reinterpret_cast<const uint8_t*>(&any.raw) + 4;
  EXPECT_EQ(b[0], 0x01);
  EXPECT_EQ(b[3], 0x04);
  EXPECT_EQ(b[4], SLUICE_DIR_EGRESS);
  EXPECT_EQ(b[8], 0x11);
  EXPECT_EQ(b[11], 0x44);
  EXPECT_EQ(any.raw.protocol, 0);
  EXPECT_EQ(any.raw.port, 0);

  PolicyKey tcpAll = policyKey(1, Direction::Ingress, 20, 6, PortBlock{0, 0});
  EXPECT_EQ(tcpAll.raw.prefixlen, 104u);
  EXPECT_EQ(tcpAll.raw.protocol, 6);
  EXPECT_EQ(tcpAll.raw.port, 0);

  PolicyKey http = policyKey(1, Direction::Ingress, 20, 6, PortBlock{8080, 16});
  EXPECT_EQ(http.raw.prefixlen, 128u);
  EXPECT_EQ(ntohs(http.raw.port), 8080);
  EXPECT_EQ(toString(http), "endpoint=1 direction=ingress class=20 protocol=6 ports=8080-8080");

  PolicyKey block = policyKey(1, Direction::Ingress, 20, 17, PortBlock{1024, 6});
  EXPECT_EQ(block.raw.prefixlen, 118u);
  EXPECT_EQ(toString(block), "endpoint=1 direction=ingress class=20 protocol=17 ports=1024-2047");
  EXPECT_EQ(policyKeyEndpoint(block), 1u);
}

// ---- a software LPM trie: the lowered keys give the IR's answer ------------------------------

bool prefixMatches(const PolicyKey& entry, const PolicyKey& probe) {
  const auto* e = reinterpret_cast<const uint8_t*>(&entry.raw) + 4;
  const auto* p = reinterpret_cast<const uint8_t*>(&probe.raw) + 4;
  for (uint32_t bit = 0; bit < entry.raw.prefixlen; ++bit) {
    const int mask = 0x80 >> (bit % 8);
    if ((e[bit / 8] & mask) != (p[bit / 8] & mask)) return false;
  }
  return true;
}

std::optional<compiler::RuleId> lpm(const PolicyEntries& entries, const PolicyKey& probe) {
  std::optional<compiler::RuleId> best;
  uint32_t bestLen = 0;
  for (const auto& [k, rule] : entries) {
    if (prefixMatches(k, probe) && (!best || k.raw.prefixlen > bestLen)) {
      best = rule;
      bestLen = k.raw.prefixlen;
    }
  }
  return best;
}

// The datapath's two lookups, as bpf/sluice_tc.bpf.c does them.
bool datapathAllows(const PolicyEntries& entries, Direction dir, compiler::ClassId cls,
                    uint8_t proto, uint16_t port) {
  const bool ported = proto == 6 || proto == 17 || proto == 132;
  PolicyKey probe = policyKey(7, dir, cls, proto, PortBlock{ported ? port : uint16_t{0}, 16});
  if (lpm(entries, probe)) return true;
  probe.raw.peer_class = htonl(compiler::kAnyPeer);
  return lpm(entries, probe).has_value();
}

bool irAllows(const EndpointPolicy& ep, Direction dir, compiler::ClassId cls, uint8_t proto,
              uint16_t port) {
  const bool ported = proto == 6 || proto == 17 || proto == 132;
  for (const AllowEntry& e : ep.entries) {
    if (e.direction != dir) continue;
    if (e.peer != compiler::kAnyPeer && e.peer != cls) continue;
    if (e.protocol == compiler::kAnyProtocol && e.ports.all()) return true;
    if (!ported) continue;
    if (e.protocol != compiler::kAnyProtocol && e.protocol != proto) continue;
    if (port >= e.ports.first && port <= e.ports.last) return true;
  }
  return false;
}

TEST(LowerEndpointTest, TwoLookupsGiveTheIrVerdictForRandomAllowSets) {
  std::mt19937 rng(777);
  const uint8_t protos[] = {0, 6, 17, 132};
  const uint8_t packetProtos[] = {1, 6, 17, 58, 132};
  for (int round = 0; round < 40; ++round) {
    EndpointPolicy ep;
    ep.ingressIsolated = ep.egressIsolated = true;
    const int n = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < n; ++i) {
      AllowEntry e;
      e.direction = rng() % 2 ? Direction::Ingress : Direction::Egress;
      e.peer = rng() % 3 == 0 ? compiler::kAnyPeer : 16 + rng() % 4;
      e.protocol = protos[rng() % 4];
      if (e.protocol != 0 || rng() % 4 == 0) {
        uint16_t a = static_cast<uint16_t>(rng() % 2000), len = static_cast<uint16_t>(rng() % 300);
        e.ports = {a, static_cast<uint16_t>(a + len)};
        if (rng() % 5 == 0) e.ports = {};
      }
      e.rule = static_cast<compiler::RuleId>(i);
      ep.entries.insert(e);
    }
    const PolicyEntries entries = lowerEndpoint(7, ep);
    for (int probe = 0; probe < 400; ++probe) {
      const Direction dir = rng() % 2 ? Direction::Ingress : Direction::Egress;
      const compiler::ClassId cls = 15 + rng() % 6;
      const uint8_t proto = packetProtos[rng() % 5];
      const uint16_t port = static_cast<uint16_t>(rng() % 2400);
      ASSERT_EQ(datapathAllows(entries, dir, cls, proto, port), irAllows(ep, dir, cls, proto, port))
          << "round " << round << " class " << cls << " proto " << int(proto) << " port " << port;
    }
  }
}

TEST(LowerEndpointTest, SameKeyFromTwoRulesCreditsTheSmallestRule) {
  EndpointPolicy ep;
  ep.entries.insert(AllowEntry{Direction::Ingress, 20, 6, {80, 80}, 9});
  ep.entries.insert(AllowEntry{Direction::Ingress, 20, 6, {80, 80}, 4});
  const PolicyEntries entries = lowerEndpoint(1, ep);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries.at(policyKey(1, Direction::Ingress, 20, 6, {80, 16})), 4u);
}

TEST(LowerEndpointTest, OverlappingRangesCreditTheMostSpecificBlock) {
  EndpointPolicy ep;
  ep.entries.insert(AllowEntry{Direction::Ingress, 20, 6, {80, 80}, 9});
  ep.entries.insert(AllowEntry{Direction::Ingress, 20, 6, {80, 81}, 4});  // one block: 80/15
  const PolicyEntries entries = lowerEndpoint(1, ep);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries.at(policyKey(1, Direction::Ingress, 20, 6, {80, 16})), 9u);
  EXPECT_EQ(entries.at(policyKey(1, Direction::Ingress, 20, 6, {80, 15})), 4u);
}

TEST(LowerEndpointTest, AnyProtocolWithPortsMeansThePortedProtocols) {
  EndpointPolicy ep;
  ep.entries.insert(AllowEntry{Direction::Egress, 0, compiler::kAnyProtocol, {53, 53}, 1});
  const PolicyEntries entries = lowerEndpoint(3, ep);
  ASSERT_EQ(entries.size(), 3u);
  for (uint8_t p : {6, 17, 132})
    EXPECT_TRUE(entries.contains(policyKey(3, Direction::Egress, 0, p, {53, 16})));
}

TEST(LowerEndpointTest, KeysOfOneEndpointAreAdjacentInTheMirror) {
  compiler::State s;
  for (compiler::EndpointId id : {1u, 2u, 256u}) {
    s.endpoints[id].entries.insert(AllowEntry{Direction::Ingress, 20, 6, {80, 80}, 1});
    s.endpoints[id].entries.insert(AllowEntry{Direction::Egress, 0, 0, {}, 2});
  }
  const LoweredState lowered = lower(s);
  compiler::EndpointId prev = 0;
  int changes = 0;
  for (const auto& [k, rule] : lowered.policy) {
    if (policyKeyEndpoint(k) != prev) ++changes;
    prev = policyKeyEndpoint(k);
  }
  EXPECT_EQ(changes, 3);
}

// ---- state and diff lowering ---------------------------------------------------------------

compiler::State sampleState() {
  compiler::State s;
  s.classes[P("0.0.0.0/0")] = compiler::kWorldClass;
  s.classes[P("::/0")] = compiler::kWorldClass;
  s.classes[P("10.0.0.1/32")] = compiler::kHostClass;
  s.classes[P("10.1.0.5/32")] = 20;
  EndpointPolicy a;
  a.ingressIsolated = true;
  a.entries.insert(AllowEntry{Direction::Ingress, 20, 6, {8000, 8100}, 0});
  s.endpoints[1] = a;
  EndpointPolicy b;
  b.egressIsolated = true;
  b.entries.insert(AllowEntry{Direction::Egress, 0, 0, {}, 1});
  s.endpoints[2] = b;
  s.rules.resize(2);
  s.revision = 5;
  return s;
}

TEST(LowerStateTest, FlagsAreReadyPlusIsolation) {
  const LoweredState l = lower(sampleState());
  EXPECT_EQ(l.endpointFlags.at(1), SLUICE_EP_POLICY_READY | SLUICE_EP_INGRESS_ISOLATED);
  EXPECT_EQ(l.endpointFlags.at(2), SLUICE_EP_POLICY_READY | SLUICE_EP_EGRESS_ISOLATED);
  EXPECT_EQ(l.classes.size(), 4u);
  EXPECT_EQ(l.policy.size(), decomposePortRange({8000, 8100}).size() + 1);
}

TEST(ReconcileTest, SameContentsNeedNoWrites) {
  const LoweredState l = lower(sampleState());
  EXPECT_TRUE(reconcile(l, l).empty());
}

TEST(ReconcileTest, WritesOnlyTheDifferences) {
  const LoweredState have = lower(sampleState());
  compiler::State s = sampleState();
  s.classes[P("10.1.0.5/32")] = 21;   // changed
  s.classes.erase(P("10.0.0.1/32"));  // removed
  s.endpoints.erase(2);               // endpoint gone
  s.endpoints[3] = EndpointPolicy{};  // new, not isolated
  const MapOps ops = reconcile(have, lower(s));
  ASSERT_EQ(ops.classes.upsert.size(), 1u);
  EXPECT_EQ(ops.classes.upsert[0].second, 21u);
  ASSERT_EQ(ops.classes.remove.size(), 1u);
  EXPECT_EQ(toString(ops.classes.remove[0]), "10.0.0.1/32");
  EXPECT_TRUE(ops.policy.upsert.empty());
  ASSERT_EQ(ops.policy.remove.size(), 1u);
  EXPECT_EQ(policyKeyEndpoint(ops.policy.remove[0]), 2u);
  EXPECT_EQ(ops.endpointFlags.at(2), 0u);
  EXPECT_EQ(ops.endpointFlags.at(3), SLUICE_EP_POLICY_READY);
  LoweredState after = have;
  applyOps(after, ops);
  EXPECT_EQ(after, lower(s));
}

TEST(LowerDiffTest, DiffFromEmptyGivesTheWholeState) {
  const compiler::State want = sampleState();
  compiler::Diff d;
  d.classesUpsert = want.classes;
  for (const auto& [id, ep] : want.endpoints) {
    compiler::Diff::EndpointChange c;
    c.endpoint = id;
    c.ingressIsolated = ep.ingressIsolated;
    c.egressIsolated = ep.egressIsolated;
    c.add.assign(ep.entries.begin(), ep.entries.end());
    d.endpoints.push_back(c);
  }
  d.revision = want.revision;
  compiler::State state;
  LoweredState have;
  const MapOps ops = lowerDiff(have, state, d);
  applyOps(have, ops);
  EXPECT_EQ(have, lower(want));
  EXPECT_EQ(state.endpoints, want.endpoints);
  EXPECT_EQ(state.classes, want.classes);
  EXPECT_EQ(state.revision, 5u);
}

TEST(LowerDiffTest, RemovingOneOfTwoRulesOnTheSameKeyKeepsTheKey) {
  compiler::State state;
  const AllowEntry r0{Direction::Ingress, 20, 6, {80, 80}, 0};
  const AllowEntry r1{Direction::Ingress, 20, 6, {80, 80}, 1};
  state.endpoints[1].ingressIsolated = true;
  state.endpoints[1].entries = {r0, r1};
  LoweredState have = lower(state);
  ASSERT_EQ(have.policy.size(), 1u);

  compiler::Diff d;
  compiler::Diff::EndpointChange c;
  c.endpoint = 1;
  c.ingressIsolated = true;
  c.remove = {r0};
  d.endpoints.push_back(c);
  const MapOps ops = lowerDiff(have, state, d);
  EXPECT_TRUE(ops.policy.remove.empty());
  ASSERT_EQ(ops.policy.upsert.size(), 1u);
  EXPECT_EQ(ops.policy.upsert[0].second, 1u);  // now credited to the rule that is left
  EXPECT_TRUE(ops.endpointFlags.empty());
}

TEST(LowerDiffTest, TouchesOnlyTheEndpointsItNames) {
  compiler::State state = sampleState();
  LoweredState have = lower(state);
  // Endpoint 2's kernel entries differ from the IR (as if written by someone else); a diff for
  // endpoint 1 must leave them alone.
  have.policy[policyKey(2, Direction::Egress, 30, 6, {443, 16})] = 7;

  compiler::Diff d;
  compiler::Diff::EndpointChange c;
  c.endpoint = 1;
  c.ingressIsolated = true;
  c.egressIsolated = true;  // flag change only
  d.endpoints.push_back(c);
  const MapOps ops = lowerDiff(have, state, d);
  EXPECT_TRUE(ops.policy.empty());
  EXPECT_TRUE(ops.classes.empty());
  ASSERT_EQ(ops.endpointFlags.size(), 1u);
  EXPECT_EQ(ops.endpointFlags.at(1),
            SLUICE_EP_POLICY_READY | SLUICE_EP_INGRESS_ISOLATED | SLUICE_EP_EGRESS_ISOLATED);
}

TEST(LowerDiffTest, RemovedEndpointLosesFlagsAndEntries) {
  compiler::State state = sampleState();
  LoweredState have = lower(state);
  compiler::Diff d;
  compiler::Diff::EndpointChange c;
  c.endpoint = 1;
  c.removed = true;
  d.endpoints.push_back(c);
  d.classesRemove.push_back(P("10.1.0.5/32"));
  const MapOps ops = lowerDiff(have, state, d);
  EXPECT_EQ(ops.endpointFlags.at(1), 0u);
  EXPECT_EQ(ops.policy.remove.size(), decomposePortRange({8000, 8100}).size());
  ASSERT_EQ(ops.classes.remove.size(), 1u);
  applyOps(have, ops);
  EXPECT_EQ(have, lower(state));
  EXPECT_FALSE(state.endpoints.contains(1));
}

TEST(LowerDiffTest, UpsertOfAnUnchangedClassWritesNothing) {
  compiler::State state = sampleState();
  const LoweredState have = lower(state);
  compiler::Diff d;
  d.classesUpsert[P("10.1.0.5/32")] = 20;
  EXPECT_TRUE(lowerDiff(have, state, d).empty());
}

}  // namespace
}  // namespace sluice::datapath::bpf
