#include "policyd/source/dir/dir_source.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <set>
#include <utility>

#include "common/file_util.h"
#include "policyd/model/decode.h"
#include "policyd/source/cluster_store.h"

namespace sluice::source {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint32_t kDirMask = IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM |
                              IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;
// A manifest larger than this is rejected rather than read (a runaway file must not take the
// daemon's memory with it).
constexpr off_t kMaxFileBytes = 64 << 20;

int64_t wallNowNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

int64_t toNs(const timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

std::string errnoText(int err) { return std::strerror(err); }

size_t objectCount(const model::Cluster& c) {
  return c.namespaces.size() + c.pods.size() + c.policies.size();
}

// Events after which a file's content (or the tree) is complete: act at once. IN_MODIFY and
// IN_CREATE of a file come while a writer is still writing; its IN_CLOSE_WRITE follows.
constexpr uint32_t kCompleteMask = IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE |
                                   IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF;

template <class T>
void diffInto(std::map<std::string, T>& before, std::map<std::string, T>& after,
              const std::string& path, std::map<std::string, std::vector<std::string>>& owners,
              std::set<std::string>& touched, bool (*same)(const T&, const T&)) {
  for (const auto& [key, obj] : before) {
    if (after.contains(key)) continue;
    touched.insert(key);
    auto o = owners.find(key);
    if (o == owners.end()) continue;
    std::erase(o->second, path);
    if (o->second.empty()) owners.erase(o);
  }
  for (const auto& [key, obj] : after) {
    auto old = before.find(key);
    if (old == before.end()) {
      auto& files = owners[key];
      files.insert(std::lower_bound(files.begin(), files.end(), path), path);
      touched.insert(key);
    } else if (!same(old->second, obj)) {
      touched.insert(key);
    }
  }
}

template <class T>
std::map<std::string, T> byKey(std::vector<T>&& objects) {
  std::map<std::string, T> out;
  for (auto& o : objects) {
    std::string key;
    if constexpr (std::is_same_v<T, model::Namespace>) {
      key = o.name;
    } else {
      key = o.key();
    }
    out.emplace(std::move(key), std::move(o));  // a file holds each key once (the decoder)
  }
  return out;
}

// State file format: a header line, then per file "<path bytes> <text bytes>\n<path><text>\n".
// The header carries the entry count and an FNV-1a hash of everything after it, so a truncated,
// torn or otherwise damaged file is detected rather than half-used.
constexpr std::string_view kStateMagic = "sluice-dir-source-state 1";
constexpr size_t kMaxStateBytes = size_t{1} << 30;

uint64_t fnv1a(std::string_view data) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

bool parseSize(std::string_view text, size_t& out) {
  if (text.empty() || text.size() > 19) return false;
  size_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<size_t>(c - '0');
  }
  out = v;
  return true;
}

}  // namespace

std::string encodeSourceState(const std::map<std::string, std::string>& files) {
  std::string body;
  for (const auto& [path, text] : files) {
    body += std::to_string(path.size()) + " " + std::to_string(text.size()) + "\n";
    body += path;
    body += text;
    body += "\n";
  }
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(fnv1a(body)));
  return std::string(kStateMagic) + " " + std::to_string(files.size()) + " " + hash + "\n" + body;
}

Result<std::map<std::string, std::string>> decodeSourceState(std::string_view text) {
  auto eol = text.find('\n');
  if (eol == std::string_view::npos) return makeError("no header line");
  std::string_view header = text.substr(0, eol);
  std::string_view body = text.substr(eol + 1);
  if (!header.starts_with(kStateMagic) || header.size() < kStateMagic.size() + 1 ||
      header[kStateMagic.size()] != ' ') {
    return makeError("header: not \"" + std::string(kStateMagic) + " ...\"");
  }
  std::string_view rest = header.substr(kStateMagic.size() + 1);
  auto sp = rest.find(' ');
  size_t count = 0;
  if (sp == std::string_view::npos || !parseSize(rest.substr(0, sp), count)) {
    return makeError("header: bad entry count");
  }
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(fnv1a(body)));
  if (rest.substr(sp + 1) != hash) return makeError("checksum mismatch (damaged or truncated)");
  std::map<std::string, std::string> out;
  for (size_t i = 0; i < count; ++i) {
    const std::string where = "entry " + std::to_string(i);
    auto nl = body.find('\n');
    if (nl == std::string_view::npos) return makeError(where + ": truncated");
    std::string_view sizes = body.substr(0, nl);
    auto mid = sizes.find(' ');
    size_t pathLen = 0, textLen = 0;
    if (mid == std::string_view::npos || !parseSize(sizes.substr(0, mid), pathLen) ||
        !parseSize(sizes.substr(mid + 1), textLen)) {
      return makeError(where + ": bad lengths");
    }
    body.remove_prefix(nl + 1);
    if (pathLen == 0 || pathLen > body.size() || textLen > body.size() - pathLen ||
        body.size() - pathLen - textLen < 1 || body[pathLen + textLen] != '\n') {
      return makeError(where + ": lengths do not match the data");
    }
    out.emplace(std::string(body.substr(0, pathLen)), std::string(body.substr(pathLen, textLen)));
    body.remove_prefix(pathLen + textLen + 1);
  }
  if (!body.empty()) return makeError("trailing data after " + std::to_string(count) + " entries");
  return out;
}

DirSource::DirSource(DirSourceOptions options) : options_(std::move(options)) {}

DirSource::~DirSource() { stop(); }

std::string DirSource::describe() const { return "dir:" + options_.root; }

Status DirSource::start(Callback onUpdate) {
  if (thread_.joinable()) return makeError(describe() + ": already started");
  callback_ = std::move(onUpdate);
  std::error_code ec;
  if (!fs::is_directory(options_.root, ec)) {
    return makeError(describe() + ": not a directory" + (ec ? ": " + ec.message() : ""));
  }
  inotify_.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify_) return makeError(describe() + ": inotify_init1: " + errnoText(errno), errno);
  wake_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_) return makeError(describe() + ": eventfd: " + errnoText(errno), errno);
  loadState();
  // Watch first, then read: a change made while we read is seen as an event afterwards.
  if (!watchRoot()) {
    return makeError(describe() + ": inotify_add_watch: " + errnoText(errno), errno);
  }
  Update initial = rescan(Clock::now());
  initial.initialComplete = true;
  deliver(std::move(initial));
  thread_ = std::jthread([this](std::stop_token st) { run(std::move(st)); });
  return Status::Ok();
}

void DirSource::stop() {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  thread_.join();
}

bool DirSource::watchRoot() {
  int wd = ::inotify_add_watch(inotify_.get(), options_.root.c_str(), kDirMask);
  if (wd < 0) return false;
  rootWd_ = wd;
  watches_[wd] = options_.root;
  return true;
}

void DirSource::watchDirectory(const std::string& path) {
  int wd = ::inotify_add_watch(inotify_.get(), path.c_str(), kDirMask);
  if (wd < 0) {
    spdlog::warn("manifest watch dir={} error=\"{}\"", path, errnoText(errno));
    return;
  }
  watches_[wd] = path;
}

void DirSource::drainEvents(bool& now, bool& later) {
  alignas(inotify_event) char buf[16384];
  for (;;) {
    ssize_t n = ::read(inotify_.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) spdlog::warn("manifest watch read error=\"{}\"", errnoText(errno));
      break;
    }
    if (n == 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      p += sizeof(inotify_event) + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {
        spdlog::warn("manifest watch queue overflow dir={}; rescanning", options_.root);
        now = true;
        continue;
      }
      if (ev->mask & IN_IGNORED) {
        watches_.erase(ev->wd);
        if (ev->wd == rootWd_) {
          rootWd_ = -1;
          spdlog::warn("manifest dir={} removed; keeping the last good state until it is back",
                       options_.root);
        }
        now = true;
        continue;
      }
      // Writes to files the tree does not read (an atomic writer's "x.yaml.tmp.123", an editor's
      // swap file) change nothing; reading at their close would read the tree before the
      // writer's rename. Renames and deletes of any name still count (a ConfigMap swaps its
      // "..data" symlink by rename).
      const bool contentEvent = (ev->mask & (IN_CLOSE_WRITE | IN_MODIFY | IN_CREATE | IN_ATTRIB)) &&
                                !(ev->mask & (IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE));
      if (contentEvent && !(ev->mask & IN_ISDIR) && ev->len > 0) {
        const std::string name(ev->name);
        if (name.starts_with(".") || !model::isManifestFile(fs::path(name))) continue;
      }
      // A new directory must be watched before files appear in it.
      if ((ev->mask & kCompleteMask) || ((ev->mask & IN_CREATE) && (ev->mask & IN_ISDIR))) {
        now = true;
      } else {
        later = true;
      }
    }
  }
}

void DirSource::run(std::stop_token stop) {
  // pendingNow: a complete change is waiting (read after `debounce` of quiet, 0 by default);
  // pendingLater: only events that may be the start of one (read after maxDelay).
  bool pendingNow = false, pendingLater = false;
  Clock::time_point first{}, last{};
  Clock::time_point nextRootTry = Clock::now() + options_.missingRetry;
  auto due = [&] {
    Clock::time_point d = first + options_.maxDelay;
    if (pendingNow) d = std::min(d, last + options_.debounce);
    return d;
  };
  while (!stop.stop_requested()) {
    int timeoutMs = -1;
    auto now = Clock::now();
    if (pendingNow || pendingLater) {
      timeoutMs = static_cast<int>(
          std::max<int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(due() - now).count()));
    }
    if (rootWd_ < 0) {
      int retry = static_cast<int>(std::max<int64_t>(
          0, std::chrono::ceil<std::chrono::milliseconds>(nextRootTry - now).count()));
      timeoutMs = timeoutMs < 0 ? retry : std::min(timeoutMs, retry);
    }
    pollfd fds[2] = {{inotify_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    int r = ::poll(fds, 2, timeoutMs);
    if (r < 0 && errno != EINTR) {
      spdlog::error("manifest watch poll error=\"{}\"", errnoText(errno));
      return;
    }
    if (stop.stop_requested() || (r > 0 && (fds[1].revents & POLLIN))) return;
    now = Clock::now();
    if (r > 0 && (fds[0].revents & POLLIN)) {
      bool complete = false, partial = false;
      drainEvents(complete, partial);
      if ((complete || partial) && !pendingNow && !pendingLater) first = now;
      if (complete) {
        pendingNow = true;
        last = now;
      }
      if (partial) pendingLater = true;
    }
    if (rootWd_ < 0 && now >= nextRootTry) {
      nextRootTry = now + options_.missingRetry;
      std::error_code ec;
      if (fs::is_directory(options_.root, ec) && watchRoot()) {
        spdlog::info("manifest dir={} is back", options_.root);
        if (!pendingNow && !pendingLater) first = now;
        pendingNow = true;
        last = now - options_.debounce;  // nothing to wait for
      }
    }
    if ((pendingNow || pendingLater) && now >= due()) {
      pendingNow = pendingLater = false;
      try {
        deliver(rescan(first));
      } catch (const std::exception& e) {
        spdlog::error("manifest dir={} rescan failed error=\"{}\"", options_.root, e.what());
      }
    }
  }
}

void DirSource::loadState() {
  if (options_.statePath.empty()) return;
  struct stat sb {};
  if (::stat(options_.statePath.c_str(), &sb) != 0) {
    if (errno != ENOENT) {
      spdlog::error("manifest state file={} unreadable error=\"{}\"; ignoring it",
                    options_.statePath, errnoText(errno));
    }
    return;
  }
  if (!S_ISREG(sb.st_mode) || static_cast<size_t>(sb.st_size) > kMaxStateBytes) {
    spdlog::error("manifest state file={} not a regular file of at most {} bytes; ignoring it",
                  options_.statePath, kMaxStateBytes);
    return;
  }
  auto text = readFile(options_.statePath);
  if (!text.ok()) {
    spdlog::error("manifest state error=\"{}\"; ignoring it", text.error().message);
    return;
  }
  auto files = decodeSourceState(*text);
  if (!files.ok()) {
    spdlog::error(
        "manifest state file={} corrupt error=\"{}\"; ignoring it (no last good "
        "versions from before this start)",
        options_.statePath, files.error().message);
    return;
  }
  persisted_ = std::move(*files);
  lastSaved_ = std::move(*text);
  spdlog::info("manifest state file={} last_good_files={}", options_.statePath, persisted_.size());
}

void DirSource::saveState() {
  if (options_.statePath.empty() || !options_.writeState) return;
  std::map<std::string, std::string> good;
  for (const auto& [path, st] : files_) {
    if (st.everClean) good.emplace(path, st.goodText);
  }
  std::string text = encodeSourceState(good);
  if (text == lastSaved_) return;
  if (auto st = options_.writeState(options_.statePath, text); !st.ok()) {
    // The running daemon still holds every last good version; only a restart would lose them.
    spdlog::error("manifest state file={} write error=\"{}\"", options_.statePath,
                  st.error().message);
    return;
  }
  lastSaved_ = std::move(text);
}

void DirSource::deliver(Update update) {
  try {
    callback_(std::move(update));
  } catch (const std::exception& e) {
    spdlog::error("manifest update consumer threw error=\"{}\"", e.what());
  } catch (...) {
    spdlog::error("manifest update consumer threw");
  }
}

std::optional<DirSource::Objects> DirSource::loadFile(const std::string& path, const FileKey& key,
                                                      FileState& st) {
  auto objectsOf = [](model::Cluster&& c) {
    Objects o;
    o.namespaces = byKey(std::move(c.namespaces));
    o.pods = byKey(std::move(c.pods));
    o.policies = byKey(std::move(c.policies));
    return o;
  };
  st.key = key;
  model::Decoded decoded;
  Result<std::string> text = std::string();
  if (key.size > kMaxFileBytes) {
    decoded.errors.push_back(
        makeError(path + ": larger than " + std::to_string(kMaxFileBytes) + " bytes"));
  } else if (text = readFile(path); !text.ok()) {
    decoded.errors.push_back(text.error());
  } else {
    decoded = model::decodeText(*text, path);
  }
  for (const auto& note : decoded.notes) spdlog::info("manifest file={} note=\"{}\"", path, note);
  if (decoded.errors.empty()) {
    st.errors.clear();
    st.everClean = true;
    st.goodText = std::move(*text);
    spdlog::info("manifest file={} loaded namespaces={} pods={} policies={}", path,
                 decoded.cluster.namespaces.size(), decoded.cluster.pods.size(),
                 decoded.cluster.policies.size());
    return objectsOf(std::move(decoded.cluster));
  }
  st.errors = std::move(decoded.errors);
  for (const auto& e : st.errors) {
    spdlog::warn("manifest file={} invalid error=\"{}\"", path, e.message);
  }
  if (!st.everClean) {
    // First seen in this run: its last good version from before the restart, if any.
    if (auto p = persisted_.find(path); p != persisted_.end()) {
      model::Decoded old = model::decodeText(p->second, path);
      if (old.errors.empty()) {
        st.everClean = true;
        st.goodText = std::move(p->second);
        spdlog::warn(
            "manifest file={} using its last good version from before the restart "
            "objects={}",
            path, objectCount(old.cluster));
        persisted_.erase(p);
        return objectsOf(std::move(old.cluster));
      }
      spdlog::error(
          "manifest file={} persisted last good version does not decode error=\"{}\"; "
          "ignoring it",
          path, old.errors.front().message);
      persisted_.erase(p);
    }
  }
  if (st.everClean) {
    spdlog::warn("manifest file={} keeping its last good version objects={}", path,
                 st.objects.size());
    return std::nullopt;
  }
  spdlog::warn("manifest file={} never decoded cleanly; using its valid objects objects={}", path,
               objectCount(decoded.cluster));
  return objectsOf(std::move(decoded.cluster));
}

void DirSource::replaceObjects(const std::string& path, FileState& st, Objects&& next,
                               Touched& touched) {
  diffInto(st.objects.namespaces, next.namespaces, path, namespaceOwners_, touched.namespaces,
           &sameNamespace);
  diffInto(st.objects.pods, next.pods, path, podOwners_, touched.pods, &samePod);
  diffInto(st.objects.policies, next.policies, path, policyOwners_, touched.policies, &samePolicy);
  st.objects = std::move(next);
}

Update DirSource::rescan(Clock::time_point eventSeen) {
  Update update;
  update.eventSeen = eventSeen;
  update.readWallNs = wallNowNs();
  update.generation = ++generation_;
  std::vector<Error> errors;
  Touched touched;

  // List the tree; (re)watch every non-hidden directory (new ones appear between rescans).
  std::vector<std::string> found;
  std::error_code ec;
  bool listed = false;
  if (fs::is_directory(options_.root, ec)) {
    std::set<std::string> watched;
    for (const auto& [wd, dir] : watches_) watched.insert(dir);
    fs::recursive_directory_iterator it(options_.root, fs::directory_options::none, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      const fs::path& p = it->path();
      std::error_code dec;
      bool isDir = it->is_directory(dec);
      if (p.filename().string().starts_with(".")) {
        if (isDir) it.disable_recursion_pending();
        continue;
      }
      if (isDir) {
        if (!it->is_symlink(dec) && !watched.contains(p.string())) watchDirectory(p.string());
        continue;
      }
      if (it->is_regular_file(dec) && model::isManifestFile(p)) found.push_back(p.string());
    }
    listed = !ec;
  }
  if (!listed) {
    // Never mistake "cannot list" for "every file was deleted".
    errors.push_back(makeError(options_.root + ": cannot list" +
                               (ec ? ": " + ec.message() : std::string(": not a directory")) +
                               "; keeping the last good state"));
    for (const auto& f : files_) found.push_back(f.first);
  } else {
    std::sort(found.begin(), found.end());
    std::set<std::string> present(found.begin(), found.end());
    for (auto it = files_.begin(); it != files_.end();) {
      if (present.contains(it->first)) {
        ++it;
        continue;
      }
      spdlog::info("manifest file={} removed objects={}", it->first, it->second.objects.size());
      replaceObjects(it->first, it->second, Objects(), touched);
      it = files_.erase(it);
    }
    for (const auto& path : found) {
      struct stat sb {};
      FileKey key;
      if (::stat(path.c_str(), &sb) == 0) {
        key = FileKey{sb.st_dev, sb.st_ino, sb.st_size, toNs(sb.st_mtim), toNs(sb.st_ctim)};
      }
      auto fit = files_.find(path);
      if (fit != files_.end() && fit->second.key == key) continue;
      FileState& st = files_[path];
      // Nothing back: the file keeps contributing its last good objects.
      if (auto next = loadFile(path, key, st)) replaceObjects(path, st, std::move(*next), touched);
    }
    if (!persisted_.empty()) {
      for (const auto& [path, text] : persisted_) {
        if (!present.contains(path)) {
          spdlog::info(
              "manifest file={} deleted while the daemon was down; its last good "
              "version goes",
              path);
        }
      }
      persisted_.clear();
    }
    saveState();
  }

  // Each touched key: the definition of the first file (in path order) that has it, or none.
  Changes& c = update.changes;
  for (const auto& key : touched.namespaces) {
    auto o = namespaceOwners_.find(key);
    if (o == namespaceOwners_.end()) {
      c.namespaceDeletes.push_back(key);
    } else {
      c.namespaceUpserts.push_back(files_.at(o->second.front()).objects.namespaces.at(key));
    }
  }
  for (const auto& key : touched.pods) {
    auto o = podOwners_.find(key);
    if (o == podOwners_.end()) {
      c.podDeletes.push_back(key);
    } else {
      c.podUpserts.push_back(files_.at(o->second.front()).objects.pods.at(key));
    }
  }
  for (const auto& key : touched.policies) {
    auto o = policyOwners_.find(key);
    if (o == policyOwners_.end()) {
      c.policyDeletes.push_back(key);
    } else {
      c.policyUpserts.push_back(files_.at(o->second.front()).objects.policies.at(key));
    }
  }

  for (const auto& path : found) {
    auto fit = files_.find(path);
    if (fit == files_.end()) continue;
    errors.insert(errors.end(), fit->second.errors.begin(), fit->second.errors.end());
  }
  // Cross-file duplicates (the first file in path order wins): report each once, not on every
  // rescan.
  std::vector<Error> duplicates;
  auto reportDuplicates = [&](const Owners& owners, const char* kind) {
    for (const auto& [key, files] : owners) {
      for (size_t i = 1; i < files.size(); ++i) {
        duplicates.push_back(makeError(files[i] + ": " + kind + " " + key +
                                       ": duplicate: already defined in " + files[0] +
                                       "; keeping the first definition"));
      }
    }
  };
  reportDuplicates(namespaceOwners_, "Namespace");
  reportDuplicates(podOwners_, "Pod");
  reportDuplicates(policyOwners_, "NetworkPolicy");
  std::vector<std::string> mergeErrors;
  for (const auto& e : duplicates) {
    mergeErrors.push_back(e.message);
    if (std::find(lastMergeErrors_.begin(), lastMergeErrors_.end(), e.message) ==
        lastMergeErrors_.end()) {
      spdlog::warn("manifest invalid error=\"{}\"", e.message);
    }
  }
  lastMergeErrors_ = std::move(mergeErrors);
  errors.insert(errors.end(), duplicates.begin(), duplicates.end());
  update.errors = std::move(errors);
  return update;
}

}  // namespace sluice::source
