// CNI error codes: the one mapping from internal categories to spec codes (spec.h), id
// validation, and real invocations of the `sluice` binary on paths that need no root (a
// delegated IPAM plugin that misbehaves). The privileged paths are in e2e/cni.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "cni/exec.h"
#include "cni/spec.h"

namespace sluice::cni {
namespace {

namespace fs = std::filesystem;

const std::string kSluice = std::string(SLUICE_BINARY_DIR) + "/cni/sluice";

TEST(CniErrorCodeTest, EveryCategoryMapsToItsSpecCode) {
  struct Case {
    int category;
    int code;
  };
  for (auto [category, code] : std::vector<Case>{{kErrIncompatibleVersion, 1},
                                                 {kErrUnsupportedField, 2},
                                                 {kErrUnknownContainer, 3},
                                                 {kErrInvalidEnv, 4},
                                                 {kErrIo, 5},
                                                 {kErrDecode, 6},
                                                 {kErrInvalidConfig, 7},
                                                 {kErrTryAgainLater, 11},
                                                 {kErrNotAvailable, 50},
                                                 {kErrNotAvailableLimited, 51},
                                                 {kErrInternal, 100},
                                                 {kErrAddressesExhausted, 101},
                                                 {kErrCheckFailed, 102}}) {
    EXPECT_EQ(specCode(makeError("x", category)), code) << category;
    // Wrapping context keeps the category.
    EXPECT_EQ(specCode(makeError("x", category).wrap("ctx")), code) << category;
  }
}

TEST(CniErrorCodeTest, ErrnoNeverBecomesASpecCode) {
  // EPERM == 1 == "incompatible version", ENOENT == 2, EAGAIN == 11: each would lie.
  for (int err : {0, EPERM, ENOENT, ESRCH, EINTR, EIO, ENXIO, E2BIG, EAGAIN, EEXIST, ENODEV, EINVAL,
                  EPIPE, ENETDOWN, 4095, -1, -kErrInvalidEnv}) {
    EXPECT_EQ(specCode(makeError("lower layer", err)), 100) << err;
  }
  EXPECT_EQ(specCode(withCode(makeError("netlink: EPERM", EPERM), kErrUnknownContainer)), 3);
  // A lower layer's errno and our categories never meet: categories sit above any errno.
  EXPECT_GT(kErrIncompatibleVersion, 4095);
}

TEST(CniErrorCodeTest, DelegatedPluginCodesKeepTheirSpecMeaning) {
  for (int code : {1, 2, 3, 4, 5, 6, 7, 11, 50, 51}) {
    EXPECT_EQ(specCode(makeError("d", categoryOfSpecCode(code))), code);
  }
  // Another plugin's own 100+ codes mean something else than ours; unknown ones are nonsense.
  for (int code : {0, -3, 8, 12, 99, 100, 101, 102, 999, 1 << 30}) {
    EXPECT_EQ(categoryOfSpecCode(code), kErrInternal) << code;
  }
  PluginRun run{1, R"({"cniVersion":"1.1.0","code":7,"msg":"bad subnet"})", false};
  Error e = decodePluginError("host-local", run);
  EXPECT_EQ(specCode(e), 7);
  EXPECT_NE(e.message.find("host-local: bad subnet"), std::string::npos);
  run.out = R"({"code":140,"msg":"own"})";
  e = decodePluginError("x", run);
  EXPECT_EQ(specCode(e), 100);
  EXPECT_NE(e.message.find("its code 140"), std::string::npos) << e.message;
  run.out = "segfault";
  run.exitCode = 139;
  EXPECT_EQ(specCode(decodePluginError("x", run)), 100);
}

TEST(CniIdValidationTest, ContainerIdFollowsLibcni) {
  for (std::string ok :
       std::vector<std::string>{"a", "0", "abc-DEF_1.2", std::string(64, 'f'), "Z.-_"}) {
    EXPECT_TRUE(validateContainerId(ok).ok()) << ok;
  }
  for (std::string bad :
       std::vector<std::string>{"", "-a", "_a", ".a", "a\nb", "a b", "a/b", "../x", "a:b", "a\tb",
                                std::string("a\0b", 3), "a\xc3\xa9", "a;b", "a\r"}) {
    auto st = validateContainerId(bad);
    EXPECT_FALSE(st.ok()) << bad;
  }
  EXPECT_FALSE(validateContainerId(std::string(kMaxContainerIdBytes + 1, 'a')).ok());
  // The message shows the id escaped, so a newline cannot forge a log line.
  auto st = validateContainerId("ab\ncd");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("ab\\ncd"), std::string::npos) << st.error().message;
  EXPECT_EQ(st.error().message.find('\n'), std::string::npos);
}

TEST(CniIdValidationTest, IfnameFollowsTheKernel) {
  for (std::string ok :
       std::vector<std::string>{"eth0", "e", "net1.100", "a-b_c", std::string(15, 'x')}) {
    EXPECT_TRUE(validateIfname(ok).ok()) << ok;
  }
  for (std::string bad :
       std::vector<std::string>{"", ".", "..", "a/b", "a:b", "a b", "a\tb", "a\nb",
                                std::string(16, 'x'), std::string("a\0b", 3), "a\x7f"}) {
    EXPECT_FALSE(validateIfname(bad).ok()) << bad;
  }
}

Result<Env> envOf(std::map<std::string, std::string> vars) {
  return parseEnv([&](const char* k) -> const char* {
    auto it = vars.find(k);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

TEST(CniIdValidationTest, BadIdsInTheEnvironmentAreInvalidEnv) {
  std::map<std::string, std::string> base = {{"CNI_COMMAND", "ADD"},
                                             {"CNI_CONTAINERID", "c1"},
                                             {"CNI_NETNS", "/n"},
                                             {"CNI_IFNAME", "eth0"},
                                             {"CNI_PATH", "/opt/cni/bin"}};
  for (const char* cmd : {"ADD", "DEL", "CHECK"}) {
    for (auto [key, value] : std::vector<std::pair<std::string, std::string>>{
             {"CNI_CONTAINERID", "c1\nc2"},
             {"CNI_CONTAINERID", "../../etc"},
             {"CNI_CONTAINERID", "-rf"},
             {"CNI_IFNAME", "eth0\n"},
             {"CNI_IFNAME", "../x"},
             {"CNI_IFNAME", ".."},
             {"CNI_IFNAME", "averyveryverylongname"}}) {
      auto vars = base;
      vars["CNI_COMMAND"] = cmd;
      vars[key] = value;
      auto e = envOf(vars);
      ASSERT_FALSE(e.ok()) << cmd << " " << key << "=" << value;
      EXPECT_EQ(specCode(e.error()), 4);
      EXPECT_NE(e.error().message.find(key), std::string::npos) << e.error().message;
    }
  }
}

TEST(CniIdValidationTest, GcRefusesMalformedValidAttachments) {
  json conf = {
      {"cniVersion", "1.1.0"},
      {"name", "net"},
      {"type", "sluice"},
      {"ipam", {{"type", "sluice"}}},
      {"cni.dev/valid-attachments", json::array({{{"containerID", "ok-1"}, {"ifname", "eth0"}}})}};
  ASSERT_TRUE(parseNetConf(conf.dump(), Command::Gc).ok());
  for (auto [id, ifname, field] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"ok\n1", "eth0", ".containerID"},
           {"ok-1", "eth0/x", ".ifname"},
           {"_x", "eth0", ".containerID"}}) {
    json c = conf;
    c["cni.dev/valid-attachments"].push_back({{"containerID", id}, {"ifname", ifname}});
    auto r = parseNetConf(c.dump(), Command::Gc);
    ASSERT_FALSE(r.ok()) << id << " " << ifname;
    EXPECT_EQ(specCode(r.error()), 7);
    EXPECT_NE(r.error().message.find("cni.dev/valid-attachments[1]" + field), std::string::npos)
        << r.error().message;
  }
}

TEST(CniJsonDepthTest, DeepNestingIsADecodeErrorNotAStackOverflow) {
  auto nested = [](size_t depth) {
    return R"({"cniVersion":"1.1.0","name":"n","ipam":{"type":"x"},"prevResult":)" +
           std::string(depth, '[') + std::string(depth, ']') + "}";
  };
  EXPECT_TRUE(parseJson(nested(kMaxJsonDepth - 1), "conf").ok());
  for (size_t depth : {kMaxJsonDepth, size_t{100000}}) {
    auto r = parseNetConf(nested(depth), Command::Add);
    ASSERT_FALSE(r.ok()) << depth;
    EXPECT_EQ(specCode(r.error()), 6);
    EXPECT_NE(r.error().message.find("deeper than 64"), std::string::npos) << r.error().message;
  }
  // Brackets inside strings are text, not nesting.
  std::string brackets = R"({"a":")" + std::string(1000, '[') + R"(\"\\"})";
  EXPECT_TRUE(parseJson(brackets, "x").ok());
}

// ---- the real binary, paths that need no root ----

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sluice-cni-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct SluiceRun {
  int status = -1;  // waitpid status
  std::string out;
};

// Runs `sluice` with exactly `env`, feeding `in`; bounded by 20 s.
SluiceRun runSluice(const std::map<std::string, std::string>& env, const std::string& in) {
  int inPipe[2], outPipe[2];
  if (::pipe2(inPipe, O_CLOEXEC) != 0 || ::pipe2(outPipe, O_CLOEXEC) != 0) return {};
  std::vector<std::string> envStrings;
  for (const auto& [k, v] : env) envStrings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : envStrings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string arg0 = kSluice;
  char* argv[] = {arg0.data(), nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, inPipe[0], 0);
  posix_spawn_file_actions_adddup2(&fa, outPipe[1], 1);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, kSluice.c_str(), &fa, nullptr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  ::close(inPipe[0]);
  ::close(outPipe[1]);
  SluiceRun run;
  if (rc == 0) {
    // Small inputs fit the pipe; the plugin may legitimately exit before reading them all.
    (void)!::write(inPipe[1], in.data(), in.size());
  }
  ::close(inPipe[1]);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  char buf[4096];
  while (rc == 0 && std::chrono::steady_clock::now() < deadline) {
    pollfd p{outPipe[0], POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(outPipe[0], buf, sizeof buf);
    if (n <= 0) break;
    run.out.append(buf, static_cast<size_t>(n));
  }
  ::close(outPipe[0]);
  if (rc == 0) {
    if (std::chrono::steady_clock::now() >= deadline) ::kill(pid, SIGKILL);
    ::waitpid(pid, &run.status, 0);
  }
  return run;
}

class CniBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir.path().empty());
    ASSERT_TRUE(fs::exists(kSluice)) << kSluice;
  }
  // An executable shell script named `name` in the temp dir (CNI_PATH).
  void script(const std::string& name, const std::string& body) {
    std::string p = dir.path() + "/" + name;
    std::ofstream(p) << "#!/bin/sh\n" << body << "\n";
    fs::permissions(p, fs::perms::owner_all);
  }
  std::map<std::string, std::string> env(const std::string& cmd) {
    return {{"CNI_COMMAND", cmd},
            {"CNI_CONTAINERID", "ctr1"},
            {"CNI_NETNS", "/proc/self/ns/net"},
            {"CNI_IFNAME", "eth0"},
            {"CNI_PATH", dir.path()}};
  }
  // A config larger than a pipe's capacity, so a plugin that does not read it makes our
  // write fail with EPIPE for certain.
  std::string conf(const std::string& ipamType) {
    json c = {{"cniVersion", "1.1.0"},
              {"name", "net"},
              {"type", "sluice"},
              {"policy", "optional"},
              {"logFile", dir.path() + "/cni.log"},
              {"ipam", {{"type", ipamType}}},
              {"padding", std::string(1 << 20, 'p')}};
    return c.dump();
  }
  static json parsed(const SluiceRun& r) { return json::parse(r.out, nullptr, false); }

  TempDir dir;
};

TEST_F(CniBinaryTest, DelegateThatExitsWithoutReadingStdinIsAnErrorNotASigpipe) {
  script("quitter", "exit 0");
  for (int i = 0; i < 3; ++i) {  // the race between exit and write is the point: repeat it
    SluiceRun r = runSluice(env("ADD"), conf("quitter"));
    ASSERT_TRUE(WIFEXITED(r.status))
        << "killed by signal " << (WIFSIGNALED(r.status) ? WTERMSIG(r.status) : 0);
    EXPECT_EQ(WEXITSTATUS(r.status), 1);
    json j = parsed(r);
    ASSERT_TRUE(j.is_object()) << r.out;
    EXPECT_EQ(j.value("code", 0), 100) << r.out;
    EXPECT_NE(j.value("msg", "").find("quitter"), std::string::npos) << r.out;
  }
}

TEST_F(CniBinaryTest, DelegateThatFailsWithoutReadingStdinKeepsItsCode) {
  script("refuser", R"(echo '{"cniVersion":"1.1.0","code":7,"msg":"refused early"}'; exit 1)");
  SluiceRun r = runSluice(env("ADD"), conf("refuser"));
  ASSERT_TRUE(WIFEXITED(r.status));
  json j = parsed(r);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j.value("code", 0), 7) << r.out;
  EXPECT_NE(j.value("msg", "").find("refused early"), std::string::npos) << r.out;
}

TEST_F(CniBinaryTest, DelegateRunsWithDefaultSigpipe) {
  // We ignore SIGPIPE, and an ignored signal stays ignored across exec; the delegate must get
  // the default back, as under a runtime. It reports its ignored-signal mask as its error.
  script("mask", R"(m=$(sed -n 's/^SigIgn:[[:space:]]*//p' /proc/$$/status)
echo "{\"cniVersion\":\"1.1.0\",\"code\":7,\"msg\":\"sigign=$m\"}"; exit 1)");
  SluiceRun r = runSluice(env("ADD"), conf("mask"));
  json j = parsed(r);
  ASSERT_TRUE(j.is_object()) << r.out;
  std::string msg = j.value("msg", "");
  auto at = msg.find("sigign=");
  ASSERT_NE(at, std::string::npos) << r.out;
  unsigned long long mask = std::stoull(msg.substr(at + 7, 16), nullptr, 16);
  EXPECT_EQ(mask & (1ULL << (SIGPIPE - 1)), 0u) << msg;
}

TEST_F(CniBinaryTest, DeeplyNestedConfigIsADecodeError) {
  // Copying such a config recursed once per level and overflowed the stack (the fuzz found it).
  std::string deep = R"({"cniVersion":"1.1.0","name":"n","ipam":{"type":"x"},"prevResult":)" +
                     std::string(200000, '[') + std::string(200000, ']') + "}";
  SluiceRun r = runSluice(env("ADD"), deep);
  ASSERT_TRUE(WIFEXITED(r.status)) << "killed by signal " << WTERMSIG(r.status);
  json j = parsed(r);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j.value("code", 0), 6) << r.out;
}

TEST_F(CniBinaryTest, BadContainerIdIsInvalidEnvAndTouchesNothing) {
  script("never", "touch " + dir.path() + "/ran; exit 0");
  auto e = env("ADD");
  e["CNI_CONTAINERID"] = "ctr1\nctr2";
  SluiceRun r = runSluice(e, conf("never"));
  ASSERT_TRUE(WIFEXITED(r.status));
  EXPECT_EQ(WEXITSTATUS(r.status), 1);
  json j = parsed(r);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j.value("code", 0), 4) << r.out;
  EXPECT_FALSE(fs::exists(dir.path() + "/ran")) << "IPAM ran for an invalid container id";
}

}  // namespace
}  // namespace sluice::cni
