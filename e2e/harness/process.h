// Running programs inside network namespaces for the e2e harness. Children enter the target
// netns with setns(2) rather than `ip netns exec`, which would also remount /sys and hide the
// bpffs the daemons pin their maps in.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "common/result.h"

namespace sluice::e2e {

struct Command {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;  // added to (and overriding) the parent environment
  std::string netns;                       // path; empty = stay in the current namespace
  std::string stdinData;
  std::string outputFile;  // for spawn(): where stdout+stderr go (default /dev/null)
};

struct RunResult {
  int exitCode = -1;  // -1 when killed at the timeout
  std::string out;
  std::string err;
};

// Runs to completion (killed after `timeout`) capturing stdout and stderr.
Result<RunResult> run(const Command& cmd, std::chrono::milliseconds timeout);
// Runs a shell-free `ip`/`sysctl`-style helper and fails with its stderr on non-zero exit.
Status runChecked(const Command& cmd, std::chrono::milliseconds timeout = std::chrono::seconds(20));

// A background process; killed (SIGTERM, then SIGKILL) when the handle is destroyed.
class Child {
 public:
  Child() = default;
  explicit Child(pid_t pid) : pid_(pid) {}
  Child(Child&& o) noexcept : pid_(o.pid_) { o.pid_ = -1; }
  Child& operator=(Child&& o) noexcept;
  ~Child() { stop(); }
  pid_t pid() const { return pid_; }
  bool running();
  // SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status if it exited by itself.
  int stop(std::chrono::milliseconds grace = std::chrono::milliseconds(3000));
  // SIGKILL without a grace period (a crash).
  void kill();

 private:
  pid_t pid_ = -1;
};

Result<Child> spawn(const Command& cmd);

}  // namespace sluice::e2e
