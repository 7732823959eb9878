// Per-policy denied counters: each policy drop of an endpoint is credited to every policy that
// isolates it in that direction, once, and never again on the next scrape.
#include "policyd/daemon/policy_metrics.h"

#include <gtest/gtest.h>

#include <shared_mutex>

#include "policyd/model/decode.h"
#include "tests/daemon/fake_backend.h"
#include "tests/daemon/fake_model.h"

namespace sluice::daemon {
namespace {

constexpr const char* kCluster = R"(
apiVersion: v1
kind: Pod
metadata: {namespace: prod, name: web, labels: {app: web}}
status: {podIPs: [{ip: 10.1.0.5}]}
---
apiVersion: v1
kind: Pod
metadata: {namespace: prod, name: db, labels: {app: db}}
status: {podIPs: [{ip: 10.1.0.6}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: prod, name: deny-all}
spec:
  podSelector: {}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: prod, name: web}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
)";

TEST(PolicyMetricsTest, CreditsEachDropToEveryIsolatingPolicyOnce) {
  testing::FakeModel m(kCluster);
  testing::FakeBackend backend;
  PolicyMetrics::Sources src;
  src.endpointName = [](compiler::EndpointId id) {
    return id == 1 ? std::string("prod/web") : id == 2 ? std::string("prod/db") : std::string();
  };
  PolicyMetrics pm(backend, m, src);
  using D = compiler::Direction;
  pm.credit({{1, D::Ingress, 5, 500},
             {1, D::Egress, 2, 200},
             {2, D::Ingress, 3, 300},
             {9, D::Ingress, 4, 400}});
  auto d = pm.denied();
  EXPECT_EQ((d[{"prod", "deny-all", "ingress"}]), 8u);  // web 5 + db 3
  EXPECT_EQ((d[{"prod", "web", "ingress"}]), 5u);
  EXPECT_EQ((d[{"prod", "web", "egress"}]), 2u);
  EXPECT_FALSE(d.contains({"prod", "deny-all", "egress"}));  // deny-all is ingress only
  EXPECT_EQ(pm.unattributed(), 4u);                          // endpoint 9: no pod

  // Cumulative counts: only what is new is credited.
  pm.credit({{1, D::Ingress, 7, 700}, {1, D::Egress, 2, 200}, {2, D::Ingress, 3, 300}});
  d = pm.denied();
  EXPECT_EQ((d[{"prod", "deny-all", "ingress"}]), 10u);
  EXPECT_EQ((d[{"prod", "web", "ingress"}]), 7u);
  EXPECT_EQ((d[{"prod", "web", "egress"}]), 2u);

  // A count that went down is a new endpoint under a reused id: all of it is new.
  pm.credit({{1, D::Ingress, 1, 100}});
  EXPECT_EQ((pm.denied()[{"prod", "web", "ingress"}]), 8u);
}

TEST(PolicyMetricsTest, WritesPrometheusFamilies) {
  testing::FakeModel m(kCluster);
  testing::FakeBackend backend;
  PolicyMetrics::Sources src;
  src.ruleOrigins = [] {
    return std::vector<compiler::RuleOrigin>{{"prod/web", compiler::Direction::Ingress, 0}};
  };
  src.flowLog = [] { return std::optional<FlowLogCounts>(FlowLogCounts{3, 1, 7, 0, 0}); };
  backend.setCounters({{0, 12, 1200}});
  PolicyMetrics pm(backend, m, src);
  MetricsWriter w;
  pm.write(w);
  const std::string& t = w.text();
  EXPECT_NE(t.find("# TYPE sluice_policy_allowed_packets_total counter"), std::string::npos) << t;
  EXPECT_NE(t.find("sluice_policy_allowed_packets_total{namespace=\"prod\",policy=\"web\","
                   "direction=\"ingress\"} 12"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("sluice_flow_log_suppressed_total{cause=\"rate\"} 7"), std::string::npos) << t;
  EXPECT_NE(t.find("sluice_flow_log_events_total{verdict=\"denied\"} 3"), std::string::npos) << t;
  // The fake backend has no per-endpoint drop counters: said so, not faked.
  EXPECT_NE(t.find("sluice_datapath_endpoint_drops_ok 0"), std::string::npos) << t;
}

}  // namespace
}  // namespace sluice::daemon
