#include "policyd/engine/selection.h"

#include <gtest/gtest.h>

#include "tests/support/model_builders.h"

namespace sluice::engine {
namespace {

using namespace model::testing;  // NOLINT(google-build-using-namespace): fixture builders
using model::ContainerPort;
using model::Labels;
using model::Protocol;
using model::Rule;

const Labels kProdLabels{{"kubernetes.io/metadata.name", "prod"}, {"team", "a"}};
const Labels kDevLabels{{"kubernetes.io/metadata.name", "dev"}, {"team", "b"}};

TEST(SelectionTest, PolicySelectsPodsOfItsOwnNamespaceOnly) {
  auto pol = policy("prod", "p", sel({{"app", "web"}}), {}, {}, true, false);
  auto web = pod("prod", "w", {{"app", "web"}}, {"10.0.0.1"});
  auto elsewhere = pod("dev", "w", {{"app", "web"}}, {"10.0.0.2"});
  auto hostNet = web;
  hostNet.hostNetwork = true;
  EXPECT_TRUE(podSelectorMatches(pol, web));
  EXPECT_FALSE(podSelectorMatches(pol, elsewhere));
  EXPECT_FALSE(podSelectorMatches(pol, hostNet));  // hostNetwork pods are not endpoints
  EXPECT_TRUE(selects(pol, web, Direction::Ingress));
  EXPECT_FALSE(selects(pol, web, Direction::Egress));  // policyTypes has no Egress
  EXPECT_TRUE(affects(pol, Direction::Ingress));
  EXPECT_FALSE(affects(pol, Direction::Egress));
}

TEST(SelectionTest, RulesOfPicksTheDirection) {
  auto pol = policy("prod", "p", sel({}), {Rule{}}, {Rule{}, Rule{}}, true, true);
  EXPECT_EQ(&rulesOf(pol, Direction::Ingress), &pol.ingress);
  EXPECT_EQ(&rulesOf(pol, Direction::Egress), &pol.egress);
  EXPECT_STREQ(directionName(Direction::Egress), "egress");
}

TEST(SelectionTest, PeerShapes) {
  auto pol = policy("prod", "p", sel({}), {}, {});
  const Labels web{{"app", "web"}};
  // podSelector alone: pods of the policy's namespace.
  EXPECT_TRUE(peerSelectsPod(pol, podPeer(web), "prod", web, kProdLabels));
  EXPECT_FALSE(peerSelectsPod(pol, podPeer(web), "dev", web, kDevLabels));
  EXPECT_FALSE(peerSelectsPod(pol, podPeer(web), "prod", {{"app", "db"}}, kProdLabels));
  // namespaceSelector alone: every pod of the matching namespaces.
  EXPECT_TRUE(peerSelectsPod(pol, nsPeer({{"team", "b"}}), "dev", {}, kDevLabels));
  EXPECT_FALSE(peerSelectsPod(pol, nsPeer({{"team", "b"}}), "prod", {}, kProdLabels));
  // Both in one element: AND.
  EXPECT_TRUE(peerSelectsPod(pol, bothPeer(web, {{"team", "b"}}), "dev", web, kDevLabels));
  EXPECT_FALSE(peerSelectsPod(pol, bothPeer(web, {{"team", "b"}}), "dev", {}, kDevLabels));
  EXPECT_FALSE(peerSelectsPod(pol, bothPeer(web, {{"team", "b"}}), "prod", web, kProdLabels));
  // {} namespaceSelector: all namespaces.
  EXPECT_TRUE(peerSelectsPod(pol, nsPeer({}), "dev", {}, kDevLabels));
  // An ipBlock peer selects no pod by labels (it matches addresses).
  EXPECT_FALSE(peerSelectsPod(pol, blockPeer("0.0.0.0/0"), "prod", web, kProdLabels));
  EXPECT_FALSE(peerCoversNamespace(pol, blockPeer("0.0.0.0/0"), "prod", kProdLabels));
  EXPECT_TRUE(peerCoversNamespace(pol, podPeer(web), "prod", kProdLabels));
}

TEST(SelectionTest, IpBlockMembershipOfAddressesAndPrefixes) {
  const auto block = *blockPeer("10.0.0.0/16", {"10.0.1.0/24"}).ipBlock;
  EXPECT_TRUE(block.contains(ip("10.0.2.1")));
  EXPECT_FALSE(block.contains(ip("10.0.1.1")));
  EXPECT_FALSE(block.contains(ip("10.1.0.1")));
  EXPECT_FALSE(block.contains(ip("fd00::1")));
  EXPECT_TRUE(block.contains(cidr("10.0.2.0/24")));
  EXPECT_FALSE(block.contains(cidr("10.0.1.0/25")));  // inside the except
  EXPECT_FALSE(block.contains(cidr("10.0.0.0/8")));   // wider than the block
  // IPv4-mapped IPv6 is IPv6: it is not the IPv4 block.
  EXPECT_FALSE(block.contains(ip("::ffff:10.0.2.1")));
}

TEST(SelectionTest, PortsAndNamedPorts) {
  auto dst =
      pod("prod", "d", {}, {"10.0.0.1"},
          {ContainerPort{"http", 8080, Protocol::TCP}, ContainerPort{"dns", 53, Protocol::UDP}});
  EXPECT_EQ(resolveNamedPort(dst, "http", Protocol::TCP), 8080);
  EXPECT_EQ(resolveNamedPort(dst, "http", Protocol::UDP), std::nullopt);
  EXPECT_TRUE(portMatches(tcp(8000, 9000), Protocol::TCP, 8080, nullptr));
  EXPECT_FALSE(portMatches(tcp(8000, 9000), Protocol::UDP, 8080, nullptr));
  EXPECT_TRUE(portMatches(named("http"), Protocol::TCP, 8080, &dst));
  EXPECT_FALSE(portMatches(named("http"), Protocol::TCP, 8080, nullptr));
  auto hostNet = dst;
  hostNet.hostNetwork = true;
  EXPECT_FALSE(portMatches(named("http"), Protocol::TCP, 8080, &hostNet));

  Rule anyPort;
  EXPECT_EQ(matchingPort(anyPort, Direction::Ingress, false, Protocol::SCTP, 9, nullptr), -1);
  Rule rule{{}, {udp(53), named("http")}};
  EXPECT_EQ(matchingPort(rule, Direction::Egress, false, Protocol::UDP, 53, &dst), 0);
  EXPECT_EQ(matchingPort(rule, Direction::Egress, false, Protocol::TCP, 8080, &dst), 1);
  EXPECT_EQ(matchingPort(rule, Direction::Egress, false, Protocol::TCP, 80, &dst), std::nullopt);
  // A named port never matches an address an egress ipBlock admitted...
  EXPECT_EQ(namedPortPod(Direction::Egress, true, &dst), nullptr);
  EXPECT_EQ(matchingPort(rule, Direction::Egress, true, Protocol::TCP, 8080, &dst), std::nullopt);
  // ...while on ingress it is the selected pod's own port, whoever the peer is.
  EXPECT_EQ(namedPortPod(Direction::Ingress, true, &dst), &dst);
  EXPECT_EQ(matchingPort(rule, Direction::Ingress, true, Protocol::TCP, 8080, &dst), 1);
}

}  // namespace
}  // namespace sluice::engine
