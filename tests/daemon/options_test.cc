#include "policyd/daemon/options.h"

#include <gtest/gtest.h>

namespace sluice::daemon {
namespace {

TEST(DaemonOptionsTest, ParsesTheDesignFlagsInBothForms) {
  auto o = parseArgs({"--node-name",
                      "n1",
                      "--source=dir:/m",
                      "--datapath",
                      "bpf",
                      "--socket",
                      "/tmp/s.sock",
                      "--state-dir=/tmp/st",
                      "--bpf-pin-dir",
                      "/sys/fs/bpf/x",
                      "--established",
                      "keep",
                      "--metrics-addr",
                      "127.0.0.1:9090",
                      "--flow-log",
                      "-",
                      "--pod-cidr",
                      "10.1.0.0/24",
                      "--pod-cidr=fd00:1::/64",
                      "--log-level",
                      "debug",
                      "--pod-wait-ms",
                      "500"});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->nodeName, "n1");
  EXPECT_EQ(o->sourceDir, "/m");
  EXPECT_EQ(o->socketPath, "/tmp/s.sock");
  EXPECT_EQ(o->stateDir, "/tmp/st");
  EXPECT_EQ(o->bpfPinDir, "/sys/fs/bpf/x");
  EXPECT_EQ(o->established, datapath::EstablishedMode::Keep);
  EXPECT_EQ(o->metricsAddr, "127.0.0.1:9090");
  EXPECT_EQ(o->flowLog, "-");
  EXPECT_EQ(o->podCidrs, (std::vector<std::string>{"10.1.0.0/24", "fd00:1::/64"}));
  EXPECT_EQ(o->podWait, std::chrono::milliseconds(500));
}

TEST(DaemonOptionsTest, Defaults) {
  auto o = parseArgs({"--node-name", "n1", "--source", "kube"});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->datapath, "bpf");
  EXPECT_EQ(o->socketPath, "/run/sluice/policyd.sock");
  EXPECT_EQ(o->stateDir, "/var/lib/sluice");
  EXPECT_EQ(o->bpfPinDir, "/sys/fs/bpf/sluice");
  EXPECT_EQ(o->established, datapath::EstablishedMode::Recheck);
  EXPECT_TRUE(o->metricsAddr.empty());
  EXPECT_TRUE(o->flowLog.empty());
}

TEST(DaemonOptionsTest, KubeconfigAndContext) {
  auto o = parseArgs(
      {"--node-name", "n1", "--source", "kube", "--kubeconfig", "/k/config", "--context=prod"});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->kubeconfig, "/k/config");
  EXPECT_EQ(o->context, "prod");
}

TEST(DaemonOptionsTest, UninstallNeedsOnlyTheDatapath) {
  auto o = parseArgs({"--uninstall", "--datapath", "nft"});
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_TRUE(o->uninstall);
  EXPECT_EQ(o->datapath, "nft");
  auto b = parseArgs({"--uninstall", "--bpf-pin-dir=/sys/fs/bpf/x"});
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(b->datapath, "bpf");
  EXPECT_EQ(b->bpfPinDir, "/sys/fs/bpf/x");
  auto bad = parseArgs({"--uninstall", "--datapath", "iptables"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("--datapath"), std::string::npos);
  EXPECT_FALSE(parseArgs({"--node-name", "n", "--source", "kube"})->uninstall);
}

TEST(DaemonOptionsTest, BadFlagsNameTheProblem) {
  struct Case {
    std::vector<std::string> args;
    std::string want;
  };
  for (const auto& c : std::vector<Case>{
           {{"--source", "dir:/m"}, "--node-name"},
           {{"--node-name", "n"}, "--source"},
           {{"--node-name", "n", "--source", "file:/m"}, "--source"},
           {{"--node-name", "n", "--source", "dir:"}, "--source"},
           {{"--node-name", "n", "--source", "kube", "--datapath", "iptables"}, "--datapath"},
           {{"--node-name", "n", "--source", "kube", "--established", "maybe"}, "--established"},
           {{"--node-name", "n", "--source", "kube", "--metrics-addr", "9090"}, "--metrics-addr"},
           {{"--node-name", "n", "--source", "kube", "--pod-cidr", "10.1.0.1/24"}, "--pod-cidr"},
           {{"--node-name", "n", "--source", "kube", "--log-level", "loud"}, "--log-level"},
           {{"--node-name", "n", "--source", "kube", "--frobnicate"}, "unknown flag --frobnicate"},
           {{"--node-name", "n", "--source", "kube", "stray"}, "unexpected argument"},
           {{"--node-name"}, "needs a value"},
           {{"--node-name", "n", "--source", "dir:/m", "--context", "c"}, "need --source kube"},
       }) {
    auto o = parseArgs(c.args);
    ASSERT_FALSE(o.ok()) << c.want;
    EXPECT_NE(o.error().message.find(c.want), std::string::npos) << o.error().message;
  }
}

}  // namespace
}  // namespace sluice::daemon
