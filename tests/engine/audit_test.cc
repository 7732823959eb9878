// Audit mode semantics (docs/audit.md): the enforced verdict ignores audited policies, the audit
// verdict counts them as enforced, and evaluateAudit names the audited policies responsible.
#include "policyd/engine/audit.h"

#include <gtest/gtest.h>

#include "tests/compiler/random_cluster.h"
#include "tests/support/model_builders.h"

namespace sluice::engine {
namespace {

using model::Cluster;
using model::NetworkPolicy;
using model::Protocol;
using model::Rule;
using model::testing::ip;
using model::testing::nsPeer;
using model::testing::policy;
using model::testing::sel;
using model::testing::tcp;

// prod/web (app=web) and dev/client (app=client); namespaces prod (team=a) and dev (team=b).
Cluster base() {
  Cluster c;
  c.namespaces = {model::testing::ns("prod", {{"team", "a"}}),
                  model::testing::ns("dev", {{"team", "b"}})};
  c.pods = {model::testing::pod("prod", "web", {{"app", "web"}}, {"10.0.1.1"}),
            model::testing::pod("dev", "client", {{"app", "client"}}, {"10.0.2.1"})};
  return c;
}

NetworkPolicy audited(NetworkPolicy p) {
  p.enforcement = model::Enforcement::Audit;
  p.enforcementText = "audit";
  return p;
}

// Ingress to prod/web: deny all, or allow from namespace dev on TCP/80.
NetworkPolicy denyWeb(const char* name) {
  return policy("prod", name, sel({{"app", "web"}}), {}, {});
}
NetworkPolicy allowDevToWeb(const char* name) {
  return policy("prod", name, sel({{"app", "web"}}), {Rule{{nsPeer({{"team", "b"}})}, {tcp(80)}}},
                {});
}

AuditVerdict clientToWeb(const Cluster& c) {
  Evaluator ev(c);
  const auto* src = ev.findPod("dev", "client");
  const auto* dst = ev.findPod("prod", "web");
  return evaluateAudit(ev, Flow{{src, src->ips[0]}, {dst, dst->ips[0]}, Protocol::TCP, 80});
}

struct Case {
  const char* name;
  std::vector<NetworkPolicy> policies;
  bool now;
  bool once;
  AuditOutcome outcome;
  std::vector<std::string> responsible;
};

class AuditTableTest : public ::testing::TestWithParam<Case> {};

TEST_P(AuditTableTest, BothVerdictsAndTheResponsiblePolicies) {
  const Case& tc = GetParam();
  Cluster c = base();
  c.policies = tc.policies;
  const AuditVerdict v = clientToWeb(c);
  EXPECT_TRUE(v.audited);
  EXPECT_EQ(v.now.allowed, tc.now);
  EXPECT_EQ(v.onceEnforced.allowed, tc.once);
  EXPECT_EQ(v.outcome, tc.outcome);
  EXPECT_EQ(v.policies, tc.responsible);
}

// The table of docs/audit.md.
INSTANTIATE_TEST_SUITE_P(
    Docs, AuditTableTest,
    ::testing::Values(
        // An audited policy isolates nobody now; once enforced it isolates web.
        Case{"AuditedDenyAlone",
             {audited(denyWeb("a-deny"))},
             true,
             false,
             AuditOutcome::AuditDeny,
             {"prod/a-deny"}},
        // Its allows add nothing where nothing else isolates the side.
        Case{"AuditedAllowAlone",
             {audited(allowDevToWeb("a-allow"))},
             true,
             true,
             AuditOutcome::None,
             {}},
        // An enforced allow stays in the union: the audited deny cannot take it away.
        Case{"EnforcedAllowBeatsAuditedDeny",
             {allowDevToWeb("p-allow"), audited(denyWeb("a-deny"))},
             true,
             true,
             AuditOutcome::None,
             {}},
        // Where an enforced policy isolates the side, an audited allow would open it.
        Case{"AuditedAllowOpensEnforcedDeny",
             {denyWeb("p-deny"), audited(allowDevToWeb("a-allow"))},
             false,
             true,
             AuditOutcome::AuditAllow,
             {"prod/a-allow"}},
        Case{"BothDeny",
             {denyWeb("p-deny"), audited(denyWeb("a-deny"))},
             false,
             false,
             AuditOutcome::None,
             {}},
        // Two audited denies on web: both named.
        Case{"TwoAuditedDenies",
             {audited(denyWeb("b-deny")), audited(denyWeb("a-deny"))},
             true,
             false,
             AuditOutcome::AuditDeny,
             {"prod/a-deny", "prod/b-deny"}},
        // Egress: an audited default-deny-egress on the client.
        Case{"AuditedEgressDeny",
             {audited(policy("dev", "no-egress", sel({}), {}, {}, false, true))},
             true,
             false,
             AuditOutcome::AuditDeny,
             {"dev/no-egress"}},
        // Both sides would deny: the policies of both.
        Case{"BothSidesAuditDeny",
             {audited(policy("dev", "no-egress", sel({}), {}, {}, false, true)),
              audited(denyWeb("a-deny"))},
             true,
             false,
             AuditOutcome::AuditDeny,
             {"dev/no-egress", "prod/a-deny"}}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(AuditTest, NoAuditedPolicyMeansOneVerdict) {
  Cluster c = base();
  c.policies = {denyWeb("p-deny")};
  const AuditVerdict v = clientToWeb(c);
  EXPECT_FALSE(v.audited);
  EXPECT_FALSE(v.now.allowed);
  EXPECT_FALSE(v.onceEnforced.allowed);
  EXPECT_EQ(v.outcome, AuditOutcome::None);
  EXPECT_EQ(describeAudit(v), "");
}

TEST(AuditTest, AnAuditedIngressPolicyDoesNotTouchTheOtherDirection) {
  Cluster c = base();
  c.policies = {audited(denyWeb("a-deny"))};
  Evaluator ev(c);
  const auto* web = ev.findPod("prod", "web");
  const auto* client = ev.findPod("dev", "client");
  // web -> client: web's egress and client's ingress; the audited policy is ingress only.
  const AuditVerdict v =
      evaluateAudit(ev, Flow{{web, web->ips[0]}, {client, client->ips[0]}, Protocol::TCP, 80});
  EXPECT_FALSE(v.audited);
  EXPECT_TRUE(v.now.allowed);
}

TEST(AuditTest, ExplainWordsNameThePolicies) {
  Cluster c = base();
  c.policies = {audited(denyWeb("a-deny"))};
  const AuditVerdict deny = clientToWeb(c);
  EXPECT_EQ(describeAudit(deny), "allowed now, denied once enforced (audit: prod/a-deny)");
  // The enforced side reports the audited policy it ignores.
  EXPECT_FALSE(deny.now.ingress.isolated);
  EXPECT_EQ(deny.now.ingress.auditedPolicies, std::vector<std::string>{"prod/a-deny"});
  EXPECT_TRUE(deny.onceEnforced.ingress.isolated);
  EXPECT_EQ(deny.onceEnforced.ingress.selectingPolicies, std::vector<std::string>{"prod/a-deny"});

  c.policies = {denyWeb("p-deny"), audited(allowDevToWeb("a-allow"))};
  const AuditVerdict allow = clientToWeb(c);
  EXPECT_EQ(describeAudit(allow), "denied now, allowed once enforced (audit: prod/a-allow)");
  ASSERT_TRUE(allow.onceEnforced.ingress.allowedBy);
  EXPECT_EQ(allow.onceEnforced.ingress.allowedBy->policy, "prod/a-allow");
  // Once enforced, policies are listed in name order, audited or not.
  EXPECT_EQ(allow.onceEnforced.ingress.selectingPolicies,
            (std::vector<std::string>{"prod/a-allow", "prod/p-deny"}));
}

TEST(AuditTest, UnknownAnnotationValuesAreEnforced) {
  Cluster c = base();
  NetworkPolicy p = denyWeb("typo");
  p.enforcementText = "Audit";  // what the decoder leaves: enforced
  c.policies = {p};
  const AuditVerdict v = clientToWeb(c);
  EXPECT_FALSE(v.audited);
  EXPECT_FALSE(v.now.allowed);
}

// The definition, checked on random clusters and flows: the enforced verdict is that of the
// cluster without its audited policies; the audit verdict that of the cluster with every policy
// enforced.
TEST(AuditTest, ViewsEqualTheClusterWithoutAndWithAuditedPoliciesEnforced) {
  size_t auditDeny = 0, auditAllow = 0, flows = 0;
  for (int c = 0; c < 200; ++c) {
    compiler::testing::RandomCluster gen(static_cast<uint64_t>(c) + 5150);
    auto s = gen.generate();
    for (auto& pol : s.cluster.policies) {
      if (gen.rng()() % 2) pol.enforcement = model::Enforcement::Audit;
    }
    Cluster without = s.cluster;
    std::erase_if(without.policies, [](const NetworkPolicy& p) { return p.audited(); });
    Cluster allEnforced = s.cluster;
    for (auto& pol : allEnforced.policies) pol.enforcement = model::Enforcement::Enforce;
    const Evaluator ev(s.cluster), evWithout(without), evAll(allEnforced);
    const auto addresses = gen.probeAddresses(s);
    for (int i = 0; i < 200; ++i) {
      const auto f = gen.randomFlow(s, addresses);
      auto flowIn = [&](const Evaluator& e) {
        return Flow{{e.podByIp(f.src), f.src}, {e.podByIp(f.dst), f.dst}, f.protocol, f.port};
      };
      SCOPED_TRACE("case " + std::to_string(c) + " " + f.src.toString() + " -> " +
                   f.dst.toString() + " " + std::to_string(f.port));
      const AuditVerdict v = evaluateAudit(ev, flowIn(ev));
      const Verdict a = evWithout.evaluate(flowIn(evWithout));
      const Verdict b = evAll.evaluate(flowIn(evAll));
      ASSERT_EQ(v.now.egress.allowed, a.egress.allowed);
      ASSERT_EQ(v.now.ingress.allowed, a.ingress.allowed);
      ASSERT_EQ(v.now.allowed, a.allowed);
      ASSERT_EQ(v.onceEnforced.egress.allowed, b.egress.allowed);
      ASSERT_EQ(v.onceEnforced.ingress.allowed, b.ingress.allowed);
      ASSERT_EQ(v.onceEnforced.allowed, b.allowed);
      ASSERT_EQ(v.onceEnforced.ingress.selectingPolicies, b.ingress.selectingPolicies);
      ASSERT_EQ(v.outcome == AuditOutcome::None, v.now.allowed == v.onceEnforced.allowed);
      ASSERT_EQ(v.outcome != AuditOutcome::None, !v.policies.empty());
      auditDeny += v.outcome == AuditOutcome::AuditDeny;
      auditAllow += v.outcome == AuditOutcome::AuditAllow;
      ++flows;
    }
  }
  // Both outcomes occur, so the comparison is not vacuous.
  EXPECT_GT(auditDeny, flows / 100);
  EXPECT_GT(auditAllow, 0u);
}

}  // namespace
}  // namespace sluice::engine
