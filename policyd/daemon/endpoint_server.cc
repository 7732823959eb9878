#include "policyd/daemon/endpoint_server.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <optional>

namespace sluice::daemon {

namespace {

std::string errnoText(int err) { return std::strerror(err); }

Result<sockaddr_un> unixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return makeError("socket path " + path + ": empty or longer than " +
                     std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Best effort, never blocks: the accept thread must not wait on a client that does not read.
void sendNow(int fd, const std::string& line) {
  std::string data = line + "\n";
  (void)!::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

// True when something accepts connections on `path`.
bool someoneListens(const sockaddr_un& addr) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  return ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
}

}  // namespace

EndpointServer::EndpointServer(EndpointServerOptions options, Handler handler)
    : options_(std::move(options)), handler_(std::move(handler)) {}

EndpointServer::~EndpointServer() { stop(); }

Status EndpointServer::start() {
  const std::string& path = options_.socketPath;
  SLUICE_ASSIGN_OR_RETURN(sockaddr_un addr, unixAddress(path));
  const std::string what = "endpoint socket " + path;

  std::error_code ec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty() && !std::filesystem::exists(parent, ec)) {
    std::filesystem::create_directories(parent, ec);
    if (ec) return makeError(what + ": create " + parent.string() + ": " + ec.message());
  }
  struct stat sb {};
  if (::lstat(path.c_str(), &sb) == 0) {
    if (!S_ISSOCK(sb.st_mode)) return makeError(what + ": exists and is not a socket");
    if (someoneListens(addr)) return makeError(what + ": in use by another daemon");
    if (::unlink(path.c_str()) != 0) return makeError(what + ": remove stale: " + errnoText(errno));
  }

  listener_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listener_) return makeError(what + ": socket: " + errnoText(errno), errno);
  // Root only from the first instant: no window in which the socket has a wider mode.
  mode_t old = ::umask(0177);
  int rc = ::bind(listener_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  int err = errno;
  ::umask(old);
  if (rc != 0) return makeError(what + ": bind: " + errnoText(err), err);
  if (::chmod(path.c_str(), 0600) != 0) {
    return makeError(what + ": chmod 0600: " + errnoText(errno), errno);
  }
  if (::stat(path.c_str(), &sb) == 0) socketInode_ = sb.st_ino;
  if (::listen(listener_.get(), 128) != 0) {
    return makeError(what + ": listen: " + errnoText(errno), errno);
  }
  wake_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_) return makeError(what + ": eventfd: " + errnoText(errno), errno);
  acceptor_ = std::jthread([this] { acceptLoop(); });
  spdlog::info("endpoint socket path={} listening mode=0600", path);
  return Status::Ok();
}

void EndpointServer::stop() {
  if (!acceptor_.joinable()) return;
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  acceptor_.join();
  // Remove the file only if it is still ours (a newer daemon may have replaced it).
  struct stat sb {};
  if (::stat(options_.socketPath.c_str(), &sb) == 0 && sb.st_ino == socketInode_) {
    ::unlink(options_.socketPath.c_str());
  }
  listener_.reset();
  reap(true);
  spdlog::info("endpoint socket path={} closed", options_.socketPath);
}

void EndpointServer::reap(bool all) {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (all || (*it)->done.load()) {
      if ((*it)->thread.joinable()) (*it)->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void EndpointServer::acceptLoop() {
  for (;;) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    int r = ::poll(fds, 2, 1000);
    reap(false);
    if (r < 0) {
      if (errno == EINTR) continue;
      spdlog::error("endpoint socket poll error=\"{}\"", errnoText(errno));
      return;
    }
    if (fds[1].revents & POLLIN) return;
    if (!(fds[0].revents & POLLIN)) continue;
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
        spdlog::warn("endpoint socket accept error=\"{}\"", errnoText(errno));
      }
      continue;
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.uid != 0 &&
        cred.uid != ::geteuid()) {
      spdlog::warn("endpoint socket refused peer uid={} pid={}", cred.uid, cred.pid);
      continue;
    }
    admit(std::move(fd));
  }
}

bool EndpointServer::evictOldestWaiting() {
  Connection* oldest = nullptr;
  for (auto& c : connections_) {
    if (c->done.load() || c->state.load() != ConnState::Waiting) continue;
    if (!oldest || c->waitingSinceNs.load() < oldest->waitingSinceNs.load()) oldest = c.get();
  }
  if (!oldest) return false;
  auto expected = ConnState::Waiting;
  // Lost the race: it just started handling a request, so it is not idle after all.
  if (!oldest->state.compare_exchange_strong(expected, ConnState::Evicted)) return false;
  sendNow(oldest->fd.get(),
          endpoint_api::encode(endpoint_api::retryReply(
              "sluice-policyd closed this idle connection to serve another client")));
  // Wakes its thread (poll sees the hang-up); the fd stays open until the join in reap().
  ::shutdown(oldest->fd.get(), SHUT_RDWR);
  ++evicted_;
  return true;
}

void EndpointServer::admit(UniqueFd fd) {
  // Evicted connections exit at once (the shutdown wakes their poll, and they are never inside
  // the handler), so joining them here is short and keeps the thread count at maxConnections
  // plus the one evicted last.
  for (auto it = connections_.begin(); it != connections_.end();) {
    if ((*it)->state.load() == ConnState::Evicted || (*it)->done.load()) {
      if ((*it)->thread.joinable()) (*it)->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
  bool room = connections_.size() < options_.maxConnections || evictOldestWaiting();
  if (!room) {
    ++refused_;
    spdlog::warn("endpoint socket busy connections={}; refusing one", connections_.size());
    sendNow(fd.get(), endpoint_api::encode(endpoint_api::retryReply(
                          "sluice-policyd is busy (too many connections)")));
    return;
  }
  auto conn = std::make_unique<Connection>();
  Connection* c = conn.get();
  c->fd = std::move(fd);
  c->waitingSinceNs = nowNs();
  ++active_;
  conn->thread = std::jthread([this, c]() {
    try {
      serve(*c);
    } catch (const std::exception& e) {
      spdlog::error("endpoint socket connection failed error=\"{}\"", e.what());
    } catch (...) {
      spdlog::error("endpoint socket connection failed");
    }
    ::shutdown(c->fd.get(), SHUT_RDWR);
    --active_;
    c->done = true;
  });
  connections_.push_back(std::move(conn));
}

bool EndpointServer::sendLine(int fd, const std::string& line) {
  std::string data = line + "\n";
  std::string_view rest = data;
  auto deadline = std::chrono::steady_clock::now() + options_.writeTimeout;
  while (!rest.empty()) {
    ssize_t n = ::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      rest.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) return false;
  }
  return true;
}

std::string EndpointServer::process(std::string_view line) {
  auto request = endpoint_api::decodeRequest(line);
  if (!request.ok()) {
    spdlog::warn("endpoint socket bad request error=\"{}\"", request.error().message);
    return endpoint_api::encode(
        endpoint_api::Reply{false, "bad request: " + request.error().message});
  }
  return endpoint_api::encode(handler_(*request));
}

void EndpointServer::serve(Connection& c) {
  const int fd = c.fd.get();
  std::string buffer;
  char chunk[8192];
  using Clock = std::chrono::steady_clock;
  auto waitingSince = Clock::now();              // no bytes of the next request yet
  std::optional<Clock::time_point> lineStarted;  // first byte of an incomplete line
  auto reject = [&](const std::string& why) {
    spdlog::warn("endpoint socket {}; closing the connection", why);
    (void)sendLine(fd, endpoint_api::encode(endpoint_api::Reply{false, why}));
  };
  for (;;) {
    // Answer every complete line already buffered.
    for (size_t nl; (nl = buffer.find('\n')) != std::string::npos;) {
      std::string_view line(buffer.data(), nl);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.find_first_not_of(" \t") != std::string_view::npos) {
        auto expected = ConnState::Waiting;
        if (!c.state.compare_exchange_strong(expected, ConnState::Handling)) return;  // evicted
        // Still Handling while the reply goes out, so an eviction cannot cut it off.
        if (!sendLine(fd, process(line))) return;
        waitingSince = Clock::now();
        c.waitingSinceNs = nowNs();
        c.state = ConnState::Waiting;
      }
      buffer.erase(0, nl + 1);
      lineStarted.reset();
    }
    if (!buffer.empty() && !lineStarted) lineStarted = Clock::now();
    if (buffer.size() > options_.maxLineBytes) {
      reject("request line longer than " + std::to_string(options_.maxLineBytes) + " bytes");
      return;
    }
    // A partial line must be finished within requestTimeout of its first byte, however slowly
    // the bytes trickle in; silence between requests is bounded by idleTimeout.
    auto deadline =
        lineStarted ? *lineStarted + options_.requestTimeout : waitingSince + options_.idleTimeout;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      if (lineStarted) {
        reject("request line not complete within " +
               std::to_string(options_.requestTimeout.count()) + " ms");
      } else {
        spdlog::debug("endpoint socket connection idle for {} ms; closing",
                      options_.idleTimeout.count());
      }
      return;
    }
    pollfd fds[2] = {{fd, POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    int r = ::poll(fds, 2, static_cast<int>(left.count()) + 1);
    if (r < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents & POLLIN) return;
    if (c.state.load() == ConnState::Evicted) return;
    if (r == 0) continue;  // the deadline check above decides
    const size_t room = options_.maxLineBytes + 1 - std::min(buffer.size(), options_.maxLineBytes);
    ssize_t n = ::recv(fd, chunk, std::min(sizeof chunk, room), 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      spdlog::debug("endpoint socket recv error=\"{}\"", errnoText(errno));
      return;
    }
    if (n == 0) {
      if (!buffer.empty()) {
        spdlog::warn("endpoint socket client hung up mid-request bytes={}; dropped", buffer.size());
      }
      return;
    }
    buffer.append(chunk, static_cast<size_t>(n));
  }
}

}  // namespace sluice::daemon
