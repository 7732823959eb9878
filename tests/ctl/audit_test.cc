// Audit mode in sluicectl (docs/audit.md): matrix marks and JSON, explain's words, lint.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "policyd/ctl/endpoint.h"
#include "policyd/ctl/explain.h"
#include "policyd/ctl/lint.h"
#include "policyd/ctl/matrix.h"
#include "policyd/model/decode.h"
#include "subprocess.h"
#include "tests/compiler/random_cluster.h"

namespace sluice::ctl {
namespace {

using model::Protocol;

std::string examples() { return std::string(SLUICE_SOURCE_DIR) + "/manifests/examples"; }

model::Cluster load(const std::vector<std::string>& paths) {
  auto d = model::loadPaths(paths);
  EXPECT_TRUE(d.errors.empty()) << d.errors.front().message;
  return d.cluster;
}

size_t indexOf(const Matrix& m, const std::string& key) {
  auto it = std::find(m.keys.begin(), m.keys.end(), key);
  EXPECT_NE(it, m.keys.end()) << key;
  return static_cast<size_t>(it - m.keys.begin());
}

TEST(MatrixAuditTest, BothViewsAgreeWithTheEvaluatorOnRandomClusters) {
  size_t auditCells = 0;
  for (int c = 0; c < 120; ++c) {
    compiler::testing::RandomCluster gen(static_cast<uint64_t>(c) + 777);
    auto s = gen.generate();
    for (auto& pol : s.cluster.policies) {
      if (gen.rng()() % 2) pol.enforcement = model::Enforcement::Audit;
    }
    engine::Evaluator ev(s.cluster);
    for (const PortQuery& q :
         {PortQuery{Protocol::TCP, uint16_t{80}}, PortQuery{Protocol::TCP, std::string("http")}}) {
      Matrix m = computeMatrix(ev, q);
      ASSERT_EQ(m.hasAudit(), ev.hasAuditedPolicies());
      for (size_t i = 0; i < m.size(); ++i) {
        for (size_t j = 0; j < m.size(); ++j) {
          auto port = resolveQueryPort(q, m.pods[j]);
          bool now = false, once = false;
          if (port) {
            auto [srcIp, dstIp] = pairAddresses(EndpointRef{m.pods[i], std::nullopt},
                                                EndpointRef{m.pods[j], std::nullopt});
            engine::Flow f{{m.pods[i], srcIp}, {m.pods[j], dstIp}, q.protocol, *port};
            now = ev.evaluate(f).allowed;
            once = ev.evaluate(f, engine::View::OnceEnforced).allowed;
          }
          SCOPED_TRACE("case " + std::to_string(c) + " " + m.keys[i] + " -> " + m.keys[j]);
          ASSERT_EQ(m.at(i, j), now);
          ASSERT_EQ(m.atOnceEnforced(i, j), once);
          const Mark want = now == once ? (now ? Mark::Allowed : Mark::Denied)
                                        : (now ? Mark::AuditDeny : Mark::AuditAllow);
          ASSERT_EQ(m.mark(i, j), want);
          auditCells += now != once;
        }
      }
    }
  }
  EXPECT_GT(auditCells, 100u);
}

TEST(MatrixAuditTest, TextMarksAuditCellsWithALegend) {
  model::Cluster c = load({examples(), testing::fixture("audit")});
  engine::Evaluator ev(c);
  Matrix m = computeMatrix(ev, PortQuery{});
  std::ostringstream os;
  renderMatrixText(os, m);
  const std::string s = os.str();
  // Keys: dev/client, kube-system/coredns, monitoring/prometheus, prod/db, prod/web.
  const size_t client = indexOf(m, "dev/client"), db = indexOf(m, "prod/db");
  const size_t dns = indexOf(m, "kube-system/coredns");
  EXPECT_EQ(m.mark(dns, client), Mark::AuditDeny);  // dev/default-deny (audit)
  EXPECT_EQ(m.mark(client, db), Mark::AuditAllow);  // prod/db-from-dev (audit)
  EXPECT_EQ(m.mark(dns, db), Mark::Denied);         // prod/default-deny, enforced
  EXPECT_EQ(m.mark(client, dns), Mark::Allowed);
  EXPECT_NE(s.find("Audited policies (sluice.io/enforcement: audit, not enforced): "
                   "dev/default-deny prod/db-from-dev\n"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("Legend: + allowed  X denied  a allowed now, denied once enforced (audit)  "
                   "o denied now, allowed once enforced (audit)\n"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("\n0  a + + o X\n"), std::string::npos) << s;  // dev/client's row
  EXPECT_NE(s.find("\n1  a + + X X\n"), std::string::npos) << s;

  std::ostringstream js;
  renderMatrixJson(js, m);
  auto j = nlohmann::ordered_json::parse(js.str());
  EXPECT_EQ(j["auditedPolicies"],
            (std::vector<std::string>{"dev/default-deny", "prod/db-from-dev"}));
  EXPECT_TRUE(j["allowed"][dns][client].get<bool>());
  EXPECT_FALSE(j["allowedOnceEnforced"][dns][client].get<bool>());
  EXPECT_FALSE(j["allowed"][client][db].get<bool>());
  EXPECT_TRUE(j["allowedOnceEnforced"][client][db].get<bool>());
}

TEST(ExplainAuditTest, SaysAllowedNowDeniedOnceEnforcedNamingThePolicy) {
  model::Cluster c = load({examples(), testing::fixture("audit")});
  engine::Evaluator ev(c);
  auto r = explain(ev, "kube-system/coredns", "dev/client", PortQuery{Protocol::TCP, uint16_t{80}});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->allowed);
  EXPECT_EQ(r->audit.outcome, engine::AuditOutcome::AuditDeny);
  std::ostringstream os;
  renderExplainText(os, *r);
  const std::string s = os.str();
  EXPECT_NE(s.find(": ALLOWED\n"), std::string::npos) << s;
  EXPECT_NE(s.find("\n  allowed now, denied once enforced (audit: dev/default-deny)\n"
                   "    dev/default-deny: selects the pod for ingress and has no ingress rules"),
            std::string::npos)
      << s;
  std::ostringstream js;
  renderExplainJson(js, *r);
  auto j = nlohmann::json::parse(js.str());
  EXPECT_EQ(j["audit"]["outcome"], "audit-deny");
  EXPECT_EQ(j["audit"]["allowedOnceEnforced"], false);
  EXPECT_EQ(j["audit"]["policies"], std::vector<std::string>{"dev/default-deny"});

  auto a = explain(ev, "dev/client", "prod/db", PortQuery{Protocol::TCP, uint16_t{80}});
  ASSERT_TRUE(a.ok());
  std::ostringstream as;
  renderExplainText(as, *a);
  EXPECT_NE(as.str().find(": DENIED\n"), std::string::npos) << as.str();
  EXPECT_NE(as.str().find("\n  denied now, allowed once enforced (audit: prod/db-from-dev)\n"),
            std::string::npos)
      << as.str();

  // No audited policy on either end: no audit line, no audit key.
  auto n = explain(ev, "dev/client", "kube-system/coredns", PortQuery{Protocol::UDP, uint16_t{53}});
  ASSERT_TRUE(n.ok());
  std::ostringstream ns, nj;
  renderExplainText(ns, *n);
  renderExplainJson(nj, *n);
  EXPECT_EQ(ns.str().find("enforced"), std::string::npos) << ns.str();
  EXPECT_FALSE(nlohmann::json::parse(nj.str()).contains("audit"));
}

TEST(LintAuditTest, WarnsOnUnknownEnforcementValues) {
  model::Cluster c = load({examples(), testing::fixture("audit"), testing::fixture("audit-typo")});
  engine::Evaluator ev(c);
  auto findings = lint(ev);
  std::vector<Finding> enforcement;
  for (const auto& f : findings) {
    if (f.kind == kUnknownEnforcement) enforcement.push_back(f);
  }
  ASSERT_EQ(enforcement.size(), 1u);
  EXPECT_EQ(enforcement[0].object, "dev/trial");
  EXPECT_EQ(enforcement[0].field, "metadata.annotations[sluice.io/enforcement]");
  EXPECT_EQ(enforcement[0].message, "unknown value \"Audit\": the policy is enforced");
}

TEST(CliAuditTest, MatrixAndExplainFromTheCommandLine) {
  auto r = testing::runCtl({"explain", "-f", examples(), testing::fixture("audit"), "--from",
                            "kube-system/coredns", "--to", "dev/client", "--port", "80"});
  EXPECT_EQ(r.exitCode, 0) << r.err;
  EXPECT_NE(r.out.find("allowed now, denied once enforced (audit: dev/default-deny)"),
            std::string::npos)
      << r.out;
  auto l = testing::runCtl({"lint", "-f", examples(), testing::fixture("audit-typo")});
  EXPECT_EQ(l.exitCode, 1);
  EXPECT_NE(l.out.find("WARN unknown-enforcement dev/trial"), std::string::npos) << l.out;
  auto h = testing::runCtl({"--help"});
  EXPECT_NE(h.out.find("sluice.io/enforcement: audit"), std::string::npos);
}

}  // namespace
}  // namespace sluice::ctl
