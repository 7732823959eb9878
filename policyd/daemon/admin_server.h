// The admin socket (--admin-socket, default admin.sock beside --socket): what live `sluicectl
// status|endpoints|policy|flows` ask the local daemon. A unix stream socket, mode 0600 and
// SO_PEERCRED-checked (root or the daemon's uid only), because it shows every pod's flows: a
// unix socket gives that check for free, where an HTTP port on 127.0.0.1 is open to every local
// user and would need its own authentication.
//
// Protocol: one request per connection, one JSON object on one line, e.g. {"op":"status"},
// {"op":"policy","pod":"ns/name"}, {"op":"flows","follow":true,"denied":true,"pod":"ns/name"}.
// The reply is one or more JSON lines; the last (or only) one carries "ok" (true, or false with
// "error"). A streamed op (flows) sends {"flow":{...}} lines first; with "follow" it keeps
// sending until the client hangs up or the daemon stops. Anything that is not such a request
// gets {"ok":false,"error":...}; the connection is then closed.
//
// Bounded: at most maxConnections at once (a newcomer beyond that gets a busy error), a request
// line of at most maxLineBytes that must arrive within requestTimeout, and replies that must
// drain within writeTimeout.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "common/result.h"
#include "common/unique_fd.h"

namespace sluice::daemon {

struct AdminServerOptions {
  std::string socketPath;
  size_t maxLineBytes = 16 * 1024;
  size_t maxConnections = 16;
  std::chrono::milliseconds requestTimeout{5000};
  std::chrono::milliseconds writeTimeout{5000};
};

class AdminServer {
 public:
  // Sends one reply line (without the newline); false once the client is gone or too slow.
  using Send = std::function<bool(const nlohmann::json&)>;
  // Answers one request (a JSON object with a string "op"). `stopping` turns true when the
  // daemon stops: a streaming handler must return soon after. Throwing Error-like exceptions
  // is not allowed; return an {"ok":false} reply instead.
  using Handler = std::function<void(const nlohmann::json& request, const Send& send,
                                     const std::atomic<bool>& stopping)>;

  AdminServer(AdminServerOptions options, Handler handler);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  Status start();
  void stop();
  const std::string& path() const { return options_.socketPath; }

  // The reply to a request line (tests): parses and validates it, or says what is wrong.
  static Result<nlohmann::json> parseRequest(std::string_view line);

 private:
  struct Connection {
    UniqueFd fd;
    std::jthread thread;
    std::atomic<bool> done{false};
  };
  void acceptLoop();
  void serve(Connection& c);
  bool sendLine(int fd, const std::string& line);
  void reap(bool all);

  const AdminServerOptions options_;
  Handler handler_;
  UniqueFd listener_;
  UniqueFd wake_;
  ino_t socketInode_ = 0;
  std::atomic<bool> stopping_{false};
  std::list<std::unique_ptr<Connection>> connections_;  // acceptor thread only
  std::jthread acceptor_;
};

}  // namespace sluice::daemon
