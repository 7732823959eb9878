#include "cni/ipam/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/file_lock.h"
#include "common/file_util.h"
#include "common/unique_fd.h"

namespace sluice::cni::ipam {

namespace {

// An address or attachment record is one short line.
constexpr size_t kMaxRecordBytes = 64 * 1024;

Error sysError(const std::string& what, const std::string& path) {
  int err = errno;
  return makeError(what + " " + path + ": " + std::strerror(err), err);
}

Status writeAll(int fd, const std::string& content, const std::string& path) {
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sysError("write", path);
    off += static_cast<size_t>(n);
  }
  return Status::Ok();
}

class RealLock : public FsLock {
 public:
  explicit RealLock(FileLock l) : lock_(std::move(l)) {}

 private:
  FileLock lock_;
};

class RealFs : public Fs {
 public:
  Status mkdirs(const std::string& dir) override {
    std::string cur;
    size_t pos = 0;
    while (pos != std::string::npos) {
      pos = dir.find('/', pos + 1);
      cur = dir.substr(0, pos);
      if (cur.empty()) continue;
      if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) return sysError("mkdir", cur);
    }
    return Status::Ok();
  }

  Status createExclusive(const std::string& path, const std::string& content) override {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd) return sysError("create", path);
    auto st = writeAll(fd.get(), content, path);
    if (!st.ok()) {
      ::unlink(path.c_str());
      return st;
    }
    return Status::Ok();
  }

  Status replace(const std::string& path, const std::string& content) override {
    std::string tmp = path + ".tmp";
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) return sysError("create", tmp);
    SLUICE_RETURN_IF_ERROR(writeAll(fd.get(), content, tmp));
    fd.reset();
    if (::rename(tmp.c_str(), path.c_str()) != 0) return sysError("rename to", path);
    return Status::Ok();
  }

  Result<std::optional<std::string>> read(const std::string& path) override {
    // Records are a line each; a FIFO or device planted in the store must not hang ADD.
    auto text = readFile(path, kMaxRecordBytes);
    if (!text.ok()) {
      if (text.error().code == ENOENT) return std::optional<std::string>();
      return text.error();
    }
    return std::optional<std::string>(std::move(text).value());
  }

  Result<bool> exists(const std::string& path) override {
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0) return true;
    if (errno == ENOENT) return false;
    return sysError("stat", path);
  }

  Status remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return sysError("remove", path);
    return Status::Ok();
  }

  Result<std::vector<std::string>> list(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (!d) {
      if (errno == ENOENT) return std::vector<std::string>();
      return sysError("opendir", dir);
    }
    std::unique_ptr<DIR, int (*)(DIR*)> guard(d, ::closedir);
    std::vector<std::string> out;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") out.push_back(std::move(n));
    }
    return out;
  }

  Result<std::unique_ptr<FsLock>> lock(const std::string& path) override {
    auto l = FileLock::acquire(path);
    if (!l.ok()) return std::move(l).error();
    return std::unique_ptr<FsLock>(std::make_unique<RealLock>(std::move(l).value()));
  }
};

}  // namespace

std::unique_ptr<Fs> makeRealFs() { return std::make_unique<RealFs>(); }

}  // namespace sluice::cni::ipam
