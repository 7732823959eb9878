#include "policyd/daemon/state_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "common/ip.h"
#include "common/unique_fd.h"

namespace sluice::daemon {

namespace {

std::string errnoText(int err) { return std::strerror(err); }

std::string dirOf(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return makeError(errnoText(errno), errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

}  // namespace

Status writeFileAtomic(const std::string& path, std::string_view content, bool durable) {
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." +
                          std::to_string(counter.fetch_add(1));
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return makeError("write " + path + ": create " + tmp + ": " + errnoText(errno), errno);
  auto fail = [&](const std::string& what, int err) -> Status {
    ::unlink(tmp.c_str());
    return makeError("write " + path + ": " + what + ": " + errnoText(err), err);
  };
  if (auto st = writeAll(fd.get(), content); !st.ok()) {
    ::unlink(tmp.c_str());
    return st.error().wrap("write " + path);
  }
  if (durable && ::fsync(fd.get()) != 0) return fail("fsync", errno);
  if (::close(fd.release()) != 0) return fail("close", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("rename", errno);
  if (durable) {
    UniqueFd dir(::open(dirOf(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir) (void)::fsync(dir.get());
  }
  return Status::Ok();
}


Status removeFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return makeError("remove " + path + ": " + errnoText(errno), errno);
  }
  return Status::Ok();
}

Status ensureDirectory(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return Status::Ok();
  std::filesystem::create_directories(path, ec);
  if (ec) return makeError("create directory " + path + ": " + ec.message());
  ::chmod(path.c_str(), 0700);
  return Status::Ok();
}

Status writePodCidrs(const std::string& stateDir, const std::vector<std::string>& cidrs) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& c : cidrs) {
    auto p = Prefix::parse(c);
    if (!p.ok()) return p.error().wrap("--pod-cidr " + c);
    list.push_back(p->toString());
  }
  nlohmann::json doc = {{"podCIDRs", list}};
  return writeFileAtomic(stateDir + "/" + std::string(kPodCidrsFile), doc.dump() + "\n");
}

}  // namespace sluice::daemon
