#include "common/ip.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(IpAddrTest, ParsesV4AndV6) {
  auto a = IpAddr::parse("10.1.2.3");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->isV4());
  EXPECT_EQ(a->v4HostOrder(), 0x0a010203u);
  EXPECT_EQ(a->toString(), "10.1.2.3");
  auto b = IpAddr::parse("fd00::1");
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->isV4());
  EXPECT_EQ(b->toString(), "fd00::1");
}

TEST(IpAddrTest, RejectsGarbage) {
  EXPECT_FALSE(IpAddr::parse("").ok());
  EXPECT_FALSE(IpAddr::parse("10.1.2").ok());
  EXPECT_FALSE(IpAddr::parse("10.1.2.256").ok());
  EXPECT_FALSE(IpAddr::parse("fd00:::1").ok());
  EXPECT_FALSE(IpAddr::parse(std::string(100, '1')).ok());
}

TEST(IpAddrTest, MappedFormPutsV4InLastFourBytes) {
  auto m = IpAddr::parse("1.2.3.4")->toMapped();
  EXPECT_EQ(m[10], 0xff);
  EXPECT_EQ(m[11], 0xff);
  EXPECT_EQ(m[12], 1);
  EXPECT_EQ(m[15], 4);
}

TEST(PrefixTest, StrictParseRejectsHostBits) {
  auto p = Prefix::parse("10.0.0.1/8");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.error().message.find("host bits"), std::string::npos);
  auto q = Prefix::parse("10.0.0.1/8", /*allowHostBits=*/true);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->toString(), "10.0.0.0/8");
}

TEST(PrefixTest, RejectsBadLengths) {
  EXPECT_FALSE(Prefix::parse("10.0.0.0/33").ok());
  EXPECT_FALSE(Prefix::parse("10.0.0.0/").ok());
  EXPECT_FALSE(Prefix::parse("10.0.0.0/-1").ok());
  EXPECT_FALSE(Prefix::parse("10.0.0.0/8x").ok());
  EXPECT_FALSE(Prefix::parse("10.0.0.0").ok());
  EXPECT_FALSE(Prefix::parse("fd00::/129").ok());
  EXPECT_TRUE(Prefix::parse("fd00::/128").ok());
}

TEST(PrefixTest, ContainsRespectsFamilyAndLength) {
  auto p = *Prefix::parse("10.128.0.0/9");
  EXPECT_TRUE(p.contains(*IpAddr::parse("10.200.1.1")));
  EXPECT_FALSE(p.contains(*IpAddr::parse("10.1.1.1")));
  EXPECT_FALSE(p.contains(*IpAddr::parse("::ffff:10.200.1.1")));
  auto all = *Prefix::parse("0.0.0.0/0");
  EXPECT_TRUE(all.contains(*IpAddr::parse("1.2.3.4")));
  EXPECT_FALSE(all.contains(*IpAddr::parse("fd00::1")));
  auto v6 = *Prefix::parse("fd00:10::/33");
  EXPECT_TRUE(v6.contains(*IpAddr::parse("fd00:10:7fff::1")));
  EXPECT_FALSE(v6.contains(*IpAddr::parse("fd00:10:8000::1")));
  EXPECT_TRUE(p.contains(*Prefix::parse("10.129.0.0/16")));
  EXPECT_FALSE(p.contains(*Prefix::parse("10.0.0.0/8")));
}

}  // namespace
}  // namespace sluice
