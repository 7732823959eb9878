// Privileged tests of the real `sluice` binary (DESIGN.md §3, §8). Each test builds its own
// "host" network namespace (the plugin runs there, as on a node) and pod namespaces, all named
// slt<pid>-*, and removes them even on failure. Nothing touches the namespace the test starts in.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "e2e/cni/cni_test_util.h"

namespace sluice::cni::testing {
namespace {

namespace fs = std::filesystem;

const std::string kSluice = std::string(SLUICE_BINARY_DIR) + "/cni/sluice";
const std::vector<std::string> kVersions = {"0.4.0", "1.0.0", "1.1.0"};

class CniTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() == 0) NetnsSet::preClean();
  }

  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces)";
    ns_ = std::make_unique<NetnsSet>();
    host_ = ns_->add("host");
    // The node itself must forward for pods to talk; only inside our own "host" namespace.
    runCmd(
        {"ip", "netns", "exec", ns_->fullName("host"), "sysctl", "-qw", "net.ipv4.ip_forward=1"});
    runCmd({"ip", "netns", "exec", ns_->fullName("host"), "sysctl", "-qw",
            "net.ipv6.conf.all.forwarding=1"});
    dataDir_ = ns_->tmpDir() + "/ipam";
  }

  void TearDown() override { ns_.reset(); }

  json conf(const std::string& version = "1.1.0", const std::string& policy = "optional") {
    return json{{"cniVersion", version},
                {"name", "slnet"},
                {"type", "sluice"},
                {"mtu", 1400},
                {"policy", policy},
                {"policySocket", ns_->tmpDir() + "/policyd.sock"},
                {"logFile", ns_->tmpDir() + "/cni.log"},
                {"logLevel", "debug"},
                {"ipam",
                 {{"type", "sluice"},
                  {"dataDir", dataDir_},
                  {"ranges", json::array({json::array({{{"subnet", "10.77.0.0/24"}}}),
                                          json::array({{{"subnet", "fd00:77::/64"}}})})}}}};
  }

  std::map<std::string, std::string> env(const std::string& cmd, const std::string& id,
                                         const std::string& netns,
                                         const std::string& ifname = "eth0") {
    return {{"CNI_COMMAND", cmd},
            {"CNI_CONTAINERID", id},
            {"CNI_NETNS", netns},
            {"CNI_IFNAME", ifname},
            {"CNI_PATH", std::string(SLUICE_BINARY_DIR) + "/cni:/usr/lib/cni"},
            {"CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + id +
                             ";K8S_POD_UID=uid-" + id}};
  }

  PluginOutput plugin(const std::string& cmd, const std::string& id, const std::string& netns,
                      const json& c) {
    return runPlugin(kSluice, env(cmd, id, netns), c.dump(), host_);
  }

  PluginOutput add(const std::string& id, const std::string& netns, const json& c) {
    return plugin("ADD", id, netns, c);
  }

  // Everything that tells whether the host namespace is back to its pristine state.
  std::string hostState() {
    std::string links, r4, r6, out;
    runCmd({"ip", "-n", ns_->fullName("host"), "-o", "link", "show"}, &links);
    runCmd({"ip", "-n", ns_->fullName("host"), "-4", "route", "show", "table", "all"}, &r4);
    runCmd({"ip", "-n", ns_->fullName("host"), "-6", "route", "show", "table", "main"}, &r6);
    // Link lines carry counters-free state; strip the volatile "state" words is unnecessary
    // because lo is the only link expected.
    return links + "--\n" + r4 + "--\n" + r6;
  }

  // DEL sets the veth down at once and destroys it in a detached child (wiring.h), so the
  // link may linger for a few tens of milliseconds after DEL returns.
  std::string waitHostState(const std::string& want) {
    std::string now;
    for (int i = 0; i < 100; ++i) {
      now = hostState();
      if (now == want) break;
      ::usleep(50000);
    }
    return now;
  }

  std::vector<std::string> storeFiles() {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(dataDir_, ec)) {
      if (!e.is_regular_file()) continue;
      std::string n = e.path().filename().string();
      if (n == "lock" || n.rfind("last_reserved_ip", 0) == 0) continue;
      out.push_back(e.path().string());
    }
    return out;
  }

  std::vector<std::string> podLinks(const std::string& pod) {
    std::string out;
    runCmd({"ip", "-n", ns_->fullName(pod), "-o", "link", "show"}, &out);
    std::vector<std::string> names;
    size_t pos = 0;
    while (pos < out.size()) {
      size_t nl = out.find('\n', pos);
      std::string line = out.substr(pos, nl - pos);
      pos = nl == std::string::npos ? out.size() : nl + 1;
      auto a = line.find(": ");
      if (a == std::string::npos) continue;
      auto b = line.find_first_of(":@", a + 2);
      names.push_back(line.substr(a + 2, b - a - 2));
    }
    return names;
  }

  std::unique_ptr<NetnsSet> ns_;
  std::string host_;
  std::string dataDir_;
};

json withPrev(json c, const json& prev) {
  c["prevResult"] = prev;
  return c;
}

std::vector<std::string> addresses(const json& result) {
  std::vector<std::string> out;
  for (const auto& ip : result.value("ips", json::array())) out.push_back(ip.value("address", ""));
  return out;
}

TEST_F(CniTest, LifecycleForEachVersion) {
  for (const auto& v : kVersions) {
    SCOPED_TRACE("cniVersion " + v);
    std::string pristine = hostState();
    std::string pod = ns_->add("pod-" + v);
    json c = conf(v);
    auto r = add("ctr-" + v, pod, c);
    ASSERT_EQ(r.exitCode, 0) << r.out;
    ASSERT_TRUE(r.parsed.is_object()) << r.out;
    EXPECT_EQ(r.parsed["cniVersion"], v);
    ASSERT_EQ(r.parsed["ips"].size(), 2u);
    EXPECT_EQ(r.parsed["ips"][0]["address"].get<std::string>().substr(0, 8), "10.77.0.");
    EXPECT_TRUE(r.parsed["ips"][0]["address"].get<std::string>().ends_with("/32"));
    EXPECT_TRUE(r.parsed["ips"][1]["address"].get<std::string>().ends_with("/128"));
    EXPECT_EQ(r.parsed["ips"][0].contains("version"), v == "0.4.0");
    EXPECT_EQ(r.parsed["interfaces"][0].contains("mtu"), v == "1.1.0");
    std::string hostVeth = r.parsed["interfaces"][0]["name"];
    EXPECT_EQ(hostVeth.size(), 13u);
    EXPECT_EQ(hostVeth.substr(0, 2), "sl");

    // ADD again for the same attachment: same addresses.
    auto again = add("ctr-" + v, pod, c);
    ASSERT_EQ(again.exitCode, 0) << again.out;
    EXPECT_EQ(addresses(again.parsed), addresses(r.parsed));

    auto chk = plugin("CHECK", "ctr-" + v, pod, withPrev(c, again.parsed));
    EXPECT_EQ(chk.exitCode, 0) << chk.out;

    auto st = plugin("STATUS", "", "", c);
    auto gc = plugin("GC", "", "", [&] {
      json g = c;
      g["cni.dev/valid-attachments"] =
          json::array({{{"containerID", "ctr-" + v}, {"ifname", "eth0"}}});
      return g;
    }());
    if (v == "1.1.0") {
      EXPECT_EQ(st.exitCode, 0) << st.out;
      EXPECT_EQ(gc.exitCode, 0) << gc.out;
    } else {
      EXPECT_NE(st.exitCode, 0);
      EXPECT_EQ(st.parsed.value("code", 0), 1) << st.out;
      EXPECT_EQ(gc.parsed.value("code", 0), 1) << gc.out;
    }
    // GC kept the valid attachment.
    EXPECT_EQ(plugin("CHECK", "ctr-" + v, pod, withPrev(c, again.parsed)).exitCode, 0);

    auto ver =
        runPlugin(kSluice, {{"CNI_COMMAND", "VERSION"}}, json{{"cniVersion", v}}.dump(), host_);
    EXPECT_EQ(ver.exitCode, 0);
    EXPECT_EQ(ver.parsed["supportedVersions"], json(kVersions));

    EXPECT_EQ(plugin("DEL", "ctr-" + v, pod, c).exitCode, 0);
    EXPECT_EQ(plugin("DEL", "ctr-" + v, pod, c).exitCode, 0) << "DEL twice";
    EXPECT_EQ(waitHostState(pristine), pristine);
    EXPECT_TRUE(storeFiles().empty());
    EXPECT_EQ(podLinks("pod-" + v), std::vector<std::string>{"lo"});
  }
}

// --- real traffic --------------------------------------------------------------------------

pid_t spawnIn(const std::string& netns, const std::function<int()>& fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) _exit(126);
    ::alarm(10);  // every helper is bounded
    _exit(fn());
  }
  return pid;
}

int waitFor(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

sockaddr_storage sockaddrOf(const std::string& ip, uint16_t port, socklen_t& len) {
  sockaddr_storage ss{};
  if (ip.find(':') == std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, ip.c_str(), &a->sin_addr);
    len = sizeof(sockaddr_in);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr);
    len = sizeof(sockaddr_in6);
  }
  return ss;
}

// Echo server for one TCP connection or one UDP datagram.
int echoServer(const std::string& ip, uint16_t port, bool tcp) {
  socklen_t len;
  auto ss = sockaddrOf(ip, port, len);
  int s = ::socket(ss.ss_family, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
  int one = 1;
  ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(s, reinterpret_cast<sockaddr*>(&ss), len) != 0) return 2;
  char buf[64];
  if (tcp) {
    ::listen(s, 1);
    int c = ::accept(s, nullptr, nullptr);
    if (c < 0) return 3;
    ssize_t n = ::read(c, buf, sizeof(buf));
    if (n <= 0) return 4;
    return ::write(c, buf, static_cast<size_t>(n)) == n ? 0 : 5;
  }
  sockaddr_storage peer{};
  socklen_t plen = sizeof(peer);
  ssize_t n = ::recvfrom(s, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&peer), &plen);
  if (n <= 0) return 4;
  return ::sendto(s, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&peer), plen) == n
             ? 0
             : 5;
}

int echoClient(const std::string& ip, uint16_t port, bool tcp) {
  socklen_t len;
  auto ss = sockaddrOf(ip, port, len);
  const char msg[] = "sluice-ping";
  char buf[64];
  for (int attempt = 0; attempt < 40; ++attempt) {  // the server may not be listening yet
    int s = ::socket(ss.ss_family, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);
    timeval tv{0, 200000};
    ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (::connect(s, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      ::close(s);
      ::usleep(100000);
      continue;
    }
    if (::send(s, msg, sizeof(msg), 0) != static_cast<ssize_t>(sizeof(msg))) {
      ::close(s);
      ::usleep(100000);
      continue;
    }
    ssize_t n = ::recv(s, buf, sizeof(buf), 0);
    ::close(s);
    if (n == static_cast<ssize_t>(sizeof(msg)) && std::memcmp(buf, msg, sizeof(msg)) == 0) return 0;
    ::usleep(50000);
  }
  return 1;
}

std::string bare(const std::string& cidr) { return cidr.substr(0, cidr.find('/')); }

TEST_F(CniTest, TwoPodsExchangeTcpAndUdpOverV4AndV6) {
  std::string a = ns_->add("a"), b = ns_->add("b");
  json c = conf();
  auto ra = add("pod-a", a, c), rb = add("pod-b", b, c);
  ASSERT_EQ(ra.exitCode, 0) << ra.out;
  ASSERT_EQ(rb.exitCode, 0) << rb.out;
  uint16_t port = 7000;
  for (int fam = 0; fam < 2; ++fam) {
    for (bool tcp : {true, false}) {
      for (bool aToB : {true, false}) {
        SCOPED_TRACE(std::string(fam ? "v6 " : "v4 ") + (tcp ? "tcp " : "udp ") +
                     (aToB ? "a->b" : "b->a"));
        const json& server = aToB ? rb.parsed : ra.parsed;
        std::string dst = bare(server["ips"][fam]["address"]);
        ++port;
        pid_t srv = spawnIn(aToB ? b : a, [&] { return echoServer(dst, port, tcp); });
        int cl = waitFor(spawnIn(aToB ? a : b, [&] { return echoClient(dst, port, tcp); }));
        if (cl != 0) ::kill(srv, SIGKILL);
        EXPECT_EQ(cl, 0);
        EXPECT_EQ(waitFor(srv), cl == 0 ? 0 : 255);
      }
    }
  }
  EXPECT_EQ(plugin("DEL", "pod-a", a, c).exitCode, 0);
  EXPECT_EQ(plugin("DEL", "pod-b", b, c).exitCode, 0);
}

TEST_F(CniTest, DelAfterNetnsIsGone) {
  std::string pristine = hostState();
  std::string p = ns_->add("gone");
  json c = conf();
  ASSERT_EQ(add("ctr-gone", p, c).exitCode, 0);
  ns_->remove("gone");
  auto del = plugin("DEL", "ctr-gone", p, c);
  EXPECT_EQ(del.exitCode, 0) << del.out;
  // Without CNI_NETNS at all, as a runtime does after a node reboot.
  auto del2 = runPlugin(
      kSluice,
      [&] {
        auto e = env("DEL", "ctr-gone", p);
        e.erase("CNI_NETNS");
        return e;
      }(),
      c.dump(), host_);
  EXPECT_EQ(del2.exitCode, 0) << del2.out;
  EXPECT_EQ(hostState(), pristine);
  EXPECT_TRUE(storeFiles().empty());
}

TEST_F(CniTest, FailureAtEachAddStepLeavesNothingBehind) {
  std::string pristine = hostState();
  std::string p = ns_->add("fail");
  for (std::string step : {"ipam", "veth", "host-sysctl", "host-up", "pod-addr", "pod-routes",
                           "host-routes", "register"}) {
    SCOPED_TRACE("step " + step);
    auto e = env("ADD", "ctr-fail", p);
    e["SLUICE_TEST_FAIL_AT"] = step;
    auto r = runPlugin(kSluice, e, conf().dump(), host_);
    EXPECT_NE(r.exitCode, 0);
    EXPECT_NE(r.parsed.value("msg", "").find("injected failure at step " + step), std::string::npos)
        << r.out;
    EXPECT_EQ(hostState(), pristine);
    EXPECT_TRUE(storeFiles().empty());
    EXPECT_EQ(podLinks("fail"), std::vector<std::string>{"lo"});
  }
  // And a real failure: the daemon is required but not running.
  auto r = add("ctr-fail", p, conf("1.1.0", "required"));
  EXPECT_NE(r.exitCode, 0);
  EXPECT_EQ(r.parsed.value("code", 0), 11) << r.out;
  EXPECT_EQ(hostState(), pristine);
  EXPECT_TRUE(storeFiles().empty());
  EXPECT_EQ(podLinks("fail"), std::vector<std::string>{"lo"});
  // After all that, a clean ADD still works.
  EXPECT_EQ(add("ctr-fail", p, conf()).exitCode, 0);
  EXPECT_EQ(plugin("DEL", "ctr-fail", p, conf()).exitCode, 0);
}

TEST_F(CniTest, FiftyParallelAddsThenDels) {
  constexpr int kPods = 50;
  std::string pristine = hostState();
  json c = conf();
  std::vector<std::string> paths;
  for (int i = 0; i < kPods; ++i) paths.push_back(ns_->add("par" + std::to_string(i)));
  std::vector<PendingPlugin> pending;
  for (int i = 0; i < kPods; ++i) {
    pending.push_back(
        startPlugin(kSluice, env("ADD", "par-" + std::to_string(i), paths[i]), c.dump(), host_));
  }
  std::set<std::string> seen;
  for (int i = 0; i < kPods; ++i) {
    auto r = waitPlugin(pending[i]);
    ASSERT_EQ(r.exitCode, 0) << r.out;
    for (const auto& a : addresses(r.parsed))
      EXPECT_TRUE(seen.insert(a).second) << "duplicate " << a;
  }
  EXPECT_EQ(seen.size(), 2u * kPods);
  std::string links;
  runCmd({"ip", "-n", ns_->fullName("host"), "-o", "link", "show"}, &links);
  EXPECT_EQ(std::count(links.begin(), links.end(), '\n'), kPods + 1);
  pending.clear();
  for (int i = 0; i < kPods; ++i) {
    pending.push_back(
        startPlugin(kSluice, env("DEL", "par-" + std::to_string(i), paths[i]), c.dump(), host_));
  }
  for (int i = 0; i < kPods; ++i) EXPECT_EQ(waitPlugin(pending[i]).exitCode, 0);
  EXPECT_EQ(waitHostState(pristine), pristine);
  EXPECT_TRUE(storeFiles().empty());
}

TEST_F(CniTest, GcWithPartialValidAttachments) {
  json c = conf();
  std::vector<std::string> paths;
  std::vector<json> results;
  for (int i = 0; i < 3; ++i) {
    paths.push_back(ns_->add("gc" + std::to_string(i)));
    auto r = add("gc-" + std::to_string(i), paths[i], c);
    ASSERT_EQ(r.exitCode, 0) << r.out;
    results.push_back(r.parsed);
  }
  json g = c;
  g["cni.dev/valid-attachments"] = json::array({{{"containerID", "gc-0"}, {"ifname", "eth0"}}});
  auto gc = plugin("GC", "", "", g);
  ASSERT_EQ(gc.exitCode, 0) << gc.out;
  EXPECT_EQ(plugin("CHECK", "gc-0", paths[0], withPrev(c, results[0])).exitCode, 0);
  for (int i = 1; i < 3; ++i) {
    auto chk = plugin("CHECK", "gc-" + std::to_string(i), paths[i], withPrev(c, results[i]));
    EXPECT_NE(chk.exitCode, 0) << "gc-" << i << " survived GC";
    EXPECT_EQ(podLinks("gc" + std::to_string(i)), std::vector<std::string>{"lo"});
  }
  EXPECT_EQ(storeFiles().size(), 3u);  // gc-0: two addresses + its attachment record
  EXPECT_EQ(plugin("DEL", "gc-0", paths[0], c).exitCode, 0);
  EXPECT_TRUE(storeFiles().empty());
}

TEST_F(CniTest, RegistersWithPolicyDaemon) {
  FakePolicyd daemon(ns_->tmpDir() + "/policyd.sock");
  std::string p = ns_->add("reg");
  json c = conf("1.1.0", "required");
  auto r = add("ctr-reg", p, c);
  ASSERT_EQ(r.exitCode, 0) << r.out;
  EXPECT_EQ(plugin("STATUS", "", "", c).exitCode, 0);
  EXPECT_EQ(plugin("CHECK", "ctr-reg", p, withPrev(c, r.parsed)).exitCode, 0);
  EXPECT_EQ(plugin("DEL", "ctr-reg", p, c).exitCode, 0);
  auto reqs = daemon.requests();
  ASSERT_EQ(reqs.size(), 4u);
  EXPECT_EQ(reqs[0]["op"], "add");
  EXPECT_EQ(reqs[0]["containerID"], "ctr-reg");
  EXPECT_EQ(reqs[0]["ifname"], "eth0");
  EXPECT_EQ(reqs[0]["netns"], p);
  EXPECT_EQ(reqs[0]["hostVeth"], r.parsed["interfaces"][0]["name"]);
  EXPECT_GT(reqs[0]["hostIfindex"].get<int>(), 0);
  EXPECT_EQ(reqs[0]["podNamespace"], "default");
  EXPECT_EQ(reqs[0]["podName"], "ctr-reg");
  EXPECT_EQ(reqs[0]["ips"].size(), 2u);
  EXPECT_EQ(reqs[1]["op"], "status");
  EXPECT_EQ(reqs[2]["op"], "check");
  EXPECT_EQ(reqs[3]["op"], "del");

  // A refusal fails ADD and rolls it back.
  std::string pristine = hostState();
  daemon.setReply(R"({"ok":false,"error":"no policy for you"})");
  // A daemon that answers but is not ready: STATUS 50 with its reason.
  auto notReady = plugin("STATUS", "", "", c);
  EXPECT_EQ(notReady.parsed.value("code", 0), 50) << notReady.out;
  EXPECT_NE(notReady.parsed.value("msg", "").find("no policy for you"), std::string::npos)
      << notReady.out;
  auto refused = add("ctr-reg2", p, c);
  EXPECT_NE(refused.exitCode, 0);
  EXPECT_NE(refused.parsed.value("msg", "").find("no policy for you"), std::string::npos)
      << refused.out;
  EXPECT_EQ(hostState(), pristine);
  EXPECT_TRUE(storeFiles().empty());
}

TEST_F(CniTest, StatusReportsUnavailableDaemon) {
  auto st = plugin("STATUS", "", "", conf("1.1.0", "required"));
  EXPECT_NE(st.exitCode, 0);
  EXPECT_EQ(st.parsed.value("code", 0), 50) << st.out;
  EXPECT_EQ(plugin("STATUS", "", "", conf("1.1.0", "optional")).exitCode, 0);
}

TEST_F(CniTest, DelegatesToHostLocal) {
  std::string pristine = hostState();
  std::string p = ns_->add("hl");
  json c = conf("1.0.0");
  c["ipam"] = {{"type", "host-local"},
               {"dataDir", dataDir_ + "-hl"},
               {"ranges", json::array({json::array({{{"subnet", "10.78.0.0/24"}}})})}};
  auto r = add("ctr-hl", p, c);
  ASSERT_EQ(r.exitCode, 0) << r.out;
  ASSERT_EQ(r.parsed["ips"].size(), 1u);
  EXPECT_EQ(r.parsed["ips"][0]["address"].get<std::string>().substr(0, 8), "10.78.0.");
  EXPECT_EQ(plugin("CHECK", "ctr-hl", p, withPrev(c, r.parsed)).exitCode, 0);
  EXPECT_EQ(plugin("DEL", "ctr-hl", p, c).exitCode, 0);
  EXPECT_EQ(waitHostState(pristine), pristine);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dataDir_ + "-hl/slnet", ec)) {
    std::string n = e.path().filename().string();
    EXPECT_TRUE(n == "lock" || n.rfind("last_reserved_ip", 0) == 0) << "host-local kept " << n;
  }
}

TEST_F(CniTest, UsePodCidrAndRuntimeConfig) {
  std::string file = ns_->tmpDir() + "/podcidrs.json";
  { std::ofstream(file) << R"({"podCIDRs":["10.79.3.0/24","fd00:79:3::/64"]})"; }
  std::string p = ns_->add("pc");
  json c = conf();
  c["ipam"] = {
      {"type", "sluice"}, {"dataDir", dataDir_}, {"usePodCidr", true}, {"podCidrFile", file}};
  c["runtimeConfig"] = {{"ips", {"10.79.3.42/24"}}, {"mac", "02:11:22:33:44:55"}};
  auto r = add("ctr-pc", p, c);
  ASSERT_EQ(r.exitCode, 0) << r.out;
  EXPECT_EQ(r.parsed["ips"][0]["address"], "10.79.3.42/32");
  EXPECT_EQ(r.parsed["ips"][1]["address"].get<std::string>().substr(0, 11), "fd00:79:3::");
  EXPECT_EQ(r.parsed["interfaces"][1]["mac"], "02:11:22:33:44:55");
  EXPECT_EQ(plugin("DEL", "ctr-pc", p, c).exitCode, 0);
}

TEST_F(CniTest, ChainsWithTuningPortmapAndBandwidth) {
  if (::access("/usr/lib/cni/portmap", X_OK) != 0 ||
      ::access("/usr/lib/cni/bandwidth", X_OK) != 0 || ::access("/usr/lib/cni/tuning", X_OK) != 0) {
    GTEST_SKIP() << "containernetworking-plugins not installed";
  }
  std::string p = ns_->add("chain");
  // The Debian reference plugins speak up to 1.0.0, so a runtime negotiates that.
  json c = conf("1.0.0");
  auto r = add("ctr-chain", p, c);
  ASSERT_EQ(r.exitCode, 0) << r.out;
  auto e = env("ADD", "ctr-chain", p);
  // tuning: a pod sysctl and a new pod MAC; it rewrites the MAC in the result it passes on.
  json tu = {{"cniVersion", "1.0.0"},      {"name", "slnet"},
             {"type", "tuning"},           {"sysctl", {{"net.core.somaxconn", "777"}}},
             {"mac", "02:aa:bb:cc:dd:ee"}, {"prevResult", r.parsed}};
  auto rt = runPlugin("/usr/lib/cni/tuning", e, tu.dump(), host_);
  ASSERT_EQ(rt.exitCode, 0) << rt.out;
  std::string somaxconn, link;
  runCmd({"ip", "netns", "exec", ns_->fullName("chain"), "cat", "/proc/sys/net/core/somaxconn"},
         &somaxconn);
  EXPECT_EQ(somaxconn, "777\n");
  runCmd({"ip", "-n", ns_->fullName("chain"), "link", "show", "eth0"}, &link);
  EXPECT_NE(link.find("02:aa:bb:cc:dd:ee"), std::string::npos) << link;
  json pm = {{"cniVersion", "1.0.0"},
             {"name", "slnet"},
             {"type", "portmap"},
             {"capabilities", {{"portMappings", true}}},
             {"runtimeConfig",
              {{"portMappings",
                json::array({{{"hostPort", 18080}, {"containerPort", 80}, {"protocol", "tcp"}}})}}},
             {"prevResult", rt.parsed}};
  auto rp = runPlugin("/usr/lib/cni/portmap", e, pm.dump(), host_);
  ASSERT_EQ(rp.exitCode, 0) << rp.out;
  json bw = {{"cniVersion", "1.0.0"},
             {"name", "slnet"},
             {"type", "bandwidth"},
             {"capabilities", {{"bandwidth", true}}},
             {"runtimeConfig",
              {{"bandwidth",
                {{"ingressRate", 1000000},
                 {"ingressBurst", 100000},
                 {"egressRate", 1000000},
                 {"egressBurst", 100000}}}}},
             {"prevResult", rp.parsed}};
  auto rb = runPlugin("/usr/lib/cni/bandwidth", e, bw.dump(), host_);
  ASSERT_EQ(rb.exitCode, 0) << rb.out;
  // bandwidth found our host veth in the result and shaped it.
  std::string qdisc;
  runCmd({"tc", "-n", ns_->fullName("host"), "qdisc", "show", "dev",
          r.parsed["interfaces"][0]["name"]},
         &qdisc);
  EXPECT_NE(qdisc.find("tbf"), std::string::npos) << qdisc;
  // CHECK through the chain with the final result.
  auto chk = plugin("CHECK", "ctr-chain", p, withPrev(c, rb.parsed));
  EXPECT_EQ(chk.exitCode, 0) << chk.out;
  // DEL in reverse order, as libcni does.
  e["CNI_COMMAND"] = "DEL";
  EXPECT_EQ(runPlugin("/usr/lib/cni/bandwidth", e, bw.dump(), host_).exitCode, 0);
  EXPECT_EQ(runPlugin("/usr/lib/cni/portmap", e, pm.dump(), host_).exitCode, 0);
  EXPECT_EQ(runPlugin("/usr/lib/cni/tuning", e, tu.dump(), host_).exitCode, 0);
  EXPECT_EQ(plugin("DEL", "ctr-chain", p, c).exitCode, 0);
}

TEST_F(CniTest, BadInputGetsSpecErrorNeverACrash) {
  std::string p = ns_->add("bad");
  struct Case {
    std::string name;
    std::string stdinData;
    int code;
    std::string mentions;
  };
  json good = conf();
  auto mod = [&](auto f) {
    json c = good;
    f(c);
    return c.dump();
  };
  std::vector<Case> cases = {
      {"not json", "{{{", 6, ""},
      {"array", "[1,2]", 6, ""},
      {"empty", "", 6, ""},
      {"old version", mod([](json& c) { c["cniVersion"] = "0.3.1"; }), 1, "cniVersion"},
      {"mtu string", mod([](json& c) { c["mtu"] = "big"; }), 7, "mtu"},
      {"mtu huge", mod([](json& c) { c["mtu"] = 1 << 20; }), 7, "mtu"},
      {"policy bad", mod([](json& c) { c["policy"] = "maybe"; }), 7, "policy"},
      {"no ipam", mod([](json& c) { c.erase("ipam"); }), 7, "ipam"},
      {"bad cidr", mod([](json& c) { c["ipam"]["ranges"][0][0]["subnet"] = "10.1.2.0/40"; }), 7,
       "ipam.ranges[0][0].subnet"},
      {"cidr not string", mod([](json& c) { c["ipam"]["ranges"][0][0]["subnet"] = 42; }), 7,
       "ipam.ranges[0][0].subnet"},
      {"rangeStart outside",
       mod([](json& c) { c["ipam"]["ranges"][0][0]["rangeStart"] = "10.9.9.9"; }), 7, "rangeStart"},
      {"ranges not array", mod([](json& c) { c["ipam"]["ranges"] = "x"; }), 7, "ipam.ranges"},
      {"runtime ip bad", mod([](json& c) {
         c["runtimeConfig"] = {{"ips", {"nope"}}};
       }),
       7, "runtimeConfig.ips[0]"},
      {"runtime mac bad", mod([](json& c) {
         c["runtimeConfig"] = {{"mac", "zz"}};
       }),
       7, "runtimeConfig.mac"},
      {"name missing", mod([](json& c) { c.erase("name"); }), 7, "name"},
      {"ipam type number", mod([](json& c) { c["ipam"]["type"] = 5; }), 7, "ipam.type"},
      {"unknown ipam plugin", mod([](json& c) {
         c["ipam"] = {{"type", "no-such-ipam"}};
       }),
       7, "no-such-ipam"},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.name);
    auto r = runPlugin(kSluice, env("ADD", "ctr-bad", p), tc.stdinData, host_);
    EXPECT_EQ(r.exitCode, 1) << r.out;
    ASSERT_TRUE(r.parsed.is_object()) << r.out;
    EXPECT_EQ(r.parsed.value("code", 0), tc.code) << r.out;
    EXPECT_NE(r.parsed.value("msg", "").find(tc.mentions), std::string::npos) << r.out;
  }
  struct EnvCase {
    std::string unset;
    std::string mentions;
  };
  for (const auto& ec : std::vector<EnvCase>{{"CNI_COMMAND", "CNI_COMMAND"},
                                             {"CNI_CONTAINERID", "CNI_CONTAINERID"},
                                             {"CNI_IFNAME", "CNI_IFNAME"},
                                             {"CNI_NETNS", "CNI_NETNS"},
                                             {"CNI_PATH", "CNI_PATH"}}) {
    SCOPED_TRACE("unset " + ec.unset);
    auto e = env("ADD", "ctr-bad", p);
    e.erase(ec.unset);
    auto r = runPlugin(kSluice, e, good.dump(), host_);
    EXPECT_EQ(r.exitCode, 1);
    EXPECT_EQ(r.parsed.value("code", 0), 4) << r.out;
    EXPECT_NE(r.parsed.value("msg", "").find(ec.mentions), std::string::npos) << r.out;
  }
  EXPECT_EQ(podLinks("bad"), std::vector<std::string>{"lo"});
}

// Every failure prints a spec code, never an errno passed through (EPERM used to print as 1,
// "incompatible version"), and a failed ADD leaves nothing behind.
TEST_F(CniTest, FailuresCarrySpecCodesNeverErrno) {
  std::string pristine = hostState();
  std::string p = ns_->add("codes");
  // A netns path that is not a network namespace, and one that does not exist: the container
  // is unknown (3), whatever errno setns or open gave.
  std::string notNetns = ns_->tmpDir() + "/not-a-netns";
  std::ofstream(notNetns) << "x";
  for (const std::string& netns : {notNetns, ns_->tmpDir() + "/missing"}) {
    SCOPED_TRACE(netns);
    auto r = add("ctr-codes", netns, conf());
    EXPECT_EQ(r.exitCode, 1) << r.out;
    EXPECT_EQ(r.parsed.value("code", 0), 3) << r.out;
    EXPECT_EQ(hostState(), pristine);
    EXPECT_TRUE(storeFiles().empty());
  }
  // Invalid ids: 4, before anything is allocated.
  for (auto [id, ifname] : std::vector<std::pair<std::string, std::string>>{{"ctr\ncodes", "eth0"},
                                                                            {"../ctr", "eth0"},
                                                                            {"ctr-codes", "eth0\n"},
                                                                            {"ctr-codes", "a/b"}}) {
    auto r = runPlugin(kSluice, env("ADD", id, p, ifname), conf().dump(), host_);
    EXPECT_EQ(r.exitCode, 1) << r.out;
    EXPECT_EQ(r.parsed.value("code", 0), 4) << r.out;
    EXPECT_TRUE(storeFiles().empty());
  }
  EXPECT_EQ(podLinks("codes"), std::vector<std::string>{"lo"});
}

TEST_F(CniTest, BusyDaemonIsTryAgainLaterAndRefusalIsInternal) {
  FakePolicyd daemon(ns_->tmpDir() + "/policyd.sock");
  std::string pristine = hostState();
  std::string p = ns_->add("busy");
  json c = conf("1.1.0", "required");
  struct Case {
    std::string reply;
    int code;
  };
  for (const auto& tc : std::vector<Case>{
           {R"j({"ok":false,"error":"sluice-policyd is busy (too many connections)","retry":true})j", 11},
           {R"j({"ok":false,"error":"timed out after 10000 ms waiting for the policy sync","retry":true})j", 11},
           {R"j({"ok":false,"error":"no policy for you"})j", 100}}) {
    SCOPED_TRACE(tc.reply);
    daemon.setReply(tc.reply);
    auto r = add("ctr-busy", p, c);
    EXPECT_EQ(r.exitCode, 1) << r.out;
    EXPECT_EQ(r.parsed.value("code", 0), tc.code) << r.out;
    EXPECT_EQ(waitHostState(pristine), pristine);
    EXPECT_TRUE(storeFiles().empty());
    EXPECT_EQ(podLinks("busy"), std::vector<std::string>{"lo"});
  }
  daemon.setReply(R"({"ok":true})");
  auto ok = add("ctr-busy", p, c);
  ASSERT_EQ(ok.exitCode, 0) << ok.out;
  EXPECT_EQ(plugin("DEL", "ctr-busy", p, c).exitCode, 0);
}

TEST_F(CniTest, DelegatedIpamThatIgnoresStdinIsAnErrorWithJson) {
  std::string pristine = hostState();
  std::string p = ns_->add("quit");
  std::string bin = ns_->tmpDir() + "/bin";
  fs::create_directories(bin);
  { std::ofstream(bin + "/quitter") << "#!/bin/sh\nexit 0\n"; }
  fs::permissions(bin + "/quitter", fs::perms::owner_all);
  json c = conf();
  c["ipam"] = {{"type", "quitter"}};
  c["padding"] = std::string(1 << 20, 'p');  // beyond a pipe's capacity: the write must fail
  auto e = env("ADD", "ctr-quit", p);
  e["CNI_PATH"] = bin;
  auto r = runPlugin(kSluice, e, c.dump(), host_);
  EXPECT_EQ(r.exitCode, 1) << "exit " << r.exitCode << " (SIGPIPE would be killed, not 1)";
  ASSERT_TRUE(r.parsed.is_object()) << r.out;
  EXPECT_EQ(r.parsed.value("code", 0), 100) << r.out;
  EXPECT_NE(r.parsed.value("msg", "").find("quitter"), std::string::npos) << r.out;
  EXPECT_EQ(hostState(), pristine);
  EXPECT_EQ(podLinks("quit"), std::vector<std::string>{"lo"});
}

}  // namespace
}  // namespace sluice::cni::testing
