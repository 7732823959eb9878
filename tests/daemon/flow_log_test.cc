#include "policyd/daemon/flow_log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace sluice::daemon {
namespace {

TEST(FlowLogTest, OneJsonObjectPerDropNamingThePod) {
  datapath::FlowEvent e;
  e.wallNs = 1'700'000'000'123'456'789LL;
  e.endpoint = 3;
  e.ifindex = 12;
  e.direction = compiler::Direction::Ingress;
  e.src = IpAddr::parse("10.1.0.9").value();
  e.dst = IpAddr::parse("10.1.0.5").value();
  e.srcPort = 40000;
  e.dstPort = 80;
  e.protocol = 6;
  e.peerClass = 17;
  e.reason = "policy";
  std::string line = flowLogLine(e, "default/web");
  EXPECT_EQ(line.find('\n'), std::string::npos);
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["time"], "2023-11-14T22:13:20.123456789Z");
  EXPECT_EQ(j["endpoint"], 3);
  EXPECT_EQ(j["pod"], "default/web");
  EXPECT_EQ(j["direction"], "ingress");
  EXPECT_EQ(j["src"], "10.1.0.9");
  EXPECT_EQ(j["dst"], "10.1.0.5");
  EXPECT_EQ(j["srcPort"], 40000);
  EXPECT_EQ(j["dstPort"], 80);
  EXPECT_EQ(j["protocol"], 6);
  EXPECT_EQ(j["peerClass"], 17);
  EXPECT_EQ(j["verdict"], "denied");
  EXPECT_EQ(j["reason"], "policy");
}

}  // namespace
}  // namespace sluice::daemon
