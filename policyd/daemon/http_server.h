// A tiny HTTP/1.1 server for /metrics, /healthz and /readyz: plain sockets, one thread, one
// connection at a time, GET only, bounded request size and time, `Connection: close`.
#pragma once

#include <chrono>
#include <functional>
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
  void loop();
  void serve(int fd);

  HttpServerOptions options_;
  Handler handler_;
  UniqueFd listener_;
  UniqueFd wake_;
  int port_ = 0;
  std::jthread thread_;
};

// Splits "HOST:PORT" / "[V6]:PORT".
Result<std::pair<std::string, uint16_t>> splitHostPort(const std::string& address);

}  // namespace sluice::daemon
