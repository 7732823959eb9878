// Unit tests of the compiler: classes, ports, rule origins, host addresses, stable ids.
#include "policyd/compiler/compiler.h"

#include <gtest/gtest.h>

#include "tests/compiler/test_util.h"

namespace sluice::compiler::testing {
namespace {

using model::Protocol;
constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;

// prod (team=a): web1, web2 (app=web, http=8080), db (app=db, http=80, dns=53/UDP);
// dev (team=b): client. Endpoints of this node: web1 (1), db (2), client (3).
struct Fixture {
  model::Cluster cluster;
  NodeContext node;
  Fixture() {
    cluster.namespaces = {ns("prod", {{"team", "a"}}), ns("dev", {{"team", "b"}})};
    cluster.pods = {
        pod("prod", "web1", {{"app", "web"}}, {"10.0.0.1", "fd00::1"}, {{"http", 8080, Protocol::TCP}}),
        pod("prod", "web2", {{"app", "web"}}, {"10.0.0.2", "fd00::2"}, {{"http", 8080, Protocol::TCP}}),
        pod("prod", "db", {{"app", "db"}}, {"10.0.1.2", "fd00::1:2"},
            {{"http", 80, Protocol::TCP}, {"dns", 53, Protocol::UDP}}),
        pod("dev", "client", {{"app", "client"}}, {"10.0.2.1"}),
    };
    node.hostAddresses = {ip("192.168.0.1")};
    node.endpoints = {endpointFor(1, cluster.pods[0]), endpointFor(2, cluster.pods[2]),
                      endpointFor(3, cluster.pods[3])};
  }
  State compile() const { return compiler::compile(cluster, node); }
};

TEST(CompilerClassesTest, PodsWithEqualLabelsShareAClass) {
  Fixture f;
  f.cluster.policies = {policy("prod", "db-in", sel({{"app", "db"}}), {{{podPeer({{"app", "web"}})}, {}}}, {})};
  State s = f.compile();
  EXPECT_EQ(classOf(s, ip("10.0.0.1")), classOf(s, ip("10.0.0.2")));
  EXPECT_EQ(classOf(s, ip("fd00::1")), classOf(s, ip("10.0.0.2")));
  EXPECT_NE(classOf(s, ip("10.0.0.1")), classOf(s, ip("10.0.2.1")));
  EXPECT_GE(classOf(s, ip("10.0.0.1")), kFirstDynamicClass);
  EXPECT_TRUE(allows(s, 2, Direction::Ingress, "10.0.0.2", kTcp, 5432));
  EXPECT_FALSE(allows(s, 2, Direction::Ingress, "10.0.2.1", kTcp, 5432));
  // One class, one entry: the table grows with classes, not pods.
  EXPECT_EQ(s.endpoints.at(2).entries.size(), 1u);
}

TEST(CompilerClassesTest, PodsNoRuleTellsApartAreWorld) {
  Fixture f;
  State s = f.compile();
  EXPECT_EQ(classOf(s, ip("10.0.0.1")), kWorldClass);
  EXPECT_EQ(classOf(s, ip("8.8.8.8")), kWorldClass);
  EXPECT_EQ(classOf(s, ip("192.168.0.1")), kHostClass);
  EXPECT_EQ(s.classes.at(cidr("0.0.0.0/0")), kWorldClass);
  EXPECT_EQ(s.classes.at(cidr("::/0")), kWorldClass);
  EXPECT_EQ(lookup(s, 1, Direction::Ingress, ip("10.0.2.1"), kTcp, 80), kNotIsolated);
}

TEST(CompilerClassesTest, IpBlockExceptSplitsAndCoversPods) {
  Fixture f;
  f.cluster.policies = {policy("prod", "web-out", sel({{"app", "web"}}), {},
                               {{{blockPeer("10.0.0.0/16", {"10.0.1.0/24"})}, {tcp(443)}}}, false,
                               true)};
  State s = f.compile();
  EXPECT_NE(classOf(s, ip("10.0.2.5")), classOf(s, ip("10.0.1.5")));
  EXPECT_TRUE(allows(s, 1, Direction::Egress, "10.0.2.5", kTcp, 443));
  EXPECT_FALSE(allows(s, 1, Direction::Egress, "10.0.1.5", kTcp, 443));
  EXPECT_FALSE(allows(s, 1, Direction::Egress, "10.1.0.1", kTcp, 443));
  // "matched against any address, pod addresses included"
  EXPECT_TRUE(allows(s, 1, Direction::Egress, "10.0.2.1", kTcp, 443));   // client, inside
  EXPECT_FALSE(allows(s, 1, Direction::Egress, "10.0.1.2", kTcp, 443));  // db, excepted
  EXPECT_FALSE(allows(s, 1, Direction::Egress, "fd00::1:2", kTcp, 443));
  EXPECT_TRUE(s.classes.contains(cidr("10.0.0.0/16")));
  EXPECT_TRUE(s.classes.contains(cidr("10.0.1.0/24")));
}

TEST(CompilerClassesTest, Ipv6Blocks) {
  Fixture f;
  f.cluster.policies = {policy("prod", "web-out", sel({{"app", "web"}}), {},
                               {{{blockPeer("fd00::/64", {"fd00::1:0/112"})}, {}}}, false, true)};
  State s = f.compile();
  EXPECT_TRUE(allows(s, 1, Direction::Egress, "fd00::2", 1, 0));  // any protocol
  EXPECT_FALSE(allows(s, 1, Direction::Egress, "fd00::1:2", kTcp, 80));
  EXPECT_FALSE(allows(s, 1, Direction::Egress, "10.0.0.2", kTcp, 80));
  EXPECT_FALSE(allows(s, 1, Direction::Egress, "2001:db8::1", kTcp, 80));
}

TEST(CompilerPortsTest, EgressNamedPortResolvesPerDestination) {
  Fixture f;
  f.cluster.policies = {policy("prod", "web-out", sel({{"app", "web"}}), {},
                               {{{podPeer({})}, {named("http")}},
                                {{blockPeer("10.0.0.0/8")}, {named("http"), tcp(9000)}}},
                               false, true)};
  State s = f.compile();
  EXPECT_TRUE(allows(s, 1, Direction::Egress, "10.0.1.2", kTcp, 80));     // db: http=80
  EXPECT_FALSE(allows(s, 1, Direction::Egress, "10.0.1.2", kTcp, 8080));
  EXPECT_TRUE(allows(s, 1, Direction::Egress, "10.0.0.2", kTcp, 8080));   // web2: http=8080
  EXPECT_FALSE(allows(s, 1, Direction::Egress, "10.0.0.2", kTcp, 80));
  // "named ports never match an ipBlock peer": client is only in the ipBlock.
  EXPECT_FALSE(allows(s, 1, Direction::Egress, "10.0.2.1", kTcp, 8080));
  EXPECT_TRUE(allows(s, 1, Direction::Egress, "10.0.2.1", kTcp, 9000));
  // web and db resolve http differently, so they are different classes.
  EXPECT_NE(classOf(s, ip("10.0.0.2")), classOf(s, ip("10.0.1.2")));
}

TEST(CompilerPortsTest, EgressNamedPortWithoutPeers) {
  Fixture f;
  f.cluster.policies = {policy("dev", "client-out", sel({}), {},
                               {{{}, {named("dns", Protocol::UDP)}}}, false, true)};
  State s = f.compile();
  EXPECT_TRUE(allows(s, 3, Direction::Egress, "10.0.1.2", kUdp, 53));
  EXPECT_FALSE(allows(s, 3, Direction::Egress, "10.0.0.1", kUdp, 53));
  EXPECT_FALSE(allows(s, 3, Direction::Egress, "8.8.8.8", kUdp, 53));
}

TEST(CompilerPortsTest, IngressNamedPortResolvesAgainstTheEndpoint) {
  Fixture f;
  f.cluster.policies = {policy("prod", "in", sel({}), {{{blockPeer("0.0.0.0/0")}, {named("http")}}}, {})};
  State s = f.compile();
  EXPECT_TRUE(allows(s, 2, Direction::Ingress, "8.8.8.8", kTcp, 80));   // db: http=80
  EXPECT_FALSE(allows(s, 2, Direction::Ingress, "8.8.8.8", kTcp, 8080));
  EXPECT_TRUE(allows(s, 1, Direction::Ingress, "8.8.8.8", kTcp, 8080));  // web1: http=8080
}

TEST(CompilerPortsTest, EndPortIsOneRange) {
  Fixture f;
  f.cluster.policies = {policy("prod", "in", sel({{"app", "db"}}), {{{}, {tcp(8000, 8100)}}}, {})};
  State s = f.compile();
  const auto& entries = s.endpoints.at(2).entries;
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries.begin()->peer, kAnyPeer);
  EXPECT_EQ(entries.begin()->ports, (PortRange{8000, 8100}));
  EXPECT_TRUE(allows(s, 2, Direction::Ingress, "8.8.8.8", kTcp, 8000));
  EXPECT_TRUE(allows(s, 2, Direction::Ingress, "8.8.8.8", kTcp, 8100));
  EXPECT_FALSE(allows(s, 2, Direction::Ingress, "8.8.8.8", kTcp, 8101));
  EXPECT_FALSE(allows(s, 2, Direction::Ingress, "8.8.8.8", kUdp, 8050));
}

TEST(CompilerPortsTest, NoPortsMeansAnyProtocol) {
  Fixture f;
  f.cluster.policies = {policy("prod", "in", sel({{"app", "db"}}), {{{podPeer({{"app", "web"}})}, {}}}, {})};
  State s = f.compile();
  EXPECT_EQ(s.endpoints.at(2).entries.begin()->protocol, kAnyProtocol);
  EXPECT_TRUE(allows(s, 2, Direction::Ingress, "10.0.0.1", 1, 0));  // ICMP
}

TEST(CompilerRulesTest, EntriesCarryTheirRuleOrigin) {
  Fixture f;
  f.cluster.policies = {policy("prod", "db-in", sel({{"app", "db"}}),
                               {{{podPeer({{"app", "web"}})}, {tcp(5432)}}, {{}, {tcp(9090)}}}, {})};
  State s = f.compile();
  auto r1 = lookup(s, 2, Direction::Ingress, ip("10.0.0.1"), kTcp, 5432);
  auto r2 = lookup(s, 2, Direction::Ingress, ip("10.0.2.1"), kTcp, 9090);
  ASSERT_TRUE(r1 && r2);
  EXPECT_EQ(s.rules.at(*r1), (RuleOrigin{"prod/db-in", Direction::Ingress, 0}));
  EXPECT_EQ(s.rules.at(*r2), (RuleOrigin{"prod/db-in", Direction::Ingress, 1}));
}

TEST(CompilerRulesTest, RuleIdsAreStableAcrossUpdates) {
  Fixture f;
  f.cluster.policies = {policy("prod", "m", sel({{"app", "db"}}), {{{}, {tcp(1)}}}, {})};
  Compiler c;
  c.update(f.cluster, f.node);
  const RuleId before = *lookup(c.state(), 2, Direction::Ingress, ip("8.8.8.8"), kTcp, 1);
  f.cluster.policies.insert(f.cluster.policies.begin(),
                            policy("prod", "a", sel({}), {{{}, {tcp(2)}}}, {}));
  Diff d = c.update(f.cluster, f.node);
  EXPECT_EQ(*lookup(c.state(), 2, Direction::Ingress, ip("8.8.8.8"), kTcp, 1), before);
  EXPECT_EQ(d.rulesUpsert.size(), 1u);
  EXPECT_EQ(d.rulesUpsert[0].second, (RuleOrigin{"prod/a", Direction::Ingress, 0}));
}

TEST(CompilerHostTest, HostAlwaysReachesPodsAndEgressToItFollowsIpBlocks) {
  Fixture f;
  f.node.hostAddresses = {ip("192.168.0.1"), ip("fd00:ffff::1")};
  f.cluster.policies = {policy("prod", "deny", sel({}), {}, {{{blockPeer("192.168.0.0/24")}, {}}},
                               true, true)};
  State s = f.compile();
  EXPECT_EQ(classOf(s, ip("192.168.0.1")), kHostClass);
  EXPECT_EQ(lookup(s, 1, Direction::Ingress, ip("192.168.0.1"), kTcp, 8080), kHostRule);
  EXPECT_FALSE(allows(s, 1, Direction::Ingress, "192.168.0.2", kTcp, 8080));
  // The v6 host address is outside the ipBlock: its own class, still always allowed in.
  EXPECT_NE(classOf(s, ip("fd00:ffff::1")), kHostClass);
  EXPECT_EQ(lookup(s, 1, Direction::Ingress, ip("fd00:ffff::1"), kTcp, 8080), kHostRule);
  EXPECT_TRUE(allows(s, 1, Direction::Egress, "192.168.0.1", kTcp, 10250));
  EXPECT_FALSE(allows(s, 1, Direction::Egress, "fd00:ffff::1", kTcp, 10250));
}

TEST(CompilerHostTest, HostNetworkPodsAreNodeAddresses) {
  Fixture f;
  auto agent = pod("kube-system", "agent", {{"app", "web"}}, {"192.168.0.7"});
  agent.hostNetwork = true;
  f.cluster.pods.push_back(agent);
  f.cluster.policies = {policy("prod", "out", sel({}), {}, {{{nsPeer({})}, {}}}, false, true)};
  State s = f.compile();
  EXPECT_FALSE(allows(s, 1, Direction::Egress, "192.168.0.7", kTcp, 80));
  EXPECT_TRUE(allows(s, 1, Direction::Egress, "10.0.2.1", kTcp, 80));
}

TEST(CompilerEndpointTest, UnknownPodIsIsolatedByNamespaceDefaultDeny) {
  Fixture f;
  f.cluster.policies = {policy("prod", "deny", sel({}), {}, {})};
  f.node.endpoints.push_back({9, "prod", "not-yet-seen", {ip("10.0.0.9")}});
  State s = f.compile();
  ASSERT_TRUE(s.endpoints.contains(9));
  EXPECT_TRUE(s.endpoints.at(9).ingressIsolated);
  EXPECT_FALSE(allows(s, 9, Direction::Ingress, "10.0.0.1", kTcp, 80));
  EXPECT_EQ(lookup(s, 9, Direction::Egress, ip("10.0.0.1"), kTcp, 80), kNotIsolated);
  EXPECT_EQ(lookup(s, 77, Direction::Egress, ip("10.0.0.1"), kTcp, 80), std::nullopt);
}

TEST(CompilerEndpointTest, EndpointAddressesAreAuthoritative) {
  Fixture f;
  f.cluster.policies = {policy("dev", "in", sel({}), {{{podPeer({{"app", "web"}}), nsPeer({{"team", "a"}})}, {}}}, {})};
  f.node.endpoints[0].ips = {ip("10.0.0.99")};  // web1 registered with a new address
  State s = f.compile();
  EXPECT_TRUE(allows(s, 3, Direction::Ingress, "10.0.0.99", kTcp, 80));
}

TEST(CompilerUpdateTest, FirstUpdateIsTheWholeStateAndUnrelatedRelabelIsCheap) {
  Fixture f;
  f.cluster.policies = {policy("prod", "db-in", sel({{"app", "db"}}), {{{podPeer({{"app", "web"}})}, {}}}, {})};
  Compiler c;
  Diff first = c.update(f.cluster, f.node);
  Diff expected = computeDiff(State{}, c.state());
  EXPECT_EQ(first.classesUpsert, expected.classesUpsert);
  EXPECT_EQ(first.endpoints.size(), expected.endpoints.size());
  const State before = c.state();
  // A label no selector looks at: same signature, same class, nothing to apply.
  f.cluster.pods[1].labels["version"] = "2";
  Diff d = c.update(f.cluster, f.node);
  EXPECT_TRUE(d.empty());
  EXPECT_EQ(c.state().classes, before.classes);
  EXPECT_EQ(c.state().revision, before.revision);
  // web2 stops being a web pod: its addresses move, db's allow set keeps the web class.
  f.cluster.pods[1].labels["app"] = "other";
  d = c.update(f.cluster, f.node);
  EXPECT_EQ(d.classesUpsert.size(), 2u);
  EXPECT_TRUE(d.endpoints.empty());
  EXPECT_EQ(c.lastStats().endpointsRecomputed, 0u);
  EXPECT_GT(c.state().revision, before.revision);
  EXPECT_FALSE(allows(c.state(), 2, Direction::Ingress, "10.0.0.2", kTcp, 80));
  EXPECT_TRUE(allows(c.state(), 2, Direction::Ingress, "10.0.0.1", kTcp, 80));
}

}  // namespace
}  // namespace sluice::compiler::testing
