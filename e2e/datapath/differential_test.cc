// Differential test: random States and random packets through BPF_PROG_TEST_RUN, compared with a
// reference written from DESIGN.md §5/§6 over the IR itself (longest-prefix class, host class
// always in, non-isolated passes, otherwise any entry for the class or any peer whose protocol
// and port range admit the packet). Every probe uses a fresh source port (or echo id), so no
// probe can ride on conntrack state from an earlier one.
#include <gtest/gtest.h>
#include <linux/pkt_cls.h>

#include <cstring>
#include <memory>
#include <random>

#include "e2e/datapath/packet_builder.h"
#include "e2e/datapath/test_support.h"
#include "policyd/datapath/bpf/bpf_backend.h"

namespace sluice::e2e {
namespace {

using compiler::AllowEntry;
using compiler::Direction;

compiler::ClassId refClassOf(const compiler::State& s, const IpAddr& a) {
  int bestLen = -1;
  compiler::ClassId best = compiler::kWorldClass;
  for (const auto& [p, c] : s.classes) {
    if (p.family() == a.family() && p.contains(a) && p.len() > bestLen) {
      bestLen = p.len();
      best = c;
    }
  }
  return best;
}

bool refAllows(const compiler::State& s, compiler::EndpointId id, Direction dir, const IpAddr& peer,
               uint8_t proto, uint16_t port) {
  auto it = s.endpoints.find(id);
  if (it == s.endpoints.end()) return false;
  const compiler::ClassId cls = refClassOf(s, peer);
  if (dir == Direction::Ingress && cls == compiler::kHostClass) return true;
  const auto& ep = it->second;
  if (!(dir == Direction::Ingress ? ep.ingressIsolated : ep.egressIsolated)) return true;
  const bool ported = proto == kTcp || proto == kUdp || proto == kSctp;
  for (const AllowEntry& e : ep.entries) {
    if (e.direction != dir || (e.peer != compiler::kAnyPeer && e.peer != cls)) continue;
    if (e.protocol == compiler::kAnyProtocol && e.ports.all()) return true;
    if (!ported || (e.protocol != compiler::kAnyProtocol && e.protocol != proto)) continue;
    if (port >= e.ports.first && port <= e.ports.last) return true;
  }
  return false;
}

const char* kPeers4[] = {"10.1.0.20", "10.1.0.21",   "10.1.7.9",
                         "10.0.0.1",  "192.168.1.1", "8.8.8.8"};
const char* kPeers6[] = {"fd00::20", "fd00::21", "fd00:1::9", "2001:db8::1"};

compiler::State randomState(std::mt19937& rng) {
  auto P = [](const char* t) { return Prefix::parse(t).value(); };
  compiler::State s;
  s.classes[P("0.0.0.0/0")] = compiler::kWorldClass;
  s.classes[P("::/0")] = compiler::kWorldClass;
  s.classes[P("10.0.0.1/32")] = compiler::kHostClass;
  // Overlapping prefixes: a /16 ipBlock, a /24 inside it, pod /32s inside that.
  s.classes[P("10.1.0.0/16")] = 16 + rng() % 3;
  s.classes[P("10.1.0.0/24")] = 16 + rng() % 3;
  s.classes[P("10.1.0.20/32")] = 16 + rng() % 4;
  s.classes[P("10.1.0.21/32")] = 16 + rng() % 4;
  s.classes[P("fd00::/64")] = 16 + rng() % 3;
  s.classes[P("fd00::20/128")] = 16 + rng() % 4;
  compiler::EndpointPolicy ep;
  ep.ingressIsolated = rng() % 4 != 0;
  ep.egressIsolated = rng() % 4 != 0;
  const uint8_t protos[] = {compiler::kAnyProtocol, kTcp, kUdp, kSctp};
  const int n = static_cast<int>(rng() % 10);
  for (int i = 0; i < n; ++i) {
    AllowEntry e;
    e.direction = rng() % 2 ? Direction::Ingress : Direction::Egress;
    e.peer = rng() % 3 == 0 ? compiler::kAnyPeer : 16 + rng() % 4;
    e.protocol = protos[rng() % 4];
    if (e.protocol != compiler::kAnyProtocol && rng() % 5 != 0) {
      const uint16_t a = static_cast<uint16_t>(rng() % 2500);
      e.ports = {a, static_cast<uint16_t>(a + rng() % 400)};
    }
    e.rule = static_cast<compiler::RuleId>(i);
    ep.entries.insert(e);
  }
  s.endpoints[1] = ep;
  s.rules.resize(static_cast<size_t>(n));
  return s;
}

TEST(DatapathDifferentialTest, RandomStatesAndPacketsMatchTheReference) {
  if (!isRoot()) GTEST_SKIP() << "needs root (BPF, bpffs)";
  removeStaleResources();
  ASSERT_TRUE(enterPrivateNetns());
  PinDir pin("differential");
  auto opened = datapath::bpf::BpfBackend::open({pin.path(), datapath::EstablishedMode::Recheck});
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  auto backend = std::move(opened).value();
  const datapath::EndpointAttachment pod{
      1, "lo", 1, {IpAddr::parse("10.1.0.10").value(), IpAddr::parse("fd00::10").value()}};
  ASSERT_TRUE(backend->attach(pod).ok());

  std::mt19937 rng(4242);
  uint16_t nextSource = 20000;  // unique per probe, above every destination port used
  int probes = 0, allowed = 0;
  for (int round = 0; round < 25; ++round) {
    const compiler::State s = randomState(rng);
    auto st = backend->sync(s);
    ASSERT_TRUE(st.ok()) << st.error().message;
    for (int i = 0; i < 200; ++i) {
      const bool v6 = rng() % 3 == 0;
      const std::string peer = v6 ? kPeers6[rng() % 4] : kPeers4[rng() % 6];
      const std::string pod = v6 ? "fd00::10" : "10.1.0.10";
      const Direction dir = rng() % 2 ? Direction::Ingress : Direction::Egress;
      const uint8_t ps[] = {kTcp, kUdp, kSctp, static_cast<uint8_t>(v6 ? kIcmpv6 : kIcmp)};
      PacketSpec spec;
      spec.protocol = ps[rng() % 4];
      spec.src = dir == Direction::Ingress ? peer : pod;
      spec.dst = dir == Direction::Ingress ? pod : peer;
      spec.srcPort = nextSource;
      spec.icmpId = nextSource;
      spec.icmpType = v6 ? 128 : 8;
      spec.dstPort = static_cast<uint16_t>(rng() % 3000);
      ++nextSource;
      const bool want =
          refAllows(s, 1, dir, IpAddr::parse(peer).value(), spec.protocol, spec.dstPort);
      const int fd =
          dir == Direction::Ingress ? backend->toPodProgramFd() : backend->fromPodProgramFd();
      const RunResult r = testRun(fd, buildPacket(spec));
      ASSERT_EQ(r.error, 0);
      ASSERT_EQ(r.verdict, want ? TC_ACT_OK : TC_ACT_SHOT)
          << "round " << round << " " << (dir == Direction::Ingress ? "ingress" : "egress") << " "
          << spec.src << " -> " << spec.dst << " proto " << int(spec.protocol) << " port "
          << spec.dstPort;
      ++probes;
      allowed += want;
    }
  }
  // Both verdicts well represented, or the comparison says little.
  EXPECT_GT(allowed, probes / 5);
  EXPECT_LT(allowed, probes * 4 / 5);
  (void)backend->detach(pod);
}

}  // namespace
}  // namespace sluice::e2e
