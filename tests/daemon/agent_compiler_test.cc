// The node agent with the real incremental compiler (fake backend): a policy that selects a
// registered endpoint isolates it, and the fake backend sees the change through apply().
#include <gtest/gtest.h>

#include "policyd/daemon/node_agent.h"
#include "policyd/daemon/policy_compiler.h"
#include "tests/daemon/agent_fixture.h"

namespace sluice::daemon {
namespace {

using namespace std::chrono_literals;
using sluice::testing::TempDir;
using sluice::testing::waitFor;
using namespace sluice::daemon::testing;

model::NetworkPolicy denyIngress(const std::string& app) {
  model::NetworkPolicy p;
  p.namespace_ = "default";
  p.name = "deny-" + app;
  p.podSelector.matchLabels = {{"app", app}};
  p.affectsIngress = true;
  return p;
}

TEST(AgentWithCompilerTest, PolicyIsolatesRegisteredEndpointAndLabelsComeFromThePod) {
  TempDir dir;
  FakeBackend backend;
  FakeHostNetwork host;
  host.addLink("slweb");
  ManualClock clock;
  auto compiler = makeIncrementalCompiler();
  AgentOptions o;
  o.nodeName = "node-a";
  o.stateDir = dir.path();
  NodeAgent agent(o, backend, *compiler, host, clock);
  ASSERT_TRUE(agent.start().ok());

  feed(agent, snapshot({pod("default", "web", {{"app", "web"}})}));
  auto reply = agent.handle(addRequest("web", 1));
  ASSERT_TRUE(reply.ok) << reply.error;
  ASSERT_EQ(compiler->state().endpoints.size(), 1u);
  const auto id = compiler->state().endpoints.begin()->first;
  EXPECT_FALSE(compiler->state().endpoints.at(id).ingressIsolated);
  // The registration's addresses are classified (host routes for the pod).
  EXPECT_TRUE(compiler->state().classes.contains(Prefix::host(IpAddr::parse("10.1.0.1").value())));

  feed(agent, snapshot({pod("default", "web", {{"app", "web"}})}, {denyIngress("web")}));
  ASSERT_TRUE(waitFor([&] {
    auto p = backend.policies();
    return p.contains(id) && p.at(id);
  }));
  EXPECT_TRUE(compiler->state().endpoints.at(id).ingressIsolated);

  // Relabel the pod: the policy no longer selects it.
  feed(agent, snapshot({pod("default", "web", {{"app", "other"}})}, {denyIngress("web")}));
  ASSERT_TRUE(waitFor([&] { return !backend.policies().at(id); }));
  agent.stop();
}

}  // namespace
}  // namespace sluice::daemon
