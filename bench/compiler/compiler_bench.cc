// Compiler update latency: a full compile (cold caches) against an incremental update for one
// pod relabel and one policy change, on a synthetic cluster, measured side by side in one run
// and reported as ratios; then the same events (and a pod add and delete, an ipBlock policy
// change) as change sets (Compiler::update(ChangeSet)), against the no-op snapshot update.
//
//   build/bench/compiler/compiler_bench [--pods 10000] [--policies 1000] [--namespaces 100]
//                                       [--local 110] [--rounds 9]
//
// The cluster follows bench/scale/gen_dump.py's shapes: deployments of ~10 replicas (shared
// labels), every 20th pod a StatefulSet member with a unique pod-name label, policies cycling
// through default deny, namespace-selected named port, matchExpressions, egress DNS, egress
// ipBlock with except and port ranges. One node holds `--local` endpoints.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench/compiler/synthetic.h"
#include "policyd/compiler/compiler.h"

namespace {

using namespace sluice;
using bench::build;
using bench::Options;
using bench::Synthetic;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
double timeMs(F&& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const int v = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--pods"))
      o.pods = v;
    else if (!std::strcmp(argv[i], "--policies"))
      o.policies = v;
    else if (!std::strcmp(argv[i], "--namespaces"))
      o.namespaces = v;
    else if (!std::strcmp(argv[i], "--local"))
      o.local = v;
    else if (!std::strcmp(argv[i], "--rounds"))
      o.rounds = v;
    else {
      std::fprintf(
          stderr, "usage: %s [--pods N] [--policies N] [--namespaces N] [--local N] [--rounds N]\n",
          argv[0]);
      return 2;
    }
  }
  Synthetic s = build(o);

  std::vector<double> full, relabel, policy, noop;
  size_t relabelEndpoints = 0, policyEndpoints = 0, relabelClasses = 0, policyClasses = 0;
  compiler::State fullState;
  for (int r = 0; r < std::min(o.rounds, 9); ++r) {
    full.push_back(timeMs([&] { fullState = compiler::compile(s.cluster, s.node); }));
  }
  compiler::Compiler c;
  c.update(s.cluster, s.node);
  // A remote pod that several local policies select changes app; then back.
  model::Pod& pod = s.cluster.pods[static_cast<size_t>(o.pods / 2 + 3)];
  const std::string oldApp = pod.labels["app"];
  // A selector-based policy that selects local endpoints changes its port; then back.
  model::NetworkPolicy& pol = s.cluster.policies[2];
  for (int r = 0; r < o.rounds; ++r) {
    noop.push_back(timeMs([&] { c.update(s.cluster, s.node); }));
    pod.labels["app"] = r % 2 ? oldApp : "app-other";
    relabel.push_back(timeMs([&] { c.update(s.cluster, s.node); }));
    relabelEndpoints += c.lastStats().endpointsRecomputed;
    relabelClasses += c.lastStats().classesRecomputed;
    pol.ingress[0].ports[0].port = static_cast<uint16_t>(r % 2 ? 5432 : 5433);
    policy.push_back(timeMs([&] { c.update(s.cluster, s.node); }));
    policyEndpoints += c.lastStats().endpointsRecomputed;
    policyClasses += c.lastStats().classesRecomputed;
  }
  // The change-set seam: the same events named by the caller instead of re-detected. Each is
  // reported against the no-op snapshot update above (what every event costs without it).
  std::vector<double> csNoop, csRelabel, csAdd, csDelete, csPolicy, csIpBlock;
  model::Pod& moved = s.cluster.pods[static_cast<size_t>(o.pods / 2 + 7)];
  model::NetworkPolicy* blockPol = nullptr;  // an egress ipBlock policy (k % 6 == 4)
  for (auto& p : s.cluster.policies) {
    if (!p.egress.empty() && !p.egress[0].peers.empty() && p.egress[0].peers[0].ipBlock) {
      blockPol = &p;
      break;
    }
  }
  auto one = [&](auto fill) {
    compiler::ChangeSet cs;
    fill(cs);
    return timeMs([&] { c.update(cs); });
  };
  for (int r = 0; r < o.rounds; ++r) {
    one([](compiler::ChangeSet&) {});
    csNoop.push_back(one([](compiler::ChangeSet&) {}));
    pod.labels["app"] = r % 2 ? oldApp : "app-other";
    csRelabel.push_back(one([&](compiler::ChangeSet& cs) { cs.podUpserts.push_back(pod); }));
    csDelete.push_back(one([&](compiler::ChangeSet& cs) { cs.podDeletes.push_back(moved.key()); }));
    csAdd.push_back(one([&](compiler::ChangeSet& cs) { cs.podUpserts.push_back(moved); }));
    pol.ingress[0].ports[0].port = static_cast<uint16_t>(r % 2 ? 5432 : 5433);
    csPolicy.push_back(one([&](compiler::ChangeSet& cs) { cs.policyUpserts.push_back(pol); }));
    if (blockPol) {
      blockPol->egress[0].ports[0].port = static_cast<uint16_t>(r % 2 ? 443 : 444);
      csIpBlock.push_back(
          one([&](compiler::ChangeSet& cs) { cs.policyUpserts.push_back(*blockPol); }));
    }
  }
  // The change sets must have brought the compiler to the state a full compile gives.
  {
    compiler::State want = compiler::compile(s.cluster, s.node);
    c.update(s.cluster, s.node);
    if (!c.update(s.cluster, s.node).empty()) {
      std::fprintf(stderr,
                   "compiler_bench: a snapshot update after the change sets was not empty\n");
      return 1;
    }
    if (want.endpoints.size() != c.state().endpoints.size() ||
        want.classes.size() != c.state().classes.size()) {
      std::fprintf(stderr, "compiler_bench: change-set state differs from a full compile\n");
      return 1;
    }
  }

  size_t entries = 0;
  for (const auto& [id, ep] : fullState.endpoints) entries += ep.entries.size();
  std::set<compiler::ClassId> classes;
  for (const auto& [p, cls] : fullState.classes) classes.insert(cls);

  const double f = median(full);
  std::printf("compiler_bench --pods %d --policies %d --namespaces %d --local %d --rounds %d\n",
              o.pods, o.policies, o.namespaces, o.local, o.rounds);
  std::printf(
      "state: %zu class-map entries, %zu classes, %zu endpoints, %zu allow entries, %zu rules\n",
      fullState.classes.size(), classes.size(), fullState.endpoints.size(), entries,
      fullState.rules.size());
  std::printf("full compile            median %9.3f ms   1.00x\n", f);
  std::printf("no-change update        median %9.3f ms   full/incremental = %.1fx\n", median(noop),
              f / median(noop));
  std::printf(
      "one pod relabel         median %9.3f ms   full/incremental = %.1fx  (%.1f endpoints, %.1f "
      "classes recomputed per update)\n",
      median(relabel), f / median(relabel), double(relabelEndpoints) / o.rounds,
      double(relabelClasses) / o.rounds);
  std::printf(
      "one policy change       median %9.3f ms   full/incremental = %.1fx  (%.1f endpoints, %.1f "
      "classes recomputed per update)\n",
      median(policy), f / median(policy), double(policyEndpoints) / o.rounds,
      double(policyClasses) / o.rounds);
  const double n = median(noop);
  auto row = [&](const char* what, const std::vector<double>& v) {
    if (v.empty()) return;
    std::printf("change set: %-18s median %9.3f ms   no-op snapshot/this = %.1fx\n", what,
                median(v), n / median(v));
  };
  row("no-op", csNoop);
  row("one pod relabel", csRelabel);
  row("one pod add", csAdd);
  row("one pod delete", csDelete);
  row("one policy change", csPolicy);
  row("one ipBlock policy", csIpBlock);
  return 0;
}
