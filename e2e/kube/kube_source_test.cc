// `sluice-policyd --source kube` against a real kube-apiserver (scripts/build-kube.sh) and etcd,
// with real packets between simulated pods:
// - event -> enforced latency through the real API server, each change verified with a packet;
// - the API server restarted and etcd compacted mid-run, so every watch must relist (410 Gone on
//   the real server): enforcement holds throughout and converges on what changed meanwhile.
// The conformance cases run through the API server too (e2e.conformance.kube).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "e2e/harness/cluster.h"

namespace sluice::e2e {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::unique_ptr<SimCluster> makeKubeCluster(int nodes) {
  ClusterOptions opts;
  opts.binaryDir = SLUICE_BINARY_DIR;
  opts.nodes = nodes;
  opts.source = "kube";
  opts.keepLogs = std::getenv("SLUICE_E2E_KEEP_LOGS") != nullptr;
  auto c = SimCluster::create(opts);
  EXPECT_TRUE(c.ok()) << c.error().message;
  return c.ok() ? std::move(c).value() : nullptr;
}

PodSpec podSpec(const std::string& ns, const std::string& name, int node,
                std::map<std::string, std::string> labels) {
  return PodSpec{ns, name, node, std::move(labels), {{"http", 80, "TCP"}}, ""};
}

json readJson(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return json::parse(s.str(), nullptr, false);
}

uint64_t appliedVersion(const SimCluster& c, int node, const std::string& resource) {
  json j = readJson(c.runDir() / ("n" + std::to_string(node)) / "state" / "applied-versions.json");
  if (!j.is_object() || !j.contains(resource) || !j[resource].is_string()) return 0;
  return std::strtoull(j[resource].get<std::string>().c_str(), nullptr, 10);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i =
      std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

const char* kNamespaces = R"(
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: lat, labels: {team: lat}}}
)";

// lat/server admits only pods labelled role=client.
std::string serverPolicy(const std::string& role) {
  return R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server, namespace: lat}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: )" +
         role + R"(}}}]
)";
}

class KubeSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, eBPF)";
  }
};

// A watch event enforced on the node: the daemon's own measure (event received -> datapath
// updated, sync.json updateLatencyNs) and the harness's (API write returned -> the daemon's
// applied-versions shows that resourceVersion, from before the write is sent). Every change is
// checked with a real packet.
TEST_F(KubeSourceTest, EventToEnforcedLatency) {
  auto c = makeKubeCluster(1);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->writeManifest("namespaces.yaml", kNamespaces).ok());
  auto server = c->addPod(podSpec("lat", "server", 0, {{"app", "server"}}), {80}, {});
  ASSERT_TRUE(server.ok()) << server.error().message;
  auto client =
      c->addPod(podSpec("lat", "client", 0, {{"app", "client"}, {"role", "client"}}), {80}, {});
  ASSERT_TRUE(client.ok()) << client.error().message;
  ASSERT_TRUE(c->writeManifest("policy.yaml", serverPolicy("client")).ok());
  {
    auto s = c->waitSynced();
    ASSERT_TRUE(s.ok()) << s.error().message;
  }

  const std::string clientNetns = "/run/netns/" + client->netnsName;
  auto probe = [&]() {
    auto r = c->probeFromNetns(clientNetns, server->ips[0], 80, "TCP", 500);
    return r.ok() ? *r : "error: " + r.error().message;
  };
  ASSERT_EQ(probe(), "ok");

  constexpr int kIterations = 20;
  std::vector<double> daemonMs, endToEndMs;
  for (int i = 0; i < kIterations; ++i) {
    // Alternate a pod relabel and a policy change; each flips the client's verdict.
    const bool allow = i % 2 == 1;
    const bool relabel = (i / 2) % 2 == 0;
    const auto t0 = Clock::now();
    std::string resource;
    if (relabel) {
      ASSERT_TRUE(c->relabelPod("lat", "client",
                                {{"app", "client"}, {"role", allow ? "client" : "stranger"}})
                      .ok());
      resource = "pods";
    } else {
      ASSERT_TRUE(c->writeManifest("policy.yaml", serverPolicy(allow ? "client" : "nobody")).ok());
      resource = "networkpolicies";
    }
    uint64_t rv = 0;
    for (const auto& [ref, v] : c->lastWriteVersions()) rv = std::max(rv, v);
    ASSERT_GT(rv, 0u);
    const auto deadline = t0 + 10s;
    while (appliedVersion(*c, 0, resource) < rv && Clock::now() < deadline) {
      std::this_thread::sleep_for(200us);
    }
    const auto t1 = Clock::now();
    ASSERT_GE(appliedVersion(*c, 0, resource), rv) << "not applied within 10 s";
    endToEndMs.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    json sync = readJson(c->runDir() / "n0" / "state" / "sync.json");
    daemonMs.push_back(static_cast<double>(sync.value("updateLatencyNs", int64_t{0})) / 1e6);
    // Each pair of iterations denies, then restores, the same object.
    const std::string got = probe();
    if (allow) {
      EXPECT_EQ(got, "ok") << "iteration " << i;
    } else {
      EXPECT_NE(got, "ok") << "iteration " << i;
    }
  }
  std::printf(
      "[ figures ] event -> enforced through kube-apiserver, %d changes (pod relabel, policy "
      "change):\n"
      "[ figures ]   daemon (watch event received -> datapath updated): p50 %.2f ms, p99 %.2f ms\n"
      "[ figures ]   harness (API write sent -> daemon applied it; includes the harness's curl "
      "calls): p50 %.2f ms, p99 %.2f ms\n",
      kIterations, percentile(daemonMs, 0.5), percentile(daemonMs, 0.99),
      percentile(endToEndMs, 0.5), percentile(endToEndMs, 0.99));
  // The target is 10 ms p99 inside the daemon; on a shared 2-core CI machine allow headroom.
  EXPECT_LT(percentile(daemonMs, 0.99), 50.0);
  EXPECT_LT(percentile(endToEndMs, 0.99), 1000.0);
}

const char* kRestartNamespaces = R"(
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: r}}
)";

const char* kOnlyAllowed = R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server, namespace: r}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: allowed}}}]
)";

const char* kBothAllowed = R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server, namespace: r}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{podSelector: {matchExpressions: [{key: app, operator: In, values: [allowed, other]}]}}]
)";

// The API server goes away, etcd is compacted past every resourceVersion the daemons hold, and
// a daemon restarts while the API server is down. Enforcement must hold the whole time (no wrong
// verdict from continuous probes), and once the API server is back every watch has to relist
// (its resume point is compacted: 410 Gone) and converge on a change made meanwhile.
TEST_F(KubeSourceTest, ApiServerRestartAndCompactionHoldThenConverge) {
  auto c = makeKubeCluster(2);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->writeManifest("namespaces.yaml", kRestartNamespaces).ok());
  auto server = c->addPod(podSpec("r", "server", 1, {{"app", "server"}}), {80}, {});
  ASSERT_TRUE(server.ok()) << server.error().message;
  auto allowed = c->addPod(podSpec("r", "allowed", 0, {{"app", "allowed"}}), {80}, {});
  ASSERT_TRUE(allowed.ok()) << allowed.error().message;
  auto other = c->addPod(podSpec("r", "other", 0, {{"app", "other"}}), {80}, {});
  ASSERT_TRUE(other.ok()) << other.error().message;
  ASSERT_TRUE(c->writeManifest("policy.yaml", kOnlyAllowed).ok());
  {
    auto s = c->waitSynced();
    ASSERT_TRUE(s.ok()) << s.error().message;
  }

  // Continuous probes: allowed -> server must always pass; other -> server must never pass
  // until the change is written.
  std::atomic<bool> stop{false}, changeWritten{false};
  std::atomic<int> wrong{0}, probes{0};
  std::mutex mu;
  std::vector<std::string> wrongDetail;
  auto loop = [&](const PodInfo& from, bool expectOk) {
    for (int i = 0; i < 2000 && !stop; ++i) {
      auto r = c->probeFromNetns("/run/netns/" + from.netnsName, server->ips[0], 80, "TCP", 300);
      ++probes;
      const bool ok = r.ok() && *r == "ok";
      const bool mayChange = !expectOk && changeWritten;
      if (ok != expectOk && !mayChange) {
        ++wrong;
        std::lock_guard lock(mu);
        wrongDetail.push_back(from.spec.name + " -> server: " + (r.ok() ? *r : r.error().message));
      }
      std::this_thread::sleep_for(50ms);
    }
  };
  std::thread t1(loop, std::cref(*allowed), true);
  std::thread t2(loop, std::cref(*other), false);

  ASSERT_TRUE(c->api()->stopApiServer().ok());
  std::this_thread::sleep_for(2s);
  auto compacted = c->api()->compactEtcd();
  ASSERT_TRUE(compacted.ok()) << compacted.error().message;
  // A daemon restarted while its API server is down keeps the pinned enforcement and stays not
  // ready until it has listed everything again.
  ASSERT_TRUE(c->stopDaemon(1).ok());
  ASSERT_TRUE(c->startDaemon(1, /*waitReady=*/false).ok());
  std::this_thread::sleep_for(2s);
  EXPECT_FALSE(std::filesystem::exists(c->runDir() / "n1" / "state" / "ready"))
      << "ready without the API server";
  ASSERT_TRUE(c->api()->startApiServer().ok());
  changeWritten = true;
  ASSERT_TRUE(c->writeManifest("policy.yaml", kBothAllowed).ok());
  auto synced = c->waitSynced(60s);
  EXPECT_TRUE(synced.ok()) << synced.error().message;
  stop = true;
  t1.join();
  t2.join();
  EXPECT_EQ(wrong.load(), 0) << "of " << probes.load() << " probes; first: "
                             << (wrongDetail.empty() ? "" : wrongDetail.front());
  EXPECT_TRUE(std::filesystem::exists(c->runDir() / "n1" / "state" / "ready"));
  auto after = c->probeFromNetns("/run/netns/" + other->netnsName, server->ips[0], 80, "TCP", 500);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, "ok") << "the change written after the restart is not enforced";
  std::printf(
      "[ figures ] %d probes across an API server restart + etcd compaction (rev %llu), "
      "%d wrong verdicts\n",
      probes.load(), static_cast<unsigned long long>(*compacted), wrong.load());
}

}  // namespace
}  // namespace sluice::e2e
