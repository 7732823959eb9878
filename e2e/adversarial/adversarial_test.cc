// The pod as attacker (issue 10): a hostile pod with raw sockets (sluice-attack) tries to walk
// around NetworkPolicy on a simulated two-node cluster, IPv4 and IPv6:
//   - another pod's source address, to a pod that admits only that other pod ("spoofed");
//   - the node's own address as source, which ingress lets through as kubelet traffic
//     ("spoofed");
//   - neighbour solicitations/advertisements (hop limit 255) to an off-link global address,
//     from an egress-isolated pod and from an open one ("nd-invalid");
//   - ICMP errors (PTB / Fragmentation Needed, port unreachable) quoting a flow the victim never
//     had, or quoting its real flow from a third pod ("icmp-unrelated"), while the real peer's
//     error for a tracked flow passes to a pod that admits no ingress at all;
//   - a conntrack flood of four times the table size while a victim holds an idle connection
//     that only conntrack keeps open ("ct-full");
//   - an `add` on the endpoint socket naming the node's `lo` (refused, nothing attached);
//   - an ipBlock `::ffff:192.0.2.0/120`: the datapath's verdict equals `sluicectl explain`'s.
// Every attack must fail and be counted under the drop reason that names it (the pinned
// sluice_drop_stats map; /metrics reports the same counters); every attack has a positive
// control, the same send from a legitimate source, which must be delivered, so a broken tool or
// sniffer cannot make a test pass.
//
// Delivery is observed by a packet socket on the target pod's eth0 (sluice-attack sniff): it
// sees whatever the host veth lets through, whether or not a socket would accept it.
//
// Run: sudo build/e2e/adversarial/adversarial_test   (or: cd build && ctest -R e2e.adversarial)
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "bpf/sluice_abi.h"
#include "common/endpoint_api.h"
#include "common/netns.h"
#include "common/unique_fd.h"
#include "e2e/harness/cluster.h"
#include "e2e/harness/text_log.h"
#include "policyd/datapath/bpf/drop_event.h"

namespace sluice::e2e {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

const std::vector<uint16_t> kTcp = {80};
const std::vector<uint16_t> kUdp = {80};
constexpr int kAttackCount = 5;

const char* kManifests = R"(
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: adv}}
- {apiVersion: v1, kind: Namespace, metadata: {name: egress-locked}}
- {apiVersion: v1, kind: Namespace, metadata: {name: shield}}
- {apiVersion: v1, kind: Namespace, metadata: {name: open}}
---
# adv/victim* admit only adv/allowed.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: victims, namespace: adv}
spec:
  podSelector: {matchLabels: {role: victim}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: allowed}}}]}]
---
# An IPv4-mapped IPv6 ipBlock is an IPv6 prefix: it admits no IPv4 packet.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: mapped, namespace: adv}
spec:
  podSelector: {matchLabels: {app: mapped}}
  policyTypes: [Ingress]
  ingress: [{from: [{ipBlock: {cidr: "::ffff:192.0.2.0/120"}}]}]
---
# Control for the above: an IPv4 range holding the sender (not the same trie key: the mapped
# block and 192.0.2.0/24 would collide there, which would hide the bug this tests).
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: mapped-control, namespace: adv}
spec:
  podSelector: {matchLabels: {app: mapped-control}}
  policyTypes: [Ingress]
  ingress: [{from: [{ipBlock: {cidr: "192.0.2.0/25"}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: egress-locked}
spec: {podSelector: {}, policyTypes: [Egress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: shield}
spec: {podSelector: {}, policyTypes: [Ingress]}
)";

std::string netnsOf(const PodInfo& p) { return "/run/netns/" + p.netnsName; }

const IpAddr& addrOf(const PodInfo& p, bool v6) {
  for (const auto& a : p.ips) {
    if (a.isV4() != v6) return a;
  }
  ADD_FAILURE() << p.spec.name << " has no " << (v6 ? "IPv6" : "IPv4") << " address";
  return p.ips.at(0);
}

std::string nodeAddr(int node, bool v6) { return SimCluster::nodeAddress(node, v6).toString(); }

// Packets per drop reason name, summed over CPUs, read from a node's pinned counters map.
Result<std::map<std::string, uint64_t>> readDrops(const std::string& pinDir) {
  std::string path = pinDir + "/" SLUICE_MAP_DROP_COUNTERS;
  UniqueFd fd(bpf_obj_get(path.c_str()));
  if (fd.get() < 0) return makeError("open pinned map " + path + ": " + std::strerror(errno));
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return makeError("libbpf_num_possible_cpus failed");
  std::map<std::string, uint64_t> out;
  std::vector<sluice_counter> values(static_cast<size_t>(cpus));
  for (uint32_t i = 0; i < static_cast<uint32_t>(datapath::bpf::kDropReasonCount); ++i) {
    if (bpf_map_lookup_elem(fd.get(), &i, values.data()) != 0) {
      return makeError("read " + path + " index " + std::to_string(i) + ": " +
                       std::strerror(errno));
    }
    uint64_t packets = 0;
    for (const auto& v : values) packets += v.packets;
    out[std::string(datapath::bpf::dropReasonName(static_cast<datapath::bpf::DropReason>(i)))] =
        packets;
  }
  return out;
}

class AdversarialTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    ClusterOptions opts;
    opts.binaryDir = SLUICE_BINARY_DIR;
    opts.nodes = kNodes;
    auto c = SimCluster::create(opts);
    ASSERT_TRUE(c.ok()) << c.error().message;
    cluster_ = std::move(c).value().release();
    ASSERT_TRUE(cluster_->writeManifest("objects.yaml", kManifests).ok());
    struct P {
      const char* ns;
      const char* name;
      int node;
      std::map<std::string, std::string> labels;
    };
    std::vector<P> pods = {
        {"adv", "hostile", 0, {{"app", "hostile"}}},
        {"adv", "allowed", 0, {{"app", "allowed"}}},
        {"adv", "victim", 1, {{"app", "victim"}, {"role", "victim"}}},
        {"adv", "victim-local", 0, {{"app", "victim-local"}, {"role", "victim"}}},
        {"adv", "mapped", 1, {{"app", "mapped"}}},
        {"adv", "mapped-control", 1, {{"app", "mapped-control"}}},
        {"egress-locked", "hostile", 0, {{"app", "hostile"}}},
        {"shield", "client", 0, {{"app", "client"}}},
        {"shield", "v", 1, {{"app", "v"}}},
        {"open", "target", 1, {{"app", "target"}}},
        {"open", "peer", 0, {{"app", "peer"}}},
    };
    for (const auto& p : pods) {
      PodSpec spec{p.ns, p.name, p.node, p.labels, {{"http", 80, "TCP"}}, ""};
      auto r = cluster_->addPod(spec, kTcp, kUdp);
      ASSERT_TRUE(r.ok()) << r.error().message;
    }
    auto st = cluster_->waitSynced();
    ASSERT_TRUE(st.ok()) << st.error().message;
  }

  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, eBPF, raw sockets)";
    ASSERT_NE(cluster_, nullptr) << "cluster set-up failed";
  }

  static SimCluster& c() { return *cluster_; }
  static const PodInfo& pod(const std::string& key) {
    const PodInfo* p = cluster_->pod(key);
    if (!p) throw std::runtime_error("no pod " + key);
    return *p;
  }

  static Command attack(const std::string& netns, std::vector<std::string> args) {
    args.insert(args.begin(), c().binary("e2e/tools/sluice-attack").string());
    Command cmd{args};
    cmd.netns = netns;
    return cmd;
  }

  // Runs a sluice-attack sender to completion; fails the test if it could not send.
  static void sendFrom(const std::string& netns, const std::vector<std::string>& args) {
    auto r = run(attack(netns, args), 60s);
    ASSERT_TRUE(r.ok()) << r.error().message;
    ASSERT_EQ(r->exitCode, 0) << "sluice-attack " << args[0] << ": " << r->out << r->err;
    ASSERT_NE(r->out.find("sent "), std::string::npos) << r->out << r->err;
  }

  std::string marker(const std::string& what) {
    return "slx-" + what + "-" + std::to_string(getpid()) + "-" + std::to_string(++markers_);
  }

  // Packets holding `mark` that reached `target`'s eth0 while `send` ran.
  int delivered(const PodInfo& target, const std::string& mark, const std::function<void()>& send) {
    std::string out = (c().runDir() / ("sniff-" + mark + ".out")).string();
    auto sniff = spawn([&] {
      Command cmd = attack(netnsOf(target), {"sniff", "--marker", mark, "--duration-ms", "20000"});
      cmd.outputFile = out;
      return cmd;
    }());
    EXPECT_TRUE(sniff.ok()) << sniff.error().message;
    if (!sniff.ok()) return -1;
    for (int i = 0; i < 500 && countLines(readLog(out), "sniffing") == 0; ++i) {
      std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(countLines(readLog(out), "sniffing"), 1)
        << "sniffer did not start: " << readLog(out);
    send();
    // Cross-node delivery takes well under this; a later arrival would still be a bypass, so
    // the wait errs long.
    std::this_thread::sleep_for(800ms);
    sniff->stop();
    return countLines(readLog(out), "got ");
  }

  // Drops per reason on one node, or summed over all nodes (kAllNodes) where the attack may be
  // stopped on either side (the sender's egress or the target's ingress).
  static constexpr int kAllNodes = -1;
  static constexpr int kNodes = 2;
  Result<std::map<std::string, uint64_t>> readDropsOn(int node) {
    std::map<std::string, uint64_t> sum;
    for (int n = 0; n < kNodes; ++n) {
      if (node != kAllNodes && n != node) continue;
      SLUICE_ASSIGN_OR_RETURN(auto one, readDrops(c().bpfPinDir(n)));
      for (const auto& [k, v] : one) sum[k] += v;
    }
    return sum;
  }

  std::map<std::string, uint64_t> drops(int node) {
    auto d = readDropsOn(node);
    EXPECT_TRUE(d.ok()) << d.error().message;
    return d.ok() ? *d : std::map<std::string, uint64_t>{};
  }

  // Asserts that `reason` on `node` counted at least `atLeast` more packets than `before`.
  void expectCounted(int node, const std::map<std::string, uint64_t>& before,
                     const std::string& reason, uint64_t atLeast, const std::string& what) {
    auto after = readDropsOn(node);
    ASSERT_TRUE(after.ok()) << after.error().message;
    auto it = after->find(reason);
    if (it == after->end()) {
      std::string names;
      for (const auto& [k, v] : *after) names += " " + k;
      ADD_FAILURE() << what << ": the datapath has no drop reason \"" << reason
                    << "\" (it has:" << names << ")";
      return;
    }
    uint64_t was = before.count(reason) ? before.at(reason) : 0;
    EXPECT_GE(it->second - was, atLeast)
        << what << ": drops for reason \"" << reason << "\" on "
        << (node == kAllNodes ? std::string("the nodes") : "node " + std::to_string(node))
        << " went from " << was << " to " << it->second;
  }

  static std::vector<std::string> udp(const std::string& src, const std::string& dst,
                                      const std::string& mark, int count = kAttackCount) {
    return {"send",
            "--proto",
            "udp",
            "--src",
            src,
            "--dst",
            dst,
            "--dport",
            "80",
            "--sport",
            "40000",
            "--count",
            std::to_string(count),
            "--marker",
            mark};
  }

  static SimCluster* cluster_;
  int markers_ = 0;
};

SimCluster* AdversarialTest::cluster_ = nullptr;

class FamilyTest : public AdversarialTest, public ::testing::WithParamInterface<bool> {
 protected:
  bool v6() const { return GetParam(); }
};

// A pod sends with another pod's address to a destination that admits only that other pod.
TEST_P(FamilyTest, SpoofedPodSourceIsDroppedAndCounted) {
  const PodInfo& hostile = pod("adv/hostile");
  const PodInfo& allowed = pod("adv/allowed");
  for (const char* victimKey : {"adv/victim", "adv/victim-local"}) {
    for (const char* proto : {"udp", "tcp"}) {
      SCOPED_TRACE(std::string(victimKey) + " " + proto);
      const PodInfo& victim = pod(victimKey);
      std::string dst = addrOf(victim, v6()).toString();
      std::string forged = addrOf(allowed, v6()).toString();
      auto packet = [&](const std::string& mark) {
        auto args = udp(forged, dst, mark);
        args[2] = proto;  // --proto
        return args;
      };
      // Positive control: the same packet from the pod whose address it carries.
      std::string ctl = marker("spoof-control");
      EXPECT_GT(delivered(victim, ctl, [&] { sendFrom(netnsOf(allowed), packet(ctl)); }), 0)
          << "the legitimate send did not arrive: the tool or sniffer is broken";
      auto before = drops(0);
      std::string atk = marker("spoof");
      EXPECT_EQ(delivered(victim, atk, [&] { sendFrom(netnsOf(hostile), packet(atk)); }), 0)
          << "a " << proto << " packet with a forged source (" << forged << ") reached "
          << victimKey;
      expectCounted(0, before, "spoofed", kAttackCount, "forged pod source");
    }
  }
}

// A pod sends with its node's address, which ingress policy lets through as kubelet traffic.
TEST_P(FamilyTest, ForgedNodeSourceIsDroppedAndCounted) {
  const PodInfo& hostile = pod("adv/hostile");
  const PodInfo& victim = pod("adv/victim-local");
  std::string dst = addrOf(victim, v6()).toString();
  std::string node = nodeAddr(0, v6());
  std::string ctl = marker("node-control");
  EXPECT_GT(delivered(victim, ctl, [&] { sendFrom(c().nodeNetns(0), udp(node, dst, ctl)); }), 0)
      << "the node's own send did not arrive: the tool or sniffer is broken";
  auto before = drops(0);
  std::string atk = marker("node-forged");
  EXPECT_EQ(delivered(victim, atk, [&] { sendFrom(netnsOf(hostile), udp(node, dst, atk)); }), 0)
      << "a pod's datagram with the node's source " << node << " was let in as node traffic";
  expectCounted(0, before, "spoofed", kAttackCount, "forged node source");
}

// An ICMP error quoting a flow the victim never had is dropped as unrelated; one quoting a flow
// the victim really has (sent by that flow's peer) passes as related, although the victim admits
// no ingress at all.
TEST_P(FamilyTest, IcmpErrorsPassOnlyWhenRelatedToATrackedFlow) {
  const PodInfo& v = pod("shield/v");
  const PodInfo& peer = pod("open/peer");
  const PodInfo& hostile = pod("adv/hostile");
  std::string va = addrOf(v, v6()).toString(), pa = addrOf(peer, v6()).toString();
  // The victim's real flow: v:41000 -> peer:9999 (UDP, egress allowed).
  std::string flow = marker("flow");
  sendFrom(netnsOf(v), {"send", "--src", va, "--dst", pa, "--sport", "41000", "--dport", "9999",
                        "--count", "2", "--marker", flow});
  auto error = [&](const std::string& src, const std::string& kind, const std::string& sport,
                   const std::string& mark) {
    return std::vector<std::string>{"icmp-error",
                                    "--kind",
                                    kind,
                                    "--src",
                                    src,
                                    "--dst",
                                    va,
                                    "--inner-src",
                                    va,
                                    "--inner-dst",
                                    pa,
                                    "--inner-sport",
                                    sport,
                                    "--inner-dport",
                                    "9999",
                                    "--count",
                                    std::to_string(kAttackCount),
                                    "--marker",
                                    mark};
  };
  struct Attack {
    const PodInfo* from;
    const char* sport;
    const char* what;
  };
  // An attacker who knows or guesses the 5-tuple of the victim's flow (a reset by ICMP), an
  // attacker quoting a flow the victim never had (a probe), and the real peer doing the same.
  const std::vector<Attack> attacks = {
      {&hostile, "41000", "a third pod quoting the victim's real flow"},
      {&hostile, "41001", "a third pod quoting a flow the victim never had"},
      {&peer, "41001", "the peer quoting a flow the victim never had"},
  };
  for (const char* kind : {"ptb", "unreach"}) {
    SCOPED_TRACE(kind);
    std::string rel = marker(std::string("related-") + kind);
    EXPECT_GT(delivered(v, rel, [&] { sendFrom(netnsOf(peer), error(pa, kind, "41000", rel)); }), 0)
        << kind << " for the victim's own flow was not delivered (PMTU black hole)";
    for (const auto& a : attacks) {
      SCOPED_TRACE(a.what);
      auto before = drops(kAllNodes);
      std::string unrel = marker(std::string("unrelated-") + kind);
      std::string src = addrOf(*a.from, v6()).toString();
      EXPECT_EQ(delivered(v, unrel,
                          [&] { sendFrom(netnsOf(*a.from), error(src, kind, a.sport, unrel)); }),
                0)
          << kind << " from " << a.what << " reached the victim";
      expectCounted(kAllNodes, before, "icmp-unrelated", kAttackCount,
                    std::string("unrelated ") + kind);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "IPv6" : "IPv4"; });

// Neighbour discovery bypasses policy only on the pod's own link: a pod cannot use NS/NA (hop
// limit 255, any payload) to reach an off-link global address, whether its egress is isolated
// or open (an off-link ND message is never legitimate).
TEST_F(AdversarialTest, NeighbourDiscoveryToOffLinkAddressIsDropped) {
  const PodInfo& target = pod("open/target");
  const PodInfo& locked = pod("egress-locked/hostile");
  const PodInfo& free = pod("adv/hostile");
  std::string dst = addrOf(target, true).toString();
  for (const char* type : {"ns", "na"}) {
    SCOPED_TRACE(type);
    auto nd = [&](const std::string& src, const std::string& mark) {
      return std::vector<std::string>{"nd",
                                      "--type",
                                      type,
                                      "--src",
                                      src,
                                      "--dst",
                                      dst,
                                      "--target",
                                      dst,
                                      "--count",
                                      std::to_string(kAttackCount),
                                      "--marker",
                                      mark};
    };
    // Positive control: the same message as the node's unicast reachability probe (from the
    // gateway's link-local address, not routed) reaches the pod.
    std::string ctl = marker(std::string("nd-control-") + type);
    EXPECT_GT(delivered(target, ctl,
                        [&] { sendFrom(c().nodeNetns(target.spec.node), nd("fe80::1", ctl)); }),
              0)
        << "ND from the node to the pod did not arrive: the tool or sniffer is broken";
    for (const PodInfo* from : {&locked, &free}) {
      SCOPED_TRACE(from->spec.ns + "/" + from->spec.name);
      auto before = drops(from->spec.node);
      std::string atk = marker(std::string("nd-") + type);
      EXPECT_EQ(
          delivered(target, atk,
                    [&] { sendFrom(netnsOf(*from), nd(addrOf(*from, true).toString(), atk)); }),
          0)
          << from->spec.ns << "/" << from->spec.name << " reached off-link " << dst << " with ND "
          << type;
      expectCounted(from->spec.node, before, "nd-invalid", kAttackCount,
                    std::string("off-link ND ") + type);
    }
  }
  // The pods still reach their gateway and beyond: ordinary traffic from an open pod works.
  auto r = c().probeFromNetns(netnsOf(free), addrOf(target, true), 80, "TCP", 1000);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, "ok");
}

// An ipBlock written as an IPv4-mapped IPv6 prefix: the datapath's verdict for IPv4 traffic
// from that range equals `sluicectl explain`'s, and both treat the block as IPv6 (deny). The
// sender is node 0 (192.0.2.10), an address no pod and no policy names otherwise, so only the
// ipBlock can admit it at a pod on node 1.
TEST_F(AdversarialTest, MappedIpBlockVerdictMatchesExplain) {
  // IPv4 192.0.2.10, and the IPv6 packet whose source is its mapped form ::ffff:192.0.2.10:
  // the first is outside the IPv6 block, the second inside it.
  // The fixture's blocks are written around the harness's fabric addresses.
  ASSERT_TRUE(Prefix::parse("192.0.2.0/25").value().contains(SimCluster::nodeAddress(0, false)));
  for (bool v6 : {false, true}) {
    std::string src = v6 ? "::ffff:" + nodeAddr(0, false) : nodeAddr(0, false);
    for (const char* key : {"adv/mapped", "adv/mapped-control"}) {
      SCOPED_TRACE(std::string(key) + " from " + src);
      const PodInfo& target = pod(key);
      auto r = run(Command{{c().binary("policyd/ctl/sluicectl").string(), "explain", "-f",
                            c().manifestsDir().string(), "--from", src, "--to", key, "--port", "80",
                            "--protocol", "UDP", "-o", "json"}},
                   30s);
      ASSERT_TRUE(r.ok()) << r.error().message;
      json j = json::parse(r->out, nullptr, false);
      ASSERT_FALSE(j.is_discarded()) << r->out << r->err;
      bool explained = j.value("allowed", false);
      bool mappedPolicy = std::string(key) == "adv/mapped";
      // Kubernetes semantics: ::ffff:a.b.c.d/120 is an IPv6 prefix, 192.0.2.0/25 an IPv4 one.
      EXPECT_EQ(explained, mappedPolicy == v6) << r->out;
      auto before = drops(1);
      std::string mark = marker("mapped");
      std::string dst = addrOf(target, v6).toString();
      int got = delivered(target, mark, [&] { sendFrom(c().nodeNetns(0), udp(src, dst, mark)); });
      EXPECT_EQ(got > 0, explained) << "datapath delivered " << got << " while explain says "
                                    << (explained ? "allowed" : "denied");
      if (!explained) expectCounted(1, before, "policy", kAttackCount, "mapped ipBlock");
    }
  }
}

// Entries in a node's pinned conntrack map (bounded walk).
Result<long> conntrackEntries(const std::string& pinDir) {
  std::string path = pinDir + "/" SLUICE_MAP_CONNTRACK;
  UniqueFd fd(bpf_obj_get(path.c_str()));
  if (fd.get() < 0) return makeError("open pinned map " + path + ": " + std::strerror(errno));
  sluice_ct_key key{}, next{};
  long n = 0;
  const void* prev = nullptr;
  while (n < 4L * SLUICE_MAX_CONNTRACK && bpf_map_get_next_key(fd.get(), prev, &next) == 0) {
    key = next;
    prev = &key;
    ++n;
  }
  return n;
}

// One pod fills the node's conntrack table with junk flows while a victim holds an idle
// connection whose next packet (a server push) is admitted only as part of that connection:
// the client's namespace denies all ingress, so an evicted entry would drop the push.
TEST_P(FamilyTest, ConntrackFloodDoesNotCutAnotherPodsConnection) {
  const PodInfo& client = pod("shield/client");
  const PodInfo& server = pod("open/peer");
  const PodInfo& hostile = pod("adv/hostile");
  // The idle gap must outlast a full turnover of the table at the flood's rate.
  constexpr int kIntervalMs = 12000;
  uint16_t port = v6() ? 7702 : 7701;
  std::string serveOut = (c().runDir() / ("push-" + std::to_string(port) + ".out")).string();
  Command serveCmd = attack(netnsOf(server), {"push-serve", "--port", std::to_string(port),
                                              "--interval-ms", std::to_string(kIntervalMs)});
  serveCmd.outputFile = serveOut;
  auto serve = spawn(serveCmd);
  ASSERT_TRUE(serve.ok()) << serve.error().message;
  for (int i = 0; i < 300 && countLines(readLog(serveOut), "serving") == 0; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  std::string sa = addrOf(server, v6()).toString();
  std::string target = (v6() ? "[" + sa + "]" : sa) + ":" + std::to_string(port);
  std::string readOut = (c().runDir() / ("read-" + std::to_string(port) + ".out")).string();
  constexpr int kTicks = 3;
  Command readCmd =
      attack(netnsOf(client), {"push-read", "--count", std::to_string(kTicks), "--timeout-ms",
                               std::to_string(kIntervalMs + 3000), target});
  readCmd.outputFile = readOut;
  auto reader = spawn(readCmd);
  ASSERT_TRUE(reader.ok()) << reader.error().message;
  // Positive control: a push arrives before the flood (the server sends one on accept). The
  // flood then runs inside the idle gap that follows it.
  for (int i = 0; i < 1000 && countLines(readLog(readOut), " ok") < 1; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_GE(countLines(readLog(readOut), " ok"), 1) << readLog(readOut);
  auto entriesBefore = conntrackEntries(c().bpfPinDir(0));
  ASSERT_TRUE(entriesBefore.ok()) << entriesBefore.error().message;
  auto before = drops(0);
  // Junk flows to an address no node routes (dropped after the hostile pod's egress check, so
  // each one it admits is tracked): up to four times the table size.
  std::string junk = v6() ? "fd00:244:0:0::fffe" : "10.244.0.254";
  auto start = std::chrono::steady_clock::now();
  auto flood =
      run(attack(netnsOf(hostile),
                 {"flood", "--src", addrOf(hostile, v6()).toString(), "--dst", junk, "--flows",
                  std::to_string(4 * SLUICE_MAX_CONNTRACK), "--packets-per-flow", "2",
                  "--duration-ms", std::to_string(kIntervalMs)}),
          60s);
  ASSERT_TRUE(flood.ok()) << flood.error().message;
  EXPECT_EQ(flood->exitCode, 0) << flood->out << flood->err;
  auto entriesAfter = conntrackEntries(c().bpfPinDir(0));
  ASSERT_TRUE(entriesAfter.ok()) << entriesAfter.error().message;
  auto after = drops(0);
  uint64_t full = after["ct-full"] - before["ct-full"];
  std::cerr << "flood: " << flood->out << "  in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - start)
                   .count()
            << " ms; conntrack entries on node 0: " << *entriesBefore << " -> " << *entriesAfter
            << ", ct-full drops: " << full << "\n";
  // Control: the flood really reached the datapath (tracked, or refused for want of room).
  EXPECT_GE(*entriesAfter - *entriesBefore + static_cast<long>(full), 10000)
      << "the flood did not reach the conntrack table";
  // The flows beyond the pod's share are refused and counted, not tracked at others' expense.
  expectCounted(0, before, "ct-full", 10000, "conntrack flood");
  for (int i = 0; i < 3000 && reader->running(); ++i) std::this_thread::sleep_for(10ms);
  std::string out = readLog(readOut);
  EXPECT_EQ(countLines(out, "connect ok"), 1) << out;
  EXPECT_EQ(countLines(out, " fail"), 0) << "the flood cut the idle connection:\n" << out;
  EXPECT_EQ(countLines(out, " ok"), kTicks + 1) << out;
  // A new connection from another pod still works after the flood.
  auto r = c().probeFromNetns(netnsOf(pod("adv/allowed")), addrOf(pod("adv/victim"), v6()), 80,
                              "TCP", 1000);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, "ok");
}

// GET http://127.0.0.1:<port><path> inside a node's namespace (where its daemon serves
// /metrics). Bounded by socket timeouts; the guard returns this thread to its namespace.
Result<std::string> httpGetIn(const std::string& netns, uint16_t port, const std::string& path) {
  UniqueFd fd;
  {
    SLUICE_ASSIGN_OR_RETURN(NetnsGuard guard, NetnsGuard::enter(netns));
    fd = UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  }
  if (fd.get() < 0) return makeError(std::string("socket: ") + std::strerror(errno));
  timeval tv{5, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    return makeError("connect 127.0.0.1:" + std::to_string(port) + " in " + netns + ": " +
                     std::strerror(errno));
  }
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    return makeError(std::string("send request: ") + std::strerror(errno));
  }
  std::string resp;
  char buf[4096];
  for (int i = 0; i < 4096; ++i) {  // at most 16 MiB
    ssize_t n = recv(fd.get(), buf, sizeof(buf), 0);
    if (n < 0) return makeError(std::string("read response: ") + std::strerror(errno));
    if (n == 0) break;
    resp.append(buf, static_cast<size_t>(n));
  }
  return resp;
}

// sluice_dropped_packets_total{reason="..."} samples of a /metrics page.
std::map<std::string, double> dropMetric(const std::string& page) {
  std::map<std::string, double> out;
  const std::string prefix = "sluice_dropped_packets_total{reason=\"";
  std::istringstream in(page);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    auto q = line.find('"', prefix.size());
    auto sp = line.rfind(' ');
    if (q == std::string::npos || sp == std::string::npos) continue;
    out[line.substr(prefix.size(), q - prefix.size())] =
        std::strtod(line.c_str() + sp + 1, nullptr);
  }
  return out;
}

// The operator-facing view of the same counters: /metrics reports every drop reason the
// datapath counts, at least as high as the pinned map read just before.
TEST_F(AdversarialTest, DropMetricReportsEveryReason) {
  const PodInfo& hostile = pod("adv/hostile");
  const PodInfo& victim = pod("adv/victim");
  std::string atk = marker("metric");
  sendFrom(netnsOf(hostile), udp(addrOf(pod("adv/allowed"), false).toString(),
                                 addrOf(victim, false).toString(), atk));
  auto pinned = readDrops(c().bpfPinDir(0));
  ASSERT_TRUE(pinned.ok()) << pinned.error().message;
  auto page = httpGetIn(c().nodeNetns(0), 9090, "/metrics");
  ASSERT_TRUE(page.ok()) << page.error().message;
  auto metric = dropMetric(*page);
  ASSERT_FALSE(metric.empty()) << "no sluice_dropped_packets_total in /metrics:\n" << *page;
  EXPECT_GE(metric["spoofed"], kAttackCount) << *page;
  for (const auto& [reason, packets] : *pinned) {
    if (reason == "none") continue;
    ASSERT_TRUE(metric.count(reason)) << "/metrics lacks reason " << reason;
    EXPECT_GE(metric[reason], static_cast<double>(packets)) << reason;
  }
}

std::string tcFilters(const std::string& netns, const std::string& dev, const std::string& dir) {
  auto r = run(Command{{"tc", "filter", "show", "dev", dev, dir}, {}, netns}, 10s);
  if (!r.ok()) return "error: " + r.error().message;
  return r->out + r->err;
}

// An `add` on the endpoint socket naming the node's loopback as the pod's host veth is refused
// and attaches nothing. A daemon that accepts it is sent the matching `del` at the end.
TEST_F(AdversarialTest, AddNamingLoopbackIsRefused) {
  const PodInfo& hostile = pod("adv/hostile");
  // Positive control: the CNI-made endpoint has the programs on its host veth.
  EXPECT_NE(tcFilters(c().nodeNetns(0), hostile.hostVeth, "ingress").find("bpf"), std::string::npos)
      << "no program on " << hostile.hostVeth << ": the check below would prove nothing";
  endpoint_api::Request req;
  req.op = endpoint_api::Op::Add;
  req.containerId = c().prefix() + "-lo-attack";
  req.ifname = "eth0";
  req.netns = netnsOf(hostile);
  req.hostVeth = "lo";
  req.hostIfindex = 1;
  req.ips = {"10.244.0.253"};
  req.podNamespace = "adv";
  req.podName = "hostile";
  auto reply = endpoint_api::call(c().socketPath(0).string(), req, 5000);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_FALSE(reply->ok) << "the daemon accepted lo as a pod's host veth";
  EXPECT_FALSE(reply->error.empty());
  for (const char* dir : {"ingress", "egress"}) {
    EXPECT_EQ(tcFilters(c().nodeNetns(0), "lo", dir).find("bpf"), std::string::npos)
        << "a program is attached to lo " << dir << ": " << tcFilters(c().nodeNetns(0), "lo", dir);
  }
  if (reply->ok) {
    req.op = endpoint_api::Op::Del;
    (void)endpoint_api::call(c().socketPath(0).string(), req, 5000);
  }
}

}  // namespace
}  // namespace sluice::e2e
