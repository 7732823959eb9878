#include "policyd/daemon/flow_log.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

namespace sluice::daemon {

namespace {

std::string rfc3339(int64_t wallNs) {
  time_t secs = static_cast<time_t>(wallNs / 1000000000LL);
  long nanos = static_cast<long>(wallNs % 1000000000LL);
  tm t{};
  ::gmtime_r(&secs, &t);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  std::snprintf(buf + n, sizeof buf - n, ".%09ldZ", nanos);
  return buf;
}

}  // namespace

Result<std::unique_ptr<FlowLog>> FlowLog::open(const std::string& path) {
  if (path == "-") return std::unique_ptr<FlowLog>(new FlowLog(stdout, false));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return makeError("flow log " + path + ": " + std::strerror(errno), errno);
  std::FILE* f = ::fdopen(fd, "a");
  if (f == nullptr) {
    int err = errno;
    ::close(fd);
    return makeError("flow log " + path + ": " + std::strerror(err), err);
  }
  return std::unique_ptr<FlowLog>(new FlowLog(f, true));
}

FlowLog::~FlowLog() {
  if (owned_) {
    std::fclose(file_);
  } else {
    std::fflush(file_);
  }
}

void FlowLog::write(std::string_view line) {
  std::lock_guard lock(mu_);
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fputc('\n', file_);
  std::fflush(file_);
}

std::string flowLogLine(const datapath::FlowEvent& e, const std::string& pod) {
  nlohmann::json j = {
      {"time", rfc3339(e.wallNs)},
      {"endpoint", e.endpoint},
      {"pod", pod},
      {"ifindex", e.ifindex},
      {"direction", e.direction == compiler::Direction::Ingress ? "ingress" : "egress"},
      {"src", e.src.toString()},
      {"dst", e.dst.toString()},
      {"srcPort", e.srcPort},
      {"dstPort", e.dstPort},
      {"protocol", e.protocol},
      {"peerClass", e.peerClass},
      {"verdict", e.verdict == datapath::FlowVerdict::Denied ? "denied" : "allowed"},
      {"reason", e.reason},
  };
  return j.dump();
}

}  // namespace sluice::daemon
