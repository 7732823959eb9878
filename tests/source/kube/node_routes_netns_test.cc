// NodeRouter with the real netlink route table, inside a network namespace this test makes
// (unshare on a thread of its own, so the rest of the process and the host stay untouched; the
// namespace goes away with the thread). Skips when not root.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <thread>

#include "common/netlink.h"
#include "policyd/source/kube/node_routes.h"

namespace sluice::source::kube {
namespace {

Node node(const std::string& name, const std::string& ip, const std::string& cidr) {
  Node n;
  n.name = name;
  n.internalIps.push_back(*IpAddr::parse(ip));
  n.podCidrs.push_back(*Prefix::parse(cidr));
  return n;
}

std::map<std::string, std::string> routesOf(netlink::Socket& s) {
  std::map<std::string, std::string> out;
  auto rs = s.routes(Family::V4);
  EXPECT_TRUE(rs.ok());
  if (!rs.ok()) return out;
  for (const auto& r : *rs)
    if (r.gateway && r.dst.toString().starts_with("10.244."))
      out[r.dst.toString()] = r.gateway->toString();
  return out;
}

// Runs `body` on a thread inside a fresh network namespace.
void inFreshNetns(const std::function<void()>& body) {
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      ADD_FAILURE() << "unshare(CLONE_NEWNET): " << std::strerror(errno);
      return;
    }
    body();
  });
  t.join();
}

TEST(NodeRoutesNetnsTest, RoutesFollowNodesInARealRoutingTable) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespace, routes)";
  inFreshNetns([] {
    auto sock = netlink::Socket::open();
    ASSERT_TRUE(sock.ok()) << sock.error().message;
    // A link on the nodes' network: a veth pair, both ends in this namespace.
    int self = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(self, 0);
    netlink::VethSpec v;
    v.name = "sltk0";
    v.peerName = "sltk1";
    v.peerNetnsFd = self;
    auto st = sock->createVeth(v);
    ::close(self);
    ASSERT_TRUE(st.ok()) << st.error().message;
    auto link = sock->link("sltk0");
    ASSERT_TRUE(link.ok());
    ASSERT_TRUE(sock->addAddress(link->index, *Prefix::parse("192.0.2.0/24"),
                                 *IpAddr::parse("192.0.2.1"), true)
                    .ok());
    ASSERT_TRUE(sock->setLinkUp(link->index, true).ok());

    auto table = makeNetlinkRouteTable();
    ASSERT_TRUE(table.ok()) << table.error().message;
    std::vector<std::string> local;
    NodeRouter router("self", table->get(), [&](const std::vector<std::string>& c) {
      local = c;
      return Status::Ok();
    });
    std::map<std::string, Node> nodes = {{"self", node("self", "192.0.2.1", "10.244.0.0/24")},
                                         {"b", node("b", "192.0.2.2", "10.244.1.0/24")},
                                         {"c", node("c", "192.0.2.3", "10.244.2.0/24")}};
    EXPECT_TRUE(router.sync(nodes).empty());
    EXPECT_EQ(local, std::vector<std::string>{"10.244.0.0/24"});
    EXPECT_EQ(routesOf(*sock),
              (std::map<std::string, std::string>{{"10.244.1.0/24", "192.0.2.2"},
                                                  {"10.244.2.0/24", "192.0.2.3"}}));

    nodes["b"] = node("b", "192.0.2.22", "10.244.1.0/24");  // new InternalIP
    nodes.erase("c");
    EXPECT_TRUE(router.sync(nodes).empty());
    EXPECT_EQ(routesOf(*sock),
              (std::map<std::string, std::string>{{"10.244.1.0/24", "192.0.2.22"}}));

    // A gateway that is not reachable is an error naming the route, retried next time.
    nodes["d"] = node("d", "198.51.100.9", "10.244.3.0/24");
    auto errors = router.sync(nodes);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_NE(errors[0].message.find("10.244.3.0/24 via 198.51.100.9"), std::string::npos)
        << errors[0].message;
    EXPECT_EQ(routesOf(*sock).size(), 1u);

    // A restart: Node b was deleted while no daemon ran. An administrator's static route in the
    // same range stays; the new daemon removes b's route and keeps what is still wanted.
    netlink::RouteSpec admin;
    admin.dst = *Prefix::parse("10.244.9.0/24");
    admin.gateway = *IpAddr::parse("192.0.2.9");
    ASSERT_TRUE(sock->addRoute(admin).ok());
    nodes.erase("b");
    nodes.erase("d");
    nodes["e"] = node("e", "192.0.2.5", "10.244.5.0/24");
    ASSERT_TRUE(router
                    .sync({{"self", nodes["self"]},
                           {"b", node("b", "192.0.2.22", "10.244.1.0/24")},
                           {"e", nodes["e"]}})
                    .empty());
    NodeRouter restarted("self", table->get(),
                         [](const std::vector<std::string>&) { return Status::Ok(); });
    EXPECT_TRUE(restarted.sync({{"self", nodes["self"]}, {"e", nodes["e"]}}).empty());
    EXPECT_EQ(routesOf(*sock),
              (std::map<std::string, std::string>{{"10.244.5.0/24", "192.0.2.5"},
                                                  {"10.244.9.0/24", "192.0.2.9"}}));
  });
}

}  // namespace
}  // namespace sluice::source::kube
