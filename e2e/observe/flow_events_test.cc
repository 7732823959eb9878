// The datapath side of the flow log, through BPF_PROG_TEST_RUN (as e2e/datapath/packet_test):
// drops are reported with their reason, the first packet of a new flow is reported as allowed
// (with the admitting rule) when asked or when the endpoint is audited and never otherwise,
// and policy drops are counted per endpoint and direction for the per-policy metrics.
#include <gtest/gtest.h>
#include <linux/pkt_cls.h>

#include <cstring>

#include "e2e/datapath/packet_builder.h"
#include "e2e/datapath/test_support.h"
#include "policyd/datapath/bpf/bpf_backend.h"

namespace sluice::e2e {
namespace {

using compiler::AllowEntry;
using compiler::Direction;
using datapath::FlowEvent;
using datapath::FlowVerdict;
using datapath::bpf::BpfBackend;
using datapath::bpf::BpfOptions;

constexpr compiler::EndpointId kPod = 1;
IpAddr A(const char* text) { return IpAddr::parse(text).value(); }
Prefix P(const char* text) { return Prefix::parse(text).value(); }
const datapath::EndpointAttachment kPodLink{kPod, "lo", 1, {A("10.1.0.10")}};

// Pod 10.1.0.10, ingress-isolated, admitting TCP/80 from 10.1.0.20 (class 20) by rule 0.
compiler::State state(bool audited) {
  compiler::State s;
  s.classes[P("0.0.0.0/0")] = compiler::kWorldClass;
  s.classes[P("10.1.0.10/32")] = 50;
  s.classes[P("10.1.0.20/32")] = 20;
  s.classes[P("10.1.0.30/32")] = 30;
  compiler::EndpointPolicy ep;
  ep.ingressIsolated = true;
  ep.audited = audited;
  ep.entries = {AllowEntry{Direction::Ingress, 20, kTcp, {80, 80}, 0}};
  s.endpoints[kPod] = ep;
  s.rules = {{"obs/web", Direction::Ingress, 0}};
  s.revision = 1;
  return s;
}

std::vector<uint8_t> in(const char* src, uint16_t srcPort, uint8_t flags) {
  PacketSpec p;
  p.src = src;
  p.dst = "10.1.0.10";
  p.srcPort = srcPort;
  p.dstPort = 80;
  p.tcpFlags = flags;
  return buildPacket(p);
}

class FlowEventsTest : public ::testing::Test {
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
    reader_.reset();
    if (backend_) (void)backend_->detach(kPodLink);
    backend_.reset();
    pin_.reset();
  }
  void open(bool reportAllowed, bool audited) {
    BpfOptions o;
    o.pinDir = pin_->path();
    o.reportAllowedFlows = reportAllowed;
    o.conntrack.sweepInterval = std::chrono::milliseconds(0);
    auto b = BpfBackend::open(o);
    ASSERT_TRUE(b.ok()) << b.error().message;
    backend_ = std::move(b).value();
    ASSERT_TRUE(backend_->attach(kPodLink).ok());
    ASSERT_TRUE(backend_->sync(state(audited)).ok());
    auto r = backend_->openFlowEvents();
    ASSERT_TRUE(r.ok()) << r.error().message;
    reader_ = std::move(r).value();
  }
  int toPod(const std::vector<uint8_t>& packet) {
    RunResult r = testRun(backend_->toPodProgramFd(), packet);
    EXPECT_EQ(r.error, 0);
    return r.verdict;
  }
  std::vector<FlowEvent> events() {
    std::vector<FlowEvent> out;
    auto n = reader_->poll(0, [&](const FlowEvent& e) { out.push_back(e); });
    EXPECT_TRUE(n.ok());
    return out;
  }
  uint64_t policyDrops(Direction d) {
    auto c = backend_->endpointDropCounts();
    EXPECT_TRUE(c.ok()) << c.error().message;
    uint64_t n = 0;
    if (c.ok()) {
      for (const auto& x : *c) n += (x.endpoint == kPod && x.direction == d) ? x.packets : 0;
    }
    return n;
  }

  std::unique_ptr<PinDir> pin_;
  std::unique_ptr<BpfBackend> backend_;
  std::unique_ptr<datapath::FlowEventReader> reader_;
};

TEST_F(FlowEventsTest, NewAllowedFlowIsReportedOnceWithItsRuleWhenAsked) {
  open(/*reportAllowed=*/true, /*audited=*/false);
  EXPECT_EQ(toPod(in("10.1.0.20", 40000, 0x02)), TC_ACT_OK);  // SYN: a new flow
  EXPECT_EQ(toPod(in("10.1.0.20", 40000, 0x10)), TC_ACT_OK);  // ACK: the same flow
  auto ev = events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].verdict, FlowVerdict::Allowed);
  EXPECT_EQ(ev[0].rule, 0u);
  EXPECT_EQ(ev[0].reason, "");
  EXPECT_EQ(ev[0].endpoint, kPod);
  EXPECT_EQ(ev[0].direction, Direction::Ingress);
  EXPECT_EQ(ev[0].src, A("10.1.0.20"));
  EXPECT_EQ(ev[0].srcPort, 40000);
  EXPECT_EQ(ev[0].dstPort, 80);
  EXPECT_EQ(ev[0].peerClass, 20u);
}

TEST_F(FlowEventsTest, AllowedFlowsAreNotReportedByDefaultButDropsAreAndCounted) {
  open(/*reportAllowed=*/false, /*audited=*/false);
  EXPECT_EQ(toPod(in("10.1.0.20", 40001, 0x02)), TC_ACT_OK);
  EXPECT_EQ(toPod(in("10.1.0.30", 40002, 0x02)), TC_ACT_SHOT);
  EXPECT_EQ(toPod(in("10.1.0.30", 40003, 0x02)), TC_ACT_SHOT);
  auto ev = events();
  ASSERT_EQ(ev.size(), 2u);
  for (const auto& e : ev) {
    EXPECT_EQ(e.verdict, FlowVerdict::Denied);
    EXPECT_EQ(e.reason, "policy");
    EXPECT_EQ(e.peerClass, 30u);
  }
  EXPECT_EQ(policyDrops(Direction::Ingress), 2u);
  EXPECT_EQ(policyDrops(Direction::Egress), 0u);
  // A drop for another reason is not a policy drop.
  PacketSpec spoofed;
  spoofed.src = "10.9.9.9";
  spoofed.dst = "10.1.0.20";
  RunResult r = testRun(backend_->fromPodProgramFd(), buildPacket(spoofed));
  EXPECT_EQ(r.verdict, TC_ACT_SHOT);
  ev = events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].reason, "spoofed");
  EXPECT_EQ(policyDrops(Direction::Egress), 0u);
  // Detach forgets the endpoint's counts: a later endpoint under this id starts from zero.
  ASSERT_TRUE(backend_->detach(kPodLink).ok());
  EXPECT_EQ(policyDrops(Direction::Ingress), 0u);
}

TEST_F(FlowEventsTest, AuditedEndpointReportsItsNewFlowsRegardless) {
  open(/*reportAllowed=*/false, /*audited=*/true);
  EXPECT_EQ(toPod(in("10.1.0.20", 40004, 0x02)), TC_ACT_OK);
  auto ev = events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].verdict, FlowVerdict::Allowed);
  auto eps = backend_->conntrackStats();
  ASSERT_TRUE(eps.ok());
  EXPECT_EQ(eps->entries, 1u);
}

TEST_F(FlowEventsTest, AuditedFlagFollowsIncrementalApply) {
  open(/*reportAllowed=*/false, /*audited=*/false);
  EXPECT_EQ(toPod(in("10.1.0.20", 40005, 0x02)), TC_ACT_OK);
  EXPECT_TRUE(events().empty());
  // The compiler's diff when an audit-mode policy starts selecting the endpoint.
  compiler::Diff d = compiler::computeDiff(state(false), state(true));
  d.revision = 2;
  ASSERT_EQ(d.endpoints.size(), 1u);
  ASSERT_TRUE(backend_->apply(d).ok());
  EXPECT_EQ(toPod(in("10.1.0.20", 40006, 0x02)), TC_ACT_OK);
  auto ev = events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].srcPort, 40006);
  // ... and stops when it no longer does.
  d = compiler::computeDiff(state(true), state(false));
  d.revision = 3;
  ASSERT_TRUE(backend_->apply(d).ok());
  EXPECT_EQ(toPod(in("10.1.0.20", 40007, 0x02)), TC_ACT_OK);
  EXPECT_TRUE(events().empty());
}

}  // namespace
}  // namespace sluice::e2e
