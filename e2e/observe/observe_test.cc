// Observability on a simulated cluster with real packets (issue 11): a dropped flow shows up in
// the flow log and in `sluicectl flows` naming the policy, per-policy counters move by exactly
// the packets sent, SIGHUP rotates the flow log, the per-endpoint rate limit suppresses and
// counts, and `sluicectl explain --node` agrees with the engine.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/netns.h"
#include "common/unique_fd.h"
#include "e2e/harness/cluster.h"
#include "e2e/harness/text_log.h"

namespace sluice::e2e {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

const std::vector<uint16_t> kTcp = {80};
const std::vector<uint16_t> kUdp = {80};

const char* kManifests = R"(
apiVersion: v1
kind: Namespace
metadata: {name: obs}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server, namespace: obs}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: [{from: [{podSelector: {matchLabels: {app: allowed}}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: sprayer-deny, namespace: obs}
spec:
  podSelector: {matchLabels: {app: sprayer}}
  policyTypes: [Egress]
)";

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

class ObserveTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    ClusterOptions opts;
    opts.binaryDir = SLUICE_BINARY_DIR;
    opts.nodes = 1;
    auto c = SimCluster::create(opts);
    ASSERT_TRUE(c.ok()) << c.error().message;
    cluster_ = std::move(c).value().release();
    ASSERT_TRUE(cluster_->writeManifest("observe.yaml", kManifests).ok());
    for (const char* name : {"server", "allowed", "denied", "sprayer"}) {
      PodSpec spec{"obs", name, 0, {{"app", name}}, {{"http", 80, "TCP"}}, ""};
      auto p = cluster_->addPod(spec, kTcp, kUdp);
      ASSERT_TRUE(p.ok()) << p.error().message;
    }
    ASSERT_TRUE(cluster_->waitSynced().ok());
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, eBPF)";
    ASSERT_NE(cluster_, nullptr);
  }

  SimCluster& c() { return *cluster_; }
  std::filesystem::path nodeDir() const { return cluster_->socketPath(0).parent_path(); }
  std::filesystem::path flowLog() const { return nodeDir() / "flows.jsonl"; }
  std::string adminSocket() const { return (nodeDir() / "admin.sock").string(); }

  std::string probe(const std::string& from, const std::string& to, const std::string& proto,
                    int timeoutMs) {
    auto r = c().probeFromNetns("/run/netns/" + c().pod(from)->netnsName, c().pod(to)->ips[0], 80,
                                proto, timeoutMs);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : "";
  }

  // GET /metrics from inside the node's namespace (the daemon listens on its 127.0.0.1).
  std::string metrics() {
    auto guard = NetnsGuard::enter(c().nodeNetns(0));
    EXPECT_TRUE(guard.ok());
    if (!guard.ok()) return "";
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(9090);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ADD_FAILURE() << "connect metrics: " << std::strerror(errno);
      return "";
    }
    std::string req = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    (void)!::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL);
    std::string out;
    char buf[65536];
    for (int i = 0; i < 1000; ++i) {
      ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  // The value of one series (exact name and labels), 0 when absent.
  double metric(const std::string& series) {
    for (const auto& l : lines(metrics())) {
      if (l.starts_with(series + " ")) return std::stod(l.substr(series.size() + 1));
    }
    return 0;
  }

  RunResult sluicectl(const std::vector<std::string>& args) {
    Command cmd;
    cmd.argv = {c().binary("policyd/ctl/sluicectl").string()};
    cmd.argv.insert(cmd.argv.end(), args.begin(), args.end());
    auto r = run(cmd, 30s);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : RunResult{};
  }

  // The flow-log lines (as JSON) matching `pred`, waiting up to 5 s for at least `min`.
  std::vector<json> waitFlows(const std::filesystem::path& file, size_t min,
                              const std::function<bool(const json&)>& pred) {
    std::vector<json> found;
    for (int i = 0; i < 50; ++i) {
      found.clear();
      for (const auto& l : lines(readLog(file))) {
        auto j = json::parse(l, nullptr, false);
        if (!j.is_discarded() && pred(j)) found.push_back(j);
      }
      if (found.size() >= min) break;
      std::this_thread::sleep_for(100ms);
    }
    return found;
  }

  static inline SimCluster* cluster_ = nullptr;
};

const std::string kDenied =
    R"(sluice_policy_denied_packets_total{namespace="obs",policy="server",direction="ingress"})";
const std::string kAllowed =
    R"(sluice_policy_allowed_packets_total{namespace="obs",policy="server",direction="ingress"})";

TEST_F(ObserveTest, DroppedFlowIsLoggedNamingThePolicyAndCountersMatchPacketsSent) {
  const double denied0 = metric(kDenied);
  const double allowed0 = metric(kAllowed);
  // UDP probes resend after 200 ms; a 150 ms timeout sends exactly one datagram each.
  constexpr int kDeniedPackets = 5, kAllowedPackets = 4;
  for (int i = 0; i < kDeniedPackets; ++i) {
    EXPECT_EQ(probe("obs/denied", "obs/server", "UDP", 150), "timeout");
  }
  for (int i = 0; i < kAllowedPackets; ++i) {
    EXPECT_EQ(probe("obs/allowed", "obs/server", "UDP", 150), "ok");
  }

  // The datapath counts per rule and per endpoint; the daemon names the policy.
  double denied = 0, allowed = 0;
  for (int i = 0; i < 50; ++i) {
    denied = metric(kDenied) - denied0;
    allowed = metric(kAllowed) - allowed0;
    if (denied >= kDeniedPackets && allowed >= 2 * kAllowedPackets) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(denied, kDeniedPackets);
  // A rule is credited with every packet of the flows it admitted: each probe's request and the
  // server's reply.
  EXPECT_EQ(allowed, 2 * kAllowedPackets);

  const std::string why = "denied: isolated for ingress by obs/server, whose rules do not match";
  auto logged = waitFlows(flowLog(), kDeniedPackets, [&](const json& j) {
    return j.value("srcPod", "") == "obs/denied" && j.value("dstPod", "") == "obs/server";
  });
  ASSERT_EQ(logged.size(), static_cast<size_t>(kDeniedPackets)) << readLog(flowLog());
  // Excerpts for the run log (what an operator sees).
  std::cout << "flow log excerpt:\n" << logged.front().dump() << "\nmetrics excerpt:\n";
  for (const auto& l : lines(metrics())) {
    if (l.starts_with("sluice_policy_") || l.starts_with("sluice_flow_log_") ||
        l.starts_with("sluice_conntrack_") || l.starts_with("sluice_dropped_packets_total")) {
      std::cout << l << "\n";
    }
  }
  for (const auto& j : logged) {
    EXPECT_EQ(j["verdict"], "denied");
    EXPECT_EQ(j["reason"], "policy");
    EXPECT_EQ(j["direction"], "ingress");
    EXPECT_EQ(j["pod"], "obs/server");
    EXPECT_EQ(j["node"], "n0") << j.dump();
    EXPECT_EQ(j["protocol"], 17);
    EXPECT_EQ(j["dstPort"], 80);
    EXPECT_EQ(j["policies"], json::array({"obs/server"}));
    EXPECT_EQ(j["why"], why);
    EXPECT_FALSE(j.contains("engineMismatch"));
  }

  // The same flows from the daemon's ring, through the admin socket.
  auto r = sluicectl(
      {"flows", "--denied", "--pod", "obs/denied", "-o", "json", "--admin-socket", adminSocket()});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  size_t named = 0;
  for (const auto& l : lines(r.out)) {
    auto j = json::parse(l);
    named += j.value("why", "") == why && j.value("srcPod", "") == "obs/denied";
  }
  EXPECT_EQ(named, static_cast<size_t>(kDeniedPackets)) << r.out;
  r = sluicectl({"flows", "--denied", "--pod", "obs/denied", "--admin-socket", adminSocket()});
  EXPECT_NE(r.out.find("DENIED  ingress"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(why), std::string::npos) << r.out;

  r = sluicectl({"status", "--admin-socket", adminSocket()});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_NE(r.out.find("sync:        synced"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("endpoints:   4"), std::string::npos) << r.out;

  // The realized allow set of obs/server names the rule and counts the packets it admitted.
  r = sluicectl({"policy", "obs/server", "-o", "json", "--admin-socket", adminSocket()});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  auto p = json::parse(r.out);
  EXPECT_EQ(p["ingressIsolated"], true);
  uint64_t credited = 0;
  for (const auto& e : p["entries"]) {
    EXPECT_EQ(e["policy"], "obs/server");
    EXPECT_EQ(e["ruleField"], "spec.ingress[0]");
    credited += e.value("packets", uint64_t{0});
  }
  EXPECT_GE(credited, static_cast<uint64_t>(2 * kAllowedPackets));
  r = sluicectl({"endpoints", "--admin-socket", adminSocket()});
  EXPECT_NE(r.out.find("obs/sprayer"), std::string::npos) << r.out;
}

TEST_F(ObserveTest, SighupReopensTheFlowLogForRotation) {
  // The daemon of node 0: the process whose command line names its endpoint socket.
  pid_t pid = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string cmdline = readLog(e.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find("sluice-policyd") != std::string::npos &&
        cmdline.find(c().socketPath(0).string()) != std::string::npos) {
      pid = std::stoi(e.path().filename().string());
    }
  }
  ASSERT_GT(pid, 0);
  const auto rotated = flowLog().string() + ".1";
  std::filesystem::rename(flowLog(), rotated);
  ASSERT_EQ(::kill(pid, SIGHUP), 0);
  // The reopen happens on the daemon's signal thread; probe until a line lands in the new file.
  std::vector<json> fresh;
  for (int i = 0; i < 20 && fresh.empty(); ++i) {
    EXPECT_EQ(probe("obs/denied", "obs/server", "UDP", 150), "timeout");
    fresh = waitFlows(flowLog(), 1, [](const json& j) {
      return j.value("srcPod", "") == "obs/denied" && j.value("verdict", "") == "denied";
    });
  }
  ASSERT_FALSE(fresh.empty()) << "nothing written to " << flowLog() << " after SIGHUP";
  EXPECT_FALSE(readLog(rotated).empty());
  // Still running and answering.
  auto r = sluicectl({"status", "--admin-socket", adminSocket()});
  EXPECT_EQ(r.exitCode, 0) << r.err;
}

TEST_F(ObserveTest, RateLimitSuppressesAndCountsPerEndpoint) {
  const std::string suppressedSeries = R"(sluice_flow_log_suppressed_total{cause="rate"})";
  const double suppressed0 = metric(suppressedSeries);
  const auto before = waitFlows(flowLog(), 0, [](const json& j) {
                        return j.value("pod", "") == "obs/sprayer";
                      }).size();
  // Thousands of packets a second out of a pod whose egress is denied: every one is a drop.
  Command cmd;
  cmd.argv = {c().binary("e2e/tools/sluice-probe").string(),
              "spray",
              "--cidr",
              SimCluster::podCidrV4(0),
              "--port",
              "80",
              "--duration-ms",
              "1000"};
  cmd.netns = "/run/netns/" + c().pod("obs/sprayer")->netnsName;
  auto start = std::chrono::steady_clock::now();
  auto r = run(cmd, 20s);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::this_thread::sleep_for(1s);  // the pump drains the ring buffer
  const double suppressed = metric(suppressedSeries) - suppressed0;
  const auto written =
      waitFlows(flowLog(), 0, [](const json& j) { return j.value("pod", "") == "obs/sprayer"; })
          .size() -
      before;
  // Default limit: bursts of 200, then 100 a second per endpoint.
  EXPECT_GT(suppressed, 1000) << "written " << written;
  EXPECT_GE(written, 100u);
  EXPECT_LE(static_cast<double>(written), 200 + 100 * (elapsed + 1.5)) << "elapsed " << elapsed;
  // Other endpoints keep their own budget: a denied probe right after is still logged.
  const auto deniedBefore = waitFlows(flowLog(), 0, [](const json& j) {
                              return j.value("srcPod", "") == "obs/denied";
                            }).size();
  EXPECT_EQ(probe("obs/denied", "obs/server", "UDP", 150), "timeout");
  EXPECT_EQ(waitFlows(flowLog(), deniedBefore + 1,
                      [](const json& j) { return j.value("srcPod", "") == "obs/denied"; })
                .size(),
            deniedBefore + 1);
}

TEST_F(ObserveTest, ExplainNodeAgreesWithTheEngineOnEveryPairAndFlagsAMismatch) {
  const std::vector<std::string> pods = {"obs/server", "obs/allowed", "obs/denied", "obs/sprayer"};
  const std::string pinDir = c().bpfPinDir(0);
  auto explainNode = [&](const std::string& from, const std::string& to, const std::string& proto,
                         const std::string& manifests) {
    return sluicectl({"explain", "--node", "-f", manifests, "--from", from, "--to", to, "--port",
                      "80", "--protocol", proto, "-o", "json", "--bpf-pin-dir", pinDir,
                      "--admin-socket", adminSocket()});
  };
  int compared = 0, denied = 0;
  for (const auto& from : pods) {
    for (const auto& to : pods) {
      if (from == to) continue;
      for (const std::string proto : {"TCP", "UDP"}) {
        auto r = explainNode(from, to, proto, c().manifestsDir().string());
        ASSERT_EQ(r.exitCode, 0) << from << " -> " << to << " " << proto << ": " << r.err << r.out;
        auto j = json::parse(r.out);
        ASSERT_TRUE(j.contains("node")) << r.out;
        EXPECT_EQ(j["node"]["agree"], true) << r.out;
        // Both ends are endpoints of this node: both sides were read from the datapath.
        EXPECT_EQ(j["node"]["egress"]["local"], true) << r.out;
        EXPECT_EQ(j["node"]["ingress"]["local"], true) << r.out;
        EXPECT_EQ(j["node"]["ingress"]["allowed"], j["ingress"]["allowed"]) << r.out;
        EXPECT_EQ(j["node"]["egress"]["allowed"], j["egress"]["allowed"]) << r.out;
        ++compared;
        denied += !j["allowed"].get<bool>();
      }
    }
  }
  EXPECT_EQ(compared, 24);
  EXPECT_GT(denied, 0);  // the comparison covered denials, not only open paths

  // The node's own address into an isolated pod: always allowed, by the datapath and by the
  // engine's answer as explain --node states it.
  auto r = sluicectl({"explain", "--node", "-f", c().manifestsDir().string(), "--from",
                      SimCluster::nodeAddress(0, false).toString(), "--to", "obs/server", "--port",
                      "80", "--bpf-pin-dir", pinDir, "--admin-socket", adminSocket()});
  EXPECT_EQ(r.exitCode, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("from the node itself"), std::string::npos) << r.out;

  // Manifests without obs/server's policy: the engine now allows what the datapath denies.
  const auto other = c().runDir() / "explain-node-mismatch";
  std::filesystem::create_directories(other);
  for (const auto& e : std::filesystem::directory_iterator(c().manifestsDir())) {
    if (e.path().filename() != "observe.yaml") {
      std::filesystem::copy_file(e.path(), other / e.path().filename(),
                                 std::filesystem::copy_options::overwrite_existing);
    }
  }
  std::ofstream(other / "ns.yaml") << "apiVersion: v1\nkind: Namespace\nmetadata: {name: obs}\n";
  r = sluicectl({"explain", "--node", "-f", other.string(), "--from", "obs/denied", "--to",
                 "obs/server", "--port", "80", "--bpf-pin-dir", pinDir, "--admin-socket",
                 adminSocket()});
  EXPECT_EQ(r.exitCode, 3) << r.err << r.out;
  EXPECT_NE(r.out.find("MISMATCH ingress: datapath denies, engine allows"), std::string::npos)
      << r.out;
  EXPECT_NE(r.err.find("MISMATCH"), std::string::npos) << r.err;
}

// Audit mode on live traffic: an audited policy isolating obs/denied for ingress lets traffic
// through but logs and counts it as audit-deny naming the policy; once the annotation goes, the
// same flow is dropped and logged as denied by it.
TEST_F(ObserveTest, AuditModeLogsWithoutDroppingThenEnforcesOnceTheAnnotationGoes) {
  const std::string policy = R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: lockdown
  namespace: obs
  annotations: {sluice.io/enforcement: ENFORCEMENT}
spec:
  podSelector: {matchLabels: {app: denied}}
  policyTypes: [Ingress]
)";
  auto withEnforcement = [&](const std::string& mode) {
    std::string text = policy;
    text.replace(text.find("ENFORCEMENT"), std::string("ENFORCEMENT").size(), mode);
    return text;
  };
  const std::string series =
      R"(sluice_policy_audit_denied_flows_total{namespace="obs",policy="lockdown",direction="ingress"})";
  const double audited0 = metric(series);
  ASSERT_TRUE(c().writeManifest("audit.yaml", withEnforcement("audit")).ok());
  ASSERT_TRUE(c().waitSynced().ok());

  // Not enforced: three new TCP connections pass.
  constexpr int kFlows = 3;
  for (int i = 0; i < kFlows; ++i) EXPECT_EQ(probe("obs/allowed", "obs/denied", "TCP", 1000), "ok");
  auto isAudit = [](const json& j) {
    return j.value("verdict", "") == "audit-deny" && j.value("dstPod", "") == "obs/denied" &&
           j.value("srcPod", "") == "obs/allowed";
  };
  auto logged = waitFlows(flowLog(), kFlows, isAudit);
  ASSERT_GE(logged.size(), static_cast<size_t>(kFlows)) << readLog(flowLog());
  std::cout << "audit-deny flow log excerpt:\n" << logged.front().dump() << "\n";
  for (const auto& j : logged) {
    EXPECT_EQ(j["auditPolicies"], json::array({"obs/lockdown"})) << j.dump();
    EXPECT_EQ(j["direction"], "ingress");
    EXPECT_NE(j.value("why", "").find("allowed now, denied once enforced (audit: obs/lockdown)"),
              std::string::npos)
        << j.dump();
  }
  double audited = 0;
  for (int i = 0; i < 50 && audited < kFlows; ++i) {
    audited = metric(series) - audited0;
    if (audited < kFlows) std::this_thread::sleep_for(100ms);
  }
  EXPECT_GE(audited, kFlows);
  // sluicectl explain, offline on the same manifests, says the same.
  auto r = sluicectl({"explain", "-f", c().manifestsDir().string(), "--from", "obs/allowed", "--to",
                      "obs/denied", "--port", "80"});
  EXPECT_NE(r.out.find("allowed now, denied once enforced (audit: obs/lockdown)"),
            std::string::npos)
      << r.out;

  // The annotation goes: enforced from the next sync on.
  ASSERT_TRUE(c().writeManifest("audit.yaml", withEnforcement("enforce")).ok());
  ASSERT_TRUE(c().waitSynced().ok());
  EXPECT_EQ(probe("obs/allowed", "obs/denied", "TCP", 1000), "timeout");
  auto denied = waitFlows(flowLog(), 1, [](const json& j) {
    return j.value("verdict", "") == "denied" && j.value("dstPod", "") == "obs/denied" &&
           j.value("srcPod", "") == "obs/allowed";
  });
  ASSERT_FALSE(denied.empty()) << readLog(flowLog());
  EXPECT_EQ(denied.back()["policies"], json::array({"obs/lockdown"})) << denied.back().dump();

  ASSERT_TRUE(c().removeManifest("audit.yaml").ok());
  ASSERT_TRUE(c().waitSynced().ok());
  EXPECT_EQ(probe("obs/allowed", "obs/denied", "TCP", 1000), "ok");
}

}  // namespace
}  // namespace sluice::e2e
