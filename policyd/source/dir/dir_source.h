// A directory of manifests (YAML/JSON Namespaces, Pods, NetworkPolicies) as the cluster source,
// reloaded on change.
//
// Watching: inotify on the directory and every non-hidden subdirectory. A finished write
// (IN_CLOSE_WRITE), a rename into or out of a directory, a delete or a new directory is acted on
// at once: no fixed debounce. Events that arrive while a rescan runs are taken together by the
// next one. A bare IN_MODIFY or IN_CREATE (a writer still writing, or one that never closes)
// leads to a rescan only if nothing else does within `maxDelay`. A rescan only re-reads files
// whose (inode, size, mtime, ctime) changed.
//
// Delivery (source.h): per-object upserts and deletes. A re-read file's objects are diffed
// against its previous objects; only keys whose winning definition may have changed are handed
// on (the daemon's store drops upserts that change nothing).
//
// Last good state, per file: a file that decodes cleanly replaces the objects it contributed.
// A file that now has errors (bad YAML, an invalid object, a half-written file) is reported
// (file, object, field) and keeps contributing the objects of its last clean version; a file
// that never decoded cleanly contributes the objects that were valid in it (what `sluicectl -f`
// sees). A deleted file drops its objects. When two files define the same object, the file that
// sorts first wins (as in model::loadPaths) and the other definition is reported.
//
// Last good state across restarts (`statePath`): the text of every file's last clean version is
// persisted there (atomically, through `writeState`) whenever that set changes, and read back at
// start. A file that is broken when the daemon starts contributes the objects of its persisted
// last good version, so a restart enforces what was enforced before. A file deleted while the
// daemon was down is gone (its persisted version is not used, and is dropped from the state).
// A persisted entry that no longer decodes cleanly, or a state file that is corrupt (its
// checksum, counts or lengths do not match), is ignored and logged; the source then behaves as
// without a state file.
//
// Files follow model::loadPaths: *.yaml, *.yml, *.json; names starting with '.' are skipped
// (editor swap files, a mounted ConfigMap's `..data` twin), but events on them still trigger a
// rescan, so a ConfigMap's atomic `..data` symlink swap is seen.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "policyd/source/source.h"

namespace sluice::source {

struct DirSourceOptions {
  std::string root;
  // Quiet period after an event before the tree is read (0: read at once). Kept for callers that
  // want to batch bursts of writes; the daemon's default is 0.
  std::chrono::milliseconds debounce{0};
  // An event that alone does not say a write finished (IN_MODIFY, IN_CREATE of a file) is acted
  // on after this long; so is a steady stream of events when `debounce` is set.
  std::chrono::milliseconds maxDelay{1000};
  // While the directory is missing (deleted or not mounted yet), how often to look for it again.
  std::chrono::milliseconds missingRetry{1000};
  // Where the last good versions persist (empty: nowhere), and how to write that file atomically
  // (the daemon passes its state-file writer).
  std::string statePath;
  std::function<Status(const std::string& path, std::string_view content)> writeState;
};

// The persisted last good versions: path -> text. Exposed for tests.
std::string encodeSourceState(const std::map<std::string, std::string>& files);
Result<std::map<std::string, std::string>> decodeSourceState(std::string_view text);

class DirSource final : public Source {
 public:
  explicit DirSource(DirSourceOptions options);
  ~DirSource() override;
  DirSource(const DirSource&) = delete;
  DirSource& operator=(const DirSource&) = delete;

  Status start(Callback onUpdate) override;
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
  // One file's objects by key.
  struct Objects {
    std::map<std::string, model::Namespace> namespaces;
    std::map<std::string, model::Pod> pods;
    std::map<std::string, model::NetworkPolicy> policies;
    size_t size() const { return namespaces.size() + pods.size() + policies.size(); }
  };
  // Keys whose winning definition may have changed in a rescan.
  struct Touched {
    std::set<std::string> namespaces, pods, policies;
  };
  // Per kind, key -> the files defining it, sorted (the first wins).
  using Owners = std::map<std::string, std::vector<std::string>>;
  struct FileState {
    FileKey key;
    Objects objects;            // what this file contributes
    std::vector<Error> errors;  // problems of its current content
    bool everClean = false;
    std::string goodText;  // the text of its last clean version (what is persisted)
  };

  void run(std::stop_token stop);
  // Reads pending inotify events. `now`: one says a change is complete (rescan at once);
  // `later`: one may be the start of a change (rescan after maxDelay unless `now` comes).
  void drainEvents(bool& now, bool& later);
  bool watchRoot();
  void watchDirectory(const std::string& path);
  Update rescan(std::chrono::steady_clock::time_point eventSeen);
  // Re-reads a file; returns its new objects when they replace the ones it contributed.
  std::optional<Objects> loadFile(const std::string& path, const FileKey& key, FileState& state);
  // Replaces what `path` contributes (empty: the file is gone), noting the keys touched.
  void replaceObjects(const std::string& path, FileState& state, Objects&& next, Touched& touched);
  void deliver(Update update);
  void loadState();
  void saveState();

  DirSourceOptions options_;
  Callback callback_;
  UniqueFd inotify_;
  UniqueFd wake_;                       // eventfd: stop()
  std::map<int, std::string> watches_;  // wd -> directory
  int rootWd_ = -1;
  std::map<std::string, FileState> files_;
  Owners namespaceOwners_, podOwners_, policyOwners_;
  std::vector<std::string> lastMergeErrors_;
  // Last good versions read from statePath at start, for files not seen yet in this run; cleared
  // once the tree has been listed (a file missing then was deleted while the daemon was down).
  std::map<std::string, std::string> persisted_;
  std::string lastSaved_;
  uint64_t generation_ = 0;
  std::jthread thread_;
};

}  // namespace sluice::source
