// A NodeAgent on a temp state dir with a fake backend, compiler and host network, a manual
// clock, and builders for snapshots and requests.
#pragma once

#include <gtest/gtest.h>

#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "policyd/daemon/clock.h"
#include "policyd/daemon/node_agent.h"
#include "tests/daemon/fake_backend.h"
#include "tests/daemon/fakes.h"
#include "tests/daemon/test_util.h"

namespace sluice::daemon::testing {

inline model::Pod pod(const std::string& ns, const std::string& name, model::Labels labels = {},
                      std::vector<std::string> ips = {}) {
  model::Pod p;
  p.namespace_ = ns;
  p.name = name;
  p.labels = std::move(labels);
  for (const auto& s : ips) p.ips.push_back(IpAddr::parse(s).value());
  return p;
}

// A whole cluster as a test writes it.
struct FullState {
  model::Cluster cluster;
  std::chrono::steady_clock::time_point eventSeen;
  int64_t readWallNs = 0;
};

inline FullState snapshot(std::vector<model::Pod> pods,
                          std::vector<model::NetworkPolicy> policies = {}) {
  FullState s;
  s.cluster.namespaces.push_back(model::Namespace{"default", {}, {}});
  s.cluster.pods = std::move(pods);
  s.cluster.policies = std::move(policies);
  s.eventSeen = std::chrono::steady_clock::now();
  s.readWallNs = 1234567890123;
  return s;
}

// Hands `state` to the agent the way a source does: one Update that upserts every object (the
// agent's store drops those that did not change) and deletes what the previous state fed to
// this agent had and this one lacks. Marked initialComplete (harmless after the first).
inline void feed(NodeAgent& agent, FullState state) {
  static std::mutex mu;
  static std::map<const NodeAgent*, model::Cluster> previous;
  source::Update u;
  u.initialComplete = true;
  u.eventSeen = state.eventSeen;
  u.readWallNs = state.readWallNs;
  u.errors.emplace();
  {
    std::lock_guard lock(mu);
    const model::Cluster& before = previous[&agent];
    std::set<std::string> keep;
    for (const auto& p : state.cluster.pods) keep.insert(p.key());
    for (const auto& p : before.pods)
      if (!keep.contains(p.key())) u.changes.podDeletes.push_back(p.key());
    keep.clear();
    for (const auto& p : state.cluster.policies) keep.insert(p.key());
    for (const auto& p : before.policies)
      if (!keep.contains(p.key())) u.changes.policyDeletes.push_back(p.key());
    keep.clear();
    for (const auto& n : state.cluster.namespaces) keep.insert(n.name);
    for (const auto& n : before.namespaces)
      if (!keep.contains(n.name)) u.changes.namespaceDeletes.push_back(n.name);
    previous[&agent] = state.cluster;
  }
  u.changes.namespaceUpserts = std::move(state.cluster.namespaces);
  u.changes.podUpserts = std::move(state.cluster.pods);
  u.changes.policyUpserts = std::move(state.cluster.policies);
  agent.onUpdate(std::move(u));
}

inline endpoint_api::Request addRequest(const std::string& name, int n) {
  endpoint_api::Request r;
  r.op = endpoint_api::Op::Add;
  r.containerId = "ctr-" + name;
  r.ifname = "eth0";
  r.netns = "/var/run/netns/" + name;
  r.hostVeth = "sl" + name;
  r.hostIfindex = 100 + n;
  r.ips = {"10.1.0." + std::to_string(n), "fd00::" + std::to_string(n)};
  r.podNamespace = "default";
  r.podName = name;
  return r;
}

inline endpoint_api::Request withOp(endpoint_api::Request r, endpoint_api::Op op) {
  r.op = op;
  return r;
}

class AgentHarness {
 public:
  explicit AgentHarness(const std::string& stateDir, FakeBackend& backend, FakeHostNetwork& host,
                        ManualClock& clock,
                        std::chrono::milliseconds podWait = std::chrono::seconds(2)) {
    AgentOptions o;
    o.nodeName = "node-a";
    o.stateDir = stateDir;
    o.podWait = podWait;
    o.retryInterval = std::chrono::milliseconds(500);
    o.requestTimeout = std::chrono::seconds(10);
    agent = std::make_unique<NodeAgent>(o, backend, compiler, host, clock);
  }
  FakeCompiler compiler;
  std::unique_ptr<NodeAgent> agent;
};

// Runs a request on its own thread (it blocks until the agent answers).
inline std::future<endpoint_api::Reply> submit(NodeAgent& agent, endpoint_api::Request r) {
  return std::async(std::launch::async, [&agent, r] { return agent.handle(r); });
}

inline bool answeredWithin(std::future<endpoint_api::Reply>& f, std::chrono::milliseconds d) {
  return f.wait_for(d) == std::future_status::ready;
}

}  // namespace sluice::daemon::testing
