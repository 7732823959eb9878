// Packet-table tests of the tc programs through BPF_PROG_TEST_RUN (katran style): each case is a
// description, a packet from the builder, the hook it enters, and the expected verdict. Maps are
// populated through the real BpfBackend from a hand-written compiler::State; each test has its
// own pin directory (removed at the end) and runs in a private network namespace, where `lo`
// (ifindex 1, the skb device of BPF_PROG_TEST_RUN) is the endpoint's "host veth".
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/pkt_cls.h>
#include <net/if.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
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
  SkbContext ctx;  // default: on `lo`, sent by the node itself
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

  void open(EstablishedMode mode = EstablishedMode::Recheck,
            const datapath::bpf::ConntrackOptions& ct = {}) {
    auto b = BpfBackend::open(BpfOptions{pin_->path(), mode, ct});
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
      const RunResult r = testRun(fd, c.packet, c.ctx);
      ASSERT_EQ(r.error, 0) << c.description << ": BPF_PROG_TEST_RUN: " << std::strerror(r.error);
      EXPECT_EQ(r.verdict, c.expect) << c.description;
    }
  }

  // Packets dropped so far for the reason with this stable name.
  uint64_t dropped(std::string_view reason) {
    auto counts = backend_->dropCounts();
    EXPECT_TRUE(counts.ok()) << counts.error().message;
    if (!counts.ok()) return 0;
    for (const auto& c : *counts) {
      if (c.reason == reason) return c.packets;
    }
    ADD_FAILURE() << "no drop reason named " << reason;
    return 0;
  }

  // Entries of the pinned conntrack map, read by path as another process would.
  size_t conntrackEntries() {
    UniqueFd fd(bpf_obj_get((pin_->path() + "/" SLUICE_MAP_CONNTRACK).c_str()));
    EXPECT_TRUE(fd.valid()) << "open pinned " SLUICE_MAP_CONNTRACK ": " << std::strerror(errno);
    sluice_ct_key key{}, next{};
    size_t n = 0;
    for (const sluice_ct_key* prev = nullptr;
         fd.valid() && bpf_map_get_next_key(fd.get(), prev, &next) == 0; prev = &key) {
      key = next;
      ++n;
    }
    return n;
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

// ---- the pod as attacker ---------------------------------------------------------------------

TEST_F(DatapathPacketTest, SpoofedSourcesAreDroppedAndCounted) {
  open();
  program(baseState([](compiler::EndpointPolicy& ep) { ep.egressIsolated = false; }));
  auto from = [](const char* src, const char* dst) {
    return out(dst, kUdp, 53, [=](PacketSpec& s) { s.src = src; });
  };
  run({
      {"v4 from the pod's own address", Hook::FromPod, from("10.1.0.10", "8.8.8.8"), kOk},
      {"v6 from the pod's own address", Hook::FromPod, from("fd00::10", "2001:db8::1"), kOk},
      {"v4 with another pod's source", Hook::FromPod, from("10.1.0.20", "10.1.0.30"), kShot},
      {"v6 with another pod's source", Hook::FromPod, from("fd00::20", "fd00::30"), kShot},
      {"v4 with the node's source", Hook::FromPod, from("10.0.0.1", "8.8.8.8"), kShot},
      {"v6 link-local source, not ND", Hook::FromPod, from("fe80::1", "fe80::2"), kShot},
      {"v4 later fragment with a forged source", Hook::FromPod,
       out("8.8.8.8", kUdp, 0,
           [](PacketSpec& s) {
             s.src = "10.1.0.20";
             s.fragment = true;
             s.fragOffset = 4;
           }),
       kShot},
  });
  EXPECT_EQ(dropped("spoofed"), 5u);
  EXPECT_EQ(dropped("policy"), 0u);

  // A pod with only an IPv4 address sends no IPv6 at all.
  const EndpointAttachment v4Only{kPod, "lo", 1, {A("10.1.0.10")}};
  ASSERT_TRUE(backend_->attach(v4Only).ok());
  run({{"v6 from a pod without an IPv6 address", Hook::FromPod, from("fd00::10", "2001:db8::1"),
        kShot},
       {"v4 still passes", Hook::FromPod, from("10.1.0.10", "8.8.4.4"), kOk}});
  EXPECT_EQ(dropped("spoofed"), 6u);

  // More than one address of a family is refused: the datapath could not tell which is real.
  const EndpointAttachment twoV4{kPod, "lo", 1, {A("10.1.0.10"), A("10.1.0.11")}};
  auto st = backend_->attach(twoV4);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("more than one IPv4"), std::string::npos) << st.error().message;
}

TEST_F(DatapathPacketTest, NodeSourceIsTrustedOnlyWhenTheNodeSentIt) {
  open();
  program(baseState([](compiler::EndpointPolicy& ep) { ep.egressIsolated = false; }));
  const SkbContext forwarded{0, 7};  // came in on some other device
  auto fromNode = [](uint16_t srcPort) {
    return in("10.0.0.1", kTcp, 9999, [=](PacketSpec& s) { s.srcPort = srcPort; });
  };
  // The pod talks to the node (kubelet, node-local DNS): replies come from the node's address.
  const auto toNode = out("10.0.0.1", kTcp, 10250, [](PacketSpec& s) { s.srcPort = 41000; });
  const auto nodeReply = in("10.0.0.1", kTcp, 41000, [](PacketSpec& s) {
    s.srcPort = 10250;
    s.tcpFlags = 0x12;
  });
  run({
      {"node source, sent by the node (probe)", Hook::ToPod, fromNode(40000), kOk},
      {"node source, forwarded: forged", Hook::ToPod, fromNode(40001), kShot, forwarded},
      {"forged packet of the node's tracked flow", Hook::ToPod, fromNode(40000), kShot, forwarded},
      {"same flow from the node itself", Hook::ToPod, fromNode(40000), kOk},
      {"node source in on the node's loopback (localhost NAT)", Hook::ToPod, fromNode(40002), kOk,
       SkbContext{0, 1}},
      {"pod -> node", Hook::FromPod, toNode, kOk},
      {"forwarded 'reply' from the node's address", Hook::ToPod, nodeReply, kShot, forwarded},
      {"the node's real reply", Hook::ToPod, nodeReply, kOk},
      {"forwarded from a pod class is policy as usual", Hook::ToPod, in("10.1.0.20", kTcp, 80), kOk,
       forwarded},
  });
  EXPECT_EQ(dropped("spoofed"), 3u);
}

TEST_F(DatapathPacketTest, NeighbourDiscoveryStaysOnTheLink) {
  open();
  program(baseState());
  auto nd = [](uint8_t type, const char* src, const char* dst, uint8_t hop = 255) {
    PacketSpec s;
    s.protocol = kIcmpv6;
    s.icmpType = type;
    s.src = src;
    s.dst = dst;
    s.hopLimit = hop;
    return buildPacket(s);
  };
  constexpr uint8_t kRs = 133, kRa = 134, kNs = 135, kNa = 136;
  run({
      {"NS link-local -> solicited-node", Hook::FromPod, nd(kNs, "fe80::1", "ff02::1:ff00:1"), kOk},
      {"DAD NS :: -> solicited-node", Hook::FromPod, nd(kNs, "::", "ff02::1:ff00:10"), kOk},
      {"NS own address -> solicited-node", Hook::FromPod, nd(kNs, "fd00::10", "ff02::1:ff00:1"),
       kOk},
      {"NA -> gateway link-local", Hook::FromPod, nd(kNa, "fe80::1", "fe80::2"), kOk},
      {"NA -> all-nodes", Hook::FromPod, nd(kNa, "fe80::1", "ff02::1"), kOk},
      {"RS -> all-routers", Hook::FromPod, nd(kRs, "fe80::1", "ff02::2"), kOk},
      {"NS -> off-link global", Hook::FromPod, nd(kNs, "fe80::1", "2001:db8::1"), kShot},
      {"NA -> another pod's global", Hook::FromPod, nd(kNa, "fe80::1", "fd00::20"), kShot},
      {"NS with another pod's source", Hook::FromPod, nd(kNs, "fd00::20", "ff02::1:ff00:1"), kShot},
      {"NS -> other multicast (ff05::1)", Hook::FromPod, nd(kNs, "fe80::1", "ff05::1"), kShot},
      {"NS -> ff02::1:fe00:1 (not solicited-node)", Hook::FromPod,
       nd(kNs, "fe80::1", "ff02::1:fe00:1"), kShot},
      {"NS with hop limit 254 (routed)", Hook::FromPod, nd(kNs, "fe80::1", "ff02::1:ff00:1", 254),
       kShot},
      {"RA from a pod", Hook::FromPod, nd(kRa, "fe80::1", "ff02::1"), kShot},
      {"to the pod: NS -> its own address (NUD)", Hook::ToPod, nd(kNs, "fe80::2", "fd00::10"), kOk},
      {"to the pod: RA -> all-nodes", Hook::ToPod, nd(kRa, "fe80::2", "ff02::1"), kOk},
      {"to the pod: NA -> another address", Hook::ToPod, nd(kNa, "fe80::2", "fd00::20"), kShot},
  });
  EXPECT_EQ(dropped("nd-invalid"), 8u);

  // MLD: the pod's stack reports the groups it joins as its link comes up (hop limit 1,
  // link-local source, link-scope multicast); nothing else of it passes as control.
  auto mld = [](uint8_t type, const char* src, const char* dst, uint8_t hop) {
    PacketSpec s;
    s.protocol = kIcmpv6;
    s.icmpType = type;
    s.src = src;
    s.dst = dst;
    s.hopLimit = hop;
    s.ipv6ExtHeaders = {0};  // hop-by-hop (router alert)
    return buildPacket(s);
  };
  constexpr uint8_t kMldQuery = 130, kMld2Report = 143;
  run({
      {"MLDv2 report -> ff02::16", Hook::FromPod, mld(kMld2Report, "fe80::1", "ff02::16", 1), kOk},
      {"MLDv2 report from ::", Hook::FromPod, mld(kMld2Report, "::", "ff02::16", 1), kOk},
      {"MLD report with hop limit 64", Hook::FromPod, mld(kMld2Report, "fe80::1", "ff02::16", 64),
       kShot},
      {"MLD report -> a global address", Hook::FromPod,
       mld(kMld2Report, "fe80::1", "2001:db8::1", 1), kShot},
      {"MLD report -> site-scope multicast", Hook::FromPod,
       mld(kMld2Report, "fe80::1", "ff05::16", 1), kShot},
      {"MLD query from a pod", Hook::FromPod, mld(kMldQuery, "fe80::1", "ff02::1", 1), kShot},
      {"to the pod: MLD query", Hook::ToPod, mld(kMldQuery, "fe80::2", "ff02::1", 1), kOk},
  });
  EXPECT_EQ(dropped("nd-invalid"), 8u) << "MLD is not ND";
}

// A router's error about a packet the pod sent (`quoted`), addressed to `to`.
std::vector<uint8_t> icmpError(const char* router, const char* to, uint8_t type, uint8_t code,
                               const PacketSpec& quoted, uint16_t mtu = 0) {
  PacketSpec e;
  e.src = router;
  e.dst = to;
  e.protocol = std::string(router).find(':') != std::string::npos ? kIcmpv6 : kIcmp;
  e.icmpType = type;
  e.icmpCode = code;
  e.icmpId = mtu;
  e.icmpQuoted = quote(quoted);
  e.payload = 0;
  return buildPacket(e);
}

PacketSpec tuple(const char* src, uint16_t sport, const char* dst, uint16_t dport,
                 uint8_t proto = kTcp) {
  PacketSpec s;
  s.src = src;
  s.dst = dst;
  s.srcPort = sport;
  s.dstPort = dport;
  s.protocol = proto;
  return s;
}

PacketSpec fragmentOf(PacketSpec s, uint16_t offset) {
  s.fragment = true;
  s.fragOffset = offset;
  s.moreFragments = true;
  s.fragId = 99;
  return s;
}

PacketSpec withExtensions(PacketSpec s, std::vector<uint8_t> headers) {
  s.ipv6ExtHeaders = std::move(headers);
  return s;
}

TEST_F(DatapathPacketTest, IcmpErrorsPassOnlyAsRelatedToATrackedFlow) {
  open();
  program(baseState());
  const PacketSpec podToBackend = tuple("10.1.0.10", 40000, "10.1.0.30", 443);
  const PacketSpec frontendToPod6 = tuple("fd00::20", 40000, "fd00::10", 80);
  const PacketSpec podReply6 = tuple("fd00::10", 80, "fd00::20", 40000);
  const PacketSpec dnsQuery = tuple("10.1.0.30", 5353, "10.1.0.10", 53, kUdp);
  run({
      {"pod -> backend:443 (rule 4)", Hook::FromPod, buildPacket(podToBackend), kOk},
      {"frontend -> pod:80 over v6 (rule 0)", Hook::ToPod, buildPacket(frontendToPod6), kOk},
      {"udp/53 to the pod (rule 2)", Hook::ToPod, buildPacket(dnsQuery), kOk},
  });
  auto before = backend_->counters();
  ASSERT_TRUE(before.ok());
  const uint64_t rule4 = (*before)[4].packets, rule0 = (*before)[0].packets;

  PacketSpec untracked = podToBackend;
  untracked.srcPort = 40001;
  PacketSpec untracked6 = podReply6;
  untracked6.srcPort = 81;
  run({
      {"v4 fragmentation needed quoting the pod's flow", Hook::ToPod,
       icmpError("172.16.0.1", "10.1.0.10", 3, 4, podToBackend, 1400), kOk},
      {"v4 time exceeded quoting the pod's flow", Hook::ToPod,
       icmpError("172.16.0.1", "10.1.0.10", 11, 0, podToBackend), kOk},
      {"v4 port unreachable quoting no flow", Hook::ToPod,
       icmpError("172.16.0.1", "10.1.0.10", 3, 3, untracked), kShot},
      {"v4 error quoting the flow, addressed elsewhere", Hook::ToPod,
       icmpError("172.16.0.1", "10.1.0.99", 3, 4, podToBackend), kShot},
      {"v6 packet too big quoting the pod's reply", Hook::ToPod,
       icmpError("2001:db8::ff", "fd00::10", 2, 0, podReply6, 1280), kOk},
      {"v6 unreachable quoting no flow", Hook::ToPod,
       icmpError("2001:db8::ff", "fd00::10", 1, 4, untracked6), kShot},
      {"v6 packet too big quoting the first fragment of the pod's reply", Hook::ToPod,
       icmpError("2001:db8::ff", "fd00::10", 2, 0, fragmentOf(podReply6, 0), 1280), kOk},
      {"v6 packet too big quoting a later fragment (no ports)", Hook::ToPod,
       icmpError("2001:db8::ff", "fd00::10", 2, 0, fragmentOf(podReply6, 8), 1280), kShot},
      {"v6 error quoting the reply behind a destination options header", Hook::ToPod,
       icmpError("2001:db8::ff", "fd00::10", 1, 4, withExtensions(podReply6, {60, 0})), kOk},
      {"v6 error quoting the v4 flow's ports (other family)", Hook::ToPod,
       icmpError("2001:db8::ff", "fd00::10", 1, 4, tuple("fd00::10", 40000, "fd00::30", 443)),
       kShot},
      {"the pod's port unreachable about a query it got", Hook::FromPod,
       icmpError("10.1.0.10", "10.1.0.30", 3, 3, dnsQuery), kOk},
      {"the pod's port unreachable about nothing it got", Hook::FromPod,
       icmpError("10.1.0.10", "10.1.0.30", 3, 3, tuple("10.1.0.30", 5354, "10.1.0.10", 53, kUdp)),
       kShot},
  });
  EXPECT_EQ(dropped("icmp-unrelated"), 6u);
  auto after = backend_->counters();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ((*after)[4].packets, rule4 + 2) << "related errors credit the flow's rule";
  EXPECT_EQ((*after)[0].packets, rule0 + 3);

  // Not isolated: an unrelated error is still dropped (it could reset someone's connection).
  program(baseState([](compiler::EndpointPolicy& ep) {
    ep.ingressIsolated = false;
    ep.egressIsolated = false;
  }));
  run({{"unrelated error to a non-isolated pod", Hook::ToPod,
        icmpError("172.16.0.1", "10.1.0.10", 3, 3, untracked), kShot}});
}

TEST_F(DatapathPacketTest, TcpStateAndIdleTimeoutsExpireFlows) {
  datapath::bpf::ConntrackOptions ct;
  ct.tcpClosing = std::chrono::seconds(1);
  ct.tcpClosed = std::chrono::seconds(1);
  ct.other = std::chrono::seconds(1);
  ct.sweepInterval = std::chrono::milliseconds(0);  // the test sweeps
  open(EstablishedMode::Recheck, ct);
  program(baseState());
  // Ingress tcp/80 from frontend is allowed; the pod's egress is isolated, so its packets pass
  // only as replies of a tracked flow.
  auto peer = [](uint16_t port, uint8_t flags) {
    return in("10.1.0.20", kTcp, 80, [=](PacketSpec& s) {
      s.srcPort = port;
      s.tcpFlags = flags;
    });
  };
  auto pod = [](uint16_t port, uint8_t flags) {
    return out("10.1.0.20", kTcp, port, [=](PacketSpec& s) {
      s.srcPort = 80;
      s.tcpFlags = flags;
    });
  };
  constexpr uint8_t kSyn = 0x02, kSynAck = 0x12, kAck = 0x10, kFinAck = 0x11, kRst = 0x04;
  const auto udpIn = in("10.1.0.30", kUdp, 53, [](PacketSpec& s) { s.srcPort = 6000; });
  const auto udpReply = out("10.1.0.30", kUdp, 6000, [](PacketSpec& s) { s.srcPort = 53; });
  run({
      {"A: SYN", Hook::ToPod, peer(40000, kSyn), kOk},
      {"A: SYN-ACK", Hook::FromPod, pod(40000, kSynAck), kOk},
      {"A: FIN from the peer", Hook::ToPod, peer(40000, kFinAck), kOk},
      {"A: the pod's FIN still passes while closing", Hook::FromPod, pod(40000, kFinAck), kOk},
      {"B: SYN", Hook::ToPod, peer(40001, kSyn), kOk},
      {"B: SYN-ACK", Hook::FromPod, pod(40001, kSynAck), kOk},
      {"B: RST from the peer", Hook::ToPod, peer(40001, kRst), kOk},
      {"C: SYN", Hook::ToPod, peer(40002, kSyn), kOk},
      {"C: SYN-ACK", Hook::FromPod, pod(40002, kSynAck), kOk},
      {"C: ACK", Hook::ToPod, peer(40002, kAck), kOk},
      {"D: SYN", Hook::ToPod, peer(40003, kSyn), kOk},
      {"D: SYN-ACK", Hook::FromPod, pod(40003, kSynAck), kOk},
      {"D: FIN", Hook::ToPod, peer(40003, kFinAck), kOk},
      {"D: the pod opens the closed tuple the other way: a new flow, denied", Hook::FromPod,
       pod(40003, kSyn), kShot},
      {"udp/53 in", Hook::ToPod, udpIn, kOk},
      {"udp reply", Hook::FromPod, udpReply, kOk},
  });
  EXPECT_EQ(conntrackEntries(), 4u);  // A, B, C, udp (D's entry went with the new SYN)
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  run({
      {"A: after FIN and the closing timeout, the pod's packet is no reply", Hook::FromPod,
       pod(40000, kAck), kShot},
      {"B: after RST and the closed timeout", Hook::FromPod, pod(40001, kAck), kShot},
      {"C: established, idle less than its timeout", Hook::FromPod, pod(40002, kAck), kOk},
      {"udp: idle past its timeout", Hook::FromPod, udpReply, kShot},
  });
  EXPECT_EQ(conntrackEntries(), 1u);  // expired on lookup

  // Entries nobody looks up again go with the sweep.
  run({{"E: udp/53 in", Hook::ToPod,
        in("10.1.0.30", kUdp, 53, [](PacketSpec& s) { s.srcPort = 6001; }), kOk},
       {"F: udp/53 in", Hook::ToPod,
        in("10.1.0.30", kUdp, 53, [](PacketSpec& s) { s.srcPort = 6002; }), kOk}});
  EXPECT_EQ(conntrackEntries(), 3u);
  auto none = backend_->sweepConntrack();
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_EQ(*none, 0u) << "nothing has expired yet";
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto swept = backend_->sweepConntrack();
  ASSERT_TRUE(swept.ok()) << swept.error().message;
  EXPECT_EQ(*swept, 2u);
  EXPECT_EQ(conntrackEntries(), 1u);  // C, established
}

TEST_F(DatapathPacketTest, SweeperThreadDeletesExpiredFlows) {
  datapath::bpf::ConntrackOptions ct;
  ct.other = std::chrono::seconds(1);
  ct.sweepInterval = std::chrono::milliseconds(200);
  open(EstablishedMode::Recheck, ct);
  program(baseState());
  run({{"udp/53 in", Hook::ToPod, in("10.1.0.30", kUdp, 53), kOk}});
  EXPECT_EQ(conntrackEntries(), 1u);
  size_t left = 1;
  for (int i = 0; i < 50 && left != 0; ++i) {  // 5 s at most
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    left = conntrackEntries();
  }
  EXPECT_EQ(left, 0u) << "the backend's sweeper did not delete the expired flow";
}

// A second endpoint on a veth of the test's private namespace (the kernel may lack the dummy
// driver): BPF_PROG_TEST_RUN runs a packet "on" it by ifindex.
class SecondLink {
 public:
  explicit SecondLink(const std::string& name) : name_(name) {
    ok_ =
        std::system(("ip link add " + name_ + " type veth peer name " + name_ + "p").c_str()) == 0;
    ifindex_ = ok_ ? static_cast<int>(if_nametoindex(name_.c_str())) : 0;
  }
  ~SecondLink() {
    if (ok_) (void)std::system(("ip link del " + name_ + " 2>/dev/null").c_str());
  }
  SecondLink(const SecondLink&) = delete;
  SecondLink& operator=(const SecondLink&) = delete;
  int ifindex() const { return ifindex_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  bool ok_ = false;
  int ifindex_ = 0;
};

TEST_F(DatapathPacketTest, OneEndpointsFloodCannotCostOthersTheirFlows) {
  datapath::bpf::ConntrackOptions ct;
  ct.perEndpointQuota = 64;
  ct.sweepInterval = std::chrono::milliseconds(0);
  open(EstablishedMode::Recheck, ct);
  SecondLink link(runPrefix() + "b");
  ASSERT_GT(link.ifindex(), 0) << "ip link add " << link.name() << " type veth";
  constexpr compiler::EndpointId kOther = 2;
  const EndpointAttachment other{kOther, link.name(), link.ifindex(), {A("10.1.0.11")}};
  ASSERT_TRUE(backend_->attach(other).ok());
  // The flooding pod (1) may send anywhere but receives only replies; the victim (2) serves
  // tcp/80 to the frontend and sends nothing of its own.
  compiler::State s = baseState([](compiler::EndpointPolicy& ep) { ep.egressIsolated = false; });
  s.classes[P("10.1.0.11/32")] = 51;
  compiler::EndpointPolicy victim;
  victim.ingressIsolated = true;
  victim.egressIsolated = true;
  victim.entries = {AllowEntry{Direction::Ingress, 20, kTcp, {80, 80}, 0}};
  s.endpoints[kOther] = victim;
  program(s);

  const SkbContext onOther{static_cast<uint32_t>(link.ifindex()), 0};
  auto toVictim = [](uint8_t flags) {
    PacketSpec p = tuple("10.1.0.20", 40000, "10.1.0.11", 80);
    p.tcpFlags = flags;
    return buildPacket(p);
  };
  auto fromVictim = [](uint8_t flags) {
    PacketSpec p = tuple("10.1.0.11", 80, "10.1.0.20", 40000);
    p.tcpFlags = flags;
    return buildPacket(p);
  };
  run({{"victim: SYN in", Hook::ToPod, toVictim(0x02), kOk, onOther},
       {"victim: SYN-ACK out", Hook::FromPod, fromVictim(0x12), kOk, onOther}});

  auto flood = [](uint16_t port) {
    return out("8.8.8.8", kUdp, port, [=](PacketSpec& s) { s.srcPort = 30000; });
  };
  int passed = 0, refused = 0;
  for (uint16_t port = 1000; port < 1200; ++port) {
    const RunResult r = testRun(backend_->fromPodProgramFd(), flood(port));
    ASSERT_EQ(r.error, 0);
    (r.verdict == kOk ? passed : refused)++;
  }
  EXPECT_EQ(passed, 64) << "the quota admits exactly its size";
  EXPECT_EQ(refused, 136);
  EXPECT_EQ(dropped("ct-full"), 136u);
  run({
      {"victim: established flow in", Hook::ToPod, toVictim(0x10), kOk, onOther},
      {"victim: its reply", Hook::FromPod, fromVictim(0x10), kOk, onOther},
      {"victim: a new flow", Hook::ToPod,
       in("10.1.0.20", kTcp, 80,
          [](PacketSpec& p) {
            p.dst = "10.1.0.11";
            p.srcPort = 40001;
          }),
       kOk, onOther},
      {"flooder: its first flow's reply still passes", Hook::ToPod,
       in("8.8.8.8", kUdp, 30000, [](PacketSpec& p) { p.srcPort = 1000; }), kOk},
      {"flooder: reply of a refused flow", Hook::ToPod,
       in("8.8.8.8", kUdp, 30000, [](PacketSpec& p) { p.srcPort = 1100; }), kShot},
  });

  // The whole table full (junk written behind the program's back, no quota): new flows of
  // everybody fail closed, established flows keep passing both ways.
  UniqueFd ctFd(bpf_obj_get((pin_->path() + "/" SLUICE_MAP_CONNTRACK).c_str()));
  ASSERT_TRUE(ctFd.valid());
  sluice_ct_key junk{};
  junk.endpoint = kPod;
  junk.protocol = kUdp;
  junk.family = 4;
  sluice_ct_value v{};
  v.last_seen_ns = std::numeric_limits<uint64_t>::max() / 2;  // never idle
  size_t written = 0;
  for (uint32_t i = 0; i < SLUICE_MAX_CONNTRACK; ++i) {
    std::memcpy(junk.dst, &i, sizeof(i));
    if (bpf_map_update_elem(ctFd.get(), &junk, &v, BPF_NOEXIST) != 0) break;
    ++written;
  }
  EXPECT_GT(written, SLUICE_MAX_CONNTRACK - 100u);
  EXPECT_EQ(conntrackEntries(), SLUICE_MAX_CONNTRACK);
  const uint64_t fullBefore = dropped("ct-full");
  run({
      {"victim: established flow in, table full", Hook::ToPod, toVictim(0x10), kOk, onOther},
      {"victim: its reply, table full", Hook::FromPod, fromVictim(0x10), kOk, onOther},
      {"victim: a new flow, table full", Hook::ToPod,
       in("10.1.0.20", kTcp, 80,
          [](PacketSpec& p) {
            p.dst = "10.1.0.11";
            p.srcPort = 40002;
          }),
       kShot, onOther},
  });
  EXPECT_EQ(dropped("ct-full"), fullBefore + 1);
  ASSERT_TRUE(backend_->detach(other).ok());
}

// Kubernetes and the engine read ::ffff:a.b.c.d/n as an IPv6 prefix; so does the datapath.
TEST_F(DatapathPacketTest, V4MappedPrefixesAreIpv6Only) {
  open();
  compiler::State s = baseState([](compiler::EndpointPolicy& ep) {
    ep.entries.insert(AllowEntry{Direction::Ingress, 60, kTcp, {80, 80}, 6});
    ep.entries.insert(AllowEntry{Direction::Ingress, 61, kTcp, {81, 81}, 7});
  });
  s.classes[P("::ffff:172.20.77.0/120")] = 60;
  s.classes[P("::ffff:0:0/96")] = 61;
  s.rules.resize(8);
  program(s);
  run({
      {"v4 172.20.77.5 is not in ::ffff:172.20.77.0/120", Hook::ToPod, in("172.20.77.5", kTcp, 80),
       kShot},
      {"v6 ::ffff:172.20.77.5 is", Hook::ToPod, in("::ffff:172.20.77.5", kTcp, 80), kOk},
      {"v4 8.8.8.8 is not in ::ffff:0:0/96", Hook::ToPod, in("8.8.8.8", kTcp, 81), kShot},
      {"v6 ::ffff:8.8.8.8 is", Hook::ToPod, in("::ffff:8.8.8.8", kTcp, 81), kOk},
      {"v4 world is still world (not ::ffff:0:0/96)", Hook::ToPod, in("9.9.9.9", kTcp, 80), kShot},
      // Conntrack keeps the families apart: a v4 flow is not answered by v6 packets between the
      // v4-mapped forms of its addresses.
      {"v4 pod -> backend:443", Hook::FromPod, out("10.1.0.30", kTcp, 443), kOk},
      {"v6 'reply' from ::ffff:10.1.0.30:443", Hook::ToPod,
       in("::ffff:10.1.0.30", kTcp, 40000,
          [](PacketSpec& p) {
            p.dst = "::ffff:10.1.0.10";
            p.srcPort = 443;
          }),
       kShot},
      {"the real v4 reply", Hook::ToPod,
       in("10.1.0.30", kTcp, 40000, [](PacketSpec& p) { p.srcPort = 443; }), kOk},
  });
}

TEST_F(DatapathPacketTest, AReusedRuleIdStartsFromZero) {
  open();
  compiler::State s = baseState();
  for (size_t i = 0; i < s.rules.size(); ++i) {
    s.rules[i] = compiler::RuleOrigin{"default/web", Direction::Ingress, static_cast<int>(i)};
  }
  program(s);
  auto rule1 = [&]() {
    auto c = backend_->counters();
    EXPECT_TRUE(c.ok());
    return c.ok() && c->size() > 1 ? (*c)[1].packets : ~0ull;
  };
  run({{"rule 1", Hook::ToPod, in("10.1.0.20", kTcp, 8001), kOk},
       {"rule 1 again", Hook::ToPod, in("10.1.0.20", kTcp, 8002), kOk}});
  EXPECT_EQ(rule1(), 2u);
  program(s);  // same origins: counts stay
  EXPECT_EQ(rule1(), 2u);

  // Id 1 now belongs to another policy's rule (sync).
  compiler::State reused = s;
  reused.rules[1] = compiler::RuleOrigin{"default/other", Direction::Ingress, 0};
  reused.revision = 2;
  program(reused);
  EXPECT_EQ(rule1(), 0u) << "a new rule inherited the old one's counts (sync)";
  run({{"rule 1, new origin", Hook::ToPod, in("10.1.0.20", kTcp, 8003), kOk}});
  EXPECT_EQ(rule1(), 1u);

  // And again through an incremental diff.
  compiler::Diff d;
  d.rulesUpsert.push_back({1, compiler::RuleOrigin{"default/third", Direction::Ingress, 0}});
  d.revision = 3;
  ASSERT_TRUE(backend_->apply(d).ok());
  EXPECT_EQ(rule1(), 0u) << "a new rule inherited the old one's counts (apply)";
  compiler::Diff same;
  same.rulesUpsert.push_back({1, compiler::RuleOrigin{"default/third", Direction::Ingress, 0}});
  same.revision = 4;
  run({{"rule 1, third origin", Hook::ToPod, in("10.1.0.20", kTcp, 8004), kOk}});
  ASSERT_TRUE(backend_->apply(same).ok());
  EXPECT_EQ(rule1(), 1u) << "an upsert with the same origin keeps the counts";
}

TEST_F(DatapathPacketTest, EndpointsAreReadBackFromThePinnedMaps) {
  open();
  program(baseState());
  backend_.reset();  // the daemon exits; the pinned endpoint map stays
  auto reopened = BpfBackend::open(BpfOptions{pin_->path(), EstablishedMode::Recheck});
  ASSERT_TRUE(reopened.ok()) << reopened.error().message;
  backend_ = std::move(reopened).value();
  auto eps = backend_->endpoints();
  ASSERT_TRUE(eps.ok()) << eps.error().message;
  ASSERT_EQ(eps->size(), 1u);
  const EndpointAttachment& ep = (*eps)[0];
  EXPECT_EQ(ep.id, kPod);
  EXPECT_EQ(ep.ifindex, 1);
  EXPECT_EQ(ep.ifname, "lo");
  ASSERT_EQ(ep.ips.size(), 2u);
  EXPECT_EQ(ep.ips[0].toString(), "10.1.0.10");
  EXPECT_EQ(ep.ips[1].toString(), "fd00::10");
  // Still enforced with those addresses, without any attach by the new instance.
  run({{"spoofed after the restart", Hook::FromPod,
        out("10.1.0.30", kTcp, 443, [](PacketSpec& p) { p.src = "10.1.0.20"; }), kShot},
       {"own source after the restart", Hook::FromPod, out("10.1.0.30", kTcp, 443), kOk}});
}

// A /metrics scrape reads counters on its own thread while the daemon writes: no lock of the
// caller's, no shared C++ state, every read succeeds.
TEST_F(DatapathPacketTest, CountersAreReadableWhileTheBackendWrites) {
  open();
  const compiler::State a = baseState();
  compiler::State b = a;
  b.endpoints[kPod].entries.insert(AllowEntry{Direction::Ingress, 30, kTcp, {81, 81}, 6});
  b.rules.resize(7);
  b.revision = 2;
  program(a);
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0}, failures{0};
  std::thread scraper([&] {
    while (!stop.load()) {
      auto c = backend_->counters();
      auto d = backend_->dropCounts();
      if (!c.ok() || !d.ok() || c->size() < 6 || d->empty()) failures++;
      reads++;
    }
  });
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(backend_->sync(i % 2 ? a : b).ok());
    ASSERT_TRUE(backend_->attach(kPodLink).ok());
  }
  stop = true;
  scraper.join();
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace sluice::e2e
