// Real traffic through the tc programs: a "node" and a "pod" network namespace joined by a veth,
// BpfBackend attached to the node end, real TCP connections. Shows that enforcement follows the
// programmed State, stays in force after the BpfBackend object is destroyed (a daemon exit), and
// that a new instance on the same pin directory takes over without disturbing an open connection.
//
// Everything lives in namespaces this test creates (named sltd<pid>h / sltd<pid>p); nothing is
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

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "common/netns.h"
#include "common/unique_fd.h"
#include "e2e/datapath/tcp_probe.h"
#include "e2e/datapath/test_support.h"
#include "policyd/datapath/bpf/bpf_backend.h"
#include "policyd/datapath/bpf/drop_event_reader.h"

namespace sluice::e2e {
namespace {

using compiler::AllowEntry;
using compiler::Direction;
using datapath::bpf::BpfBackend;
using datapath::bpf::BpfOptions;

constexpr const char* kNodeAddr = "10.199.0.1";
constexpr const char* kPodAddr = "10.199.0.2";

bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

// Two named namespaces and a veth between them.
class Topology {
 public:
  Topology() : node_(runPrefix() + "h"), pod_(runPrefix() + "p"), hostVeth_(runPrefix() + "v") {
    ok_ = sh("ip netns add " + node_) && sh("ip netns add " + pod_) &&
          sh("ip -n " + node_ + " link add " + hostVeth_ + " type veth peer name eth0 netns " +
             pod_) &&
          sh("ip -n " + node_ + " link set lo up") && sh("ip -n " + pod_ + " link set lo up") &&
          sh("ip -n " + node_ + " addr add " + kNodeAddr + "/24 dev " + hostVeth_) &&
          sh("ip -n " + pod_ + " addr add " + kPodAddr + "/24 dev eth0") &&
          sh("ip -n " + node_ + " link set " + hostVeth_ + " up") &&
          sh("ip -n " + pod_ + " link set eth0 up");
  }
  ~Topology() {
    sh("ip netns del " + pod_);  // takes the veth pair with it
    sh("ip netns del " + node_);
  }
  bool ok() const { return ok_; }
  std::string nodeNs() const { return "/run/netns/" + node_; }
  std::string podNs() const { return "/run/netns/" + pod_; }
  const std::string& hostVeth() const { return hostVeth_; }

 private:
  std::string node_, pod_, hostVeth_;
  bool ok_ = false;
};

Prefix P(const char* text) { return Prefix::parse(text).value(); }

// The pod (endpoint 1) is isolated both ways; the node address is an ordinary peer class (20)
// allowed in on tcp/8080 only.
compiler::State podState() {
  compiler::State s;
  s.classes[P("0.0.0.0/0")] = compiler::kWorldClass;
  s.classes[P("::/0")] = compiler::kWorldClass;
  s.classes[P(std::string(kNodeAddr).append("/32").c_str())] = 20;
  s.classes[P(std::string(kPodAddr).append("/32").c_str())] = 21;
  compiler::EndpointPolicy ep;
  ep.ingressIsolated = true;
  ep.egressIsolated = true;
  ep.entries.insert(AllowEntry{Direction::Ingress, 20, 6, {8080, 8080}, 0});
  s.endpoints[1] = ep;
  s.rules.resize(1);
  s.revision = 1;
  return s;
}

class DatapathVethTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!isRoot()) GTEST_SKIP() << "needs root (network namespaces, veth, BPF)";
    removeStaleResources();
  }
};

Result<std::unique_ptr<BpfBackend>> openAndAttach(const std::string& pinDir, const Topology& topo,
                                                  datapath::EndpointAttachment* att) {
  SLUICE_ASSIGN_OR_RETURN(auto backend,
                          BpfBackend::open(BpfOptions{pinDir, datapath::EstablishedMode::Recheck}));
  // Attach runs in the node namespace, where the host veth and its ifindex live.
  SLUICE_ASSIGN_OR_RETURN(NetnsGuard guard, NetnsGuard::enter(topo.nodeNs()));
  att->id = 1;
  att->ifname = topo.hostVeth();
  att->ifindex = static_cast<int>(if_nametoindex(topo.hostVeth().c_str()));
  att->ips = {IpAddr::parse(kPodAddr).value()};
  SLUICE_RETURN_IF_ERROR(backend->attach(*att));
  SLUICE_ASSIGN_OR_RETURN(bool attached, backend->attached(*att));
  if (!attached) return makeError("attached() is false after attach()");
  return backend;
}

TEST_F(DatapathVethTest, EnforcesOnARealVethAndSurvivesARestart) {
  Topology topo;
  ASSERT_TRUE(topo.ok()) << "could not build the namespaces (iproute2 missing?)";
  PinDir pin("veth");
  EchoServer podServer(topo.podNs(), kPodAddr, {8080, 8081});
  EchoServer nodeServer(topo.nodeNs(), kNodeAddr, {9090});
  ASSERT_TRUE(podServer.ok() && nodeServer.ok());
  const std::string node = topo.nodeNs(), pod = topo.podNs();

  // Without enforcement everything connects (the topology works).
  ASSERT_TRUE(canConnect(node, kPodAddr, 8081));

  datapath::EndpointAttachment att;
  auto opened = openAndAttach(pin.path(), topo, &att);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  std::unique_ptr<BpfBackend> backend = std::move(opened).value();
  EXPECT_FALSE(canConnect(node, kPodAddr, 8080)) << "attached but not ready must drop";

  const compiler::State state = podState();
  ASSERT_TRUE(backend->sync(state).ok());
  EXPECT_TRUE(canConnect(node, kPodAddr, 8080)) << "ingress tcp/8080 from class 20 is allowed";
  EXPECT_FALSE(canConnect(node, kPodAddr, 8081)) << "ingress tcp/8081 is not";
  EXPECT_FALSE(canConnect(pod, kNodeAddr, 9090)) << "the pod is egress-isolated";

  UniqueFd open = connectFrom(node, kPodAddr, 8080, kAllowedWaitMs);
  ASSERT_TRUE(open.valid());
  ASSERT_TRUE(echo(open, kAllowedWaitMs));

  backend.reset();  // the daemon exits: programs stay attached, maps stay pinned
  EXPECT_TRUE(echo(open, kAllowedWaitMs)) << "open connection after the daemon exit";
  EXPECT_FALSE(canConnect(node, kPodAddr, 8081)) << "still enforced without a daemon";
  EXPECT_TRUE(canConnect(node, kPodAddr, 8080));

  opened = openAndAttach(pin.path(), topo, &att);  // a new daemon takes over
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  backend = std::move(opened).value();
  EXPECT_TRUE(backend->reusedPinnedMaps());
  ASSERT_TRUE(backend->sync(state).ok());
  EXPECT_EQ(backend->lastWrite().classWrites + backend->lastWrite().policyWrites +
                backend->lastWrite().endpointWrites,
            0u);
  EXPECT_TRUE(echo(open, kAllowedWaitMs)) << "open connection after the new daemon's sync";
  EXPECT_FALSE(canConnect(node, kPodAddr, 8081));

  // A deny written now cuts the open connection (EstablishedMode::Recheck).
  compiler::Diff revoke;
  compiler::Diff::EndpointChange change;
  change.endpoint = 1;
  change.ingressIsolated = true;
  change.egressIsolated = true;
  change.remove.assign(state.endpoints.at(1).entries.begin(), state.endpoints.at(1).entries.end());
  revoke.endpoints.push_back(change);
  revoke.revision = 2;
  ASSERT_TRUE(backend->apply(revoke).ok());
  EXPECT_FALSE(echo(open, kDeniedWaitMs)) << "revoked connection still passes";
  EXPECT_FALSE(canConnect(node, kPodAddr, 8080));

  auto counters = backend->counters();
  ASSERT_TRUE(counters.ok());
  ASSERT_FALSE(counters->empty());
  EXPECT_GT((*counters)[0].packets, 0u) << "rule 0 admitted the connections";

  auto guard = NetnsGuard::enter(node);
  ASSERT_TRUE(guard.ok());
  EXPECT_TRUE(backend->detach(att).ok());
  EXPECT_TRUE(canConnect(node, kPodAddr, 8081)) << "detach removes enforcement";
}

// A third namespace routed through the node: its packets reach the pod forwarded, so tc egress
// of the host veth sees skb->ingress_ifindex != 0, while the node's own packets have 0.
class RemoteHost {
 public:
  RemoteHost(const Topology& topo)
      : node_(topo.nodeNs().substr(std::string("/run/netns/").size())),
        remote_(runPrefix() + "r"),
        link_(runPrefix() + "w") {
    ok_ = sh("ip netns add " + remote_) &&
          sh("ip -n " + node_ + " link add " + link_ + " type veth peer name eth0 netns " +
             remote_) &&
          sh("ip -n " + remote_ + " link set lo up") &&
          sh("ip -n " + node_ + " addr add " + kRouterAddr + "/24 dev " + link_) &&
          sh("ip -n " + remote_ + " addr add " + kRemoteAddr + "/24 dev eth0") &&
          // The remote also holds the node's address, to forge it as a source.
          sh("ip -n " + remote_ + " addr add " + kNodeAddr + "/32 dev eth0") &&
          sh("ip -n " + node_ + " link set " + link_ + " up") &&
          sh("ip -n " + remote_ + " link set eth0 up") &&
          sh("ip -n " + remote_ + " route add " + kPodAddr + "/32 via " + kRouterAddr) &&
          sh("ip -n " + topo.podNs().substr(11) + " route add 10.198.0.0/24 via " + kNodeAddr) &&
          // The node forwards and, like a node with rp_filter=0 on its uplink, does not drop
          // a packet whose source is one of its own addresses (accept_local).
          sh("ip netns exec " + node_ + " sysctl -qw net.ipv4.ip_forward=1") &&
          sh("ip netns exec " + node_ + " sysctl -qw net.ipv4.conf.all.rp_filter=0") &&
          sh("ip netns exec " + node_ + " sysctl -qw net.ipv4.conf." + link_ + ".rp_filter=0") &&
          sh("ip netns exec " + node_ + " sysctl -qw net.ipv4.conf." + link_ + ".accept_local=1");
  }
  ~RemoteHost() { sh("ip netns del " + remote_); }
  RemoteHost(const RemoteHost&) = delete;
  RemoteHost& operator=(const RemoteHost&) = delete;
  bool ok() const { return ok_; }
  std::string ns() const { return "/run/netns/" + remote_; }

  static constexpr const char* kRouterAddr = "10.198.0.1";
  static constexpr const char* kRemoteAddr = "10.198.0.2";

 private:
  std::string node_, remote_, link_;
  bool ok_ = false;
};

// Sends one SYN from `src` (bound) in `ns` to ip:port; true when the connection opened.
bool connectFromSource(const std::string& ns, const char* src, const char* ip, uint16_t port,
                       int timeoutMs) {
  return connectFrom(ns, ip, port, timeoutMs, src).valid();
}

// Drop events for packets towards the pod with this source, dropped as spoofed. Events, not the
// counter: the pod's own IPv6 link-local chatter (MLD) is counted as spoofed too.
class SpoofedFrom {
 public:
  SpoofedFrom(const std::string& pinDir, const char* src) : src_(IpAddr::parse(src).value()) {
    auto r =
        datapath::bpf::DropEventReader::open(pinDir, [this](const datapath::bpf::DropEvent& e) {
          if (e.reason == datapath::bpf::DropReason::Spoofed && e.direction == Direction::Ingress &&
              e.src == src_) {
            ++count_;
          }
        });
    if (r.ok()) reader_ = std::move(r).value();
  }
  bool ok() const { return reader_ != nullptr; }
  int count() {
    for (int i = 0; i < 10 && reader_; ++i) {
      auto n = reader_->poll(50);
      if (!n.ok() || *n == 0) break;
    }
    return count_;
  }

 private:
  IpAddr src_;
  std::unique_ptr<datapath::bpf::DropEventReader> reader_;
  int count_ = 0;
};

TEST_F(DatapathVethTest, NodeAddressIsTrustedOnlyForPacketsTheNodeSends) {
  Topology topo;
  ASSERT_TRUE(topo.ok()) << "could not build the namespaces (iproute2 missing?)";
  RemoteHost remote(topo);
  ASSERT_TRUE(remote.ok()) << "could not build the routed remote namespace";
  PinDir pin("vethfwd");
  EchoServer podServer(topo.podNs(), kPodAddr, {8080});
  ASSERT_TRUE(podServer.ok());
  datapath::EndpointAttachment att;
  auto opened = openAndAttach(pin.path(), topo, &att);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  std::unique_ptr<BpfBackend> backend = std::move(opened).value();

  // The node's address is the HOST class (always allowed in); the remote's is allowed on 8080.
  compiler::State s;
  s.classes[P("0.0.0.0/0")] = compiler::kWorldClass;
  s.classes[P("::/0")] = compiler::kWorldClass;
  s.classes[P(std::string(kNodeAddr).append("/32").c_str())] = compiler::kHostClass;
  s.classes[P(std::string(RemoteHost::kRemoteAddr).append("/32").c_str())] = 30;
  compiler::EndpointPolicy ep;
  ep.ingressIsolated = true;
  ep.egressIsolated = true;
  ep.entries.insert(AllowEntry{Direction::Ingress, 30, 6, {8080, 8080}, 0});
  s.endpoints[1] = ep;
  s.rules.resize(1);
  s.revision = 1;
  ASSERT_TRUE(backend->sync(s).ok());
  SpoofedFrom forgedNode(pin.path(), kNodeAddr);
  ASSERT_TRUE(forgedNode.ok());

  EXPECT_TRUE(
      connectFromSource(remote.ns(), RemoteHost::kRemoteAddr, kPodAddr, 8080, kAllowedWaitMs))
      << "forwarding works: the remote's own address connects";
  EXPECT_TRUE(canConnect(topo.nodeNs(), kPodAddr, 8080)) << "the node itself is trusted";
  EXPECT_EQ(forgedNode.count(), 0) << "the node's own packets are not spoofed";

  EXPECT_FALSE(connectFromSource(remote.ns(), kNodeAddr, kPodAddr, 8080, kDeniedWaitMs));
  EXPECT_GE(forgedNode.count(), 1)
      << "a forwarded packet with the node's source must be dropped as spoofed";
  const int forged = forgedNode.count();
  EXPECT_TRUE(canConnect(topo.nodeNs(), kPodAddr, 8080)) << "the node is still trusted";
  EXPECT_EQ(forgedNode.count(), forged);

  auto guard = NetnsGuard::enter(topo.nodeNs());
  ASSERT_TRUE(guard.ok());
  EXPECT_TRUE(backend->detach(att).ok());
}

// Backend contract (backend.h): on maps an earlier instance pinned, a diff before the first sync
// is refused (nothing changes). Then `sluice-policyd --uninstall --datapath bpf` detaches the
// programs and removes the pins: the pod is reachable as without policy.
TEST_F(DatapathVethTest, ApplyBeforeSyncIsRefusedAndUninstallRemovesEverything) {
  Topology topo;
  ASSERT_TRUE(topo.ok()) << "could not build the namespaces (iproute2 missing?)";
  PinDir pin("uninstall");
  EchoServer podServer(topo.podNs(), kPodAddr, {8080, 8081});
  ASSERT_TRUE(podServer.ok());
  const std::string node = topo.nodeNs();
  datapath::EndpointAttachment att;
  auto opened = openAndAttach(pin.path(), topo, &att);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  const compiler::State state = podState();
  ASSERT_TRUE((*opened)->sync(state).ok());
  opened->reset();

  opened = openAndAttach(pin.path(), topo, &att);  // a restart
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  ASSERT_TRUE((*opened)->reusedPinnedMaps());
  compiler::Diff allow8081;  // a diff from `state`: endpoint 1 also admits tcp/8081
  compiler::Diff::EndpointChange change;
  change.endpoint = 1;
  change.ingressIsolated = change.egressIsolated = true;
  change.add.push_back(AllowEntry{Direction::Ingress, 20, 6, {8081, 8081}, 0});
  allow8081.endpoints.push_back(change);
  allow8081.revision = 2;
  auto st = (*opened)->apply(allow8081);
  ASSERT_FALSE(st.ok()) << "apply before sync on reused maps";
  EXPECT_NE(st.error().message.find("sync before applying diffs"), std::string::npos)
      << st.error().message;
  EXPECT_FALSE(canConnect(node, kPodAddr, 8081)) << "the refused diff changed nothing";
  EXPECT_TRUE(canConnect(node, kPodAddr, 8080));
  opened->reset();

  const std::string cmd = std::string(SLUICE_BINARY_DIR) +
                          "/policyd/daemon/sluice-policyd --uninstall --datapath bpf "
                          "--bpf-pin-dir " +
                          pin.path() + " >/dev/null 2>&1";
  {
    auto guard = NetnsGuard::enter(node);  // the command acts on the namespace it runs in
    ASSERT_TRUE(guard.ok());
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  EXPECT_FALSE(std::filesystem::exists(pin.path())) << "pins removed";
  EXPECT_TRUE(canConnect(node, kPodAddr, 8081)) << "no enforcement after uninstall";
  for (const char* dir : {"ingress", "egress"}) {
    EXPECT_FALSE(sh("tc -n " + runPrefix() + "h filter show dev " + topo.hostVeth() + " " + dir +
                    " | grep -q bpf"))
        << "a tc filter is left on the " << dir << " hook";
  }
  {
    auto guard = NetnsGuard::enter(node);
    ASSERT_TRUE(guard.ok());
    EXPECT_EQ(std::system(cmd.c_str()), 0) << "nothing to remove is success";
  }
}

}  // namespace
}  // namespace sluice::e2e
