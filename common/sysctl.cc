#include "common/sysctl.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"

namespace sluice::sysctl {

namespace {
std::string pathOf(const std::string& key) {
  std::string rel = key;
  if (rel.find('/') == std::string::npos) std::replace(rel.begin(), rel.end(), '.', '/');
  return "/proc/sys/" + rel;
}
}  // namespace

Status write(const std::string& key, const std::string& value) {
  std::string path = pathOf(key);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return makeError("sysctl " + key + ": " + std::strerror(errno), errno);
  ssize_t n = ::write(fd.get(), value.data(), value.size());
  if (n != static_cast<ssize_t>(value.size())) {
    return makeError("sysctl " + key + "=" + value + ": " + std::strerror(errno), errno);
  }
  return Status::Ok();
}

Result<std::string> read(const std::string& key) {
  std::string path = pathOf(key);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return makeError("sysctl " + key + ": " + std::strerror(errno), errno);
  char buf[256];
  ssize_t n = ::read(fd.get(), buf, sizeof(buf));
  if (n < 0) return makeError("sysctl " + key + ": " + std::strerror(errno), errno);
  std::string v(buf, static_cast<size_t>(n));
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
  return v;
}

}  // namespace sluice::sysctl
