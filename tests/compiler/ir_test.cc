// The IR helpers on hand-written States: computeDiff, classOf, lookup.
#include "policyd/compiler/ir.h"

#include <gtest/gtest.h>

#include "tests/compiler/canonical.h"
#include "tests/compiler/test_util.h"

namespace sluice::compiler::testing {
namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;

State sample() {
  State s;
  s.classes = {{cidr("0.0.0.0/0"), kWorldClass},
               {cidr("10.0.0.0/8"), 20},
               {cidr("10.1.0.0/16"), 21},
               {cidr("10.1.2.3/32"), 22},
               {cidr("192.168.0.1/32"), kHostClass},
               {cidr("::/0"), kWorldClass}};
  s.rules = {{"ns/a", Direction::Ingress, 0}, {"ns/a", Direction::Ingress, 1},
             {"ns/a", Direction::Egress, 0}};
  EndpointPolicy ep;
  ep.ingressIsolated = true;
  ep.entries = {{Direction::Ingress, 20, kTcp, {80, 80}, 0},
                {Direction::Ingress, kAnyPeer, kAnyProtocol, {5000, 5010}, 1},
                {Direction::Egress, 22, kAnyProtocol, {}, 2}};
  s.endpoints[1] = ep;
  s.endpoints[2] = EndpointPolicy{};
  s.revision = 3;
  return s;
}

TEST(IrClassOfTest, LongestPrefixWins) {
  State s = sample();
  EXPECT_EQ(classOf(s, ip("10.1.2.3")), 22u);
  EXPECT_EQ(classOf(s, ip("10.1.2.4")), 21u);
  EXPECT_EQ(classOf(s, ip("10.2.0.1")), 20u);
  EXPECT_EQ(classOf(s, ip("11.0.0.1")), kWorldClass);
  EXPECT_EQ(classOf(s, ip("2001:db8::1")), kWorldClass);
  EXPECT_EQ(classOf(State{}, ip("1.1.1.1")), kWorldClass);
}

TEST(IrLookupTest, FollowsTheDatapathAlgorithm) {
  State s = sample();
  EXPECT_EQ(lookup(s, 1, Direction::Ingress, ip("10.2.0.1"), kTcp, 80), 0u);
  EXPECT_EQ(lookup(s, 1, Direction::Ingress, ip("10.2.0.1"), kTcp, 81), std::nullopt);
  // 10.1.x is a different class: only the any-peer entry applies.
  EXPECT_EQ(lookup(s, 1, Direction::Ingress, ip("10.1.0.1"), kTcp, 80), std::nullopt);
  // kAnyProtocol with a port range: those ports of TCP, UDP and SCTP only.
  EXPECT_EQ(lookup(s, 1, Direction::Ingress, ip("8.8.8.8"), kUdp, 5005), 1u);
  EXPECT_EQ(lookup(s, 1, Direction::Ingress, ip("8.8.8.8"), 1, 0), std::nullopt);
  EXPECT_EQ(lookup(s, 1, Direction::Ingress, ip("192.168.0.1"), kTcp, 1), kHostRule);
  EXPECT_EQ(lookup(s, 1, Direction::Egress, ip("10.1.2.3"), 1, 0), kNotIsolated);
  EXPECT_EQ(lookup(s, 2, Direction::Ingress, ip("10.1.2.3"), kTcp, 1), kNotIsolated);
  EXPECT_EQ(lookup(s, 3, Direction::Ingress, ip("10.1.2.3"), kTcp, 1), std::nullopt);
  s.endpoints[1].egressIsolated = true;
  EXPECT_EQ(lookup(s, 1, Direction::Egress, ip("10.1.2.3"), 1, 0), 2u);
  EXPECT_EQ(lookup(s, 1, Direction::Egress, ip("10.1.2.4"), 1, 0), std::nullopt);
}

TEST(IrDiffTest, EmptyBetweenEqualStates) {
  EXPECT_TRUE(computeDiff(sample(), sample()).empty());
}

TEST(IrDiffTest, NamesExactlyWhatChanged) {
  State a = sample();
  State b = sample();
  b.classes.erase(cidr("10.1.0.0/16"));
  b.classes[cidr("10.1.2.3/32")] = 23;
  b.classes[cidr("172.16.0.0/12")] = 24;
  b.endpoints[1].entries.erase(b.endpoints[1].entries.begin());
  b.endpoints[1].entries.insert({Direction::Ingress, 24, kUdp, {53, 53}, 3});
  b.endpoints.erase(2);
  b.endpoints[5].egressIsolated = true;
  b.rules.push_back({"ns/b", Direction::Ingress, 0});
  b.revision = 4;
  Diff d = computeDiff(a, b);
  EXPECT_EQ(d.classesUpsert.size(), 2u);
  EXPECT_EQ(d.classesRemove, std::vector<Prefix>{cidr("10.1.0.0/16")});
  ASSERT_EQ(d.endpoints.size(), 3u);
  EXPECT_EQ(d.endpoints[0].endpoint, 1u);
  EXPECT_EQ(d.endpoints[0].add.size(), 1u);
  EXPECT_EQ(d.endpoints[0].remove.size(), 1u);
  EXPECT_TRUE(d.endpoints[0].ingressIsolated);
  EXPECT_EQ(d.endpoints[1].endpoint, 2u);
  EXPECT_TRUE(d.endpoints[1].removed);
  EXPECT_EQ(d.endpoints[2].endpoint, 5u);
  EXPECT_TRUE(d.endpoints[2].egressIsolated);
  ASSERT_EQ(d.rulesUpsert.size(), 1u);
  EXPECT_EQ(d.rulesUpsert[0].first, 3u);
  EXPECT_EQ(d.revision, 4u);
  applyDiff(a, d);
  EXPECT_EQ(a.classes, b.classes);
  EXPECT_EQ(a.endpoints, b.endpoints);
  EXPECT_EQ(a.rules, b.rules);
}

}  // namespace
}  // namespace sluice::compiler::testing
