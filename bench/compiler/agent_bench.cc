// The daemon path of a cluster change: source Update -> NodeAgent (cluster store, net change set)
// -> IncrementalCompiler (ChangeSet) -> backend apply, at scale, against the path it replaced,
// measured in the same run: the whole model handed to Compiler::update(cluster, node), which
// re-detects what changed by comparing every pod.
//
//   build/bench/compiler/agent_bench [--pods 100000] [--policies 10000] [--namespaces 5000]
//                                    [--local 110] [--rounds 101]
//
// Reported per event kind (pod add, relabel, delete; policy change): the agent's own figures,
// median and p99 over the rounds: event -> apply returned (Update::eventSeen is stamped when the
// event is handed to the agent, as a source does on receipt) and compile + apply. Also: initial
// compile + full sync (first Update -> ready). The backend is the in-memory fake of the daemon
// tests (no kernel): the datapath's own cost is bench/datapath's.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "bench/compiler/synthetic.h"
#include "policyd/daemon/node_agent.h"
#include "tests/daemon/fake_backend.h"
#include "tests/daemon/fakes.h"

namespace {

using namespace sluice;
using Steady = std::chrono::steady_clock;

double ms(std::chrono::nanoseconds d) { return static_cast<double>(d.count()) / 1e6; }

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

struct Series {
  std::vector<double> latency;  // event handed to the agent -> apply returned
  std::vector<double> sync;     // compile + apply
};

}  // namespace

int main(int argc, char** argv) {
  bench::Options o;
  o.pods = 100000;
  o.policies = 10000;
  o.namespaces = 5000;
  o.rounds = 101;
  for (int i = 1; i + 1 < argc; i += 2) {
    const int v = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--pods")) {
      o.pods = v;
    } else if (!std::strcmp(argv[i], "--policies")) {
      o.policies = v;
    } else if (!std::strcmp(argv[i], "--namespaces")) {
      o.namespaces = v;
    } else if (!std::strcmp(argv[i], "--local")) {
      o.local = v;
    } else if (!std::strcmp(argv[i], "--rounds")) {
      o.rounds = v;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--pods N] [--policies N] [--namespaces N] [--local N] [--rounds "
                   "N]\n",
                   argv[0]);
      return 2;
    }
  }
  spdlog::set_level(spdlog::level::warn);  // one info line per sync would dominate
  bench::Synthetic s = bench::build(o);

  char tmpl[] = "/tmp/sluice-agent-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string stateDir = tmpl;
  daemon::testing::FakeBackend backend;
  daemon::testing::FakeHostNetwork host;
  host.setAddresses(s.node.hostAddresses);
  daemon::SteadyClock clock;
  auto compiler = daemon::makeIncrementalCompiler();
  daemon::AgentOptions ao;
  ao.nodeName = "local";
  ao.stateDir = stateDir;
  daemon::NodeAgent agent(ao, backend, *compiler, host, clock);
  if (auto st = agent.start(); !st.ok()) {
    std::fprintf(stderr, "agent start: %s\n", st.error().message.c_str());
    return 1;
  }

  // Initial state: one Update with every object, as the kube source delivers its first lists.
  source::Update initial;
  initial.changes.namespaceUpserts = s.cluster.namespaces;
  initial.changes.podUpserts = s.cluster.pods;
  initial.changes.policyUpserts = s.cluster.policies;
  initial.initialComplete = true;
  const auto t0 = Steady::now();
  initial.eventSeen = t0;
  agent.onUpdate(std::move(initial));
  while (!agent.ready()) std::this_thread::sleep_for(std::chrono::microseconds(200));
  const double initialMs = ms(Steady::now() - t0);

  // The local endpoints, registered as the CNI plugin does.
  for (size_t i = 0; i < s.node.endpoints.size(); ++i) {
    const auto& ep = s.node.endpoints[i];
    endpoint_api::Request r;
    r.op = endpoint_api::Op::Add;
    r.containerId = "ctr-" + ep.podName;
    r.ifname = "eth0";
    r.netns = "/var/run/netns/" + ep.podName;
    r.hostVeth = "sl" + std::to_string(i);
    r.hostIfindex = 100 + static_cast<int>(i);
    for (const auto& a : ep.ips) r.ips.push_back(a.toString());
    r.podNamespace = ep.podNamespace;
    r.podName = ep.podName;
    host.addLink(r.hostVeth);
    if (auto reply = agent.handle(r); !reply.ok) {
      std::fprintf(stderr, "add %s: %s\n", ep.podName.c_str(), reply.error.c_str());
      return 1;
    }
  }

  // One event through the agent; waits for its sync and reads the agent's own figures.
  auto run = [&](source::Changes changes, Series& out) {
    const uint64_t before = agent.stats().syncs;
    source::Update u;
    u.changes = std::move(changes);
    u.eventSeen = Steady::now();
    agent.onUpdate(std::move(u));
    // Sleeps rather than spins: on a small machine a spinning waiter takes the runner's core.
    while (agent.stats().syncs == before)
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    auto st = agent.stats();
    out.latency.push_back(ms(st.lastLatency));
    out.sync.push_back(ms(st.lastSyncDuration));
  };
  // A remote pod that several local policies select changes app, and back; a pod added and
  // deleted; a selector policy that selects local endpoints changes its port, and back.
  model::Pod pod = s.cluster.pods[static_cast<size_t>(o.pods / 2 + 3)];
  const std::string oldApp = pod.labels["app"];
  model::Pod added = s.cluster.pods[static_cast<size_t>(o.pods / 2 + 7)];
  added.name = "bench-added";
  added.ips = {IpAddr::v4((11u << 24) | 7u)};
  model::NetworkPolicy pol = s.cluster.policies[2];
  Series add, relabel, del, policy;
  for (int r = 0; r < o.rounds; ++r) {
    source::Changes c;
    pod.labels["app"] = r % 2 ? oldApp : "app-other";
    c.podUpserts.push_back(pod);
    run(std::move(c), relabel);
    c = {};
    c.podUpserts.push_back(added);
    run(std::move(c), add);
    c = {};
    c.podDeletes.push_back(added.key());
    run(std::move(c), del);
    c = {};
    pol.ingress[0].ports[0].port = static_cast<uint16_t>(r % 2 ? 5432 : 5433);
    c.policyUpserts.push_back(pol);
    run(std::move(c), policy);
  }
  agent.stop();

  // Baseline, same run: the path this replaced. The agent replaced its model with each snapshot
  // and the compiler compared every pod and policy with the ones it held.
  compiler::Compiler snapshotCompiler;
  snapshotCompiler.update(s.cluster, s.node);
  model::Pod& snapPod = s.cluster.pods[static_cast<size_t>(o.pods / 2 + 3)];
  std::vector<double> baseline;
  for (int r = 0; r < std::min(o.rounds, 15); ++r) {
    snapPod.labels["app"] = r % 2 ? oldApp : "app-other";
    const auto b0 = Steady::now();
    snapshotCompiler.update(s.cluster, s.node);
    baseline.push_back(ms(Steady::now() - b0));
  }
  const double base = percentile(baseline, 0.5);

  std::printf("agent_bench --pods %d --policies %d --namespaces %d --local %d --rounds %d\n",
              o.pods, o.policies, o.namespaces, o.local, o.rounds);
  std::printf("initial state -> ready (store, first compile, full sync)  %9.1f ms\n", initialMs);
  std::printf("baseline: snapshot update, one pod relabel (compiler only)  median %8.3f ms\n",
              base);
  auto row = [&](const char* what, const Series& v) {
    std::printf(
        "daemon path: %-18s event->applied median %7.3f ms  p99 %7.3f ms   compile+apply "
        "median %7.3f ms  p99 %7.3f ms   baseline/this = %.0fx\n",
        what, percentile(v.latency, 0.5), percentile(v.latency, 0.99), percentile(v.sync, 0.5),
        percentile(v.sync, 0.99), base / percentile(v.latency, 0.5));
  };
  row("one pod add", add);
  row("one pod relabel", relabel);
  row("one pod delete", del);
  row("one policy change", policy);
  std::error_code ec;
  std::filesystem::remove_all(stateDir, ec);
  return 0;
}
