#include "e2e/datapath/test_support.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <regex>

namespace sluice::e2e {

namespace fs = std::filesystem;

bool isRoot() { return ::geteuid() == 0; }

// "sltd" (sluice test, datapath): other suites use "slt<pid>", so the cleanup below can never
// mistake their resources for ours.
std::string runPrefix() { return "sltd" + std::to_string(::getpid()); }

void removeStaleResources() {
  const std::regex ours(R"(sltd(\d+)(-.*|[a-z].*)?)");
  auto stale = [&](const std::string& name) {
    std::smatch m;
    if (!std::regex_match(name, m, ours)) return false;
    const pid_t pid = static_cast<pid_t>(std::stol(m[1].str()));
    return pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH;
  };
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/sys/fs/bpf", ec)) {
    if (stale(e.path().filename().string())) fs::remove_all(e.path(), ec);
  }
  for (const auto& e : fs::directory_iterator("/run/netns", ec)) {
    if (!stale(e.path().filename().string())) continue;
    ::umount2(e.path().c_str(), MNT_DETACH);
    fs::remove(e.path(), ec);
  }
}

PinDir::PinDir(const std::string& name) : path_("/sys/fs/bpf/" + runPrefix() + "-" + name) {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

PinDir::~PinDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

bool enterPrivateNetns() { return ::unshare(CLONE_NEWNET) == 0; }

RunResult testRun(int progFd, const std::vector<uint8_t>& packet, int repeat) {
  std::vector<uint8_t> out(packet.size() + 256);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = packet.data(), .data_out = out.data(),
              .data_size_in = static_cast<uint32_t>(packet.size()),
              .data_size_out = static_cast<uint32_t>(out.size()), .repeat = repeat);
  RunResult r;
  if (int err = bpf_prog_test_run_opts(progFd, &opts); err) {
    r.error = err < 0 ? -err : err;
    return r;
  }
  r.verdict = static_cast<int>(opts.retval);
  r.durationNs = opts.duration;
  return r;
}

RunResult testRun(int progFd, const std::vector<uint8_t>& packet, const SkbContext& ctx) {
  std::vector<uint8_t> out(packet.size() + 256);
  __sk_buff skb{};
  skb.ifindex = ctx.ifindex;
  skb.ingress_ifindex = ctx.ingressIfindex;
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = packet.data(), .data_out = out.data(),
              .data_size_in = static_cast<uint32_t>(packet.size()),
              .data_size_out = static_cast<uint32_t>(out.size()), .ctx_in = &skb,
              .ctx_size_in = sizeof(skb), .repeat = 1);
  RunResult r;
  if (int err = bpf_prog_test_run_opts(progFd, &opts); err) {
    r.error = err < 0 ? -err : err;
    return r;
  }
  r.verdict = static_cast<int>(opts.retval);
  r.durationNs = opts.duration;
  return r;
}

}  // namespace sluice::e2e
