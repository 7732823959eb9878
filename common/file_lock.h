// Exclusive flock(2) held for the object's lifetime. Used by IPAM (concurrent ADDs) and the
// daemon's state directory.
#pragma once

#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace sluice {

class FileLock {
 public:
  // Opens (creating) `path` and blocks until the exclusive lock is held.
  static Result<FileLock> acquire(const std::string& path);
  // Like acquire but fails immediately with EWOULDBLOCK semantics when held elsewhere.
  static Result<FileLock> tryAcquire(const std::string& path);

  FileLock(FileLock&&) = default;
  FileLock& operator=(FileLock&&) = default;
  ~FileLock() = default;  // closing the fd releases the lock

 private:
  explicit FileLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace sluice
