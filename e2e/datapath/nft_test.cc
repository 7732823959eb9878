// The nft backend against the kernel: a "node" network namespace with three "pods" behind
// veths (named like CNI host veths, "sl..."), the table written by NftBackend read back with
// `nft -j`, and real TCP connections through it: class and port-range verdicts, replies,
// node -> pod, unknown and not-ready interfaces, --established=recheck cutting an open
// connection, a backend restart that reconciles without flushing, and uninstall.
//
// Everything lives in namespaces this test creates (sltd<pid>n, sltd<pid>a/b/c); nothing is
// configured in the namespace the test starts in. Every wait is bounded; cleanup runs from
// destructors, so it also happens when an assertion fails.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "common/netns.h"
#include "common/unique_fd.h"
#include "e2e/datapath/tcp_probe.h"
#include "e2e/datapath/test_support.h"
#include "policyd/datapath/flow_event.h"
#include "policyd/datapath/nft/element_writer.h"
#include "policyd/datapath/nft/nft_backend.h"

namespace sluice::e2e {
namespace {

using compiler::AllowEntry;
using compiler::Direction;
using datapath::EndpointAttachment;
using datapath::nft::NftBackend;
using datapath::nft::NftOptions;

bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

constexpr const char* kA = "10.198.1.2";
constexpr const char* kB = "10.198.2.2";
constexpr const char* kC = "10.198.3.2";
constexpr const char* kNodeB = "10.198.2.1";  // the node's address on B's link

// A node namespace routing between pod namespaces, one veth each (node side "<prefix><x>").
class Topology {
 public:
  Topology() : node_(runPrefix() + "n") {
    ok_ = sh("ip netns add " + node_) && sh("ip -n " + node_ + " link set lo up") &&
          sh("ip netns exec " + node_ + " sysctl -qw net.ipv4.ip_forward=1") &&
          sh("ip netns exec " + node_ + " sysctl -qw net.ipv6.conf.all.forwarding=1");
    int subnet = 1;
    for (const char* x : {"a", "b", "c"}) {
      const std::string pod = runPrefix() + x, veth = runPrefix() + x;
      const std::string net6 = "fd98:" + std::to_string(subnet) + "::";
      const std::string net = "10.198." + std::to_string(subnet++) + ".";
      pods_.push_back(pod);
      ok_ = ok_ && sh("ip netns add " + pod) &&
            sh("ip -n " + node_ + " link add " + veth + " type veth peer name eth0 netns " + pod) &&
            sh("ip -n " + pod + " link set lo up") &&
            sh("ip -n " + node_ + " addr add " + net + "1/24 dev " + veth) &&
            sh("ip -n " + pod + " addr add " + net + "2/24 dev eth0") &&
            sh("ip -n " + node_ + " link set " + veth + " up") &&
            sh("ip -n " + pod + " link set eth0 up") &&
            sh("ip -n " + pod + " route add default via " + net + "1") &&
            sh("ip -n " + node_ + " addr add " + net6 + "1/64 dev " + veth + " nodad") &&
            sh("ip -n " + pod + " addr add " + net6 + "2/64 dev eth0 nodad") &&
            sh("ip -n " + pod + " -6 route add default via " + net6 + "1");
    }
  }
  ~Topology() {
    for (const std::string& p : pods_) sh("ip netns del " + p);  // takes the veth pairs
    sh("ip netns del " + node_);
  }
  bool ok() const { return ok_; }
  std::string node() const { return "/run/netns/" + node_; }
  std::string pod(char x) const { return "/run/netns/" + runPrefix() + x; }
  std::string veth(char x) const { return runPrefix() + x; }

 private:
  std::string node_;
  std::vector<std::string> pods_;
  bool ok_ = false;
};

Prefix P(const std::string& text) { return Prefix::parse(text).value(); }

// A (endpoint 1, class 16) and C (endpoint 3, class 18) talk to B (endpoint 2, class 17).
// B: ingress from class 16 on tcp/8000-8100, from anyone on tcp/9000; egress isolated with
// nothing allowed (its replies must still pass). A: egress to anyone on tcp/8000-9000.
compiler::State clusterState(uint64_t revision) {
  compiler::State s;
  s.revision = revision;
  s.classes[P("0.0.0.0/0")] = compiler::kWorldClass;
  s.classes[P("::/0")] = compiler::kWorldClass;
  for (int i = 1; i <= 3; ++i) {
    s.classes[P("10.198." + std::to_string(i) + ".1/32")] = compiler::kHostClass;
  }
  s.classes[P(std::string(kA) + "/32")] = 16;
  s.classes[P(std::string(kB) + "/32")] = 17;
  s.classes[P(std::string(kC) + "/32")] = 18;
  s.rules.resize(4);
  auto& a = s.endpoints[1];
  a.egressIsolated = true;
  a.entries.insert(AllowEntry{Direction::Egress, compiler::kAnyPeer, 6, {8000, 9000}, 0});
  auto& b = s.endpoints[2];
  b.ingressIsolated = true;
  b.egressIsolated = true;
  b.entries.insert(AllowEntry{Direction::Ingress, 16, 6, {8000, 8100}, 1});
  b.entries.insert(AllowEntry{Direction::Ingress, compiler::kAnyPeer, 6, {9000, 9000}, 2});
  s.endpoints[3];  // C: policy applied, not isolated
  return s;
}

EndpointAttachment attachmentOf(const Topology& t, compiler::EndpointId id, char x,
                                const char* ip) {
  EndpointAttachment a;
  a.id = id;
  a.ifname = t.veth(x);
  a.ifindex = static_cast<int>(if_nametoindex(a.ifname.c_str()));
  a.ips = {IpAddr::parse(ip).value()};
  return a;
}

class DatapathNftTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!isRoot()) GTEST_SKIP() << "needs root (network namespaces, veth, nftables)";
    removeStaleResources();
  }
};

uint64_t ruleCount(NftBackend& b, compiler::RuleId rule) {
  auto c = b.counters();
  if (!c.ok()) return 0;
  for (const auto& r : *c) {
    if (r.rule == rule) return r.packets;
  }
  return 0;
}

uint64_t dropCount(NftBackend& b, const std::string& reason) {
  auto d = b.dropCounts();
  if (!d.ok()) return 0;
  for (const auto& r : *d) {
    if (r.reason == reason) return r.packets;
  }
  return 0;
}

// The table in the kernel, read back with `nft -j`, holds exactly the lowered model's objects.
TEST_F(DatapathNftTest, TableReadsBackAsLowered) {
  Topology topo;
  ASSERT_TRUE(topo.ok()) << "could not build the namespaces";
  auto guard = NetnsGuard::enter(topo.node());
  ASSERT_TRUE(guard.ok()) << guard.error().message;
  NftOptions opts;
  NftBackend backend(opts);
  datapath::nft::Attachments atts;
  atts[1] = attachmentOf(topo, 1, 'a', kA);
  atts[2] = attachmentOf(topo, 2, 'b', kB);
  for (const auto& [id, a] : atts) ASSERT_TRUE(backend.attach(a).ok());
  const compiler::State state = clusterState(5);
  auto st = backend.sync(state);
  ASSERT_TRUE(st.ok()) << st.error().message;

  const datapath::nft::Table want = datapath::nft::lower(state, atts, opts);
  auto text = datapath::nft::queryNft(opts, "list table inet sluice");
  ASSERT_TRUE(text.ok()) << text.error().message;
  auto j = nlohmann::json::parse(*text);
  std::set<std::string> chains, sets, counters;
  size_t elements = 0;
  for (const auto& o : j["nftables"]) {
    if (o.contains("chain")) chains.insert(o["chain"]["name"].get<std::string>());
    if (o.contains("counter")) counters.insert(o["counter"]["name"].get<std::string>());
    for (const char* kind : {"set", "map"}) {
      if (!o.contains(kind)) continue;
      sets.insert(o[kind]["name"].get<std::string>());
      if (o[kind].contains("elem")) elements += o[kind]["elem"].size();
    }
  }
  std::set<std::string> wantChains, wantSets;
  size_t wantElements = 0;
  for (const auto& [name, c] : want.chains) wantChains.insert(name);
  for (const auto& [name, s] : want.sets) {
    wantSets.insert(name);
    wantElements += s.elements.size();
  }
  EXPECT_EQ(chains, wantChains);
  EXPECT_EQ(sets, wantSets);
  EXPECT_EQ(counters, want.counters);
  EXPECT_EQ(elements, wantElements);

  // Rules per chain, as the kernel lists them.
  std::map<std::string, size_t> rules;
  for (const auto& o : j["nftables"]) {
    if (o.contains("rule")) ++rules[o["rule"]["chain"].get<std::string>()];
  }
  for (const auto& [name, c] : want.chains) EXPECT_EQ(rules[name], c.rules.size()) << name;

  auto eps = backend.endpoints();
  ASSERT_TRUE(eps.ok()) << eps.error().message;
  ASSERT_EQ(eps->size(), 2u);
  EXPECT_EQ((*eps)[0].id, 1u);
  EXPECT_EQ((*eps)[0].ifname, topo.veth('a'));
  EXPECT_EQ((*eps)[0].ips, atts[1].ips);
  EXPECT_EQ((*eps)[1].ifindex, atts[2].ifindex);
  auto attached = backend.attached(atts[2]);
  ASSERT_TRUE(attached.ok());
  EXPECT_TRUE(*attached);

  ASSERT_TRUE(datapath::nft::uninstall(opts).ok());
  auto names = datapath::nft::readTableNames(opts);
  ASSERT_TRUE(names.ok());
  EXPECT_FALSE(names->exists);
}

TEST_F(DatapathNftTest, EnforcesWithRealPackets) {
  Topology topo;
  ASSERT_TRUE(topo.ok()) << "could not build the namespaces";
  const std::string node = topo.node(), a = topo.pod('a'), b = topo.pod('b'), c = topo.pod('c');
  EchoServer serverB(b, kB, {7000, 8050, 8101, 9000});
  EchoServer serverA(a, kA, {8050});
  ASSERT_TRUE(serverA.ok() && serverB.ok());
  ASSERT_TRUE(canConnect(a, kB, 8050)) << "the topology routes without a table";
  ASSERT_TRUE(canConnect(c, kB, 9000));

  NftOptions opts;
  auto backend = std::make_unique<NftBackend>(opts);
  EndpointAttachment attA, attB, attC;
  {
    auto guard = NetnsGuard::enter(node);
    ASSERT_TRUE(guard.ok());
    attA = attachmentOf(topo, 1, 'a', kA);
    attB = attachmentOf(topo, 2, 'b', kB);
    attC = attachmentOf(topo, 3, 'c', kC);
    ASSERT_TRUE(backend->attach(attA).ok());
    ASSERT_TRUE(backend->attach(attB).ok());
  }
  EXPECT_FALSE(canConnect(a, kB, 8050)) << "attached, policy not applied: dropped";
  EXPECT_FALSE(canConnect(node, kB, 8050)) << "not ready drops node traffic too";

  compiler::State state = clusterState(1);
  {
    auto guard = NetnsGuard::enter(node);
    auto st = backend->sync(state);
    ASSERT_TRUE(st.ok()) << st.error().message;
  }
  EXPECT_TRUE(canConnect(a, kB, 8050)) << "class 16 -> B tcp/8050 in 8000-8100, replies pass";
  EXPECT_FALSE(canConnect(a, kB, 8101)) << "outside B's ingress range";
  EXPECT_FALSE(canConnect(a, kB, 7000)) << "outside A's egress range";
  EXPECT_TRUE(canConnect(a, kB, 9000)) << "any peer on tcp/9000";
  EXPECT_FALSE(canConnect(b, kA, 8050)) << "B is egress-isolated with nothing allowed";
  EXPECT_TRUE(canConnect(node, kB, 8101)) << "the node's addresses always reach pods";
  EXPECT_FALSE(canConnect(c, kB, 9000)) << "C's veth is a pod veth no endpoint owns";

  {
    auto guard = NetnsGuard::enter(node);
    ASSERT_TRUE(backend->attach(attC).ok());
    EXPECT_GT(ruleCount(*backend, 1), 0u);
    EXPECT_GT(dropCount(*backend, "policy"), 0u);
    EXPECT_GT(dropCount(*backend, "not-ready"), 0u);
    EXPECT_GT(dropCount(*backend, "no-endpoint"), 0u);
  }
  EXPECT_TRUE(canConnect(c, kB, 9000)) << "C attached and ready: any peer on 9000";
  EXPECT_FALSE(canConnect(c, kB, 8050)) << "class 18 is not allowed on 8000-8100";

  // --established=recheck: a connection open under revision 1 is cut when revision 2 no longer
  // allows it; one that is still allowed keeps working.
  UniqueFd cut = connectFrom(a, kB, 8050, 2000);
  UniqueFd kept = connectFrom(a, kB, 9000, 2000);
  ASSERT_TRUE(cut.valid() && kept.valid());
  ASSERT_TRUE(echo(cut, 2000) && echo(kept, 2000));
  compiler::State next = clusterState(2);
  next.endpoints[2].entries.erase(AllowEntry{Direction::Ingress, 16, 6, {8000, 8100}, 1});
  {
    auto guard = NetnsGuard::enter(node);
    auto st = backend->apply(compiler::computeDiff(state, next));
    ASSERT_TRUE(st.ok()) << st.error().message;
  }
  EXPECT_FALSE(echo(cut, 700)) << "recheck cuts a flow policy no longer allows";
  EXPECT_TRUE(echo(kept, 2000)) << "a flow still allowed keeps working";
  EXPECT_FALSE(canConnect(a, kB, 8050));

  // A new daemon: the table stayed, the new backend reconciles it without a window.
  const uint64_t before = [&] {
    auto guard = NetnsGuard::enter(node);
    return ruleCount(*backend, 2);
  }();
  EXPECT_GT(before, 0u);
  backend.reset();
  EXPECT_TRUE(echo(kept, 2000)) << "enforcement and flows survive the daemon";
  EXPECT_FALSE(canConnect(a, kB, 8050)) << "still enforced without a daemon";
  backend = std::make_unique<NftBackend>(opts);
  {
    auto guard = NetnsGuard::enter(node);
    auto st = backend->apply(compiler::computeDiff(next, next));
    EXPECT_FALSE(st.ok()) << "apply before the first sync is refused";
    // Sync without attaching again: the endpoints the table holds stay enforced.
    st = backend->sync(next);
    ASSERT_TRUE(st.ok()) << st.error().message;
    EXPECT_GE(ruleCount(*backend, 2), before) << "counters survive the reconcile";
  }
  EXPECT_TRUE(echo(kept, 2000));
  EXPECT_TRUE(canConnect(a, kB, 9000));
  EXPECT_FALSE(canConnect(a, kB, 8050));
  EXPECT_TRUE(canConnect(c, kB, 9000));

  // The allow comes back: element adds (key, key end, counter reference) through libnftnl.
  const compiler::State again = clusterState(3);
  {
    auto guard = NetnsGuard::enter(node);
    const datapath::nft::Attachments atts = {{1, attA}, {2, attB}, {3, attC}};
    const datapath::nft::Table have = datapath::nft::lower(next, atts, opts);
    compiler::State scratch = next;
    const auto ops =
        datapath::nft::lowerDiff(have, scratch, atts, compiler::computeDiff(next, again), opts);
    ASSERT_TRUE(datapath::nft::elementOpsSupported(ops, have.sets));
    ASSERT_TRUE(ops.addElements.contains("ep_2_in_ports4"));
    auto st = backend->apply(compiler::computeDiff(next, again));
    ASSERT_TRUE(st.ok()) << st.error().message;
  }
  const uint64_t rule1 = [&] {
    auto guard = NetnsGuard::enter(node);
    return ruleCount(*backend, 1);
  }();
  EXPECT_TRUE(canConnect(a, kB, 8050)) << "allowed again after the element add";
  EXPECT_FALSE(canConnect(a, kB, 8101));
  {
    auto guard = NetnsGuard::enter(node);
    EXPECT_GT(ruleCount(*backend, 1), rule1) << "credited to the re-added rule's counter";
    ASSERT_TRUE(datapath::nft::uninstall(opts).ok());
  }
  EXPECT_TRUE(canConnect(a, kB, 8050)) << "uninstall removes all enforcement";
}

// Differential: random IR states (classes with overlapping prefixes, isolation, entries by
// class/any peer, protocol/any protocol, port ranges) written through NftBackend, and real TCP
// connections between A and B: connected == compiler::lookup allows the source's egress and the
// destination's ingress.
TEST_F(DatapathNftTest, RandomStatesAgreeWithIrLookup) {
  Topology topo;
  ASSERT_TRUE(topo.ok()) << "could not build the namespaces";
  const std::string node = topo.node(), a = topo.pod('a'), b = topo.pod('b');
  const std::vector<uint16_t> ports = {8000, 8001, 8003, 8007, 8010};
  EchoServer serverA(a, kA, ports);
  EchoServer serverB(b, kB, ports);
  ASSERT_TRUE(serverA.ok() && serverB.ok());

  NftOptions opts;
  NftBackend backend(opts);
  {
    auto guard = NetnsGuard::enter(node);
    ASSERT_TRUE(guard.ok());
    ASSERT_TRUE(backend.attach(attachmentOf(topo, 1, 'a', kA)).ok());
    ASSERT_TRUE(backend.attach(attachmentOf(topo, 2, 'b', kB)).ok());
  }
  std::mt19937 rng(20261130);
  auto pick = [&](uint32_t n) { return static_cast<uint32_t>(rng() % n); };
  const std::vector<compiler::ClassId> classes = {16, 17, 18};
  const std::vector<compiler::ClassId> peers = {compiler::kAnyPeer, compiler::kWorldClass, 16, 17,
                                                18};
  int probes = 0, allowed = 0;
  std::optional<compiler::State> previous;
  for (int round = 0; round < 10; ++round) {
    compiler::State s;
    s.revision = static_cast<uint64_t>(round + 1);
    s.classes[P("0.0.0.0/0")] = compiler::kWorldClass;
    s.classes[P("::/0")] = compiler::kWorldClass;
    for (int i = 1; i <= 3; ++i) {
      s.classes[P("10.198." + std::to_string(i) + ".1/32")] = compiler::kHostClass;
    }
    // Sometimes a covering prefix only, sometimes a /32 inside it (longest prefix wins).
    s.classes[P("10.198.0.0/16")] = classes[pick(3)];
    if (pick(3) != 0) s.classes[P(std::string(kA) + "/32")] = classes[pick(3)];
    if (pick(3) != 0) s.classes[P(std::string(kB) + "/32")] = classes[pick(3)];
    if (pick(2) != 0) s.classes[P("10.198.2.0/24")] = classes[pick(3)];
    s.rules.resize(8);
    for (compiler::EndpointId ep : {1u, 2u}) {
      auto& pol = s.endpoints[ep];
      pol.ingressIsolated = pick(2) != 0;
      pol.egressIsolated = pick(2) != 0;
      const uint32_t n = pick(8);
      for (uint32_t i = 0; i < n; ++i) {
        AllowEntry e;
        e.direction = pick(2) ? Direction::Ingress : Direction::Egress;
        e.peer = peers[pick(static_cast<uint32_t>(peers.size()))];
        e.rule = pick(8);
        const uint32_t kind = pick(4);
        if (kind == 0) {
          e.protocol = compiler::kAnyProtocol;  // any protocol, all ports
        } else {
          e.protocol = kind == 1 ? compiler::kAnyProtocol : 6;
          const uint16_t first = static_cast<uint16_t>(8000 + pick(11));
          e.ports = {first, static_cast<uint16_t>(first + pick(8))};
        }
        pol.entries.insert(e);
      }
    }
    {
      auto guard = NetnsGuard::enter(node);
      auto st = previous ? backend.apply(compiler::computeDiff(*previous, s)) : backend.sync(s);
      ASSERT_TRUE(st.ok()) << "round " << round << ": " << st.error().message;
    }
    previous = s;
    const IpAddr ipA = IpAddr::parse(kA).value(), ipB = IpAddr::parse(kB).value();
    for (uint16_t port : ports) {
      for (bool fromA : {true, false}) {
        const compiler::EndpointId src = fromA ? 1 : 2, dst = fromA ? 2 : 1;
        const bool want =
            compiler::lookup(s, src, Direction::Egress, fromA ? ipB : ipA, 6, port).has_value() &&
            compiler::lookup(s, dst, Direction::Ingress, fromA ? ipA : ipB, 6, port).has_value();
        const bool got = canConnect(fromA ? a : b, fromA ? kB : kA, port);
        ++probes;
        allowed += got;
        EXPECT_EQ(got, want) << "round " << round << (fromA ? " A->B" : " B->A") << " tcp/" << port;
      }
    }
  }
  // Both verdicts occurred, so the comparison was not vacuous.
  EXPECT_GT(allowed, 0);
  EXPECT_LT(allowed, probes);
  std::printf("nft differential: %d probes, %d allowed\n", probes, allowed);
  auto guard = NetnsGuard::enter(node);
  ASSERT_TRUE(datapath::nft::uninstall(opts).ok());
}

// Apply times at scale, printed for the figures: a 10,000-rule sync into an empty table
// and a single pod change (a new pod joining a class) as a diff. Asserts what was written: the
// kernel's element count equals the lowered model's, and the pod change is element updates only.
TEST_F(DatapathNftTest, TenThousandRuleSyncAndOnePodChange) {
  const std::string nsName = runPrefix() + "s";
  ASSERT_TRUE(sh("ip netns add " + nsName));
  struct Cleanup {
    std::string ns;
    ~Cleanup() { sh("ip netns del " + ns); }
  } cleanup{nsName};
  auto guard = NetnsGuard::enter("/run/netns/" + nsName);
  ASSERT_TRUE(guard.ok());

  // 100 endpoints x 100 entries; 2,000 pods in 40 classes (a /32 each), 10 ipBlock classes.
  compiler::State s;
  s.revision = 1;
  s.classes[P("0.0.0.0/0")] = compiler::kWorldClass;
  s.classes[P("::/0")] = compiler::kWorldClass;
  for (uint32_t i = 0; i < 2000; ++i) {
    s.classes[Prefix::host(IpAddr::v4(0x0a400000u + i * 3))] = 16 + i % 40;
  }
  for (uint32_t i = 0; i < 10; ++i)
    s.classes[Prefix(IpAddr::v4(0xac100000u + (i << 16)), 16)] = 60 + i;
  std::mt19937 rng(1);
  datapath::nft::Attachments atts;
  for (compiler::EndpointId ep = 1; ep <= 100; ++ep) {
    auto& pol = s.endpoints[ep];
    pol.ingressIsolated = true;
    pol.egressIsolated = true;
    for (int i = 0; i < 100; ++i) {
      AllowEntry e;
      e.direction = i % 2 ? Direction::Ingress : Direction::Egress;
      e.peer = i % 10 == 0 ? compiler::kAnyPeer : 16 + rng() % 54;
      e.protocol = 6;
      const uint16_t first = static_cast<uint16_t>(1000 + rng() % 30000);
      e.ports = {first, static_cast<uint16_t>(first + rng() % 100)};
      e.rule = static_cast<compiler::RuleId>(s.rules.size());
      s.rules.push_back({"ns/p" + std::to_string(ep), e.direction, i});
      pol.entries.insert(e);
    }
    atts[ep] = EndpointAttachment{
        ep, "slbench" + std::to_string(ep), 0, {IpAddr::v4(0x0a400000u + (ep - 1) * 3)}};
  }
  ASSERT_EQ(s.rules.size(), 10000u);

  NftOptions opts;
  NftBackend backend(opts);
  for (const auto& [id, a] : atts) ASSERT_TRUE(backend.attach(a).ok());
  const auto t0 = std::chrono::steady_clock::now();
  auto st = backend.sync(s);
  const auto t1 = std::chrono::steady_clock::now();
  ASSERT_TRUE(st.ok()) << st.error().message;

  compiler::State next = s;
  next.revision = 2;
  next.classes[Prefix::host(IpAddr::v4(0x0a400000u + 2000 * 3))] = 17;  // a new pod of class 17
  const auto tl0 = std::chrono::steady_clock::now();
  const datapath::nft::Table before = datapath::nft::lower(s, atts, opts);
  const auto tl1 = std::chrono::steady_clock::now();
  compiler::State scratch = s;
  const auto ops =
      datapath::nft::lowerDiff(before, scratch, atts, compiler::computeDiff(s, next), opts);
  EXPECT_TRUE(ops.addChains.empty() && ops.rewriteChains.empty() && ops.deleteChains.empty() &&
              ops.addSets.empty() && ops.deleteSets.empty());
  EXPECT_TRUE(datapath::nft::elementOpsSupported(ops, before.sets)) << "the libnftnl path";
  size_t changed = 0;
  for (const auto& [name, es] : ops.addElements) changed += es.size();
  for (const auto& [name, es] : ops.deleteElements) changed += es.size();
  const auto t2 = std::chrono::steady_clock::now();
  st = backend.apply(compiler::computeDiff(s, next));
  const auto t3 = std::chrono::steady_clock::now();
  ASSERT_TRUE(st.ok()) << st.error().message;

  const datapath::nft::Table want = datapath::nft::lower(next, atts, opts);
  size_t wantElements = 0;
  for (const auto& [name, set] : want.sets) wantElements += set.elements.size();
  auto text = datapath::nft::queryNft(opts, "list table inet sluice");
  ASSERT_TRUE(text.ok()) << text.error().message;
  size_t elements = 0;
  const auto listed = nlohmann::json::parse(*text);
  for (const auto& o : listed["nftables"]) {
    for (const char* kind : {"set", "map"}) {
      if (o.contains(kind) && o[kind].contains("elem")) elements += o[kind]["elem"].size();
    }
  }
  EXPECT_EQ(elements, wantElements);
  using ms = std::chrono::duration<double, std::milli>;
  std::printf(
      "nft lowering of the 10000-rule state: %.0f ms; lowering + diff of one pod change: "
      "%.0f ms\n",
      ms(tl1 - tl0).count(), ms(t2 - tl1).count());
  std::printf(
      "nft apply: 10000-rule sync %.0f ms (%zu set elements, %zu chains); one pod change "
      "%.1f ms (%zu element updates)\n",
      ms(t1 - t0).count(), wantElements, want.chains.size(), ms(t3 - t2).count(), changed);
  ASSERT_TRUE(datapath::nft::uninstall(opts).ok());
}

// IPv6: the v6 class maps and allow maps, and neighbour discovery to the gateway while the pod
// is isolated both ways with nothing allowed out (replies still need its neighbour entries).
TEST_F(DatapathNftTest, Ipv6ClassesPortsAndNeighbourDiscovery) {
  Topology topo;
  ASSERT_TRUE(topo.ok()) << "could not build the namespaces";
  const char* a6 = "fd98:1::2";
  const char* b6 = "fd98:2::2";
  const std::string node = topo.node(), a = topo.pod('a'), b = topo.pod('b');
  EchoServer serverB(b, b6, {8050, 8101});
  ASSERT_TRUE(serverB.ok());
  // The first connections wait for neighbour discovery (and the addresses to settle): bounded.
  bool routed = false;
  for (int i = 0; i < 10 && !routed; ++i) routed = canConnect(a, b6, 8050);
  ASSERT_TRUE(routed) << "the topology routes IPv6 without a table";

  compiler::State s;
  s.revision = 1;
  s.classes[P("0.0.0.0/0")] = compiler::kWorldClass;
  s.classes[P("::/0")] = compiler::kWorldClass;
  s.classes[P("fd98:1::/64")] = 16;             // A's link
  s.classes[P(std::string(a6) + "/128")] = 19;  // A itself: a longer prefix, another class
  s.classes[P(std::string(b6) + "/128")] = 17;
  s.rules.resize(2);
  s.endpoints[1];  // A: not isolated
  auto& pb = s.endpoints[2];
  pb.ingressIsolated = true;
  pb.egressIsolated = true;
  pb.entries.insert(AllowEntry{Direction::Ingress, 16, 6, {8000, 8100}, 0});
  NftOptions opts;
  NftBackend backend(opts);
  {
    auto guard = NetnsGuard::enter(node);
    ASSERT_TRUE(guard.ok());
    EndpointAttachment attA = attachmentOf(topo, 1, 'a', kA);
    attA.ips.push_back(IpAddr::parse(a6).value());
    EndpointAttachment attB = attachmentOf(topo, 2, 'b', kB);
    attB.ips.push_back(IpAddr::parse(b6).value());
    ASSERT_TRUE(backend.attach(attA).ok());
    ASSERT_TRUE(backend.attach(attB).ok());
    auto st = backend.sync(s);
    ASSERT_TRUE(st.ok()) << st.error().message;
  }
  // A is class 19 (its /128), not 16 (its /64): longest prefix wins, so denied.
  EXPECT_FALSE(canConnect(a, b6, 8050));
  s.classes[P(std::string(a6) + "/128")] = 16;
  s.revision = 2;
  {
    auto guard = NetnsGuard::enter(node);
    auto st = backend.sync(s);
    ASSERT_TRUE(st.ok()) << st.error().message;
  }
  // Flush B's neighbour cache so the reply needs neighbour discovery under enforcement.
  ASSERT_TRUE(sh("ip -n " + runPrefix() + "b -6 neigh flush all"));
  EXPECT_TRUE(canConnect(a, b6, 8050)) << "class 16 on tcp/8050 over IPv6, replies pass";
  EXPECT_FALSE(canConnect(a, b6, 8101)) << "outside the port range";
  auto guard = NetnsGuard::enter(node);
  ASSERT_TRUE(datapath::nft::uninstall(opts).ok());
}

// --established=keep: a connection open before a policy change survives it; new ones follow the
// new policy.
TEST_F(DatapathNftTest, KeepModeLeavesOpenConnections) {
  Topology topo;
  ASSERT_TRUE(topo.ok()) << "could not build the namespaces";
  const std::string node = topo.node(), a = topo.pod('a'), b = topo.pod('b');
  EchoServer serverB(b, kB, {8050});
  ASSERT_TRUE(serverB.ok());
  NftOptions opts;
  opts.established = datapath::EstablishedMode::Keep;
  NftBackend backend(opts);
  const compiler::State state = clusterState(1);
  {
    auto guard = NetnsGuard::enter(node);
    ASSERT_TRUE(guard.ok());
    ASSERT_TRUE(backend.attach(attachmentOf(topo, 1, 'a', kA)).ok());
    ASSERT_TRUE(backend.attach(attachmentOf(topo, 2, 'b', kB)).ok());
    auto st = backend.sync(state);
    ASSERT_TRUE(st.ok()) << st.error().message;
  }
  UniqueFd open = connectFrom(a, kB, 8050, 2000);
  ASSERT_TRUE(open.valid());
  ASSERT_TRUE(echo(open, 2000));
  compiler::State next = clusterState(2);
  next.endpoints[2].entries.erase(AllowEntry{Direction::Ingress, 16, 6, {8000, 8100}, 1});
  {
    auto guard = NetnsGuard::enter(node);
    auto st = backend.apply(compiler::computeDiff(state, next));
    ASSERT_TRUE(st.ok()) << st.error().message;
  }
  EXPECT_TRUE(echo(open, 2000)) << "keep: the open connection survives the deny";
  EXPECT_FALSE(canConnect(a, kB, 8050)) << "a new connection is denied";
  auto guard = NetnsGuard::enter(node);
  ASSERT_TRUE(datapath::nft::uninstall(opts).ok());
}

// Dropped packets reach the flow log: nflog events name the endpoint, the direction, the reason
// and the packet's addresses and ports.
TEST_F(DatapathNftTest, FlowEventsReportDeniedPackets) {
  Topology topo;
  ASSERT_TRUE(topo.ok()) << "could not build the namespaces";
  const std::string node = topo.node(), a = topo.pod('a'), b = topo.pod('b');
  EchoServer serverB(b, kB, {7000, 8101});
  ASSERT_TRUE(serverB.ok());
  NftOptions opts;
  NftBackend backend(opts);
  std::unique_ptr<datapath::FlowEventReader> reader;
  EndpointAttachment attA, attB;
  {
    auto guard = NetnsGuard::enter(node);
    ASSERT_TRUE(guard.ok());
    auto r = backend.openFlowEvents();  // its socket lives in the node namespace
    ASSERT_TRUE(r.ok()) << r.error().message;
    reader = std::move(*r);
    attA = attachmentOf(topo, 1, 'a', kA);
    attB = attachmentOf(topo, 2, 'b', kB);
    ASSERT_TRUE(backend.attach(attA).ok());
    ASSERT_TRUE(backend.attach(attB).ok());
    auto st = backend.sync(clusterState(1));
    ASSERT_TRUE(st.ok()) << st.error().message;
  }
  EXPECT_FALSE(canConnect(a, kB, 8101)) << "B's ingress allows 8000-8100 only";
  EXPECT_FALSE(canConnect(a, kB, 7000)) << "A's egress allows 8000-9000 only";

  std::vector<datapath::FlowEvent> events;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  auto seen = [&](uint16_t port) {
    return std::any_of(events.begin(), events.end(),
                       [&](const auto& e) { return e.dstPort == port; });
  };
  while ((!seen(8101) || !seen(7000)) && std::chrono::steady_clock::now() < deadline) {
    auto n = reader->poll(200, [&](const datapath::FlowEvent& e) { events.push_back(e); });
    ASSERT_TRUE(n.ok()) << n.error().message;
  }
  const auto find = [&](uint16_t port) -> const datapath::FlowEvent* {
    for (const auto& e : events) {
      if (e.dstPort == port) return &e;
    }
    return nullptr;
  };
  const datapath::FlowEvent* in = find(8101);
  ASSERT_NE(in, nullptr) << "no event for the denied connection to B:8101";
  EXPECT_EQ(in->reason, "policy");
  EXPECT_EQ(in->verdict, datapath::FlowVerdict::Denied);
  EXPECT_EQ(in->endpoint, 2u);
  EXPECT_EQ(in->direction, Direction::Ingress);
  EXPECT_EQ(in->ifindex, attB.ifindex);
  EXPECT_EQ(in->src.toString(), kA);
  EXPECT_EQ(in->dst.toString(), kB);
  EXPECT_EQ(in->protocol, 6);
  EXPECT_NE(in->srcPort, 0);
  EXPECT_GT(in->wallNs, 0);
  const datapath::FlowEvent* out = find(7000);
  ASSERT_NE(out, nullptr) << "no event for A's denied egress to B:7000";
  EXPECT_EQ(out->reason, "policy");
  EXPECT_EQ(out->endpoint, 1u);
  EXPECT_EQ(out->direction, Direction::Egress);
  EXPECT_EQ(out->ifindex, attA.ifindex);
  reader.reset();
  auto guard = NetnsGuard::enter(node);
  ASSERT_TRUE(datapath::nft::uninstall(opts).ok());
}

// Backend contract (backend.h): after a restart, sync before applying diffs. A new backend on a
// table an earlier instance wrote refuses a diff until it has synced; on no table, the first
// diff is a diff from the empty State.
TEST_F(DatapathNftTest, ApplyBeforeSyncOnAnEarlierTableIsAnError) {
  Topology topo;
  ASSERT_TRUE(topo.ok()) << "could not build the namespaces";
  const std::string node = topo.node(), a = topo.pod('a'), b = topo.pod('b');
  EchoServer serverB(b, kB, {8050, 9000});
  ASSERT_TRUE(serverB.ok());
  NftOptions opts;
  const compiler::State state = clusterState(1);
  {
    auto guard = NetnsGuard::enter(node);
    ASSERT_TRUE(guard.ok());
    NftBackend first(opts);
    ASSERT_TRUE(first.attach(attachmentOf(topo, 1, 'a', kA)).ok());
    ASSERT_TRUE(first.attach(attachmentOf(topo, 2, 'b', kB)).ok());
    auto st = first.apply(compiler::computeDiff(compiler::State{}, state));
    ASSERT_TRUE(st.ok()) << "a fresh table: the first diff is from empty: " << st.error().message;
  }
  EXPECT_TRUE(canConnect(a, kB, 8050));

  compiler::State next = clusterState(2);
  next.endpoints[2].entries.erase(AllowEntry{Direction::Ingress, 16, 6, {8000, 8100}, 1});
  NftBackend second(opts);
  {
    auto guard = NetnsGuard::enter(node);
    ASSERT_TRUE(guard.ok());
    // A restart re-attaches before syncing: that must not disturb the earlier table.
    ASSERT_TRUE(second.attach(attachmentOf(topo, 1, 'a', kA)).ok());
    ASSERT_TRUE(second.attach(attachmentOf(topo, 2, 'b', kB)).ok());
  }
  EXPECT_TRUE(canConnect(a, kB, 8050)) << "re-attach before sync kept the earlier policy";
  {
    auto guard = NetnsGuard::enter(node);
    auto st = second.apply(compiler::computeDiff(state, next));
    ASSERT_FALSE(st.ok()) << "apply before sync on an earlier instance's table";
    EXPECT_NE(st.error().message.find("sync before applying diffs"), std::string::npos)
        << st.error().message;
  }
  EXPECT_TRUE(canConnect(a, kB, 8050)) << "the refused diff changed nothing";
  {
    auto guard = NetnsGuard::enter(node);
    ASSERT_TRUE(second.sync(state).ok());
    auto st = second.apply(compiler::computeDiff(state, next));
    ASSERT_TRUE(st.ok()) << st.error().message;
  }
  EXPECT_FALSE(canConnect(a, kB, 8050)) << "after sync the diff applies";
  EXPECT_TRUE(canConnect(a, kB, 9000));
  auto guard = NetnsGuard::enter(node);
  ASSERT_TRUE(datapath::nft::uninstall(opts).ok());
}

// `sluice-policyd --uninstall --datapath nft` removes the table from the namespace it runs in:
// enforcement ends, and a second run (nothing left) succeeds too.
TEST_F(DatapathNftTest, UninstallCommandRemovesTheTable) {
  Topology topo;
  ASSERT_TRUE(topo.ok()) << "could not build the namespaces";
  const std::string node = topo.node(), a = topo.pod('a'), b = topo.pod('b');
  EchoServer serverB(b, kB, {7000});
  ASSERT_TRUE(serverB.ok());
  NftOptions opts;
  NftBackend backend(opts);
  {
    auto guard = NetnsGuard::enter(node);
    ASSERT_TRUE(guard.ok());
    ASSERT_TRUE(backend.attach(attachmentOf(topo, 1, 'a', kA)).ok());
    ASSERT_TRUE(backend.attach(attachmentOf(topo, 2, 'b', kB)).ok());
    ASSERT_TRUE(backend.sync(clusterState(1)).ok());
  }
  ASSERT_FALSE(canConnect(a, kB, 7000)) << "denied while the table enforces";
  const std::string cmd = std::string(SLUICE_BINARY_DIR) +
                          "/policyd/daemon/sluice-policyd --uninstall --datapath nft "
                          ">/dev/null 2>&1";
  for (int run = 0; run < 2; ++run) {
    auto guard = NetnsGuard::enter(node);  // the command acts on the namespace it runs in
    ASSERT_TRUE(guard.ok());
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd << " (run " << run << ")";
    auto names = datapath::nft::readTableNames(opts);
    ASSERT_TRUE(names.ok());
    EXPECT_FALSE(names->exists);
  }
  EXPECT_TRUE(canConnect(a, kB, 7000)) << "no enforcement after uninstall";
}

}  // namespace
}  // namespace sluice::e2e
