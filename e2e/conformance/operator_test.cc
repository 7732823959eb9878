// The guarantees operators rely on, tested with real packets on a simulated cluster:
// - a pod created into a default-deny namespace is never reachable, from its first packet;
// - enforcement does not lapse while the daemon restarts (no wrong verdict in either direction);
// - a deny written while a connection is open cuts it under --established=recheck, and lets it
//   finish under keep;
// - conntrack lets replies of allowed connections pass and nothing else.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "e2e/harness/cluster.h"
#include "e2e/harness/text_log.h"

namespace sluice::e2e {
namespace {

using namespace std::chrono_literals;

const std::vector<uint16_t> kTcp = {80, 81};
const std::vector<uint16_t> kUdp = {80};

// Lines of a server log for traffic that came in over the pod's interface; the harness's own
// readiness check arrives over the pod's loopback and does not count.
int countRemote(const std::string& log) {
  int n = 0;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    bool loopback = line.find("127.0.0.1") != std::string::npos || line.ends_with(" ::1");
    n += line.find(" from ") != std::string::npos && !loopback;
  }
  return n;
}

std::unique_ptr<SimCluster> makeCluster(const std::string& established, int nodes) {
  ClusterOptions opts;
  opts.binaryDir = SLUICE_BINARY_DIR;
  opts.nodes = nodes;
  opts.established = established;
  auto c = SimCluster::create(opts);
  EXPECT_TRUE(c.ok()) << c.error().message;
  return c.ok() ? std::move(c).value() : nullptr;
}

PodSpec podSpec(const std::string& ns, const std::string& name, int node,
                std::map<std::string, std::string> labels = {}) {
  if (labels.empty()) labels = {{"app", name}};
  return PodSpec{ns, name, node, labels, {{"http", 80, "TCP"}, {"alt", 81, "TCP"}}, ""};
}

const char* kNamespaces = R"(
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: open}}
- {apiVersion: v1, kind: Namespace, metadata: {name: locked}}
- {apiVersion: v1, kind: Namespace, metadata: {name: r}}
)";

// r/server accepts only r/allowed; locked is default deny both ways.
const char* kPolicies = R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: locked}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server, namespace: r}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: [{from: [{podSelector: {matchLabels: {app: allowed}}}]}]
)";

const char* kPoliciesDenyAll = R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: locked}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server, namespace: r}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
)";

class OperatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, eBPF)";
  }

  // open/client, r/server, r/allowed, r/denied; servers on node 1, clients on node 0 so the
  // traffic crosses nodes.
  void populate(SimCluster& c) {
    ASSERT_TRUE(c.writeManifest("namespaces.yaml", kNamespaces).ok());
    ASSERT_TRUE(c.writeManifest("policies.yaml", kPolicies).ok());
    for (auto spec : {podSpec("open", "client", 0), podSpec("r", "server", 1),
                      podSpec("r", "allowed", 0), podSpec("r", "denied", 0)}) {
      auto p = c.addPod(spec, kTcp, kUdp);
      ASSERT_TRUE(p.ok()) << p.error().message;
    }
    auto st = c.waitSynced();
    ASSERT_TRUE(st.ok()) << st.error().message;
  }

  std::string probe(SimCluster& c, const std::string& from, const std::string& to,
                    uint16_t port = 80, const std::string& proto = "TCP") {
    const PodInfo* src = c.pod(from);
    const PodInfo* dst = c.pod(to);
    EXPECT_TRUE(src && dst);
    if (!src || !dst) return "missing";
    auto r = c.probeFromNetns("/run/netns/" + src->netnsName, dst->ips[0], port, proto, 500);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : "error";
  }
};

TEST_F(OperatorTest, PodInDefaultDenyNamespaceIsNeverReachable) {
  auto c = makeCluster("recheck", 2);
  ASSERT_TRUE(c);
  populate(*c);
  // Positive control: the spray really reaches a pod that is allowed to receive it.
  std::string controlLog = (c->runDir() / "control.log").string();
  auto control = c->addPod(PodSpec{"open", "control", 0, {{"app", "control"}}, {}, controlLog},
                           kTcp, kUdp);
  ASSERT_TRUE(control.ok()) << control.error().message;
  ASSERT_TRUE(c->waitSynced().ok());

  // The sprayer hits every address of node 0's pod range while the new pod is being created,
  // so whatever address IPAM picks is under fire from before ADD until after it returns.
  auto spray = c->spawnProbe("open/client",
                             {"spray", "--cidr", SimCluster::podCidrV4(0), "--port", "80",
                              "--duration-ms", "4000"},
                             (c->runDir() / "spray.out").string());
  ASSERT_TRUE(spray.ok()) << spray.error().message;
  std::this_thread::sleep_for(300ms);
  std::string newLog = (c->runDir() / "new.log").string();
  auto fresh = c->addPod(PodSpec{"locked", "fresh", 0, {{"app", "fresh"}}, {}, newLog}, kTcp, kUdp);
  ASSERT_TRUE(fresh.ok()) << fresh.error().message;
  // Right after ADD returned: not reachable.
  EXPECT_EQ(probe(*c, "open/client", "locked/fresh"), "timeout");
  EXPECT_EQ(probe(*c, "open/client", "locked/fresh", 80, "UDP"), "timeout");
  // Its egress is denied too.
  EXPECT_EQ(probe(*c, "locked/fresh", "open/client"), "timeout");
  // Let the spray run on for a while after ADD.
  for (int i = 0; i < 500 && spray->running(); ++i) std::this_thread::sleep_for(10ms);
  spray->stop();
  EXPECT_EQ(countRemote(readLog(newLog)), 0) << readLog(newLog);
  EXPECT_GT(countRemote(readLog(controlLog)), 0) << "the spray reached nothing";
}

TEST_F(OperatorTest, DaemonRestartNeverGivesAWrongVerdict) {
  auto c = makeCluster("recheck", 2);
  ASSERT_TRUE(c);
  populate(*c);
  ASSERT_EQ(probe(*c, "r/allowed", "r/server"), "ok");
  ASSERT_EQ(probe(*c, "r/denied", "r/server"), "timeout");
  // An open connection held across the restart.
  const PodInfo* server = c->pod("r/server");
  std::string holdOut = (c->runDir() / "hold.out").string();
  auto hold = c->spawnProbe("r/allowed",
                            {"hold", "--interval-ms", "50", "--count", "80", "--timeout-ms", "1000",
                             "tcp:" + server->ips[0].toString() + ":80"},
                            holdOut);
  ASSERT_TRUE(hold.ok());
  ASSERT_TRUE(c->stopDaemon(1).ok());
  // CNI STATUS tells the runtime not to schedule pods here while the daemon is down.
  auto down = c->cni("STATUS", *server);
  ASSERT_TRUE(down.ok());
  EXPECT_NE(down->exitCode, 0);
  EXPECT_NE(down->out.find("\"code\":50"), std::string::npos) << down->out;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(probe(*c, "r/allowed", "r/server"), "ok") << "daemon down, round " << i;
    EXPECT_EQ(probe(*c, "r/denied", "r/server"), "timeout") << "daemon down, round " << i;
  }
  ASSERT_TRUE(c->startDaemon(1).ok());
  auto up = c->cni("STATUS", *server);
  ASSERT_TRUE(up.ok());
  EXPECT_EQ(up->exitCode, 0) << up->out;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(probe(*c, "r/allowed", "r/server"), "ok") << "after restart, round " << i;
    EXPECT_EQ(probe(*c, "r/denied", "r/server"), "timeout") << "after restart, round " << i;
  }
  for (int i = 0; i < 1000 && hold->running(); ++i) std::this_thread::sleep_for(10ms);
  std::string out = readLog(holdOut);
  EXPECT_EQ(countLines(out, "connect ok"), 1) << out;
  EXPECT_EQ(countLines(out, " fail"), 0) << out;
  EXPECT_EQ(countLines(out, " ok"), 81) << out;
}

void holdThenDeny(SimCluster& c, bool expectCut) {
  const PodInfo* server = c.pod("r/server");
  std::string holdOut = (c.runDir() / "hold.out").string();
  auto hold = c.spawnProbe("r/allowed",
                           {"hold", "--interval-ms", "50", "--count", "60", "--timeout-ms", "300",
                            "tcp:" + server->ips[0].toString() + ":80"},
                           holdOut);
  ASSERT_TRUE(hold.ok());
  // Let the connection establish and exchange a few messages first.
  for (int i = 0; i < 200 && countLines(readLog(holdOut), " ok") < 5; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_GE(countLines(readLog(holdOut), " ok"), 5) << readLog(holdOut);
  ASSERT_TRUE(c.writeManifest("policies.yaml", kPoliciesDenyAll).ok());
  ASSERT_TRUE(c.waitSynced().ok());
  for (int i = 0; i < 1500 && hold->running(); ++i) std::this_thread::sleep_for(10ms);
  std::string out = readLog(holdOut);
  if (expectCut) {
    EXPECT_GT(countLines(out, " fail"), 0) << "recheck must cut the open connection:\n" << out;
  } else {
    EXPECT_EQ(countLines(out, " fail"), 0) << "keep must let the connection finish:\n" << out;
  }
  // New connections are denied in both modes.
  auto r = c.probeFromNetns("/run/netns/" + c.pod("r/allowed")->netnsName, server->ips[0], 80,
                            "TCP", 500);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "timeout");
}

TEST_F(OperatorTest, RecheckCutsAnOpenConnectionWhenDenyIsWritten) {
  auto c = makeCluster("recheck", 2);
  ASSERT_TRUE(c);
  populate(*c);
  holdThenDeny(*c, /*expectCut=*/true);
}

TEST_F(OperatorTest, KeepLetsAnOpenConnectionFinish) {
  auto c = makeCluster("keep", 2);
  ASSERT_TRUE(c);
  populate(*c);
  holdThenDeny(*c, /*expectCut=*/false);
}

TEST_F(OperatorTest, ConntrackLetsRepliesPassAndNothingElse) {
  auto c = makeCluster("recheck", 2);
  ASSERT_TRUE(c);
  populate(*c);
  // r/server is isolated for ingress only: its own connections out work (their replies come
  // back through its ingress filter) ...
  EXPECT_EQ(probe(*c, "r/server", "r/denied"), "ok");
  EXPECT_EQ(probe(*c, "r/server", "r/denied", 80, "UDP"), "ok");
  // ... while nothing that is not a reply gets in, on any port or protocol.
  EXPECT_EQ(probe(*c, "r/denied", "r/server"), "timeout");
  EXPECT_EQ(probe(*c, "r/denied", "r/server", 81), "timeout");
  EXPECT_EQ(probe(*c, "r/denied", "r/server", 80, "UDP"), "timeout");
  // Kubelet probes: the node's own addresses always reach local pods.
  const PodInfo* server = c->pod("r/server");
  auto fromNode = c->probeFromNetns(c->nodeNetns(1), server->ips[0], 80, "TCP", 500);
  ASSERT_TRUE(fromNode.ok());
  EXPECT_EQ(*fromNode, "ok");
}

}  // namespace
}  // namespace sluice::e2e
