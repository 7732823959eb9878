// The endpoint socket (DESIGN.md §4): a unix stream socket, mode 0600 (root only; peers whose
// uid is neither 0 nor ours are also refused via SO_PEERCRED), newline-delimited JSON, one
// request and one reply per line (common/endpoint_api.h), any number of requests per
// connection.
//
// One thread accepts; each connection gets its own thread (bounded by maxConnections) because a
// request blocks until its policy is applied and several CNI ADDs arrive at once. The handler
// serialises state changes itself (NodeAgent). Robustness: a line that does not decode gets
// {"ok":false,"error":...} and the connection stays usable; a line longer than maxLineBytes
// gets an error and the connection is closed (there is no way to resynchronise); a client that
// hangs up mid-line or stays silent for idleTimeout is dropped.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <thread>

#include <sys/types.h>

#include "common/endpoint_api.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace sluice::daemon {

struct EndpointServerOptions {
  std::string socketPath = "/run/sluice/policyd.sock";
  size_t maxLineBytes = 64 * 1024;
  size_t maxConnections = 64;
  std::chrono::milliseconds idleTimeout{30000};
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

 private:
  struct Connection {
    std::jthread thread;
    std::atomic<bool> done{false};
  };

  void acceptLoop();
  void serve(UniqueFd fd);
  bool sendLine(int fd, const std::string& line);
  std::string process(std::string_view line);
  void reap(bool all);

  EndpointServerOptions options_;
  Handler handler_;
  UniqueFd listener_;
  UniqueFd wake_;  // eventfd, readable once stop() was called
  ino_t socketInode_ = 0;
  std::atomic<size_t> active_{0};
  std::list<std::unique_ptr<Connection>> connections_;  // accept thread only (and stop())
  std::jthread acceptor_;
};

}  // namespace sluice::daemon
