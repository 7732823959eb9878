// A directory of manifests (YAML/JSON Namespaces, Pods, NetworkPolicies) as the cluster source,
// reloaded on change.
//
// Watching: inotify on the directory and every non-hidden subdirectory. Any event starts a
// debounce window; the tree is rescanned once the directory has been quiet for `debounce` (or
// at most `maxDelay` after the first event, so a steady stream of writes cannot starve it).
// A rescan only re-reads files whose (inode, size, mtime, ctime) changed.
//
// Last good state, per file: a file that decodes cleanly replaces the objects it contributed.
// A file that now has errors (bad YAML, an invalid object, a half-written file) is reported
// (file, object, field) and keeps contributing the objects of its last clean version; a file
// that never decoded cleanly contributes the objects that were valid in it (what `sluicectl -f`
// sees). A deleted file drops its objects. When two files define the same object, the file that
// sorts first wins (as in model::loadPaths) and the other definition is reported.
//
// Files follow model::loadPaths: *.yaml, *.yml, *.json; names starting with '.' are skipped
// (editor swap files, a mounted ConfigMap's `..data` twin), but events on them still trigger a
// rescan, so a ConfigMap's atomic `..data` symlink swap is seen.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <sys/types.h>

#include "common/unique_fd.h"
#include "policyd/source/source.h"

namespace sluice::source {

struct DirSourceOptions {
  std::string root;
  std::chrono::milliseconds debounce{100};
  std::chrono::milliseconds maxDelay{1000};
  // While the directory is missing (deleted or not mounted yet), how often to look for it again.
  std::chrono::milliseconds missingRetry{1000};
};

class DirSource final : public Source {
 public:
  explicit DirSource(DirSourceOptions options);
  ~DirSource() override;
  DirSource(const DirSource&) = delete;
  DirSource& operator=(const DirSource&) = delete;

  Status start(Callback onSnapshot) override;
  void stop() override;
  std::string describe() const override;

 private:
  struct FileKey {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtimeNs = 0;
    int64_t ctimeNs = 0;
    bool operator==(const FileKey&) const = default;
  };
  struct FileState {
    FileKey key;
    model::Cluster objects;     // what this file contributes
    std::vector<Error> errors;  // problems of its current content
    bool everClean = false;
  };

  void run(std::stop_token stop);
  // Reads pending inotify events; true when any of them calls for a rescan.
  bool drainEvents();
  bool watchRoot();
  void watchDirectory(const std::string& path);
  Snapshot rescan(std::chrono::steady_clock::time_point eventSeen);
  void loadFile(const std::string& path, const FileKey& key, FileState& state);
  void deliver(Snapshot snapshot);

  DirSourceOptions options_;
  Callback callback_;
  UniqueFd inotify_;
  UniqueFd wake_;  // eventfd: stop()
  std::map<int, std::string> watches_;  // wd -> directory
  int rootWd_ = -1;
  std::map<std::string, FileState> files_;
  std::vector<std::string> lastMergeErrors_;
  uint64_t generation_ = 0;
  std::jthread thread_;
};

}  // namespace sluice::source
