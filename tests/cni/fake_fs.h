// In-memory Fs for IPAM store tests: no root, no disk, and failures on demand.
#pragma once

#include <cerrno>
#include <map>
#include <set>
#include <string>

#include "cni/ipam/fs.h"

namespace sluice::cni::ipam::testing {

class FakeFs : public Fs {
 public:
  std::map<std::string, std::string> files;
  std::set<std::string> failWrites;  // paths whose create/replace fails with EIO
  int locks = 0;
  int lists = 0;  // directory scans: the allocator must not need them per ADD

  Status mkdirs(const std::string&) override { return Status::Ok(); }
  Status createExclusive(const std::string& path, const std::string& content) override {
    if (failWrites.count(path)) return makeError("injected EIO " + path, EIO);
    if (files.count(path)) return makeError("exists " + path, EEXIST);
    files[path] = content;
    return Status::Ok();
  }
  Status replace(const std::string& path, const std::string& content) override {
    if (failWrites.count(path)) return makeError("injected EIO " + path, EIO);
    files[path] = content;
    return Status::Ok();
  }
  Result<std::optional<std::string>> read(const std::string& path) override {
    auto it = files.find(path);
    if (it == files.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }
  Result<bool> exists(const std::string& path) override {
    if (files.count(path)) return true;
    // Directories exist implicitly.
    return path.ends_with("/attachments");
  }
  Status remove(const std::string& path) override {
    files.erase(path);
    return Status::Ok();
  }
  Result<std::vector<std::string>> list(const std::string& dir) override {
    ++lists;
    std::vector<std::string> out;
    std::string prefix = dir + "/";
    for (const auto& [p, _] : files) {
      if (p.rfind(prefix, 0) != 0) continue;
      std::string rest = p.substr(prefix.size());
      if (rest.find('/') == std::string::npos) out.push_back(rest);
    }
    return out;
  }
  Result<std::unique_ptr<FsLock>> lock(const std::string&) override {
    ++locks;
    return std::unique_ptr<FsLock>(std::make_unique<FsLock>());
  }
  // Address files in a network directory.
  size_t addressFiles(const std::string& dir) {
    size_t n = 0;
    for (const auto& [p, _] : files) {
      if (p.rfind(dir + "/", 0) != 0) continue;
      if (IpAddr::parse(p.substr(dir.size() + 1)).ok()) ++n;
    }
    return n;
  }
};

}  // namespace sluice::cni::ipam::testing
