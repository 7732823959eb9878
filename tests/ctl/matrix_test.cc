// The matrix's memoized pair evaluation against the reference evaluator, pair by pair, on
// random clusters; and its output shapes.
#include "policyd/ctl/matrix.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "policyd/ctl/diff.h"
#include "policyd/ctl/endpoint.h"
#include "policyd/model/decode.h"
#include "subprocess.h"

namespace sluice::ctl {
namespace {

using model::Protocol;

// The reference answer for one pair: the engine's evaluate() on the same addresses and port.
bool referenceAllowed(const engine::Evaluator& ev, const model::Pod& src, const model::Pod& dst,
                      const PortQuery& q) {
  auto port = resolveQueryPort(q, &dst);
  if (!port) return false;
  auto [srcIp, dstIp] = pairAddresses(EndpointRef{&src, std::nullopt},
                                      EndpointRef{&dst, std::nullopt});
  engine::Flow flow{{&src, srcIp}, {&dst, dstIp}, q.protocol, *port};
  return ev.evaluate(flow).allowed;
}

// Random clusters over a small vocabulary, so selectors, ipBlocks and named ports collide often.
class RandomCluster {
 public:
  explicit RandomCluster(uint32_t seed) : rng_(seed) {}

  model::Cluster make() {
    model::Cluster c;
    const char* nss[] = {"a", "b", "c"};
    for (int i = 0; i < 3; ++i) {
      model::Namespace ns{nss[i], labels(), {}};
      ns.labels["kubernetes.io/metadata.name"] = nss[i];
      if (pick(4) != 0) c.namespaces.push_back(ns);  // sometimes only implied by its pods
    }
    const int pods = 4 + pick(9);
    for (int i = 0; i < pods; ++i) {
      model::Pod p;
      p.namespace_ = nss[pick(3)];
      p.name = "p" + std::to_string(i);
      p.labels = labels();
      int fam = pick(4);  // 0 v4, 1 v6, 2 both, 3 none
      if (fam == 0 || fam == 2) p.ips.push_back(IpAddr::v4(0x0a000000u + (pick(4) << 8) + i));
      if (fam == 1 || fam == 2) {
        std::array<uint8_t, 16> b{0xfd};
        b[14] = static_cast<uint8_t>(pick(4));
        b[15] = static_cast<uint8_t>(i);
        p.ips.push_back(IpAddr::v6(b));
      }
      if (pick(2)) p.ports.push_back({"http", static_cast<uint16_t>(pick(2) ? 80 : 8080),
                                      Protocol::TCP});
      if (pick(3) == 0) p.ports.push_back({"dns", 53, pick(2) ? Protocol::UDP : Protocol::TCP});
      p.hostNetwork = pick(10) == 0;
      c.pods.push_back(p);
    }
    const int policies = pick(7);
    for (int i = 0; i < policies; ++i) {
      model::NetworkPolicy pol;
      pol.namespace_ = nss[pick(3)];
      pol.name = "pol" + std::to_string(i);
      pol.podSelector = selector();
      for (int r = pick(3); r > 0; --r) pol.ingress.push_back(rule());
      for (int r = pick(3); r > 0; --r) pol.egress.push_back(rule());
      pol.affectsIngress = pick(4) != 0;
      pol.affectsEgress = pick(2) != 0;
      c.policies.push_back(pol);
    }
    return c;
  }

 private:
  int pick(int n) { return static_cast<int>(rng_() % static_cast<uint32_t>(n)); }

  model::Labels labels() {
    model::Labels l;
    if (pick(2)) l["app"] = pick(2) ? "web" : "db";
    if (pick(2)) l["team"] = pick(2) ? "x" : "y";
    return l;
  }

  model::LabelSelector selector() {
    model::LabelSelector s;
    switch (pick(5)) {
      case 0: break;  // {}
      case 1: s.matchLabels["app"] = pick(2) ? "web" : "db"; break;
      case 2: s.matchLabels["team"] = "x"; break;
      case 3: s.matchExpressions.push_back({"app", model::SelectorOp::Exists, {}}); break;
      case 4: s.matchExpressions.push_back({"team", model::SelectorOp::NotIn, {"x"}}); break;
    }
    return s;
  }

  model::Rule rule() {
    model::Rule r;
    for (int n = pick(3); n > 0; --n) {
      model::Peer p;
      switch (pick(4)) {
        case 0: p.podSelector = selector(); break;
        case 1: p.namespaceSelector = selector(); break;
        case 2:
          p.podSelector = selector();
          p.namespaceSelector = selector();
          break;
        case 3: {
          model::IPBlock b;
          if (pick(3) == 0) {
            b.cidr = *Prefix::parse("fd00::/8");
          } else {
            b.cidr = *Prefix::parse(pick(2) ? "10.0.0.0/8" : "10.0.1.0/24");
            if (pick(2)) b.except.push_back(*Prefix::parse("10.0.1.0/24"));
          }
          p.ipBlock = b;
          break;
        }
      }
      r.peers.push_back(p);
    }
    for (int n = pick(3); n > 0; --n) {
      model::PortSpec s;
      s.protocol = pick(4) == 0 ? Protocol::UDP : Protocol::TCP;
      switch (pick(4)) {
        case 0: break;  // protocol only
        case 1: s.port = static_cast<uint16_t>(pick(2) ? 80 : 53); break;
        case 2:
          s.port = uint16_t{50};
          s.endPort = uint16_t{8080};
          break;
        case 3: s.port = std::string(pick(2) ? "http" : "dns"); break;
      }
      r.ports.push_back(s);
    }
    return r;
  }

  std::mt19937 rng_;
};

TEST(MatrixTest, AgreesWithReferenceEvaluatorOnRandomClusters) {
  std::vector<PortQuery> queries = {{Protocol::TCP, uint16_t{80}},
                                    {Protocol::TCP, std::string("http")},
                                    {Protocol::UDP, uint16_t{53}},
                                    {Protocol::UDP, std::string("dns")},
                                    {Protocol::TCP, uint16_t{8080}}};
  size_t allowed = 0, pairs = 0;
  for (uint32_t seed = 1; seed <= 300; ++seed) {
    model::Cluster c = RandomCluster(seed).make();
    engine::Evaluator ev(c);
    for (const auto& q : queries) {
      Matrix m = computeMatrix(ev, q);
      for (size_t i = 0; i < m.size(); ++i) {
        for (size_t j = 0; j < m.size(); ++j) {
          bool want = referenceAllowed(ev, *m.pods[i], *m.pods[j], q);
          ASSERT_EQ(m.at(i, j), want) << "seed " << seed << " " << q.label() << " "
                                      << m.keys[i] << " -> " << m.keys[j];
          allowed += want;
          ++pairs;
        }
      }
    }
  }
  // The generator must exercise both answers.
  EXPECT_GT(allowed, pairs / 10);
  EXPECT_LT(allowed, pairs - pairs / 10);
}

TEST(MatrixTest, ExcludesHostNetworkPodsAndSortsByKey) {
  auto d = model::loadPaths({testing::fixture("cluster")});
  ASSERT_TRUE(d.errors.empty());
  engine::Evaluator ev(d.cluster);
  Matrix m = computeMatrix(ev, PortQuery{});
  EXPECT_EQ(m.keys, (std::vector<std::string>{"dev/client", "kube-system/coredns",
                                              "monitoring/prometheus", "prod/api", "prod/db",
                                              "prod/web"}));
}

TEST(MatrixTest, JsonShapeIsExact) {
  auto d = model::loadPaths({testing::fixture("cluster")});
  ASSERT_TRUE(d.errors.empty());
  engine::Evaluator ev(d.cluster);
  std::ostringstream os;
  renderMatrixJson(os, computeMatrix(ev, PortQuery{Protocol::TCP, std::string("http")}));
  auto j = nlohmann::ordered_json::parse(os.str());
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"port", "protocol", "pods", "allowed"}));
  EXPECT_EQ(j["port"], "http");
  EXPECT_EQ(j["protocol"], "TCP");
  ASSERT_EQ(j["allowed"].size(), 6u);
  // Only dev/client reaches prod/web's http port (namespace team=shop); no other pod defines it.
  for (size_t i = 0; i < 6; ++i) {
    for (size_t k = 0; k < 6; ++k) EXPECT_EQ(j["allowed"][i][k].get<bool>(), i == 0 && k == 5);
  }
}

TEST(MatrixTest, TextTableHasLegendAndAlignedRows) {
  auto d = model::loadPaths({testing::fixture("cluster")});
  engine::Evaluator ev(d.cluster);
  std::ostringstream os;
  renderMatrixText(os, computeMatrix(ev, PortQuery{}));
  const std::string s = os.str();
  EXPECT_NE(s.find("row = from"), std::string::npos);
  EXPECT_NE(s.find("  5  prod/web\n"), std::string::npos);
  EXPECT_NE(s.find("   0 1 2 3 4 5\n0  + + + X X X\n"), std::string::npos) << s;
  EXPECT_NE(s.find("\nLegend: + allowed  X denied\n"), std::string::npos) << s;
  EXPECT_NE(s.find("9 of 36 pairs allowed"), std::string::npos);
}

TEST(DiffTest, ReportsOnlyChangedCommonPairs) {
  Matrix before, after;
  before.keys = {"a/x", "a/y", "b/z"};
  before.allowed = {1, 0, 1, 0, 0, 0, 1, 1, 1};
  after.keys = {"a/x", "a/y", "c/w"};
  after.allowed = {1, 1, 0, 1, 0, 0, 0, 0, 0};
  before.pods.resize(3);
  after.pods.resize(3);
  auto d = diffMatrices(before, after);
  ASSERT_EQ(d.changes.size(), 2u);
  EXPECT_EQ(d.changes[0].from, "a/x");
  EXPECT_EQ(d.changes[0].to, "a/y");
  EXPECT_FALSE(d.changes[0].before);
  EXPECT_TRUE(d.changes[0].after);
  EXPECT_EQ(d.changes[1].from, "a/y");
  EXPECT_EQ(d.changes[1].to, "a/x");
  EXPECT_EQ(d.onlyBefore, std::vector<std::string>{"b/z"});
  EXPECT_EQ(d.onlyAfter, std::vector<std::string>{"c/w"});
  std::ostringstream os;
  renderDiffText(os, d);
  EXPECT_EQ(os.str(),
            "a/x -> a/y: denied -> allowed\n"
            "a/y -> a/x: denied -> allowed\n"
            "2 of 4 pairs changed for TCP/80 (0 now denied, 2 now allowed); not compared: 1 "
            "pod(s) only in -f, 1 only in --with\n");
}

}  // namespace
}  // namespace sluice::ctl
