// Per-packet overhead of enforcement with real traffic, nft beside bpf in one run (DESIGN.md §6,
// issue 9): two "pods" (network namespaces) behind a "node" namespace that routes between them,
// and three configurations measured one after the other on the same veths:
//
//   none   no enforcement at all (the baseline every ratio is against)
//   nft    NftBackend, both pods attached, a 10,000-rule State synced
//   bpf    BpfBackend, the same pods and State
//
// For each: iperf3 TCP throughput A -> B (median of 5 runs of 2 s), the p50/p99 latency of a
// 1-byte request/response on one open connection (established path), and the p50 of
// connect + request/response + close (every connection a new flow: the policy lookup path).
// The 10,000 rules are 100 endpoints x 100 entries over 54 peer classes of 2,000 pod addresses
// (as e2e/datapath/nft_test.cc), so the lookups the traffic takes run against full tables.
// Also reported per backend: the time of the 10,000-rule sync and of one pod change (a new pod
// address joining a class named by most endpoints) applied as a diff.
//
// Everything lives in namespaces this process creates (sltd<pid>...), removed on exit. The
// baseline runs with no table and no program, before, between and after the backends; each
// backend's ratios are against the mean of the baselines either side of it.
#include <net/if.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "common/netns.h"
#include "e2e/datapath/tcp_probe.h"
#include "e2e/datapath/test_support.h"
#include "policyd/datapath/bpf/bpf_backend.h"
#include "policyd/datapath/nft/nft_backend.h"

extern char** environ;

namespace sluice::e2e {
namespace {

using compiler::AllowEntry;
using compiler::Direction;
using Clock = std::chrono::steady_clock;
using Ms = std::chrono::duration<double, std::milli>;

constexpr const char* kA = "10.197.1.2";
constexpr const char* kB = "10.197.2.2";
constexpr uint16_t kIperfPort = 5201;
constexpr uint16_t kEchoPort = 7000;
constexpr compiler::ClassId kClassA = 120, kClassB = 121;

bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

std::string capture(const std::string& cmd) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(cmd.c_str(), "r"), ::pclose);
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p.get())) > 0) out.append(buf, n);
  return out;
}

// Node namespace routing between pods A and B (veths "<prefix>a", "<prefix>b" on the node: named
// like CNI host veths, so the nft table's pod-interface rules apply to them).
class Topology {
 public:
  Topology() : node_(runPrefix() + "n") {
    ok_ = sh("ip netns add " + node_) && sh("ip -n " + node_ + " link set lo up") &&
          sh("ip netns exec " + node_ + " sysctl -qw net.ipv4.ip_forward=1");
    int subnet = 1;
    for (const char* x : {"a", "b"}) {
      const std::string pod = runPrefix() + x, veth = runPrefix() + x;
      const std::string net = "10.197." + std::to_string(subnet++) + ".";
      pods_.push_back(pod);
      ok_ = ok_ && sh("ip netns add " + pod) &&
            sh("ip -n " + node_ + " link add " + veth + " type veth peer name eth0 netns " + pod) &&
            sh("ip -n " + pod + " link set lo up") &&
            sh("ip -n " + node_ + " addr add " + net + "1/24 dev " + veth) &&
            sh("ip -n " + pod + " addr add " + net + "2/24 dev eth0") &&
            sh("ip -n " + node_ + " link set " + veth + " up") &&
            sh("ip -n " + pod + " link set eth0 up") &&
            sh("ip -n " + pod + " route add default via " + net + "1");
    }
  }
  ~Topology() {
    for (const std::string& p : pods_) sh("ip netns del " + p);
    sh("ip netns del " + node_);
  }
  bool ok() const { return ok_; }
  std::string node() const { return "/run/netns/" + node_; }
  std::string pod(char x) const { return "/run/netns/" + runPrefix() + x; }
  std::string podName(char x) const { return runPrefix() + x; }
  std::string veth(char x) const { return runPrefix() + x; }

 private:
  std::string node_;
  std::vector<std::string> pods_;
  bool ok_ = false;
};

Prefix P(const std::string& text) { return Prefix::parse(text).value(); }

// 10,000 rules: endpoints 1 (A) and 2 (B) and 98 others, 100 entries each; A may reach B on the
// measured ports through one of B's 100 ingress entries and one of A's 100 egress entries.
compiler::State tenThousandRules() {
  compiler::State s;
  s.revision = 1;
  s.classes[P("0.0.0.0/0")] = compiler::kWorldClass;
  s.classes[P("::/0")] = compiler::kWorldClass;
  s.classes[P("10.197.1.1/32")] = compiler::kHostClass;
  s.classes[P("10.197.2.1/32")] = compiler::kHostClass;
  for (uint32_t i = 0; i < 2000; ++i) {
    s.classes[Prefix::host(IpAddr::v4(0x0a400000u + i * 3))] = 16 + i % 40;
  }
  for (uint32_t i = 0; i < 10; ++i) {
    s.classes[Prefix(IpAddr::v4(0xac100000u + (i << 16)), 16)] = 60 + i;
  }
  s.classes[P(std::string(kA) + "/32")] = kClassA;
  s.classes[P(std::string(kB) + "/32")] = kClassB;
  std::mt19937 rng(1);
  for (compiler::EndpointId ep = 1; ep <= 100; ++ep) {
    auto& pol = s.endpoints[ep];
    pol.ingressIsolated = true;
    pol.egressIsolated = true;
    for (int i = 0; i < 100; ++i) {
      AllowEntry e;
      e.direction = i % 2 ? Direction::Ingress : Direction::Egress;
      e.peer = i % 10 == 0 ? compiler::kAnyPeer : 16 + rng() % 54;
      e.protocol = 6;
      const uint16_t first = static_cast<uint16_t>(10000 + rng() % 30000);
      e.ports = {first, static_cast<uint16_t>(first + rng() % 100)};
      if (ep == 2 && i == 51) e = AllowEntry{Direction::Ingress, kClassA, 6, {5000, 7000}, 0};
      if (ep == 1 && i == 50) e = AllowEntry{Direction::Egress, kClassB, 6, {5000, 7000}, 0};
      e.rule = static_cast<compiler::RuleId>(s.rules.size());
      s.rules.push_back({"bench/p" + std::to_string(ep), e.direction, i});
      pol.entries.insert(e);
    }
  }
  return s;
}

struct Traffic {
  double gbps = 0;
  double rrP50Us = 0, rrP99Us = 0;
  double crrP50Us = 0;
};

struct Apply {
  double syncMs = 0;
  double podChangeMs = 0;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// One iperf3 run A -> B; 0 on failure.
double iperfOnce(const Topology& t) {
  const std::string server = "exec timeout 20 ip netns exec " + t.podName('b') +
                             " iperf3 -s -1 -B " + kB + " -p " + std::to_string(kIperfPort) +
                             " >/dev/null 2>&1";
  pid_t pid = 0;
  const char* argv[] = {"sh", "-c", server.c_str(), nullptr};
  if (posix_spawnp(&pid, "sh", nullptr, nullptr, const_cast<char**>(argv), environ) != 0) return 0;
  double gbps = 0;
  // The server needs a moment to listen; a refused client is retried (bounded).
  for (int attempt = 0; attempt < 20 && gbps == 0; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    const std::string out = capture("timeout 15 ip netns exec " + t.podName('a') + " iperf3 -c " +
                                    kB + " -p " + std::to_string(kIperfPort) + " -t 2 -J");
    auto j = nlohmann::json::parse(out, nullptr, false);
    if (j.is_discarded() || !j.contains("end") || !j["end"].contains("sum_received")) continue;
    gbps = j["end"]["sum_received"].value("bits_per_second", 0.0) / 1e9;
  }
  int status = 0;
  ::kill(pid, SIGTERM);
  ::waitpid(pid, &status, 0);
  return gbps;
}

std::optional<Traffic> measureTraffic(const Topology& t) {
  Traffic r;
  std::vector<double> runs;
  for (int i = 0; i < 5; ++i) runs.push_back(iperfOnce(t));
  r.gbps = percentile(runs, 0.5);
  if (r.gbps <= 0) {
    std::fprintf(stderr, "bench nft: iperf3 failed (is iperf3 installed?)\n");
    return std::nullopt;
  }
  EchoServer server(t.pod('b'), kB, {kEchoPort});
  if (!server.ok()) return std::nullopt;
  UniqueFd conn = connectFrom(t.pod('a'), kB, kEchoPort, kAllowedWaitMs);
  if (!conn.valid()) {
    std::fprintf(stderr, "bench nft: A cannot connect to B:%u\n", kEchoPort);
    return std::nullopt;
  }
  std::vector<double> rr;
  for (int i = 0; i < 3000; ++i) {
    const auto t0 = Clock::now();
    if (!echo(conn, kAllowedWaitMs)) return std::nullopt;
    rr.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  r.rrP50Us = percentile(rr, 0.5);
  r.rrP99Us = percentile(rr, 0.99);
  std::vector<double> crr;
  for (int i = 0; i < 400; ++i) {
    const auto t0 = Clock::now();
    UniqueFd c = connectFrom(t.pod('a'), kB, kEchoPort, kAllowedWaitMs);
    if (!c.valid() || !echo(c, kAllowedWaitMs)) return std::nullopt;
    c.reset();
    crr.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  r.crrP50Us = percentile(crr, 0.5);
  return r;
}

datapath::EndpointAttachment attachment(const Topology& t, compiler::EndpointId id, char x,
                                        const char* ip) {
  datapath::EndpointAttachment a;
  a.id = id;
  a.ifname = t.veth(x);
  a.ifindex = static_cast<int>(if_nametoindex(a.ifname.c_str()));
  a.ips = {IpAddr::parse(ip).value()};
  return a;
}

// Attaches A and B, syncs the 10,000-rule State and applies one pod change, in the node
// namespace; returns the apply times.
std::optional<Apply> program(datapath::Backend& b, const Topology& t) {
  auto guard = NetnsGuard::enter(t.node());
  if (!guard.ok()) return std::nullopt;
  for (auto [id, x, ip] : {std::tuple{1, 'a', kA}, std::tuple{2, 'b', kB}}) {
    if (auto st = b.attach(attachment(t, static_cast<compiler::EndpointId>(id), x, ip)); !st.ok()) {
      std::fprintf(stderr, "bench nft: %s\n", st.error().message.c_str());
      return std::nullopt;
    }
  }
  const compiler::State s = tenThousandRules();
  Apply a;
  auto t0 = Clock::now();
  if (auto st = b.sync(s); !st.ok()) {
    std::fprintf(stderr, "bench nft: %s\n", st.error().message.c_str());
    return std::nullopt;
  }
  a.syncMs = Ms(Clock::now() - t0).count();
  compiler::State next = s;
  next.revision = 2;
  next.classes[Prefix::host(IpAddr::v4(0x0a400000u + 2000 * 3))] = 17;  // a new pod of class 17
  t0 = Clock::now();
  if (auto st = b.apply(compiler::computeDiff(s, next)); !st.ok()) {
    std::fprintf(stderr, "bench nft: %s\n", st.error().message.c_str());
    return std::nullopt;
  }
  a.podChangeMs = Ms(Clock::now() - t0).count();
  return a;
}

void printTraffic(const char* name, const Traffic& r, const Traffic& base) {
  std::printf(
      "bench nft %-4s throughput=%.2f Gbit/s (%.2fx)  rr_p50=%.1f us (%.2fx)  rr_p99=%.1f us  "
      "crr_p50=%.1f us (%.2fx)\n",
      name, r.gbps, r.gbps / base.gbps, r.rrP50Us, r.rrP50Us / base.rrP50Us, r.rrP99Us, r.crrP50Us,
      r.crrP50Us / base.crrP50Us);
}

}  // namespace
}  // namespace sluice::e2e

int main() {
  using namespace sluice;
  using namespace sluice::e2e;
  if (!isRoot()) {
    std::printf("bench nft: skipped (needs root)\n");
    return 0;
  }
  if (!sh("command -v iperf3")) {
    std::fprintf(stderr, "bench nft: iperf3 not found (scripts/install-deps.sh installs it)\n");
    return 1;
  }
  removeStaleResources();
  Topology topo;
  if (!topo.ok()) {
    std::fprintf(stderr, "bench nft: could not build the namespaces\n");
    return 1;
  }

  // The machine may be shared: a baseline before, between and after the two backends, and each
  // backend's ratios against the mean of the baselines either side of it.
  auto base1 = measureTraffic(topo);
  if (!base1) return 1;

  datapath::nft::NftOptions nftOpts;
  auto nft = std::make_unique<datapath::nft::NftBackend>(nftOpts);
  auto nftApply = program(*nft, topo);
  if (!nftApply) return 1;
  auto nftTraffic = measureTraffic(topo);
  {
    auto guard = NetnsGuard::enter(topo.node());
    // Allowed traffic only: any drop here is a packet of an allowed flow the table refused.
    if (auto drops = nft->dropCounts(); drops.ok()) {
      for (const auto& d : *drops) {
        std::printf("bench nft nft drops during the run: reason=%s packets=%llu\n",
                    d.reason.c_str(), static_cast<unsigned long long>(d.packets));
      }
    }
    if (!guard.ok() || !datapath::nft::uninstall(nftOpts).ok()) return 1;
  }
  if (!nftTraffic) return 1;
  auto base2 = measureTraffic(topo);
  if (!base2) return 1;

  PinDir pin("traffic");
  datapath::bpf::BpfOptions bpfOpts;
  bpfOpts.pinDir = pin.path();
  std::unique_ptr<datapath::bpf::BpfBackend> bpf;
  {
    auto guard = NetnsGuard::enter(topo.node());
    auto opened =
        guard.ok()
            ? datapath::bpf::BpfBackend::open(bpfOpts)
            : Result<std::unique_ptr<datapath::bpf::BpfBackend>>(makeError("enter node namespace"));
    if (!opened.ok()) {
      std::fprintf(stderr, "bench nft: %s\n", opened.error().message.c_str());
      return 1;
    }
    bpf = std::move(*opened);
  }
  auto bpfApply = program(*bpf, topo);
  if (!bpfApply) return 1;
  auto bpfTraffic = measureTraffic(topo);
  {
    auto guard = NetnsGuard::enter(topo.node());
    for (auto [id, x] : {std::pair{1, 'a'}, std::pair{2, 'b'}}) {
      (void)bpf->detach(attachment(topo, static_cast<compiler::EndpointId>(id), x, kA));
    }
    bpf.reset();
  }
  if (!bpfTraffic) return 1;
  auto base3 = measureTraffic(topo);
  if (!base3) return 1;
  auto mean = [](const Traffic& x, const Traffic& y) {
    return Traffic{(x.gbps + y.gbps) / 2, (x.rrP50Us + y.rrP50Us) / 2, (x.rrP99Us + y.rrP99Us) / 2,
                   (x.crrP50Us + y.crrP50Us) / 2};
  };

  std::printf("bench nft: A -> B through the node, 10000 rules (100 endpoints x 100 entries)\n");
  std::printf("bench nft apply nft: 10000-rule sync %.0f ms, one pod change %.1f ms\n",
              nftApply->syncMs, nftApply->podChangeMs);
  std::printf("bench nft apply bpf: 10000-rule sync %.0f ms, one pod change %.1f ms\n",
              bpfApply->syncMs, bpfApply->podChangeMs);
  for (const Traffic* b : {&*base1, &*base2, &*base3}) printTraffic("none", *b, *b);
  printTraffic("nft", *nftTraffic, mean(*base1, *base2));
  printTraffic("bpf", *bpfTraffic, mean(*base2, *base3));
  return 0;
}
