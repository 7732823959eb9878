// The endpoint socket (DESIGN.md §4): a unix stream socket, mode 0600 (root only; peers whose
// uid is neither 0 nor ours are also refused via SO_PEERCRED), newline-delimited JSON, one
// request and one reply per line (common/endpoint_api.h), any number of requests per
// connection.
//
// One thread accepts; each connection gets its own thread because a request blocks until its
// policy is applied and several CNI ADDs arrive at once. The handler serialises state changes
// itself (NodeAgent).
//
// Bounded resources, so no local process can hold the socket hostage:
// - at most maxConnections connections. When all are taken, the one that has waited longest
//   for its next request (idle, or trickling a partial line) is told so and closed to make
//   room; only when every connection is inside the handler does a newcomer get a busy reply
//   ({"ok":false,"retry":true}: CNI reports 11, try again later).
// - a request line must be complete within requestTimeout of its first byte, and at most
//   maxLineBytes long; otherwise the client gets an error and the connection is closed (there
//   is no way to resynchronise). A connection silent for idleTimeout is closed.
// - a line that does not decode gets {"ok":false,"error":...} and the connection stays usable;
//   a client that hangs up mid-line is dropped.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <thread>

#include "common/endpoint_api.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace sluice::daemon {

struct EndpointServerOptions {
  std::string socketPath = "/run/sluice/policyd.sock";
  size_t maxLineBytes = 64 * 1024;
  size_t maxConnections = 64;
  std::chrono::milliseconds idleTimeout{30000};
  std::chrono::milliseconds requestTimeout{5000};
  std::chrono::milliseconds writeTimeout{5000};
};

class EndpointServer {
 public:
  using Handler = std::function<endpoint_api::Reply(const endpoint_api::Request&)>;

  EndpointServer(EndpointServerOptions options, Handler handler);
  ~EndpointServer();
  EndpointServer(const EndpointServer&) = delete;
  EndpointServer& operator=(const EndpointServer&) = delete;

  // Binds (replacing a stale socket file no one listens on) and starts accepting.
  Status start();
  // Stops accepting, removes the socket file, closes idle connections and joins every thread.
  // Requests already inside the handler finish first (the handler must return promptly once
  // the daemon is stopping: NodeAgent::stop() answers them).
  void stop();

  const std::string& path() const { return options_.socketPath; }
  size_t activeConnections() const { return active_.load(); }
  // Connections closed to make room for a newcomer, and newcomers refused as busy.
  uint64_t evictedConnections() const { return evicted_.load(); }
  uint64_t refusedConnections() const { return refused_.load(); }

 private:
  // Waiting: between requests or reading one (may be evicted); Handling: inside the handler;
  // Evicted: the acceptor closed it for a newcomer.
  enum class ConnState { Waiting, Handling, Evicted };
  struct Connection {
    UniqueFd fd;  // closed only when the acceptor erases the Connection, after the join
    std::jthread thread;
    std::atomic<ConnState> state{ConnState::Waiting};
    std::atomic<int64_t> waitingSinceNs{0};  // steady clock, when it last became Waiting
    std::atomic<bool> done{false};
  };

  void acceptLoop();
  void admit(UniqueFd fd);
  bool evictOldestWaiting();
  void serve(Connection& c);
  bool sendLine(int fd, const std::string& line);
  std::string process(std::string_view line);
  void reap(bool all);

  EndpointServerOptions options_;
  Handler handler_;
  UniqueFd listener_;
  UniqueFd wake_;  // eventfd, readable once stop() was called
  ino_t socketInode_ = 0;
  std::atomic<size_t> active_{0};
  std::atomic<uint64_t> evicted_{0};
  std::atomic<uint64_t> refused_{0};
  std::list<std::unique_ptr<Connection>> connections_;  // accept thread only (and stop())
  std::jthread acceptor_;
};

}  // namespace sluice::daemon
