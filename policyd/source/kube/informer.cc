#include "policyd/source/kube/informer.h"

#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>

namespace sluice::source::kube {

namespace {

using Clock = std::chrono::steady_clock;

std::string percentEncode(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string excerpt(std::string_view s) {
  constexpr size_t kMax = 80;
  std::string out(s.substr(0, kMax));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  return s.size() > kMax ? out + "..." : out;
}

std::string statusMessage(const nlohmann::json& status) {
  auto m = status.find("message");
  return m != status.end() && m->is_string() ? m->get<std::string>() : status.dump();
}

std::string resourceVersionOf(const nlohmann::json& obj) {
  auto md = obj.find("metadata");
  if (md == obj.end() || !md->is_object()) return "";
  auto rv = md->find("resourceVersion");
  return rv != md->end() && rv->is_string() ? rv->get<std::string>() : "";
}

}  // namespace

Informer::Informer(Kind kind, std::unique_ptr<HttpClient> client, InformerOptions options,
                   InformerSink& sink)
    : kind_(kind),
      client_(std::move(client)),
      options_(options),
      sink_(sink),
      rng_(static_cast<unsigned>(Clock::now().time_since_epoch().count())) {}

Informer::~Informer() { stop(); }

void Informer::start() {
  thread_ = std::jthread([this](std::stop_token st) { run(st); });
}

void Informer::stop() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

Error Informer::httpError(const char* verb, const HttpOutcome& o) const {
  std::string server;
  auto body = nlohmann::json::parse(o.errorBody, nullptr, false);
  server = body.is_object() ? statusMessage(body) : excerpt(o.errorBody);
  std::string what = std::string(verb) + " " + resourceName(kind_);
  if (o.status == 403) {
    return makeError("forbidden: cannot " + what +
                         " at the cluster scope: the daemon's RBAC role needs get, list and watch "
                         "on " +
                         resourceName(kind_) + " (server: " + server + ")",
                     403);
  }
  if (o.status == 401) {
    return makeError(
        what + ": unauthorized: the API server rejected the credentials (server: " + server + ")",
        401);
  }
  return makeError(what + ": HTTP " + std::to_string(o.status) + ": " + server,
                   static_cast<int>(o.status));
}

void Informer::waitBackoff(std::stop_token stop) {
  const auto& b = options_.backoff;
  nextBackoff_ = nextBackoff_.count() == 0 ? b.initial : std::min(b.max, nextBackoff_ * 2);
  std::uniform_real_distribution<double> factor(1.0 - b.jitter, 1.0 + b.jitter);
  auto wait = std::chrono::milliseconds(
      static_cast<int64_t>(static_cast<double>(nextBackoff_.count()) * factor(rng_)));
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  cv.wait_for(lock, stop, wait, [] { return false; });
}

void Informer::run(std::stop_token stop) {
  bool needList = true;
  bool lastGone = false;
  while (!stop.stop_requested()) {
    if (needList) {
      auto st = list(stop);
      if (stop.stop_requested()) return;
      if (!st.ok()) {
        sink_.failed(kind_, st.error());
        waitBackoff(stop);
        continue;
      }
      needList = false;
      nextBackoff_ = std::chrono::milliseconds(0);
    }
    auto started = Clock::now();
    WatchEnd end = watch(stop);
    if (stop.stop_requested()) return;
    bool gone = end == WatchEnd::Gone;
    switch (end) {
      case WatchEnd::Gone:
        // A relist whose own version is already too old (compaction racing the list) must
        // not spin: the second 410 in a row waits.
        if (lastGone) waitBackoff(stop);
        needList = true;
        break;
      case WatchEnd::Closed:
        // The server ends every watch after timeoutSeconds. One that ends at once, again and
        // again, is a broken server or proxy: slow down.
        if (Clock::now() - started < std::chrono::seconds(1)) waitBackoff(stop);
        break;
      case WatchEnd::Failed:
        waitBackoff(stop);
        break;
    }
    lastGone = gone;
  }
}

Status Informer::list(std::stop_token stop) {
  std::vector<Object> items;
  std::string cont;
  std::string rv;
  auto started = Clock::now();
  int restarts = 0;
  std::string body;
  for (;;) {
    std::string target =
        std::string(collectionPath(kind_)) + "?limit=" + std::to_string(options_.pageSize);
    if (!cont.empty()) target += "&continue=" + percentEncode(cont);
    body.clear();
    auto out = client_->get(
        target,
        [&](std::string_view d) {
          body.append(d);
          return true;
        },
        options_.requestTimeout, stop);
    if (!out.ok()) return out.error().wrap(std::string("list ") + resourceName(kind_));
    if (out->status == 410 && !cont.empty() && restarts < 3) {
      // The continue token expired (etcd compacted past it): the pages so far are stale.
      ++restarts;
      items.clear();
      cont.clear();
      continue;
    }
    if (out->status != 200) return httpError("list", *out);
    auto page = nlohmann::json::parse(body, nullptr, false);
    body.clear();  // its capacity serves the next page
    if (!page.is_object())
      return makeError(std::string("list ") + resourceName(kind_) + ": response is not JSON");
    auto list = page.find("items");
    if (list != page.end() && list->is_array()) {
      // Not reserve(size + page): an exact reserve per page would reallocate every page.
      for (const auto& item : *list) {
        auto o = decodeObject(kind_, item);
        if (!o.ok()) {
          sink_.failed(kind_, o.error().wrap("list: skipped an item"));
          continue;
        }
        items.push_back(std::move(*o));
      }
    }
    rv = resourceVersionOf(page);
    auto md = page.find("metadata");
    cont.clear();
    if (md != page.end() && md->is_object()) {
      auto c = md->find("continue");
      if (c != md->end() && c->is_string()) cont = c->get<std::string>();
    }
    if (cont.empty()) break;
  }
  if (rv.empty())
    return makeError(std::string("list ") + resourceName(kind_) + ": no resourceVersion");
  rv_ = rv;
  sink_.listed(kind_, std::move(items), started);
  return Status::Ok();
}

bool Informer::onLine(std::string_view line, WatchEnd& end, bool& progressed) {
  if (line.find_first_not_of(" \t\r") == std::string_view::npos) return true;
  auto received = Clock::now();
  auto fail = [&](const std::string& what) {
    sink_.failed(kind_, makeError(std::string("watch ") + resourceName(kind_) + ": " + what));
    end = WatchEnd::Failed;
    return false;
  };
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (!j.is_object()) return fail("malformed event line: " + excerpt(line));
  auto type = j.find("type");
  auto obj = j.find("object");
  if (type == j.end() || !type->is_string() || obj == j.end() || !obj->is_object())
    return fail("event without type or object: " + excerpt(line));
  const std::string& t = type->get_ref<const std::string&>();
  if (t == "ERROR") {
    auto code = obj->find("code");
    bool gone = code != obj->end() && code->is_number_integer() && code->get<int>() == 410;
    if (gone) {
      end = WatchEnd::Gone;
      sink_.failed(
          kind_, makeError(std::string("watch ") + resourceName(kind_) +
                               ": resourceVersion expired (" + statusMessage(*obj) + "); relisting",
                           410));
      return false;
    }
    return fail("ERROR event: " + statusMessage(*obj));
  }
  if (t == "BOOKMARK") {
    std::string rv = resourceVersionOf(*obj);
    if (!rv.empty()) rv_ = rv;
    progressed = true;
    return true;
  }
  EventType et;
  if (t == "ADDED") {
    et = EventType::Added;
  } else if (t == "MODIFIED") {
    et = EventType::Modified;
  } else if (t == "DELETED") {
    et = EventType::Deleted;
  } else {
    return fail("unknown event type \"" + excerpt(t) + "\"");
  }
  auto o = decodeObject(kind_, *obj);
  if (!o.ok()) return fail(o.error().message);
  std::string rv = o->resourceVersion;
  sink_.event(kind_, et, std::move(*o), received);
  if (!rv.empty()) rv_ = rv;
  progressed = true;
  return true;
}

Informer::WatchEnd Informer::watch(std::stop_token stop) {
  std::string target = std::string(collectionPath(kind_)) +
                       "?watch=1&allowWatchBookmarks=true&resourceVersion=" + percentEncode(rv_) +
                       "&timeoutSeconds=" + std::to_string(options_.watchTimeout.count());
  LineSplitter lines;
  WatchEnd end = WatchEnd::Closed;
  bool progressed = false;
  bool ended = false;
  auto out = client_->get(
      target,
      [&](std::string_view data) {
        lines.feed(data, [&](std::string_view line) {
          if (!ended && !onLine(line, end, progressed)) ended = true;
        });
        return !ended;
      },
      options_.stallTimeout, stop);
  if (progressed) nextBackoff_ = std::chrono::milliseconds(0);
  if (ended) return end;
  if (!out.ok()) {
    if (out.error().code != kErrStopped)
      sink_.failed(kind_, out.error().wrap(std::string("watch ") + resourceName(kind_)));
    return WatchEnd::Failed;
  }
  if (out->status == 410) return WatchEnd::Gone;
  if (out->status != 200) {
    sink_.failed(kind_, httpError("watch", *out));
    return WatchEnd::Failed;
  }
  if (!lines.pending().empty()) {
    sink_.failed(
        kind_, makeError(std::string("watch ") + resourceName(kind_) +
                         ": stream ended inside a line (truncated): " + excerpt(lines.pending())));
    return WatchEnd::Failed;
  }
  return WatchEnd::Closed;
}

}  // namespace sluice::source::kube
