// Policy update latency, event -> enforced, on a simulated node with the real daemon and eBPF
// datapath. For one pod relabel and one policy change (each repeated), the time from the
// manifest write to the daemon's backend apply returning is read from <state-dir>/sync.json, and
// a real probe checks that the verdict actually flipped. The baseline, measured in the same run,
// is a no-op change through the same pipeline (file event, decode, compile, apply; no debounce).
//
//   sudo build/bench/latency/update_latency [--iterations N]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "e2e/harness/cluster.h"

using namespace sluice;
using namespace std::chrono_literals;

namespace {

long long wallNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Sample {
  double latencyMs;    // manifest written -> apply returned
  double pipelineMs;   // compile + apply inside the daemon
};

// Waits for the sync that read the manifests after `writtenNs`.
bool waitSync(const std::filesystem::path& stateDir, long long writtenNs, Sample* out) {
  for (int i = 0; i < 2000; ++i) {
    std::ifstream f(stateDir / "sync.json");
    auto j = nlohmann::json::parse(f, nullptr, false);
    if (!j.is_discarded() && j.value("readWallNs", 0LL) >= writtenNs) {
      out->latencyMs = (j.value("appliedWallNs", 0LL) - writtenNs) / 1e6;
      out->pipelineMs = (j.value("compileNs", 0LL) + j.value("applyNs", 0LL)) / 1e6;
      return true;
    }
    std::this_thread::sleep_for(1ms);
  }
  return false;
}

double pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

std::string policy(int port) {
  return R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: server, namespace: bench}
spec:
  podSelector: {matchLabels: {role: server}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
    ports: [{port: )" + std::to_string(port) + "}]\n";
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 15;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--iterations" && i + 1 < argc) iterations = std::atoi(argv[++i]);
  }
  if (geteuid() != 0 || iterations < 1 || iterations > 1000) {
    std::fprintf(stderr, "usage (as root): update_latency [--iterations N]\n");
    return 2;
  }
  e2e::ClusterOptions opts;
  opts.nodes = 1;
  opts.binaryDir = std::filesystem::canonical("/proc/self/exe").parent_path().parent_path().parent_path();
  auto created = e2e::SimCluster::create(opts);
  if (!created.ok()) {
    std::fprintf(stderr, "%s\n", created.error().message.c_str());
    return 1;
  }
  auto& c = **created;
  auto check = [](const Status& st) {
    if (!st.ok()) {
      std::fprintf(stderr, "update_latency: %s\n", st.error().message.c_str());
      std::exit(1);
    }
  };
  check(c.writeManifest("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n"));
  check(c.writeManifest("policies.yaml", policy(80)));
  // 20 pods: one server, clients, and bystanders, so the compile has something to chew on.
  for (int i = 0; i < 20; ++i) {
    std::string role = i == 0 ? "server" : i < 10 ? "client" : "other";
    auto p = c.addPod({"bench", "p" + std::to_string(i), 0, {{"role", role}}, {}, ""}, {80, 81}, {});
    if (!p.ok()) {
      std::fprintf(stderr, "%s\n", p.error().message.c_str());
      return 1;
    }
  }
  check(c.waitSynced());
  const auto stateDir = c.runDir() / "n0" / "state";
  const auto* server = c.pod("bench/p0");
  const std::string bystanderNs = "/run/netns/" + c.pod("bench/p15")->netnsName;
  const std::string clientNs = "/run/netns/" + c.pod("bench/p1")->netnsName;

  std::vector<double> pod, pol, noop, pipePod, pipePol;
  int wrongVerdicts = 0;
  for (int i = 0; i < iterations; ++i) {
    Sample s{};
    // Baseline: a change that alters nothing the policy depends on.
    long long t = wallNs();
    check(c.writeManifest("noop.yaml", "# noop " + std::to_string(i) + "\n"));
    if (!waitSync(stateDir, t, &s)) return 1;
    noop.push_back(s.latencyMs);

    // Pod change: bystander p15 becomes a client (allowed), or back (denied).
    bool makeClient = i % 2 == 0;
    t = wallNs();
    check(c.relabelPod("bench", "p15", {{"role", makeClient ? "client" : "other"}}));
    if (!waitSync(stateDir, t, &s)) return 1;
    pod.push_back(s.latencyMs);
    pipePod.push_back(s.pipelineMs);
    auto r = c.probeFromNetns(bystanderNs, server->ips[0], 80, "TCP", 300);
    wrongVerdicts += !r.ok() || (*r == "ok") != makeClient;

    // Policy change: the allowed port moves between 80 and 81.
    int port = i % 2 == 0 ? 81 : 80;
    t = wallNs();
    check(c.writeManifest("policies.yaml", policy(port)));
    if (!waitSync(stateDir, t, &s)) return 1;
    pol.push_back(s.latencyMs);
    pipePol.push_back(s.pipelineMs);
    auto r80 = c.probeFromNetns(clientNs, server->ips[0], 80, "TCP", 300);
    wrongVerdicts += !r80.ok() || (*r80 == "ok") != (port == 80);
  }
  std::printf("policy update latency, event (manifest written) -> enforced (backend apply returned)\n");
  std::printf("1 node, 20 pods, %d iterations each; no source debounce (default)\n\n", iterations);
  std::printf("%-28s %10s %10s %16s %8s\n", "change", "median ms", "p99 ms", "compile+apply ms",
              "/noop");
  double base = pct(noop, 0.5);
  std::printf("%-28s %10.2f %10.2f %16s %8.2f\n", "no-op (baseline)", base, pct(noop, 0.99), "-", 1.0);
  std::printf("%-28s %10.2f %10.2f %16.3f %8.2f\n", "pod relabel", pct(pod, 0.5), pct(pod, 0.99),
              pct(pipePod, 0.5), pct(pod, 0.5) / base);
  std::printf("%-28s %10.2f %10.2f %16.3f %8.2f\n", "policy change", pct(pol, 0.5), pct(pol, 0.99),
              pct(pipePol, 0.5), pct(pol, 0.5) / base);
  std::printf("\nverdicts checked with real packets after each change: %d wrong of %d\n",
              wrongVerdicts, 2 * iterations);
  return wrongVerdicts == 0 ? 0 : 1;
}
