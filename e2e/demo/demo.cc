// sluice-demo: the local demo. Builds a simulated cluster of network-namespace nodes, creates the
// pods of a scenario directory with the real CNI plugin, lets each node's sluice-policyd enforce
// the scenario's NetworkPolicies with eBPF or nftables, and prints, per port, the reachability
// predicted by `sluicectl matrix` beside the one measured with real packets. Exit 0 when they
// agree.
//
//   sluice-demo [--nodes N] [--datapath bpf|nft] [--probe PORT/PROTO]... SCENARIO_DIR
//
// --datapath defaults to $SLUICE_E2E_DATAPATH, else bpf.
//
// Scenario files holding Pods are turned into real pods (spec.nodeName n0/n1/... picks the
// node, otherwise round-robin); every other file (Namespaces, NetworkPolicies) is applied as is.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "e2e/harness/cluster.h"
#include "policyd/ctl/matrix_render.h"
#include "policyd/model/decode.h"

namespace fs = std::filesystem;
using namespace sluice;

namespace {

struct ProbeSpec {
  uint16_t port;
  std::string protocol;
};

std::string readAll(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The one matrix convention (policyd/ctl/matrix_render.h): + allowed, X denied; a pod to itself
// is not probed (its traffic stays on its own loopback, no CNI sees it), and a measured cell
// that differs from the prediction is marked !.
ctl::MarkGrid gridOf(const e2e::Matrix& m, const e2e::Matrix* predicted) {
  ctl::MarkGrid g;
  g.labels = m.pods;
  const size_t n = m.pods.size();
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      const bool v = m.allowed[i][j];
      const bool differs = predicted && i < predicted->allowed.size() &&
                           j < predicted->allowed[i].size() && predicted->allowed[i][j] != v;
      g.cells.push_back(i == j    ? ctl::Mark::NotProbed
                        : differs ? ctl::Mark::Mismatch
                        : v       ? ctl::Mark::Allowed
                                  : ctl::Mark::Denied);
    }
  }
  return g;
}

void printSideBySide(const e2e::Matrix& predicted, const e2e::Matrix& measured) {
  const ctl::MarkGrid p = gridOf(predicted, nullptr), m = gridOf(measured, &predicted);
  std::ostringstream index, ga, gb;
  ctl::renderPodIndex(index, measured.pods);
  ctl::renderGridText(ga, p);
  ctl::renderGridText(gb, m);
  std::printf("%s\n", index.str().c_str());
  const std::string a = ga.str();
  std::istringstream la(a), lb(gb.str());
  std::string x, y;
  size_t width = std::string("predicted (sluicectl matrix)").size();
  for (std::istringstream t(a); std::getline(t, x);) width = std::max(width, x.size());
  std::printf("%-*s   %s\n", static_cast<int>(width), "predicted (sluicectl matrix)",
              "measured (real packets)");
  while (std::getline(la, x) && std::getline(lb, y)) {
    std::printf("%-*s   %s\n", static_cast<int>(width), x.c_str(), y.c_str());
  }
  // One legend for both: the marks either grid holds.
  ctl::MarkGrid both = m;
  both.cells.insert(both.cells.end(), p.cells.begin(), p.cells.end());
  std::printf("%s\n", ctl::legendLine(both).c_str());
}

int usage() {
  std::fprintf(stderr,
               "usage: sluice-demo [--nodes N] [--datapath bpf|nft] [--probe PORT/PROTO]... "
               "SCENARIO_DIR\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int nodes = 2;
  std::string datapath = e2e::ClusterOptions::defaultDatapath();
  std::vector<ProbeSpec> probes;
  std::string scenario;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--nodes" && i + 1 < argc) {
      nodes = std::atoi(argv[++i]);
    } else if (a == "--datapath" && i + 1 < argc) {
      datapath = argv[++i];
      if (datapath != "bpf" && datapath != "nft") return usage();
    } else if (a == "--probe" && i + 1 < argc) {
      std::string p = argv[++i];
      auto slash = p.find('/');
      int port = std::atoi(p.substr(0, slash).c_str());
      std::string proto = slash == std::string::npos ? "TCP" : p.substr(slash + 1);
      if (port <= 0 || port > 65535 || (proto != "TCP" && proto != "UDP")) return usage();
      probes.push_back({static_cast<uint16_t>(port), proto});
    } else if (!a.empty() && a[0] != '-' && scenario.empty()) {
      scenario = a;
    } else {
      return usage();
    }
  }
  if (scenario.empty()) return usage();
  if (probes.empty()) probes = {{80, "TCP"}, {53, "UDP"}};
  if (geteuid() != 0) {
    std::fprintf(stderr, "sluice-demo: needs root (network namespaces, eBPF or nftables)\n");
    return 2;
  }

  // Split the scenario: pod files become real pods, the rest is applied verbatim.
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(scenario)) {
    auto ext = e.path().extension();
    if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json")) {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<model::Pod> pods;
  std::vector<fs::path> applied;
  for (const auto& f : files) {
    auto d = model::decodeText(readAll(f), f.string());
    if (!d.errors.empty()) {
      for (const auto& e : d.errors) std::fprintf(stderr, "sluice-demo: %s\n", e.message.c_str());
      return 2;
    }
    if (!d.cluster.pods.empty()) {
      if (!d.cluster.policies.empty() || !d.cluster.namespaces.empty()) {
        std::fprintf(stderr, "sluice-demo: %s: keep Pods in files of their own\n", f.c_str());
        return 2;
      }
      pods.insert(pods.end(), d.cluster.pods.begin(), d.cluster.pods.end());
    } else {
      applied.push_back(f);
    }
  }

  std::set<uint16_t> tcp{80}, udp{53};
  for (const auto& p : probes) (p.protocol == "TCP" ? tcp : udp).insert(p.port);
  for (const auto& pod : pods) {
    for (const auto& cp : pod.ports)
      (cp.protocol == model::Protocol::UDP ? udp : tcp).insert(cp.port);
  }

  e2e::ClusterOptions opts;
  opts.nodes = nodes;
  opts.datapath = datapath;
  opts.binaryDir = fs::canonical("/proc/self/exe").parent_path().parent_path().parent_path();
  std::printf(
      "== creating a %d-node cluster (network namespaces, one sluice-policyd each, datapath %s)\n",
      nodes, datapath.c_str());
  auto cluster = e2e::SimCluster::create(opts);
  if (!cluster.ok()) {
    std::fprintf(stderr, "sluice-demo: %s\n", cluster.error().message.c_str());
    return 1;
  }
  auto& c = **cluster;
  for (const auto& f : applied) {
    if (auto st = c.writeManifest(f.filename().string(), readAll(f)); !st.ok()) {
      std::fprintf(stderr, "sluice-demo: %s\n", st.error().message.c_str());
      return 1;
    }
  }
  int rr = 0;
  std::printf("== wiring %zu pods with the sluice CNI plugin\n", pods.size());
  for (const auto& pod : pods) {
    e2e::PodSpec spec;
    spec.ns = pod.namespace_;
    spec.name = pod.name;
    spec.node = rr++ % nodes;
    if (pod.nodeName.size() > 1 && pod.nodeName[0] == 'n') {
      spec.node = std::atoi(pod.nodeName.c_str() + 1) % nodes;
    }
    for (const auto& [k, v] : pod.labels) spec.labels[k] = v;
    for (const auto& cp : pod.ports) {
      spec.ports.push_back({cp.name, cp.port, model::protocolName(cp.protocol)});
    }
    auto r = c.addPod(spec, std::vector<uint16_t>(tcp.begin(), tcp.end()),
                      std::vector<uint16_t>(udp.begin(), udp.end()));
    if (!r.ok()) {
      std::fprintf(stderr, "sluice-demo: %s\n", r.error().message.c_str());
      return 1;
    }
    std::string ips;
    for (const auto& a : r->ips) ips += " " + a.toString();
    std::printf("   %-24s node n%d  veth %s %s\n", (spec.ns + "/" + spec.name).c_str(), spec.node,
                r->hostVeth.c_str(), ips.c_str());
  }
  if (auto st = c.waitSynced(); !st.ok()) {
    std::fprintf(stderr, "sluice-demo: %s\n", st.error().message.c_str());
    return 1;
  }
  bool agree = true;
  for (const auto& p : probes) {
    auto predicted = c.predict(std::to_string(p.port), p.protocol);
    auto measured = c.measure(p.port, p.protocol);
    if (!predicted.ok() || !measured.ok()) {
      std::fprintf(stderr, "sluice-demo: %s\n",
                   (!predicted.ok() ? predicted.error() : measured.error()).message.c_str());
      return 1;
    }
    std::printf("\n== %s %u   (row = from, column = to)\n", p.protocol.c_str(), p.port);
    printSideBySide(*predicted, *measured);
    for (size_t i = 0; i < measured->pods.size(); ++i) {
      for (size_t j = 0; j < measured->pods.size(); ++j) {
        if (i != j && measured->allowed[i][j] != predicted->allowed[i][j]) agree = false;
      }
    }
  }
  std::printf("\n%s\n", agree ? "RESULT: the datapath enforces exactly what sluicectl predicts"
                              : "RESULT: MISMATCH between prediction and datapath (! above)");
  std::printf("== tearing down\n");
  return agree ? 0 : 1;
}
