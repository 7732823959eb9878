#include "policyd/daemon/registry.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/daemon/test_util.h"

namespace sluice::daemon {
namespace {

using sluice::testing::TempDir;

EndpointRecord record(compiler::EndpointId id, const std::string& pod) {
  EndpointRecord r;
  r.id = id;
  r.containerId = "ctr-" + pod;
  r.ifname = "eth0";
  r.netns = "/var/run/netns/" + pod;
  r.hostVeth = "sl" + pod;
  r.hostIfindex = 10 + static_cast<int>(id);
  r.ips = {IpAddr::parse("10.1.0." + std::to_string(id)).value(),
           IpAddr::parse("fd00::" + std::to_string(id)).value()};
  r.podNamespace = "default";
  r.podName = pod;
  return r;
}

TEST(RegistryTest, MissingFileIsAnEmptyRegistry) {
  TempDir dir;
  Registry reg(dir / "endpoints.json");
  auto report = reg.load();
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_FALSE(report->problem);
  EXPECT_TRUE(reg.endpoints().empty());
  EXPECT_EQ(reg.nextId(), 1u);
}

TEST(RegistryTest, SaveThenLoadRoundTripsEveryField) {
  TempDir dir;
  Registry reg(dir / "endpoints.json");
  ASSERT_TRUE(reg.load().ok());
  auto a = record(reg.allocateId(), "web");
  auto b = record(reg.allocateId(), "db");
  reg.upsert(a);
  reg.upsert(b);
  ASSERT_TRUE(reg.save().ok());

  Registry again(dir / "endpoints.json");
  auto report = again.load();
  ASSERT_TRUE(report.ok());
  EXPECT_FALSE(report->problem);
  ASSERT_EQ(again.endpoints().size(), 2u);
  EXPECT_EQ(again.endpoints().at(a.id), a);
  EXPECT_EQ(again.endpoints().at(b.id), b);
  EXPECT_EQ(again.nextId(), 3u);
  ASSERT_NE(again.find("ctr-db", "eth0"), nullptr);
  EXPECT_EQ(again.find("ctr-db", "eth0")->id, b.id);
  EXPECT_EQ(again.find("ctr-db", "eth1"), nullptr);
  // No temp files left behind by the atomic write.
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1);
}

TEST(RegistryTest, IdsAreNeverReusedAcrossRestarts) {
  TempDir dir;
  Registry reg(dir / "endpoints.json");
  ASSERT_TRUE(reg.load().ok());
  auto a = record(reg.allocateId(), "web");
  reg.upsert(a);
  auto b = record(reg.allocateId(), "db");
  reg.upsert(b);
  ASSERT_TRUE(reg.remove(b.id));
  ASSERT_TRUE(reg.save().ok());

  Registry again(dir / "endpoints.json");
  ASSERT_TRUE(again.load().ok());
  EXPECT_GT(again.allocateId(), b.id);
}

TEST(RegistryTest, CorruptFileStartsEmptyAndKeepsACopy) {
  TempDir dir;
  const std::string path = dir / "endpoints.json";
  sluice::testing::writeText(path, "{\"version\":1,\"nextId\":4,\"endpoints\":[{\"id\":");
  Registry reg(path);
  auto report = reg.load();
  ASSERT_TRUE(report.ok()) << report.error().message;
  ASSERT_TRUE(report->problem);
  EXPECT_NE(report->problem->message.find("not valid JSON"), std::string::npos)
      << report->problem->message;
  EXPECT_NE(report->problem->message.find(path), std::string::npos);
  EXPECT_TRUE(reg.endpoints().empty());
  ASSERT_FALSE(report->keptCopy.empty());
  EXPECT_EQ(sluice::testing::slurp(report->keptCopy),
            "{\"version\":1,\"nextId\":4,\"endpoints\":[{\"id\":");
}

TEST(RegistryTest, InvalidFieldsAreNamed) {
  Registry reg("/nonexistent/endpoints.json");
  auto st = reg.decode(R"({"version":1,"nextId":3,"endpoints":[
      {"id":1,"containerId":"c","ifname":"eth0","hostVeth":"v","ips":["10.0.0.1"]},
      {"id":2,"containerId":"c","ifname":"eth0","hostVeth":"v","ips":["10.0.0.300"]}]})");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("endpoints[1].ips[0]"), std::string::npos)
      << st.error().message;

  st = reg.decode(R"({"version":2,"nextId":1,"endpoints":[]})");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("version"), std::string::npos);

  st = reg.decode(R"({"version":1,"nextId":5,"endpoints":[
      {"id":1,"containerId":"c","ifname":"eth0","hostVeth":"v","ips":[]},
      {"id":1,"containerId":"d","ifname":"eth0","hostVeth":"w","ips":[]}]})");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("duplicate"), std::string::npos);
}

TEST(RegistryTest, NextIdIsAtLeastPastTheHighestId) {
  Registry reg("/nonexistent/endpoints.json");
  ASSERT_TRUE(reg.decode(R"({"version":1,"nextId":1,"endpoints":[
      {"id":9,"containerId":"c","ifname":"eth0","hostVeth":"v","ips":[]}]})")
                  .ok());
  EXPECT_EQ(reg.allocateId(), 10u);
}

}  // namespace
}  // namespace sluice::daemon
