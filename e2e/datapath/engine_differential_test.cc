// The end-to-end differential test: random clusters and policies are compiled and programmed
// into the real BPF maps, and for random flows the verdict of the tc programs under
// BPF_PROG_TEST_RUN must equal the reference evaluator's verdict for that side (egress at a
// local source endpoint, ingress at a local destination endpoint). This ties the kernel
// datapath to the specification through the whole pipeline: model -> compiler -> lowering ->
// maps -> BPF.
#include <gtest/gtest.h>
#include <linux/pkt_cls.h>

#include <map>

#include "e2e/datapath/packet_builder.h"
#include "e2e/datapath/test_support.h"
#include "policyd/compiler/compiler.h"
#include "policyd/datapath/bpf/bpf_backend.h"
#include "policyd/engine/evaluator.h"
#include "tests/compiler/random_cluster.h"

namespace sluice::e2e {
namespace {

using compiler::testing::ProbeFlow;
using compiler::testing::RandomCluster;

constexpr int kCases = 400;
constexpr int kFlowsPerCase = 250;

struct Probe {
  ProbeFlow flow;
  compiler::Direction dir;
  bool want;
};

TEST(DatapathEngineDifferentialTest, BpfVerdictsEqualEvaluatorPerSide) {
  if (!isRoot()) GTEST_SKIP() << "needs root (BPF, bpffs)";
  removeStaleResources();
  ASSERT_TRUE(enterPrivateNetns());
  PinDir pin("engine-diff");
  auto opened = datapath::bpf::BpfBackend::open({pin.path(), datapath::EstablishedMode::Recheck});
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  auto backend = std::move(opened).value();

  size_t egress = 0, ingress = 0, allowed = 0;
  uint16_t nextSource = 20000;
  for (int c = 0; c < kCases; ++c) {
    RandomCluster gen(static_cast<uint64_t>(c) + 7000);
    auto s = gen.generate();
    for (int i = gen.rng()() % 3; i > 0; --i) gen.mutate(s);
    // The evaluator knows only the model: drop endpoints whose pod object is gone.
    std::erase_if(s.node.endpoints, [&](const compiler::LocalEndpoint& e) {
      return std::none_of(s.cluster.pods.begin(), s.cluster.pods.end(), [&](const model::Pod& p) {
        return p.namespace_ == e.podNamespace && p.name == e.podName;
      });
    });
    const compiler::State state = compiler::compile(s.cluster, s.node);
    const engine::Evaluator ev(s.cluster);
    std::map<std::string, compiler::EndpointId> local;
    std::map<compiler::EndpointId, std::vector<IpAddr>> ownIps;
    for (const auto& e : s.node.endpoints) {
      local.emplace(e.podNamespace + "/" + e.podName, e.id);
      ownIps[e.id] = e.ips;
    }
    auto endpointOf = [&](const model::Pod* p) -> std::optional<compiler::EndpointId> {
      if (!p) return std::nullopt;
      auto it = local.find(p->key());
      return it == local.end() ? std::nullopt : std::optional(it->second);
    };
    auto isHost = [&](const IpAddr& a) {
      return std::find(s.node.hostAddresses.begin(), s.node.hostAddresses.end(), a) !=
             s.node.hostAddresses.end();
    };

    // Expected verdicts from the evaluator, bucketed by the endpoint whose program decides.
    std::map<compiler::EndpointId, std::vector<Probe>> byEndpoint;
    const auto addresses = gen.probeAddresses(s);
    for (int i = 0; i < kFlowsPerCase; ++i) {
      const ProbeFlow f = gen.randomFlow(s, addresses);
      if (f.src.family() != f.dst.family()) continue;  // no packet has one of each
      const model::Pod* src = ev.podByIp(f.src);
      const model::Pod* dst = ev.podByIp(f.dst);
      const engine::Verdict v =
          ev.evaluate(engine::Flow{{src, f.src}, {dst, f.dst}, f.protocol, f.port});
      if (auto ep = endpointOf(src)) {
        // A pod sends only from its own registered addresses; any other source is spoofed.
        const auto& own = ownIps[*ep];
        const bool ownSource = std::find(own.begin(), own.end(), f.src) != own.end();
        byEndpoint[*ep].push_back({f, compiler::Direction::Egress, ownSource && v.egress.allowed});
      }
      if (auto ep = endpointOf(dst)) {
        // DESIGN.md §5: the node's own addresses always reach local pods (kubelet probes).
        bool want = isHost(f.src) || v.ingress.allowed;
        byEndpoint[*ep].push_back({f, compiler::Direction::Ingress, want});
      }
    }

    // BPF_PROG_TEST_RUN runs on `lo`, so one endpoint at a time owns ifindex 1; detaching
    // the previous one also clears its conntrack entries.
    for (const auto& [id, probes] : byEndpoint) {
      const datapath::EndpointAttachment att{id, "lo", 1, ownIps[id]};
      auto attached = backend->attach(att);
      ASSERT_TRUE(attached.ok()) << attached.error().message;
      auto st = backend->sync(state);
      ASSERT_TRUE(st.ok()) << st.error().message;
      for (const auto& p : probes) {
        PacketSpec spec;
        spec.src = p.flow.src.toString();
        spec.dst = p.flow.dst.toString();
        spec.protocol = static_cast<uint8_t>(p.flow.protocol);
        spec.dstPort = p.flow.port;
        // A fresh source port per probe: no probe may ride on another's conntrack entry.
        spec.srcPort = nextSource;
        nextSource = nextSource >= 60000 ? 20000 : nextSource + 1;
        const int fd = p.dir == compiler::Direction::Ingress ? backend->toPodProgramFd()
                                                             : backend->fromPodProgramFd();
        const RunResult r = testRun(fd, buildPacket(spec));
        ASSERT_EQ(r.error, 0);
        ASSERT_EQ(r.verdict, p.want ? TC_ACT_OK : TC_ACT_SHOT)
            << "case " << c << " endpoint " << id << " "
            << (p.dir == compiler::Direction::Ingress ? "ingress " : "egress ") << spec.src
            << " -> " << spec.dst << " " << model::protocolName(p.flow.protocol) << "/"
            << p.flow.port;
        (p.dir == compiler::Direction::Ingress ? ingress : egress)++;
        allowed += p.want;
      }
      ASSERT_TRUE(backend->detach({id, "lo", 1}).ok());
    }
  }
  std::printf(
      "engine vs BPF: %d cases, %zu egress and %zu ingress verdicts compared, %zu allowed\n",
      kCases, egress, ingress, allowed);
  EXPECT_GT(egress, 3000u);
  EXPECT_GT(ingress, 3000u);
  // Both verdicts well represented, or the comparison says little.
  EXPECT_GT(allowed, (egress + ingress) / 5);
  EXPECT_LT(allowed, (egress + ingress) * 4 / 5);
}

}  // namespace
}  // namespace sluice::e2e
