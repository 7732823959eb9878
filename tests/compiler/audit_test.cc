// Audit mode in the compiler (docs/audit.md): an audited policy is not enforced, so the compiled
// allow sets of a cluster equal those of the same cluster without its audited policies; the only
// trace an audited policy leaves is EndpointPolicy::audited on the endpoints it selects.
#include <gtest/gtest.h>

#include <random>

#include "policyd/compiler/compiler.h"
#include "policyd/engine/selection.h"
#include "tests/compiler/canonical.h"
#include "tests/compiler/random_cluster.h"

namespace sluice::compiler::testing {
namespace {

constexpr int kCases = 300;
constexpr int kSteps = 30;

// Audits each policy with probability 1/2 (the generator never does).
void auditSome(model::Cluster& c, std::mt19937_64& rng) {
  for (auto& pol : c.policies) {
    const bool audit = rng() % 2 == 0;
    pol.enforcement = audit ? model::Enforcement::Audit : model::Enforcement::Enforce;
    pol.enforcementText = audit ? "audit" : "";
  }
}

model::Cluster withoutAudited(model::Cluster c) {
  std::erase_if(c.policies, [](const model::NetworkPolicy& p) { return p.audited(); });
  return c;
}

CanonicalState withoutFlags(CanonicalState s) {
  for (auto& [id, ep] : s.endpoints) ep.audited = false;
  return s;
}

// What EndpointPolicy::audited must be: an audited policy selects the endpoint's pod for either
// direction. A pod not in the model is a pod without labels (compiler.h).
std::map<EndpointId, bool> expectedFlags(const Scenario& s) {
  std::map<EndpointId, bool> out;
  for (const auto& e : s.node.endpoints) {
    model::Pod pod;
    pod.namespace_ = e.podNamespace;
    pod.name = e.podName;
    for (const auto& p : s.cluster.pods) {
      if (p.namespace_ == e.podNamespace && p.name == e.podName) pod = p;
    }
    bool on = false;
    for (const auto& pol : s.cluster.policies) {
      on |= pol.audited() && (engine::selects(pol, pod, Direction::Ingress) ||
                              engine::selects(pol, pod, Direction::Egress));
    }
    out[e.id] = on;
  }
  return out;
}

std::map<EndpointId, bool> flagsOf(const State& s) {
  std::map<EndpointId, bool> out;
  for (const auto& [id, ep] : s.endpoints) out[id] = ep.audited;
  return out;
}

TEST(CompilerAuditTest, AuditedPoliciesCompileAsAbsentExceptTheFlag) {
  size_t audited = 0, flagged = 0;
  for (int c = 0; c < kCases; ++c) {
    RandomCluster gen(static_cast<uint64_t>(c) + 31337);
    Scenario s = gen.generate();
    auditSome(s.cluster, gen.rng());
    for (const auto& p : s.cluster.policies) audited += p.audited();
    SCOPED_TRACE("case " + std::to_string(c));
    const State with = compile(s.cluster, s.node);
    const State without = compile(withoutAudited(s.cluster), s.node);
    ASSERT_EQ(toString(withoutFlags(canonical(with))), toString(canonical(without)));
    ASSERT_EQ(flagsOf(with), expectedFlags(s));
    for (const auto& [id, ep] : without.endpoints) ASSERT_FALSE(ep.audited);
    for (const auto& [id, ep] : with.endpoints) flagged += ep.audited;
  }
  // The cases exercise the flag, not only its absence.
  EXPECT_GT(audited, static_cast<size_t>(kCases));
  EXPECT_GT(flagged, static_cast<size_t>(kCases / 4));
}

// Turning the annotation on and off (and every other change) incrementally, by snapshot and by
// change set, gives what a full compile gives, flag included, and the Diffs carry it.
TEST(CompilerAuditTest, TogglingEnforcementIncrementallyMatchesFullCompile) {
  size_t toggles = 0;
  for (int seed = 0; seed < 40; ++seed) {
    RandomCluster gen(static_cast<uint64_t>(seed) * 104729 + 7);
    Scenario s = gen.generate();
    auditSome(s.cluster, gen.rng());
    Compiler c;
    State applied;
    applyDiff(applied, c.update(s.cluster, s.node));
    for (int step = 0; step < kSteps; ++step) {
      std::string what;
      ChangeSet changes;
      const bool toggle = !s.cluster.policies.empty() && gen.rng()() % 2 == 0;
      if (toggle) {
        auto& pol = s.cluster.policies[gen.rng()() % s.cluster.policies.size()];
        pol.enforcement = pol.audited() ? model::Enforcement::Enforce : model::Enforcement::Audit;
        what = "toggle " + pol.key() + " to " + model::enforcementName(pol.enforcement);
        changes.policyUpserts.push_back(pol);
        ++toggles;
      } else {
        what = gen.mutate(s);
      }
      const bool viaChangeSet = toggle && step % 2 == 0;
      Diff d = viaChangeSet ? c.update(changes) : c.update(s.cluster, s.node);
      applyDiff(applied, d);
      SCOPED_TRACE("seed " + std::to_string(seed) + " step " + std::to_string(step) + ": " + what);
      ASSERT_EQ(applied.endpoints, c.state().endpoints);
      ASSERT_EQ(toString(canonical(c.state())), toString(canonical(compile(s.cluster, s.node))));
      ASSERT_EQ(flagsOf(c.state()), expectedFlags(s));
    }
  }
  EXPECT_GT(toggles, 300u);
}

TEST(CompilerAuditTest, DeletingAnAuditedPolicyClearsTheFlag) {
  model::Cluster cluster;
  cluster.namespaces.push_back({"prod", {{"kubernetes.io/metadata.name", "prod"}}, {}});
  model::Pod pod;
  pod.namespace_ = "prod";
  pod.name = "web";
  pod.ips = {*IpAddr::parse("10.0.0.5")};
  cluster.pods.push_back(pod);
  model::NetworkPolicy deny;
  deny.namespace_ = "prod";
  deny.name = "deny-all";
  deny.affectsIngress = true;
  deny.enforcement = model::Enforcement::Audit;
  cluster.policies.push_back(deny);
  NodeContext node;
  node.hostAddresses = {*IpAddr::parse("192.168.0.1")};
  node.endpoints.push_back({7, "prod", "web", pod.ips});

  Compiler c;
  c.update(cluster, node);
  ASSERT_TRUE(c.state().endpoints.at(7).audited);
  // Audited: not isolated, no entries.
  EXPECT_FALSE(c.state().endpoints.at(7).ingressIsolated);
  EXPECT_TRUE(c.state().endpoints.at(7).entries.empty());

  ChangeSet enforce;
  deny.enforcement = model::Enforcement::Enforce;
  enforce.policyUpserts.push_back(deny);
  Diff d = c.update(enforce);
  ASSERT_EQ(d.endpoints.size(), 1u);
  EXPECT_TRUE(d.endpoints[0].ingressIsolated);
  EXPECT_FALSE(d.endpoints[0].audited);

  ChangeSet audit;
  deny.enforcement = model::Enforcement::Audit;
  audit.policyUpserts.push_back(deny);
  d = c.update(audit);
  ASSERT_EQ(d.endpoints.size(), 1u);
  EXPECT_FALSE(d.endpoints[0].ingressIsolated);
  EXPECT_TRUE(d.endpoints[0].audited);

  ChangeSet gone;
  gone.policyDeletes.push_back("prod/deny-all");
  d = c.update(gone);
  ASSERT_EQ(d.endpoints.size(), 1u);
  EXPECT_FALSE(d.endpoints[0].audited);
  EXPECT_TRUE(c.update(ChangeSet{}).empty());
}

}  // namespace
}  // namespace sluice::compiler::testing
