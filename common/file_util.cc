#include "common/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/unique_fd.h"

namespace sluice {

namespace {

const char* fileKind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

}  // namespace

Result<std::string> readFile(const std::string& path, size_t maxBytes) {
  auto fail = [&](const std::string& why, int err) {
    return makeError(path + ": cannot read: " + why, err);
  };
  // O_NONBLOCK: opening a FIFO with no writer would otherwise block before fstat can refuse
  // it. It has no effect on the regular files we go on to read.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) return fail(std::strerror(errno), errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail(std::strerror(errno), errno);
  if (!S_ISREG(st.st_mode)) {
    return fail(std::string(fileKind(st.st_mode)) + ", not a regular file; refusing to read it",
                EINVAL);
  }
  auto tooLarge = [&] { return fail("larger than " + std::to_string(maxBytes) + " bytes", EFBIG); };
  if (st.st_size > 0 && static_cast<uint64_t>(st.st_size) > maxBytes) return tooLarge();
  std::string out;
  // One allocation for large manifest dumps instead of repeated doubling.
  if (st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    // The size can change under us (or be 0, as in /proc): the bound is on what we read.
    size_t want = std::min(sizeof buf, maxBytes - std::min(maxBytes, out.size()) + 1);
    ssize_t n = ::read(fd.get(), buf, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(std::strerror(errno), errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > maxBytes) return tooLarge();
  }
  return out;
}

}  // namespace sluice
