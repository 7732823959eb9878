// Helpers for the privileged CNI tests and the CNI benchmark: network namespaces with a
// per-run prefix, running a plugin binary inside a "host" namespace, and a tiny endpoint
// socket server standing in for sluice-policyd.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace sluice::cni::testing {

using json = nlohmann::json;

struct PluginOutput {
  int exitCode = -1;  // -1: killed at the timeout
  std::string out;
  std::string err;
  json parsed;  // stdout as JSON, or discarded
};

// Runs `binary` with the CNI environment inside `netnsPath` (setns in the child), feeding
// `stdinData`. Bounded by `timeout`.
PluginOutput runPlugin(const std::string& binary, const std::map<std::string, std::string>& env,
                       const std::string& stdinData, const std::string& netnsPath,
                       std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Starts the process without waiting (parallel ADD tests); finish with waitPlugin.
struct PendingPlugin {
  pid_t pid = -1;
  int outFd = -1;
  int errFd = -1;  // unlinked temp file
};
PendingPlugin startPlugin(const std::string& binary, const std::map<std::string, std::string>& env,
                          const std::string& stdinData, const std::string& netnsPath);
PluginOutput waitPlugin(PendingPlugin p, std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Runs a shell-free command (argv) and returns its exit code; output discarded unless `out`.
int runCmd(const std::vector<std::string>& argv, std::string* out = nullptr);

// Named network namespaces "<prefix>-<name>" (ip netns add), deleted on destruction. The
// prefix is "slt<pid>"; preClean() deletes namespaces and /tmp dirs of earlier runs whose pid
// is gone (our prefix family only).
class NetnsSet {
 public:
  NetnsSet();
  ~NetnsSet();
  NetnsSet(const NetnsSet&) = delete;
  NetnsSet& operator=(const NetnsSet&) = delete;
  static void preClean(const std::string& family = "slt");

  const std::string& prefix() const { return prefix_; }
  // Creates "<prefix>-<name>" with lo up; returns its path (/run/netns/...).
  std::string add(const std::string& name);
  void remove(const std::string& name);
  std::string path(const std::string& name) const { return "/run/netns/" + prefix_ + "-" + name; }
  std::string fullName(const std::string& name) const { return prefix_ + "-" + name; }
  const std::string& tmpDir() const { return tmp_; }

 private:
  std::string prefix_;
  std::string tmp_;
  std::vector<std::string> names_;
};

// Runs `fn` in a forked child inside `netnsPath`; returns the child's exit status (0 = ok).
int inNetns(const std::string& netnsPath, const std::function<int()>& fn, int timeoutMs = 10000);

// A minimal endpoint-socket server (DESIGN.md §4) on a thread: records each request line and
// answers with `reply` (default {"ok":true}).
class FakePolicyd {
 public:
  explicit FakePolicyd(std::string path);
  ~FakePolicyd();
  void setReply(const std::string& line);
  std::vector<json> requests();
  const std::string& path() const { return path_; }

 private:
  void serve();
  std::string path_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::string reply_ = R"({"ok":true})";
  std::vector<json> requests_;
  std::thread thread_;
};

}  // namespace sluice::cni::testing
