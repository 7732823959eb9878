#include "common/endpoint_api.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>
#include <vector>

namespace sluice::endpoint_api {
namespace {

Request sample() {
  Request r;
  r.op = Op::Add;
  r.containerId = "c1";
  r.ifname = "eth0";
  r.netns = "/run/netns/p";
  r.hostVeth = "sl0123456789a";
  r.hostIfindex = 7;
  r.ips = {"10.0.0.5", "fd00::5"};
  r.podNamespace = "default";
  r.podName = "web\n\"quoted\"";
  return r;
}

TEST(EndpointApiTest, RequestRoundTripsOnOneLine) {
  std::string line = encode(sample());
  EXPECT_EQ(line.find('\n'), std::string::npos);
  auto back = decodeRequest(line);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->containerId, "c1");
  EXPECT_EQ(back->hostIfindex, 7);
  EXPECT_EQ(back->ips, sample().ips);
  EXPECT_EQ(back->podName, sample().podName);
  for (Op op : {Op::Del, Op::Check}) {
    Request r = sample();
    r.op = op;
    EXPECT_EQ(decodeRequest(encode(r))->op, op);
  }
}

TEST(EndpointApiTest, StatusCarriesNoEndpointFields) {
  Request r;
  r.op = Op::Status;
  EXPECT_EQ(encode(r), R"({"op":"status"})");
  auto back = decodeRequest(R"({"op":"status"})");
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->op, Op::Status);
}

TEST(EndpointApiTest, GarbageIsAnErrorNeverAThrow) {
  for (const std::string& line :
       std::vector<std::string>{"", "{", "null", "[]", "42", R"({"op":"add"})",
                                R"({"op":"fly","containerID":"c","ifname":"e"})",
                                R"({"op":"add","containerID":"c","ifname":"e"})",
                                R"({"op":"del","containerID":7,"ifname":"e"})",
                                R"({"op":"del","containerID":"c","ifname":"e","ips":"10.0.0.1"})",
                                R"({"op":"del","containerID":"c","ifname":"e","ips":[1]})",
                                R"({"op":"del","containerID":"c","ifname":"e","hostIfindex":"7"})",
                                R"({"op":"del","containerID":"c","ifname":"e","hostIfindex":-1})",
                                std::string("\xff\xfe", 2)}) {
    auto r = decodeRequest(line);
    EXPECT_FALSE(r.ok()) << line;
  }
  EXPECT_TRUE(decodeRequest(R"({"op":"del","containerID":"c","ifname":"e"})").ok());
}

TEST(EndpointApiTest, Replies) {
  EXPECT_EQ(encode(Reply{true, ""}), R"({"ok":true})");
  auto r = decodeReply(encode(Reply{false, "nope"}));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->error, "nope");
  EXPECT_FALSE(decodeReply(R"({"ok":"yes"})").ok());
  EXPECT_FALSE(decodeReply("garbage").ok());
}

TEST(EndpointApiTest, RequestsWithIdsTheSpecForbidsAreRefused) {
  // The daemon keys its registry on these; a newline could forge a record or a log line.
  for (auto [id, ifname] :
       std::vector<std::pair<std::string, std::string>>{{"c\nd", "eth0"},
                                                        {"../c", "eth0"},
                                                        {"-c", "eth0"},
                                                        {"c", "eth0\n"},
                                                        {"c", "a/b"},
                                                        {"c", std::string(16, 'e')},
                                                        {"c", ".."}}) {
    Request r;
    r.op = Op::Del;
    r.containerId = id;
    r.ifname = ifname;
    auto back = decodeRequest(encode(r));
    ASSERT_FALSE(back.ok()) << id << " " << ifname;
    EXPECT_NE(back.error().message.find(id == "c" ? "ifname" : "containerID"), std::string::npos)
        << back.error().message;
  }
}

TEST(EndpointApiTest, RetryableRefusals) {
  EXPECT_EQ(encode(retryReply("busy")), R"({"error":"busy","ok":false,"retry":true})");
  auto r = decodeReply(encode(retryReply("busy")));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_TRUE(r->retry);
  // A plain refusal is final; "retry" on a success means nothing; a wrong type is an error.
  EXPECT_FALSE(decodeReply(encode(Reply{false, "no"}))->retry);
  EXPECT_FALSE(decodeReply(R"({"ok":true,"retry":true})")->retry);
  EXPECT_FALSE(decodeReply(R"({"ok":false,"error":"x","retry":"yes"})").ok());
}

class Server {
 public:
  explicit Server(std::string reply, bool respond = true)
      : path_("/tmp/slt-epapi-" + std::to_string(::getpid()) + ".sock") {
    ::unlink(path_.c_str());
    fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof(a.sun_path) - 1);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::listen(fd_, 4);
    t_ = std::thread([this, reply, respond] {
      int c = ::accept(fd_, nullptr, nullptr);
      char buf[4096];
      ssize_t n = ::read(c, buf, sizeof(buf));
      if (n > 0) got_.assign(buf, static_cast<size_t>(n));
      if (respond)
        (void)!::write(c, reply.data(), reply.size());
      else
        ::usleep(300000);
      ::close(c);
    });
  }
  ~Server() {
    t_.join();
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }
  std::string got_;

 private:
  std::string path_;
  int fd_;
  std::thread t_;
};

TEST(EndpointApiTest, CallSendsOneLineAndReadsTheReply) {
  std::string got;
  {
    Server s("{\"ok\":false,\"error\":\"denied\"}\n");
    auto r = call(s.path(), sample(), 2000);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_FALSE(r->ok);
    EXPECT_EQ(r->error, "denied");
    got = s.got_;
  }
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), '\n');
  EXPECT_TRUE(decodeRequest(got.substr(0, got.size() - 1)).ok());
}

TEST(EndpointApiTest, UnreachableOrSilentDaemonIsTryAgainLater) {
  auto r = call("/tmp/slt-epapi-does-not-exist.sock", sample(), 200);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, 11);
  Server silent("", /*respond=*/false);
  auto t = call(silent.path(), sample(), 100);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, 11);
  EXPECT_NE(t.error().message.find("no reply"), std::string::npos);
}

}  // namespace
}  // namespace sluice::endpoint_api
