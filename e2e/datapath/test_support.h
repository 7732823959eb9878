// Shared by the privileged datapath tests and the datapath benchmark: per-run bpffs pin
// directories, a private network namespace, and BPF_PROG_TEST_RUN.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::e2e {

bool isRoot();

// Every resource of this process carries this prefix: "sltd<pid>".
std::string runPrefix();

// Removes /sys/fs/bpf/sltd<pid>-* and /run/netns/sltd<pid>* left by runs whose process is gone.
// Never touches another live run's resources or anything without the prefix.
void removeStaleResources();

// A pin directory /sys/fs/bpf/sltd<pid>-<name>, removed (with its pins) on destruction.
class PinDir {
 public:
  explicit PinDir(const std::string& name);
  ~PinDir();
  PinDir(const PinDir&) = delete;
  PinDir& operator=(const PinDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Moves the calling thread into a new, empty network namespace (only `lo`), so nothing the
// test attaches is visible outside it. Returns false (with errno) on failure.
bool enterPrivateNetns();

struct RunResult {
  int verdict = -1;         // TC_ACT_OK (0), TC_ACT_SHOT (2); -1 when the run failed
  uint32_t durationNs = 0;  // mean per run
  int error = 0;
};
// Runs `progFd` on `packet` (an Ethernet frame) `repeat` times; skb->ifindex is `lo`.
RunResult testRun(int progFd, const std::vector<uint8_t>& packet, int repeat = 1);

// The skb context of one run: `ifindex` the device the program sees (0: `lo`),
// `ingressIfindex` the device the packet came in on (0: sent by the node itself; anything else
// is a forwarded packet).
struct SkbContext {
  uint32_t ifindex = 0;
  uint32_t ingressIfindex = 0;
};
RunResult testRun(int progFd, const std::vector<uint8_t>& packet, const SkbContext& ctx);

}  // namespace sluice::e2e
