// Per-packet cost of the tc programs with a small and a large policy, side by side in one run
// (BPF_PROG_TEST_RUN, mean ns per packet). DESIGN.md §6 requires the cost not to depend on the
// number of policies, rules or pods: the ratio large/small should stay near 1.
//
// Paths measured:
//   established  a packet of a tracked flow (conntrack hit)
//   denied       a new flow no rule allows: class LPM + the two policy LPM lookups + drop
//                (the drop-event ring buffer fills early and stays full in both runs, so both
//                pay the same "event lost" path)
//   new-allowed  a SYN from a new source port each run is not possible with one input packet,
//                so the allowed policy path is covered by `denied` (same lookups) instead.
#include <linux/pkt_cls.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "e2e/datapath/packet_builder.h"
#include "e2e/datapath/test_support.h"
#include "policyd/datapath/bpf/bpf_backend.h"

namespace sluice::e2e {
namespace {

using compiler::AllowEntry;
using compiler::Direction;

Prefix P(const std::string& text) { return Prefix::parse(text).value(); }

// `rules` allow entries over rules/10 peer classes, each class a set of pod /32s.
compiler::State makeState(int rules) {
  compiler::State s;
  s.classes[P("0.0.0.0/0")] = compiler::kWorldClass;
  s.classes[P("::/0")] = compiler::kWorldClass;
  const int classes = std::max(1, rules / 10);
  for (int i = 0; i < rules; ++i) {
    const int c = 16 + i % classes;
    s.classes[P("10.2." + std::to_string(i / 250) + "." + std::to_string(i % 250) + "/32")] =
        static_cast<compiler::ClassId>(c);
  }
  for (int ep = 1; ep <= 4; ++ep) {
    compiler::EndpointPolicy p;
    p.ingressIsolated = p.egressIsolated = true;
    for (int i = 0; i < rules; ++i) {
      const uint16_t first = static_cast<uint16_t>(1000 + (i / classes) * 7);
      p.entries.insert(AllowEntry{Direction::Ingress,
                                  static_cast<compiler::ClassId>(16 + i % classes),
                                  6,
                                  {first, static_cast<uint16_t>(first + 4)},
                                  static_cast<compiler::RuleId>(i)});
    }
    s.endpoints[static_cast<compiler::EndpointId>(ep)] = std::move(p);
  }
  s.rules.resize(static_cast<size_t>(rules));
  return s;
}

struct Figures {
  double established = 0;
  double denied = 0;
  size_t policyEntries = 0;
};

double medianNs(int fd, const std::vector<uint8_t>& pkt, int expect) {
  std::vector<uint32_t> runs;
  for (int i = 0; i < 7; ++i) {
    RunResult r = testRun(fd, pkt, 200000);
    if (r.error || r.verdict != expect) {
      std::fprintf(stderr, "test run failed: error=%d verdict=%d\n", r.error, r.verdict);
      return -1;
    }
    runs.push_back(r.durationNs);
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

bool measure(int rules, Figures* out) {
  PinDir pin("bench" + std::to_string(rules));
  auto backend = datapath::bpf::BpfBackend::open({pin.path(), datapath::EstablishedMode::Recheck});
  if (!backend.ok()) {
    std::fprintf(stderr, "%s\n", backend.error().message.c_str());
    return false;
  }
  auto& b = *backend;
  if (auto s = b->attach({1, "lo", 1, {IpAddr::parse("10.1.0.10").value()}}); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.error().message.c_str());
    return false;
  }
  if (auto s = b->sync(makeState(rules)); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.error().message.c_str());
    return false;
  }
  out->policyEntries = b->lastWrite().policyWrites;
  PacketSpec allowed;
  allowed.src = "10.2.0.0";  // class 16; rule 0 allows tcp/1000-1004
  allowed.dst = "10.1.0.10";
  allowed.dstPort = 1002;
  PacketSpec denied = allowed;
  denied.dstPort = 1;
  const int fd = b->toPodProgramFd();
  out->established = medianNs(fd, buildPacket(allowed), TC_ACT_OK);  // first run creates the flow
  out->denied = medianNs(fd, buildPacket(denied), TC_ACT_SHOT);
  (void)b->detach({1, "lo", 1});
  return out->established > 0 && out->denied > 0;
}

}  // namespace
}  // namespace sluice::e2e

int main() {
  using namespace sluice::e2e;
  if (!isRoot()) {
    std::printf("bench datapath: skipped (needs root)\n");
    return 0;
  }
  removeStaleResources();
  if (!enterPrivateNetns()) {
    std::perror("unshare(CLONE_NEWNET)");
    return 1;
  }
  Figures small, large;
  if (!measure(10, &small) || !measure(10000, &large)) return 1;
  std::printf(
      "bench datapath small: rules=10 policy_entries=%zu established_ns=%.0f denied_ns=%.0f\n",
      small.policyEntries, small.established, small.denied);
  std::printf(
      "bench datapath large: rules=10000 policy_entries=%zu established_ns=%.0f denied_ns=%.0f\n",
      large.policyEntries, large.established, large.denied);
  std::printf("bench datapath ratio large/small: established=%.2f denied=%.2f\n",
              large.established / small.established, large.denied / small.denied);
  return 0;
}
