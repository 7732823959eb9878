#include "policyd/ctl/lint.h"

#include <gtest/gtest.h>

#include <set>
#include <sstream>

#include "policyd/ctl/app.h"
#include "policyd/model/decode.h"
#include "subprocess.h"

namespace sluice::ctl {
namespace {

using model::Peer;
using model::PortSpec;
using model::Protocol;
using model::Rule;
using testing::fixture;

model::LabelSelector sel(model::Labels l) { return {std::move(l), {}}; }
Peer podPeer(model::Labels l) { return Peer{sel(std::move(l)), std::nullopt, std::nullopt}; }
Peer nsPeer(model::Labels l) { return Peer{std::nullopt, sel(std::move(l)), std::nullopt}; }
Peer block(const char* cidr, std::vector<const char*> except = {}) {
  model::IPBlock b{*Prefix::parse(cidr), {}};
  for (auto* e : except) b.except.push_back(*Prefix::parse(e));
  return Peer{std::nullopt, std::nullopt, b};
}
PortSpec tcp(uint16_t p, std::optional<uint16_t> end = std::nullopt) {
  return {Protocol::TCP, p, end};
}

TEST(RuleCoversTest, AllowAllCoversEverything) {
  Rule all;
  EXPECT_TRUE(ruleCovers(all, Rule{{podPeer({{"app", "web"}})}, {tcp(80)}}));
  EXPECT_TRUE(ruleCovers(all, all));
  EXPECT_FALSE(ruleCovers(Rule{{podPeer({{"app", "web"}})}, {}}, all));
}

TEST(RuleCoversTest, PortsAndRanges) {
  Rule wide{{}, {tcp(8000, 9000)}};
  EXPECT_TRUE(ruleCovers(wide, Rule{{}, {tcp(8080)}}));
  EXPECT_TRUE(ruleCovers(wide, Rule{{}, {tcp(8000, 8100)}}));
  EXPECT_FALSE(ruleCovers(wide, Rule{{}, {tcp(7999, 8100)}}));
  EXPECT_FALSE(ruleCovers(wide, Rule{{}, {PortSpec{Protocol::UDP, uint16_t{8080}, {}}}}));
  EXPECT_FALSE(ruleCovers(wide, Rule{{}, {}}));  // all ports is more than a range
  Rule tcpAll{{}, {PortSpec{Protocol::TCP, std::monostate{}, {}}}};
  EXPECT_TRUE(ruleCovers(tcpAll, Rule{{}, {tcp(1, 65535)}}));
  Rule named{{}, {PortSpec{Protocol::TCP, std::string("http"), {}}}};
  EXPECT_TRUE(ruleCovers(named, named));
  EXPECT_FALSE(ruleCovers(named, Rule{{}, {tcp(80)}}));  // depends on the pod: not exact
}

TEST(RuleCoversTest, Peers) {
  Rule web{{podPeer({{"app", "web"}})}, {}};
  EXPECT_TRUE(ruleCovers(Rule{{podPeer({{"app", "web"}}), nsPeer({{"team", "x"}})}, {}}, web));
  EXPECT_FALSE(ruleCovers(Rule{{nsPeer({{"team", "x"}})}, {}}, web));
  // Every pod of the policy's namespace covers any podSelector-only peer.
  EXPECT_TRUE(ruleCovers(Rule{{Peer{sel({}), std::nullopt, std::nullopt}}, {}}, web));
  // namespaceSelector {} alone covers every selector peer, but not ipBlocks.
  Rule everyPod{{nsPeer({})}, {}};
  EXPECT_TRUE(ruleCovers(everyPod, web));
  EXPECT_FALSE(ruleCovers(everyPod, Rule{{block("10.0.0.0/8")}, {}}));
}

TEST(RuleCoversTest, IpBlocksWithExcept) {
  Rule wide{{block("10.0.0.0/8", {"10.1.0.0/16"})}, {}};
  EXPECT_TRUE(ruleCovers(wide, Rule{{block("10.2.0.0/16")}, {}}));
  EXPECT_FALSE(ruleCovers(wide, Rule{{block("10.0.0.0/8")}, {}}));
  EXPECT_TRUE(ruleCovers(wide, Rule{{block("10.0.0.0/8", {"10.1.0.0/16"})}, {}}));
  EXPECT_TRUE(ruleCovers(wide, Rule{{block("10.0.0.0/8", {"10.0.0.0/9"})}, {}}));
  EXPECT_FALSE(ruleCovers(wide, Rule{{block("10.1.2.0/24")}, {}}));
  EXPECT_FALSE(ruleCovers(wide, Rule{{block("192.168.0.0/16")}, {}}));
}

// Lints the fixture cluster's pods and namespaces plus one lint fixture, in process.
std::vector<Finding> lintFixture(const std::string& kind) {
  auto d = model::loadPaths(
      {fixture("cluster/namespaces.yaml"), fixture("cluster/pods.json"), fixture("lint/" + kind)});
  EXPECT_TRUE(d.errors.empty()) << d.errors.front().message;
  engine::Evaluator ev(d.cluster);
  return lint(ev);
}

class LintKindTest : public ::testing::TestWithParam<const char*> {};

TEST_P(LintKindTest, FixtureTriggersExactlyItsKind) {
  auto findings = lintFixture(GetParam());
  ASSERT_FALSE(findings.empty());
  for (const auto& f : findings) {
    EXPECT_EQ(f.kind, GetParam()) << f.object << " " << f.field << ": " << f.message;
    EXPECT_FALSE(f.object.empty());
    EXPECT_TRUE(f.field.starts_with("spec.")) << f.field;
    EXPECT_FALSE(f.hint.empty());
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, LintKindTest,
                         ::testing::Values(kPolicySelectsNothing, kPeerSelectsNothing,
                                           kEgressWithoutDns, kUnknownNamedPort, kIpBlockCoversPods,
                                           kShadowedRule, kIgnoredRules, kOrPeers),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& c : n) c = c == '-' ? '_' : c;
                           return n;
                         });

TEST(LintTest, CleanClusterAndDemoHaveNoFindings) {
  for (const auto& path :
       {fixture("cluster"), std::string(SLUICE_SOURCE_DIR) + "/manifests/examples"}) {
    auto d = model::loadPaths({path});
    ASSERT_TRUE(d.errors.empty());
    engine::Evaluator ev(d.cluster);
    auto findings = lint(ev);
    for (const auto& f : findings) ADD_FAILURE() << path << ": " << f.kind << " " << f.message;
  }
}

TEST(LintTest, FindingDetails) {
  auto f = lintFixture("peer-selects-nothing");
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].object, "prod/web-from-dev");
  EXPECT_EQ(f[0].field, "spec.ingress[0].from[0].namespaceSelector");
  EXPECT_EQ(f[1].field, "spec.ingress[1].from[0].podSelector");

  f = lintFixture("unknown-named-port");
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].object, "dev/client-egress");
  EXPECT_NE(f[0].message.find("ipBlock"), std::string::npos);
  EXPECT_EQ(f[1].field, "spec.ingress[0].ports[0].port");
  EXPECT_NE(f[1].message.find("htpp"), std::string::npos);

  f = lintFixture("shadowed-rule");
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].object, "prod/backend");
  EXPECT_EQ(f[0].field, "spec.ingress[1]");
  EXPECT_EQ(f[1].object, "prod/db-metrics");
  EXPECT_NE(f[1].message.find("prod/backend spec.ingress[0]"), std::string::npos);

  f = lintFixture("egress-without-dns");
  ASSERT_EQ(f.size(), 1u);
  EXPECT_NE(f[0].message.find("prod/api"), std::string::npos);
}

TEST(LintTest, DuplicateRulesReportOnlyTheLaterOne) {
  model::Cluster c;
  c.pods.push_back({"ns", "p", {{"app", "web"}}, {}, {}, false, "", {}});
  for (const char* name : {"a", "b"}) {
    model::NetworkPolicy pol;
    pol.namespace_ = "ns";
    pol.name = name;
    pol.podSelector = sel({{"app", "web"}});
    pol.affectsIngress = true;
    pol.ingress.push_back(Rule{{podPeer({{"app", "web"}})}, {tcp(80)}});
    c.policies.push_back(pol);
  }
  engine::Evaluator ev(c);
  LintContext ctx(ev);
  std::vector<Finding> out;
  checkShadowedRules(ctx, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].object, "ns/b");
}

TEST(LintTest, IpBlockCountsCoveredAddressesMinusNestedExcepts) {
  model::Cluster c;
  for (const char* ip : {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.5", "10.0.1.1"}) {
    c.pods.push_back({"ns", std::string("p") + ip, {}, {*IpAddr::parse(ip)}, {}, false, "", {}});
  }
  model::NetworkPolicy pol;
  pol.namespace_ = "ns";
  pol.name = "pol";
  pol.affectsIngress = true;
  pol.ingress.push_back(Rule{{block("10.0.0.0/24", {"10.0.0.0/30", "10.0.0.2/31"})}, {}});
  c.policies.push_back(pol);
  engine::Evaluator ev(c);
  LintContext ctx(ev);
  std::vector<Finding> out;
  checkIpBlockCoversPods(ctx, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_NE(out[0].message.find("covers 1 pod address(es) (e.g. ns/p10.0.0.5 10.0.0.5)"),
            std::string::npos)
      << out[0].message;
}

TEST(LintTest, TextLineFormat) {
  std::ostringstream os;
  renderLintText(os, {Finding{"k", "ns/p", "spec.x", "msg", "do y"}});
  EXPECT_EQ(os.str(), "WARN k ns/p spec.x: msg (hint: do y)\n");
}

// Lint of what the decoder read: the manifest text goes through decodeText as `sluicectl lint -f`.
std::vector<Finding> lintText(const std::string& text, const std::string& file) {
  model::Decoded d = model::decodeText(text, file);
  EXPECT_TRUE(d.errors.empty()) << (d.errors.empty() ? "" : d.errors[0].message);
  engine::Evaluator ev(d.cluster);
  return lint(ev);
}

std::vector<Finding> ofKind(const std::vector<Finding>& all, const char* kind) {
  std::vector<Finding> out;
  for (const auto& f : all) {
    if (f.kind == kind) out.push_back(f);
  }
  return out;
}

std::string ipBlockPolicy(const std::string& block) {
  return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: "
         "ns}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: " +
         block + "\n";
}

TEST(LintTest, IpBlockWithHostBitsWarnsWithTheNetworkItMeans) {
  auto out = ofKind(lintText(ipBlockPolicy("{cidr: 10.0.0.5/24, except: [10.0.0.9/30]}"), "p.yaml"),
                    kIpBlockHostBits);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].object, "ns/p");
  EXPECT_EQ(out[0].field, "spec.ingress[0].from[0].ipBlock.cidr");
  EXPECT_NE(out[0].message.find("\"10.0.0.5/24\" has host bits set; it means the whole network "
                                "10.0.0.0/24"),
            std::string::npos)
      << out[0].message;
  EXPECT_NE(out[0].hint.find("10.0.0.5/32"), std::string::npos) << out[0].hint;
  EXPECT_EQ(out[1].field, "spec.ingress[0].from[0].ipBlock.except[0]");
  EXPECT_NE(out[1].message.find("10.0.0.8/30"), std::string::npos) << out[1].message;
  EXPECT_TRUE(
      ofKind(lintText(ipBlockPolicy("{cidr: 10.0.0.0/24}"), "q.yaml"), kIpBlockHostBits).empty());
}

TEST(LintTest, Ipv4MappedIpBlockWarns) {
  auto out = ofKind(lintText(ipBlockPolicy("{cidr: \"::ffff:192.168.77.0/120\"}"), "p.yaml"),
                    kIpBlockIpv4Mapped);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].field, "spec.ingress[0].from[0].ipBlock.cidr");
  EXPECT_NE(out[0].message.find("::ffff:192.168.77.0/120 is an IPv4-mapped IPv6 prefix"),
            std::string::npos)
      << out[0].message;
  EXPECT_NE(out[0].hint.find("192.168.77.0/24"), std::string::npos) << out[0].hint;
  // The whole mapped range is 0.0.0.0/0 in IPv4 terms; an except inside it warns too.
  out = ofKind(lintText(ipBlockPolicy("{cidr: \"::/0\", except: [\"::ffff:0:0/96\"]}"), "q.yaml"),
               kIpBlockIpv4Mapped);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].field, "spec.ingress[0].from[0].ipBlock.except[0]");
  EXPECT_NE(out[0].hint.find("0.0.0.0/0"), std::string::npos) << out[0].hint;
  // Ordinary IPv6 and IPv4 blocks do not.
  for (const char* b : {"{cidr: \"fd00::/64\"}", "{cidr: \"::/0\"}", "{cidr: 192.168.77.0/24}",
                        "{cidr: \"::fffe:0:0/96\"}"}) {
    EXPECT_TRUE(ofKind(lintText(ipBlockPolicy(b), "r.yaml"), kIpBlockIpv4Mapped).empty()) << b;
  }
}

TEST(LintTest, DuplicateKeysWarnTheSameInYamlAndJson) {
  const std::string yaml =
      "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: "
      "ns}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  podSelector: {}\n";
  const std::string json =
      R"({"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"p",)"
      R"("namespace":"ns"},"spec":{"podSelector":{"matchLabels":{"app":"db"}},"podSelector":{}}})";
  for (const auto& [text, file] : {std::pair{yaml, "p.yaml"}, std::pair{json, "p.json"}}) {
    SCOPED_TRACE(file);
    auto out = ofKind(lintText(text, file), kDuplicateKey);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].object, "ns/p");
    EXPECT_EQ(out[0].field, "spec.podSelector");
    EXPECT_NE(out[0].message.find("the last value is used"), std::string::npos);
  }
}

}  // namespace
}  // namespace sluice::ctl
