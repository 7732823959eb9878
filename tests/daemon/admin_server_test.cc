// The admin socket: garbage in gets an error reply (and the daemon keeps serving), requests are
// answered, flows stream and follow, and the socket is root only.
#include "policyd/daemon/admin_server.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "policyd/daemon/admin_service.h"

namespace sluice::daemon {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("sluice-admin-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "admin.sock").string();
    sources_.status = [] { return json{{"node", "n1"}, {"revision", 7}}; };
    sources_.endpoints = [] {
      EndpointRecord r;
      r.id = 3;
      r.podNamespace = "prod";
      r.podName = "web";
      r.hostVeth = "sl0123";
      r.ips = {IpAddr::parse("10.1.0.5").value()};
      return std::vector<EndpointRecord>{r};
    };
    sources_.appliedPolicy =
        [](compiler::EndpointId id) -> std::optional<compiler::EndpointPolicy> {
      if (id != 3) return std::nullopt;
      compiler::EndpointPolicy p;
      p.ingressIsolated = true;
      p.entries.insert(compiler::AllowEntry{compiler::Direction::Ingress, 17, 6, {80, 80}, 0});
      return p;
    };
    sources_.ruleOrigins = [] {
      return std::vector<compiler::RuleOrigin>{
          {"prod/web-from-client", compiler::Direction::Ingress, 0}};
    };
    sources_.counters = []() -> Result<std::vector<datapath::RuleCounter>> {
      return std::vector<datapath::RuleCounter>{{0, 42, 4200}};
    };
    sources_.flows = &ring_;
    sources_.heartbeat = 50ms;
    server_ = std::make_unique<AdminServer>(
        AdminServerOptions{path_},
        [this](const json& req, const AdminServer::Send& send, const std::atomic<bool>& stop) {
          handleAdminRequest(sources_, req, send, stop);
        });
    ASSERT_TRUE(server_->start().ok());
  }
  void TearDown() override {
    server_->stop();
    std::filesystem::remove_all(dir_);
  }

  int connectFd() {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
  }
  // Sends raw bytes and reads reply lines until the server closes (or `max` lines).
  std::vector<std::string> exchange(const std::string& bytes, size_t max = 1000,
                                    bool closeWrite = false) {
    int fd = connectFd();
    EXPECT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
    if (closeWrite) ::shutdown(fd, SHUT_WR);
    std::string buf;
    std::vector<std::string> lines;
    char chunk[4096];
    while (lines.size() < max) {
      ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) break;
      buf.append(chunk, static_cast<size_t>(n));
      for (size_t nl; (nl = buf.find('\n')) != std::string::npos && lines.size() < max;) {
        lines.push_back(buf.substr(0, nl));
        buf.erase(0, nl + 1);
      }
    }
    ::close(fd);
    return lines;
  }

  std::filesystem::path dir_;
  std::string path_;
  FlowRing ring_{100};
  AdminSources sources_;
  std::unique_ptr<AdminServer> server_;
};

TEST_F(AdminServerTest, SocketIsRootOnly) {
  struct stat sb {};
  ASSERT_EQ(::stat(path_.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
}

TEST_F(AdminServerTest, GarbageGetsAnErrorReplyAndTheServerKeepsServing) {
  for (const std::string& garbage :
       {std::string("not json\n"), std::string("[1,2]\n"), std::string("{\"op\":5}\n"),
        std::string("{\"op\":\"reboot\"}\n"), std::string("\xff\xfe{\n"),
        std::string("{\"op\":\"flows\",\"limit\":\"x\"}\n"),
        std::string("{\"op\":\"policy\"}\n")}) {
    auto lines = exchange(garbage);
    ASSERT_EQ(lines.size(), 1u) << garbage;
    auto j = json::parse(lines[0]);
    EXPECT_EQ(j["ok"], false) << garbage;
    EXPECT_FALSE(j.value("error", std::string()).empty()) << garbage;
  }
  // An over-long line.
  auto lines = exchange(std::string(20000, 'x'), 1000, true);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("longer than"), std::string::npos);
  // Still answering.
  lines = exchange("{\"op\":\"status\"}\n");
  ASSERT_EQ(lines.size(), 1u);
  auto j = json::parse(lines[0]);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["node"], "n1");
}

TEST_F(AdminServerTest, PolicyNamesTheOriginAndCountersOfEachEntry) {
  auto lines = exchange("{\"op\":\"policy\",\"pod\":\"prod/web\"}\n");
  ASSERT_EQ(lines.size(), 1u);
  auto j = json::parse(lines[0]);
  ASSERT_EQ(j["ok"], true) << lines[0];
  ASSERT_EQ(j["entries"].size(), 1u);
  EXPECT_EQ(j["entries"][0]["policy"], "prod/web-from-client");
  EXPECT_EQ(j["entries"][0]["ruleField"], "spec.ingress[0]");
  EXPECT_EQ(j["entries"][0]["packets"], 42);
  EXPECT_EQ(j["entries"][0]["ports"], "80-80");
  lines = exchange("{\"op\":\"policy\",\"pod\":\"prod/nope\"}\n");
  EXPECT_EQ(json::parse(lines.at(0))["ok"], false);
  lines = exchange("{\"op\":\"endpoints\"}\n");
  EXPECT_EQ(json::parse(lines.at(0))["endpoints"][0]["pod"], "prod/web");
}

TEST_F(AdminServerTest, FlowsFilterAndFollow) {
  ring_.push(FlowRecord{0, true, "prod/web", "dev/a", "prod/web", R"({"verdict":"denied","n":1})"});
  ring_.push(FlowRecord{0, false, "prod/db", "prod/db", "dev/b", R"({"verdict":"allowed","n":2})"});
  auto lines = exchange("{\"op\":\"flows\",\"denied\":true}\n");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(json::parse(lines[0])["flow"]["n"], 1);
  EXPECT_EQ(json::parse(lines[1])["ok"], true);
  lines = exchange("{\"op\":\"flows\",\"pod\":\"dev/b\"}\n");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(json::parse(lines[0])["flow"]["n"], 2);

  // Follow: history, then what arrives later.
  std::jthread later([&] {
    std::this_thread::sleep_for(100ms);
    ring_.push(FlowRecord{0, true, "prod/web", "", "", R"({"verdict":"denied","n":3})"});
  });
  std::vector<int> seen;
  int fd = connectFd();
  std::string req = "{\"op\":\"flows\",\"follow\":true,\"denied\":true}\n";
  ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  std::string buf;
  char chunk[4096];
  for (int i = 0; i < 200 && seen.size() < 2; ++i) {
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    for (size_t nl; (nl = buf.find('\n')) != std::string::npos;) {
      auto j = json::parse(buf.substr(0, nl));
      buf.erase(0, nl + 1);
      if (j.contains("flow")) seen.push_back(j["flow"]["n"]);
    }
  }
  ::close(fd);  // the server notices at its next heartbeat and ends the stream
  EXPECT_EQ(seen, (std::vector<int>{1, 3}));
}

}  // namespace
}  // namespace sluice::daemon
