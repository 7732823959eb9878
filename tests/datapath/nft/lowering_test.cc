// Pure nft lowering: class flattening, port splitting, the table for IR states (golden files) and
// the diff transactions. Regenerate the golden files with SLUICE_UPDATE_GOLDEN=1.
#include "policyd/datapath/nft/lowering.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include "policyd/datapath/nft/render.h"

namespace sluice::datapath::nft {
namespace {

using compiler::AllowEntry;
using compiler::Direction;
using compiler::State;

IpAddr ip(const char* s) { return *IpAddr::parse(s); }
Prefix pfx(const char* s) { return *Prefix::parse(s); }

std::string goldenPath(const std::string& name) {
  return std::string(SLUICE_SOURCE_DIR) + "/tests/datapath/nft/golden/" + name;
}

void expectGolden(const std::string& name, const std::string& actual) {
  const std::string path = goldenPath(name);
  if (const char* u = std::getenv("SLUICE_UPDATE_GOLDEN"); u && std::string(u) == "1") {
    std::ofstream(path) << actual;
    return;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in) << "missing golden file " << path << " (run with SLUICE_UPDATE_GOLDEN=1)";
  std::stringstream want;
  want << in.rdbuf();
  EXPECT_EQ(want.str(), actual) << "golden " << path << " differs (SLUICE_UPDATE_GOLDEN=1)";
}

AllowEntry allow(Direction d, compiler::ClassId peer, uint8_t proto, uint16_t first, uint16_t last,
                 compiler::RuleId rule) {
  return AllowEntry{d, peer, proto, {first, last}, rule};
}

// Two pods (ids 1, 2), the node, an ipBlock with an except, both families.
State sampleState() {
  State s;
  s.revision = 42;
  s.classes[pfx("0.0.0.0/0")] = compiler::kWorldClass;
  s.classes[pfx("::/0")] = compiler::kWorldClass;
  s.classes[pfx("192.168.0.10/32")] = compiler::kHostClass;
  s.classes[pfx("10.244.0.5/32")] = 16;  // pod 1 (app=web)
  s.classes[pfx("fd00::5/128")] = 16;
  s.classes[pfx("10.244.0.6/32")] = 17;                     // pod 2 (app=db)
  s.classes[pfx("172.16.0.0/12")] = 18;                     // ipBlock
  s.classes[pfx("172.16.1.0/24")] = compiler::kWorldClass;  // its except
  s.rules = {{"default/db", Direction::Ingress, 0},
             {"default/db", Direction::Ingress, 1},
             {"default/web", Direction::Egress, 0},
             {"default/web", Direction::Egress, 1}};
  auto& db = s.endpoints[2];
  db.ingressIsolated = true;
  db.entries.insert(allow(Direction::Ingress, 16, 6, 5432, 5432, 0));
  db.entries.insert(allow(Direction::Ingress, 16, 6, 5000, 6000, 1));  // overlaps rule 0
  db.entries.insert(allow(Direction::Ingress, 18, compiler::kAnyProtocol, 0, 65535, 1));
  auto& web = s.endpoints[1];
  web.egressIsolated = true;
  web.entries.insert(allow(Direction::Egress, compiler::kAnyPeer, 17, 53, 53, 2));
  web.entries.insert(
      allow(Direction::Egress, compiler::kAnyPeer, compiler::kAnyProtocol, 8000, 8100, 3));
  web.entries.insert(allow(Direction::Egress, 17, 6, 5432, 5432, 3));
  return s;
}

Attachments sampleAttachments() {
  Attachments a;
  a[1] = EndpointAttachment{1, "sl00000000001", 0, {ip("10.244.0.5"), ip("fd00::5")}};
  a[2] = EndpointAttachment{2, "sl00000000002", 0, {ip("10.244.0.6")}};
  a[3] = EndpointAttachment{3, "sl00000000003", 0, {ip("10.244.0.7")}};  // no policy yet
  return a;
}

TEST(NftFlatten, LongestPrefixWinsAndGapsAreWorld) {
  std::map<Prefix, compiler::ClassId> classes = {{pfx("10.0.0.0/8"), 20},
                                                 {pfx("10.1.0.0/16"), 21},
                                                 {pfx("10.1.2.3/32"), 20},
                                                 {pfx("fd00::/64"), 22}};
  auto f = flattenClasses(classes);
  ASSERT_EQ(f[20].size(), 3u);
  EXPECT_EQ(f[20][0].first, ip("10.0.0.0"));
  EXPECT_EQ(f[20][0].last, ip("10.0.255.255"));
  EXPECT_EQ(f[20][1].first, ip("10.1.2.3"));
  EXPECT_EQ(f[20][1].last, ip("10.1.2.3"));
  EXPECT_EQ(f[20][2].first, ip("10.2.0.0"));
  EXPECT_EQ(f[20][2].last, ip("10.255.255.255"));
  ASSERT_EQ(f[21].size(), 2u);
  EXPECT_EQ(f[21][0].last, ip("10.1.2.2"));
  EXPECT_EQ(f[21][1].first, ip("10.1.2.4"));
  // World: below and above 10/8, and all of IPv6 but the /64.
  ASSERT_EQ(f[compiler::kWorldClass].size(), 4u);
  EXPECT_EQ(f[compiler::kWorldClass][0].first, ip("0.0.0.0"));
  EXPECT_EQ(f[compiler::kWorldClass][1].last, ip("255.255.255.255"));
  EXPECT_EQ(f[compiler::kWorldClass][3].last, ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
  ASSERT_EQ(f[22].size(), 1u);
  EXPECT_EQ(f[22][0].last, ip("fd00::ffff:ffff:ffff:ffff"));
}

// Every address the flattening assigns agrees with compiler::classOf, on random class maps.
TEST(NftFlatten, AgreesWithClassOfOnRandomMaps) {
  std::mt19937 rng(7);
  for (int round = 0; round < 50; ++round) {
    State s;
    for (int i = 0; i < 12; ++i) {
      const uint32_t a = 0x0a000000u | (rng() & 0x00ffffffu);
      const int len = 8 + static_cast<int>(rng() % 25);
      s.classes[Prefix(IpAddr::v4(a), len)] = 16 + rng() % 4;
    }
    const auto f = flattenClasses(s.classes);
    for (int probe = 0; probe < 200; ++probe) {
      const IpAddr a = IpAddr::v4(0x0a000000u | (rng() & 0x00ffffffu));
      compiler::ClassId got = 0;
      int hits = 0;
      for (const auto& [cls, ivs] : f) {
        for (const auto& iv : ivs) {
          if (iv.first.isV4() && iv.first.v4HostOrder() <= a.v4HostOrder() &&
              a.v4HostOrder() <= iv.last.v4HostOrder()) {
            got = cls;
            ++hits;
          }
        }
      }
      ASSERT_EQ(hits, 1) << a.toString();
      ASSERT_EQ(got, compiler::classOf(s, a)) << a.toString() << " round " << round;
    }
  }
}

TEST(NftPorts, SplitCreditsSmallestRuleAndMerges) {
  auto out = splitPorts({{{5000, 6000}, 1}, {{5432, 5432}, 0}, {{6001, 7000}, 1}});
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], (PortPiece{{5000, 5431}, 1}));
  EXPECT_EQ(out[1], (PortPiece{{5432, 5432}, 0}));
  EXPECT_EQ(out[2], (PortPiece{{5433, 7000}, 1}));
  auto all = splitPorts({{{0, 65535}, 4}, {{0, 65535}, 2}});
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0], (PortPiece{{0, 65535}, 2}));
}

TEST(NftLowering, GoldenRecheck) {
  NftOptions opts;
  expectGolden("sample_recheck.nft",
               renderTable(lower(sampleState(), sampleAttachments(), opts), opts));
}

TEST(NftLowering, GoldenKeep) {
  NftOptions opts;
  opts.established = EstablishedMode::Keep;
  opts.podIfPrefix = "";
  expectGolden("sample_keep.nft",
               renderTable(lower(sampleState(), sampleAttachments(), opts), opts));
}

TEST(NftLowering, EmptyStateDropsAttachedEndpoints) {
  NftOptions opts;
  Table t = lower(State{}, sampleAttachments(), opts);
  ASSERT_TRUE(t.chains.contains("ep_1_from"));
  // Logged with the endpoint and direction (nflog.h), then dropped.
  EXPECT_EQ(t.chains["ep_1_from"].rules,
            (std::vector<std::string>{
                "limit name \"drop_log\" log prefix \"sluice:not-ready:egress:1: \" group 7",
                "goto drop_not_ready"}));
  EXPECT_EQ(t.chains["ep_1_to"].rules,
            (std::vector<std::string>{
                "limit name \"drop_log\" log prefix \"sluice:not-ready:ingress:1: \" group 7",
                "goto drop_not_ready"}));
  EXPECT_FALSE(t.chains.contains("ep_1_ingress"));
}

// A pod joining a class (the class map grows by one /32) is element adds in the maps that name
// the class, nothing else; the table is not rewritten.
TEST(NftDiff, PodJoiningClassIsElementAddsOnly) {
  NftOptions opts;
  State from = sampleState();
  State to = from;
  to.classes[pfx("10.244.0.9/32")] = 16;
  to.revision = 43;
  State applied = from;
  const Table have = lower(from, sampleAttachments(), opts);
  const TableOps ops = lowerDiff(have, applied, sampleAttachments(), computeDiff(from, to), opts);
  EXPECT_EQ(applied.classes, to.classes);
  EXPECT_EQ(applied.endpoints, to.endpoints);
  EXPECT_EQ(applied.revision, to.revision);
  EXPECT_TRUE(ops.addChains.empty());
  EXPECT_TRUE(ops.rewriteChains.empty());
  EXPECT_TRUE(ops.deleteChains.empty());
  EXPECT_TRUE(ops.addSets.empty());
  EXPECT_TRUE(ops.addCounters.empty());
  EXPECT_TRUE(ops.addElements.contains("ep_2_in_ports4"));
  EXPECT_TRUE(ops.addElements.contains("revision"));
  expectGolden("diff_pod_joins_class.nft", renderOps(ops));
}

// An endpoint's policy removed: its chains and maps go, its dispatch jumps to not-ready.
TEST(NftDiff, EndpointRemovedDeletesItsObjects) {
  NftOptions opts;
  State from = sampleState();
  State to = from;
  to.endpoints.erase(2);
  State applied = from;
  const Table have = lower(from, sampleAttachments(), opts);
  const TableOps ops = lowerDiff(have, applied, sampleAttachments(), computeDiff(from, to), opts);
  EXPECT_TRUE(ops.deleteSets.contains("ep_2_in_ports4"));
  EXPECT_TRUE(ops.deleteChains.contains("ep_2_ingress"));
  EXPECT_TRUE(ops.rewriteChains.contains("ep_2_from"));
  EXPECT_EQ(ops.rewriteChains.at("ep_2_from").rules.back(), "goto drop_not_ready");
  EXPECT_TRUE(ops.deleteChains.contains("ep_2_spoofed"));
  expectGolden("diff_endpoint_removed.nft", renderOps(ops));
}

// The incremental lowering (only global objects and touched endpoints) ends where the whole
// lowering does, over random chains of pod churn, policy edits and endpoint removals.
TEST(NftDiff, IncrementalLoweringEqualsWholeLowering) {
  NftOptions opts;
  std::mt19937 rng(11);
  const Attachments atts = sampleAttachments();
  State cur = sampleState();
  Table table = lower(cur, atts, opts);
  for (int step = 0; step < 200; ++step) {
    State next = cur;
    next.revision = cur.revision + 1;
    const uint32_t host = 0x0af40000u + rng() % 64;  // 10.244.0.0/26
    const compiler::ClassId cls = 16 + rng() % 4;
    switch (rng() % 6) {
      case 0:  // a pod joins (or moves to) a class
        next.classes[Prefix::host(IpAddr::v4(host))] = cls;
        break;
      case 1:  // a pod goes away
        next.classes.erase(Prefix::host(IpAddr::v4(host)));
        break;
      case 2: {  // an allow entry appears
        auto& ep = next.endpoints[1 + rng() % 2];
        ep.ingressIsolated = true;
        const uint16_t first = static_cast<uint16_t>(1 + rng() % 1000);
        ep.entries.insert(allow(rng() % 2 ? Direction::Ingress : Direction::Egress,
                                rng() % 3 ? cls : compiler::kAnyPeer, rng() % 2 ? 6 : 17, first,
                                static_cast<uint16_t>(first + rng() % 50),
                                static_cast<compiler::RuleId>(rng() % 5)));
        break;
      }
      case 3:  // an allow entry goes
        if (auto& ep = next.endpoints[1 + rng() % 2]; !ep.entries.empty()) {
          ep.entries.erase(std::next(ep.entries.begin(), rng() % ep.entries.size()));
        }
        break;
      case 4:  // an endpoint's policy goes (not ready) or returns
        if (next.endpoints.contains(2)) {
          next.endpoints.erase(2);
        } else {
          next.endpoints[2] = sampleState().endpoints.at(2);
        }
        break;
      default:  // an ipBlock edit
        next.classes[pfx("172.16.0.0/12")] = rng() % 2 ? 18 : 19;
        break;
    }
    State applied = cur;
    const TableOps ops = lowerDiffInPlace(table, applied, atts, computeDiff(cur, next), opts);
    ASSERT_EQ(applied.classes, next.classes) << "step " << step;
    const Table whole = lower(next, atts, opts);
    ASSERT_EQ(table, whole) << "step " << step << "\n" << renderOps(diffTables(table, whole));
    cur = next;
  }
}

TEST(NftDiff, IdenticalTablesHaveNoOps) {
  NftOptions opts;
  const Table t = lower(sampleState(), sampleAttachments(), opts);
  EXPECT_TRUE(diffTables(t, t).empty());
}

TEST(NftRender, ReplaceFlushesExistingAndDeletesStale) {
  NftOptions opts;
  TableNames have;
  have.exists = true;
  have.chains = {"forward", "ep_9_from"};
  have.sets = {"from_pod", "ep_9_in_any4"};
  have.maps = {"from_pod", "ep_9_in_any4"};
  have.counters = {"rule_0", "rule_77"};
  const std::string s = renderReplace(have, lower(sampleState(), sampleAttachments(), opts), opts);
  EXPECT_EQ(s.find("delete table"), std::string::npos);
  EXPECT_NE(s.find("flush chain inet sluice forward\n"), std::string::npos);
  EXPECT_NE(s.find("delete chain inet sluice ep_9_from\n"), std::string::npos);
  EXPECT_NE(s.find("delete map inet sluice ep_9_in_any4\n"), std::string::npos);
  EXPECT_NE(s.find("delete counter inet sluice rule_77\n"), std::string::npos);
  EXPECT_EQ(s.find("add counter inet sluice rule_0\n"), std::string::npos);  // keeps its value
  EXPECT_EQ(s.find("add chain inet sluice forward"), std::string::npos);
  EXPECT_NE(s.find("add chain inet sluice input { type filter hook input"), std::string::npos);
}

}  // namespace
}  // namespace sluice::datapath::nft
