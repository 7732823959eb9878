#include "policyd/daemon/admin_server.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace sluice::daemon {

namespace {

std::string errnoText(int e) { return std::strerror(e); }

std::string errorLine(const std::string& why) {
  return nlohmann::json{{"ok", false}, {"error", why}}.dump();
}

}  // namespace

AdminServer::AdminServer(AdminServerOptions options, Handler handler)
    : options_(std::move(options)), handler_(std::move(handler)) {}

AdminServer::~AdminServer() { stop(); }

Result<nlohmann::json> AdminServer::parseRequest(std::string_view line) {
  auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return makeError("request is not JSON");
  if (!j.is_object()) return makeError("request is not a JSON object");
  auto op = j.find("op");
  if (op == j.end() || !op->is_string()) return makeError("request has no string field \"op\"");
  return j;
}

Status AdminServer::start() {
  const std::string& path = options_.socketPath;
  const std::string what = "admin socket " + path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return makeError(what + ": path empty or too long");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  std::error_code ec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  struct stat sb {};
  if (::lstat(path.c_str(), &sb) == 0) {
    if (!S_ISSOCK(sb.st_mode)) return makeError(what + ": exists and is not a socket");
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe &&
        ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
      return makeError(what + ": in use by another daemon");
    }
    if (::unlink(path.c_str()) != 0) return makeError(what + ": remove stale: " + errnoText(errno));
  }
  listener_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listener_) return makeError(what + ": socket: " + errnoText(errno), errno);
  mode_t old = ::umask(0177);  // root only from the first instant
  int rc = ::bind(listener_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  int err = errno;
  ::umask(old);
  if (rc != 0) return makeError(what + ": bind: " + errnoText(err), err);
  if (::chmod(path.c_str(), 0600) != 0) return makeError(what + ": chmod: " + errnoText(errno));
  if (::stat(path.c_str(), &sb) == 0) socketInode_ = sb.st_ino;
  if (::listen(listener_.get(), 16) != 0) return makeError(what + ": listen: " + errnoText(errno));
  wake_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_) return makeError(what + ": eventfd: " + errnoText(errno), errno);
  acceptor_ = std::jthread([this] { acceptLoop(); });
  spdlog::info("admin socket path={} listening mode=0600", path);
  return Status::Ok();
}

void AdminServer::stop() {
  if (!acceptor_.joinable()) return;
  stopping_ = true;
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  acceptor_.join();
  struct stat sb {};
  if (::stat(options_.socketPath.c_str(), &sb) == 0 && sb.st_ino == socketInode_) {
    ::unlink(options_.socketPath.c_str());
  }
  listener_.reset();
  reap(true);
}

void AdminServer::reap(bool all) {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (all || (*it)->done.load()) {
      if ((*it)->thread.joinable()) (*it)->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void AdminServer::acceptLoop() {
  while (!stopping_) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    int r = ::poll(fds, 2, 1000);
    reap(false);
    if (r < 0 && errno != EINTR) {
      spdlog::error("admin socket poll error=\"{}\"", errnoText(errno));
      return;
    }
    if (fds[1].revents & POLLIN) return;
    if (r <= 0 || !(fds[0].revents & POLLIN)) continue;
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd) continue;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        (cred.uid != 0 && cred.uid != ::getuid())) {
      (void)sendLine(fd.get(), errorLine("permission denied"));
      continue;
    }
    if (connections_.size() >= options_.maxConnections) {
      (void)sendLine(fd.get(), errorLine("busy: too many admin connections, try again"));
      continue;
    }
    auto conn = std::make_unique<Connection>();
    Connection* c = conn.get();
    c->fd = std::move(fd);
    conn->thread = std::jthread([this, c] {
      try {
        serve(*c);
      } catch (const std::exception& e) {
        spdlog::error("admin socket connection failed error=\"{}\"", e.what());
      }
      ::shutdown(c->fd.get(), SHUT_RDWR);
      c->done = true;
    });
    connections_.push_back(std::move(conn));
  }
}

bool AdminServer::sendLine(int fd, const std::string& line) {
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

void AdminServer::serve(Connection& c) {
  const int fd = c.fd.get();
  std::string buffer;
  char chunk[4096];
  const auto deadline = std::chrono::steady_clock::now() + options_.requestTimeout;
  size_t nl;
  while ((nl = buffer.find('\n')) == std::string::npos) {
    if (buffer.size() > options_.maxLineBytes) {
      (void)sendLine(fd, errorLine("request line longer than " +
                                   std::to_string(options_.maxLineBytes) + " bytes"));
      return;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      (void)sendLine(fd, errorLine("request line not complete within " +
                                   std::to_string(options_.requestTimeout.count()) + " ms"));
      return;
    }
    pollfd fds[2] = {{fd, POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    int r = ::poll(fds, 2, static_cast<int>(left.count()) + 1);
    if (r < 0 && errno != EINTR) return;
    if (fds[1].revents & POLLIN) return;
    if (r <= 0) continue;
    ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      // A request without its newline, then EOF (echo -n '{...}' | nc): still answer it.
      if (n == 0 && !buffer.empty()) {
        nl = buffer.size();
        break;
      }
      return;
    }
    buffer.append(chunk, static_cast<size_t>(n));
  }
  std::string_view line(buffer.data(), nl);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  auto request = parseRequest(line);
  if (!request.ok()) {
    spdlog::warn("admin socket bad request error=\"{}\"", request.error().message);
    (void)sendLine(fd, errorLine("bad request: " + request.error().message));
    return;
  }
  Send send = [this, fd](const nlohmann::json& j) {
    // Invalid UTF-8 in a pod name must not throw out of a reply.
    return sendLine(fd, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  };
  handler_(*request, send, stopping_);
}

}  // namespace sluice::daemon
