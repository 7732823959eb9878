// The filesystem operations the IPAM store needs, behind an interface so store and allocator
// tests run against an in-memory fake (tests/cni/fake_fs.h) without root or a real disk.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace sluice::cni::ipam {

// Held for as long as the object lives.
class FsLock {
 public:
  virtual ~FsLock() = default;
};

class Fs {
 public:
  virtual ~Fs() = default;
  virtual Status mkdirs(const std::string& dir) = 0;
  // Creates `path` holding `content`; fails with code EEXIST when it already exists. This is
  // the reservation primitive: only one process can win an address.
  virtual Status createExclusive(const std::string& path, const std::string& content) = 0;
  // Replaces `path` so readers never see a half-written file.
  virtual Status replace(const std::string& path, const std::string& content) = 0;
  // nullopt when the file does not exist.
  virtual Result<std::optional<std::string>> read(const std::string& path) = 0;
  virtual Result<bool> exists(const std::string& path) = 0;
  virtual Status remove(const std::string& path) = 0;  // a missing file is not an error
  virtual Result<std::vector<std::string>> list(const std::string& dir) = 0;  // entry names
  // Exclusive inter-process lock (flock on the real filesystem).
  virtual Result<std::unique_ptr<FsLock>> lock(const std::string& path) = 0;
};

// POSIX implementation.
std::unique_ptr<Fs> makeRealFs();

}  // namespace sluice::cni::ipam
