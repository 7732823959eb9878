#include <gtest/gtest.h>

#include "cni/ipam/allocator.h"
#include "cni/ipam/config.h"
#include "cni/ipam/store.h"
#include "tests/cni/fake_fs.h"

namespace sluice::cni::ipam {
namespace {

using json = nlohmann::json;
using testing::FakeFs;

IpAddr ip(const char* s) { return IpAddr::parse(s).value(); }

Result<std::string> noFile(const std::string& p) { return makeError("no file " + p, ENOENT); }

IpamConfig config(const json& ipam, const ReadFile& rf = noFile) {
  auto c = parseIpamConfig(ipam, rf);
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return c.ok() ? *c : IpamConfig{};
}

json ranges(std::initializer_list<json> sets) {
  return json{{"type", "sluice"}, {"dataDir", "/d"}, {"ranges", json(sets)}};
}

struct Env {
  FakeFs fs;
  IpamConfig cfg;
  std::unique_ptr<Store> store;
  explicit Env(const json& ipam) : cfg(config(ipam)), store(makeDiskStore(fs, "/d", "net")) {}
  Result<std::vector<Allocation>> add(const std::string& id, std::vector<IpAddr> req = {}) {
    Allocator a(cfg, *store);
    return a.allocate(Attachment{id, "eth0"}, req);
  }
};

TEST(IpamConfigTest, DefaultsExcludeNetworkAndBroadcast) {
  auto c = config(ranges({json::array({{{"subnet", "10.0.0.0/30"}}})}));
  ASSERT_EQ(c.rangeSets.size(), 1u);
  EXPECT_EQ(c.rangeSets[0].ranges[0].start, ip("10.0.0.1"));
  EXPECT_EQ(c.rangeSets[0].ranges[0].end, ip("10.0.0.2"));
  auto c6 = config(ranges({json::array({{{"subnet", "fd00::/120"}}})}));
  EXPECT_EQ(c6.rangeSets[0].ranges[0].start, ip("fd00::1"));
  EXPECT_EQ(c6.rangeSets[0].ranges[0].end, ip("fd00::ff"));
}

TEST(IpamConfigTest, ErrorsNameTheField) {
  struct Case {
    json ipam;
    std::string field;
  };
  std::vector<Case> cases = {
      {ranges({json::array({{{"subnet", "10.0.0.0/33"}}})}), "ipam.ranges[0][0].subnet"},
      {ranges({json::array({{{"subnet", "10.0.0.0/24"}, {"rangeStart", "10.0.1.1"}}})}), "ipam.ranges[0][0].rangeStart"},
      {ranges({json::array({{{"subnet", "10.0.0.0/24"}, {"rangeStart", "10.0.0.9"}, {"rangeEnd", "10.0.0.5"}}})}), "rangeEnd"},
      {ranges({json::array({{{"subnet", "10.0.0.0/24"}, {"gateway", 7}}})}), "ipam.ranges[0][0].gateway"},
      {ranges({json::array({{{"subnet", "10.0.0.0/24"}}, {{"subnet", "fd00::/64"}}})}), "mixes address families"},
      {ranges({json::array({{{"subnet", "10.0.0.0/24"}}}), json::array({{{"subnet", "10.0.0.128/25"}}})}), "overlaps"},
      {json{{"type", "sluice"}, {"ranges", "x"}}, "ipam.ranges"},
      {json{{"type", "sluice"}}, "ipam.ranges"},
      {json{{"type", "sluice"}, {"dataDir", 3}, {"subnet", "10.0.0.0/24"}}, "ipam.dataDir"},
      {json{{"type", "sluice"}, {"usePodCidr", "yes"}}, "ipam.usePodCidr"},
  };
  for (const auto& c : cases) {
    auto r = parseIpamConfig(c.ipam, noFile);
    ASSERT_FALSE(r.ok()) << c.ipam.dump();
    EXPECT_NE(r.error().message.find(c.field), std::string::npos) << r.error().message;
  }
}

TEST(IpamConfigTest, UsePodCidrReadsTheDaemonsFile) {
  auto rf = [](const std::string& p) -> Result<std::string> {
    EXPECT_EQ(p, "/var/lib/sluice/podcidrs.json");
    return std::string(R"({"podCIDRs":["10.244.1.0/24","fd00:10:244:1::/64"]})");
  };
  auto c = config(json{{"type", "sluice"}, {"usePodCidr", true}}, rf);
  ASSERT_EQ(c.rangeSets.size(), 2u);
  EXPECT_EQ(c.rangeSets[0].ranges[0].subnet.toString(), "10.244.1.0/24");
  EXPECT_EQ(c.rangeSets[1].ranges[0].subnet.toString(), "fd00:10:244:1::/64");
  auto missing = parseIpamConfig(json{{"type", "sluice"}, {"usePodCidr", true}}, noFile);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(specCode(missing.error()), 11);  // try again once the daemon wrote it
}

TEST(AllocatorTest, RoundRobinDualStackWithoutScanning) {
  Env e(ranges({json::array({{{"subnet", "10.0.0.0/29"}}}), json::array({{{"subnet", "fd00::/125"}}})}));
  auto a = e.add("a");
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[0].address, ip("10.0.0.1"));
  EXPECT_EQ((*a)[1].address, ip("fd00::1"));
  auto b = e.add("b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)[0].address, ip("10.0.0.2"));
  // Release a: the next pod still moves forward (round-robin), not back to .1.
  ASSERT_TRUE(e.store->release(Attachment{"a", "eth0"}).ok());
  auto c = e.add("c");
  EXPECT_EQ((*c)[0].address, ip("10.0.0.3"));
  EXPECT_EQ(e.fs.lists, 0) << "ADD must not list the store directory";
}

TEST(AllocatorTest, AddIsIdempotentPerAttachment) {
  Env e(ranges({json::array({{{"subnet", "10.0.0.0/29"}}})}));
  auto first = e.add("a");
  auto again = e.add("a");
  ASSERT_TRUE(first.ok() && again.ok());
  EXPECT_EQ((*first)[0].address, (*again)[0].address);
  EXPECT_EQ(e.fs.addressFiles("/d/net"), 1u);
}

TEST(AllocatorTest, WrapsAndReportsExhaustion) {
  Env e(ranges({json::array({{{"subnet", "10.0.0.0/29"}, {"rangeStart", "10.0.0.2"}, {"rangeEnd", "10.0.0.4"},
                              {"gateway", "10.0.0.3"}}})}));
  // Usable: .2 and .4 (.3 is the gateway).
  EXPECT_EQ((*e.add("a"))[0].address, ip("10.0.0.2"));
  EXPECT_EQ((*e.add("b"))[0].address, ip("10.0.0.4"));
  auto c = e.add("c");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(specCode(c.error()), 101);
  EXPECT_NE(c.error().message.find("no free addresses"), std::string::npos);
  ASSERT_TRUE(e.store->release(Attachment{"a", "eth0"}).ok());
  EXPECT_EQ((*e.add("c"))[0].address, ip("10.0.0.2"));  // wrapped around
}

TEST(AllocatorTest, SeveralRangesInOneSet) {
  Env e(ranges({json::array({{{"subnet", "10.0.0.0/30"}}, {{"subnet", "10.1.0.0/30"}}})}));
  std::vector<IpAddr> got;
  for (auto id : {"a", "b", "c", "d"}) got.push_back((*e.add(id))[0].address);
  EXPECT_EQ(got, (std::vector<IpAddr>{ip("10.0.0.1"), ip("10.0.0.2"), ip("10.1.0.1"), ip("10.1.0.2")}));
  EXPECT_FALSE(e.add("e").ok());
}

TEST(AllocatorTest, RequestedAddresses) {
  Env e(ranges({json::array({{{"subnet", "10.0.0.0/24"}}}), json::array({{{"subnet", "fd00::/64"}}})}));
  auto a = e.add("a", {ip("10.0.0.77")});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)[0].address, ip("10.0.0.77"));
  EXPECT_EQ((*a)[1].address, ip("fd00::1"));
  auto taken = e.add("b", {ip("10.0.0.77")});
  ASSERT_FALSE(taken.ok());
  EXPECT_NE(taken.error().message.find("already reserved by a/eth0"), std::string::npos);
  auto outside = e.add("c", {ip("192.168.0.1")});
  ASSERT_FALSE(outside.ok());
  EXPECT_NE(outside.error().message.find("not inside any configured range"), std::string::npos);
}

TEST(DiskStoreTest, LayoutIsHostLocalCompatible) {
  Env e(ranges({json::array({{{"subnet", "10.0.0.0/24"}}})}));
  ASSERT_TRUE(e.add("ctr1").ok());
  EXPECT_EQ(e.fs.files["/d/net/10.0.0.1"], "ctr1\r\neth0");
  EXPECT_EQ(e.fs.files["/d/net/last_reserved_ip.0"], "10.0.0.1");
}

TEST(DiskStoreTest, FailedReservationKeepsNothing) {
  Env e(ranges({json::array({{{"subnet", "10.0.0.0/24"}}}), json::array({{{"subnet", "fd00::/64"}}})}));
  e.fs.failWrites.insert("/d/net/fd00::1");
  auto a = e.add("a");
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(e.fs.addressFiles("/d/net"), 0u);
  auto atts = e.store->attachments();
  ASSERT_TRUE(atts.ok());
  EXPECT_TRUE(atts->empty());
}

TEST(DiskStoreTest, ReleaseNeverFreesSomeoneElsesAddress) {
  Env e(ranges({json::array({{{"subnet", "10.0.0.0/24"}}})}));
  ASSERT_TRUE(e.add("a").ok());
  // Simulate a crash-and-reuse: a's file now names b.
  e.fs.files["/d/net/10.0.0.1"] = "b\r\neth0";
  ASSERT_TRUE(e.store->release(Attachment{"a", "eth0"}).ok());
  EXPECT_EQ(e.fs.files.count("/d/net/10.0.0.1"), 1u);
  ASSERT_TRUE(e.store->release(Attachment{"a", "eth0"}).ok()) << "release is idempotent";
}

TEST(DiskStoreTest, GcKeepsOnlyValidAttachmentsAndOrphans) {
  Env e(ranges({json::array({{{"subnet", "10.0.0.0/24"}}})}));
  for (auto id : {"a", "b", "c"}) ASSERT_TRUE(e.add(id).ok());
  e.fs.files["/d/net/10.0.0.99"] = "";  // torn file from a crash
  ASSERT_TRUE(e.store->releaseAllExcept({Attachment{"b", "eth0"}}).ok());
  auto atts = e.store->attachments();
  ASSERT_TRUE(atts.ok());
  EXPECT_EQ(*atts, (std::vector<Attachment>{{"b", "eth0"}}));
  EXPECT_EQ(e.fs.addressFiles("/d/net"), 1u);
}

}  // namespace
}  // namespace sluice::cni::ipam
