#include "common/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>

#include <cerrno>
#include <cstring>

namespace sluice {

namespace {
Result<FileLock> lockWith(const std::string& path, int op, auto make) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return makeError("open lock file " + path + ": " + std::strerror(errno));
  while (::flock(fd.get(), op) != 0) {
    if (errno == EINTR) continue;
    return makeError("flock " + path + ": " + std::strerror(errno), errno);
  }
  return make(std::move(fd));
}
}  // namespace

Result<FileLock> FileLock::acquire(const std::string& path) {
  return lockWith(path, LOCK_EX, [](UniqueFd fd) { return FileLock(std::move(fd)); });
}

Result<FileLock> FileLock::tryAcquire(const std::string& path) {
  return lockWith(path, LOCK_EX | LOCK_NB, [](UniqueFd fd) { return FileLock(std::move(fd)); });
}

}  // namespace sluice
