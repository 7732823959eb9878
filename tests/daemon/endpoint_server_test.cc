#include "policyd/daemon/endpoint_server.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <condition_variable>
#include <cstring>
#include <future>
#include <mutex>

#include "tests/daemon/agent_fixture.h"

namespace sluice::daemon {
namespace {

using namespace std::chrono_literals;
using sluice::testing::TempDir;
using sluice::testing::waitFor;
using namespace sluice::daemon::testing;
using endpoint_api::Op;

UniqueFd connectTo(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return UniqueFd();
  return fd;
}

void sendRaw(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

// Reads one line (without '\n'); "" on EOF or after 5 s.
std::string readLine(int fd) {
  std::string out;
  char c;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::recv(fd, &c, 1, 0);
    if (n <= 0) return out;
    if (c == '\n') return out;
    out += c;
  }
  return out;
}

// True when the peer closed the connection within 5 s.
bool closedByPeer(int fd) {
  char buf[256];
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
  }
  return false;
}

class EndpointServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 1; i <= 20; ++i) host.addLink("slp" + std::to_string(i));
    host.addLink("slweb");
    harness = std::make_unique<AgentHarness>(state.path(), backend, host, clock);
    ASSERT_TRUE(harness->agent->start().ok());
    std::vector<model::Pod> pods = {pod("default", "web")};
    for (int i = 1; i <= 20; ++i) pods.push_back(pod("default", "p" + std::to_string(i)));
    feed(*harness->agent, snapshot(pods));
    EndpointServerOptions o;
    o.socketPath = sock.path() + "/run/policyd.sock";
    o.maxLineBytes = 4096;
    o.idleTimeout = 2s;
    server = std::make_unique<EndpointServer>(
        o, [this](const endpoint_api::Request& r) { return harness->agent->handle(r); });
    ASSERT_TRUE(server->start().ok());
  }
  void TearDown() override {
    harness->agent->stop();
    server->stop();
  }
  endpoint_api::Reply call(const endpoint_api::Request& r) {
    auto reply = endpoint_api::call(server->path(), r, 10000);
    EXPECT_TRUE(reply.ok()) << reply.error().message;
    return reply.ok() ? *reply : endpoint_api::Reply{false, reply.error().message};
  }

  TempDir state;
  TempDir sock;
  FakeBackend backend;
  FakeHostNetwork host;
  ManualClock clock;
  std::unique_ptr<AgentHarness> harness;
  std::unique_ptr<EndpointServer> server;
};

TEST_F(EndpointServerTest, SocketIsRootOnly) {
  struct stat sb {};
  ASSERT_EQ(::stat(server->path().c_str(), &sb), 0);
  EXPECT_TRUE(S_ISSOCK(sb.st_mode));
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
}

TEST_F(EndpointServerTest, AddCheckDelRoundTrip) {
  auto add = call(addRequest("web", 1));
  ASSERT_TRUE(add.ok) << add.error;
  EXPECT_EQ(harness->agent->stats().endpoints, 1u);
  auto check = call(withOp(addRequest("web", 1), Op::Check));
  EXPECT_TRUE(check.ok) << check.error;
  auto del = call(withOp(addRequest("web", 1), Op::Del));
  EXPECT_TRUE(del.ok) << del.error;
  EXPECT_EQ(harness->agent->stats().endpoints, 0u);
  auto checkGone = call(withOp(addRequest("web", 1), Op::Check));
  EXPECT_FALSE(checkGone.ok);
  EXPECT_NE(checkGone.error.find("not registered"), std::string::npos);
}

TEST_F(EndpointServerTest, GarbageLinesGetErrorsAndTheConnectionStaysUsable) {
  UniqueFd fd = connectTo(server->path());
  ASSERT_TRUE(fd);
  for (const char* garbage : {"hello", "{", "[]", "{\"op\":\"explode\"}", "\x01\x02\xff"}) {
    sendRaw(fd.get(), std::string(garbage) + "\n");
    auto line = readLine(fd.get());
    auto reply = endpoint_api::decodeReply(line);
    ASSERT_TRUE(reply.ok()) << "reply to " << garbage << ": " << line;
    EXPECT_FALSE(reply->ok);
    EXPECT_FALSE(reply->error.empty());
  }
  // Blank lines are ignored; a valid request on the same connection still works.
  sendRaw(fd.get(), "\n\r\n" + endpoint_api::encode(addRequest("web", 1)) + "\r\n");
  auto reply = endpoint_api::decodeReply(readLine(fd.get()));
  ASSERT_TRUE(reply.ok());
  EXPECT_TRUE(reply->ok) << reply->error;
}

TEST_F(EndpointServerTest, ClientHangingUpMidLineIsDropped) {
  {
    UniqueFd fd = connectTo(server->path());
    ASSERT_TRUE(fd);
    std::string line = endpoint_api::encode(addRequest("web", 1));
    sendRaw(fd.get(), line.substr(0, line.size() / 2));
  }
  ASSERT_TRUE(waitFor([&] { return server->activeConnections() == 0; }));
  EXPECT_EQ(harness->agent->stats().endpoints, 0u);  // the half request did nothing
  EXPECT_TRUE(call(addRequest("web", 1)).ok);
}

TEST_F(EndpointServerTest, OverlongLineGetsAnErrorAndIsClosed) {
  UniqueFd fd = connectTo(server->path());
  ASSERT_TRUE(fd);
  sendRaw(fd.get(), std::string(10000, 'x'));
  auto reply = endpoint_api::decodeReply(readLine(fd.get()));
  ASSERT_TRUE(reply.ok());
  EXPECT_FALSE(reply->ok);
  EXPECT_NE(reply->error.find("longer than 4096"), std::string::npos) << reply->error;
  EXPECT_TRUE(closedByPeer(fd.get()));
  EXPECT_TRUE(call(addRequest("web", 1)).ok);
}

TEST_F(EndpointServerTest, ConcurrentClients) {
  std::vector<std::future<endpoint_api::Reply>> replies;
  for (int i = 1; i <= 20; ++i) {
    replies.push_back(std::async(std::launch::async, [this, i] {
      auto r = endpoint_api::call(server->path(), addRequest("p" + std::to_string(i), i), 10000);
      return r.ok() ? *r : endpoint_api::Reply{false, r.error().message};
    }));
  }
  for (auto& f : replies) {
    auto r = f.get();
    EXPECT_TRUE(r.ok) << r.error;
  }
  EXPECT_EQ(harness->agent->stats().endpoints, 20u);
}

TEST_F(EndpointServerTest, RefusesASecondServerButReplacesAStaleSocket) {
  EndpointServerOptions o;
  o.socketPath = server->path();
  EndpointServer second(o, [](const endpoint_api::Request&) {
    return endpoint_api::Reply{true, ""};
  });
  auto st = second.start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("in use"), std::string::npos);

  // A socket file nobody listens on (a crashed daemon) is replaced.
  server->stop();
  const std::string stale = sock.path() + "/stale.sock";
  {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, stale.data(), stale.size());
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  }
  o.socketPath = stale;
  EndpointServer third(o, [](const endpoint_api::Request&) {
    return endpoint_api::Reply{true, ""};
  });
  ASSERT_TRUE(third.start().ok());
  auto r = endpoint_api::call(stale, addRequest("web", 1), 5000);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->ok);
  third.stop();
  EXPECT_FALSE(std::filesystem::exists(stale));
}

// A server with a trivial handler and the given limits, for the resource-bound tests.
class BoundedServerTest : public ::testing::Test {
 protected:
  void start(EndpointServerOptions o, EndpointServer::Handler h = nullptr) {
    o.socketPath = sock.path() + "/bounded.sock";
    if (!h) {
      h = [this](const endpoint_api::Request&) {
        ++handled;
        return endpoint_api::Reply{true, ""};
      };
    }
    server = std::make_unique<EndpointServer>(o, std::move(h));
    ASSERT_TRUE(server->start().ok());
  }
  void TearDown() override {
    if (server) server->stop();
  }
  // A real request on a fresh connection; how long it took.
  std::pair<endpoint_api::Reply, std::chrono::milliseconds> timedCall() {
    auto t0 = std::chrono::steady_clock::now();
    auto r = endpoint_api::call(server->path(), addRequest("web", 1), 10000);
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - t0);
    return {r.ok() ? *r : endpoint_api::Reply{false, r.error().message}, took};
  }

  TempDir sock;
  std::atomic<int> handled{0};
  std::unique_ptr<EndpointServer> server;
};

TEST_F(BoundedServerTest, TricklingClientIsCutOffAtTheRequestDeadline) {
  EndpointServerOptions o;
  o.requestTimeout = 300ms;
  o.idleTimeout = 30s;
  start(o);
  UniqueFd fd = connectTo(server->path());
  ASSERT_TRUE(fd);
  // One byte every 50 ms: each poll sees activity, so only a whole-line deadline stops it.
  std::string line = endpoint_api::encode(addRequest("web", 1));
  auto t0 = std::chrono::steady_clock::now();
  std::string reply;
  bool closed = false;
  for (size_t i = 0; i < line.size() && !closed; ++i) {
    if (::send(fd.get(), &line[i], 1, MSG_NOSIGNAL) != 1) break;
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 50) > 0) {
      reply = readLine(fd.get());
      closed = true;
    }
  }
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(closed) << "the trickle was never cut off";
  EXPECT_LT(took, 3s);
  auto r = endpoint_api::decodeReply(reply);
  ASSERT_TRUE(r.ok()) << reply;
  EXPECT_FALSE(r->ok);
  EXPECT_NE(r->error.find("not complete within 300 ms"), std::string::npos) << r->error;
  EXPECT_TRUE(closedByPeer(fd.get()));
  EXPECT_EQ(handled.load(), 0) << "a partial line reached the handler";
  EXPECT_TRUE(timedCall().first.ok);
}

TEST_F(BoundedServerTest, FloodOfIdleAndTricklingConnectionsCannotLockOutAnAdd) {
  EndpointServerOptions o;
  o.maxConnections = 4;
  o.idleTimeout = 60s;
  o.requestTimeout = 60s;
  start(o);
  // Twice the limit: silent connections and ones holding half a request.
  std::vector<UniqueFd> flood;
  std::string half = endpoint_api::encode(addRequest("x", 2));
  half.resize(half.size() / 2);
  for (int i = 0; i < 8; ++i) {
    UniqueFd fd = connectTo(server->path());
    ASSERT_TRUE(fd) << i;
    if (i % 2) sendRaw(fd.get(), half);
    flood.push_back(std::move(fd));
  }
  // Each ADD still gets through, promptly, by displacing the longest-waiting idle connection.
  for (int i = 0; i < 3; ++i) {
    auto [reply, took] = timedCall();
    EXPECT_TRUE(reply.ok) << reply.error;
    EXPECT_LT(took, 2s);
  }
  EXPECT_EQ(handled.load(), 3);
  EXPECT_GE(server->evictedConnections(), 4u);
  // A displaced client is told why (retry) and then closed, never left hanging.
  auto line = readLine(flood[0].get());
  auto r = endpoint_api::decodeReply(line);
  ASSERT_TRUE(r.ok()) << line;
  EXPECT_FALSE(r->ok);
  EXPECT_TRUE(r->retry);
  EXPECT_TRUE(closedByPeer(flood[0].get()));
  EXPECT_TRUE(waitFor([&] { return server->activeConnections() <= o.maxConnections; }));
}

TEST_F(BoundedServerTest, WhenEveryConnectionIsBusyANewcomerIsToldToRetry) {
  EndpointServerOptions o;
  o.maxConnections = 2;
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  start(o, [&](const endpoint_api::Request&) {
    ++handled;
    std::unique_lock lock(mu);
    cv.wait_for(lock, 10s, [&] { return release; });
    return endpoint_api::Reply{true, ""};
  });
  std::vector<std::future<endpoint_api::Reply>> inHandler;
  for (int i = 0; i < 2; ++i) {
    inHandler.push_back(std::async(std::launch::async, [this] { return timedCall().first; }));
  }
  ASSERT_TRUE(waitFor([&] { return handled.load() == 2; }));
  auto [busy, took] = timedCall();
  EXPECT_FALSE(busy.ok);
  EXPECT_TRUE(busy.retry) << busy.error;
  EXPECT_NE(busy.error.find("busy"), std::string::npos) << busy.error;
  EXPECT_LT(took, 2s);
  EXPECT_EQ(server->refusedConnections(), 1u);
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  for (auto& f : inHandler) EXPECT_TRUE(f.get().ok);
  EXPECT_TRUE(waitFor([&] { return server->activeConnections() < 2; }));
  auto [after, unused] = timedCall();
  EXPECT_TRUE(after.ok) << after.error;
}

}  // namespace
}  // namespace sluice::daemon
