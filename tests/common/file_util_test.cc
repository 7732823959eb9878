// readFile: only regular files, never blocks on a FIFO, never grows without bound; and the
// issue's reproduction through the real sluicectl (`-f /dev/zero`, `-f FIFO`).
#include "common/file_util.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "tests/ctl/subprocess.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "sluice-fu-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

TEST(ReadFileTest, ReadsRegularFilesWhole) {
  TempDir d;
  std::string data(200000, 'a');
  data[123] = '\0';  // binary-safe
  std::ofstream(d.file("f"), std::ios::binary) << data;
  auto r = readFile(d.file("f"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, data);
  std::ofstream(d.file("empty"));
  EXPECT_EQ(readFile(d.file("empty")).value(), "");
  auto missing = readFile(d.file("nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ENOENT);  // the registry relies on it
  EXPECT_NE(missing.error().message.find(d.file("nope")), std::string::npos);
}

TEST(ReadFileTest, BoundsTheSize) {
  TempDir d;
  std::ofstream(d.file("f")) << std::string(1000, 'x');
  EXPECT_TRUE(readFile(d.file("f"), 1000).ok());
  auto r = readFile(d.file("f"), 999);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EFBIG);
  EXPECT_NE(r.error().message.find(d.file("f")), std::string::npos);
  EXPECT_NE(r.error().message.find("larger than 999 bytes"), std::string::npos)
      << r.error().message;
  // A file whose size says 0 (as in /proc) is still bounded by what is read.
  auto proc = readFile("/proc/self/status", 16);
  ASSERT_FALSE(proc.ok());
  EXPECT_EQ(proc.error().code, EFBIG);
  EXPECT_TRUE(readFile("/proc/self/status").ok());
}

TEST(ReadFileTest, RefusesEverythingButRegularFilesWithoutBlocking) {
  TempDir d;
  ASSERT_EQ(::mkfifo(d.file("fifo").c_str(), 0600), 0);
  fs::create_directory(d.file("dir"));
  int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string sockPath = d.file("sock");
  std::memcpy(addr.sun_path, sockPath.c_str(), sockPath.size());
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  struct Case {
    std::string path;
    std::string kind;
  };
  for (const auto& c : std::vector<Case>{{"/dev/zero", "a character device"},
                                         {"/dev/null", "a character device"},
                                         {d.file("fifo"), "a FIFO"},
                                         {d.file("dir"), "a directory"}}) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = readFile(c.path);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s) << c.path;
    ASSERT_FALSE(r.ok()) << c.path;
    EXPECT_EQ(r.error().code, EINVAL) << c.path;
    EXPECT_NE(r.error().message.find(c.path + ": cannot read: " + c.kind), std::string::npos)
        << r.error().message;
    EXPECT_NE(r.error().message.find("not a regular file"), std::string::npos);
  }
  // A unix socket cannot even be opened; the error still names it.
  auto r = readFile(sockPath);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(sockPath), std::string::npos);
  ::close(s);
}

// The reproduction: `sluicectl lint -f /dev/zero` grew without bound and `-f FIFO`
// hung. Both must fail at once with exit 2 and a message naming the path.
TEST(ReadFileTest, SluicectlRefusesDevicesAndFifos) {
  TempDir d;
  ASSERT_EQ(::mkfifo(d.file("fifo").c_str(), 0600), 0);
  for (const std::string& path : {std::string("/dev/zero"), d.file("fifo")}) {
    auto t0 = std::chrono::steady_clock::now();
    // timeout(1) turns the old hang into a failure instead of a stuck test.
    auto r =
        ctl::testing::runProcess("/usr/bin/timeout", {"10", SLUICECTL_PATH, "lint", "-f", path});
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s) << path;
    EXPECT_EQ(r.exitCode, 2) << path << "\n" << r.out << r.err;
    EXPECT_NE((r.out + r.err).find(path), std::string::npos) << r.out << r.err;
    EXPECT_NE((r.out + r.err).find("not a regular file"), std::string::npos) << r.out << r.err;
  }
}

}  // namespace
}  // namespace sluice
