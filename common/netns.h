// Network namespace switching. setns(2) is per thread, so a NetnsGuard must be created and
// destroyed on the same thread; the CNI plugin is single-threaded for this reason.
#pragma once

#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace sluice {

// Opens a netns by path (/var/run/netns/x, /proc/PID/ns/net).
Result<UniqueFd> openNetns(const std::string& path);

// Enters a namespace for the guard's lifetime and returns to the original one on destruction.
class NetnsGuard {
 public:
  static Result<NetnsGuard> enter(const std::string& path);
  static Result<NetnsGuard> enter(int nsFd);
  NetnsGuard(NetnsGuard&& o) noexcept : original_(std::move(o.original_)) {}
  NetnsGuard& operator=(NetnsGuard&&) = delete;
  NetnsGuard(const NetnsGuard&) = delete;
  ~NetnsGuard();

 private:
  explicit NetnsGuard(UniqueFd original) : original_(std::move(original)) {}
  UniqueFd original_;
};

}  // namespace sluice
