// A tiny HTTP/1.1 server for /metrics, /healthz and /readyz: plain sockets, GET only,
// `Connection: close`. One thread multiplexes every connection with poll(2), so an idle or slow
// client never delays another one (a liveness probe must not fail because some process on the
// node opened connections and sent nothing). Resources are bounded: at most `maxConnections`
// at once (a new one beyond that evicts the oldest), each with a request size limit and a
// deadline for reading its request and another for writing the response.
#pragma once

#include <chrono>
#include <functional>
#include <list>
#include <string>
#include <thread>

#include "common/result.h"
#include "common/unique_fd.h"

namespace sluice::daemon {

struct HttpResponse {
  int status = 200;
  std::string contentType = "text/plain; charset=utf-8";
  std::string body;
};

struct HttpServerOptions {
  std::string address;  // HOST:PORT, [V6]:PORT; port 0 picks a free one (tests)
  size_t maxRequestBytes = 8192;
  std::chrono::milliseconds readTimeout{2000};
  size_t maxConnections = 64;
  std::chrono::milliseconds writeTimeout{2000};
};

class HttpServer {
 public:
  // Called with the request path (no query string); returns the response. Unknown paths are the
  // handler's business (return 404).
  using Handler = std::function<HttpResponse(const std::string& path)>;

  HttpServer(HttpServerOptions options, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  Status start();
  void stop();
  int port() const { return port_; }

 private:
  struct Connection {
    UniqueFd fd;
    std::string in;
    std::string out;  // the response, once the request is complete
    size_t sent = 0;
    std::chrono::steady_clock::time_point deadline;
  };

  void loop();
  void acceptAll();
  // Reads what is available; true when the connection is finished (close it).
  bool onReadable(Connection& c);
  // Writes what the socket takes; true when the connection is finished.
  bool onWritable(Connection& c);
  void respond(Connection& c, const HttpResponse& r, bool head);
  // Parses a complete request head and answers it.
  void answer(Connection& c);

  HttpServerOptions options_;
  Handler handler_;
  UniqueFd listener_;
  UniqueFd wake_;
  int port_ = 0;
  std::list<Connection> connections_;  // oldest first; loop thread only
  std::jthread thread_;
};

// Splits "HOST:PORT" / "[V6]:PORT".
Result<std::pair<std::string, uint16_t>> splitHostPort(const std::string& address);

}  // namespace sluice::daemon
