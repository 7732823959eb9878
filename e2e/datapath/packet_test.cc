// Packet-table tests of the tc programs through BPF_PROG_TEST_RUN (katran style): each case is a
// description, a packet from the builder, the hook it enters, and the expected verdict. Maps are
// populated through the real BpfBackend from a hand-written compiler::State; each test has its
// own pin directory (removed at the end) and runs in a private network namespace, where `lo`
// (ifindex 1, the skb device of BPF_PROG_TEST_RUN) is the endpoint's "host veth".
#include <gtest/gtest.h>
#include <linux/pkt_cls.h>

#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "e2e/datapath/packet_builder.h"
#include "e2e/datapath/test_support.h"
#include "policyd/datapath/bpf/bpf_backend.h"
#include "policyd/datapath/bpf/drop_event_reader.h"

namespace sluice::e2e {
namespace {

using compiler::AllowEntry;
using compiler::Direction;
using datapath::EndpointAttachment;
using datapath::EstablishedMode;
using datapath::bpf::BpfBackend;
using datapath::bpf::BpfOptions;

constexpr int kOk = TC_ACT_OK;
constexpr int kShot = TC_ACT_SHOT;
constexpr compiler::EndpointId kPod = 1;
IpAddr A(const char* text) { return IpAddr::parse(text).value(); }
// The pod's own addresses: the only sources it may send from.
const EndpointAttachment kPodLink{kPod, "lo", 1, {A("10.1.0.10"), A("fd00::10")}};

enum class Hook { FromPod, ToPod };  // pod egress / pod ingress

struct Case {
  std::string description;
  Hook hook;
  std::vector<uint8_t> packet;
  int expect;
};

Prefix P(const char* text) { return Prefix::parse(text).value(); }

// Pod 10.1.0.10 / fd00::10 on a node 10.0.0.1. Peers: 10.1.0.20 and fd00::20 "frontend" (class
// 20), 10.1.0.30 "backend" (30), 192.168.0.0/16 an ipBlock (40).
compiler::State baseState(const std::function<void(compiler::EndpointPolicy&)>& tweak = {}) {
  compiler::State s;
  s.classes[P("0.0.0.0/0")] = compiler::kWorldClass;
  s.classes[P("::/0")] = compiler::kWorldClass;
  s.classes[P("10.0.0.1/32")] = compiler::kHostClass;
  s.classes[P("10.1.0.10/32")] = 50;
  s.classes[P("fd00::10/128")] = 50;
  s.classes[P("10.1.0.20/32")] = 20;
  s.classes[P("fd00::20/128")] = 20;
  s.classes[P("10.1.0.30/32")] = 30;
  s.classes[P("192.168.0.0/16")] = 40;
  compiler::EndpointPolicy ep;
  ep.ingressIsolated = true;
  ep.egressIsolated = true;
  ep.entries = {
      AllowEntry{Direction::Ingress, 20, kTcp, {80, 80}, 0},
      AllowEntry{Direction::Ingress, 20, kTcp, {8000, 8100}, 1},
      AllowEntry{Direction::Ingress, compiler::kAnyPeer, kUdp, {53, 53}, 2},
      AllowEntry{Direction::Ingress, 40, compiler::kAnyProtocol, {}, 3},
      AllowEntry{Direction::Egress, 30, kTcp, {443, 443}, 4},
      AllowEntry{Direction::Egress, 20, kSctp, {9000, 9001}, 5},
  };
  if (tweak) tweak(ep);
  s.endpoints[kPod] = ep;
  s.rules.resize(6);
  s.revision = 1;
  return s;
}

// Ingress packet (to the pod) from `src` to the pod's `port`.
std::vector<uint8_t> in(const char* src, uint8_t proto, uint16_t port,
                        const std::function<void(PacketSpec&)>& tweak = {}) {
  PacketSpec s;
  s.src = src;
  s.dst = std::string(src).find(':') != std::string::npos ? "fd00::10" : "10.1.0.10";
  s.protocol = proto;
  s.dstPort = port;
  if (tweak) tweak(s);
  return buildPacket(s);
}

// Egress packet (from the pod) to `dst`:`port`.
std::vector<uint8_t> out(const char* dst, uint8_t proto, uint16_t port,
                         const std::function<void(PacketSpec&)>& tweak = {}) {
  PacketSpec s;
  s.dst = dst;
  s.src = std::string(dst).find(':') != std::string::npos ? "fd00::10" : "10.1.0.10";
  s.protocol = proto;
  s.dstPort = port;
  if (tweak) tweak(s);
  return buildPacket(s);
}

class DatapathPacketTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!isRoot()) return;
    removeStaleResources();
    ASSERT_TRUE(enterPrivateNetns()) << "unshare(CLONE_NEWNET): " << std::strerror(errno);
  }

  void SetUp() override {
    if (!isRoot()) GTEST_SKIP() << "needs root (BPF, bpffs, tc)";
    pin_ =
        std::make_unique<PinDir>(::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  void TearDown() override {
    if (backend_) (void)backend_->detach(kPodLink);
    backend_.reset();
    pin_.reset();
  }

  void open(EstablishedMode mode = EstablishedMode::Recheck) {
    auto b = BpfBackend::open(BpfOptions{pin_->path(), mode});
    ASSERT_TRUE(b.ok()) << b.error().message;
    backend_ = std::move(b).value();
    auto st = backend_->attach(kPodLink);
    ASSERT_TRUE(st.ok()) << st.error().message;
  }

  void program(const compiler::State& s) {
    auto st = backend_->sync(s);
    ASSERT_TRUE(st.ok()) << st.error().message;
  }

  void run(const std::vector<Case>& cases) {
    for (const Case& c : cases) {
      const int fd =
          c.hook == Hook::FromPod ? backend_->fromPodProgramFd() : backend_->toPodProgramFd();
      const RunResult r = testRun(fd, c.packet);
      ASSERT_EQ(r.error, 0) << c.description << ": BPF_PROG_TEST_RUN: " << std::strerror(r.error);
      EXPECT_EQ(r.verdict, c.expect) << c.description;
    }
  }

  std::unique_ptr<PinDir> pin_;
  std::unique_ptr<BpfBackend> backend_;
};

TEST_F(DatapathPacketTest, IsolatedEndpointFollowsItsAllowSet) {
  open();
  program(baseState());
  run({
      {"ingress tcp/80 from frontend class", Hook::ToPod, in("10.1.0.20", kTcp, 80), kOk},
      {"ingress tcp/81 from frontend class", Hook::ToPod, in("10.1.0.20", kTcp, 81), kShot},
      {"ingress tcp/80 from backend class", Hook::ToPod, in("10.1.0.30", kTcp, 80), kShot},
      {"ingress udp/80 from frontend (rule is tcp)", Hook::ToPod, in("10.1.0.20", kUdp, 80), kShot},
      {"range 8000-8100: first port", Hook::ToPod, in("10.1.0.20", kTcp, 8000), kOk},
      {"range 8000-8100: last port", Hook::ToPod, in("10.1.0.20", kTcp, 8100), kOk},
      {"range 8000-8100: inside", Hook::ToPod, in("10.1.0.20", kTcp, 8063), kOk},
      {"range 8000-8100: one below", Hook::ToPod, in("10.1.0.20", kTcp, 7999), kShot},
      {"range 8000-8100: one above", Hook::ToPod, in("10.1.0.20", kTcp, 8101), kShot},
      {"any peer udp/53 from backend", Hook::ToPod, in("10.1.0.30", kUdp, 53), kOk},
      {"any peer udp/53 from the world", Hook::ToPod, in("8.8.8.8", kUdp, 53), kOk},
      {"any peer udp/54", Hook::ToPod, in("10.1.0.30", kUdp, 54), kShot},
      {"ipBlock class, any protocol: tcp", Hook::ToPod, in("192.168.3.4", kTcp, 12345), kOk},
      {"ipBlock class, any protocol: sctp", Hook::ToPod, in("192.168.3.4", kSctp, 7), kOk},
      {"ipBlock class, any protocol: icmp echo", Hook::ToPod, in("192.168.3.4", kIcmp, 0), kOk},
      {"icmp from frontend (only port rules)", Hook::ToPod, in("10.1.0.20", kIcmp, 0), kShot},
      {"world tcp/80", Hook::ToPod, in("8.8.8.8", kTcp, 80), kShot},
      {"host class is always allowed in", Hook::ToPod, in("10.0.0.1", kTcp, 9999), kOk},
      {"egress tcp/443 to backend", Hook::FromPod, out("10.1.0.30", kTcp, 443), kOk},
      {"egress tcp/444 to backend", Hook::FromPod, out("10.1.0.30", kTcp, 444), kShot},
      {"egress tcp/443 to frontend", Hook::FromPod, out("10.1.0.20", kTcp, 443), kShot},
      {"egress sctp/9001 to frontend", Hook::FromPod, out("10.1.0.20", kSctp, 9001), kOk},
      {"egress sctp/9002 to frontend", Hook::FromPod, out("10.1.0.20", kSctp, 9002), kShot},
      {"egress to the host is not special", Hook::FromPod, out("10.0.0.1", kTcp, 10250), kShot},
      {"egress icmp to backend", Hook::FromPod, out("10.1.0.30", kIcmp, 0), kShot},
  });
}

TEST_F(DatapathPacketTest, Ipv6AndExtensionHeaders) {
  open();
  program(baseState());
  auto ext = [](PacketSpec& s) { s.ipv6ExtHeaders = {0, 60}; };  // hop-by-hop, dest options
  run({
      {"v6 ingress tcp/80 from frontend", Hook::ToPod, in("fd00::20", kTcp, 80), kOk},
      {"v6 ingress tcp/81 from frontend", Hook::ToPod, in("fd00::20", kTcp, 81), kShot},
      {"v6 ingress tcp/80 from world", Hook::ToPod, in("2001:db8::1", kTcp, 80), kShot},
      {"v6 hop-by-hop + dstopts, tcp/8050", Hook::ToPod, in("fd00::20", kTcp, 8050, ext), kOk},
      {"v6 hop-by-hop + dstopts, tcp/81", Hook::ToPod, in("fd00::20", kTcp, 81, ext), kShot},
      {"v6 udp/53 any peer", Hook::ToPod, in("2001:db8::1", kUdp, 53), kOk},
      {"v6 icmpv6 echo from frontend", Hook::ToPod,
       in("fd00::20", kIcmpv6, 0, [](PacketSpec& s) { s.icmpType = 128; }), kShot},
  });
}

TEST_F(DatapathPacketTest, LinkLocalControlPassesInAnyState) {
  open();  // attached, no policy yet: everything else is dropped
  auto ns = [](uint8_t hop) {
    return [hop](PacketSpec& s) {
      s.src = "fe80::1";
      s.dst = "ff02::1:ff00:10";
      s.icmpType = 135;  // neighbour solicitation
      s.hopLimit = hop;
    };
  };
  run({
      {"ARP", Hook::FromPod, buildArpRequest(), kOk},
      {"ARP to the pod", Hook::ToPod, buildArpRequest(), kOk},
      {"neighbour solicitation, hop limit 255", Hook::FromPod, out("fd00::1", kIcmpv6, 0, ns(255)),
       kOk},
      {"router solicitation", Hook::FromPod,
       out("ff02::2", kIcmpv6, 0,
           [](PacketSpec& s) {
             s.src = "fe80::1";
             s.icmpType = 133;
             s.hopLimit = 255;
           }),
       kOk},
      {"ND with hop limit 64 is not link-local control", Hook::FromPod,
       out("fd00::1", kIcmpv6, 0, ns(64)), kShot},
      {"tcp before the policy is applied", Hook::ToPod, in("10.0.0.1", kTcp, 80), kShot},
      {"unknown ethertype (LLDP)", Hook::FromPod, buildEthertype(0x88cc, 40), kShot},
  });
}

TEST_F(DatapathPacketTest, FailsClosedUntilReadyAndWithoutEndpoint) {
  open();
  run({{"attached, policy not applied", Hook::ToPod, in("10.1.0.20", kTcp, 80), kShot},
       {"attached, policy not applied, egress", Hook::FromPod, out("10.1.0.30", kTcp, 443),
        kShot}});
  program(baseState());
  run({{"policy applied", Hook::ToPod, in("10.1.0.20", kTcp, 80), kOk}});
  auto bool_ = backend_->attached(kPodLink);
  ASSERT_TRUE(bool_.ok());
  EXPECT_TRUE(*bool_);
  // The endpoint's policy goes away (pod deleted): fail closed again.
  compiler::State noPolicy = baseState();
  noPolicy.endpoints.clear();
  program(noPolicy);
  run({{"policy removed", Hook::ToPod, in("10.1.0.20", kTcp, 80), kShot}});
  program(baseState());
  ASSERT_TRUE(backend_->detach(kPodLink).ok());
  run({{"interface not an endpoint", Hook::ToPod, in("10.1.0.20", kTcp, 80), kShot}});
  auto attached = backend_->attached(kPodLink);
  ASSERT_TRUE(attached.ok());
  EXPECT_FALSE(*attached);
}

TEST_F(DatapathPacketTest, DetachToleratesAMissingLinkAndAttachIsIdempotent) {
  open();
  program(baseState());
  ASSERT_TRUE(backend_->attach(kPodLink).ok());  // again: no change, no gap
  EXPECT_EQ(backend_->lastWrite().endpointWrites, 0u);
  run({{"after a second attach", Hook::ToPod, in("10.1.0.20", kTcp, 80), kOk}});
  // The veth is gone (pod deleted): detach by name still succeeds and drops the endpoint entry.
  const EndpointAttachment gone{kPod, "sltgone0", 0};
  auto st = backend_->detach(gone);
  ASSERT_TRUE(st.ok()) << st.error().message;
  run({{"endpoint entry removed", Hook::ToPod, in("10.1.0.20", kTcp, 80), kShot}});
  auto attached = backend_->attached(gone);
  ASSERT_TRUE(attached.ok());
  EXPECT_FALSE(*attached);
}

TEST_F(DatapathPacketTest, NotIsolatedDirectionPasses) {
  open();
  program(baseState([](compiler::EndpointPolicy& ep) { ep.egressIsolated = false; }));
  run({
      {"egress anywhere when not egress-isolated", Hook::FromPod, out("8.8.8.8", kTcp, 25), kOk},
      {"egress icmp when not egress-isolated", Hook::FromPod, out("8.8.8.8", kIcmp, 0), kOk},
      {"ingress still isolated", Hook::ToPod, in("8.8.8.8", kTcp, 25), kShot},
  });
  program(baseState([](compiler::EndpointPolicy& ep) {
    ep.ingressIsolated = false;
    ep.egressIsolated = false;
    ep.entries.clear();
  }));
  run({{"ingress when not isolated", Hook::ToPod, in("8.8.8.8", kTcp, 25), kOk}});
}

TEST_F(DatapathPacketTest, RepliesOfAllowedFlowsPass) {
  open();
  program(baseState());
  auto reply = [](uint16_t podPort, uint16_t peerPort) {
    return out("10.1.0.20", kTcp, peerPort, [=](PacketSpec& s) { s.srcPort = podPort; });
  };
  auto request = [](uint16_t podPort, uint16_t peerPort) {
    return in("10.1.0.20", kTcp, podPort, [=](PacketSpec& s) { s.srcPort = peerPort; });
  };
  run({
      {"reply without a forward flow", Hook::FromPod, reply(80, 40000), kShot},
      {"forward: frontend -> pod:80", Hook::ToPod, request(80, 40000), kOk},
      {"reply: pod:80 -> frontend (egress isolated, no egress rule)", Hook::FromPod,
       reply(80, 40000), kOk},
      {"same flow again", Hook::ToPod, request(80, 40000), kOk},
      {"reply on another peer port", Hook::FromPod, reply(80, 40001), kShot},
      {"egress flow to backend:443", Hook::FromPod, out("10.1.0.30", kTcp, 443), kOk},
      {"its reply", Hook::ToPod,
       in("10.1.0.30", kTcp, 40000, [](PacketSpec& s) { s.srcPort = 443; }), kOk},
      {"icmp echo to a peer when egress not allowed", Hook::FromPod, out("10.1.0.30", kIcmp, 0),
       kShot},
  });
}

compiler::Diff revokeRule(const compiler::State& s, int rule) {
  compiler::Diff d;
  compiler::Diff::EndpointChange c;
  c.endpoint = kPod;
  c.ingressIsolated = s.endpoints.at(kPod).ingressIsolated;
  c.egressIsolated = s.endpoints.at(kPod).egressIsolated;
  for (const auto& e : s.endpoints.at(kPod).entries) {
    if (e.rule == static_cast<compiler::RuleId>(rule)) c.remove.push_back(e);
  }
  d.endpoints.push_back(c);
  d.revision = s.revision + 1;
  return d;
}

TEST_F(DatapathPacketTest, RecheckCutsAnEstablishedFlowWhenPolicyRevokesIt) {
  open(EstablishedMode::Recheck);
  const compiler::State s = baseState();
  program(s);
  const auto fwd = in("10.1.0.20", kTcp, 80);
  const auto fwd8k = in("10.1.0.20", kTcp, 8080);
  const auto rep = out("10.1.0.20", kTcp, 40000, [](PacketSpec& p) { p.srcPort = 80; });
  run({{"open tcp/80", Hook::ToPod, fwd, kOk},
       {"open tcp/8080", Hook::ToPod, fwd8k, kOk},
       {"reply", Hook::FromPod, rep, kOk}});
  const uint64_t before = backend_->revision();
  ASSERT_TRUE(backend_->apply(revokeRule(s, 0)).ok());
  EXPECT_GT(backend_->revision(), before);
  run({{"reply after revoke", Hook::FromPod, rep, kShot},
       {"forward after revoke", Hook::ToPod, fwd, kShot},
       {"other flow still allowed after recheck", Hook::ToPod, fwd8k, kOk}});
  auto drops = backend_->dropCounters();
  ASSERT_TRUE(drops.ok());
  uint64_t revoked = 0;
  for (const auto& d : *drops) {
    if (d.reason == datapath::bpf::DropReason::PolicyRevoked) revoked = d.packets;
  }
  EXPECT_EQ(revoked, 1u);  // the reply; the entry is gone, so the forward packet is a policy drop
}

TEST_F(DatapathPacketTest, KeepLetsEstablishedFlowsFinish) {
  open(EstablishedMode::Keep);
  const compiler::State s = baseState();
  program(s);
  const auto fwd = in("10.1.0.20", kTcp, 80);
  const auto rep = out("10.1.0.20", kTcp, 40000, [](PacketSpec& p) { p.srcPort = 80; });
  run({{"open tcp/80", Hook::ToPod, fwd, kOk}});
  ASSERT_TRUE(backend_->apply(revokeRule(s, 0)).ok());
  run({{"reply after revoke (keep)", Hook::FromPod, rep, kOk},
       {"forward after revoke (keep)", Hook::ToPod, fwd, kOk},
       {"a new flow is denied", Hook::ToPod,
        in("10.1.0.20", kTcp, 80, [](PacketSpec& p) { p.srcPort = 40001; }), kShot}});
}

TEST_F(DatapathPacketTest, FragmentsFollowTheirFirstFragment) {
  open();
  program(baseState());
  auto frag = [](uint32_t id, uint16_t offset, bool more) {
    return [=](PacketSpec& s) {
      s.fragment = true;
      s.fragId = id;
      s.fragOffset = offset;
      s.moreFragments = more;
    };
  };
  run({
      {"v4 first fragment tcp/80 allowed", Hook::ToPod,
       in("10.1.0.20", kTcp, 80, frag(77, 0, true)), kOk},
      {"v4 middle fragment of it", Hook::ToPod, in("10.1.0.20", kTcp, 0, frag(77, 4, true)), kOk},
      {"v4 last fragment of it", Hook::ToPod, in("10.1.0.20", kTcp, 0, frag(77, 8, false)), kOk},
      {"v4 later fragment without a first", Hook::ToPod,
       in("10.1.0.20", kTcp, 0, frag(78, 4, false)), kShot},
      {"v4 first fragment tcp/81 denied", Hook::ToPod, in("10.1.0.20", kTcp, 81, frag(79, 0, true)),
       kShot},
      {"v4 later fragment of the denied one", Hook::ToPod,
       in("10.1.0.20", kTcp, 0, frag(79, 4, false)), kShot},
      {"v4 later fragment, same id, other source", Hook::ToPod,
       in("10.1.0.30", kTcp, 0, frag(77, 4, false)), kShot},
      {"v6 first fragment tcp/80 allowed", Hook::ToPod,
       in("fd00::20", kTcp, 80, frag(1000, 0, true)), kOk},
      {"v6 later fragment of it", Hook::ToPod, in("fd00::20", kTcp, 0, frag(1000, 2, false)), kOk},
      {"v6 later fragment without a first", Hook::ToPod,
       in("fd00::20", kTcp, 0, frag(1001, 2, false)), kShot},
      {"v6 first fragment tcp/81 denied", Hook::ToPod,
       in("fd00::20", kTcp, 81, frag(1002, 0, true)), kShot},
      {"v6 later fragment of the denied one", Hook::ToPod,
       in("fd00::20", kTcp, 0, frag(1002, 2, false)), kShot},
  });
}

TEST_F(DatapathPacketTest, CountersAndDropEvents) {
  open();
  program(baseState());
  std::vector<datapath::bpf::DropEvent> events;
  auto reader = datapath::bpf::DropEventReader::open(
      pin_->path(), [&](const datapath::bpf::DropEvent& e) { events.push_back(e); });
  ASSERT_TRUE(reader.ok()) << reader.error().message;
  run({{"allowed by rule 1", Hook::ToPod, in("10.1.0.20", kTcp, 8001), kOk},
       {"allowed by rule 1 (ct)", Hook::ToPod, in("10.1.0.20", kTcp, 8001), kOk},
       {"denied", Hook::ToPod, in("10.1.0.30", kTcp, 81, [](PacketSpec& s) { s.srcPort = 41000; }),
        kShot}});
  auto counters = backend_->counters();
  ASSERT_TRUE(counters.ok()) << counters.error().message;
  ASSERT_EQ(counters->size(), 6u);
  EXPECT_EQ((*counters)[1].packets, 2u);
  EXPECT_GT((*counters)[1].bytes, 100u);
  EXPECT_EQ((*counters)[0].packets, 0u);

  auto n = (*reader)->poll(100);
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(events.size(), 1u);
  const auto& e = events[0];
  EXPECT_EQ(e.endpoint, kPod);
  EXPECT_EQ(e.direction, Direction::Ingress);
  EXPECT_EQ(e.src.toString(), "10.1.0.30");
  EXPECT_EQ(e.dst.toString(), "10.1.0.10");
  EXPECT_EQ(e.srcPort, 41000);
  EXPECT_EQ(e.dstPort, 81);
  EXPECT_EQ(e.protocol, kTcp);
  EXPECT_EQ(e.peerClass, 30u);
  EXPECT_EQ(e.reason, datapath::bpf::DropReason::Policy);
}

TEST_F(DatapathPacketTest, ReopenReusesPinnedMapsAndSyncWritesNothing) {
  open();
  const compiler::State s = baseState();
  program(s);
  EXPECT_FALSE(backend_->reusedPinnedMaps());
  EXPECT_GT(backend_->lastWrite().policyWrites, 0u);
  run({{"open a flow", Hook::ToPod, in("10.1.0.20", kTcp, 80), kOk}});
  const uint64_t revision = backend_->revision();
  backend_.reset();  // the daemon exits; pins stay

  open();  // a new daemon: reuses the pins, re-attaches
  EXPECT_TRUE(backend_->reusedPinnedMaps());
  EXPECT_EQ(backend_->revision(), revision);
  program(s);
  EXPECT_EQ(backend_->lastWrite().classWrites, 0u);
  EXPECT_EQ(backend_->lastWrite().policyWrites, 0u);
  EXPECT_EQ(backend_->lastWrite().endpointWrites, 0u);
  EXPECT_FALSE(backend_->lastWrite().revisionBumped);
  run({{"reply of the flow opened before the restart", Hook::FromPod,
        out("10.1.0.20", kTcp, 40000, [](PacketSpec& p) { p.srcPort = 80; }), kOk},
       {"still enforced", Hook::ToPod, in("10.1.0.20", kTcp, 81), kShot}});

  // A change while "down": sync fixes only the difference.
  compiler::State changed = s;
  changed.endpoints[kPod].entries.insert(AllowEntry{Direction::Ingress, 30, kTcp, {81, 81}, 6});
  changed.rules.resize(7);
  program(changed);
  EXPECT_EQ(backend_->lastWrite().policyWrites, 1u);
  EXPECT_TRUE(backend_->lastWrite().revisionBumped);
  run({{"new rule in effect", Hook::ToPod, in("10.1.0.30", kTcp, 81), kOk}});
}

TEST_F(DatapathPacketTest, ApplyFirstDiffFromEmptyEqualsSync) {
  open();
  const compiler::State s = baseState();
  compiler::Diff d;
  d.classesUpsert = s.classes;
  compiler::Diff::EndpointChange c;
  c.endpoint = kPod;
  c.ingressIsolated = true;
  c.egressIsolated = true;
  c.add.assign(s.endpoints.at(kPod).entries.begin(), s.endpoints.at(kPod).entries.end());
  d.endpoints.push_back(c);
  d.revision = 1;
  ASSERT_TRUE(backend_->apply(d).ok());
  run({{"after apply", Hook::ToPod, in("10.1.0.20", kTcp, 80), kOk},
       {"after apply, denied", Hook::ToPod, in("10.1.0.20", kTcp, 81), kShot}});
  program(s);
  EXPECT_EQ(backend_->lastWrite().policyWrites + backend_->lastWrite().classWrites, 0u);
}

}  // namespace
}  // namespace sluice::e2e
