#include "policyd/daemon/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>
#include <vector>

#include "common/unique_fd.h"

namespace sluice::daemon {
namespace {

using namespace std::chrono_literals;

std::string request(int port, const std::string& raw) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return "";
  (void)::send(fd.get(), raw.data(), raw.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd.get(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server =
        std::make_unique<HttpServer>(HttpServerOptions{"127.0.0.1:0", 1024, 500ms},
                                     [this](const std::string& path) -> HttpResponse {
                                       if (path == "/metrics") return {200, "text/plain", "m 1\n"};
                                       if (path == "/readyz") {
                                         return ready ? HttpResponse{200, "text/plain", "ready\n"}
                                                      : HttpResponse{503, "text/plain", "no\n"};
                                       }
                                       return {404, "text/plain", "not found\n"};
                                     });
    ASSERT_TRUE(server->start().ok());
    ASSERT_GT(server->port(), 0);
  }
  std::atomic<bool> ready{false};
  std::unique_ptr<HttpServer> server;
};

TEST_F(HttpServerTest, ServesPathsWithStatusAndLength) {
  auto r = request(server->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 200 OK\r\n")) << r;
  EXPECT_NE(r.find("Content-Length: 4\r\n"), std::string::npos) << r;
  EXPECT_TRUE(r.ends_with("\r\n\r\nm 1\n")) << r;
  EXPECT_TRUE(request(server->port(), "GET /readyz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 503"));
  ready = true;
  EXPECT_TRUE(request(server->port(), "GET /readyz?verbose=1 HTTP/1.1\r\n\r\n")
                  .starts_with("HTTP/1.1 200"));
  EXPECT_TRUE(request(server->port(), "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
  auto head = request(server->port(), "HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(head.ends_with("\r\n\r\n")) << head;
}

TEST_F(HttpServerTest, RejectsBadOversizedAndSlowRequests) {
  EXPECT_TRUE(
      request(server->port(), "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
  EXPECT_TRUE(request(server->port(), "garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
  EXPECT_TRUE(
      request(server->port(), "GET /" + std::string(5000, 'a')).starts_with("HTTP/1.1 431"));
  EXPECT_TRUE(request(server->port(), "GET /metrics HTTP/1.1\r\n").starts_with("HTTP/1.1 408"));
  // Still serving.
  EXPECT_TRUE(request(server->port(), "GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
}

UniqueFd connectIdle(int port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return UniqueFd();
  return fd;
}

// Idle clients (connected, sending nothing or half a request) must not delay a probe: before,
// five of them delayed /healthz by their read timeouts one after the other.
TEST(HttpServerConcurrencyTest, IdleAndSlowClientsNeverDelayHealthz) {
  for (size_t idle : {5u, 200u}) {  // below and far beyond the connection limit
    HttpServer server(HttpServerOptions{"127.0.0.1:0", 1024, 10s, 16},
                      [](const std::string& path) -> HttpResponse {
                        if (path == "/healthz") return {200, "text/plain", "ok\n"};
                        return {404, "text/plain", "not found\n"};
                      });
    ASSERT_TRUE(server.start().ok());
    std::vector<UniqueFd> clients;
    for (size_t i = 0; i < idle; ++i) {
      clients.push_back(connectIdle(server.port()));
      ASSERT_TRUE(clients.back()) << "connection " << i;
      if (i % 2 == 1) (void)::send(clients.back().get(), "GET /hea", 8, MSG_NOSIGNAL);
    }
    for (int round = 0; round < 5; ++round) {
      const auto t0 = std::chrono::steady_clock::now();
      auto r = request(server.port(), "GET /healthz HTTP/1.1\r\n\r\n");
      const auto took = std::chrono::steady_clock::now() - t0;
      EXPECT_TRUE(r.starts_with("HTTP/1.1 200")) << r;
      EXPECT_LT(took, 100ms) << idle << " idle connections, round " << round << ": "
                             << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                             << " ms";
    }
    server.stop();
  }
}

TEST(HttpServerConcurrencyTest, ASlowReaderDoesNotBlockOthers) {
  const std::string big(4 << 20, 'x');  // larger than the socket buffers
  HttpServer server(HttpServerOptions{"127.0.0.1:0", 1024, 2s},
                    [&big](const std::string& path) -> HttpResponse {
                      if (path == "/metrics") return {200, "text/plain", big};
                      return {200, "text/plain", "ok\n"};
                    });
  ASSERT_TRUE(server.start().ok());
  UniqueFd slow = connectIdle(server.port());
  ASSERT_TRUE(slow);
  const std::string req = "GET /metrics HTTP/1.1\r\n\r\n";
  ASSERT_EQ(::send(slow.get(), req.data(), req.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(req.size()));
  std::this_thread::sleep_for(50ms);  // the server is now stuck writing to it, if it blocks
  const auto t0 = std::chrono::steady_clock::now();
  auto r = request(server.port(), "GET /healthz HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(r.starts_with("HTTP/1.1 200")) << r;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 100ms);
  // The slow reader still gets its whole response when it reads.
  size_t got = 0;
  char buf[65536];
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    ssize_t n = ::recv(slow.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  EXPECT_GT(got, big.size());
}

TEST(HostPortTest, Splits) {
  auto a = splitHostPort("127.0.0.1:9090");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->first, "127.0.0.1");
  EXPECT_EQ(a->second, 9090);
  auto b = splitHostPort("[::1]:80");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->first, "::1");
  EXPECT_FALSE(splitHostPort("::1:80").ok());
  EXPECT_FALSE(splitHostPort("host").ok());
  EXPECT_FALSE(splitHostPort("host:99999").ok());
}

}  // namespace
}  // namespace sluice::daemon
