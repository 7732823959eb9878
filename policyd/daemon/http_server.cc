#include "policyd/daemon/http_server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>

#include <spdlog/spdlog.h>

namespace sluice::daemon {

namespace {

std::string errnoText(int err) { return std::strerror(err); }

const char* reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
  }
  return "Unknown";
}

std::string render(const HttpResponse& r, bool head) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) +
                    "\r\nContent-Type: " + r.contentType +
                    "\r\nContent-Length: " + std::to_string(r.body.size()) +
                    "\r\nConnection: close\r\n\r\n";
  if (!head) out += r.body;
  return out;
}

}  // namespace

Result<std::pair<std::string, uint16_t>> splitHostPort(const std::string& address) {
  std::string host, port;
  if (address.starts_with("[")) {
    auto close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return makeError("address " + address + ": want [V6]:PORT");
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    auto colon = address.rfind(':');
    if (colon == std::string::npos) return makeError("address " + address + ": want HOST:PORT");
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return makeError("address " + address + ": put an IPv6 host in brackets: [V6]:PORT");
    }
  }
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || p != port.data() + port.size() || value > 65535) {
    return makeError("address " + address + ": bad port \"" + port + "\"");
  }
  return std::make_pair(host, static_cast<uint16_t>(value));
}

HttpServer::HttpServer(HttpServerOptions options, Handler handler)
    : options_(std::move(options)), handler_(std::move(handler)) {}

HttpServer::~HttpServer() { stop(); }

Status HttpServer::start() {
  const std::string what = "metrics address " + options_.address;
  SLUICE_ASSIGN_OR_RETURN(auto hp, splitHostPort(options_.address));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(hp.second);
  int gai =
      ::getaddrinfo(hp.first.empty() ? nullptr : hp.first.c_str(), port.c_str(), &hints, &res);
  if (gai != 0) return makeError(what + ": " + ::gai_strerror(gai));
  std::string lastError = "no address";
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    UniqueFd fd(
        ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
    if (!fd) {
      lastError = errnoText(errno);
      continue;
    }
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd.get(), 128) != 0) {
      lastError = errnoText(errno);
      continue;
    }
    listener_ = std::move(fd);
    break;
  }
  ::freeaddrinfo(res);
  if (!listener_) return makeError(what + ": bind: " + lastError);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (ss.ss_family == AF_INET) {
      port_ = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      port_ = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    }
  }
  wake_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_) return makeError(what + ": eventfd: " + errnoText(errno), errno);
  thread_ = std::jthread([this] { loop(); });
  spdlog::info("metrics address={} port={} paths=/metrics,/healthz,/readyz", options_.address,
               port_);
  return Status::Ok();
}

void HttpServer::stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  thread_.join();
  connections_.clear();
  listener_.reset();
}

void HttpServer::loop() {
  using SteadyClock = std::chrono::steady_clock;
  std::vector<pollfd> fds;
  std::vector<Connection*> conns;
  for (;;) {
    const auto now = SteadyClock::now();
    // Expired connections: an unfinished request gets 408, an unfinished response is dropped.
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (now < it->deadline) {
        ++it;
        continue;
      }
      if (it->out.empty()) {
        respond(*it, HttpResponse{408, "text/plain", "request timeout\n"}, false);
        if (!onWritable(*it)) {
          ++it;
          continue;
        }
      }
      it = connections_.erase(it);
    }
    fds.clear();
    conns.clear();
    fds.push_back({wake_.get(), POLLIN, 0});
    fds.push_back({listener_.get(), POLLIN, 0});
    auto next = SteadyClock::time_point::max();
    for (auto& c : connections_) {
      fds.push_back({c.fd.get(), static_cast<short>(c.out.empty() ? POLLIN : POLLOUT), 0});
      conns.push_back(&c);
      next = std::min(next, c.deadline);
    }
    int timeoutMs = -1;
    if (next != SteadyClock::time_point::max()) {
      timeoutMs = static_cast<int>(std::clamp<int64_t>(
          std::chrono::ceil<std::chrono::milliseconds>(next - now).count(), 0, 60000));
    }
    if (::poll(fds.data(), fds.size(), timeoutMs) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("metrics poll error=\"{}\"", errnoText(errno));
      return;
    }
    if (fds[0].revents & POLLIN) return;
    std::vector<Connection*> finished;
    for (size_t i = 0; i < conns.size(); ++i) {
      const short ev = fds[i + 2].revents;
      if (ev == 0) continue;
      Connection& c = *conns[i];
      bool done = false;
      try {
        if (c.out.empty()) {
          done = (ev & (POLLIN | POLLHUP | POLLERR)) ? onReadable(c) : false;
        } else {
          done = (ev & (POLLOUT | POLLHUP | POLLERR)) ? onWritable(c) : false;
        }
      } catch (const std::exception& e) {
        spdlog::error("metrics request failed error=\"{}\"", e.what());
        respond(c, HttpResponse{500, "text/plain", "internal error\n"}, false);
        done = onWritable(c);
      }
      if (done) finished.push_back(&c);
    }
    connections_.remove_if([&](const Connection& c) {
      return std::find(finished.begin(), finished.end(), &c) != finished.end();
    });
    if (fds[1].revents & POLLIN) acceptAll();
  }
}

void HttpServer::acceptAll() {
  for (;;) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // EAGAIN: accepted everything pending; EMFILE and the like: try on the next wake
    }
    if (connections_.size() >= options_.maxConnections) {
      // Full: the oldest connection has had the longest to send its request. Dropping it (not
      // refusing the new one) means idle connections can never lock the server out.
      spdlog::debug("metrics connections={} at the limit; closing the oldest", connections_.size());
      connections_.pop_front();
    }
    Connection c;
    c.fd = std::move(fd);
    c.deadline = std::chrono::steady_clock::now() + options_.readTimeout;
    connections_.push_back(std::move(c));
  }
}

bool HttpServer::onReadable(Connection& c) {
  char buf[2048];
  for (;;) {
    ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return false;
    if (n <= 0) return true;  // closed or reset before a complete request
    c.in.append(buf, static_cast<size_t>(n));
    if (c.in.find("\r\n\r\n") != std::string::npos || c.in.find("\n\n") != std::string::npos) {
      answer(c);
      return onWritable(c);
    }
    if (c.in.size() > options_.maxRequestBytes) {
      respond(c, HttpResponse{431, "text/plain", "request too large\n"}, false);
      return onWritable(c);
    }
  }
}

bool HttpServer::onWritable(Connection& c) {
  while (c.sent < c.out.size()) {
    ssize_t n = ::send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      c.sent += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      return false;
    } else {
      return true;
    }
  }
  return true;
}

void HttpServer::respond(Connection& c, const HttpResponse& r, bool head) {
  c.out = render(r, head);
  c.sent = 0;
  c.deadline = std::chrono::steady_clock::now() + options_.writeTimeout;
}

void HttpServer::answer(Connection& c) {
  const std::string& req = c.in;
  // Request line: METHOD SP TARGET SP VERSION
  auto eol = req.find_first_of("\r\n");
  std::string line = req.substr(0, eol);
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string::npos ? std::string::npos : line.find(' ', sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos ||
      !line.substr(sp2 + 1).starts_with("HTTP/1.")) {
    respond(c, HttpResponse{400, "text/plain", "bad request\n"}, false);
    return;
  }
  std::string method = line.substr(0, sp1);
  std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (method != "GET" && method != "HEAD") {
    respond(c, HttpResponse{405, "text/plain", "only GET\n"}, false);
    return;
  }
  std::string path = target.substr(0, target.find('?'));
  respond(c, handler_(path), method == "HEAD");
}

}  // namespace sluice::daemon
