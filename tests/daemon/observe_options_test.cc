// The flow-log and admin-socket flags of sluice-policyd.
#include <gtest/gtest.h>

#include "policyd/daemon/options.h"

namespace sluice::daemon {
namespace {

std::vector<std::string> base(std::vector<std::string> extra) {
  std::vector<std::string> a = {"--node-name", "n1", "--source", "dir:/m", "--socket",
                                "/run/x/policyd.sock"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

TEST(ObserveOptionsTest, DefaultsAndValues) {
  auto o = parseArgs(base({}));
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_FALSE(o->flowLogAllowed);
  EXPECT_EQ(o->flowLogRate, 100);
  EXPECT_EQ(o->flowLogBurst, 200);
  EXPECT_EQ(o->adminSocket, "/run/x/admin.sock");  // beside --socket
  o = parseArgs(base({"--flow-log-allowed", "new", "--flow-log-rate=5", "--flow-log-burst",
                      "10", "--admin-socket", "/run/a.sock"}));
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_TRUE(o->flowLogAllowed);
  EXPECT_EQ(o->flowLogRate, 5);
  EXPECT_EQ(o->flowLogBurst, 10);
  EXPECT_EQ(o->adminSocket, "/run/a.sock");
  o = parseArgs(base({"--admin-socket", "none"}));
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->adminSocket.empty());
}

TEST(ObserveOptionsTest, BadValuesNameTheFlag) {
  for (auto args : {base({"--flow-log-allowed", "all"}), base({"--flow-log-rate", "0"}),
                    base({"--flow-log-rate", "x"}), base({"--flow-log-burst", "-1"}),
                    base({"--admin-socket", "/run/x/policyd.sock"})}) {
    auto o = parseArgs(args);
    ASSERT_FALSE(o.ok());
    EXPECT_NE(o.error().message.find("--"), std::string::npos) << o.error().message;
  }
}

}  // namespace
}  // namespace sluice::daemon
