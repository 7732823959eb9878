#include "common/netns.h"

#include <fcntl.h>
#include <sched.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace sluice {

Result<UniqueFd> openNetns(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return makeError("open netns " + path + ": " + std::strerror(errno), errno);
  return fd;
}

Result<NetnsGuard> NetnsGuard::enter(int nsFd) {
  UniqueFd original(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!original) return makeError(std::string("open current netns: ") + std::strerror(errno));
  if (::setns(nsFd, CLONE_NEWNET) != 0) {
    return makeError(std::string("setns: ") + std::strerror(errno), errno);
  }
  return NetnsGuard(std::move(original));
}

Result<NetnsGuard> NetnsGuard::enter(const std::string& path) {
  SLUICE_ASSIGN_OR_RETURN(UniqueFd fd, openNetns(path));
  auto g = enter(fd.get());
  if (!g.ok()) return std::move(g).error().wrap("enter netns " + path);
  return g;
}

NetnsGuard::~NetnsGuard() {
  // Failing to return leaves this thread in the wrong namespace; continuing would configure
  // the wrong host, so abort rather than carry on.
  if (original_ && ::setns(original_.get(), CLONE_NEWNET) != 0) std::abort();
}

}  // namespace sluice
