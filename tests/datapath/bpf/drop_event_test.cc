#include "policyd/datapath/bpf/drop_event.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string_view>

namespace sluice::datapath::bpf {
namespace {

TEST(DropEventTest, DecodesAnIpv4PolicyDrop) {
  sluice_drop_event raw{};
  raw.timestamp_ns = 42;
  raw.endpoint = 3;
  raw.ifindex = 9;
  const uint8_t src[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 0, 5};
  const uint8_t dst[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 0, 9};
  std::memcpy(raw.src, src, 16);
  std::memcpy(raw.dst, dst, 16);
  raw.sport = htons(40000);
  raw.dport = htons(80);
  raw.protocol = 6;
  raw.direction = SLUICE_DIR_EGRESS;
  raw.reason = SLUICE_DROP_POLICY;
  raw.family = 4;
  raw.peer_class = 17;
  const DropEvent e = decodeDropEvent(raw);
  EXPECT_EQ(e.src.toString(), "10.1.0.5");
  EXPECT_EQ(e.dst.toString(), "10.1.0.9");
  EXPECT_EQ(e.dstPort, 80);
  EXPECT_EQ(e.direction, compiler::Direction::Egress);
  EXPECT_EQ(e.reason, DropReason::Policy);
  EXPECT_EQ(toString(e),
            "drop endpoint=3 ifindex=9 direction=egress 10.1.0.5:40000 -> 10.1.0.9:80 proto=6 "
            "class=17 reason=policy");
}

TEST(DropEventTest, DecodesIpv6AndUnknownReasons) {
  sluice_drop_event raw{};
  raw.family = 6;
  raw.src[0] = 0xfd;
  raw.src[15] = 1;
  raw.reason = 200;
  const DropEvent e = decodeDropEvent(raw);
  EXPECT_EQ(e.src.toString(), "fd00::1");
  EXPECT_EQ(e.reason, DropReason::None);
  EXPECT_EQ(dropReasonName(DropReason::FragmentWithoutFirst), "fragment-without-first");
}

// The event's family decides, not the address bytes: an IPv6 packet between v4-mapped addresses
// is reported as IPv6, as the datapath classified it.
TEST(DropEventTest, V4MappedIpv6StaysIpv6) {
  sluice_drop_event raw{};
  const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 77, 5};
  std::memcpy(raw.src, mapped, 16);
  std::memcpy(raw.dst, mapped, 16);
  raw.family = 6;
  EXPECT_EQ(decodeDropEvent(raw).src.toString(), "::ffff:192.168.77.5");
  EXPECT_FALSE(decodeDropEvent(raw).src.isV4());
  raw.family = 4;
  EXPECT_EQ(decodeDropEvent(raw).src.toString(), "192.168.77.5");
}

TEST(DropEventTest, EveryReasonHasADistinctStableName) {
  EXPECT_EQ(dropReasonName(DropReason::Spoofed), "spoofed");
  EXPECT_EQ(dropReasonName(DropReason::IcmpUnrelated), "icmp-unrelated");
  EXPECT_EQ(dropReasonName(DropReason::NdInvalid), "nd-invalid");
  EXPECT_EQ(dropReasonName(DropReason::ConntrackFull), "ct-full");
  std::set<std::string_view> names;
  for (int r = 0; r < kDropReasonCount; ++r) {
    const std::string_view name = dropReasonName(static_cast<DropReason>(r));
    EXPECT_NE(name, "unknown") << "reason " << r;
    EXPECT_TRUE(names.insert(name).second) << "duplicate name " << name;
  }
  const sluice_drop_event raw{.reason = SLUICE_DROP_SPOOFED};
  EXPECT_EQ(decodeDropEvent(raw).reason, DropReason::Spoofed);
}

}  // namespace
}  // namespace sluice::datapath::bpf
