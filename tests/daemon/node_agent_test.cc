#include "policyd/daemon/node_agent.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <set>

#include "policyd/daemon/state_files.h"
#include "tests/daemon/agent_fixture.h"

namespace sluice::daemon {
namespace {

using namespace std::chrono_literals;
using sluice::testing::TempDir;
using sluice::testing::waitFor;
using namespace sluice::daemon::testing;
using endpoint_api::Op;

class NodeAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 1; i <= 40; ++i) host.addLink("slp" + std::to_string(i));
    for (const char* n : {"slweb", "sldb", "slghost", "slapi"}) host.addLink(n);
  }
  NodeAgent& start(std::chrono::milliseconds podWait = 2s) {
    harness = std::make_unique<AgentHarness>(dir.path(), backend, host, clock, podWait);
    EXPECT_TRUE(harness->agent->start().ok());
    return *harness->agent;
  }
  std::string file(std::string_view name) { return dir / std::string(name); }

  TempDir dir;
  FakeBackend backend;
  FakeHostNetwork host;
  ManualClock clock;
  std::unique_ptr<AgentHarness> harness;
};

TEST_F(NodeAgentTest, AddAttachesRegistersAppliesThenReplies) {
  auto& agent = start();
  feed(agent, snapshot({pod("default", "web", {{"app", "web"}})}));
  ASSERT_TRUE(waitFor([&] { return agent.ready(); }));
  EXPECT_TRUE(std::filesystem::exists(file(kReadyFile)));
  EXPECT_EQ(sluice::testing::slurp(file(kAppliedFile)), "1234567890123\n");
  EXPECT_EQ(backend.syncs(), 1);  // the first sync is a full one

  auto reply = agent.handle(addRequest("web", 1));
  ASSERT_TRUE(reply.ok) << reply.error;
  auto stats = agent.stats();
  EXPECT_EQ(stats.endpoints, 1u);
  const auto& node = harness->compiler.lastNode();
  ASSERT_EQ(node.endpoints.size(), 1u);
  const auto id = node.endpoints[0].id;
  EXPECT_EQ(node.endpoints[0].podName, "web");
  EXPECT_EQ(node.endpoints[0].ips.size(), 2u);
  EXPECT_TRUE(backend.isAttached(id));
  EXPECT_TRUE(backend.policies().contains(id));
  EXPECT_EQ(agent.endpointName(id), "default/web");
  // Attach came before the apply that carried the endpoint's policy.
  auto calls = backend.calls();
  auto attach = std::find(calls.begin(), calls.end(), "attach " + std::to_string(id) + " slweb");
  ASSERT_NE(attach, calls.end());
  EXPECT_NE(std::find_if(attach, calls.end(),
                         [](const std::string& c) { return c.starts_with("apply"); }),
            calls.end());
  // Persisted.
  EXPECT_NE(sluice::testing::slurp(file(kRegistryFile)).find("ctr-web"), std::string::npos);
  // Host addresses reach the compiler.
  ASSERT_EQ(node.hostAddresses.size(), 1u);
  EXPECT_EQ(node.hostAddresses[0].toString(), "192.168.1.10");
}

TEST_F(NodeAgentTest, StatusIsNotReadyUntilTheFirstSnapshotIsApplied) {
  auto& agent = start();
  endpoint_api::Request status;
  status.op = endpoint_api::Op::Status;
  auto before = agent.handle(status);
  EXPECT_FALSE(before.ok);
  EXPECT_NE(before.error.find("not ready"), std::string::npos) << before.error;
  feed(agent, snapshot({pod("default", "web")}));
  ASSERT_TRUE(waitFor([&] { return agent.ready(); }));
  EXPECT_TRUE(agent.handle(status).ok);
}

TEST_F(NodeAgentTest, NothingIsCompiledBeforeTheInitialStateIsComplete) {
  auto& agent = start();
  source::Update partial;
  partial.changes.podUpserts.push_back(pod("default", "web"));
  agent.onUpdate(std::move(partial));
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(agent.ready());
  EXPECT_EQ(harness->compiler.updates(), 0);
  EXPECT_EQ(backend.syncs(), 0);
  source::Update rest;
  rest.changes.podUpserts.push_back(pod("default", "db"));
  rest.initialComplete = true;
  agent.onUpdate(std::move(rest));
  ASSERT_TRUE(waitFor([&] { return agent.ready(); }));
  // The first compile reads the whole store: both parts.
  auto seen = harness->compiler.lastCluster();
  EXPECT_EQ(seen.pods.size(), 2u);
  EXPECT_EQ(harness->compiler.changeSets(), 0);
}

TEST_F(NodeAgentTest, AfterTheFirstCompileOnlyChangeSetsReachTheCompiler) {
  auto& agent = start();
  feed(agent, snapshot({pod("default", "web"), pod("default", "db", {{"role", "web"}})}));
  ASSERT_TRUE(waitFor([&] { return agent.ready(); }));
  ASSERT_TRUE(agent.handle(addRequest("db", 2)).ok);
  const int changeSets = harness->compiler.changeSets();
  EXPECT_GE(changeSets, 1);  // the endpoint add: a node-context change

  // A relabel: the compiler is handed the change (it sees the new label: role=db isolates).
  source::Update relabel;
  relabel.changes.podUpserts.push_back(pod("default", "db", {{"role", "db"}}));
  relabel.eventSeen = std::chrono::steady_clock::now();
  agent.onUpdate(std::move(relabel));
  ASSERT_TRUE(waitFor([&] { return harness->compiler.changeSets() == changeSets + 1; }));
  ASSERT_TRUE(waitFor([&] {
    auto p = backend.policies();
    auto it = p.find(1);
    return it != p.end() && it->second;
  }));
  uint64_t generation = 0;
  agent.readModel([&](const model::Cluster& c, uint64_t g) {
    generation = g;
    for (const auto& p : c.pods) {
      if (p.name == "db") {
        EXPECT_EQ(p.labels.at("role"), "db");
      }
    }
  });

  // The same content again: dropped by the store (the model generation stays), yet the update
  // is still recorded as applied (a rewrite that changed nothing is enforced too).
  std::filesystem::remove(file(kAppliedFile));
  source::Update same;
  same.changes.podUpserts.push_back(pod("default", "db", {{"role", "db"}}));
  same.readWallNs = 42;
  agent.onUpdate(std::move(same));
  ASSERT_TRUE(waitFor([&] { return std::filesystem::exists(file(kAppliedFile)); }));
  agent.readModel([&](const model::Cluster&, uint64_t g) { EXPECT_EQ(g, generation); });
  EXPECT_EQ(agent.stats().fullSyncs, 1u);

  // A delete then an upsert of another pod while nothing syncs are one change set.
  source::Update del;
  del.changes.podDeletes.push_back("default/web");
  agent.onUpdate(std::move(del));
  ASSERT_TRUE(waitFor([&] {
    bool gone = true;
    agent.readModel([&](const model::Cluster& c, uint64_t) {
      for (const auto& p : c.pods) {
        if (p.name == "web") gone = false;
      }
    });
    return gone;
  }));
}

TEST_F(NodeAgentTest, RepeatedAddIsIdempotent) {
  auto& agent = start();
  feed(agent, snapshot({pod("default", "web")}));
  ASSERT_TRUE(agent.handle(addRequest("web", 1)).ok);
  ASSERT_TRUE(agent.handle(addRequest("web", 1)).ok);
  EXPECT_EQ(agent.stats().endpoints, 1u);
}

TEST_F(NodeAgentTest, RequestsWaitForTheFirstSnapshot) {
  auto& agent = start();
  auto f = submit(agent, addRequest("web", 1));
  EXPECT_FALSE(answeredWithin(f, 50ms));
  EXPECT_EQ(backend.syncs(), 0);
  feed(agent, snapshot({pod("default", "web")}));
  ASSERT_TRUE(answeredWithin(f, 5s));
  EXPECT_TRUE(f.get().ok);
}

TEST_F(NodeAgentTest, UnknownPodWaitsThenProceedsThenIsCorrected) {
  auto& agent = start(2s);
  feed(agent, snapshot({}));
  ASSERT_TRUE(waitFor([&] { return agent.ready(); }));
  auto f = submit(agent, addRequest("db", 2));
  // Attached (fail closed) and registered, but not compiled and not answered yet.
  ASSERT_TRUE(waitFor([&] { return agent.stats().waitingForPod == 1; }));
  EXPECT_FALSE(answeredWithin(f, 30ms));
  EXPECT_TRUE(harness->compiler.lastNode().endpoints.empty());
  EXPECT_EQ(backend.calls().size() >= 1, true);

  clock.advance(1s);
  agent.wake();
  EXPECT_FALSE(answeredWithin(f, 30ms));
  clock.advance(1500ms);
  agent.wake();
  ASSERT_TRUE(answeredWithin(f, 5s));
  EXPECT_TRUE(f.get().ok);
  auto node = harness->compiler.lastNode();
  ASSERT_EQ(node.endpoints.size(), 1u);
  const auto id = node.endpoints[0].id;
  EXPECT_FALSE(backend.policies().at(id));  // no labels known: not isolated

  // The Pod object arrives: the next sync uses its labels.
  feed(agent, snapshot({pod("default", "db", {{"role", "db"}})}));
  ASSERT_TRUE(waitFor([&] { return backend.policies().at(id); }));
}

TEST_F(NodeAgentTest, PodArrivingWhileWaitingReleasesTheRegistration) {
  auto& agent = start(60s);
  feed(agent, snapshot({}));
  auto f = submit(agent, addRequest("db", 2));
  ASSERT_TRUE(waitFor([&] { return agent.stats().waitingForPod == 1; }));
  feed(agent, snapshot({pod("default", "db", {{"role", "db"}})}));
  ASSERT_TRUE(answeredWithin(f, 5s));
  EXPECT_TRUE(f.get().ok);
  auto node = harness->compiler.lastNode();
  ASSERT_EQ(node.endpoints.size(), 1u);
  EXPECT_TRUE(backend.policies().at(node.endpoints[0].id));
}

TEST_F(NodeAgentTest, DelDetachesAndUnregisters) {
  auto& agent = start();
  feed(agent, snapshot({pod("default", "web")}));
  ASSERT_TRUE(agent.handle(addRequest("web", 1)).ok);
  const auto id = harness->compiler.lastNode().endpoints.at(0).id;
  auto reply = agent.handle(withOp(addRequest("web", 1), Op::Del));
  ASSERT_TRUE(reply.ok) << reply.error;
  EXPECT_FALSE(backend.isAttached(id));
  EXPECT_FALSE(backend.policies().contains(id));
  EXPECT_EQ(agent.stats().endpoints, 0u);
  EXPECT_EQ(sluice::testing::slurp(file(kRegistryFile)).find("ctr-web"), std::string::npos);
  // DEL is idempotent.
  EXPECT_TRUE(agent.handle(withOp(addRequest("web", 1), Op::Del)).ok);
}

TEST_F(NodeAgentTest, CheckVerifiesRegistrationAttachmentAndAddresses) {
  auto& agent = start();
  feed(agent, snapshot({pod("default", "web")}));
  auto unknown = agent.handle(withOp(addRequest("web", 1), Op::Check));
  EXPECT_FALSE(unknown.ok);
  EXPECT_NE(unknown.error.find("not registered"), std::string::npos);

  ASSERT_TRUE(agent.handle(addRequest("web", 1)).ok);
  auto ok = agent.handle(withOp(addRequest("web", 1), Op::Check));
  EXPECT_TRUE(ok.ok) << ok.error;

  auto other = withOp(addRequest("web", 1), Op::Check);
  other.ips = {"10.1.0.99"};
  auto mismatch = agent.handle(other);
  EXPECT_FALSE(mismatch.ok);
  EXPECT_NE(mismatch.error.find("addresses differ"), std::string::npos);

  const auto id = harness->compiler.lastNode().endpoints.at(0).id;
  ASSERT_TRUE(backend.detach({id, "slweb", 101}).ok());  // someone removed the programs
  auto detached = agent.handle(withOp(addRequest("web", 1), Op::Check));
  EXPECT_FALSE(detached.ok);
  EXPECT_NE(detached.error.find("not attached"), std::string::npos);
}

TEST_F(NodeAgentTest, AttachFailureIsReportedAndNothingIsRegistered) {
  auto& agent = start();
  feed(agent, snapshot({pod("default", "web")}));
  backend.setFailAttach(true);
  auto reply = agent.handle(addRequest("web", 1));
  EXPECT_FALSE(reply.ok);
  EXPECT_NE(reply.error.find("fake attach failure"), std::string::npos);
  EXPECT_EQ(agent.stats().endpoints, 0u);
}

TEST_F(NodeAgentTest, RejectsInvalidRegistrations) {
  auto& agent = start();
  feed(agent, snapshot({}));
  auto r = addRequest("web", 1);
  r.ips = {"10.1.0.300"};
  auto reply = agent.handle(r);
  EXPECT_FALSE(reply.ok);
  EXPECT_NE(reply.error.find("ips[0]"), std::string::npos) << reply.error;
  r = addRequest("web", 1);
  r.containerId.clear();
  EXPECT_FALSE(agent.handle(r).ok);
  EXPECT_EQ(agent.stats().endpoints, 0u);
}

TEST_F(NodeAgentTest, FailedApplyFailsTheAddThenRetriesWithAFullSync) {
  auto& agent = start();
  feed(agent, snapshot({pod("default", "web")}));
  ASSERT_TRUE(waitFor([&] { return agent.ready(); }));
  backend.setFailApply(true);
  auto reply = agent.handle(addRequest("web", 1));
  EXPECT_FALSE(reply.ok);
  EXPECT_NE(reply.error.find("apply policy"), std::string::npos) << reply.error;
  EXPECT_EQ(agent.stats().syncErrors, 1u);
  const int syncsBefore = backend.syncs();
  backend.setFailApply(false);
  clock.advance(1s);
  agent.wake();
  ASSERT_TRUE(waitFor([&] { return backend.syncs() == syncsBefore + 1; }));
  // The endpoint stayed attached (fail closed) and now has its policy.
  const auto id = harness->compiler.lastNode().endpoints.at(0).id;
  EXPECT_TRUE(backend.policies().contains(id));
}

TEST_F(NodeAgentTest, ConcurrentAddsAllSucceedWithDistinctIds) {
  auto& agent = start();
  std::vector<model::Pod> pods;
  for (int i = 1; i <= 24; ++i) pods.push_back(pod("default", "p" + std::to_string(i)));
  feed(agent, snapshot(pods));
  std::vector<std::future<endpoint_api::Reply>> replies;
  for (int i = 1; i <= 24; ++i)
    replies.push_back(submit(agent, addRequest("p" + std::to_string(i), i)));
  for (auto& f : replies) {
    ASSERT_TRUE(answeredWithin(f, 10s));
    auto r = f.get();
    EXPECT_TRUE(r.ok) << r.error;
  }
  auto node = harness->compiler.lastNode();
  ASSERT_EQ(node.endpoints.size(), 24u);
  std::set<compiler::EndpointId> ids;
  for (const auto& e : node.endpoints) ids.insert(e.id);
  EXPECT_EQ(ids.size(), 24u);
  // Batched: fewer compiles than requests is allowed, never more than requests + snapshot.
  EXPECT_LE(harness->compiler.updates(), 26);
}

TEST_F(NodeAgentTest, RestartRecoversEndpointsDropsVanishedOnesAndSyncs) {
  compiler::EndpointId webId = 0, dbId = 0;
  {
    auto& agent = start();
    feed(agent, snapshot({pod("default", "web"), pod("default", "db")}));
    ASSERT_TRUE(agent.handle(addRequest("web", 1)).ok);
    ASSERT_TRUE(agent.handle(addRequest("db", 2)).ok);
    for (const auto& e : harness->compiler.lastNode().endpoints) {
      (e.podName == "web" ? webId : dbId) = e.id;
    }
    agent.stop();
    EXPECT_FALSE(std::filesystem::exists(file(kReadyFile)));
    harness.reset();
  }
  host.removeLink("sldb");  // the db pod went away while the daemon was down

  FakeBackend second;
  AgentHarness restarted(dir.path(), second, host, clock);
  ASSERT_TRUE(restarted.agent->start().ok());
  EXPECT_TRUE(second.isAttached(webId));
  EXPECT_FALSE(second.isAttached(dbId));
  EXPECT_EQ(second.syncs(), 0);  // nothing is written before the first snapshot
  feed(*restarted.agent, snapshot({pod("default", "web"), pod("default", "api")}));
  ASSERT_TRUE(waitFor([&] { return restarted.agent->ready(); }));
  EXPECT_EQ(second.syncs(), 1);
  EXPECT_EQ(second.applies(), 0);
  auto policies = second.policies();
  EXPECT_TRUE(policies.contains(webId));
  EXPECT_FALSE(policies.contains(dbId));
  EXPECT_EQ(restarted.agent->stats().endpoints, 1u);
  EXPECT_EQ(sluice::testing::slurp(file(kRegistryFile)).find("ctr-db"), std::string::npos);
  // A new endpoint gets a fresh id.
  ASSERT_TRUE(restarted.agent->handle(addRequest("api", 3)).ok);
  for (const auto& e : restarted.compiler.lastNode().endpoints) {
    if (e.podName == "api") {
      EXPECT_GT(e.id, dbId);
    }
  }
}

TEST_F(NodeAgentTest, CorruptRegistryStartsEmpty) {
  sluice::testing::writeText(file(kRegistryFile), "garbage");
  auto& agent = start();
  feed(agent, snapshot({}));
  ASSERT_TRUE(waitFor([&] { return agent.ready(); }));
  EXPECT_EQ(agent.stats().endpoints, 0u);
  bool kept = false;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    kept |= e.path().filename().string().starts_with("endpoints.json.corrupt-");
  }
  EXPECT_TRUE(kept);
}

TEST_F(NodeAgentTest, StopAnswersWaitingRequests) {
  auto& agent = start(60s);
  feed(agent, snapshot({}));
  auto f = submit(agent, addRequest("ghost", 3));
  ASSERT_TRUE(waitFor([&] { return agent.stats().waitingForPod == 1; }));
  agent.stop();
  ASSERT_TRUE(answeredWithin(f, 5s));
  auto r = f.get();
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("shutting down"), std::string::npos);
  EXPECT_FALSE(agent.handle(addRequest("web", 1)).ok);
}

TEST_F(NodeAgentTest, HostAddressChangesAreNoticed) {
  auto& agent = start();
  feed(agent, snapshot({}));
  ASSERT_TRUE(waitFor([&] { return agent.ready(); }));
  host.setAddresses({IpAddr::parse("192.168.1.10").value(), IpAddr::parse("fd00:1::10").value()});
  clock.advance(11s);
  agent.wake();
  ASSERT_TRUE(waitFor([&] { return harness->compiler.lastNode().hostAddresses.size() == 2; }));
}

TEST_F(NodeAgentTest, AnEndpointWhoseVethVanishedWithoutADelIsRemoved) {
  auto& agent = start();
  feed(agent, snapshot({pod("default", "web"), pod("default", "db")}));
  ASSERT_TRUE(agent.handle(addRequest("web", 1)).ok);
  ASSERT_TRUE(agent.handle(addRequest("db", 2)).ok);
  ASSERT_EQ(agent.stats().endpoints, 2u);
  host.removeLink("sldb");
  clock.advance(11s);
  agent.wake();
  ASSERT_TRUE(waitFor([&] { return agent.stats().endpoints == 1; }));
  EXPECT_EQ(sluice::testing::slurp(file(kRegistryFile)).find("ctr-db"), std::string::npos);
  EXPECT_EQ(harness->compiler.lastNode().endpoints.size(), 1u);
  EXPECT_EQ(harness->compiler.lastNode().endpoints[0].podName, "web");
}

TEST_F(NodeAgentTest, MetricsNameRulesAndLatency) {
  auto& agent = start();
  backend.setCounters({{0, 7, 700}});
  feed(agent, snapshot({pod("default", "web")}));
  ASSERT_TRUE(agent.handle(addRequest("web", 1)).ok);
  std::string text = agent.metricsText();
  for (const char* want : {"sluice_ready 1", "sluice_endpoints 1", "sluice_syncs_total ",
                           "sluice_sync_errors_total 0", "sluice_last_sync_duration_seconds ",
                           "sluice_policy_update_latency_seconds_bucket{le=\"+Inf\"} 1",
                           "sluice_policy_update_latency_last_seconds ",
                           "sluice_endpoint_requests_total{op=\"add\",result=\"ok\"} 1",
                           "sluice_rule_packets_total{policy=\"default/"
                           "allow-web\",direction=\"ingress\",rule=\"0\"} 7",
                           "sluice_rule_bytes_total{policy=\"default/"
                           "allow-web\",direction=\"ingress\",rule=\"0\"} 700"}) {
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  }
  auto stats = sluice::testing::slurp(file(kSyncStatsFile));
  EXPECT_NE(stats.find("\"updateLatencyNs\""), std::string::npos) << stats;
}

TEST_F(NodeAgentTest, CorruptRegistryIsRebuiltFromTheDatapath) {
  compiler::EndpointId webId = 0, dbId = 0, ghostId = 0;
  auto pods = [] {
    return snapshot({pod("default", "web", {{"role", "web"}}, {"10.1.0.1"}),
                     pod("default", "db", {{"role", "db"}}, {"10.1.0.2", "fd00::2"}),
                     pod("default", "ghost"), pod("default", "api")});
  };
  {
    auto& agent = start();
    feed(agent, pods());
    ASSERT_TRUE(agent.handle(addRequest("web", 1)).ok);
    ASSERT_TRUE(agent.handle(addRequest("db", 2)).ok);
    ASSERT_TRUE(agent.handle(addRequest("ghost", 3)).ok);
    for (const auto& e : harness->compiler.lastNode().endpoints) {
      (e.podName == "web" ? webId : e.podName == "db" ? dbId : ghostId) = e.id;
    }
    ASSERT_TRUE(backend.policies().at(dbId));
    agent.stop();
    harness.reset();
  }
  // While the daemon is down: the ghost pod goes, and the registry is truncated. The pinned
  // maps (the same FakeBackend) survive.
  host.removeLink("slghost");
  host.setLinkDetails({101, "slweb", "sluice:net:eth0:ctr-web", {}});
  sluice::testing::writeText(file(kRegistryFile), "{\"version\":1,\"nextId\":");

  auto& agent = start();
  EXPECT_TRUE(backend.isAttached(webId));
  EXPECT_TRUE(backend.isAttached(dbId));
  EXPECT_FALSE(backend.isAttached(ghostId));
  feed(agent, pods());
  ASSERT_TRUE(waitFor([&] { return agent.ready(); }));
  EXPECT_EQ(agent.stats().endpoints, 2u);
  // Matched to their pods by address: the db pod is still isolated (same verdicts as before).
  EXPECT_EQ(agent.endpointName(webId), "default/web");
  EXPECT_EQ(agent.endpointName(dbId), "default/db");
  EXPECT_TRUE(backend.policies().at(dbId));
  EXPECT_FALSE(backend.policies().at(webId));

  // CHECK finds web by its container id (from the veth alias).
  auto check = agent.handle(withOp(addRequest("web", 1), Op::Check));
  EXPECT_TRUE(check.ok) << check.error;
  // db's veth has no alias: DEL still finds it by host veth name.
  ASSERT_TRUE(agent.handle(withOp(addRequest("db", 2), Op::Del)).ok);
  EXPECT_FALSE(backend.isAttached(dbId));
  EXPECT_EQ(agent.stats().endpoints, 1u);

  // A new pod never gets an id the datapath held.
  ASSERT_TRUE(agent.handle(addRequest("api", 4)).ok);
  for (const auto& e : harness->compiler.lastNode().endpoints) {
    if (e.podName == "api") {
      EXPECT_GT(e.id, ghostId);
    }
  }
  // The rebuilt registry is persisted and readable.
  Registry reread(file(kRegistryFile));
  auto report = reread.load();
  ASSERT_TRUE(report.ok());
  EXPECT_FALSE(report->problem);
  EXPECT_NE(reread.find("ctr-web", "eth0"), nullptr);
  EXPECT_NE(reread.find("ctr-api", "eth0"), nullptr);
}

TEST_F(NodeAgentTest, UnreadableRegistryIsRebuiltToo) {
  std::filesystem::create_directories(file(kRegistryFile));  // a directory: EISDIR on read
  backend.markAttached({5, "slp5", 105, {IpAddr::parse("10.1.0.5").value()}});
  auto& agent = start();
  feed(agent, snapshot({pod("default", "p5", {}, {"10.1.0.5"})}));
  ASSERT_TRUE(waitFor([&] { return agent.ready(); }));
  EXPECT_EQ(agent.endpointName(5), "default/p5");
}

TEST_F(NodeAgentTest, PinnedEndpointsTheRegistryLacksAreAdoptedAndTheirIdsNeverReused) {
  // A daemon killed between attach and registry save left id 7 pinned on a live veth whose
  // addresses only its host routes tell; id 9 is pinned on a link that is gone.
  backend.markAttached({7, "slp7", 107, {}});
  backend.markAttached({9, "slgone", 109, {}});
  host.setLinkDetails(
      {107, "slp7", "sluice:k8s:pod-net:eth0:ctr-7", {IpAddr::parse("10.1.0.7").value()}});
  auto& agent = start();
  EXPECT_FALSE(backend.isAttached(9));
  feed(agent,
       snapshot({pod("default", "p7", {{"role", "db"}}, {"10.1.0.7"}), pod("default", "web")}));
  ASSERT_TRUE(waitFor([&] { return agent.ready(); }));
  EXPECT_EQ(agent.endpointName(7), "default/p7");
  EXPECT_TRUE(backend.policies().at(7));
  // Found by the container id and ifname of its alias (the network name holds a ':').
  auto check = agent.handle(endpoint_api::Request{
      Op::Check, "ctr-7", "eth0", "/var/run/netns/p7", "slp7", 107, {}, "default", "p7"});
  EXPECT_TRUE(check.ok) << check.error;
  ASSERT_TRUE(agent.handle(addRequest("web", 1)).ok);
  for (const auto& e : harness->compiler.lastNode().endpoints) {
    if (e.podName == "web") {
      EXPECT_GE(e.id, 10u);
    }
  }
}

TEST_F(NodeAgentTest, AddRefusesAnInterfaceThatIsNotAPodVeth) {
  host.addNonVeth("lo");
  host.setPeerNetns("slweb", "/var/run/netns/elsewhere");
  auto& agent = start();
  feed(agent, snapshot({pod("default", "web"), pod("default", "lo")}));
  ASSERT_TRUE(waitFor([&] { return agent.ready(); }));

  auto lo = addRequest("lo", 1);
  lo.hostVeth = "lo";
  auto reply = agent.handle(lo);
  EXPECT_FALSE(reply.ok);
  EXPECT_NE(reply.error.find("interface lo"), std::string::npos) << reply.error;

  reply = agent.handle(addRequest("web", 2));  // its peer lives in another netns
  EXPECT_FALSE(reply.ok);
  EXPECT_NE(reply.error.find("slweb"), std::string::npos) << reply.error;

  for (const auto& c : backend.calls()) EXPECT_FALSE(c.starts_with("attach")) << c;
  EXPECT_EQ(agent.stats().endpoints, 0u);
  EXPECT_FALSE(std::filesystem::exists(file(kRegistryFile)) &&
               sluice::testing::slurp(file(kRegistryFile)).find("ctr-") != std::string::npos);

  // The same veth in the netns it really belongs to is accepted.
  auto ok = addRequest("web", 2);
  ok.netns = "/var/run/netns/elsewhere";
  EXPECT_TRUE(agent.handle(ok).ok);
}

TEST_F(NodeAgentTest, AScrapeWithSlowCountersNeverBlocksAnAdd) {
  auto& agent = start();
  feed(agent, snapshot({pod("default", "web")}));
  ASSERT_TRUE(waitFor([&] { return agent.ready(); }));
  backend.blockCounters();
  auto scrape = std::async(std::launch::async, [&] { return agent.metricsText(); });
  ASSERT_TRUE(backend.waitCountersBlocked(5s));
  auto add = submit(agent, addRequest("web", 1));
  ASSERT_EQ(add.wait_for(5s), std::future_status::ready) << "ADD waited behind the scrape";
  EXPECT_TRUE(add.get().ok);
  EXPECT_EQ(scrape.wait_for(0ms), std::future_status::timeout);
  backend.releaseCounters();
  EXPECT_NE(scrape.get().find("sluice_endpoints 1"), std::string::npos);
}

TEST_F(NodeAgentTest, MetricsExportDropsByReason) {
  backend.setDropCounts({{"policy", 5, 500}, {"spoofed", 3, 180}});
  auto& agent = start();
  feed(agent, snapshot({}));
  std::string text = agent.metricsText();
  for (const char* want :
       {"# TYPE sluice_dropped_packets_total counter", "sluice_datapath_drops_ok 1",
        "sluice_dropped_packets_total{reason=\"policy\"} 5",
        "sluice_dropped_packets_total{reason=\"spoofed\"} 3",
        "sluice_dropped_bytes_total{reason=\"policy\"} 500",
        "sluice_dropped_bytes_total{reason=\"spoofed\"} 180"}) {
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  }
}

}  // namespace
}  // namespace sluice::daemon
