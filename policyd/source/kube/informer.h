// List+watch of one kind, cluster-wide, on its own thread.
//
//   list      paginated (limit/continue); on success the sink gets the complete list and the
//             watch starts from the list's resourceVersion.
//   watch     ?watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=T. Every
//             event and bookmark advances RV. The server ending the stream at T is normal: the
//             next watch resumes from RV at once.
//   410 Gone  (HTTP status, or an ERROR event with code 410: "too old resource version") ->
//             relist; the sink's store diffs the new list against what it holds.
//   errors    disconnects, transport and HTTP errors, garbage or truncated lines, and a stream
//             with no byte for `stallTimeout` end the watch; it resumes from RV after a capped
//             exponential backoff with jitter. A line is applied only once it is complete and
//             parses, so an object is never half-applied.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "policyd/source/kube/http_client.h"
#include "policyd/source/kube/objects.h"

namespace sluice::source::kube {

struct Backoff {
  std::chrono::milliseconds initial{200};
  std::chrono::milliseconds max{30000};
  double jitter = 0.2;  // each wait is scaled by a random factor in [1-jitter, 1+jitter]
};

struct InformerOptions {
  int pageSize = 500;
  // Asked of the server; it ends the watch after about this long.
  std::chrono::seconds watchTimeout{300};
  // No byte (event, bookmark or keep-alive) for this long: the watch is restarted. Longer than
  // the server's bookmark interval (about a minute) and than watchTimeout's jitter.
  std::chrono::milliseconds stallTimeout{360000};
  // A list page or a non-watch request taking longer than this without a byte fails.
  std::chrono::milliseconds requestTimeout{60000};
  Backoff backoff;
};

enum class EventType { Added, Modified, Deleted };

// Receives what an informer reads; called on the informer's thread.
class InformerSink {
 public:
  virtual ~InformerSink() = default;
  // A complete list (the first one, or a relist after 410 Gone).
  virtual void listed(Kind kind, std::vector<Object> items,
                      std::chrono::steady_clock::time_point received) = 0;
  virtual void event(Kind kind, EventType type, Object object,
                     std::chrono::steady_clock::time_point received) = 0;
  // Something went wrong and the informer is retrying (logged; tests count them).
  virtual void failed(Kind /*kind*/, const Error& /*error*/) {}
};

// Splits a byte stream into lines ('\n'), handing out complete lines only.
class LineSplitter {
 public:
  template <class F>
  void feed(std::string_view data, F onLine) {
    while (!data.empty()) {
      auto nl = data.find('\n');
      if (nl == std::string_view::npos) {
        buf_.append(data);
        return;
      }
      if (buf_.empty()) {
        onLine(data.substr(0, nl));
      } else {
        buf_.append(data.substr(0, nl));
        onLine(std::string_view(buf_));
        buf_.clear();
      }
      data.remove_prefix(nl + 1);
    }
  }
  // Bytes of an unfinished line.
  const std::string& pending() const { return buf_; }
  void reset() { buf_.clear(); }

 private:
  std::string buf_;
};

class Informer {
 public:
  Informer(Kind kind, std::unique_ptr<HttpClient> client, InformerOptions options,
           InformerSink& sink);
  ~Informer();
  Informer(const Informer&) = delete;
  Informer& operator=(const Informer&) = delete;

  void start();
  void stop();  // idempotent; no sink call after it returns

  Kind kind() const { return kind_; }

 private:
  enum class WatchEnd { Closed, Gone, Failed };

  void run(std::stop_token stop);
  // Lists every page; on success the sink has the items and rv_ is the list's version.
  Status list(std::stop_token stop);
  WatchEnd watch(std::stop_token stop);
  // Returns false when the line ends the watch (garbage, ERROR event).
  bool onLine(std::string_view line, WatchEnd& end, bool& progressed);
  Error httpError(const char* verb, const HttpOutcome& o) const;
  void waitBackoff(std::stop_token stop);

  Kind kind_;
  std::unique_ptr<HttpClient> client_;
  InformerOptions options_;
  InformerSink& sink_;
  std::string rv_;
  std::chrono::milliseconds nextBackoff_{0};
  std::minstd_rand rng_;
  std::jthread thread_;
};

}  // namespace sluice::source::kube
