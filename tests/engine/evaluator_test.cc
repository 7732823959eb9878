// Table-driven tests of every rule of DESIGN.md §5 against the reference evaluator. Fixtures are
// built in code with tweak lambdas so each case states only what differs.
#include "policyd/engine/evaluator.h"

#include <gtest/gtest.h>

#include <functional>

#include "tests/support/model_builders.h"

namespace sluice::engine {
namespace {

using model::Cluster;
using model::LabelSelector;
using model::NetworkPolicy;
using model::Peer;
using model::Pod;
using model::PortSpec;
using model::Protocol;
using model::Rule;
using model::SelectorOp;

using model::testing::blockPeer;
using model::testing::bothPeer;
using model::testing::cidr;
using model::testing::ip;
using model::testing::named;
using model::testing::nsPeer;
using model::testing::podPeer;
using model::testing::sel;
using model::testing::tcp;
using model::testing::udp;

// The base cluster: namespaces prod (team=a) and dev (team=b); pods prod/web (app=web, port
// http=8080/TCP, dns=53/UDP), prod/db (app=db), dev/client (app=client), and a hostNetwork pod.
Cluster baseCluster() {
  Cluster c;
  c.namespaces = {{"prod", {{"team", "a"}, {"kubernetes.io/metadata.name", "prod"}}, {}},
                  {"dev", {{"team", "b"}, {"kubernetes.io/metadata.name", "dev"}}, {}}};
  c.pods = {
      {"prod", "web", {{"app", "web"}}, {ip("10.0.1.1"), ip("fd00::1:1")},
       {{"http", 8080, Protocol::TCP}, {"dns", 53, Protocol::UDP}}, false, "n1", {}},
      {"prod", "db", {{"app", "db"}}, {ip("10.0.1.2"), ip("fd00::1:2")}, {}, false, "n1", {}},
      {"dev", "client", {{"app", "client"}}, {ip("10.0.2.1"), ip("fd00::2:1")}, {}, false,
       "n2", {}},
      {"kube-system", "node-agent", {{"app", "agent"}}, {ip("192.168.0.10")}, {}, true, "n1",
       {}},
  };
  return c;
}

using model::testing::policy;

struct FlowSpec {
  std::string from;  // "ns/pod" or an IP
  std::string to;
  Protocol protocol = Protocol::TCP;
  uint16_t port = 80;
  bool v6 = false;
};

FlowEnd endFor(const Evaluator& ev, const std::string& s, bool v6) {
  auto slash = s.find('/');
  if (slash != std::string::npos && s.find(':') == std::string::npos &&
      !std::isdigit(static_cast<unsigned char>(s[0]))) {
    const Pod* p = ev.findPod(s.substr(0, slash), s.substr(slash + 1));
    EXPECT_NE(p, nullptr) << s;
    FlowEnd e{p, std::nullopt};
    for (const auto& a : p->ips) {
      if (a.isV4() != v6) {
        e.ip = a;
        break;
      }
    }
    return e;
  }
  IpAddr a = ip(s.c_str());
  return FlowEnd{ev.podByIp(a), a};
}

Verdict run(const Cluster& c, const FlowSpec& f) {
  Evaluator ev(c);
  Flow flow{endFor(ev, f.from, f.v6), endFor(ev, f.to, f.v6), f.protocol, f.port};
  return ev.evaluate(flow);
}

struct Case {
  const char* name;
  std::function<void(Cluster&)> tweak;
  FlowSpec flow;
  bool allowed;
};

class SemanticsTest : public ::testing::TestWithParam<Case> {};

TEST_P(SemanticsTest, Verdict) {
  const Case& tc = GetParam();
  Cluster c = baseCluster();
  tc.tweak(c);
  Verdict v = run(c, tc.flow);
  EXPECT_EQ(v.allowed, tc.allowed) << tc.name;
}

const LabelSelector kAll{};
Rule allowAll() { return Rule{}; }

// Each case reads: in this cluster, is this flow allowed?
const Case kCases[] = {
    {"no policies: everything allowed", [](Cluster&) {}, {"dev/client", "prod/web"}, true},
    {"default deny ingress isolates the selected pod",
     [](Cluster& c) { c.policies.push_back(policy("prod", "deny", kAll, {}, {}, true, false)); },
     {"dev/client", "prod/web"}, false},
    {"default deny ingress does not restrict egress of the pod",
     [](Cluster& c) { c.policies.push_back(policy("prod", "deny", kAll, {}, {}, true, false)); },
     {"prod/web", "dev/client"}, true},
    {"default deny egress blocks the source",
     [](Cluster& c) { c.policies.push_back(policy("prod", "deny", kAll, {}, {}, false, true)); },
     {"prod/web", "dev/client"}, false},
    {"default deny egress does not restrict ingress",
     [](Cluster& c) { c.policies.push_back(policy("prod", "deny", kAll, {}, {}, false, true)); },
     {"dev/client", "prod/web"}, true},
    {"a policy only selects pods in its own namespace",
     [](Cluster& c) { c.policies.push_back(policy("dev", "deny", kAll, {}, {}, true, true)); },
     {"prod/db", "prod/web"}, true},
    {"podSelector narrows which pods are isolated",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "deny-db", sel({{"app", "db"}}), {}, {}, true, false));
     },
     {"dev/client", "prod/web"}, true},
    {"allow-all ingress rule ({}) re-allows",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "deny", kAll, {}, {}, true, false));
       c.policies.push_back(policy("prod", "all", kAll, {allowAll()}, {}, true, false));
     },
     {"dev/client", "prod/web"}, true},
    {"podSelector peer alone: same namespace only",
     [](Cluster& c) {
       c.policies.push_back(
           policy("prod", "p", kAll, {Rule{{podPeer({{"app", "client"}})}, {}}}, {}, true, false));
     },
     {"dev/client", "prod/web"}, false},
    {"podSelector peer alone matches same-namespace pod",
     [](Cluster& c) {
       c.policies.push_back(
           policy("prod", "p", kAll, {Rule{{podPeer({{"app", "db"}})}, {}}}, {}, true, false));
     },
     {"prod/db", "prod/web"}, true},
    {"namespaceSelector alone: all pods in matching namespaces",
     [](Cluster& c) {
       c.policies.push_back(
           policy("prod", "p", kAll, {Rule{{nsPeer({{"team", "b"}})}, {}}}, {}, true, false));
     },
     {"dev/client", "prod/web"}, true},
    {"namespaceSelector alone excludes non-matching namespace (even its own)",
     [](Cluster& c) {
       c.policies.push_back(
           policy("prod", "p", kAll, {Rule{{nsPeer({{"team", "b"}})}, {}}}, {}, true, false));
     },
     {"prod/db", "prod/web"}, false},
    {"namespaceSelector {} selects all namespaces",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll, {Rule{{nsPeer({})}, {}}}, {}, true, false));
     },
     {"dev/client", "prod/web"}, true},
    {"both selectors in one element are ANDed (pod label mismatch)",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll,
                                   {Rule{{bothPeer({{"app", "other"}}, {{"team", "b"}})}, {}}},
                                   {}, true, false));
     },
     {"dev/client", "prod/web"}, false},
    {"both selectors in one element are ANDed (match)",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll,
                                   {Rule{{bothPeer({{"app", "client"}}, {{"team", "b"}})}, {}}},
                                   {}, true, false));
     },
     {"dev/client", "prod/web"}, true},
    {"two elements are ORed",
     [](Cluster& c) {
       c.policies.push_back(policy(
           "prod", "p", kAll,
           {Rule{{podPeer({{"app", "other"}}), nsPeer({{"team", "b"}})}, {}}}, {}, true, false));
     },
     {"dev/client", "prod/web"}, true},
    {"namespace by kubernetes.io/metadata.name",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll,
                                   {Rule{{nsPeer({{"kubernetes.io/metadata.name", "dev"}})}, {}}},
                                   {}, true, false));
     },
     {"dev/client", "prod/web"}, true},
    {"matchExpressions In",
     [](Cluster& c) {
       LabelSelector s;
       s.matchExpressions.push_back({"app", SelectorOp::In, {"client", "x"}});
       c.policies.push_back(policy("prod", "p", kAll,
                                   {Rule{{Peer{s, sel({}), std::nullopt}}, {}}}, {}, true, false));
     },
     {"dev/client", "prod/web"}, true},
    {"matchExpressions NotIn matches a pod without the key",
     [](Cluster& c) {
       LabelSelector s;
       s.matchExpressions.push_back({"tier", SelectorOp::NotIn, {"front"}});
       c.policies.push_back(policy("prod", "p", kAll,
                                   {Rule{{Peer{s, sel({}), std::nullopt}}, {}}}, {}, true, false));
     },
     {"dev/client", "prod/web"}, true},
    {"matchExpressions DoesNotExist excludes a pod with the key",
     [](Cluster& c) {
       LabelSelector s;
       s.matchExpressions.push_back({"app", SelectorOp::DoesNotExist, {}});
       c.policies.push_back(policy("prod", "p", kAll,
                                   {Rule{{Peer{s, sel({}), std::nullopt}}, {}}}, {}, true, false));
     },
     {"dev/client", "prod/web"}, false},
    {"port: allowed port",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll, {Rule{{}, {tcp(80)}}}, {}, true, false));
     },
     {"dev/client", "prod/web", Protocol::TCP, 80}, true},
    {"port: other port denied",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll, {Rule{{}, {tcp(80)}}}, {}, true, false));
     },
     {"dev/client", "prod/web", Protocol::TCP, 81}, false},
    {"port: protocol must match (UDP to a TCP rule)",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll, {Rule{{}, {tcp(53)}}}, {}, true, false));
     },
     {"dev/client", "prod/web", Protocol::UDP, 53}, false},
    {"port: UDP rule allows UDP",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll, {Rule{{}, {udp(53)}}}, {}, true, false));
     },
     {"dev/client", "prod/web", Protocol::UDP, 53}, true},
    {"port: SCTP rule",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll,
                                   {Rule{{}, {PortSpec{Protocol::SCTP, uint16_t{9}, {}}}}}, {},
                                   true, false));
     },
     {"dev/client", "prod/web", Protocol::SCTP, 9}, true},
    {"port: protocol without port allows every port of it",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll, {Rule{{}, {PortSpec{Protocol::UDP, {}, {}}}}},
                                   {}, true, false));
     },
     {"dev/client", "prod/web", Protocol::UDP, 4242}, true},
    {"endPort: lower bound inclusive",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll, {Rule{{}, {tcp(8000, 8080)}}}, {}, true, false));
     },
     {"dev/client", "prod/web", Protocol::TCP, 8000}, true},
    {"endPort: upper bound inclusive",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll, {Rule{{}, {tcp(8000, 8080)}}}, {}, true, false));
     },
     {"dev/client", "prod/web", Protocol::TCP, 8080}, true},
    {"endPort: just outside",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll, {Rule{{}, {tcp(8000, 8080)}}}, {}, true, false));
     },
     {"dev/client", "prod/web", Protocol::TCP, 8081}, false},
    {"named port resolves against the destination pod (ingress)",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll, {Rule{{}, {named("http")}}}, {}, true, false));
     },
     {"dev/client", "prod/web", Protocol::TCP, 8080}, true},
    {"named port with the wrong protocol does not resolve",
     [](Cluster& c) {
       c.policies.push_back(
           policy("prod", "p", kAll, {Rule{{}, {named("dns", Protocol::TCP)}}}, {}, true, false));
     },
     {"dev/client", "prod/web", Protocol::TCP, 53}, false},
    {"named port with the right protocol",
     [](Cluster& c) {
       c.policies.push_back(
           policy("prod", "p", kAll, {Rule{{}, {named("dns", Protocol::UDP)}}}, {}, true, false));
     },
     {"dev/client", "prod/web", Protocol::UDP, 53}, true},
    {"named port the pod does not define matches nothing",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll, {Rule{{}, {named("http")}}}, {}, true, false));
     },
     {"dev/client", "prod/db", Protocol::TCP, 8080}, false},
    {"egress named port resolves per destination pod",
     [](Cluster& c) {
       c.policies.push_back(policy("dev", "p", kAll, {}, {Rule{{}, {named("http")}}}, false, true));
     },
     {"dev/client", "prod/web", Protocol::TCP, 8080}, true},
    {"egress named port never matches an ipBlock peer",
     [](Cluster& c) {
       c.policies.push_back(policy("dev", "p", kAll, {},
                                   {Rule{{blockPeer("10.0.0.0/8")}, {named("http")}}}, false, true));
     },
     {"dev/client", "prod/web", Protocol::TCP, 8080}, false},
    {"ipBlock matches a pod address",
     [](Cluster& c) {
       c.policies.push_back(
           policy("prod", "p", kAll, {Rule{{blockPeer("10.0.2.0/24")}, {}}}, {}, true, false));
     },
     {"dev/client", "prod/web"}, true},
    {"ipBlock except carves out an address",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll,
                                   {Rule{{blockPeer("10.0.0.0/16", {"10.0.2.0/24"})}, {}}}, {},
                                   true, false));
     },
     {"dev/client", "prod/web"}, false},
    {"ipBlock matches an external address",
     [](Cluster& c) {
       c.policies.push_back(
           policy("prod", "p", kAll, {Rule{{blockPeer("203.0.113.0/24")}, {}}}, {}, true, false));
     },
     {"203.0.113.7", "prod/web"}, true},
    {"ipBlock v4 does not match a v6 address",
     [](Cluster& c) {
       c.policies.push_back(
           policy("prod", "p", kAll, {Rule{{blockPeer("10.0.0.0/8")}, {}}}, {}, true, false));
     },
     {"dev/client", "prod/web", Protocol::TCP, 80, /*v6=*/true}, false},
    {"ipBlock v6 with except",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll,
                                   {Rule{{blockPeer("fd00::/16", {"fd00::2:0/112"})}, {}}}, {},
                                   true, false));
     },
     {"dev/client", "prod/web", Protocol::TCP, 80, /*v6=*/true}, false},
    {"selectors never match a bare external address",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll, {Rule{{nsPeer({})}, {}}}, {}, true, false));
     },
     {"198.51.100.1", "prod/web"}, false},
    {"union of policies: a second policy allows",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "a", kAll, {Rule{{}, {tcp(443)}}}, {}, true, false));
       c.policies.push_back(policy("prod", "b", kAll, {Rule{{}, {tcp(80)}}}, {}, true, false));
     },
     {"dev/client", "prod/web", Protocol::TCP, 80}, true},
    {"both sides needed: egress allows, ingress denies",
     [](Cluster& c) {
       c.policies.push_back(policy("dev", "e", kAll, {}, {allowAll()}, false, true));
       c.policies.push_back(policy("prod", "deny", kAll, {}, {}, true, false));
     },
     {"dev/client", "prod/web"}, false},
    {"both sides needed: ingress allows, egress denies",
     [](Cluster& c) {
       c.policies.push_back(policy("dev", "e", kAll, {}, {}, false, true));
       c.policies.push_back(policy("prod", "i", kAll, {allowAll()}, {}, true, false));
     },
     {"dev/client", "prod/web"}, false},
    {"egress to an external address by ipBlock",
     [](Cluster& c) {
       c.policies.push_back(policy("dev", "e", kAll, {},
                                   {Rule{{blockPeer("203.0.113.0/24")}, {tcp(443)}}}, false, true));
     },
     {"dev/client", "203.0.113.9", Protocol::TCP, 443}, true},
    {"hostNetwork pods are not endpoints: policy does not isolate them",
     [](Cluster& c) {
       c.policies.push_back(policy("kube-system", "deny", kAll, {}, {}, true, true));
     },
     {"dev/client", "192.168.0.10"}, true},
    {"hostNetwork pods are not matched by pod selectors",
     [](Cluster& c) {
       c.policies.push_back(policy("prod", "p", kAll, {Rule{{nsPeer({})}, {}}}, {}, true, false));
     },
     {"192.168.0.10", "prod/web"}, false},
};

INSTANTIATE_TEST_SUITE_P(Rules, SemanticsTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           std::string n;
                           for (const char* p = info.param.name; *p; ++p) {
                             n += std::isalnum(static_cast<unsigned char>(*p)) ? *p : '_';
                           }
                           return n + "_" + std::to_string(info.index);
                         });

TEST(ExplainTest, NamesPolicyRulePeerAndPort) {
  Cluster c = baseCluster();
  c.policies.push_back(policy("prod", "a-deny", kAll, {}, {}, true, false));
  c.policies.push_back(policy("prod", "b-allow", sel({{"app", "web"}}),
                              {Rule{{podPeer({{"app", "x"}})}, {}},
                               Rule{{podPeer({{"app", "y"}}), nsPeer({{"team", "b"}})},
                                    {tcp(443), tcp(80)}}},
                              {}, true, false));
  Verdict v = run(c, {"dev/client", "prod/web", Protocol::TCP, 80});
  ASSERT_TRUE(v.allowed);
  EXPECT_TRUE(v.ingress.isolated);
  EXPECT_EQ(v.ingress.selectingPolicies,
            (std::vector<std::string>{"prod/a-deny", "prod/b-allow"}));
  ASSERT_TRUE(v.ingress.allowedBy);
  EXPECT_EQ(v.ingress.allowedBy->policy, "prod/b-allow");
  EXPECT_EQ(v.ingress.allowedBy->rule, 1);
  EXPECT_EQ(v.ingress.allowedBy->peer, 1);
  EXPECT_EQ(v.ingress.allowedBy->port, 1);
  EXPECT_FALSE(v.egress.isolated);
  EXPECT_TRUE(v.egress.applies);
  EXPECT_TRUE(v.egress.allowed);
  EXPECT_FALSE(v.egress.allowedBy);
}

TEST(ExplainTest, DeniedSideHasNoRuleAndBareIpSideDoesNotApply) {
  Cluster c = baseCluster();
  c.policies.push_back(policy("prod", "deny", kAll, {}, {}, true, false));
  Verdict v = run(c, {"203.0.113.1", "prod/web"});
  EXPECT_FALSE(v.allowed);
  EXPECT_FALSE(v.egress.applies);
  EXPECT_TRUE(v.egress.allowed);
  EXPECT_TRUE(v.ingress.isolated);
  EXPECT_FALSE(v.ingress.allowed);
  EXPECT_FALSE(v.ingress.allowedBy);
}

TEST(EvaluatorTest, UnknownNamespaceStillHasMetadataNameLabel) {
  Cluster c = baseCluster();
  c.pods.push_back({"ghost", "p", {}, {ip("10.9.9.9")}, {}, false, "", {}});
  c.policies.push_back(policy("prod", "p", kAll,
                              {Rule{{nsPeer({{"kubernetes.io/metadata.name", "ghost"}})}, {}}}, {},
                              true, false));
  EXPECT_TRUE(run(c, {"ghost/p", "prod/web"}).allowed);
}

TEST(EvaluatorTest, PodByIpIgnoresHostNetworkPods) {
  Cluster c = baseCluster();
  Evaluator ev(c);
  EXPECT_EQ(ev.podByIp(ip("192.168.0.10")), nullptr);
  ASSERT_NE(ev.podByIp(ip("fd00::1:2")), nullptr);
  EXPECT_EQ(ev.podByIp(ip("fd00::1:2"))->name, "db");
}

}  // namespace
}  // namespace sluice::engine
