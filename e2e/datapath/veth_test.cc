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
#include <memory>
#include <thread>
#include <vector>

#include "common/netns.h"
#include "common/unique_fd.h"
#include "e2e/datapath/test_support.h"
#include "policyd/datapath/bpf/bpf_backend.h"

namespace sluice::e2e {
namespace {

using compiler::AllowEntry;
using compiler::Direction;
using datapath::bpf::BpfBackend;
using datapath::bpf::BpfOptions;

constexpr const char* kNodeAddr = "10.199.0.1";
constexpr const char* kPodAddr = "10.199.0.2";
constexpr int kDeniedWaitMs = 700;  // a dropped SYN is never answered; do not wait for retries
constexpr int kAllowedWaitMs = 2000;

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

UniqueFd tcpSocketIn(const std::string& ns) {
  auto guard = NetnsGuard::enter(ns);
  if (!guard.ok()) return UniqueFd();
  return UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
}

sockaddr_in addrOf(const char* ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

// Echo servers on ports of one namespace; a thread polls them until destroyed (bounded by the
// 100 ms poll timeout).
class EchoServer {
 public:
  EchoServer(const std::string& ns, const char* ip, std::vector<uint16_t> ports) {
    for (uint16_t port : ports) {
      UniqueFd fd = tcpSocketIn(ns);
      const int one = 1;
      ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      sockaddr_in a = addrOf(ip, port);
      if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
          ::listen(fd.get(), 16) != 0) {
        return;
      }
      listeners_.push_back(std::move(fd));
    }
    ok_ = true;
    thread_ = std::thread([this] { loop(); });
  }
  ~EchoServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  bool ok() const { return ok_; }

 private:
  void loop() {
    std::vector<UniqueFd> clients;
    while (!stop_) {
      std::vector<pollfd> fds;
      for (const auto& l : listeners_) fds.push_back({l.get(), POLLIN, 0});
      for (const auto& c : clients) fds.push_back({c.get(), POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
      for (size_t i = 0; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        if (i < listeners_.size()) {
          int c = ::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
          if (c >= 0) clients.emplace_back(c);
          continue;
        }
        char buf[256];
        ssize_t n = ::recv(fds[i].fd, buf, sizeof(buf), 0);
        if (n > 0) {
          (void)::send(fds[i].fd, buf, static_cast<size_t>(n), MSG_NOSIGNAL);
        } else if (n == 0) {
          auto& c = clients[i - listeners_.size()];
          c.reset();
        }
      }
      std::erase_if(clients, [](const UniqueFd& c) { return !c.valid(); });
    }
  }

  std::vector<UniqueFd> listeners_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool ok_ = false;
};

// A TCP connection made from a socket created in `ns`; invalid when it does not connect in time.
UniqueFd connectFrom(const std::string& ns, const char* ip, uint16_t port, int timeoutMs) {
  UniqueFd fd = tcpSocketIn(ns);
  if (!fd) return fd;
  sockaddr_in a = addrOf(ip, port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 &&
      errno != EINPROGRESS) {
    return UniqueFd();
  }
  pollfd p{fd.get(), POLLOUT, 0};
  if (::poll(&p, 1, timeoutMs) != 1) return UniqueFd();
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  return err == 0 ? std::move(fd) : UniqueFd();
}

// One message there and back on an open connection.
bool echo(const UniqueFd& fd, int timeoutMs) {
  const char msg[] = "ping";
  if (::send(fd.get(), msg, sizeof(msg), MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(msg)))
    return false;
  size_t got = 0;
  char buf[sizeof(msg)];
  while (got < sizeof(msg)) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, timeoutMs) != 1) return false;
    ssize_t n = ::recv(fd.get(), buf + got, sizeof(buf) - got, 0);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return std::memcmp(buf, msg, sizeof(msg)) == 0;
}

bool canConnect(const std::string& ns, const char* ip, uint16_t port) {
  UniqueFd fd = connectFrom(ns, ip, port, kDeniedWaitMs);
  return fd.valid() && echo(fd, kAllowedWaitMs);
}

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

}  // namespace
}  // namespace sluice::e2e
