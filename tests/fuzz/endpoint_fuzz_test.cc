// Bounded fuzzing of the endpoint socket protocol: the line decoders (common/endpoint_api)
// and a live EndpointServer fed garbage lines, partial lines, huge lines and invalid UTF-8.
// The server must answer every complete line with a well-formed reply (or close the
// connection after an over-long one), never hang, and keep serving real requests.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <optional>

#include "common/endpoint_api.h"
#include "common/unique_fd.h"
#include "policyd/daemon/endpoint_server.h"
#include "tests/fuzz/fuzz_test_util.h"

namespace sluice::fuzz {
namespace {

namespace api = endpoint_api;
using namespace std::chrono_literals;

api::Request sampleAdd() {
  api::Request r;
  r.op = api::Op::Add;
  r.containerId = "ctr-1";
  r.ifname = "eth0";
  r.netns = "/run/netns/p1";
  r.hostVeth = "sl0123456789a";
  r.hostIfindex = 42;
  r.ips = {"10.77.0.5", "fd00:77::5"};
  r.podNamespace = "default";
  r.podName = "web-0";
  return r;
}

std::vector<std::string> lineSeeds() {
  api::Request del = sampleAdd();
  del.op = api::Op::Del;
  del.netns.clear();
  api::Request status;
  status.op = api::Op::Status;
  return {
      api::encode(sampleAdd()),
      api::encode(del),
      api::encode(status),
      api::encode(api::Reply{true, ""}),
      api::encode(api::retryReply("busy")),
      api::encode(api::Reply{false, "refused"}),
      R"({"op":"add","containerID":"c","ifname":"e","hostVeth":"v","hostIfindex":2147483647,"ips":[]})"};
}

TEST(EndpointLineFuzzTest, HostileStructuresDecodeCleanly) {
  std::vector<std::string> inputs;
  for (size_t depth : {1u, 1000u, 100000u}) {
    inputs.push_back(nestedJsonArrays(depth));
    inputs.push_back(nestedJsonObjects(depth));
    inputs.push_back(R"({"op":"add","containerID":"c","ifname":"e","hostVeth":"v","ips":)" +
                     nestedJsonArrays(depth) + "}");
  }
  for (const auto& h : hostileScalars()) {
    inputs.push_back(R"({"op":"add","containerID":"c","ifname":"e","hostVeth":"v","hostIfindex":)" +
                     h + "}");
    inputs.push_back(R"({"ok":false,"error":)" + h + "}");
  }
  inputs.push_back(
      "{\"op\":\"add\",\"containerID\":\"\xff\xfe\",\"ifname\":\"e\",\"hostVeth\":\"v\"}");
  inputs.push_back(
      "{\"op\":\"add\",\"containerID\":\"c\\u0000d\",\"ifname\":\"e\",\"hostVeth\":\"v\"}");
  for (const auto& in : inputs) endpointLineOne(in, failWith(in, 0, 0));
}

TEST(EndpointLineFuzzTest, MutatedLinesNeverCrash) { fuzzBounded(lineSeeds(), endpointLineOne); }

// ---- a live server ----

class LiveServer {
 public:
  explicit LiveServer(size_t maxLine) {
    dir_ = (std::filesystem::temp_directory_path() / ("sluice-fuzz-" + std::to_string(::getpid())))
               .string();
    std::filesystem::create_directories(dir_);
    daemon::EndpointServerOptions o;
    o.socketPath = dir_ + "/ep.sock";
    o.maxLineBytes = maxLine;
    o.requestTimeout = 2s;
    o.idleTimeout = 2s;
    server_ = std::make_unique<daemon::EndpointServer>(o, [this](const api::Request& r) {
      ++handled;
      // The handler only ever sees decoded, valid requests.
      bool sane = r.op == api::Op::Status || (!r.containerId.empty() && !r.ifname.empty());
      return sane ? api::Reply{true, ""} : api::Reply{false, "handler got an invalid request"};
    });
    ok_ = server_->start().ok();
  }
  ~LiveServer() {
    server_->stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  bool ok() const { return ok_; }
  daemon::EndpointServer& server() { return *server_; }

  UniqueFd connect() {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string p = server_->path();
    std::memcpy(addr.sun_path, p.data(), p.size());
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      return UniqueFd();
    return fd;
  }

  std::atomic<int> handled{0};

 private:
  std::string dir_;
  std::unique_ptr<daemon::EndpointServer> server_;
  bool ok_ = false;
};

// Sends everything (the server reads concurrently, so a huge line cannot deadlock us).
bool sendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads one reply line; nullopt on EOF or after `timeout`.
std::optional<std::string> readLine(int fd, std::string& buffer,
                                    std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto nl = buffer.find('\n'); nl != std::string::npos) {
      std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return std::nullopt;
    buffer.append(buf, static_cast<size_t>(n));
  }
}

bool isBlank(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line.find_first_not_of(" \t") == std::string_view::npos;
}

constexpr size_t kMaxLine = 4096;

TEST(EndpointServerFuzzTest, GarbageThenARealRequestOnEveryConnection) {
  LiveServer live(kMaxLine);
  ASSERT_TRUE(live.ok());
  auto seeds = lineSeeds();
  seeds.push_back(std::string(kMaxLine - 10, 'x'));
  const std::string real = api::encode(sampleAdd());
  for (uint64_t seed : kSeeds) {
    Mutator m(seeds, seed);
    bool failed = false;
    size_t ran = runFor(m, budget(kBudgetPerSeed), 3000, [&](const std::string& raw, size_t i) {
      if (failed) return;
      // One garbage line: newlines inside would make several requests; the decoder fuzz
      // covers those bytes, here the framing is what is under test.
      std::string garbage = raw;
      std::replace(garbage.begin(), garbage.end(), '\n', ' ');
      auto fail = [&](const std::string& what) {
        failed = true;
        failWith(raw, seed, i)(what);
      };
      UniqueFd fd = live.connect();
      if (!fd) return fail("connect failed");
      const bool overLong = garbage.size() > kMaxLine;
      // An over-long line is refused and the connection closed after kMaxLine bytes, which may
      // be while we are still sending (EPIPE); the refusal is already queued to our socket.
      if (!sendAll(fd.get(), garbage + "\n" + real + "\n") && !overLong) {
        return fail("send failed");
      }
      std::string buffer;
      if (overLong) {
        auto line = readLine(fd.get(), buffer, 5s);
        if (!line) return fail("no reply to an over-long line");
        auto r = api::decodeReply(*line);
        if (!r.ok() || r->ok) return fail("over-long line got: " + *line);
        if (readLine(fd.get(), buffer, 5s))
          return fail("connection not closed after an over-long line");
        return;
      }
      if (!isBlank(garbage)) {
        auto line = readLine(fd.get(), buffer, 5s);
        if (!line) return fail("no reply to a garbage line (hang or close)");
        auto r = api::decodeReply(*line);
        if (!r.ok()) return fail("malformed reply: " + *line);
        if (!r->ok && r->error.empty()) return fail("refusal without a reason");
      }
      auto line = readLine(fd.get(), buffer, 5s);
      if (!line) return fail("no reply to the real request after garbage");
      auto r = api::decodeReply(*line);
      if (!r.ok() || !r->ok) return fail("real request after garbage failed: " + *line);
    });
    EXPECT_GT(ran, 0u);
    std::printf("live fuzz seed=%llu connections=%zu\n", static_cast<unsigned long long>(seed),
                ran);
  }
}

TEST(EndpointServerFuzzTest, HugePartialAndInvalidUtf8Lines) {
  LiveServer live(kMaxLine);
  ASSERT_TRUE(live.ok());
  const std::string real = api::encode(sampleAdd());
  // A 1 MiB line: error, close, and nothing reached the handler.
  {
    UniqueFd fd = live.connect();
    ASSERT_TRUE(fd);
    (void)sendAll(fd.get(), std::string(1 << 20, '{'));
    std::string buffer;
    auto line = readLine(fd.get(), buffer, 5s);
    ASSERT_TRUE(line.has_value());
    EXPECT_NE(line->find("longer than 4096"), std::string::npos) << *line;
  }
  // Invalid UTF-8 inside strings and outside: each line answered, the reply is valid JSON.
  for (const std::string& bad :
       {std::string(
            "{\"op\":\"add\",\"containerID\":\"\xff\",\"ifname\":\"e\",\"hostVeth\":\"v\"}"),
        std::string("\xc3\x28\xa0\xa1\xe2\x28\xa1"), std::string("{\"op\":\"\xed\xa0\x80\"}")}) {
    UniqueFd fd = live.connect();
    ASSERT_TRUE(fd);
    ASSERT_TRUE(sendAll(fd.get(), bad + "\n"));
    std::string buffer;
    auto line = readLine(fd.get(), buffer, 5s);
    ASSERT_TRUE(line.has_value()) << preview(bad);
    auto r = api::decodeReply(*line);
    ASSERT_TRUE(r.ok()) << preview(*line);
  }
  // Many connections that hang up mid-line, at every cut point of a real request.
  for (size_t cut = 1; cut < real.size(); cut += 7) {
    UniqueFd fd = live.connect();
    ASSERT_TRUE(fd);
    (void)sendAll(fd.get(), real.substr(0, cut));
  }
  // Invalid UTF-8 is not JSON: none of the above reached the handler.
  int before = live.handled.load();
  EXPECT_EQ(before, 0);
  ASSERT_TRUE([&] {
    for (int i = 0; i < 500; ++i) {
      if (live.server().activeConnections() == 0) return true;
      ::usleep(10000);
    }
    return false;
  }()) << "half-sent requests still hold connections";
  EXPECT_EQ(live.handled.load(), before) << "a partial line reached the handler";
  auto reply = api::call(live.server().path(), sampleAdd(), 5000);
  ASSERT_TRUE(reply.ok()) << reply.error().message;
  EXPECT_TRUE(reply->ok);
}

}  // namespace
}  // namespace sluice::fuzz
