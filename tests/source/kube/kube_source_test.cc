// The kube source against the in-process test API server: initial list (paginated) and
// readiness, watch events, bookmarks, resume after disconnects, 410 Gone relists with the right
// differences, garbage/truncated lines, stalls, 403, outages, token rotation, coalescing, the
// last good version of an invalid policy, and node routes.
#include "policyd/source/kube/kube_source.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "policyd/source/cluster_store.h"
#include "tests/source/kube/fake_apiserver.h"

namespace sluice::source::kube {
namespace {

using namespace std::chrono_literals;
using testing::FakeApiServer;
using testing::kNamespaces;
using testing::kNodes;
using testing::kPods;
using testing::kPolicies;
using testing::namespaceJson;
using testing::nodeJson;
using testing::podJson;
using testing::policyJson;
using Fault = FakeApiServer::Fault;

constexpr auto kWait = 10s;  // upper bound on any wait; tests finish as soon as the state is there

InformerOptions fastOptions() {
  InformerOptions o;
  o.pageSize = 4;
  o.watchTimeout = 20s;
  o.stallTimeout = 400ms;
  o.requestTimeout = 2s;
  o.backoff.initial = 10ms;
  o.backoff.max = 80ms;
  return o;
}

class FakeRoutes : public RouteTable {
 public:
  Status replace(const Prefix& dst, const IpAddr& via) override {
    std::lock_guard lock(mu);
    table[dst] = via;
    ++writes;
    return Status::Ok();
  }
  Status remove(const Prefix& dst, const IpAddr&) override {
    std::lock_guard lock(mu);
    table.erase(dst);
    ++writes;
    return Status::Ok();
  }
  Result<std::map<Prefix, IpAddr>> owned() override {
    std::lock_guard lock(mu);
    return table;
  }
  std::map<Prefix, IpAddr> get() {
    std::lock_guard lock(mu);
    return table;
  }
  std::mutex mu;
  std::map<Prefix, IpAddr> table;
  int writes = 0;
};

// The source's state after one Update: its Updates folded into a ClusterStore, as the daemon
// does.
struct Snapshot {
  model::Cluster cluster;
  std::vector<Error> errors;
  Changes changes;  // what this Update carried
  std::chrono::steady_clock::time_point eventSeen;
  std::map<std::string, std::string> resourceVersions;
  bool versionsOnly = false;
  bool initialComplete = false;
  uint64_t generation = 0;
};

std::set<std::string> podKeys(const Snapshot& s) {
  std::set<std::string> out;
  for (const auto& p : s.cluster.pods) out.insert(p.key());
  return out;
}

class KubeSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server = std::make_unique<FakeApiServer>(tokenFile);
    server->upsert(kNamespaces, namespaceJson("default"));
    server->upsert(kNamespaces, namespaceJson("prod", {{"team", "a"}}));
    for (int i = 0; i < 10; ++i)
      server->upsert(kPods, podJson("prod", "p" + std::to_string(i), {{"app", "web"}},
                                    "10.244.0." + std::to_string(10 + i)));
    server->upsert(kPolicies,
                   policyJson("prod", "deny", {{"podSelector", nlohmann::json::object()}}));
    server->upsert(kNodes, nodeJson("node-a", "192.0.2.1", {"10.244.0.0/24"}));
  }
  void TearDown() override {
    if (source) source->stop();
  }

  void startSource(std::function<void(KubeSourceOptions&)> tweak = {}) {
    KubeSourceOptions o;
    o.cluster.server = server->url();
    o.cluster.tokenFile = clientTokenFile;
    o.nodeName = "node-a";
    o.informer = fastOptions();
    o.routes = routes;
    o.onLocalPodCidrs = [this](const std::vector<std::string>& c) {
      std::lock_guard lock(mu);
      localCidrs = c;
      return Status::Ok();
    };
    if (tweak) tweak(o);
    auto s = KubeSource::create(std::move(o));
    ASSERT_TRUE(s.ok()) << s.error().message;
    source = std::move(*s);
    source->keepChangeLog(true);
    ASSERT_TRUE(source
                    ->start([this](Update u) {
                      Snapshot snap;
                      {
                        std::lock_guard lock(foldMu);
                        snap.changes = u.changes;
                        folded.apply(std::move(u.changes));
                        if (u.errors) foldedErrors = *u.errors;
                        snap.cluster = folded.cluster();
                        snap.errors = foldedErrors;
                        snap.eventSeen = u.eventSeen;
                        snap.resourceVersions = u.resourceVersions;
                        snap.versionsOnly = u.versionsOnly;
                        snap.initialComplete = u.initialComplete;
                        snap.generation = u.generation;
                      }
                      if (snap.versionsOnly) {
                        // Only resourceVersions moved: not a model the daemon would compile.
                        std::lock_guard lock(mu);
                        versionsOnly.push_back(std::move(snap));
                        return;
                      }
                      if (onSnapshot) onSnapshot(snap);
                      std::lock_guard lock(mu);
                      snapshots.push_back(std::move(snap));
                      cv.notify_all();
                    })
                    .ok());
  }

  // Started, synced, and the pod watch is open (so closeWatches() reaches it).
  void startAndSync() {
    startSource();
    ASSERT_TRUE(waitFor([](const Snapshot& s) { return s.cluster.pods.size() == 10; }));
    ASSERT_TRUE(eventually([&] { return !server->watchVersions(kPods).empty(); }));
  }

  // Waits until the latest snapshot satisfies `pred`.
  bool waitFor(const std::function<bool(const Snapshot&)>& pred,
               std::chrono::milliseconds d = kWait) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, d, [&] { return !snapshots.empty() && pred(snapshots.back()); });
  }
  template <class F>
  static bool eventually(F f, std::chrono::milliseconds d = kWait) {
    auto end = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < end) {
      if (f()) return true;
      std::this_thread::sleep_for(5ms);
    }
    return f();
  }
  Snapshot last() {
    std::lock_guard lock(mu);
    return snapshots.back();
  }
  size_t count() {
    std::lock_guard lock(mu);
    return snapshots.size();
  }

  std::string tokenFile;        // server side: what it accepts
  std::string clientTokenFile;  // client side
  std::unique_ptr<FakeApiServer> server;
  std::shared_ptr<FakeRoutes> routes = std::make_shared<FakeRoutes>();
  std::unique_ptr<KubeSource> source;
  std::function<void(const Snapshot&)> onSnapshot;
  std::mutex foldMu;
  ClusterStore folded;
  std::vector<Error> foldedErrors;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Snapshot> snapshots;
  std::vector<Snapshot> versionsOnly;
  std::vector<std::string> localCidrs;
};

TEST_F(KubeSourceTest, InitialListIsPaginatedAndCompleteInTheFirstSnapshot) {
  startSource();
  ASSERT_TRUE(waitFor([](const Snapshot&) { return true; }));
  Snapshot s = last();
  EXPECT_EQ(s.generation, 1u);
  EXPECT_TRUE(s.initialComplete);
  EXPECT_EQ(s.changes.podUpserts.size(), 10u);
  EXPECT_EQ(s.cluster.pods.size(), 10u);
  EXPECT_EQ(s.cluster.namespaces.size(), 2u);
  ASSERT_EQ(s.cluster.policies.size(), 1u);
  EXPECT_TRUE(s.cluster.policies[0].affectsIngress);
  EXPECT_TRUE(s.errors.empty());
  // 10 pods in pages of 4: three requests.
  EXPECT_EQ(server->listRequests(kPods), 3);
  const auto& pod = *std::find_if(s.cluster.pods.begin(), s.cluster.pods.end(),
                                  [](const auto& p) { return p.name == "p3"; });
  EXPECT_EQ(pod.labels.at("app"), "web");
  ASSERT_EQ(pod.ips.size(), 1u);
  EXPECT_EQ(pod.ips[0].toString(), "10.244.0.13");
  ASSERT_EQ(pod.ports.size(), 1u);
  EXPECT_EQ(pod.ports[0].name, "http");
  EXPECT_EQ(pod.nodeName, "node-a");
  // The namespace carries the label the API server sets.
  auto prod = std::find_if(s.cluster.namespaces.begin(), s.cluster.namespaces.end(),
                           [](const auto& n) { return n.name == "prod"; });
  EXPECT_EQ(prod->labels.at("kubernetes.io/metadata.name"), "prod");
  // Every watch starts from its list's resourceVersion.
  ASSERT_TRUE(eventually([&] { return !server->watchVersions(kPods).empty(); }));
  EXPECT_EQ(server->watchVersions(kPods)[0], std::to_string(server->resourceVersion()));
}

TEST_F(KubeSourceTest, NoSnapshotUntilEveryKindIsListedAndForbiddenNamesResourceAndVerb) {
  server->setForbidden(kPolicies, true);
  startSource();
  ASSERT_TRUE(eventually([&] { return source->stats().failures >= 3; }));
  EXPECT_EQ(count(), 0u) << "not ready while one kind cannot be listed";
  auto e = source->lastError();
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("forbidden: cannot list networkpolicies.networking.k8s.io"),
            std::string::npos)
      << e->message;
  EXPECT_NE(e->message.find("get, list and watch"), std::string::npos) << e->message;
  server->setForbidden(kPolicies, false);
  ASSERT_TRUE(waitFor([](const Snapshot& s) { return s.cluster.policies.size() == 1; }));
}

TEST_F(KubeSourceTest, ServerDownAtStartStaysNotReadyThenSyncs) {
  server->setUnavailable(true);
  startSource();
  ASSERT_TRUE(eventually([&] { return source->stats().failures >= 4; }));
  EXPECT_EQ(count(), 0u);
  server->setUnavailable(false);
  ASSERT_TRUE(waitFor([](const Snapshot& s) { return s.cluster.pods.size() == 10; }));
}

TEST_F(KubeSourceTest, NothingListeningIsRetriedWithoutCrashing) {
  KubeSourceOptions o;
  o.cluster.server = "http://127.0.0.1:1";  // nothing listens on port 1 here
  o.informer = fastOptions();
  auto s = KubeSource::create(std::move(o));
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->start([](Update) { ADD_FAILURE() << "no snapshot without a server"; }).ok());
  ASSERT_TRUE(eventually([&] { return (*s)->stats().failures >= 8; }));
  EXPECT_NE((*s)->lastError()->message.find("127.0.0.1:1"), std::string::npos)
      << (*s)->lastError()->message;
  (*s)->stop();
}

TEST_F(KubeSourceTest, WatchEventsAddUpdateAndDelete) {
  startAndSync();
  server->upsert(kPods, podJson("prod", "new", {{"app", "db"}}, "10.244.0.99"));
  server->upsert(kPods, podJson("prod", "p1", {{"app", "relabelled"}}, "10.244.0.11"));
  server->remove(kPods, "prod/p2");
  ASSERT_TRUE(waitFor([](const Snapshot& s) {
    auto keys = podKeys(s);
    if (keys.contains("prod/p2") || !keys.contains("prod/new")) return false;
    for (const auto& p : s.cluster.pods)
      if (p.name == "p1") return p.labels.at("app") == "relabelled";
    return false;
  }));
  EXPECT_EQ(server->listRequests(kPods), 3) << "events need no relist";
}

TEST_F(KubeSourceTest, UpdatesWithNothingNewCauseNoSnapshot) {
  startAndSync();
  size_t before = count();
  // A pod status update (conditions) and a node heartbeat: new versions, nothing to enforce.
  auto pod = podJson("prod", "p3", {{"app", "web"}}, "10.244.0.13");
  pod["status"]["conditions"] = {{{"type", "Ready"}, {"status", "True"}}};
  server->upsert(kPods, pod);
  const std::string podVersion = std::to_string(server->resourceVersion());
  auto node = nodeJson("node-a", "192.0.2.1", {"10.244.0.0/24"});
  node["status"]["conditions"] = {{{"type", "Ready"}, {"status", "True"}}};
  server->upsert(kNodes, node);
  ASSERT_TRUE(eventually([&] { return source->stats().events >= 2; }));
  // The daemon still learns how far the pod watch has got (its applied-versions barrier), without
  // a model to compile; node heartbeats do not even do that.
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(mu);
    for (const auto& v : versionsOnly) {
      auto it = v.resourceVersions.find("pods");
      if (v.changes.empty() && it != v.resourceVersions.end() && it->second == podVersion) {
        return true;
      }
    }
    return false;
  })) << "no versions-only snapshot carried pods@"
      << podVersion;
  // Then a real change: the only one that reaches the engine.
  server->upsert(kPods, podJson("prod", "p3", {{"app", "other"}}, "10.244.0.13"));
  ASSERT_TRUE(waitFor([](const Snapshot& s) {
    for (const auto& p : s.cluster.pods)
      if (p.name == "p3") return p.labels.at("app") == "other";
    return false;
  }));
  EXPECT_EQ(count(), before + 1);
  EXPECT_GE(source->stats().events, 3u);
}

TEST_F(KubeSourceTest, FinishedPodsLeaveTheSnapshot) {
  startSource();
  ASSERT_TRUE(waitFor([](const Snapshot& s) { return s.cluster.pods.size() == 10; }));
  auto pod = podJson("prod", "p4", {{"app", "web"}}, "10.244.0.14");
  pod["status"]["phase"] = "Succeeded";
  server->upsert(kPods, pod);
  ASSERT_TRUE(waitFor([](const Snapshot& s) { return !podKeys(s).contains("prod/p4"); }));
  EXPECT_EQ(last().cluster.pods.size(), 9u);
}

TEST_F(KubeSourceTest, DisconnectResumesFromTheLastSeenResourceVersion) {
  startAndSync();
  server->injectWatchFault(kPods, Fault::Disconnect, 1);
  server->closeWatches();  // the next watch gets the fault
  server->upsert(kPods, podJson("prod", "a", {}, "10.244.0.50"));
  std::string rvA = std::to_string(server->resourceVersion());
  server->upsert(kPods, podJson("prod", "b", {}, "10.244.0.51"));
  ASSERT_TRUE(waitFor([](const Snapshot& s) { return podKeys(s).contains("prod/b"); }));
  auto versions = server->watchVersions(kPods);
  ASSERT_GE(versions.size(), 3u);
  // The watch after the disconnect asked for everything after event "a", which it had applied.
  EXPECT_NE(std::find(versions.begin(), versions.end(), rvA), versions.end());
  EXPECT_EQ(server->listRequests(kPods), 3) << "a disconnect resumes; it does not relist";
}

TEST_F(KubeSourceTest, BookmarkAdvancesTheResumeVersion) {
  startSource();
  ASSERT_TRUE(waitFor([](const Snapshot&) { return true; }));
  ASSERT_TRUE(eventually([&] { return server->watchVersions(kPods).size() == 1; }));
  server->upsert(kNamespaces, namespaceJson("other"));  // moves the global version
  server->bookmark(kPods);
  std::string bookmarkRv = std::to_string(server->resourceVersion());
  ASSERT_TRUE(eventually([&] {
    // No change reaches the store from a bookmark; wait for the namespace event instead and
    // give the pod watch the same moment to read its bookmark.
    return last().cluster.namespaces.size() == 3;
  }));
  std::this_thread::sleep_for(50ms);
  server->closeWatches();
  ASSERT_TRUE(eventually([&] { return server->watchVersions(kPods).size() >= 2; }));
  EXPECT_EQ(server->watchVersions(kPods)[1], bookmarkRv);
}

TEST_F(KubeSourceTest, GoneEventRelistsAndAppliesOnlyTheDifferences) {
  startAndSync();
  size_t logBefore = source->changeLog().size();
  // The client misses these while its watch is held, then history is compacted away.
  server->holdWatches(kPods, true);
  server->upsert(kPods, podJson("prod", "added", {}, "10.244.0.60"));
  server->upsert(kPods, podJson("prod", "p1", {{"app", "changed"}}, "10.244.0.11"));
  server->remove(kPods, "prod/p2");
  server->compact();
  server->holdWatches(kPods, false);
  server->closeWatches();
  ASSERT_TRUE(waitFor([](const Snapshot& s) {
    auto k = podKeys(s);
    return k.contains("prod/added") && !k.contains("prod/p2");
  }));
  EXPECT_GT(server->listRequests(kPods), 3);
  auto log = source->changeLog();
  std::vector<Change> relist;
  for (size_t i = logBefore; i < log.size(); ++i)
    if (log[i].first == Kind::Pod) relist.push_back(log[i].second);
  std::vector<Change> want = {{Change::Op::Added, "prod/added"},
                              {Change::Op::Updated, "prod/p1"},
                              {Change::Op::Deleted, "prod/p2"}};
  std::sort(relist.begin(), relist.end(), [](auto& a, auto& b) { return a.key < b.key; });
  EXPECT_EQ(relist, want);
  Snapshot s = last();
  // The daemon is handed the same differences, not the whole list.
  std::set<std::string> upserted;
  for (const auto& p : s.changes.podUpserts) upserted.insert(p.key());
  EXPECT_EQ(upserted, (std::set<std::string>{"prod/added", "prod/p1"}));
  EXPECT_EQ(s.changes.podDeletes, (std::vector<std::string>{"prod/p2"}));
  EXPECT_EQ(s.cluster.pods.size(), 10u);
  for (const auto& p : s.cluster.pods) {
    if (p.name == "p1") {
      EXPECT_EQ(p.labels.at("app"), "changed");
    }
  }
}

TEST_F(KubeSourceTest, GoneStatusRelists) {
  startAndSync();
  server->injectWatchFault(kPods, Fault::GoneStatus);
  server->closeWatches();
  ASSERT_TRUE(eventually([&] { return server->listRequests(kPods) > 3; }));
  server->upsert(kPods, podJson("prod", "after", {}, "10.244.0.70"));
  ASSERT_TRUE(waitFor([](const Snapshot& s) { return podKeys(s).contains("prod/after"); }));
}

TEST_F(KubeSourceTest, InjectedGoneEventMidStreamRelists) {
  startAndSync();
  server->injectWatchFault(kPods, Fault::GoneEvent, 1);
  server->closeWatches();
  server->upsert(kPods, podJson("prod", "x", {}, "10.244.0.71"));
  ASSERT_TRUE(eventually([&] { return server->listRequests(kPods) > 3; }));
  ASSERT_TRUE(waitFor([](const Snapshot& s) { return podKeys(s).contains("prod/x"); }));
}

TEST_F(KubeSourceTest, GarbageLineRestartsTheWatchWithoutLosingEvents) {
  startAndSync();
  server->injectWatchFault(kPods, Fault::MalformedLine, 1);
  server->closeWatches();
  server->upsert(kPods, podJson("prod", "before", {}, "10.244.0.80"));
  server->upsert(kPods, podJson("prod", "after", {}, "10.244.0.81"));
  ASSERT_TRUE(waitFor([](const Snapshot& s) {
    auto k = podKeys(s);
    return k.contains("prod/before") && k.contains("prod/after");
  }));
  EXPECT_EQ(server->listRequests(kPods), 3);
  EXPECT_GE(source->stats().failures, 1u);
}

TEST_F(KubeSourceTest, TruncatedLineIsNeverHalfApplied) {
  startAndSync();
  server->holdWatches(kPods, true);
  server->injectWatchFault(kPods, Fault::TruncatedLine, 0);
  server->closeWatches();
  // The relabel's line is cut: until the watch is resumed, p5 keeps its old labels.
  server->upsert(kPods, podJson("prod", "p5", {{"app", "new"}, {"tier", "x"}}, "10.244.0.15"));
  server->holdWatches(kPods, false);
  ASSERT_TRUE(waitFor([](const Snapshot& s) {
    for (const auto& p : s.cluster.pods)
      if (p.name == "p5") return p.labels.size() == 2;
    return false;
  }));
  auto e = source->lastError();
  ASSERT_TRUE(e);
  // Every snapshot has p5 either as before or as after, never anything in between.
  std::lock_guard lock(mu);
  for (const auto& s : snapshots) {
    for (const auto& p : s.cluster.pods) {
      if (p.name == "p5") {
        EXPECT_TRUE(p.labels.size() == 1 || p.labels.size() == 2);
      }
    }
  }
}

TEST_F(KubeSourceTest, StalledWatchIsRestarted) {
  startAndSync();
  server->injectWatchFault(kPods, Fault::Stall, 0);
  server->closeWatches();
  ASSERT_TRUE(eventually([&] { return server->watchVersions(kPods).size() >= 2; }));
  auto t0 = std::chrono::steady_clock::now();
  server->upsert(kPods, podJson("prod", "late", {}, "10.244.0.90"));
  ASSERT_TRUE(waitFor([](const Snapshot& s) { return podKeys(s).contains("prod/late"); }));
  // Within the stall timeout (400ms) plus a backoff step, not the server's watch timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  ASSERT_TRUE(source->lastError());
  EXPECT_NE(source->lastError()->message.find("no data for 400ms"), std::string::npos)
      << source->lastError()->message;
}

TEST_F(KubeSourceTest, InvalidPolicyKeepsTheLastGoodVersionAndIsReported) {
  startSource();
  ASSERT_TRUE(waitFor([](const Snapshot& s) { return s.cluster.policies.size() == 1; }));
  server->upsert(kPolicies, policyJson("prod", "deny",
                                       {{"podSelector", nlohmann::json::object()},
                                        {"policyTypes", {"Sideways"}}}));
  ASSERT_TRUE(waitFor([](const Snapshot& s) { return !s.errors.empty(); }));
  Snapshot s = last();
  ASSERT_EQ(s.cluster.policies.size(), 1u);
  EXPECT_TRUE(s.cluster.policies[0].affectsIngress);
  EXPECT_FALSE(s.cluster.policies[0].affectsEgress);
  EXPECT_NE(s.errors[0].message.find("NetworkPolicy prod/deny: spec.policyTypes[0]"),
            std::string::npos)
      << s.errors[0].message;
  server->upsert(kPolicies, policyJson("prod", "deny",
                                       {{"podSelector", nlohmann::json::object()},
                                        {"policyTypes", {"Egress"}}}));
  ASSERT_TRUE(waitFor([](const Snapshot& s) {
    return s.errors.empty() && s.cluster.policies.size() == 1 &&
           s.cluster.policies[0].affectsEgress;
  }));
}

TEST_F(KubeSourceTest, EventsArrivingDuringASyncAreCoalesced) {
  std::mutex gate;
  std::unique_lock hold(gate, std::defer_lock);
  std::atomic<bool> blockNext{false};
  onSnapshot = [&](const Snapshot&) {
    if (blockNext.exchange(false)) std::lock_guard wait(gate);  // a slow sync
  };
  startSource();
  ASSERT_TRUE(waitFor([](const Snapshot& s) { return s.cluster.pods.size() == 10; }));
  hold.lock();
  blockNext = true;
  auto firstEvent = std::chrono::steady_clock::now();
  server->upsert(kPods, podJson("prod", "c0", {}, "10.244.1.0"));
  ASSERT_TRUE(eventually([&] { return !blockNext.load(); }));  // the consumer is busy now
  auto batchStart = std::chrono::steady_clock::now();
  for (int i = 1; i <= 30; ++i)
    server->upsert(kPods,
                   podJson("prod", "c" + std::to_string(i), {}, "10.244.1." + std::to_string(i)));
  ASSERT_TRUE(eventually([&] { return source->stats().events >= 31; }));
  size_t before = count();
  hold.unlock();
  ASSERT_TRUE(waitFor([](const Snapshot& s) { return s.cluster.pods.size() == 41; }));
  // The busy snapshot, then one for everything that arrived meanwhile.
  EXPECT_EQ(count(), before + 2);
  Snapshot s = last();
  EXPECT_GE(s.eventSeen, batchStart);
  EXPECT_GT(s.eventSeen, firstEvent);
}

TEST_F(KubeSourceTest, NodeRoutesAndLocalPodCidrsFollowNodes) {
  server->upsert(kNodes, nodeJson("node-b", "192.0.2.2", {"10.244.1.0/24"}));
  startSource();
  ASSERT_TRUE(eventually([&] { return routes->get().size() == 1; }));
  auto r = routes->get();
  EXPECT_EQ(r.begin()->first.toString(), "10.244.1.0/24");
  EXPECT_EQ(r.begin()->second.toString(), "192.0.2.2");
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(localCidrs, std::vector<std::string>{"10.244.0.0/24"});
  }
  server->upsert(kNodes, nodeJson("node-c", "192.0.2.3", {"10.244.2.0/24", "fd00:2::/64"}));
  server->upsert(kNodes, nodeJson("node-b", "192.0.2.22", {"10.244.1.0/24"}));  // moved
  ASSERT_TRUE(eventually([&] {
    auto t = routes->get();
    return t.size() == 2 && t.begin()->second.toString() == "192.0.2.22";
  }));
  // node-c's IPv6 CIDR has no IPv6 InternalIP: no route, and it is reported.
  EXPECT_EQ(routes->get().count(*Prefix::parse("fd00:2::/64")), 0u);
  server->remove(kNodes, "node-b");
  ASSERT_TRUE(eventually([&] {
    auto t = routes->get();
    return t.size() == 1 && t.begin()->first.toString() == "10.244.2.0/24";
  }));
  EXPECT_EQ(count(), 1u) << "Node changes move routes, not the engine's snapshot";
}

class TokenRotationTest : public KubeSourceTest {
 protected:
  void SetUp() override {
    dir = std::filesystem::temp_directory_path() /
          ("sluice-kube-token-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    tokenFile = (dir / "token").string();
    clientTokenFile = tokenFile;
    write("first-token\n");
    KubeSourceTest::SetUp();
  }
  void TearDown() override {
    KubeSourceTest::TearDown();
    std::filesystem::remove_all(dir);
  }
  void write(const std::string& t) {
    std::ofstream(tokenFile + ".tmp") << t;
    std::filesystem::rename(tokenFile + ".tmp", tokenFile);
  }
  std::filesystem::path dir;
};

TEST_F(TokenRotationTest, RotatedTokenIsReadForTheNextRequest) {
  // No stall restarts while the token changes: a request that read the old token just before
  // the rotation would (rightly) be refused by this strict server.
  startSource([](KubeSourceOptions& o) { o.informer.stallTimeout = 10s; });
  ASSERT_TRUE(waitFor([](const Snapshot& s) { return s.cluster.pods.size() == 10; }));
  ASSERT_TRUE(eventually([&] { return server->openWatches() == 4; }));
  write("second-token\n");
  server->closeWatches();
  server->upsert(kPods, podJson("prod", "rotated", {}, "10.244.0.91"));
  ASSERT_TRUE(waitFor([](const Snapshot& s) { return podKeys(s).contains("prod/rotated"); }));
  EXPECT_EQ(server->unauthorized(), 0);
}

TEST_F(TokenRotationTest, WrongTokenIsUnauthorized) {
  clientTokenFile = (dir / "other").string();
  std::ofstream(clientTokenFile) << "stale";
  startSource();
  ASSERT_TRUE(eventually([&] { return server->unauthorized() >= 4; }));
  ASSERT_TRUE(eventually([&] {
    auto e = source->lastError();
    return e && e->message.find("unauthorized: the API server rejected the credentials") !=
                    std::string::npos;
  }));
  EXPECT_EQ(count(), 0u);
}

TEST(ReadClusterOnceTest, ReturnsOneConsistentSnapshot) {
  FakeApiServer server;
  server.upsert(kNamespaces, namespaceJson("default"));
  server.upsert(kPods, podJson("default", "a", {{"x", "y"}}, "10.0.0.1"));
  ClusterConfig c;
  c.server = server.url();
  auto s = readClusterOnce(c, 5s);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->cluster.pods.size(), 1u);
  EXPECT_EQ(s->cluster.namespaces.size(), 1u);
}

TEST(ReadClusterOnceTest, ForbiddenIsAClearError) {
  FakeApiServer server;
  server.setForbidden(kNodes, true);
  ClusterConfig c;
  c.server = server.url();
  auto s = readClusterOnce(c, 300ms);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("cannot list nodes"), std::string::npos) << s.error().message;
}

}  // namespace
}  // namespace sluice::source::kube
